"""MkDocs hook: links from the guides to files of the repository outside ``docs/``.

The guides link to results files, configs and sources by relative path (so they work on
GitHub). The site holds only ``docs/``, so such a link would be reported as broken; here
each one is checked to exist in the repository (a missing file fails the strict build)
and rewritten to the repository's copy when ``repo_url`` is set, else to a code span.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[([^\]]*)\]\((\.\./[^)#\s]+)(#[^)]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite links that leave ``docs/`` after checking their targets exist."""
    here = posixpath.dirname(page.file.src_uri)
    repo = (config.get("repo_url") or "").rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        text, target, anchor = match.group(1), match.group(2), match.group(3) or ""
        rel = posixpath.normpath(posixpath.join("docs", here, target))
        if rel.startswith("docs/"):
            return match.group(0)  # inside the site: MkDocs checks it
        if not (ROOT / rel).exists():
            raise FileNotFoundError(f"{page.file.src_uri}: link to {target} -> {rel}, missing")
        if repo:
            return f"[{text}]({repo}/blob/main/{rel}{anchor})"
        return text if text.startswith("`") else f"{text} (`{rel}`)"

    return LINK.sub(rewrite, markdown)

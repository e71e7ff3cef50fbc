"""Small corpora at full speed: steps/s on a 600-frame corpus against a 4,000-frame one.

The demo's SALT stage (ViT 64 px / patch 8, width 192, depth 6; predictor 96 / 2; batch
64; one loader worker) on synthetic corpora of 600 and 4,000 frames, trained for the same
number of steps, twice each:

- **before**: a validation pass after every epoch and loader workers started again every
  epoch (Lightning's defaults with ``persistent_workers: false``);
- **after**: validation every ``--val-every`` steps (``val_check_interval``,
  ``check_val_every_n_epoch: null``) and persistent workers (our DataModule's default).

At batch 64 the 600-frame corpus has 8 steps per epoch, so per-epoch costs weigh on it.
Steps/s is measured over the steps after the first ``--skip`` (start-up excluded),
validation passes and worker restarts included. The bar (issue 13): the small corpus
within 10 % of the large one.

    python -m benchmarks.perf.small_corpus [--steps 240]

Writes ``results/perf/small_corpus/small_corpus.{csv,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)


def run(manifest: Path, after: bool, steps: int, skip: int, val_every: int, threads: int) -> float:
    """Steps/s of one short SALT run."""
    import lightning as L
    import torch

    from usjepa.data import CorpusDataModule
    from usjepa.masks import MultiBlockMaskGenerator
    from usjepa.methods import SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.marks: dict[int, float] = {}

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.marks[trainer.global_step] = time.perf_counter()

    torch.set_num_threads(threads)  # the demo's: every core, shared with the loader worker
    tiny = {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}
    module = SALTModule(
        ViTEncoder(**tiny, init_seed=0),
        JEPAPredictor(8, 192, width=96, depth=2, num_heads=4),
        ViTEncoder(**tiny, init_seed=1),
    )
    data = CorpusDataModule(
        str(manifest),
        MultiBlockMaskGenerator(8, num_targets=2),
        batch_size=64,
        num_workers=1,
        persistent_workers=after,
    )
    clock = Clock()
    val = {"val_check_interval": val_every, "check_val_every_n_epoch": None} if after else {}
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock], **val,
    )  # fmt: skip
    trainer.fit(module, data)
    return (steps - skip) / (clock.marks[steps] - clock.marks[skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--skip", type=int, default=20)
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import pandas as pd

    from usjepa.data.synthetic.writer import generate_corpus

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {n: generate_corpus(Path(tmp) / str(n), n_images=n, size=96) for n in (600, 4000)}
        for after in (False, True):
            for n, manifest in corpora.items():
                rate = run(manifest, after, args.steps, args.skip, args.val_every, args.threads)
                rows.append({"setting": "after" if after else "before", "frames": n,
                             "steps_per_s": rate})  # fmt: skip
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "small_corpus.csv", index=False)
    lines = [
        "# Small corpora at full speed",
        "",
        f"Demo SALT stage (64 px ViT, batch 64, one loader worker, {args.threads} compute "
        "threads, CPU) for "
        f"{args.steps} steps; steps/s over steps {args.skip}-{args.steps}, validation and "
        "worker restarts included. Before: validation every epoch, workers restarted every "
        f"epoch. After: validation every {args.val_every} steps, persistent workers. "
        "Command: `python -m benchmarks.perf.small_corpus`.",
        "",
        "| setting | steps/s, 600 frames | steps/s, 4,000 frames | 600 / 4,000 |",
        "|---|---|---|---|",
    ]
    for setting in ("before", "after"):
        part = table[table.setting == setting].set_index("frames").steps_per_s
        lines.append(
            f"| {setting} | {part[600]:.2f} | {part[4000]:.2f} | {part[600] / part[4000]:.2f} |"
        )
    record_env(OUT / "small_corpus.md")
    (OUT / "small_corpus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

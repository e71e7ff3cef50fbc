"""Frozen-encoder feature extraction with pooling choices and an on-disk cache."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from usjepa.atomic import atomic_path

POOLINGS = ("cls", "mean", "cls_mean", "<pooling>_last<n>")
_LAST = re.compile(r"^(cls|mean|cls_mean)_last(\d+)$")


def pool_tokens(tokens: Tensor, pooling: str, num_prefix_tokens: int = 1) -> Tensor:
    """Pool ``[B, prefix + N, D]`` tokens to ``[B, D']``.

    ``cls``: the class token; ``mean``: mean of patch tokens; ``cls_mean``: both,
    concatenated (``2D``). An encoder without a prefix token (``num_prefix_tokens=0``,
    e.g. SAM-style or BEiT-without-CLS exports) has no class token to pool: asking for
    one is an error rather than a silent read of the first patch token.
    """
    if pooling in ("cls", "cls_mean") and num_prefix_tokens < 1:
        raise ValueError(
            f"pooling {pooling!r} needs a class token, but this encoder has none "
            "(num_prefix_tokens=0); use mean pooling for it"
        )
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return tokens[:, num_prefix_tokens:].mean(1)
    if pooling == "cls_mean":
        return torch.cat([tokens[:, 0], tokens[:, num_prefix_tokens:].mean(1)], dim=1)
    raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")


def last_blocks(pooling: str) -> tuple[str, int]:
    """``("cls", 4)`` for ``cls_last4``; ``(pooling, 1)`` for a single-block pooling."""
    match = _LAST.match(pooling)
    return (match.group(1), int(match.group(2))) if match else (pooling, 1)


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A content hash of an encoder's weights and type (cache key part)."""
    h = hashlib.sha1(type(encoder).__qualname__.encode())
    for name, value in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def extract_features(
    encoder: nn.Module,
    loader: DataLoader[Any],
    poolings: tuple[str, ...],
    device: torch.device | str = "cpu",
    desc: str = "features",
) -> dict[str, Tensor]:
    """Run the frozen encoder over a loader.

    ``<pooling>_last<n>`` (e.g. ``cls_last4``) concatenates that pooling over the last
    ``n`` blocks' normalised outputs (the encoder needs ``forward_blocks``).

    Returns:
        ``{pooling: [N, D] float32}`` in loader order.
    """
    was_training = encoder.training
    encoder.eval().to(device)
    prefix = getattr(encoder, "num_prefix_tokens", 1)
    if prefix < 1:  # no class token: class-token poolings would read a patch token
        dropped = [p for p in poolings if last_blocks(p)[0].startswith("cls")]
        poolings = tuple(p for p in poolings if p not in dropped)
        if not poolings:
            raise ValueError(
                f"{type(encoder).__name__} has no class token, so the poolings {dropped} "
                "do not apply; add mean (or mean_last<n>) to the probe's poolings"
            )
        if dropped:
            tqdm.write(f"{desc}: no class token, so {dropped} are skipped for this encoder")
    out: dict[str, list[Tensor]] = {p: [] for p in poolings}
    depth = max(last_blocks(p)[1] for p in poolings)
    if depth > 1 and not hasattr(encoder, "forward_blocks"):
        raise ValueError(
            f"pooling over the last {depth} blocks needs an encoder with forward_blocks; "
            f"{type(encoder).__name__} has none, so use cls, mean or cls_mean"
        )
    for batch in tqdm(loader, desc=desc, leave=False):
        images = batch["image"].to(device)
        if depth > 1:
            blocks = [b.float() for b in encoder.forward_blocks(images, depth)]  # type: ignore[operator]
        else:
            blocks = [encoder(images).float()]
        for p in poolings:
            base, n = last_blocks(p)
            pooled = [pool_tokens(b, base, prefix) for b in blocks[len(blocks) - n :]]
            out[p].append(torch.cat(pooled, dim=1).cpu())
    encoder.train(was_training)
    return {p: torch.cat(v) for p, v in out.items()}


def cached_features(
    encoder: nn.Module,
    loader: DataLoader[Any],
    poolings: tuple[str, ...],
    key_parts: tuple[Any, ...],
    cache_dir: Path | None,
    device: str = "cpu",
    desc: str = "features",
) -> dict[str, Tensor]:
    """:func:`extract_features`, reused from ``cache_dir`` when the same encoder weights,
    data and transform were extracted before."""
    if cache_dir is None:
        return extract_features(encoder, loader, poolings, device, desc)
    key = hashlib.sha1(repr((encoder_fingerprint(encoder), *key_parts, poolings)).encode())
    path = Path(cache_dir) / f"{key.hexdigest()[:20]}.pt"
    if path.exists():
        result: dict[str, Tensor] = torch.load(path, weights_only=True)
        return result
    feats = extract_features(encoder, loader, poolings, device, desc)
    with atomic_path(path) as tmp:  # an interrupted run never leaves a half-written entry
        torch.save(feats, tmp)
    return feats


def task_features(
    encoder: nn.Module,
    task: Any,
    split: str,
    poolings: tuple[str, ...],
    cache_dir: Path | None,
    device: str = "cpu",
    desc: str = "features",
    corruption: tuple[str, int] | None = None,
) -> dict[str, Tensor]:
    """Features of one split of a :class:`~usjepa.data.tasks.ProbeDataModule`.

    An encoder with an input contract (``input_spec``: our exports) reads the images at
    its size, standardised with its training statistics by the same resize and
    normalisation as its training frames, so it sees the very numbers it was trained on.
    Zoo encoders (those with ``input_mean``) are told the normalisation they are fed,
    which they undo, and read the images at their own input size from the files,
    letterboxed when they keep the aspect ratio (``resize == "longest_pad"``, e.g.
    UltraSam), rather than up-sampled from the task's size. Other encoders read at the
    task's size with the task's statistics.
    """
    size, letterbox, stats = task.img_size, False, (task.mean, task.std)
    spec = getattr(encoder, "input_spec", None)
    if spec is not None:  # our export: the very input it was trained on (InputSpec)
        size, letterbox = spec.img_size, spec.resize == "longest_pad"
        stats = spec.scalar_stats
    if hasattr(encoder, "input_mean"):  # a zoo encoder undoes the normalisation it is fed
        size = int(getattr(encoder, "img_size", size))
        letterbox = getattr(encoder, "resize", "square") == "longest_pad"
        encoder.input_mean, encoder.input_std = stats
    key = (str(task.root.resolve()), split, size, letterbox, *stats, corruption)
    loader = task.dataloader(split, corruption, img_size=size, letterbox=letterbox, stats=stats)
    return cached_features(encoder, loader, poolings, key, cache_dir, device, desc)

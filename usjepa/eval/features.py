"""Frozen-encoder feature extraction with pooling choices and an on-disk cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

POOLINGS = ("cls", "mean", "cls_mean")


def pool_tokens(tokens: Tensor, pooling: str, num_prefix_tokens: int = 1) -> Tensor:
    """Pool ``[B, prefix + N, D]`` tokens to ``[B, D']``.

    ``cls``: the class token; ``mean``: mean of patch tokens; ``cls_mean``: both,
    concatenated (``2D``).
    """
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return tokens[:, num_prefix_tokens:].mean(1)
    if pooling == "cls_mean":
        return torch.cat([tokens[:, 0], tokens[:, num_prefix_tokens:].mean(1)], dim=1)
    raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")


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
    loader: DataLoader,
    poolings: tuple[str, ...],
    device: torch.device | str = "cpu",
    desc: str = "features",
) -> dict[str, Tensor]:
    """Run the frozen encoder over a loader.

    Returns:
        ``{pooling: [N, D] float32}`` in loader order.
    """
    was_training = encoder.training
    encoder.eval().to(device)
    prefix = getattr(encoder, "num_prefix_tokens", 1)
    out: dict[str, list[Tensor]] = {p: [] for p in poolings}
    for batch in tqdm(loader, desc=desc, leave=False):
        tokens = encoder(batch["image"].to(device)).float()
        for p in poolings:
            out[p].append(pool_tokens(tokens, p, prefix).cpu())
    encoder.train(was_training)
    return {p: torch.cat(v) for p, v in out.items()}


def cached_features(
    encoder: nn.Module,
    loader: DataLoader,
    poolings: tuple[str, ...],
    key_parts: tuple,
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
        return torch.load(path, weights_only=True)
    feats = extract_features(encoder, loader, poolings, device, desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(feats, tmp)
    tmp.replace(path)  # atomic: an interrupted run never leaves a half-written cache entry
    return feats

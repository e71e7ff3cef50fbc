"""Fixed 2D sine-cosine position embeddings (MAE, He et al. 2022, eq. in sec. A.1)."""

from __future__ import annotations

import torch
from torch import Tensor


def sincos_2d(grid_size: int, dim: int) -> Tensor:
    """Position embeddings for a ``grid_size x grid_size`` grid, row-major.

    Half of the channels encode the row, half the column, each as sines and cosines of
    geometrically spaced frequencies (base 10000).

    Returns:
        ``[grid_size**2, dim]`` float32.
    """
    if dim % 4:
        raise ValueError(f"sin-cos 2D embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()

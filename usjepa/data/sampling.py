"""Training order that can be resumed exactly, and differs between DDP ranks.

:class:`EpochSampler` draws each epoch's order from ``(seed, epoch)`` alone and hands
every sample its own random seed, derived from ``(seed, epoch, rank, position)``. Crops
and masks are drawn from that seed, so they depend on nothing that happened before:
not on worker count, not on which worker loads the sample, not on an interruption.
:class:`ResumableLoader` records how many batches of the epoch the training loop has
consumed; Lightning saves that in every checkpoint and hands it back on resume, and the
sampler then starts the epoch at the next unseen position. A resumed run therefore sees
the same images, crops and masks, in the same order, as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """The random seed of one sample slot."""
    return int(np.random.SeedSequence([seed, epoch, rank, position]).generate_state(1)[0])


class EpochSampler(DistributedSampler[Any]):
    """Yields ``(index, sample seed)`` for this rank's share of each epoch.

    A :class:`~torch.utils.data.DistributedSampler`, so Lightning keeps it under DDP
    instead of wrapping it: it shards the epoch's order across ranks itself (each rank
    gets ``len(order) // num_replicas`` positions, strided, so no sample is seen twice in
    an epoch and none is left to one rank only).

    Args:
        num_samples: dataset length.
        seed: the run's data seed.
        weights: per-sample weights: the order is drawn with replacement in proportion
            to them (dataset-share sampling); ``None`` permutes every sample once.
        num_replicas, rank: the DDP world size and this rank.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        weights: np.ndarray | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(
            range(num_samples),  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.start = 0  # position in this rank's share where the next iteration begins

    def order(self) -> torch.Tensor:
        """This rank's indices for the current epoch, in order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.weights is None:
            full = torch.randperm(n, generator=g)
        else:
            full = torch.multinomial(self.weights, n, replacement=True, generator=g)
        return full[self.rank :: self.num_replicas][: self.num_samples]

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch``; a new epoch starts at its first position."""
        if epoch != self.epoch:
            self.start = 0
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # ``start`` holds for every iteration of this epoch (Lightning may open the loader
        # twice before the first step); set_epoch to the next epoch clears it
        order = self.order()
        for position in range(self.start, len(order)):
            yield int(order[position]), sample_seed(self.seed, self.epoch, self.rank, position)


class ResumableLoader(DataLoader[Any]):
    """A DataLoader over an :class:`EpochSampler` whose position Lightning checkpoints.

    ``consumed`` returns how many batches of the current epoch the training loop has
    finished (the DataModule reads it from the trainer, which prefetches ahead, so the
    loader's own count of batches handed out would overshoot).
    """

    def __init__(
        self, *args: Any, consumed: Callable[[], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.consumed = consumed or (lambda: 0)

    def state_dict(self) -> dict[str, int]:
        """The epoch and the samples of it already consumed."""
        sampler = self.sampler
        assert isinstance(sampler, EpochSampler)
        return {"epoch": sampler.epoch, "samples": self.consumed() * int(self.batch_size or 1)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next iteration where the checkpointed run stopped."""
        sampler = self.sampler
        assert isinstance(sampler, EpochSampler)
        sampler.set_epoch(state["epoch"])
        sampler.start = state["samples"]  # kept until the next epoch begins

"""The small-data fast path: a data set held as tensors on the training device, batched by index.

No Dataset, no DataLoader, no worker processes: each epoch draws one seeded permutation and yields slices of it.
Lightning accepts any sized iterable as a dataloader.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch


class InMemoryLoader:
    """Yields ``(x[idx], y[idx])`` batches; shuffled per epoch with a generator seeded by (seed, epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, epoch: Callable[[], int] | None = None):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self._epoch = epoch or (lambda: 0)

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def to(self, device) -> "InMemoryLoader":
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def order(self) -> torch.Tensor | None:
        """This epoch's permutation (None when not shuffling)."""
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self._epoch())
        return torch.randperm(len(self.y), generator=g).to(self.y.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm, bs = self.order(), self.batch_size
        for i in range(len(self)):
            if perm is None:
                yield self.x[i * bs:(i + 1) * bs], self.y[i * bs:(i + 1) * bs]
            else:
                idx = perm[i * bs:(i + 1) * bs]
                yield self.x[idx], self.y[idx]

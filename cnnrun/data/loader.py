"""Batches for training and evaluation.

The small-data fast path, :class:`InMemoryLoader`: a data set held as tensors on the training device, batched by
index. No Dataset, no DataLoader, no worker processes: each epoch draws one seeded permutation (or, for class-balanced
sampling, one seeded multinomial draw) and yields slices of it. The streamed path, :class:`DeviceLoader`, wraps a
torch DataLoader (workers, pinned memory) for data sets of files too large for memory.

Both apply a :class:`BatchTransform` to every batch on the device: uint8 pixels to floats in [0, 1], the training
augmentations (whole batches, per-sample random parameters from a generator seeded by (seed, epoch)), then the
training split's normalisation. Lightning accepts any sized iterable as a dataloader.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from cnnrun.data.splits import to_float
from cnnrun.distributed import shard_indices

if TYPE_CHECKING:
    from cnnrun.data.augment import Augment
    from cnnrun.data.splits import Splits


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """One integer per (run seed, epoch, purpose): stream 0 orders samples, stream 1 draws augmentations, stream 2
    seeds torch's global generator at each training epoch (dropout, mixup: ``cnnrun/train/module.py``)."""
    return (seed * 1_000_003 + epoch) * 4 + stream


def epoch_order(n: int, seed: int, epoch: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """This epoch's sample order: a permutation of ``n`` (drawn on the CPU, the same on every device), or ``n``
    draws with replacement with probability proportional to ``weights`` (class-balanced sampling), drawn on the
    weights' device."""
    if weights is None:
        return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
    g = torch.Generator(device=weights.device).manual_seed(epoch_seed(seed, epoch))
    return torch.multinomial(weights, n, replacement=True, generator=g)


@contextmanager
def one_cpu_thread(device: torch.device):
    """Run a batch's preparation on one thread when it happens on the CPU.

    A batch's few memory-bound passes (indexing, conversion, augmentation) gain little from a second thread, and on
    a machine shared with other work every multi-threaded pass waits for a free core: measured 3-15x slower epochs
    on a busy 2-core VM. The model keeps all threads; only these passes run on one.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class BatchTransform:
    """uint8 -> float, then the augmentations (training only), then per-channel standardisation."""

    def __init__(self, mean: list[float] | None = None, std: list[float] | None = None,
                 augment: "Augment | None" = None):
        self.mean, self.std = mean, std
        self.augment = augment if augment is not None and len(augment) else None
        self._norm: dict[tuple[torch.device, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_splits(cls, splits: "Splits", augment: "Augment | None" = None) -> "BatchTransform":
        stats = splits.stats or {}
        return cls(stats.get("mean"), stats.get("std"), augment)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dim())
        if key not in self._norm:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            self._norm[key] = (torch.tensor(self.mean, device=x.device).view(shape),
                               torch.tensor(self.std, device=x.device).view(shape))
        return self._norm[key]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with one_cpu_thread(x.device):
            return self._apply(x, generator)

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = to_float(x)
        if self.augment is not None:
            if generator is None:
                raise ValueError("augmentation needs a generator")
            x = self.augment(x, generator)
        if self.mean is not None:
            mean, std = self._stats(x)
            x = (x - mean) / std
        return x


class _EpochBatches:
    """What both loaders share: the epoch counter, the order, the augmentation generator."""

    def __init__(self, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                 epoch: Callable[[], int] | None, transform: BatchTransform | None,
                 weights: torch.Tensor | None, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world  # distributed training: this process's shard of the data
        self.batch_size = batch_size
        self.shuffle = shuffle or weights is not None
        self.seed = seed
        self.drop_last = drop_last
        self._epoch = epoch or (lambda: 0)
        self.transform = transform
        self.weights = weights

    def _count(self) -> int:
        raise NotImplementedError

    def shard_size(self) -> int:
        """Samples this process sees per epoch: all of them, or its shard (training shards padded to equal size)."""
        n = self._count()
        if self.world <= 1:
            return n
        return -(-n // self.world) if self.shuffle else len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        n = self.shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor | None:
        """This epoch's order (None when neither shuffling nor re-sampling nor sharding). Every process draws the
        same full order from the shared seed and keeps its own shard of it."""
        if not self.shuffle:
            return None if self.world <= 1 else shard_indices(torch.arange(self._count()), self.rank, self.world,
                                                              pad=False)
        order = epoch_order(self._count(), self.seed, self._epoch(), self.weights)
        return shard_indices(order, self.rank, self.world, pad=True)

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.transform is None or self.transform.augment is None:
            return None
        return torch.Generator(device=device).manual_seed(epoch_seed(self.seed, self._epoch(), stream=1))

    def _apply(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        return x if self.transform is None else self.transform(x, g)


class InMemoryLoader(_EpochBatches):
    """Yields ``(x[idx], y[idx])`` batches; shuffled per epoch with a generator seeded by (seed, epoch).

    ``weights`` (one per sample) turns shuffling into sampling with replacement in proportion to them (class-balanced
    sampling); ``transform`` prepares each batch on the device (see :class:`BatchTransform`).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, epoch: Callable[[], int] | None = None,
                 transform: BatchTransform | None = None, weights: torch.Tensor | None = None,
                 rank: int = 0, world: int = 1):
        super().__init__(batch_size, shuffle, seed, drop_last, epoch, transform, weights, rank, world)
        self.x, self.y = x, y

    def _count(self) -> int:
        return len(self.y)

    def to(self, device) -> "InMemoryLoader":
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm, bs = self.order(), self.batch_size
        if perm is not None:
            perm = perm.to(self.y.device)
        g = self._generator(self.x.device)
        for i in range(len(self)):
            with one_cpu_thread(self.x.device):
                if perm is None:
                    xb, yb = self.x[i * bs:(i + 1) * bs], self.y[i * bs:(i + 1) * bs]
                else:
                    idx = perm[i * bs:(i + 1) * bs]  # index_select: much faster than x[idx] for whole rows
                    xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
                xb = self._apply(xb, g)
            yield xb, yb


class EpochSampler(torch.utils.data.Sampler):
    """A DataLoader sampler that yields the loader's :meth:`_EpochBatches.order` (the in-memory loader's order)."""

    def __init__(self, batches: "_EpochBatches"):
        self.batches = batches

    def __len__(self) -> int:
        return self.batches.shard_size()

    def __iter__(self):
        order = self.batches.order()
        return iter(range(self.batches._count()) if order is None else order.tolist())


class DeviceLoader(_EpochBatches):
    """The streamed path: a torch DataLoader over a dataset of ``(uint8 image, label)`` pairs, read by worker
    processes into pinned memory, moved to ``device`` and transformed there."""

    def __init__(self, dataset, labels: torch.Tensor, batch_size: int, *, device: torch.device | str = "cpu",
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 epoch: Callable[[], int] | None = None, transform: BatchTransform | None = None,
                 weights: torch.Tensor | None = None, num_workers: int = 0, persistent: bool = True,
                 rank: int = 0, world: int = 1):
        super().__init__(batch_size, shuffle, seed, drop_last, epoch, transform, weights, rank, world)
        self.dataset, self.labels = dataset, labels
        self.device = torch.device(device)
        sampler = EpochSampler(self) if self.shuffle or world > 1 else None
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=persistent and num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None)

    def close(self) -> None:
        """Stop persistent worker processes now (left to the garbage collector, their shutdown can stall for the
        DataLoader's 5 s status interval)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None

    def _count(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator(self.device)
        for xb, yb in self.loader:
            xb = xb.to(self.device, non_blocking=True)
            yield self._apply(xb, g), yb.to(self.device, non_blocking=True)

"""Train/validation/test splits, and the split arithmetic shared by every source.

A split's inputs are either one tensor (N, C, *spatial) — float32, or uint8 pixels that batches turn into floats in
[0, 1] — or, for image folders too large for memory, a dataset of files read by a DataLoader. Normalisation is not
applied to the stored data: its statistics are computed on the training split and applied to every batch on the
device, after augmentation (see :class:`cnnrun.data.loader.BatchTransform`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cnnrun.errors import ConfigError


@dataclass
class Splits:
    """A data set split three ways: inputs and integer labels per split."""

    train_x: Any  # torch.Tensor, or a dataset of files (streamed)
    train_y: torch.Tensor
    val_x: Any
    val_y: torch.Tensor
    test_x: Any
    test_y: torch.Tensor
    num_classes: int
    stats: dict[str, list[float]] = field(default_factory=dict)
    value_range: tuple[float, float] | None = None  # (0, 1) for images; None for unbounded signals
    classes: list[str] | None = None  # class names, where the source has them

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def streamed(self) -> bool:
        """True when the inputs are files read by a DataLoader rather than tensors in memory."""
        return not isinstance(self.train_x, torch.Tensor)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    def class_counts(self, split: str = "train") -> list[int]:
        """Samples per class in ``split`` (train, val or test)."""
        labels = getattr(self, f"{split}_y")
        return torch.bincount(labels.cpu(), minlength=self.num_classes).tolist()

    def normalize(self, max_samples: int = 2048, seed: int = 0) -> None:
        """Compute per-channel mean/std on the training split (all of it in memory; a seeded sample of at most
        ``max_samples`` images when streamed); every batch is then standardised with them."""
        x = self.train_x if not self.streamed else self.train_x.sample_tensor(max_samples, seed)
        mean, std = channel_stats(x)
        self.stats = {"mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std]}


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced" class weights, ``n / (C * n_c)`` with C = ``num_classes`` (``data.balance:
    loss_weights``); a class absent from ``labels`` gets weight 0."""
    from sklearn.utils.class_weight import compute_class_weight  # scikit-learn loads only when a run balances

    y = labels.cpu().numpy()
    present = np.unique(y)
    weights = np.zeros(num_classes)
    # scikit-learn divides by the number of classes present: rescaled to C classes when one is absent
    weights[present] = compute_class_weight("balanced", classes=present, y=y) * len(present) / num_classes
    return torch.from_numpy(weights).float()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1]; float inputs as float32."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).mul_(1.0 / 255.0)
    return x.to(torch.float32)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and (unbiased) standard deviation of (N, C, *spatial) inputs, in float64, two passes over
    chunks of samples so that uint8 data sets are never copied to floats whole."""
    c = x.shape[1]
    count = x.numel() // c
    total = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = to_float(x[start:start + chunk]).double()
        total += part.transpose(0, 1).reshape(c, -1).sum(1)
    mean = total / count
    sq = torch.zeros(c, dtype=torch.float64)
    shape = (1, c) + (1,) * (x.dim() - 2)
    for start in range(0, len(x), chunk):
        part = to_float(x[start:start + chunk]).double() - mean.view(shape)
        sq += part.pow(2).transpose(0, 1).reshape(c, -1).sum(1)
    std = (sq / max(count - 1, 1)).sqrt().clamp_min(1e-8)
    return mean.tolist(), std.tolist()


def stratified_split(labels: np.ndarray, test_fraction: float, val_fraction: float, train_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint, stratified index sets (train, val, test) fixed by ``seed``.

    ``test_fraction`` of all samples is held out; ``val_fraction`` of the rest becomes validation; the training
    split keeps a stratified ``train_fraction`` of what remains. A fraction of 0 holds out nothing.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    rng = np.random.RandomState(seed)

    def cut(idx, frac, key):
        if frac <= 0:
            return idx, idx[:0]
        strat = labels[idx] if min(np.bincount(labels[idx])[np.unique(labels[idx])]) >= 2 else None
        try:
            keep, held = train_test_split(idx, test_size=frac, random_state=rng, stratify=strat)
        except ValueError as err:  # too few samples to give every class a place on both sides
            raise ConfigError(key, f"{frac} of {len(idx)} samples cannot be split stratified over "
                                   f"{len(np.unique(labels[idx]))} classes ({err})") from None
        return np.sort(keep), np.sort(held)

    rest, test = cut(index, test_fraction, "data.test_fraction")
    train, val = cut(rest, val_fraction, "data.val_fraction")
    if train_fraction < 1:
        _, train = cut(train, train_fraction, "data.train_fraction")
    return train, val, test


def long_tail_counts(counts: list[int], ratio: float) -> list[int]:
    """Per-class sample counts of an exponentially long-tailed training set (Cui et al. 2019, Cao et al. 2019):
    class i keeps ``floor(n_max * ratio ** (-i / (C - 1)))`` samples (at least 1, at most what it has), so the
    largest class (0) has ``ratio`` times as many samples as the smallest (C - 1)."""
    c = len(counts)
    n_max = max(counts)
    if ratio == 1 or c < 2:
        return list(counts)
    return [max(1, min(n, int(n_max * ratio ** (-i / (c - 1))))) for i, n in enumerate(counts)]


def long_tail_subset(labels: np.ndarray, index: np.ndarray, num_classes: int, ratio: float, seed: int) -> np.ndarray:
    """A seeded subset of ``index`` (positions into ``labels``) with the long-tailed class counts."""
    counts = np.bincount(labels[index], minlength=num_classes).tolist()
    keep_counts = long_tail_counts(counts, ratio)
    rng = np.random.RandomState(seed)
    kept = []
    for cls, keep in enumerate(keep_counts):
        members = index[labels[index] == cls]
        if keep < len(members):
            members = rng.choice(members, size=keep, replace=False)
        kept.append(members)
    return np.sort(np.concatenate(kept)) if kept else index[:0]

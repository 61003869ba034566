"""Train/validation/test splits held as tensors, and the split arithmetic shared by every source."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cnnrun.errors import ConfigError


@dataclass
class Splits:
    """A data set in memory: inputs (N, C, *spatial) float32 and integer labels, per split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    stats: dict[str, list[float]] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    def normalize(self) -> None:
        """Standardise every split per channel with mean/std computed on the training split only."""
        dims = [0] + list(range(2, self.train_x.dim()))
        mean = self.train_x.mean(dim=dims, dtype=torch.float64)
        std = self.train_x.to(torch.float64).std(dim=dims).clamp_min(1e-8)
        shape = (1, -1) + (1,) * (self.train_x.dim() - 2)
        m, s = mean.float().view(shape), std.float().view(shape)
        for name in ("train_x", "val_x", "test_x"):
            setattr(self, name, (getattr(self, name) - m) / s)
        self.stats = {"mean": [round(v, 6) for v in mean.tolist()], "std": [round(v, 6) for v in std.tolist()]}


def fraction(key: str, value, *, allow_zero: bool, upper_open: bool = False) -> float:
    lo = "[0" if allow_zero else "(0"
    hi = "1)" if upper_open else "1]"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0) and (value < 1 if upper_open else value <= 1)
    if not ok:
        raise ConfigError(key, f"must be a fraction in {lo}, {hi}, got {value!r}")
    return float(value)


def stratified_split(labels: np.ndarray, test_fraction: float, val_fraction: float, train_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint, stratified index sets (train, val, test) fixed by ``seed``.

    ``test_fraction`` of all samples is held out; ``val_fraction`` of the rest becomes validation; the training
    split keeps a stratified ``train_fraction`` of what remains.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    rng = np.random.RandomState(seed)

    def cut(idx, frac):
        if frac <= 0:
            return idx, idx[:0]
        strat = labels[idx] if min(np.bincount(labels[idx])[np.unique(labels[idx])]) >= 2 else None
        keep, held = train_test_split(idx, test_size=frac, random_state=rng, stratify=strat)
        return np.sort(keep), np.sort(held)

    rest, test = cut(index, test_fraction)
    train, val = cut(rest, val_fraction)
    if train_fraction < 1:
        _, train = cut(train, train_fraction)
    return train, val, test

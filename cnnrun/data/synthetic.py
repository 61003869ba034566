"""Synthetic tensors of any shape: a fixed random pattern per class plus Gaussian noise (learnable)."""
from __future__ import annotations

import torch

from cnnrun.errors import ConfigError


def load_synthetic_tensors(input_shape, num_classes: int, num_samples: int, noise: float, seed: int):
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < num_classes:
        raise ConfigError("data.num_samples", f"must be an integer >= data.num_classes ({num_classes}), "
                                              f"got {num_samples!r}")
    if not isinstance(noise, (int, float)) or noise < 0:
        raise ConfigError("data.noise", f"must be a non-negative number, got {noise!r}")
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn((num_classes, *input_shape), generator=g)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=g)]
    x = prototypes[labels] + noise * torch.randn((num_samples, *input_shape), generator=g)
    return x, labels

"""scikit-learn's bundled 8x8 handwritten digits, resized to the configured input shape (no download)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from cnnrun.errors import ConfigError


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def check_shape(input_shape) -> None:
    if isinstance(input_shape, (list, tuple)) and (len(input_shape) != 3 or input_shape[0] not in (1, 3)):
        raise ConfigError("data.input_shape", f"digits are images: use [1, H, W] or [3, H, W], got "
                                              f"{list(input_shape)}")


def load_digits_tensors(input_shape) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, C, H, W) floats in [0, 1] and their labels."""
    check_shape(input_shape)
    images, labels = _raw()
    x = torch.from_numpy(images).unsqueeze(1)
    size = tuple(input_shape[1:])
    if size != (8, 8):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    if input_shape[0] == 3:
        x = x.expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(labels)

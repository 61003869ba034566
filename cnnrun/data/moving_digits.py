"""Moving digits: clips (1, T, H, W) of one of scikit-learn's 8x8 digits (scaled to ``digit_size``) moving in a
straight line across a ``size`` x ``size`` frame, for 3D convolutions. The label is the digit, or the digit and the
direction of motion (``label: digit_direction`` gives ``10 * directions`` classes, digit-major). Everything is
drawn from one generator seeded by ``generator_seed``; clips are stored as uint8 pixels.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cnnrun.errors import ConfigError

# (dy, dx) per direction: right, left, down, up, then the four diagonals
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))
LABELS = ("digit", "digit_direction")


def _int(cfg: dict[str, Any], key: str, minimum: int) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"data.{key}", f"must be an integer >= {minimum}, got {value!r}")
    return value


def params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The generation parameters, checked (ConfigError naming the key)."""
    p = {"frames": _int(cfg, "frames", 2), "size": _int(cfg, "size", 8),
         "digit_size": _int(cfg, "digit_size", 4), "num_samples": _int(cfg, "num_samples", 1),
         "directions": cfg["directions"], "generator_seed": _int(cfg, "generator_seed", 0),
         "label": cfg["label"], "noise": cfg["noise"]}
    speed = cfg["speed"]
    if isinstance(speed, int) and not isinstance(speed, bool):
        speed = [speed, speed]
    if (not isinstance(speed, list) or len(speed) != 2 or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                  for s in speed) or not 1 <= speed[0] <= speed[1]):
        raise ConfigError("data.speed", f"must be pixels per frame: an integer >= 1 or a range [low, high], "
                                        f"got {cfg['speed']!r}")
    p["speed"] = speed
    if p["directions"] not in (4, 8) or isinstance(p["directions"], bool):
        raise ConfigError("data.directions", f"must be 4 (right, left, down, up) or 8 (and the diagonals), "
                                             f"got {p['directions']!r}")
    if p["label"] not in LABELS:
        raise ConfigError("data.label", f"must be one of {', '.join(LABELS)}, got {p['label']!r}")
    noise = p["noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1:
        raise ConfigError("data.noise", f"must be a pixel noise level in [0, 1], got {noise!r}")
    travel = speed[1] * (p["frames"] - 1)
    if p["size"] - p["digit_size"] < travel:
        raise ConfigError("data.size", f"a {p['digit_size']}-pixel digit moving {speed[1]} pixels per frame for "
                                       f"{p['frames']} frames needs a frame of at least "
                                       f"{p['digit_size'] + travel} pixels, got {p['size']}")
    p["num_classes"] = 10 * p["directions"] if p["label"] == "digit_direction" else 10
    p["shape"] = [1, p["frames"], p["size"], p["size"]]
    return p


def check(cfg: dict[str, Any]) -> None:
    p = params(cfg)
    if list(cfg["input_shape"] or []) != p["shape"]:
        raise ConfigError("data.input_shape", f"moving_digits clips are [1, frames, size, size] = {p['shape']}, "
                                              f"got {cfg['input_shape']}")
    if cfg["num_classes"] != p["num_classes"]:
        raise ConfigError("data.num_classes", f"label={p['label']} with {p['directions']} directions gives "
                                              f"{p['num_classes']} classes, got {cfg['num_classes']}")


def render(cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clips uint8 (N, 1, T, S, S), labels, digits, directions), deterministic from ``generator_seed``."""
    from cnnrun.data.digits import _raw

    p = params(cfg)
    images, digit_labels = _raw()
    g = torch.Generator().manual_seed(p["generator_seed"])
    n, t, s, d = p["num_samples"], p["frames"], p["size"], p["digit_size"]
    which = torch.randint(0, len(images), (n,), generator=g)
    glyphs = torch.from_numpy(images)[which].unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    glyphs = F.interpolate(glyphs, size=(d, d), mode="bilinear", align_corners=False).clamp_(0, 1).squeeze(1)
    digits = torch.from_numpy(digit_labels)[which]
    direction = torch.randint(0, p["directions"], (n,), generator=g)
    speed = torch.randint(p["speed"][0], p["speed"][1] + 1, (n,), generator=g)
    step = torch.tensor(DIRECTIONS)[direction] * speed[:, None]  # (N, 2) pixels per frame (dy, dx)
    travel = step * (t - 1)
    # start anywhere the whole path stays inside the frame
    low = (-travel).clamp_min(0)
    high = (s - d) - travel.clamp_min(0)
    start = low + (torch.rand((n, 2), generator=g) * (high - low + 1)).floor().long()
    pos = start[:, None, :] + step[:, None, :] * torch.arange(t)[None, :, None]  # (N, T, 2)
    rows = pos[..., 0, None] + torch.arange(d)  # (N, T, d)
    cols = pos[..., 1, None] + torch.arange(d)
    clips = torch.zeros(n, t, s, s)
    clips[torch.arange(n)[:, None, None, None], torch.arange(t)[None, :, None, None], rows[..., :, None],
          cols[..., None, :]] = glyphs[:, None].expand(n, t, d, d)
    if p["noise"]:
        clips.add_(torch.randn(clips.shape, generator=g), alpha=p["noise"]).clamp_(0, 1)
    clips = clips.mul_(255).round_().to(torch.uint8).unsqueeze(1)
    labels = digits * p["directions"] + direction if p["label"] == "digit_direction" else digits
    return clips, labels.long(), digits.long(), direction


def load(cfg: dict[str, Any]) -> dict[str, Any]:
    clips, labels, _, _ = render(cfg)
    p = params(cfg)
    names = ["right", "left", "down", "up", "down-right", "down-left", "up-right", "up-left"][:p["directions"]]
    classes = ([f"{dg}-{dn}" for dg in range(10) for dn in names] if p["label"] == "digit_direction"
               else [str(dg) for dg in range(10)])
    return {"x": clips, "y": labels, "classes": classes, "value_range": (0.0, 1.0)}

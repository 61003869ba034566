"""On-device augmentation of whole training batches with tensor ops.

Each augmentation draws its random parameters per sample, vectorised, from the generator the loader seeds with
(seed, epoch), and works on a batch (N, C, *spatial) of floats (pixels in [0, 1] for images, before normalisation).
``data.augment`` maps names to arguments and is applied in its order::

    data:
      augment: {crop: {padding: 4}, hflip: {p: 0.5}}

Inputs of rank 1 are signals (N, C, L); rank 2 images (N, C, H, W); rank 3 clips (N, C, T, H, W), whose frames are
all transformed alike (one crop, flip, rotation or erased box per clip). Geometric operations follow torchvision's
conventions (``transforms.v2.functional.affine``, ``RandomErasing``, ``ColorJitter``), which the tests check.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from cnnrun.errors import ConfigError
from cnnrun.checks import choice, int_tuple, positive_float, positive_int, probability
from cnnrun.registry import Registry

# name -> an Augmentation class; its keyword-only ``__init__`` arguments are its config
AUGMENTATIONS = Registry("augmentation", inputs=1, inputs_doc="the sample shape")
RANK_NAMES = {1: "1D signals", 2: "2D images", 3: "3D clips"}


class Augmentation:
    """One batch augmentation. Subclasses check their argument values in ``__init__`` (raising ConfigError named by
    the argument) and transform a float batch in ``__call__``."""

    ranks: tuple[int, ...] = (1, 2, 3)
    doc = ""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)  # (C, *spatial) of one sample
        self.rank = len(shape) - 1
        self.bounds: tuple[float, float] | None = None  # the value range to clamp to, when the data have one

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    # helpers ---------------------------------------------------------------------------------------------------
    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.bounds is None else x.clamp_(*self.bounds)

    @staticmethod
    def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
        return torch.rand(n, generator=g, device=device).mul_(hi - lo).add_(lo)

    @staticmethod
    def _chosen(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
        """Per-sample booleans: True with probability p."""
        return torch.rand(n, generator=g, device=device) < p


def image_view(x: torch.Tensor) -> torch.Tensor:
    """Clips (N, C, T, H, W) as images (N, C*T, H, W), so that every frame is transformed alike; others unchanged."""
    return x.reshape(x.shape[0], -1, *x.shape[-2:]) if x.dim() == 5 else x


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (x.dim() - 1)))


def _pair(key: str, value: Any, *, minimum: float = 0.0) -> tuple[float, float]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not ok or not minimum <= value[0] <= value[1]:
        raise ConfigError(key, f"must be a range [low, high] with {minimum} <= low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def _symmetric(key: str, value: Any) -> tuple[float, float]:
    """A number d (the range [-d, d]) or a range [low, high]."""
    if isinstance(value, (list, tuple)):
        ok = (len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
              and value[0] <= value[1])
        if not ok:
            raise ConfigError(key, f"must be a number d (the range [-d, d]) or a range [low, high], got {value!r}")
        return float(value[0]), float(value[1])
    d = positive_float(key, value, allow_zero=True)
    return -d, d


# -- geometric -------------------------------------------------------------------------------------------------
def _reflected(pos: torch.Tensor, size: int) -> torch.Tensor:
    pos = pos.abs()
    return torch.where(pos >= size, 2 * (size - 1) - pos, pos)


# padding mode -> the position inside [0, size) that a position ``pos`` of the padded image shows
PADDED_SOURCE = {
    "zeros": lambda pos, size: pos.clamp(0, size - 1),  # any inside position: the crop zeroes it
    "reflect": _reflected,
    "replicate": lambda pos, size: pos.clamp(0, size - 1),
    "circular": lambda pos, size: pos.remainder(size),
}


@AUGMENTATIONS.register("crop")
class Crop(Augmentation):
    """Random crop of the original size after padding each image dimension by ``padding``: a random shift by up
    to ``padding`` pixels (the CIFAR recipe's RandomCrop(32, padding=4)). Clips are cropped in H and W only."""

    doc = "random crop after padding: a shift by up to `padding` pixels; padding_mode zeros|reflect|replicate|circular"

    def __init__(self, shape, *, padding: int = 4, padding_mode: str = "zeros"):
        super().__init__(shape)
        self.padding = positive_int("padding", padding, minimum=0)
        self.mode = choice("padding_mode", padding_mode, tuple(PADDED_SOURCE))
        dims = self.shape[1:] if self.rank < 3 else self.shape[-2:]
        if self.mode == "reflect" and self.padding >= min(dims):
            raise ConfigError("padding", f"reflect padding must be smaller than the image size {tuple(dims)}, "
                                         f"got {padding}")

    def __call__(self, x, g):
        p = self.padding
        if p == 0:
            return x
        v = image_view(x)
        n, c, dims, dev = v.shape[0], v.shape[1], v.shape[2:], x.device
        offsets = torch.randint(0, 2 * p + 1, (len(dims), n), generator=g, device=dev)
        # One gather from the unpadded image: each output position reads source position (pos + offset - p),
        # mapped back inside as the padding mode would fill it (F.pad itself is avoided: with several CPU threads
        # it is orders of magnitude slower than this on small batches).
        flat, valid, stride, k = None, None, 1, len(dims)
        for d in reversed(range(k)):
            size = dims[d]
            pos = torch.arange(size, device=dev).view(1, size) + (offsets[d] - p).view(n, 1)
            view = (n,) + (1,) * d + (size,) + (1,) * (k - d - 1)
            if self.mode == "zeros":  # outside positions read the border, then are zeroed
                inside = ((pos >= 0) & (pos < size)).view(view)
                valid = inside if valid is None else valid & inside
            term = (PADDED_SOURCE[self.mode](pos, size) * stride).view(view)
            flat = term if flat is None else flat + term
            stride *= size
        out = v.reshape(n, c, -1).gather(2, flat.reshape(n, 1, -1).expand(n, c, -1))
        if valid is not None:
            out.masked_fill_(~valid.reshape(n, 1, -1), 0.0)
        return out.reshape(x.shape)


@AUGMENTATIONS.register("hflip")
class HorizontalFlip(Augmentation):
    """Mirror the last (width) axis with probability ``p``; for 1D signals this reverses time."""

    doc = "mirror left-right with probability p (reverses 1D signals)"

    def __init__(self, shape, *, p: float = 0.5):
        super().__init__(shape)
        self.p = probability("p", p)

    def __call__(self, x, g):
        return torch.where(_per_sample(self._chosen(len(x), self.p, g, x.device), x), x.flip(-1), x)


@AUGMENTATIONS.register("vflip")
class VerticalFlip(Augmentation):
    """Mirror the height axis with probability ``p``."""

    ranks = (2, 3)
    doc = "mirror top-bottom with probability p"

    def __init__(self, shape, *, p: float = 0.5):
        super().__init__(shape)
        self.p = probability("p", p)

    def __call__(self, x, g):
        return torch.where(_per_sample(self._chosen(len(x), self.p, g, x.device), x), x.flip(-2), x)


def affine_theta(angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, scale: torch.Tensor,
                 shear: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) matrices for ``F.affine_grid(align_corners=False)`` that give torchvision's
    ``affine(img, angle, [tx, ty], scale, [shear, 0])`` about the image centre (angle and shear in degrees,
    translation in pixels): its inverse matrix, rescaled from pixel to normalised coordinates."""
    rot, sx = torch.deg2rad(angle), torch.deg2rad(shear)
    cos, sin, tan = rot.cos(), rot.sin(), sx.tan()
    a, b = cos, -(cos * tan + sin)
    c, d = sin, cos - sin * tan
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    m2 = -m0 * tx - m1 * ty
    m5 = -m3 * tx - m4 * ty
    theta = torch.stack([torch.stack([m0, m1 * height / width, 2 * m2 / width], -1),
                         torch.stack([m3 * width / height, m4, 2 * m5 / height], -1)], -2)
    return theta


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images (N, C, H, W) with per-sample matrices (bilinear, zeros outside)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@AUGMENTATIONS.register("affine")
class Affine(Augmentation):
    """Random rotation, translation, scaling and shear about the centre (torchvision's RandomAffine, bilinear,
    zeros outside), applied with probability ``p``."""

    ranks = (2, 3)
    doc = ("random rotation (degrees), translation (fraction of the size), scale [low, high], x-shear (degrees); "
           "bilinear, applied with probability p")

    def __init__(self, shape, *, degrees: float = 0.0, translate: float = 0.0, scale: Sequence[float] = (1.0, 1.0),
                 shear: float = 0.0, p: float = 1.0):
        super().__init__(shape)
        self.degrees = _symmetric("degrees", degrees)
        t = translate if isinstance(translate, (list, tuple)) else [translate, translate]
        if len(t) != 2:
            raise ConfigError("translate", f"must be a fraction or [fraction_x, fraction_y], got {translate!r}")
        self.translate = tuple(_fraction01("translate", v) for v in t)
        self.scale = _pair("scale", list(scale) if isinstance(scale, tuple) else scale, minimum=1e-6)
        self.shear = _symmetric("shear", shear)
        if max(abs(s) for s in self.shear) >= 90:
            raise ConfigError("shear", f"must stay within (-90, 90) degrees, got {shear!r}")
        self.p = probability("p", p)

    def __call__(self, x, g):
        v = image_view(x)
        n, (h, w), dev = v.shape[0], v.shape[-2:], x.device
        angle = self._uniform(n, *self.degrees, g, dev)
        tx = self._uniform(n, -self.translate[0], self.translate[0], g, dev) * w
        ty = self._uniform(n, -self.translate[1], self.translate[1], g, dev) * h
        scale = self._uniform(n, *self.scale, g, dev)
        shear = self._uniform(n, *self.shear, g, dev)
        if self.p < 1:
            keep = ~self._chosen(n, self.p, g, dev)
            angle, tx, ty, shear = (t.masked_fill(keep, 0.0) for t in (angle, tx, ty, shear))
            scale = scale.masked_fill(keep, 1.0)
        return apply_affine(v, affine_theta(angle, tx, ty, scale, shear, h, w)).reshape(x.shape)


def _fraction01(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(key, f"must be a fraction in [0, 1] of the image size, got {value!r}")
    return float(value)


# -- occlusion ---------------------------------------------------------------------------------------------------
def _box_mask(starts: Sequence[torch.Tensor], sizes: Sequence[torch.Tensor], dims: Sequence[int],
              device) -> torch.Tensor:
    """(N, 1, *dims) booleans: inside the per-sample box [start, start + size) in every dimension."""
    mask = None
    k = len(dims)
    for d, (start, size, length) in enumerate(zip(starts, sizes, dims)):
        pos = torch.arange(length, device=device).view(1, *([1] * d), length, *([1] * (k - d - 1)))
        shape = (-1,) + (1,) * k
        inside = (pos >= start.view(shape)) & (pos < (start + size).view(shape))
        mask = inside if mask is None else mask & inside
    return mask.unsqueeze(1)


@AUGMENTATIONS.register("cutout")
class Cutout(Augmentation):
    """Cutout (DeVries & Taylor 2017): a box of side ``size`` centred anywhere in the image (clipped at the
    border) is set to ``value``, with probability ``p``. A segment for signals, a tube through all frames of clips."""

    doc = "set a size x size box at a random centre (clipped at the border) to value, with probability p"

    def __init__(self, shape, *, size: Any = 8, p: float = 1.0, value: float = 0.0):
        super().__init__(shape)
        self.dims = self.shape[1:] if self.rank < 3 else self.shape[-2:]
        self.size = int_tuple("size", size, len(self.dims))
        self.p = probability("p", p)
        self.value = _number("value", value)

    def __call__(self, x, g):
        v = image_view(x)
        n, dev = v.shape[0], x.device
        centres = [torch.randint(0, length, (n,), generator=g, device=dev) for length in self.dims]
        starts = [c - s // 2 for c, s in zip(centres, self.size)]
        sizes = [torch.full((n,), s, device=dev) for s in self.size]
        mask = _box_mask(starts, sizes, self.dims, dev) & _per_sample(self._chosen(n, self.p, g, dev), v)
        return v.masked_fill(mask, self.value).reshape(x.shape)


@AUGMENTATIONS.register("erasing")
class RandomErasing(Augmentation):
    """Random erasing (Zhong et al. 2020; torchvision's RandomErasing): with probability ``p`` a box covering a
    ``scale`` fraction of the area with aspect ratio in ``ratio`` (log-uniform) is set to ``value``. Where
    torchvision retries a box that does not fit, the box is clipped to the image size."""

    ranks = (2, 3)
    doc = "with probability p, set a box of random area (scale) and aspect ratio (ratio) to value"

    def __init__(self, shape, *, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                 ratio: Sequence[float] = (0.3, 3.3), value: float = 0.0):
        super().__init__(shape)
        self.p = probability("p", p)
        self.scale = _pair("scale", list(scale) if isinstance(scale, tuple) else scale)
        if self.scale[1] > 1:
            raise ConfigError("scale", f"is a fraction of the image area: must lie in [0, 1], got {scale!r}")
        self.ratio = _pair("ratio", list(ratio) if isinstance(ratio, tuple) else ratio, minimum=1e-6)
        self.value = _number("value", value)

    def __call__(self, x, g):
        v = image_view(x)
        n, (h, w), dev = v.shape[0], v.shape[-2:], x.device
        area = self._uniform(n, *self.scale, g, dev) * (h * w)
        aspect = self._uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), g, dev).exp()
        bh = (area * aspect).sqrt().round().clamp(1, h).long()
        bw = (area / aspect).sqrt().round().clamp(1, w).long()
        top = (torch.rand(n, generator=g, device=dev) * (h - bh + 1)).floor().long()
        left = (torch.rand(n, generator=g, device=dev) * (w - bw + 1)).floor().long()
        mask = _box_mask([top, left], [bh, bw], (h, w), dev) & _per_sample(self._chosen(n, self.p, g, dev), v)
        return v.masked_fill(mask, self.value).reshape(x.shape)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, got {value!r}")
    return float(value)


# -- photometric ---------------------------------------------------------------------------------------------------
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, ...) luminance of RGB inputs (torchvision's weights); other channel counts are averaged."""
    if x.shape[1] == 3:
        w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, *([1] * (x.dim() - 2)))
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


@AUGMENTATIONS.register("jitter")
class ColorJitter(Augmentation):
    """Brightness, contrast and saturation jitter (torchvision's ColorJitter formulas, in this fixed order): each
    factor is drawn per sample from [max(0, 1 - v), 1 + v]. Brightness scales the values; contrast blends with the
    sample's mean luminance (per frame for clips); saturation (RGB only) blends with the luminance image."""

    doc = "brightness / contrast / saturation factors drawn from [1 - v, 1 + v] per sample (ColorJitter)"

    def __init__(self, shape, *, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0):
        super().__init__(shape)
        self.brightness = positive_float("brightness", brightness, allow_zero=True)
        self.contrast = positive_float("contrast", contrast, allow_zero=True)
        self.saturation = positive_float("saturation", saturation, allow_zero=True)
        if self.saturation and self.shape[0] != 3:
            raise ConfigError("saturation", f"needs RGB inputs (3 channels), the data have {self.shape[0]}")

    def _factors(self, v: float, n: int, g, x: torch.Tensor) -> torch.Tensor:
        return _per_sample(self._uniform(n, max(0.0, 1 - v), 1 + v, g, x.device), x)

    def __call__(self, x, g):
        n = len(x)
        if self.brightness:
            x = self._clamp(x * self._factors(self.brightness, n, g, x))
        if self.contrast:
            f = self._factors(self.contrast, n, g, x)
            dims = (1, 3, 4) if x.dim() == 5 else tuple(range(1, x.dim()))  # per frame for clips
            mean = grayscale(x).mean(dim=dims, keepdim=True)
            x = self._clamp(f * x + (1 - f) * mean)
        if self.saturation:
            f = self._factors(self.saturation, n, g, x)
            x = self._clamp(f * x + (1 - f) * grayscale(x))
        return x


@AUGMENTATIONS.register("noise")
class GaussianNoise(Augmentation):
    """Additive Gaussian noise of standard deviation ``std`` (in the data's units: pixels in [0, 1]), with
    probability ``p``; images are clipped back to [0, 1]."""

    doc = "add Gaussian noise of standard deviation std, with probability p"

    def __init__(self, shape, *, std: float = 0.05, p: float = 1.0):
        super().__init__(shape)
        self.std = positive_float("std", std, allow_zero=True)
        self.p = probability("p", p)

    def __call__(self, x, g):
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype).mul_(self.std)
        if self.p < 1:
            noise = noise * _per_sample(self._chosen(len(x), self.p, g, x.device), x)
        return self._clamp(x + noise)


# -- the pipeline ----------------------------------------------------------------------------------------------------
class Augment:
    """The configured augmentations, applied in order to a float batch."""

    def __init__(self, ops: list[Augmentation]):
        self.ops = ops

    def __len__(self) -> int:
        return len(self.ops)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for op in self.ops:
            x = op(x, g)
        return x


def build_augment(spec: Any, input_shape: Sequence[int], value_range: tuple[float, float] | None = None,
                  key: str = "data.augment") -> Augment:
    """Check ``spec`` (a mapping name -> arguments; ``{}`` or null: none) against the input shape and build it.
    Raises ConfigError naming ``<key>.<name>`` (or ``<key>.<name>.<argument>``)."""
    if spec is None:
        return Augment([])
    if not isinstance(spec, dict):
        raise ConfigError(key, f"must be a mapping from augmentation name to its arguments, e.g. "
                               f"{{crop: {{padding: 4}}, hflip: {{p: 0.5}}}}, or {{}} for none; got {spec!r}")
    shape = tuple(input_shape)
    rank = len(shape) - 1
    ops = []
    for name, args in spec.items():
        where = f"{key}.{name}"
        entry = AUGMENTATIONS.get(name, path=where)
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise ConfigError(where, f"takes a mapping of arguments (or null for the defaults), got {args!r}")
        ranks = entry.builder.ranks
        if rank not in ranks:
            supported = " and ".join(RANK_NAMES[r] for r in ranks)
            raise ConfigError(where, f"works on {supported}, not on {RANK_NAMES.get(rank, f'rank-{rank} data')} "
                                     f"of shape {shape}")
        op = entry.build(shape, args, path=where, node=True)
        op.bounds = value_range
        ops.append(op)
    return Augment(ops)


def describe() -> dict[str, dict[str, Any]]:
    """Every augmentation's doc, supported ranks and arguments with defaults (for docs and error messages)."""
    out = {}
    for name in AUGMENTATIONS:
        entry = AUGMENTATIONS.get(name)
        out[name] = {"doc": entry.builder.doc, "ranks": list(entry.builder.ranks), "arguments": entry.defaults}
    return out

"""Augmentation arguments whose value the other tests cannot tell from the default: affine's scale, shear and p,
cutout's p and value, erasing's p, and the spread of jitter's brightness, contrast and saturation factors. Each
against torchvision (transforms.v2.functional) or a frequency with a binomial tolerance."""
import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnrun.data.augment import build_augment


def augmented(spec, x, bounds=(0.0, 1.0), seed=0):
    return build_augment(spec, x.shape[1:], bounds)(x.clone(), torch.Generator().manual_seed(seed))


def within_binomial(count, n, p):
    """count of n is a plausible draw of probability p (5 standard deviations)."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("args,reference", [
    ({"scale": [1.5, 1.5]}, {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.5, "shear": [0.0, 0.0]}),
    ({"shear": [20, 20]}, {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [20.0, 0.0]}),
])
def test_affine_scale_and_shear_are_torchvisions(args, reference):
    x = torch.rand(4, 2, 11, 13)
    out = augmented({"affine": args}, x)
    expected = TF.affine(x, **reference, interpolation=TF.InterpolationMode.BILINEAR)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_affine_p_transforms_that_share_of_the_samples():
    x = torch.rand(1000, 1, 9, 9)
    out = augmented({"affine": {"degrees": [90, 90], "p": 0.3}}, x)
    turned = torch.rot90(x, -1, dims=(-2, -1))  # an exact quarter turn (torchvision's direction)
    is_turned = (out - turned).flatten(1).abs().amax(1) < 1e-5
    is_kept = (out - x).flatten(1).abs().amax(1) < 1e-5  # resampled with the identity
    assert bool((is_turned ^ is_kept).all())
    assert within_binomial(int(is_turned.sum()), 1000, 0.3)


def test_cutout_p_and_value():
    x = torch.rand(1000, 1, 12, 12) + 1.0  # no pixel equals the fill value
    out = augmented({"cutout": {"size": 4, "p": 0.3, "value": -2.0}}, x, bounds=None)
    boxed = (out == -2.0).flatten(1).any(1)
    assert torch.equal((out != x).flatten(1).any(1), boxed)  # what changed is set to value
    assert within_binomial(int(boxed.sum()), 1000, 0.3)


def test_erasing_p():
    x = torch.rand(1000, 3, 12, 12) + 1.0
    out = augmented({"erasing": {"p": 0.2}}, x, bounds=None)
    assert within_binomial(int((out != x).flatten(1).any(1).sum()), 1000, 0.2)


def factor(out, x, base):
    """f in out = f x + (1 - f) base, from the pixel farthest from the base (inputs are chosen so nothing clips)."""
    d = (x - base).flatten()
    k = int(d.abs().argmax())
    return float((out - base).flatten()[k] / d[k])


@pytest.mark.parametrize("name,v,base", [
    ("brightness", 0.4, lambda xi: torch.zeros(())),
    ("contrast", 0.5, lambda xi: TF.rgb_to_grayscale(xi).mean()),
    ("saturation", 0.5, lambda xi: TF.rgb_to_grayscale(xi)),
])
def test_jitter_factors_spread_over_one_plus_or_minus_v(name, v, base):
    """ColorJitter draws each sample's factor uniformly from [1 - v, 1 + v]: over 300 samples the factors reach
    close to both ends, and each output is torchvision's adjustment with its factor."""
    torch.manual_seed(0)
    x = torch.rand(300, 3, 6, 6) * 0.4 + 0.3
    out = augmented({"jitter": {name: v}}, x)
    adjust = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
              "saturation": TF.adjust_saturation}[name]
    factors = []
    for o, xi in zip(out, x):
        f = factor(o, xi, base(xi))
        torch.testing.assert_close(o, adjust(xi, f), atol=1e-5, rtol=0)
        factors.append(f)
    assert 1 - v - 1e-4 <= min(factors) < 1 - 0.9 * v and 1 + 0.9 * v < max(factors) <= 1 + v + 1e-4

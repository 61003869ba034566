"""Normalisation, activations, dropout, flatten and fully connected layers."""
from __future__ import annotations

import math

from torch import nn

from cnnrun import checks as A
from cnnrun.layers.registry import register

BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


@register("bn", doc="batch normalisation of the input's rank", section="5.16")
def bn(in_shape, *, eps=1e-5, momentum=0.1, affine=True):
    A.positive_float("eps", eps)
    A.probability("momentum", momentum)
    A.boolean("affine", affine)
    rank = max(len(in_shape) - 1, 1)  # a flat (F,) input normalises features with BatchNorm1d
    return BATCHNORM[rank](in_shape[0], eps=eps, momentum=momentum, affine=affine), in_shape


def _activation(name: str, factory, doc: str):
    register(name, doc=doc, section="5.1.3")(lambda in_shape: (factory(), in_shape))


_activation("relu", nn.ReLU, "rectified linear unit, max(0, x) (formula 5-1)")
_activation("relu6", nn.ReLU6, "ReLU capped at 6, min(max(0, x), 6) (MobileNet)")
_activation("tanh", nn.Tanh, "hyperbolic tangent")
_activation("sigmoid", nn.Sigmoid, "logistic sigmoid")
_activation("gelu", nn.GELU, "Gaussian error linear unit")
_activation("silu", nn.SiLU, "sigmoid-weighted linear unit (swish)")


@register("leaky_relu", doc="leaky ReLU with slope negative_slope below zero", section="5.1.3")
def leaky_relu(in_shape, *, negative_slope=0.01):
    return nn.LeakyReLU(A.positive_float("negative_slope", negative_slope, allow_zero=True)), in_shape


@register("elu", doc="exponential linear unit", section="5.1.3")
def elu(in_shape, *, alpha=1.0):
    return nn.ELU(A.positive_float("alpha", alpha)), in_shape


@register("dropout", doc="element-wise dropout with probability p (generalization, 5.17)", section="5.17")
def dropout(in_shape, *, p=0.5):
    return nn.Dropout(A.probability("p", p)), in_shape


@register("flatten", doc="flatten (C, *spatial) to a vector for fully connected layers", section="5.1.5")
def flatten(in_shape):
    return nn.Flatten(), (math.prod(in_shape),)


@register("linear", doc="fully connected layer on a flat input", section="5.1.5")
def linear(in_shape, *, out_features, bias=True):
    in_features = A.flat_features("linear", in_shape)
    out_features = A.positive_int("out_features", out_features)
    return nn.Linear(in_features, out_features, bias=A.boolean("bias", bias)), (out_features,)


@register("identity", doc="passes its input through unchanged")
def identity(in_shape):
    return nn.Identity(), in_shape


@register("layernorm", doc="layer normalisation over (C, *spatial) with a per-channel scale and shift "
                           "(GroupNorm with one group); over the features of a flat input", section="5.16")
def layernorm(in_shape, *, eps=1e-5, affine=True):
    A.positive_float("eps", eps)
    A.boolean("affine", affine)
    if len(in_shape) == 1:
        return nn.LayerNorm(in_shape[0], eps=eps, elementwise_affine=affine), in_shape
    return nn.GroupNorm(1, in_shape[0], eps=eps, affine=affine), in_shape


@register("groupnorm", doc="group normalisation (num_groups must divide the channels)", section="5.16")
def groupnorm(in_shape, *, num_groups=32, eps=1e-5, affine=True):
    A.spatial_rank("groupnorm", in_shape)
    groups = A.positive_int("num_groups", num_groups)
    if in_shape[0] % groups:
        raise A.ConfigError("num_groups", f"must divide the {in_shape[0]} input channels, got {groups}")
    A.positive_float("eps", eps)
    return nn.GroupNorm(groups, in_shape[0], eps=eps, affine=A.boolean("affine", affine)), in_shape


@register("lrn", doc="local response normalisation across channels, AlexNet's formula and defaults: "
                      "b_c = a_c / (k + alpha * sum of a_j^2 over the size channels around c)^beta", section="5.16")
def lrn(in_shape, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    A.spatial_rank("lrn", in_shape)
    size = A.positive_int("size", size)
    # torch (like Caffe) divides alpha by size; the paper (section 3.3), whose constants are the defaults, does not
    return nn.LocalResponseNorm(size, alpha=A.positive_float("alpha", alpha) * size,
                                beta=A.positive_float("beta", beta), k=A.positive_float("k", k)), in_shape


@register("dropout2d", doc="channel dropout: zeroes whole 2D feature maps with probability p", section="5.17")
def dropout2d(in_shape, *, p=0.5):
    A.spatial_rank("dropout2d", in_shape, ranks=(2,))
    return nn.Dropout2d(A.probability("p", p)), in_shape


@register("dropout3d", doc="channel dropout: zeroes whole 3D feature maps with probability p", section="5.17")
def dropout3d(in_shape, *, p=0.5):
    A.spatial_rank("dropout3d", in_shape, ranks=(3,))
    return nn.Dropout3d(A.probability("p", p)), in_shape


@register("softmax", doc="softmax over the channel (or feature) dimension", section="5.1.5")
def softmax(in_shape):
    return nn.Softmax(dim=1), in_shape

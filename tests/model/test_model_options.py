"""Every model-level hyperparameter of every zoo model (conf/model/*.yaml: dropout, activation, kernel_size,
expansion, norm, clusters, ghost_clusters, vlad_init, levels) reaches the layers it governs: set to a value other
than the file's, the built network shows the new value in those layers and the old one nowhere. The checks read
torch's module attributes (Dropout.p, the activation classes, Conv kernel sizes and channel counts) and the SPP
output length from its formula, C * sum(n^rank) over the levels."""
import functools
import math

import pytest
import torch
from torch import nn

from cnnrun.layers.netvlad import NetVLAD
from cnnrun.model.zoo import zoo_names
from tests.zoo.helpers import meta_model, zoo_spec

DROPOUTS = (nn.Dropout, nn.Dropout2d, nn.Dropout3d)
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh, "elu": nn.ELU}
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def input_shape(name):
    """The model's reference input; images at 64x64, or the model's minimum where larger (the meta device builds
    shapes only)."""
    ref = list(zoo_spec(name)["reference_input"])
    if len(ref) != 3:
        return ref
    low = zoo_spec(name)["min_size"]
    return [ref[0], *[max(64, low if isinstance(low, int) else max(low))] * 2]


def built(name, **hyperparameters):
    return _built(name, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in hyperparameters.items())))


@functools.lru_cache(maxsize=None)  # the default build serves every key of a model; nothing changes a built model
def _built(name, hyperparameters):
    return meta_model(name, input_shape(name), 10, **{k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in hyperparameters})


def of_type(model, types):
    return [m for m in model.modules() if isinstance(m, types)]


def check_dropout(name, default):
    new = 0.37
    before, after = of_type(built(name), DROPOUTS), of_type(built(name, dropout=new), DROPOUTS)
    assert before and len(after) == len(before)
    assert {m.p for m in before} == {default} and {m.p for m in after} == {new}


def check_activation(name, default):
    new = "elu" if default != "elu" else "tanh"
    old_type, new_type = ACTIVATIONS[default], ACTIVATIONS[new]
    before = [type(m) for m in built(name).modules()]
    after = [type(m) for m in built(name, activation=new).modules()]
    assert before.count(old_type) > 0 and new_type not in before
    assert after.count(new_type) == before.count(old_type) and old_type not in after


def kernels(model):
    return [m.kernel_size for m in of_type(model, CONVS)]


def check_kernel_size(name, default):
    new = default + 2
    before, after = kernels(built(name)), kernels(built(name, kernel_size=new))
    rank = len(before[0])
    old_k, new_k = (default,) * rank, (new,) * rank
    assert len(after) == len(before) and new_k not in before
    # the governed convolutions go from the old kernel to the new one; others (a fixed 3x3 stem) keep theirs
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert changed and set(changed) == {(old_k, new_k)}


def expansions(model):
    """The expansion ratio of every MobileNetV2 block that expands: its first 1x1 convolution's out / in channels."""
    ratios = []
    for block in model.modules():
        if type(block).__name__ == "InvertedResidual":
            first = of_type(block, CONVS)[0]
            if first.groups == 1 and set(first.kernel_size) == {1}:
                ratios.append(first.out_channels / first.in_channels)
    return ratios


def check_expansion(name, default):
    new = 4
    before, after = expansions(built(name)), expansions(built(name, expansion=new))
    assert before and len(after) == len(before)
    assert all(math.isclose(r, default, rel_tol=0.05) for r in before)
    assert all(math.isclose(r, new, rel_tol=0.05) for r in after)


def check_norm(name, default):
    assert default == "identity"
    assert not of_type(built(name), nn.LocalResponseNorm)
    assert len(of_type(built(name, norm="lrn"), nn.LocalResponseNorm)) == 2  # after the first two convolutions


def vlad(model):
    (layer,) = of_type(model, NetVLAD)
    return layer


def check_clusters(name, default):
    ghosts = zoo_spec(name)["ghost_clusters"]
    assert vlad(built(name)).centroids.shape[0] == default + ghosts
    assert vlad(built(name, clusters=5)).centroids.shape[0] == 5 + ghosts
    record = next(r for r in built(name, clusters=5).records if r.type == "netvlad")
    assert record.out_shape == (5 * record.in_shape[0],)  # K * D: ghost clusters are dropped from the output


def check_ghost_clusters(name, default):
    clusters = zoo_spec(name)["clusters"]
    assert vlad(built(name)).centroids.shape[0] == clusters + default
    assert vlad(built(name, ghost_clusters=default + 3)).centroids.shape[0] == clusters + default + 3


def check_vlad_init(name, default):
    new = "random" if default == "kmeans" else "kmeans"
    assert vlad(built(name)).init == default and vlad(built(name, vlad_init=new)).init == new


def check_levels(name, default):
    new = [1, 3]
    for levels in (default, new):
        record = next(r for r in built(name, levels=levels).records if r.type == "spp")
        channels, rank = record.in_shape[0], len(record.in_shape) - 1
        assert record.out_shape == (channels * sum(n ** rank for n in levels),)


CHECKS = {"dropout": check_dropout, "activation": check_activation, "kernel_size": check_kernel_size,
          "expansion": check_expansion, "norm": check_norm, "clusters": check_clusters,
          "ghost_clusters": check_ghost_clusters, "vlad_init": check_vlad_init, "levels": check_levels}
# What a model file may declare besides these: its description, its declared input, the size settings (tests/model/
# test_scaling.py, tests/zoo/test_architectures.py) and torchvision weights (tests/zoo/test_torchvision.py).
OTHER_KEYS = {"name", "description", "chapter", "reference_input", "reference_classes", "min_size", "width", "depth",
              "divisor", "init_weights", "layers"}
CASES = [(name, key) for name in zoo_names() for key in zoo_spec(name) if key not in OTHER_KEYS]


def test_every_hyperparameter_of_the_zoo_has_a_check():
    unchecked = sorted({key for _, key in CASES} - set(CHECKS))
    assert not unchecked, f"model-level keys without a check here: {unchecked}"
    assert {key for _, key in CASES} == set(CHECKS)


@pytest.mark.parametrize("name,key", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_a_model_hyperparameter_reaches_every_layer_it_governs(name, key):
    CHECKS[key](name, zoo_spec(name)[key])

"""Start a zoo model from torchvision's weights: a state_dict file on disk (nothing is downloaded).

The name mapping: the zoo's ``alexnet``, ``vgg11``, ``vgg16``, ``resnet18``, ``mobilenet_v2`` and ``googlenet`` are
built layer by layer as torchvision builds them, so both ``state_dict()`` list the same tensors in the same (forward)
order: the i-th tensor of torchvision's network is the i-th tensor of the cnnrun model, e.g. for vgg11
``features.0.weight -> layers.0.0.0.weight`` (the first stage's repeat block) and ``classifier.6.bias ->
layers.18.bias``; for resnet18 ``layer2.0.downsample.0.weight -> layers.5.shortcut.conv.weight``. :func:`key_mapping` returns the whole mapping and
checks it: the same number of tensors, the same kind at each position (``weight``, ``bias``, ``running_mean``, ...)
and, when loading, the same shapes. A model that is not the named architecture at depth 1 (another ``depth``, other
layers) fails that check with the first tensor that differs.

Config (``model.init_weights`` of those zoo models)::

    init_weights: {torchvision: vgg11, path: /data/vgg11-8a719046.pth, strict: true}

``strict: false`` keeps the model's own initialisation for tensors whose shapes differ (a classifier for another
number of classes, a first convolution for grey images, another width) and loads the rest.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from cnnrun.errors import ConfigError, check_keys, did_you_mean

if TYPE_CHECKING:  # torch loads when weights are read: the config check needs none
    import torch
    from torch import nn

# torchvision builder keyword arguments that give the architecture the zoo model reproduces
ARCHS: dict[str, dict[str, Any]] = {
    "alexnet": {},
    "vgg11": {},
    "vgg16": {},
    "resnet18": {},
    "mobilenet_v2": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
}
# tensors of torchvision's published files that the architecture above does not use (GoogLeNet's auxiliary heads)
IGNORED_PREFIXES: dict[str, tuple[str, ...]] = {"googlenet": ("aux1.", "aux2.")}
INIT_KEYS = ("torchvision", "path", "strict")


def check_init_weights(init: Any) -> dict[str, Any]:
    """The checked ``model.init_weights`` mapping: ``{torchvision: arch, path: file or null, strict: bool}``."""
    if not isinstance(init, Mapping):
        raise ConfigError("model.init_weights", f"must be a mapping such as {{torchvision: vgg11, path: "
                                                f"/path/vgg11.pth}}, got {init!r}")
    check_keys(init, INIT_KEYS, "model.init_weights")
    arch = init.get("torchvision")
    if arch not in ARCHS:
        raise ConfigError("model.init_weights.torchvision", f"must be one of {', '.join(ARCHS)}, got {arch!r}"
                                                            f"{did_you_mean(arch, ARCHS)}")
    path = init.get("path")
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError("model.init_weights.path", f"must be a file path or null, got {path!r}")
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError("model.init_weights.path", f"no file at {path}")
    strict = init.get("strict", True)
    if not isinstance(strict, bool):
        raise ConfigError("model.init_weights.strict", f"must be true or false, got {strict!r}")
    return {"torchvision": arch, "path": path, "strict": strict}


def torchvision_keys(arch: str) -> list[str]:
    """The state_dict keys of torchvision's ``arch``, in order (built on the meta device: no memory, no download)."""
    import torch
    import torchvision

    if arch not in ARCHS:
        raise ConfigError("torchvision", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
    with torch.device("meta"):
        reference = getattr(torchvision.models, arch)(weights=None, **ARCHS[arch])
    return list(reference.state_dict())


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def key_mapping(model: nn.Module, arch: str) -> dict[str, str]:
    """The model's state_dict key -> torchvision's key for the same tensor (see the module docstring)."""
    ours, theirs = list(model.state_dict()), torchvision_keys(arch)
    if len(ours) != len(theirs):
        raise ConfigError(None, f"the model has {len(ours)} tensors but torchvision's {arch} has {len(theirs)}: "
                                f"weights load into the zoo model '{arch}' at depth 1 only")
    for i, (mine, other) in enumerate(zip(ours, theirs)):
        if _kind(mine) != _kind(other):
            raise ConfigError(None, f"tensor {i} is the model's {mine} but torchvision's {other}: the model is not "
                                    f"torchvision's {arch}")
    return dict(zip(ours, theirs))


def _read(source: Mapping[str, torch.Tensor] | str | os.PathLike, arch: str) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(source, Mapping):
        state = dict(source)
    else:
        try:
            state = torch.load(Path(source).expanduser(), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:  # torch.load's errors
            raise ConfigError(None, f"cannot read {source} as a state_dict: {err}".split("\n")[0]) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(None, f"{source if not isinstance(source, Mapping) else 'the state_dict'} is not a "
                                f"state_dict (a mapping of names to tensors)")
    ignored = IGNORED_PREFIXES.get(arch, ())
    return {k: v for k, v in state.items() if not k.startswith(ignored)}


def load_torchvision_weights(model: nn.Module, state_dict_or_path: Mapping[str, torch.Tensor] | str | os.PathLike,
                             arch: str, strict: bool = True) -> dict[str, list[str]]:
    """Copy torchvision's ``arch`` weights (a state_dict or a ``.pth`` file of one) into the zoo model ``model``.

    Returns ``{"loaded": [...], "skipped": [...]}`` (the model's keys). With ``strict`` every shape must match;
    otherwise tensors of another shape keep the model's initialisation. Raises ConfigError when the file is not
    torchvision's ``arch`` or the model is not that architecture.
    """
    mapping = key_mapping(model, arch)
    state = _read(state_dict_or_path, arch)
    expected = set(mapping.values())
    missing = [k for k in mapping.values() if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + ("; " if missing and unexpected else "") \
            + (f"unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        raise ConfigError(None, f"the weights are not torchvision's {arch}: {detail}")
    own = model.state_dict()
    loaded, skipped = {}, []
    for mine, theirs in mapping.items():
        if tuple(own[mine].shape) == tuple(state[theirs].shape):
            loaded[mine] = state[theirs]
        elif strict:
            raise ConfigError(None, f"{theirs} has shape {list(state[theirs].shape)} but the model's {mine} has "
                                    f"{list(own[mine].shape)}; set strict: false to keep such tensors as initialised")
        else:
            skipped.append(mine)
    if not loaded:
        raise ConfigError(None, f"no tensor of torchvision's {arch} fits the model")
    model.load_state_dict(loaded, strict=False)
    return {"loaded": list(loaded), "skipped": skipped}

"""Training objectives (the chapter's 5.17 "adjust the objective function") and batch-mixing regularizers.

Every objective takes logits (N, K) and either integer labels (N,) or soft targets (N, K) (from label smoothing,
mixup or cutmix), and returns the mean loss over the batch, weighted per class when ``weight`` is given. Each is a
builder in :data:`LOSSES` (its keyword arguments are the ``loss`` config's settings); users register more there.

- ``cross_entropy``: -sum_k t_k log p_k (``label_smoothing`` mixes the one-hot target with the uniform one).
- ``focal`` (Lin et al. 2017): -sum_k t_k (1 - p_k)^gamma log p_k; gamma = 0 is cross-entropy.
- ``squared``: sum_k (p_k - t_k)^2 on the softmax probabilities, the chapter's f(y, y') = (y - y')^2.
- ``absolute``: sum_k |p_k - t_k|, the chapter's f(y, y') = |y - y'|.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from cnnrun.errors import ConfigError, check_keys
from cnnrun.registry import Registry

if TYPE_CHECKING:  # torch loads when an objective is built: the config checks run before it is imported
    import torch

# name -> builder(**settings) -> loss(logits, y, weight=None); the builder checks its settings' values
LOSSES = Registry("objective")
Objective = Callable[..., "torch.Tensor"]
REGULARIZATION_KEYS = {"l1", "mixup_alpha", "cutmix_alpha", "ema_decay"}


def check_loss_config(cfg: dict[str, Any]) -> None:
    """The ``loss`` config names a known objective, only known keys and valid values (the objective builds)."""
    make_objective(cfg)


def check_regularization_config(cfg: dict[str, Any]) -> None:
    check_keys(cfg, REGULARIZATION_KEYS, "regularization")
    for key in ("l1", "mixup_alpha", "cutmix_alpha"):
        value = cfg[key]
        if not _number(value) or value < 0:
            raise ConfigError(f"regularization.{key}", f"must be a number >= 0, got {value!r}")
    decay = cfg["ema_decay"]
    if decay is not None and (not _number(decay) or not 0 < decay < 1):
        raise ConfigError("regularization.ema_decay", f"must be in (0, 1) or null (off), got {decay!r}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Integer labels -> (N, K) probability targets; soft targets pass through. Smoothing mixes in 1/K."""
    import torch.nn.functional as F

    t = F.one_hot(y, num_classes).float() if y.dim() == 1 else y.float()
    if smoothing > 0:
        t = t * (1 - smoothing) + smoothing / num_classes
    return t


def make_objective(cfg: dict[str, Any]) -> Objective:
    """``loss(logits, y, weight=None)`` for the configured objective (``loss.name``, cross-entropy by default).

    The ``loss`` keys are those of any registered objective, so that a config can switch ``loss.name`` and keep the
    other objectives' settings (focal's ``gamma``): the chosen objective takes the ones it has arguments for.
    """
    entry, settings = _objective(cfg)
    return entry.build(entry.split(settings)[0], path="loss", node=True)


def check_loss_name(cfg: dict[str, Any]) -> None:
    """The objective's name and the names of the ``loss`` settings (their values are checked when it is built)."""
    _objective(cfg)


def _objective(cfg: dict[str, Any]):
    """The registry entry of the objective ``cfg`` names, and the settings (their names checked)."""
    entry = LOSSES.get(cfg["name"], path="loss.name")
    settings = {k: v for k, v in cfg.items() if k != "name"}
    check_keys(settings, {"name", *(a for name in LOSSES for a in LOSSES.get(name).arguments)}, "loss")
    return entry, settings


def _smoothing(value: Any) -> float:
    if not _number(value) or not 0 <= value < 1:
        raise ConfigError("label_smoothing", f"must be in [0, 1), got {value!r}")
    return float(value)


@LOSSES.register("cross_entropy")
def cross_entropy(*, label_smoothing: float = 0.0) -> Objective:
    """-sum_k t_k log p_k, torch's own implementation: class weights and label smoothing exactly as users know
    them."""
    import torch.nn.functional as F

    smoothing = _smoothing(label_smoothing)

    def loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=smoothing)

    return loss


def on_probabilities(per_class: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                     label_smoothing: float) -> Objective:
    """The objective ``sum_k per_class(p, log p, t)_k`` on the softmax probabilities ``p`` and the (smoothed)
    targets ``t``, averaged over the batch; with class weights, each sample weighs its (soft) class's weight,
    normalised as cross-entropy does."""
    import torch.nn.functional as F

    smoothing = _smoothing(label_smoothing)

    def loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        t = soft_targets(y, logits.shape[1], smoothing)
        logp = F.log_softmax(logits.float(), dim=1)
        per_sample = per_class(logp.exp(), logp, t).sum(1)
        if weight is None:
            return per_sample.mean()
        w = t @ weight.float()
        return (per_sample * w).sum() / w.sum()

    return loss


@LOSSES.register("focal")
def focal(*, gamma: float = 2.0, label_smoothing: float = 0.0) -> Objective:
    """Focal loss (Lin et al. 2017): -sum_k t_k (1 - p_k)^gamma log p_k; gamma = 0 is cross-entropy."""
    if not _number(gamma) or gamma < 0:
        raise ConfigError("gamma", f"must be a number >= 0, got {gamma!r}")
    return on_probabilities(lambda p, logp, t: -t * (1 - p).pow(gamma) * logp, label_smoothing)


@LOSSES.register("squared")
def squared(*, label_smoothing: float = 0.0) -> Objective:
    """sum_k (p_k - t_k)^2 on the softmax probabilities: the chapter's f(y, y') = (y - y')^2."""
    return on_probabilities(lambda p, logp, t: (p - t).pow(2), label_smoothing)


@LOSSES.register("absolute")
def absolute(*, label_smoothing: float = 0.0) -> Objective:
    """sum_k |p_k - t_k| on the softmax probabilities: the chapter's f(y, y') = |y - y'|."""
    return on_probabilities(lambda p, logp, t: (p - t).abs(), label_smoothing)


def l1_penalty(module: torch.nn.Module) -> torch.Tensor:
    """sum |W| over the trained weights of convolution (local ones included) and linear layers.

    Those are the layers whose ``weight`` has more than one dimension; biases and normalisation scales (1-D) are
    left out, and so are frozen kernels (``fixed_conv``): they are not learned, so their sum would only add a
    constant to the loss.
    """
    import torch

    terms = [m.weight.abs().sum() for m in module.modules()
             if isinstance(getattr(m, "weight", None), torch.nn.Parameter) and m.weight.dim() > 1
             and m.weight.requires_grad]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float,
              cutmix_alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) on a batch: returns inputs and soft targets.

    When both are on, each batch uses one of them with equal probability (as timm does). CutMix cuts a box from
    the spatial dimensions of any rank (1D, 2D or 3D inputs) and sets lambda to the exact kept fraction.
    """
    import torch

    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand(()).item() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    t = soft_targets(y, num_classes)
    if use_cutmix:
        spatial = x.shape[2:]
        cut = (1 - lam) ** (1 / len(spatial))
        slices = [slice(None), slice(None)]
        pasted = 1.0
        for size in spatial:
            length = int(round(size * cut))
            center = int(torch.randint(size, ()).item())
            lo, hi = max(center - length // 2, 0), min(center + (length - length // 2), size)
            slices.append(slice(lo, hi))
            pasted *= (hi - lo) / size
        x = x.clone()
        x[tuple(slices)] = x[perm][tuple(slices)]
        lam = 1 - pasted
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * t + (1 - lam) * t[perm]

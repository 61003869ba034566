"""Training objectives (the chapter's 5.17 "adjust the objective function") and batch-mixing regularizers.

Every objective takes logits (N, K) and either integer labels (N,) or soft targets (N, K) (from label smoothing,
mixup or cutmix), and returns the mean loss over the batch, weighted per class when ``weight`` is given.

- ``cross_entropy``: -sum_k t_k log p_k (``label_smoothing`` mixes the one-hot target with the uniform one).
- ``focal`` (Lin et al. 2017): -sum_k t_k (1 - p_k)^gamma log p_k; gamma = 0 is cross-entropy.
- ``squared``: sum_k (p_k - t_k)^2 on the softmax probabilities, the chapter's f(y, y') = (y - y')^2.
- ``absolute``: sum_k |p_k - t_k|, the chapter's f(y, y') = |y - y'|.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from cnnrun.errors import ConfigError, check_keys, did_you_mean

LOSSES = ("cross_entropy", "focal", "squared", "absolute")
LOSS_KEYS = {"name", "label_smoothing", "gamma"}
REGULARIZATION_KEYS = {"l1", "mixup_alpha", "cutmix_alpha", "ema_decay"}


def check_loss_config(cfg: dict[str, Any]) -> None:
    name = cfg.get("name")
    if name not in LOSSES:
        raise ConfigError("loss.name", f"unknown objective '{name}'{did_you_mean(name, LOSSES)} "
                                       f"(known: {', '.join(LOSSES)})")
    check_keys(cfg, LOSS_KEYS, "loss")
    ls = cfg.get("label_smoothing", 0.0)
    if not _number(ls) or not 0 <= ls < 1:
        raise ConfigError("loss.label_smoothing", f"must be in [0, 1), got {ls!r}")
    gamma = cfg.get("gamma", 2.0)
    if not _number(gamma) or gamma < 0:
        raise ConfigError("loss.gamma", f"must be a number >= 0, got {gamma!r}")


def check_regularization_config(cfg: dict[str, Any]) -> None:
    check_keys(cfg, REGULARIZATION_KEYS, "regularization")
    for key in ("l1", "mixup_alpha", "cutmix_alpha"):
        value = cfg.get(key, 0.0)
        if not _number(value) or value < 0:
            raise ConfigError(f"regularization.{key}", f"must be a number >= 0, got {value!r}")
    decay = cfg.get("ema_decay")
    if decay is not None and (not _number(decay) or not 0 < decay < 1):
        raise ConfigError("regularization.ema_decay", f"must be in (0, 1) or null (off), got {decay!r}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Integer labels -> (N, K) probability targets; soft targets pass through. Smoothing mixes in 1/K."""
    t = F.one_hot(y, num_classes).float() if y.dim() == 1 else y.float()
    if smoothing > 0:
        t = t * (1 - smoothing) + smoothing / num_classes
    return t


def make_objective(cfg: dict[str, Any]) -> Callable[..., torch.Tensor]:
    """``loss(logits, y, weight=None)`` for the configured objective."""
    name = cfg.get("name", "cross_entropy")
    ls = float(cfg.get("label_smoothing", 0.0))
    gamma = float(cfg.get("gamma", 2.0))

    def loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if name == "cross_entropy":
            # torch's own implementation: class weights and label smoothing exactly as users know them
            return F.cross_entropy(logits, y, weight=weight, label_smoothing=ls)
        t = soft_targets(y, logits.shape[1], ls)
        logp = F.log_softmax(logits.float(), dim=1)
        p = logp.exp()
        if name == "focal":
            per_class = -t * (1 - p).pow(gamma) * logp
        elif name == "squared":
            per_class = (p - t).pow(2)
        else:  # absolute
            per_class = (p - t).abs()
        per_sample = per_class.sum(1)
        if weight is None:
            return per_sample.mean()
        w = t @ weight.float()  # each sample's weight: its (soft) class's weight, normalised as cross-entropy does
        return (per_sample * w).sum() / w.sum()

    return loss


def l1_penalty(module: torch.nn.Module) -> torch.Tensor:
    """sum |W| over the trained weights of convolution (local ones included) and linear layers.

    Those are the layers whose ``weight`` has more than one dimension; biases and normalisation scales (1-D) are
    left out, and so are frozen kernels (``fixed_conv``): they are not learned, so their sum would only add a
    constant to the loss.
    """
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

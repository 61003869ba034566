"""Optimizers and learning-rate schedules from plain config mappings (``optim/``, ``sched/`` groups).

Both are registries (:class:`cnnrun.registry.Registry`): an optimizer is a ``torch.optim`` class whose keyword
arguments are the ``optim`` settings; a schedule is a builder ``(optimizer, total_steps, max_epochs, **settings)`` that
returns Lightning's ``lr_scheduler`` dict (or None). Users register more of either from an ``imports:`` module.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

from cnnrun.errors import ConfigError
from cnnrun.registry import Registry

if TYPE_CHECKING:  # torch loads when an optimizer or a schedule is built: the config checks run before it is imported
    import torch

OPTIMIZERS = Registry("optimizer", inputs=1, inputs_doc="the parameters to optimise")
for _name, _cls in (("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop")):
    OPTIMIZERS.register(_name, f"torch.optim.{_cls}")  # by import path: imported on first use

SCHEDULES = Registry("schedule", inputs=3, inputs_doc="the optimizer, the fit's optimizer steps and its epochs")


def check_optim_names(optim_cfg: dict[str, Any], sched_cfg: dict[str, Any]) -> None:
    """What can be checked without importing torch: the optimizer's name and learning rate, the schedule's name and
    the names of its settings (their values are checked when it is built, :func:`check_schedule`)."""
    _optimizer(optim_cfg)
    entry = SCHEDULES.get(sched_cfg["name"], path="sched.name")
    entry.check_arguments({k: v for k, v in sched_cfg.items() if k != "name"}, path="sched", node=True)


def _optimizer(cfg: dict[str, Any]):
    """The registry entry of the optimizer ``cfg`` names, after checking its learning rate."""
    entry = OPTIMIZERS.get(cfg["name"], path="optim.name")
    lr = cfg.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise ConfigError("optim.lr", f"must be a positive number, got {lr!r}")
    return entry


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """Build the optimizer named by ``cfg['name']`` with the remaining keys as arguments (checked)."""
    entry = _optimizer(cfg)
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    entry.check_arguments(kwargs, path="optim", node=True)
    if isinstance(kwargs.get("betas"), list):
        kwargs["betas"] = tuple(kwargs["betas"])
    try:
        return entry.builder(params, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError("optim", f"{entry.builder.__name__}: {err}") from None


def make_schedule(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], total_steps: int, max_epochs: int):
    """Lightning's ``lr_scheduler`` config dict for the schedule named by ``cfg['name']`` (None for ``none``),
    for a fit of ``total_steps`` optimizer steps over ``max_epochs`` epochs."""
    entry = SCHEDULES.get(cfg["name"], path="sched.name")
    settings = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return entry.build(optimizer, max(int(total_steps), 1), max(int(max_epochs), 1), settings, path="sched",
                           node=True)
    except ConfigError:
        raise
    except ValueError as err:  # torch's own checks (onecycle's pct_start in [0, 1])
        raise ConfigError("sched", f"{entry.name}: {err}") from None


def check_schedule(cfg: dict[str, Any]) -> None:
    """Check the ``sched`` config before training: its name, settings and values (it builds for a throwaway
    optimizer)."""
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
    make_schedule(optimizer, cfg, total_steps=100, max_epochs=10)


def _non_negative(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(key, f"must be a non-negative number, got {value!r}")
    return value


# -- the schedules --------------------------------------------------------------------------------------------------
@SCHEDULES.register("none")
def constant(optimizer, total_steps: int, max_epochs: int) -> None:
    """The learning rate stays optim.lr."""
    return None


@SCHEDULES.register("step")
def step_decay(optimizer, total_steps: int, max_epochs: int, *, step_size: int = 10, gamma: float = 0.1):
    """The learning rate times gamma every step_size epochs."""
    if _non_negative("step_size", step_size) < 1:
        raise ConfigError("step_size", "must be >= 1")
    from torch.optim.lr_scheduler import StepLR

    sched = StepLR(optimizer, step_size=int(step_size), gamma=_non_negative("gamma", gamma))
    return {"scheduler": sched, "interval": "epoch"}


@SCHEDULES.register("onecycle")
def one_cycle(optimizer, total_steps: int, max_epochs: int, *, max_lr_ratio: float = 10.0, pct_start: float = 0.3,
             cycle_momentum: bool = True):
    """Smith's one-cycle policy (torch's OneCycleLR) up to optim.lr * max_lr_ratio, updated every step."""
    if not isinstance(cycle_momentum, bool):
        raise ConfigError("cycle_momentum", f"must be true or false, got {cycle_momentum!r}")
    ratio, pct_start = _non_negative("max_lr_ratio", max_lr_ratio), _non_negative("pct_start", pct_start)
    base = [g["lr"] for g in optimizer.param_groups]
    from torch.optim.lr_scheduler import OneCycleLR

    sched = OneCycleLR(optimizer, max_lr=[b * ratio for b in base], total_steps=total_steps, pct_start=pct_start,
                       cycle_momentum=cycle_momentum)
    return {"scheduler": sched, "interval": "step"}


@SCHEDULES.register("cosine")
def warmup_cosine(optimizer, total_steps: int, max_epochs: int, *, warmup_epochs: float = 0,
                  min_lr_ratio: float = 0.0):
    """Linear warm-up over warmup_epochs, then half a cosine down to min_lr_ratio * optim.lr, updated every step.

    One LambdaLR with the closed formula rather than torch's SequentialLR(LinearLR, CosineAnnealingLR): those
    update the rate recursively (it drifts from the formula in the last bits, ~1e-13 after a few thousand steps),
    their cosine climbs again past ``total_steps`` where this one stays at the floor, and CosineAnnealingLR's
    eta_min is one absolute rate, not a ratio of each parameter group's own.
    """
    warmup = int(round(_non_negative("warmup_epochs", warmup_epochs) * total_steps / max_epochs))
    floor = _non_negative("min_lr_ratio", min_lr_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    from torch.optim.lr_scheduler import LambdaLR

    return {"scheduler": LambdaLR(optimizer, factor), "interval": "step"}

"""Optimizers and learning-rate schedules from plain config mappings (``optim/``, ``sched/`` groups)."""
from __future__ import annotations

import inspect
import math
from typing import Any, Iterable

import torch

from cnnrun.errors import ConfigError, did_you_mean

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop}
SCHEDULES = {"none": {}, "cosine": {"warmup_epochs": 0, "min_lr_ratio": 0.0},
             "step": {"step_size": 10, "gamma": 0.1}, "onecycle": {"max_lr_ratio": 10.0, "pct_start": 0.3, "cycle_momentum": True}}
FLAGS = ("cycle_momentum",)  # schedule settings that are true or false, not numbers


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """Build the optimizer named by ``cfg['name']`` with the remaining keys as arguments (checked)."""
    name = cfg.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError("optim.name", f"unknown optimizer '{name}'{did_you_mean(name, OPTIMIZERS)} "
                                        f"(known: {', '.join(OPTIMIZERS)})")
    cls = OPTIMIZERS[name]
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    lr = kwargs.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise ConfigError("optim.lr", f"must be a positive number, got {lr!r}")
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("params", "self")]
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(f"optim.{key}", f"is not an argument of {cls.__name__}{did_you_mean(key, accepted)} "
                                              f"(valid: {', '.join(accepted)})")
    if isinstance(kwargs.get("betas"), list):
        kwargs["betas"] = tuple(kwargs["betas"])
    try:
        return cls(params, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError("optim", f"{cls.__name__}: {err}") from None


def check_schedule(cfg: dict[str, Any]) -> None:
    name = cfg.get("name")
    if name not in SCHEDULES:
        raise ConfigError("sched.name", f"unknown schedule '{name}'{did_you_mean(name, SCHEDULES)} "
                                        f"(known: {', '.join(SCHEDULES)})")
    for key, value in cfg.items():
        if key == "name":
            continue
        if key not in SCHEDULES[name]:
            raise ConfigError(f"sched.{key}", f"is not a setting of the '{name}' schedule"
                                              f"{did_you_mean(key, SCHEDULES[name])}")
        if key in FLAGS:
            if not isinstance(value, bool):
                raise ConfigError(f"sched.{key}", f"must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"sched.{key}", f"must be a non-negative number, got {value!r}")
    if name == "step" and cfg.get("step_size", 1) < 1:
        raise ConfigError("sched.step_size", "must be >= 1")


def make_schedule(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], total_steps: int, max_epochs: int):
    """Lightning's ``lr_scheduler`` config dict for the schedule (or None for ``none``)."""
    check_schedule(cfg)
    s = {**SCHEDULES[cfg["name"]], **{k: v for k, v in cfg.items() if k != "name"}}
    name = cfg["name"]
    if name == "none":
        return None
    if name == "step":
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(s["step_size"]), gamma=s["gamma"])
        return {"scheduler": sched, "interval": "epoch"}
    total_steps = max(int(total_steps), 1)
    if name == "onecycle":
        base = [g["lr"] for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[b * s["max_lr_ratio"] for b in base],
                                                    total_steps=total_steps, pct_start=s["pct_start"],
                                                    cycle_momentum=s["cycle_momentum"])
        return {"scheduler": sched, "interval": "step"}
    warmup = int(round(s["warmup_epochs"] * total_steps / max(max_epochs, 1)))
    floor = s["min_lr_ratio"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}

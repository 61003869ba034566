"""The ``logger.dashboards`` settings, checked: which dashboards a run writes (:mod:`cnnrun.train.dashboards` writes
them). Apart from the dashboards themselves so that the config checks run before torch and Lightning are imported."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from cnnrun.errors import ConfigError, did_you_mean

PERIODIC = ("filters", "feature_maps", "histograms")
SWITCHES = ("confusion_matrix", "misclassified", "graph")
DEFAULT_EVERY = 5          # the period that ``true`` stands for


@dataclass(frozen=True)
class DashboardPlan:
    """Which dashboards a run writes: periods in epochs (0: off) and on/off switches."""

    filters: int = 0
    feature_maps: int = 0
    histograms: int = 0
    confusion_matrix: bool = False
    misclassified: bool = False
    graph: bool = False

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def _period(key: str, value: Any) -> int:
    """A periodic dashboard's setting -> its period in epochs (0: off)."""
    if isinstance(value, dict):
        extra = [k for k in value if k != "every_n_epochs"]
        if extra:
            hint = did_you_mean(extra[0], ["every_n_epochs"])
            raise ConfigError(f"{key}.{extra[0]}", f"is not a setting of this dashboard{hint} (it takes "
                                                   "every_n_epochs)")
        key, value = f"{key}.every_n_epochs", value.get("every_n_epochs", DEFAULT_EVERY)
    if value is None or value is False:
        return 0
    if value is True:
        return DEFAULT_EVERY
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, f"must be true, false or a number of epochs >= 0 (0: off), got {value!r}")
    return value


def dashboard_plan(logger_cfg: dict[str, Any]) -> DashboardPlan:
    """The checked ``logger.dashboards`` settings; raises ConfigError naming the key at fault."""
    raw = logger_cfg["dashboards"]
    if raw is None or raw is False:
        return DashboardPlan()
    if raw is True:
        raw = {name: True for name in PERIODIC + SWITCHES}
    if not isinstance(raw, dict):
        raise ConfigError("logger.dashboards", f"must be a mapping of dashboard switches, true or false, got {raw!r}")
    known = PERIODIC + SWITCHES
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"logger.dashboards.{key}"
        if key not in known:
            raise ConfigError(path, f"is not a dashboard{did_you_mean(key, known)} (known: {', '.join(known)})")
        if key in PERIODIC:
            values[key] = _period(path, value)
        elif value is None or isinstance(value, bool):
            values[key] = bool(value)
        else:
            raise ConfigError(path, f"must be true or false, got {value!r}")
    return DashboardPlan(**values)

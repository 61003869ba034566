"""Composing and checking run configs. Light: imports Hydra and OmegaConf only."""
from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnrun.errors import ConfigError

CONFIG_MODULE = "cnnrun.conf"  # the config groups: conf/ in the repository, shipped as the package cnnrun.conf


def _config_dir() -> Path:
    """The folder of the config groups, wherever the package cnnrun.conf was installed (or mapped, in editable mode)."""
    from importlib.resources import files

    return Path(str(files(CONFIG_MODULE)))


CONFIG_DIR = _config_dir()
MODES = ("train", "test", "summary", "gallery")


def _uid() -> str:
    return secrets.token_hex(2)


def _number(name: str, value: Any, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and value <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}number, got {value!r}")
    return value


def channels(base: int, width: float = 1.0, divisor: int = 1) -> int:
    """``${cnnrun.ch:64,${model.width}}``: a layer width scaled by the width multiplier, rounded half up.

    With a divisor (``${cnnrun.ch:32,${model.width},8}``) it rounds to the nearest multiple of ``divisor``, never
    below ``divisor`` nor below 90% of ``base * width``: MobileNet's ``make_divisible``.
    """
    value = _number("channels", base) * _number("width", width)
    divisor = int(_number("divisor", divisor))
    if divisor == 1:
        return max(1, math.floor(value + 0.5))
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def repeats(base: int, depth: float = 1.0, written: int = 0) -> int:
    """``${cnnrun.n:2,${model.depth}}``: a repeat count scaled by the depth multiplier, ceil(base * depth), at least
    1; ``written`` blocks of the stage that are written out separately are subtracted (so the count may be 0)."""
    total = max(1, math.ceil(round(_number("repeats", base) * _number("depth", depth), 9)))
    return max(0, total - int(_number("written", written, positive=False)))


def register_resolvers() -> None:
    """Resolvers of cnnrun's configs (registered once per process):

    ``${cnnrun_uid:}``: a short random id, resolved once per process, that keeps same-second runs apart;
    ``${cnnrun.ch:base,width[,divisor]}``: channels times a width multiplier (:func:`channels`);
    ``${cnnrun.n:base,depth[,written]}``: a repeat count times a depth multiplier (:func:`repeats`);
    ``${cnnrun.max:a,b}``: the larger number (MobileNetV2 keeps its last layer at width >= 1).
    """
    if not OmegaConf.has_resolver("cnnrun_uid"):
        OmegaConf.register_new_resolver("cnnrun_uid", _uid, use_cache=True)
    for name, fn in (("cnnrun.ch", channels), ("cnnrun.n", repeats), ("cnnrun.max", max)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def compose(overrides: Sequence[str] = (), config_dir: str | os.PathLike | None = None) -> DictConfig:
    """The config the CLI would run with these overrides (Hydra's compose API).

    ``config_dir`` adds a folder of the user's own configs, as ``--config-dir`` does on the command line.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    overrides = list(overrides)
    if config_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="cnnrun"):
        return hydra_compose(config_name="config", overrides=overrides)


def to_plain(cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved config as plain data; an unresolvable interpolation is a ConfigError naming its key."""
    register_resolvers()
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        raise ConfigError(str(key), str(err).split("\n")[0]) from None
    plain.pop("hydra", None)
    return plain


def check_root(plain: dict[str, Any]) -> None:
    """The root keys: mode, seed, ckpt_path, imports."""
    if plain.get("mode") not in MODES:
        raise ConfigError("mode", f"must be one of {', '.join(MODES)}, got {plain.get('mode')!r}")
    seed = plain.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", f"must be a non-negative integer, got {seed!r}")
    ckpt = plain.get("ckpt_path")
    if plain["mode"] == "test" and not ckpt:
        raise ConfigError("ckpt_path", "mode=test evaluates a checkpoint: set ckpt_path=<run>/checkpoints/best.ckpt")
    if ckpt and not Path(ckpt).is_file():
        raise ConfigError("ckpt_path", f"no checkpoint file at {ckpt}")
    imports = plain.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        raise ConfigError("imports", f"must be a list of module names, got {imports!r}")


def import_user_modules(modules: Sequence[str]) -> None:
    """Import the user's modules (which may register layer types) named by the ``imports`` key."""
    import importlib

    for i, name in enumerate(modules):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"imports[{i}]", f"cannot import '{name}': {err}") from None


def run_dir_and_overrides(output_dir: str | os.PathLike | None) -> tuple[Path, list[str]]:
    """The run folder (Hydra's job folder under the CLI) and this job's command-line overrides."""
    from hydra.core.hydra_config import HydraConfig

    overrides: list[str] = []
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        if output_dir is None:
            output_dir = hc.runtime.output_dir
    if output_dir is None:
        import datetime

        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        output_dir = Path("outputs") / "runs" / f"{stamp}_{_uid()}"
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path, overrides

"""Composing and checking run configs. Light: imports Hydra and OmegaConf only."""
from __future__ import annotations

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


def register_resolvers() -> None:
    """``${cnnrun_uid:}``: a short random id, resolved once per process, that keeps same-second runs apart."""
    if not OmegaConf.has_resolver("cnnrun_uid"):
        OmegaConf.register_new_resolver("cnnrun_uid", _uid, use_cache=True)


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

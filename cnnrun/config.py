"""Composing and checking run configs. Light: imports Hydra and OmegaConf only."""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue, OmegaConfBaseException

from cnnrun.errors import ConfigError, close_matches, did_you_mean, one_line

CONFIG_MODULE = "cnnrun.conf"  # the config groups: conf/ in the repository, shipped as the package cnnrun.conf


def _config_dir() -> Path:
    """The folder of the config groups, wherever the package cnnrun.conf was installed (or mapped, in editable mode)."""
    from importlib.resources import files

    return Path(str(files(CONFIG_MODULE)))


CONFIG_DIR = _config_dir()
MODES = ("train", "test", "summary", "gallery")


def _uid() -> str:
    return secrets.token_hex(2)


def folder_classes(root: str) -> int:
    """``${cnnrun.folder_classes:${data.root}}``: the number of class subfolders of an image folder."""
    from cnnrun.data.image_folder import folder_num_classes  # torch: only when an image folder is resolved

    return folder_num_classes(root)


def folder_channels(root: str) -> int:
    """``${cnnrun.folder_channels:${data.root}}``: 1 when the folder's images are all grey, else 3."""
    from cnnrun.data.image_folder import folder_num_channels  # torch: only when an image folder is resolved

    return folder_num_channels(root)


def register_with_hydra() -> None:
    """What Hydra needs to compose cnnrun's configs (registered once per process): the schema of every config group
    (:mod:`cnnrun.schema`), and the resolvers

    ``${cnnrun_uid:}``: a short random id, resolved once per process, that keeps same-second runs apart;
    ``${cnnrun.folder_classes:root}``, ``${cnnrun.folder_channels:root}``: what an image folder holds (read once
    per config).
    """
    from cnnrun.names import register_name_resolvers
    from cnnrun.schema import register_schemas

    register_schemas()
    register_name_resolvers()  # ${cnnrun.run_name:}, ${cnnrun.job_name:...} in conf/hydra/default.yaml
    if not OmegaConf.has_resolver("cnnrun_uid"):
        OmegaConf.register_new_resolver("cnnrun_uid", _uid, use_cache=True)
    for name, fn in (("cnnrun.folder_classes", folder_classes), ("cnnrun.folder_channels", folder_channels)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


def compose(overrides: Sequence[str] = (), config_dir: str | os.PathLike | None = None) -> DictConfig:
    """The config the CLI would run with these overrides (Hydra's compose API).

    ``config_dir`` adds a folder of the user's own configs, as ``--config-dir`` does on the command line.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_with_hydra()
    overrides = list(overrides)
    if config_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="cnnrun"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except Exception as err:
        error = composition_error(err)
        if error is None:
            raise
        raise error from err
    with open_dict(cfg):  # the command line of this config, as a Hydra job has it (read by command_line())
        cfg.hydra = {"overrides": {"task": [o for o in overrides if not o.startswith("hydra.")]}}
    return cfg


def command_line(cfg: DictConfig | dict | None = None) -> list[str]:
    """The overrides a config was made with: the running Hydra job's (the CLI), else those that :func:`compose` kept
    in the config (the Python API), else none."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return [str(o) for o in HydraConfig.get().overrides.task]
    node = OmegaConf.select(cfg, "hydra.overrides.task", default=None) if isinstance(cfg, DictConfig) else None
    return [str(o) for o in OmegaConf.to_container(node, resolve=False)] if node is not None else []


def to_plain(cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved config as plain data; an unresolvable interpolation is a ConfigError naming its key (the key
    the user must set, when a value is missing)."""
    register_with_hydra()
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    if "hydra" in cfg:  # Hydra's own settings (or compose()'s record of the command line) are not the run's
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise _resolution_error(cfg, err) from None
    return plain


def _resolution_error(cfg: DictConfig, err: OmegaConfBaseException) -> ConfigError:
    """The user's mistake behind a failed resolution: a ConfigError raised by a resolver (an image folder that is
    not there), the keys still '???' (whichever interpolation reached them first), or the failing key."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ConfigError):  # OmegaConf wraps a resolver's error
        cause = cause.__context__
    if cause is not None:
        return cause
    missing = list(missing_keys(cfg)) if isinstance(err, (MissingMandatoryValue,
                                                           InterpolationToMissingValueError)) else []
    if missing:
        others = f"; {', '.join(missing[1:])} too" if missing[1:] else ""
        return ConfigError(missing[0], f"has no value ('???' in the config): set it, e.g. {missing[0]}=...{others}")
    return ConfigError(str(getattr(err, "full_key", None) or "config"), str(err).split("\n")[0])


def missing_keys(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    """The full keys whose value is '???' (mandatory, not set), in config order; nothing is resolved."""
    is_dict = isinstance(node, DictConfig)
    for key in node.keys() if is_dict else range(len(node)):
        path = (f"{prefix}.{key}" if prefix else str(key)) if is_dict else f"{prefix}[{key}]"
        if OmegaConf.is_missing(node, key):
            yield path
        elif not OmegaConf.is_interpolation(node, key) and OmegaConf.is_config(node[key]):
            yield from missing_keys(node[key], path)


# -- Hydra's composition errors as one ConfigError -----------------------------------------------------------------
def composition_error(err: BaseException) -> ConfigError | None:
    """The user's mistake behind an error Hydra raised while composing a config, as one ConfigError (a one-line
    message); None when ``err`` is not a composition error.

    A YAML syntax error or unknown tag is located as ``<file>:<line>:<column>``; a misspelled group option or key
    gets the closest existing one.
    """
    from hydra.errors import (HydraException, MissingConfigException, OverrideParseException,
                              SearchPathException)

    located = _yaml_cause(err)
    if located is not None:
        return _yaml_error(located)
    if isinstance(err, MissingConfigException):
        return _missing_option(err)
    if isinstance(err, OverrideParseException):
        key = err.override.partition("=")[0] or err.override
        return ConfigError(key, f"cannot parse '{err.override}': {err.message.splitlines()[0]}")
    if isinstance(err, SearchPathException):
        return ConfigError("--config-dir", one_line(str(err)))
    typed = _type_error(err)
    if typed is not None:
        return typed
    appended = re.match(r"Could not append to config\. An item is already at '([^']+)'", str(err))
    if appended:
        return ConfigError(appended.group(1), f"exists already: set it without the '+' "
                                              f"({appended.group(1)}=...)")
    if isinstance(err, HydraException):
        unknown = _unknown_key(err)
        return unknown if unknown is not None else ConfigError(None, one_line(str(err)))
    if isinstance(err, (OmegaConfBaseException, yaml.YAMLError)):
        return ConfigError(getattr(err, "full_key", None) or None, one_line(str(err)))
    return None


# What a value that the schema (cnnrun/schema.py) refuses must be, by the type OmegaConf could not convert it to
_TYPE_NAMES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _type_error(err: BaseException) -> ConfigError | None:
    """A value of the wrong type for its key (``optim.lr=abc``), as the schema refused it while Hydra composed the
    config: the key's path and what it must be; None when ``err`` is not that."""
    from omegaconf.errors import ValidationError

    seen: BaseException | None = err
    while seen is not None and not (isinstance(seen, ValidationError) and getattr(seen, "full_key", None)):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    first = str(seen).split("\n")[0]
    converted = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", first)
    if converted:
        what = _TYPE_NAMES.get(converted.group(2), converted.group(2))
        return ConfigError(seen.full_key, f"must be {what}, got '{converted.group(1)}'")
    boolean = re.match(r"Value '(.*)' is not a valid bool", first)
    if boolean:
        return ConfigError(seen.full_key, f"must be true or false, got '{boolean.group(1)}'")
    if re.match(r"field '.*' is not Optional", first) or "Incompatible value 'None'" in first:
        return ConfigError(seen.full_key, "cannot be null")
    return ConfigError(seen.full_key, first)


def _yaml_cause(err: BaseException):
    """The YAML error with a file position behind ``err`` (itself, or what it was raised from), else None."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, yaml.MarkedYAMLError) and (seen.problem_mark or seen.context_mark):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _yaml_error(err) -> ConfigError:
    """``<file>:<line>:<column>`` (1-based, where PyYAML found the problem) and what is wrong there."""
    mark = err.problem_mark or err.context_mark
    what = err.problem or err.context or "invalid YAML"
    tag = re.search(r"constructor for the tag '([^']+)'", what)
    if tag:  # OmegaConf's loader is PyYAML's safe loader: a tag that would build an object is refused here
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        what = f"unknown YAML tag '{name}' (a config holds plain data: no tags that build objects)"
    elif err.context and err.context_mark and err.problem:
        what += f", {err.context} that starts at line {err.context_mark.line + 1}, column " \
                f"{err.context_mark.column + 1}"
    return ConfigError(f"{mark.name}:{mark.line + 1}:{mark.column + 1}", what)


def _missing_option(err) -> ConfigError:
    """``model=lenet``: the group, its options and the closest one."""
    group, _, option = err.missing_cfg_file.rpartition("/")
    if not group:
        return ConfigError("--config-name", f"no config named '{option}' in the config search path")
    # Hydra lists the options of a single choice; for a list of choices (generalization=[a,b]) they are read from
    # the folders of the search path that its message names
    options = err.options if err.options is not None else sorted(
        {p.stem for root in re.findall(r"path=file://(\S+)", str(err)) for p in Path(root, group).glob("*.yaml")})
    listed = f" (options: {', '.join(options)})" if options else ""
    where = re.match(r"In '([^']+)':", str(err))
    inside = f" in the defaults list of {where.group(1)}" if where and where.group(1) not in (
        "config", "hydra/config") else ""
    return ConfigError(group, f"unknown option '{option}'{inside}{did_you_mean(option, options, n=1)}{listed}")


def _unknown_key(err: BaseException) -> ConfigError | None:
    """``trainer.max_epoch=3``: the closest existing key (``trainer.max_epochs``) rather than Hydra's advice to add
    a new key with ``+``; None when ``err`` is not an override of a key that does not exist."""
    cause = err.__cause__
    node, failed = getattr(cause, "parent_node", None), getattr(cause, "full_key", None)
    written = re.match(r"Could not override '([^']+)'", str(err))
    if not written or not isinstance(node, (DictConfig, ListConfig)) or not failed:
        return None
    key = written.group(1)
    parts = key.split(".")
    depth = len(re.sub(r"\[(\d+)\]", r".\1", str(failed)).split(".")) - 1  # of the first part that is not there
    fixed = _closest_path(node, parts[depth:])
    hint = f"; did you mean '{'.'.join([*parts[:depth], fixed])}'?" if fixed else \
        f" (to add a new key, write +{key}=...)"
    return ConfigError(key, f"unknown key{hint}")


def _closest_path(node: Any, parts: list[str]) -> str | None:
    """``parts`` (a dotted key below ``node``) with every part that is not there replaced by the closest existing
    key; None when a part has nothing close."""
    fixed = []
    for i, part in enumerate(parts):
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            name, child = part, int(part)
        elif isinstance(node, DictConfig):
            name = part if part in node else next(iter(close_matches(part, node.keys(), n=1)), None)
            child = name
        else:
            return None
        if name is None:
            return None
        fixed.append(name)
        if i < len(parts) - 1:
            try:
                node = node[child]
            except OmegaConfBaseException:  # an interpolation that does not resolve yet: no suggestion
                return None
    return ".".join(fixed)


def check_root(plain: dict[str, Any]) -> None:
    """The root keys: mode, seed, ckpt_path, imports."""
    if plain["mode"] not in MODES:
        raise ConfigError("mode", f"must be one of {', '.join(MODES)}, got {plain['mode']!r}")
    seed = plain["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", f"must be a non-negative integer, got {seed!r}")
    ckpt = plain["ckpt_path"]
    if plain["mode"] == "test" and not ckpt:
        raise ConfigError("ckpt_path", "mode=test evaluates a checkpoint: set ckpt_path=<run>/checkpoints/best.ckpt")
    if ckpt and not Path(ckpt).is_file():
        raise ConfigError("ckpt_path", f"no checkpoint file at {ckpt}")
    imports = plain["imports"]
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

"""What a run is called (``conf/hydra/default.yaml``): a single run's folder ends in its model and data
(``..._lenet5-digits``), a sweep job's folder is its number and the overrides that tell it apart from the sweep's
other jobs (``3_optim.lr=0.01,seed=2``), made safe for every file system; the same overrides name the run in
TensorBoard's HPARAMS tab. Light module: Hydra and OmegaConf only.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def hydra_job() -> tuple[bool, DictConfig | None]:
    """(whether this is a job of a sweep, Hydra's config of the running job); (False, None) outside the CLI."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, None
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN, hydra


# -- names ----------------------------------------------------------------------------------------------------------
# The readable part of a folder name: whole paths stay far below the usual limits (255 bytes a name, 4096 a path).
NAME_LIMIT = 80
_FLOAT = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?(?![\w.])")
_DROPPED = re.compile(r"[\[\]{}()'\"]")  # list and quoting syntax of Hydra's override grammar
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@%~-]+")  # separators, spaces, and what shells and globs read specially
_STAMPED = re.compile(r"(?P<stamp>\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]+)_(?P<name>.+)")  # hydra.run.dir's names


def short_number(value: float) -> str:
    """A number to 4 significant digits: 0.012345678 -> 0.01235, 0.1 -> 0.1, 1e-05 -> 1e-05."""
    return f"{value:.4g}"


def short_floats(text: str) -> str:
    """``text`` with every decimal number in it rounded to 4 significant digits (integers stay as they are)."""
    return _FLOAT.sub(lambda m: short_number(float(m.group())), text)


def safe_name(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as part of one folder name: numbers to 4 significant digits, brackets and quotes dropped, characters
    unsafe in paths replaced by '-', and at most ``limit`` characters; a longer name keeps its beginning and ends in
    a hash of the whole text, so that two long names stay apart."""
    name = _UNSAFE.sub("-", _DROPPED.sub("", short_floats(text))).strip(".-")
    if len(name) > limit:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = f"{name[:limit - len(digest) - 1].rstrip('.-')}-{digest}"
    return name


def override_key(override: str) -> str:
    """The config key (or group) of a ``key=value`` override, without Hydra's ``+``, ``++`` and ``~`` prefixes."""
    return override.lstrip("+~").split("=", 1)[0]


# multirun.yaml's text -> the keys its sweep varies: every job reads them twice (its folder's name, its HPARAMS),
# and parsing the file costs about 0.05 s; keyed by the text, so that a new sweep's file is never read stale.
_swept_by_text: dict[str, frozenset[str]] = {}


def swept_keys(sweep_dir: Path) -> set[str] | None:
    """The keys a sweep varies: those given more than one value on its command line (``optim.lr=0.1,0.01``, a
    range, an Optuna interval) and those of its sweeper's ``params``, read from the ``multirun.yaml`` that Hydra's
    sweepers write before the first job; None without a readable one."""
    try:
        text = (Path(sweep_dir) / "multirun.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # missing
        return None
    if text not in _swept_by_text:
        try:
            master = OmegaConf.create(text)
        except Exception:  # another sweeper's layout
            return None
        _swept_by_text.clear()  # one sweep at a time
        _swept_by_text[text] = frozenset(_parse_swept_keys(master))
    return set(_swept_by_text[text])


def _parse_swept_keys(master: DictConfig) -> set[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [str(o) for o in OmegaConf.select(master, "hydra.overrides.task", default=None) or []]
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None) or {}
    lines += [f"{key}={value}" for key, value in params.items()]
    keys = set()
    for line in lines:
        try:
            swept = parser.parse_override(line).is_sweep_override()
        except Exception:  # a sweeper's own syntax: its params are what it sweeps
            swept = True
        if swept:
            keys.add(override_key(line))
    return keys


def naming_overrides(hydra: DictConfig, sweep_dir: Path | None) -> list[str]:
    """The overrides that tell a run apart, sorted by key: a sweep job's (``sweep_dir`` given) values of the keys its
    sweep varies, a single run's whole command line; without the keys that Hydra's
    ``hydra.job.config.override_dirname.exclude_keys`` leaves out of names."""
    exclude = set(OmegaConf.select(hydra, "job.config.override_dirname.exclude_keys", default=None) or [])
    swept = swept_keys(sweep_dir) if sweep_dir is not None else None
    overrides = [str(o) for o in hydra.overrides.task]
    chosen = [o for o in overrides if override_key(o) not in exclude and (swept is None or override_key(o) in swept)]
    return sorted(chosen, key=override_key)


def job_folder_name(num: Any, *, _root_: DictConfig) -> str:
    """``${cnnrun.job_name:${hydra.job.num}}``: a sweep job's folder, ``<num>_<overrides that vary>`` (``<num>`` when
    none do), joined as Hydra's override_dirname joins them. The same command gives the same names."""
    hydra = _root_.hydra
    separators = hydra.job.config.override_dirname
    overrides = naming_overrides(hydra, Path(str(hydra.sweep.dir)))
    name = safe_name(str(separators.item_sep).join(o.replace("=", str(separators.kv_sep), 1) for o in overrides))
    return f"{num}_{name}" if name else str(num)


def run_folder_name(*, _root_: DictConfig) -> str:
    """``${cnnrun.run_name:}``: what a single run's folder name ends in: its model and data option
    (``lenet5-digits``), and its mode unless it trains (``lenet5-digits-summary``)."""
    choices = OmegaConf.select(_root_, "hydra.runtime.choices", default=None) or {}
    mode = OmegaConf.select(_root_, "mode", default="train")
    parts = [choices.get("model"), choices.get("data"), None if mode == "train" else mode]
    return safe_name("-".join(str(p) for p in parts if p))


def register_name_resolvers() -> None:
    """The resolvers of ``conf/hydra/default.yaml``'s folder names (once per process)."""
    for name, fn in (("cnnrun.job_name", job_folder_name), ("cnnrun.run_name", run_folder_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def session_name(run_dir: Path) -> str:
    """The run's name in TensorBoard's HPARAMS table, its distinctive part first (the table shows a name's first
    characters): a sweep job's folder, then its sweep's (``3_optim.lr=0.01,seed=2 · 2026-11-30_06-40-12_ab12``); a
    single run's model and data, then its time and id (``lenet5-digits · 2026-11-30_06-40-12_ab12``)."""
    run_dir = Path(run_dir)
    if hydra_job()[0]:
        return f"{run_dir.name} · {run_dir.parent.name}"
    stamped = _STAMPED.fullmatch(run_dir.name)
    return f"{stamped['name']} · {stamped['stamp']}" if stamped else run_dir.name


def run_overrides() -> list[str]:
    """The running job's :func:`naming_overrides` (none outside the CLI: a run of the Python API has no command
    line)."""
    multirun, hydra = hydra_job()
    if hydra is None:
        return []
    return naming_overrides(hydra, Path(hydra.runtime.output_dir).parent if multirun else None)

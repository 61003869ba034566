"""Reading a sweep's run folders: its jobs (``metrics.json``, Hydra's ``overrides.yaml``, ``config.yaml``), grouped
into configurations, and which configuration each one is compared with.

A job's configuration is its generalization method and its overrides other than the seed, without the overrides
every job of the sweep shares. Jobs that died before writing ``metrics.json`` are read as ``unfinished``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cnnrun.generalization import effective_config
from cnnrun.record import RECORD_FILE, RunRecord, started_with

AS_CONFIGURED = "as configured"  # the label of the configuration whose jobs share every override but the seed


@dataclass
class Job:
    """One job's folder and what it recorded."""

    dir: Path
    record: RunRecord
    overrides: list[str]
    seed: Any
    config: str  # the job's configuration: its method and its overrides other than the seed
    method: str | None  # None: no generalization method chosen (the configs' own recipe)
    others: str  # the overrides that are neither the seed nor the generalization method
    effective: str | None = None  # fingerprint of the effective config (config.yaml), None without one

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def metrics(self) -> dict[str, float]:
        return self.record.metrics


@dataclass
class Group:
    """The jobs of one configuration (one per seed)."""

    config: str
    method: str | None
    others: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def effective(self) -> set[str]:
        return {j.effective for j in self.jobs if j.effective}

    @property
    def ok(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "completed" and "test/acc" in j.metrics]

    def values(self, metric: str) -> dict[Any, float]:
        """Seed -> ``metric`` of the completed jobs that recorded it."""
        return {j.seed: float(j.metrics[metric]) for j in self.ok if j.metrics.get(metric) is not None}


# -- reading ------------------------------------------------------------------------------------------------------
def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _is_seed(override: str) -> bool:
    return _key(override) == "seed"


def _is_method(override: str) -> bool:
    return _key(override) == "generalization"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders: those with Hydra's ``.hydra`` record or a ``metrics.json`` (at any depth; a temporary file of
    an interrupted write has another name)."""
    found = {p.parent for p in sweep_dir.rglob(RECORD_FILE)}
    found |= {p.parent for p in sweep_dir.rglob(".hydra") if (p / "overrides.yaml").exists()}
    found.discard(sweep_dir)
    return sorted(found, key=lambda p: [_by_number(part) for part in p.relative_to(sweep_dir).parts])


def _by_number(name: str) -> tuple[int, int, str]:
    """Sort key of a folder name: by its leading job number (``2_...`` before ``10_...``), numbered ones first."""
    number = re.match(r"\d+", name)
    return (0, int(number.group()), name) if number else (1, 0, name)


def read_job(job_dir: Path) -> Job:
    """The job in ``job_dir``, labelled by its method and all its overrides but the seed."""
    record = RunRecord.read(job_dir)  # unfinished (no metrics.json) or unreadable ones included
    overrides = started_with(job_dir, record)
    others = [o for o in overrides if not _is_seed(o) and not _is_method(o)]
    seed = record.seed
    if seed is None:
        seed = next((o.split("=", 1)[1] for o in overrides if _is_seed(o)), None)
    method = record.method or next((o.split("=", 1)[1] for o in overrides if _is_method(o)), None)
    job = Job(job_dir, record, overrides, seed, "", method, " ".join(others), effective_fingerprint(job_dir))
    job.config = _label(job)
    return job


def _label(job: Job, with_method: bool = True) -> str:
    """The configuration's name in the tables: its method (unless every job has the same) and the overrides that
    vary."""
    return " ".join(filter(None, [job.method if with_method else None, job.others])) or AS_CONFIGURED


@dataclass(frozen=True)
class ConfigFacts:
    """What the report takes from a job's ``config.yaml``."""

    fingerprint: str | None = None  # of the effective config (None without a readable config.yaml)
    descriptions: dict[str, str] = field(default_factory=dict)  # generalization method -> its description


# config.yaml's text (by its digest) -> its facts. The report is rebuilt after every job of a sweep (in each process
# that runs jobs): without this, every refresh parsed every job's config.yaml again (YAML parsing is slow), and a
# sweep's refresh grew with its number of jobs. Keyed by content, so a rewritten file is never read stale.
_facts_by_text: dict[str, ConfigFacts] = {}
_MAX_CACHED = 50_000  # configs; far more than a sweep's jobs, and a few megabytes


def config_facts(job_dir: Path) -> ConfigFacts:
    """The facts of the job's ``config.yaml``: empty without one, or when a killed job left half a file."""
    try:
        text = (job_dir / "config.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ConfigFacts()
    digest = hashlib.sha1(text.encode()).hexdigest()
    facts = _facts_by_text.get(digest)
    if facts is None:
        if len(_facts_by_text) >= _MAX_CACHED:
            _facts_by_text.clear()
        facts = _facts_by_text[digest] = _parse_facts(text)
    return facts


def _parse_facts(text: str) -> ConfigFacts:
    """config.yaml is resolved plain data written by OmegaConf: read as plain YAML, with libyaml where PyYAML has it
    (2 ms instead of OmegaConf's 30 ms, once per job of a sweep), as resuming reads it."""
    import yaml

    try:
        config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:  # a half-written file from a killed job
        return ConfigFacts()
    if not isinstance(config, dict):
        return ConfigFacts()
    return ConfigFacts(_fingerprint(config), _descriptions(config))


def _fingerprint(plain: dict[str, Any]) -> str:
    """A short hash of the effective config (config.yaml without seed and run-specific keys)."""
    text = json.dumps(effective_config(plain), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _descriptions(config: dict[str, Any]) -> dict[str, str]:
    """generalization.<name>.description of a resolved config."""
    out: dict[str, str] = {}
    for name, params in (config.get("generalization") or {}).items():
        if isinstance(params, dict):
            desc = params.get("description")
            if desc:
                out[str(name)] = str(desc)
    return out


def effective_fingerprint(job_dir: Path) -> str | None:
    """A short hash of the job's effective config (its config.yaml without seed and run-specific keys)."""
    return config_facts(job_dir).fingerprint


def method_descriptions(jobs: Sequence[Job]) -> dict[str, str]:
    """Method descriptions from the jobs' resolved configs (config.yaml: generalization.<name>.description)."""
    out: dict[str, str] = {}
    for j in jobs:
        out.update(config_facts(j.dir).descriptions)
    return out


def val_curve(job: Job) -> list[tuple[int, float]]:
    """(epoch, val/acc) from the job's history, or from its TensorBoard events when it died before writing it."""
    history = job.record.history or []
    curve = [(int(h["epoch"]), float(h["val/acc"])) for h in history if "val/acc" in h]
    if curve:
        return curve
    tb = job.dir / "tensorboard"
    if not tb.exists():
        return []
    try:
        # TensorBoard's reader: only for a job without a history
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
        acc.Reload()
        if "val/acc" not in acc.Tags().get("scalars", []):
            return []
        epochs = {e.step: e.value for e in acc.Scalars("epoch")} if "epoch" in acc.Tags()["scalars"] else {}
        return [(int(epochs.get(e.step, i)), float(e.value)) for i, e in enumerate(acc.Scalars("val/acc"))]
    except Exception:
        return []


def read_sweep(sweep_dir: str | os.PathLike) -> tuple[list[Job], list[str]]:
    """The sweep's jobs, and the overrides that all of them share (left out of the configuration labels, as is the
    method when every job has the same)."""
    sweep_dir = Path(sweep_dir)
    jobs = [read_job(d) for d in job_dirs(sweep_dir)]
    one_method = len(jobs) > 1 and len({j.method for j in jobs}) == 1
    others = [[o for o in j.overrides if not _is_seed(o) and (one_method or not _is_method(o))] for j in jobs]
    common = [o for o in others[0] if all(o in rest for rest in others[1:])] if len(jobs) > 1 else []
    for job, rest in zip(jobs, others):
        job.others = " ".join(o for o in rest if o not in common and not _is_method(o))
        job.config = _label(job, with_method=not one_method)
    return jobs, common


# -- grouping -----------------------------------------------------------------------------------------------------
def group_jobs(jobs: Sequence[Job]) -> list[Group]:
    """The jobs grouped by configuration, in the order of each configuration's first job."""
    groups: dict[str, Group] = {}
    for job in jobs:
        groups.setdefault(job.config, Group(job.config, job.method, job.others)).jobs.append(job)
    return list(groups.values())


def baseline_of(group: Group, groups: Sequence[Group]) -> Group | None:
    """The baseline configuration with the same other overrides (model, data, ...) as ``group``."""
    for g in groups:
        if g.method == "baseline" and g.others == group.others:
            return g
    return None


def compares_methods(groups: Sequence[Group]) -> bool:
    """A comparison of generalization methods: the configurations do not all have the same method."""
    return len({g.method for g in groups}) > 1


def reference_of(group: Group, groups: Sequence[Group]) -> Group | None:
    """What ``group``'s Δ compares with: ``baseline`` with the same other overrides in a comparison of methods;
    otherwise the configuration of the sweep's first job (the first value of every swept parameter)."""
    if compares_methods(groups):
        return baseline_of(group, groups)
    return groups[0] if groups else None


def identical_configs(groups: Sequence[Group]) -> dict[str, list[str]]:
    """Configuration label -> the other labels whose jobs resolved to the same effective config."""
    same: dict[str, list[str]] = {}
    for g in groups:
        others = [h.config for h in groups if h is not g and g.effective & h.effective]
        if others:
            same[g.config] = others
    return same

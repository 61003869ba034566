"""The comparison report of a sweep, built from its jobs' files: ``python -m cnnrun.compare <sweep_dir>``.

Writes into the sweep folder:

- ``comparison.csv``: one row per job (overrides, status, error, every final metric, parameters, duration, the
  fingerprint of its effective config and the configurations that resolved to the same one);
- ``comparison.md``: one row per configuration (the job's method and its overrides without ``seed``, labelled by
  what varies across the sweep) aggregated over seeds, ranked by mean test accuracy: mean +- std of test accuracy,
  of the generalization gap and of test loss, and the difference in test accuracy to a reference with a 95%
  confidence interval and a p-value (a paired t-test when both have the same seeds, Welch's t-test otherwise). The
  reference is ``baseline`` (with the same other overrides) in a comparison of generalization methods, and the
  configuration of the sweep's first job (the first value of every swept parameter) in any other sweep. Two
  differently labelled configurations whose jobs resolved to the same effective config (``config.yaml`` without
  the seed and run-specific keys) are flagged: their difference is no difference. Failed, pruned and unfinished
  jobs are listed with their error, never dropped;
- ``comparison.png``: test accuracy per configuration with error bars, and validation-accuracy curves per epoch.

It reads every job's ``metrics.json`` (and, for jobs that died before writing their history, their TensorBoard
events), so it works for jobs that ran in other processes and for partial or crashed sweeps. As a Hydra callback
(:class:`SweepReport`, in ``conf/hydra/default.yaml``) it refreshes the table files after every job and draws the
figure at the end of the sweep. Light module: the statistics and plotting libraries load only when needed.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - Hydra is a dependency; keeps the module importable on its own
    Callback = object

KEY_METRICS = ("test/acc", "gap", "test/loss")
AS_CONFIGURED = "as configured"  # the label of the configuration whose jobs share every override but the seed
METRIC_COLUMNS = ("test/acc", "test/loss", "val/acc", "val/loss", "best/val_acc", "train/acc", "train/loss",
                  "train_eval/acc", "train_eval/loss", "gap")


@dataclass
class Job:
    dir: Path
    record: dict[str, Any]
    overrides: list[str]
    seed: Any
    config: str  # the job's configuration: its method and its overrides other than the seed
    method: str | None  # None: no generalization method chosen (the configs' own recipe)
    others: str  # the overrides that are neither the seed nor the generalization method
    effective: str | None = None  # fingerprint of the effective config (config.yaml), None without one

    @property
    def status(self) -> str:
        return self.record.get("status", "unknown")

    @property
    def metrics(self) -> dict[str, float]:
        return self.record.get("metrics") or {}


@dataclass
class Group:
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
        return {j.seed: float(j.metrics[metric]) for j in self.ok if j.metrics.get(metric) is not None}


# -- reading ------------------------------------------------------------------------------------------------------
def _is_seed(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == "seed"


def _is_method(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == "generalization"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders: those with Hydra's ``.hydra`` record or a ``metrics.json`` (at any depth)."""
    found = {p.parent for p in sweep_dir.rglob("metrics.json")}
    found |= {p.parent for p in sweep_dir.rglob(".hydra") if (p / "overrides.yaml").exists()}
    found.discard(sweep_dir)
    return sorted(found, key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(sweep_dir).parts])


def _read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def read_job(job_dir: Path) -> Job:
    path = job_dir / "metrics.json"
    if path.exists():
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            record = {"status": "unreadable", "error": f"metrics.json: {err}"}
    else:
        record = {"status": "unfinished", "error": "no metrics.json: the job is running or was killed"}
    overrides = record.get("overrides") or _read_overrides(job_dir)
    others = [o for o in overrides if not _is_seed(o) and not _is_method(o)]
    seed = record.get("seed")
    if seed is None:
        seed = next((o.split("=", 1)[1] for o in overrides if _is_seed(o)), None)
    method = record.get("method") or next((o.split("=", 1)[1] for o in overrides if _is_method(o)), None)
    job = Job(job_dir, record, overrides, seed, "", method, " ".join(others), effective_fingerprint(job_dir))
    job.config = _label(job)
    return job


def _label(job: Job) -> str:
    """The configuration's name in the tables: its method and the overrides that vary."""
    return " ".join(filter(None, [job.method, job.others])) or AS_CONFIGURED


def effective_fingerprint(job_dir: Path) -> str | None:
    """A short hash of the job's effective config (its config.yaml without seed and run-specific keys)."""
    path = job_dir / "config.yaml"
    if not path.exists():
        return None
    import hashlib

    from omegaconf import OmegaConf

    from cnnrun.generalization import effective_config

    try:
        plain = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a half-written file from a killed job
        return None
    text = json.dumps(effective_config(plain), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def read_sweep(sweep_dir: str | os.PathLike) -> tuple[list[Job], list[str]]:
    """The sweep's jobs, and the overrides that all of them share (left out of the configuration labels)."""
    sweep_dir = Path(sweep_dir)
    jobs = [read_job(d) for d in job_dirs(sweep_dir)]
    others = [[o for o in j.overrides if not _is_seed(o) and not _is_method(o)] for j in jobs]
    common = [o for o in others[0] if all(o in rest for rest in others[1:])] if len(jobs) > 1 else []
    for job, rest in zip(jobs, others):
        job.others = " ".join(o for o in rest if o not in common)
        job.config = _label(job)
    return jobs, common


def group_jobs(jobs: Sequence[Job]) -> list[Group]:
    groups: dict[str, Group] = {}
    for job in jobs:
        groups.setdefault(job.config, Group(job.config, job.method, job.others)).jobs.append(job)
    return list(groups.values())


# -- statistics ---------------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass
class Difference:
    diff: float
    low: float
    high: float
    p: float
    test: str  # "paired t", "Welch t", or "n/a"
    n: int


def difference(method: dict[Any, float], baseline: dict[Any, float], confidence: float = 0.95) -> Difference:
    """Difference of means (method - baseline) with a t confidence interval and a two-sided p-value.

    Paired over seeds when both ran the same seeds (the seed fixes the initialisation and the batch order, so
    pairing removes that variance); Welch's unequal-variance test otherwise. Needs two values per side.
    """
    from scipy import stats

    common = sorted(set(method) & set(baseline), key=str)
    a, b = list(method.values()), list(baseline.values())
    nan = math.nan
    if not a or not b:
        return Difference(nan, nan, nan, nan, "n/a", 0)
    diff = sum(a) / len(a) - sum(b) / len(b)
    if len(common) >= 2 and len(common) == len(a) == len(b):
        d = [method[s] - baseline[s] for s in common]
        n = len(d)
        mean, sd = mean_std(d)
        if sd == 0:
            return Difference(mean, mean, mean, 0.0 if mean != 0 else 1.0, "paired t", n)
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
        p = float(stats.ttest_rel([method[s] for s in common], [baseline[s] for s in common]).pvalue)
        return Difference(mean, mean - half, mean + half, p, "paired t", n)
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, nan, nan, nan, "n/a", min(len(a), len(b)))
    (_, sa), (_, sb) = mean_std(a), mean_std(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, 0.0 if diff != 0 else 1.0, "Welch t", min(len(a), len(b)))
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, dof) * se
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Difference(diff, diff - half, diff + half, p, "Welch t", min(len(a), len(b)))


def baseline_of(group: Group, groups: Sequence[Group]) -> Group | None:
    """The baseline configuration with the same other overrides (model, data, ...) as ``group``."""
    for g in groups:
        if g.method == "baseline" and g.others == group.others:
            return g
    return None


def compares_methods(groups: Sequence[Group]) -> bool:
    """A comparison of generalization methods: some job chose one."""
    return any(g.method for g in groups)


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


def identical_warnings(groups: Sequence[Group]) -> list[str]:
    """One line per set of configurations that differ in name only."""
    lines, seen = [], set()
    for label, others in identical_configs(groups).items():
        names = tuple(sorted([label, *others]))
        if names not in seen:
            seen.add(names)
            lines.append(f"configurations {' and '.join(f'`{n}`' for n in names)} resolved to the same effective "
                         f"config (their config.yaml files differ at most in seed and run-specific keys): comparing "
                         f"them compares a configuration with itself")
    return lines


# -- writing ------------------------------------------------------------------------------------------------------
def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean, std = mean_std(list(values))
    return f"{mean:.4f} ± {std:.4f}"


def csv_text(jobs: Sequence[Job], groups: Sequence[Group] = ()) -> str:
    extra = sorted({k for j in jobs for k in j.metrics} - set(METRIC_COLUMNS))
    columns = ["job", "config", "method", "seed", "status", *METRIC_COLUMNS, *extra, "params", "epochs",
               "duration_s", "effective_config", "same_config_as", "overrides", "error"]
    same = identical_configs(groups)
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for j in jobs:
        row = {"job": j.dir.name, "config": j.config, "method": j.method, "seed": j.seed, "status": j.status,
               "params": j.record.get("params"), "epochs": j.record.get("epochs"),
               "duration_s": j.record.get("duration_s"), "effective_config": j.effective,
               "same_config_as": "; ".join(same.get(j.config, [])), "overrides": " ".join(j.overrides),
               "error": (j.record.get("error") or "").replace("\n", " ")}
        row.update({k: j.metrics.get(k) for k in (*METRIC_COLUMNS, *extra)})
        writer.writerow(row)
    return out.getvalue()


def ranked(groups: Sequence[Group]) -> list[Group]:
    def key(g: Group):
        acc = list(g.values("test/acc").values())
        return (-mean_std(acc)[0]) if acc else math.inf

    return sorted(groups, key=key)


def markdown_text(sweep_dir: Path, jobs: Sequence[Job], groups: Sequence[Group], common: Sequence[str] = ()) -> str:
    descriptions = _descriptions(jobs)
    methods = compares_methods(groups)
    reference = "baseline" if methods else "reference"
    same = identical_configs(groups)
    lines = [f"# Comparison: {sweep_dir.name}", "",
             *([f"Every job: `{' '.join(common)}`", ""] if common else []),
             *[f"> **Warning**: {w}." for w in identical_warnings(groups)], *([""] if same else []),
             f"{len(jobs)} jobs, {sum(1 for j in jobs if j.status == 'completed')} completed, "
             f"{len(groups)} configurations. Mean ± sample std over seeds. gap = training accuracy - validation "
             f"accuracy of the tested (best) weights, both in evaluation mode. Δ test acc = this configuration - "
             f"{'baseline (same other overrides)' if methods else 'the reference configuration'}, with its 95% "
             f"confidence interval and p-value: a paired t-test over seeds when both ran the same seeds, Welch's "
             f"t-test otherwise. The test split was not used to choose anything.", "",
             f"| rank | configuration | n | test acc | gap | test loss | Δ test acc vs {reference} [95% CI] | p | "
             f"test |",
             "|---:|---|---:|---|---|---|---|---:|---|"]
    for rank, g in enumerate(ranked(groups), 1):
        base = reference_of(g, groups)
        if base is None or base is g:
            delta, p, test = (f"({reference})" if base is g else f"no {reference}"), "", ""
        else:
            d = difference(g.values("test/acc"), base.values("test/acc"))
            delta = f"{d.diff:+.4f} [{_fmt(d.low, 4)}, {_fmt(d.high, 4)}]" if not math.isnan(d.low) else \
                f"{_fmt(d.diff)} [n/a]"
            p, test = _fmt(d.p, 3), d.test
        failed = sum(1 for j in g.jobs if j.status != "completed")
        untested = len(g.jobs) - len(g.ok) - failed
        n = f"{len(g.ok)}" + (f" (+{failed} not completed)" if failed else "") + \
            (f" (+{untested} without test metrics)" if untested else "")
        label = g.config + (f" ⚠ same config as {', '.join(same[g.config])}" if g.config in same else "")
        lines.append(f"| {rank} | {label} | {n} | {_pm(g.values('test/acc').values())} | "
                     f"{_pm(g.values('gap').values())} | {_pm(g.values('test/loss').values())} | {delta} | {p} | "
                     f"{test} |")
    if not methods and groups:
        lines += ["", f"Δ compares with the reference configuration `{groups[0].config}`: the sweep's first job's "
                      f"(the first value of every swept parameter)."]
    if descriptions:
        lines += ["", "## Methods", ""] + [f"- `{k}`: {v}" for k, v in sorted(descriptions.items())]
    bad = [j for j in jobs if j.status != "completed"]
    if bad:
        lines += ["", "## Jobs that did not complete", "", "| job | configuration | seed | status | error |",
                  "|---|---|---|---|---|"]
        for j in bad:
            error = (j.record.get("error") or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| {j.dir.relative_to(sweep_dir)} | {j.config} | {j.seed} | {j.status} | {error} |")
    return "\n".join(lines) + "\n"


def _descriptions(jobs: Sequence[Job]) -> dict[str, str]:
    """Method descriptions from the jobs' resolved configs (config.yaml: generalization.<name>.description)."""
    out: dict[str, str] = {}
    for j in jobs:
        path = j.dir / "config.yaml"
        if not path.exists():
            continue
        from omegaconf import OmegaConf

        try:
            node = OmegaConf.load(path).get("generalization") or {}
        except Exception:  # a half-written file from a killed job
            continue
        for name, params in node.items():
            if isinstance(params, dict) or hasattr(params, "get"):
                desc = params.get("description")
                if desc:
                    out[str(name)] = str(desc)
    return out


def val_curve(job: Job) -> list[tuple[int, float]]:
    """(epoch, val/acc) from the job's history, or from its TensorBoard events when it died before writing it."""
    history = job.record.get("history") or []
    curve = [(int(h["epoch"]), float(h["val/acc"])) for h in history if "val/acc" in h]
    if curve:
        return curve
    tb = job.dir / "tensorboard"
    if not tb.exists():
        return []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
        acc.Reload()
        if "val/acc" not in acc.Tags().get("scalars", []):
            return []
        epochs = {e.step: e.value for e in acc.Scalars("epoch")} if "epoch" in acc.Tags()["scalars"] else {}
        return [(int(epochs.get(e.step, i)), float(e.value)) for i, e in enumerate(acc.Scalars("val/acc"))]
    except Exception:
        return []


def plot(path: Path, groups: Sequence[Group]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    order = ranked(groups)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, max(3.5, 0.45 * len(order) + 1.5)), layout="constrained")
    labels = [g.config for g in order]
    for i, g in enumerate(order):
        acc = list(g.values("test/acc").values())
        if acc:
            mean, std = mean_std(acc)
            ax1.errorbar(mean, i, xerr=std, fmt="o", color="C0", capsize=4)
            ax1.scatter(acc, [i] * len(acc), s=12, color="C1", alpha=0.7, zorder=3)
    ax1.set_yticks(range(len(order)), labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("test accuracy (mean ± std over seeds; dots: seeds)")
    ax1.grid(axis="x", alpha=0.3)
    for k, g in enumerate(order):
        curves = [val_curve(j) for j in g.jobs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        by_epoch: dict[int, list[float]] = {}
        for c in curves:
            for e, v in c:
                by_epoch.setdefault(e, []).append(v)
        epochs = sorted(by_epoch)
        ax2.plot([e + 1 for e in epochs], [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs],
                 label=g.config, color=f"C{k % 10}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy (mean over seeds)")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=7, loc="lower right")
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_report(sweep_dir: str | os.PathLike, *, figure: bool = True, warn: bool = False) -> dict[str, Path]:
    """Write comparison.csv, comparison.md (and comparison.png) into ``sweep_dir``; return their paths. ``warn``:
    also print the warnings about configurations that differ in name only on stderr."""
    sweep_dir = Path(sweep_dir)
    jobs, common = read_sweep(sweep_dir)
    groups = group_jobs(jobs)
    out = {"csv": sweep_dir / "comparison.csv", "md": sweep_dir / "comparison.md"}
    _write(out["csv"], csv_text(jobs, groups))
    _write(out["md"], markdown_text(sweep_dir, jobs, groups, common))
    if figure and jobs:
        out["png"] = sweep_dir / "comparison.png"
        plot(out["png"], groups)
    if warn:
        for line in identical_warnings(groups):
            print(f"warning: {line.replace('`', '')}", file=sys.stderr)
    return out


class SweepReport(Callback):
    """Hydra callback: the tables after every job (also from worker processes), the figure at the end."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        sweep_dir = _sweep_dir(config)
        if sweep_dir is not None:
            try:
                build_report(sweep_dir, figure=False)
            except Exception as err:  # a report must never fail a job
                print(f"warning: comparison report not updated: {err}", file=sys.stderr)

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.exists():
            out = build_report(sweep_dir, warn=True)
            print(f"comparison: {out['md']}")


def _sweep_dir(config) -> Path | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return Path(hc.sweep.dir)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cnnrun.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="a sweep folder (outputs/sweeps/<time>_<id>)")
    parser.add_argument("--no-figure", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        print(f"error: sweep_dir: {sweep_dir} is not a folder", file=sys.stderr)
        return 2
    out = build_report(sweep_dir, figure=not args.no_figure, warn=True)
    print((sweep_dir / "comparison.md").read_text())
    print("written: " + ", ".join(str(p) for p in out.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report's tables: ``comparison.csv`` (one row per job) and ``comparison.md`` (one row per configuration,
aggregated over seeds and ranked by mean test accuracy)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

from cnnrun.report.runs import Group, Job, compares_methods, identical_configs, method_descriptions, reference_of
from cnnrun.report.stats import difference, mean_std, ranked

METRIC_COLUMNS = ("test/acc", "test/loss", "val/acc", "val/loss", "best/val_acc", "train/acc", "train/loss",
                  "train_eval/acc", "train_eval/loss", "gap")


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


def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean, std = mean_std(list(values))
    return f"{mean:.4f} ± {std:.4f}"


def csv_text(jobs: Sequence[Job], groups: Sequence[Group] = ()) -> str:
    """comparison.csv: one row per job, with every final metric it recorded."""
    extra = sorted({k for j in jobs for k in j.metrics} - set(METRIC_COLUMNS))
    columns = ["job", "config", "method", "seed", "status", *METRIC_COLUMNS, *extra, "params", "epochs",
               "duration_s", "effective_config", "same_config_as", "overrides", "error"]
    same = identical_configs(groups)
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for j in jobs:
        row = {"job": j.dir.name, "config": j.config, "method": j.method, "seed": j.seed, "status": j.status,
               "params": j.record.params, "epochs": j.record.epochs,
               "duration_s": j.record.duration_s, "effective_config": j.effective,
               "same_config_as": "; ".join(same.get(j.config, [])), "overrides": " ".join(j.overrides),
               "error": (j.record.error or "").replace("\n", " ")}
        row.update({k: j.metrics.get(k) for k in (*METRIC_COLUMNS, *extra)})
        writer.writerow(row)
    return out.getvalue()


def markdown_text(sweep_dir: Path, jobs: Sequence[Job], groups: Sequence[Group], common: Sequence[str] = ()) -> str:
    """comparison.md: the ranked configurations with their differences to the reference, the methods'
    descriptions and the jobs that did not complete."""
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
        lines.append(_markdown_row(rank, g, groups, reference, same))
    if not methods and groups:
        lines += ["", f"Δ compares with the reference configuration `{groups[0].config}`: the sweep's first job's "
                      f"(the first value of every swept parameter)."]
    descriptions = method_descriptions(jobs)
    if descriptions:
        lines += ["", "## Methods", ""] + [f"- `{k}`: {v}" for k, v in sorted(descriptions.items())]
    bad = [j for j in jobs if j.status != "completed"]
    if bad:
        lines += ["", "## Jobs that did not complete", "", "| job | configuration | seed | status | error |",
                  "|---|---|---|---|---|"]
        for j in bad:
            error = (j.record.error or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| {j.dir.relative_to(sweep_dir)} | {j.config} | {j.seed} | {j.status} | {error} |")
    return "\n".join(lines) + "\n"


def _markdown_row(rank: int, g: Group, groups: Sequence[Group], reference: str, same: dict[str, list[str]]) -> str:
    """One configuration's row of comparison.md."""
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
    return (f"| {rank} | {label} | {n} | {_pm(g.values('test/acc').values())} | {_pm(g.values('gap').values())} | "
            f"{_pm(g.values('test/loss').values())} | {delta} | {p} | {test} |")

"""The report's tables: ``comparison.csv`` (one row per job, numbers whole), ``comparison.md`` and the same ranking on
the console (one row per configuration, aggregated over seeds and ranked by mean test accuracy, numbers to 4
significant digits), and a sweep job's one console line."""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Sequence

from cnnrun.record import RunRecord
from cnnrun.report.runs import Group, Job, compares_methods, identical_configs, method_descriptions, reference_of
from cnnrun.report.stats import difference, mean_std, ranked
from cnnrun.names import short_floats, short_number

METRIC_COLUMNS = ("test/acc", "test/loss", "val/acc", "val/loss", "best/val_acc", "train/acc", "train/loss",
                  "train_eval/acc", "train_eval/loss", "gap")
JOB_LINE_METRICS = ("test/acc", "val/acc", "gap")  # a sweep job's console line


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


# -- numbers and names for people ---------------------------------------------------------------------------------
def sig(value: float | None) -> str:
    """A number to 4 significant digits; n/a for none."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else short_number(value)


def _spread(values: Sequence[float]) -> str:
    """Mean ± sample std; the value itself when there is one."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return sig(values[0])
    mean, std = mean_std(list(values))
    return f"{sig(mean)} ± {sig(std)}"


def labels(groups: Sequence[Group], *, abbreviate: bool = False) -> dict[str, str]:
    """Each configuration's name for people: numbers to 4 significant digits and, with ``abbreviate``, keys by their
    last part where no other key ends alike (``optim.lr=0.01234`` -> ``lr=0.01234``). Configurations that would read
    alike keep their whole names."""
    keys = {token.split("=", 1)[0] for g in groups for token in g.config.split() if "=" in token}
    ends = [key.rsplit(".", 1)[-1] for key in keys]
    short_keys = {key: key.rsplit(".", 1)[-1] for key in keys if ends.count(key.rsplit(".", 1)[-1]) == 1}

    def shorten(token: str) -> str:
        key, sep, value = token.partition("=")
        return f"{short_keys.get(key, key) if abbreviate else key}{sep}{value}"

    out = {g.config: short_floats(" ".join(shorten(t) for t in g.config.split())) for g in groups}
    readings = list(out.values())
    return {config: label if readings.count(label) == 1 else config for config, label in out.items()}


def method_line(name: str, description: str) -> str:
    """A method in comparison.md's list, its name said once: ``dropout: model.dropout = 0.5`` and ``label smoothing:
    ...`` lose their repeated head, ``cutmix, alpha 1.0`` reads ``cutmix``, alpha 1.0."""
    spoken = name.replace("_", " ").lower()
    head, colon, rest = description.partition(": ")
    if colon and head.lower().replace("_", " ").startswith(spoken):
        return f"- `{name}`: {rest}"
    said = re.match(rf"{re.escape(spoken)}\b", description.replace("_", " "), re.IGNORECASE)
    if said:
        return f"- `{name}`{description[said.end():]}"
    return f"- `{name}`: {description}"


# -- comparison.csv -----------------------------------------------------------------------------------------------
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


# -- the ranked comparison: comparison.md and the console ---------------------------------------------------------
def _reference_word(groups: Sequence[Group]) -> str:
    return "baseline" if compares_methods(groups) else "reference"


def comparison_header(groups: Sequence[Group]) -> list[str]:
    return ["rank", "configuration", "n", "test acc", "gap", "test loss",
            f"Δ test acc vs {_reference_word(groups)} [95% CI]", "p", "test"]


def comparison_rows(groups: Sequence[Group]) -> list[list[str]]:
    """The configurations, best first, as the cells of :func:`comparison_header`'s columns."""
    same, names = identical_configs(groups), labels(groups)
    rows = []
    for rank, g in enumerate(ranked(groups), 1):
        label = names[g.config] + (f" ⚠ same config as {', '.join(names[o] for o in same[g.config])}"
                                   if g.config in same else "")
        failed = sum(1 for j in g.jobs if j.status != "completed")
        untested = len(g.jobs) - len(g.ok) - failed
        n = f"{len(g.ok)}" + (f" (+{failed} not completed)" if failed else "") + \
            (f" (+{untested} without test metrics)" if untested else "")
        rows.append([str(rank), label, n, _spread(list(g.values("test/acc").values())),
                     _spread(list(g.values("gap").values())), _spread(list(g.values("test/loss").values())),
                     *_delta_cells(g, groups)])
    return rows


def _delta_cells(g: Group, groups: Sequence[Group]) -> list[str]:
    """Δ test acc [95% CI], p and the test, against the configuration's reference ('—' for a reference itself)."""
    base = reference_of(g, groups)
    if base is g:
        return ["—", "", ""]
    if base is None:
        return [f"no {_reference_word(groups)}", "", ""]
    d = difference(g.values("test/acc"), base.values("test/acc"))
    if math.isnan(d.diff):
        return ["n/a", "", ""]
    if math.isnan(d.low):  # a side with a single value: no interval
        return [f"{d.diff:+.4g} (n = {d.n})", "", ""]
    return [f"{d.diff:+.4g} [{sig(d.low)}, {sig(d.high)}]", sig(d.p), d.test]


def markdown_text(sweep_dir: Path, jobs: Sequence[Job], groups: Sequence[Group], common: Sequence[str] = ()) -> str:
    """comparison.md: the ranked configurations with their differences to the reference, the methods'
    descriptions and the jobs that did not complete."""
    methods = compares_methods(groups)
    same = identical_configs(groups)
    lines = [f"# Comparison: {sweep_dir.name}", "",
             *([f"Every job: `{short_floats(' '.join(common))}`", ""] if common else []),
             *[f"> **Warning**: {w}." for w in identical_warnings(groups)], *([""] if same else []),
             f"{len(jobs)} jobs, {sum(1 for j in jobs if j.status == 'completed')} completed, "
             f"{len(groups)} configurations. Mean ± sample std over seeds (the value itself where n = 1), 4 "
             f"significant digits. gap = training accuracy - validation accuracy of the tested (best) weights, both "
             f"in evaluation mode. Δ test acc = this configuration - "
             f"{'baseline (same other overrides)' if methods else 'the reference configuration'}, with its 95% "
             f"confidence interval and p-value: a paired t-test over seeds when both ran the same seeds, Welch's "
             f"t-test otherwise. The test split was not used to choose anything.", "",
             _markdown_row(comparison_header(groups)), "|---:|---|---:|---|---|---|---|---:|---|",
             *[_markdown_row(row) for row in comparison_rows(groups)]]
    if not methods and groups:
        lines += ["", f"Δ compares with the reference configuration `{labels(groups)[groups[0].config]}`: the "
                      f"sweep's first job's (the first value of every swept parameter)."]
    descriptions = method_descriptions(jobs)
    if descriptions:
        lines += ["", "## Methods", ""] + [method_line(k, v) for k, v in sorted(descriptions.items())]
    bad = [j for j in jobs if j.status != "completed"]
    if bad:
        lines += ["", "## Jobs that did not complete", "", "| job | configuration | seed | status | error |",
                  "|---|---|---|---|---|"]
        for j in bad:
            error = (j.record.error or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| {j.dir.relative_to(sweep_dir)} | {j.config} | {j.seed} | {j.status} | {error} |")
    return "\n".join(lines) + "\n"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def rich_table(sweep_dir: Path, groups: Sequence[Group]):
    """The ranked comparison of comparison.md as a rich table, for the console."""
    from rich.table import Table  # rich: only when a sweep ends
    from rich.text import Text  # plain text: labels and headers hold brackets, which rich would read as markup

    table = Table(title=Text(f"Comparison: {sweep_dir.name}"), title_justify="left")
    for name in comparison_header(groups):
        table.add_column(Text(name), justify="right" if name in ("rank", "n", "p") else "left", overflow="fold")
    for row in comparison_rows(groups):
        table.add_row(*(Text(cell) for cell in row))
    return table


# -- a sweep job's console line -----------------------------------------------------------------------------------
def job_line(name: str, record: RunRecord) -> str:
    """A sweep job's one console line: its folder name, how it ended, its main metrics and how long it took."""
    metrics = "  ".join(f"{k} {sig(record.metrics[k])}" for k in JOB_LINE_METRICS
                        if record.metrics.get(k) is not None)
    pruned = f"after {record.epochs} epochs" if record.status == "pruned" and record.epochs else ""
    return "  ".join(filter(None, [name, record.status, pruned, metrics, _duration(record.duration_s)]))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"

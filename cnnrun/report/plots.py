"""The report's figure, ``comparison.png``: test accuracy per configuration (mean ± std over seeds, and each seed),
and the validation-accuracy curves per epoch (mean over seeds) of the best configurations.

Legible with many and long configuration names (an Optuna study's): rows are ranked and named by what varies, keys
abbreviated and numbers rounded to 4 significant digits (:func:`cnnrun.report.tables.labels`), names wrapped, the
legend beside the curves, and the figure as tall as its rows."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from cnnrun.atomic import atomic_write
from cnnrun.report.runs import Group, val_curve
from cnnrun.report.stats import mean_std, ranked
from cnnrun.report.tables import labels

LABEL_WIDTH = 36  # characters per line of a configuration's name
MAX_CURVES = 10  # validation curves of the best configurations only: more would hide each other
LINE_HEIGHT = 0.16  # inches per line of text at the labels' font size (8 pt), with some air


def _mean_curve(group: Group) -> tuple[list[int], list[float]]:
    """Epochs (from 1) and the validation accuracy averaged over the group's jobs that have a curve."""
    by_epoch: dict[int, list[float]] = {}
    for job in group.jobs:
        for epoch, value in val_curve(job):
            by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    return [e + 1 for e in epochs], [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def row_names(groups: Sequence[Group]) -> list[str]:
    """The ranked configurations' names as the figure shows them: ``<rank>. <short name>``, wrapped."""
    names = labels(groups, abbreviate=True)
    return [textwrap.fill(f"{rank}. {names[g.config]}", LABEL_WIDTH, subsequent_indent="   ")
            for rank, g in enumerate(ranked(groups), 1)]


def comparison_figure(groups: Sequence[Group]):
    """The figure of comparison.png (a matplotlib Figure; the caller closes it)."""
    import matplotlib  # matplotlib: only when the figure is drawn (at the end of a sweep)

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    order, names = ranked(groups), row_names(groups)
    curves = [(name, *_mean_curve(g)) for g, name in zip(order[:MAX_CURVES], names)]
    lines = sum(name.count("\n") + 1 for name in names)
    legend_lines = sum(name.count("\n") + 1 for name, epochs, _ in curves if epochs)
    height = max(3.5, LINE_HEIGHT * max(lines + len(order), 1.2 * legend_lines) + 1.5)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, height), layout="constrained")
    for i, g in enumerate(order):
        acc = list(g.values("test/acc").values())
        if acc:
            mean, std = mean_std(acc)
            ax1.errorbar(mean, i, xerr=std, fmt="o", color="C0", capsize=4)
            ax1.scatter(acc, [i] * len(acc), s=12, color="C1", alpha=0.7, zorder=3)
    ax1.set_yticks(range(len(order)), names, fontsize=8, multialignment="left")
    ax1.set_ylim(len(order) - 0.5, -0.5)  # best on top
    ax1.set_xlabel("test accuracy (mean ± std over seeds; dots: seeds)")
    ax1.grid(axis="x", alpha=0.3)
    for k, (name, epochs, values) in enumerate(curves):
        if epochs:
            ax2.plot(epochs, values, label=name, color=f"C{k % 10}")
    ax2.set_xlabel("epoch")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylabel("validation accuracy (mean over seeds)")
    if len(order) > MAX_CURVES:
        ax2.set_title(f"the best {MAX_CURVES} of {len(order)} configurations", fontsize=9)
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, frameon=False)
    return fig


def plot(path: Path, groups: Sequence[Group]) -> None:
    """Draw comparison.png at ``path`` (written atomically)."""
    fig = comparison_figure(groups)  # chooses matplotlib's file backend before pyplot loads
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)

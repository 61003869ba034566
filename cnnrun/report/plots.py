"""The report's figure, ``comparison.png``: test accuracy per configuration (mean ± std over seeds, and each seed),
and the validation-accuracy curves per epoch (mean over seeds)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cnnrun.atomic import atomic_write
from cnnrun.report.runs import Group, val_curve
from cnnrun.report.stats import mean_std, ranked


def _mean_curve(group: Group) -> tuple[list[int], list[float]]:
    """Epochs (from 1) and the validation accuracy averaged over the group's jobs that have a curve."""
    by_epoch: dict[int, list[float]] = {}
    for job in group.jobs:
        for epoch, value in val_curve(job):
            by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    return [e + 1 for e in epochs], [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def plot(path: Path, groups: Sequence[Group]) -> None:
    """Draw comparison.png at ``path`` (written atomically)."""
    import matplotlib  # matplotlib: only when the figure is drawn (at the end of a sweep)

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
        epochs, values = _mean_curve(g)
        if epochs:
            ax2.plot(epochs, values, label=g.config, color=f"C{k % 10}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy (mean over seeds)")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=7, loc="lower right")
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)

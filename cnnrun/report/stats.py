"""The report's statistics: mean and sample standard deviation over seeds, and the difference of two
configurations with SciPy's t-tests (paired over seeds when both ran the same seeds, Welch's otherwise)."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from cnnrun.report.runs import Group


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value; NaN for none)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Difference:
    """A difference of means with its confidence interval and two-sided p-value."""

    diff: float
    low: float
    high: float
    p: float
    test: str  # "paired t", "Welch t", or "n/a"
    n: int


def difference(method: dict[Any, float], baseline: dict[Any, float], confidence: float = 0.95) -> Difference:
    """Difference of means (method - baseline) with a t confidence interval and a two-sided p-value.

    Paired over seeds when both ran the same seeds (the seed fixes the initialisation and the batch order, so
    pairing removes that variance): ``scipy.stats.ttest_rel``; Welch's unequal-variance test otherwise:
    ``ttest_ind(equal_var=False)``. Needs two values per side. Values without any spread have the difference itself
    as their interval, and p = 0 (1 when the difference is 0).
    """
    nan = math.nan
    a, b = list(method.values()), list(baseline.values())
    if not a or not b:
        return Difference(nan, nan, nan, nan, "n/a", 0)
    common = sorted(set(method) & set(baseline), key=str)
    if len(common) >= 2 and len(common) == len(a) == len(b):
        a, b = [method[s] for s in common], [baseline[s] for s in common]
        diff, spread = mean_std([x - y for x, y in zip(a, b)])
        return _t_test(a, b, diff, "paired t", len(common), spread == 0, confidence)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, nan, nan, nan, "n/a", min(len(a), len(b)))
    constant = mean_std(a)[1] == 0 and mean_std(b)[1] == 0
    return _t_test(a, b, diff, "Welch t", min(len(a), len(b)), constant, confidence)


def _t_test(a: list[float], b: list[float], diff: float, test: str, n: int, no_spread: bool,
            confidence: float) -> Difference:
    """SciPy's paired or Welch t-test of ``a`` against ``b`` (whose difference of means is ``diff``)."""
    if no_spread:  # t is undefined: the difference is exact
        return Difference(diff, diff, diff, 0.0 if diff != 0 else 1.0, test, n)
    from scipy import stats  # SciPy: only when a difference is tested

    result = stats.ttest_rel(a, b) if test == "paired t" else stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(confidence_level=confidence)
    return Difference(diff, float(interval.low), float(interval.high), float(result.pvalue), test, n)


def ranked(groups: Sequence[Group]) -> list[Group]:
    """The configurations by mean test accuracy, best first; those without one last."""
    def key(g: Group) -> float:
        acc = list(g.values("test/acc").values())
        return -mean_std(acc)[0] if acc else math.inf

    return sorted(groups, key=key)

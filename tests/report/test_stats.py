"""The report's statistics against hand-computed values (closed forms and textbook t quantiles)."""
import math

import pytest

from cnnrun.report.stats import difference, mean_std


def test_mean_and_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_paired_difference_by_hand():
    # d = (0.10, 0.05, 0.05): mean 1/15, sd = sqrt(1/1200), se = sd / sqrt(3) = 1/60, t = 4 with 2 dof;
    # t_{0.975, 2} = 4.302653; two-sided p(|T_2| > 4) = 1 - 4 / sqrt(2 + 16) = 0.057191 (closed form for 2 dof:
    # P(|T| > t) = 1 - t / sqrt(2 + t^2)).
    d = difference({1: 0.80, 2: 0.90, 3: 0.85}, {1: 0.70, 2: 0.85, 3: 0.80})
    assert d.test == "paired t" and d.n == 3
    assert d.diff == pytest.approx(1 / 15)
    half = 4.302653 / 60
    assert (d.low, d.high) == (pytest.approx(1 / 15 - half, abs=1e-6), pytest.approx(1 / 15 + half, abs=1e-6))
    assert d.p == pytest.approx(1 - 4 / math.sqrt(2 + 16), abs=1e-6)


def test_paired_interval_at_another_confidence():
    # the same differences at 90%: t_{0.95, 2} = 2.919986 (a t table's value)
    d = difference({1: 0.80, 2: 0.90, 3: 0.85}, {1: 0.70, 2: 0.85, 3: 0.80}, confidence=0.90)
    half = 2.919986 / 60
    assert (d.low, d.high) == (pytest.approx(1 / 15 - half, abs=1e-6), pytest.approx(1 / 15 + half, abs=1e-6))


def test_welch_difference_by_hand():
    # a = (1, 2, 3): mean 2, var 1; b = (4, 5, 6, 7): mean 5.5, var 5/3. se^2 = 1/3 + 5/12 = 3/4;
    # Welch dof = (3/4)^2 / ((1/3)^2 / 2 + (5/12)^2 / 3) = 4.9592.
    d = difference({1: 1.0, 2: 2.0, 3: 3.0}, {4: 4.0, 5: 5.0, 6: 6.0, 7: 7.0})
    assert d.test == "Welch t" and d.diff == pytest.approx(-3.5)
    dof = 0.75 ** 2 / ((1 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    assert dof == pytest.approx(4.9592, abs=1e-4)
    from scipy.stats import t

    half = t.ppf(0.975, dof) * math.sqrt(0.75)
    assert d.low == pytest.approx(-3.5 - half) and d.high == pytest.approx(-3.5 + half)
    assert d.p == pytest.approx(2 * t.sf(3.5 / math.sqrt(0.75), dof))


def test_one_seed_has_no_interval():
    d = difference({1: 0.9}, {1: 0.8})
    assert d.diff == pytest.approx(0.1) and math.isnan(d.low) and d.test == "n/a"


@pytest.mark.parametrize("method,baseline,diff,p,test", [
    ({1: 0.9, 2: 0.8}, {1: 0.9, 2: 0.8}, 0.0, 1.0, "paired t"),  # identical results: no difference at all
    ({1: 3.0, 2: 4.0}, {1: 1.0, 2: 2.0}, 2.0, 0.0, "paired t"),  # every seed 2 better: certain
    ({1: 0.5, 2: 0.5}, {3: 0.5, 4: 0.5}, 0.0, 1.0, "Welch t"),
    ({1: 0.75, 2: 0.75}, {3: 0.5, 4: 0.5, 5: 0.5}, 0.25, 0.0, "Welch t"),
])
def test_differences_without_spread_are_exact(method, baseline, diff, p, test):
    """Without spread t is undefined: the interval is the difference itself, and p is 1 for no difference, else 0."""
    d = difference(method, baseline)
    assert (d.diff, d.low, d.high, d.p, d.test) == (pytest.approx(diff), pytest.approx(diff), pytest.approx(diff),
                                                   p, test)

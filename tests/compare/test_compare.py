"""The comparison report: statistics against hand-computed values, aggregation of fabricated sweeps, and a real
sweep with failing jobs end to end."""
import csv
import json
import math

import pytest
import yaml

from cnnrun.compare import build_report, difference, main, mean_std, read_sweep
from tests.conftest import run_cli


def test_mean_and_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert mean_std([0.5]) == (0.5, 0.0)


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


def _job(root, num, method, seed, test_acc, *, status="completed", extra=(), error=None, metrics=True,
         config=None):
    """A fabricated job folder; ``method`` None: a job that chose no generalization method; ``config``: the
    resolved config its config.yaml holds."""
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    overrides = [*([f"generalization={method}"] if method else []), f"seed={seed}", *extra]
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if config is not None:
        (job / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics:
        record = {"status": status, "error": error, "seed": seed, "method": method, "overrides": overrides,
                  "metrics": {} if status != "completed" else
                  {"test/acc": test_acc, "test/loss": 1 - test_acc, "gap": 0.1, "val/acc": test_acc},
                  "history": [] if test_acc is None else [{"epoch": 0, "val/acc": test_acc - 0.1},
                                                             {"epoch": 1, "val/acc": test_acc}],
                  "params": 100, "duration_s": 1.0}
        (job / "metrics.json").write_text(json.dumps(record))


def test_report_of_a_fabricated_sweep(tmp_path):
    for i, (method, seed, acc) in enumerate([("baseline", 1, 0.70), ("baseline", 2, 0.85), ("baseline", 3, 0.80),
                                             ("augment", 1, 0.80), ("augment", 2, 0.90), ("augment", 3, 0.85)]):
        _job(tmp_path, i, method, seed, acc, extra=["trainer.max_epochs=2"])
    _job(tmp_path, 6, "dropout", 1, None, status="failed", error="ConfigError: model.dropout: nope",
         extra=["trainer.max_epochs=2"])
    _job(tmp_path, 7, "dropout", 2, None, metrics=False, extra=["trainer.max_epochs=2"])  # killed mid-run
    out = build_report(tmp_path)
    assert set(out) == {"csv", "md", "png"} and all(p.exists() for p in out.values())

    rows = list(csv.DictReader(out["csv"].open()))
    assert len(rows) == 8
    assert [r["status"] for r in rows].count("completed") == 6
    assert float(rows[3]["test/acc"]) == pytest.approx(0.80)

    md = out["md"].read_text()
    assert "Every job: `trainer.max_epochs=2`" in md
    table = [line for line in md.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    # ranked by mean test accuracy: augment (0.85) before baseline (0.7833)
    assert table[0].startswith("| 1 | augment | 3 | 0.8500 ± 0.0500 |")
    assert "+0.0667 [-0.0050, 0.1384] | 0.057 | paired t" in table[0]
    assert table[1].startswith("| 2 | baseline | 3 | 0.7833 ± 0.0764 |") and "(baseline)" in table[1]
    assert "| dropout | 0 (+2 not completed) |" in md
    assert "ConfigError: model.dropout: nope" in md and "no metrics.json" in md

    jobs, common = read_sweep(tmp_path)
    assert common == ["trainer.max_epochs=2"] and {j.config for j in jobs} == {"baseline", "augment", "dropout"}


def test_baseline_is_matched_on_the_other_overrides(tmp_path):
    for i, (method, model, acc) in enumerate([("baseline", "lenet5", 0.8), ("augment", "lenet5", 0.9),
                                              ("baseline", "nin", 0.5), ("augment", "nin", 0.4)]):
        _job(tmp_path, i, method, 1, acc, extra=[f"model={model}"])
    md = build_report(tmp_path, figure=False)["md"].read_text()
    assert "| augment model=lenet5 | 1 | 0.9000 ± 0.0000 | 0.1000 ± 0.0000 | 0.1000 ± 0.0000 | 0.1000 [n/a]" in md
    assert "| augment model=nin | 1 | 0.4000 ± 0.0000 | 0.1000 ± 0.0000 | 0.6000 ± 0.0000 | -0.1000 [n/a]" in md


def _resolved(seed, method, *, weight_decay=0.0, augment=None):
    """A job's config.yaml: what it trains, plus its seed, method node and data statistics (which vary per job)."""
    return {"seed": seed, "ckpt_path": None, "mode": "train",
            "data": {"name": "digits", "batch_size": 32, "augment": augment,
                     "stats": {"mean": [0.1 * seed], "std": [1.0 + seed]}},
            "optim": {"name": "sgd", "lr": 0.1, "weight_decay": weight_decay},
            "generalization": {method: {"description": f"{method}, as its file says"}}}


def test_configurations_that_resolved_identically_are_flagged(tmp_path, capsys):
    """'augment' here resolved to baseline's config (as the default config's recipe made it before methods started
    from a neutral recipe): the report says so in comparison.md, comparison.csv and on the console. weight_decay
    differs in one value and is not flagged."""
    jobs = [("baseline", {}), ("augment", {}), ("weight_decay", {"weight_decay": 5e-4})]
    for i, (method, change) in enumerate(jobs):
        for seed in (1, 2):
            _job(tmp_path, 2 * i + seed - 1, method, seed, 0.8 + 0.01 * seed,
                 config=_resolved(seed, method, **change))
    out = build_report(tmp_path, figure=False, warn=True)
    md = out["md"].read_text()
    assert "> **Warning**: configurations `augment` and `baseline` resolved to the same effective config" in md
    assert "| augment ⚠ same config as baseline | 2 |" in md and "| baseline ⚠ same config as augment | 2 |" in md
    assert "| weight_decay | 2 |" in md and md.count("⚠") == 2
    rows = {(r["method"], r["seed"]): r for r in csv.DictReader(out["csv"].open())}
    assert rows["augment", "1"]["same_config_as"] == "baseline" and rows["baseline", "2"]["same_config_as"] == "augment"
    assert rows["weight_decay", "1"]["same_config_as"] == ""
    assert rows["augment", "1"]["effective_config"] == rows["baseline", "2"]["effective_config"] != \
        rows["weight_decay", "1"]["effective_config"] == rows["weight_decay", "2"]["effective_config"]
    err = capsys.readouterr().err
    assert "warning: configurations augment and baseline resolved to the same effective config" in err
    assert "weight_decay" not in err


def test_a_sweep_without_methods_is_labelled_by_what_varies(tmp_path):
    """-m optim.lr=0.1,0.01 seed=1,2,3: rows are 'optim.lr=...', and Δ compares with the first job's configuration
    (lr 0.1, ranked second here), by hand as in test_paired_difference_by_hand."""
    for i, (lr, seed, acc) in enumerate([(0.1, 1, 0.70), (0.1, 2, 0.85), (0.1, 3, 0.80),
                                         (0.01, 1, 0.80), (0.01, 2, 0.90), (0.01, 3, 0.85)]):
        _job(tmp_path, i, None, seed, acc, extra=[f"optim.lr={lr}", "trainer.max_epochs=2"])
    md = build_report(tmp_path, figure=False)["md"].read_text()
    assert "baseline" not in md
    assert "| Δ test acc vs reference [95% CI] |" in md
    table = [line for line in md.splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert table[0].startswith("| 1 | optim.lr=0.01 | 3 | 0.8500 ± 0.0500 |")
    assert "+0.0667 [-0.0050, 0.1384] | 0.057 | paired t" in table[0]
    assert table[1].startswith("| 2 | optim.lr=0.1 | 3 | 0.7833 ± 0.0764 |") and "(reference)" in table[1]
    assert "Δ compares with the reference configuration `optim.lr=0.1`: the sweep's first job's" in md
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert {r["config"] for r in rows} == {"optim.lr=0.1", "optim.lr=0.01"} and {r["method"] for r in rows} == {""}


def test_compare_cli_on_a_missing_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "error: sweep_dir" in capsys.readouterr().err


def test_sweep_ends_in_a_report_with_its_failed_jobs(tmp_path):
    """2 methods x 2 seeds, 1 epoch on digits, and a method that fails on both seeds (balanced needs an
    imbalanced training set): the others complete, the report has every job, the command exits 1."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "generalization=baseline,label_smoothing,balanced", "seed=1,2", "trainer.max_epochs=1",
                      "data.train_fraction=0.5", "logger=none", "callbacks.progress_bar.refresh_rate=0",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "2 of 6 jobs failed" in result.stderr
    rows = list(csv.DictReader((sweep / "comparison.csv").open()))
    assert sorted((r["method"], r["seed"], r["status"]) for r in rows) == [
        ("balanced", "1", "failed"), ("balanced", "2", "failed"), ("baseline", "1", "completed"),
        ("baseline", "2", "completed"), ("label_smoothing", "1", "completed"), ("label_smoothing", "2", "completed")]
    for r in rows:
        if r["status"] == "completed":
            assert 0 < float(r["test/acc"]) <= 1 and r["gap"] != ""
    md = (sweep / "comparison.md").read_text()
    assert "| label_smoothing | 2 |" in md and "paired t" in md
    assert "generalization.balanced.balance: adjusts the class distribution" in md
    assert (sweep / "comparison.png").stat().st_size > 10_000

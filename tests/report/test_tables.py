"""comparison.csv and comparison.md of fabricated sweeps: rows, ranking, differences (by hand as in test_stats),
baselines matched on the other overrides, and configurations that resolved to the same effective config."""
import csv

import pytest

from cnnrun.report import build_report
from tests.report.fakes import fake_job, methods_sweep, resolved


@pytest.fixture(scope="module")
def methods_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    methods_sweep(root)
    return build_report(root, figure=False)


def test_csv_has_a_row_per_job(methods_report):
    rows = list(csv.DictReader(methods_report["csv"].open()))
    assert len(rows) == 8
    assert [r["status"] for r in rows].count("completed") == 6
    assert float(rows[3]["test/acc"]) == pytest.approx(0.80)


def test_markdown_ranks_and_compares_with_baseline(methods_report):
    md = methods_report["md"].read_text()
    assert "Every job: `trainer.max_epochs=2`" in md
    table = [line for line in md.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    # ranked by mean test accuracy: augment (0.85) before baseline (0.7833)
    assert table[0].startswith("| 1 | augment | 3 | 0.8500 ± 0.0500 |")
    assert "+0.0667 [-0.0050, 0.1384] | 0.057 | paired t" in table[0]
    assert table[1].startswith("| 2 | baseline | 3 | 0.7833 ± 0.0764 |") and "(baseline)" in table[1]
    assert "| dropout | 0 (+2 not completed) |" in md
    assert "ConfigError: model.dropout: nope" in md and "no metrics.json" in md


def test_baseline_is_matched_on_the_other_overrides(tmp_path):
    for i, (method, model, acc) in enumerate([("baseline", "lenet5", 0.8), ("augment", "lenet5", 0.9),
                                              ("baseline", "nin", 0.5), ("augment", "nin", 0.4)]):
        fake_job(tmp_path, i, method, 1, acc, extra=[f"model={model}"])
    md = build_report(tmp_path, figure=False)["md"].read_text()
    assert "| augment model=lenet5 | 1 | 0.9000 ± 0.0000 | 0.1000 ± 0.0000 | 0.1000 ± 0.0000 | 0.1000 [n/a]" in md
    assert "| augment model=nin | 1 | 0.4000 ± 0.0000 | 0.1000 ± 0.0000 | 0.6000 ± 0.0000 | -0.1000 [n/a]" in md


def test_configurations_that_resolved_identically_are_flagged(tmp_path, capsys):
    """'augment' here resolved to baseline's config (as the default config's recipe made it before methods started
    from a neutral recipe): the report says so in comparison.md, comparison.csv and on the console. weight_decay
    differs in one value and is not flagged."""
    jobs = [("baseline", {}), ("augment", {}), ("weight_decay", {"weight_decay": 5e-4})]
    for i, (method, change) in enumerate(jobs):
        for seed in (1, 2):
            fake_job(tmp_path, 2 * i + seed - 1, method, seed, 0.8 + 0.01 * seed,
                     config=resolved(seed, method, **change))
    out = build_report(tmp_path, figure=False, warn=True)
    md = out["md"].read_text()
    assert "> **Warning**: configurations `augment` and `baseline` resolved to the same effective config" in md
    assert "| augment ⚠ same config as baseline | 2 |" in md and "| baseline ⚠ same config as augment | 2 |" in md
    assert "| weight_decay | 2 |" in md and md.count("⚠") == 2
    assert "- `augment`: augment, as its file says" in md  # the methods' descriptions from config.yaml
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
    (lr 0.1, ranked second here), by hand as in test_stats.test_paired_difference_by_hand."""
    for i, (lr, seed, acc) in enumerate([(0.1, 1, 0.70), (0.1, 2, 0.85), (0.1, 3, 0.80),
                                         (0.01, 1, 0.80), (0.01, 2, 0.90), (0.01, 3, 0.85)]):
        fake_job(tmp_path, i, None, seed, acc, extra=[f"optim.lr={lr}", "trainer.max_epochs=2"])
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

"""comparison.csv and comparison.md of fabricated sweeps: rows, ranking, differences (by hand as in test_stats),
baselines matched on the other overrides, and configurations that resolved to the same effective config."""
import csv

import pytest

from cnnrun.record import RunRecord
from cnnrun.report import build_report
from cnnrun.report.runs import Group, group_jobs, read_sweep
from cnnrun.report.tables import job_line, labels, method_line
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
    # ranked by mean test accuracy: augment (0.85) before baseline (0.7833), 4 significant digits; the
    # difference by hand: seed-paired differences 0.10, 0.05, 0.05, mean 0.06667, t = 4.0 on 2 degrees of freedom
    assert table[0].startswith("| 1 | augment | 3 | 0.85 ± 0.05 |")
    assert "+0.06667 [-0.005044, 0.1384] | 0.05719 | paired t" in table[0]
    assert table[1] == "| 2 | baseline | 3 | 0.7833 ± 0.07638 | 0.1 ± 0 | 0.2167 ± 0.07638 | — |  |  |"
    assert "(baseline)" not in md
    assert "| dropout | 0 (+2 not completed) |" in md
    assert "ConfigError: model.dropout: nope" in md and "no metrics.json" in md


def test_baseline_is_matched_on_the_other_overrides(tmp_path):
    for i, (method, model, acc) in enumerate([("baseline", "lenet5", 0.8), ("augment", "lenet5", 0.9),
                                              ("baseline", "nin", 0.5), ("augment", "nin", 0.4)]):
        fake_job(tmp_path, i, method, 1, acc, extra=[f"model={model}"])
    md = build_report(tmp_path, figure=False)["md"].read_text()
    # one seed each: the values themselves (no ± 0), and a difference without an interval
    assert "| augment model=lenet5 | 1 | 0.9 | 0.1 | 0.1 | +0.1 (n = 1) |  |  |" in md
    assert "| augment model=nin | 1 | 0.4 | 0.1 | 0.6 | -0.1 (n = 1) |  |  |" in md
    assert md.count("| — |") == 2  # each baseline is its own models' reference


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
    assert "- `augment`, as its file says" in md  # the methods' descriptions from config.yaml, the name said once
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
    assert table[0].startswith("| 1 | optim.lr=0.01 | 3 | 0.85 ± 0.05 |")
    assert "+0.06667 [-0.005044, 0.1384] | 0.05719 | paired t" in table[0]
    assert table[1].startswith("| 2 | optim.lr=0.1 | 3 | 0.7833 ± 0.07638 |") and table[1].endswith("| — |  |  |")
    assert "Δ compares with the reference configuration `optim.lr=0.1`: the sweep's first job's" in md
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert {r["config"] for r in rows} == {"optim.lr=0.1", "optim.lr=0.01"} and {r["method"] for r in rows} == {""}


def test_a_sweep_of_one_method_is_labelled_and_compared_by_what_varies(tmp_path):
    """generalization=baseline on every job of -m optim.lr=0.1,0.01: the method is common, not part of each row's
    name, and Δ compares with the first configuration (a row is never its own 'baseline')."""
    for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9)]):
        fake_job(tmp_path, i, "baseline", 1, acc, extra=[f"optim.lr={lr}"])
    md = build_report(tmp_path, figure=False)["md"].read_text()
    assert "Every job: `generalization=baseline`" in md
    assert "| 1 | optim.lr=0.01 | 1 | 0.9 | 0.1 | 0.1 | +0.1 (n = 1) |  |  |" in md
    assert "| 2 | optim.lr=0.1 | 1 | 0.8 | 0.1 | 0.2 | — |  |  |" in md


def test_rows_are_named_with_numbers_to_4_significant_digits(tmp_path):
    """An Optuna study's configurations carry 17-digit floats: rows read them to 4 significant digits (the csv keeps
    them whole); two configurations that would read alike keep their whole names."""
    for i, (lr, wd) in enumerate([(0.012345678901234567, 1.0e-05), (0.3, 0.00012345678901234),
                                  (0.2000001, 0.5), (0.2000002, 0.5)]):
        fake_job(tmp_path, i, None, 1, 0.5 + 0.1 * i, extra=[f"optim.lr={lr}", f"optim.weight_decay={wd}"])
    out = build_report(tmp_path, figure=False)
    md = out["md"].read_text()
    assert "| optim.lr=0.01235 optim.weight_decay=1e-05 |" in md
    assert "| optim.lr=0.3 optim.weight_decay=0.0001235 |" in md
    assert "| optim.lr=0.2000001 optim.weight_decay=0.5 |" in md and "| optim.lr=0.2000002 optim.weight_decay=0.5 |" \
        in md  # both would read optim.lr=0.2
    assert "0.012345678901234567" in out["csv"].read_text()
    groups = group_jobs(read_sweep(tmp_path)[0])
    short = labels(groups, abbreviate=True)
    assert short["optim.lr=0.012345678901234567 optim.weight_decay=1e-05"] == "lr=0.01235 weight_decay=1e-05"


def test_abbreviated_keys_stay_apart():
    """A key is shortened to its last part only when no other key of the sweep ends alike."""
    groups = [Group("data.augment=flip model.augment=none optim.lr=0.1", None, ""),
              Group("data.augment=none model.augment=flip optim.lr=0.1", None, "")]
    assert list(labels(groups, abbreviate=True).values()) == ["data.augment=flip model.augment=none lr=0.1",
                                                              "data.augment=none model.augment=flip lr=0.1"]


@pytest.mark.parametrize("name,description,line", [
    ("dropout", "dropout: model.dropout = 0.5", "- `dropout`: model.dropout = 0.5"),
    ("label_smoothing", "label smoothing: loss.label_smoothing=0.1", "- `label_smoothing`: loss.label_smoothing=0.1"),
    ("augment", "augmentation: data.augment = the recipe", "- `augment`: data.augment = the recipe"),
    ("cutmix", "cutmix, alpha 1.0 (cutmix_alpha)", "- `cutmix`, alpha 1.0 (cutmix_alpha)"),
    ("ema", "EMA of the weights, decay 0.999", "- `ema` of the weights, decay 0.999"),
    ("weight_decay", "L2 weight decay 5e-4", "- `weight_decay`: L2 weight decay 5e-4"),
    ("mix", "mixup, alpha 0.2", "- `mix`: mixup, alpha 0.2"),  # a word that only begins with the name
])
def test_method_lines_say_the_name_once(name, description, line):
    assert method_line(name, description) == line


def test_no_shipped_method_repeats_its_name():
    """Every method of conf/generalization/ in comparison.md's list: after the name, the text does not begin by
    saying it again."""
    import yaml

    from cnnrun.config import CONFIG_DIR

    for path in sorted((CONFIG_DIR / "generalization").glob("*.yaml")):
        description = yaml.safe_load(path.read_text())[path.stem]["description"]
        rest = method_line(path.stem, description).removeprefix(f"- `{path.stem}`").lstrip(":, ").lower()
        assert not rest.startswith(path.stem.replace("_", " ")), (path.stem, rest)


def test_a_job_line_says_name_status_metrics_and_time():
    record = RunRecord(status="completed", metrics={"test/acc": 0.912345, "val/acc": 0.9, "gap": 0.0123456,
                                                    "test/loss": 0.3}, duration_s=83.0)
    assert job_line("3_optim.lr=0.01,seed=2", record) == \
        "3_optim.lr=0.01,seed=2  completed  test/acc 0.9123  val/acc 0.9  gap 0.01235  1.4 min"
    assert job_line("4", RunRecord(status="failed", duration_s=0.42)) == "4  failed  0.4 s"
    pruned = RunRecord(status="pruned", epochs=3, metrics={"val/acc": 0.5}, duration_s=7200)
    assert job_line("5_optim.lr=1", pruned) == "5_optim.lr=1  pruned  after 3 epochs  val/acc 0.5  2.0 h"

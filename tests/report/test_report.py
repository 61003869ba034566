"""The report's entry points: build_report, ``python -m cnnrun.report``, the Hydra callback at the end of a real
sweep with failing jobs, and what the package imports."""
import csv
import subprocess
import sys

from cnnrun.report import build_report
from cnnrun.report.__main__ import main
from tests.conftest import REPO, run_cli
from tests.report.fakes import methods_sweep


def test_build_report_writes_tables_and_figure(tmp_path):
    methods_sweep(tmp_path)
    out = build_report(tmp_path)
    assert set(out) == {"csv", "md", "png"} and all(p.exists() for p in out.values())
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_report_cli_on_a_missing_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "error: sweep_dir: " in capsys.readouterr().err


def test_python_m_cnnrun_report_rebuilds_a_report(tmp_path):
    methods_sweep(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cnnrun.report", str(tmp_path), "--no-figure"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| 1 | augment | 3 | 0.85 ± 0.05 |" in proc.stdout
    assert f"written: {tmp_path / 'comparison.csv'}, {tmp_path / 'comparison.md'}" in proc.stdout
    assert not (tmp_path / "comparison.png").exists()


def test_the_report_knows_only_run_folders():
    """Importing the report (as Hydra does for its callback, at the start of every command) loads no model, layer,
    training or data module, and none of torch, Lightning, matplotlib or SciPy."""
    code = ("import sys, cnnrun.report, cnnrun.report.callback, cnnrun.report.__main__, cnnrun.report.gallery; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'matplotlib', "
            "'scipy') or m.startswith(('cnnrun.model', 'cnnrun.layers', 'cnnrun.train', 'cnnrun.data'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


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

"""The console of a sweep as users see it (a CLI subprocess): the sweep folder, one line per job (its name, status,
main metrics, time), then the ranked comparison and the report's paths; job folders named by what the sweep varies,
and each job's hyperparameters in TensorBoard. ``hydra.verbose`` brings each job's own output back."""
import json
import re
import statistics

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from tests.conftest import jobs_by_number, run_cli

SWEEP = ["-m", "optim.lr=0.1,0.05", "seed=1,2", "trainer.max_epochs=1", "data.train_fraction=0.1",
         "trainer.limit_train_batches=2", "logger.dashboards=false", "callbacks.progress_bar.refresh_rate=0"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 4-job sweep (2 learning rates x 2 seeds, 1 short epoch): its folder, console output and job records."""
    base = tmp_path_factory.mktemp("console")
    proc = run_cli([*SWEEP, f"hydra.sweep.dir={base / 'sweep'}"], cwd=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {num: (path, json.loads((path / "metrics.json").read_text()))
            for num, path in jobs_by_number(base / "sweep").items()}
    return base / "sweep", proc.stdout, jobs


def test_job_folders_are_named_by_what_the_sweep_varies(sweep):
    """The swept keys only (not the constants given on the same command line), sorted by key, after the number."""
    _, _, jobs = sweep
    assert {path.name for path, _ in jobs.values()} == {"0_optim.lr=0.1,seed=1", "1_optim.lr=0.1,seed=2",
                                                         "2_optim.lr=0.05,seed=1", "3_optim.lr=0.05,seed=2"}


def test_each_job_prints_one_line(sweep):
    sweep_dir, stdout, jobs = sweep
    lines = stdout.splitlines()
    assert lines[0] == f"sweep folder: {sweep_dir}"
    expected = []
    for num, (path, record) in sorted(jobs.items()):
        m = record["metrics"]
        expected.append(f"{path.name}  completed  test/acc {m['test/acc']:.4g}  val/acc {m['val/acc']:.4g}  "
                        f"gap {m['gap']:.4g}  {record['duration_s']:.1f} s")
    assert [line for line in lines if re.match(r"\d+_", line)] == expected
    assert "layer (model.)" not in stdout and "61,706" not in stdout  # no layer table per job
    assert "#0 :" not in stdout and "Launching" not in stdout  # no launcher list of every job's overrides


def test_a_job_prints_nothing_else(sweep):
    """Lightning's test table and the run's own metric line stay out of a sweep's console (fit.py asks
    cnnrun.runfiles.quiet_sweep_job)."""
    _, stdout, _ = sweep
    assert "Test metric" not in stdout and "run folder:" not in stdout


def test_the_sweep_ends_with_the_ranked_comparison_and_the_report(sweep):
    sweep_dir, stdout, jobs = sweep
    by_lr = {}
    for _, record in jobs.values():
        lr = next(o for o in record["overrides"] if o.startswith("optim.lr="))
        by_lr.setdefault(lr, []).append(record["metrics"]["test/acc"])
    ranking = sorted(by_lr, key=lambda lr: -statistics.fmean(by_lr[lr]))
    table = stdout[stdout.index("Comparison: "):].splitlines()
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table if line.startswith("│")]
    assert [row[1] for row in rows] == ranking
    best = by_lr[ranking[0]]
    assert rows[0][:4] == ["1", ranking[0], "2", f"{statistics.fmean(best):.4g} ± {statistics.stdev(best):.4g}"]
    assert rows[1][6] == "—"  # the reference: the sweep's first configuration
    tail = stdout.splitlines()[-2:]
    assert tail == [f"report: {sweep_dir / 'comparison.csv'}, {sweep_dir / 'comparison.md'}, "
                    f"{sweep_dir / 'comparison.png'}", f"dashboards: tensorboard --logdir {sweep_dir}"]


def test_each_job_logs_what_the_sweep_varies_as_hyperparameters(sweep):
    """TensorBoard's own reader: every job's HPARAMS session holds its seed and learning rate, and no constant."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, _, jobs = sweep
    for path, record in jobs.values():
        accumulator = EventAccumulator(str(path / "tensorboard"))
        accumulator.Reload()
        content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        lr = float(next(o for o in record["overrides"] if o.startswith("optim.lr=")).split("=")[1])
        assert {k: v.number_value for k, v in hparams.items()} == {"seed": record["seed"], "optim.lr": lr}


@pytest.fixture
def job_of_a_sweep():
    """Hydra's config of a running sweep job (its hydra.verbose set by the test)."""
    from tests.test_names import hydra_config

    cfg = hydra_config([])
    cfg.hydra.mode = RunMode.MULTIRUN
    yield cfg
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("verbose,shown", [(False, False), ("cnnrun", True), (True, True)])
def test_hydra_verbose_shows_each_jobs_layer_table(job_of_a_sweep, capsys, verbose, shown):
    from cnnrun import build_model, summarize
    from cnnrun.runfiles import print_summary, quiet_sweep_job

    job_of_a_sweep.hydra.verbose = verbose
    HydraConfig.instance().set_config(job_of_a_sweep)
    assert quiet_sweep_job() is not shown
    print_summary(summarize(build_model({"layers": [{"linear": {"out_features": 3}}]}, [4]), [4]))
    assert bool(re.search(r"layers\[0\]\s+│ linear", capsys.readouterr().out)) is shown

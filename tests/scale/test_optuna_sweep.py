"""``python -m cnnrun -m hparams_search=...``: an Optuna study whose trials are jobs, with pruning, failing trials
and a resumed study (end to end, in subprocesses)."""
import csv
import json
import textwrap

import joblib
import optuna
import yaml

from tests.conftest import jobs_by_number, run_cli

QUIET = ["logger=none", "callbacks.progress_bar.refresh_rate=0"]

# Six trials: four enqueued ones whose outcome is known whatever the sampler draws, then two sampled ones.
SEARCH = textwrap.dedent("""\
    # @package _global_
    defaults:
      - override /hydra/sweeper: cnnrun_optuna
    trainer:
      max_epochs: 2
      limit_train_batches: 8
      limit_test_batches: 2
    hydra:
      sweeper:
        study_name: tiny
        n_trials: 6
        sampler: {name: tpe, seed: 0}
        # prune a trial whose val/acc after any epoch is below the median of the completed trials' (from trial 1)
        pruner: {name: median, n_startup_trials: 1, n_warmup_steps: 0}
        params:
          optim.lr: tag(log, interval(1e-6, 0.2))
          model.activation: choice(tanh, relu, no_such_layer)
          model: choice(lenet5, no_such_model)
        enqueue:
          - {optim.lr: 0.1, model.activation: tanh, model: lenet5}            # learns: val/acc ~0.45 after epoch 0
          - {optim.lr: 1e-6, model.activation: tanh, model: lenet5}           # does not learn (~0.19): pruned
          - {optim.lr: 0.1, model.activation: no_such_layer, model: lenet5}   # fails in the job (unknown layer)
          - {optim.lr: 0.1, model.activation: tanh, model: no_such_model}     # fails to compose: never launched
    """)
STATE_OF_STATUS = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


def check_jobs_match_study(sweep, study):
    """Every trial has its job folder (named by the trial number) whose metrics.json agrees with Optuna."""
    for t in study.trials:
        record = json.loads((jobs_by_number(sweep)[t.number] / "metrics.json").read_text())
        assert STATE_OF_STATUS[record["status"]] == t.state.name, (t.number, record["status"], record["error"])
        if t.state.name == "COMPLETE":
            assert t.value == record["metrics"]["val/acc"]  # the objective: the last epoch's val/acc
            assert t.intermediate_values[max(t.intermediate_values)] == record["metrics"]["val/acc"]
        if t.state.name == "PRUNED":  # stopped early: fewer epochs than max_epochs, every one reported
            history = {h["epoch"]: h["val/acc"] for h in record["history"]}
            assert record["epochs"] < 2 and record["error"] is None
            assert t.intermediate_values == history
            last = max(history)
            assert record["pruned_at"] == {"epoch": last, "val/acc": history[last]} == {"epoch": last,
                                                                                         "val/acc": t.value}


def test_study_prunes_survives_failures_and_resumes(tmp_path):
    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text(SEARCH)
    sweep = tmp_path / "sweep"
    base = ["-m", "--config-dir", str(tmp_path / "conf"), "hparams_search=tiny", f"hydra.sweep.dir={sweep}", *QUIET]
    proc = run_cli(base, cwd=tmp_path)
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    states = [t.state.name for t in study.trials]
    assert len(states) == 6, proc.stderr[-3000:]
    assert states[:4] == ["COMPLETE", "PRUNED", "FAIL", "FAIL"], proc.stderr[-3000:]
    assert study.trials[1].intermediate_values.keys() == {0}  # pruned after its first epoch
    assert "unknown layer" in study.trials[2].user_attrs["error"]
    assert "no_such_model" in study.trials[3].user_attrs["error"]
    check_jobs_match_study(sweep, study)
    # failed trials are failures of the command (as in any sweep), pruned ones are not
    failed = states.count("FAIL")
    assert proc.returncode == 1 and f"{failed} of 6 jobs failed" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    top = max(complete, key=lambda t: t.value)
    assert (best["best_trial"], best["best_value"], best["best_params"]) == (top.number, top.value, top.params)
    rows = list(csv.DictReader((sweep / "trials.csv").open()))
    assert [(int(r["number"]), r["state"]) for r in rows] == list(enumerate(states))
    assert rows[0]["optim.lr"] == "0.1" and float(rows[0]["duration_s"]) > 0
    assert [r["job_dir"] for r in rows] == [jobs_by_number(sweep)[t.number].name for t in study.trials]
    assert "no_such_model" in rows[3]["error"]

    # Resume: the same sweep folder continues the study up to n_trials finished trials (here 2 more than it has; the
    # enqueued ones do not run again), with two jobs in parallel (joblib) and a narrower space: the trials report to
    # the study from the workers.
    finished = sum(s in ("COMPLETE", "PRUNED") for s in states)
    proc = run_cli([*base, f"hydra.sweeper.n_trials={finished + 2}", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2", "model=lenet5", "model.activation=tanh"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 8 and [t.state.name for t in study.trials[:6]] == states
    new = study.trials[6:]
    assert all(t.state.name in ("COMPLETE", "PRUNED") and t.intermediate_values for t in new)
    assert all(set(t.params) == {"optim.lr"} for t in new)
    sampled = {t.params["optim.lr"] for t in study.trials[4:6]}  # the first run's sampled (not enqueued) trials
    assert not sampled & {t.params["optim.lr"] for t in new}  # a resumed seeded sampler does not draw them again
    check_jobs_match_study(sweep, study)
    for t in new:
        record = json.loads((jobs_by_number(sweep)[t.number] / "metrics.json").read_text())
        assert record["resources"]["parallel_jobs"] == 2
        assert record["resources"]["threads"] == max(1, joblib.cpu_count() // 2)
    assert len(list(csv.DictReader((sweep / "trials.csv").open()))) == 8

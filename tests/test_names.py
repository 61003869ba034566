"""What a run is called (cnnrun/names.py, conf/hydra/default.yaml): run and sweep-job folder names, and the
run's hyperparameters and name in TensorBoard's HPARAMS tab, read back with TensorBoard's own reader."""
import os
import re

import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from cnnrun.config import CONFIG_DIR
from cnnrun.names import register_name_resolvers, safe_name, session_name, swept_keys
from cnnrun.runfiles import flat_hparams, log_session


def hydra_config(overrides, *, sweep_dir=None, num=0):
    """The config Hydra gives a job with these overrides (its hydra node included)."""
    import cnnrun.config

    getattr(cnnrun.config, "register_with_hydra", getattr(cnnrun.config, "register_resolvers", None))()
    register_name_resolvers()
    extra = [f"hydra.sweep.dir={sweep_dir}", f"hydra.job.num={num}"] if sweep_dir else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=[*overrides, *extra], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def write_multirun(sweep_dir, task, params=None):
    """The multirun.yaml a sweeper writes before its first job: the command line and the sweeper's params."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    master = {"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}}
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(master))


# -- folder names -------------------------------------------------------------------------------------------------
def test_a_single_run_is_named_by_its_model_and_data():
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{4}"
    assert re.fullmatch(rf"outputs/runs/{stamp}_lenet5-digits", hydra_config([]).hydra.run.dir)
    assert re.fullmatch(rf"outputs/runs/{stamp}_nin-mnist1d-summary",
                        hydra_config(["model=nin", "data=mnist1d", "mode=summary"]).hydra.run.dir)


def test_a_sweep_job_is_named_by_its_number_and_what_the_sweep_varies(tmp_path):
    """-m optim.lr=0.1,0.01 seed=1,2 trainer.max_epochs=1 ckpt_path=a.ckpt,b.ckpt: the job folder names the swept
    keys only (sorted, as Hydra's override_dirname), not the constants and not the excluded paths."""
    write_multirun(tmp_path, ["optim.lr=0.1,0.01", "seed=1,2", "trainer.max_epochs=1", "ckpt_path=a.ckpt,b.ckpt"])
    job = ["optim.lr=0.01", "seed=2", "trainer.max_epochs=1", "ckpt_path=b.ckpt"]
    assert hydra_config(job, sweep_dir=tmp_path, num=3).hydra.sweep.subdir == "3_optim.lr=0.01,seed=2"
    # the same overrides in another order: the same name (a sweep run again finds its jobs' folders)
    assert hydra_config(job[::-1], sweep_dir=tmp_path, num=3).hydra.sweep.subdir == "3_optim.lr=0.01,seed=2"


def test_an_optuna_study_names_its_trials_by_its_search_space(tmp_path):
    """The sweeper's params: intervals and choices are swept, a fixed value is not; floats to 4 significant digits."""
    write_multirun(tmp_path, ["trainer.max_epochs=3"], {"optim.lr": "tag(log, interval(1e-4, 0.3))",
                                                        "model.width": "choice(0.5, 1.0)", "data.batch_size": "64"})
    assert swept_keys(tmp_path) == {"optim.lr", "model.width"}
    job = ["trainer.max_epochs=3", "optim.lr=0.012345678901234567", "model.width=0.5", "data.batch_size=64"]
    assert hydra_config(job, sweep_dir=tmp_path, num=12).hydra.sweep.subdir == "12_model.width=0.5,optim.lr=0.01235"


def test_the_swept_keys_are_parsed_once_per_sweep_and_read_again_when_the_file_changes(tmp_path, monkeypatch):
    """Every job asks twice (its folder's name, its HPARAMS): one parse per multirun.yaml text, and a rewritten file
    (another sweep in the same folder) is read again."""
    import cnnrun.names

    parses = []
    real = cnnrun.names._parse_swept_keys
    monkeypatch.setattr(cnnrun.names, "_parse_swept_keys", lambda master: parses.append(1) or real(master))
    write_multirun(tmp_path, ["optim.lr=0.1,0.01", "seed=1"])
    assert [swept_keys(tmp_path) for _ in range(3)] == [{"optim.lr"}] * 3 and len(parses) == 1
    write_multirun(tmp_path, ["optim.lr=0.1", "seed=1,2"])
    assert swept_keys(tmp_path) == {"seed"} and len(parses) == 2


def test_without_multirun_yaml_every_override_names_the_job(tmp_path):
    """Another sweeper's layout: the names fall back to all of the job's overrides, as Hydra's override_dirname."""
    assert swept_keys(tmp_path) is None
    assert hydra_config(["seed=2", "trainer.max_epochs=1"], sweep_dir=tmp_path, num=0).hydra.sweep.subdir == \
        "0_seed=2,trainer.max_epochs=1"


@pytest.mark.parametrize("text,name", [
    ("optim.lr=0.1,seed=2", "optim.lr=0.1,seed=2"),
    ("data.root=/tmp/my data,seed=1", "data.root=-tmp-my-data,seed=1"),  # separators and spaces
    ("generalization=[augment,dropout]", "generalization=augment,dropout"),  # list syntax dropped
    ("model.name='a:b*c?'", "model.name=a-b-c"),  # characters some file systems or shells refuse or expand
    ("optim.lr=0.000123456789,optim.weight_decay=5e-4", "optim.lr=0.0001235,optim.weight_decay=0.0005"),
    ("../up", "up"),  # no hidden or parent folder
])
def test_safe_names(text, name):
    assert safe_name(text) == name


def test_long_names_are_cut_and_stay_apart():
    a, b = "x" * 200 + "=1", "x" * 200 + "=2"
    assert len(safe_name(a)) == len(safe_name(b)) == 80 and safe_name(a) != safe_name(b)
    assert safe_name(a).startswith("x" * 60) and safe_name(a) == safe_name(a)  # deterministic


def test_a_job_folder_name_is_a_valid_file_name(tmp_path):
    """The longest name a job can get still makes a folder, whatever its overrides hold."""
    write_multirun(tmp_path, ["+model.note=a,b"])
    job = ["+model.note='" + "é/?*:<>|" * 40 + "'"]
    name = hydra_config(job, sweep_dir=tmp_path, num=1234).hydra.sweep.subdir
    (tmp_path / name).mkdir()
    assert os.listdir(tmp_path / name) == [] and len(name.encode()) < 100


# -- hyperparameters ----------------------------------------------------------------------------------------------
@pytest.fixture
def in_sweep_job(tmp_path):
    """Hydra's config of job 1 of ``-m optim.lr=0.1,0.01 model=lenet5,nin trainer.max_epochs=1`` as the running job."""
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["optim.lr=0.1,0.01", "model=lenet5,nin", "trainer.max_epochs=1"])
    cfg = hydra_config(["optim.lr=0.01", "model=nin", "trainer.max_epochs=1", "seed=4"], sweep_dir=sweep, num=1)
    cfg.hydra.mode = RunMode.MULTIRUN
    cfg.hydra.runtime.output_dir = str(sweep / cfg.hydra.sweep.subdir)
    HydraConfig.instance().set_config(cfg)
    yield cfg
    HydraConfig.instance().cfg = None


def test_a_sweep_job_logs_what_the_sweep_varies(in_sweep_job):
    """method and seed, and the swept keys: a value from the resolved config, a group by its option; not the
    command line's constant trainer.max_epochs nor the config's other constants."""
    from cnnrun.config import to_plain

    assert in_sweep_job.hydra.sweep.subdir == "1_model=nin,optim.lr=0.01"
    assert flat_hparams(to_plain(in_sweep_job)) == {"seed": 4, "optim.lr": 0.01, "model": "nin"}
    assert session_name(in_sweep_job.hydra.runtime.output_dir) == "1_model=nin,optim.lr=0.01 · sweep"


def test_a_single_run_logs_its_command_line():
    plain = {"seed": 0, "optim": {"lr": 0.05, "betas": [0.9, 0.99]}, "model": {"name": "nin"}}
    overrides = ["optim.lr=5e-2", "optim=adam", "+optim.betas=[0.9,0.99]", "seed=0", "generalization=[augment]"]
    assert flat_hparams(plain, overrides) == {"seed": 0, "optim.lr": 0.05, "optim": "adam",
                                              "optim.betas": "[0.9, 0.99]"}
    assert flat_hparams(plain, []) == {"seed": 0}  # the Python API: no command line


def tensorboard_hparams_tab(logdir):
    """What TensorBoard's HPARAMS tab gets from its backend for ``logdir``, as its frontend asks (GetExperiment with
    hparams_limit 1000, ListSessionGroups): the experiment and the session groups."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                                            data_provider=provider))
    request = context.RequestContext()
    experiment = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest(hparams_limit=1000)).run()
    groups = list_session_groups.Handler(request, backend, "", api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=[api_pb2.STATUS_SUCCESS])).run()
    return experiment, groups


def test_hparams_tab_puts_what_differs_first_and_names_runs_by_what_they_are(tmp_path):
    """Three runs of one sweep (two learning rates, one seed) and a single run of another model: TensorBoard's
    table lists every run's hyperparameters, those whose values differ first (they are shown by default), the
    constant seed after them; each row is named by what the run is, not by a common path prefix."""
    from pytorch_lightning.loggers import TensorBoardLogger

    runs = {"sweeps/2026-11-30_06-40-12_ab12/0_optim.lr=0.1": {"seed": 1, "optim.lr": 0.1},
            "sweeps/2026-11-30_06-40-12_ab12/1_optim.lr=0.01": {"seed": 1, "optim.lr": 0.01},
            "runs/2026-11-30_07-00-00_cd34_nin-digits": {"seed": 1, "model": "nin"}}
    for k, (path, hparams) in enumerate(runs.items()):
        logger = TensorBoardLogger(save_dir=str(tmp_path / path), name="tensorboard", version="")
        log_session(logger, hparams, {"hp/test_acc": 0.5 + 0.1 * k, "hp/gap": 0.01}, tmp_path / path)
        logger.finalize("success")
    experiment, groups = tensorboard_hparams_tab(tmp_path)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == {"seed", "optim.lr", "model"}
    assert [h.name for h in experiment.hparam_infos][-1] == "seed" and not infos["seed"].differs
    assert infos["optim.lr"].differs and infos["model"].differs is False  # one run only has a model
    assert {m.name.tag for m in experiment.metric_infos} >= {"hp/test_acc", "hp/gap"}
    names = {g.name: g for g in groups.session_groups}
    assert set(names) == {"0_optim.lr=0.1", "1_optim.lr=0.01", "nin-digits · 2026-11-30_07-00-00_cd34"}
    assert names["1_optim.lr=0.01"].hparams["optim.lr"].number_value == 0.01
    metrics = {m.name.tag: m.value for m in names["1_optim.lr=0.01"].metric_values}
    assert metrics["hp/test_acc"] == pytest.approx(0.6)


def test_a_run_ends_with_one_table_of_its_metrics_its_folder_and_the_dashboards_command(capsys, tmp_path):
    from cnnrun.runfiles import print_final

    print_final({"test/acc": 0.983333333, "gap": 0.0123456, "val/loss": None}, tmp_path / "run")
    out = capsys.readouterr().out
    assert "0.9833" in out and "0.01235" in out and "0.98333" not in out  # 4 significant digits
    assert out.count("final metrics") == 1 and "test/acc" in out and "gap" in out
    assert f"run folder: {tmp_path / 'run'}" in out and f"tensorboard --logdir {tmp_path / 'run'}" in out

"""A storage URL's password (``postgresql://user:secret@host/db``) never appears on the console or in a file of the
sweep, yet every job reaches the storage with it.

SQLite takes no password, so the end-to-end sweep uses a database dialect made here: SQLite behind a
``sqlitepw://user:password@//path`` URL, registered through SQLAlchemy's entry points (seen by every process that
has the folder on PYTHONPATH), which refuses a connection without the right password.
Its URL takes the path a postgresql URL takes through the sweeper and the jobs. The reference for masking is
SQLAlchemy's own ``render_as_string(hide_password=True)``."""
import logging
import os
import textwrap
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from sqlalchemy.engine import make_url

from cnnrun.errors import ConfigError
from cnnrun.masking import has_credentials, mask_credentials
from cnnrun.trials import STORAGE_ENV, STORAGE_MASKED_ENV, STUDY_ENV, TRIAL_ENV, trial_from_env
from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import CnnrunOptunaSweeper
from tests.conftest import jobs_by_number, run_cli
from tests.scale.test_sweeper_options import PARAMS, Launcher, Loader

SECRET = "s3cr3t-Pa55/w:rd"  # ":" and "/" may stand in a password

URLS = ["postgresql://user:secret@host/db", "postgresql+psycopg2://u:p/a:ss@db.example.org:5432/study?sslmode=require",
        "mysql+pymysql://optuna:pw@127.0.0.1/optuna", "postgresql://:pw@host/db", "sqlite://user:pw@//tmp/x.db"]
NO_PASSWORD = ["sqlite:////tmp/optuna.db", "sqlite:///optuna.db", "postgresql://user@host:5432/db",
               "postgresql://host/db", "mysql://host:3306/db"]


@pytest.mark.parametrize("url", URLS + NO_PASSWORD)
def test_masking_hides_the_password_as_sqlalchemy_does(url):
    reference = make_url(url).render_as_string(hide_password=True)
    assert mask_credentials(url) == reference
    assert has_credentials(url) == (make_url(url).password is not None)


def test_masking_finds_urls_inside_any_text():
    text = (f"hydra.sweeper.storage='postgresql://user:{SECRET}@host/db' error: "
            f"(sqlite://u:{SECRET}@//x.db) and \"mysql://a:{SECRET}@h/d\" stay sqlite:////a.db")
    masked = mask_credentials(text)
    assert SECRET not in masked and masked.count("***") == 3
    assert masked == text.replace(SECRET, "***")


DIALECT = textwrap.dedent('''\
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    class PasswordSQLite(SQLiteDialect_pysqlite):
        """SQLite that, as a database server, wants its user and password."""

        supports_statement_cache = True

        def create_connect_args(self, url):
            if (url.username, url.password) != ("optuna", {secret!r}):
                raise PermissionError(f"wrong password for {{url.username}}")
            return super().create_connect_args(url._replace(username=None, password=None))
    ''')

SEARCH = textwrap.dedent("""\
    # @package _global_
    defaults:
      - override /hydra/sweeper: cnnrun_optuna
    trainer:
      max_epochs: 1
      limit_train_batches: 2
      limit_val_batches: 1
      limit_test_batches: 1
    hydra:
      sweeper:
        study_name: secret
        n_trials: 2
        sampler: {name: random, seed: 0}
        params:
          optim.lr: tag(log, interval(0.01, 0.1))
    """)


@pytest.fixture
def dialect(tmp_path, monkeypatch):
    """The password-checking dialect, seen by this process and by every process started with its PYTHONPATH; and a
    URL of it (a database in tmp_path/db, not in the sweep folder)."""
    folder = tmp_path / "dialect"
    info = folder / "pwdialect-1.0.dist-info"
    info.mkdir(parents=True)
    (folder / "pwdialect.py").write_text(DIALECT.format(secret=SECRET))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pwdialect\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sqlalchemy.dialects]\nsqlitepw = pwdialect:PasswordSQLite\n")
    monkeypatch.syspath_prepend(str(folder))
    (tmp_path / "db").mkdir()
    return f"sqlitepw://optuna:{SECRET}@/{tmp_path / 'db' / 'optuna.db'}", {"PYTHONPATH": str(folder)}


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
            if p.is_file() and secret.encode() in p.read_bytes()]


def make_sweeper(sweep_dir: Path, launcher, loader=None, hydra=None, **settings) -> CnnrunOptunaSweeper:
    """The sweeper with these hydra.sweeper settings (default: 2 trials of PARAMS, random sampler, no pruner), run
    in-process with a stand-in launcher and config loader; ``hydra`` joins its config's hydra node."""
    options = {"direction": "maximize", "study_name": "s", "storage": None, "n_trials": 2, "n_jobs": 1,
               "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"}, "params": PARAMS,
               "enqueue": [], **settings}
    sweeper = CnnrunOptunaSweeper(**options)
    node = {"sweep": {"dir": str(sweep_dir)}, "runtime": {"choices": {}}, **(hydra or {})}
    sweeper.config = OmegaConf.create({"hydra": node})
    sweeper.sweep_dir = sweep_dir
    sweeper.hydra_context = type("Context", (), {"config_loader": loader or Loader()})()
    sweeper.launcher = launcher
    return sweeper


class RecordingLoader(Loader):
    """Keeps the config and overrides each job would be composed from (as Hydra's launchers compose them)."""

    def __init__(self):
        self.composed = []

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed.append(OmegaConf.to_yaml(master_config) + "\n".join(sweep_overrides))


class EnvironmentLauncher(Launcher):
    """Also notes the storage URL in the environment that the jobs inherit."""

    def launch(self, job_overrides, initial_job_idx):
        self.inherited = os.environ.get(STORAGE_ENV)
        return super().launch(job_overrides, initial_job_idx)


@pytest.mark.parametrize("given", ["command line", "config file", "environment"])
def test_the_password_stays_out_of_the_jobs_configs_files_and_log(tmp_path, dialect, caplog, monkeypatch, given):
    url, _ = dialect
    if given == "environment":  # where the README puts it, for ${oc.env:...}
        monkeypatch.setenv(STORAGE_ENV, url)
    else:
        monkeypatch.delenv(STORAGE_ENV, raising=False)
    node = "${oc.env:CNNRUN_OPTUNA_STORAGE}" if given == "environment" else url
    recorded = [f"hydra.sweeper.storage='{url}'"] if given == "command line" else []
    sweep = tmp_path / "sweep"
    sweeper = make_sweeper(sweep, EnvironmentLauncher(sweep), RecordingLoader(), storage=url, hydra={
        "sweeper": {"storage": node}, "overrides": {"hydra": [*recorded, f"hydra.sweep.dir={sweep}"], "task": []}})
    with caplog.at_level(logging.INFO):
        sweeper.sweep([])
    assert sweeper.launcher.inherited == url  # the jobs get the URL through the environment
    assert os.environ.get(STORAGE_ENV) == (url if given == "environment" else None)  # as before the sweep
    composed = sweeper.hydra_context.config_loader.composed
    assert len(composed) == 2 and all(SECRET not in c for c in composed)
    if given != "environment":  # the jobs' recorded config names the storage, masked
        assert all(f"hydra.sweeper.storage='{mask_credentials(url)}'" in c for c in composed)
    assert files_holding(sweep, SECRET) == [] and (sweep / "multirun.yaml").is_file()
    assert SECRET not in caplog.text and mask_credentials(url) in caplog.text
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'db' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2


def test_a_sweep_keeps_the_storage_password_off_the_console_and_out_of_its_files(tmp_path, dialect):
    url, env = dialect
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "secret.yaml").write_text(SEARCH)
    sweep = tmp_path / "sweep"
    # On the command line: the worst case, as Hydra records the command line in every job's .hydra/hydra.yaml.
    # (The jobs run in this process; with hydra/launcher=joblib they run in workers that inherit the environment.)
    proc = run_cli(["-m", "--config-dir", str(tmp_path / "conf"), "hparams_search=secret", f"hydra.sweep.dir={sweep}",
                    "logger.dashboards=false", "callbacks.progress_bar.refresh_rate=0",
                    f"hydra.sweeper.storage='{url}'"],
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="secret", storage=f"sqlite:///{tmp_path / 'db' / 'optuna.db'}")
    # every job reached the storage with the password: each reported its epoch to its trial
    assert [(t.state.name, list(t.intermediate_values)) for t in study.trials] == [("COMPLETE", [0])] * 2

    assert SECRET not in proc.stdout + proc.stderr
    assert files_holding(sweep, SECRET) == []
    jobs = jobs_by_number(sweep)
    searched = [sweep / "optimization_results.yaml", sweep / "trials.csv", sweep / "comparison.csv",
                sweep / "multirun.yaml"] + [jobs[n] / f for n in (0, 1)
                                            for f in ("metrics.json", ".hydra/hydra.yaml", ".hydra/overrides.yaml")]
    assert all(p.is_file() for p in searched) and list(sweep.rglob("events.out.tfevents.*"))  # TensorBoard's too
    masked = mask_credentials(url)
    assert masked in (sweep / "optimization_results.yaml").read_text()
    assert masked in (jobs[0] / ".hydra" / "hydra.yaml").read_text()  # the job's record names its storage


def test_a_job_without_the_password_says_how_to_pass_it(monkeypatch):
    url = f"postgresql://user:{SECRET}@host/db"
    monkeypatch.setenv(STUDY_ENV, "s")
    monkeypatch.setenv(TRIAL_ENV, "4")
    monkeypatch.setenv(STORAGE_MASKED_ENV, mask_credentials(url))
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    with pytest.raises(ConfigError) as err:
        trial_from_env()
    assert str(err.value.path) == "hydra.sweeper.storage" and STORAGE_ENV in err.value.message
    assert SECRET not in str(err.value)
    monkeypatch.setenv(STORAGE_ENV, url)
    assert trial_from_env() == (url, "s", 4)
    monkeypatch.setenv(STORAGE_ENV, url.replace("host", "elsewhere"))  # not the storage the sweeper named
    with pytest.raises(ConfigError):
        trial_from_env()
    monkeypatch.setenv(STORAGE_MASKED_ENV, "sqlite:////tmp/optuna.db")  # no password: the name is the URL
    assert trial_from_env() == ("sqlite:////tmp/optuna.db", "s", 4)


def test_a_storage_that_cannot_be_opened_is_named_without_its_password(tmp_path):
    from hydra_plugins.cnnrun_optuna_sweeper._space import SweepConfigError

    url = f"nosuchdatabase://user:{SECRET}@host/db"
    sweeper = make_sweeper(tmp_path, Launcher(tmp_path), storage=url,
                           hydra={"sweeper": {"storage": url}, "overrides": {"hydra": []}})
    with pytest.raises(SweepConfigError) as err:
        sweeper.sweep([])
    assert err.value.key == "hydra.sweeper.storage" and "nosuchdatabase" in err.value.message
    assert SECRET not in str(err.value) and mask_credentials(url) in err.value.message

"""The config schema (cnnrun/schema.py): every key of every group option typed, wrong types refused with the key's
path while composing (before torch is imported), and every default written once."""
import dataclasses
import inspect
import textwrap
from pathlib import Path

import pytest
from omegaconf import MISSING, OmegaConf

from cnnrun.config import CONFIG_DIR, compose
from cnnrun.errors import ConfigError
from cnnrun.schema import SCHEMAS, Trainer
from tests.conftest import run_cli
from tests.cli.test_errors import one_error_line

GROUPS = ("data", "optim", "sched", "loss", "trainer", "callbacks", "logger")
# What cnnrun sets itself from its own groups and the run folder (check_trainer_config refuses them in trainer/)
SET_BY_CNNRUN = {"self", "logger", "callbacks", "default_root_dir", "enable_checkpointing"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_the_trainer_schema_lists_exactly_lightnings_arguments():
    import pytorch_lightning as pl

    lightning = set(inspect.signature(pl.Trainer.__init__).parameters) - SET_BY_CNNRUN
    own = {"threads", "channels_last", "compile"}
    assert {f.name for f in dataclasses.fields(Trainer)} - own == lightning


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_key_of_every_option_is_typed(group, option):
    """Each option file extends a schema (or the group's node is typed from the root), so that every one of its keys
    has a declared type: the composed node is a structured config, and no key of the file is missing from it."""
    if group == "data" and option == "image_folder":
        cfg = compose([f"{group}={option}", "data.root=/nowhere", "data.num_classes=2", "data.channels=3"])
    else:
        cfg = compose([f"{group}={option}"])
    node = cfg[group]
    schema = OmegaConf.get_type(node)
    assert dataclasses.is_dataclass(schema), f"{group}/{option}.yaml is not typed by a schema"
    written = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
    fields = {f.name for f in dataclasses.fields(schema)}
    assert set(written) - {"defaults"} <= fields


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_default_is_written_once(name):
    """A key whose default the schema holds is not restated with the same value in an option file of its group."""
    schema = SCHEMAS[name]
    group = name.split("/")[0]
    if group == "root":
        files = [CONFIG_DIR / "config.yaml"]
    else:
        files = [p for p in (CONFIG_DIR / group).glob("*.yaml")
                 if f"/schema/{name}@" in p.read_text() or name in ("logger",)]
    defaults = {f.name: f.default for f in dataclasses.fields(schema)
                if f.default is not MISSING and f.default is not dataclasses.MISSING}
    for path in files:
        written = OmegaConf.to_container(OmegaConf.load(path))
        restated = [k for k, v in written.items() if k in defaults and v == defaults[k]]
        assert not restated, f"{path.name} restates the schema's defaults of {restated}"


@pytest.mark.parametrize("override,key,message", [
    ("optim.lr=abc", "optim.lr", "must be a number, got 'abc'"),
    ("trainer.max_epochs=2.5", "trainer.max_epochs", "must be an integer, got '2.5'"),
    ("data.input_shape=[1,a]", "data.input_shape[1]", "must be an integer, got 'a'"),
    ("callbacks.early_stopping.enabled=maybe", "callbacks.early_stopping.enabled", "must be true or false"),
    ("seed=null", "seed", "cannot be null"),
    ("logger.csv=maybe", "logger.csv", "must be true or false"),
    ("trainer.max_steps=many", "trainer.max_steps", "must be an integer"),
])
def test_a_wrong_type_is_refused_with_the_keys_path(override, key, message):
    with pytest.raises(ConfigError) as info:
        compose([override])
    assert info.value.path == key and message in info.value.message


def test_plus_on_a_declared_key_says_to_drop_it():
    with pytest.raises(ConfigError) as info:
        compose(["+trainer.max_epochs=5"])
    assert info.value.path == "trainer.max_epochs" and "without the '+'" in info.value.message


def test_lightning_arguments_are_settable_without_plus_and_stay_unset_otherwise():
    cfg = compose(["trainer.max_steps=5"])
    assert cfg.trainer.max_steps == 5 and compose([]).trainer.max_steps is None


def test_a_user_config_of_the_wrong_type_is_refused_with_its_key(tmp_path):
    (tmp_path / "optim").mkdir()
    (tmp_path / "optim" / "mysgd.yaml").write_text(textwrap.dedent("""\
        defaults:
          - /schema/optim/sgd@_here_
          - _self_
        name: sgd
        lr: fast
        momentum: 0.9
        nesterov: false
        weight_decay: 0.0
        """))
    with pytest.raises(ConfigError) as info:
        compose(["optim=mysgd"], config_dir=tmp_path)
    assert info.value.path == "optim.lr" and "must be a number" in info.value.message


HEAVY = ("torch", "pytorch_lightning", "torchvision")


def test_the_cli_refuses_a_wrong_type_in_one_line_before_importing_torch(tmp_path):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(textwrap.dedent(f"""\
        import atexit, sys
        atexit.register(lambda: print("HEAVY", [m for m in {HEAVY!r} if m in sys.modules]))
        """))
    proc = run_cli(["optim.lr=abc"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "hooks")})
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: optim.lr: must be a number, got 'abc'"
    assert "HEAVY []" in proc.stdout
    assert not Path(tmp_path / "outputs").exists()


def test_the_schemas_are_stored_once_per_process():
    """Every schema is in Hydra's config store under ``schema/``, as the dataclass it was made from; registering
    again (every run does, and a sweep's jobs share the process) keeps the stored nodes instead of storing anew."""
    from hydra.core.config_store import ConfigStore

    from cnnrun.schema import register_schemas

    register_schemas()
    store = ConfigStore.instance()
    stored = {name: store.load(f"schema/{name}.yaml") for name in SCHEMAS}
    for name, schema in SCHEMAS.items():
        assert OmegaConf.get_type(stored[name].node) is schema, name
    nodes = {name: store._load(f"schema/{name}.yaml") for name in SCHEMAS}
    register_schemas()
    assert all(store._load(f"schema/{name}.yaml") is node for name, node in nodes.items())

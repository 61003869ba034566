"""Every malformed input is one line, ``error: <where>: <what>``, and exit status 2: YAML that does not parse, tags
that would build objects, misspelled group options and keys, values that are still missing. The messages are
checked in-process (compose and to_plain raise the same ConfigError the CLI prints); a few subprocesses check the
command line itself: one line on stderr, status 2, no traceback, and no torch on the way."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cnnrun import ConfigError, compose
from cnnrun.config import CONFIG_DIR, to_plain
from tests.conftest import run_cli

# The file of a user's model with an unclosed flow mapping: the '{' is at line 3, column 11 (1-based); PyYAML meets
# the end of the file (line 5, column 1) still looking for its '}'.
BROKEN = "name: mynet\nlayers:\n  - conv: {out_channels: 4\n  - relu\n"
BROKEN_AT = ":5:1: expected ',' or '}', but got '<stream end>', while parsing a flow mapping that starts at line 3, " \
            "column 11"
HEAVY = ("torch", "pytorch_lightning", "torchvision")


def user_model(tmp_path: Path, text: str, name: str = "mynet") -> Path:
    folder = tmp_path / "my_conf" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def one_error_line(proc) -> str:
    """The CLI's stderr, which must be exactly one 'error: ...' line, and status 2."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (proc.returncode,
                                                                                         proc.stderr[-3000:])
    return lines[0]


# -- the command line ----------------------------------------------------------------------------------------------
def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column_without_torch(tmp_path):
    path = user_model(tmp_path, BROKEN)
    # sitecustomize runs in the CLI's process; at exit it prints which heavy modules were imported
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(textwrap.dedent(f"""\
        import atexit, sys
        atexit.register(lambda: print("HEAVY", [m for m in {HEAVY!r} if m in sys.modules]))
        """))
    proc = run_cli(["--config-dir", str(tmp_path / "my_conf"), "model=mynet", "mode=summary"], cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path / "hooks")})
    assert one_error_line(proc) == f"error: {path}{BROKEN_AT}"
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "outputs").exists()  # no run folder: nothing started


def test_a_python_tag_never_runs_and_is_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = user_model(tmp_path, f'name: evil\nlayers: !!python/object/apply:os.system ["touch {marker}"]\n')
    proc = run_cli(["--config-dir", str(tmp_path / "my_conf"), "model=mynet", "mode=summary"], cwd=tmp_path)
    assert not marker.exists(), "the tag ran a command"
    assert one_error_line(proc) == (f"error: {path}:2:9: unknown YAML tag '!!python/object/apply:os.system' "
                                    f"(a config holds plain data: no tags that build objects)")


def test_a_misspelled_key_gets_the_existing_one_not_the_advice_to_add_it(tmp_path):
    proc = run_cli(["trainer.max_epoch=3"], cwd=tmp_path)
    assert one_error_line(proc) == "error: trainer.max_epoch: unknown key; did you mean 'trainer.max_epochs'?"


def test_a_crash_in_a_job_keeps_its_traceback_even_when_it_looks_like_a_config_error(tmp_path):
    (tmp_path / "crashing.py").write_text("from omegaconf.errors import ConfigKeyError\n"
                                          "raise ConfigKeyError('raised by the user module')\n")
    proc = run_cli(["mode=summary", "imports=[crashing]"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" in proc.stderr and proc.stderr.rstrip().endswith("ConfigKeyError: raised by the user module")


# -- misspelled group options and keys, in-process ------------------------------------------------------------------
def options_on_disk(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("override,closest", [
    ("model=lenet", "lenet5"), ("data=fashion_mist", "fashion_mnist"), ("optim=adamww", "adamw"),
    ("sched=cosin", "cosine"), ("loss=cross_entropi", "cross_entropy"), ("trainer=gpus", "gpu"),
    ("logger=tensorbord", "tensorboard"), ("callbacks=defualt", "default"), ("generalization=mixupp", "mixup"),
    ("generalization=[augment,weigth_decay]", "weight_decay"), ("experiment=generalisation", "generalization"),
    ("hparams_search=lenet5_digit", "lenet5_digits"),
])
def test_a_misspelled_option_of_every_group_names_the_closest(override, closest):
    group, value = override.split("=")
    wrong = value.strip("[]").split(",")[-1]
    with pytest.raises(ConfigError) as info:
        compose([override])
    options = options_on_disk(group)
    assert closest in options and wrong not in options
    assert info.value.path == group
    assert info.value.message == (f"unknown option '{wrong}'; did you mean '{closest}'? "
                                  f"(options: {', '.join(options)})")


def test_a_misspelled_option_in_a_users_defaults_list_names_the_file(tmp_path):
    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    (tmp_path / "my_conf" / "experiment" / "mine.yaml").write_text("defaults:\n  - /model/lenet@_here_\nname: x\n")
    with pytest.raises(ConfigError) as info:
        compose(["experiment=mine"], config_dir=tmp_path / "my_conf")
    assert str(info.value) == (f"model: unknown option 'lenet' in the defaults list of experiment/mine; did you mean "
                               f"'lenet5'? (options: {', '.join(options_on_disk('model'))})")


def test_the_cli_prints_every_error_on_one_line(capsys):
    from cnnrun.__main__ import _error

    _error("data.root: first\n  second\n\n")
    assert capsys.readouterr().err == "error: data.root: first second\n"


@pytest.fixture(scope="module")
def default_cfg():
    return compose([])


@pytest.mark.parametrize("key,closest", [
    ("trainer.max_epoch", "trainer.max_epochs"),
    ("traner.max_epochs", "trainer.max_epochs"),  # the misspelled part is a group, not the last key
    ("traner.max_epoch", "trainer.max_epochs"),  # two misspelled parts
    ("optim.momentun", "optim.momentum"),
    ("data.batch_sise", "data.batch_size"),
    ("sched.warmup_epoch", "sched.warmup_epochs"),
    ("loss.label_smothing", "loss.label_smoothing"),
    ("regularization.ema_decai", "regularization.ema_decay"),
    ("callbacks.early_stoping.patience", "callbacks.early_stopping.patience"),
    ("logger.dashboards.confusion_matrx", "logger.dashboards.confusion_matrix"),
    ("model.layers.0.conv.kernal_size", "model.layers.0.conv.kernel_size"),  # through a list
    ("sed", "seed"),
])
def test_a_misspelled_key_names_the_existing_one(default_cfg, key, closest):
    assert OmegaConf.select(default_cfg, closest, default=KeyError) is not KeyError  # it does exist
    with pytest.raises(ConfigError) as info:
        compose([f"{key}=3"])
    assert info.value.path == key
    assert info.value.message == f"unknown key; did you mean '{closest}'?"


def test_a_new_key_without_plus_keeps_the_advice_to_add_it():
    with pytest.raises(ConfigError) as info:
        compose(["trainer.zzzz=3"])
    assert info.value.path == "trainer.zzzz"
    assert "did you mean" not in info.value.message and "+trainer.zzzz=" in info.value.message


def test_an_override_that_does_not_parse_is_one_line():
    with pytest.raises(ConfigError) as info:
        compose(["optim.lr=["])
    assert info.value.path == "optim.lr" and "\n" not in str(info.value)
    assert info.value.message.startswith("cannot parse 'optim.lr=[': ")


# -- YAML files, in-process -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,where", [
    (BROKEN, BROKEN_AT),
    ("name: x\nlayers:\n\t- relu\n", ":3:1: found character '\\t' that cannot start any token"),
    ("name: x\nname: y\n", ":2:1: found duplicate key name, while constructing a mapping that starts at line 1, "
                           "column 1"),
    ("name: x\nlayers: !include other.yaml\n", ":2:9: unknown YAML tag '!include' (a config holds plain data: no "
                                               "tags that build objects)"),
])
def test_yaml_errors_are_located_in_the_users_file(tmp_path, text, where):
    path = user_model(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        compose(["model=mynet"], config_dir=tmp_path / "my_conf")
    assert str(info.value) == f"{path}{where}"


# -- missing values -----------------------------------------------------------------------------------------------
def test_a_missing_value_names_the_key_to_set_not_the_interpolation_that_reached_it(tmp_path):
    user_model(tmp_path, textwrap.dedent("""\
        name: mynet
        hidden: ???
        layers:
          - flatten
          - linear: {out_features: "${model.hidden}"}
          - linear: {out_features: "${data.num_classes}"}
        """))
    with pytest.raises(ConfigError) as info:
        to_plain(compose(["model=mynet"], config_dir=tmp_path / "my_conf"))
    assert info.value.path == "model.hidden"
    assert info.value.message == "has no value ('???' in the config): set it, e.g. model.hidden=..."


# -- values: reported before the heavy imports -----------------------------------------------------------------------
def heavy_hook(tmp_path: Path) -> dict[str, str]:
    """A sitecustomize for the CLI's process that prints, at exit, which heavy modules it imported."""
    (tmp_path / "hooks").mkdir(exist_ok=True)
    (tmp_path / "hooks" / "sitecustomize.py").write_text(textwrap.dedent(f"""\
        import atexit, sys
        atexit.register(lambda: print("HEAVY", [m for m in {HEAVY!r} if m in sys.modules]))
        """))
    return {"PYTHONPATH": str(tmp_path / "hooks")}


def test_a_value_out_of_range_is_one_line_before_torch_is_imported(tmp_path):
    proc = run_cli(["optim.lr=-1"], cwd=tmp_path, env=heavy_hook(tmp_path))
    assert one_error_line(proc) == "error: optim.lr: must be a positive number, got -1.0"
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]


def test_a_model_that_does_not_fit_its_input_is_reported_before_lightning_is_imported(tmp_path):
    proc = run_cli(["data.input_shape=[1,2,2]"], cwd=tmp_path, env=heavy_hook(tmp_path))
    assert one_error_line(proc).startswith("error: data.input_shape: model lenet5 needs a spatial size of at least")
    assert "HEAVY ['torch']" in proc.stdout, proc.stdout[-2000:]  # the model is built on the meta device


# Each check, with a value it refuses: (config groups chosen, the key set, its value, the key the error names). The
# values are set in the composed config, as a command line would set them.
BEFORE_IMPORTS = [
    ("", "seed", -1, "seed"),
    ("", "data.batch_size", 0, "data.batch_size"),
    ("", "data.val_fraction", 1.5, "data.val_fraction"),
    ("", "optim.name", "sgdd", "optim.name"),
    ("", "sched.name", "cosin", "sched.name"),
    ("", "sched.warmup_epoch", 2, "sched.warmup_epoch"),
    ("", "loss.name", "focall", "loss.name"),
    ("", "regularization.l1", -1, "regularization.l1"),
    ("", "trainer.threads", 0, "trainer.threads"),
    ("", "trainer.max_epoch", 3, "trainer.max_epoch"),
    ("", "trainer.accumulate_grad_batches", 0, "trainer.accumulate_grad_batches"),
    ("", "callbacks.checkpoint.monitor", "train/acc", "callbacks.checkpoint.monitor"),
    ("", "logger.dashboards", {"filters": -1}, "logger.dashboards.filters"),
    ("model=vgg11", "model.init_weights", {"torchvision": "vgg11", "path": "nowhere/vgg11.pth"},
     "model.init_weights.path"),
    ("data=cifar10", "data.root", "nowhere", "data.root"),  # a data set that is not on disk
    ("data=cifar10", "data.num_classes", 11, "data.num_classes"),  # a torchvision set's own check
]
WITH_TORCH = [
    ("", "data.input_shape", [1, 2, 2], "data.input_shape"),  # the model's shapes (meta device)
    ("", "data.augment", {"crop": {"padding": -1}}, "data.augment.crop.padding"),  # an augmentation's value
    ("loss=focal", "loss.gamma", -1, "loss.gamma"),  # an objective's value
    ("", "optim.momentum", -1, "optim"),  # torch's own check of the optimizer
    ("sched=step", "sched.step_size", 0, "sched.step_size"),  # a schedule's value
]


def test_each_check_runs_before_the_imports_it_does_not_need(tmp_path):
    """check_before_imports refuses each bad value with torch still unloaded; check_with_torch refuses the values
    only builders can check with Lightning still unloaded. One process, so that its imports can be watched."""
    script = textwrap.dedent(f"""\
        import copy, sys
        from cnnrun import ConfigError, compose
        from cnnrun.config import to_plain
        from cnnrun.run import check_before_imports, check_with_torch

        composed = {{}}

        def config(groups, path, value):
            if groups not in composed:
                composed[groups] = to_plain(compose(groups.split()))
            plain = copy.deepcopy(composed[groups])
            *parents, last = path.split(".")
            node = plain
            for key in parents:
                node = node[key]
            node[last] = value
            return plain

        def refused(check, plain):
            try:
                check(copy.deepcopy(plain))
            except ConfigError as err:
                return err.path
            return None

        for groups, path, value, key in {BEFORE_IMPORTS!r}:
            print("LIGHT", path, refused(check_before_imports, config(groups, path, value)) == key,
                  [m for m in ("torch", "numpy") if m in sys.modules])
        for groups, path, value, key in {WITH_TORCH!r}:
            plain = config(groups, path, value)
            print("TORCH", path, refused(check_before_imports, plain), refused(check_with_torch, plain),
                  "pytorch_lightning" in sys.modules)
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    light = [line for line in lines if line.startswith("LIGHT")]
    assert light == [f"LIGHT {path} True []" for _, path, _, _ in BEFORE_IMPORTS], proc.stdout
    torch_lines = [line for line in lines if line.startswith("TORCH")]
    assert torch_lines == [f"TORCH {path} None {key} False" for _, path, _, key in WITH_TORCH], proc.stdout

"""tests/ mirrors cnnrun/: the tests of ``cnnrun/<path>/<module>.py`` are ``tests/<path>/test_<module>.py`` (or
``test_<module>_*.py``); a module whose behaviour is only seen end to end names where its tests are below. The
end-to-end folders: tests/cli/ (the command line), tests/scale/ (launchers, sweeps, Optuna, DDP), tests/zoo/ (the
model zoo)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE, TESTS = ROOT / "cnnrun", ROOT / "tests"

# modules tested through other ones, end to end: where their tests are
ELSEWHERE = {
    "checks.py": ["layers/test_layer_arguments.py"],  # the argument checkers of the layer types
    "config.py": ["test_schema.py", "test_root_options.py", "cli/test_errors.py"],
    "distributed.py": ["scale/test_ddp.py"],
    "errors.py": ["test_registry.py", "cli/test_errors.py"],
    "masking.py": ["scale/test_credentials.py"],
    "resume.py": ["cli/test_resume.py", "train/test_interrupt.py", "scale/test_sweep_resume.py"],
    "runfiles.py": ["test_names.py", "test_record.py"],
    "sweep.py": ["scale/test_launchers.py", "cli/test_cli.py"],
    "trials.py": ["scale/test_optuna_sweep.py", "scale/test_optuna_heartbeat.py"],
    "data/digits.py": ["data/test_data.py"],
    "data/loader.py": ["data/test_knobs.py", "data/test_augment.py"],
    "data/mnist1d.py": ["data/test_generated.py"],
    "data/moving_digits.py": ["data/test_generated.py"],
    "data/splits.py": ["data/test_data.py", "data/test_knobs.py"],
    "data/synthetic.py": ["data/test_generated.py"],
    "data/torchvision_layout.py": ["data/test_torchvision_sets.py", "cli/test_errors.py"],
    "layers/basic.py": ["layers/test_semantics.py", "layers/test_layer_arguments.py"],
    "layers/blocks.py": ["zoo/test_blocks.py"],
    "layers/conv.py": ["layers/test_semantics.py", "layers/test_transposed_same.py"],
    "layers/local.py": ["layers/test_semantics.py"],
    "layers/netvlad.py": ["layers/test_semantics.py", "train/test_netvlad_init.py"],
    "layers/sequence.py": ["model/test_builder.py"],
    "model/torchvision_weights.py": ["zoo/test_torchvision.py"],
    "model/zoo.py": ["zoo/test_models.py", "zoo/test_zoo_table.py"],
    "report/callback.py": ["report/test_report.py", "cli/test_console.py"],
    "train/dashboard_plan.py": ["train/test_dashboards.py"],  # the settings' checks, next to the dashboards
    "train/datamodule.py": ["data/test_balance.py", "test_run.py"],
    "train/fit.py": ["test_run.py", "train/test_selection.py"],
    "train/module.py": ["test_run.py", "train/test_regularization.py"],
    "train/pruning.py": ["scale/test_optuna_sweep.py"],
}


def modules() -> list[str]:
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py") and "conf" not in p.parts)


def test_every_module_has_its_tests_where_the_layout_says():
    missing = []
    for module in modules():
        path = Path(module)
        mirrored = list((TESTS / path.parent).glob(f"test_{path.stem}.py")) + list(
            (TESTS / path.parent).glob(f"test_{path.stem}_*.py"))
        if not mirrored and not all((TESTS / t).is_file() for t in ELSEWHERE.get(module, ["(none)"])):
            missing.append(module)
    assert not missing, f"modules without tests at tests/<path>/test_<module>.py nor in ELSEWHERE: {missing}"


def test_the_map_names_only_modules_without_a_mirrored_test():
    for module in ELSEWHERE:
        path = Path(module)
        assert (PACKAGE / path).is_file(), f"{module} is gone: drop it from ELSEWHERE"
        assert not list((TESTS / path.parent).glob(f"test_{path.stem}.py")), f"{module} has its mirrored test now"


def test_test_folders_are_the_packages_and_the_end_to_end_ones():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == packages | {"cli", "scale", "zoo"}

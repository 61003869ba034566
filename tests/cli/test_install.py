"""A regular (non-editable) install: the wheel ships the top-level conf/ as cnnrun.conf, and the `cnnrun` console
script runs like `python -m cnnrun`."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """cnnrun built into a wheel and installed from it into a folder of its own (no dependencies: they come from
    the test's environment); the folder goes first on PYTHONPATH, ahead of the development install."""
    root = tmp_path_factory.mktemp("install")
    wheels, target = root / "wheels", root / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("cnnrun-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                              str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    work = root / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return wheel, target, work, env


def test_the_wheel_holds_every_config_file(installed):
    wheel = installed[0]
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("cnnrun/conf/")}
    written = {f"cnnrun/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert written and written <= shipped
    assert "cnnrun/conf/__init__.py" in shipped
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = [p.relative_to(REPO).as_posix() for top in ("cnnrun", "hydra_plugins")
                for p in (REPO / top).rglob("__init__.py")]
    assert packages and all(p in names for p in packages), sorted(set(packages) - names)  # every package listed
    assert not any(n.startswith(("conf/", "tests/", "benchmarks/")) for n in zipfile.ZipFile(wheel).namelist())


def test_the_console_script_runs_from_a_regular_install(installed):
    _, target, work, env = installed
    where = subprocess.run([sys.executable, "-c", "import cnnrun, cnnrun.config as c; print(cnnrun.__file__); "
                                                  "print(c.CONFIG_DIR)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    module_file, config_dir = where.stdout.split()
    assert module_file.startswith(str(target)) and config_dir.startswith(str(target))
    proc = subprocess.run([str(target / "bin" / "cnnrun"), "mode=summary"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "params 61,706" in proc.stdout  # LeNet-5 on digits, from the shipped default config
    assert (work / "outputs" / "runs").is_dir()

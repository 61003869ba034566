"""cnnrun.lazy: the packages' public names load on first use (a fresh process watches what is imported)."""
import subprocess
import sys
import textwrap
import types

import pytest

from cnnrun.lazy import lazy_exports


def test_a_name_is_imported_when_first_asked_for_and_kept():
    module = types.ModuleType("pkg")
    module.__getattr__ = lazy_exports(vars(module), {"dumps": "json"})
    assert "dumps" not in vars(module)
    import json

    assert module.dumps is json.dumps and vars(module)["dumps"] is json.dumps
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'loads'"):
        module.loads  # noqa: B018  (not exported)


def test_importing_the_packages_and_the_weights_check_loads_no_torch():
    script = textwrap.dedent("""\
        import sys
        import cnnrun, cnnrun.model
        from cnnrun.model.torchvision_weights import check_init_weights
        print(sorted(m for m in ("torch", "torchvision", "numpy") if m in sys.modules))
        cnnrun.model.build_model
        print("torch" in sys.modules)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["[]", "True"]

"""The model zoo: every config in ``conf/model/`` (the README's zoo table is generated from them by
``python -m tests.readme_tables --write``).

Each zoo model declares ``chapter`` (its section of the reference chapter), ``reference_input`` and
``reference_classes`` (the paper's input and classes: the table's parameters and MACs are at that size) and
``min_size`` (the smallest spatial size it builds for).
"""
from __future__ import annotations

from typing import Any

from cnnrun.config import CONFIG_DIR


def zoo_names() -> list[str]:
    """The names of the model configs shipped in ``conf/model/``."""
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def shape_override(shape) -> str:
    """A shape as a Hydra override value: ``[3,224,224]``."""
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def declared(name: str) -> dict[str, Any]:
    """The keys of ``conf/model/<name>.yaml`` as written (interpolations unresolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml"), resolve=False)

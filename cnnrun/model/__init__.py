"""Models built from a config's layer list: the builder and the per-layer summary (imported on first use, so that
the torch-free checks of this package, such as ``model.init_weights``'s, run before torch is imported)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cnnrun.lazy import lazy_exports

_EXPORTS = {"CnnModel": "cnnrun.model.builder", "LayerRecord": "cnnrun.model.builder",
            "build_model": "cnnrun.model.builder", "render_summary": "cnnrun.model.summary",
            "summarize": "cnnrun.model.summary"}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from cnnrun.model.builder import CnnModel, LayerRecord, build_model
    from cnnrun.model.summary import render_summary, summarize


__getattr__ = lazy_exports(globals(), _EXPORTS)

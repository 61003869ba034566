from cnnrun.model.builder import CnnModel, LayerRecord, build_model
from cnnrun.model.summary import render_summary, summarize

__all__ = ["CnnModel", "LayerRecord", "build_model", "render_summary", "summarize"]

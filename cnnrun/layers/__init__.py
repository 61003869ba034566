"""Registered layer types. Importing this package registers the built-in ones."""
from cnnrun.layers.registry import LayerType, get_layer_type, layer_types, register
from cnnrun.layers import basic, conv, pooling  # noqa: F401,E402  (registration side effects)

__all__ = ["LayerType", "get_layer_type", "layer_types", "register"]

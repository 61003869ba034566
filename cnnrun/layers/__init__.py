"""Registered layer types. Importing this package registers the built-in ones."""
from cnnrun.layers.registry import LayerType, get_layer_type, layer_types, register
from cnnrun.layers import basic, blocks, conv, local, netvlad, pooling  # noqa: F401,E402  (registration)

__all__ = ["LayerType", "get_layer_type", "layer_types", "register"]

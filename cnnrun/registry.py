"""One ``Registry`` class for every name table (as mmengine's ``Registry``): layer types, data sources,
augmentations, losses, optimizers, schedules, generalization appliers, pruners and samplers are each an instance.

    LOSSES = Registry("objective")

    @LOSSES.register("focal", doc="...")          # a duplicate name is refused
    def focal(*, gamma=2.0, label_smoothing=0.0):
        ...

    LOSSES.get("focall", path="loss.name")       # ConfigError: loss.name: unknown objective 'focall'; did you mean
                                                 # 'focal'? (known: absolute, cross_entropy, focal, squared)
    LOSSES.get("focal").build({"gamma": 1.0})    # arguments checked against the signature, then focal(gamma=1.0)

A registry's builders may take ``inputs`` leading positional arguments that the caller supplies (a layer's input
shape, an optimizer's parameters); the rest of their signature are the config's arguments, which
:meth:`Entry.check_arguments` compares with what the config gives, so that builders only check values. A target may
also be named by its import path (``"optuna.pruners.MedianPruner"``): it is imported on first use, which keeps heavy
packages out of start-up. Users register into any registry from a module named by the config's ``imports:`` list.
"""
from __future__ import annotations

import importlib
import inspect
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping

from cnnrun.errors import ConfigError, did_you_mean

_EMPTY = inspect.Parameter.empty


class Entry:
    """One registration: ``name`` bound to a builder (a function or a class), with the registration's metadata
    (``doc``, ``widths``, ``changes`` ...) readable as attributes."""

    def __init__(self, registry: "Registry", name: str, target: Callable | str, metadata: dict[str, Any]):
        self.registry = registry
        self.name = name
        self.target = target
        self.metadata = metadata

    def __getattr__(self, key: str) -> Any:
        # only called for attributes the entry itself lacks: the registration's metadata
        metadata = self.__dict__.get("metadata", {})
        if key in metadata:
            return metadata[key]
        raise AttributeError(f"{self.registry.kind} '{self.__dict__.get('name')}' has no attribute '{key}'")

    def __repr__(self) -> str:
        return f"<{self.registry.kind} '{self.name}': {self.origin}>"

    @property
    def origin(self) -> str:
        """Where the builder is defined: ``module.qualname`` (or the import path it was registered by)."""
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}.{self.target.__qualname__}"

    @cached_property
    def builder(self) -> Callable:
        """The registered function or class (imported now when it was registered by its import path)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.rpartition(".")
        found = getattr(importlib.import_module(module), attribute, None)
        if found is None:  # an AttributeError here would read as a missing attribute of the entry
            raise ImportError(f"{self.registry.kind} '{self.name}': {module} has no {attribute}")
        return found

    @cached_property
    def _signature(self) -> tuple[dict[str, inspect.Parameter], bool]:
        """(the config's arguments by name, whether the builder also takes any other keyword: ``**kwargs``)."""
        params = list(inspect.signature(self.builder).parameters.values())
        inputs = self.registry.inputs
        positional = [p for p in params[:inputs] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < inputs:
            raise TypeError(f"{self.registry.kind} '{self.name}': {self.origin} must take {inputs} positional "
                            f"argument{'s' if inputs > 1 else ''} ({self.registry.inputs_doc}) before its "
                            f"keyword arguments")
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        arguments = {p.name: p for p in params[inputs:] if p.kind in named}
        return arguments, any(p.kind is p.VAR_KEYWORD for p in params)

    @property
    def arguments(self) -> dict[str, inspect.Parameter]:
        """The arguments a config may give, in the builder's order."""
        return self._signature[0]

    @property
    def defaults(self) -> dict[str, Any]:
        """Each argument's default (None for a required one)."""
        return {k: None if p.default is _EMPTY else p.default for k, p in self.arguments.items()}

    @property
    def required(self) -> list[str]:
        """The arguments without a default."""
        return [k for k, p in self.arguments.items() if p.default is _EMPTY]

    def check_arguments(self, args: Mapping[str, Any], path: str | None = None, *, node: bool = False) -> None:
        """Every key of ``args`` is an argument of the builder and every required argument is there; otherwise a
        ConfigError at ``path`` that names the argument (with close matches and the valid ones). ``node``: the
        arguments are the keys of the config node ``path`` (``optim``), so the error names the key itself
        (``optim.momentun``), not only the node (as for a layer item, ``model.layers[0] (conv)``)."""
        arguments, open_ended = self._signature
        for key in args:
            if key not in arguments and not open_ended:
                valid = ", ".join(arguments) or "none"
                where = f"{path}.{key}" if node and path else path
                raise ConfigError(where, f"unknown argument '{key}'{did_you_mean(key, arguments)} "
                                         f"(valid arguments: {valid})")
        missing = [k for k in self.required if k not in args]
        if missing:
            raise ConfigError(path, "missing required argument " + ", ".join(f"'{m}'" for m in missing))

    def split(self, settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Settings shared by several entries (a config that can switch ``name`` and keep the other entries'
        settings): those this builder takes, and the names of those it does not take (sorted)."""
        arguments, open_ended = self._signature
        taken = {k: v for k, v in settings.items() if k in arguments or open_ended}
        return taken, sorted(k for k in settings if k not in taken)

    def build(self, *inputs: Any, path: str | None = None, node: bool = False) -> Any:
        """``build(*inputs, args)``: the builder called with the caller's inputs and the config's arguments ``args``
        (a mapping, the last positional argument), after :meth:`check_arguments`. A ConfigError that the builder
        raises about one of its arguments is located under ``path`` (``loss`` + ``gamma``: ``loss.gamma``)."""
        *inputs, args = inputs
        self.check_arguments(args, path, node=node)
        try:
            return self.builder(*inputs, **args)
        except ConfigError as err:
            if path is None:
                raise
            raise ConfigError(f"{path}.{err.path}" if err.path else path, err.message) from None


class Registry:
    """Named builders of one kind (``kind`` names it in errors: "unknown <kind> 'x'").

    ``inputs`` is the number of leading positional arguments every builder takes from its caller (described by
    ``inputs_doc`` in errors); the builders' other arguments come from the config.
    """

    def __init__(self, kind: str, inputs: int = 0, inputs_doc: str = ""):
        self.kind = kind
        self.inputs = inputs
        self.inputs_doc = inputs_doc or "the caller's inputs"
        self._entries: dict[str, Entry] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

    def register(self, name: str, target: Callable | str | None = None, /, **metadata: Any):
        """Register ``target`` under ``name`` with ``metadata``; without ``target``, a decorator that registers
        what it decorates (and returns it unchanged). A name registered before is refused."""
        def add(obj: Callable | str) -> Callable | str:
            if not isinstance(name, str) or not name:
                raise TypeError(f"a {self.kind} needs a non-empty string name, got {name!r}")
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._entries[name].origin}")
            entry = Entry(self, name, obj, dict(metadata))
            shadowed = [key for key in metadata if key in vars(entry) or hasattr(Entry, key)]
            if shadowed:
                raise TypeError(f"{self.kind} '{name}': metadata {', '.join(shadowed)} would hide the entry's own "
                                f"attribute{'s' if len(shadowed) > 1 else ''}")
            if not isinstance(obj, str):
                entry.arguments  # noqa: B018  (check the signature now: a mistake shows where it is made)
            self._entries[name] = entry
            return obj

        return add if target is None else add(target)

    def get(self, name: Any, path: str | None = None) -> Entry:
        """The entry called ``name``; a ConfigError at ``path`` with close matches and every known name otherwise."""
        if not isinstance(name, str) or name not in self._entries:
            names = self.names()
            raise ConfigError(path, f"unknown {self.kind} '{name}'{did_you_mean(str(name), names)} "
                                    f"(known: {', '.join(names)})")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __delitem__(self, name: str) -> None:
        """Forget a registration (a test's temporary one)."""
        del self._entries[name]

"""User-facing errors: one clear message that names the config key at fault."""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping


class ConfigError(ValueError):
    """A mistake in the user's configuration.

    ``path`` names the config key or layer (``optim.lr``, ``model.layers[3] (conv)``); the CLI prints
    ``error: <path>: <message>`` and exits with status 2, before any training starts.
    """

    def __init__(self, path: str | None, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def under(self, prefix: str) -> "ConfigError":
        """The same error, located under ``prefix`` (``model.layers[2] (conv)`` + ``kernel_size``)."""
        return ConfigError(prefix, f"{self.path}: {self.message}" if self.path else self.message)


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the run stops at once."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"training diverged: loss is {value} at epoch {epoch}, step {step}")


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces (blank lines dropped): how the CLI prints an error."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates that look like a misspelling of ``name``, closest first (difflib, at most ``n``)."""
    return difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.6)


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """'; did you mean 'x'?' (or '' when nothing is close)."""
    close = close_matches(name, candidates, n)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def check_keys(mapping: Mapping, known: Iterable[str], prefix: str) -> None:
    """Every key of ``mapping`` is one of ``known``; otherwise one error naming ``<prefix>.<key>``."""
    known = list(known)
    for key in mapping:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key{did_you_mean(key, known)} (known: "
                                                 f"{', '.join(sorted(known))})")

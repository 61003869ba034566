"""Value checks shared by the layer builders and the augmentations. Each raises ConfigError naming the argument."""
from __future__ import annotations

from typing import Any, Sequence

from cnnrun.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not _is_int(value) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(name, f"must be {what}, got {value!r}")
    return value


def int_tuple(name: str, value: Any, rank: int, minimum: int = 1) -> tuple[int, ...]:
    """An int (repeated for every spatial dimension) or a list of ``rank`` ints, each >= minimum."""
    values = [value] * rank if _is_int(value) else value
    if (not isinstance(values, (list, tuple)) or len(values) != rank
            or not all(_is_int(v) and v >= minimum for v in values)):
        bound = "positive integer" if minimum == 1 else f"integer >= {minimum}"
        raise ConfigError(name, f"must be a {bound} or a list of {rank} such integers "
                                f"(the input has {rank} spatial dimension{'s' if rank > 1 else ''}), got {value!r}")
    return tuple(values)


def probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(name, f"must be a probability in [0, 1], got {value!r}")
    return float(value)


def positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(name, f"must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def fraction(key: str, value: Any, *, allow_zero: bool, upper_open: bool = False) -> float:
    """A number in [0, 1] or (0, 1], or [0, 1) / (0, 1) with ``upper_open``."""
    lo = "[0" if allow_zero else "(0"
    hi = "1)" if upper_open else "1]"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0) and (value < 1 if upper_open else value <= 1)
    if not ok:
        raise ConfigError(key, f"must be a fraction in {lo}, {hi}, got {value!r}")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, got {value!r}")
    return value


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ConfigError(name, f"must be one of {', '.join(options)}; got {value!r}")
    return value


def spatial_rank(layer: str, in_shape: tuple[int, ...], ranks: Sequence[int] = (1, 2, 3)) -> int:
    """Number of spatial dimensions of a (C, *spatial) input, checked against what the layer supports."""
    rank = len(in_shape) - 1
    if rank not in ranks:
        dims = " or ".join(f"{r + 1}" for r in ranks)
        hint = " (a flat vector has no channels; did the model flatten too early?)" if rank == 0 else ""
        raise ConfigError(None, f"{layer} expects an input of shape (channels, *spatial) with {dims} dimensions, "
                                f"got {fmt_shape(in_shape)}{hint}")
    return rank


def flat_features(layer: str, in_shape: tuple[int, ...]) -> int:
    if len(in_shape) != 1:
        raise ConfigError(None, f"{layer} expects a flat input, got shape {fmt_shape(in_shape)}; "
                                f"add 'flatten' (or a global pooling layer) before it")
    return in_shape[0]


def fmt_shape(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))

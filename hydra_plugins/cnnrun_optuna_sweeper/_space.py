"""The search space: Hydra's sweep grammar to Optuna distributions, and trial values back to override strings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import CompactHydraException


class SweepConfigError(CompactHydraException):
    """A mistake in the sweeper's settings: printed as one ``error: <key>: <message>`` line, no traceback."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"error: {key}: {message}")


_PRIMITIVE = (str, int, float, bool, type(None))


@dataclass
class SearchSpace:
    """Distributions by parameter name, the override text of each categorical choice, and the fixed overrides."""

    distributions: dict[str, Any] = field(default_factory=dict)
    choice_text: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)  # name -> _key(choice) -> text
    fixed: dict[str, str] = field(default_factory=dict)  # key -> the override as written ("trainer.max_epochs=2")

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The overrides of one trial: the fixed ones, then the trial's values of the searched parameters."""
        out = list(self.fixed.values())
        for name in self.distributions:
            value = params[name]
            text = self.choice_text.get(name, {}).get(_key(value))
            out.append(f"{name}={text if text is not None else _number(value)}")
        return out


def _key(value: Any) -> tuple[str, str]:
    """Choices by type and value: 1, 1.0 and True are equal in Python but different overrides."""
    return type(value).__name__, repr(value)


def _text(value: Any) -> str:
    """A config value as override text (YAML's true/false/null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def distribution(override: Override, where: str) -> tuple[Any, dict[tuple[str, str], str] | None]:
    """The Optuna distribution of a sweep override, and for a categorical one the override text of each choice."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        raw = list(override.sweep_iterator())
        texts = list(override.sweep_string_iterator())
        choices = [r if isinstance(r, _PRIMITIVE) else t for r, t in zip(raw, texts)]
        if len(set(map(_key, choices))) != len(choices):
            raise SweepConfigError(where, f"choice has repeated values: {', '.join(texts)}")
        return CategoricalDistribution(choices), {_key(c): t for c, t in zip(choices, texts)}
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise SweepConfigError(where, f"range({value.start}, {value.stop}, {value.step}) is empty")
        step = abs(value.step)
        if all(isinstance(v, int) for v in values):
            return IntDistribution(min(values), max(values), step=int(step)), None
        return FloatDistribution(float(min(values)), float(max(values)), step=float(step)), None
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        low, high = value.start, value.end
        if low is None or high is None or not low < high:
            raise SweepConfigError(where, f"interval({low}, {high}) needs low < high")
        if log and low <= 0:
            raise SweepConfigError(where, f"tag(log, interval({low}, {high})) needs a positive low end")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log), None
        return FloatDistribution(float(low), float(high), log=log), None
    raise SweepConfigError(where, f"{override.input_line!r}: Optuna cannot search this sweep type (use interval, "
                                  f"tag(log, interval), int(interval), choice or range)")


def search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """The space from ``hydra.sweeper.params`` and the command line (which wins: a fixed value there fixes it)."""
    parser = OverridesParser.create()
    space = SearchSpace()
    entries = [(f"hydra.sweeper.params.{key}", f"{key}={_text(value)}") for key, value in params.items()]
    entries += [("command line", arg) for arg in arguments]
    for where, text in entries:
        try:
            override = parser.parse_override(text)
        except Exception as err:
            raise SweepConfigError(where, f"cannot parse {text!r}: {str(err).splitlines()[0]}") from None
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.choice_text.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            dist, texts = distribution(override, where)
            space.distributions[key] = dist
            if texts is not None:
                space.choice_text[key] = texts
        else:
            space.fixed[key] = text
    return space

"""The registry of layer formulas: one dict from layer name to formula, filled by a decorator that rejects
duplicates (the pattern of torch.utils.flop_counter, without its second hand-written copy or its silent zeros).

A formula is a plain function of hyperparameters (ints, bools, tuples) that returns a :class:`Count`: the
parameters and buffers, and the arithmetic written out with the layer's numbers. Nothing here imports torch; a live
module is only read through ``getattr`` to recover its hyperparameters.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import UsageError
from .._units import format_count

Kind = Literal["formula", "container", "direct"]
"""``formula``: a closed form over hyperparameters. ``container``: holds no parameters of its own, its children
carry them (``Sequential``). ``direct``: holds arbitrary parameters with no closed form (``ParameterList``)."""


class FormulaError(UsageError):
    """Hyperparameters a formula cannot use: missing, unknown, of the wrong type or inconsistent."""


@dataclass(frozen=True, slots=True)
class Count:
    """What a formula gives: the parameters and buffers of one layer, and the arithmetic as text."""

    layer: str
    params: int
    buffers: int
    text: str


class Terms:
    """A sum being written out: each term keeps its text and its value, so text and total cannot disagree."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, int]] = []

    def add(self, text: str, value: int) -> Terms:
        """Add one term (``text`` evaluates to ``value``)."""
        self._parts.append((text, value))
        return self

    def extend(self, other: Terms) -> Terms:
        self._parts.extend(other._parts)
        return self

    @property
    def total(self) -> int:
        return sum(value for _, value in self._parts)

    def expression(self) -> str:
        return " + ".join(text for text, _ in self._parts) if self._parts else "0"

    def equation(self) -> str:
        """``"a + b = total"``, or just ``"total"`` when the expression is the total itself."""
        expression, total = self.expression(), format_count(self.total)
        return total if expression == total else f"{expression} = {total}"


def n(value: int) -> str:
    """A number as it appears inside a formula text (thousands separators)."""
    return format_count(value)


def count(layer: str, params: Terms, buffers: Terms | None = None) -> Count:
    """The Count of ``layer`` from its parameter terms and, if it has buffers, their terms."""
    text = f"{layer}: {params.equation()}"
    if params.total == 0 and not params.expression().strip("0"):
        text = f"{layer}: 0 (no parameters)"
    if buffers is not None and buffers.total:
        text += f" (buffers: {buffers.equation()})"
    return Count(layer, params.total, buffers.total if buffers is not None else 0, text)


@dataclass(frozen=True, slots=True)
class Argument:
    """One hyperparameter of a formula: its name, accepted type and default (``REQUIRED`` when it has none)."""

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        shown = _type_name(self.annotation)
        return f"{self.name}: {shown}" if self.required else f"{self.name}: {shown} = {self.default!r}"


@dataclass(frozen=True)
class LayerFormula:
    """A registry entry: how to count one layer type, and how to read its hyperparameters off a live module."""

    name: str
    kind: Kind
    compute: Callable[..., Count] | None = None
    arguments: tuple[Argument, ...] = ()
    ignored: frozenset[str] = frozenset()
    """Constructor arguments of the torch layer that do not change the count (accepted and ignored)."""
    ignores_any: bool = False
    """Every argument is accepted and ignored (parameter-free layers: nothing changes their count)."""
    read: Callable[[Any], dict[str, Any]] | None = None
    """Reads the hyperparameters off a live module; by default, the attributes named like the arguments."""
    description: str = ""
    _arguments_by_name: dict[str, Argument] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._arguments_by_name.update({argument.name: argument for argument in self.arguments})

    def __call__(self, **hyperparameters: Any) -> Count:
        """Evaluate the formula; raises FormulaError naming the valid arguments when the call does not fit."""
        if self.compute is None:
            raise FormulaError(f"{self.name} has no closed-form formula: {self.description}")
        unknown = sorted(set(hyperparameters) - set(self._arguments_by_name) - self.ignored)
        if unknown and not self.ignores_any:
            raise FormulaError(f"{self.name} takes no argument {_names(unknown)}; {self.signature()}")
        missing = [a.name for a in self.arguments if a.required and a.name not in hyperparameters]
        if missing:
            raise FormulaError(f"{self.name} needs {_names(missing)}; {self.signature()}")
        values = {}
        for name, value in hyperparameters.items():  # ignored arguments are left out
            argument = self._arguments_by_name.get(name)
            if argument is not None:
                values[name] = _checked(self.name, argument, value)
        return self.compute(**values)

    def signature(self) -> str:
        """The arguments, as the error messages and ``paramscope formula --list`` show them."""
        if not self.arguments:
            return "it takes no arguments"
        return "arguments: " + ", ".join(argument.describe() for argument in self.arguments)

    def read_module(self, module: Any) -> dict[str, Any]:
        """The hyperparameters of a live module of this layer type."""
        if self.read is not None:
            return self.read(module)
        return {argument.name: _attribute(module, argument) for argument in self.arguments}


def _attribute(module: Any, argument: Argument) -> Any:
    value = getattr(module, argument.name)
    if argument.annotation is bool and not isinstance(value, bool):
        return value is not None  # `bias` is a tensor or None on most layers, a bool on the RNNs
    return value


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(annotation))
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, (tuple, list)) and all(_matches(v, item) for v in value)
    raise TypeError(f"unsupported annotation {annotation!r}")  # a formula declared a type this module cannot check


def _checked(layer: str, argument: Argument, value: Any) -> Any:
    if not _matches(value, argument.annotation):
        raise FormulaError(
            f"{layer}: {argument.name}={value!r} is not {_type_name(argument.annotation)}; {argument.describe()}"
        )
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(item, (int, float)) and not isinstance(item, bool) and item < 0:
            raise FormulaError(f"{layer}: {argument.name}={value!r} must not be negative")
    return tuple(value) if isinstance(value, list) else value


class Registry(Mapping[str, LayerFormula]):
    """Layer name → LayerFormula, with case-insensitive lookup; entries can only be added, once."""

    def __init__(self) -> None:
        self._entries: dict[str, LayerFormula] = {}
        self._by_lower: dict[str, LayerFormula] = {}

    def __getitem__(self, name: str) -> LayerFormula:
        return self._entries[name]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: LayerFormula) -> None:
        if not isinstance(entry.name, str) or not entry.name.isidentifier():
            raise TypeError(f"a layer name must be an identifier, not {entry.name!r}")
        if entry.name.lower() in self._by_lower:
            raise ValueError(f"a formula for {entry.name} is already registered")
        self._entries[entry.name] = entry
        self._by_lower[entry.name.lower()] = entry

    def lookup(self, name: str) -> LayerFormula:
        """The entry for ``name``, case-insensitive; FormulaError listing the known layers otherwise."""
        entry = self._by_lower.get(name.lower())
        if entry is None:
            known = sorted(self._entries, key=str.lower)
            close = difflib.get_close_matches(name.lower(), self._by_lower, n=3, cutoff=0.7)
            hint = f"did you mean {', '.join(self._by_lower[c].name for c in close)}? " if close else ""
            raise FormulaError(f"no formula for layer {name!r}; {hint}known layers: {', '.join(known)}")
        return entry

    def for_class(self, cls: type) -> LayerFormula | None:
        """The entry of the nearest torch.nn class in ``cls``'s MRO, so subclasses inherit their base's formula.

        A lazy layer is looked up as the class it becomes after its first forward (``cls_to_become``): its MRO may
        only reach private bases (``LazyBatchNorm2d`` derives from ``_BatchNorm``, not ``BatchNorm2d``).
        """
        becomes = getattr(cls, "cls_to_become", None)
        if isinstance(becomes, type):
            cls = becomes
        for base in cls.__mro__:
            if base.__module__.startswith("torch.nn.") and base.__name__ in self._entries:
                return self._entries[base.__name__]
        return None


REGISTRY = Registry()


def register(
    *names: str,
    ignored: Iterable[str] = (),
    ignores_any: bool = False,
    read: Callable[[Any], dict[str, Any]] | None = None,
) -> Callable[[Callable[..., Count]], Callable[..., Count]]:
    """Register ``function`` as the formula of the layers ``names``; a name registered twice is an error.

    The function takes the layer name as its first argument, then keyword hyperparameters with types and defaults
    (the arguments users pass to ``paramscope formula``).
    """

    def decorate(function: Callable[..., Count]) -> Callable[..., Count]:
        hints = typing.get_type_hints(function)
        parameters = list(inspect.signature(function).parameters.values())[1:]  # after `layer`
        arguments = tuple(Argument(p.name, hints[p.name], p.default) for p in parameters)
        for name in names:
            compute = _bound(function, name)
            entry = LayerFormula(name, "formula", compute, arguments, frozenset(ignored), ignores_any, read)
            REGISTRY.add(entry)
        return function

    return decorate


def _bound(function: Callable[..., Count], layer: str) -> Callable[..., Count]:
    def compute(**hyperparameters: Any) -> Count:
        return function(layer, **hyperparameters)

    return compute


def register_structural(kind: Kind, description: str, *names: str) -> None:
    """Register layers that have no formula of their own: containers (parameters live in children) or layers that
    hold arbitrary parameters (counted directly)."""
    for name in names:
        REGISTRY.add(LayerFormula(name, kind, description=description))

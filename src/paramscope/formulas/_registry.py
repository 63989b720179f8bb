"""The registry of layer formulas: one dict from layer name to formula, filled by a decorator that rejects
duplicates and bad declarations (the pattern of torch.utils.flop_counter, without its second hand-written copy or
its silent zeros).

A formula is a plain function of hyperparameters (ints, bools, floats, tuples) that returns a :class:`Tally`: the
terms of its parameter and buffer sums, each written with the layer's numbers. The registry turns a tally into a
:class:`Count` with the layer's name. Nothing here imports torch; a live module is only read through ``getattr``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import operator
import reprlib
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import UsageError
from .._units import format_count

Shapes = dict[str, tuple[int, ...]]
"""A layer's parameters and buffers by name (``weight``, ``out_proj.bias``), with their shapes."""

Kind = Literal["formula", "container", "direct"]
"""``formula``: a closed form over hyperparameters. ``container``: holds no parameters of its own, its children
carry them (``Sequential``). ``direct``: holds arbitrary parameters with no closed form (``ParameterList``)."""

_MAX_INT = 2**63 - 1  # torch sizes are int64
_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = 40


class FormulaError(UsageError):
    """Hyperparameters a formula cannot use: missing, unknown, of the wrong type or inconsistent."""


@dataclass(frozen=True, slots=True)
class Count:
    """What a formula gives: the parameters and buffers of one layer, and the arithmetic as text."""

    layer: str
    params: int
    buffers: int
    text: str
    tensors: Callable[[], Shapes] | None = field(default=None, compare=False, repr=False)
    """Lists the layer's tensors with their shapes, where the formula knows them (see :class:`Tally`)."""


def num(value: int) -> str:
    """A number as it appears inside a formula text (thousands separators)."""
    return format_count(value)


@dataclass(frozen=True, slots=True)
class Ratio:
    """A factor written ``a/b`` and worth ``a // b`` (channels per group)."""

    numerator: int
    denominator: int


class Terms:
    """A sum being written out. Each term's text is built from the same numbers as its value, so the text always
    evaluates to the total."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, int]] = []

    def add(self, text: str, value: int) -> Terms:
        """Add one term described in words (``"10 class weights"``, ``"self_attn 1,050,624"``)."""
        self._parts.append((text, value))
        return self

    def product(self, *factors: int | Ratio, label: str = "") -> Terms:
        """Add the product of ``factors``, written ``a × b/g × c`` (a label, if any, follows in brackets)."""
        value = 1
        texts = []
        for factor in factors:
            if isinstance(factor, Ratio):
                value *= factor.numerator // factor.denominator
                texts.append(f"{num(factor.numerator)}/{num(factor.denominator)}")
            else:
                value *= factor
                texts.append(num(factor))
        text = " × ".join(texts) if texts else "1"
        return self.add(f"{text} [{label}]" if label else text, value)

    @property
    def total(self) -> int:
        return sum(value for _, value in self._parts)

    @property
    def empty(self) -> bool:
        return not self._parts

    def expression(self) -> str:
        return " + ".join(text for text, _ in self._parts) if self._parts else "0"

    def equation(self) -> str:
        """``"a + b = total"``, or just ``"total"`` for a single term that is its own value."""
        total = num(self.total)
        if len(self._parts) == 1 and self._parts[0][0] == total:
            return total
        return f"{self.expression()} = {total}"


@dataclass(frozen=True)
class Tally:
    """What a formula function returns: the terms of the parameter count and of the buffer count."""

    params: Terms
    buffers: Terms = field(default_factory=Terms)
    tensors: Callable[[], Shapes] | None = None
    """Lists the tensors the terms count, by name with their shapes, where the formula knows them; ``None`` where it
    knows only the counts. A function, called only when tensors are compared: a stack of 10⁹ layers has a count, and
    no list of its tensors that fits in memory."""
    sizes: Callable[[], Shapes] | None = None
    """The tensors whose sizes are checked, where that is not :attr:`tensors`: one of a stack's layers stands for
    them all; a loss whose class weights have no known shape still has a projection. ``None``: :attr:`tensors`."""

    def checked_sizes(self) -> Shapes:
        """The tensors :func:`count` checks against torch's limit, by name with their shapes."""
        listing = self.sizes or self.tensors
        return listing() if listing is not None else {}


def _check_sizes(layer: str, shapes: Shapes) -> None:
    """FormulaError for a tensor of more elements than torch makes (it refuses any past 2**63 - 1, whatever the
    dtype): each argument may be an int64 and their product not."""
    for name, shape in shapes.items():
        elements = math.prod(shape)
        if elements > _MAX_INT:
            dims = " × ".join(num(size) for size in shape)
            raise FormulaError(
                f"{layer}: {name} ({dims}) would have {num(elements)} elements, more than a tensor can hold (2**63 - 1)"
            )


def count(layer: str, tally: Tally) -> Count:
    """The Count of ``layer``: its totals and the text ``"Layer: expression = total (buffers: …)"``; FormulaError for
    a tensor torch could not make."""
    _check_sizes(layer, tally.checked_sizes())
    text = f"{layer}: {tally.params.equation()}" if not tally.params.empty else f"{layer}: 0 (no parameters)"
    if not tally.buffers.empty:
        text += f" (buffers: {tally.buffers.equation()})"
    return Count(layer, tally.params.total, tally.buffers.total, text, tally.tensors)


_SUPPORTED = (int, bool, float, str, type(None))


def _check_annotation(annotation: Any) -> None:
    """Reject, when a formula is registered, a type the argument checks below cannot verify."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            _check_annotation(option)
    elif origin is tuple:
        args = typing.get_args(annotation)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"tuple arguments must be tuple[X, ...], not {annotation!r}")
        _check_annotation(args[0])
    elif annotation not in _SUPPORTED:
        raise TypeError(f"unsupported argument type {annotation!r}")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is bool or annotation is str or annotation is type(None):
        return isinstance(value, annotation)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin = typing.get_origin(annotation)
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    return any(_matches(value, option) for option in typing.get_args(annotation))  # a union


def _plain(value: Any) -> Any:
    """Python values for what torch also accepts: numpy integers (``np.prod(shape)``), lists and arrays of sizes
    (numpy's, torch's) for tuples; anything else as it is, for the type check to refuse."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item) for item in value)
    if not isinstance(value, (bool, int, float, str)) and hasattr(value, "__index__"):
        try:
            return operator.index(value)
        except TypeError:  # an array of more than one element, or of floats: numpy and torch index neither
            pass
        try:
            items = list(value)  # torch takes an array of sizes as it takes a tuple; a 0-d array is no sequence
        except TypeError:
            return value
        return tuple(_plain(item) for item in items)
    return value


@dataclass(frozen=True, slots=True)
class Argument:
    """One hyperparameter of a formula: its name, accepted type and default (``empty`` when it has none)."""

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        shown = _type_name(self.annotation)
        return f"{self.name}: {shown}" if self.required else f"{self.name}: {shown} = {self.default!r}"

    def checked(self, layer: str, value: Any, signature: Callable[[], str]) -> Any:
        """``value`` as the formula takes it; FormulaError when it is of the wrong type (the message ends with
        ``signature()``, every argument of the layer) or out of range."""
        value = _plain(value)
        if not _matches(value, self.annotation):
            shown = _short.repr(value)
            raise FormulaError(f"{layer}: {self.name}={shown} is not {_type_name(self.annotation)}; {signature()}")
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if isinstance(item, float) and not math.isfinite(item):
                raise FormulaError(f"{layer}: {self.name}={_short.repr(value)} must be a finite number")
            if item < 0:
                raise FormulaError(f"{layer}: {self.name}={_short.repr(value)} must not be negative")
            # a float argument (div_value, momentum) is no size, even given as an int
            if isinstance(item, int) and item > _MAX_INT and not _matches(0.5, self.annotation):
                raise FormulaError(
                    f"{layer}: {self.name}={_short.repr(value)} is larger than any tensor size (2**63 - 1)"
                )
        return value


@dataclass(frozen=True)
class LayerFormula:
    """A registry entry: how to count one layer type, and how to read its hyperparameters off a live module."""

    name: str
    kind: Kind
    compute: Callable[..., Tally] | None = None
    arguments: Mapping[str, Argument] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    """Constructor arguments of the torch layer that do not change the count (accepted and ignored)."""
    ignores_any: bool = False
    """Any argument is accepted: a parameter-free layer has no parameters whatever it is built with."""
    read: Callable[[Any], dict[str, Any]] | None = None
    """Reads the hyperparameters off a live module; by default, the attributes named like the arguments."""
    description: str = ""
    alias: str | None = None
    """The other name this entry was looked up by (``LazyLinear`` for ``Linear``); error messages say so."""
    validate: Callable[[str, Mapping[str, Any]], None] | None = None
    """Refuses, as torch's constructor does, values of the arguments the count ignores (a padding string torch does
    not know): called with the layer's name and every argument given, those the formula uses checked."""

    def __call__(self, **hyperparameters: Any) -> Count:
        """Evaluate the formula; raises FormulaError naming the valid arguments when the call does not fit."""
        if self.compute is None:
            raise FormulaError(f"{self.name} has no closed-form formula: {self.description}")
        try:
            used = self.accepted(hyperparameters)
            if self.validate is not None:
                self.validate(self.name, {**hyperparameters, **used})
            return count(self.name, self.compute(**used))
        except FormulaError as error:
            if self.alias is None:
                raise
            raise FormulaError(f"{self.alias} is {self.name} once initialised: {error}") from None

    def accepted(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters the formula uses, checked; ignored ones are left out."""
        unknown = sorted(set(hyperparameters) - set(self.arguments) - self.ignored)
        if unknown and not self.ignores_any:
            raise FormulaError(f"{self.name} takes no argument {_names(unknown)}; {self.signature()}")
        missing = [a.name for a in self.arguments.values() if a.required and a.name not in hyperparameters]
        if missing:
            raise FormulaError(f"{self.name} needs {_names(missing)}; {self.signature()}")
        return {
            name: self.arguments[name].checked(self.name, value, self.signature)  # written only for an error
            for name, value in hyperparameters.items()
            if name in self.arguments
        }

    def signature(self) -> str:
        """The arguments, as the error messages and ``paramscope formula --list`` show them."""
        if not self.arguments:
            return "it takes no arguments"
        return "arguments: " + ", ".join(argument.describe() for argument in self.arguments.values())

    def read_module(self, module: Any) -> dict[str, Any]:
        """The hyperparameters of a live module of this layer type."""
        if self.read is not None:
            return self.read(module)
        return {name: _attribute(module, argument) for name, argument in self.arguments.items()}


def _attribute(module: Any, argument: Argument) -> Any:
    value = getattr(module, argument.name)
    if argument.annotation is bool and not isinstance(value, bool):
        # `bias` is a tensor or None on most layers, a bool on the RNNs; a flag given as 0 or 1 (affine=0,
        # bidirectional=1) is kept as given, and torch reads it as a bool
        return value is not None if value is None or hasattr(value, "shape") else bool(value)
    return value


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


class Registry(Mapping[str, LayerFormula]):
    """Layer name → LayerFormula, with case-insensitive lookup; entries can only be added, once.

    Aliases are names :meth:`lookup` also accepts for an entry (``LazyLinear`` for ``Linear``); they are not keys
    of the mapping, so iterating, ``--list`` and the coverage tests see each formula once.
    """

    def __init__(self) -> None:
        self._entries: dict[str, LayerFormula] = {}
        self._by_lower: dict[str, LayerFormula] = {}  # entries and aliases
        self._aliases: dict[str, str] = {}

    def __getitem__(self, name: str) -> LayerFormula:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
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

    def add_alias(self, alias: str, name: str) -> None:
        """Let :meth:`lookup` find the entry ``name`` as ``alias`` too; a name already taken is an error."""
        if not alias.isidentifier():
            raise TypeError(f"a layer name must be an identifier, not {alias!r}")
        if alias.lower() in self._by_lower:
            raise ValueError(f"a formula for {alias} is already registered")
        self._by_lower[alias.lower()] = dataclasses.replace(self._entries[name], alias=alias)
        self._aliases[alias] = name

    @property
    def aliases(self) -> Mapping[str, str]:
        """Alias → the name of the entry it stands for."""
        return types.MappingProxyType(self._aliases)

    def lookup(self, name: str | type) -> LayerFormula:
        """The entry for ``name`` or one of its aliases, case-insensitive, or for a torch.nn class (that of the
        nearest torch.nn class it derives from, see :meth:`for_class`); FormulaError listing the known layers
        otherwise."""
        if isinstance(name, type):
            by_class = self.for_class(name)
            if by_class is None:
                raise FormulaError(f"no formula for class {name.__module__}.{name.__qualname__}: it is no torch.nn "
                                   "layer paramscope knows, nor derives from one")  # fmt: skip
            return by_class
        if not isinstance(name, str):
            raise FormulaError(f"a layer is a name or a torch.nn class, not an object of type {type(name).__name__}")
        entry = self._by_lower.get(name.lower())
        if entry is None:
            known = sorted(self._entries, key=str.lower)
            close = difflib.get_close_matches(name.lower(), self._by_lower, n=3, cutoff=0.7)
            suggestions = [self._by_lower[c].alias or self._by_lower[c].name for c in close]
            hint = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
            raise FormulaError(f"no formula for layer {_short.repr(name)}; {hint}known layers: {', '.join(known)}")
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
    validate: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> Callable[[Callable[..., Tally]], Callable[..., Tally]]:
    """Register ``function`` as the formula of the layers ``names``; a name registered twice is an error.

    The function takes keyword hyperparameters with types and defaults (the arguments users pass to
    ``paramscope formula``); their types are checked here, once, when the formula is registered. ``validate``
    refuses values of the ``ignored`` arguments that torch refuses (see :attr:`LayerFormula.validate`).
    """

    def decorate(function: Callable[..., Tally]) -> Callable[..., Tally]:
        hints = typing.get_type_hints(function)
        arguments = {}
        for parameter in inspect.signature(function).parameters.values():
            _check_annotation(hints[parameter.name])
            arguments[parameter.name] = Argument(parameter.name, hints[parameter.name], parameter.default)
        for name in names:
            REGISTRY.add(LayerFormula(name, "formula", function, arguments, frozenset(ignored), ignores_any, read,
                                      validate=validate))  # fmt: skip
        return function

    return decorate


def register_structural(kind: Kind, description: str, *names: str) -> None:
    """Register layers that have no formula of their own: containers (parameters live in children) or layers that
    hold arbitrary parameters (counted directly)."""
    for name in names:
        REGISTRY.add(LayerFormula(name, kind, description=description))

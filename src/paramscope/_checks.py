"""Checks of the public functions' arguments: a value of the wrong type is a one-line UsageError that names the
argument, not a TypeError or an AttributeError from deep inside.

>>> integer("depth", "2")
Traceback (most recent call last):
...
paramscope._errors.UsageError: depth must be an integer, not str '2'
"""

from __future__ import annotations

import contextlib
import operator
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._errors import TargetError, UsageError

# values shown with their repr; any other object by its type alone (a module's repr runs over many lines)
_PLAIN = (str, bytes, bool, int, float, list, tuple, dict, set)
T = TypeVar("T")


def shown(value: Any) -> str:
    """A value as an error names it: its type and a short repr (``str '8'``), or its type alone for an object that
    is not a plain value (``Linear``).

    >>> shown("8"), shown(None), shown([1, 2]), shown(object())
    ("str '8'", 'None', 'list [1, 2]', 'object')
    """
    if value is None:
        return "None"
    if type(value) in _PLAIN:
        return f"{type(value).__name__} {reprlib.repr(value)}"
    return type(value).__name__


def integer(name: str, value: Any, what: str = "an integer", minimum: int | None = None) -> int:
    """``value`` as an int (numpy's integers too); a bool, a float or a string is refused, naming ``name``, and so is
    a value below ``minimum``.

    >>> integer("batch", 8), integer("depth", 0, minimum=0)
    (8, 0)
    >>> integer("depth", -1, minimum=0)
    Traceback (most recent call last):
    ...
    paramscope._errors.UsageError: depth must be 0 or more, not -1
    """
    if not isinstance(value, bool):  # True is an int to Python, never a batch or a depth to a user
        with contextlib.suppress(TypeError):
            number = operator.index(value)
            if minimum is not None and number < minimum:
                raise UsageError(f"{name} must be {minimum} or more, not {number}")
            return number
    raise UsageError(f"{name} must be {what}, not {shown(value)}")


def string(name: str, value: Any, what: str = "a string", optional: bool = False) -> str | None:
    """``value`` when it is a string (or None, when ``optional``)."""
    if (value is None and optional) or isinstance(value, str):
        return value
    raise UsageError(f"{name} must be {what}, not {shown(value)}")


def parsed(name: str, parse: Callable[[str], T], text: str) -> T:
    """``parse(text)``, its UsageError naming the argument and its flag: ``--device-memory 2G`` is one of several
    sizes a command takes.

    >>> parsed("device_memory", int, "1")
    1
    >>> from paramscope._units import parse_bytes
    >>> parsed("device_memory", parse_bytes, "lots")
    Traceback (most recent call last):
    ...
    paramscope._errors.UsageError: device_memory (--device-memory): size 'lots' is not a number with an optional unit
    """
    try:
        return parse(text)
    except UsageError as error:
        raise UsageError(f"{name} (--{name.replace('_', '-')}): {error}") from None


def flag(name: str, value: Any) -> bool:
    """``value`` when it is a bool (numpy's too, as :func:`integer` takes numpy's integers): a truthy string such as
    ``"no"`` would turn the option on unseen."""
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in {"bool", "bool_"}:  # numpy 2 named it bool
        return bool(value)
    raise UsageError(f"{name} must be True or False, not {shown(value)}")


def flags(**values: Any) -> None:
    """Check each of ``values`` with :func:`flag`."""
    for name, value in values.items():
        flag(name, value)


def one_of(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``.

    >>> one_of("units", "si", ("iec", "si"))
    'si'
    >>> one_of("format", "xml", ("table", "json", "csv"))
    Traceback (most recent call last):
    ...
    paramscope._errors.UsageError: format must be 'table', 'json' or 'csv', not str 'xml'
    """
    if isinstance(value, str) and value in choices:
        return value
    names = [repr(choice) for choice in choices]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise UsageError(f"{name} must be {listed}, not {shown(value)}")


def arguments(name: str, value: Any) -> dict[str, Any]:
    """A model's keyword arguments as a dict: ``value``, a mapping, or None for none."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise UsageError(f"{name} must be a mapping of the model's arguments, not {type(value).__name__}")


def class_name(value: Any) -> str | None:
    """``model_class``: a class name, or None."""
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"model_class must be a class name (a string), not {type(value).__name__}")


def target_only(**options: Any) -> None:
    """Refuse the ``options`` given (set, true or a non-empty mapping) that only a target string uses, for a model
    that is not one: ignored in silence, they would hide a mistake.

    >>> target_only(arguments={}, model_class=None, trust_remote_code=False)
    >>> target_only(arguments={"n": 1}, model_class="Foo", trust_remote_code=False)
    Traceback (most recent call last):
    ...
    paramscope._errors.TargetError: arguments and model_class apply to target strings only
    """
    given = [
        name
        for name, value in options.items()
        if value is not None and value is not False and not (isinstance(value, Mapping) and not value)
    ]
    if given:
        names = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
        raise TargetError(f"{names} {'applies' if len(given) == 1 else 'apply'} to target strings only")

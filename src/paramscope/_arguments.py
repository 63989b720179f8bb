"""``key=value`` arguments from the command line, as Python keyword arguments."""

from __future__ import annotations

import ast
from typing import Any

from ._errors import UsageError


def parse_arguments(items: list[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into keyword arguments.

    Values are Python literals when they parse as one; ``true``/``false``/``none``/``null`` in any case are
    accepted as well, as people type them in shells; anything else stays a string.

    >>> parse_arguments(["num_classes=10", "bias=false", "name=tiny", "dims=(2, 3)"])
    {'num_classes': 10, 'bias': False, 'name': 'tiny', 'dims': (2, 3)}
    """
    arguments: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"argument {item!r} is not of the form key=value")
        if key in arguments:
            raise UsageError(f"argument {key!r} is given twice")
        arguments[key] = _literal(text)
    return arguments


_SHELL_WORDS = {"true": True, "false": False, "none": None, "null": None}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: {[1]: 2}, {{1}}
        return _SHELL_WORDS.get(text.lower(), text)

"""JSON from files paramscope does not trust (safetensors headers, indexes, configs): every way it can fail is one
``ValueError`` with a one-line message.

``json.loads`` fails on malformed text with ``JSONDecodeError``, but on well-formed text that Python will not hold
otherwise: a ``RecursionError`` for arrays nested thousands deep, a plain ``ValueError`` for an integer of more
than ``sys.get_int_max_str_digits()`` digits. Both are what a crafted file gives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def loads(
    text: str | bytes,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    *,
    negative_zero_as_float: bool = False,
) -> Any:
    """``json.loads(text, object_pairs_hook=...)``; any failure (bytes that are not UTF-8 included) a ``ValueError``
    of one line.

    With ``negative_zero_as_float``, the number ``-0`` is read as the float ``-0.0``, as serde_json reads it (the
    safetensors crate then refuses it as a size), not as the integer ``0``.

    >>> loads('{"shape": [2, 3]}')
    {'shape': [2, 3]}
    >>> loads("[-0, 0]"), loads("[-0, 0]", negative_zero_as_float=True)
    ([0, 0], [-0.0, 0])
    >>> loads("[" * 100_000 + "]" * 100_000)
    Traceback (most recent call last):
    ValueError: nested too deeply to read
    """
    # Only a text that holds "-0" somewhere (in a name too) is read with the hook: it is called for every integer.
    parse_int = _int_or_negative_zero if negative_zero_as_float and _has_negative_zero(text) else None
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_int=parse_int)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError say what is wrong already
        if type(error) is not ValueError:
            raise
        # "Exceeds the limit (4300 digits) for integer string conversion: …"
        raise ValueError(f"a number of more than {sys.get_int_max_str_digits():,} digits") from None


def _has_negative_zero(text: str | bytes) -> bool:
    return b"-0" in text if isinstance(text, bytes) else "-0" in text


def _int_or_negative_zero(literal: str) -> int | float:
    return -0.0 if literal == "-0" else int(literal)

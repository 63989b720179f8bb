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


def loads(text: str | bytes, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """``json.loads(text, object_pairs_hook=...)``; any failure (bytes that are not UTF-8 included) a ``ValueError``
    of one line.

    >>> loads('{"shape": [2, 3]}')
    {'shape': [2, 3]}
    >>> loads("[" * 100_000 + "]" * 100_000)
    Traceback (most recent call last):
    ValueError: nested too deeply to read
    """
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError say what is wrong already
        if type(error) is not ValueError:
            raise
        # "Exceeds the limit (4300 digits) for integer string conversion: …"
        raise ValueError(f"a number of more than {sys.get_int_max_str_digits():,} digits") from None

"""The JSON format: ``Report.to_dict()`` (schema ``paramscope.report/1``), whole whatever the view."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .._collector import collector_paused
from .._report import Report
from ._escape import encodable


def dumps(data: Any, **options: Any) -> str:
    r"""``json.dumps(data, ensure_ascii=False, **options)``, with lone surrogates escaped: text UTF-8 can encode.

    >>> dumps({"name": "caf\u00e9\ud800"})
    '{"name": "café\\ud800"}'
    """
    return encodable(json.dumps(data, ensure_ascii=False, **options))


def dumps_by_line(data: Any, *, allow_nan: bool = True) -> str:
    """``data`` as JSON text for people and line tools alike, ending with a newline: objects indented by two spaces,
    a list of numbers on one line (a shape), any other list one item per line, each item whole on its line (a
    tensor's row, a note, a file), so that ``grep`` finds a tensor's whole row. Lone surrogates are escaped, as in
    :func:`dumps`.

    Why not ``json.dumps(indent=2)``: with an indent, the standard library encodes in Python, not C, and puts every
    value of every row on a line of its own: the report of a checkpoint of 94,000 tensors took 1.4 s and 59 MB so,
    and takes 0.6 s and 44 MB here, where the C encoder writes each item.

    >>> print(dumps_by_line({"shape": [2, 3], "rows": [{"name": "w", "shape": [2, 3]}], "notes": []}), end="")
    {
      "shape": [2, 3],
      "rows": [
        {"name": "w", "shape": [2, 3]}
      ],
      "notes": []
    }
    """
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=allow_nan).encode
    parts: list[str] = []
    _write(data, encode, "\n", parts)
    return encodable("".join(parts)) + "\n"


def _write(value: Any, encode: Callable[[Any], str], newline: str, parts: list[str]) -> None:
    """Append ``value``'s JSON text to ``parts``; ``newline`` is a line break and the indent of ``value``'s line."""
    inner = newline + "  "
    # an object whose keys JSON would convert (numbers, None) is written whole, converted by the encoder itself
    if isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            parts.append(f"{',' if index else ''}{inner}{encode(key)}: ")
            _write(item, encode, inner, parts)
        parts.append(newline + "}")
    elif isinstance(value, (list, tuple)) and not all(isinstance(item, (int, float)) or item is None for item in value):
        parts.append("[" + ",".join(inner + encode(item) for item in value) + newline + "]")
    else:  # a number, a string, None, an empty object or list, a list of numbers: one line
        parts.append(encode(value))


def render_json(report: Report) -> str:
    """The report as one JSON object (laid out by :func:`dumps_by_line`), ending with a newline."""
    with collector_paused():  # a dict and a line per tensor: a million of each for some checkpoints
        return dumps_by_line(report.to_dict())

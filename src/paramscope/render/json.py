"""The JSON format: ``Report.to_dict()`` (schema ``paramscope.report/1``), whole whatever the view."""

from __future__ import annotations

import json
import re
from typing import Any

from .._report import Report

# A lone surrogate (U+D800 to U+DFFF) is a str but no UTF-8: a tensor name in a file may hold one (JSON allows the
# escape), and the output could not be written. As an escape it is valid JSON that reads back as the same str.
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(data: Any, **options: Any) -> str:
    r"""``json.dumps(data, ensure_ascii=False, **options)``, with lone surrogates escaped: text UTF-8 can encode.

    >>> dumps({"name": "caf\u00e9\ud800"})
    '{"name": "café\\ud800"}'
    """
    text = json.dumps(data, ensure_ascii=False, **options)
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def render_json(report: Report) -> str:
    """The report as one indented JSON object, ending with a newline."""
    return dumps(report.to_dict(), indent=2) + "\n"

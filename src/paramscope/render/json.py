"""The JSON format: ``Report.to_dict()`` (schema ``paramscope.report/1``), whole whatever the view."""

from __future__ import annotations

import json
from typing import Any

from .._report import Report
from ._escape import encodable


def dumps(data: Any, **options: Any) -> str:
    r"""``json.dumps(data, ensure_ascii=False, **options)``, with lone surrogates escaped: text UTF-8 can encode.

    >>> dumps({"name": "caf\u00e9\ud800"})
    '{"name": "café\\ud800"}'
    """
    return encodable(json.dumps(data, ensure_ascii=False, **options))


def render_json(report: Report) -> str:
    """The report as one indented JSON object, ending with a newline."""
    return dumps(report.to_dict(), indent=2) + "\n"

"""The JSON format: ``Report.to_dict()`` (schema ``paramscope.report/1``), whole whatever the view."""

from __future__ import annotations

import json

from .._report import Report


def render_json(report: Report) -> str:
    """The report as one indented JSON object, ending with a newline."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"

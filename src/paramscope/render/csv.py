"""The CSV format: raw numbers, one row per module (to the view's depth) or, with ``tensors``, per tensor."""

from __future__ import annotations

import csv
import io

from .._report import Report
from ._layout import View

MODULE_COLUMNS = (
    "path", "type", "depth", "params", "param_bytes", "own_params", "own_param_bytes", "trainable", "buffers",
    "buffer_bytes", "complete", "same_as", "shared",
)  # fmt: skip
TENSOR_COLUMNS = ("name", "kind", "shape", "numel", "dtype", "bytes", "trainable", "persistent", "aliases")


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, tuple):
        if all(isinstance(item, int) for item in value):  # a shape; "[]" is a scalar
            return "[" + ", ".join(str(item) for item in value) + "]"
        return ";".join(str(item) for item in value)
    return value


def render_csv(report: Report, view: View | None = None) -> str:
    """Modules (or tensors) as CSV with a header row: empty cells for unknown values, names joined with ``;``,
    shapes as ``[64, 3, 7, 7]``."""
    view = view or View()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if view.tensors:
        writer.writerow(TENSOR_COLUMNS)
        for record in report.tensors:
            writer.writerow([_cell(getattr(record, column)) for column in TENSOR_COLUMNS])
    else:
        writer.writerow(MODULE_COLUMNS)
        for node in report.modules:
            if node.depth <= view.depth:
                writer.writerow([_cell(getattr(node, column)) for column in MODULE_COLUMNS])
    return out.getvalue()

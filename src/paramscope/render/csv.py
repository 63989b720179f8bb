"""The CSV format: raw numbers, one row per module (to the view's depth), per call record of a forward pass (for a
summary, to the view's depth), per tensor (with ``tensors``), or per memory item and the totals under them (for a
report with a memory plan)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from .._memory import made_from_tensors
from .._report import CallRecord, Report
from ._escape import encodable
from ._layout import View, fits_verdict, memory_totals

MODULE_COLUMNS = (
    "path", "type", "depth", "params", "param_bytes", "own_params", "own_param_bytes", "trainable", "buffers",
    "buffer_bytes", "complete", "same_as", "shared", "formula", "formula_matches", "active_params",
)  # fmt: skip
CALL_COLUMNS = CallRecord._fields
"""The JSON's ``calls[]`` keys; with ``explain``, the module's ``formula`` and ``formula_matches`` follow."""
EXPLAIN_COLUMNS = ("formula", "formula_matches")
MEMORY_COLUMNS = ("name", "label", "per_device_bytes", "total_bytes", "where", "formula")
TENSOR_COLUMNS = ("name", "kind", "shape", "numel", "dtype", "bytes", "trainable", "persistent", "aliases")


def _cell(column: str, value: object) -> object:
    if value is None:
        return ""
    if column == "shape" and isinstance(value, tuple):  # "[]" is a scalar, an empty cell an unknown shape
        return "[" + ", ".join(str(dim) for dim in value) + "]"
    if isinstance(value, tuple):  # names: aliases, shared
        return ";".join(value)
    return value


class _RowWriter:
    """CSV rows that end in ``\n``, with each field that holds a line break quoted. The csv module quotes a field
    for the characters of its line terminator alone: with ``\n`` as the terminator a ``\r`` in a module's name
    would stay bare, and a reader would end the row there. So each row is written with ``\r\n`` and ends in
    ``\n`` instead."""

    def __init__(self, out: io.StringIO) -> None:
        self._out = out
        self._row = io.StringIO()
        self._writer = csv.writer(self._row, lineterminator="\r\n")

    def writerow(self, row: Iterable[object]) -> None:
        self._row.seek(0)
        self._row.truncate()
        self._writer.writerow(row)
        self._out.write(self._row.getvalue().removesuffix("\r\n") + "\n")


def render_csv(report: Report, view: View | None = None) -> str:
    """Modules, a summary's call records, tensors or memory items as CSV with a header row: empty cells for unknown
    values, names joined with ``;``, shapes as ``[64, 3, 7, 7]``; names as they are, but for a lone surrogate, which
    is written as its escape (``\\ud800``), as in every format."""
    view = view or View()
    out = io.StringIO()
    writer = _RowWriter(out)
    if report.memory is not None:
        writer.writerow(MEMORY_COLUMNS)
        for item in report.memory.items:
            row = [_cell(column, getattr(item, column)) for column in MEMORY_COLUMNS]
            if not report.totals.complete and made_from_tensors(item):  # the table's "≥", in the words below
                row[-1] = f"{row[-1]}; a lower bound (see the notes)"
            writer.writerow(row)
        plan = report.memory
        for name, size, formula, complete in memory_totals(plan, report.totals.complete):  # the others' "≥"
            writer.writerow([name, "", size, "", "", formula + ("" if complete else "; a lower bound (see the notes)")])
        verdict = fits_verdict(plan)
        if verdict is not None:  # as the table's last line
            writer.writerow(["device memory", "", plan.settings.device_memory, "", "", verdict])
    elif view.tensors:
        writer.writerow(TENSOR_COLUMNS)
        for record in report.tensors:
            writer.writerow([_cell(column, getattr(record, column)) for column in TENSOR_COLUMNS])
    elif report.calls is not None:
        explain = EXPLAIN_COLUMNS if view.explain else ()
        nodes = {node.path: node for node in report.modules}
        writer.writerow((*CALL_COLUMNS, *explain))
        for call in report.calls:
            if call.depth <= view.depth:
                node = nodes.get(call.path)
                explained = [_cell(column, getattr(node, column, None)) for column in explain]
                writer.writerow([*(_cell(column, getattr(call, column)) for column in CALL_COLUMNS), *explained])
    else:
        writer.writerow(MODULE_COLUMNS)
        for node in report.modules:
            if node.depth <= view.depth:
                writer.writerow([_cell(column, getattr(node, column)) for column in MODULE_COLUMNS])
    return encodable(out.getvalue())

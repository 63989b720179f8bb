"""Layouts that are not a model's report: a formula's result, the formula catalogue and the dtype table."""

from __future__ import annotations

from collections.abc import Iterable

from .. import dtypes as dtype_table
from .._units import Units, format_bytes, format_count
from ..formulas import Count, LayerFormula
from ._layout import Column, Document, Section


def formula_document(result: Count, units: Units) -> Document:
    """A formula's count, then what the layer's parameters weigh in each common dtype."""
    rows = []
    for name in dtype_table.COMMON:
        dtype = dtype_table.lookup(name)
        size = dtype.packed_nbytes(result.params)
        rows.append((name, f"{dtype.bits:g}", format_bytes(size, units), f"{size:,}"))
    columns = (Column("Dtype"), Column("Bits", "right"), Column("Size", "right"), Column("Bytes", "right"))
    notes = [f"buffers: {format_count(result.buffers)} elements, kept in their own dtypes"] if result.buffers else []
    return Document(result.text, [Section("Size by dtype", columns, rows)], notes)


def formula_list_document(entries: Iterable[LayerFormula]) -> Document:
    """Every registered layer with its arguments (or why it has no formula)."""
    rows: list[tuple[str, ...]] = []
    for entry in sorted(entries, key=lambda e: e.name.lower()):
        if entry.kind != "formula":
            rows.append((entry.name, entry.kind, entry.description))
        elif entry.ignores_any and not entry.arguments:
            rows.append((entry.name, "formula", "no parameters"))
        else:
            rows.append(
                (entry.name, "formula", ", ".join(argument.describe() for argument in entry.arguments.values()))
            )
    columns = (Column("Layer"), Column("Kind"), Column("Arguments"))
    return Document("Layer formulas (paramscope formula LAYER key=value ...)", [Section("Layers", columns, rows)], [])


def dtypes_document() -> Document:
    """The dtype table every size in paramscope comes from."""
    rows = []
    for dtype in dtype_table.iter_dtypes():
        block = dtype.storage_block_bytes
        if dtype.block_elements == 1:
            storage = f"{block} B per element"
        else:
            storage = f"{block} B per {dtype.block_elements} elements"
        rows.append((dtype.name, ", ".join(dtype.aliases), f"{dtype.bits:g}", storage, dtype.description))
    columns = (Column("Dtype"), Column("Aliases"), Column("Bits", "right"), Column("Storage"), Column("Notes"))
    return Document("Dtypes: bits per value and storage per element", [Section("Dtypes", columns, rows)], [])

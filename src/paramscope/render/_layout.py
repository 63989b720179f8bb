"""What a rendered report contains, independent of how it is drawn.

``layout(report, view)`` turns a Report into sections of already-formatted cells; the text, rich and Markdown
renderers only draw them, so every format shows the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .._check import Check
from .._memory import MemoryPlan
from .._report import ModuleNode, Report, TensorRecord
from .._units import Units, format_bytes, format_count, humanize_count, humanize_operations

Align = Literal["left", "right"]

_SOURCE_KINDS = {"module": "nn.Module", "hf-config": "transformers config"}


@dataclass(frozen=True)
class View:
    """How much of a report to show and in which units."""

    depth: int = 2
    tensors: bool = False
    units: Units = "iec"
    title: str | None = None
    explain: bool = False
    """Show each module's layer formula (the report must have been made with ``explain``)."""


@dataclass(frozen=True)
class Column:
    header: str
    align: Align = "left"


@dataclass(frozen=True)
class Section:
    """A titled table. ``rows`` hold formatted cells, one per column."""

    title: str
    columns: tuple[Column, ...]
    rows: Sequence[tuple[str, ...]] = ()


@dataclass(frozen=True)
class Document:
    heading: str
    sections: list[Section]
    notes: list[str]


def printable(text: str) -> str:
    """``text`` with control and format characters (escape sequences, newlines, bidi overrides) written as escapes:
    tensor names come from untrusted files and must not drive the terminal or reorder what it shows.

    >>> print(printable("emb\\x1b[31m.weight\\u202e"))
    emb\\x1b[31m.weight\\u202e
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _count(value: int, complete: bool = True) -> str:
    return format_count(value) if complete else f"≥ {format_count(value)}"


def _size(value: int, units: Units, complete: bool = True) -> str:
    text = format_bytes(value, units)
    return text if complete else f"≥ {text}"


def _heading(report: Report, view: View) -> str:
    if view.title:
        return view.title
    source = report.source
    details = _SOURCE_KINDS.get(source.kind, source.kind)
    if source.device:
        details += f" on {source.device}"
    return f"{source.target} ({details})"


NO_FORMULA = "no formula — counted directly"


def _module_note(node: ModuleNode, explain: bool) -> str:
    if node.same_as is not None:
        return f"same module as {node.same_as or '(model)'}"
    parts = []
    if node.shared:
        parts.append("shares " + ", ".join(node.shared))
    if not node.complete:
        parts.append("sizes unknown (see notes)")  # uninitialised lazy tensors, or packed weights unread
    if explain and node.formula_matches is False:
        parts.append("✗ formula differs from its tensors: the tensors are counted")
    elif explain and node.formula is not None and node.formula_matches is None:
        parts.append("formula cannot be checked")
    elif explain and node.formula is None and node.own_params and node.complete:
        parts.append(NO_FORMULA)
    return "; ".join(parts)


def _modules_section(report: Report, view: View) -> Section:
    frozen = bool(report.totals.frozen)
    buffers = report.totals.buffers > 0
    nodes = [node for node in report.modules if node.depth <= view.depth]
    notes = [_module_note(node, view.explain) for node in nodes]
    columns = [Column("Module"), Column("Type"), Column("Params", "right"), Column("Size", "right")]
    if frozen:
        columns.append(Column("Trainable", "right"))
    if buffers:
        columns.append(Column("Buffers", "right"))
    moe = report.totals.active_params is not None
    if moe:
        columns.append(Column("Active", "right"))
    if view.explain:
        columns.append(Column("Formula"))
    has_notes = any(notes)
    if has_notes:
        columns.append(Column("Note"))
    rows = []
    for node, note in zip(nodes, notes, strict=True):
        name = "  " * node.depth + (node.path or "(model)")
        row = [
            name,
            node.type or "",
            _count(node.params, node.complete),
            _size(node.param_bytes, view.units, node.complete),
        ]
        if frozen:
            row.append(format_count(node.trainable or 0))
        if buffers:
            row.append(format_count(node.buffers))
        if moe:
            row.append("" if node.active_params is None else format_count(node.active_params))
        if view.explain:
            row.append(node.formula or "")
        if has_notes:
            row.append(note)
        rows.append(tuple(row))
    title = (
        "Modules"
        if view.depth >= max((node.depth for node in report.modules), default=0)
        else (f"Modules (depth {view.depth})")
    )
    return Section(title, tuple(columns), rows)


def _calls_section(report: Report, view: View) -> Section:
    calls = [call for call in report.calls or () if call.depth <= view.depth]
    repeated = any(call.calls > 1 for call in calls)
    columns = [
        Column("Module"), Column("Type"), Column("Input"), Column("Output"), Column("Params", "right"),
        Column("FLOPs", "right"), Column("MACs", "right"), Column("Activations", "right"),
    ]  # fmt: skip
    if repeated:
        columns.append(Column("Calls", "right"))
    explained: list[tuple[str, ...]] = [()] * len(calls)
    if view.explain:  # each module's formula, and the note inspect --explain gives it
        nodes = {node.path: node for node in report.modules}
        explained = [
            (nodes[call.path].formula or "", _module_note(nodes[call.path], True)) if call.path in nodes else ("", "")
            for call in calls
        ]
        columns.append(Column("Formula"))
        if any(note for _, note in explained):
            columns.append(Column("Note"))
        else:
            explained = [cells[:1] for cells in explained]
    rows = []
    for call, cells in zip(calls, explained, strict=True):
        row = [
            "  " * call.depth + (call.path or "(model)"),
            call.type,
            call.inputs,
            call.outputs,
            format_count(call.params),
            humanize_operations(call.flops),
            humanize_operations(call.macs),
            "—" if call.activations_bytes is None else format_bytes(call.activations_bytes, view.units),
        ]
        if repeated:
            row.append(format_count(call.calls))
        rows.append((*row, *cells))
    return Section(f"Forward pass (execution order, depth {view.depth})", tuple(columns), rows)


def _shape(record: TensorRecord) -> str:
    if record.shape is None:
        return "unreadable" if record.packing else "uninitialised"
    return "(" + ", ".join(str(dim) for dim in record.shape) + ")"


def _status(record: TensorRecord) -> str:
    if record.kind == "parameter":
        return {True: "trainable", False: "frozen", None: ""}[record.trainable]
    return {True: "persistent", False: "non-persistent", None: ""}[record.persistent]  # None: a checkpoint's


def _tensors_section(report: Report, view: View) -> Section:
    columns = (
        Column("Tensor"),
        Column("Kind"),
        Column("Shape"),
        Column("Dtype"),
        Column("Numel", "right"),
        Column("Size", "right"),
        Column("Status"),
        Column("Aliases"),
    )
    rows = [
        (
            record.name,
            record.kind,
            _shape(record),
            record.dtype,
            "?" if record.numel is None else format_count(record.numel),
            "?" if record.bytes is None else format_bytes(record.bytes, view.units),
            _status(record),
            ", ".join(record.aliases),
        )
        for record in report.tensors
    ]
    return Section("Tensors", columns, rows)


def _totals_section(report: Report, view: View) -> Section:
    totals = report.totals
    complete = totals.complete
    rows = [("Parameters", _count(totals.params, complete), humanize_count(totals.params))]
    if totals.active_params is not None:
        rows.append(("  active per token", format_count(totals.active_params), humanize_count(totals.active_params)))
    if totals.non_embedding_params is not None:
        count = totals.non_embedding_params
        rows.append(("  without embeddings", _count(count, complete), humanize_count(count)))
    if totals.trainable is not None and totals.frozen is not None:
        rows.append(("  trainable", _count(totals.trainable, complete), humanize_count(totals.trainable)))
        rows.append(("  frozen", _count(totals.frozen, complete), humanize_count(totals.frozen)))
    rows.append(("Parameter size", _size(totals.param_bytes, view.units, complete), f"{totals.param_bytes:,} B"))
    rows.append(("Buffers", _count(totals.buffers, complete), "elements"))
    rows.append(("Buffer size", _size(totals.buffer_bytes, view.units, complete), f"{totals.buffer_bytes:,} B"))
    if totals.quantization:
        rows.append(("Quantization", _count(totals.quantization, complete), "scale/zero/index elements"))
        size = totals.quantization_bytes
        rows.append(("Quantization size", _size(size, view.units, complete), f"{size:,} B"))
    if totals.local_params is not None and totals.local_param_bytes is not None:
        rows.append(("On this rank", format_count(totals.local_params), "parameter elements held here (sharded)"))
        size = totals.local_param_bytes
        rows.append(("  size", format_bytes(size, view.units), f"{size:,} B, flat shards' padding included"))
    if totals.flops is not None and totals.macs is not None:
        rows.append(("FLOPs", format_count(totals.flops), humanize_operations(totals.flops)))
        rows.append(("MACs", format_count(totals.macs), humanize_operations(totals.macs)))
    if totals.activations_bytes is not None:
        size = totals.activations_bytes
        rows.append(("Activations", _size(size, view.units, True), "saved for backward, train mode"))
    both = totals.param_bytes + totals.buffer_bytes + totals.quantization_bytes
    what = "parameters + buffers" + (" + quantization" if totals.quantization else "")
    rows.append(("Total size", _size(both, view.units, complete), what))
    return Section("Totals", (Column(""), Column("", "right"), Column("")), rows)


def _dtype_section(report: Report, view: View) -> Section:
    total = report.totals.param_bytes or 1
    rows = [
        (name, format_count(entry.params), format_bytes(entry.bytes, view.units), f"{100 * entry.bytes / total:.1f} %")
        for name, entry in report.by_dtype.items()
    ]
    columns = (Column("Dtype"), Column("Params", "right"), Column("Size", "right"), Column("Share", "right"))
    return Section("Parameters by dtype", columns, rows)


def _ranks_section(report: Report, view: View) -> Section:
    ranks = report.ranks or ()
    total = report.totals.params or 1
    sizes = {share.param_bytes for share in ranks}
    most = max(sizes) if len(sizes) > 1 else None  # marked only when the ranks differ
    columns = (Column("Rank", "right"), Column("Params", "right"), Column("Size", "right"), Column("Share", "right"))
    rows = [
        (
            str(share.rank),
            format_count(share.params),
            format_bytes(share.param_bytes, view.units)
            + (" ◀ most" if share.param_bytes == most and len(ranks) > 1 else ""),
            f"{100 * share.params / total:.1f} %",
        )
        for share in ranks
    ]
    return Section("Parameters held per rank", columns, rows)


def _check_section(check: Check) -> Section:
    columns = (Column("Problem"), Column("Tensor"), Column("Model"), Column("Checkpoint"))
    rows: list[tuple[str, ...]] = [("missing", name, "present", "absent") for name in check.missing]
    rows += [("unexpected", name, "absent", "present") for name in check.unexpected]
    rows += [("shape", item.name, _dims(item.model_shape), _dims(item.checkpoint_shape)) for item in check.mismatched]
    if check.ok:
        rows = [("none", "every tensor of the model is in the checkpoint, with its shape", "", "")]
    return Section(f"Check against {check.against}", columns, rows)


def _dims(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "(" + ", ".join(str(dim) for dim in shape) + ")"


def _memory_title(plan: MemoryPlan) -> str:
    settings = plan.settings
    parts = [f"batch {settings.batch}" + (" per device" if settings.gpus > 1 else "")]
    if settings.tokens is not None:
        parts.append(f"{format_count(settings.tokens)} tokens")
    if settings.train:
        parts[:0] = [settings.precision, settings.optimizer]
        if settings.grad_checkpointing:
            parts.append("gradient checkpointing")
    if settings.gpus > 1:
        layout_ = f"{settings.gpus} GPUs"
        if settings.zero:
            layout_ += f", ZeRO {settings.zero}"
        if settings.tp > 1:
            layout_ += f", TP {settings.tp}"
        if settings.offload_optimizer:
            layout_ += ", optimizer offloaded"
        parts.append(layout_)
    return f"Memory for {plan.scenario} ({', '.join(parts)})"


def memory_totals(plan: MemoryPlan) -> list[tuple[str, int, str]]:
    """The rows under a plan's items: name, bytes per device, formula."""
    rows = [("total per device" if plan.settings.gpus > 1 else "total", plan.per_device_bytes, "sum of the above")]
    if plan.host_bytes:
        rows.append(("host memory per device", plan.host_bytes, "the offloaded items"))
    return rows


def _memory_section(plan: MemoryPlan, view: View) -> Section:
    several = plan.settings.gpus > 1
    columns = [Column("Item"), Column("Label")]
    columns += [Column("Per device", "right"), Column("Total", "right")] if several else [Column("Size", "right")]
    columns.append(Column("Formula"))

    def row(name: str, label: str, per_device: int | None, total: int | None, formula: str) -> tuple[str, ...]:
        sizes = [per_device, total] if several else [per_device]
        return (name, label, *("" if size is None else format_bytes(size, view.units) for size in sizes), formula)

    rows = [
        row(item.name + (" (host)" if item.where == "host" else ""), item.label, item.per_device_bytes,
            item.total_bytes, item.formula)
        for item in plan.items
    ]  # fmt: skip
    rows += [row(name, "", size, None, formula) for name, size, formula in memory_totals(plan)]
    if plan.fits is not None:
        available = format_bytes(plan.settings.device_memory or 0, view.units)
        verdict = f"fits in {available}" if plan.fits else f"does not fit in {available}"
        rows.append(("", "", *([""] * (2 if several else 1)), verdict))
    return Section(_memory_title(plan), tuple(columns), rows)


def _storage_section(plan: MemoryPlan, view: View) -> Section:
    columns = (Column("Format"), Column("Bits", "right"), Column("Size", "right"), Column("Formula"))
    rows = [(row.format, f"{row.bits:g}", format_bytes(row.bytes, view.units), row.formula) for row in plan.storage]
    return Section("Weights stored in each format", columns, rows)


def layout(report: Report, view: View) -> Document:
    """The sections to draw for ``report`` under ``view``."""
    if report.memory is not None:
        plan = report.memory
        sections = [_memory_section(plan, view), _storage_section(plan, view), _totals_section(report, view)]
        return Document(_heading(report, view), sections, [*report.notes, *plan.notes, *plan.advice])
    sections = [_calls_section(report, view) if report.calls is not None else _modules_section(report, view)]
    if view.tensors:
        sections.append(_tensors_section(report, view))
    sections.append(_totals_section(report, view))
    if report.check is not None:
        sections.append(_check_section(report.check))
    if report.by_dtype:
        sections.append(_dtype_section(report, view))
    if report.ranks is not None:
        sections.append(_ranks_section(report, view))
    return Document(_heading(report, view), sections, list(report.notes))

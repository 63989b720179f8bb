"""What a rendered report contains, independent of how it is drawn.

``layout(report, view)`` turns a Report into sections of already-formatted cells; the text, rich and Markdown
renderers only draw them, so every format shows the same figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from .._check import Check
from .._checks import flags, integer, one_of, string
from .._memory import MemoryItem, MemoryPlan, made_from_tensors
from .._report import CallRecord, DtypeTotals, ModuleNode, Report, TensorRecord
from .._units import Units, format_bytes, format_count, format_share, humanize_count, humanize_operations
from ._escape import name_cell

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

    def __post_init__(self) -> None:
        # a depth of "2" would fail deep in the layout, units other than "iec" would draw SI unasked, and a
        # truthy string such as "no" would turn tensors on
        integer("depth", self.depth, minimum=0)
        flags(tensors=self.tensors, explain=self.explain)
        one_of("units", self.units, ("iec", "si"))
        string("title", self.title, optional=True)


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


def module_parents(nodes: Sequence[ModuleNode]) -> Iterator[int]:
    """Each module's parent's index (-1 for the root): the modules are in pre-order with their depths, so the
    parent is the last module one level up."""
    stack: list[int] = []
    for index, node in enumerate(nodes):
        del stack[node.depth :]
        yield stack[-1] if stack else -1
        stack.append(index)


def tensor_owner(name: str, index_of: dict[str, int]) -> int:
    """The index of the module that holds the tensor ``name``."""
    path = name.rpartition(".")[0]
    while path and path not in index_of:  # a tensor under a parametrization or a wrapper: its nearest module
        path = path.rpartition(".")[0]
    return index_of.get(path, 0)


OWN_TENSORS = "(own tensors)"
"""The row of a module's own tensors under a module whose children are shown, named as the treemap names them and
after the module's path (Markdown and CSV readers see no indent): without it, the rows at a depth would not add up
to the totals (a ViT's ``class_token``, an attention's in-projection)."""


def _unknown_holders(report: Report) -> set[int]:
    """The modules that hold a tensor of unknown size themselves (not in a child)."""
    if report.totals.complete:
        return set()
    index_of = {node.path: index for index, node in enumerate(report.modules)}
    return {
        tensor_owner(record.name, index_of)
        for record in report.tensors
        if record.kind != "quantization" and (record.numel is None or record.bytes is None)
    }


def _difference(whole: int | None, parts: list[int | None]) -> int | None:
    known = [part for part in parts if part is not None]
    return None if whole is None or len(known) < len(parts) else whole - sum(known)


def _own_node(node: ModuleNode, kids: list[ModuleNode], unknown_here: bool) -> ModuleNode:
    """A module's own tensors as a node of their own: its figures less its children's."""
    buffers = node.buffers - sum(kid.buffers for kid in kids)
    buffer_bytes = node.buffer_bytes - sum(kid.buffer_bytes for kid in kids)
    complete = node.complete or (not unknown_here and not all(kid.complete for kid in kids))
    return ModuleNode(
        path=node.path,
        type=None,
        depth=node.depth + 1,
        own_params=node.own_params,
        own_param_bytes=node.own_param_bytes,
        params=node.own_params,
        param_bytes=node.own_param_bytes,
        trainable=_difference(node.trainable, [kid.trainable for kid in kids]),
        buffers=buffers,
        buffer_bytes=buffer_bytes,
        complete=complete,
        active_params=_difference(node.active_params, [kid.active_params for kid in kids]),
    )


def _shared_outside(nodes: Sequence[ModuleNode], index: int) -> tuple[str, ...]:
    """The tensors that the subtree of ``nodes[index]`` (in pre-order) holds and that are counted outside it."""
    root = nodes[index]
    inside = root.path + "." if root.path else ""
    shared = dict.fromkeys(root.shared)
    for position in range(index + 1, len(nodes)):  # not a slice: a copy of the rest for every subtree
        node = nodes[position]
        if node.depth <= root.depth:
            break
        shared.update(dict.fromkeys(name for name in node.shared if not name.startswith(inside)))
    return tuple(shared)


def _shown_nodes(report: Report, view: View) -> list[tuple[str, ModuleNode, str]]:
    """The rows of the module table: name, node and note, with a row of own tensors under each module that has
    some beside the children shown."""
    nodes = report.modules
    kids: list[list[ModuleNode]] = [[] for _ in nodes]
    for node, parent in zip(nodes, module_parents(nodes), strict=True):
        if parent >= 0:
            kids[parent].append(node)
    unknown = _unknown_holders(report)
    rows = []
    for index, node in enumerate(nodes):
        if node.depth > view.depth:
            continue
        if node.depth == view.depth and kids[index]:  # what its hidden modules share says why its count is low
            node_noted = node._replace(shared=_shared_outside(nodes, index))
        else:
            node_noted = node
        rows.append(
            ("  " * node.depth + (name_cell(node.path) or "(model)"), node, _module_note(node_noted, view.explain))
        )
        if node.depth < view.depth and kids[index]:
            own = _own_node(node, kids[index], index in unknown)
            if own.params or own.buffers or not own.complete:
                note = "" if own.complete else "sizes unknown (see notes)"
                name = f"{name_cell(node.path)} {OWN_TENSORS}" if node.path else OWN_TENSORS
                rows.append(("  " * own.depth + name, own, note))
    return rows


def _modules_section(report: Report, view: View) -> Section:
    frozen = bool(report.totals.frozen)
    buffers = report.totals.buffers > 0
    shown = _shown_nodes(report, view)
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
    has_notes = any(note for _, _, note in shown)
    if has_notes:
        columns.append(Column("Note"))
    rows = []
    for name, node, note in shown:
        # Every figure of a subtree holding a tensor of unknown size is a lower bound, whichever tensor it is.
        complete = node.complete
        row = [name, node.type or "", _count(node.params, complete), _size(node.param_bytes, view.units, complete)]
        if frozen:
            row.append(_count(node.trainable or 0, complete))
        if buffers:
            row.append(_count(node.buffers, complete))
        if moe:
            row.append("" if node.active_params is None else _count(node.active_params, complete))
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


OWN_OPS = "(own)"
"""The row of what a module does itself under a module whose calls are shown: the ops it runs outside the modules
it called (an attention's product of queries and keys), what they save for backward, and the parameters no row
under it holds (weights it uses directly); without it, the rows at a depth would not add up to the totals."""


def _own_call(call: CallRecord, kids: list[CallRecord]) -> CallRecord | None:
    """What ``call``'s module does itself beside the rows of ``kids``, as a row; None when that is nothing."""
    params = call.params - sum(kid.params for kid in kids)
    if not (params or call.own_flops or call.own_activations_bytes):
        return None
    name = f"{name_cell(call.path)} {OWN_OPS}" if call.path else OWN_OPS
    return CallRecord(name, "", call.depth + 1, "", "", params, call.own_flops, call.own_flops // 2, 0,
                      call.own_activations_bytes, call.own_flops, call.own_activations_bytes)  # fmt: skip


def _shown_calls(report: Report, view: View) -> list[tuple[CallRecord, bool]]:
    """The rows of the forward-pass table to the view's depth, each with whether it is a module's own row: one
    under each module whose children are shown, when it does something itself."""
    calls = [call for call in report.calls or () if call.depth <= view.depth]
    kids: dict[str, list[CallRecord]] = {}
    for call in calls:
        if call.path:
            kids.setdefault(call.path.rpartition(".")[0], []).append(call)
    rows = []
    for call in calls:
        rows.append((call, False))
        own = _own_call(call, kids[call.path]) if call.depth < view.depth and call.path in kids else None
        if own is not None:
            rows.append((own, True))
    return rows


def _calls_section(report: Report, view: View) -> Section:
    shown = _shown_calls(report, view)
    calls = [call for call, _ in shown]
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
            (nodes[call.path].formula or "", _module_note(nodes[call.path], True))
            if call.path in nodes and not own
            else ("", "")
            for call, own in shown
        ]
        columns.append(Column("Formula"))
        if any(note for _, note in explained):
            columns.append(Column("Note"))
        else:
            explained = [cells[:1] for cells in explained]
    rows = []
    for (call, own), cells in zip(shown, explained, strict=True):
        row = [
            "  " * call.depth + (name_cell(call.path) or "(model)"),  # an own row's is already a cell
            call.type,
            call.inputs,
            call.outputs,
            format_count(call.params),
            humanize_operations(call.flops),
            humanize_operations(call.macs),
            "—" if call.activations_bytes is None else format_bytes(call.activations_bytes, view.units),
        ]
        if repeated:
            row.append("" if own else format_count(call.calls))
        rows.append((*row, *cells))
    return Section(f"Forward pass (execution order, depth {view.depth})", tuple(columns), rows)


def _shape(record: TensorRecord) -> str:
    if record.shape is None:  # of a known size, a nested tensor's: its components' shapes differ
        return "unreadable" if record.packing else "uninitialised" if record.numel is None else "nested"
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
            name_cell(record.name),
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


def _at_least(text: str, complete: bool) -> str:
    return text if complete else f"≥ {text}"


def _totals_section(report: Report, view: View) -> Section:
    totals = report.totals
    complete = totals.complete

    def count(label: str, value: int, human: str | None = None) -> tuple[str, str, str]:
        return (label, _count(value, complete), _at_least(humanize_count(value), complete) if human is None else human)

    def size(label: str, value: int) -> tuple[str, str, str]:
        return (label, _size(value, view.units, complete), _at_least(f"{value:,} B", complete))

    rows = [count("Parameters", totals.params)]
    if totals.active_params is not None:
        rows.append(count("  active per token", totals.active_params))
    if totals.non_embedding_params is not None:
        rows.append(count("  without embeddings", totals.non_embedding_params))
    if totals.trainable is not None and totals.frozen is not None:
        rows.append(count("  trainable", totals.trainable))
        rows.append(count("  frozen", totals.frozen))
    rows.append(size("Parameter size", totals.param_bytes))
    rows.append(count("Buffers", totals.buffers, "elements"))
    rows.append(size("Buffer size", totals.buffer_bytes))
    if totals.quantization:
        rows.append(count("Quantization", totals.quantization, "scale/zero/index elements"))
        rows.append(size("Quantization size", totals.quantization_bytes))
    if totals.local_params is not None and totals.local_param_bytes is not None:
        rows.append(count("On this rank", totals.local_params, "parameter elements held here (sharded)"))
        local = totals.local_param_bytes
        flat = any(record.sharding is not None and record.sharding.scheme != "dtensor" for record in report.tensors)
        padding = "flat shards' padding included" if flat else "shards' padding included"
        rows.append(("  size", _size(local, view.units, complete), f"{local:,} B, {padding}"))
    if totals.flops is not None and totals.macs is not None:
        rows.append(("FLOPs", format_count(totals.flops), humanize_operations(totals.flops)))
        rows.append(("MACs", format_count(totals.macs), humanize_operations(totals.macs)))
    if totals.activations_bytes is not None:
        activations = totals.activations_bytes
        rows.append(("Activations", _size(activations, view.units, True), "saved for backward, train mode"))
    both = totals.param_bytes + totals.buffer_bytes + totals.quantization_bytes
    what = "parameters + buffers" + (" + quantization" if totals.quantization else "")
    rows.append(("Total size", _size(both, view.units, complete), what))
    return Section("Totals", (Column(""), Column("", "right"), Column("")), rows)


def dtype_rows(report: Report, units: Units) -> list[tuple[str, str, str, str]]:
    """Name, parameters, size and share of the parameter bytes for each dtype. A dtype holding parameters of
    unknown size shows lower bounds (and is listed even when none of its parameters has a known size); shares are
    exact only when every parameter's size is known or one dtype holds them all."""
    unknown = {
        record.dtype
        for record in report.tensors
        if record.kind == "parameter" and (record.numel is None or record.bytes is None)
    }
    entries = dict(report.by_dtype)
    for name in sorted(unknown - set(entries)):
        entries[name] = DtypeTotals(0, 0)
    total = report.totals.param_bytes or 1
    rows = []
    for name, entry in entries.items():
        share = format_share(entry.bytes, total)
        if unknown and len(entries) == 1:
            share = "100.0 %"
        elif unknown:  # the total is a lower bound: a known dtype's share is at most this, another's is anything
            share = "?" if name in unknown else f"≤ {100 * entry.bytes / total:.1f} %"
        complete = name not in unknown
        rows.append((name, _count(entry.params, complete), _size(entry.bytes, units, complete), share))
    return rows


def _dtype_section(report: Report, view: View) -> Section:
    columns = (Column("Dtype"), Column("Params", "right"), Column("Size", "right"), Column("Share", "right"))
    return Section("Parameters by dtype", columns, dtype_rows(report, view.units))


def _ranks_section(report: Report, view: View) -> Section:
    ranks = report.ranks or ()
    sizes = {share.param_bytes for share in ranks}
    most = max(sizes) if len(sizes) > 1 else None  # marked only when the ranks differ
    columns = (Column("Rank", "right"), Column("Params", "right"), Column("Size", "right"), Column("Share", "right"))
    rows = [
        (
            str(share.rank),
            format_count(share.params),
            format_bytes(share.param_bytes, view.units)
            + (" ◀ most" if share.param_bytes == most and len(ranks) > 1 else ""),
            # of the model the rank holds a share of: pipeline stages hold different ones
            format_share(share.params, share.model_params or report.totals.params or 1),
        )
        for share in ranks
    ]
    return Section("Parameters held per rank", columns, rows)


def _check_section(check: Check) -> Section:
    columns = (Column("Problem"), Column("Tensor"), Column("Model"), Column("Checkpoint"))
    rows: list[tuple[str, ...]] = [("missing", name_cell(name), "present", "absent") for name in check.missing]
    rows += [("unexpected", name_cell(name), "absent", "present") for name in check.unexpected]
    rows += [
        ("shape", name_cell(item.name), _dims(item.model_shape), _dims(item.checkpoint_shape))
        for item in check.mismatched
    ]
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


def fits_verdict(plan: MemoryPlan) -> str | None:
    """Whether the plan fits in the device memory given, in words; None without one."""
    if plan.settings.device_memory is None:
        return None
    return {True: "fits", False: "does not fit", None: "cannot tell whether it fits"}[plan.fits]


def memory_totals(plan: MemoryPlan, sizes_known: bool = True) -> list[tuple[str, int, str, bool]]:
    """The rows under a plan's items: name, bytes per device, formula, and whether the bytes are whole (not a lower
    bound): the device's when the plan is complete, the host's when ``sizes_known`` (no tensors of unknown size;
    what a plan leaves out is on the device)."""
    summed = "sum of the items on the device" if plan.host_bytes else "sum of the above"
    rows = [("total per device" if plan.settings.gpus > 1 else "total", plan.per_device_bytes, summed, plan.complete)]
    if plan.host_bytes:
        rows.append(("host memory per device", plan.host_bytes, "sum of the (host) items", sizes_known))
    return rows


def _memory_section(plan: MemoryPlan, view: View, sizes_known: bool = True) -> Section:
    """The items and totals (lower bounds shown as such, see :func:`memory_totals`), and whether it fits."""
    several = plan.settings.gpus > 1
    columns = [Column("Item"), Column("Label")]
    columns += [Column("Per device", "right"), Column("Total", "right")] if several else [Column("Size", "right")]
    columns.append(Column("Formula"))

    def row(item: MemoryItem) -> tuple[str, ...]:
        sizes = [item.per_device_bytes, item.total_bytes] if several else [item.per_device_bytes]
        whole = sizes_known or not made_from_tensors(item)
        name = item.name + (" (host)" if item.where == "host" else "")
        return (name, item.label, *(_size(size, view.units, whole) for size in sizes), item.formula)

    rows = [row(item) for item in plan.items]
    for name, size, formula, complete in memory_totals(plan, sizes_known):
        rows.append((name, "", _size(size, view.units, complete), *[""] * several, formula))
    if plan.settings.device_memory is not None:
        available = format_bytes(plan.settings.device_memory, view.units)
        rows.append(("", "", *([""] * (2 if several else 1)), f"{fits_verdict(plan)} in {available}"))
    return Section(_memory_title(plan), tuple(columns), rows)


def _storage_section(plan: MemoryPlan, view: View, sizes_known: bool = True) -> Section:
    columns = (Column("Format"), Column("Bits", "right"), Column("Size", "right"), Column("Formula"))
    rows = [(row.format, f"{row.bits:g}", _size(row.bytes, view.units, sizes_known), row.formula)
            for row in plan.storage]  # fmt: skip
    return Section("Weights stored in each format", columns, rows)


def layout(report: Report, view: View) -> Document:
    """The sections to draw for ``report`` under ``view``."""
    if report.memory is not None:
        plan = report.memory
        memory = _memory_section(plan, view, report.totals.complete)
        sections = [memory, _storage_section(plan, view, report.totals.complete), _totals_section(report, view)]
        return Document(_heading(report, view), sections, [*report.notes, *plan.notes, *plan.advice])
    sections = [_calls_section(report, view) if report.calls is not None else _modules_section(report, view)]
    if view.tensors:
        sections.append(_tensors_section(report, view))
    sections.append(_totals_section(report, view))
    if report.check is not None:
        sections.append(_check_section(report.check))
    dtypes = _dtype_section(report, view)
    if dtypes.rows:
        sections.append(dtypes)
    if report.ranks is not None:
        sections.append(_ranks_section(report, view))
    return Document(_heading(report, view), sections, list(report.notes))

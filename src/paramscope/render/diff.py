"""Drawing a :class:`~paramscope._diff.Diff`: the same Document sections as reports, so every table format works,
and a self-contained HTML page whose rows are coloured by growth."""

from __future__ import annotations

from itertools import chain
from typing import Literal

from .._diff import Diff, ModuleDelta, SharingChange, TensorChange
from .._report import unknown_sizes
from .._units import Units, format_bytes, format_count, listed
from ._escape import html_text, name_cell
from ._layout import OWN_TENSORS, Column, Document, Section
from .json import dumps_by_line

DiffFormat = Literal["table", "json", "markdown", "html"]
DIFF_FORMATS: tuple[DiffFormat, ...] = ("table", "json", "markdown", "html")
_SOURCE_KINDS = {"module": "nn.Module", "hf-config": "transformers config"}


def _signed_count(value: int) -> str:
    return "0" if value == 0 else f"{value:+,}"


def _signed_bytes(value: int, units: Units) -> str:
    if value == 0:
        return "0 B"
    return ("+" if value > 0 else "-") + format_bytes(abs(value), units)


def _count_or_absent(value: int | None, complete: bool = True) -> str:
    if value is None:
        return "—"
    return format_count(value) if complete else f"≥ {format_count(value)}"


def _totals_section(diff: Diff, units: Units) -> Section:
    complete_a, complete_b = diff.a.totals.complete, diff.b.totals.complete
    rows = []
    totals = [
        ("Parameters", "params", False),
        ("  trainable", "trainable", False),
        ("Parameter size", "param_bytes", True),
        ("Buffers", "buffers", False),
        ("Buffer size", "buffer_bytes", True),
    ]
    if diff.a.totals.quantization or diff.b.totals.quantization:  # as inspect shows them: for a quantised side only
        totals += [("Quantization", "quantization", False), ("Quantization size", "quantization_bytes", True)]
    for label, key, is_bytes in totals:
        a, b = getattr(diff.a.totals, key), getattr(diff.b.totals, key)
        if a is None or b is None:
            rows.append((label, _count_or_absent(a, complete_a), _count_or_absent(b, complete_b), ""))
            continue
        if is_bytes:
            text_a, text_b, change = format_bytes(a, units), format_bytes(b, units), _signed_bytes(b - a, units)
        else:
            text_a, text_b, change = format_count(a), format_count(b), _signed_count(b - a)
        # lower bounds, as inspect shows them: their difference says nothing
        change = change if diff.complete else "?"
        rows.append((label, _at_least(text_a, complete_a), _at_least(text_b, complete_b), change))
    columns = (Column(""), Column("A", "right"), Column("B", "right"), Column("Δ", "right"))
    return Section("Totals", columns, rows)


def _at_least(text: str, complete: bool) -> str:
    return text if complete else f"≥ {text}"


def shown_modules(diff: Diff, depth: int, everything: bool) -> list[ModuleDelta]:
    """The module rows to show: to ``depth``, and only those that differ unless ``everything``; under a module with
    children shown, a row of its own tensors (as inspect's table has), so that the rows at a depth add up."""
    children: dict[str, list[ModuleDelta]] = {}
    for delta in diff.modules:
        if delta.depth:
            children.setdefault(delta.path.rpartition(".")[0], []).append(delta)
    # a checkpoint holds tensors, not modules: against a model, a module that holds none (an activation, a tied head)
    # is no difference for being absent from it, nor between two checkpoints a tied head stored under its name too
    against_checkpoint = diff.with_checkpoint

    def differs(delta: ModuleDelta) -> bool:
        return delta.changed and not (against_checkpoint and delta.holds_nothing)

    rows = []
    for delta in diff.modules:
        if delta.depth > depth:
            continue
        if everything or differs(delta):
            rows.append(delta)
        kids = children.get(delta.path, []) if delta.depth < depth else []
        own = _own_delta(delta, kids) if kids else None
        if own is not None and (everything or differs(own)):
            rows.append(own)
    return rows


def _own_delta(delta: ModuleDelta, kids: list[ModuleDelta]) -> ModuleDelta | None:
    """A module's own tensors, on each side where it is, as a row of their own: its figures less its children's;
    None when it holds none on either side."""

    def own(whole: int | None, parts: list[int | None]) -> int | None:
        return None if whole is None else whole - sum(part or 0 for part in parts)

    params_a = own(delta.params_a, [kid.params_a for kid in kids])
    params_b = own(delta.params_b, [kid.params_b for kid in kids])
    bytes_a = own(delta.bytes_a, [kid.bytes_a for kid in kids])
    bytes_b = own(delta.bytes_b, [kid.bytes_b for kid in kids])
    # a tensor of unknown size in the module itself, where its children's sizes are all known (in a child, it shows
    # as a lower bound there, and a row of nothing would say nothing more)
    unknown_a = not delta.complete_a and all(kid.complete_a for kid in kids)
    unknown_b = not delta.complete_b and all(kid.complete_b for kid in kids)
    if not any((params_a, params_b, bytes_a, bytes_b, unknown_a, unknown_b)):
        return None
    path = f"{name_cell(delta.path)} {OWN_TENSORS}" if delta.path else OWN_TENSORS
    return ModuleDelta(path, delta.depth + 1, None, None, params_a, params_b, bytes_a, bytes_b, delta.complete_a,
                       delta.complete_b)  # fmt: skip


def _modules_section(diff: Diff, depth: int, everything: bool, units: Units) -> Section:
    columns = (
        Column("Module"), Column("Type"), Column("A params", "right"), Column("B params", "right"),
        Column("Δ params", "right"), Column("Δ size", "right"),
    )  # fmt: skip
    rows = []
    for delta in shown_modules(diff, depth, everything):
        known = delta.complete_a and delta.complete_b
        types = [name for name in dict.fromkeys((delta.type_a, delta.type_b)) if name]
        rows.append(
            (
                "  " * delta.depth + (name_cell(delta.path) or "(model)"),  # an own row's is already a cell
                " → ".join(types),
                _count_or_absent(delta.params_a, delta.complete_a),
                _count_or_absent(delta.params_b, delta.complete_b),
                _signed_count(delta.params_delta) if known else "?",
                _signed_bytes(delta.bytes_delta, units) if known else "?",
            )
        )
    what = "all modules" if everything else "modules that differ"
    return Section(f"Modules ({what}, depth {depth})", columns, rows)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "(" + ", ".join(str(dim) for dim in shape) + ")"


def _tensor(change: TensorChange, side: str) -> str:
    shape, dtype = getattr(change, f"shape_{side}"), getattr(change, f"dtype_{side}")
    text = f"{_shape(shape)} {dtype}"
    if change.kind_changed:
        text += f" {getattr(change, f'kind_{side}')}"
    if change.trainability_changed:
        text += ", trainable" if getattr(change, f"trainable_{side}") else ", frozen"
    if change.persistence_changed:
        text += ", persistent" if getattr(change, f"persistent_{side}") else ", non-persistent (not in the state dict)"
    return text


def _objects(item: SharingChange, side: str) -> str:
    count = item.count_a if side == "a" else item.count_b
    if count == 1:
        return "one tensor (tied)" if item.what == "tensor" else "one module (reused)"
    return f"{count} {item.what}s"


def verdict(diff: Diff) -> str:
    """The diff's conclusion in one line: the models are the same, differ, or cannot be told apart (tensors of
    unknown size and nothing known that differs)."""
    if diff.equal:
        return "the models are the same"
    if diff.decided:
        return "the models differ"
    sides = [label for label, report in (("A", diff.a), ("B", diff.b)) if not report.totals.complete]
    unknown = " and ".join(unknown_sizes(chain(diff.a.tensors, diff.b.tensors)))
    return (
        f"cannot tell whether the models are the same: {' and '.join(sides)} {'has' if len(sides) == 1 else 'have'} "
        f"tensors of unknown size ({unknown}), and nothing known differs"
    )


def diff_document(diff: Diff, *, depth: int = 2, everything: bool = False, units: Units = "iec") -> Document:
    """The sections of a diff: totals side by side, the modules, the tensors on one side only or changed, and the
    ties and reused modules that differ."""
    modules = _modules_section(diff, depth, everything, units)
    sections = [_totals_section(diff, units), *([modules] if modules.rows else [])]  # as the sections below: if any
    for names, title in (
        (diff.only_in_a, f"Only in A ({len(diff.only_in_a)}: missing from B)"),
        (diff.only_in_b, f"Only in B ({len(diff.only_in_b)}: unexpected in A)"),
    ):
        if names:
            sections.append(Section(title, (Column("Tensor"),), [(name_cell(name),) for name in names]))
    if diff.changed:
        columns = (Column("Tensor"), Column("A"), Column("B"))
        changes = [(name_cell(change.name), _tensor(change, "a"), _tensor(change, "b")) for change in diff.changed]
        sections.append(
            Section(f"Different shape, dtype, kind, trainability or persistence ({len(changes)})", columns, changes)
        )
    if diff.sharing:
        columns = (Column("Tensors or modules"), Column("A"), Column("B"))
        rows = [
            (", ".join(name_cell(name) or "(model)" for name in item.names), _objects(item, "a"), _objects(item, "b"))
            for item in diff.sharing
        ]
        sections.append(Section(f"Tied or reused differently ({len(rows)})", columns, rows))
    return Document(_heading(diff), sections, [*diff.notes, *_below_depth(diff, depth, everything), verdict(diff)])


def _below_depth(diff: Diff, depth: int, everything: bool) -> list[str]:
    """A note naming the modules deeper than ``depth`` that are of another class on each side or on one side only,
    where no row above them shows a change (a GELU made a ReLU changes no figure): the verdict counts them."""
    if diff.with_checkpoint:  # a checkpoint's module paths are its tensors' names, compared as tensors
        return []
    shown = {row.path for row in shown_modules(diff, depth, everything) if row.changed}
    hidden = [
        delta.path
        for delta in diff.modules
        if delta.depth > depth and delta.rebuilt and ".".join(delta.path.split(".")[:depth]) not in shown
    ]
    if not hidden:
        return []
    named = set(hidden)
    deepest = max(delta.depth for delta in diff.modules if delta.path in named)
    return [f"{format_count(len(hidden))} module(s) below depth {depth} are of another class or on one side only, "
            f"which changes no figure above them: {listed(hidden)} (--depth {deepest} shows them)"]  # fmt: skip


def _heading(diff: Diff) -> str:
    def side(label: str, report_source: tuple[str, str]) -> str:
        kind, target = report_source
        return f"{label}: {target} ({_SOURCE_KINDS.get(kind, kind)})"

    a = side("A", (diff.a.source.kind, diff.a.source.target))
    b = side("B", (diff.b.source.kind, diff.b.source.target))
    return f"{a}  vs  {b}"


def render_diff(diff: Diff, fmt: DiffFormat, *, depth: int = 2, everything: bool = False, units: Units = "iec") -> str:
    """The diff as text in ``fmt``."""
    if fmt == "json":
        return dumps_by_line(diff.to_dict())
    document = diff_document(diff, depth=depth, everything=everything, units=units)
    if fmt == "html":
        return _html(diff, document, depth, everything)
    from . import draw

    return draw(document, fmt)


_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1d232b; }
h1 { font-size: 1.2em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #e3e6ea; }
th { text-align: left; background: #f3f5f7; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.grown td { background: #e7f6ea; } tr.shrunk td { background: #fbe9e9; }
tr.added td { background: #d4f0da; } tr.removed td { background: #f6d6d6; }
.verdict { font-weight: 600; }
"""


def _row_class(delta: ModuleDelta) -> str:
    if delta.params_a is None:
        return "added"
    if delta.params_b is None:
        return "removed"
    if not (delta.complete_a and delta.complete_b):  # lower bounds: the change is '?', its sign unknown
        return ""
    if delta.params_delta > 0 or delta.bytes_delta > 0:
        return "grown"
    if delta.params_delta < 0 or delta.bytes_delta < 0:
        return "shrunk"
    return ""


def _indent(cell: str) -> str:
    """A cell's indent (two spaces a level: a module's depth, a total's sub-row) as a padding, where HTML would
    collapse the spaces."""
    levels = (len(cell) - len(cell.lstrip(" "))) // 2
    return f' style="padding-left:calc(10px + {1.25 * levels:g}em)"' if levels else ""


def _html(diff: Diff, document: Document, depth: int, everything: bool) -> str:
    """One self-contained page: the sections as tables, module rows coloured green where B grew and red where it
    shrank (darker when the module is on one side only)."""
    escape = html_text
    deltas = shown_modules(diff, depth, everything)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(document.heading)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(document.heading)}</h1>",
    ]
    for section in document.sections:
        modules = section.title.startswith("Modules (")  # its rows are the deltas, in order
        parts.append(f"<h2>{escape(section.title)}</h2><table><thead><tr>")
        parts += [
            f'<th class="{"num" if column.align == "right" else ""}">{escape(column.header)}</th>'
            for column in section.columns
        ]
        parts.append("</tr></thead><tbody>")
        for position, row in enumerate(section.rows):
            css = _row_class(deltas[position]) if modules else ""
            parts.append(f'<tr class="{css}">')
            parts += [
                f'<td class="{"num" if column.align == "right" else ""}"{_indent(cell)}>{escape(cell.lstrip(" "))}</td>'
                for cell, column in zip(row, section.columns, strict=True)
            ]
            parts.append("</tr>")
        parts.append("</tbody></table>")
    parts += [f'<p class="verdict">{escape(note)}</p>' for note in document.notes]
    parts.append("</body></html>\n")
    return "\n".join(parts)

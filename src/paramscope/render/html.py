"""The HTML format: one self-contained page with the totals, a zoomable treemap of the module tree and the tables.

Nothing is fetched: the style, the script and the data are inline. The data is a JSON document in a
``<script type="application/json">`` tag (with ``<``, ``>`` and ``&`` written as ``\\u003c``… so no name can end the
tag), and the treemap is laid out in the browser (squarified, small siblings grouped), so a model with 10^5 tensors
draws a few thousand rectangles at most. The tables are the same sections every format draws (``layout``). The data
keeps names as they are; the tables and the script show them as ``printable`` does (a control character or a bidi
override as its escape).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from .._errors import printable
from .._report import Report
from .._units import format_bytes, format_count, humanize_count
from .._version import __version__
from ._escape import html_text, name_cell
from ._layout import (
    OWN_OPS,
    OWN_TENSORS,
    Document,
    Section,
    View,
    dtype_rows,
    fits_verdict,
    layout,
    module_parents,
    tensor_owner,
)
from .json import dumps

_ROOT_PLACEHOLDER = '"__PARAMSCOPE_ROOT__"'
MAX_TABLE_ROWS = 2_000
"""Rows a table shows in the page: tens of thousands of rows make a browser take seconds for each relayout."""


def _asset(name: str) -> str:
    text = resources.files("paramscope.render").joinpath("_html", name).read_text(encoding="utf-8")
    # Inline code must not close its own tag early.
    if "</script" in text.lower() or "</style" in text.lower():
        raise AssertionError(f"{name} contains a closing tag")  # pragma: no cover
    return text


def render_html(report: Report, view: View | None = None) -> str:
    """The report as one self-contained HTML page: totals, a zoomable treemap and the report's tables.

    >>> import paramscope
    >>> page = render_html(paramscope.inspect("paramscope.examples:resnet18"))
    >>> page.startswith("<!DOCTYPE html>"), "https://" in page
    (True, False)
    """
    view = view or View()
    document = layout(report, view)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(document.heading)} — paramscope</title>\n"
        f"<style>\n{_asset('report.css')}</style>\n"
        "</head>\n<body>\n"
        f"{_fragment(report, view, document, 'paramscope-report', style=False)}"
        "</body>\n</html>\n"
    )


def html_fragment(report: Report, view: View | None = None, *, element_id: str = "paramscope-report") -> str:
    """The report as an HTML fragment for embedding in a page (Jupyter): its style, markup, data and script,
    all scoped under the element ``element_id``, so several reports can share a page."""
    view = view or View()
    return _fragment(report, view, layout(report, view), element_id, style=True)


def _escape(text: str) -> str:
    return html_text(text)


def _path_attribute(text: str, paths: dict[str, str]) -> str:
    # The script finds a row's module by the row's text; where that shows escapes or names a module's own tensors,
    # the module's path goes as JSON (ASCII). ``paths`` gives the path of each name a cell writes otherwise (a
    # name's outer spaces as \x20).
    shown = text.removesuffix(OWN_TENSORS).removesuffix(OWN_OPS).rstrip()
    path = paths.get(shown, shown)
    return "" if printable(path) == path == text else f' data-path="{html.escape(json.dumps(path))}"'


def _fragment(report: Report, view: View, document: Document, element_id: str, *, style: bool) -> str:
    data = dumps(treemap_data(report, view), separators=(",", ":"))
    # Inside <script>, "</script" or "<!--" in a name would end or confuse the tag: JSON may spell those characters
    # as escapes, and nothing else in JSON text contains them.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script = _asset("report.js").replace(_ROOT_PLACEHOLDER, json.dumps(element_id))
    paths = {name_cell(node.path): node.path for node in report.modules if name_cell(node.path) != node.path}
    parts = [f'<div class="ps-report" id="{_escape(element_id)}">\n']
    if style:
        parts.append(f"<style>\n{_asset('report.css')}</style>\n")
    parts += [
        _header(report, view, document),
        _treemap_markup(),
        '<section class="ps-tables">\n',
        *(_table(section, paths) for section in document.sections),
        "</section>\n",
        _notes(document.notes),
        f'<footer class="ps-foot">paramscope {_escape(__version__)}</footer>\n',
        f'<script type="application/json" class="ps-data">{data}</script>\n',
        f"<script>\n{script}</script>\n",
        "</div>\n",
    ]
    return "".join(parts)


def _card(figure: str, label: str, value: str, sub: str) -> str:
    return (
        f'<div class="ps-card" data-figure="{figure}"><div class="ps-label">{_escape(label)}</div>'
        f'<div class="ps-value">{_escape(value)}</div><div class="ps-sub">{_escape(sub)}</div></div>\n'
    )


def _header(report: Report, view: View, document: Document) -> str:
    totals = report.totals
    bound = "" if totals.complete else "≥ "
    params = bound + format_count(totals.params)
    cards = [_card("params", "Parameters", params, bound + humanize_count(totals.params))]
    if totals.trainable is not None and totals.frozen is not None:
        trainable = bound + format_count(totals.trainable)
        cards.append(_card("trainable", "Trainable", trainable, f"frozen {bound}{totals.frozen:,}"))
    param_size = bound + format_bytes(totals.param_bytes, view.units)
    cards.append(_card("bytes", "Parameter size", param_size, f"{bound}{totals.param_bytes:,} B"))
    buffers = bound + format_count(totals.buffers)
    cards.append(_card("buffers", "Buffers", buffers, bound + format_bytes(totals.buffer_bytes, view.units)))
    if report.memory is not None:
        plan = report.memory
        verdict = fits_verdict(plan) or plan.scenario
        per_device = ("" if plan.complete else "≥ ") + format_bytes(plan.per_device_bytes, view.units)
        cards.append(_card("memory", "Memory per device", per_device, verdict))
    if totals.flops is not None:
        cards.append(_card("flops", "FLOPs", format_count(totals.flops), "one forward pass"))
    chips = "".join(
        f'<li><span class="ps-swatch" data-dtype="{_escape(name)}"></span><b>{_escape(name)}</b> '
        f"{_escape(count)} · {_escape(size)} · {_escape(share)}</li>"
        for name, count, size, share in dtype_rows(report, view.units)
    )
    dtypes = f'<ul class="ps-dtypes" aria-label="Parameters by dtype">{chips}</ul>\n' if chips else ""
    return (
        f'<header class="ps-head">\n<h1>{_escape(document.heading)}</h1>\n'
        f'<div class="ps-cards">\n{"".join(cards)}</div>\n{dtypes}</header>\n'
    )


def _treemap_markup() -> str:
    return (
        # Hidden until its script runs: an untrusted notebook strips scripts and keeps the tables.
        '<section class="ps-map" aria-label="Treemap of the parameters by module" hidden>\n'
        '<div class="ps-toolbar">\n'
        '<button type="button" class="ps-up" title="Zoom out (Esc)">↑ Up</button>\n'
        '<nav class="ps-crumbs" aria-label="Zoom path"></nav>\n'
        '<label class="ps-control">Colour by <select class="ps-colour">'
        '<option value="type">module type</option><option value="name">module name</option>'
        '<option value="dtype">dtype</option>'
        '<option value="trainable">trainable / frozen</option></select></label>\n'
        '<label class="ps-control">Levels <select class="ps-levels">'
        '<option value="0">all</option><option value="1">1</option><option value="2">2</option>'
        '<option value="3">3</option></select></label>\n'
        "</div>\n"
        '<div class="ps-canvas" tabindex="0"><svg class="ps-svg" role="img" '
        'aria-label="Treemap: the area of each rectangle is its share of the parameters"></svg>'
        '<p class="ps-empty" hidden>No parameters to draw.</p></div>\n'
        '<ul class="ps-legend" aria-label="Colours"></ul>\n'
        '<p class="ps-hint">Click a module to zoom in, Esc or ↑ to zoom out; hover for details. '
        "Areas are proportional to parameter counts.</p>\n"
        '<div class="ps-tip" role="tooltip" hidden></div>\n'
        "</section>\n"
        "<noscript><p>The treemap needs JavaScript; the tables below have its figures.</p></noscript>\n"
    )


def _table(section: Section, paths: dict[str, str]) -> str:
    # Module rows (the tree and the forward pass) link to the treemap: a click zooms to the module.
    linked = bool(section.columns) and section.columns[0].header == "Module"
    head = ""
    if any(column.header for column in section.columns):
        cells = "".join(
            f'<th class="{"ps-num" if column.align == "right" else ""}">{_escape(column.header)}</th>'
            for column in section.columns
        )
        head = f"<thead><tr>{cells}</tr></thead>"
    rows = []
    for row in section.rows[:MAX_TABLE_ROWS]:
        tds = []
        for index, (cell, column) in enumerate(zip(row, section.columns, strict=True)):
            text = cell.strip()
            attributes = ' class="ps-num"' if column.align == "right" else ""
            indent = (len(cell) - len(cell.lstrip(" "))) // 2
            if index == 0 and indent:
                attributes += f' style="padding-left:{0.5 + 1.25 * indent:g}em"'
            tds.append(f"<td{attributes}>{_escape(text)}</td>")
        rows.append(f"<tr{_path_attribute(row[0].strip(), paths) if linked else ''}>{''.join(tds)}</tr>")
    body = "\n".join(rows)
    link = ' data-linked="1"' if linked else ""
    foot = ""
    if len(section.rows) > MAX_TABLE_ROWS:
        hidden = len(section.rows) - MAX_TABLE_ROWS
        rows_cut = "row" if hidden == 1 else "rows"
        text = f"… and {hidden:,} more {rows_cut}, not shown in this page (the CSV and JSON formats have every row)"
        foot = f'<tfoot><tr><td class="ps-more" colspan="{len(section.columns)}">{_escape(text)}</td></tr></tfoot>'
    return (
        f'<h2>{_escape(section.title)}</h2>\n<div class="ps-scroll"><table{link}>{head}\n'
        f"<tbody>\n{body}\n</tbody>{foot}</table></div>\n"
    )


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{_escape(note)}</li>\n" for note in notes)
    return f'<section class="ps-notes"><h2>Notes</h2>\n<ul>\n{items}</ul></section>\n'


def treemap_data(report: Report, view: View | None = None) -> dict[str, Any]:
    """The data the page's script draws, as JSON types: the module tree in columns (one list per field, in
    pre-order, ``parent`` giving each module's parent's index), the dtype and type names they index, and sparse
    extras by module index: tied tensors with their aliases, dtype mixes, shared tensors, reused modules.

    >>> import paramscope
    >>> data = treemap_data(paramscope.inspect("paramscope.examples:gpt2"))
    >>> data["modules"]["params"][0] == data["total"], data["ties"]
    (True, {'2': [['weight', ['lm_head.weight']]]})
    """
    view = view or View()
    nodes = report.modules
    parents = list(module_parents(nodes))
    index_of = {node.path: index for index, node in enumerate(nodes)}
    dtypes = list(report.by_dtype)
    dtype_index = {name: index for index, name in enumerate(dtypes)}
    types: dict[str, int] = {}

    # Parameters per dtype held by each module itself, then over its subtree (children come after parents).
    own_mix: list[dict[int, int]] = [{} for _ in nodes]
    ties: dict[str, list[list[Any]]] = {}
    for record in report.tensors:
        if not nodes:
            break
        owner = tensor_owner(record.name, index_of)
        if record.aliases:
            local = record.name[len(nodes[owner].path) + 1 :] if nodes[owner].path else record.name
            ties.setdefault(str(owner), []).append([local, list(record.aliases)])
        if record.kind == "parameter" and record.numel:
            if record.dtype not in dtype_index:
                dtype_index[record.dtype] = len(dtypes)
                dtypes.append(record.dtype)
            mix = own_mix[owner]
            key = dtype_index[record.dtype]
            mix[key] = mix.get(key, 0) + record.numel
    subtree_mix = [dict(mix) for mix in own_mix]
    for index in range(len(nodes) - 1, 0, -1):
        into = subtree_mix[parents[index]]
        for key, count in subtree_mix[index].items():
            into[key] = into.get(key, 0) + count

    def dominant(mix: dict[int, int]) -> int:
        return max(mix, key=lambda key: (mix[key], -key)) if mix else -1

    columns: dict[str, list[Any]] = {
        key: [] for key in ("name", "parent", "type", "params", "bytes", "own", "ownBytes", "buffers", "dtype")
    }
    trainable: list[int | None] = []
    paths: dict[str, str] = {}
    mixed: dict[str, list[list[int]]] = {}
    own_dtype: dict[str, int] = {}
    info: dict[str, dict[str, Any]] = {}
    for index, (node, parent) in enumerate(zip(nodes, parents, strict=True)):
        parent_path = nodes[parent].path if parent >= 0 else None
        if not parent_path:  # the root, or a child of the root
            name = node.path
        elif node.path.startswith(parent_path + "."):
            name = node.path[len(parent_path) + 1 :]
        else:  # not its parent's path plus a name: the script takes the path as it is
            name = node.path.rpartition(".")[2]
            paths[str(index)] = node.path
        columns["name"].append(name)
        columns["parent"].append(parent)
        columns["type"].append(-1 if node.type is None else types.setdefault(node.type, len(types)))
        columns["params"].append(node.params)
        columns["bytes"].append(node.param_bytes)
        columns["own"].append(node.own_params)
        columns["ownBytes"].append(node.own_param_bytes)
        columns["buffers"].append(node.buffers)
        columns["dtype"].append(dominant(subtree_mix[index]))
        trainable.append(node.trainable)
        if len(subtree_mix[index]) > 1:
            mixed[str(index)] = sorted(([key, count] for key, count in subtree_mix[index].items()), key=lambda p: -p[1])
        if node.own_params and node.params > node.own_params:
            own_dtype[str(index)] = dominant(own_mix[index])
        extra: dict[str, Any] = {}
        if node.same_as is not None:
            extra["sameAs"] = node.same_as
        if node.shared:
            extra["shared"] = list(node.shared)
        if not node.complete:
            extra["incomplete"] = True
        if node.formula is not None:
            extra["formula"] = node.formula
        if node.active_params is not None:
            extra["active"] = node.active_params
        if node.buffer_bytes:
            extra["bufferBytes"] = node.buffer_bytes
        if extra:
            info[str(index)] = extra
    known = report.totals.trainable is not None and all(value is not None for value in trainable)
    return {
        "units": view.units,
        "total": report.totals.params,
        "totalBytes": report.totals.param_bytes,
        "complete": report.totals.complete,
        "dtypes": dtypes,
        "types": list(types),
        "modules": {**columns, "trainable": trainable if known else None},
        "paths": paths,
        "mixed": mixed,
        "ownDtype": own_dtype,
        "ties": ties,
        "info": info,
    }

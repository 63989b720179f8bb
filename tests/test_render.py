"""Rendered output: golden files for every format, and the properties each format must keep."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import re

import pytest
import torch
from rich.console import Console

import paramscope
from paramscope._errors import printable
from paramscope.render import FORMATS, View, render
from paramscope.render.text import rich_renderable

from .models import lazy, tiny_gpt


def _report(factory) -> paramscope.Report:
    with torch.device("meta"):
        return paramscope.inspect(factory())


def _resnet() -> paramscope.Report:
    return paramscope.inspect("paramscope.examples:resnet18")


def test_table_golden_resnet18(golden) -> None:
    golden("resnet18.txt", render(_resnet(), "table", View(depth=2)))


def test_table_golden_gpt_with_tensors_and_si_units(golden) -> None:
    golden("gpt2-tiny-tensors.txt", render(_report(tiny_gpt), "table", View(depth=3, tensors=True, units="si")))


def test_table_golden_lazy_model(golden) -> None:
    golden("lazy.txt", render(paramscope.inspect(lazy()), "table", View(depth=1, tensors=True)))


def test_markdown_golden(golden) -> None:
    golden("gpt2-tiny.md", render(_report(tiny_gpt), "markdown", View(depth=2)))


def test_csv_golden(golden) -> None:
    golden("resnet18-depth1.csv", render(_resnet(), "csv", View(depth=1)))


def test_json_golden(golden) -> None:
    golden("gpt2-tiny.json", render(_report(tiny_gpt), "json"))


def test_rich_golden(golden) -> None:
    console = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(rich_renderable(_report(tiny_gpt), View(depth=2)))
    golden("gpt2-tiny-rich.txt", console.file.getvalue())  # type: ignore[attr-defined]


def test_json_is_the_whole_report_whatever_the_view() -> None:
    report = _resnet()
    data = json.loads(render(report, "json", View(depth=0)))
    assert data["schema"] == "paramscope.report/1"
    assert list(data) == [
        "schema",
        "source",
        "totals",
        "by_dtype",
        "tensors",
        "modules",
        "notes",
        "check",
        "calls",
        "memory",
        "ranks",
    ]
    assert len(data["modules"]) == len(report.modules)
    assert len(data["tensors"]) == len(report.tensors)
    assert data["totals"]["params"] == 11_689_512


def test_json_has_each_row_whole_on_its_own_line() -> None:
    report = _resnet()
    text = render(report, "json")
    assert json.loads(text) == report.to_dict()
    lines = text.splitlines()
    for row in report.to_dict()["tensors"]:
        found = [line for line in lines if f'"name": {json.dumps(row["name"])},' in line]
        assert len(found) == 1, row["name"]
        assert json.loads(found[0].strip().removesuffix(",")) == row
    data = report.to_dict()
    assert len(lines) < len(data["tensors"]) + len(data["modules"]) + 60  # a line per row, not per value
    assert '"files": []' in text
    assert (lines[0], lines[-1], text[-1]) == ("{", "}", "\n")


def test_json_lists_of_text_are_one_item_per_line() -> None:
    report = _report(tiny_gpt)
    lines = render(report, "json").splitlines()
    notes = lines.index('  "notes": [')
    end = notes + 1 + len(report.notes)
    assert [json.loads(line.strip().removesuffix(",")) for line in lines[notes + 1 : end]] == [*report.notes]
    assert lines[end] == "  ],"


def test_csv_rows_add_up() -> None:
    report = _resnet()
    rows = list(csv.DictReader(io.StringIO(render(report, "csv", View(depth=1)))))
    root, children = rows[0], rows[1:]
    assert int(root["params"]) == report.totals.params
    assert int(root["own_params"]) + sum(int(row["params"]) for row in children) == report.totals.params


class _PartlyLazy(torch.nn.Module):
    """Trainable parameters and buffers of unknown size beside known ones, a frozen layer, a second dtype, and a
    dtype whose only tensors are of unknown size."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.LazyLinear(3)
        self.b = torch.nn.Linear(3, 3).requires_grad_(False)
        self.c = torch.nn.LazyBatchNorm1d()
        self.d = torch.nn.Linear(2, 2, dtype=torch.bfloat16)
        self.e = torch.nn.LazyLinear(2, dtype=torch.float16)


def _cells(section_title: str, report: paramscope.Report, view: View) -> dict[str, tuple[str, ...]]:
    from paramscope.render._layout import layout

    section = next(s for s in layout(report, view).sections if s.title.startswith(section_title))
    return {row[0].strip(): row[1:] for row in section.rows}


def test_every_figure_that_is_a_lower_bound_says_so() -> None:
    report = paramscope.inspect(_PartlyLazy())
    modules = _cells("Modules", report, View(depth=1))
    # Module, Type | Params, Size, Trainable, Buffers, Note
    assert modules["(model)"][1:5] == ("≥ 18", "≥ 60 B", "≥ 6", "≥ 1")
    assert modules["a"][1:5] == ("≥ 0", "≥ 0 B", "≥ 0", "≥ 0")
    assert modules["b"][1:5] == ("12", "48 B", "0", "0")
    assert modules["c"][1:5] == ("≥ 0", "≥ 0 B", "≥ 0", "≥ 1")
    assert modules["d"][1:5] == ("6", "12 B", "6", "0")
    totals = _cells("Totals", report, View())
    assert totals["Parameters"] == ("≥ 18", "≥ 18")
    assert totals["trainable"] == ("≥ 6", "≥ 6")
    assert totals["frozen"] == ("≥ 12", "≥ 12")
    assert totals["Parameter size"] == ("≥ 60 B", "≥ 60 B")
    assert totals["Buffer size"] == ("≥ 8 B", "≥ 8 B")
    dtypes = _cells("Parameters by dtype", report, View())
    # float32 and float16 hold tensors of unknown size: their shares are unknown; bfloat16's 12 B are exact, and
    # at most 12 / 60 of a total that is at least 60 B.
    assert dtypes == {
        "float32": ("≥ 12", "≥ 48 B", "?"),
        "bfloat16": ("6", "12 B", "≤ 20.0 %"),
        "float16": ("≥ 0", "≥ 0 B", "?"),
    }
    rows = {row["path"]: row for row in csv.DictReader(io.StringIO(render(report, "csv", View(depth=1))))}
    assert [rows[path]["complete"] for path in ("", "a", "b", "c", "d")] == ["False", "False", "True", "False", "True"]
    assert json.loads(render(report, "json"))["totals"]["complete"] is False


def test_one_dtype_holds_the_whole_share_even_with_unknown_sizes() -> None:
    dtypes = _cells("Parameters by dtype", paramscope.inspect(lazy()), View())
    assert dtypes == {"float32": ("≥ 14", "≥ 56 B", "100.0 %")}


def test_a_share_that_is_neither_nothing_nor_all_does_not_read_as_either() -> None:
    # 16 B of float32 beside 2 MiB of float16 read "0.0 %", and the float16 "100.0 %"
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024, bias=False, dtype=torch.float16), torch.nn.LayerNorm(2))
    report = paramscope.inspect(model)
    small = sum(p.numel() * p.element_size() for p in model[1].parameters())
    assert 0 < 100 * small / report.totals.param_bytes < 0.05  # rounds to 0.0
    dtypes = _cells("Parameters by dtype", report, View())
    assert (dtypes["float16"][2], dtypes["float32"][2]) == ("> 99.9 %", "< 0.1 %")


def test_csv_tensors() -> None:
    report = _report(tiny_gpt)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv", View(tensors=True)))))
    assert len(rows) == len(report.tensors)
    wte = next(row for row in rows if row["name"] == "transformer.wte.weight")
    assert (wte["shape"], wte["aliases"], wte["persistent"]) == ("[101, 12]", "lm_head.weight", "")
    wpe = next(row for row in rows if row["name"] == "transformer.wpe.weight")
    assert wpe["aliases"] == ""  # no aliases: an empty cell, not an empty list
    assert sum(int(row["numel"]) for row in rows if row["kind"] == "parameter") == report.totals.params


def test_csv_quotes_a_line_break_of_either_kind_in_a_name() -> None:
    model = torch.nn.Module()
    for name in ("carriage\rreturn", "line\nfeed", "plain"):
        model.add_module(name, torch.nn.Linear(2, 2))
    text = render(paramscope.inspect(model), "csv")
    assert text.endswith("\n")
    assert "\r\n" not in text.replace('"carriage\rreturn"', "")  # rows end in \n alone
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["path"] for row in rows] == ["", "carriage\rreturn", "line\nfeed", "plain"]


def _surrogate_model() -> torch.nn.Module:
    model = torch.nn.Module()
    model.add_module("x\ud800", torch.nn.Linear(2, 2))  # a lone surrogate: a str, but no UTF-8
    return model


def test_csv_writes_a_lone_surrogate_as_its_escape() -> None:
    report = paramscope.inspect(_surrogate_model())
    for view, column, names in (
        (View(), "path", ["", "x\\ud800"]),
        (View(tensors=True), "name", ["x\\ud800.weight", "x\\ud800.bias"]),
    ):
        text = render(report, "csv", view).encode("utf-8").decode("utf-8")
        assert [row[column] for row in csv.DictReader(io.StringIO(text, newline=""))] == names


def test_every_format_can_be_written_as_utf8_with_a_lone_surrogate() -> None:
    report = paramscope.inspect(_surrogate_model())
    for fmt in FORMATS:
        text = render(report, fmt, View(tensors=True))
        text.encode("utf-8")
        shown = _markdown_unescaped(text) if fmt == "markdown" else text
        assert "x\\ud800.weight" in shown, fmt


def test_str_and_rich_protocols() -> None:
    report = _report(tiny_gpt)
    assert str(report) == render(report, "table")
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(report)
    assert "transformer.wte.weight" in console.file.getvalue()  # type: ignore[attr-defined]


def test_rich_at_80_columns_never_cuts_a_figure(golden) -> None:
    report = paramscope.inspect("paramscope.examples:gpt2")
    console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(rich_renderable(report, View(depth=1)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    golden("gpt2-rich-80.txt", text)
    assert "124,439,808" in text
    assert "474.70 MiB" in text
    assert "…" not in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_text_is_wrapped_once_in_a_terminal_narrower_than_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    import textwrap

    from paramscope.render import write_report

    monkeypatch.setenv("COLUMNS", "60")
    title = "GPT-2 small, as built by paramscope.examples, counted on the meta device without loading weights"
    stream = _Terminal()
    write_report(paramscope.inspect("paramscope.examples:gpt2"), View(depth=1, title=title), stream, "table")
    lines = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue()).splitlines()
    assert max(len(line) for line in lines) > 60  # the tables are wider than the terminal, which wraps them
    # the heading, the titles and the notes are wrapped to the terminal's 60 columns, and only there
    assert [line.rstrip() for line in lines[:2]] == textwrap.wrap(title, 60)
    assert "Modules (depth 1)" in lines
    assert "Totals" in lines
    notes = lines[lines.index("Notes") + 1 :]
    note = (
        "lm_head.weight is the same tensor as transformer.wte.weight (tied): counted once, under transformer.wte.weight"
    )
    assert [line.rstrip() for line in notes] == textwrap.wrap(f"  • {note}", 60)


def test_rich_titles_are_not_wrapped_to_a_narrower_table() -> None:
    from paramscope.render.diff import diff_document
    from paramscope.render.text import draw_rich

    a, b = torch.nn.Module(), torch.nn.Module()
    a.w, b.v = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    console = Console(file=io.StringIO(), width=120, color_system=None, legacy_windows=False)
    console.print(draw_rich(diff_document(paramscope.diff(a, b))))
    lines = [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert "Only in A (1: missing from B)" in lines  # over a table one name wide
    assert "Only in B (1: unexpected in A)" in lines


def _module_rows(text: str) -> list[tuple[str, int]]:
    """The name and depth (its indent past the table's two-space margin, two spaces a level) of each row of the
    Modules table of a plain or rich table."""
    lines = text.split("\nModules\n", 1)[1].split("\nTotals\n", 1)[0].splitlines()
    rows = [line for line in lines if line.strip() and line.split()[0] != "Module" and line.split()[0].strip("-─")]
    return [(line.split()[0], (len(line) - len(line.lstrip(" ")) - 2) // 2) for line in rows]


def test_a_name_with_outer_spaces_reads_at_its_own_depth() -> None:
    from torch import nn

    model = nn.Sequential()
    model.add_module("a", nn.Sequential(nn.Linear(1, 1)))
    model.add_module("  b", nn.Linear(1, 1))  # legal: a child of the model, not of "a"
    model.add_module("c ", nn.Linear(1, 1))
    shown = {"": "(model)", "a": "a", "a.0": "a.0", "  b": "\\x20\\x20b", "c ": "c\\x20"}
    expected = [(shown[name], name.count(".") + 1 if name else 0) for name, _ in model.named_modules()]
    report = paramscope.inspect(model)
    console = Console(file=io.StringIO(), width=120, color_system=None, legacy_windows=False)
    console.print(rich_renderable(report))
    assert _module_rows(render(report, "table")) == expected
    assert _module_rows(console.file.getvalue()) == expected  # type: ignore[attr-defined]
    markdown = _markdown_cells(render(report, "markdown", View(tensors=True)))
    assert {"\\x20\\x20b", "c\\x20", "\\x20\\x20b.weight"} <= set(markdown)
    # the page's rows still link to the modules they show
    page = render(report, "html")
    rows = re.findall(r'<tr data-path="([^"]*)"><td[^>]*>([^<]*)</td>', page)
    assert [(json.loads(html.unescape(path)), text) for path, text in rows] == [
        ("  b", shown["  b"]),
        ("c ", shown["c "]),
    ]


def _untrusted_names() -> paramscope.Report:
    """A checkpoint-like report whose tensor names carry markup, an escape sequence and a bidi override."""
    from paramscope._report import Source, TensorRecord
    from paramscope._tree import tree_from_names

    names = ["a[/].weight", "b\x1b[31mred.weight", "c\u202eevil.weight"]
    records = [TensorRecord(name, (2,), 2, "float32", 8, "buffer", None, None) for name in names]
    nodes, totals, by_dtype = tree_from_names(records)
    return paramscope.Report(Source("safetensors", "names.safetensors"), totals, by_dtype, tuple(records), nodes)


def test_untrusted_names_cannot_drive_the_terminal() -> None:
    report = _untrusted_names()
    view = View(tensors=True)
    for text in (render(report, "table", view), _markdown_unescaped(render(report, "markdown", view))):
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "b\\x1b[31mred.weight" in text
        assert "c\\u202eevil.weight" in text
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    console.print(rich_renderable(report, view))  # "[/]" is a name here, not rich markup
    drawn = console.file.getvalue()  # type: ignore[attr-defined]
    assert "a[/].weight" in drawn
    assert "\u202e" not in drawn
    assert "non-persistent" not in render(report, "table", view)  # a checkpoint does not say


def test_data_formats_keep_names_as_they_are() -> None:
    report = _untrusted_names()
    data = json.loads(render(report, "json"))
    assert [record["name"] for record in data["tensors"]] == [record.name for record in report.tensors]


def test_markdown_shows_html_in_names_as_text() -> None:
    from torch import nn

    from paramscope.render.diff import render_diff

    names = ["<script>alert(1)</script>", "&lt;b&gt;"]  # the second must read as itself, not as "<b>"
    model = nn.Module()
    for name in names:
        model.add_module(name, nn.Linear(2, 2))
    texts = [
        render(paramscope.inspect(model), "markdown", View(tensors=True)),
        render_diff(paramscope.diff(model, nn.Module()), "markdown", everything=True),
    ]
    for text in texts:
        for name in names:
            assert name not in text
            assert html.escape(name, quote=False) in text
        assert "<" not in text
    assert "| &lt;script&gt;alert(1)&lt;/script&gt; | Linear | 6 | 24 B |" in texts[0]
    assert "| &amp;lt;b&amp;gt;.weight | parameter | (2, 2) |" in texts[0]


# Markdown's ASCII punctuation: a backslash before any of it is an escape (CommonMark 2.4).
_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _markdown_unescaped(text: str) -> str:
    """Markdown source as the text it shows: backslash escapes and entities undone."""
    return html.unescape(_MARKDOWN_ESCAPE.sub(r"\1", text))


def _markdown_cells(text: str) -> list[str]:
    """The cells of every table row, as the text they show. As in GitHub's tables, a cell ends at a "|" with no
    backslash before it, and a backslash before a "|" is taken away before the cell's own escapes are read."""
    cells = []
    for line in text.splitlines():
        if line.startswith("| "):
            split = re.split(r"(?<!\\)\|", line)[1:-1]
            cells += [_markdown_unescaped(cell.strip().replace("\\|", "|")) for cell in split]
    return cells


MARKDOWN_NAMES = [
    "[click](https://evil.example)*x*.weight",
    "a\\|b.weight",
    "`code`_u_ __b__ ~~s~~ ![i](j) <b> $m$ #h\\.weight",
    "c\x1b[31mred.weight",
]


def test_markdown_shows_markdown_in_names_as_text() -> None:
    from markdown_it import MarkdownIt

    from paramscope._report import Source, TensorRecord
    from paramscope._tree import tree_from_names

    records = [TensorRecord(name, (2,), 2, "float32", 8, "parameter", None, None) for name in MARKDOWN_NAMES]
    nodes, totals, by_dtype = tree_from_names(records)
    report = paramscope.Report(Source("safetensors", "n.safetensors"), totals, by_dtype, tuple(records), nodes)
    text = render(report, "markdown", View(tensors=True))
    shown = [printable(name) for name in MARKDOWN_NAMES]
    assert set(shown) <= set(_markdown_cells(text))
    assert "a\\|b" in _markdown_cells(text)  # the module itself, its backslash kept
    assert not re.search(r"(?<!\\)(\\\\)*\]\(", text)  # no "](" link syntax survives unescaped
    page = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)
    for tag in ("<a ", "<em>", "<strong>", "<code>", "<img", "<s>", "<del>", "<b>"):
        assert tag not in page
    assert set(shown) <= {html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", page)}


# Notes that would be markup at the start of a list item: another list (bullet or ordered), a heading, a thematic
# break, an indented code block; and a name with a line break in it.
MARKDOWN_NOTES = [
    "- a list item",
    "* a list item or emphasis",
    "+ a list item",
    "1. an ordered item",
    "2) an ordered item",
    "1.",
    "# a heading",
    "---",
    "- - -",
    "    indented code",
    " - an indented item",
    "a name with a line\nbreak: - b.weight",
    "a\n# heading inside",
    "1.5 GiB and 2024. a year are text, and so are -1 and 3.",
]


def test_markdown_notes_are_one_bullet_of_text_each() -> None:
    from markdown_it import MarkdownIt

    report = dataclasses.replace(_untrusted_names(), notes=tuple(MARKDOWN_NOTES))
    text = render(report, "markdown")
    page = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)
    notes = page.split("<h3>Notes</h3>\n", 1)[1]
    items = [printable(note).strip(" ") for note in MARKDOWN_NOTES]
    assert notes == "<ul>\n" + "".join(f"<li>{html.escape(item, quote=False)}</li>\n" for item in items) + "</ul>\n"
    # the list markers a note cannot be read without are escaped, and nothing else
    assert "- 1.5 GiB and 2024. a year are text, and so are -1 and 3." in text.splitlines()


def test_markdown_totals_keep_the_indent_of_their_sub_rows() -> None:
    from markdown_it import MarkdownIt
    from torch import nn

    from paramscope.render.diff import render_diff

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].requires_grad_(False)
    diff = paramscope.diff(model, nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2)))
    report = paramscope.inspect(model)
    nbsp = "\u00a0"
    for plain, markdown, subrows in (
        (render(report, "table"), render(report, "markdown"), ["trainable", "frozen"]),
        (render_diff(diff, "table"), render_diff(diff, "markdown"), ["trainable"]),
    ):
        for label in subrows:  # indented under "Parameters" in the plain table, past its two-space margin
            assert "\n  Parameters  " in plain
            assert f"\n    {label}  " in plain
        page = MarkdownIt("commonmark").enable(["table"]).render(markdown)
        totals = page.split("<h3>Totals</h3>", 1)[1].split("</table>", 1)[0]
        labels = [html.unescape(cell) for cell in re.findall(r"<tr>\s*<td[^>]*>(.*?)</td>", totals)]
        assert labels[: 1 + len(subrows)] == ["Parameters", *(f"{nbsp}{nbsp}{label}" for label in subrows)]


class _Experts(torch.nn.Module):
    """A mixture of experts: a router (always active) and four routed experts, two of which each token uses."""

    def __init__(self) -> None:
        super().__init__()
        self.router = torch.nn.Linear(4, 4, bias=False)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(4, 6, bias=False) for _ in range(4))


def test_every_format_has_the_active_parameters_of_a_mixture_of_experts() -> None:
    from paramscope._moe import with_active_params

    report = with_active_params(paramscope.inspect(_Experts()), {"num_local_experts": 4, "num_experts_per_tok": 2})
    # the router's 16, and two of the four experts' 24 each
    active = {"": 16 + 2 * 24, "router": 16, "experts": 2 * 24}
    assert report.totals.active_params == active[""]
    view = View(depth=1)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv", view))))
    assert {row["path"]: int(row["active_params"]) for row in rows} == active
    assert {row["path"]: row["active_params"] for row in json.loads(render(report, "json"))["modules"]} == {
        **active,
        **{f"experts.{index}": 12 for index in range(4)},
    }
    table = _cells("Modules", report, view)
    assert {path: cells[-1] for path, cells in table.items()} == {"(model)": "64", "router": "16", "experts": "48"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: View(depth="2"), "depth must be an integer, not str '2'"),
        (lambda: View(depth=-1), "depth must be 0 or more, not -1"),
        (lambda: View(depth=True), "depth must be an integer, not bool True"),
        (lambda: View(depth=1.5), "depth must be an integer, not float 1.5"),
        (lambda: View(tensors="no"), "tensors must be True or False, not str 'no'"),
        (lambda: View(units="IEC"), "units must be 'iec' or 'si', not str 'IEC'"),
        (lambda: View(units=None), "units must be 'iec' or 'si', not None"),
        (lambda: View(title=3), "title must be a string, not int 3"),
        (lambda: View(explain=1), "explain must be True or False, not int 1"),
        (
            lambda: render(_resnet(), "xml"),
            "format must be 'table', 'json', 'csv', 'markdown' or 'html', not str 'xml'",
        ),
        (
            lambda: render(_resnet(), "text"),
            "format must be 'table', 'json', 'csv', 'markdown' or 'html', not str 'text'",
        ),
        (
            lambda: render(_resnet(), "table", {"depth": 1}),
            "view must be a paramscope.render.View, not dict {'depth': 1}",
        ),
        (lambda: render(None, "table"), "report must be a paramscope.Report, not None"),
        (lambda: render(torch.nn.Linear(2, 2), "json"), "report must be a paramscope.Report, not Linear"),
    ],
)
def test_render_refuses_what_it_cannot_draw_in_words(call, message: str) -> None:
    """A bad format or view is a one-line UsageError naming it: an unknown format drew the table (``"xml"`` gave
    plain text), a depth given as a string raised TypeError from inside the layout, and units other than 'iec'
    drew SI units unasked."""
    with pytest.raises(paramscope.UsageError) as raised:
        call()
    assert str(raised.value) == message


def test_view_takes_any_integer_depth() -> None:
    import numpy

    assert render(_resnet(), "table", View(depth=numpy.int64(0))) == render(_resnet(), "table", View(depth=0))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", [40, 60, 80, 200])
def test_a_terminal_of_any_width_shows_every_figure_and_name_whole(
    columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a narrow terminal rich cut the figures ("124,4…", "474.7…") and the module names ("trans…"), and dropped
    the Type column whole at 40 columns: the table is drawn as wide as they need (lines then wrap in the terminal,
    as the plain table's do), and no wider than the terminal where they fit."""
    from paramscope.render import write_document
    from paramscope.render._layout import layout

    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    document = layout(paramscope.inspect("paramscope.examples:gpt2"), View(depth=1))
    terminal = _Terminal()
    write_document(document, terminal, "table")
    text = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    assert "…" not in text
    words = set(text.split())
    for section in document.sections:
        for row in section.rows:
            for cell, column in zip(row, section.columns, strict=True):
                if column.align == "right" or cell is row[0]:
                    assert cell.strip() in text, (columns, cell)
    assert "GPT" in words  # the Type column is there (folded where narrow: "Line" "ar")
    if columns >= 80:  # room enough: the terminal's width
        assert max(len(line) for line in text.splitlines()) <= columns


@pytest.mark.parametrize("columns", [40, 80, 120])
@pytest.mark.parametrize("model", ["gpt2", "float8"])
def test_a_terminal_never_splits_a_shape_s_figure_or_a_dtype(
    columns: int, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # from review: at 80 and 120 columns the tensor table folded shapes and dtypes inside their figures, "(5025" /
    # "7,", "float3" / "2": a folded column wraps at its spaces, and is as wide as its longest word with a figure
    from paramscope.render import write_document
    from paramscope.render._layout import layout

    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    report = paramscope.inspect("paramscope.examples:gpt2")
    if model == "float8":  # dtypes of long names, float8_e4m3fn's 13 cells
        with torch.device("meta"):  # names long enough to leave the other columns folded
            layers = torch.nn.ModuleDict({"projection_of_the_attention": torch.nn.Linear(4096, 4096),
                                          "normalisation_of_the_attention": torch.nn.LayerNorm(4096)})  # fmt: skip
        report = paramscope.inspect(layers.to(torch.float8_e4m3fn))
    terminal = _Terminal()
    write_document(layout(report, View(depth=1, tensors=True)), terminal, "table")
    text = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    # the Tensors table alone: its lines, up to the next section's title (a line not indented)
    lines = text.split("\nTensors\n", 1)[1].splitlines()
    table = lines[: next((n for n, line in enumerate(lines) if line and not line[0].isspace()), len(lines))]
    words = set(" ".join(table).split())
    for record in report.tensors:
        shape = "(" + ", ".join(map(str, record.shape or ())) + ")"  # as the table writes it
        assert set(shape.split()) <= words, shape
        assert record.dtype in words


def test_plain_table_aligns_names_of_wide_characters_by_the_columns_they_take() -> None:
    """A CJK character or an emoji takes two columns of a terminal or a monospaced file, a combining accent none: the
    plain table padded each name by its count of characters, so the figures after such a name stood out of line."""
    from rich.cells import cell_len

    model = torch.nn.Module()
    for name in ("plain", "宽字符", "e\u0301cole", "🙂x"):
        model.add_module(name, torch.nn.Linear(2, 2))
    text = render(paramscope.inspect(model), "table", View(depth=1))
    lines = text.split("\n\n")[1].splitlines()[1:]  # the module table: header, rule, rows
    assert len(lines) == 7
    assert {cell_len(line) for line in lines} == {cell_len(lines[0])}
    # each figure ends in the same column as the header's
    ends = {cell_len(line[: line.index(" 6 ") + 2]) for line in lines[3:]}
    assert ends == {cell_len(lines[0][: lines[0].index("Params") + 6])}

"""The HTML report: a self-contained page whose data adds up, with every name escaped; then the page itself in
headless Chromium (Debian's package, driven by Playwright): totals, treemap areas, zoom, tooltip, colours."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import paramscope
from paramscope._errors import printable
from paramscope._report import Report, Source, TensorRecord
from paramscope._tree import tree_from_names
from paramscope._units import format_bytes, format_count, format_share, humanize_count
from paramscope.cli import main
from paramscope.render import FORMATS, View, render
from paramscope.render.html import MAX_TABLE_ROWS, render_html, treemap_data

from .models import PartlyFrozen, tiny_gpt

EVIL = "evil</script><b>bold</b><!--"


def _resnet() -> Report:
    return paramscope.inspect("paramscope.examples:resnet18")


def _tiny_gpt() -> Report:
    with torch.device("meta"):
        return paramscope.inspect(tiny_gpt())


def _checkpoint(records: list[TensorRecord], target: str = "model.safetensors") -> Report:
    """A checkpoint-like report (module tree from tensor names), built without torch."""
    nodes, totals, by_dtype = tree_from_names(records)
    return Report(Source("safetensors", target), totals, by_dtype, tuple(records), nodes)


def _tensor(name: str, numel: int, dtype: str = "float32", width: int = 4) -> TensorRecord:
    return TensorRecord(name, (numel,), numel, dtype, numel * width, "parameter", None, None)


def _evil() -> Report:
    """Names that would break out of a script tag or inject markup if they were not escaped."""
    records = [_tensor(f"{EVIL}.weight", 3000), _tensor("plain.weight", 1000), _tensor("plain.bias", 10)]
    return _checkpoint(records, target=f"{EVIL}.safetensors")


def _huge() -> Report:
    """100,000 tensors: 2,000 blocks of 25 layers, each a weight and a bias. Block sizes fall off as 1/n², so most
    blocks are too small to draw alone."""
    records = []
    for block in range(2000):
        scale = 1 + 100_000 // (block + 1) ** 2
        for layer in range(25):
            records.append(_tensor(f"blocks.{block}.{layer}.weight", 64 * scale * (25 - layer), "bfloat16", 2))
            records.append(_tensor(f"blocks.{block}.{layer}.bias", scale * (25 - layer)))
    return _checkpoint(records, target="huge.safetensors")


def _flat() -> Report:
    """100,000 tensors in 50,000 sibling layers: at depth 2, a module table of 50,001 rows."""
    records = []
    for layer in range(50_000):
        records += [_tensor(f"layers.{layer}.weight", 64), _tensor(f"layers.{layer}.bias", 8)]
    return _checkpoint(records, target="flat.safetensors")


def _data(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" class="ps-data">(.*?)</script>', page, re.S)
    assert match is not None
    return json.loads(match.group(1))


# ---------------------------------------------------------------------------------------------------------------------
# the document


def test_html_is_a_format_of_render() -> None:
    assert "html" in FORMATS
    page = render(_resnet(), "html")
    assert page.startswith("<!DOCTYPE html>\n")
    assert page.endswith("</html>\n")


def test_page_is_self_contained() -> None:
    for report in (_resnet(), _tiny_gpt()):
        page = render_html(report)
        assert "http://" not in page
        assert "https://" not in page
        assert "<link" not in page
        assert "@import" not in page
        assert "url(" not in page
        assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", page)
        # exactly the two inline scripts: the data and the code
        assert page.count("<script") == 2
        assert page.count("</script>") == 2


def test_embedded_data_adds_up_to_the_totals() -> None:
    report = _resnet()
    data = _data(render_html(report))
    modules = data["modules"]
    assert data["total"] == report.totals.params == modules["params"][0]
    assert sum(modules["own"]) == report.totals.params
    assert sum(modules["ownBytes"]) == report.totals.param_bytes
    children: dict[int, list[int]] = {}
    for index, parent in enumerate(modules["parent"]):
        children.setdefault(parent, []).append(index)
    for index, params in enumerate(modules["params"]):
        assert params == modules["own"][index] + sum(modules["params"][kid] for kid in children.get(index, []))
    # the depth-1 modules and the root's own tensors make the whole model
    top = children[0]
    assert sum(modules["params"][kid] for kid in top) + modules["own"][0] == report.totals.params
    assert [modules["name"][kid] for kid in top] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                                    "layer4", "avgpool", "fc"]  # fmt: skip
    assert data["dtypes"] == ["float32"]
    assert modules["trainable"][0] == report.totals.trainable


def test_tied_tensors_appear_once_with_their_aliases_at_their_owner() -> None:
    report = _tiny_gpt()
    data = treemap_data(report)
    wte = report.modules.index(report.module("transformer.wte"))
    assert data["ties"] == {str(wte): [["weight", ["lm_head.weight"]]]}
    head = report.modules.index(report.module("lm_head"))
    assert data["modules"]["params"][head] == 0  # counted once, under transformer.wte
    assert data["info"][str(head)]["shared"] == ["transformer.wte.weight"]


def test_names_are_escaped_in_markup_and_in_the_data() -> None:
    page = render_html(_evil())
    assert "<b>bold" not in page
    assert "<!--" not in page
    assert page.count("</script") == 2
    assert "evil&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;&lt;!--" in page  # in the heading and in the tables
    data = _data(page)
    assert EVIL in data["modules"]["name"]


ODD = ["evil\u202egnp_exe", "ctl\x1b[31mred", "x\ud800"]  # a bidi override, an escape sequence, a lone surrogate
SHOWN = ["evil\\u202egnp_exe", "ctl\\x1b[31mred", "x\\ud800"]  # as the table and Markdown formats show them
# raw in the markup: a control character is a parse error, U+202E reorders what is shown, a surrogate is no UTF-8
UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _markup(page: str) -> str:
    """The page without its data and script: what is shown as it is written."""
    return re.sub(r"<script\b.*?</script>", "", page, flags=re.S)


def test_names_show_control_and_bidi_characters_as_escapes() -> None:
    report = dataclasses.replace(
        _checkpoint([_tensor(f"{name}.weight", 4) for name in ODD], target=f"{ODD[0]}.safetensors"),
        notes=tuple(f"{name} is a name" for name in ODD),
    )
    page = render_html(report, View(tensors=True))
    page.encode("utf-8")  # a lone surrogate could not be written
    markup = _markup(page)
    assert not UNSHOWABLE.search(markup)
    for shown in SHOWN:
        assert f'<td style="padding-left:1.75em">{html.escape(shown)}</td>' in markup  # module
        assert f"<td>{html.escape(shown)}.weight</td>" in markup  # tensor
        assert f"<li>{html.escape(shown)} is a name</li>" in markup  # note
    assert f"<h1>{SHOWN[0]}.safetensors (safetensors)</h1>" in markup
    assert [name for name in _data(page)["modules"]["name"] if name] == ODD  # the data keeps the names


def test_a_table_row_with_an_escaped_name_still_finds_its_module() -> None:
    # The script finds a row's module by the row's text, which for these names is not the module's path.
    page = render_html(_checkpoint([_tensor(f"{name}.weight", 4) for name in ODD]))
    paths = [json.loads(html.unescape(path)) for path in re.findall(r'<tr data-path="([^"]*)">', page)]
    assert paths == ODD


def test_a_row_of_own_tensors_finds_its_module() -> None:
    page = render_html(_checkpoint([_tensor("a.w", 4), _tensor("a.b.weight", 4), _tensor("c", 2)]))
    assert re.findall(r'<tr data-path="([^"]*)">', page) == [html.escape('""'), html.escape('"a"')]


def test_mixed_dtypes_and_units() -> None:
    report = _checkpoint([_tensor("a.weight", 100, "bfloat16", 2), _tensor("a.bias", 10), _tensor("b.weight", 5)])
    data = treemap_data(report, View(units="si"))
    assert data["units"] == "si"
    assert data["dtypes"] == ["bfloat16", "float32"]
    a = data["modules"]["name"].index("a")
    assert data["modules"]["dtype"][a] == 0
    assert data["mixed"][str(a)] == [[0, 100], [1, 10]]
    assert data["modules"]["trainable"] is None  # a checkpoint does not say


def test_cards_mark_lower_bounds_in_their_sub_lines() -> None:
    model = torch.nn.Module()
    model.a = torch.nn.LazyLinear(3)
    model.b = torch.nn.Linear(3, 3).requires_grad_(False)
    model.c = torch.nn.LazyBatchNorm1d()
    page = render_html(paramscope.inspect(model))
    figures = re.findall(r'data-figure="(\w+)">.*?class="ps-value">([^<]*)</div><div class="ps-sub">([^<]*)<', page)
    assert figures == [
        ("params", "≥ 12", "≥ 12"),
        ("trainable", "≥ 0", "frozen ≥ 12"),
        ("bytes", "≥ 48 B", "≥ 48 B"),
        ("buffers", "≥ 1", "≥ 8 B"),
    ]
    assert "<b>float32</b> ≥ 12 · ≥ 48 B · 100.0 %</li>" in page


def test_tables_are_the_layout_sections() -> None:
    report = _resnet()
    page = render_html(report, View(depth=1))
    for title in ("Modules (depth 1)", "Totals", "Parameters by dtype"):
        assert f"<h2>{title}</h2>" in page
    assert '<td style="padding-left:1.75em">layer4</td><td>Sequential</td><td class="ps-num">8,393,728</td>' in page
    assert f'<div class="ps-value">{format_count(report.totals.params)}</div>' in page


def test_repr_html_is_a_scoped_fragment() -> None:
    report = _resnet()
    first, second = report._repr_html_(), report._repr_html_()
    assert "<html" not in first
    ids = [re.match(r'<div class="ps-report" id="(paramscope-[0-9a-f]+)">', text) for text in (first, second)]
    assert ids[0]
    assert ids[1]
    assert ids[0].group(1) != ids[1].group(1)
    assert f'document.getElementById("{ids[0].group(1)}")' in first
    assert "<style>" in first
    assert _data(first)["total"] == report.totals.params


def test_huge_model_data_stays_compact() -> None:
    report = _huge()
    start = time.perf_counter()
    page = render_html(report)
    elapsed = time.perf_counter() - start
    assert len(report.tensors) == 100_000
    assert elapsed < 10, elapsed
    assert len(page) < 60 * len(report.modules) + 1_000_000  # one compact row per module, no per-tensor data
    assert _data(page)["total"] == report.totals.params


def test_long_tables_are_cut_and_say_so() -> None:
    report = _flat()
    page = render_html(report)
    modules = page.partition("<h2>Modules</h2>")[2].partition("</table>")[0]
    assert modules.count("<tr>") == 1 + MAX_TABLE_ROWS + 1  # the header row, the shown rows, the foot
    hidden = len(report.modules) - MAX_TABLE_ROWS
    assert f"… and {hidden:,} more rows, not shown in this page (the CSV and JSON formats have every row)" in modules
    assert len(page) < 2_000_000
    assert _data(page)["total"] == report.totals.params


def test_one_row_cut_is_one_row() -> None:
    # from review: a table one row too long ended "… and 1 more rows"
    records = [_tensor(f"layers.{layer}.weight", 4) for layer in range(MAX_TABLE_ROWS - 1)]
    report = _checkpoint(records, target="flat.safetensors")
    assert len(report.modules) == MAX_TABLE_ROWS + 1  # the model's row, "layers" and one row a layer
    modules = render_html(report).partition("<h2>Modules</h2>")[2].partition("</table>")[0]
    assert "… and 1 more row, not shown in this page (the CSV and JSON formats have every row)" in modules


def test_render_html_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from paramscope._report import Report, Source, TensorRecord\n"
        "from paramscope._tree import tree_from_names\n"
        "from paramscope.render import render\n"
        "records = [TensorRecord('a.weight', (4,), 4, 'float32', 16, 'parameter', None, None)]\n"
        "nodes, totals, by_dtype = tree_from_names(records)\n"
        "page = render(Report(Source('safetensors', 'x'), totals, by_dtype, tuple(records), nodes), 'html')\n"
        "assert 'torch' not in sys.modules and page.startswith('<!DOCTYPE html>')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_writes_html_for_inspect_summary_and_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.html"
    assert main(["inspect", "paramscope.examples:resnet18", "--format", "html", "-o", str(target)]) == 0
    assert capsys.readouterr() == ("", "")
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<h2>Modules (depth 2)</h2>" in page
    assert main(["summary", "paramscope.examples:resnet18", "--input-size", "1,3,64,64", "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert "<h2>Forward pass (execution order, depth 3)</h2>" in out
    assert 'data-figure="flops"' in out
    assert main(["memory", "paramscope.examples:resnet18", "--input-size", "2,3,64,64", "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert "<h2>Memory for inference (batch 2)</h2>" in out
    assert 'data-figure="memory"' in out


# ---------------------------------------------------------------------------------------------------------------------
# in a real browser

CHROMIUM = Path("/usr/bin/chromium")
# The first browser test may install chromium (about a minute with apt-get update): more than the default timeout.
in_browser = pytest.mark.timeout(900)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _install_chromium() -> str | None:
    """Install Debian's chromium when it is missing; the reason it cannot be had, or None when it is there."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return "chromium is not installed and this machine has no apt-get to install Debian's package"
    if os.geteuid() != 0:
        return "chromium is not installed and installing Debian's package needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    for steps in ([install], [["apt-get", "update", "-q"], install]):  # the package lists may be missing or stale
        try:
            for step in steps:
                subprocess.run(step, env=env, check=True, capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            reason = f"'{' '.join(step)}' failed: {str(getattr(error, 'stderr', b''))[-300:]}"
            continue
        if CHROMIUM.exists():
            return None
        reason = "apt-get installed chromium but /usr/bin/chromium is not there"
    return f"chromium could not be installed: {reason}"


def test_missing_chromium_is_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = "chromium is not installed and this machine has no apt-get to install Debian's package"
    assert _install_chromium() == reason


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (Debian's, never a browser Playwright downloads)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    reason = _install_chromium()
    if reason is not None:
        pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_report(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """Write a report's page to a file, open it from its file:// URL, and fail the test on any script error."""
    pages: list[Any] = []
    errors: list[str] = []

    def open_(report: Report, name: str = "report", view: View | None = None) -> Any:
        path = tmp_path / f"{name}.html"
        path.write_text(render_html(report, view), encoding="utf-8")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on(  # nothing but the file itself is ever requested
            "request", lambda request: errors.append(f"request {request.url}") if request.url != path.as_uri() else None
        )
        pages.append(page)
        page.goto(path.as_uri())
        page.wait_for_selector(".ps-cell")
        return page

    yield open_
    for page in pages:
        page.close()
    assert errors == []


def _cells(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        ".ps-cell",
        """cells => cells.map(cell => {
            const box = cell.getBoundingClientRect();
            return {kind: cell.dataset.kind, path: cell.dataset.path, value: Number(cell.dataset.value),
                    area: box.width * box.height};
        })""",
    )


def _assert_proportional(cells: list[dict[str, Any]], total: int) -> None:
    """Every rectangle's share of the drawing is its share of the parameters, within 1 %."""
    assert sum(cell["value"] for cell in cells) == total
    area = sum(cell["area"] for cell in cells)
    for cell in cells:
        assert cell["area"] / area == pytest.approx(cell["value"] / total, rel=0.01), cell


@in_browser
def test_browser_totals_treemap_zoom_and_tooltip(open_report: Any, tmp_path: Path) -> None:
    report = _resnet()
    page = open_report(report, "resnet18")
    totals = report.totals
    assert page.text_content('[data-figure="params"] .ps-value') == format_count(totals.params)
    assert page.text_content('[data-figure="trainable"] .ps-value') == format_count(totals.trainable or 0)
    assert page.text_content('[data-figure="bytes"] .ps-value') == format_bytes(totals.param_bytes)
    assert "float32" in page.text_content(".ps-dtypes")

    # every level: the leaves of the drawn tree, sized by their parameters
    cells = _cells(page)
    _assert_proportional(cells, totals.params)
    modules = [cell["path"] for cell in cells if cell["kind"] == "module"]
    assert len(modules) == len(set(modules)) > 20
    assert all(report.module(path).params for path in modules)

    # one level: one rectangle per child of the model that holds parameters
    page.select_option(".ps-levels", "1")
    cells = _cells(page)
    assert {cell["path"] for cell in cells} == {node.path for node in report.modules if node.depth == 1 and node.params}
    assert all(cell["kind"] == "module" for cell in cells)
    _assert_proportional(cells, totals.params)

    page.hover('.ps-cell[data-path="fc"]')
    tip = page.locator(".ps-tip")
    assert tip.is_visible()
    text = tip.text_content()
    assert "fc" in text
    assert "Linear" in text
    assert "513,000" in text
    assert f"{format_share(513_000, totals.params)} of the model" in text  # as the tables write shares
    assert "1.96 MiB" in text

    # a click zooms into the module: its children, sized within it
    page.click('.ps-cell[data-path="layer4"]')
    assert page.text_content(".ps-crumbs .ps-here") == "layer4"
    cells = _cells(page)
    assert {cell["path"] for cell in cells} == {"layer4.0", "layer4.1"}
    _assert_proportional(cells, report.module("layer4").params)
    page.select_option(".ps-levels", "0")
    cells = _cells(page)
    assert all(cell["path"].startswith("layer4.") for cell in cells)
    assert len(cells) >= 10
    _assert_proportional(cells, report.module("layer4").params)
    page.screenshot(path=str(tmp_path / "resnet18-layer4.png"))

    # back out with the button, then with the breadcrumb
    page.click(".ps-up")
    assert page.text_content(".ps-crumbs .ps-here") == "(model)"
    page.click('.ps-cell[data-path^="layer3"]')
    page.click(".ps-crumbs button")
    assert page.text_content(".ps-crumbs .ps-here") == "(model)"
    page.mouse.move(1, 1)
    page.screenshot(path=str(tmp_path / "resnet18.png"), full_page=True)
    assert (tmp_path / "resnet18.png").stat().st_size > 10_000


@in_browser
def test_browser_tied_weights_and_colour_modes(open_report: Any) -> None:
    page = open_report(_tiny_gpt(), "tiny-gpt")
    page.hover('.ps-cell[data-path="transformer.wte"]')
    text = page.text_content(".ps-tip")
    assert "weight is also lm_head.weight" in text
    assert page.locator('.ps-cell[data-path="lm_head"]').count() == 0  # 0 parameters of its own: no area
    page.select_option(".ps-colour", "dtype")
    assert page.text_content(".ps-legend") == "float32 100.0 %"

    page = open_report(paramscope.inspect(PartlyFrozen()), "frozen")
    page.select_option(".ps-colour", "trainable")
    legend = page.text_content(".ps-legend")
    assert "frozen" in legend
    assert "trainable" in legend
    colours = page.eval_on_selector_all(".ps-cell", "cells => cells.map(cell => cell.getAttribute('fill'))")
    assert len(set(colours)) >= 2


@in_browser
def test_browser_group_tooltip_names_the_ties_inside(open_report: Any) -> None:
    records = [_tensor("big.weight", 1_000_000), _tensor("tiny.0.weight", 100_000)]
    records += [_tensor(f"tiny.{layer}.weight", 10) for layer in range(1, 40)]
    records[9] = records[9]._replace(aliases=("head.weight",))  # tiny.8.weight, stored once under two names
    page = open_report(_checkpoint(records), "grouped-tie")
    group = '.ps-cell[data-kind=group][data-path="tiny"]'
    assert page.locator(group).count() == 1  # tiny.8 is too small to draw alone
    page.hover(group)
    assert "Tiedtiny.8.weight is also head.weight" in page.text_content(".ps-tip")


@in_browser
def test_browser_shows_escaped_names_as_text(open_report: Any) -> None:
    page = open_report(_evil(), "evil")
    assert page.locator("script").count() == 2
    assert EVIL in page.text_content("h1")
    assert page.evaluate("document.querySelectorAll('h1 b, td b').length") == 0
    page.hover(f'.ps-cell[data-path="{EVIL}"]')
    assert EVIL in page.text_content(".ps-tip-path")


def _odd_names() -> Report:
    """A model whose module names and class name hold a bidi override, an escape sequence and a tab."""
    block = nn.Module()
    block.add_module(ODD[1], type("Odd\u202eepyt", (nn.Linear,), {})(64, 64))
    block.add_module("tab\there", nn.Linear(64, 64))
    model = nn.Module()
    model.add_module(ODD[0], block)
    model.add_module("plain", nn.Linear(32, 32))
    return paramscope.inspect(model)


@in_browser
def test_browser_shows_control_and_bidi_characters_in_names_as_escapes(open_report: Any) -> None:
    # The treemap's labels, tabs, legend, tooltip and breadcrumbs show a name as the tables do, and the page's data
    # keeps the name itself.
    page = open_report(_odd_names(), "odd-names")
    drawn = page.text_content(".ps-svg")
    for name in (ODD[0], ODD[1], "tab\there", "Odd\u202eepyt"):
        assert name not in drawn
    assert not UNSHOWABLE.search(drawn)
    assert "\t" not in drawn
    assert f"{SHOWN[0]} · Module" in drawn  # the block's tab
    assert SHOWN[1] in drawn
    assert "tab\\there" in drawn
    assert "Odd\\u202eepyt" in page.text_content(".ps-legend")

    paths = page.eval_on_selector_all(".ps-cell", "cells => cells.map(cell => cell.dataset.path)")
    odd = f"{ODD[0]}.{ODD[1]}"
    page.locator(".ps-cell").nth(paths.index(odd)).hover()  # data-path keeps the path: the script matches it
    assert page.text_content(".ps-tip-path") == printable(odd)
    assert page.text_content(".ps-tip-type") == "Odd\\u202eepyt"
    assert f"of {SHOWN[0]}" in page.text_content(".ps-tip")
    assert not UNSHOWABLE.search(page.text_content(".ps-tip"))

    page.locator(".ps-cell").nth(paths.index(odd)).click()
    assert page.text_content(".ps-crumbs .ps-here") == SHOWN[0]
    assert not UNSHOWABLE.search(page.text_content(".ps-svg"))
    names = page.evaluate("JSON.parse(document.querySelector('script.ps-data').textContent).modules.name")
    assert names == ["", ODD[0], ODD[1], "tab\there", "plain"]


def _script_printable() -> str:
    """The page script's ``printable`` (with the regular expression it uses), as the script defines it."""
    script = resources.files("paramscope.render").joinpath("_html", "report.js").read_text(encoding="utf-8")
    match = re.search(r"^  var UNPRINTABLE = .*?^  }$", script, re.S | re.M)
    assert match is not None
    return match.group()


# a tab, a line feed, an escape, DEL, a C1 control, a no-break space, a soft hyphen, an unassigned code point, a line
# separator, a bidi override, lone surrogates, private use, a BOM, a tag character, the last code point; and printable
SAMPLES = [0x09, 0x0A, 0x0D, 0x1B, 0x7F, 0x85, 0xA0, 0xAD, 0x378, 0x2028, 0x202E, 0xD800, 0xDFFF, 0xE000, 0xFEFF]
SAMPLES += [0xE0001, 0x10FFFF, 0x20, 0x41, 0xE9, 0x4E2D, 0x1F600]


@in_browser
def test_browser_script_escapes_as_printable_does(browser: Any) -> None:
    """The script shows a name as paramscope._errors.printable does, code point by code point: the same characters
    escaped, each the same way; only a character Python's Unicode tables do not have yet may be printable to it."""
    page = browser.new_page()
    kept, shown = page.evaluate(
        "samples => {"
        + _script_printable()
        + """
        const kept = [];
        for (let code = 0; code <= 0x10ffff; code++) {
            const char = String.fromCodePoint(code);
            if (printable(char) === char) kept.push(code);
        }
        return [kept, samples.map(code => printable(String.fromCodePoint(code)))];
        }""",
        SAMPLES,
    )
    page.close()
    assert shown == [printable(chr(code)) for code in SAMPLES]
    python = {code for code in range(0x110000) if chr(code).isprintable()}
    assert python <= set(kept)
    assert {unicodedata.category(chr(code)) for code in set(kept) - python} <= {"Cn"}


# How JupyterLab shows HTML outputs: set as innerHTML, then, when the notebook is trusted, each script re-created
# with its attributes (an untrusted output has its scripts removed).
SHOW_OUTPUTS = """([outputs, trusted]) => outputs.forEach(html => {
    const output = document.createElement("div");
    output.innerHTML = html;
    document.getElementById("cells").appendChild(output);
    output.querySelectorAll("script").forEach(script => {
        if (!trusted) { script.remove(); return; }
        const clone = document.createElement("script");
        for (const {name, value} of script.attributes) clone.setAttribute(name, value);
        clone.textContent = script.textContent;
        script.replaceWith(clone);
    });
})"""


@in_browser
def test_browser_notebook_outputs_draw_side_by_side(browser: Any, tmp_path: Path) -> None:
    """Three outputs in one notebook page: each draws and zooms its own treemap; untrusted, the tables remain."""
    resnet, gpt = _resnet(), _tiny_gpt()
    path = tmp_path / "notebook.html"
    path.write_text("<!DOCTYPE html><html><body><div id=cells></div></body></html>", encoding="utf-8")
    page = browser.new_page()
    page.goto(path.as_uri())
    page.evaluate(SHOW_OUTPUTS, [[resnet._repr_html_(), gpt._repr_html_(), resnet._repr_html_()], True])
    reports = page.locator(".ps-report")
    assert reports.count() == 3
    for index, report in enumerate((resnet, gpt, resnet)):
        cells = reports.nth(index).locator(".ps-cell")
        assert cells.count() > 10
        assert sum(int(value) for value in cells.evaluate_all("cells => cells.map(c => c.dataset.value)")) == (
            report.totals.params
        )
    reports.nth(1).locator('.ps-cell[data-path^="transformer.h.1."]').first.click()
    assert reports.nth(1).locator(".ps-crumbs .ps-here").text_content() == "transformer"
    assert reports.nth(0).locator(".ps-crumbs .ps-here").text_content() == "(model)"
    page.evaluate("document.getElementById('cells').replaceChildren()")
    page.evaluate(SHOW_OUTPUTS, [[resnet._repr_html_()], False])
    assert not page.locator(".ps-map").is_visible()
    assert page.locator("table").count() >= 3
    page.close()


@in_browser
def test_browser_table_row_zooms_the_treemap(open_report: Any) -> None:
    page = open_report(_resnet(), "rows")
    page.click("table[data-linked] tbody tr:has-text('layer2')")
    assert page.text_content(".ps-crumbs .ps-here") == "layer2"


@in_browser
def test_browser_table_row_with_an_escaped_name_zooms_the_treemap(open_report: Any) -> None:
    records = [_tensor(f"{name}.inner.weight", 4) for name in ODD[:2]]  # no surrogate: the page is written to a file
    page = open_report(_checkpoint(records), "odd-rows")
    page.click("table[data-linked] tbody tr:has-text('ctl')")
    assert page.text_content(".ps-crumbs .ps-here") == SHOWN[1]


@in_browser
def test_browser_row_of_own_tensors_zooms_to_its_module(open_report: Any) -> None:
    page = open_report(_checkpoint([_tensor("a.w", 4), _tensor("a.b.weight", 4), _tensor("c", 2)]), "own-rows")
    page.click("table[data-linked] tbody tr:has-text('a (own tensors)')")
    assert page.text_content(".ps-crumbs .ps-here") == "a"


def _svg_nodes(page: Any) -> int:
    return page.evaluate("document.querySelectorAll('.ps-svg *').length")


@in_browser
def test_browser_llama_70b_stays_responsive(open_report: Any, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        num_hidden_layers=80, hidden_size=8192, intermediate_size=28672, num_attention_heads=64,
        num_key_value_heads=8, vocab_size=128256,
    )  # fmt: skip
    config.save_pretrained(tmp_path / "llama")
    report = paramscope.inspect(str(tmp_path / "llama"))
    assert len(report.modules) > 800
    start = time.perf_counter()
    page = open_report(report, "llama-70b")
    assert time.perf_counter() - start < 5
    cells = _cells(page)
    _assert_proportional(cells, report.totals.params)
    assert len(cells) > 300
    assert _svg_nodes(page) < 4000
    start = time.perf_counter()
    page.click('.ps-cell[data-path="layers.0.mlp.down_proj"]')  # zooms into layers, the top-level module
    page.click('.ps-cell[data-path^="layers.40."]')
    assert time.perf_counter() - start < 2
    assert page.text_content(".ps-crumbs .ps-here") == "40"
    _assert_proportional(_cells(page), report.module("layers.40").params)
    page.screenshot(path=str(tmp_path / "llama-70b-layer40.png"))


@in_browser
def test_browser_100k_tensors_groups_small_modules(open_report: Any) -> None:
    report = _huge()
    start = time.perf_counter()
    page = open_report(report, "huge")
    assert time.perf_counter() - start < 10
    assert _svg_nodes(page) < 5000
    _assert_proportional(_cells(page), report.totals.params)
    # the blocks too small to draw alone share one rectangle
    blocks = '.ps-cell[data-kind=group][data-path="blocks"]'
    assert page.locator(blocks).count() == 1
    page.hover(blocks)
    assert "smaller modules in blocks" in page.text_content(".ps-tip-path")
    page.click(blocks)  # zooms into blocks, where the group is at the top
    assert page.text_content(".ps-crumbs .ps-here") == "blocks"
    value = int(page.locator(blocks).get_attribute("data-value"))
    page.click(blocks)
    assert page.text_content(".ps-crumbs .ps-here").endswith("smaller modules")
    cells = _cells(page)
    assert len(cells) > 1000
    assert _svg_nodes(page) < 5000
    _assert_proportional(cells, value)
    page.click(".ps-up")
    assert page.text_content(".ps-crumbs .ps-here") == "blocks"


class HalvesAndRollOver(nn.Module):
    """Figures the page's script and the tables round alike only if it rounds as Python does: 3,200 B is exactly
    3.125 KiB (half to even: 3.12), 999,999 parameters are 1.00M (not 1000.00K), 800 of 1,000,799 are 0.1 % (not
    0.080 %)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(799, 1)
        self.b = nn.Linear(1000, 999)


@in_browser
def test_browser_figures_are_written_as_the_tables_write_them(open_report: Any) -> None:
    # from review: the tooltip said 3.13 KiB where the table said 3.12, the label 1000.00K where the tables say 1.00M
    report = paramscope.inspect(HalvesAndRollOver())
    page = open_report(report, "halves")
    for path in ("a", "b"):
        node = report.module(path)
        page.hover(f'.ps-cell[data-path="{path}"]')
        text = page.locator(".ps-tip").text_content()
        assert f"({humanize_count(node.params)})" in text
        assert format_bytes(node.param_bytes) in text
        assert f"{format_share(node.params, report.totals.params)} of the model" in text
        page.mouse.move(1, 1)
    assert humanize_count(999_999) == "1.00M"
    assert format_bytes(3200) == "3.12 KiB"
    assert format_share(800, 1_000_799) == "0.1 %"

"""Invariants checked on every model of the suite, on CPU and on meta: rows add up, and totals equal torch's own."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn

import paramscope
from paramscope import Report
from paramscope.render import View
from paramscope.render._layout import Section, layout

from .models import MODELS


def _unique_tensors(model: nn.Module, kind: str) -> list[torch.Tensor]:
    # torch's own walk, which removes duplicates by identity: the ground truth for "each tensor once". A tensor
    # registered both ways is a parameter (counted once, as what it is trained as).
    params = {id(p) for p in model.parameters()}
    tensors = model.parameters() if kind == "parameter" else (b for b in model.buffers() if id(b) not in params)
    return [t for t in tensors if not isinstance(t, nn.parameter.UninitializedTensorMixin)]


def _check_rows_add_up(report: Report) -> None:
    totals = report.totals
    children: dict[str, list[paramscope.ModuleNode]] = defaultdict(list)
    for node in report.modules[1:]:
        parent = node.path.rpartition(".")[0]
        children[parent].append(node)
    for node in report.modules:
        kids = children[node.path]
        assert node.params == node.own_params + sum(k.params for k in kids), node.path
        assert node.param_bytes == node.own_param_bytes + sum(k.param_bytes for k in kids), node.path
        assert all(k.depth == node.depth + 1 for k in kids)
    deepest = max(node.depth for node in report.modules)
    for depth in range(deepest + 1):
        at_depth = [node for node in report.modules if node.depth == depth]
        above = [node for node in report.modules if node.depth < depth]
        assert sum(n.params for n in at_depth) + sum(n.own_params for n in above) == totals.params, depth
        assert sum(n.param_bytes for n in at_depth) + sum(n.own_param_bytes for n in above) == totals.param_bytes
    root = report.modules[0]
    assert (root.path, root.depth) == ("", 0)
    assert (root.params, root.param_bytes, root.buffers, root.buffer_bytes) == (
        totals.params,
        totals.param_bytes,
        totals.buffers,
        totals.buffer_bytes,
    )
    assert sum(entry.params for entry in report.by_dtype.values()) == totals.params
    assert sum(entry.bytes for entry in report.by_dtype.values()) == totals.param_bytes


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_rows_add_up_and_totals_match_torch(name: str, device: str) -> None:
    with torch.device(device):
        model = MODELS[name]()
    report = paramscope.inspect(model)
    _check_rows_add_up(report)

    params = _unique_tensors(model, "parameter")
    buffers = _unique_tensors(model, "buffer")
    assert report.totals.params == sum(p.numel() for p in params)
    assert report.totals.trainable == sum(p.numel() for p in params if p.requires_grad)
    assert report.totals.buffers == sum(b.numel() for b in buffers)
    if device == "cpu":  # real storage: bytes checked against torch's allocation, not our dtype table
        assert report.totals.param_bytes == sum(p.untyped_storage().nbytes() for p in params)
        assert report.totals.buffer_bytes == sum(b.untyped_storage().nbytes() for b in buffers)

    names = [record.name for record in report.tensors]
    all_names = names + [alias for record in report.tensors for alias in record.aliases]
    assert len(all_names) == len(set(all_names))
    registered = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    # paramscope shows names without torch.compile's wrapper segment, which torch keeps
    torch_names = {name.replace("_orig_mod.", "") for name, _ in registered}
    assert set(all_names) == torch_names


@pytest.mark.parametrize("name", sorted(MODELS))
def test_meta_and_cpu_give_the_same_report(name: str) -> None:
    torch.manual_seed(0)
    with torch.device("cpu"):
        on_cpu = paramscope.inspect(MODELS[name]())
    with torch.device("meta"):
        on_meta = paramscope.inspect(MODELS[name]())
    assert on_meta.totals == on_cpu.totals
    assert on_meta.tensors == on_cpu.tensors
    assert on_meta.modules == on_cpu.modules


def _figure(cell: str) -> tuple[int, bool]:
    """A count cell as (value, is a lower bound)."""
    bound = cell.startswith("≥ ")
    return int(cell.removeprefix("≥ ").replace(",", "")), bound


def _unknown(tensors: list[torch.Tensor]) -> bool:
    return any(isinstance(t, nn.parameter.UninitializedTensorMixin) for t in tensors)


def _subtree_unknown(model: nn.Module, path: str, own: bool) -> bool:
    # not get_submodule: a child called "half" is found as the method Module.half
    module = dict(model.named_modules(remove_duplicate=False))[path]
    return _unknown([*module.parameters(recurse=not own), *module.buffers(recurse=not own)])


def _rows_tree(section: Section) -> tuple[list[str], list[list[int]]]:
    """Each row's module path (an own row: its module's path and "/own") and its child rows, from the indents."""
    paths: list[str] = []
    children: list[list[int]] = [[] for _ in section.rows]
    stack: list[int] = []
    for index, row in enumerate(section.rows):
        name = row[0].lstrip(" ")
        indent = (len(row[0]) - len(name)) // 2
        del stack[indent:]
        assert len(stack) == indent, f"row {row[0]!r} is not under a row one level up"
        if stack:
            children[stack[-1]].append(index)
        own = name.endswith("(own tensors)")
        paths.append(paths[stack[-1]] + "/own" if own else "" if name == "(model)" else name)
        stack.append(index)
    return paths, children


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shown_rows_add_up_at_every_depth_and_mark_lower_bounds(name: str) -> None:
    """What the table shows, not the data under it: at each depth, the rows nobody's children cover (modules and
    their own tensors) add up to torch's totals, every parent row is the sum of the rows under it, and a figure is
    marked ``≥`` exactly where its rows hold a tensor of unknown size."""
    with torch.device("cpu"):
        model = MODELS[name]()
    report = paramscope.inspect(model)
    params = _unique_tensors(model, "parameter")
    buffers = _unique_tensors(model, "buffer")
    expected = {
        "Params": sum(p.numel() for p in params),
        "Trainable": sum(p.numel() for p in params if p.requires_grad),
        "Buffers": sum(b.numel() for b in buffers),
    }
    deepest = max(node.depth for node in report.modules)
    for depth in range(deepest + 2):
        section = layout(report, View(depth=depth)).sections[0]
        headers = [column.header for column in section.columns]
        paths, children = _rows_tree(section)
        shown = [header for header in expected if header in headers]
        for header in shown:
            column = headers.index(header)
            figures = [_figure(row[column]) for row in section.rows]
            leaves = [figure for figure, kids in zip(figures, children, strict=True) if not kids]
            assert sum(value for value, _ in leaves) == expected[header], (depth, header)
            for figure, kids in zip(figures, children, strict=True):
                if kids:
                    assert figure[0] == sum(figures[kid][0] for kid in kids), (depth, header, figure)
        notes = headers.index("Note") if "Note" in headers else None
        for path, row in zip(paths, section.rows, strict=True):
            if notes is not None and row[notes].startswith("same module as"):
                continue  # counted where it was first seen
            unknown = _subtree_unknown(model, path.removesuffix("/own"), own=path.endswith("/own"))
            marked = [row[headers.index(header)].startswith("≥ ") for header in ("Size", *shown)]
            assert marked == [unknown] * len(marked), (depth, path, row)

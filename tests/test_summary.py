"""``paramscope.summary`` and ``paramscope summary``: a forward pass layer by layer, checked against torch itself.

Every figure's ground truth is computed here, on CPU, with torch's own machinery: forward hooks for the shapes and
the execution order, ``FlopCounterMode`` for the FLOPs, ``saved_tensors_hooks`` for the activation bytes, and
``paramscope.inspect`` (itself checked against ``model.parameters()`` elsewhere) for the parameters of each row.
Hand formulas pin a Linear and a Conv2d. The model must come out of every summary exactly as it went in, even when
its forward raises.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import csv
import dataclasses
import functools
import gc
import importlib.util
import inspect
import io
import json
import logging
import math
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.flop_counter import FlopCounterMode, flop_registry, shape_wrapper

import paramscope
from paramscope._describe import describe
from paramscope._model_state import _containers_within
from paramscope._summary import make_inputs
from paramscope._walk import path_depth
from paramscope.examples import gpt2, resnet18
from paramscope.render import View, render
from paramscope.render._layout import OWN_OPS, _shown_calls
from paramscope.trace import ForwardError, _OpRecorder, _tensors_in, trace

from .cli import assert_error, run, run_in_a_new_process

TINY_GPT_KWARGS = {"vocab_size": 100, "n_positions": 16, "n_embd": 8, "n_layer": 2, "n_head": 2}
TINY_GPT_ARGS = tuple(f"{key}={value}" for key, value in TINY_GPT_KWARGS.items())
ALL_DEPTHS = 99
aten = torch.ops.aten
CALL_KEYS_IN_ORDER = ("path", "type", "depth", "inputs", "outputs", "params", "flops", "macs", "calls",
                      "activations_bytes", "own_flops", "own_activations_bytes")  # fmt: skip
CALL_KEYS = set(CALL_KEYS_IN_ORDER)
CHECKPOINT_MESSAGE = "a forward pass needs a model to run, model code or a config.json; a checkpoint has only weights"
LAZY_MESSAGE = (
    "the model has uninitialised lazy modules: a forward would initialise (change) them; run one forward yourself first"
)
META_MESSAGE = "the model is on the meta device, without weights: a forward on cpu needs real ones; use device meta"
META_VALUES_HINT = "meta tensors have no values to read, and some ops no meta kernel: try --device cpu"
# a forward of [2, 4] inputs that reads values on meta: what the fake tensors refuse, named
VALUES_READ_ON_META = (
    "the forward failed in '(model)' with inputs [2, 4]: DataDependentOutputException: aten._local_scalar_dense."
    f"default reads a tensor's values (.item(), bool(), a branch on a tensor); {META_VALUES_HINT}"
)
SHAPE_MESSAGE = "--input-size {!r} is not a shape: write it as 1,3,224,224"
NO_INPUT_MESSAGE = (
    "summary runs a forward pass: give its inputs with --input-size (e.g. 1,3,224,224 for an image, 1,128 for 128 "
    "token ids)"
)


# ---------------------------------------------------------------------------------------------------------------------
# ground truth, measured with torch on CPU


def shape_text(value: Any) -> str:
    """The shapes of plain tensors, tuples and lists, written as the summary writes them; other objects by type."""
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, tuple):
        return "(" + ", ".join(shape_text(item) for item in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(shape_text(item) for item in value) + "]"
    return repr(value) if value is None else type(value).__name__


class TorchCalls(NamedTuple):
    order: list[str]
    """Module paths in the order their forward pre-hooks first fired."""
    inputs: dict[str, str]
    outputs: dict[str, str]
    calls: dict[str, int]


def torch_calls(model: nn.Module, *args: Any) -> TorchCalls:
    """Run ``model`` on CPU with a pre-hook and a hook on every module: first call's inputs/outputs, call counts."""
    result = TorchCalls([], {}, {}, {})
    handles = []
    for path, module in model.named_modules():  # each module object once, under its first path

        def before(module: nn.Module, args: tuple[Any, ...], path: str = path) -> None:
            if path not in result.calls:
                result.order.append(path)
                result.inputs[path] = shape_text(args[0]) if len(args) == 1 else shape_text(args)
            result.calls[path] = result.calls.get(path, 0) + 1

        def after(module: nn.Module, args: Any, output: Any, path: str = path) -> None:
            result.outputs.setdefault(path, shape_text(output))

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
    return result


def _cpu_flash_attention(query: Any, key: Any, value: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    # Two matrix products of (Lq × E) · (E × Lk) and (Lq × Lk) · (Lk × Ev) per batch and head, 2 FLOPs per MAC.
    batch, heads, lq, e = query.shape
    lk, ev = key.shape[-2], value.shape[-1]
    return 2 * batch * heads * lq * lk * e + 2 * batch * heads * lq * lk * ev


_cpu_flash_attention._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode passes tensors, not shapes
ATTENTION_FORMULA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention}


def torch_flops(model: nn.Module, *args: Any, attention: bool = True, **kwargs: Any) -> tuple[int, dict[str, int]]:
    """FlopCounterMode's total and FLOPs per module path (subtree included; root ``""``), run on CPU."""
    counter = FlopCounterMode(display=False, custom_mapping=ATTENTION_FORMULA if attention else None)
    with torch.no_grad(), counter:
        model(*args, **kwargs)
    root = type(model).__name__
    per_path = {
        "" if key == root else key.removeprefix(root + "."): sum(counts.values())
        for key, counts in counter.get_flop_counts().items()
        if key != "Global"
    }
    return counter.get_total_flops(), per_path


def attention_as_on_a_gpu() -> contextlib.AbstractContextManager[None]:
    """Attention on torch's math path on the cpu, the path a GPU takes for grouped-query attention in float32 (no
    fused CUDA kernel takes it; test_autocast pins an H200's bytes), where the CPU's flash kernel takes it: a CPU
    measure of a float32 model with grouped keys and values then stands for what meta, as a GPU, saves."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def storage_holders(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors whose storages hold ``tensor``'s data: a jagged nested tensor's values and offsets (torch's
    NestedTensor holds its data in these two alone, with lengths optional and none here), a sparse COO tensor's
    indices and values; else itself."""
    if tensor.layout is torch.jagged:
        return tensor.values(), tensor.offsets()
    if tensor.layout is torch.sparse_coo:
        return tensor._indices(), tensor._values()
    return (tensor,)


def torch_saved_bytes(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
    """Bytes autograd saves for backward in a train-mode forward on CPU (a copy of the model: BatchNorm's statistics
    move), each storage once, the parameters' and buffers' storages left out; in total and per module path."""
    model = copy.deepcopy(model).train()
    seen = {part.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]
            for part in storage_holders(tensor)}  # fmt: skip
    held: list[torch.UntypedStorage] = []  # a storage freed in the forward must not leave its address to a new one
    stack: list[str] = []
    per_path: dict[str, int] = {}
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        for part in storage_holders(tensor):
            key = part.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                held.append(part.untyped_storage())
                total += part.untyped_storage().nbytes()
                for path in set(stack):
                    per_path[path] = per_path.get(path, 0) + part.untyped_storage().nbytes()
        return tensor

    def enter(module: nn.Module, args: Any, path: str) -> None:
        stack.append(path)

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(functools.partial(enter, path=path)))
        handles.append(module.register_forward_hook(leave))
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(*args, **kwargs)  # kept alive (it holds the graph) until every storage has been counted
    del output
    for handle in handles:
        handle.remove()
    return total, per_path


def module_hooks(model: nn.Module) -> list[tuple[str, str, int]]:
    return [
        (path, attr, len(value))
        for path, module in model.named_modules(remove_duplicate=False)
        for attr, value in vars(module).items()
        if attr.endswith("_hooks") and isinstance(value, dict)
    ]


def global_hooks() -> list[int]:
    from torch.nn.modules import module

    return [len(value) for name, value in sorted(vars(module).items()) if "hook" in name and isinstance(value, dict)]


def snapshot(model: nn.Module) -> list[Any]:
    """Everything summary must leave alone: flags, attributes, hooks, and every tensor down to its raw bytes."""
    state: list[Any] = [global_hooks(), module_hooks(model)]
    for path, module in model.named_modules(remove_duplicate=False):
        state.append((path, type(module), module.training, sorted(vars(module))))
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            state.append((name, type(tensor), tensor.requires_grad))
            continue
        if tensor.layout is torch.sparse_coo:  # no storage of its own: its indices and values
            state.append((name, tensor.device, tensor.dtype, tuple(tensor.shape),
                          *(part.clone() for part in storage_holders(tensor))))  # fmt: skip
            continue
        values = None if tensor.is_meta else torch.empty(0, dtype=torch.uint8).set_(tensor.untyped_storage()).clone()
        state.append(
            (name, type(tensor), tensor.device, tensor.dtype, tuple(tensor.shape), tensor.requires_grad,
             tensor.grad is None, tensor.data_ptr(), tensor._version, values)
        )  # fmt: skip
    return state


def assert_same(before: list[Any], after: list[Any]) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        if isinstance(old, tuple):
            assert len(old) == len(new)
            for a, b in zip(old, new, strict=True):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, (old[0], a, b)
        else:
            assert old == new


def rows(report: paramscope.Report) -> dict[str, paramscope.CallRecord]:
    assert report.calls is not None
    return {record.path: record for record in report.calls}


# ---------------------------------------------------------------------------------------------------------------------
# models


def tiny_gpt() -> nn.Module:
    return gpt2(**TINY_GPT_KWARGS)


def lstm() -> nn.Module:
    return nn.LSTM(4, 6, num_layers=2)


class Case(NamedTuple):
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    dtype: torch.dtype


CASES = {
    "resnet18": Case(resnet18, (1, 3, 224, 224), torch.float32),
    "gpt2-tiny": Case(tiny_gpt, (1, 16), torch.long),
    "lstm": Case(lstm, (5, 1, 4), torch.float32),
}


def example_input(case: Case) -> torch.Tensor:
    return torch.zeros(case.shape, dtype=case.dtype) if case.dtype == torch.long else torch.randn(case.shape)


class Built(NamedTuple):
    model: nn.Module
    input: torch.Tensor
    report: paramscope.Report
    """summary on meta, all depths."""


@pytest.fixture(scope="module")
def built() -> dict[str, Built]:
    torch.manual_seed(0)
    out = {}
    for name, case in CASES.items():
        model = case.build().eval()
        report = paramscope.summary(model, input_size=case.shape, dtypes=[case.dtype], depth=ALL_DEPTHS)
        out[name] = Built(model, example_input(case), report)
    return out


class ReusedReLU(nn.Module):
    """One nn.ReLU object run three times."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.act(self.act(x))))


class Inner(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def shared_across_parents() -> nn.Module:
    """One Linear object held by two different parents."""
    linear = nn.Linear(4, 4)
    return nn.Sequential(Inner(linear), Inner(linear))


class NestedContainers(nn.Module):
    """A ModuleList inside a ModuleDict, neither of them ever called."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({"a": nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.blocks["a"]:
            x = layer(x)
        return x


class Attention(nn.Module):
    """Causal self-attention through F.scaled_dot_product_attention (on CPU: the flash kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class Bad(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")


class Boom(nn.Module):
    """A BatchNorm that runs (and would update its statistics in train mode) before a submodule that raises."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm1d(4), Bad())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BoomAtTheTop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc(x)
        raise ValueError("boom\nsecond line")


class Quit(nn.Module):
    """A forward that calls sys.exit(5) after a BatchNorm has run."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.body(x)
        sys.exit(5)


class DataDependent(nn.Module):
    """Control flow on a tensor's value: impossible on meta, fine on cpu."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else x


# ---------------------------------------------------------------------------------------------------------------------
# 1. shapes, order, parameters, depth, reuse, containers


@pytest.mark.parametrize("name", sorted(CASES))
def test_shapes_and_order_match_torch_hooks(built: dict[str, Built], name: str) -> None:
    model, x, report = built[name]
    truth = torch_calls(model, x)
    assert report.calls is not None
    called = [record for record in report.calls if record.calls > 0]
    assert [record.path for record in called] == truth.order
    for record in called:
        assert record.type == type(model.get_submodule(record.path)).__name__
        assert (record.inputs, record.outputs, record.calls) == (
            truth.inputs[record.path],
            truth.outputs[record.path],
            truth.calls[record.path],
        ), record.path
        assert record.depth == (record.path.count(".") + 1 if record.path else 0)


def test_lstm_tuple_outputs(built: dict[str, Built]) -> None:
    assert built["lstm"].report.calls[0].outputs == "([5, 1, 6], ([2, 1, 6], [2, 1, 6]))"  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(CASES))
def test_params_per_row_are_inspects(built: dict[str, Built], name: str) -> None:
    model, _, report = built[name]
    inspected = paramscope.inspect(model)
    for record in report.calls or ():
        assert record.params == inspected.module(record.path).params, record.path
    assert report.calls[0].params == sum(p.numel() for p in model.parameters())  # type: ignore[index]


def test_tied_head_row_has_no_params(built: dict[str, Built]) -> None:
    head = rows(built["gpt2-tiny"].report)["lm_head"]
    assert (head.params, head.calls) == (0, 1)
    assert head.flops == 2 * 16 * 8 * 100


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_depth_keeps_only_rows_that_deep(built: dict[str, Built], depth: int) -> None:
    model, _, full = built["resnet18"]
    report = paramscope.summary(model, input_size=(1, 3, 224, 224), depth=depth)
    assert report.calls == tuple(record for record in full.calls or () if record.depth <= depth)
    assert all(record.depth <= depth for record in report.calls or ())
    assert report.totals == full.totals


def test_a_module_called_several_times_is_one_row() -> None:
    model = ReusedReLU()
    report = paramscope.summary(model, input_size=(2, 4))
    assert [(r.path, r.calls) for r in report.calls or ()] == [("", 1), ("act", 3), ("fc", 1)]
    assert rows(report)["act"].inputs == "[2, 4]"
    assert any("ran more than once (act 3 times" in note for note in report.notes)


class _Nested(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _frames_in_use() -> int:
    frame, frames = sys._getframe(), 0
    while frame is not None:
        frame, frames = frame.f_back, frames + 1
    return frames


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_model_nested_as_deep_as_its_own_forward_allows_is_summarised(device: str) -> None:
    # a plain forward is about four frames per level; the summary's wrappers made it six, and the summary failed on
    # a model nested 160 deep that runs 247 deep by itself
    limit = sys.getrecursionlimit()
    levels = (limit - _frames_in_use() - 50) // 5
    model: nn.Module = nn.Linear(3, 3)
    for _ in range(levels):
        model = _Nested(model)
    x = torch.randn(2, 3)
    assert model(x).shape == (2, 3)  # the model runs by itself
    report = paramscope.summary(model, input_data=[x], device=device, depth=levels + 1)
    assert len(report.calls or ()) == levels + 1
    assert rows(report)["inner" + ".inner" * (levels - 1)].outputs == "[2, 3]"
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert sys.getrecursionlimit() == limit


class _RaisesTheRecursionLimit(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.setrecursionlimit(self.limit)
        return super().forward(x)


def test_a_recursion_limit_the_forward_sets_stays_as_without_the_summary() -> None:
    limit = sys.getrecursionlimit()
    model = _RaisesTheRecursionLimit(3, 3)
    model.limit = limit + 1234
    try:
        paramscope.summary(model, input_size=(2, 3))
        assert sys.getrecursionlimit() == limit + 1234  # as model(x) leaves it
    finally:
        sys.setrecursionlimit(limit)


class _WaitsInItsForward(nn.Linear):
    """Sets one event as its forward starts and waits for another before it goes on."""

    def __init__(self, started: threading.Event, go_on: threading.Event) -> None:
        super().__init__(4, 4)
        self.started, self.go_on = started, go_on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.started.set()
        assert self.go_on.wait(60)
        return super().forward(x)


def test_summaries_overlapping_in_two_threads_leave_the_process_as_it_was() -> None:
    # The first to start ends first: each putting back what it found left the second one's changes for good: a
    # raised recursion limit, and dynamo's stance force_eager, so nothing in the process compiled again.
    import torch._dynamo  # the summary sets the stance where dynamo is imported

    limit = sys.getrecursionlimit()
    first_in, second_in, first_done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def summarise(model: nn.Module, after: threading.Event | None, then: threading.Event | None) -> None:
        try:
            if after is not None:
                assert after.wait(60)
            paramscope.summary(model, input_size=(2, 4), device="cpu")
        except BaseException as error:
            errors.append(error)
        finally:
            if then is not None:
                then.set()

    first = threading.Thread(target=summarise, args=(_WaitsInItsForward(first_in, second_in), None, first_done))
    second = threading.Thread(target=summarise, args=(_WaitsInItsForward(second_in, first_done), first_in, None))
    for thread in (first, second):
        thread.start()
    for thread in (first, second):
        thread.join(120)
    assert errors == []
    assert sys.getrecursionlimit() == limit
    compiled: list[Any] = []
    doubled = torch.compile(lambda x: x * 2, backend=lambda graph, inputs: compiled.append(graph) or graph.forward)
    assert torch.equal(doubled(torch.ones(2)), torch.full((2,), 2.0))
    assert len(compiled) == 1


class _SummarisesInItsForward(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = [inner]  # not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paramscope.summary(self.inner[0], input_size=(1, 3), device="cpu", depth=1)
        return x


def test_a_summary_inside_a_summarised_forward_has_its_own_room() -> None:
    # the inner summary's room was measured from the limit the outer one found, not the limit in force
    limit = sys.getrecursionlimit()
    room = limit - _frames_in_use()
    inner: nn.Module = nn.Linear(3, 3)
    for _ in range(room * 3 // 20):
        inner = _Nested(inner)
    outer: nn.Module = _SummarisesInItsForward(inner)
    for _ in range(room // 9):
        outer = _Nested(outer)
    outer(torch.zeros(1, 3))  # runs by itself, the inner summary with it
    report = paramscope.summary(outer, input_size=(1, 3), device="cpu")
    assert report.calls is not None
    assert sys.getrecursionlimit() == limit


def test_summaries_that_keep_overlapping_do_not_ratchet_the_recursion_limit() -> None:
    # each raised the limit in force, which held the others' room already: while one summary stays in its forward,
    # every other one raised it further
    limit = sys.getrecursionlimit()
    inside, done = threading.Event(), threading.Event()
    held = threading.Thread(target=paramscope.summary, args=(_WaitsInItsForward(inside, done),),
                            kwargs={"input_size": (2, 4), "device": "cpu"})  # fmt: skip
    seen: list[int] = []

    class SeesTheLimit(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(sys.getrecursionlimit())
            return super().forward(x)

    held.start()
    try:
        assert inside.wait(60)
        for _ in range(5):
            paramscope.summary(SeesTheLimit(4, 4), input_size=(2, 4), device="cpu")
    finally:
        done.set()
        held.join(60)
    assert len(set(seen)) == 1
    assert sys.getrecursionlimit() == limit


def test_memory_of_a_model_nested_as_deep_as_its_own_forward_allows_measures_its_forward() -> None:
    limit = sys.getrecursionlimit()
    levels = (limit - _frames_in_use() - 50) // 5
    model: nn.Module = nn.Linear(3, 3)
    for _ in range(levels):
        model = _Nested(model)
    assert model(torch.randn(2, 3)).shape == (2, 3)
    plan = paramscope.memory(model, input_size=(2, 3)).memory
    assert plan is not None
    items = {item.name: item for item in plan.items}
    assert items["activations"].total_bytes == 2 * 3 * 4  # the one tensor the forward makes: the Linear's output
    assert sys.getrecursionlimit() == limit


def test_reused_relu_in_resnet_blocks(built: dict[str, Built]) -> None:
    table = rows(built["resnet18"].report)
    assert table["layer1.0.relu"].calls == 2  # BasicBlock applies its one ReLU twice
    assert table["relu"].calls == 1


def test_uncalled_container_sums_its_children(built: dict[str, Built]) -> None:
    model, x, report = built["gpt2-tiny"]
    table = rows(report)
    container = table["transformer.h"]
    children = [table["transformer.h.0"], table["transformer.h.1"]]
    assert (container.type, container.calls, container.inputs, container.outputs) == ("ModuleList", 0, "", "")
    assert container.params == paramscope.inspect(model).module("transformer.h").params
    _, flops = torch_flops(model, x)
    assert container.flops == flops["transformer.h.0"] + flops["transformer.h.1"] == sum(c.flops for c in children)
    assert container.activations_bytes == sum(c.activations_bytes for c in children)
    paths = [record.path for record in report.calls or ()]
    assert paths.index("transformer.h") == paths.index("transformer.h.0") - 1


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_summary_to_a_depth_has_the_rows_of_a_whole_one_down_to_it(
    built: dict[str, Built], name: str, device: str
) -> None:
    # modules deeper than the depth are counted but not described: the rows shown are the same
    model, x, whole = built[name]
    deepest = max(record.depth for record in whole.calls or ())
    for depth in range(deepest + 1):
        report = paramscope.summary(model, input_data=x, depth=depth, device=device)
        expected = [record for record in whole.calls or () if record.depth <= depth]
        if device == "cpu":  # an eval-mode forward on cpu saves nothing for backward: no activations measured
            expected = [record._replace(activations_bytes=None, own_activations_bytes=None) for record in expected]
        assert report.calls == tuple(expected), depth
        assert report.totals.flops == whole.totals.flops


def figure_rows(model: nn.Module, path: str, called: set[str]) -> list[str]:
    """The modules whose rows a summary shows right under ``path``'s: its children that ran, and those that never ran
    themselves (a ModuleList) in their place, as the sums of theirs."""
    rows = []
    for name, _ in model.get_submodule(path).named_children():
        child = f"{path}.{name}" if path else name
        rows += [child] if child in called else figure_rows(model, child, called)
    return rows


@pytest.mark.parametrize("name", ["resnet18", "gpt2-tiny"])  # FlopCounterMode counts no LSTM kernel on cpu
def test_own_figures_are_a_modules_less_its_childrens_measured_by_torch(built: dict[str, Built], name: str) -> None:
    # FlopCounterMode's FLOPs and autograd's saved bytes per module on cpu cover each module's subtree; what a module
    # does itself is that less what the modules it called did (none of these is called from two parents)
    model, x, report = built[name]
    _, flops = torch_flops(model, x)
    _, saved = torch_saved_bytes(model, x)
    called = {path for path in flops} | {path for path in saved}
    assert report.calls is not None
    ran = [record for record in report.calls if record.calls]
    for record in ran:
        kids = figure_rows(model, record.path, called)
        assert record.own_flops == flops.get(record.path, 0) - sum(flops.get(kid, 0) for kid in kids), record.path
        own_saved = saved.get(record.path, 0) - sum(saved.get(kid, 0) for kid in kids)
        assert record.own_activations_bytes == own_saved, record.path
    if name == "gpt2-tiny":  # an attention's product of queries and keys is its own
        assert rows(report)["transformer.h.0.attn"].own_flops > 0


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("depth", range(6))
def test_the_rows_under_a_module_add_up_to_it(built: dict[str, Built], name: str, depth: int) -> None:
    shown = _shown_calls(built[name].report, View(depth=depth))
    for index, (parent, own) in enumerate(shown):
        if own or parent.depth >= depth:
            continue
        under = [row for row, _ in shown[index + 1 :] if row.depth == parent.depth + 1
                 and (row.path.rpartition(".")[0] if not row.path.endswith(OWN_OPS) else row.path) in
                 (parent.path, f"{parent.path} {OWN_OPS}".strip())]  # fmt: skip
        if not under:
            continue
        for figure in ("params", "flops", "macs", "activations_bytes"):
            assert getattr(parent, figure) == sum(getattr(row, figure) or 0 for row in under), (parent.path, figure)


def test_modules_deeper_than_the_depth_are_counted_not_described(built: dict[str, Built]) -> None:
    model, x, _ = built["gpt2-tiny"]
    result = trace(model, (x,), {}, device="meta", train=False, depth=1)
    shown = [call for call in result.calls if "." not in call.path]  # the root and its children
    deep = [call for call in result.calls if "." in call.path]
    assert deep
    assert all(call.described and call.inputs and call.outputs for call in shown)
    assert all(not call.described and call.inputs == call.outputs == "" for call in deep)
    # still counted, with what the memory planner reads of a block (its input's bytes)
    assert all(call.calls >= 1 and call.input_bytes > 0 for call in deep)


def test_nested_uncalled_containers_sum_their_children() -> None:
    model = NestedContainers()
    table = rows(paramscope.summary(model, input_size=(2, 4)))
    assert table["blocks.a"].flops == 2 * 2 * 4 * 4 * 2
    assert table["blocks"].flops == table["blocks.a"].flops
    assert table["blocks"].activations_bytes == table["blocks.a"].activations_bytes


def test_module_shared_by_two_parents_gets_its_flops() -> None:
    model = shared_across_parents()
    report = paramscope.summary(model, input_size=(2, 4))
    table = rows(report)
    assert [(r.path, r.calls) for r in report.calls or ()] == [("", 1), ("0", 1), ("0.linear", 2), ("1", 1)]
    assert report.totals.flops == 2 * (2 * 2 * 4 * 4)
    assert table["0.linear"].flops == report.totals.flops  # both calls, summed
    # "1" holds it too, as 1.linear: no note that it ran inside a module that does not hold it
    assert not [note for note in report.notes if " ran inside " in note]


class _Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, shared: nn.Module) -> torch.Tensor:
        return self.b(shared(self.a(x)))


class HandsEachLayerAModule(nn.Module):
    """A module the model holds and hands to each layer, which calls it."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_Layer(), _Layer()])
        self.shared, self.head = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, self.shared)
        return self.head(x)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


class CallsAGrandchildFirst(nn.Module):
    """The model calls a grandchild itself before its parent runs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block, self.head = nn.Linear(8, 8), _Block(), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.block.fc(self.stem(x))))


class HookCallsASibling(nn.Module):
    """A forward hook of the user's on one module calls a module beside its parent."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
        self.extra = nn.Linear(8, 8)
        self.seq[1].register_forward_hook(lambda module, args, output: self.extra(output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


ELSEWHERE_NOTE = (
    "{} ran inside {}, which {} not hold it: the FLOPs and activations of those calls count in two rows, the caller's "
    "and the called module's, so the rows under a caller add up to less than it, and the rows at a depth to more than "
    "the total"
)


@pytest.mark.parametrize(
    ("model", "order", "note"),
    [
        (HandsEachLayerAModule,
         ["", "layers", "layers.0", "layers.0.a", "layers.0.b", "layers.1", "layers.1.a", "layers.1.b", "shared",
          "head"],
         ELSEWHERE_NOTE.format("shared", "layers.0, layers.1", "do")),
        (CallsAGrandchildFirst, ["", "stem", "block", "block.fc", "block.norm", "head"], None),
        (HookCallsASibling, ["", "seq", "seq.0", "seq.1", "seq.2", "extra"],
         ELSEWHERE_NOTE.format("extra", "seq", "does")),
    ],
    ids=["handed-to-layers", "grandchild-first", "hook-calls-a-sibling"],
)  # fmt: skip
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_each_row_is_drawn_under_its_parent_wherever_its_module_ran(
    model: Callable[[], nn.Module], order: list[str], note: str | None, device: str
) -> None:
    # rows went in the order modules first ran, indented by their paths: a module run from elsewhere landed among
    # another's rows (shared among layers.0's, layers.0.b then drawn under shared; block.fc under stem)
    torch.manual_seed(0)
    module, x = model(), torch.randn(4, 8)
    report = paramscope.summary(module, input_data=x, depth=3, device=device)
    calls = report.calls or ()
    assert [row.path for row in calls] == order
    for index, row in enumerate(calls[1:], 1):
        above = next(other for other in reversed(calls[:index]) if other.depth < row.depth)
        assert above.path == row.path.rpartition(".")[0], row.path
    total, per_path = torch_flops(module, x)
    assert report.totals.flops == total
    assert {row.path: row.flops for row in calls if row.path in ("shared", "extra", "block.fc")} == {
        path: per_path[path] for path in ("shared", "extra", "block.fc") if path in per_path
    }
    elsewhere = [line for line in report.notes if " ran inside " in line]
    assert elsewhere == ([] if note is None else [note])
    if note is not None:  # what the note says: the rows at depth 1 add up to more than the total, by those calls
        called = next(row for row in calls if row.path in ("shared", "extra"))
        assert sum(row.flops for row in calls if row.depth == 1) == total + called.flops


# ---------------------------------------------------------------------------------------------------------------------
# 2. FLOPs


@pytest.mark.parametrize("name", ["resnet18", "gpt2-tiny"])
def test_flops_match_flop_counter_mode_on_cpu(built: dict[str, Built], name: str) -> None:
    model, x, report = built[name]
    total, per_path = torch_flops(model, x)
    assert total > 0
    assert (report.totals.flops, report.totals.macs) == (total, total // 2)
    for record in report.calls or ():
        if record.calls:
            assert record.flops == per_path.get(record.path, 0), record.path
            assert record.macs == record.flops // 2
    assert report.calls[0].flops == total  # type: ignore[index]


class CallsItself(nn.Module):
    """A module that calls itself: it is on the stack twice while its inner call runs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.inner = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, depth: int = 2) -> torch.Tensor:
        x = self.fc(x)
        return self.inner(self(x, depth - 1)) if depth else x


@pytest.mark.parametrize("hooked", [False, True], ids=["wrapped", "hooked"])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_module_that_calls_itself_counts_each_flop_once(device: str, hooked: bool) -> None:
    model = CallsItself()
    if hooked:  # a hook of the user's own: the module is recorded through hooks, not a wrapper
        model.register_forward_pre_hook(lambda module, args: None)
    report = paramscope.summary(model, input_size=(3, 4), device=device)
    linear = 2 * 3 * 4 * 4  # by hand: 2 × batch × in × out, per call
    # FlopCounterMode's module tracker drops the module when its inner call returns, and with it the outer calls'
    # products (288 here): the whole subtree is the module's own here, each product once
    assert [(r.path, r.calls, r.flops) for r in report.calls or ()] == [
        ("", 3, 5 * linear), ("fc", 3, 3 * linear), ("inner", 2, 2 * linear)
    ]  # fmt: skip
    assert report.totals.flops == 5 * linear


class Stop(BaseException):
    """A BaseException of the model's own, which it catches: torch runs no always-call hook as it leaves a module."""


class StopsInside(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        super().forward(x)
        raise Stop


class CatchesAStop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.inner = StopsInside(4, 4)
        self.post = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        with contextlib.suppress(Stop):
            self.inner(x)
        return self.post(x)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_hooked_call_that_never_returns_leaves_the_rows_adding_up(device: str) -> None:
    model = CatchesAStop()
    model.register_forward_hook(lambda module, args, output: None)  # both recorded through hooks
    model.inner.register_forward_hook(lambda module, args, output: None)
    report = paramscope.summary(model, input_size=(3, 4), device=device)
    linear = 2 * 3 * 4 * 4  # by hand, per Linear
    # the call that never returned has no FLOPs of its own: when it left is unknown, so they are its caller's
    assert [(r.path, r.flops) for r in report.calls or ()] == [
        ("", 3 * linear), ("pre", linear), ("inner", 0), ("post", linear)
    ]  # fmt: skip
    assert report.totals.flops == 3 * linear


class SameShapesOtherArguments(nn.Module):
    """Convolutions that take one input shape but differ in stride, padding, dilation, groups and direction, and a
    Linear shape repeated: FLOPs worked out once per shape must still tell the convolutions apart."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3, stride=2), nn.Conv2d(8, 8, 3, padding=1),
            nn.Conv2d(8, 8, 3, dilation=2), nn.Conv2d(8, 8, 3, groups=4), nn.ConvTranspose2d(8, 8, 3),
        ])  # fmt: skip
        self.linears = nn.ModuleList([nn.Linear(16, 16) for _ in range(3)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.stack([conv(x).sum() for conv in self.convs]).sum()
        for linear in self.linears:
            y = linear(y)
        return total, y


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_flops_per_module_match_flop_counter_mode_when_shapes_repeat(device: str) -> None:
    model = SameShapesOtherArguments()
    x, y = torch.randn(1, 8, 16, 16), torch.randn(4, 16)
    total, per_path = torch_flops(model, x, y)
    report = paramscope.summary(model, input_data=(x, y), device=device)
    assert report.totals.flops == total
    by_path = {record.path: record.flops for record in report.calls or () if record.calls}
    assert by_path == {path: per_path.get(path, 0) for path in by_path}
    # by hand: 2 × C_out × C_in/groups × k² per output position (per input position when transposed)
    per_position = 2 * 8 * 8 * 9
    assert [by_path[f"convs.{i}"] for i in range(6)] == [
        per_position * 14 * 14, per_position * 7 * 7, per_position * 16 * 16, per_position * 12 * 12,
        per_position // 4 * 14 * 14, per_position * 16 * 16,
    ]  # fmt: skip
    assert [by_path[f"linears.{i}"] for i in range(3)] == [2 * 4 * 16 * 16] * 3


class OneConvolution(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(torch.zeros(5), torch.ones(3, 2), torch.ones(2, 5)).sum() + self.conv(x).sum()


def test_flops_kept_between_summaries_follow_the_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counts on shapes are kept from one forward to the next: the same shapes with another stride, and more shapes
    # than the store holds (it starts again), must still be counted as FlopCounterMode counts them.
    monkeypatch.setattr(paramscope.trace, "_KNOWN_COUNTS_LIMIT", 2)
    for stride, size in [(1, 9), (2, 9), (1, 9), (1, 7), (2, 11), (1, 9)]:
        model, x = OneConvolution(stride), torch.randn(1, 4, size, size)
        total, _ = torch_flops(model, x)
        for device in ("cpu", "meta"):
            assert paramscope.summary(model, input_data=x, device=device).totals.flops == total


class Result:
    """A result object whose instances may carry named fields (as a NamedTuple's ``_fields``)."""

    def __init__(self, **fields: Any) -> None:
        if fields:
            self._fields = tuple(fields)
            self.__dict__.update(fields)


def test_describe_reads_each_instance() -> None:
    assert [describe(Result()), describe(Result(logits=torch.zeros(2, 3))), describe(Result())] == [
        "Result", "Result(logits=[2, 3])", "Result",
    ]  # fmt: skip


@torch.library.custom_op("paramscope_tests::routed_mm", mutates_args=())
def routed_mm(x: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Only the rows a router keeps are multiplied: the output's shape depends on ``keep``'s values."""
    return x[keep] @ weight


@routed_mm.register_fake
def _routed_mm_fake(x: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return x.new_empty(torch.library.get_ctx().new_dynamic_size(), weight.shape[1])


def _routed_mm_flops(x_shape: Any, weight_shape: Any, keep_shape: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * out_shape[0] * weight_shape[0] * weight_shape[1]


class Routed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return routed_mm(x, self.weight, keep)


def test_a_formula_registered_for_an_op_whose_output_follows_values_counts_each_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A formula on shapes from outside torch may read an output whose shape its inputs' values decide: the same
    # input shapes, other rows routed, other counts.
    formula = shape_wrapper(_routed_mm_flops)
    monkeypatch.setitem(flop_registry, torch.ops.paramscope_tests.routed_mm, formula)
    model, x = Routed(), torch.randn(10, 8)
    for kept in (2, 9, 2):
        keep = torch.arange(10) < kept
        total, _ = torch_flops(model, x, keep)
        assert paramscope.summary(model, input_data=(x, keep), device="cpu").totals.flops == total == 2 * kept * 64


class FallsBackFromANestedProduct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nested = torch.nested.nested_tensor([x[:2], x[:3]])
        with contextlib.suppress(RuntimeError):  # torch refuses a nested × dense product: the model goes on
            torch.bmm(nested, torch.randn(2, 5, 4))
        return self.fc(x)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_an_op_that_raises_is_not_named_among_the_ops_counted_0() -> None:
    report = paramscope.summary(FallsBackFromANestedProduct(), input_size=(3, 4), device="cpu")
    assert report.totals.flops == 2 * 3 * 4 * 4
    assert not [note for note in report.notes if "aten.bmm" in note], report.notes


def test_describe_tells_dtypes_of_one_shape_apart() -> None:
    shape = (2, 3)
    assert [describe(torch.zeros(shape, dtype=dtype)) for dtype in (torch.float32, torch.bool, torch.float32)] == [
        "[2, 3]", "[2, 3] bool", "[2, 3]",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["resnet18", "gpt2-tiny"])
def test_flops_on_cpu_equal_flops_on_meta(built: dict[str, Built], name: str) -> None:
    model, _, meta = built[name]
    case = CASES[name]
    cpu = paramscope.summary(model, input_size=case.shape, dtypes=[case.dtype], depth=ALL_DEPTHS, device="cpu")
    assert cpu.totals.flops == meta.totals.flops
    assert [(r.path, r.flops, r.macs) for r in cpu.calls or ()] == [(r.path, r.flops, r.macs) for r in meta.calls or ()]


def test_resnet18_flops_pinned(built: dict[str, Built]) -> None:
    assert built["resnet18"].report.totals.flops == 3_628_146_688  # FlopCounterMode, torch 2.x, 1×3×224×224


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize(("batch", "features_in", "features_out"), [(1, 1, 1), (3, 5, 7), (8, 64, 32)])
def test_linear_by_hand(device: str, batch: int, features_in: int, features_out: int) -> None:
    report = paramscope.summary(nn.Linear(features_in, features_out), input_size=(batch, features_in), device=device)
    assert report.totals.flops == 2 * batch * features_in * features_out
    assert report.totals.macs == batch * features_in * features_out


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_conv2d_by_hand(device: str) -> None:
    report = paramscope.summary(nn.Conv2d(3, 8, 3, padding=1), input_size=(1, 3, 16, 16), device=device)
    assert report.totals.flops == 2 * (8 * 16 * 16) * (3 * 3 * 3)
    assert report.totals.macs == (8 * 16 * 16) * (3 * 3 * 3)
    assert report.calls[0].outputs == "[1, 8, 16, 16]"  # type: ignore[index]


def test_cpu_flash_attention_is_counted() -> None:
    model = Attention()
    x = torch.randn(1, 16, 8)
    without, _ = torch_flops(model, x, attention=False)
    total, _ = torch_flops(model, x)
    attention = 2 * (2 * 1 * 2 * 16 * 16 * 4)  # q·kᵀ and p·v, 2 heads, 16 positions, head size 4
    assert without == 2 * 16 * 8 * 24  # the qkv projection alone: FlopCounterMode has no formula for the kernel
    assert total == without + attention
    for device in ("meta", "cpu"):
        assert paramscope.summary(model, input_size=(1, 16, 8), device=device).totals.flops == total


class MaskedAttention(nn.Module):
    """Attention under a boolean mask, which torch makes an additive float mask before any kernel runs."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (part.view(2, 16, 2, 4).transpose(1, 2) for part in self.qkv(x).chunk(3, dim=-1))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_boolean_attention_mask_on_meta_is_what_it_is_on_cpu(mode: str) -> None:
    model, x, mask = MaskedAttention(), torch.randn(2, 16, 8), torch.rand(2, 1, 16, 16) > 0.2
    reports = {device: paramscope.summary(model, input_data=(x, mask), device=device, mode=mode)
               for device in ("meta", "cpu")}  # fmt: skip
    assert reports["meta"].notes[1:] == reports["cpu"].notes[1:]  # the same ops ran, where and scalar_tensor too
    assert reports["meta"].totals.flops == reports["cpu"].totals.flops == torch_flops(model, x, mask)[0]
    expected = torch_saved_bytes(model, x, mask)[0]  # the float mask (4 bytes an element) among them
    assert reports["meta"].totals.activations_bytes == expected
    assert reports["cpu"].totals.activations_bytes == (expected if mode == "train" else None)


class AttentionOffTheFusedKernel(nn.Module):
    """Attention in shapes torch's CPU flash kernel refuses, so that torch takes the math path on CPU, which keeps the
    attention matrix for backward: one key and value head for every query head without ``enable_gqa`` (Falcon's),
    key and value of one sample for a batch of queries, a mask of 3 dimensions, queries with a transposed last
    dimension. ``enable_gqa`` with the same key and value head runs the CPU's fused kernel, and a GPU's math path (in
    float32), as meta does."""

    def __init__(self, case: str) -> None:
        super().__init__()
        self.case = case
        self.q, self.kv = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x).view(2, 16, 2, 4).transpose(1, 2)  # (2, 2, 16, 4)
        k, v = (part.view(2, 16, 1, 4).transpose(1, 2) for part in self.kv(x).chunk(2, dim=-1))  # one head
        mask = None
        if self.case in ("mask-3d", "transposed"):  # these with as many key heads as query heads
            k, v = k.expand(2, 2, 16, 4), v.expand(2, 2, 16, 4)
        if self.case == "one-sample":
            k, v = k[:1], v[:1]
        if self.case == "mask-3d":
            mask = torch.zeros(2, 16, 16, device=x.device)
        if self.case == "transposed":
            q = q.transpose(-1, -2).contiguous().transpose(-1, -2)  # the same values, strides (.., 1, 16)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.case == "gqa")


@pytest.mark.parametrize("case", ["heads", "one-sample", "mask-3d", "transposed", "gqa"])
def test_attention_the_cpu_kernel_refuses_saves_on_meta_what_it_saves_on_cpu(case: str) -> None:
    model, x = AttentionOffTheFusedKernel(case), torch.randn(2, 16, 8)
    expected, _ = torch_saved_bytes(model, x)
    with attention_as_on_a_gpu() if case == "gqa" else contextlib.nullcontext():
        on_a_gpu, _ = torch_saved_bytes(model, x)
    assert (on_a_gpu > expected) == (case == "gqa")
    for device, truth in (("meta", on_a_gpu), ("cpu", expected)):
        report = paramscope.summary(model, input_data=x, device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, truth)


class FunctionalAttention(nn.Module):
    """Attention by ``F.scaled_dot_product_attention`` as the module finds it when called (a shim that wraps it too),
    in shapes every fused kernel takes."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v)


def passing_through(function: Callable[..., Any]) -> Callable[..., Any]:
    """A wrapper that calls ``function``, as a shim that logs or checks the calls would."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def test_attention_wrapped_where_torch_names_it_saves_on_meta_what_a_device_saves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # from review: with F.scaled_dot_product_attention replaced by a wrapper that calls it, the forward on meta took
    # the math path and kept the attention matrix (655,360 B where a device's fused kernel keeps 167,936)
    torch.manual_seed(0)
    model, x = FunctionalAttention(), torch.randn(2, 16, 32)
    truth, _ = torch_saved_bytes(model, x)
    monkeypatch.setattr(F, "scaled_dot_product_attention", passing_through(F.scaled_dot_product_attention))
    assert torch_saved_bytes(model, x)[0] == truth  # a device's kernel, whoever calls it
    assert paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes == truth


def test_attention_kept_to_the_math_path_by_sdpa_kernel_saves_on_meta_what_it_saves_on_cpu() -> None:
    # from review: torch.nn.attention.sdpa_kernel(SDPBackend.MATH), whose flags every device reads, left the forward
    # on meta on the fused kernel's bytes (167,936 B where the math path keeps 655,360)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, x = FunctionalAttention(), torch.randn(2, 16, 32)
    fused, _ = torch_saved_bytes(model, x)
    with sdpa_kernel([SDPBackend.MATH]):
        kept, _ = torch_saved_bytes(model, x)
        reports = [paramscope.summary(model, input_data=x, device=device, mode="train") for device in ("meta", "cpu")]
    assert kept > fused
    assert [report.totals.activations_bytes for report in reports] == [kept, kept]
    assert paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes == fused


def grouped_attention_note(calls: int) -> str:
    return (f"activations of {calls} grouped-query attention call(s) in float32 (fewer key/value heads than query "
            "heads), as a GPU saves them (on meta): no fused GPU kernel takes them, and the math path keeps the "
            "attention matrix; torch's CPU kernel takes them and saves less: a summary with --device cpu --mode "
            "train measures cpu's")  # fmt: skip


@pytest.mark.parametrize("case", ["heads", "one-sample", "mask-3d", "transposed", "gqa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_query_attention_in_float32_on_meta_says_the_cpu_saves_less(case: str, dtype: torch.dtype) -> None:
    # from review: meta measured float32 grouped-query attention on a GPU's math path (Llama's: 84,928 B to the CPU's
    # 77,248) with no word of it, where the other differences from the CPU's kernels have a note
    model, x = AttentionOffTheFusedKernel(case).to(dtype), torch.randn(2, 16, 8, dtype=dtype)
    noted = case == "gqa" and dtype == torch.float32  # the CPU's fused kernel takes it, and no GPU's does
    for mode in ("train", "eval"):  # in eval mode, the train-mode forward that measures the activations
        report = paramscope.summary(model, input_data=x, mode=mode)
        assert [note for note in report.notes if "grouped-query" in note] == [grouped_attention_note(1)] * noted
    cpu = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert [note for note in cpu.notes if "grouped-query" in note] == []
    if noted:
        with attention_as_on_a_gpu():  # the math path on every device: no difference to note
            on_a_gpu, _ = torch_saved_bytes(model, x)
            kept = paramscope.summary(model, input_data=x, mode="train")
        assert report.totals.activations_bytes == on_a_gpu > cpu.totals.activations_bytes
        assert (kept.totals.activations_bytes, [note for note in kept.notes if "grouped-query" in note]) == (
            on_a_gpu, [])  # fmt: skip
        assert cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0]


def mask_dropout_note(calls: int) -> str:
    return (f"{calls} dropout call(s) kept a boolean mask for backward, as CUDA's fused kernel does (on meta); the "
            "CPU keeps its noise in the input's dtype, four times the bytes in float32: a summary with --device cpu "
            "--mode train measures cpu's")  # fmt: skip


@pytest.mark.parametrize(
    ("dropouts", "noted"),
    [
        ([nn.Dropout(0.1)], 1),
        ([nn.Dropout(0.1), nn.Dropout(0.2)], 2),
        ([nn.Dropout(0.1, inplace=True)], 0),  # the noise path on every device
        ([nn.Dropout(0.0)], 0),
    ],
    ids=["one", "two", "in-place", "p=0"],
)
@pytest.mark.parametrize("first", [True, False], ids=["after-a-linear", "on-the-input"])
def test_dropout_on_meta_says_the_cpu_keeps_its_noise(dropouts: list[nn.Module], noted: int, first: bool) -> None:
    # from review: meta keeps CUDA's boolean mask (18,432 B of a small MLP to the CPU's 24,576) with no word of it
    torch.manual_seed(0)
    layers = [nn.Linear(8, 8)] if first else []
    for dropout in dropouts:
        layers += [dropout, nn.Linear(8, 8)]
    if noted and not first:
        noted -= 1  # a dropout of the input, which needs no gradient, keeps no mask
    model, x = nn.Sequential(*layers), torch.randn(32, 8)
    for mode in ("train", "eval"):
        report = paramscope.summary(model, input_data=x, mode=mode)
        assert [note for note in report.notes if "dropout call" in note] == [mask_dropout_note(noted)] * bool(noted)
    cpu = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert [note for note in cpu.notes if "dropout call" in note] == []
    assert cpu.totals.activations_bytes - report.totals.activations_bytes == noted * 32 * 8 * (4 - 1)


class PaddedAfterAView(nn.Module):
    """A view with a dimension of size 1, padded (Mamba2's mixer at one token): the padded tensor's layout follows
    the view's strides, and whether a reshape of it copies follows its layout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 24, 1)
        self.w1 = nn.Parameter(torch.ones(2, 8))
        self.w2 = nn.Parameter(torch.ones(64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # at one token, a stride of 1 for the token dimension
        padded = F.pad(h[..., :16].view(b, t, 2, 8), (0, 0, 0, 0, 0, 4 - t))
        return padded * self.w1, padded.reshape(b, -1) * self.w2  # saves the padded tensor, and it or a copy


@pytest.mark.parametrize("tokens", [1, 2])
def test_a_view_with_a_dimension_of_size_one_saves_on_meta_what_it_saves_on_cpu(tokens: int) -> None:
    # from the transformers sweep: FalconH1's and NemotronH's Mamba2 mixers at one token saved 3 MiB less each on meta
    # than on cpu; the fake tensors' view gave the dimension of size 1 a stride of 1 (the device kernels' gives it
    # 16), the padded tensor another layout, and the reshape a view of it where the cpu copies (1,632 B against 864)
    model, x = PaddedAfterAView(), torch.randn(3, tokens, 8)
    expected, _ = torch_saved_bytes(model, x)
    for device in ("meta", "cpu"):
        report = paramscope.summary(model, input_data=x, device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, expected)


class ChannelsLastPatches(nn.Module):
    """A patch embedding (a ViT's) of a channels-last model, flattened to tokens for two ``nn.Linear``: whether each
    reshapes its input with a copy follows the convolution's layout."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.proj = conv
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return self.fc1(tokens) + self.fc2(tokens)


@pytest.mark.parametrize(
    ("conv", "shape", "channels_last_input"),
    [
        (functools.partial(nn.Conv2d, 3, 16, 4, stride=4), (2, 3, 32, 32), True),
        (functools.partial(nn.ConvTranspose2d, 3, 16, 2, stride=2), (2, 3, 4, 4), True),
        (functools.partial(nn.Conv3d, 3, 16, 2, stride=2), (2, 3, 4, 8, 8), True),
        # a 1×1 kernel's weight is contiguous (is_contiguous()) in either layout, and its strides still decide
        (functools.partial(nn.Conv2d, 3, 16, 1), (2, 3, 4, 4), False),
    ],
    ids=["conv2d", "conv-transpose2d", "conv3d", "conv2d-1x1-contiguous-input"],
)
def test_a_channels_last_convolution_saves_on_meta_what_it_saves_on_cpu(
    conv: Callable[[], nn.Module], shape: tuple[int, ...], channels_last_input: bool
) -> None:
    # from the fuzz of plain torch models: the fake tensors gave a convolution on meta a contiguous result, where
    # the CPU's kernels keep the channels-last layout of its input or weights; the tokens were then a transposed
    # view on meta, and each nn.Linear saved a copy of them (40,960 B on meta against 32,768 for the Conv2d)
    memory_format = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    model = ChannelsLastPatches(conv()).to(memory_format=memory_format)
    x = torch.randn(shape)
    x = x.contiguous(memory_format=memory_format) if channels_last_input else x
    expected, _ = torch_saved_bytes(model, x)
    for device in ("meta", "cpu"):
        report = paramscope.summary(model, input_data=x, device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, expected)


class NormalisedOverTime(nn.Module):
    """BatchNorm over a transposed sequence (PatchTST's), transposed back for three projections."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.q(h) + self.k(h) + self.v(h)


@pytest.mark.parametrize(
    "norm",
    [nn.BatchNorm1d(16), nn.BatchNorm1d(16, track_running_stats=False), nn.BatchNorm1d(16, affine=False)],
    ids=["running-stats", "batch-stats-only", "no-affine"],
)
def test_batch_norm_of_a_transposed_input_saves_on_meta_what_it_saves_on_cpu(norm: nn.Module) -> None:
    # from review: the meta kernel kept the input's strides where the devices' kernels return it contiguous; the
    # projections' input was then contiguous on meta, and each nn.Linear but the first saved no copy of it (PatchTST:
    # 38,936 B on meta against 45,080 on cpu)
    model, x = NormalisedOverTime(norm), torch.randn(6, 4, 16)
    expected, _ = torch_saved_bytes(model, x)
    for device in ("meta", "cpu"):
        report = paramscope.summary(model, input_data=x, device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, expected)
    assert paramscope.summary(model, input_data=x).totals.activations_bytes == expected  # an eval-mode summary's


class GroupedQueryAttention(nn.Module):
    """6 query heads over 3 key and value heads (enable_gqa), 5 positions, heads of 7."""

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)


@pytest.mark.parametrize("torch_formula", ["as it is", "keys of as many heads as queries only"])
def test_grouped_query_attention_counts_its_products_for_every_query_head(
    monkeypatch: pytest.MonkeyPatch, torch_formula: str
) -> None:
    """Q·Kᵀ and weights·V, 2 FLOPs a multiply-add, for each of the 6 query heads: with torch's attention formula as
    torch 2.13 has it, and as torch before it had it, which refused keys of fewer heads (an AssertionError)."""
    if torch_formula != "as it is":
        formula = paramscope._flop_formulas.sdpa_flop_count

        def equal_heads_only(query: Any, key: Any, value: Any) -> int:
            if not query[1] == key[1] == value[1]:
                raise AssertionError("sdpa_flop_count: query/key/value shapes are incompatible")
            return int(formula(query, key, value))

        monkeypatch.setattr(paramscope._flop_formulas, "sdpa_flop_count", equal_heads_only)
        monkeypatch.setattr(paramscope.trace, "_counters", {})  # counts known from other tests' forwards
    q, kv = torch.randn(2, 6, 5, 7), torch.randn(2, 3, 5, 7)
    expected = 2 * (2 * 2 * 6 * 5 * 5 * 7)  # batch 2, 6 heads, 5 × 5 positions, heads of 7
    for device in ("meta", "cpu"):
        report = paramscope.summary(GroupedQueryAttention(), input_data=(q, kv), device=device)
        assert (device, report.totals.flops) == (device, expected)


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x)[0]  # self-attention: the fast path's case


class AttentionWithoutWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]  # scaled_dot_product_attention inside torch's function


@pytest.mark.parametrize(
    "make",
    [AttentionWithoutWeights, SelfAttention,
     lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True), 2)],
    ids=["attention-without-weights", "attention-with-weights", "encoder"],
)  # fmt: skip
def test_torchs_multi_head_attention_saves_on_meta_what_a_gpu_saves(make: Callable[[], nn.Module]) -> None:
    model, x = make(), torch.randn(2, 5, 16)
    expected, _ = torch_saved_bytes(model, x)
    assert paramscope.summary(model, input_data=x, device="cpu", mode="train").totals.activations_bytes == expected
    # in float32 a GPU runs the fused attention with CUDA's memory-efficient kernel, which lays its output out batch
    # first, and torch's function copies it for the output projection, which saves the copy: one (2, 5, 16) float32
    # tensor more for each call than on the CPU (an H200's bytes for an encoder: test_autocast)
    calls = sum(isinstance(module, nn.MultiheadAttention) for module in model.modules())
    on_a_gpu = expected + calls * 2 * 5 * 16 * 4 if make is not SelfAttention else expected
    assert paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes == on_a_gpu
    assert paramscope.summary(model, input_data=x).totals.activations_bytes == on_a_gpu  # its train-mode pass


def test_torchs_multi_head_attention_in_a_function_mode_of_the_callers_saves_what_a_gpu_saves() -> None:
    # torch.device is a function mode beneath the summary's: torch's function, handed to it whole, would run with
    # every mode off and take meta's math path
    model, x = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True), torch.randn(2, 5, 16)
    expected, _ = torch_saved_bytes(model, x)
    with torch.device("cpu"):  # and a copy of the attention's output, as a GPU makes it (the test above)
        assert (
            paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes == expected + 2 * 5 * 16 * 4
        )


@pytest.mark.parametrize("need_weights", [True, False])
def test_one_tensor_given_as_several_inputs_is_one_tensor_on_meta(need_weights: bool) -> None:
    model, x = nn.MultiheadAttention(16, 4, batch_first=True), torch.randn(2, 5, 16)
    inputs = {"query": x, "key": x, "value": x, "need_weights": need_weights}  # self-attention: one projection
    expected, _ = torch_saved_bytes(model, x, x, x, None, need_weights)
    on_a_gpu = expected + (0 if need_weights else 2 * 5 * 16 * 4)  # the attention's output copied, as on a GPU
    for device, truth in (("meta", on_a_gpu), ("cpu", expected)):
        assert paramscope.summary(model, input_data=inputs, device=device, mode="train").totals.activations_bytes == (
            truth
        )


class TwoLookups(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(100, 4), nn.Embedding(16, 4)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids).sum(1) + self.positions(positions).sum(1)  # each embedding saves its indices


def _inputs_sharing_storages() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    ids = torch.randint(0, 16, (4, 8))
    return {
        "expanded": (ids, torch.arange(8).expand(4, 8)),  # position ids as transformers makes them: 8 values stored
        "slice-of-a-bigger-tensor": (ids[:, :6], torch.zeros(4, 6, dtype=torch.long)),
        "views-of-one-tensor": (ids, ids[:, :3]),  # T5's decoder ids cut from its encoder's
    }


@pytest.mark.parametrize("case", ["expanded", "slice-of-a-bigger-tensor", "views-of-one-tensor"])
def test_inputs_save_on_meta_the_storages_they_have_on_cpu(case: str) -> None:
    # autograd keeps an input's storage, whatever part of it the input views
    inputs = _inputs_sharing_storages()[case]
    expected, _ = torch_saved_bytes(TwoLookups(), *inputs)
    for device in ("meta", "cpu"):
        report = paramscope.summary(TwoLookups(), input_data=inputs, device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, expected)


class GraphConvolution(nn.Module):
    """A graph convolution as graph networks write it: the sparse adjacency matrix times the nodes' features."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.sparse.mm(adjacency, self.lin(x)))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize(
    ("layout", "indices"),
    [(torch.sparse_coo, 2 * 6 * 8), (torch.sparse_csr, (7 + 6) * 8)],  # int64 (row, column) pairs; CSR row offsets
    ids=["coo", "csr"],
)
def test_a_sparse_tensor_saved_for_backward_counts_its_indices_and_values(layout: torch.layout, indices: int) -> None:
    values = torch.full((6,), 0.5)  # the diagonal, 6 entries
    if layout == torch.sparse_coo:
        adjacency = torch.sparse_coo_tensor(torch.arange(6).repeat(2, 1), values, (6, 6), check_invariants=True)
    else:
        adjacency = torch.sparse_csr_tensor(torch.arange(7), torch.arange(6), values, (6, 6), check_invariants=True)
    report = paramscope.summary(GraphConvolution(), input_data=(torch.randn(6, 4), adjacency), device="cpu",
                                mode="train")  # fmt: skip
    # the Linear's input (6 × 4 float32), the adjacency (its indices and 6 float32 values), the ReLU's output (6 × 3)
    assert report.totals.activations_bytes == 6 * 4 * 4 + indices + 6 * 4 + 6 * 3 * 4
    assert not [note for note in report.notes if "aten._values" in note]  # reading them is no op of the forward's


def _fused_cases() -> list[tuple[str, nn.Module, list[tuple[int, ...]], Any, int]]:
    """Layers whose eval forward on CPU is one fused op that FlopCounterMode counts as 0, with that op and the
    FLOPs counted by hand (2 per multiply-add, biases not counted, as FlopCounterMode does)."""
    lstm = 2 * (2 * 15 * 64 * (8 + 16) + 2 * 15 * 64 * (32 + 16))  # 2 directions, 2 layers, 15 steps × batch
    projections, products = 2 * 16 * 16 * 4 * 10, 4 * 16 * (2 * 5 * 5)  # batch 2, length 5, embedding 16
    encoder = 2 * 16 * 16 * 40 + 4 * 16 * (2 * 5 * 5) + 2 * 2 * 10 * 16 * 32
    return [
        ("lstm", nn.LSTM(8, 16, num_layers=2, bidirectional=True), [(5, 3, 8)], aten.mkldnn_rnn_layer, lstm),
        ("lstm-batch-first", nn.LSTM(8, 16, batch_first=True), [(3, 5, 8)], aten.mkldnn_rnn_layer,
         2 * 15 * 64 * (8 + 16)),
        ("attention", SelfAttention(), [(2, 5, 16)], aten._native_multi_head_attention, projections + products),
        ("encoder", nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), [(2, 5, 16)],
         aten._transformer_encoder_layer_fwd, encoder),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _fused_cases(), ids=lambda case: case[0])
def test_fused_cpu_kernels_are_counted(case: tuple[str, nn.Module, list[tuple[int, ...]], Any, int]) -> None:
    _, model, shapes, fused_op, by_hand = case
    model.eval()
    recorder = _OpRecorder()
    with torch.no_grad(), recorder:
        model(*(torch.randn(shape) for shape in shapes))
    assert fused_op in recorder.counts  # torch takes its fast path on CPU, so the formula is what counts
    cpu = paramscope.summary(model, input_size=shapes, device="cpu")
    meta = paramscope.summary(model, input_size=shapes, device="meta")
    assert cpu.totals.flops == meta.totals.flops == by_hand
    assert not [note for note in cpu.notes if str(fused_op) in note]  # not listed among the ops counted as 0


class Bags(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32, **options: Any) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, dtype=dtype, **options)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.bag(ids, offsets, per_sample_weights=weights)


@pytest.mark.parametrize(
    ("options", "weighted"),
    [({"mode": "sum"}, False), ({"mode": "mean"}, False), ({"mode": "max"}, False), ({"mode": "sum"}, True),
     ({"mode": "mean", "padding_idx": 1}, False), ({"mode": "sum", "dtype": torch.bfloat16}, False),
     ({"mode": "max", "include_last_offset": True}, False)],
    ids=["sum", "mean", "max", "weighted", "padding", "bfloat16", "last-offset"],
)  # fmt: skip
def test_an_embedding_bag_saves_on_meta_what_it_saves_on_cpu(options: dict[str, Any], weighted: bool) -> None:
    # torch's meta kernel makes the bag indices as CUDA does (one per id, and no max_indices outside mode max);
    # the CPU kernel skips them on its fast path of mode sum, and makes one more than it keeps otherwise
    model = Bags(**options)
    ids, offsets = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([0, 2, 5])
    inputs = (ids, offsets, torch.rand(6) if weighted else None)
    expected, _ = torch_saved_bytes(model, *inputs)
    for device in ("meta", "cpu"):
        report = paramscope.summary(model, input_data=inputs, device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, expected)


class FrozenStatistics(nn.Module):
    """A convolution and a BatchNorm kept in eval mode (its running statistics frozen) in a train-mode forward; or
    the BatchNorm as ``F.batch_norm`` with ``training=False``."""

    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.conv, self.norm, self.functional = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.functional:
            norm = self.norm
            return nn.functional.batch_norm(y, norm.running_mean, norm.running_var, norm.weight, norm.bias)
        return self.norm(y)

    def train(self, mode: bool = True) -> FrozenStatistics:
        super().train(mode)
        self.norm.eval()
        return self


@pytest.mark.parametrize("functional", [False, True])
def test_a_batch_norm_in_eval_mode_saves_on_meta_what_it_saves_on_cpu(functional: bool) -> None:
    # torch's meta kernel returns the running statistics' mean and inverse std for backward (as CUDA's own kernel
    # does), where the CPU kernel returns empty tensors
    model = FrozenStatistics(functional)
    expected, _ = torch_saved_bytes(model, torch.randn(4, 3, 8, 8))
    assert expected == 4 * 3 * 8 * 8 * 4 + 4 * 8 * 6 * 6 * 4  # the input and the convolution's output
    for device in ("meta", "cpu"):
        report = paramscope.summary(model, input_size=(4, 3, 8, 8), device=device, mode="train")
        assert (device, report.totals.activations_bytes) == (device, expected)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_what_transformers_warns_in_the_forward_is_a_note_not_printed(
    capfd: pytest.CaptureFixture[str], device: str
) -> None:
    # Mamba without mamba_ssm: transformers printed "[transformers] `selective_scan_fn` is falling back ..." lines
    # above the summary (each twice: once a forward), where a memory plan keeps them as notes
    transformers = pytest.importorskip("transformers")
    if any(importlib.util.find_spec(name) for name in ("mamba_ssm", "causal_conv1d")):
        pytest.skip("mamba_ssm or causal_conv1d installed: transformers runs their kernels and warns of nothing")
    config = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2)
    report = paramscope.summary(transformers.MambaForCausalLM(config), input_size=(2, 8), device=device)
    assert capfd.readouterr().err == ""
    ran = ("transformers' reference PyTorch code for causal_conv1d_fn, selective_scan_fn{}, as causal_conv1d and "
           "mamba_ssm are not installed here (transformers warned)")  # fmt: skip
    if device == "meta":  # with the activations' train-mode forward, which runs mamba_inner_fn first
        assert (
            f"activations measured on {ran.format(', mamba_inner_fn')}: it materialises intermediates that their "
            "fused kernels do not, so a GPU that runs those kernels needs less than this estimate"
        ) in report.notes
    else:  # an eval-mode forward alone, which measures no activations
        assert report.totals.activations_bytes is None
        assert f"the forward ran {ran.format('')}" in report.notes
    assert not [note for note in report.notes if "falling back" in note]


class _WarnsThenFails(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logging.getLogger("transformers.models.fake").warning("the attention mask is missing")
        raise ValueError("no mask")


def test_a_forward_that_fails_ends_its_error_with_what_transformers_warned(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ForwardError) as raised:
        paramscope.summary(_WarnsThenFails(), input_size=(2, 4))
    assert str(raised.value) == ("the forward failed in '(model)' with inputs [2, 4]: ValueError: no mask "
                                 "(transformers warned: the attention mask is missing)")  # fmt: skip
    assert capfd.readouterr().err == ""


def test_transformers_gpt2_with_sdpa_same_flops_on_meta_and_cpu() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    # No dropout: torch's CPU kernel choice for attention is then the fused one, as on meta (and on a GPU), and the
    # CPU keeps no noise where meta, as CUDA, keeps a boolean mask (test_autocast)
    config = transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=2, n_head=2, attn_pdrop=0.0,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_implementation="sdpa")  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    assert model.config._attn_implementation == "sdpa"
    ids = torch.zeros(1, 16, dtype=torch.long)
    total, _ = torch_flops(model, ids)
    meta = paramscope.summary(model, input_size=(1, 16), dtypes=["long"], depth=1)
    cpu = paramscope.summary(model, input_size=(1, 16), dtypes=["long"], depth=1, device="cpu")
    assert meta.totals.flops == cpu.totals.flops == total == 280_576
    assert [(r.path, r.flops) for r in meta.calls or ()] == [(r.path, r.flops) for r in cpu.calls or ()]
    assert meta.totals.activations_bytes == torch_saved_bytes(model, ids)[0]
    # a ModelOutput: its class name and its items (None fields are not items)
    output = model(ids)
    expected = type(output).__name__ + "{" + ", ".join(f"{k}: {shape_text(v)}" for k, v in output.items()) + "}"
    assert meta.calls[0].outputs == cpu.calls[0].outputs == expected  # type: ignore[index]
    assert expected.startswith("CausalLMOutputWithCrossAttentions{logits: [1, 16, 100]")


_TOKEN_IDS_NOTE = (
    "the first input is token ids (int64), as the model's main input is input_ids; --input-dtype sets another"
)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_token_models_input_of_input_size_is_token_ids(device: str) -> None:
    # transformers declares a model's main input (main_input_name): input_ids are long; floats failed in the embedding
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=2, n_head=2, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config).eval()
    made = paramscope.summary(model, input_size=(1, 16), device=device, mode="train")
    given = paramscope.summary(model, input_size=(1, 16), dtypes=["long"], device=device, mode="train")
    assert made.calls is not None
    assert given.calls is not None
    assert [(r.path, r.inputs, r.flops, r.activations_bytes) for r in made.calls] == [
        (r.path, r.inputs, r.flops, r.activations_bytes) for r in given.calls
    ]
    assert made.notes == (*given.notes[:1], _TOKEN_IDS_NOTE, *given.notes[1:])  # only said where it was not asked
    code_made = paramscope.memory(model, input_size=(1, 16), train=True)
    code_given = paramscope.memory(model, input_size=(1, 16), input_dtypes=["long"], train=True)
    assert code_made.memory is not None
    assert code_given.memory is not None
    assert code_made.memory.item("activations").total_bytes == code_given.memory.item("activations").total_bytes


def test_a_model_whose_main_input_is_not_token_ids_gets_floats() -> None:
    # pixel_values, input_features: the model's dtype, as for any model
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    model.main_input_name = "pixel_values"  # type: ignore[assignment]
    report = paramscope.summary(model, input_size=(1, 3, 8, 8))
    assert report.calls is not None
    assert report.calls[0].outputs == "[1, 4, 6, 6]"
    assert _TOKEN_IDS_NOTE not in report.notes


def test_lstm_on_cpu_counts_what_flop_counter_mode_misses(built: dict[str, Built]) -> None:
    model, x, meta = built["lstm"]
    plain, _ = torch_flops(model, x)
    report = paramscope.summary(model, input_size=(5, 1, 4), device="cpu")
    assert plain == 0  # torch's own counter has no formula for the CPU kernel (mkldnn_rnn_layer)
    assert report.totals.flops == meta.totals.flops > 0  # the unfused cells' count, op by op on meta
    assert not any("mkldnn_rnn_layer" in note for note in report.notes)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bilinear_counts_its_product_that_flop_counter_mode_misses(device: str) -> None:
    model = nn.Bilinear(8, 6, 5)
    report = paramscope.summary(model, input_size=[(3, 8), (3, 6)], device=device)
    plain, _ = torch_flops(model, torch.randn(3, 8), torch.randn(3, 6))
    assert plain == 0  # torch's own counter has no formula for aten._trilinear
    # the element-wise product of input and weight, then its sum with the other input: 2 per multiply-add
    assert report.totals.flops == 2 * 3 * 5 * 8 * 6
    assert not any("_trilinear" in note for note in report.notes)


class VectorProducts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 5))
        self.bias = nn.Parameter(torch.randn(6))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        products = torch.mv(self.weight, v) + torch.addmv(self.bias, self.weight, v)
        return products + torch.dot(v, v) + torch.vdot(v, v)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_matrix_vector_and_dot_products_count_as_the_matrix_products_they_are(device: str) -> None:
    model = VectorProducts()
    weight, bias, column = model.weight.detach(), model.bias.detach(), torch.randn(5, 1)
    with FlopCounterMode(display=False) as counter:  # the same products with the vector as a column
        weight @ column, torch.addmm(bias[:, None], weight, column), column.T @ column, column.T @ column
    report = paramscope.summary(model, input_size=(5,), device=device)
    assert report.totals.flops == counter.get_total_flops() == 2 * (6 * 5 + 6 * 5 + 5 + 5)
    assert any(note.endswith("count 0: aten.add (3)") for note in report.notes), report.notes


class BatchSumsAndTimeConvolution(nn.Module):
    """addbmm (a batch of products summed) and fairseq's conv_tbc, which FlopCounterMode counts as 0."""

    def __init__(self) -> None:
        super().__init__()
        self.batch = nn.Parameter(torch.randn(2, 5, 4))
        self.kernel, self.bias = nn.Parameter(torch.randn(3, 4, 6)), nn.Parameter(torch.zeros(6))

    def forward(self, x: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.addbmm(x.new_zeros(4, 4), x, self.batch), torch.conv_tbc(steps, self.kernel, self.bias, 1)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_addbmm_and_conv_tbc_count_as_the_products_they_are(device: str) -> None:
    # from review: both counted 0, named in the notes
    model = BatchSumsAndTimeConvolution()
    x, steps = torch.randn(2, 4, 5), torch.randn(7, 2, 4)
    with FlopCounterMode(display=False) as counter:  # the same products unfused: a bmm, and a Conv1d
        torch.bmm(x, model.batch.detach())
        weight = model.kernel.detach().permute(2, 1, 0)  # (out, in, kernel)
        F.conv1d(steps.permute(1, 2, 0), weight, model.bias.detach(), padding=1)
    report = paramscope.summary(model, input_data=(x, steps), device=device)
    assert report.totals.flops == counter.get_total_flops() == 2 * 2 * 4 * 5 * 4 + 2 * 7 * 2 * 3 * 4 * 6
    assert not any("addbmm" in note or "conv_tbc" in note for note in report.notes), report.notes


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_matrix_product_counts_its_stored_values(layout: str) -> None:
    # from review: torch.sparse.mm counted 0 (aten._sparse_addmm); its kernel multiplies each stored value by a row
    indices = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 1]])
    adjacency = torch.sparse_coo_tensor(indices, torch.ones(5), (4, 4), check_invariants=True).coalesce()
    adjacency = adjacency if layout == "coo" else adjacency.to_sparse_csr()
    inputs = (torch.randn(4, 4), adjacency)
    report = paramscope.summary(GraphConvolution(), input_data=inputs, device="cpu")
    assert report.totals.flops == 2 * 4 * 4 * 3 + 2 * 5 * 3  # the projection, then 5 stored values × 3 features
    # meta has no sparse kernels: said, with the way out, in torch's first sentence (its backends' list cut off)
    with pytest.raises(ForwardError) as raised:
        paramscope.summary(GraphConvolution(), input_data=inputs)
    assert str(raised.value).endswith(
        "backend; meta tensors have no values to read, and some ops no meta kernel: try --device cpu"
    ), raised.value


class ManyViewsAndOneRareOp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(20):
            x = x.view(-1).view(4, 4).transpose(0, 1).t().relu().sigmoid().tanh().neg().abs().exp().add(1).mul(2)
        return torch.cumsum(x, 0)


def test_every_op_counted_0_that_is_no_element_wise_op_or_view_is_named() -> None:
    # ranked by calls, torch.cumsum (run once) came after ten element-wise ops and views, cut off as
    # "and N more": it is named first, and only element-wise ops and views are cut off
    report = paramscope.summary(ManyViewsAndOneRareOp(), input_size=(4, 4), device="cpu")
    note = next(note for note in report.notes if "ran and count 0" in note)
    named = note.partition("count 0: ")[2]
    assert named.startswith("aten.cumsum (1), "), note
    assert named.endswith(" more element-wise ops and views"), note
    assert "aten.view (40)" in named


RECURRENT_NOTE = (
    "activations of the recurrent layers, as torch's unfused cells save them (on meta): {}; {}cuDNN's kernels on a "
    "GPU keep a reserve besides; a summary with --device cpu --mode train measures cpu's"
)
ONE_DNN = "on cpu, oneDNN's LSTM kernel keeps a workspace besides, several times that; "


def test_recurrent_activations_on_meta_say_what_a_fused_kernel_keeps_besides(built: dict[str, Built]) -> None:
    model, x, meta = built["lstm"]
    total, _ = torch_saved_bytes(model, x)  # on cpu, through the oneDNN kernel
    cpu = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert cpu.totals.activations_bytes == total
    assert meta.totals.activations_bytes is not None
    assert total > 2 * meta.totals.activations_bytes  # the workspace: "several times"
    assert RECURRENT_NOTE.format("(model)", ONE_DNN) in meta.notes
    assert not any("recurrent" in note for note in cpu.notes)  # measured on cpu's own kernel
    assert not any("recurrent" in note for note in built["gpt2-tiny"].report.notes)


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0])


def test_recurrent_activations_of_a_training_plan_carry_the_note() -> None:
    plan = paramscope.memory(Tagger(), train=True, input_size=(2, 5), input_dtypes=["long"]).memory
    assert plan is not None
    assert RECURRENT_NOTE.format("rnn", "") in plan.notes  # a GRU: the cells run on cpu too, and save as on meta
    summary = paramscope.summary(Tagger(), input_size=(2, 5), dtypes=["long"])
    assert RECURRENT_NOTE.format("rnn", "") in summary.notes


@pytest.mark.parametrize(
    "layer",
    [
        nn.GRU(8, 16, batch_first=True, bidirectional=True),
        nn.RNN(8, 16, batch_first=True, bidirectional=True),
        # with projections, oneDNN does not run it: the cells do, as a GRU's
        nn.LSTM(8, 12, num_layers=2, proj_size=5, batch_first=True, bidirectional=True),
    ],
    ids=["gru", "rnn", "lstm-proj"],
)
def test_a_bidirectional_batch_first_recurrent_layer_on_meta_says_cpu_saves_its_input_once_more(
    layer: nn.Module,
) -> None:
    # from the zoo sweep: the note spoke of a fused kernel's workspace, which these layers do not have on cpu
    x = torch.randn(3, 5, 8)
    total, _ = torch_saved_bytes(layer, x)
    meta = paramscope.summary(layer, input_data=x, mode="train")
    assert total == meta.totals.activations_bytes + x.nbytes
    copy = "on cpu, a bidirectional layer with batch_first saves its input once more; "
    assert meta.notes[-1] == RECURRENT_NOTE.format("(model)", copy)


class PackedTagger(nn.Module):
    """Token ids packed by their lengths (those given, or the ones the ids have before their padding, 0, or the
    model's own) through a recurrent layer, then padded again."""

    def __init__(self, layer: nn.LSTM | nn.GRU, lengths: list[int] | None = None, enforce_sorted: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8, padding_idx=0)
        self.rnn = layer
        self.head = nn.Linear(layer.hidden_size * (2 if layer.bidirectional else 1), 5)
        self.lengths, self.enforce_sorted = lengths, enforce_sorted

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.tensor(self.lengths) if self.lengths else (tokens != 0).sum(1).cpu()
        x = self.embed(tokens)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=self.enforce_sorted)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=tokens.shape[1])
        return self.head(out)


DEVICES = ("meta", "cpu")
PADDED_TOKENS = torch.tensor([[1, 2, 3, 0, 0, 0, 0], [4, 5, 6, 7, 8, 9, 1], [2, 3, 4, 5, 6, 0, 0]])
RECURRENT_LAYERS = {
    "lstm": lambda: nn.LSTM(8, 6, num_layers=2, batch_first=True, bidirectional=True),
    "gru": lambda: nn.GRU(8, 6, batch_first=True),
}


def _rows(report: paramscope.Report) -> list[tuple[str, str, str, int | None, int | None]]:
    assert report.calls is not None
    return [(call.path, call.inputs, call.outputs, call.flops, call.activations_bytes) for call in report.calls]


@pytest.mark.parametrize("layer", list(RECURRENT_LAYERS))
@pytest.mark.parametrize("lengths", ["the model's", "given", "of the ids given"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pack_padded_sequence_in_the_forward_runs_on_meta_as_on_cpu(layer: str, lengths: str, mode: str) -> None:
    # from a README review: on meta the packed data's length, which follows the lengths' values, failed the forward
    torch.manual_seed(0)
    model = PackedTagger(RECURRENT_LAYERS[layer](), [3, 7, 5] if lengths == "the model's" else None)
    inputs = {"the model's": (PADDED_TOKENS,), "given": (PADDED_TOKENS, torch.tensor([3, 7, 5]))}
    data = inputs.get(lengths, (PADDED_TOKENS,))
    given = [tensor.clone() for tensor in data]
    meta = paramscope.summary(model, input_data=data, mode=mode)
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):  # the unfused cells, as on meta
        cpu = paramscope.summary(model, input_data=data, mode=mode, device="cpu")
        total, _ = torch_saved_bytes(model, *data)
    assert all(torch.equal(a, b) for a, b in zip(data, given, strict=True))
    rows = _rows(meta)
    assert rows[2][1] == "PackedSequence(data=[15, 8], batch_sizes=[7], sorted_indices=[3], unsorted_indices=[3])"
    if mode == "eval":  # on cpu, no activations: an eval-mode forward saves none
        rows = [row[:-1] for row in rows]
    assert rows == [row[:-1] if mode == "eval" else row for row in _rows(cpu)]
    assert meta.totals.activations_bytes == total
    # from review: it said the cpu keeps more (oneDNN's workspace, a copy of the input), as for a padded batch
    assert RECURRENT_NOTE.format("rnn", "") in meta.notes


@pytest.mark.parametrize(
    ("lengths", "enforce_sorted"), [([3, 7, 5], True), ([7, 5, 0], False), ([8, 5, 3], False)], ids=str
)
def test_lengths_torch_refuses_are_refused_on_meta_as_on_cpu(lengths: list[int], enforce_sorted: bool) -> None:
    model = PackedTagger(nn.GRU(8, 6, batch_first=True), lengths, enforce_sorted)
    errors = []
    for device in ("cpu", "meta"):
        with pytest.raises(ForwardError) as raised:
            paramscope.summary(model, input_data=PADDED_TOKENS, device=device)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]
    assert ": RuntimeError: " in errors[0]  # torch's own check, in pack_padded_sequence or in the layer


def test_pack_padded_sequence_by_lengths_of_ids_made_from_sizes_says_to_run_on_cpu() -> None:
    # ids made on meta have no values to count tokens in: the lengths are not known
    model = PackedTagger(nn.GRU(8, 6, batch_first=True))
    with pytest.raises(ForwardError) as raised:
        paramscope.summary(model, input_size=(3, 7), dtypes=["long"])
    assert str(raised.value) == (
        "the forward failed in '(model)' with inputs [3, 7]: DynamicOutputShapeException: "
        "aten._pack_padded_sequence.default makes a tensor whose size follows values (as nonzero() and a boolean mask "
        "do); meta tensors have no values to read, and some ops no meta kernel: try --device cpu"
    )


class TrimsToItsLongest(nn.Module):
    """Packs its ids by the lengths before their padding, and cuts the padded output to the longest."""

    def __init__(self, enforce_sorted: bool) -> None:
        super().__init__()
        self.embed, self.rnn = nn.Embedding(10, 5), nn.GRU(5, 6, batch_first=True)
        self.enforce_sorted = enforce_sorted

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != 0).sum(1).cpu()
        packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=self.enforce_sorted)
        out, lengths = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
        return out[:, : int(lengths.max())]


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_the_lengths_pad_packed_sequence_gives_are_read_on_meta(enforce_sorted: bool) -> None:
    # from review: unsorted, its lengths are put back in order by a scatter into an empty tensor (invert_permutation),
    # whose elements were taken as never written: reading them failed on meta
    ids = torch.tensor([[4, 5, 6, 7, 0], [1, 2, 3, 0, 0]])
    meta, cpu = (paramscope.summary(TrimsToItsLongest(enforce_sorted), input_data=ids, device=d) for d in DEVICES)
    assert [row[:3] for row in _rows(meta)] == [row[:3] for row in _rows(cpu)]
    assert _rows(meta)[0][2] == "[2, 4, 6]"


class SizedByValues(nn.Module):
    """Ops whose results' sizes follow values: those of a mask and ids given."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(10, 4), nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        picked = self.embed(ids)[mask.bool()]  # the mask's values alone size it
        unique, counts = torch.unique(ids, return_counts=True)
        # from review: the embeddings have no values, the mask (broadcast) alone sizes it
        selected = self.embed(ids).masked_select(mask.bool()[..., None])
        return self.head(picked), mask.nonzero(), ids.masked_select(mask.bool()), unique, counts, selected


def test_ops_sized_by_the_values_of_inputs_given_run_on_meta_as_on_cpu() -> None:
    # from review: the fake tensors refused them ("makes a tensor whose size follows values") though the values were
    # known; a boolean mask of known values indexes as a real one does
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    data = (ids, (ids != 0).long())
    meta, cpu = (paramscope.summary(SizedByValues(), input_data=data, device=d, mode="train") for d in DEVICES)
    assert _rows(meta) == _rows(cpu)
    assert _rows(meta)[0][2] == "([5, 3], [5, 2], [5], [6], [6], [20])"
    assert meta.totals.activations_bytes == torch_saved_bytes(SizedByValues(), *data)[0]


class SelectsByAByteMask(nn.Module):
    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.masked_select(x, (ids != 0).to(torch.uint8))


def test_masked_select_by_a_mask_of_bytes_is_refused_on_meta_as_on_cpu() -> None:
    # from review: meta ran it by the mask's known values, where every device refuses a mask that is not boolean
    data = (torch.randn(2, 4), torch.tensor([[1, 0, 2, 0], [0, 3, 0, 0]]))
    for device in DEVICES:
        with pytest.raises(ForwardError, match=r"masked_select"):
            paramscope.summary(SelectsByAByteMask(), input_data=data, device=device)


class BranchesOnItsInput(nn.Module):
    """A forward that reads the values of its integer input ``ids`` (after ``edit`` wrote to it, on a real device
    through every view of its storage), as a real device runs it: ``positive`` where ``read`` of them is all
    positive, ``other`` otherwise."""

    def __init__(self, edit: Callable[..., None], read: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.positive, self.other = nn.Linear(4, 2), nn.Linear(4, 3)
        self.edit, self.read = edit, read

    def forward(self, ids: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        self.edit(ids, *more)
        x = torch.ones(2, 4, device=ids.device)
        return self.positive(x) if bool((self.read(ids, *more) > 0).all()) else self.other(x)


def _write_with_a_cpu_mask(ids: torch.Tensor) -> None:
    ids[torch.tensor([True, False])] = -1


def _shared() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.ones(4, dtype=torch.long)
    return ids, ids[:]


READS_OF_INPUT_VALUES = {
    # the ids as given
    "read": (lambda ids: None, lambda ids: ids, lambda: torch.ones(2, 4, dtype=torch.long)),
    "read, negative": (lambda ids: None, lambda ids: ids, lambda: -torch.ones(2, 4, dtype=torch.int32)),
    "bool": (lambda ids: None, lambda ids: ids.long(), lambda: torch.zeros(2, 4, dtype=torch.bool)),
    # from review: the values were a contiguous copy; on a real device the rows of an expanded tensor are one
    "written through an expanded row": (lambda ids: ids[0].fill_(-1), lambda ids: ids[1],
                                        lambda: torch.ones(1, 4, dtype=torch.long).expand(2, 4)),
    # from review: the copy started at the view's first element, not its storage's
    "its storage read": (lambda ids: None, lambda ids: ids.as_strided((1,), (1,), 0),
                         lambda: torch.cat([-torch.ones(10, dtype=torch.long), torch.ones(10, dtype=torch.long)])[10:]),
    # from review: a write through a real boolean mask did not reach the values
    "written through a cpu mask": (_write_with_a_cpu_mask, lambda ids: ids, lambda: torch.ones(2, 4, dtype=torch.long)),
    # one storage given twice: a write through one is read through the other
    "written through another input": (lambda ids, other: ids.fill_(-1), lambda ids, other: other, _shared),
}  # fmt: skip


@pytest.mark.parametrize("case", list(READS_OF_INPUT_VALUES))
def test_input_data_keeps_its_values_on_meta_and_the_callers_tensor_is_not_written(case: str) -> None:
    edit, read, make = READS_OF_INPUT_VALUES[case]
    data = make()
    inputs = data if isinstance(data, tuple) else (data,)
    given = [tensor.clone() for tensor in inputs]
    meta = paramscope.summary(BranchesOnItsInput(edit, read), input_data=inputs)
    assert all(torch.equal(a, b) for a, b in zip(inputs, given, strict=True))
    made = make()  # the cpu runs on the tensors given, and puts them back
    cpu = paramscope.summary(BranchesOnItsInput(edit, read), input_data=made, device="cpu")
    assert [row[:3] for row in _rows(meta)] == [row[:3] for row in _rows(cpu)]


def test_a_tensor_made_in_the_forward_and_written_through_a_cpu_mask_is_read_as_written() -> None:
    # from review: its values were kept as they were before the write
    def read(ids: torch.Tensor) -> torch.Tensor:
        made = torch.ones(2, 4, device=ids.device)
        _write_with_a_cpu_mask(made)
        return made

    size = {"input_size": (2, 4), "dtypes": ["long"]}
    meta, cpu = (
        paramscope.summary(BranchesOnItsInput(lambda ids: None, read), **size, device=d) for d in ("meta", "cpu")
    )
    assert [row[:3] for row in _rows(meta)] == [row[:3] for row in _rows(cpu)]
    assert _rows(meta)[1][0] == "other"


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_floating_point_input_keeps_its_values_on_meta(sign: float) -> None:
    meta, cpu = (
        paramscope.summary(BranchesOnItsInput(lambda x: None, lambda x: (x @ x.T) * x[:, :2]),
                           input_data=sign * torch.ones(2, 4), device=device)
        for device in ("meta", "cpu")
    )  # fmt: skip
    assert [row[:3] for row in _rows(meta)] == [row[:3] for row in _rows(cpu)]
    assert _rows(meta)[1][0] == ("positive" if sign > 0 else "other")  # 4 × sign in every element


def test_a_large_product_of_inputs_given_has_no_values_on_meta() -> None:
    # from review: the ops on a floating-point input alone run on the cpu too; the Gram matrix of a 2048 × 2048 one
    # (17 GFLOPs) took 1 to 2 s there, where meta computes nothing: it runs on meta alone, and its values are not read
    model = BranchesOnItsInput(lambda x: None, lambda x: x @ x.T)
    with pytest.raises(ForwardError) as raised:
        paramscope.summary(model, input_data=torch.ones(2048, 2048))
    assert str(raised.value) == VALUES_READ_ON_META.replace("[2, 4]", "[2048, 2048]")


def test_a_float_attention_mask_given_is_read_on_meta_as_on_cpu() -> None:
    # from review: nn.TransformerEncoder reads whether the mask is causal (_detect_is_causal_mask), and failed on meta
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    data = {"src": torch.randn(2, 5, 16), "mask": nn.Transformer.generate_square_subsequent_mask(5)}
    meta, cpu = (paramscope.summary(encoder, input_data=data, mode="train", device=d) for d in ("meta", "cpu"))
    assert meta.totals.flops == cpu.totals.flops == torch_flops(encoder, **data)[0]
    assert [row[:3] for row in _rows(meta)] == [row[:3] for row in _rows(cpu)]


def test_an_input_too_large_to_keep_the_values_of_is_named_when_a_read_fails() -> None:
    # the values of 4,194,304 elements are kept; one more, and a read failed with only the generic hint
    model = BranchesOnItsInput(lambda ids: None, lambda ids: ids)
    kept = torch.ones(1 << 22, dtype=torch.long)
    assert _rows(paramscope.summary(model, input_data=kept))[1][0] == "positive"
    for too_large in (torch.ones((1 << 22) + 1, dtype=torch.long), torch.ones((1 << 22) + 1, dtype=torch.long)[:2]):
        with pytest.raises(ForwardError) as raised:
            paramscope.summary(model, input_data=too_large)
        assert str(raised.value) == (
            f"the forward failed in '(model)' with inputs [{too_large.numel()}]: DataDependentOutputException: "
            "aten._local_scalar_dense.default reads a tensor's values (.item(), bool(), a branch on a tensor); an "
            "input given holds 4,194,305 elements, more than the 4,194,304 whose values a forward on meta keeps; "
            f"{META_VALUES_HINT}"
        )


class WithCompiledFunction(nn.Module):
    """A model that calls a function compiled with ``backend`` (None: the function as it is)."""

    def __init__(self, backend: Callable[..., Any] | None) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.mix = self._mix if backend is None else torch.compile(self._mix, backend=backend)

    @staticmethod
    def _mix(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) @ x.mT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.proj(x))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_compiled_function_runs_as_it_is_in_a_summary_and_compiles_after_it(device: str) -> None:
    from torch._dynamo.utils import counters

    compiled: list[torch.fx.GraphModule] = []

    def backend(graph: torch.fx.GraphModule, example_inputs: Any) -> Callable[..., Any]:
        compiled.append(graph)
        return graph.forward

    model = WithCompiledFunction(backend)
    counters.clear()
    report = paramscope.summary(model, input_size=(4, 8), device=device)
    assert (compiled, counters["frames"]["total"]) == ([], 0)  # nothing compiled, nor even traced
    total, _ = torch_flops(WithCompiledFunction(None), torch.randn(4, 8))
    assert report.totals.flops == total == 2 * 4 * 8 * 8 + 2 * 4 * 8 * 4
    model(torch.randn(4, 8))  # the summary left no mark: dynamo compiles the function on its next call
    assert len(compiled) == 1


def test_the_recorder_keeps_dynamo_out_of_its_handler() -> None:
    # In a process of its own: once dynamo has met the handler, it marks the handler's code to skip for good. A
    # compiled function runs as it is under a dispatch mode, but the mode is off the stack while its handler runs,
    # so dynamo, still on for the function, would trace the handler and what it calls.
    code = textwrap.dedent(
        """
        import torch
        from torch._dynamo.utils import counters
        from paramscope.trace import _OpRecorder

        compiled = []
        mix = torch.compile(lambda x: torch.tanh(x) @ x.mT, backend=lambda graph, inputs: compiled.append(graph))
        with _OpRecorder(count_flops=True) as recorder:
            mix(torch.randn(4, 8))
        print(len(compiled), counters["frames"]["total"], recorder.total_flops)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["0", "0", str(2 * 4 * 8 * 4)]


def test_a_summary_on_cpu_does_not_import_dynamo() -> None:
    # torch's own guard on a dispatch mode's handler imports torch._dynamo on the first op: 1.6 s, for a model that
    # never compiles
    code = textwrap.dedent(
        """
        import sys
        import torch
        import paramscope
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())
        report = paramscope.summary(model, input_size=(2, 8), device="cpu")
        print(report.totals.flops, "torch._dynamo" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == [str(2 * 2 * 8 * 8), "False"]


# ---------------------------------------------------------------------------------------------------------------------
# 3. activation bytes


@pytest.mark.parametrize("name", ["resnet18", "gpt2-tiny"])
def test_activation_bytes_equal_what_autograd_saves_on_cpu(built: dict[str, Built], name: str) -> None:
    model, x, report = built[name]
    total, per_path = torch_saved_bytes(model, x)
    assert total > 0
    assert report.totals.activations_bytes == total
    assert report.calls[0].activations_bytes == total  # type: ignore[index]
    for record in report.calls or ():
        assert record.activations_bytes >= 0
        if record.calls:
            assert record.activations_bytes == per_path.get(record.path, 0), record.path
    case = CASES[name]
    cpu = paramscope.summary(model, input_size=case.shape, dtypes=[case.dtype], device="cpu", mode="train")
    assert cpu.totals.activations_bytes == total
    assert "forward pass in train mode on cpu; activations measured in a train-mode forward" in cpu.notes


@pytest.mark.parametrize("name", ["resnet18", "gpt2-tiny"])
def test_an_eval_summary_on_cpu_runs_one_forward_and_says_why_no_activations(
    built: dict[str, Built], name: str
) -> None:
    model, _, _ = built[name]
    case = CASES[name]
    runs = []
    handle = model.register_forward_pre_hook(lambda module, args: runs.append(torch.is_grad_enabled()))
    try:
        cpu = paramscope.summary(model, input_size=case.shape, dtypes=[case.dtype], device="cpu")
    finally:
        handle.remove()
    assert runs == [False]  # the forward asked for, without autograd; no second, train-mode one
    assert cpu.totals.activations_bytes is None
    assert {record.activations_bytes for record in cpu.calls or ()} == {None}
    assert (
        "forward pass in eval mode on cpu; activations not measured: on cpu the summary runs only the forward asked "
        "for, and an eval-mode forward saves nothing for backward (a train-mode summary measures them, and so does "
        "one on meta)"
    ) in cpu.notes


def test_resnet18_activation_bytes_pinned(built: dict[str, Built]) -> None:
    assert built["resnet18"].report.totals.activations_bytes == 22_218_240


def test_activation_bytes_of_a_cpu_train_forward_with_sdpa() -> None:
    model = Attention()
    x = torch.randn(1, 16, 8)
    total, _ = torch_saved_bytes(model, x)
    report = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert report.totals.activations_bytes == total  # the CPU kernel's, not meta's math path


class GradientInside(nn.Module):
    """A physics-informed model: its forward takes the gradient of what it computes with respect to its input, which
    unpacks the tensors autograd saved in the same forward."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            u = self.net(x)
            (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        return torch.cat([u, du], dim=-1)


def test_a_forward_that_takes_gradients_gets_its_saved_tensors_back() -> None:
    model = GradientInside()
    x = torch.randn(4, 2)
    total, per_path = torch_saved_bytes(model, x)
    report = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert report.totals.activations_bytes == total > 0
    assert {r.path: r.activations_bytes for r in report.calls or () if r.calls} == {
        path: per_path.get(path, 0) for path in ("", "net", "net.0", "net.1", "net.2")
    }
    assert report.calls[0].outputs == "[4, 3]"  # type: ignore[index]
    meta = paramscope.summary(model, input_size=(4, 2))  # eval mode on meta, then train mode for the activations
    assert meta.totals.activations_bytes == total


def test_a_backward_after_the_summary_through_its_graph_is_refused_in_words() -> None:
    kept: list[torch.Tensor] = []
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh())
    model.register_forward_hook(lambda module, args, output: kept.append(output))
    paramscope.summary(model, input_size=(2, 8), device="cpu", mode="train")
    with pytest.raises(RuntimeError) as raised:
        kept[0].sum().backward()
    assert str(raised.value) == (
        "a backward through the graph of a paramscope summary, after the summary: its saved tensors are gone"
    )
    assert all(param.grad is None for param in model.parameters())


def live_tensors_and_fake_modes() -> tuple[int, int]:
    """How many tensors and fake tensor modes Python holds, once its garbage collector has run."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    gc.collect()
    kinds = [type(item) for item in gc.get_objects()]  # type(), not isinstance: some modules' __class__ warns
    tensors = sum(issubclass(kind, torch.Tensor) for kind in kinds)
    return tensors, sum(issubclass(kind, FakeTensorMode) for kind in kinds)


@pytest.mark.parametrize(("device", "mode"), [("cpu", "train"), ("meta", "eval"), ("meta", "train")])
def test_a_summary_leaves_no_tensor_behind(device: str, mode: str) -> None:
    # tanh, relu and softmax save their own outputs for backward: the outputs' grad_fn holds what autograd saved
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.ReLU(), nn.Softmax(-1))
    paramscope.summary(model, input_size=(2, 8), device=device, mode=mode)  # torch's first-call caches
    before = live_tensors_and_fake_modes()
    for _ in range(3):
        report = paramscope.summary(model, input_size=(2, 8), device=device, mode=mode)
        assert report.totals.activations_bytes
    assert live_tensors_and_fake_modes() == before


class RaisesAfterALayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)  # with a grad_fn, in the frame the error's traceback holds
        raise ValueError(f"boom after {list(y.shape)}")


@pytest.mark.parametrize(("device", "mode"), [("cpu", "train"), ("meta", "train")])
def test_a_summary_whose_forward_raises_leaves_no_tensor_behind(device: str, mode: str) -> None:
    model = RaisesAfterALayer()

    def failed_summary() -> str:
        with pytest.raises(ForwardError) as raised:
            paramscope.summary(model, input_size=(2, 8), device=device, mode=mode)
        return str(raised.value)

    assert failed_summary().startswith("the forward failed in '(model)' with inputs [2, 8]: ValueError: boom after")
    before = live_tensors_and_fake_modes()
    for _ in range(3):
        failed_summary()
    assert live_tensors_and_fake_modes() == before


# ---------------------------------------------------------------------------------------------------------------------
# 4. output types and keyword inputs


@dataclasses.dataclass
class Output:
    hidden: torch.Tensor
    mask: torch.Tensor
    extra: Any = None
    steps: int = 3


class Pair(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


@dataclasses.dataclass
class Partial:
    """A field the model sets later, or never (init=False, no default): not an attribute until then."""

    logits: torch.Tensor
    loss: torch.Tensor = dataclasses.field(init=False)


class Fields:
    """A record that names its fields as a named tuple does, one of them not set."""

    _fields = ("first", "second")

    def __init__(self, first: torch.Tensor) -> None:
        self.first = first


class Returns(nn.Module):
    def __init__(self, make: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 6)
        self.make = make

    def forward(self, x: torch.Tensor) -> Any:
        return self.make(self.fc(x))


def list_holding_itself(y: torch.Tensor) -> list[Any]:
    out: list[Any] = [y]
    out.append(out)
    return out


def dict_holding_itself(y: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {"logits": y}
    out["all"] = out
    return out


def tuple_in_its_own_list(y: torch.Tensor) -> tuple[torch.Tensor, list[Any]]:
    inner: list[Any] = []
    out = (y, inner)
    inner.append(out)
    return out


def dataclass_holding_itself(y: torch.Tensor) -> Output:
    out = Output(y, y > 0)
    out.extra = out
    return out


OUTPUTS: dict[str, tuple[Callable[[torch.Tensor], Any], str]] = {
    "dict": (lambda y: {"logits": y, "aux": None, "mask": y > 0}, "{logits: [2, 6], aux: None, mask: [2, 6] bool}"),
    "dataclass": (lambda y: Output(y, y > 0), "Output(hidden=[2, 6], mask=[2, 6] bool, extra=None, steps=3)"),
    "namedtuple": (lambda y: Pair(y, y.sum(-1)), "Pair(first=[2, 6], second=[2])"),
    "none": (lambda y: None, "None"),
    "nested": (lambda y: (y, [y[0], (y.sum(),)], ()), "([2, 6], [[6], ([],)], ())"),
    "list": (lambda y: [y, y.to(torch.float16)], "[[2, 6], [2, 6]]"),
    "scalar": (lambda y: y.sum(), "[]"),
    # the forward ran, and the summary said it failed: "AttributeError: 'Partial' object has no attribute 'loss'"
    "dataclass with a field not set": (lambda y: Partial(y), "Partial(logits=[2, 6])"),
    "a record with a field not set": (lambda y: Fields(y), "Fields(first=[2, 6])"),
    # each a container inside itself, written as Python's repr writes it; the summary failed with a RecursionError
    "a list that holds itself": (list_holding_itself, "[[2, 6], [...]]"),
    "a dict that holds itself": (dict_holding_itself, "{logits: [2, 6], all: {...}}"),
    "a tuple in a list it holds": (tuple_in_its_own_list, "([2, 6], [(...)])"),
    "a dataclass that holds itself": (
        dataclass_holding_itself,
        "Output(hidden=[2, 6], mask=[2, 6] bool, extra=Output(...), steps=3)",
    ),
}


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("kind", sorted(OUTPUTS))
def test_output_types(kind: str, device: str) -> None:
    make, expected = OUTPUTS[kind]
    report = paramscope.summary(Returns(make), input_size=(2, 3), device=device)
    assert [(r.path, r.outputs) for r in report.calls or ()] == [("", expected), ("fc", "[2, 6]")]
    assert report.totals.flops == 2 * 2 * 3 * 6


def test_describe_writes_a_container_in_full_each_time_it_is_not_inside_itself() -> None:
    shared = [torch.zeros(2)]
    assert describe([shared, shared, (shared,)]) == "[[[2]], [[2]], ([[2]],)]"  # as repr([s, s, (s,)]) does


@pytest.mark.parametrize("train", [False, True])
def test_a_memory_plan_reads_an_output_that_holds_itself(train: bool) -> None:
    # the activations item was left out ("the forward failed in '(model)' with inputs [2, 3]: RecursionError"); and in
    # training the tensors of an output holding itself under 41 keys were looked for along every path 8 levels deep
    def make(y: torch.Tensor) -> dict[str, Any]:
        out = dict_holding_itself(y)
        out.update((f"again {i}", out) for i in range(40))
        return out

    plan = paramscope.memory(Returns(make), input_size=(2, 3), train=train).memory
    assert plan is not None
    items = {item.name: item.total_bytes for item in plan.items}
    # training (bf16-mixed): fc's input, saved for its weight's gradient, 2 × 3 in bfloat16; inference: the most
    # bytes live at once, fc's output, 2 × 6 in float32
    assert items["activations"] == (2 * 3 * 2 if train else 2 * 6 * 4)
    assert not [note for note in plan.notes if "RecursionError" in note]


def test_the_tensors_in_an_output_that_holds_itself_are_found_once() -> None:
    y = torch.zeros(2)
    assert list(_tensors_in(list_holding_itself(y), depth=8)) == [y]  # [y] 8 times: once per level walked


class HoldsItself(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 6)

    def forward(self, inputs: list[Any]) -> list[Any]:
        assert inputs[1] is inputs  # moved as given, for the forward to read
        return self.fc(inputs[0])


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_input_data_that_holds_itself(device: str) -> None:
    inputs = list_holding_itself(torch.randn(2, 3))
    report = paramscope.summary(HoldsItself(), input_data=[inputs], device=device)
    assert [(r.path, r.inputs, r.outputs) for r in report.calls or ()] == [
        ("", "[[2, 3], [...]]", "[2, 6]"),
        ("fc", "[2, 3]", "[2, 6]"),
    ]


class KeyedByATensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict[Any, str]:
        return {self.fc(x): "a tensor as a key"}


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_tensor_as_a_dicts_key_is_shown_as_a_tensor(device: str) -> None:
    # its text had been its repr: the values and a newline on cpu, FakeTensor(...) on meta
    report = paramscope.summary(KeyedByATensor(), input_size=(2, 4), device=device)
    assert report.calls is not None
    assert report.calls[0].outputs == "{[2, 4]: 'a tensor as a key'}"


class NestsItsOutput(nn.Module):
    def __init__(self, levels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.levels = levels

    def forward(self, x: torch.Tensor) -> Any:
        output: Any = self.fc(x)
        for _ in range(self.levels):
            output = [output]
        return output


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_output_nested_past_pythons_recursion_limit_is_cut_short(device: str) -> None:
    # the forward runs (1,200 lists deep, past the limit of 1,000); describing it had failed as "the forward failed"
    model = NestsItsOutput(1200)
    model(torch.zeros(2, 4))
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert report.calls is not None
    assert report.calls[0].outputs == "[" * 100 + "…" + "]" * 100
    shallow = paramscope.summary(NestsItsOutput(99), input_size=(2, 4), device=device)
    assert shallow.calls is not None
    assert shallow.calls[0].outputs == "[" * 99 + "[2, 4]" + "]" * 99


class ReadsLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, batch: Partial) -> torch.Tensor:
        return self.fc(batch.logits)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_input_dataclass_with_a_field_not_set(device: str) -> None:
    report = paramscope.summary(ReadsLogits(), input_data=Partial(torch.randn(2, 6)), device=device)
    assert [(r.path, r.inputs, r.outputs) for r in report.calls or ()] == [
        ("", "Partial(logits=[2, 6])", "[2, 2]"),
        ("fc", "[2, 6]", "[2, 2]"),
    ]


class KeywordModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        y = self.fc(x) * scale
        return y if mask is None else y.masked_fill(~mask, 0.0)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_dict_input_data_is_keyword_inputs(device: str) -> None:
    inputs = {"x": torch.randn(2, 3), "mask": torch.ones(2, 5, dtype=torch.bool), "scale": 2.0}
    report = paramscope.summary(KeywordModel(), input_data=inputs, device=device)
    assert [(r.path, r.inputs, r.outputs) for r in report.calls or ()] == [
        ("", "(x=[2, 3], mask=[2, 5] bool, scale=2.0)", "[2, 5]"),
        ("fc", "[2, 3]", "[2, 5]"),
    ]
    assert report.totals.flops == 2 * 2 * 3 * 5


class LoaderBatch(collections.defaultdict):  # type: ignore[type-arg]
    """A batch as data loaders hand one over: a mapping whose keys are attributes too (transformers' BatchEncoding),
    here one with a default for a missing key."""

    def __getattr__(self, name: str) -> Any:
        if name not in self:  # not the default: copy asks for __deepcopy__
            raise AttributeError(name)
        return self[name]


class ReadsABatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)

    def forward(self, batch: LoaderBatch) -> torch.Tensor:
        batch["seen"].append(batch.input_ids.shape)  # the default makes the list
        return self.embed(batch.input_ids)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_mapping_in_input_data_keeps_its_type(device: str) -> None:
    batch = LoaderBatch(list)
    batch["input_ids"] = torch.zeros(2, 3, dtype=torch.long)
    expected = shape_text(ReadsABatch()(copy.deepcopy(batch)))
    report = paramscope.summary(ReadsABatch(), input_data=(batch,), device=device)
    assert report.calls[0].outputs == expected
    assert list(batch) == ["input_ids"]  # the caller's batch as it was


class NotADict(MutableMapping[str, Any]):
    """A mapping that keeps its entries in a dict of its own and is not one itself: a shallow copy of it shares that
    dict (a batch of inputs, a module's buffers)."""

    def __init__(self, **entries: Any) -> None:
        self._entries = dict(entries)

    def __getitem__(self, key: str) -> Any:
        return self._entries[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._entries[key] = value

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class ReadsX(nn.Linear):
    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(batch["x"])


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_a_mapping_of_another_kind_in_input_data_keeps_the_callers_tensors(device: str, requires_grad: bool) -> None:
    x = torch.randn(2, 4, requires_grad=requires_grad)
    batch = NotADict(x=x)
    report = paramscope.summary(ReadsX(4, 3), input_data=(batch,), device=device)
    assert report.calls[0].outputs == "[2, 3]"  # type: ignore[index]
    assert batch["x"] is x


GIVEN: list[Any] = []  # outside the model: a summary puts back what the model's own lists hold


class LinearOfEach(nn.Linear):
    """Adds 1 to each tensor of a collection in place, then runs the layer on each; what it was given in ``GIVEN``."""

    def forward(self, inputs: Any) -> list[torch.Tensor]:  # type: ignore[override]
        GIVEN.append((type(inputs), getattr(inputs, "maxlen", None), [x.device.type for x in inputs]))
        return [super(LinearOfEach, self).forward(x.add_(1)) for x in inputs]


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("kind", ["set", "frozenset", "deque"])
def test_sets_and_deques_in_input_data_are_copied_as_lists_are(device: str, kind: str) -> None:
    # copied with their tensors moved, in their type (a deque with its maxlen); the caller's as they were
    a, b = torch.randn(2, 4), torch.randn(3, 4)
    values = a.clone(), b.clone()
    make = {"set": set, "frozenset": frozenset, "deque": lambda items: collections.deque(items, maxlen=5)}[kind]
    inputs = make([a, b])
    GIVEN.clear()
    report = paramscope.summary(LinearOfEach(4, 3), input_data=[inputs], device=device)
    forwards = 2 if device == "meta" else 1  # on meta a second forward, in train mode, measures the activations
    assert [(type(inputs), 5 if kind == "deque" else None, [device, device])] * forwards == GIVEN
    assert report.totals.flops == 2 * 4 * 3 * (2 + 3)
    # a set's tensors in the order of their shapes' texts, whatever order their ids give them; a deque's in its own
    shown = {"set": "{[2, 4], [3, 4]}", "frozenset": "frozenset({[2, 4], [3, 4]})", "deque": "deque([[2, 4], [3, 4]])"}
    assert report.calls[0].inputs == shown[kind]  # type: ignore[index]
    assert type(inputs) is type(make([]))
    assert sorted(map(id, inputs)) == sorted(map(id, (a, b)))
    assert torch.equal(a, values[0])  # the forward's writes put back
    assert torch.equal(b, values[1])


def test_a_set_of_tensors_is_described_the_same_whatever_order_their_ids_give() -> None:
    shapes = [(2, 4), (3,), (5, 1), (1, 1, 1), (7,)]
    texts = {describe({torch.zeros(shape) for shape in shapes}) for _ in range(50)}
    assert texts == {"{[1, 1, 1], [2, 4], [3], [5, 1], [7]}"}


class _Missing:
    """A default told apart by identity, as libraries mark an argument not given."""


MISSING = _Missing()


class OptionalScale(nn.Linear):
    def forward(self, x: torch.Tensor, scale: Any = MISSING) -> torch.Tensor:  # type: ignore[override]
        out = super().forward(x)
        return out if scale is MISSING else out * scale


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_object_given_in_input_data_that_holds_no_tensor_is_passed_as_it_is(device: str) -> None:
    report = paramscope.summary(OptionalScale(4, 3), input_data=[torch.randn(2, 4), MISSING], device=device)
    assert report.calls[0].outputs == "[2, 3]"  # type: ignore[index]


def test_tuple_input_data_is_positional_inputs() -> None:
    report = paramscope.summary(nn.Bilinear(3, 4, 2), input_data=(torch.randn(5, 3), torch.randn(5, 4)))
    assert report.calls[0].inputs == "([5, 3], [5, 4])"  # type: ignore[index]
    assert report.calls[0].outputs == "[5, 2]"  # type: ignore[index]


class IdsAndFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 4)

    def forward(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.embed(ids) + self.fc(features)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_several_input_sizes_one_dtype_each(device: str) -> None:
    report = paramscope.summary(
        IdsAndFeatures(), input_size=[(5,), (5, 4)], dtypes=["long", torch.float32], device=device
    )
    assert [(r.path, r.inputs, r.outputs) for r in report.calls or ()] == [
        ("", "([5], [5, 4])", "[5, 4]"),
        ("embed", "[5]", "[5, 4]"),
        ("fc", "[5, 4]", "[5, 4]"),
    ]
    assert report.totals.flops == 2 * 5 * 4 * 4


# ---------------------------------------------------------------------------------------------------------------------
# 5. the model is never changed


@pytest.fixture
def resnet_mixed() -> nn.Module:
    """resnet18 on CPU with flags, requires_grad and hooks of every kind, and trained BatchNorm statistics."""
    torch.manual_seed(0)
    model = resnet18()
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))  # running stats away from their initial values, num_batches_tracked 1
    model.layer2.eval()
    model.layer1.requires_grad_(False)
    model.fc.register_forward_hook(lambda *args: None)
    model.register_forward_pre_hook(lambda *args: None)
    return model


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_summary_leaves_resnet18_unchanged(resnet_mixed: nn.Module, device: str, mode: str) -> None:
    before = snapshot(resnet_mixed)
    stats = {name: buffer.clone() for name, buffer in resnet_mixed.named_buffers()}
    paramscope.summary(resnet_mixed, input_size=(2, 3, 64, 64), device=device, mode=mode)
    assert_same(before, snapshot(resnet_mixed))
    for name, buffer in resnet_mixed.named_buffers():  # BatchNorm running stats, num_batches_tracked
        assert torch.equal(buffer, stats[name]), name
    assert int(resnet_mixed.bn1.num_batches_tracked) == 1


class AssignsItsParameters(nn.Module):
    """A forward that assigns parameters back to their modules, as some code does (``self.weight = self.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight = self.fc.weight
        self.frozen.bias = self.frozen.bias
        return self.frozen(self.fc(x))


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_that_assigns_a_parameter_to_its_module_again(device: str, mode: str) -> None:
    # on meta it failed: "TypeError: cannot assign 'torch.meta.FloatTensor' as parameter 'weight' (torch.nn.Parameter
    # or None expected)", nn.Module's refusal of the stand-in, which was no Parameter
    model = AssignsItsParameters()
    parameters = dict(model.named_parameters())
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert report.totals.flops == 2 * 2 * 2 * 4 * 4
    assert_same(before, snapshot(model))
    assert all(parameter is parameters[name] for name, parameter in model.named_parameters())


def test_a_memory_plan_of_a_forward_that_assigns_a_parameter_to_its_module_again() -> None:
    # its forward on meta under autocast's casts (bf16-mixed): the stand-ins are Parameters still
    plan = paramscope.memory(AssignsItsParameters(), input_size=(2, 4), train=True).memory
    assert plan is not None
    items = {item.name: item.total_bytes for item in plan.items}
    # fc's input in bfloat16, for its weight's gradient (the frozen layer's weight takes none, and so its input is
    # not saved), and the frozen weight in bfloat16, for fc's output's gradient: autocast caches the casts of weights
    # that take a gradient alone, so that copy is the call's own, kept until backward
    assert items.get("activations") == 2 * 4 * 2 + 4 * 4 * 2, plan.notes


def test_summary_leaves_a_meta_model_unchanged() -> None:
    with torch.device("meta"):
        model = resnet18()
    before = snapshot(model)
    for mode in ("eval", "train"):
        paramscope.summary(model, input_size=(1, 3, 64, 64), mode=mode)
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_that_raises_leaves_the_model_unchanged(device: str, mode: str) -> None:
    model = Boom()
    model.body[0].train()
    model.body[1].eval()
    before = snapshot(model)
    with pytest.raises(ForwardError):
        paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert_same(before, snapshot(model))
    assert all(count == 0 for _, _, count in module_hooks(model))
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert int(model.body[0].num_batches_tracked) == 0


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_summary_called_in_inference_mode_measures_the_activations(device: str, mode: str) -> None:
    # inside torch.inference_mode() autograd records nothing, grad mode or not: the activations were 0, silently
    model, x = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(3, 4)
    expected = None if (device, mode) == ("cpu", "eval") else torch_saved_bytes(model, x)[0]
    before = snapshot(model)
    with torch.inference_mode():
        report = paramscope.summary(model, input_size=(3, 4), device=device, mode=mode)
        given = paramscope.summary(model, input_data=x.clone(), device=device, mode=mode)  # an inference tensor
    assert report.totals.activations_bytes == given.totals.activations_bytes == expected
    assert expected != 0
    assert report.totals.flops == 2 * 3 * (4 * 8 + 8 * 2)
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_inputs_of_input_size_take_torchs_default_dtype(device: str) -> None:
    # a float64 program (torch.set_default_dtype, as scientific code sets it): its model is float64, and so is a
    # tensor it makes; the inputs were float32, and the forward failed ("mat1 and mat2 must have the same dtype")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = nn.Linear(4, 2)
        report = paramscope.summary(model, input_size=(3, 4), device=device, mode="train")
    finally:
        torch.set_default_dtype(previous)
    assert report.calls is not None
    assert (report.calls[0].inputs, report.calls[0].outputs) == ("[3, 4] float64", "[3, 2] float64")
    assert report.totals.activations_bytes == 3 * 4 * 8


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_inputs_of_input_size_take_the_models_float_dtype(device: str, dtype: torch.dtype) -> None:
    # a model stored in bfloat16 refuses float32 inputs on every device ("mat1 and mat2 must have the same dtype")
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8)).to(dtype)
    (tensor,), _ = make_inputs((3, 4), None, None, device, paramscope.inspect(model))
    assert (tensor.dtype, tensor.device.type) == (dtype, device)
    report = paramscope.summary(model, input_size=(3, 4), device=device)
    assert report.totals.flops == 2 * 3 * 4 * 8


def test_inputs_of_a_model_without_float_parameters_take_torchs_default_dtype() -> None:
    counter = nn.Module()
    counter.register_parameter("steps", nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False))
    for model in (nn.ReLU(), counter):
        (tensor,), _ = make_inputs((3, 4), None, None, "meta", paramscope.inspect(model))
        assert tensor.dtype == torch.get_default_dtype()


def test_a_model_file_that_sets_float64_at_import_is_summarised_in_float64(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the default dtype the file sets is put back once the model is built; the model's parameters keep it
    path = tmp_path / "f64.py"
    path.write_text(
        "import torch\nfrom torch import nn\ntorch.set_default_dtype(torch.float64)\n\n"
        "def build():\n    return nn.Linear(4, 3)\n"
    )
    code, out, err = run(capsys, "summary", f"{path}:build", "--input-size", "2,4", "--format", "json", "--quiet")
    assert (code, err) == (0, "")
    assert json.loads(out)["calls"][0]["inputs"] == "[2, 4] float64"
    assert torch.get_default_dtype() == torch.float32


_FLOAT64_PROGRAM = """
import torch
from torch import nn
torch.set_default_dtype(torch.float64)

class Shifted(nn.Linear):
    def forward(self, x):
        shift = torch.linspace(0, 1, self.out_features, device=x.device)  # the default dtype: float64 here
        return super().forward(x) @ torch.eye(self.out_features, device=x.device) + shift

def build():
    return Shifted(4, 3)

def parallel():
    return nn.DataParallel(Shifted(4, 3))  # the summary runs the model inside
"""


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_float64_programs_forward_makes_its_tensors_in_float64(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, device: str, mode: str
) -> None:
    # the file's default dtype, put back for the process once the model is built, is the forward's again: the
    # tensors it makes were float32, and the product with the float64 output failed
    path = tmp_path / "program.py"
    path.write_text(_FLOAT64_PROGRAM)
    code, out, err = run(capsys, "summary", f"{path}:build", "--input-size", "2,4", "--device", device, "--mode", mode,
                         "--format", "json", "--quiet")  # fmt: skip
    assert (code, err) == (0, "")
    root = json.loads(out)["calls"][0]
    assert (root["inputs"], root["outputs"]) == ("[2, 4] float64", "[2, 3] float64")
    assert root["flops"] == 2 * 2 * 4 * 3 + 2 * 2 * 3 * 3
    assert torch.get_default_dtype() == torch.float32
    train = {"train": True, "precision": "fp32"} if mode == "train" else {}  # fp32: no autocast, the file's dtypes
    plan = paramscope.memory(f"{path}:build", input_size=(2, 4), **train)
    assert plan.memory is not None
    assert plan.memory.item("activations").total_bytes > 0
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_float64_programs_wrapped_model_makes_its_tensors_in_float64(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, device: str
) -> None:
    # the forward runs the model the wrapper holds: the file's default dtype is that model's too
    path = tmp_path / "program.py"
    path.write_text(_FLOAT64_PROGRAM)
    code, out, err = run(capsys, "summary", f"{path}:parallel", "--input-size", "2,4", "--device", device,
                         "--format", "json", "--quiet")  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out)["calls"][0]["outputs"] == "[2, 3] float64"
    assert torch.get_default_dtype() == torch.float32


class CalledDirectly(nn.Module):
    """A model whose ``__call__`` runs its layers itself, never its ``forward``, and adds an op of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.second(self.first(x) @ torch.ones(4, 4, device=x.device))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_model_whose_forward_never_runs_still_has_the_root_row(device: str) -> None:
    # the rows had no root, and the first one (first, 20 parameters, 64 FLOPs) stood where the model's should
    report = paramscope.summary(CalledDirectly(), input_size=(2, 4), device=device, mode="train")
    assert report.calls is not None
    root, *rows = report.calls
    assert (root.path, root.type, root.calls, root.params) == ("", "CalledDirectly", 0, 30)
    assert root.flops == report.totals.flops == 2 * 2 * 4 * (4 + 4 + 2)
    assert root.own_flops == 2 * 2 * 4 * 4  # the product in __call__, outside the layers
    assert root.activations_bytes == report.totals.activations_bytes
    assert root.own_activations_bytes == root.activations_bytes - sum(row.activations_bytes or 0 for row in rows)
    assert [row.path for row in rows] == ["first", "second"]
    assert (
        "the model's forward did not run (its __call__ runs its modules itself): its row sums what ran in the call, "
        "inside its modules and outside them"
    ) in report.notes


class AltUp(nn.Module):
    """As Gemma 3n's AltUp: a method of its own (``predict``), which its parent calls, runs one child outside the
    module's forward; the forward runs the other."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.gate = nn.Linear(4, 4)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x).relu()


class CallsAGrandchild(nn.Module):
    """Calls a grandchild itself (through its child's method), as a decoder layer calls AltUp's ``predict`` and a
    multimodal model its language model's ``embed_tokens``."""

    def __init__(self) -> None:
        super().__init__()
        self.altup = AltUp()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.altup(self.altup.predict(x)))


@pytest.mark.parametrize("hooked", [False, True], ids=["wrapped", "hooked"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_child_called_outside_its_parents_forward_counts_in_its_parents_row(device: str, hooked: bool) -> None:
    # The rows did not add up: altup's row held what its forward ran (the gate, 64 FLOPs), its rows under it the
    # proj's 64 FLOPs besides, and the model's rows under it 64 FLOPs fewer than the model
    model, x = CallsAGrandchild(), torch.randn(2, 4)
    if hooked:  # a module with hooks of its own is recorded from hooks, not a wrapper
        model.altup.register_forward_hook(lambda module, args, output: None)
    report = paramscope.summary(model, input_data=x, device=device, mode="train", depth=ALL_DEPTHS)
    _, flops = torch_flops(model, x)
    _, saved = torch_saved_bytes(model, x)
    by_path = rows(report)
    assert by_path["altup"].flops == flops["altup.proj"] + flops["altup.gate"] == 2 * (2 * 2 * 4 * 4)
    assert by_path["altup"].own_flops == 0
    assert by_path["altup"].activations_bytes == saved["altup"] + saved["altup.proj"]
    for parent in ("", "altup"):
        children = [row for row in report.calls or () if row.path.rpartition(".")[0] == parent and row.path]
        assert by_path[parent].flops == by_path[parent].own_flops + sum(row.flops for row in children)
        assert by_path[parent].activations_bytes == (by_path[parent].own_activations_bytes or 0) + sum(
            row.activations_bytes or 0 for row in children
        )
    assert by_path[""].flops == report.totals.flops == flops[""]
    assert by_path[""].activations_bytes == report.totals.activations_bytes


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_multimodal_models_language_model_row_holds_its_embeddings(device: str) -> None:
    # LLaVA looks its tokens up with the language model's embed_tokens itself, then calls the language model on the
    # embeddings: the language model's row left out the 128 bytes of ids the lookup saves, which its row shows
    transformers = pytest.importorskip("transformers")
    shared = {"vocab_size": 100, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32}  # fmt: skip
    vision = {"image_size": 16, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2}  # fmt: skip
    config = transformers.LlavaConfig(text_config=shared, vision_config=vision, image_token_id=99)
    model, ids = transformers.LlavaForConditionalGeneration(config).eval(), torch.randint(0, 90, (2, 8))
    report = paramscope.summary(model, input_data={"input_ids": ids}, device=device, mode="train", depth=ALL_DEPTHS)
    with attention_as_on_a_gpu() if device == "meta" else contextlib.nullcontext():  # one key head for two
        _, saved = torch_saved_bytes(model, input_ids=ids)
    by_path = rows(report)
    language = "model.language_model"
    assert saved[f"{language}.embed_tokens"] == 2 * 8 * 8  # the ids, int64
    assert by_path[language].activations_bytes == saved[language] + saved[f"{language}.embed_tokens"]
    assert by_path["model"].activations_bytes == (by_path["model"].own_activations_bytes or 0) + sum(
        row.activations_bytes or 0 for row in report.calls or () if row.depth == 2 and row.path.startswith("model.")
    )


class OwnGenerators(nn.Module):
    """A model drawing noise from random generators of its own: one an attribute, one in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.generator = torch.Generator().manual_seed(0)
        self.generators = [torch.Generator().manual_seed(1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator) + torch.rand(x.shape, generator=self.generators[0])
        return self.fc(x) + noise.to(x.device)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_summary_leaves_the_models_own_random_generators_as_they_were(device: str, mode: str) -> None:
    # the draws run for real, on the cpu (on meta too): the model's next noise is what it would have been
    model = OwnGenerators()
    states = [model.generator.get_state(), model.generators[0].get_state()]
    paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert all(map(torch.equal, [model.generator.get_state(), model.generators[0].get_state()], states))


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_parameter_of_a_wrapper_subclass_runs_on_cpu_too(device: str, mode: str) -> None:
    # torchao's quantized weights are such subclasses: their data lies in the plain tensors they hold, and their own
    # storage has no address ("Attempted to access the data pointer on an invalid python storage" on cpu)
    from torch.testing._internal.two_tensor import TwoTensor

    model = nn.Linear(8, 4)
    weight = model.weight = nn.Parameter(TwoTensor(torch.randn(4, 8), torch.randn(4, 8)))
    inner = [weight.a, weight.b]  # type: ignore[attr-defined]
    values = [tensor.clone() for tensor in inner]
    report = paramscope.summary(model, input_size=(3, 8), device=device, mode=mode)
    assert report.totals.flops == 2 * 3 * 8 * 4
    assert report.totals.activations_bytes == (None if (device, mode) == ("cpu", "eval") else 3 * 8 * 4)  # the input
    assert model.weight is weight
    assert weight.grad is None
    assert [weight.a, weight.b] == inner  # type: ignore[attr-defined]  # the same tensors (a list compares by identity first)
    assert all(map(torch.equal, inner, values))


def test_an_input_of_a_wrapper_subclass_saved_for_backward_counts_the_tensors_it_holds() -> None:
    from torch.testing._internal.two_tensor import TwoTensor

    x = TwoTensor(torch.randn(3, 8), torch.randn(3, 8))
    report = paramscope.summary(nn.Linear(8, 4), input_data=x, device="cpu", mode="train")
    assert report.totals.activations_bytes == 2 * 3 * 8 * 4  # the Linear's input: its two 3 × 8 float32 tensors


class DrawsFromTheGivenGenerator(nn.Module):
    """A forward that draws noise from the generator it is given (diffusers' AutoencoderKL takes one to sample its
    latents)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.fc(x) + torch.randn(x.shape, generator=generator).to(x.device)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_generator_given_in_input_data_draws_next_what_it_would_have(device: str, mode: str) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = {"x": torch.randn(2, 4), "generator": generator}
    report = paramscope.summary(DrawsFromTheGivenGenerator(), input_data=inputs, device=device, mode=mode)
    assert report.calls[0].outputs == "[2, 4]"  # type: ignore[index]
    assert torch.equal(torch.randn(8, generator=generator), torch.randn(8, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_batch_norm_that_reads_its_batch_count_runs_on_meta(mode: str) -> None:
    # momentum=None: a cumulative average, whose factor is 1 / num_batches_tracked, read with float() in the forward;
    # on meta the count had no value ("DataDependentOutputException: aten._local_scalar_dense.default reads a
    # tensor's values")
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=None))
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(3, 4), mode=mode)
    assert report.totals.activations_bytes == torch_saved_bytes(model, torch.randn(3, 4))[0]
    assert report.totals.flops == 2 * 3 * 4 * 6
    assert_same(before, snapshot(model))
    assert int(model[1].num_batches_tracked) == 0


class RandomDraws(nn.Module):
    """A forward that draws random numbers from torch's generator (and Python's and numpy's): a layer skipped at
    random (LayerDrop, drawn on the cpu, on meta too) and dropout."""

    def __init__(self, fails: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)
        self.fails = fails

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) < 2.0 and random.random() < 2.0 and np.random.rand() < 2.0:  # Python's and numpy's too
            x = self.fc(x)
        x = self.drop(x)
        if self.fails:
            raise ValueError("boom")
        return x


@pytest.mark.parametrize("fails", [False, True])
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_summary_leaves_torchs_random_numbers_as_they_were(device: str, mode: str, fails: bool) -> None:
    # the inputs of input_size and the forward's draws: what a script seeded for its training draws next is the same
    # with a summary before it
    model = RandomDraws(fails)
    state, python, numpy = torch.get_rng_state(), random.getstate(), np.random.get_state()
    with pytest.raises(ForwardError) if fails else contextlib.nullcontext():
        paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert torch.equal(torch.get_rng_state(), state)
    # from review: Python's and numpy's generators were left drawn from
    assert random.getstate() == python
    assert all(np.array_equal(now, before) for now, before in zip(np.random.get_state(), numpy, strict=True))


CUDA_GENERATOR = torch.Generator().manual_seed(2)
"""A cpu generator that stands for the one CUDA device's in the tests below: there is no GPU here."""


class DrawsOnCuda(nn.Module):
    """A forward that draws from CUDA's generator (the stand-in for it: the model does not hold it)."""

    def __init__(self, fails: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fails = fails

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x) + torch.rand(x.shape, generator=CUDA_GENERATOR).to(x.device)
        if self.fails:
            raise ValueError("boom")
        return x


def one_cuda_device(monkeypatch: pytest.MonkeyPatch, *, initialized: bool) -> list[str]:
    """torch.cuda's functions as CUDA initialized (or not) on one device, whose generator is CUDA_GENERATOR; the
    names of those called, in order."""
    called: list[str] = []

    def get_rng_state_all() -> list[torch.Tensor]:
        called.append("get_rng_state_all")
        return [CUDA_GENERATOR.get_state()]

    def set_rng_state_all(states: list[torch.Tensor]) -> None:
        called.append("set_rng_state_all")
        (state,) = states
        CUDA_GENERATOR.set_state(state)

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialized)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", get_rng_state_all)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_rng_state_all)
    return called


RUNS: dict[str, Callable[[nn.Module], Any]] = {
    "summary on meta, eval": lambda model: paramscope.summary(model, input_size=(2, 4)),  # two forwards
    "summary on meta, train": lambda model: paramscope.summary(model, input_size=(2, 4), mode="train"),
    "summary on cpu, eval": lambda model: paramscope.summary(model, input_size=(2, 4), device="cpu"),
    "summary on cpu, train": lambda model: paramscope.summary(model, input_size=(2, 4), device="cpu", mode="train"),
    "memory": lambda model: paramscope.memory(model, input_size=(2, 4)),  # the peak of live tensors
    "memory of training": lambda model: paramscope.memory(model, input_size=(2, 4), train=True),
}


class Symmetric(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.triu() + weight.triu(1).transpose(-1, -2)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_forward_inside_parametrize_cached_leaves_torchs_cache_as_it_was(run: str) -> None:
    # torch.nn.utils.parametrize.cached() keeps each parametrized weight in a dict of torch's, once computed, until the
    # block ends: a summary's forward (on meta: a fake tensor) left its weight there, and the caller's next forward in
    # the block failed on it (meta), or ran on the summary's graph (cpu); a weight cached before, on the cpu, failed
    # the summary's forward on meta
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    parametrize.register_parametrization(model[0], "weight", Symmetric())
    x = torch.randn(2, 4)
    expected = model(x)
    fresh = RUNS[run](model)
    with parametrize.cached():
        model(x)
        before = dict(parametrize._cache)
        report = RUNS[run](model)
        assert parametrize._cache == before
        assert torch.equal(model(x), expected)
    assert report.totals == fresh.totals
    assert report.memory == fresh.memory
    with parametrize.cached():  # nothing cached yet: the forward's weight stays out of torch's dict
        RUNS[run](model)
        assert parametrize._cache == {}


@pytest.mark.parametrize("fails", [False, True])
@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_forward_leaves_cudas_random_numbers_as_they_were(
    monkeypatch: pytest.MonkeyPatch, run: str, fails: bool
) -> None:
    # only the cpu's generator was put back: a script seeded for its training on a GPU drew other numbers after one
    called = one_cuda_device(monkeypatch, initialized=True)
    state = CUDA_GENERATOR.get_state()
    with pytest.raises(ForwardError) if fails and run.startswith("summary") else contextlib.nullcontext():
        RUNS[run](DrawsOnCuda(fails))
    assert torch.equal(CUDA_GENERATOR.get_state(), state)
    # each forward read the states before it and set them back after it
    forwards = len(called) // 2
    assert forwards >= 1
    assert called == ["get_rng_state_all", "set_rng_state_all"] * forwards


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_forward_does_not_initialize_cuda(monkeypatch: pytest.MonkeyPatch, run: str) -> None:
    # reading CUDA's generators would initialize CUDA: not initialized, they are left alone
    called = one_cuda_device(monkeypatch, initialized=False)
    RUNS[run](DrawsOnCuda())
    assert called == []


class RemovesItsParametrization(nn.Module):
    """A forward that bakes its weight norm in on its first call: torch deletes the weight's property from the
    module's own class, and gives it its class back."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = parametrizations.weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if parametrize.is_parametrized(self.fc):
            parametrize.remove_parametrizations(self.fc, "weight")
        return self.fc(x)


class AddsAParametrization(nn.Module):
    """A forward that puts a weight norm on its layer on its first call: torch gives the module a class of its own,
    and the weight becomes a property of it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not parametrize.is_parametrized(self.fc):
            parametrizations.weight_norm(self.fc)
        return self.fc(x)


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("model_class", [RemovesItsParametrization, AddsAParametrization])
def test_a_parametrization_the_forward_adds_or_removes_is_put_back(model_class: type[nn.Module], device: str) -> None:
    # the class was left as the forward made it (with a weight property deleted), and the model failed after. Not
    # compared with a deep copy: one of a parametrized module shares its class, which a forward changes.
    torch.manual_seed(0)
    model = model_class()
    torch.manual_seed(0)
    twin = model_class()
    cls, properties = type(model.fc), dict(vars(type(model.fc)))
    x = torch.randn(2, 4)
    before = snapshot(model)
    report = paramscope.summary(model, input_data=x, device=device)
    assert report.totals.flops == torch_flops(twin, x)[0] == 2 * 2 * 4 * 3  # the matmul (weight norm's op counts 0)
    assert type(model.fc) is cls
    assert vars(type(model.fc)) == properties
    assert_same(before, snapshot(model))
    assert torch.equal(model(x), twin(x))


class FailsAfterCallingItself(nn.Module):
    """A forward that runs itself once, then fails: the inner call's return is not the forward's."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, inner: bool = False) -> torch.Tensor:
        if inner:
            return self.fc(x)
        self(x, inner=True)
        raise ValueError("the outer call fails")


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_that_fails_after_calling_itself_fails(device: str) -> None:
    model = FailsAfterCallingItself()
    model.register_buffer("scale", torch.ones(1))  # weights to stand in for on cpu too
    with pytest.raises(ForwardError, match=r"ValueError: the outer call fails$"):
        paramscope.summary(model, input_size=(2, 4), device=device)


class HooksItsWeight(nn.Module):
    """A forward that registers hooks on its weight, and sets an attribute on it: the weight itself, which it holds
    in a closure (on meta, the forward's ``self.fc.weight`` is a stand-in)."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = calls
        weight = self.fc.weight
        self.weight_itself = lambda: weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_itself()
        weight.register_hook(lambda grad: self.calls.append("hook"))
        weight.register_post_accumulate_grad_hook(lambda weight: self.calls.append("post-accumulate hook"))
        weight.seen = True
        return self.fc(x)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_hooks_and_attributes_the_forward_puts_on_a_weight_are_put_back(device: str, mode: str) -> None:
    # on cpu, where the forward runs on the weights themselves, they stayed: a later backward ran the hooks
    calls: list[str] = []
    model = HooksItsWeight(calls)
    own = model.fc.bias.register_hook(lambda grad: calls.append("the user's hook"))
    paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert (model.fc.weight._backward_hooks, model.fc.weight._post_accumulate_grad_hooks) == (None, None)
    assert "seen" not in vars(model.fc.weight)
    calls.clear()
    model.fc(torch.randn(2, 4)).sum().backward()
    assert calls == ["the user's hook"]
    own.remove()  # the user's handle still removes it
    calls.clear()
    model.fc(torch.randn(2, 4)).sum().backward()
    assert calls == []


class Settings:
    """Options given to a forward, in slots."""

    __slots__ = ("flag", "scale")

    def __init__(self) -> None:
        self.scale = 2.0


class SetsAFlag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, settings: Settings) -> torch.Tensor:
        settings.flag = True
        return self.fc(x) * settings.scale


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_input_object_with_slots_is_copied_for_the_forward(device: str) -> None:
    settings = Settings()
    report = paramscope.summary(SetsAFlag(), input_data={"x": torch.randn(2, 4), "settings": settings}, device=device)
    assert rows(report)["fc"].outputs == "[2, 3]"
    assert not hasattr(settings, "flag")
    assert settings.scale == 2.0


class KeepsWhatItIsGiven(nn.Linear):
    def __init__(self, seen: list[Any]) -> None:
        super().__init__(4, 3)
        self.record = seen.append  # not a list of the model's, which the summary would put back

    def forward(self, x: torch.Tensor, given: Any = None) -> torch.Tensor:
        self.record(given)
        return super().forward(x)


@pytest.mark.parametrize("value", [Path("weights"), Fraction(1, 3)], ids=["path", "fraction"])
def test_a_standard_library_value_with_slots_is_passed_as_itself(value: Any) -> None:
    # a Path, a Fraction: values, not states a forward changes; code may test them by identity
    seen: list[Any] = []
    paramscope.summary(KeepsWhatItIsGiven(seen), input_data={"x": torch.randn(2, 4), "given": value})
    assert len(seen) == 2  # on meta, the forward asked for and the one that measures the activations
    assert all(item is value for item in seen)


class SparseBufferConvolution(nn.Module):
    """A GCN layer: its graph's adjacency a sparse buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("adjacency", torch.eye(5).to_sparse())
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(self.adjacency, torch.tanh(self.fc(x)))


def test_a_sparse_buffer_is_no_activation() -> None:
    # it failed with torch's "Cannot access storage of SparseTensorImpl"
    model = SparseBufferConvolution()
    x = torch.randn(5, 3)
    before = snapshot(model)
    report = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert report.totals.activations_bytes == torch_saved_bytes(model, x)[0] > 0
    assert_same(before, snapshot(model))
    # on meta, torch has no kernel of a sparse product: said, with what to do
    with pytest.raises(ForwardError, match=r"'SparseMeta' backend.*try --device cpu$"):
        paramscope.summary(model, input_data=x)
    assert_same(before, snapshot(model))


# ---------------------------------------------------------------------------------------------------------------------
# 6. a forward that raises


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_forward_error_names_the_module_and_its_inputs(device: str) -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(Boom(), input_size=(2, 4), device=device)
    assert str(caught.value) == "the forward failed in 'body.1' with inputs [2, 4]: ValueError: boom"
    assert isinstance(caught.value, paramscope.TargetError)
    assert isinstance(caught.value.__cause__, ValueError)


def test_forward_error_in_the_model_itself_shows_the_first_line() -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(BoomAtTheTop(), input_size=(2, 4))
    assert str(caught.value) == "the forward failed in '(model)' with inputs [2, 4]: ValueError: boom"


def test_forward_error_with_keyword_inputs() -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(KeywordModel(), input_data={"x": torch.randn(2, 4)})
    assert str(caught.value).startswith("the forward failed in 'fc' with inputs [2, 4]: RuntimeError: ")


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_sys_exit_in_a_forward_is_a_forward_error(device: str, mode: str) -> None:
    model = Quit()
    before = snapshot(model)
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert str(caught.value) == "the forward failed in '(model)' with inputs [2, 4]: SystemExit: 5"
    assert isinstance(caught.value.__cause__, SystemExit)
    assert_same(before, snapshot(model))
    assert all(count == 0 for _, _, count in module_hooks(model))
    assert int(model.body[0].num_batches_tracked) == 0


def test_device_cpu_runs_a_data_dependent_forward() -> None:
    report = paramscope.summary(DataDependent(), input_data=torch.ones(2, 4), device="cpu")
    assert report.totals.flops == 2 * 2 * 4 * 4


def test_a_forward_that_reads_values_on_meta_is_told_to_run_on_cpu() -> None:
    # the forward runs on torch's fake tensors, which name the op that needs values
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(DataDependent(), input_size=(2, 4))
    assert str(caught.value) == VALUES_READ_ON_META
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(Nonzero(), input_size=(2, 4))
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 4]: DynamicOutputShapeException: aten.nonzero.default makes "
        f"a tensor whose size follows values (as nonzero() and a boolean mask do); {META_VALUES_HINT}"
    )
    # failures of the model's own get no hint: a shape, an abstract forward, a word that only starts with "meta"
    for model, size in [(nn.Linear(4, 4), (2, 3)), (Raises(NotImplementedError("subclasses run")), (2, 4)),
                        (Raises(KeyError("metadata")), (2, 4))]:  # fmt: skip
        with pytest.raises(ForwardError) as caught:
            paramscope.summary(model, input_size=size)
        assert "try --device cpu" not in str(caught.value)


# (model, input dtype, the message on meta): layers whose products torch's meta kernels run in mixed dtypes
MIXED_DTYPES = {
    "Linear": (nn.Linear(4, 3), torch.float16, "addmm takes operands of one dtype, not float32, float16 and float32"),
    "Linear without bias": (
        nn.Linear(4, 3, bias=False),
        torch.bfloat16,
        "mm takes operands of one dtype, not bfloat16 and float32",
    ),
    "Conv2d without bias": (
        nn.Conv2d(4, 3, 1, bias=False),
        torch.float16,
        "convolution takes operands of one dtype, not float16 and float32",
    ),
    "ConvTranspose2d": (
        nn.ConvTranspose2d(4, 3, 1),
        torch.float64,
        "convolution takes operands of one dtype, not float64, float32 and float32",
    ),
    "RNNCell": (nn.RNNCell(4, 3), torch.float16, "addmm takes operands of one dtype, not float32, float16 and float32"),
}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("layer", list(MIXED_DTYPES))
def test_operands_in_different_dtypes_are_refused_on_meta_as_on_cpu(layer: str, mode: str) -> None:
    # a float16 input to a float32 layer: every device refuses the product; torch's meta kernels gave a result
    model, dtype, message = MIXED_DTYPES[layer]
    size = (2, 4, 5, 5) if "Conv" in layer else (2, 4)
    inputs = f"{list(size)} {str(dtype).removeprefix('torch.')}"  # the dtype that fails, shown
    with pytest.raises(ForwardError, match=r"type") as caught:  # torch's words: "same dtype", "Input type ... weight"
        paramscope.summary(model, input_size=size, dtypes=[dtype], device="cpu", mode=mode)
    assert str(caught.value).startswith(f"the forward failed in '(model)' with inputs {inputs}: RuntimeError: ")
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=size, dtypes=[dtype], mode=mode)
    assert str(caught.value) == f"the forward failed in '(model)' with inputs {inputs}: RuntimeError: {message}"


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_half_precision_input_to_a_float32_convolution_names_its_dtype_in_the_error(device: str) -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(nn.Conv2d(3, 8, 3), input_size=(1, 3, 8, 8), dtypes=[torch.float16], device=device)
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [1, 3, 8, 8] float16: RuntimeError: Input type (c10::Half) and "
        "bias type (float) should be the same"
    )
    with pytest.raises(ForwardError) as caught:  # float32, torch's default, is not named
        paramscope.summary(nn.Conv2d(3, 8, 3).half(), input_size=(1, 3, 8, 8), dtypes=[torch.float32], device=device)
    assert str(caught.value).startswith("the forward failed in '(model)' with inputs [1, 3, 8, 8]: RuntimeError: ")


class Autocast(nn.Module):
    """A float16 input to a float32 layer under autocast, which casts both on the cpu (on meta it applies to
    nothing): the forward runs on meta too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.fc(x.half())


def test_operands_in_different_dtypes_run_on_meta_under_autocast() -> None:
    for device in ("cpu", "meta"):
        report = paramscope.summary(Autocast(), input_size=(2, 4), device=device)
        assert report.totals.flops == 2 * 2 * 4 * 3


@torch.library.custom_op("paramscope_tests::doubled", mutates_args=())
def doubled(x: torch.Tensor) -> torch.Tensor:
    """A custom op with a CPU kernel and no fake implementation: it cannot run on meta."""
    return x * 2


class Doubles(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return doubled(self.fc(x))


def test_a_custom_op_without_a_fake_implementation_on_meta_is_told_to_run_on_cpu() -> None:
    assert paramscope.summary(Doubles(), input_size=(2, 4), device="cpu").totals.flops == 2 * 2 * 4 * 4
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(Doubles(), input_size=(2, 4))
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 4]: RuntimeError: There was no fake impl registered for "
        "<CustomOpDef(paramscope_tests::doubled)>. This is necessary for torch.compile/export/fx tracing to work. "
        f"Please use `doubled.register_fake` to add an fake impl.; {META_VALUES_HINT}"
    )


class Forces(nn.Module):
    """An energy model whose forward also returns the forces, minus the energy's gradient by the positions (as
    machine-learned potentials do): the forward runs autograd itself."""

    def __init__(self) -> None:
        super().__init__()
        self.energy = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = positions.requires_grad_()
        energy = self.energy(positions).sum()
        (gradient,) = torch.autograd.grad(energy, positions, create_graph=self.training)
        return energy, -gradient


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_that_takes_gradients_in_eval_mode_is_told_why_it_fails(device: str) -> None:
    model = Forces().eval()
    model(torch.randn(5, 3))  # a plain forward runs with gradients on
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(5, 3), device=device)
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [5, 3]: RuntimeError: element 0 of tensors does not require grad "
        "and does not have a grad_fn; an eval-mode summary runs the forward without gradients, as torch.no_grad() "
        "does: a forward that takes gradients itself needs torch.enable_grad() around them, or --mode train"
    )
    report = paramscope.summary(model, input_size=(5, 3), device=device, mode="train")
    assert report.calls is not None
    assert report.calls[0].outputs == "([], [5, 3])"


_FLOAT_INDICES = {
    ("embedding", "cpu"): "Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, "
    "Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ("embedding", "meta"): "Expected tensor for argument #1 'indices' to have one of the following scalar types: "
    "Long, Int; but got torch.float32 instead",
    ("bag", "cpu"): "Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; "
    "but got torch.FloatTensor instead (while checking arguments for embedding_bag)",
    ("bag", "meta"): "expected indices to be long or int, got torch.float32",
}


@pytest.mark.parametrize(("kind", "device"), list(_FLOAT_INDICES))
def test_float_inputs_to_an_embedding_are_told_to_be_long(kind: str, device: str) -> None:
    embedding = nn.Embedding(10, 4) if kind == "embedding" else nn.EmbeddingBag(10, 4)
    model = nn.Sequential(embedding, nn.Linear(4, 2))
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 3), device=device)
    assert str(caught.value) == (
        f"the forward failed in '0' with inputs [2, 3]: RuntimeError: {_FLOAT_INDICES[kind, device]}; an embedding "
        "looks up integer token ids: give it long inputs (--input-dtype long, dtypes=['long'])"
    )
    report = paramscope.summary(model, input_size=(2, 3), dtypes=["long"], device=device)
    assert report.calls is not None
    assert report.calls[0].outputs == ("[2, 3, 2]" if kind == "embedding" else "[2, 2]")  # a bag sums each row
    with pytest.raises(ForwardError) as caught:  # the caller's own inputs: no dtypes to set
        paramscope.summary(model, input_data=torch.zeros(2, 3), device=device)
    assert str(caught.value).endswith(
        f"{_FLOAT_INDICES[kind, device]}; an embedding looks up integer token ids: give it long inputs"
    )


class MadeOnTheCpu(nn.Linear):
    """A forward that makes a tensor without ``device=`` (on the cpu) and adds it to its own: CPU-only code."""

    def __init__(self, first: bool) -> None:
        super().__init__(3, 3)
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.zeros(3) + out if self.first else out + torch.zeros(3)


@pytest.mark.parametrize("first", [True, False])
def test_a_forward_that_makes_a_tensor_on_the_cpu_is_told_why_meta_refuses_it(first: bool) -> None:
    # the hint was the one for values meta does not have, which says nothing of the device
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(MadeOnTheCpu(first), input_size=(2, 3))
    devices = "cpu and meta" if first else "meta and cpu"
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 3]: FakeTensorDeviceMismatchError: Expected all tensors to "
        f"be on the same device, but found at least two devices, {devices}!; the forward made a tensor on the cpu "
        "(no device=) and used it with the model's, which the meta device refuses as a GPU does: try --device cpu"
    )
    report = paramscope.summary(MadeOnTheCpu(first), input_size=(2, 3), device="cpu")
    assert report.calls is not None
    assert report.calls[0].outputs == "[2, 3]"


class HoldsTensorsOnTheCpu(nn.Module):
    """A model that holds tensors as plain attributes, not buffers: on the cpu, where ``model.to()`` leaves them."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.lin.table = torch.ones(3, 4) if where == "attribute" else None
        self.tables = [torch.zeros(2), torch.ones(3, 4)] if where == "list" else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self.lin.table if self.lin.table is not None else self.tables[1]
        return (self.lin(x) * table).sum()


@pytest.mark.parametrize("where", ["attribute", "list"])
def test_a_model_holding_a_tensor_on_the_cpu_is_told_so_on_meta(where: str) -> None:
    # from review: the hint said the forward made a tensor on the cpu, where the model held it
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(HoldsTensorsOnTheCpu(where), input_size=(3, 4))
    held = "lin.table" if where == "attribute" else "tables[0], tables[1]"
    assert str(caught.value).endswith(
        f"two devices, meta and cpu!; the model holds a tensor on the cpu that is not a parameter nor a buffer "
        f"({held}), which model.to() does not move either (register_buffer moves it), or the forward made one there "
        "(no device=); the meta device refuses to use it with the model's, as a GPU does: try --device cpu"
    )
    assert paramscope.summary(HoldsTensorsOnTheCpu(where), input_size=(3, 4), device="cpu").totals.flops == 96


class RefusedAsTorch211Does(nn.Linear):
    """A forward that fails as torch 2.11's fake tensors refuse a cpu tensor with a meta one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("Unhandled FakeTensor Device Propagation for aten.add.Tensor, found two different devices "
                           "cpu, meta")  # fmt: skip


def test_a_tensor_made_on_the_cpu_is_told_so_in_torch_211s_words_too() -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(RefusedAsTorch211Does(3, 3), input_size=(2, 3))
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 3]: RuntimeError: Unhandled FakeTensor Device Propagation "
        "for aten.add.Tensor, found two different devices cpu, meta; the forward made a tensor on the cpu (no "
        "device=) and used it with the model's, which the meta device refuses as a GPU does: try --device cpu"
    )


def test_a_forward_that_converts_its_own_modules_on_meta_is_told_to_run_on_cpu() -> None:
    # SwitchTransformers' router calls self.classifier.to(self.dtype) in its forward: torch swaps a fake tensor's
    # parameter for the converted one, which the fake tensor refuses; the message named torch's swap alone
    transformers = pytest.importorskip("transformers")
    config = transformers.SwitchTransformersConfig(vocab_size=64, d_model=16, d_kv=8, d_ff=32, expert_capacity=8,
                                                   num_layers=2, num_sparse_encoder_layers=1, num_decoder_layers=2,
                                                   num_sparse_decoder_layers=1, num_heads=2, num_experts=2,
                                                   decoder_start_token_id=0)  # fmt: skip
    model = transformers.SwitchTransformersForConditionalGeneration(config).eval()
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(1, 8), dtypes=["long"])
    assert str(caught.value) == (
        "the forward failed in 'encoder.block.1.layer.1.mlp.router' with inputs [1, 8, 16]: RuntimeError: _apply(): "
        "Couldn't swap Linear.weight; the model's forward converts its own modules (Module.to()), which the forward on "
        "meta, on fake tensors, cannot do: try --device cpu"
    )
    ids = torch.zeros(1, 8, dtype=torch.long)
    with torch.no_grad():
        logits = model(ids, decoder_input_ids=ids).logits
    report = paramscope.summary(model, input_size=(1, 8), dtypes=["long"], device="cpu")
    assert report.calls is not None
    assert report.calls[0].outputs.startswith(f"Seq2SeqMoEOutput{{logits: {list(logits.shape)}")


class AuxiliaryInTraining(nn.Module):
    """Runs a module in training alone, as Inception's auxiliary classifier runs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.aux = nn.Sequential(nn.Linear(4, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h + self.aux(h) if self.training else h


class RunsAnAuxiliary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = AuxiliaryInTraining()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


def test_modules_run_in_training_alone_have_rows_in_an_eval_summary() -> None:
    # An eval-mode summary on meta measures the activations in a train-mode forward, which ran block.aux too: its
    # bytes counted in block's row (96 B) and no row under it held them (the own 32 B and fc's 32 B), and block.aux
    # was listed among the modules not called, "or unused"
    model, x = RunsAnAuxiliary(), torch.randn(2, 4)
    report = paramscope.summary(model, input_data=x, depth=ALL_DEPTHS)
    _, saved = torch_saved_bytes(model, x)
    assert [(row.path, row.calls, row.flops, row.activations_bytes) for row in report.calls or ()] == [
        ("", 1, 2 * 2 * 4 * (4 + 2), saved[""]),
        ("block", 1, 2 * 2 * 4 * 4, saved["block"]),
        ("block.fc", 1, 2 * 2 * 4 * 4, saved["block.fc"]),
        ("block.aux", 0, 0, saved["block.aux"]),
        ("block.aux.0", 0, 0, saved["block.aux.0"]),
        ("block.aux.1", 0, 0, saved["block.aux.1"]),
        ("head", 1, 2 * 2 * 4 * 2, saved["head"]),
    ]
    by_path = rows(report)
    assert by_path["block"].activations_bytes == (by_path["block"].own_activations_bytes or 0) + sum(
        by_path[path].activations_bytes or 0 for path in ("block.fc", "block.aux")
    )
    assert by_path["block.aux"].params == 20
    assert (
        "3 module(s) ran only in the train-mode forward that measured the activations, not in this one: block.aux, "
        "block.aux.0, block.aux.1; their rows hold those activations alone"
    ) in report.notes
    assert not any("not called" in note for note in report.notes)


class AuxiliaryAfterBlocks(nn.Module):
    """A list of blocks, then a head in a ModuleDict that runs in training alone, then the output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2)])
        self.extra = nn.ModuleDict({"head": nn.Linear(4, 4)})
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.training:
            x = x + self.extra["head"](x)
        return self.out(x)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_module_run_in_training_alone_is_placed_where_it_ran_at_every_depth(depth: int) -> None:
    # the order the forward runs them in, as its code reads: the blocks, the extra head, the output layer
    ran = ["", "blocks", "blocks.0", "blocks.0.0", "blocks.0.1", "blocks.1", "blocks.1.0", "blocks.1.1", "extra",
           "extra.head", "out"]  # fmt: skip
    report = paramscope.summary(AuxiliaryAfterBlocks(), input_size=(2, 4), depth=depth)
    assert [row.path for row in report.calls or ()] == [path for path in ran if path_depth(path) <= depth]


class HeadsInTraining(nn.Module):
    """Runs a module before the others, and a list of heads, in training alone."""

    def __init__(self) -> None:
        super().__init__()
        self.pre, self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.heads = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = self.pre(x)
        x = self.fc(x)
        if self.training:
            x = x + sum(head(x) for head in self.heads)
        return self.out(x)


def test_modules_run_in_training_alone_have_rows_in_their_place() -> None:
    model, x = HeadsInTraining(), torch.randn(2, 4)
    report = paramscope.summary(model, input_data=x, depth=ALL_DEPTHS)
    _, saved = torch_saved_bytes(model, x)
    assert [(row.path, row.calls, row.activations_bytes) for row in report.calls or ()] == [
        ("", 1, saved[""]),
        ("pre", 0, saved["pre"]),
        ("fc", 1, saved["fc"]),
        ("heads", 0, saved["heads.0"] + saved.get("heads.1", 0)),  # a container: its heads' sum
        ("heads.0", 0, saved["heads.0"]),
        ("heads.1", 0, saved.get("heads.1", 0)),
        ("out", 1, saved["out"]),
    ]
    root = rows(report)[""]
    assert root.activations_bytes == (root.own_activations_bytes or 0) + sum(
        row.activations_bytes or 0 for row in report.calls or () if row.depth == 1
    )


class BlockWithAuxiliary(nn.Module):
    """A layer, and a module after it that runs in training alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.aux = nn.Linear(2, 2), nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return self.aux(x) if self.training else x


def test_many_modules_run_in_training_alone_are_placed_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each such module's row was placed by scanning the rows for the one before it and inserting it into the list:
    # the square of the modules (300 blocks: 136,350 reads of a row's path for 901 rows; 4,000 blocks took 1.1 s)
    model = nn.Sequential(*[BlockWithAuxiliary() for _ in range(300)])
    first_calls: list[str] = []  # the train-mode forward's order, which the rows follow
    names = {module: name for name, module in model.named_modules()}
    handle = nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: first_calls.append(names[module]) if names[module] not in first_calls else None
    )
    try:
        model(torch.randn(1, 2))
    finally:
        handle.remove()
    model.eval()

    class CountedRecord(paramscope.CallRecord):
        reads = 0

        def __getattribute__(self, name: str) -> Any:
            if name == "path":
                CountedRecord.reads += 1
            return super().__getattribute__(name)

    reads_placing: list[int] = []
    place = paramscope._summary._place_trained_only

    def counted_place(records: list[paramscope.CallRecord], *args: Any) -> None:
        before = CountedRecord.reads
        place(records, *args)
        reads_placing.append(CountedRecord.reads - before)

    monkeypatch.setattr(paramscope._summary, "CallRecord", CountedRecord)
    monkeypatch.setattr(paramscope._summary, "_place_trained_only", counted_place)
    report = paramscope.summary(model, input_size=(1, 2))
    assert [row.path for row in report.calls or ()] == first_calls
    assert len(first_calls) == 1 + 3 * 300
    assert reads_placing[0] <= 2 * len(first_calls)
    assert [row.path for row in report.calls or () if row.calls == 0] == [f"{i}.aux" for i in range(300)]


class GuardsItsActivations(nn.Module):
    """Reads checks of its activations for infinities and NaNs, as DETR's encoder layers do in training and BART's
    in float16; and one of a tensor with values of its own, which the forward on meta knows."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x).relu()
        if self.training and not torch.isfinite(h).all():
            h = h.clamp(-1e4, 1e4)
        if torch.isinf(h).any() or h.isnan().any():
            h = torch.nan_to_num(h)
        if torch.isinf(torch.full((1,), float("inf"))).all():  # true on every device
            h = h * 2
        return self.fc(h)


FINITE_CHECKS_NOTE = (
    "on meta, the forward read {} check(s) of its activations for infinities or NaNs (torch.isfinite, isinf, isnan: "
    "BART's guard against float16 overflow, DETR's in training), answered as for finite values, as a real device "
    "answers them in a healthy forward (a summary with --device cpu runs with the values)"
)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_checks_of_the_activations_for_infinities_are_answered_on_meta(mode: str) -> None:
    # They read values a fake tensor has not: the train-mode forward failed, and with it the activations (null in
    # eval mode, an error in train mode)
    model, x = GuardsItsActivations(), torch.randn(2, 4)
    report = paramscope.summary(model, input_data=x, mode=mode)
    assert report.totals.flops == torch_flops(model, x)[0] == 2 * (2 * 2 * 4 * 4)
    assert report.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    assert FINITE_CHECKS_NOTE.format(3) in report.notes  # in training: isfinite, isinf and isnan
    on_cpu = paramscope.summary(model, input_data=x, device="cpu", mode=mode)
    assert not any("infinities" in note for note in on_cpu.notes)


class EditsItsCheck(nn.Module):
    """Writes to its check of the activations through a view before it reads it: the answer follows the write."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(x)
        finite = torch.isfinite(hidden)
        finite[0] = False
        return hidden * 2 if finite.all() else hidden


def test_a_check_written_to_through_a_view_is_not_answered_as_finite() -> None:
    model, x = EditsItsCheck(), torch.randn(2, 4)
    assert torch_flops(model, x)[0] == 2 * 2 * 4 * 4  # on cpu, the multiplication by 2 is not taken
    with pytest.raises(ForwardError, match=r"reads a tensor's values"):  # meta cannot know the values after the write
        paramscope.summary(model, input_data=x)


def test_a_training_plan_measures_a_model_that_checks_its_activations() -> None:
    # the plan had no activations item: "the forward failed in '(model)' ... reads a tensor's values"
    model = GuardsItsActivations()
    report = paramscope.memory(model, train=True, input_size=(2, 4), precision="fp32")
    assert report.memory is not None
    items = {item.name: item.total_bytes for item in report.memory.items}
    assert items["activations"] == torch_saved_bytes(model, torch.randn(2, 4))[0]
    assert FINITE_CHECKS_NOTE.format(3) in report.memory.notes


def test_a_float16_bart_runs_on_meta() -> None:
    # BART's encoder layers check their float16 activations for overflow, a read of values: the summary failed
    transformers = pytest.importorskip("transformers")
    config = transformers.BartConfig(vocab_size=100, d_model=16, encoder_layers=2, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=32)  # fmt: skip
    model, ids = transformers.BartForConditionalGeneration(config).half().eval(), torch.randint(3, 100, (2, 8))
    report = paramscope.summary(model, input_data={"input_ids": ids, "decoder_input_ids": ids})
    assert report.totals.flops == torch_flops(model, input_ids=ids, decoder_input_ids=ids)[0]
    assert FINITE_CHECKS_NOTE.format(2) in report.notes  # one for each encoder layer


def test_transformers_attention_masks_run_on_meta() -> None:
    # transformers reads a mask's values to decide whether it may skip it. On meta, a mask given keeps its values: a
    # mask of ones is skipped, as on CPU, and one with padding is kept, its explicit form an input of the attention
    # layers. (BART's decoder makes a mask of its own, of ones: known on meta too.)
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bart = transformers.BartModel(transformers.BartConfig(
        vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
    )).eval()  # fmt: skip
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1,
    )).eval()  # fmt: skip
    ids, padded = torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long)
    padded[1, 12:] = 0
    kept = {}
    for model, inputs in [(bart, {"input_ids": ids}), (bart, {"input_ids": ids, "attention_mask": ids}),
                          (llama, {"input_ids": ids, "attention_mask": ids}),
                          (llama, {"input_ids": ids, "attention_mask": padded})]:  # fmt: skip
        meta = paramscope.summary(model, input_data=inputs, depth=ALL_DEPTHS)
        cpu = paramscope.summary(model, input_data=inputs, device="cpu", depth=ALL_DEPTHS)
        assert [(call.path, call.inputs) for call in meta.calls or ()] == [
            (call.path, call.inputs) for call in cpu.calls or ()
        ]
        assert meta.totals.flops == cpu.totals.flops == torch_flops(model, **inputs)[0]
        if model is llama:
            kept[inputs["attention_mask"] is padded] = rows(meta)["model.layers.0.self_attn"].inputs
    assert "attention_mask" not in kept[False]  # skipped: transformers passes None
    assert "attention_mask=[2, 1, 16, 16] bool" in kept[True]


def tiny_decoders() -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """Llama, Mistral (grouped-query attention) and BART, tiny, with the inputs of a forward without a cache."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    shared = {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    ids = torch.randint(3, 100, (2, 8))
    bart = transformers.BartForConditionalGeneration(
        transformers.BartConfig(
            vocab_size=100,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=64,
            dropout=0.0,
        )
    )  # fmt: skip: no dropout, whose mask meta keeps as CUDA does, not as the cpu (test_autocast)
    return {
        "llama": (transformers.LlamaForCausalLM(transformers.LlamaConfig(**shared)), {"input_ids": ids}),
        "mistral": (transformers.MistralForCausalLM(transformers.MistralConfig(**shared)), {"input_ids": ids}),
        "bart": (bart, {"input_ids": ids, "decoder_input_ids": ids}),
    }


@pytest.mark.parametrize("name", ["llama", "mistral", "bart"])
def test_a_decoder_without_a_cache_saves_on_meta_what_it_saves_on_cpu(name: str) -> None:
    # Without a cache (training turns it off), transformers checks the position ids Llama makes (arange) for packed
    # sequences, and the all-ones mask BART's decoder makes for padding; a fake tensor's values are unknown, so on
    # meta both kept a mask, which took attention off the fused kernel (Llama's and Mistral's grouped keys and
    # values repeated for every head and saved): 82,368 bytes for Llama's 77,248, BART's 512 more
    model, inputs = tiny_decoders()[name]
    inputs = {**inputs, "use_cache": False}
    truth, _ = torch_saved_bytes(model, **inputs)
    with attention_as_on_a_gpu() if name != "bart" else contextlib.nullcontext():  # Llama's grouped heads in float32
        on_a_gpu, _ = torch_saved_bytes(model, **inputs)
    meta, cpu = (paramscope.summary(model, input_data=inputs, device=device, mode="train", depth=ALL_DEPTHS)
                 for device in ("meta", "cpu"))  # fmt: skip
    assert (meta.totals.activations_bytes, cpu.totals.activations_bytes) == (on_a_gpu, truth)
    assert [(call.path, call.inputs) for call in meta.calls or ()] == [
        (call.path, call.inputs) for call in cpu.calls or ()
    ]


class MasksItsIds(nn.Module):
    """A decoder given a mask, or position ids, computed from its input ids."""

    def __init__(self, decoder: nn.Module, given: str) -> None:
        super().__init__()
        self.decoder, self.given = decoder, given

    def forward(self, ids: torch.Tensor) -> Any:
        ones = (ids >= 0).long()
        if self.given == "attention_mask":
            return self.decoder(input_ids=ids, attention_mask=ones)
        return self.decoder(input_ids=ids, position_ids=ones.cumsum(-1) - 1, use_cache=False)


MASK_CHECK_NOTE = (
    "on meta, transformers' masks could not read the values of an input they check ({}), and kept the mask as under "
    "a trace; on a real device the values decide (a mask of ones is skipped, position ids of one sequence each are "
    "not packed), and the attention kernel and the activations may follow them: --device cpu runs with them"
)


def test_a_mask_check_on_values_given_on_meta_reads_them_as_cpu_does() -> None:
    # position ids or a mask given as inputs keep their values on meta: transformers reads them as on a real device
    # (these are one sequence each, and all ones: the mask is skipped), where it kept the mask, with a note
    model, inputs = tiny_decoders()["llama"]
    ids = inputs["input_ids"]
    for given in (
        {"position_ids": torch.arange(8)[None], "use_cache": False},
        {"attention_mask": torch.ones_like(ids)},
    ):
        data = {**inputs, **given}
        meta = paramscope.summary(model, input_data=data, mode="train")
        cpu = paramscope.summary(model, input_data=data, mode="train", device="cpu")
        assert [(call.path, call.inputs) for call in meta.calls or ()] == [
            (call.path, call.inputs) for call in cpu.calls or ()
        ]
        assert not [note for note in meta.notes if "masks" in note]


@pytest.mark.parametrize(
    ("given", "check"),
    [("position_ids", "find_packed_sequence_indices"), ("attention_mask", "_ignore_causal_mask_sdpa")],
)
def test_a_mask_check_on_values_meta_has_not_is_told(given: str, check: str) -> None:
    # computed from ids made from sizes, which have no values on meta: transformers keeps the mask, a real device may
    # not, and the note says so instead of passing it off as the CPU's
    model, inputs = tiny_decoders()["llama"]
    shape = inputs["input_ids"].shape
    report = paramscope.summary(MasksItsIds(model, given), input_size=shape, dtypes=["long"], mode="train")
    assert MASK_CHECK_NOTE.format(check) in report.notes


def test_transformers_is_tracing_is_its_own_again_after_a_forward_on_meta() -> None:
    # masking_utils.is_tracing answers for the values a forward on meta knows while it runs, in its thread alone
    transformers = pytest.importorskip("transformers")
    masking = transformers.masking_utils
    original = masking.is_tracing
    model, inputs = tiny_decoders()["llama"]
    seen: list[tuple[bool, bool]] = []
    elsewhere: list[bool] = []

    def spy(module: nn.Module, args: Any, kwargs: Any) -> None:
        fake = kwargs["position_ids"]  # the arange Llama made: its values are known
        seen.append((masking.is_tracing(fake), masking.is_tracing(torch.empty(2, device="meta"))))
        thread = threading.Thread(target=lambda: elsewhere.append(masking.is_tracing(fake)))
        thread.start()
        thread.join()
        raise RuntimeError("stop")

    handle = model.model.layers[0].register_forward_pre_hook(spy, with_kwargs=True)
    try:
        with pytest.raises(ForwardError, match="stop"):
            paramscope.summary(model, input_data={**inputs, "use_cache": False}, mode="train")
    finally:
        handle.remove()
    assert seen == [(False, True)]  # the empty tensor made here has no values known
    assert elsewhere == [True]  # another thread: a fake tensor, as transformers sees it
    assert masking.is_tracing is original


def tiny_t5(kind: str = "T5ForConditionalGeneration") -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                   decoder_start_token_id=0, dropout_rate=0.0)  # fmt: skip
    return getattr(transformers, kind)(config).eval()


@pytest.mark.parametrize("dropout", [0.1, 0.0])
def test_attention_with_dropout_that_runs_fused_on_meta_is_told(dropout: float) -> None:
    """T5's cross-attention calls scaled_dot_product_attention with its dropout in train mode: meta runs the fused
    kernel a GPU runs, torch's CPU kernel refuses dropout and takes the math path, which saves more (2,432 B more
    here): the note says so, and only where it happens."""
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                   dropout_rate=dropout)  # fmt: skip
    model, ids = transformers.T5ForConditionalGeneration(config), torch.zeros(2, 8, dtype=torch.long)
    inputs = {"input_ids": ids, "decoder_input_ids": ids}
    meta = paramscope.summary(model, input_data=inputs, mode="train")
    cpu = paramscope.summary(model, input_data=inputs, mode="train", device="cpu")
    assert cpu.totals.activations_bytes == torch_saved_bytes(model, **inputs)[0]
    said = [note for note in meta.notes if "attention call" in note]
    if dropout:
        assert meta.totals.activations_bytes < cpu.totals.activations_bytes
        assert said == [
            "activations of 1 attention call(s) with dropout, as a GPU's fused kernel saves them (on meta); torch's "
            "CPU kernel refuses dropout and runs the math path, which also keeps the attention matrix and the "
            "dropout mask: a summary with --device cpu --mode train measures cpu's"
        ]
    else:
        assert meta.totals.activations_bytes == cpu.totals.activations_bytes
        assert said == []
    plan = paramscope.memory(model, input_size=(2, 8), train=True, precision="fp32").memory
    assert plan is not None
    assert [note for note in plan.notes if "attention call" in note] == said  # its training forward runs on meta


class PackedAttention(nn.Module):
    """Attention on a packed projection, whose queries and keys are made contiguous as (batch, heads, length, dim)
    where ``contiguous`` (as a partial rotary's ``cat`` leaves them: Phi, GPT-NeoX), or left as views of the
    projection, batch first (as Llama's are), before an output projection."""

    def __init__(self, contiguous: bool) -> None:
        super().__init__()
        self.contiguous = contiguous
        self.qkv, self.o = nn.Linear(32, 96), nn.Linear(32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, 4, 8).permute(2, 0, 3, 1, 4).unbind(0)
        if self.contiguous:
            q, k = q.contiguous(), k.contiguous()
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(batch, length, 32))


BATCH_FIRST_NOTE = (
    "{} float32 attention call(s) laid their output out batch first, as a GPU's fused kernel does (on meta); torch's "
    "CPU kernel follows the query's layout, so the transpose and reshape before the output projection may copy it on "
    "one and not the other, and the projection save that copy: on cpu where the query is not batch first, on a GPU "
    "(and meta) in nn.MultiheadAttention: a summary with --device cpu --mode train measures cpu's"
)


class BatchFirstSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


def test_multihead_attentions_copy_of_a_batch_first_output_on_meta_is_told() -> None:
    # from review: the note said only that cpu may save a copy more; nn.MultiheadAttention copies the batch-first
    # output a GPU lays out for its projection, and the CPU's, laid out as its query, it does not
    torch.manual_seed(0)
    model, x = BatchFirstSelfAttention(), torch.randn(2, 5, 16)
    meta = paramscope.summary(model, input_data=x, mode="train")
    cpu = paramscope.summary(model, input_data=x, mode="train", device="cpu")
    assert cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    assert meta.totals.activations_bytes - cpu.totals.activations_bytes == 2 * 5 * 16 * 4  # one attention output
    assert [note for note in meta.notes if "batch first" in note] == [BATCH_FIRST_NOTE.format(1)]


@pytest.mark.parametrize("contiguous", [True, False], ids=["query-contiguous", "query-batch-first"])
def test_float32_attention_laid_out_batch_first_on_meta_is_told(contiguous: bool) -> None:
    """On meta, a float32 attention's output is laid out batch first, as CUDA's memory-efficient kernel lays it out;
    torch's CPU kernel follows the query's layout, so where the query is not batch first the transpose and reshape
    before the output projection copies it on cpu, and the projection saves that copy: one attention output more
    (1 × 16 × 32 float32, 2,048 B) than on meta. The note says so, and only where it happens."""
    torch.manual_seed(0)
    model, x = PackedAttention(contiguous), torch.randn(1, 16, 32)
    meta = paramscope.summary(model, input_data=x, mode="train")
    cpu = paramscope.summary(model, input_data=x, mode="train", device="cpu")
    assert cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    said = [note for note in meta.notes if "batch first" in note]
    if contiguous:
        assert cpu.totals.activations_bytes - meta.totals.activations_bytes == 1 * 16 * 32 * 4
        assert said == [BATCH_FIRST_NOTE.format(1)]
    else:
        assert meta.totals.activations_bytes == cpu.totals.activations_bytes
        assert said == []
    assert not [note for note in cpu.notes if "batch first" in note]
    # in eval mode, what the train-mode forward on meta that measures the activations met, once
    assert [note for note in paramscope.summary(model, input_data=x).notes if "batch first" in note] == said
    plan = paramscope.memory(model, input_size=(1, 16, 32), train=True, precision="fp32").memory
    assert plan is not None
    assert [note for note in plan.notes if "batch first" in note] == said  # its training forward runs on meta


def test_attention_of_one_query_is_not_told_laid_out_otherwise_on_meta() -> None:
    """One query (a decoding step): its dimension of size 1 has any stride, and the layouts of meta's and the CPU's
    outputs are the same, whatever strides they give it."""
    model, x = PackedAttention(contiguous=True), torch.randn(1, 1, 32)
    meta = paramscope.summary(model, input_data=x, mode="train")
    cpu = paramscope.summary(model, input_data=x, mode="train", device="cpu")
    assert meta.totals.activations_bytes == cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    assert not [note for note in meta.notes if "batch first" in note]


DECODER_NOTE = (
    "the decoder ran on the input ids again (decoder_input_ids [2, 16]): an encoder-decoder's decoder takes inputs of "
    "its own (the Python API's input_data gives others)"
)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_encoder_decoder_from_shapes_runs_its_decoder_on_the_same_ids(device: str) -> None:
    # T5 raises without decoder inputs ("You must specify exactly one of input_ids or inputs_embeds"), so a summary
    # from --input-size alone could not run; transformers' own dummy inputs give the decoder the same ids
    model = tiny_t5()
    ids = torch.zeros(2, 16, dtype=torch.long)
    report = paramscope.summary(model, input_size=(2, 16), dtypes=["long"], device=device, depth=ALL_DEPTHS)
    assert DECODER_NOTE in report.notes
    assert rows(report)[""].inputs == "([2, 16], decoder_input_ids=[2, 16])"
    assert report.totals.flops == torch_flops(model, ids, decoder_input_ids=ids)[0]
    logits = model(ids, decoder_input_ids=ids).logits
    assert f"logits: {list(logits.shape)}" in report.calls[0].outputs


def test_an_encoder_decoder_from_the_cli_runs_its_decoder_on_the_same_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_t5().config.save_pretrained(tmp_path)
    argv = ("summary", str(tmp_path), "--input-size", "2,16", "--input-dtype", "long", "--format", "json", "--quiet")
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert DECODER_NOTE in report["notes"]
    assert report["calls"][0]["inputs"] == "([2, 16], decoder_input_ids=[2, 16])"


def test_inputs_given_run_as_they_are_and_decoder_inputs_given_are_kept() -> None:
    model = tiny_t5()
    ids = torch.zeros(2, 16, dtype=torch.long)
    with pytest.raises(ForwardError, match=r"^the forward failed in 'decoder' .*You must specify exactly one of"):
        paramscope.summary(model, input_data=ids)
    given = paramscope.summary(model, input_data={"input_ids": ids, "decoder_input_ids": ids[:, :3]})
    assert rows(given)[""].inputs == "(input_ids=[2, 16], decoder_input_ids=[2, 3])"
    assert DECODER_NOTE not in given.notes
    # a second input by position is T5's attention_mask, not the decoder's: the decoder still gets the ids
    two = paramscope.summary(model, input_size=[(2, 16), (2, 16)], dtypes=["long"])
    assert rows(two)[""].inputs == "([2, 16], [2, 16], decoder_input_ids=[2, 16])"


def tiny_whisper() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8, max_source_positions=30,
        max_target_positions=20, pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=0,
    )  # fmt: skip
    return transformers.WhisperForConditionalGeneration(config).eval()


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_encoder_decoder_of_audio_features_runs_its_decoder_on_one_token(device: str) -> None:
    # Whisper's first input is audio features, not ids to repeat: its decoder starts as generate() starts it
    model = tiny_whisper()
    report = paramscope.summary(model, input_size=(2, 8, 60), device=device)
    assert rows(report)[""].inputs == "([2, 8, 60], decoder_input_ids=[2, 1])"
    assert (
        "the decoder ran on one token per sample, as generate() starts (decoder_input_ids [2, 1]): an "
        "encoder-decoder's decoder takes inputs of its own (the Python API's input_data gives others)"
    ) in report.notes
    features, start = torch.randn(2, 8, 60), torch.zeros(2, 1, dtype=torch.long)
    assert report.totals.flops == torch_flops(model, features, decoder_input_ids=start)[0]


def test_models_without_a_decoder_input_get_none() -> None:
    # T5EncoderModel's config says encoder-decoder, but its forward takes no decoder inputs; float inputs are not ids
    encoder = paramscope.summary(tiny_t5("T5EncoderModel"), input_size=(2, 16), dtypes=["long"])
    assert rows(encoder)[""].inputs == "[2, 16]"
    assert not [note for note in encoder.notes if "decoder_input_ids" in note]
    embeds = paramscope.summary(tiny_t5(), input_data={"inputs_embeds": torch.randn(2, 16, 16),
                                                      "decoder_inputs_embeds": torch.randn(2, 4, 16)})  # fmt: skip
    assert not [note for note in embeds.notes if "decoder_input_ids" in note]


class LayerDrop(nn.Module):
    """Skips its layer at random in training, on a number drawn on the cpu (wav2vec2's LayerDrop)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.rand([]) < 0.0:  # never skips, but reads the draw
            return x
        return self.fc(x) * torch.tensor(2.0).item()  # a cpu constant, read


def test_values_on_the_cpu_are_read_on_meta() -> None:
    report = paramscope.summary(LayerDrop(), input_size=(2, 4), mode="train")
    assert report.totals.flops == 2 * 2 * 4 * 4


# ways a forward replaces the data of a tensor it made from no data (known on meta, see _on_meta._Values) with data
# made from its input (unknown on meta), none of them a write the op's schema declares on a tensor argument
OVERWRITES: dict[str, Callable[[torch.Tensor, torch.Tensor], Any]] = {
    "set_ to a tensor": lambda made, data: made.set_(data),
    "set_ to a storage": lambda made, data: made.set_(data.untyped_storage()),
    ".data =": lambda made, data: setattr(made, "data", data),
    "_foreach_copy_": lambda made, data: torch._foreach_copy_([made], [data]),
    "_foreach_add_": lambda made, data: torch._foreach_add_([made], [data]),
}


class BranchesOnItsOwnTensor(nn.Module):
    """Makes a tensor of zeros, overwrites it with its input plus one (never zero here), and runs its layer once more
    where the tensor is not all zeros."""

    def __init__(self, overwrite: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.overwrite = overwrite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        made = torch.zeros(4, device=x.device)
        self.overwrite(made, x[0].detach().abs() + 1)
        return self.fc(self.fc(x)) if made.any() else self.fc(x)


@pytest.mark.parametrize("overwrite", list(OVERWRITES))
def test_a_tensor_made_on_meta_and_overwritten_with_data_has_no_values(overwrite: str) -> None:
    # the values kept on the cpu for the zeros stayed, and meta ran the layer once (32 FLOPs for the CPU's 64): once
    # overwritten with data from the input, the tensor has no values on meta, and its read is told to run on cpu
    model = BranchesOnItsOwnTensor(OVERWRITES[overwrite])
    cpu = paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert cpu.totals.flops == torch_flops(model, torch.randn(2, 4))[0] == 2 * (2 * 2 * 4 * 4)
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4))
    assert str(caught.value) == VALUES_READ_ON_META


class ResizesItsOwnTensor(nn.Module):
    """Makes a tensor of zeros, resizes it to twice its size, and runs its layer once more where it is not all zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        made = torch.zeros(4, device=x.device).resize_(8)
        return self.fc(self.fc(x)) if made.any() else self.fc(x)


def test_the_elements_a_resize_adds_have_no_values_on_meta() -> None:
    # torch leaves the elements resize_ adds uninitialised (whatever the memory held, on any device): on meta, the
    # values kept on the cpu took those of the cpu's memory, and the branch followed them
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(ResizesItsOwnTensor(), input_size=(2, 4))
    assert str(caught.value) == VALUES_READ_ON_META


class FillsAnEmptyTensor(nn.Module):
    """Writes the sizes of its feature maps into a tensor made with ``torch.empty``, element by element, and checks
    them against the features' length, as the RT-DETR family of transformers (RT-DETR, D-FINE, DEIMv2, PP-DocLayout)
    does with its ``spatial_shapes``; with ``blank``, also reads an element it never wrote."""

    def __init__(self, blank: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.blank = blank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.conv(x), self.conv(x[..., ::2, ::2])]
        shapes = torch.empty((len(features) + self.blank, 2), device=x.device, dtype=torch.long)
        for level, feature in enumerate(features):
            shapes[level, 0], shapes[level, 1] = feature.shape[-2:]
        flat = torch.cat([feature.flatten(2) for feature in features], 2)
        if shapes[: len(features)].prod(1).sum() != flat.shape[-1] or (self.blank and shapes[-1, 0] == 0):
            raise ValueError("sizes and features differ")
        return flat


def test_a_tensor_made_empty_and_filled_from_no_data_is_read_on_meta() -> None:
    # torch.empty's values were unknown on meta, and so were those the forward wrote into it (the sizes of its
    # features), so the check read no value: RT-DETR's family could not be summarised on meta. Every element written
    # before it is read, the values are the ones a real device reads.
    x = torch.randn(2, 3, 8, 8)
    meta, cpu = (paramscope.summary(FillsAnEmptyTensor(), input_data=x, device=d) for d in ("meta", "cpu"))
    assert meta.calls[0].outputs == cpu.calls[0].outputs == "[2, 4, 80]"  # type: ignore[index]
    assert meta.totals.flops == cpu.totals.flops == torch_flops(FillsAnEmptyTensor(), x)[0] == 2 * 2 * 4 * 3 * 80
    # an element never written holds whatever the memory held, on any device: it has no value on meta
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(FillsAnEmptyTensor(blank=True), input_size=(2, 3, 8, 8))
    assert str(caught.value) == VALUES_READ_ON_META.replace("[2, 4]", "[2, 3, 8, 8]")


class CopiesIntoABuffer(nn.Module):
    """Copies its input, or a tensor made with ``torch.empty`` and written in part, into a buffer, and reads it."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.source = source

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.source == "input":
            source = ids
        else:
            source = torch.empty(ids.shape, dtype=torch.long, device=ids.device)
            source[0] = 1  # the other row never written
        buffer = torch.empty(ids.shape, dtype=torch.long, device=ids.device)
        buffer.copy_(source)
        return self.linear(ids.float()) * int(buffer.sum())


@pytest.mark.parametrize("source", ["input", "written-in-part"])
def test_a_copy_of_elements_without_values_has_none_on_meta(source: str) -> None:
    # from the review of the empty-tensor change: a copy took its source's elements as values wherever its
    # destination was a small empty tensor, and the input's stand-in (made empty, of 64 bytes here) read as zeros
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(CopiesIntoABuffer(source), input_size=(2, 4), dtypes=["long"])
    assert str(caught.value) == VALUES_READ_ON_META


def test_a_copy_of_an_input_given_reads_its_values_on_meta() -> None:
    ids = torch.full((2, 4), 3)
    meta, cpu = (paramscope.summary(CopiesIntoABuffer("input"), input_data=ids, device=d) for d in ("meta", "cpu"))
    assert [row[:4] for row in _rows(meta)] == [row[:4] for row in _rows(cpu)]
    assert meta.totals.flops == torch_flops(CopiesIntoABuffer("input"), ids)[0] > 0


class MakesEmptyTensorsThenCounts(nn.Module):
    """Makes and frees small tensors with ``torch.empty``, then adds to position ids and reads one."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(5):
            sizes = torch.empty(2, dtype=torch.long, device=x.device)
            sizes[0], sizes[1] = x.shape
            del sizes
        positions = torch.arange(4, device=x.device)
        positions += 1  # a new storage may take a freed one's address
        return self.linear(x) * positions[0].item()


def test_a_storage_at_a_freed_empty_tensors_address_keeps_its_values_on_meta() -> None:
    # from the review of the empty-tensor change: what was kept of a freed empty tensor was kept by its storage's
    # address, and a write to another storage at that address forgot that storage's values
    x = torch.randn(2, 4)
    meta, cpu = (paramscope.summary(MakesEmptyTensorsThenCounts(), input_data=x, device=d) for d in ("meta", "cpu"))
    assert meta.totals.flops == cpu.totals.flops == torch_flops(MakesEmptyTensorsThenCounts(), x)[0]


class MaskedOnCpu(nn.Module):
    """Indexes its activations with boolean masks made on the cpu, as a GPU model may too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = self.fc(x)[:, torch.tensor([True, False, True, False, True])]
        kept[:, torch.tensor([True, False, True])] = 0
        return kept


def test_a_boolean_mask_made_on_the_cpu_indexes_on_meta() -> None:
    meta, cpu = (paramscope.summary(MaskedOnCpu(), input_size=(2, 5, 4), device=device) for device in ("meta", "cpu"))
    assert meta.calls[0].outputs == cpu.calls[0].outputs == "[2, 3, 4]"  # type: ignore[index]


_revlib = torch.library.Library("paramscope_tests", "DEF")  # an extension's op, with a cpu kernel alone
_revlib.define("double(Tensor x) -> Tensor")
_revlib.impl("double", lambda x: x * 2, "CPU")


class CallsAnExtension(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.paramscope_tests.double(x)


def test_an_op_without_a_meta_kernel_is_named_and_told_to_run_on_cpu() -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(CallsAnExtension(), input_size=(2, 4))
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 4]: UnsupportedOperatorException: "
        f"paramscope_tests.double.default has no meta kernel (nor a fake implementation); {META_VALUES_HINT}"
    )
    assert paramscope.summary(CallsAnExtension(), input_size=(2, 4), device="cpu").calls[0].outputs == "[2, 4]"  # type: ignore[index]


class Nonzero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[x > 0]  # a size that follows the values


def test_eval_summary_of_a_model_that_only_runs_in_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)).eval()
    model(torch.randn(1, 8))  # fine in eval mode
    report = paramscope.summary(model, input_size=(1, 8))
    assert report.totals.flops == 2 * 8 * 8
    assert report.totals.activations_bytes is None
    assert all(record.activations_bytes is None for record in report.calls or ())
    assert report.notes[-2] == (
        "forward pass in eval mode on meta; activations not measured: no train-mode forward could run (the forward "
        "failed in '1' with inputs [1, 8]: ValueError: Expected more than 1 value per channel when training, got "
        "input size torch.Size([1, 8]))"
    )
    text = render(report, "table", View(depth=1))
    assert "Activations" not in text.split("Totals")[-1]
    assert [line.split()[-1] for line in text.splitlines() if line.startswith(("  (model)", "    0 ", "    1 "))] == [
        "—"
    ] * 3


# ---------------------------------------------------------------------------------------------------------------------
# 8. models that cannot be run


def test_lazy_modules_are_a_usage_error() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.ReLU())
    before = snapshot(model)
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(model, input_size=(2, 4))
    assert str(caught.value) == LAZY_MESSAGE
    assert_same(before, snapshot(model))
    assert isinstance(model[0], nn.LazyLinear)


class OnAccelerator(torch.Tensor):
    """A cpu tensor that says it is on cuda:1, as a model's weights on a GPU do (no GPU here)."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 1)


def test_a_model_on_an_accelerator_is_refused_on_cpu() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model[0].weight = nn.Parameter(model[0].weight.detach().as_subclass(OnAccelerator))
    assert model[0].weight.device.type == "cuda"
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert str(caught.value) == (
        "the model's weights are on cuda:1: a forward on cpu runs on the weights where they are; move the model to "
        "the cpu, or use device meta, which reads no weights"
    )


@pytest.mark.parametrize("device", [torch.device("cpu"), "cpu:0", torch.device("meta"), "meta:0"])
def test_a_device_is_taken_as_torchinfo_takes_it(device: str | torch.device) -> None:
    # from review: a torch.device was refused, as "device must be meta or cpu, not device(type='cpu')"
    torch.manual_seed(0)
    model, x = nn.Linear(3, 4), torch.randn(2, 3)
    report = paramscope.summary(model, input_data=x, device=device, mode="train")
    by_name = paramscope.summary(model, input_data=x, device=torch.device(device).type, mode="train")
    assert report.to_dict() == by_name.to_dict()
    assert report.totals.flops == torch_flops(model, x)[0]


def test_meta_model_on_cpu_is_a_usage_error() -> None:
    with torch.device("meta"):
        model = nn.Linear(3, 3)
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(model, input_size=(2, 3), device="cpu")
    assert str(caught.value) == META_MESSAGE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": (1, 3), "device": "cuda"}, "device must be meta or cpu, not 'cuda'"),
        ({"input_size": (1, 3), "device": torch.device("cuda", 1)}, "device must be meta or cpu, not 'cuda:1'"),
        ({"input_size": (1, 3), "device": "cpu:1"}, "device must be meta or cpu, not 'cpu:1'"),
        ({"input_size": (1, 3), "device": "gpu"}, "device must be meta or cpu, not 'gpu'"),
        ({"input_size": (1, 3), "device": None}, "device must be meta or cpu, not 'None'"),
        ({"input_size": (1, 3), "mode": "test"}, "mode must be eval or train, not 'test'"),
        ({"input_size": (1, 3), "depth": -1}, "depth must be 0 or more, not -1"),
        (
            {},
            "a forward pass needs inputs: give input_size (e.g. (1, 3, 224, 224) for an image, (1, 128) for 128 "
            "token ids) or input_data",
        ),
        ({"input_size": (1, 3), "input_data": torch.zeros(1, 3)}, "give input_size or input_data, not both"),
        (
            {"input_data": torch.zeros(1, 3), "dtypes": ["long"]},  # had run the float tensor without a word
            "dtypes are of the inputs made from input_size: input_data is run as given",
        ),
        (
            {"input_size": [(1, 3), (1, 3)], "dtypes": ["float32"] * 3},
            "3 dtypes for 2 inputs: give one dtype, or one per input",
        ),
        (
            {"input_size": (1, 3), "dtypes": ["nope"]},  # had not named the option, as --dtype's error does
            "input_dtype (--input-dtype): unknown dtype 'nope'; `paramscope dtypes` lists the known names",
        ),
        (
            {"input_size": (1, 3), "dtypes": ["Q4_K"]},
            "input_dtype (--input-dtype): dtype 'Q4_K' is not a torch dtype",
        ),
    ],
)
def test_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(nn.Linear(3, 3), **kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input-dtype", "nope"], "input_dtype (--input-dtype): unknown dtype 'nope'; `paramscope dtypes` lists the "
                                    "known names"),
        (["--input-dtype", "long", "--input-dtype", "long", "--input-dtype", "long"],
         "3 dtypes for 2 inputs: give one dtype, or one per input"),
    ],
)  # fmt: skip
def test_cli_input_dtypes_are_checked_before_the_model_is_built(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    # from review: the model was built first (a 70B config takes seconds), as memory does not
    built = tmp_path / "built"
    code = f"from pathlib import Path\nfrom torch import nn\n\ndef make():\n    Path({str(built)!r}).touch()\n"
    (tmp_path / "net.py").write_text(code + "    return nn.Linear(3, 3)\n")
    target = f"{tmp_path / 'net.py'}:make"
    assert_error(run(capsys, "summary", target, "--input-size", "1,3", "--input-size", "1,3", *argv), message)
    assert not built.exists()


@pytest.mark.parametrize(
    "input_size", [(0, 3), (-1, 3), (2**63, 3), [(1, 3), (1, 2**64)], (True, 3), [(1, 3), (1, False)], (2.0, 3)]
)  # fmt: skip
def test_input_size_dimensions_are_one_to_int64(input_size: Any) -> None:
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(nn.Linear(3, 3), input_size=input_size)
    assert str(caught.value) == f"input_size {input_size!r} is not a shape or a list of shapes"


def test_input_size_dimensions_may_be_numpy_integers() -> None:
    report = paramscope.summary(nn.Linear(3, 4), input_size=(np.int64(2), np.int32(3)))
    assert rows(report)[""].inputs == "[2, 3]"


class Scales(nn.Module):
    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x * scale


def test_an_empty_shape_is_a_0_d_input() -> None:
    # a diffusion model's timestep
    report = paramscope.summary(Scales(), input_size=[(2, 3), ()])
    assert rows(report)[""].inputs == "([2, 3], [])"


def test_input_bytes_must_fit_in_an_int64() -> None:
    largest = 2**63 - 1  # torch keeps a tensor's bytes in an int64
    (tensor,), _ = make_inputs((largest,), None, ["int8"], "meta")
    assert tensor.untyped_storage().nbytes() == largest
    for shape, dtype in [((2**62,), torch.float16), ((2**61, 3, 224, 224), torch.float32)]:
        with pytest.raises(RuntimeError, match="overflow"):
            torch.empty(shape, dtype=dtype, device="meta")  # what torch says: a traceback for the user
        size = math.prod(shape) * dtype.itemsize
        with pytest.raises(paramscope.UsageError) as caught:
            make_inputs(shape, None, [dtype], "meta")
        assert str(caught.value) == (
            f"an input of shape {list(shape)} in {str(dtype)[6:]} would take {size:,} bytes, more than a tensor can "
            f"hold (9,223,372,036,854,775,807 bytes)"
        )


def test_an_input_too_large_for_memory_on_cpu() -> None:
    shape = (2**40, 2**20)  # 4 EiB of float32: more than any machine can allocate
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(nn.Linear(2**20, 1), input_size=shape, device="cpu")
    assert str(caught.value) == (
        f"an input of shape {list(shape)} in float32 ({4 * 2**60:,} bytes) cannot be allocated on cpu; on meta it "
        "takes no memory"
    )


def test_inputs_in_a_dtype_torch_draws_no_random_numbers_in() -> None:
    # torch's CPU kernel of randn has no float8: the numbers are drawn in float32 and converted; said before that
    # 6 bytes "cannot be allocated on cpu"
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        report = paramscope.summary(nn.Flatten(), input_size=(2, 3), dtypes=[dtype], device="cpu")
        assert report.calls is not None
        assert report.calls[0].inputs == f"[2, 3] {str(dtype)[6:]}"


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # torch's, on making any qint8 tensor
def test_an_input_dtype_torch_makes_no_tensor_of_on_cpu() -> None:
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(nn.Flatten(), input_size=(2, 3), dtypes=["qint8"], device="cpu")
    assert str(caught.value).startswith(
        "torch cannot make an input of shape [2, 3] in qint8 on cpu: Could not run 'aten::zero_' with arguments from "
        "the 'QuantizedCPU' backend"
    )


# ---------------------------------------------------------------------------------------------------------------------
# 7. the command line

MODELS_SOURCE = """
import sys

import torch
from torch import nn


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.b = nn.Linear(6, 4)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


class Bad(nn.Module):
    def forward(self, x):
        raise ValueError("boom")


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), Bad())

    def forward(self, x):
        return self.body(x)


def lazy():
    return nn.Sequential(nn.LazyLinear(3))


class Quit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        sys.exit(5)


def eval_only():
    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))  # one sample: no train-mode forward, no activations


class Misfit(nn.Module):
    def forward(self, x):
        return x @ torch.ones(3, 3, device=x.device)


def misfit():
    return nn.Sequential(nn.Linear(8, 8), Misfit())


def flat():
    return nn.Linear(8, 2)
"""


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "summary", *argv, "--format", "json", "--quiet")
    assert (code, err) == (0, "")
    return json.loads(out)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(textwrap.dedent(MODELS_SOURCE), encoding="utf-8")
    return path


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_cli_a_shape_that_does_not_fit_is_one_line(models: Path, device: str) -> None:
    # on meta torch also logs the meta kernel's exception, with its traceback, as it goes up
    result = run_in_a_new_process("summary", f"{models}:misfit", "--input-size", "2,8", "--device", device)
    reason = {
        "meta": "a and b must have same reduction dim, but got [2, 8] X [3, 3].",  # the meta kernel's words
        "cpu": "mat1 and mat2 shapes cannot be multiplied (2x8 and 3x3)",
    }[device]
    assert result.returncode == 2
    assert result.stderr == f"paramscope: error: the forward failed in '1' with inputs [2, 8]: RuntimeError: {reason}\n"


def test_cli_table_has_the_totals(capsys: pytest.CaptureFixture[str], built: dict[str, Built]) -> None:
    code, out, err = run(capsys, "summary", "paramscope.examples:resnet18", "--input-size", "1,3,224,224")
    assert (code, err) == (0, "")
    model, x, _ = built["resnet18"]
    flops, _ = torch_flops(model, x)
    assert f"{flops:,}" in out
    assert f"{flops // 2:,}" in out
    assert "Forward pass (execution order, depth 3)" in out
    assert "11,689,512" in out


def test_cli_json(capsys: pytest.CaptureFixture[str], built: dict[str, Built]) -> None:
    data = run_json(capsys, "paramscope.examples:resnet18", "--input-size", "1,3,224,224")
    api = paramscope.summary(built["resnet18"].model, input_size=(1, 3, 224, 224))
    assert isinstance(data["calls"], list)
    assert all(set(call) == CALL_KEYS for call in data["calls"])
    assert data["calls"] == [record._asdict() for record in api.calls or ()]
    assert {key: data["totals"][key] for key in ("flops", "macs", "activations_bytes")} == {
        "flops": api.totals.flops,
        "macs": api.totals.macs,
        "activations_bytes": api.totals.activations_bytes,
    }
    assert max(call["depth"] for call in data["calls"]) == 3


def test_cli_gpt2_with_long_input(capsys: pytest.CaptureFixture[str], built: dict[str, Built]) -> None:
    data = run_json(
        capsys,
        "paramscope.examples:gpt2",
        *TINY_GPT_ARGS,
        "--input-size",
        "1,16",
        "--input-dtype",
        "long",
        "--depth",
        "9",
    )
    report = built["gpt2-tiny"].report
    assert data["calls"] == [record._asdict() for record in report.calls or ()]
    assert data["totals"]["flops"] == report.totals.flops


def test_cli_float_input_to_an_embedding_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "summary", "paramscope.examples:gpt2", *TINY_GPT_ARGS, "--input-size", "1,16")
    assert (code, out) == (2, "")
    assert err.startswith("paramscope: error: the forward failed in 'transformer.wte' with inputs [1, 16]: ")
    assert err.count("\n") == 1


def test_cli_two_inputs(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    data = run_json(capsys, f"{models}:Two", "--input-size", "2,8", "--input-size", "2,6")
    assert [(c["path"], c["inputs"], c["outputs"]) for c in data["calls"]] == [
        ("", "([2, 8], [2, 6])", "[2, 4]"),
        ("a", "[2, 8]", "[2, 4]"),
        ("b", "[2, 6]", "[2, 4]"),
    ]
    assert data["totals"]["flops"] == 2 * 2 * 8 * 4 + 2 * 2 * 6 * 4


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_cli_train_mode(capsys: pytest.CaptureFixture[str], models: Path, device: str) -> None:
    data = run_json(
        capsys, f"{models}:Two", "--input-size", "2,8", "--input-size", "2,6", "--mode", "train", "--device", device
    )
    assert data["totals"]["activations_bytes"] == 2 * 8 * 4 + 2 * 6 * 4  # each Linear saves its input
    assert any(note.startswith(f"forward pass in train mode on {device}") for note in data["notes"])


def test_cli_input_size_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(run(capsys, "summary", "paramscope.examples:resnet18"), NO_INPUT_MESSAGE)


@pytest.mark.parametrize("text", ["1,x,3", "-1,3", ",", "1.5,2", "-.5,2", "1,,3", "1 4", "1,3,", "", "1e3"])
@pytest.mark.parametrize("command", ["summary", "memory"])
def test_cli_bad_shape(capsys: pytest.CaptureFixture[str], text: str, command: str) -> None:
    result = run(capsys, command, "paramscope.examples:resnet18", f"--input-size={text}")
    assert_error(result, SHAPE_MESSAGE.format(text))


@pytest.mark.parametrize("text", ["0,3,224,224", "1,0", "(2, 0)"])
@pytest.mark.parametrize("command", ["summary", "memory"])
def test_cli_shape_with_a_dimension_of_0(capsys: pytest.CaptureFixture[str], text: str, command: str) -> None:
    # from review: a shape torch holds was said to be "not a shape"
    result = run(capsys, command, "paramscope.examples:resnet18", f"--input-size={text}")
    assert_error(result, f"--input-size {text!r}: each dimension must be 1 or more (an input of no values)")


@pytest.mark.parametrize(("text", "shape"), [("(2, 8)", [2, 8]), ("[2,8]", [2, 8]), ("(8,)", [8]), (" 8 ", [8])])
def test_cli_shapes_as_torch_and_python_print_them(
    capsys: pytest.CaptureFixture[str], models: Path, text: str, shape: list[int]
) -> None:
    assert run_json(capsys, f"{models}:flat", "--input-size", text)["calls"][0]["inputs"] == str(shape)


@pytest.mark.parametrize("text", ["-1,4", "-1", "-0.5,3"])
def test_cli_negative_shape_as_a_separate_value(capsys: pytest.CaptureFixture[str], text: str) -> None:
    # not argparse's "expected one argument": "-1,4" is the option's value, and a shape it cannot be
    result = run(capsys, "summary", "paramscope.examples:resnet18", "--input-size", text)
    assert_error(result, SHAPE_MESSAGE.format(text))


@pytest.mark.parametrize(
    ("command", "target", "text"),
    [
        ("summary", "paramscope.examples:resnet18", "99999999999999999999,3,224,224"),
        ("memory", "paramscope.examples:gpt2", "99999999999999999999,4"),
        ("summary", "paramscope.examples:resnet18", f"1,{2**63}"),
    ],
)
def test_cli_dimension_beyond_int64(capsys: pytest.CaptureFixture[str], command: str, target: str, text: str) -> None:
    too_large = next(int(part) for part in text.split(",") if int(part) >= 2**63)
    message = f"--input-size {text!r}: dimension {too_large} is more than torch's limit, 9,223,372,036,854,775,807"
    assert_error(run(capsys, command, target, "--input-size", text), message)


def test_cli_input_bytes_beyond_int64(capsys: pytest.CaptureFixture[str]) -> None:
    batch = 2**61
    size = batch * 3 * 224 * 224 * 4
    assert size >= 2**63 > batch
    message = (
        f"an input of shape [{batch}, 3, 224, 224] in float32 would take {size:,} bytes, more than a tensor can hold "
        "(9,223,372,036,854,775,807 bytes)"
    )
    assert_error(run(capsys, "summary", "paramscope.examples:resnet18", "--input-size", f"{batch},3,224,224"), message)


def test_cli_checkpoint_has_no_code_to_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(24))
    assert paramscope.inspect(str(path)).totals.params == 6  # a valid checkpoint
    assert_error(run(capsys, "summary", str(path), "--input-size", "1,3"), f"{path}: {CHECKPOINT_MESSAGE}")


def test_cli_lazy_model(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    assert_error(run(capsys, "summary", f"{models}:lazy", "--input-size", "2,4"), LAZY_MESSAGE)


def test_cli_forward_error(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    message = "the forward failed in 'body.1' with inputs [2, 4]: ValueError: boom"
    assert_error(run(capsys, "summary", f"{models}:Boom", "--input-size", "2,4"), message)


def test_cli_sys_exit_in_a_forward(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    target = f"{models}:Quit"
    message = "the forward failed in '(model)' with inputs [2, 4]: SystemExit: 5"
    assert_error(run(capsys, "summary", target, "--input-size", "2,4"), message)
    code, out, err = run(capsys, "memory", target, "--input-size", "2,4")  # the plan without the activations item
    assert (code, err) == (0, "")
    assert f"  - no activations item: {message}" in out


def test_cli_sys_exit_in_a_forward_in_a_subprocess(models: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "summary", f"{models}:Quit", "--input-size", "2,4"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "paramscope: error: the forward failed in '(model)' with inputs [2, 4]: SystemExit: 5\n"


def test_cli_forward_error_in_a_subprocess(models: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "summary", f"{models}:Boom", "--input-size", "2,4", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "paramscope: error: the forward failed in 'body.1' with inputs [2, 4]: ValueError: boom\n"


def test_cli_golden_resnet18_depth2(capsys: pytest.CaptureFixture[str], golden: Any) -> None:
    argv = ("summary", "paramscope.examples:resnet18", "--input-size", "1,3,224,224", "--depth", "2")
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    golden("resnet18-summary.txt", out)


@pytest.mark.parametrize("output", ["txt", "md"])
def test_cli_golden_own_rows(capsys: pytest.CaptureFixture[str], golden: Any, output: str) -> None:
    # depth 5 shows each attention's children, and a row of its own: the product of queries and keys, and what it
    # saves for backward
    argv = ("summary", "paramscope.examples:gpt2", *TINY_GPT_ARGS, "--input-size", "1,16", "--input-dtype", "long",
            "--depth", "5", "--format", "table" if output == "txt" else "markdown")  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert "transformer.h.0.attn (own)" in out
    golden(f"gpt2-tiny-summary-depth5.{output}", out)


def _padded_encoder() -> tuple[nn.TransformerEncoder, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])  # sequences of 5 and 3 tokens
    return encoder, {"src": torch.randn(2, 5, 16), "src_key_padding_mask": mask}


# by hand, per sequence of L tokens: q, k, v and output projections 2·E²·4L, the two attention products 4·E·L²
ENCODER_ATTENTION = sum(2 * 16 * 16 * 4 * length + 4 * 16 * length * length for length in (5, 3))
ENCODER_FEED_FORWARD = 2 * 2 * (5 + 3) * 16 * 32  # linear1 and linear2 over the 8 real tokens


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_an_encoder_with_a_padding_mask_runs_its_fused_layers_on_cpu_as_a_plain_forward_does() -> None:
    encoder, inputs = _padded_encoder()
    report = paramscope.summary(encoder, input_data=inputs, device="cpu")
    by_path = {record.path: record for record in report.calls or ()}
    # torch packs the padded batch and runs each layer as one kernel (a fast path that module hooks turn off)
    assert by_path["layers.0"].inputs == "(nested([5, 16], [3, 16]), is_causal=False)"
    assert by_path["layers.0"].flops == ENCODER_ATTENTION + ENCODER_FEED_FORWARD
    assert "layers.0.linear1" not in by_path
    assert report.totals.flops == 2 * (ENCODER_ATTENTION + ENCODER_FEED_FORWARD)
    idle = [note for note in report.notes if "not called" in note]
    assert idle == [
        "12 module(s) hold parameters but were not called in this forward (their parent used the weights directly, "
        "as nn.MultiheadAttention and torch's fused kernels do, or they are unused): layers.0.self_attn, "
        "layers.0.self_attn.out_proj, layers.0.linear1, layers.0.linear2, layers.0.norm1 and 7 more"
    ]


def test_an_encoder_with_a_padding_mask_runs_on_meta_over_the_padded_batch() -> None:
    # torch's encoder first checks that the mask leaves its padding on the right, which reads its values (no meta
    # kernel: the summary on meta failed); without values the batch runs padded, as a plain forward in train mode does
    encoder, inputs = _padded_encoder()
    report = paramscope.summary(encoder, input_data=inputs)
    padded = 2 * (2 * (2 * 16 * 16 * 4 * 5 + 4 * 16 * 5 * 5) + 2 * 2 * 10 * 16 * 32)  # two sequences of 5, two layers
    assert report.totals.flops == torch_flops(encoder.train(), **inputs)[0] == padded
    assert report.calls is not None
    assert report.calls[0].outputs == "[2, 5, 16]"


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_an_encoder_layer_with_a_users_hook_runs_module_by_module_on_nested_tensors() -> None:
    encoder, inputs = _padded_encoder()
    encoder.layers[1].register_forward_hook(lambda *_: None)  # torch leaves its fast path, as in a plain forward
    report = paramscope.summary(encoder, input_data=inputs, device="cpu")
    by_path = {record.path: record for record in report.calls or ()}
    assert by_path["layers.1.linear1"].outputs == "nested([5, 32], [3, 32])"
    assert by_path["layers.1.self_attn"].flops == ENCODER_ATTENTION
    assert by_path["layers.1.linear1"].flops == ENCODER_FEED_FORWARD // 2
    assert by_path["layers.1"].flops == by_path["layers.0"].flops  # fused or not, the same work
    assert report.totals.flops == 2 * (ENCODER_ATTENTION + ENCODER_FEED_FORWARD)
    assert not any("aten.unbind" in note for note in report.notes)  # describing nested tensors is not the model's


class NestedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_a_linear_on_a_nested_tensor_counts_each_sequences_rows() -> None:
    nested = torch.nested.nested_tensor([torch.randn(5, 16), torch.randn(3, 16)])
    report = paramscope.summary(NestedLinear(), input_data=nested, device="cpu")
    assert report.totals.flops == 2 * (5 + 3) * 16 * 32
    assert report.calls[0].outputs == "nested([5, 32], [3, 32])"  # type: ignore[index]


class NestedProducts(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, x.transpose(1, 2))


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_a_product_of_nested_tensors_is_named_among_the_ops_counted_0() -> None:
    nested = torch.nested.nested_tensor([torch.randn(5, 16), torch.randn(3, 16)])
    report = paramscope.summary(NestedProducts(), input_data=nested, device="cpu")
    assert report.totals.flops == 0  # its formula takes one shape, which a nested tensor does not have: not a guess
    assert report.calls[0].outputs == "nested([5, 5], [3, 3])"  # type: ignore[index]
    assert any(note.endswith("count 0: aten.bmm (1), aten.transpose (1)") for note in report.notes), report.notes


class UnbindsThenPassesOn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.unbind()
        return self.inner(x)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_the_ops_that_describe_a_nested_tensor_are_not_the_forwards() -> None:
    # describing the nested inputs and outputs unbinds them too, after the forward's own unbind: only that one counts
    nested = torch.nested.nested_tensor([torch.randn(5, 16), torch.randn(3, 16)])
    report = paramscope.summary(UnbindsThenPassesOn(), input_data=nested, device="cpu")
    assert report.calls[1].inputs == "nested([5, 16], [3, 16])"  # type: ignore[index]
    assert any(note.endswith("count 0: aten.unbind (1)") for note in report.notes), report.notes


def jagged_mlp_and_input() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    jagged = torch.nested.nested_tensor([torch.randn(3, 8), torch.randn(5, 8)], layout=torch.jagged)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), jagged


def test_a_jagged_nested_tensor_saves_its_values_and_offsets_as_torch_does() -> None:
    # describing the jagged outputs unbinds them, which autograd would record (and save them for) with grad on
    model, jagged = jagged_mlp_and_input()
    report = paramscope.summary(model, input_data=[jagged], device="cpu", mode="train")
    total, per_path = torch_saved_bytes(model, jagged)
    assert total == 256 + 24 + 512  # the input's values and offsets, the ReLU's output
    assert report.totals.activations_bytes == total
    assert {row.path: row.activations_bytes for row in report.calls or ()} == {
        "": total, "0": per_path["0"], "1": per_path["1"], "2": per_path.get("2", 0)
    }  # fmt: skip


def test_a_jagged_nested_tensor_on_meta_is_refused_naming_the_inputs() -> None:
    model, jagged = jagged_mlp_and_input()
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_data=[jagged], mode="train")
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs nested([3, 8], [5, 8]): NotImplementedError: a nested tensor "
        f"cannot be made on meta; {META_VALUES_HINT}"
    )


class MakesAJaggedTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nested.nested_tensor([x[0, :3], x[0, :5]], layout=torch.jagged))


def test_a_jagged_nested_tensor_made_in_the_forward_on_meta_is_refused_with_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # torch's fake tensors name a jagged tensor's ragged size with a symbol, which only symbolic shapes make: an
    # AssertionError from torch's inside, with nothing said of meta
    argv = ("summary", "tests.test_summary:MakesAJaggedTensor", "--input-size", "1,5,8")
    assert_error(
        run(capsys, *argv),
        "the forward failed in '(model)' with inputs [1, 5, 8]: AssertionError: self.shape_env must not be None; the "
        "forward makes a jagged nested tensor, which cannot be made on meta: try --device cpu",
    )
    report = paramscope.summary(MakesAJaggedTensor(), input_size=(1, 5, 8), device="cpu")
    assert report.totals.flops == 2 * (3 + 5) * 8 * 4  # the rows of both sequences, and no padding
    assert report.calls[1].outputs == "nested([3, 4], [5, 4])"  # type: ignore[index]


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_nested_tensors_are_described_by_their_sequences() -> None:
    nested = torch.nested.nested_tensor([torch.zeros(5, 16), torch.zeros(3, 16)])
    assert describe((nested, torch.zeros(2))) == "(nested([5, 16], [3, 16]), [2])"


# ---------------------------------------------------------------------------------------------------------------------
# 9. CSV, --explain, and a config beside its weights (--from-config, --check)


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or ()), rows


def csv_cells(record: dict[str, Any]) -> dict[str, str]:
    """A JSON object as CSV cells: raw numbers, an empty cell for null."""
    return {key: "" if value is None else str(value) for key, value in record.items()}


SUMMARIES = {
    "resnet18": ("paramscope.examples:resnet18", "--input-size", "1,3,224,224", "--depth", "2"),
    "gpt2-tiny": ("paramscope.examples:gpt2", *TINY_GPT_ARGS, *("--input-size", "1,16", "--input-dtype", "long")),
    "eval-only": ("{models}:eval_only", "--input-size", "1,8"),
    "two-inputs": ("{models}:Two", "--input-size", "2,8", "--input-size", "2,6", "--mode", "train"),
}


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_cli_csv_has_one_row_per_call_of_the_json(capsys: pytest.CaptureFixture[str], models: Path, name: str) -> None:
    target, *argv = SUMMARIES[name]
    target = target.format(models=models)
    data = run_json(capsys, target, *argv)
    code, out, err = run(capsys, "summary", target, *argv, "--format", "csv", "--quiet")
    assert (code, err) == (0, "")
    header, rows = csv_rows(out)
    assert header == list(data["calls"][0])
    assert set(header) == CALL_KEYS
    assert rows == [csv_cells(call) for call in data["calls"]]
    if name == "eval-only":
        assert {row["activations_bytes"] for row in rows} == {""}  # unknown: no train-mode forward could run


def test_cli_csv_figures_are_torchs(capsys: pytest.CaptureFixture[str], built: dict[str, Built]) -> None:
    model, x, _ = built["resnet18"]
    flops, per_module = torch_flops(model, x)
    saved, _ = torch_saved_bytes(model, x)
    calls = torch_calls(model, x)
    code, out, err = run(capsys, "summary", *SUMMARIES["resnet18"], "--format", "csv")
    assert (code, err) == (0, "")
    _, rows = csv_rows(out)
    by_path = {row["path"]: row for row in rows}
    assert by_path[""]["flops"] == str(flops)
    assert by_path[""]["macs"] == str(flops // 2)
    assert by_path[""]["activations_bytes"] == str(saved)
    assert by_path["fc"]["flops"] == str(2 * 512 * 1000)
    assert by_path["fc"]["params"] == str(512 * 1000 + 1000)
    for row in rows:
        assert row["flops"] == str(per_module.get(row["path"], 0))
        assert (row["inputs"], row["outputs"]) == (calls.inputs[row["path"]], calls.outputs[row["path"]])
        assert row["calls"] == str(calls.calls[row["path"]])
        assert row["depth"] == str(row["path"].count(".") + 1 if row["path"] else 0)
    assert [row["path"] for row in rows] == [path for path in calls.order if path.count(".") < 2]


def test_cli_explain_shows_each_modules_formula(capsys: pytest.CaptureFixture[str], built: dict[str, Built]) -> None:
    model = built["resnet18"].model
    code, out, err = run(capsys, "summary", *SUMMARIES["resnet18"], "--explain", "--format", "csv")
    assert (code, err) == (0, "")
    header, rows = csv_rows(out)
    assert header == [*list(CALL_KEYS_IN_ORDER), "formula", "formula_matches"]
    explained = [row for row in rows if row["formula"]]
    assert {row["type"] for row in explained} >= {"Conv2d", "BatchNorm2d", "Linear", "ReLU"}
    for row in rows:
        params = sum(p.numel() for p in model.get_submodule(row["path"]).parameters())
        assert row["params"] == str(params)
        if row["type"] in ("ResNet", "Sequential", "BasicBlock"):  # containers: no formula of their own
            assert (row["formula"], row["formula_matches"]) == ("", "")
        else:
            assert row["formula"].startswith(f"{row['type']}: ")
            assert f"= {params:,}" in row["formula"] if params else row["formula"].endswith(": 0 (no parameters)")
            assert row["formula_matches"] == "True"
    code, out, err = run(capsys, "summary", *SUMMARIES["resnet18"], "--explain")
    assert (code, err) == (0, "")
    header_line = next(line for line in out.splitlines() if line.strip().startswith("Module"))
    assert header_line.split()[-1] == "Formula"
    assert f"Linear: 1,000 × 512 + 1,000 = {1000 * 512 + 1000:,}" in out
    assert "Formula" not in run(capsys, "summary", *SUMMARIES["resnet18"])[1]


@pytest.fixture
def tiny_llama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A directory with a tiny Llama's config.json and its weights (model.safetensors), saved by transformers."""
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      architectures=["LlamaForCausalLM"])  # fmt: skip
    directory = tmp_path / "tiny-llama"
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    capsys.readouterr()  # transformers' progress bar
    return directory


LLAMA_INPUT = ("--input-size", "1,8", "--input-dtype", "long", "--depth", "2")


def test_cli_check_compares_the_weights_with_the_config_model(
    capsys: pytest.CaptureFixture[str], tiny_llama: Path
) -> None:
    import safetensors.torch
    import transformers

    model = transformers.LlamaForCausalLM(transformers.AutoConfig.from_pretrained(tiny_llama))
    plain = run_json(capsys, str(tiny_llama), *LLAMA_INPUT)
    assert plain["check"] is None
    assert plain["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert run_json(capsys, str(tiny_llama), *LLAMA_INPUT, "--from-config") == plain  # a summary always builds it
    checked = run_json(capsys, str(tiny_llama), *LLAMA_INPUT, "--check")
    assert checked["check"] == {
        "against": str(tiny_llama / "config.json"),
        "ok": True,
        "missing": [],
        "unexpected": [],
        "mismatched": [],
    }
    assert checked["calls"] == plain["calls"]

    weights = tiny_llama / "model.safetensors"
    tensors = safetensors.torch.load_file(weights)
    del tensors["model.norm.weight"]
    safetensors.torch.save_file(tensors, weights, metadata={"format": "pt"})
    missing = sorted(set(model.state_dict()) - set(safetensors.torch.load_file(weights)))
    assert missing == ["model.norm.weight"]
    code, out, err = run(capsys, "summary", str(tiny_llama), *LLAMA_INPUT, "--check", "--format", "json", "--quiet")
    assert (code, err) == (1, "")  # --check found differences
    data = json.loads(out)
    assert (data["check"]["ok"], data["check"]["missing"]) == (False, missing)
    assert data["calls"] == plain["calls"]


def test_cli_a_sharded_index_is_summarised_from_the_config_beside_it(
    capsys: pytest.CaptureFixture[str], tiny_llama: Path
) -> None:
    index = tiny_llama / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"lm_head.weight": "model.safetensors"}}))
    from_index, from_directory = (
        run_json(capsys, str(index), *LLAMA_INPUT),
        run_json(capsys, str(tiny_llama), *LLAMA_INPUT),
    )
    assert from_index["source"]["target"] == str(index)
    assert {**from_index, "source": None} == {**from_directory, "source": None}


@pytest.mark.parametrize("where", ["directory", "config.json", "model.safetensors"])
def test_cli_key_value_arguments_are_refused_for_a_config_or_checkpoint(
    capsys: pytest.CaptureFixture[str], tiny_llama: Path, where: str
) -> None:
    target = str(tiny_llama if where == "directory" else tiny_llama / where)
    assert_error(
        run(capsys, "summary", target, "num_hidden_layers=4", *LLAMA_INPUT),
        f"{target}: KEY=VALUE arguments are only for model code targets",
    )


def test_cli_from_config_and_check_need_a_config_and_weights(
    capsys: pytest.CaptureFixture[str], tiny_llama: Path
) -> None:
    for flag in ("--from-config", "--check"):
        assert_error(
            run(capsys, "summary", "paramscope.examples:resnet18", "--input-size", "1,3,64,64", flag),
            "paramscope.examples:resnet18: --from-config and --check need a config.json, not model code",
        )
    config = tiny_llama / "config.json"
    assert_error(
        run(capsys, "summary", str(config), *LLAMA_INPUT, "--check"),
        f"{config}: --check compares weights with the model config.json describes, and there are no weights",
    )


class ClampsItsWeights(nn.Module):
    """A forward that changes a parameter in place: on CPU that would be the user's own weights."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.fc.weight.clamp_(-0.1, 0.1)
        return self.fc(x)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_forward_writing_to_a_parameter_is_refused_on_cpu(mode: str) -> None:
    model = ClampsItsWeights()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device="cpu", mode=mode)
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 4]: ParameterWriteError: aten.clamp_ would change the "
        "parameter 'fc.weight' in place: paramscope does not run that on your weights; summarise on meta (the "
        "default) instead"
    )
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    meta = paramscope.summary(model, input_size=(2, 4))  # on meta it writes to a stand-in
    assert meta.totals.flops == 2 * 2 * 4 * 4
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


class ForeachScalesItsWeights(nn.Module):
    """An in-place foreach op on a list of parameters: the write guard must look inside the list."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            torch._foreach_mul_([self.fc.weight, self.fc.bias], 2.0)
        return self.fc(x)


def test_a_foreach_write_to_parameters_is_refused_on_cpu() -> None:
    model = ForeachScalesItsWeights()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert str(caught.value).endswith(
        "ParameterWriteError: aten._foreach_mul_ would change the parameter 'fc.weight' in place: paramscope does "
        "not run that on your weights; summarise on meta (the default) instead"
    )
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


class RemovesItsParametrization(nn.Module):
    """A forward that removes its layer's parametrization, leaving the weight parametrized: a write to it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        parametrizations.orthogonal(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        parametrize.remove_parametrizations(self.fc, "weight")
        return out


def test_a_refused_write_that_torch_raised_another_error_for_is_told() -> None:
    # from review: torch's remove_parametrizations catches the refusal of its set_ and raises an error about tensor
    # subclasses, which was the one told
    model = RemovesItsParametrization()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 4]: ParameterWriteError: aten.set_ would change the parameter "
        "'fc.parametrizations.weight.original' in place: paramscope does not run that on your weights; summarise on "
        "meta (the default) instead"
    )
    assert parametrize.is_parametrized(model.fc, "weight")
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


class SparseOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.fc(x)
        return out.to_sparse(), out.to(torch.float64).to_sparse_csr()


def test_a_sparse_output_is_shown_with_its_layout() -> None:
    # from review: shown as a dense tensor of its shape, which it is not
    report = paramscope.summary(SparseOutputs(), input_size=(2, 4), device="cpu")
    assert report.calls is not None
    assert [(call.path, call.outputs) for call in report.calls] == [
        ("", "([2, 4] sparse_coo, [2, 4] float64 sparse_csr)"), ("fc", "[2, 4]")
    ]  # fmt: skip


class SharedUnderTwoNames(nn.Module):
    """One Linear and one BatchNorm registered under two names each (``functional_call`` swaps the tensors of a
    module reached twice, and leaves its stand-ins behind)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = self.a
        self.norm = nn.BatchNorm1d(8)
        self.block = nn.Sequential(self.a, self.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.b(x))


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_module_registered_twice_keeps_its_own_tensors(device: str, mode: str) -> None:
    model = SharedUnderTwoNames()
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(4, 8), device=device, mode=mode)
    assert report.totals.flops == 2 * (2 * 4 * 8 * 8)  # the Linear runs twice
    assert_same(before, snapshot(model))
    assert type(model.a.weight) is nn.Parameter
    assert model.norm.running_mean.device.type == "cpu"


def weights_of_each_forward(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, torch.Tensor]]:
    """The tensors, by name, that each forward of a summary runs the model with, as it runs."""
    seen: list[dict[str, torch.Tensor]] = []
    forward = paramscope.trace._forward

    def recording(module: nn.Module, weights: dict[str, torch.Tensor], args: Any, kwargs: Any) -> Any:
        seen.append(dict(weights))
        return forward(module, weights, args, kwargs)

    monkeypatch.setattr(paramscope.trace, "_forward", recording)
    return seen


def test_a_summary_on_meta_runs_its_two_forwards_on_one_set_of_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    # making the fake tensors costs about what running a small module on them costs: the eval-mode forward's serve
    # the train-mode forward too; a counter, whose value is real, is copied again for each
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=None), nn.Linear(8, 2))
    before = snapshot(model)
    seen = weights_of_each_forward(monkeypatch)
    report = paramscope.summary(model, input_size=(3, 4))
    eval_weights, train_weights = seen
    counter = "1.num_batches_tracked"
    assert sorted(eval_weights) == sorted(train_weights) == sorted(model.state_dict())
    assert all(train_weights[name] is tensor for name, tensor in eval_weights.items() if name != counter)
    assert train_weights[counter] is not eval_weights[counter]
    assert int(eval_weights[counter]) == 0  # the train-mode forward counted its batch on its own copy
    assert report.totals.activations_bytes == torch_saved_bytes(model, torch.randn(3, 4))[0]
    assert_same(before, snapshot(model))


def test_a_summary_on_meta_makes_its_stand_ins_again_where_torch_cannot_run_one_mode_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the fake tensor mode is run again through torch's private fields; where a version has them otherwise, the
    # train-mode forward gets a mode and stand-ins of its own, as if no forward had run before it
    from torch._subclasses.fake_tensor import FakeTensorMode

    def missing(self: FakeTensorMode) -> None:
        raise AttributeError("'FakeTensorMode' object has no attribute 'nt_tensor_id_initial_count'")

    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
    expected = paramscope.summary(model, input_size=(3, 4)).to_dict()
    monkeypatch.setattr(FakeTensorMode, "reset_nt_tensor_id_counter", missing)
    seen = weights_of_each_forward(monkeypatch)
    report = paramscope.summary(model, input_size=(3, 4))
    assert report.to_dict() == expected
    assert report.totals.activations_bytes == torch_saved_bytes(model, torch.randn(3, 4))[0]
    eval_weights, train_weights = seen
    assert all(train_weights[name] is not tensor for name, tensor in eval_weights.items())


class ChangesItsTensors(nn.Module):
    """An eval-mode forward that changes its weight or its buffers (``change``); a forward that meets the change goes
    through a tanh, which saves its output for backward."""

    def __init__(self, change: str) -> None:
        super().__init__()
        self.change = change
        self.fc = nn.Linear(4, 8)
        self.register_buffer("scale", torch.ones(8))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def changed(self) -> bool:
        weight, scale = self.fc.weight, self.scale
        return {
            "count through .data": int(self.calls) > 0,  # .data: no version counter sees it
            "resize_": scale.shape != (8,),
            "unsqueeze_": scale.dim() != 1,
            "weight.data =": weight.stride() != (4, 1),
            "requires_grad_": not weight.requires_grad,
            "attribute": hasattr(weight, "seen"),
        }[self.change]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(self.fc(x)) if self.changed() else self.fc(x) * self.scale
        if not self.training:
            if self.change == "count through .data":
                self.calls.data += 1
            elif self.change in ("resize_", "unsqueeze_"):
                getattr(self.scale, self.change)(*((16,) if self.change == "resize_" else (0,)))
            elif self.change == "weight.data =":
                self.fc.weight.data = torch.empty(4, 8, device=x.device).t()
            elif self.change == "requires_grad_":
                self.fc.weight.requires_grad_(False)
            else:
                self.fc.weight.seen = True
        return out


@pytest.mark.parametrize(
    "change",
    ["count through .data", "resize_", "unsqueeze_", "weight.data =", "requires_grad_", "attribute"],
)
def test_the_train_mode_forward_on_meta_meets_none_of_what_the_eval_mode_forward_changed(change: str) -> None:
    # the stand-ins one forward changed are made again for the next: its activations are those of a train-mode
    # forward of the model as it is (torch's, on a copy), not of one after an eval-mode forward
    model = ChangesItsTensors(change)
    x = torch.randn(3, 4)
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(3, 4))
    assert report.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    assert report.totals.flops == 2 * 3 * 4 * 8
    assert_same(before, snapshot(model))


class HooksThatCompute(nn.Module):
    """A user's forward pre-hook and hook that multiply matrices around ``inner``."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.other = nn.Linear(8, 8)
        self.inner.register_forward_pre_hook(lambda module, args: (args[0] @ torch.ones(8, 8, device=args[0].device),))
        self.inner.register_forward_hook(lambda module, args, out: out @ torch.ones(8, 8, device=out.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.other(self.inner(x))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_flops_of_a_users_hooks_are_attributed_as_flop_counter_mode_does(device: str) -> None:
    model, x = HooksThatCompute(), torch.randn(3, 8)
    total, per_path = torch_flops(model, x)
    report = paramscope.summary(model, input_data=x, device=device)
    assert report.totals.flops == total
    # the pre-hook's product inside the module, the hook's outside it (FlopCounterMode's global hooks come first)
    assert {record.path: record.flops for record in report.calls or ()} == per_path == {
        "": 4 * 2 * 3 * 8 * 8, "inner": 2 * 2 * 3 * 8 * 8, "other": 2 * 3 * 8 * 8
    }  # fmt: skip


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise ZeroDivisionError


class OwnStop(BaseException):
    """A BaseException of the model's own, as some training loops define to stop early."""


class Raises(nn.Module):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (UnprintableError(), "UnprintableError: (its message could not be shown: UnprintableError.__str__ raised "
                             "ZeroDivisionError)"),
        (OwnStop("stop"), "OwnStop: stop"),
        (GeneratorExit(), "GeneratorExit: (no message)"),
    ],
)  # fmt: skip
def test_any_exception_from_a_forward_is_a_forward_error(device: str, error: BaseException, message: str) -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(Raises(error), input_size=(2, 4), device=device)
    assert str(caught.value) == f"the forward failed in '(model)' with inputs [2, 4]: {message}"


class SparseScratch(nn.Module):
    """A forward that writes in place to a sparse tensor of its own: nothing the parameter guard should stop."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = torch.eye(4).to_sparse()
        scratch.mul_(2)
        return self.fc(x)


def test_in_place_writes_to_sparse_tensors_run_on_cpu() -> None:
    assert paramscope.summary(SparseScratch(), input_size=(2, 4), device="cpu").totals.flops == 2 * 2 * 4 * 4


class CachesInForward(nn.Module):
    """A forward that rebinds Python state (a cache length, as rotary-embedding caches do) and unfreezes a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fc.requires_grad_(False)
        self.cached = 0
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cached = x.shape[0]
        self.last_input = x
        self.fc.weight.requires_grad_(True)
        self.scale = nn.Parameter(torch.zeros(1, device=x.device))  # another parameter under the same name
        return self.fc(x) * self.scale


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_state_a_forward_rebinds_is_restored(device: str) -> None:
    model = CachesInForward()
    scale = model.scale
    paramscope.summary(model, input_size=(2, 4), device=device, mode="train")
    assert model.cached == 0
    assert "last_input" not in model.__dict__
    assert not model.fc.weight.requires_grad
    assert model.scale is scale
    assert list(model._parameters) == ["scale"]


class OwnBufferStore(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        object.__setattr__(self, "_buffers", NotADict())  # buffers held in a mapping that is not a dict
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


class ChangesItsOwnBufferStore(OwnBufferStore):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.register_buffer("scale", torch.full((4,), 2.0, device=x.device))
        self.register_buffer("extra", torch.zeros(1, device=x.device))
        return self.fc(x) * self.scale


class RebindsItsDict(nn.Module):
    """A forward that puts a new dict in place of its module's ``__dict__``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        object.__setattr__(self, "__dict__", {**self.__dict__, "calls": self.calls + 1})
        return self.fc(x)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_state_held_in_other_mappings_or_a_new_dict_is_restored(device: str) -> None:
    for store in (OwnBufferStore(), ChangesItsOwnBufferStore()):
        scale = store.scale
        report = paramscope.summary(store, input_size=(2, 4), device=device)
        assert report.totals.flops == 2 * 2 * 4 * 4
        assert store.scale is scale
        assert isinstance(store._buffers, NotADict)
        assert list(store._buffers) == ["scale"]
    rebinds = RebindsItsDict()
    attributes = dict(rebinds.__dict__)
    paramscope.summary(rebinds, input_size=(2, 4), device=device)
    assert rebinds.calls == 0
    assert list(rebinds.__dict__) == list(attributes)
    assert all(rebinds.__dict__[key] is value for key, value in attributes.items())


class Batch(NamedTuple):
    features: torch.Tensor
    mask: torch.Tensor


@dataclasses.dataclass(frozen=True)
class FrozenBatch:
    features: torch.Tensor
    mask: torch.Tensor


class TakesABatch(nn.Module):
    """A forward whose input holds its tensors: a named tuple or a (frozen) dataclass."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, batch: Batch | FrozenBatch) -> torch.Tensor:
        return self.fc(batch.features) * batch.mask


@pytest.mark.parametrize("alone", [False, True])
@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("kind", [Batch, FrozenBatch])
def test_inputs_held_in_a_named_tuple_or_a_dataclass(
    device: str, kind: type[Batch] | type[FrozenBatch], alone: bool
) -> None:
    # alone: the batch is the input, as a tensor is (a named tuple is one input, not a tuple of inputs)
    model, batch = TakesABatch(), kind(torch.randn(2, 4), torch.ones(2, 4))
    report = paramscope.summary(model, input_data=batch if alone else (batch,), device=device, mode="train")
    assert report.totals.flops == torch_flops(model, batch)[0] == 2 * 2 * 4 * 4
    assert report.totals.activations_bytes == torch_saved_bytes(model, batch)[0]


@pytest.mark.parametrize("alone", [False, True])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_packed_sequence_input_keeps_its_batch_sizes_on_the_cpu(device: str, alone: bool) -> None:
    # alone: input_data=packed, as the model is called (a PackedSequence is a named tuple, one input; it was taken
    # for a tuple of four inputs: "GRU.forward() takes from 2 to 3 positional arguments but 5 were given")
    model = nn.GRU(4, 3)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 4), torch.tensor([5, 3]))
    report = paramscope.summary(model, input_data=packed if alone else (packed,), device=device, mode="train")
    assert report.calls is not None
    assert report.calls[0].outputs == describe(model(packed))
    assert report.totals.flops == torch_flops(model, packed)[0] == 2 * 8 * 3 * 3 * (4 + 3)
    assert report.totals.activations_bytes == torch_saved_bytes(model, packed)[0]


class SineFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.sin(x))  # sin saves its input for backward only when the input requires grad


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_input_that_requires_grad_still_does(device: str) -> None:
    model, x = SineFirst(), torch.randn(4, 8, requires_grad=True)
    report = paramscope.summary(model, input_data=x, device=device, mode="train")
    expected, _ = torch_saved_bytes(model, x)
    assert report.totals.activations_bytes == expected == 2 * 4 * 8 * 4  # sin's input and the Linear's
    assert x.requires_grad
    assert x.grad is None


def test_the_inputs_made_for_meta_are_not_ops_of_the_models() -> None:
    notes = [paramscope.summary(nn.Linear(4, 4), input_data=torch.randn(2, 4), device=device).notes[-1]
             for device in ("meta", "cpu")]  # fmt: skip
    assert notes[0] == notes[1]
    assert "aten.empty_like" not in notes[0]


class ChangesItselfInPlace(nn.Module):
    """A forward that changes in place what its modules hold: a submodule made on the first call, a hook and a
    non-persistent buffer it registers, caches of its own (a dict, a list), and a tensor it keeps as a plain
    attribute (as Meta's reference Llama keeps its key/value cache) and writes to."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.cache: dict[Any, torch.Tensor] = {torch.zeros(1): torch.zeros(2, 4)}
        self.sizes: list[Any] = [torch.zeros(2, 4)]
        self.window = torch.zeros(2, 4)
        self.first_row = self.window[0]  # a view: what is written through one is read through the other

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "proj"):
            self.proj = nn.Linear(4, 2).to(x.device)
        self.fc.register_forward_hook(lambda module, args, output: None)
        self.register_buffer("scratch", torch.zeros(1, device=x.device), persistent=False)
        y = self.fc(x)
        held, sizes = next(iter(self.cache.values())), self.sizes[0]
        self.cache.clear()
        self.cache[torch.zeros(1)] = held  # a key of the same value, another tensor (== would compare values)
        self.sizes.append(x.shape[0])
        if not x.is_meta:  # the model's own cpu tensors, written to in place
            held[:] = y.detach()
            sizes.fill_(1.0)
        self.window = self.window.to(x.device)  # the same tensor on its own device
        self.window[:] = y.detach()
        self.window[0] = 7.0
        assert self.first_row.device != x.device or bool((self.first_row == 7.0).all())
        return self.proj(y)


def _held(model: nn.Module) -> list[Any]:
    """What each module holds: its attributes, and how many entries each dict, list and set among them holds."""
    return [
        (path, sorted(vars(module)), {name: len(value) for name, value in vars(module).items()
                                      if isinstance(value, (dict, list, set))})
        for path, module in model.named_modules()
    ]  # fmt: skip


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_what_a_forward_changes_in_place_is_put_back(device: str) -> None:
    model = ChangesItselfInPlace()
    window, (key, held), sizes = model.window, *model.cache.items(), model.sizes[0]
    before = _held(model)
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert report.totals.flops == 2 * 2 * 4 * 4 + 2 * 2 * 4 * 2  # the layer made in the forward counts in its owner
    assert _held(model) == before
    assert model.window is window
    assert next(iter(model.cache)) is key
    assert all(torch.equal(tensor, torch.zeros(2, 4)) for tensor in (window, held, sizes))
    assert model(torch.randn(2, 4)).shape == (2, 2)  # its lazy layer made anew, on the cpu (not left fake)


class Clamped:
    """A helper (not a module) that keeps the weights it constrains, as weight-clipping code does."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def apply(self) -> None:
        with torch.no_grad():
            for tensor in self.tensors:
                tensor.clamp_(-0.01, 0.01)


class WritesThroughReferencesOfItsOwn(nn.Module):
    """A forward that reaches the model's tensors other than through its modules: a helper object that clamps a
    weight, and a hook whose closure keeps a buffer (a running statistic) and grows another (a history)."""

    def __init__(self, clamp: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("ema", torch.zeros(4))
        self.register_buffer("history", torch.zeros(4))
        self.clamped = Clamped(self.fc.weight) if clamp else None
        ema, history = self.ema, self.history

        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            ema.mul_(0.9).add_(1.0)
            history.resize_(100_000).fill_(1.0)  # its storage comes back at its size: the tensor must too

        self.fc.register_forward_hook(hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clamped is not None:
            self.clamped.apply()
        return self.fc(x)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_tensors_a_forward_reaches_through_references_of_its_own_come_back(device: str, mode: str) -> None:
    # on meta an op on cpu tensors alone runs for real; on cpu the forward runs on copies of the buffers, and a write
    # to a parameter is refused (so no clamp there)
    model = WritesThroughReferencesOfItsOwn(clamp=device == "meta")
    tensors = [model.fc.weight, model.ema, model.history]
    before = [tensor.detach().clone() for tensor in tensors]
    paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert all(torch.equal(tensor, kept) for tensor, kept in zip(tensors, before, strict=True))
    assert model.history.untyped_storage().nbytes() == 4 * 4


class FlagsABufferThroughAHook(nn.Module):
    """A hook that keeps a buffer in its closure, makes it require grad and gives it an attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))
        scale = self.scale

        def flag(module: nn.Module, args: Any) -> None:
            scale.requires_grad_(True)
            scale.calibrated = True

        self.fc.register_forward_pre_hook(flag)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize("device", DEVICES)
def test_what_a_hook_sets_on_a_buffer_of_its_own_is_put_back(device: str) -> None:
    # from review: its values and .data were put back, its requires_grad and attributes not
    model = FlagsABufferThroughAHook()
    paramscope.summary(model, input_size=(2, 4), device=device, mode="train")
    assert (model.scale.requires_grad, hasattr(model.scale, "calibrated")) == (False, False)


class WithASparseWeight(nn.Module):
    """A graph layer's adjacency as a sparse parameter; ``scale_in_place`` writes to it in the forward."""

    def __init__(self, scale_in_place: bool) -> None:
        super().__init__()
        self.adjacency = nn.Parameter(torch.eye(4).to_sparse())
        self.fc = nn.Linear(4, 3)
        self.scale_in_place = scale_in_place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_in_place:
            with torch.no_grad():
                self.adjacency.mul_(0.5)
        return self.fc(torch.sparse.mm(self.adjacency, x))


def test_a_sparse_parameter_is_summarised_on_cpu_and_a_write_to_it_refused() -> None:
    # from review: the summary's own setup asked the sparse weight for its storage, and failed naming no module
    model = WithASparseWeight(scale_in_place=False)
    report = paramscope.summary(model, input_size=(4, 4), device="cpu")
    assert [(call.path, call.outputs) for call in report.calls or []] == [("", "[4, 3]"), ("fc", "[4, 3]")]
    assert report.totals.params == sum(param.numel() for param in model.parameters())
    model.scale_in_place = True
    before = model.adjacency.detach().clone()
    with pytest.raises(ForwardError) as raised:
        paramscope.summary(model, input_size=(4, 4), device="cpu")
    assert str(raised.value) == (
        "the forward failed in '(model)' with inputs [4, 4]: ParameterWriteError: aten.mul_ would change the "
        "parameter 'adjacency' in place: paramscope does not run that on your weights; summarise on meta (the "
        "default) instead"
    )
    assert torch.equal(model.adjacency.detach().to_dense(), before.to_dense())


class RebindsAndGrowsThroughReferencesOfItsOwn(nn.Module):
    """Hooks that reach the model's tensors through closures: two buffers viewing one storage, grown one after the
    other (the first resize moves the storage's bytes), a buffer and a weight whose ``.data`` is rebound (clipping
    as ``p.data = p.data.clamp(...)``, on meta only: on cpu a write to a weight is refused), and a buffer made under
    ``inference_mode`` that the forward grows in an ``inference_mode`` of its own."""

    def __init__(self, clip: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        base = torch.zeros(8)
        self.register_buffer("first", base[:4])
        self.register_buffer("second", base[4:])
        self.register_buffer("scale", torch.ones(4))
        with torch.inference_mode():
            self.register_buffer("cache", torch.zeros(2, 4))
        first, second, scale, cache, weight = self.first, self.second, self.scale, self.cache, self.fc.weight

        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            first.resize_(100_000)
            second.resize_(200_000)
            scale.data = torch.full((4,), 2.0)
            if clip:
                weight.data = weight.data.clamp(-0.01, 0.01)
            with torch.inference_mode():
                cache.resize_(4, 4)

        self.fc.register_forward_hook(hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_tensors_rebound_and_grown_through_references_of_its_own_come_back(device: str) -> None:
    model = RebindsAndGrowsThroughReferencesOfItsOwn(clip=device == "meta")
    tensors = [model.first, model.second, model.scale, model.cache, model.fc.weight]
    before = [(tensor.detach().clone(), tensor.untyped_storage().nbytes()) for tensor in tensors]
    paramscope.summary(model, input_size=(2, 4), device=device)
    for tensor, (values, nbytes) in zip(tensors, before, strict=True):
        assert torch.equal(tensor, values)
        assert tensor.untyped_storage().nbytes() == nbytes


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("make", [WritesThroughReferencesOfItsOwn, RebindsAndGrowsThroughReferencesOfItsOwn])
def test_a_memory_plans_forward_puts_back_what_it_writes_through_references_of_its_own(
    make: Callable[[bool], nn.Module], train: bool
) -> None:
    # from review: the inference plan's forward (the peak of the tensors alive) put back none of it
    model = make(True)
    tensors = [*model.parameters(), *model.buffers()]
    before = [(tensor.detach().clone(), tensor.untyped_storage().nbytes()) for tensor in tensors]
    paramscope.memory(model, input_size=(2, 4), train=train)
    for tensor, (values, nbytes) in zip(tensors, before, strict=True):
        assert torch.equal(tensor, values)
        assert tensor.untyped_storage().nbytes() == nbytes


def test_a_large_container_leaves_the_others_looked_into() -> None:
    # one cap for a whole level stopped the look into every container beside a vocabulary of 100,001 entries
    model = KeepsStateNested()
    model.vocab = {str(i): i for i in range(100_001)}
    key = model.kv[0][0]
    paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert torch.equal(key, torch.zeros(8, 4))


@functools.cache
def _scale_table(n: int) -> torch.Tensor:
    table = torch.from_numpy(np.arange(n, dtype=np.float32))  # a real cpu tensor, even under fake tensors
    return table.mul_(10)  # filled in place: runs for real on meta


class ScalesByACachedTable(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * _scale_table(4).to(x.device)


def test_a_cpu_tensor_a_forward_on_meta_makes_and_caches_keeps_its_values() -> None:
    # no tensor of the model's: what it holds stays as the forward left it, as after a plain forward
    _scale_table.cache_clear()
    paramscope.summary(ScalesByACachedTable(4, 4), input_size=(2, 4))
    assert _scale_table(4).tolist() == [0.0, 10.0, 20.0, 30.0]


class KeepsStateNested(nn.Module):
    """State a forward changes below the first container: tensors in a tuple attribute (an RNN's ``(h, c)``), a KV
    cache kept as a list of ``(key, value)`` tuples, a list in a dict, and a list that holds itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.hidden = (torch.zeros(4), torch.zeros(4))
        self.kv = [(torch.zeros(8, 4), torch.zeros(8, 4))]
        self.stats: dict[str, list[Any]] = {"seen": []}
        self.looped: list[Any] = [[]]
        self.looped.append(self.looped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.hidden[0].add_(1)
        self.kv[0][0][:2] = 1.0
        self.stats["seen"].append(tuple(x.shape))
        self.looped[0].append(1)
        return self.fc(x)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_state_nested_in_containers_and_tuples_is_put_back(device: str, mode: str) -> None:
    model = KeepsStateNested()
    tensors = [model.hidden[0], model.kv[0][0]]
    kv, seen, inner = model.kv[0], model.stats["seen"], model.looped[0]
    paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    assert all(torch.equal(tensor, torch.zeros_like(tensor)) for tensor in tensors)
    assert model.kv[0] is kv
    assert model.stats["seen"] is seen
    assert seen == []
    assert model.looped[0] is inner
    assert inner == []


class DeletesAFlag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        del self.fc.training  # the restore read every module's flag first, which raised and put back nothing
        return self.fc(x)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_flag_the_forward_deletes_is_put_back_with_the_rest(device: str) -> None:
    model = DeletesAFlag()
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert report.totals.flops == 2 * 2 * 4 * 4
    assert model.steps == 0
    assert model.fc.training is True  # as made (nn.Module's default), after a forward in eval mode


class MovesItselfToMeta(nn.Module):
    """Frees its weights once used, as offloading code does."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        self.to("meta")
        return y


@pytest.mark.parametrize("swap", [False, True])
def test_parameters_the_forward_moves_to_meta_come_back(swap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # with torch's swap on conversion, .to() swaps each parameter's contents; a meta tensor takes no cpu data back
    monkeypatch.setattr(torch.__future__, "get_swap_module_params_on_conversion", lambda: swap)
    model = MovesItselfToMeta()
    weight = model.fc.weight
    before = weight.detach().clone()
    paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert model.fc.weight is weight
    assert weight.device == torch.device("cpu")
    assert torch.equal(weight.detach(), before)


class RefusesToBeIterated(tuple[int, int]):
    def __iter__(self) -> Iterator[int]:
        raise TypeError("not iterable here")


class HoldsManyReferencesOfOneRow(nn.Module):
    """A table whose rows are one list (``[row] * n``) at two levels, and a tuple subclass with its own __iter__."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.table = [[[0.0] * n] * n] * n
        self.pair = RefusesToBeIterated((1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.table[0][0].append(1.0)  # the one row, of every row
        return self.fc(x)


def test_a_row_held_many_times_is_looked_into_once() -> None:
    model = HoldsManyReferencesOfOneRow(300)  # 90,000 references of one row of 300, read once: not 27 million
    row = model.table[0][0]
    paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert len(row) == 300
    assert model.table[0][0] is row
    found, _ = _containers_within([model.table])
    assert [len(item) for item in found] == [300, 300, 300]


class WritesItsInputs(nn.Module):
    """A forward that writes to what the caller gives it: an in-place ReLU on its input, and a state it updates."""

    def __init__(self) -> None:
        super().__init__()
        self.relu, self.fc = nn.ReLU(inplace=True), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        state["steps"].add_(1)
        state["window"][0] = x[0]
        return self.fc(self.relu(x))


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_the_callers_inputs_come_back_as_given(device: str, mode: str) -> None:
    x = torch.arange(-6.0, 6.0).reshape(3, 4)  # negatives for the ReLU to change
    state = {"steps": torch.zeros((), dtype=torch.long), "window": torch.zeros(2, 4)}
    first_row = state["window"][0]  # a view the caller holds of what the forward writes
    given = [x.clone(), state["steps"].clone(), state["window"].clone()]
    report = paramscope.summary(WritesItsInputs(), input_data=[x, state], device=device, mode=mode)
    assert report.calls[0].inputs == "([3, 4], {steps: [], window: [2, 4]})"
    now = [x, state["steps"], state["window"]]
    assert all(torch.equal(tensor, before) for tensor, before in zip(now, given, strict=True))
    assert torch.equal(first_row, torch.zeros(4))  # put back in the storage itself: every view sees it


class WithUnits(torch.Tensor):
    """A tensor subclass that keeps an attribute of its own."""

    units: str

    @staticmethod
    def __new__(cls, data: torch.Tensor, units: str) -> WithUnits:
        made = torch.Tensor._make_subclass(cls, data)
        made.units = units
        return made


class ReadsItsInputsClass(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        assert isinstance(weight, nn.Parameter)
        return self.fc(x.as_subclass(torch.Tensor) * {"m": 1.0, "mm": 1e-3}[x.units]) @ weight  # type: ignore[attr-defined]


def test_a_parameter_or_a_subclass_given_on_cpu_reaches_the_forward_as_itself() -> None:
    # from review: given to the forward as a plain alias, a subclass lost its attributes and a parameter its class
    weight = nn.Parameter(torch.eye(4), requires_grad=False)
    data = (WithUnits(torch.ones(2, 4), "mm"), weight)
    report = paramscope.summary(ReadsItsInputsClass(), input_data=data, device="cpu")
    assert report.calls is not None
    assert report.calls[0].outputs == "[2, 4]"


class BranchesInAThread(nn.Module):
    """A forward that runs its two branches in a pool of one thread."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.b.register_forward_hook(lambda module, args, output: None)  # called through hooks, not a wrapper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with ThreadPoolExecutor(1) as pool:
            a, b = pool.map(lambda branch: branch(x), [self.a, self.b])
        return a + b


THREADS_NOTE = (
    "a, b ran in another thread than the forward's, where paramscope sees none of their ops: their FLOPs and "
    "activations are not counted, and what they write is neither refused nor put back"
)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_modules_run_in_another_thread_are_named_not_counted_silently(device: str, mode: str) -> None:
    # from review: their FLOPs and activations were 0, with no word of why
    report = paramscope.summary(BranchesInAThread(), input_size=(2, 8), device=device, mode=mode)
    assert THREADS_NOTE in report.notes
    assert [call.path for call in report.calls or []] == [""]
    for train in (False, True):  # from review: the inference plan's forward said nothing
        plan = paramscope.memory(BranchesInAThread(), input_size=(2, 8), train=train).memory
        assert plan is not None
        assert THREADS_NOTE in plan.notes


class ScalesItsInputInPlace(nn.Module):
    """A forward that scales its input in place (a graph's adjacency normalised) before a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(0.5)
        return self.fc(torch.sparse.mm(x, torch.ones(4, 4)) if x.layout in (torch.sparse_coo, torch.sparse_csr) else x)


SPARSE_AND_NESTED_INPUTS = {
    "sparse_coo": lambda: torch.eye(4).to_sparse(),
    "sparse_csr": lambda: torch.eye(4).to_sparse_csr(),
    "jagged": lambda: torch.nested.nested_tensor([torch.ones(2, 4), torch.ones(3, 4)], layout=torch.jagged),
}


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
@pytest.mark.parametrize("layout", list(SPARSE_AND_NESTED_INPUTS))
def test_a_sparse_or_nested_input_written_in_place_on_cpu_comes_back_as_given(layout: str) -> None:
    # from review: only a dense input's storage was put back
    x = SPARSE_AND_NESTED_INPUTS[layout]()
    paramscope.summary(ScalesItsInputInPlace(), input_data=[x], device="cpu")
    given = SPARSE_AND_NESTED_INPUTS[layout]()
    if layout == "jagged":
        assert torch.equal(x.values(), given.values())
    else:
        assert torch.equal(x.to_dense(), given.to_dense())


class WritesANumpyInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, counts: np.ndarray) -> torch.Tensor:
        torch.as_tensor(counts).mul_(0.5)  # the array's own memory
        return self.fc(x)


@pytest.mark.parametrize("device", DEVICES)
def test_a_numpy_array_given_comes_back_as_given(device: str) -> None:
    # from review: the forward got the caller's array, and wrote to it through a tensor over its memory
    counts = np.ones(4)
    paramscope.summary(WritesANumpyInput(), input_data={"x": torch.ones(2, 4), "counts": counts}, device=device)
    assert counts.tolist() == [1.0] * 4


class SetsStateOnItsInput(nn.Module):
    """A forward that makes its input require grad and differentiates by it (a physics-informed net), and gives it a
    ``.grad``, an attribute, a hook and a new ``.data``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # an eval-mode summary runs without
            x.requires_grad_(True)
            u = self.net(x)
            (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        x.grad, x.seen = torch.zeros_like(x), True
        x.register_hook(lambda grad: grad)
        x.data = x.data.double().zero_()
        return u + du.sum(1, keepdim=True)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_what_a_forward_sets_on_an_input_stays_off_the_callers_tensor(device: str, mode: str) -> None:
    # from review: on cpu the caller's tensor came back requiring grad, float64 zeros, with a grad, an attribute and
    # a hook (only writes to its values were put back)
    x = torch.ones(2, 4)
    paramscope.summary(SetsStateOnItsInput(), input_data=[x], device=device, mode=mode)
    assert (x.requires_grad, x.dtype, x.grad, hasattr(x, "seen"), x._backward_hooks) == (
        False, torch.float32, None, False, None
    )  # fmt: skip
    assert torch.equal(x, torch.ones(2, 4))


class Batch(dict):  # type: ignore[type-arg]
    """A batch of a dict subclass, with attributes of its own."""


class Chunks(list):  # type: ignore[type-arg]
    """Chunks of a list subclass, with attributes of their own."""


class SlottedBatch(dict):  # type: ignore[type-arg]
    """A batch of a dict subclass, with its attributes in slots."""

    __slots__ = ("log", "step")


class WritesAttributesOfItsInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, batch: Batch | SlottedBatch, chunks: Chunks) -> torch.Tensor:
        batch.log.append("seen")
        batch.step.add_(1)
        chunks.lengths.append(3)
        return self.fc(x) + batch["bias"] + chunks[0] + batch.step


@pytest.mark.parametrize("batch_type", [Batch, SlottedBatch])
@pytest.mark.parametrize("device", DEVICES)
def test_the_attributes_of_an_input_container_of_a_subclass_come_back_as_given(
    device: str, batch_type: type[Batch | SlottedBatch]
) -> None:
    # from review: the copies of a dict or list subclass shared the caller's attribute objects; and (a later review)
    # those in slots were neither moved to meta nor kept apart from the caller's
    batch, chunks = batch_type(bias=torch.zeros(4)), Chunks([torch.zeros(4)])
    batch.log, batch.step, chunks.lengths = [], torch.zeros(()), []
    data = {"x": torch.ones(2, 4), "batch": batch, "chunks": chunks}
    report = paramscope.summary(WritesAttributesOfItsInputs(), input_data=data, device=device)
    assert (batch.log, float(batch.step), chunks.lengths) == ([], 0.0, [])
    assert report.calls[0].outputs == "[2, 4]"


class TaggedBatch(dict):  # type: ignore[type-arg]
    """A slotted batch that copy() cannot copy: its __new__ takes an argument."""

    __slots__ = ("mask",)

    def __new__(cls, tag: str) -> TaggedBatch:
        return super().__new__(cls)

    def __init__(self, tag: str) -> None:
        super().__init__()


@pytest.mark.parametrize("device", DEVICES)
def test_a_slotted_batch_that_cannot_be_copied_is_given_as_a_dict(device: str) -> None:
    # from review: its slot was set on the plain dict that stands for it, which refused it (a TypeError blamed on the
    # model)
    batch = TaggedBatch("tag")
    batch["x"], batch.mask = torch.randn(2, 4), torch.ones(2, dtype=torch.bool)
    report = paramscope.summary(UsesABatch(), input_data={"batch": batch}, device=device)
    assert (report.calls[0].outputs, report.totals.flops) == ("[2, 4]", 2 * 2 * 4 * 4)


class UsesABatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(batch["x"])


class BranchesOnANestedInput(BranchesOnItsInput):
    """:class:`BranchesOnItsInput` on the tensor at the bottom of lists and dicts (``{"ids": [...]}``)."""

    def forward(self, nested: Any) -> torch.Tensor:  # type: ignore[override]
        while not isinstance(nested, torch.Tensor):
            nested = nested["ids"] if isinstance(nested, dict) else nested[0]
        return super().forward(nested)


@pytest.mark.parametrize("depth", [0, 3, 8])
@pytest.mark.parametrize("device", DEVICES)
def test_a_tensor_given_in_nested_containers_comes_back_as_given_and_keeps_its_values_on_meta(
    device: str, depth: int
) -> None:
    # from review: three containers down, the cpu's forward wrote to the caller's tensor, and meta had no values
    ids = torch.ones(2, 4, dtype=torch.long)
    nested: Any = ids
    for level in range(depth):
        nested = {"ids": nested} if level % 2 else [nested]
    model = BranchesOnANestedInput(lambda ids: ids.mul_(-1), lambda ids: -ids)  # positive as written
    report = paramscope.summary(model, input_data=[nested], device=device)
    assert torch.equal(ids, torch.ones(2, 4, dtype=torch.long))
    assert [call.path for call in report.calls or []] == ["", "positive"]


class KeysOfALayer:
    def __init__(self, keys: torch.Tensor) -> None:
        self.keys = keys


class KeyCache:
    """A cache as transformers' DynamicCache keeps one: objects per layer whose tensors a forward replaces with longer
    ones, the object itself changed (not its tensors)."""

    def __init__(self, keys: torch.Tensor) -> None:
        self.layers = [KeysOfALayer(keys)]


class AttendsWithACache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, cache: KeyCache) -> torch.Tensor:
        layer = cache.layers[0]
        layer.keys = torch.cat([layer.keys, self.proj(x)])
        return x @ layer.keys.t()


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_cache_given_as_input_comes_back_as_given(device: str) -> None:
    model, x, keys = AttendsWithACache(), torch.randn(1, 4), torch.randn(3, 4)
    cache = KeyCache(keys)
    expected = shape_text(model(x, copy.deepcopy(cache)))  # one more key: [1, 4]
    report = paramscope.summary(model, input_data=(x, cache), device=device)
    assert report.calls[0].outputs == expected
    assert cache.layers[0].keys is keys  # the caller's cache still holds its three keys, not four


def test_a_transformers_cache_given_as_input_comes_back_as_given() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 100, (1, 5))
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"  # renamed in 5.x
    cache = transformers.DynamicCache(config=config)
    with torch.no_grad():
        model(ids, **{name: cache})  # the cache of the 5 tokens
    assert cache.get_seq_length() == 5
    for device in ("meta", "cpu"):  # one decoding step, the next token's
        inputs = {"input_ids": ids[:, :1], name: cache}
        report = paramscope.summary(model, input_data=inputs, device=device, depth=0)
        assert (device, cache.get_seq_length()) == (device, 5)
        assert report.calls[0].outputs.startswith("CausalLMOutputWithCrossAttentions{logits: [1, 1, 100]")
        empty = transformers.DynamicCache(config=config)  # for the forward to fill: no tensors in it yet
        paramscope.summary(model, input_data={"input_ids": ids, name: empty}, device=device, depth=0)
        assert (device, empty.get_seq_length()) == (device, 0)  # neither the prompt's keys nor fake tensors


class ReshapesItsCache(nn.Module):
    """A forward that changes what its tensors besides the weights are: their values after a resize of their
    storage (FSDP frees storages so), their shape, their storage, their autograd flags, and a step counter, as a
    forward on meta runs an op on cpu tensors alone for real."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.freed, self.grown, self.swapped = torch.ones(3), torch.ones(3), torch.ones(3)
        self.viewed, self.learned, self.traced = torch.ones(3), torch.ones(3), torch.ones(3)
        self.tuned = torch.ones(3, requires_grad=True)  # a leaf with a gradient of its own, given below
        self.step = torch.tensor(0)
        self.kinds = [torch.eye(3).to_sparse(), torch.ones(3).to_mkldnn()]  # no storage of bytes to keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.step += 1
        self.freed.add_(1)
        self.freed.untyped_storage().resize_(0)
        self.grown.resize_(10).fill_(5.0)
        self.swapped.set_(torch.zeros(5))
        self.viewed.unsqueeze_(0)
        self.learned.requires_grad_()
        y = self.fc(x)
        self.traced.copy_(y[0, :3])  # part of the graph now, if y is
        if torch.is_grad_enabled():
            (self.learned * 2 + self.tuned).sum().backward(retain_graph=True)
        return y


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_what_a_forward_does_to_the_tensors_besides_the_weights_is_put_back(device: str, mode: str) -> None:
    model = ReshapesItsCache()
    grad = model.tuned.grad = torch.full((3,), 5.0)
    held = {name: (tensor, tensor.untyped_storage()) for name, tensor in vars(model).items()
            if isinstance(tensor, torch.Tensor)}  # fmt: skip
    paramscope.summary(model, input_size=(2, 4), device=device, mode=mode)
    for name, (tensor, storage) in held.items():
        assert getattr(model, name) is tensor
        assert tensor.untyped_storage()._cdata == storage._cdata  # the same storage, not one like it
        assert tensor.shape == (() if name == "step" else (3,))
        assert torch.equal(tensor.detach(), torch.tensor(0) if name == "step" else torch.ones(3))
        assert tensor.is_leaf
        assert tensor.requires_grad == (name == "tuned")
        assert tensor.grad is (grad if name == "tuned" else None)
    assert torch.equal(grad, torch.full((3,), 5.0))
    copy.deepcopy([tensor for tensor, _ in held.values()])  # only leaves can be: none is left in the summary's graph


class CastsItsWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data = self.fc.weight.data.double()  # the gradient (float32) no longer fits it
        return x


def test_a_weight_cast_in_the_forward_and_its_gradient_both_come_back() -> None:
    model = CastsItsWeight()
    weight, grad = model.fc.weight.data, torch.ones(4, 4)
    model.fc.weight.grad = grad
    paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert model.fc.weight.is_set_to(weight)
    assert model.fc.weight.dtype == torch.float32
    assert model.fc.weight.grad is grad


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_input_made_by_an_op_can_be_changed_in_place(device: str) -> None:
    model, x = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(4, 4)), torch.randn(2, 4, requires_grad=True) * 2
    report = paramscope.summary(model, input_data=x, device=device, mode="train")
    assert report.totals.flops == 2 * 2 * 4 * 4
    assert x.grad_fn is not None


class BackwardInside(nn.Module):
    """A forward that runs a backward of its own (a gradient penalty), which adds to the parameters' gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if torch.is_grad_enabled():
            y.sum().backward(retain_graph=True)
        return y


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_backward_in_the_forward_leaves_the_gradients_as_they_were(device: str) -> None:
    model, x = BackwardInside(), torch.randn(2, 4, requires_grad=True)
    grad = torch.zeros(4, 4)
    model.fc.weight.grad = grad
    paramscope.summary(model, input_data=x, device=device, mode="train")
    assert model.fc.weight.grad is grad
    assert torch.equal(grad, torch.zeros(4, 4))
    assert model.fc.bias.grad is None
    assert x.grad is None


class InstanceForward(nn.Module):
    """A child whose forward is set on the instance (as accelerate's hooks set it), and a parent that inspects it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        original = self.fc.forward
        self.fc.forward = lambda features: 2 * original(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert list(inspect.signature(self.fc.forward).parameters) == ["features"]  # transformers inspects forwards
        return self.fc(x)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_set_on_the_instance_runs_and_is_put_back(device: str) -> None:
    model = InstanceForward()
    own = model.fc.__dict__["forward"]
    x = torch.randn(2, 4)
    expected = model(x)
    report = paramscope.summary(model, input_data=x, device=device)
    assert [(r.path, r.outputs) for r in report.calls or ()] == [("", "[2, 4]"), ("fc", "[2, 4]")]
    assert model.fc.__dict__["forward"] is own
    assert "forward" not in model.__dict__
    assert torch.equal(model(x), expected)


class ForwardProperty(nn.Linear):
    """A class that looks its forward up when called: an attribute of the instance cannot stand in for it."""

    @property  # type: ignore[override]
    def forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return functools.partial(nn.Linear.forward, self)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_property_is_recorded_through_hooks(device: str) -> None:
    model = nn.Sequential(ForwardProperty(4, 3))
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert [(r.path, r.inputs, r.outputs, r.flops) for r in report.calls or ()] == [
        ("", "[2, 4]", "[2, 3]", 2 * 2 * 4 * 3), ("0", "[2, 4]", "[2, 3]", 2 * 2 * 4 * 3)
    ]  # fmt: skip
    assert_same(before, snapshot(model))


class ProbesWithATemporaryWeight(nn.Module):
    """A forward that runs its encoder on a temporary weight (functional_call, as MAML does), then clips the real
    weight in place: the real weight is the one guarded, whatever ran before."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probe = torch.func.functional_call(self.enc, {"0.weight": self.enc[0].weight.detach() * 0.5}, (x,))
        with torch.no_grad():
            self.enc[0].weight.clamp_(-0.1, 0.1)
        return probe + self.enc(x)


def test_the_real_weights_are_guarded_after_a_forward_on_temporary_ones() -> None:
    model = ProbesWithATemporaryWeight()
    before = snapshot(model)
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert "aten.clamp_ would change the parameter 'enc.0.weight' in place" in str(caught.value)
    assert_same(before, snapshot(model))


class MomentumEncoder(nn.Module):
    """MoCo's momentum update, verbatim: it assigns ``.data``, which no op-level guard sees."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for query, key in zip(self.q.parameters(), self.k.parameters(), strict=True):
                key.data = key.data * 0.999 + query.data * 0.001
        return self.q(x) + self.k(x)


def test_parameter_data_assigned_in_the_forward_is_put_back() -> None:
    model = MomentumEncoder()
    before = snapshot(model)
    paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert_same(before, snapshot(model))


class Fragile(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 8:
            raise ValueError("needs 8 features")
        return self.fc(x)


class FallsBack(nn.Module):
    """A model that catches its child's exception and takes another path, then may fail itself."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fast, self.slow, self.fail = Fragile(), nn.Linear(4, 4), fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = self.fast(x)
        except ValueError:
            y = self.slow(x)
        if self.fail:
            raise RuntimeError("the model's own error")
        return y @ torch.ones(4, 4, device=y.device)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_exception_the_model_catches_leaves_the_module_it_came_from(device: str) -> None:
    report = paramscope.summary(FallsBack(), input_size=(2, 4), device=device)
    assert {record.path: record.flops for record in report.calls or ()} == {
        "": 2 * 2 * 4 * 4 * 2, "fast": 0, "slow": 2 * 2 * 4 * 4
    }  # fmt: skip
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(FallsBack(fail=True), input_size=(2, 4), device=device)
    assert (
        str(caught.value) == "the forward failed in '(model)' with inputs [2, 4]: RuntimeError: the model's own error"
    )


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_failure_names_the_inputs_as_a_users_pre_hook_left_them(device: str) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    model[1][1].register_forward_pre_hook(lambda module, args, kwargs: ((args[0][:, :5],), kwargs), with_kwargs=True)
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device=device)
    assert str(caught.value).startswith("the forward failed in '1.1' with inputs [2, 5]: RuntimeError: ")


class KeepsACopy(nn.Module):
    """A forward that deep-copies a layer (a lazy EMA teacher) and hands the copy to ``keep``."""

    def __init__(self, keep: Callable[[nn.Module], None]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.keep(copy.deepcopy(self.fc))
        return self.fc(x)


def test_a_copy_made_in_the_forward_runs_its_own_weights() -> None:
    copies: list[nn.Module] = []
    model = KeepsACopy(copies.append)
    report = paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert [record.path for record in report.calls or ()] == ["", "fc"]
    teacher = copies[0]
    with torch.no_grad():
        teacher.weight.zero_()
        teacher.bias.fill_(1.0)
    assert torch.equal(teacher(torch.randn(2, 4)), torch.ones(2, 4))


class ForwardOnFirstCall(nn.Module):
    """A forward that rebinds itself on its first call (a lazy fast path)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward = self.fast  # type: ignore[method-assign]
        return self.fast(x)

    def fast(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class DeploysInEval(nn.Module):
    """A block whose train() rebinds its forward (re-parameterisable blocks deploy a fused path in eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)

    def deployed(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)

    def train(self, mode: bool = True) -> DeploysInEval:
        super().train(mode)
        self.forward = DeploysInEval.forward.__get__(self) if mode else self.deployed  # type: ignore[method-assign]
        return self


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_rebound_by_the_model_is_still_recorded(device: str) -> None:
    rebinding = nn.Sequential(ForwardOnFirstCall(), ForwardOnFirstCall())
    model = nn.Sequential(rebinding[0], rebinding[0], rebinding[1])  # the first one twice
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert [(r.path, r.calls, r.flops) for r in report.calls or ()] == [
        ("", 1, 3 * 2 * 2 * 4 * 4), ("0", 2, 2 * 2 * 2 * 4 * 4), ("0.fc", 2, 2 * 2 * 2 * 4 * 4),
        ("2", 1, 2 * 2 * 4 * 4), ("2.fc", 1, 2 * 2 * 4 * 4),
    ]  # fmt: skip
    assert_same(before, snapshot(model))
    deploys = nn.Sequential(DeploysInEval(), nn.Linear(4, 2)).train()
    before = snapshot(deploys)
    report = paramscope.summary(deploys, input_size=(2, 4), device=device, mode="eval")
    assert [(r.path, r.calls) for r in report.calls or ()] == [("", 1), ("0", 1), ("0.a", 1), ("0.b", 1), ("1", 1)]
    assert_same(before, snapshot(deploys))
    assert deploys[0].forward.__name__ == "forward"


class PatchesItselfEachCall(nn.Module):
    """A forward that puts a patch calling through to the forward it had in its place, on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        previous = self.forward
        self.forward = lambda features: previous(features)  # type: ignore[method-assign]
        return self.fc(x)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_patched_on_every_call_is_recorded_once_a_call(device: str) -> None:
    cell = PatchesItselfEachCall()
    model = nn.Sequential(*[cell] * 12)
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert [(r.path, r.calls, r.flops) for r in report.calls or ()] == [
        ("", 1, 12 * 2 * 2 * 4 * 4), ("0", 12, 12 * 2 * 2 * 4 * 4), ("0.fc", 12, 12 * 2 * 2 * 4 * 4)
    ]  # fmt: skip
    assert_same(before, snapshot(model))


class RebindsWeightsAndGradients(nn.Module):
    """A forward that views its weight transposed through ``.data`` and leaves a gradient behind."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data = self.fc.weight.data.t()  # same storage, shape and dtype: other strides
        self.fc.bias.grad = torch.ones(4)
        return self.fc(x)


def test_a_weight_viewed_otherwise_and_a_gradient_left_behind_are_put_back() -> None:
    model = RebindsWeightsAndGradients()
    before = snapshot(model)
    paramscope.summary(model, input_size=(2, 4), device="cpu")
    assert_same(before, snapshot(model))
    assert model.fc.weight.stride() == (4, 1)


class HookedChildFails(nn.Module):
    """A child with a hook of its own that raises, caught by the parent, which then fails itself."""

    def __init__(self) -> None:
        super().__init__()
        self.child, self.after = Fragile(), nn.Linear(4, 4)
        self.child.register_forward_hook(lambda *_: None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            x = self.child(x)
        except ValueError:
            x = x + 1
        x = self.after(x)
        raise KeyError("the parent's own failure")


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_hooked_module_that_raises_leaves_the_stack(device: str) -> None:
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(HookedChildFails(), input_size=(2, 4), device=device)
    assert str(caught.value) == (
        "the forward failed in '(model)' with inputs [2, 4]: KeyError: \"the parent's own failure\""
    )


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_users_forward_hook_that_raises_fails_in_its_module(recwarn: pytest.WarningsRecorder, device: str) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))

    def refuse(module: nn.Module, args: Any, output: Any) -> None:
        raise ValueError("refused after the forward")

    model[1].register_forward_hook(refuse)
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device=device)
    assert str(caught.value) == "the forward failed in '1' with inputs [2, 4]: ValueError: refused after the forward"
    assert paramscope.summary(nn.Sequential(nn.Linear(4, 4)), input_size=(2, 4), device=device).calls  # runs again
    assert not [str(warning.message) for warning in recwarn]  # torch warns of an always-call hook that raised


class RegistersAFailingHook(nn.Module):
    """A forward that gives its child a hook at its first call (a monitor attached lazily), a hook that raises."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.after = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.inner._forward_hooks:
            self.inner.register_forward_hook(lambda module, args, output: output.view(3, -1))
        return self.after(self.inner(x))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_hook_the_forward_registers_that_raises_fails_in_its_module(device: str) -> None:
    # the child's calls were recorded by a wrapper of its forward, made before the hook was there: the error, raised
    # as its call ran the hook, was blamed on the parent, with the parent's inputs
    model = nn.Sequential(nn.Linear(4, 4), RegistersAFailingHook())
    with pytest.raises(ForwardError) as caught:
        paramscope.summary(model, input_size=(2, 4), device=device)
    assert str(caught.value) == (
        "the forward failed in '1.inner' with inputs [2, 4]: RuntimeError: shape '[3, -1]' is invalid for input of "
        "size 8"
    )
    assert not model[1].inner._forward_hooks  # the forward's own hook is taken away with what else it changed


def test_a_global_pre_hook_that_refuses_a_hooked_module_leaves_no_hook_failing(
    recwarn: pytest.WarningsRecorder,
) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].register_forward_hook(lambda module, args, output: None)  # recorded through hooks

    def refuse(module: nn.Module, args: Any) -> None:
        if module is model[1]:
            raise ValueError("refused")

    handle = torch.nn.modules.module.register_module_forward_pre_hook(refuse)
    try:
        with pytest.raises(ForwardError) as caught:
            paramscope.summary(model, input_size=(2, 4))
    finally:
        handle.remove()
    # the refusal comes before the module's own hooks run, in its call: it failed there, as with a hook of its own
    assert str(caught.value) == "the forward failed in '1' with inputs [2, 4]: ValueError: refused"
    assert not [str(warning.message) for warning in recwarn]  # torch warns of an always-call hook that raised


def test_a_checkpoint_wrappers_modules_are_rows_of_their_own_parameters() -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    model = nn.Sequential(checkpoint_wrapper(nn.Linear(4, 8)), nn.ReLU(), checkpoint_wrapper(nn.Linear(8, 2)))
    report = paramscope.summary(model, input_size=(2, 4), mode="train")
    # one row for a wrapper and the module it wraps, named as inspect names the module (no second row under
    # "0._checkpoint_wrapped_module"), with what the wrapper keeps for backward: its input
    assert [(r.path, r.params) for r in report.calls or ()] == [("", 58), ("0", 40), ("1", 0), ("2", 18)]
    assert [node.path for node in paramscope.inspect(model).modules] == ["", "0", "1", "2"]
    total, per_path = torch_saved_bytes(model, torch.randn(2, 4))
    assert report.totals.activations_bytes == total
    assert {r.path: r.activations_bytes for r in report.calls or ()} == {
        path: per_path.get(path, 0) for path in ("", "0", "1", "2")
    }
    assert per_path["0"] == 2 * 4 * 4  # the wrapper keeps its input, as torch's checkpoint does
    assert not any("not called" in note for note in report.notes)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_compiled_or_data_parallel_childs_modules_are_rows_of_their_own_parameters(device: str) -> None:
    compiled = torch.compile(nn.Sequential(nn.Linear(8, 8), nn.GELU()), backend="eager")
    parallel = nn.DataParallel(nn.Linear(8, 2))  # no GPU: it calls its module
    model = nn.Sequential(compiled, parallel)
    report = paramscope.summary(model, input_size=(3, 8), device=device)

    def numel(module: nn.Module) -> int:
        return sum(param.numel() for param in module.parameters())

    # one row for a wrapper and the module it wraps, named as inspect names the module: without "_orig_mod." or
    # "module.", each row's FLOPs its own and its children's
    assert [(r.path, r.type, r.params) for r in report.calls or ()] == [
        ("", "Sequential", numel(model)), ("0", "Sequential", numel(compiled)),
        ("0.0", "Linear", numel(compiled._orig_mod[0])), ("0.1", "GELU", 0), ("1", "Linear", numel(parallel)),
    ]  # fmt: skip
    assert [node.path for node in paramscope.inspect(model).modules] == ["", "0", "0.0", "0.1", "1"]
    rows = {r.path: r for r in report.calls or ()}
    assert [rows[path].flops for path in ("", "0", "0.0", "1")] == [
        2 * 3 * 8 * (8 + 2),
        *[2 * 3 * 8 * 8] * 2,
        2 * 3 * 8 * 2,
    ]
    for path, row in rows.items():
        children = [child for child in rows if child.rpartition(".")[0] == path and child != path]
        assert row.flops == row.own_flops + sum(rows[child].flops for child in children)
    assert not any("not called" in note for note in report.notes)


def _as_on_a_cuda_machine(parallel: nn.DataParallel) -> nn.DataParallel:
    # what DataParallel's constructor sets where CUDA is (torch/nn/parallel/data_parallel.py); without it, it has no
    # device_ids and its forward just calls its module
    parallel.dim, parallel.device_ids, parallel.output_device = 0, [0], 0
    parallel.src_device_obj = torch.device("cuda", 0)
    return parallel


def test_a_data_parallel_child_made_where_cuda_is_runs_its_module_on_meta() -> None:
    def model_with(parallel: nn.DataParallel) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 8), parallel, nn.ReLU())

    plain = model_with(nn.DataParallel(nn.Linear(8, 2)))
    parallel = _as_on_a_cuda_machine(nn.DataParallel(nn.Linear(8, 2)))
    model = model_with(parallel)
    # the fake is what DataParallel's own forward checks on such a machine, given meta weights
    on_meta = _as_on_a_cuda_machine(nn.DataParallel(nn.Linear(8, 2, device="meta")))
    with pytest.raises(RuntimeError) as error:
        on_meta(torch.zeros(3, 8, device="meta"))
    assert str(error.value) == (
        "module must have its parameters and buffers on device cuda:0 (device_ids[0]) but found one of them on "
        "device: meta"
    )
    for mode in ("eval", "train"):
        report = paramscope.summary(model, input_size=(3, 8), device="meta", mode=mode)
        expected = paramscope.summary(plain, input_size=(3, 8), device="meta", mode=mode)
        assert report.calls == expected.calls
        assert [r.path for r in report.calls or ()] == ["", "0", "1", "2"]
    for train in (False, True):  # a memory plan's forward on meta too
        plans = [paramscope.memory(each, input_size=(3, 8), train=train).memory for each in (model, plain)]
        assert plans[0] is not None
        assert plans[1] is not None
        assert plans[0].item("activations").total_bytes == plans[1].item("activations").total_bytes > 0
    # the model as it was: its DataParallel still refuses a forward on meta
    assert (parallel.device_ids, parallel.output_device, parallel.src_device_obj) == ([0], 0, torch.device("cuda", 0))
    assert "forward" not in parallel.__dict__
    assert parallel.forward.__func__ is nn.DataParallel.forward


def test_a_data_parallel_child_gets_its_forward_back_when_the_forward_fails() -> None:
    parallel = _as_on_a_cuda_machine(nn.DataParallel(nn.Linear(8, 2)))
    with pytest.raises(ForwardError) as error:
        paramscope.summary(nn.Sequential(parallel), input_size=(3, 4), device="meta")
    assert str(error.value) == (
        "the forward failed in '0.module' with inputs [3, 4]: RuntimeError: a and b must have same reduction dim, but "
        "got [3, 4] X [8, 2]."
    )
    assert "forward" not in parallel.__dict__
    assert "forward" not in parallel.module.__dict__


def test_a_parametrized_layers_parametrizations_are_rows_named_by_their_class() -> None:
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Linear(8, 4)), nn.ReLU())
    report = paramscope.summary(model, input_size=(3, 8), depth=ALL_DEPTHS)
    classes = {path: type(module).__name__ for path, module in model.named_modules()}
    rows = {r.path: r for r in report.calls or ()}
    for path in ("0.parametrizations", "0.parametrizations.weight", "0.parametrizations.weight.0"):
        assert (rows[path].type, rows[path].params) == (classes[path], 0)  # its tensors count in the layer's row
    assert rows["0"].params == sum(param.numel() for param in model[0].parameters()) == rows[""].params
    assert report.totals.flops == torch_flops(model, torch.randn(3, 8))[0] == 2 * 3 * 8 * 4


def test_a_modules_weights_used_by_its_parent_are_named_in_a_note() -> None:
    report = paramscope.summary(nn.MultiheadAttention(8, 2), input_size=[(3, 8)] * 3)
    assert [note for note in report.notes if "not called" in note] == [
        "1 module(s) hold parameters but were not called in this forward (their parent used the weights directly, as "
        "nn.MultiheadAttention and torch's fused kernels do, or they are unused): out_proj"
    ]


class SharedEmbedding(nn.Module):
    """T5's layout: a ``shared`` embedding that never runs, its weight tied to the encoder's, which does."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Embedding(10, 4)
        self.encoder = nn.Embedding(10, 4)
        self.encoder.weight = self.shared.weight
        self.unused = nn.Linear(4, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(ids)


def test_a_module_whose_tied_weights_ran_elsewhere_is_not_named_as_not_called() -> None:
    report = paramscope.summary(SharedEmbedding(), input_size=(2, 3), dtypes=["long"])
    assert [note for note in report.notes if "not called" in note] == [
        "1 module(s) hold parameters but were not called in this forward (their parent used the weights directly, as "
        "nn.MultiheadAttention and torch's fused kernels do, or they are unused): unused"
    ]


class ReplacesAChildsForward(nn.Module):
    """A forward that monkeypatches a child's forward with one of its own, which never calls the old one."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        child = self.b
        child.forward = lambda features: nn.functional.linear(features, child.weight, child.bias)  # type: ignore[method-assign]
        return self.b(self.a(x))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_forward_replaced_by_the_model_is_named_in_a_note(device: str) -> None:
    model = ReplacesAChildsForward()
    before = snapshot(model)
    report = paramscope.summary(model, input_size=(2, 4), device=device)
    assert [(r.path, r.flops) for r in report.calls or ()] == [("", 2 * 2 * 2 * 4 * 4), ("a", 2 * 2 * 4 * 4)]
    assert [note for note in report.notes if "replaced" in note or "not called" in note] == [
        "the forward replaced the forward of b with one that does not call the old one: calls through it are not "
        "rows of their own, and their FLOPs count in the module that made them"
    ]
    assert_same(before, snapshot(model))


class EfficientAttention(nn.Module):
    """A direct call of the memory-efficient attention kernel, whose FLOP formula in torch takes the tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, sequence, heads, head size)
        return torch.ops.aten._efficient_attention_forward(x, x, x, None, None, None, None, None, 0.0, 0, False)[0]


def test_torchs_formulas_on_tensors_get_tensors() -> None:
    report = paramscope.summary(EfficientAttention(), input_size=(2, 16, 4, 8))
    counter = FlopCounterMode(display=False)
    with counter:  # the kernel runs on CUDA only: FlopCounterMode on meta is the ground truth
        EfficientAttention()(torch.empty(2, 16, 4, 8, device="meta"))
    assert report.totals.flops == counter.get_total_flops() > 0


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_is_refused_and_leaves_no_hooks() -> None:
    inner = torch.jit.script(nn.Linear(4, 4))
    model = nn.Sequential(nn.Linear(4, 4), inner)
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(model, input_size=(2, 4))
    assert str(caught.value) == (
        "the model holds TorchScript modules, which take no module hooks: summarise the eager model"
    )
    assert all(count == 0 for _, _, count in module_hooks(model[0]))


def test_a_model_that_holds_its_owner_is_refused_in_one_line() -> None:
    from .test_walk import Owner

    model = Owner()
    with pytest.raises(RecursionError):  # what torch's own train() does with it
        model.train()
    message = (
        "module 'head.owner' refers back to '(model)', which contains it (a cycle): torch's train() and eval() recurse "
        "through it without end; inspect reads the model, a forward needs the cycle broken"
    )
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(model, input_size=(2, 4))
    assert str(caught.value) == message
    assert "forward" not in model.__dict__
    assert all(module.training for module in model.modules())
    plan = paramscope.memory(model, input_size=(2, 4), train=True).memory
    assert plan is not None
    assert f"no activations item: {message}" in plan.notes


def test_a_sharded_model_is_not_run() -> None:
    model = nn.Linear(4, 4)
    model.weight.ds_numel = 16  # type: ignore[attr-defined]  # a ZeRO-3 parameter, as DeepSpeed marks them
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.summary(model, input_size=(2, 4))
    assert str(caught.value).startswith("the model is sharded (FSDP, DTensor or ZeRO-3): its forward runs collectives")


def tiny_mixtral(device: str = "cpu") -> nn.Module:
    """A mixture of experts as transformers 5 runs it: every token through its experts in one grouped product."""
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        return transformers.MixtralForCausalLM(config).eval()


def _grouped_mm_by_hand(tokens: Any, experts: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    # (tokens × k) · (k × n) for each token, through the weights of its expert; 2 FLOPs per MAC
    return 2 * tokens.shape[0] * tokens.shape[1] * experts.shape[2]


_grouped_mm_by_hand._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode passes tensors, not shapes


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_mixture_of_experts_flops_include_the_experts(dtype: torch.dtype) -> None:
    # torch's meta kernel of the grouped product takes bfloat16 alone, as its fast CUDA kernel does; the CPU kernel
    # and CUDA's fallback take float32 too, and so does a summary on meta
    model = tiny_mixtral("meta").to(dtype)
    report = paramscope.summary(model, input_size=(2, 8), dtypes=[torch.long], depth=ALL_DEPTHS)
    experts = [call for call in report.calls or () if call.path.endswith("mlp.experts")]
    tokens = 2 * 8
    assert [call.flops for call in experts] == [tokens * 2 * 3 * (2 * 16 * 32)]  # 2 experts a token, 3 matrices
    assert experts[0].outputs == "[16, 16]"


def test_a_float32_mixture_of_experts_on_meta_is_the_one_on_cpu() -> None:
    model, ids = tiny_mixtral(), torch.zeros(2, 8, dtype=torch.long)
    meta = paramscope.summary(model, input_size=(2, 8), dtypes=["long"], mode="train", depth=ALL_DEPTHS)
    cpu = paramscope.summary(model, input_data=ids, device="cpu", mode="train", depth=ALL_DEPTHS)
    assert [(call.path, call.inputs, call.outputs) for call in meta.calls or ()] == [
        (call.path, call.inputs, call.outputs) for call in cpu.calls or ()
    ]
    counter = FlopCounterMode(
        display=False, custom_mapping={**ATTENTION_FORMULA, aten._grouped_mm: _grouped_mm_by_hand}
    )
    with torch.no_grad(), counter:
        model(ids)
    assert meta.totals.flops == counter.get_total_flops() > 0
    with attention_as_on_a_gpu():  # grouped-query attention in float32
        saved, saved_per_path = torch_saved_bytes(model, ids)
    assert meta.totals.activations_bytes == saved
    called = [call for call in meta.calls or () if call.calls]  # containers never called sum their children
    assert {call.path: call.activations_bytes for call in called} == {
        call.path: saved_per_path.get(call.path, 0) for call in called
    }


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel], ids=["compiled", "data-parallel"])
def test_wrapped_models_are_summarised_as_the_model_inside(wrap: Callable[[nn.Module], nn.Module]) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    plain = paramscope.summary(model, input_size=(4, 8), device="cpu")
    wrapped = paramscope.summary(wrap(model), input_size=(4, 8), device="cpu")
    assert [(c.path, c.type, c.params, c.flops) for c in wrapped.calls or ()] == [
        (c.path, c.type, c.params, c.flops) for c in plain.calls or ()
    ]


class FlexSelfAttention(nn.Module):
    """Self-attention through FlexAttention (eager: its unfused kernel), or through SDPA for the same products."""

    def __init__(self, *, flex: bool, kv_heads: int = 4, score_mod: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.flex, self.kv_heads, self.score_mod = flex, kv_heads, score_mod
        self.q, self.kv = nn.Linear(64, 64), nn.Linear(64, 2 * 16 * kv_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.nn.attention.flex_attention import flex_attention

        batch, tokens, _ = x.shape
        q = self.q(x).view(batch, tokens, 4, 16).transpose(1, 2)
        k, v = self.kv(x).view(batch, tokens, 2, self.kv_heads, 16).permute(2, 0, 3, 1, 4)
        gqa = self.kv_heads != 4
        if self.flex:
            out = flex_attention(q, k, v, score_mod=self.score_mod, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        return out.transpose(1, 2).reshape(batch, tokens, 64)


def _relative_bias(score: torch.Tensor, batch: Any, head: Any, query: Any, key: Any) -> torch.Tensor:
    return score + (query - key)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize(
    ("kv_heads", "score_mod"), [(4, None), (2, None), (4, _relative_bias)], ids=["mha", "gqa", "bias"]
)
def test_flex_attention_on_cpu_counts_what_sdpa_counts(kv_heads: int, score_mod: Callable[..., Any] | None) -> None:
    # torch's FlopCounterMode fails on FlexAttention in eager mode; SDPA does the same two products, which it counts
    torch.manual_seed(0)
    flex = FlexSelfAttention(flex=True, kv_heads=kv_heads, score_mod=score_mod).eval()
    sdpa = FlexSelfAttention(flex=False, kv_heads=kv_heads)
    sdpa.load_state_dict(flex.state_dict())
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        expected_shape = flex(x).shape
    total, _ = torch_flops(sdpa, x)
    report = paramscope.summary(flex, input_data=[x], device="cpu")
    assert report.totals.flops == total
    assert report.calls[0].outputs == describe(torch.zeros(expected_shape))
    # by hand: the projections (2 per multiply-add), and 4·B·H·L·S·D for the two products of every query head
    assert total - 2 * x.shape[0] * x.shape[1] * 64 * (64 + 2 * 16 * kv_heads) == 4 * 2 * 4 * 32 * 32 * 16


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_on_meta_fails_with_a_hint_to_run_it_on_cpu() -> None:
    with pytest.raises(ForwardError) as error:
        paramscope.summary(FlexSelfAttention(flex=True), input_size=(2, 32, 64))
    message = str(error.value)
    assert message.startswith("the forward failed in '(model)' with inputs [2, 32, 64]: ValueError: FlexAttention is")
    assert message.endswith(
        "; torch runs FlexAttention on a real device alone: try --device cpu (in eval mode: torch runs its backward on "
        "a GPU alone)"
    )


class Conditional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, self.a, self.b, (x,))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_higher_order_op_other_than_flex_attention_is_refused_in_words(device: str) -> None:
    with pytest.raises(ForwardError) as error:
        paramscope.summary(Conditional(), input_size=(4, 8), device=device)
    assert str(error.value) == (
        "the forward failed in '(model)' with inputs [4, 8]: NotImplementedError: torch.ops.higher_order.cond runs "
        "subgraphs of its own, which paramscope cannot record op by op (of the higher-order ops, it runs "
        "flex_attention alone)"
    )


_FLEX_PROGRAM = """
from torch import nn
from torch.nn.attention.flex_attention import flex_attention

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.kv = nn.Linear(64, 64), nn.Linear(64, 128)

    def forward(self, x):
        batch, tokens, _ = x.shape
        q = self.q(x).view(batch, tokens, 4, 16).transpose(1, 2)
        k, v = self.kv(x).view(batch, tokens, 2, 4, 16).permute(2, 0, 3, 1, 4)
        return flex_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, 64)
"""


def test_cli_flex_attention_on_cpu_in_a_new_process(tmp_path: Path) -> None:
    # FlexAttention compiles its eager kernel on each call; its first call imports dynamo, and the summary set no
    # stance to run it eagerly then: dynamo refused it under the recorder ("torch.compile with fullgraph=True found
    # no compiled frames"), in a process where nothing had called FlexAttention before
    path = tmp_path / "flex.py"
    path.write_text(_FLEX_PROGRAM)
    result = run_in_a_new_process("summary", f"{path}:Attention", "--input-size", "2,32,64", "--device", "cpu",
                                  "--mode", "eval", "--format", "json", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr  # torch warns that FlexAttention runs without torch.compile
    total, _ = torch_flops(FlexSelfAttention(flex=False), torch.randn(2, 32, 64))
    assert json.loads(result.stdout)["calls"][0]["flops"] == total
    # by hand: the projections (2 per multiply-add), and 4·B·H·L·S·D for the two products of every query head
    assert total == 2 * 2 * 32 * 64 * (64 + 128) + 4 * 2 * 4 * 32 * 32 * 16


def test_cli_flex_attention_imported_in_the_forward_gets_a_hint(tmp_path: Path) -> None:
    # imported at its first call, in the forward: dynamo came in with it, too late for the summary to set its stance
    path = tmp_path / "flex.py"
    program = _FLEX_PROGRAM.replace("from torch.nn.attention.flex_attention import flex_attention\n", "")
    path.write_text(program.replace("    def forward(self, x):\n", "    def forward(self, x):\n        from "
                                    "torch.nn.attention.flex_attention import flex_attention\n"))  # fmt: skip
    result = run_in_a_new_process("summary", f"{path}:Attention", "--input-size", "2,32,64", "--device", "cpu",
                                  "--mode", "eval", "--quiet")  # fmt: skip
    assert result.returncode == 2
    error = result.stderr.splitlines()[-1]
    assert error.startswith(
        "paramscope: error: the forward failed in '(model)' with inputs [2, 32, 64]: RuntimeError: torch.compile with "
        "fullgraph=True found no compiled frames."
    )
    assert error.endswith(
        "; the forward compiled code at its first call in this process (torch.compile; FlexAttention compiles its "
        "kernel so), which torch refuses under the summary's recorder of ops: import torch.nn.attention.flex_attention "
        "(or torch._dynamo) before the summary, at the top of the model's module"
    )


def test_paramscopes_formulas_on_shapes_are_looked_up_before_the_kernel_runs() -> None:
    """As torch's own are: their ops' outputs have the shapes their arguments decide, so a count worked out in one
    forward is found by the arguments' shapes alone in the next, before the kernel runs (a key to look it up by)."""
    from paramscope._flop_formulas import EXTRA_FLOP_FORMULAS
    from paramscope.trace import _counter

    on_shapes = [formula for formula in EXTRA_FLOP_FORMULAS.values() if not getattr(formula, "_get_raw", False)]
    assert on_shapes  # the CPU flash-attention kernel's
    query = torch.empty(1, 2, 4, 8)
    for formula in on_shapes:
        _, key = _counter(formula).known((query, query, query), {})
        assert key is not None


def float64_attention_note(calls: int) -> str:
    return (f"activations of {calls} attention call(s) in float64, as a GPU saves them (on meta): no fused GPU kernel "
            "takes float64, and the math path keeps the attention matrix; torch's CPU kernel takes it and saves "
            "less: a summary with --device cpu --mode train measures cpu's")  # fmt: skip


def test_attention_in_float64_on_meta_says_the_cpu_saves_less() -> None:
    # from review: meta measured float64 attention on a GPU's math path (a Llama's 319,936 B to the CPU's 304,576)
    # with no word of it, as grouped-query float32 attention had been
    model, x = FunctionalAttention().double(), torch.randn(2, 16, 32, dtype=torch.float64)
    report = paramscope.summary(model, input_data=x, mode="train")
    cpu = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert float64_attention_note(1) in report.notes
    assert not [note for note in cpu.notes if "float64" in note]
    assert cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0] < report.totals.activations_bytes
    with attention_as_on_a_gpu():
        assert report.totals.activations_bytes == torch_saved_bytes(model, x)[0]


class ValueHeadAttention(nn.Module):
    """Attention whose values have a head size of their own, as multi-head latent attention's (DeepSeek's queries and
    keys of 192, values of 128): here 8 and ``value_size``."""

    def __init__(self, value_size: int = 4) -> None:
        super().__init__()
        self.value_size = value_size
        self.qk = nn.Linear(32, 64)
        self.v = nn.Linear(32, 4 * value_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k = self.qk(x).view(2, 16, 2, 4, 8).permute(2, 0, 3, 1, 4)
        v = self.v(x).view(2, 16, 4, self.value_size).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


VALUE_HEAD_NOTE = (
    "activations of 1 attention call(s) whose values have a head size of their own (multi-head latent attention), as "
    "a GPU's memory-efficient kernel saves them (on meta); torch's CPU kernel wants one head size for queries, keys "
    "and values and runs the math path, which also keeps the attention matrix: a summary with --device cpu --mode "
    "train measures cpu's"
)


def test_attention_with_a_value_head_size_of_its_own_runs_as_cudas_memory_efficient_kernel() -> None:
    # from review: meta took the math path, which keeps the attention matrix: DeepSeek-V3's activations at 32k tokens
    # were 1.02 TiB. CUDA's memory-efficient kernel takes a value head size other than the query's and key's and
    # saves (attention.cu, derivatives.yaml) the query, key and value, its output, a float32 logsumexp per query
    # padded to 32 queries, and an int64 seed and offset.
    model, x = ValueHeadAttention(), torch.randn(2, 16, 32)
    report = paramscope.summary(model, input_data=x, mode="train")
    float32 = 4
    inputs = x.numel() * float32  # saved by both projections, one storage
    projections = (2 * 16 * 64 + 2 * 16 * 16) * float32  # q and k views of one output, v of the other
    output = 2 * 4 * 16 * 4 * float32
    logsumexp = 2 * 4 * 32 * float32
    assert report.totals.activations_bytes == inputs + projections + output + logsumexp + 2 * 8
    assert VALUE_HEAD_NOTE in report.notes
    cpu = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    assert cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0] > report.totals.activations_bytes
    assert not [note for note in cpu.notes if "head size" in note]
    assert report.totals.flops == cpu.totals.flops


def test_attention_with_a_value_head_size_of_its_own_unaligned_or_masked() -> None:
    # values of 6 float32 elements a head: not a multiple of 4, no fused kernel takes them, the math path as on cpu
    model, x = ValueHeadAttention(value_size=6), torch.randn(2, 16, 32)
    report = paramscope.summary(model, input_data=x, mode="train")
    assert report.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    assert VALUE_HEAD_NOTE not in report.notes
    # a boolean mask of 16 keys a row (8-aligned): made additive, in float32, broadcast to every batch and head
    model, mask = ValueHeadAttention(), torch.ones(16, 16, dtype=torch.bool).tril()
    unmasked = paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes
    masked = paramscope.summary(model, input_data=(x, mask), mode="train")
    assert masked.totals.activations_bytes == unmasked + 16 * 16 * 4
    assert VALUE_HEAD_NOTE in masked.notes


def layer_norm_note(calls: int) -> str:
    return (f"{calls} LayerNorm call(s) of a float16 or bfloat16 input saved their mean and inverse standard deviation "
            "in float32, as a GPU does (on meta); the CPU saves them in the input's dtype: a summary with --device cpu "
            "--mode train measures cpu's")  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_layer_norm_in_half_precision_on_meta_says_the_cpu_saves_its_statistics_smaller(dtype: torch.dtype) -> None:
    # from review: torch's meta kernel (as CUDA's) returns float32 statistics, the CPU's the input's dtype: 68 B more
    # a LayerNorm of 17 rows on meta, unnoted
    model, x = nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64)).to(dtype), torch.randn(1, 17, 64, dtype=dtype)
    report = paramscope.summary(model, input_data=x, mode="train")
    cpu = paramscope.summary(model, input_data=x, device="cpu", mode="train")
    half = dtype != torch.float32
    assert [note for note in report.notes if "LayerNorm call" in note] == [layer_norm_note(1)] * half
    assert cpu.totals.activations_bytes == torch_saved_bytes(model, x)[0]
    # a mean and an inverse standard deviation per row, 4 B each on meta, the element size on the cpu
    assert report.totals.activations_bytes - cpu.totals.activations_bytes == 2 * 17 * (4 - x.element_size())


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage:UserWarning")
def test_a_transformer_encoder_given_a_padding_mask_on_meta_says_a_device_packs_the_tokens() -> None:
    # from review: meta counted the padded batch (2,723,840 FLOPs), the CPU's eval fast path the real tokens
    # (2,166,784), with no word of it
    torch.manual_seed(0)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2).eval()
    x, mask = torch.randn(2, 10, 64), torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 6:] = True
    inputs = {"src": x, "src_key_padding_mask": mask}
    meta = paramscope.summary(model, input_data=inputs)
    cpu = paramscope.summary(model, input_data=inputs, device="cpu")
    # by hand, for the 16 real tokens (FlopCounterMode counts none of the nested tensors' ops): per layer, the q, k,
    # v and output projections, the scores and the weighted sum of each sequence (10 and 6 tokens), the feed-forward
    packed = 2 * (4 * 2 * 16 * 64 * 64 + 4 * 64 * (10**2 + 6**2) + 2 * 2 * 16 * 64 * 128)
    assert (
        "nn.TransformerEncoder ran its layers on the padded batch 1 time(s) (on meta), as in training; in eval mode a "
        "real device's fast path packs the tokens its src_key_padding_mask keeps (padding on the right) into a "
        "nested tensor and runs those alone, fewer FLOPs: a summary with --device cpu counts them"
    ) in meta.notes
    assert not [note for note in cpu.notes if "padded batch" in note]
    assert cpu.totals.flops == packed
    padded = paramscope.summary(model, input_data=inputs, device="cpu", mode="train")  # no fast path in training
    assert meta.totals.flops == padded.totals.flops == packed + 2 * (4 * 2 * 4 * 64 * 64 + 2 * 2 * 4 * 64 * 128
                                                                     + 4 * 64 * (2 * 10**2 - 10**2 - 6**2))  # fmt: skip


@pytest.mark.parametrize("ids", [[[0, 5, 64]], [[-65, 1, 2]]], ids=["past-the-end", "before-the-start"])
def test_token_ids_outside_the_table_fail_on_meta_as_on_a_device(ids: list[list[int]]) -> None:
    # from review: their values known, meta ran a forward no device runs (the CPU: IndexError)
    model = nn.Sequential(nn.Embedding(64, 8), nn.Linear(8, 8))
    tokens = torch.tensor(ids)
    with pytest.raises(IndexError):
        model(tokens)
    with pytest.raises(ForwardError) as meta:
        paramscope.summary(model, input_data=tokens)
    with pytest.raises(ForwardError) as cpu:
        paramscope.summary(model, input_data=tokens, device="cpu")
    bad = 64 if ids[0][-1] == 64 else -65
    assert str(meta.value) == (f"the forward failed in '0' with inputs [1, 3]: IndexError: index out of range in "
                               f"self: an id of {bad} for an embedding of 64 rows")  # fmt: skip
    assert "IndexError: index out of range in self" in str(cpu.value)

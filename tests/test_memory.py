"""``paramscope.memory`` and ``paramscope memory``: every item of a budget checked against an independent truth.

Ground truth is computed here, never by paramscope's own arithmetic: the bytes of the state tensors of a real
``optimizer.step()``, of the ``.grad`` tensors of a real backward, of the key/value tensors of transformers' own
``DynamicCache`` after a real forward, of the tensors autograd saves in a real train-mode forward on CPU (measured
with ``saved_tensors_hooks``), of the tensors torch allocates in each dtype and of the tensors on disk; and the
published formulas of the ZeRO paper (Rajbhandari et al. 2020, as DeepSpeed documents them), of llama.cpp's block
sizes (the ``gguf`` package's table) and of vLLM's rule for key/value heads under tensor parallelism. Counts of
parameters come from ``model.parameters()``. Every model is tiny and runs on CPU; nothing reaches the network.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import csv
import dataclasses
import fnmatch
import functools
import importlib.util
import inspect
import io
import itertools
import json
import logging
import math
import re
import runpy
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import transformers
from torch import nn

import paramscope
from paramscope import MemoryPlan, dtypes
from paramscope._memory import OPTIMIZERS, PRECISIONS, attention_heads, kv_cache
from paramscope._units import format_bytes
from paramscope.examples import gpt2, resnet18
from paramscope.render.csv import MEMORY_COLUMNS

from .cli import assert_error, run
from .formula_text import multiplied_out
from .test_summary import attention_as_on_a_gpu

TINY_GPT_KWARGS = {"vocab_size": 100, "n_positions": 16, "n_embd": 8, "n_layer": 2, "n_head": 2}
TINY_GPT_ARGS = tuple(f"{key}={value}" for key, value in TINY_GPT_KWARGS.items())
GPT2 = "paramscope.examples:gpt2"
TINY_LLAMA: dict[str, Any] = {
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "attention_dropout": 0.0, "attn_implementation": "sdpa",
}  # fmt: skip
SUBPROCESS_TIMEOUT = 120
MODEL_STATE_ITEMS = ("weights", "gradients", "fp32 master weights", "optimizer states (adamw)")
FLOAT_TYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
               "float8_e4m3fn": torch.float8_e4m3fn, "int8": torch.int8}  # fmt: skip
PRECISION_DTYPES = {"fp32": torch.float32, "bf16-pure": torch.bfloat16}
"""Precisions whose weights, gradients and optimizer states all live in one dtype: a real step measures them."""


# ---------------------------------------------------------------------------------------------------------------------
# ground truth, measured with torch and transformers on CPU


def nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """The bytes of the storages behind ``tensors``, each storage once: the memory they actually hold."""
    storages = {tensor.untyped_storage().data_ptr(): tensor.untyped_storage().nbytes() for tensor in tensors}
    return sum(storages.values())


def trainable_numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return nbytes(value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value))


def saved_bytes(model: nn.Module, *args: Any, **kwargs: Any) -> int:
    """Bytes autograd saves for backward in a train-mode forward on CPU (of a copy of the model), each storage once,
    the parameters' and buffers' storages left out."""
    model = copy.deepcopy(model).train()
    seen = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    held: list[torch.UntypedStorage] = []  # a storage freed in the forward must not leave its address to a new one
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = tensor.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            held.append(tensor.untyped_storage())
            total += tensor.untyped_storage().nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(*args, **kwargs)  # kept alive (it holds the graph) until every storage has been counted
    del output
    return total


def cache_of(output: Any) -> Any:
    """The key/value cache a transformers forward returned (``cache`` in this version, ``past_key_values`` before)."""
    for key in ("cache", "past_key_values"):
        if key in output:
            return output[key]
    raise AssertionError(f"no cache in the output: {list(output.keys())}")


def decode_one(model: nn.Module, cache: transformers.DynamicCache, batch: int) -> transformers.DynamicCache:
    """The cache after one more token per sequence, passed back under the keyword this version's forward takes."""
    keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        return cache_of(model(torch.zeros(batch, 1, dtype=torch.long), use_cache=True, **{keyword: cache}))


def cache_tensors(cache: transformers.DynamicCache) -> list[torch.Tensor]:
    return [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]


def prefill(model: nn.Module, batch: int, tokens: int) -> transformers.DynamicCache:
    """The DynamicCache after a real forward of ``batch`` × ``tokens`` token ids."""
    with torch.no_grad():
        cache = cache_of(model(torch.zeros(batch, tokens, dtype=torch.long), use_cache=True))
    assert isinstance(cache, transformers.DynamicCache)
    return cache


def snapshot(model: nn.Module) -> list[Any]:
    """Everything memory must leave alone: flags, attributes, hooks, and every tensor down to its raw bytes."""
    from torch.nn.modules import module as module_globals

    state: list[Any] = [
        [
            len(value)
            for name, value in sorted(vars(module_globals).items())
            if "hook" in name and isinstance(value, dict)
        ]
    ]
    for path, module in model.named_modules(remove_duplicate=False):
        hooks = sorted(
            (attr, len(value))
            for attr, value in vars(module).items()
            if attr.endswith("_hooks") and isinstance(value, dict)
        )
        state.append((path, type(module), module.training, sorted(vars(module)), hooks))
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        raw = torch.empty(0, dtype=torch.uint8).set_(tensor.untyped_storage()).clone()
        state.append((name, type(tensor), tensor.device, tensor.dtype, tuple(tensor.shape), tensor.requires_grad,
                      tensor.grad is None, tensor.data_ptr(), tensor._version, raw))  # fmt: skip
    return state


def assert_same(before: list[Any], after: list[Any]) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        if isinstance(old, tuple):
            for a, b in zip(old, new, strict=True):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, (old[0], a, b)
        else:
            assert old == new


# ---------------------------------------------------------------------------------------------------------------------
# helpers and models


def plan_of(model: Any, *args: Any, **kwargs: Any) -> MemoryPlan:
    report = paramscope.memory(model, *args, **kwargs)
    assert report.memory is not None
    return report.memory


def names(plan: MemoryPlan) -> list[str]:
    return [item.name for item in plan.items]


class Mixed(nn.Module):
    """A 4-D conv weight, 1-D biases, 2-D matrices, a 3-D parameter, and a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(8, 5)
        self.cube = nn.Parameter(torch.randn(2, 3, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen(self.conv(x).relu().mean((2, 3)))) + self.cube.mean()


def mixed(dtype: torch.dtype = torch.float32) -> Mixed:
    torch.manual_seed(0)
    return Mixed().to(dtype)


def mixed_input(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(2, 3, 6, 6, dtype=dtype)


class Stack(nn.Module):
    """Four equal blocks in a ModuleList: Ψ = 4 × (16 × 16 + 16) = 1,088 parameters in 8 tensors, so every ZeRO
    share below divides evenly by 2, 4 and 8."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(16, 16) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x).relu()
        return x


class Dominant(nn.Module):
    """One large block and three small ones in a ModuleList, sized only (no forward): ZeRO 3 gathers the large block
    with a neighbour, nearly the whole model."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(32, 32), *(nn.Linear(4, 4) for _ in range(3))])


def llama(**changes: Any) -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**TINY_LLAMA, **changes})).eval()


TORCH_OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]] = {
    "adamw": lambda params: torch.optim.AdamW(params),
    "adam": lambda params: torch.optim.Adam(params),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1),
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "adafactor": lambda params: torch.optim.Adafactor(params),
}


def real_step(name: str, dtype: torch.dtype) -> tuple[Mixed, torch.optim.Optimizer]:
    """One backward and one real step of optimizer ``name`` over all parameters (frozen ones included)."""
    model = mixed(dtype)
    optimizer = TORCH_OPTIMIZERS[name](model.parameters())
    model(mixed_input(dtype)).sum().backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test here may reach the network."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.fixture(scope="module")
def tiny_llama() -> transformers.LlamaForCausalLM:
    return llama()


@pytest.fixture
def linear_file(tmp_path: Path) -> str:
    """A CLI target: one 1024 × 1024 float32 matrix, 4 MiB exactly."""
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\n\ndef build():\n    return nn.Linear(1024, 1024, bias=False)\n")
    return f"{path}:build"


# ---------------------------------------------------------------------------------------------------------------------
# 1. optimizer states: a real step


def test_every_optimizer_torch_has_is_checked() -> None:
    assert set(TORCH_OPTIMIZERS) == set(OPTIMIZERS) - {"adamw-8bit"}


@pytest.mark.parametrize("precision", sorted(PRECISION_DTYPES))
@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_optimizer_states_match_a_real_step(name: str, precision: str) -> None:
    dtype = PRECISION_DTYPES[precision]
    model, optimizer = real_step(name, dtype)
    assert all(p.requires_grad for p in optimizer.state)  # torch keeps no state for frozen parameters
    item = plan_of(model, train=True, optimizer=name, precision=precision).item(f"optimizer states ({name})")
    assert item.total_bytes == optimizer_state_bytes(optimizer)
    assert item.per_device_bytes == item.total_bytes
    assert item.label == "derived"
    assert item.where == "device"


class QuantisedWithAdapter(nn.Module):
    """A frozen int8 weight with its frozen float32 scales, and a trained low-rank adapter beside it (QLoRA's
    layout, without bitsandbytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.qweight = nn.Parameter(torch.randint(-128, 128, (16, 16), dtype=torch.int8), requires_grad=False)
        self.scale = nn.Parameter(torch.rand(16), requires_grad=False)
        self.down, self.up = nn.Linear(16, 4, bias=False), nn.Linear(4, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.qweight.to(x.dtype) * self.scale.to(x.dtype)[:, None]
        return x @ weight.t() + self.up(self.down(x))


def _stepped(model: nn.Module, dtype: torch.dtype, autocast: bool) -> dict[str, int]:
    """The bytes of ``model``'s weights, gradients and AdamW states after a real step (under autocast to bfloat16,
    or with the model's floating-point tensors cast to ``dtype``), each storage once."""
    if not autocast:
        model = model.to(dtype)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(torch.randn(2, 16, dtype=torch.float32 if autocast else dtype)).float().sum()
    loss.backward()
    optimizer.step()
    parameters = list(model.parameters())
    return {
        "weights": storage_bytes(parameters),
        "gradients": storage_bytes(p.grad for p in parameters if p.grad is not None),
        "states": optimizer_state_bytes(optimizer),
    }


@pytest.mark.parametrize("precision", ["fp32", "bf16-pure", "bf16-mixed"])
def test_frozen_parameters_are_counted_as_training_holds_them(precision: str) -> None:
    # from review: every parameter was counted in the precision's bytes: the int8 weight in 4 B (fp32), and the frozen
    # float32 scales in 2 B under bf16-mixed, which autocast does not cast
    autocast = precision == "bf16-mixed"
    truth = _stepped(QuantisedWithAdapter(), torch.float32 if precision == "fp32" else torch.bfloat16, autocast)
    plan = plan_of(QuantisedWithAdapter(), train=True, precision=precision)
    planned = {item.name: item.total_bytes for item in plan.items}
    if autocast:  # the trained values in 2 B, their gradients in 2 B and master copies in 4 B: 8 B, as in float32
        trained = 2 * 16 * 4
        assert planned["weights"] == truth["weights"] - 2 * trained  # the frozen tensors as stored, in float32
        assert planned["weights"] + planned["gradients"] + planned["fp32 master weights"] == (
            truth["weights"] + truth["gradients"]
        )
    else:
        assert (planned["weights"], planned["gradients"]) == (truth["weights"], truth["gradients"])
    assert planned["optimizer states (adamw)"] == truth["states"]
    value = 4 if precision == "fp32" else 2
    frozen = "272 as stored (int8, float32)" if autocast else f"16 × {value} B + 256 as stored (int8)"
    assert plan.item("weights").formula == f"128 trainable × {value} B ({precision}) + frozen {frozen}"


def test_4_bit_weights_of_a_checkpoint_are_frozen_in_training(tmp_path: Path) -> None:
    # from review: gpt-oss's MXFP4 experts (float4 values, two a byte) were trained, in 4 B a value under fp32
    tensors = {"experts.down_proj_blocks": torch.zeros(4, 64, 4, 16, dtype=torch.uint8),
               "experts.down_proj_scales": torch.zeros(4, 64, 4, dtype=torch.uint8),
               "experts.down_proj_bias": torch.zeros(4, 64, dtype=torch.bfloat16)}  # fmt: skip
    safetensors.torch.save_file(tensors, tmp_path / "model.safetensors")
    plan = plan_of(str(tmp_path / "model.safetensors"), train=True, precision="fp32")
    blocks, scales, bias = (tensors[f"experts.down_proj_{part}"] for part in ("blocks", "scales", "bias"))
    assert plan.item("weights").total_bytes == nbytes([blocks]) + 4 * bias.numel()
    assert plan.item("quantization metadata").total_bytes == nbytes([scales])
    assert plan.item("gradients").total_bytes == 4 * bias.numel()
    assert plan.item("optimizer states (adamw)").total_bytes == 2 * 4 * bias.numel() + 4


@pytest.mark.parametrize(
    ("precision", "stored"),
    [
        ("bf16-pure", torch.float32),
        ("fp32", torch.bfloat16),
        ("bf16-mixed", torch.float32),
        ("bf16-mixed", torch.bfloat16),
    ],
)
def test_training_counts_the_buffers_in_the_dtype_the_model_is_cast_to(precision: str, stored: torch.dtype) -> None:
    # from review: bf16-pure counted them as stored (float32), though the model it plans for is cast to bfloat16;
    # autocast casts none
    model = resnet18().to(stored)  # running statistics in floating point, num_batches_tracked in int64
    cast = {"bf16-pure": torch.bfloat16, "fp32": torch.float32}.get(precision, stored)
    item = plan_of(model, train=True, precision=precision).item("buffers")
    assert item.total_bytes == storage_bytes(copy.deepcopy(model).to(cast).buffers())
    assert item.label == ("exact" if cast == stored else "derived")


def test_a_quantised_checkpoint_trains_only_its_floating_point_parameters(tmp_path: Path) -> None:
    # from review: its packed weights were counted as trained in the precision's bytes (gradients, states), and its
    # scales left out of the training plan
    quantised = QuantisedWithAdapter()
    safetensors.torch.save_file(dict(quantised.named_parameters()), tmp_path / "model.safetensors")
    plan = plan_of(str(tmp_path / "model.safetensors"), train=True, precision="fp32")
    trained = 2 * 16 * 4 + 16  # the adapter's and the scales': the source does not say which are trained
    assert plan.item("weights").total_bytes == 4 * trained + 256
    assert plan.item("gradients").total_bytes == 4 * trained
    assert plan.item("optimizer states (adamw)").total_bytes == 2 * 4 * trained + 3 * 4
    assert (
        "the source does not say which parameters are trained: those of floating-point dtypes are counted as "
        "trainable, and 1 of dtypes that take no gradients (int8: quantised or integer) as frozen: qweight"
    ) in plan.notes


class Spectral(nn.Module):
    """A complex parameter (a learned filter on a spectrum) beside a real one."""

    def __init__(self) -> None:
        super().__init__()
        self.filter = nn.Parameter(torch.randn(9, 16, dtype=torch.complex64))
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out((torch.fft.rfft(x, dim=-1) @ self.filter).real)


def test_adafactor_refuses_complex_parameters_as_torch_does() -> None:
    model = Spectral()
    optimizer = TORCH_OPTIMIZERS["adafactor"](model.parameters())
    model(torch.randn(3, 16)).sum().backward()
    with pytest.raises(RuntimeError, match="Adafactor does not support complex parameters"):
        optimizer.step()
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(Spectral(), train=True, optimizer="adafactor", input_size=(3, 16))
    assert str(caught.value) == (
        "adafactor does not support complex parameters (torch refuses them): choose another optimizer"
    )


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd-momentum"])
def test_complex_parameters_count_both_halves(name: str) -> None:
    torch.manual_seed(0)
    model = Spectral()
    optimizer = TORCH_OPTIMIZERS[name](model.parameters())
    model(torch.randn(3, 16)).sum().backward()
    optimizer.step()
    plan = plan_of(model, train=True, optimizer=name, precision="fp32", input_size=(3, 16))
    assert plan.item(f"optimizer states ({name})").total_bytes == optimizer_state_bytes(optimizer)
    grads = [param.grad for param in model.parameters() if param.grad is not None]
    gradients = plan.item("gradients")
    assert gradients.total_bytes == nbytes(grads) == 9 * 16 * 8 + (16 * 4 + 4) * 4
    assert gradients.formula.endswith("(a complex parameter counts as 2 values)")
    assert plan.item("weights").total_bytes == nbytes(model.parameters())


class Empty(nn.Module):
    """A classifier head with no classes beside a real layer: a matrix with a 0 in its shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.head = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).sum() + self.head.sum()


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (2, 0, 3)])
def test_adafactor_states_of_a_tensor_with_no_values(shape: tuple[int, ...]) -> None:
    # transformers' Adafactor steps it (torch's allocates the same row and column vectors, then divides by its 0
    # values): a row vector of shape[:-1] and a column vector of shape[:-2] + shape[-1:], one of them not empty
    model = Empty(shape)
    optimizer = transformers.optimization.Adafactor(model.parameters())
    model(torch.randn(2, 4)).backward()
    optimizer.step()
    assert {tuple(v.shape) for v in optimizer.state[model.head].values() if torch.is_tensor(v)} == {
        shape[:-1], shape[:-2] + shape[-1:], ()}  # fmt: skip
    plan = plan_of(Empty(shape), train=True, optimizer="adafactor", precision="fp32")
    item = plan.item("optimizer states (adafactor)")
    assert item.total_bytes == optimizer_state_bytes(optimizer)  # its int step and 0-d RMS: torch's 4 B step


class SparseLookup(nn.Module):
    """An embedding built with sparse=True before a dense layer; with ``tied``, the layer is its tied head."""

    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4, sparse=True)
        self.head = nn.Linear(4, 10, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


SPARSE_IDS = torch.tensor([[1, 2, 2, 7, 1, 3]])  # repeated ids: one row each all the same
SPARSE_NOTE = (
    "embed.weight: the weight of an embedding built with sparse=True gets a sparse gradient (unless the model also "
    "uses it outside the embedding, as a tied head does)"
)


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_sparse_embeddings_are_noted_as_torch_steps_them(name: str) -> None:
    model = SparseLookup()
    optimizer = TORCH_OPTIMIZERS[name](model.parameters())
    model(SPARSE_IDS).sum().backward()
    assert model.embed.weight.grad is not None
    assert model.embed.weight.grad.is_sparse
    plan = plan_of(SparseLookup(), train=True, optimizer=name, precision="fp32")
    notes = [note for note in plan.notes if "sparse=True" in note]
    if name in ("adam", "adamw", "adafactor"):
        with pytest.raises(RuntimeError, match="does not support sparse gradients") as caught:
            optimizer.step()
        words = str(caught.value).split(",")[0]
        assert notes == [f"{SPARSE_NOTE}, which torch's {name} refuses ('{words}'): build the embedding with "
                         "sparse=False, or step it with SGD or SparseAdam; counted dense here"]  # fmt: skip
        return
    optimizer.step()
    grad = model.embed.weight.grad
    assert grad._nnz() == SPARSE_IDS.numel()  # a row per id looked up, not merged
    assert not grad.is_coalesced()
    assert grad._indices().dtype == torch.int64
    expected = (f"{SPARSE_NOTE}: counted dense here, where torch's holds a row of values and an int64 index for "
                "each id the batch looks up, not merged (more than the dense gradient when a batch looks up more "
                "ids than the table has rows)")  # fmt: skip
    if name == "sgd-momentum":
        buffer = optimizer.state[model.embed.weight]["momentum_buffer"]
        assert buffer.is_sparse
        assert buffer._nnz() == SPARSE_IDS.numel()
        optimizer.zero_grad()
        model(torch.full((1, 12), 9)).sum().backward()
        optimizer.step()  # 12 lookups of one id, added to the buffer row by row: more rows than the table has
        assert optimizer.state[model.embed.weight]["momentum_buffer"]._nnz() > model.embed.num_embeddings
        expected += "; SGD's momentum buffer for it is sparse too, its rows merged only in part, so it can grow past "
        expected += "the dense size from step to step"
    assert notes == [expected]


def test_a_sparse_embedding_with_a_tied_head_gets_a_dense_gradient() -> None:
    model = SparseLookup(tied=True)
    optimizer = torch.optim.AdamW(model.parameters())
    model(SPARSE_IDS).sum().backward()
    assert model.embed.weight.grad is not None
    assert not model.embed.weight.grad.is_sparse
    optimizer.step()  # torch steps it
    plan = plan_of(SparseLookup(tied=True), train=True, precision="fp32")
    assert not [note for note in plan.notes if "sparse" in note]
    assert plan.item("optimizer states (adamw)").total_bytes == optimizer_state_bytes(optimizer)


@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed"])
@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_mixed_precision_states_are_those_of_the_float32_master_copy(name: str, precision: str) -> None:
    _, optimizer = real_step(name, torch.float32)  # the optimizer steps the fp32 master weights
    item = plan_of(mixed(), train=True, optimizer=name, precision=precision).item(f"optimizer states ({name})")
    assert item.total_bytes == optimizer_state_bytes(optimizer)


class WithUnusedParts(nn.Module):
    """A layer the forward uses, one it uses under no_grad (a frozen teacher), and a head it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.teacher, self.head = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher(x)
        return self.used(x) - target


def test_parameters_without_a_gradient_from_the_forward_are_named_and_counted_all_the_same() -> None:
    torch.manual_seed(0)
    model = WithUnusedParts()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 16)).sum().backward()
    optimizer.step()
    plan = plan_of(model, train=True, optimizer="adamw", precision="fp32", input_size=(3, 16))
    # an upper bound: torch allocates only for what a backward reaches, and this forward reaches one layer
    reached = [param.grad for param in model.parameters() if param.grad is not None]
    assert nbytes(reached) == (16 * 16 + 16) * 4
    assert plan.item("gradients").total_bytes == nbytes(model.parameters()) > nbytes(reached)
    assert (
        "4 trainable tensor(s), 816 values, got no gradient from this forward (not in its autograd graph: unused, "
        "used under no_grad, or on a branch it did not take); they are counted in gradients and optimizer states all "
        "the same, which torch gives a parameter only once a backward reaches it: teacher.weight, teacher.bias, "
        "head.weight and 1 more"
    ) in plan.notes


class FrozenInItsForward(nn.Module):
    """Every op under no_grad (a frozen teacher's wrapper): the output has no autograd graph."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.a(x)


def test_a_forward_whose_output_reaches_no_parameter_says_so() -> None:
    # with every trainable parameter unreached, the note was left out (and with none reached because the output had
    # no graph at all): a plan of 0 B of activations and a full set of gradients, silently
    model = FrozenInItsForward()
    output = model(torch.randn(2, 8))
    assert not output.requires_grad  # a backward from it cannot run
    plan = plan_of(model, train=True, input_size=(2, 8))
    assert plan.item("activations").total_bytes == 0
    assert (
        "all 2 trainable tensor(s), 72 values, got no gradient from this forward (not in its autograd graph: unused, "
        "used under no_grad, or on a branch it did not take; a backward from its output has nothing to reach); they "
        "are counted in gradients and optimizer states all the same, which torch gives a parameter only once a "
        "backward reaches it: a.weight, a.bias"
    ) in plan.notes


class ReturnsCodes(nn.Module):
    """A forward that returns integer codes and keeps its loss on the module (a vector quantizer's commitment loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.proj(x)
        self.aux = logits.square().mean()
        return logits.argmax(-1)


def test_a_forward_that_returns_no_tensor_a_gradient_could_start_from_names_none() -> None:
    # the loss is made elsewhere (from module.aux here), and a backward from it reaches every parameter
    model = ReturnsCodes()
    model(torch.randn(2, 8))
    model.aux.backward()
    assert all(param.grad is not None for param in model.parameters())
    del model.aux
    plan = plan_of(model, train=True, input_size=(2, 8))
    assert "activations" in names(plan)  # the forward ran: what it reached was looked at
    assert not [note for note in plan.notes if "got no gradient" in note]


def test_a_base_models_checkpoint_under_a_config_with_a_head_names_no_parameter_without_a_gradient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # from_pretrained loads a LlamaModel's tensors into LlamaForCausalLM (adding "model."), and a backward reaches
    # every one; the forward's names have the prefix, the checkpoint's not: "all 20 ... got no gradient" was said
    base = transformers.LlamaModel(transformers.LlamaConfig(**TINY_LLAMA))
    base.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForCausalLM"]}))
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path)
    capsys.readouterr()  # transformers' report of the head it initialised
    ids = torch.zeros(1, 8, dtype=torch.long)
    loaded(ids, labels=ids).loss.backward()
    assert all(param.grad is not None for name, param in loaded.named_parameters() if name.startswith("model."))
    plan = plan_of(str(tmp_path), train=True, seq=8)
    assert "activations" in names(plan)  # the forward ran: what it reached was looked at
    assert not [note for note in plan.notes if "got no gradient" in note]


def test_a_checkpoint_whose_experts_the_loader_merges_names_no_parameter_without_a_gradient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # transformers 5 saves Mixtral's experts one by one and merges them into one tensor as it loads them: the
    # forward's names are the merged tensor's, so every expert of the checkpoint was listed as getting no gradient
    config = transformers.MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                        num_experts_per_tok=2)  # fmt: skip
    transformers.MixtralForCausalLM(config).save_pretrained(tmp_path)
    loaded = transformers.MixtralForCausalLM.from_pretrained(tmp_path)
    capsys.readouterr()
    stored = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert any(".experts.3." in name for name in stored)  # one by one on disk
    ids = torch.zeros(1, 8, dtype=torch.long)
    loaded(ids, labels=ids).loss.backward()
    assert all(param.grad is not None for param in loaded.parameters())  # the merged experts' too
    plan = plan_of(str(tmp_path), train=True, seq=8)
    assert "activations" in names(plan)  # the forward ran: what it reached was looked at
    assert not [note for note in plan.notes if "got no gradient" in note]


class WithWrappedParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        self.parallel = nn.DataParallel(nn.Linear(8, 8))
        self.checkpointed = checkpoint_wrapper(nn.Linear(8, 8))
        self.unused = nn.DataParallel(nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.checkpointed(self.parallel(x))


def test_the_parameters_of_a_wrapper_inside_the_model_are_named_as_the_report_names_them_in_the_gradient_note() -> None:
    # the forward names them with the wrapper's module ('parallel.module.weight'), the report without: none was found
    # among the trained ones, and the note named all or, all being unnamed, none of them
    model = WithWrappedParts()
    model(torch.randn(3, 8)).sum().backward()
    assert [name for name, param in model.named_parameters() if param.grad is None] == [
        "unused.module.weight", "unused.module.bias"
    ]  # fmt: skip
    plan = plan_of(model, train=True, input_size=(3, 8))
    assert [note for note in plan.notes if "got no gradient" in note] == [
        "2 trainable tensor(s), 36 values, got no gradient from this forward (not in its autograd graph: unused, used "
        "under no_grad, or on a branch it did not take); they are counted in gradients and optimizer states all the "
        "same, which torch gives a parameter only once a backward reaches it: unused.weight, unused.bias"
    ]
    # every parameter gets a gradient here: no note (the DataParallel's were named as getting none)
    model = nn.Sequential(nn.Linear(8, 8), nn.DataParallel(nn.Linear(8, 2)))
    model(torch.randn(3, 8)).sum().backward()
    assert all(param.grad is not None for param in model.parameters())
    assert not [note for note in plan_of(model, train=True, input_size=(3, 8)).notes if "got no gradient" in note]


def test_sgd_without_momentum_keeps_no_state() -> None:
    _, optimizer = real_step("sgd", torch.float32)
    assert optimizer_state_bytes(optimizer) == 0
    assert plan_of(mixed(), train=True, optimizer="sgd").item("optimizer states (sgd)").total_bytes == 0


def test_adamw_8bit_is_an_estimate_of_bitsandbytes_layout() -> None:
    item = plan_of(mixed(), train=True, optimizer="adamw-8bit").item("optimizer states (adamw-8bit)")
    assert item.label == "estimate"
    assert "bitsandbytes" in item.formula
    full = plan_of(mixed(), train=True, optimizer="adamw").item("optimizer states (adamw)")
    assert 0 < item.total_bytes <= full.total_bytes


def bitsandbytes_adam8bit_bytes(model: nn.Module) -> int:
    """The state tensors bitsandbytes' ``Optimizer2State.init_state`` makes for 8-bit Adam (block-wise), written out:
    a parameter under ``min_8bit_size`` (4,096) values gets two float32 states; a larger one two uint8 states and two
    float32 ``absmax`` of one value per block of 256; ``step`` is a Python int (no tensor), and the two quantile maps
    ``qmap1``/``qmap2`` (256 float32 values each) are the optimizer's own, shared by every parameter."""
    total, large = 0, False
    for p in model.parameters():
        if not p.requires_grad:
            continue
        n = p.numel()
        if n < 4096:
            total += 2 * 4 * n
        else:
            large = True
            total += 2 * n + 2 * 4 * ((n // 256) + bool(n % 256))
    return total + large * 2 * 256 * 4


def test_adamw_8bit_states_match_bitsandbytes_layout() -> None:
    model = nn.Sequential(nn.Linear(100, 50), nn.Linear(50, 200, bias=False), nn.LayerNorm(200))
    item = plan_of(model, train=True, optimizer="adamw-8bit").item("optimizer states (adamw-8bit)")
    assert item.total_bytes == bitsandbytes_adam8bit_bytes(model) == 2 * 15_000 + 2 * 4 * 60 + 2 * 4 * 450 + 2_048
    assert item.formula == (
        "2 × 15,000 × 1 B + 2 × 60 absmax × 4 B + 2 × 450 small × 4 B + 2 × 256 × 4 B quantile maps (bitsandbytes' "
        "layout: tensors under 4,096 values in 32 bits, an absmax per 256)"
    )
    small = nn.Sequential(nn.Linear(8, 8))  # nothing in 8 bits: no quantile maps
    item = plan_of(small, train=True, optimizer="adamw-8bit").item("optimizer states (adamw-8bit)")
    assert item.total_bytes == bitsandbytes_adam8bit_bytes(small) == 2 * 4 * 72


# ---------------------------------------------------------------------------------------------------------------------
# 2. gradients and master weights: a real backward


@pytest.mark.parametrize("precision", sorted(PRECISION_DTYPES))
def test_gradients_match_a_real_backward(precision: str) -> None:
    dtype = PRECISION_DTYPES[precision]
    model = mixed(dtype)
    model(mixed_input(dtype)).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(p.grad is None for p in model.frozen.parameters())
    assert len(grads) == sum(1 for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    item = plan_of(model, train=True, precision=precision).item("gradients")
    assert (item.total_bytes, item.label) == (nbytes(grads), "derived")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_master_weights_only_for_mixed_precision(precision: str) -> None:
    model = mixed()
    plan = plan_of(model, train=True, precision=precision)
    trainable = trainable_numel(model)
    assert trainable < sum(p.numel() for p in model.parameters())  # the frozen layer is left out
    if precision.endswith("-mixed"):
        assert plan.item("gradients").total_bytes == 2 * trainable  # half-precision gradients
        master = plan.item("fp32 master weights")
        assert (master.total_bytes, master.label) == (4 * trainable, "derived")
    else:
        assert "fp32 master weights" not in names(plan)


# ---------------------------------------------------------------------------------------------------------------------
# 3. KV cache: transformers' own DynamicCache


@pytest.mark.parametrize(
    ("changes", "batch", "tokens"),
    [
        ({}, 2, 8),  # grouped-query attention: 2 kv heads for 4 query heads
        ({}, 3, 5),
        ({"num_key_value_heads": 4}, 1, 6),  # multi-head attention
        ({"head_dim": 12}, 3, 7),  # an explicit head_dim, not hidden_size / heads = 8
    ],
)
def test_kv_cache_matches_a_dynamic_cache(changes: dict[str, Any], batch: int, tokens: int) -> None:
    model = llama(**changes)
    tensors = cache_tensors(prefill(model, batch, tokens))
    assert len(tensors) == 2 * TINY_LLAMA["num_hidden_layers"]
    assert all(tensor.dtype == torch.float32 for tensor in tensors)
    assert nbytes(tensors) == storage_bytes(tensors)
    item = plan_of(model, seq=tokens, batch=batch, dtype="float32").item("KV cache")
    assert (item.total_bytes, item.per_device_bytes, item.label) == (nbytes(tensors), nbytes(tensors), "derived")
    assert multiplied_out(item.formula) == item.total_bytes


def test_kv_cache_in_fp8_is_one_byte_a_value(tiny_llama: nn.Module) -> None:
    values = sum(tensor.numel() for tensor in cache_tensors(prefill(tiny_llama, 2, 8)))
    plan = plan_of(tiny_llama, seq=8, batch=2, dtype="float32", kv_dtype="fp8")
    assert plan.item("KV cache").total_bytes == values


@pytest.mark.parametrize(
    ("kv_dtype", "bits", "counted"),
    [("int4", 4, "packed, 4 bits"), ("int2", 2, "packed, 2 bits"), ("bits1x8", 1, "packed, 1 bit"),
     ("int8", 8, "at 8 bits"), ("Q4_0", 4.5, "")],
)  # fmt: skip
def test_kv_cache_quantized_to_integers_or_fewer_bits_than_a_byte(kv_dtype: str, bits: float, counted: str) -> None:
    # int3 and int4 were sized packed and labelled exact (derived), with no word of the scales a quantized cache keeps
    # beside its values; from review, so was int8, and bits1x8's note read "1 bits"; llama.cpp's Q4_0 cache is exact:
    # 18 bytes a block of 32 values, scale included (each head's key and value a whole number of blocks, as llama.cpp
    # needs)
    model = llama(head_dim=32)
    values = sum(tensor.numel() for tensor in cache_tensors(prefill(model, 2, 8)))
    plan = plan_of(model, seq=8, batch=2, dtype="float32", kv_dtype=kv_dtype)
    item = plan.item("KV cache")
    assert item.total_bytes == values * bits / 8
    note = (f"the KV cache's {kv_dtype} values are counted {counted} each, as a quantized cache keeps them "
            "(transformers' QuantizedCache, a quantized cache of a serving engine): their scales, and the recent "
            "tokens such a cache keeps unquantized, are not counted")  # fmt: skip
    if kv_dtype.startswith("Q"):
        assert (item.label, [line for line in plan.notes if "counted packed" in line]) == ("derived", [])
    else:
        assert (item.label, note in plan.notes) == ("estimate", True)


def partial_blocks(kv_dtype: str, name: str, length: int) -> str:
    return (f"kv_dtype (--kv-dtype) {kv_dtype!r} keeps a cache in blocks of 32 values, and this model's {name} are "
            f"{length} values a head: llama.cpp refuses such a cache; use a float dtype")  # fmt: skip


@pytest.mark.parametrize("kv_dtype", ["Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "IQ4_NL"])
def test_a_block_kv_cache_of_heads_that_are_no_whole_blocks_is_refused(kv_dtype: str) -> None:
    # llama.cpp quantises each head's key and value on its own and refuses the context ("K cache type q4_0 with block
    # size 32 does not divide n_embd_head_k=80"): the plan sized such a cache as if it could be made
    model = llama(hidden_size=320, num_attention_heads=4, num_key_value_heads=2)  # heads of 80, Phi-2's
    assert {tensor.shape[-1] for tensor in cache_tensors(prefill(model, 1, 2))} == {80}
    with pytest.raises(paramscope.UsageError) as caught:
        plan_of(model, seq=8, kv_dtype=kv_dtype)
    assert str(caught.value) == partial_blocks(kv_dtype, "keys", 80)
    plan_of(model, seq=8, kv_dtype="f16")  # a float cache has no blocks
    whole = llama(hidden_size=256, num_attention_heads=4, num_key_value_heads=2)  # heads of 64: two blocks each
    entry = dtypes.lookup(kv_dtype)
    values = sum(tensor.numel() for tensor in cache_tensors(prefill(whole, 2, 8)))
    item = plan_of(whole, seq=8, batch=2, kv_dtype=kv_dtype).item("KV cache")
    assert item.total_bytes == values // entry.block_elements * entry.block_bytes


def test_a_block_kv_cache_is_refused_for_the_layers_of_a_head_length_of_their_own() -> None:
    # Gemma 4's full-attention layers keep keys of global_head_dim: 48 there, the sliding layers' 32 a block each
    config = transformers.Gemma4TextConfig(**{**HYBRID, "head_dim": 32}, sliding_window=4, global_head_dim=48,
                                           layer_types=["sliding_attention", "full_attention"] * 2,
                                           num_global_key_value_heads=1, attention_k_eq_v=True,
                                           hidden_size_per_layer_input=8, vocab_size_per_layer_input=64)  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    assert {tensor.shape[-1] for tensor in cache_tensors(prefill(model, 1, 2))} == {32, 48}
    with pytest.raises(paramscope.UsageError) as caught:
        plan_of(model, seq=8, kv_dtype="Q8_0")
    assert str(caught.value) == partial_blocks("Q8_0", "keys", 48)


@pytest.mark.parametrize(
    ("latent", "rope", "refused"),
    [(8, 4, ("keys", 12)), (48, 16, ("values", 48)), (64, 32, None)],
)
def test_a_block_kv_cache_of_an_mla_latent_follows_llama_cpp(latent: int, rope: int, refused: Any) -> None:
    # llama.cpp's MLA cache: a key of the latent and the rotary key (DeepSeek's 512 + 64), a value of the latent
    config = transformers.DeepseekV3Config(**{**TINY_DEEPSEEK, "kv_lora_rank": latent, "qk_rope_head_dim": rope})
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    if refused is None:
        item = plan_of(model, seq=8, kv_dtype="Q8_0").item("KV cache")
        assert item.total_bytes == 2 * 8 * (latent + rope) * 34 // 32  # 2 layers × 8 tokens, 34 bytes a block
        return
    with pytest.raises(paramscope.UsageError) as caught:
        plan_of(model, seq=8, kv_dtype="Q8_0")
    assert str(caught.value) == partial_blocks("Q8_0", *refused)


def test_cli_a_block_kv_cache_of_heads_that_are_no_whole_blocks_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2560,
              "num_attention_heads": 32, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 64}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert_error(run(capsys, "memory", str(tmp_path), "--context", "4096", "--kv-dtype", "q4_0"),
                 partial_blocks("q4_0", "keys", 80))  # fmt: skip


def test_kv_cache_without_a_dtype_is_in_the_weights_dtype(tiny_llama: nn.Module) -> None:
    # from review: a float32 model's cache was sized in bf16, half of it, beside weights and activations in float32
    tensors = cache_tensors(prefill(tiny_llama, 2, 8))
    assert {tensor.dtype for tensor in tensors} == {torch.float32}
    assert plan_of(tiny_llama, seq=8, batch=2).item("KV cache").total_bytes == nbytes(tensors)
    half = copy.deepcopy(tiny_llama).to(torch.float16)
    assert plan_of(half, seq=8, batch=2).item("KV cache").total_bytes == nbytes(cache_tensors(prefill(half, 2, 8)))


def test_float64_weights_cache_and_compute_in_float64(tiny_llama: nn.Module) -> None:
    double = copy.deepcopy(tiny_llama).to(torch.float64)
    plan = plan_of(tiny_llama, seq=8, batch=2, dtype="float64")
    assert plan.item("KV cache").total_bytes == nbytes(cache_tensors(prefill(double, 2, 8)))
    assert plan.item("activations").total_bytes == plan_of(double, seq=8, batch=2).item("activations").total_bytes


def test_weight_only_formats_compute_their_activations_in_bf16(tiny_llama: nn.Module) -> None:
    # from review: --dtype fp8 measured the forward in float8, halving the activations
    bf16 = plan_of(tiny_llama, seq=8, batch=2, dtype="bf16").item("activations").total_bytes
    as_bf16 = plan_of(copy.deepcopy(tiny_llama).to(torch.bfloat16), seq=8, batch=2).item("activations").total_bytes
    assert bf16 == as_bf16 > 0
    for weight_only in ("fp8", "int8", "int4", "Q4_K"):
        assert plan_of(tiny_llama, seq=8, batch=2, dtype=weight_only).item("activations").total_bytes == bf16


@pytest.mark.parametrize(
    "config",
    [
        transformers.MistralConfig(**TINY_LLAMA, sliding_window=4),  # every layer slides
        transformers.Qwen2Config(**TINY_LLAMA, sliding_window=4, use_sliding_window=True, max_window_layers=1),
    ],
    ids=["mistral", "qwen2-one-sliding-layer"],
)
def test_kv_cache_sliding_window_as_held_while_decoding(config: transformers.PretrainedConfig) -> None:
    """A prefill of 10 tokens and one decoding step: the full layers hold 11 tokens, the sliding layers the window.

    transformers' DynamicSlidingWindowLayer keeps a *view* of the last ``window - 1`` tokens, into the ``window``
    tokens it concatenated for the step: the storage it holds (the memory) is ``window`` tokens, which is what the
    plan counts; the view's own numel is one token short per sliding layer.
    """
    window, batch, tokens = 4, 2, 10
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = prefill(model, batch, tokens)
    cache = decode_one(model, cache, batch)
    sliding = [layer for layer in cache.layers if getattr(layer, "is_sliding", False)]
    assert sliding
    assert all(layer.keys.shape[-2] == window - 1 for layer in sliding)
    assert all(layer.keys.untyped_storage().nbytes() == layer.keys.nbytes // (window - 1) * window for layer in sliding)
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == storage_bytes(cache_tensors(cache))
    assert multiplied_out(item.formula) == item.total_bytes


@pytest.mark.parametrize(
    ("config", "tokens"),
    [
        (transformers.MistralConfig(**TINY_LLAMA, sliding_window=4), 10),  # every layer slides
        (transformers.MistralConfig(**TINY_LLAMA, sliding_window=4), 4),  # the prompt is the window
        (transformers.Qwen2Config(**TINY_LLAMA, sliding_window=4, use_sliding_window=True, max_window_layers=1), 10),
        (transformers.LlamaConfig(**TINY_LLAMA), 10),  # no window: the cache holds its own storages
    ],
    ids=["mistral", "mistral-prompt-of-a-window", "qwen2-one-sliding-layer", "llama"],
)
def test_inference_activations_count_what_the_cache_keeps_beyond_its_tensors(
    config: transformers.PretrainedConfig, tokens: int
) -> None:
    """After the prompt's forward a sliding-window layer's cache is a view of the last ``window - 1`` tokens of the
    whole prompt's keys and values, whose storage it keeps until the next token: that storage is held at the end of
    the forward, and is counted in the activations (it is in no item else), as much as a real forward keeps."""
    from paramscope.trace import peak_live_bytes

    batch = 2
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = prefill(model, batch, tokens)
    truth = storage_bytes(cache_tensors(cache)) - nbytes(cache_tensors(cache))
    assert bool(truth) == any(getattr(layer, "is_sliding", False) for layer in cache.layers)
    ids = torch.zeros(batch, tokens, dtype=torch.long)
    peak = peak_live_bytes(model, (ids,), {"use_cache": True})
    assert peak.beyond_cache == truth
    assert peak.bytes > peak.beyond_cache
    assert (peak.state_bytes, peak.state_layers) == (0, 0)  # attention layers alone: keys and values, no state
    formula = plan_of(model, seq=tokens, batch=batch).item("activations").formula
    if truth:
        assert f"{format_bytes(truth)} of them what the returned cache keeps beyond its keys and values" in formula
    else:
        assert "beyond" not in formula


HYBRID = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
          "num_key_value_heads": 2, "head_dim": 8, "num_hidden_layers": 4}  # fmt: skip


def tiny_gemma4_config() -> Any:
    return transformers.Gemma4TextConfig(**HYBRID, sliding_window=4, layer_types=["sliding_attention",
                                         "full_attention"] * 2, global_head_dim=32, num_global_key_value_heads=1,
                                         attention_k_eq_v=True, hidden_size_per_layer_input=8,
                                         vocab_size_per_layer_input=64)  # fmt: skip


@pytest.mark.parametrize(
    ("config", "remark"),
    [
        # every other layer is linear attention (a gated delta rule): a recurrent state, no keys and values
        (transformers.Qwen3NextConfig(**HYBRID, full_attention_interval=2, num_experts=2, num_experts_per_tok=1,
                                      moe_intermediate_size=16, shared_expert_intermediate_size=16),
         "(2 linear_attention layers keep a fixed-size recurrent state, the recurrent state item)"),
        # Mamba layers, one attention layer in two (attn_layer_period, attn_layer_offset)
        (transformers.JambaConfig(**HYBRID, attn_layer_period=2, attn_layer_offset=1, num_experts=2,
                                  expert_layer_period=2, mamba_d_state=4, mamba_dt_rank=4),
         "(2 linear_attention layers keep a fixed-size recurrent state, the recurrent state item)"),
        # chunked attention, capped at its chunk, and one global layer in four
        (transformers.Llama4TextConfig(**HYBRID, attention_chunk_size=4, intermediate_size_mlp=64,
                                       num_local_experts=2),
         "(3 chunked layers capped at 4 tokens)"),
        # sliding windows on every other layer (sliding_window_pattern)
        (transformers.Gemma3TextConfig(**HYBRID, sliding_window=4, sliding_window_pattern=2),
         "(2 sliding layers capped at 4 tokens)"),
        # full-attention layers of their own key length and kv heads (per_layer_config, made of global_head_dim)
        (tiny_gemma4_config(), "(2 sliding layers capped at 4 tokens)"),
    ],
    ids=["qwen3-next", "jamba", "llama4-chunked", "gemma3-pattern", "gemma4-per-layer"],
)  # fmt: skip
def test_kv_cache_of_hybrid_models_matches_a_dynamic_cache(config: Any, remark: str) -> None:
    """A prefill of 10 tokens and one decoding step (as for sliding windows above); only the attention layers hold
    keys and values, the others a recurrent state the KV cache item leaves out and names."""
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in cache.layers]
    held = [tensor for pair in pairs for tensor in pair if tensor is not None]  # recurrent layers have no keys
    assert 0 < len(held) <= 2 * HYBRID["num_hidden_layers"]
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == storage_bytes(held)
    assert item.formula.endswith(remark)
    assert multiplied_out(item.formula) == item.total_bytes
    # the same from the config alone
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32",
                          config=config.to_dict())  # fmt: skip
    assert config_only.item("KV cache").total_bytes == item.total_bytes


def test_kv_cache_of_reference_sliding_layers_holds_every_prompt_token() -> None:
    # from the KV cache sweep: UnlimitedOCR's reference sliding-window layers keep every prompt token, and a sliding
    # window of the tokens generated after it; the plan capped them at the window, as sliding layers
    text = transformers.UnlimitedOcrTextConfig(**HYBRID, sliding_window=4, n_routed_experts=2, num_experts_per_tok=1,
                                               moe_intermediate_size=16)  # fmt: skip
    assert set(text.layer_types) == {"reference_sliding_attention"}
    torch.manual_seed(0)
    model = transformers.UnlimitedOcrTextModel(text).eval()
    batch, prompt, generated = 2, 10, 2  # fewer generated tokens than the window: the layers hold every token
    cache = prefill(model, batch, prompt)
    for _ in range(generated):
        cache = decode_one(model, cache, batch)
    held = [getattr(layer, name) for layer in cache.layers for name in ("prefill_keys", "prefill_values", "keys",
            "values")]  # fmt: skip
    assert sum(tensor.shape[-2] for tensor in held) == 2 * HYBRID["num_hidden_layers"] * (prompt + generated)
    config = transformers.UnlimitedOcrConfig(text_config=text.to_dict()).to_dict()
    plan = plan_of(paramscope.inspect(model), seq=prompt + generated, batch=batch, kv_dtype="float32", config=config)
    item = plan.item("KV cache")
    assert item.total_bytes == storage_bytes(held)
    assert item.formula.endswith("(4 reference_sliding layers keep every prompt token, and the last 4 generated "
                                 "after it: counted at the full context, the most they hold)")  # fmt: skip


def test_kv_cache_of_layers_with_their_own_head_length_names_each_shape() -> None:
    # Gemma 4's full-attention layers keep keys of global_head_dim (512 to its sliding layers' 256 by default), with
    # heads of their own: the plan counted every layer at the model's head_dim (7/6 too little at Gemma 4's default)
    config = tiny_gemma4_config()
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = prefill(model, 2, 3)
    assert [tuple(layer.keys.shape) for layer in cache.layers] == [(2, 2, 3, 8), (2, 1, 3, 32)] * 2
    item = plan_of(model, seq=3, batch=2, dtype="float32").item("KV cache")
    assert item.total_bytes == nbytes(cache_tensors(cache))
    assert item.formula == "2 × (2 layers × 2 kv heads × 8 + 2 layers × 1 kv heads × 32) × 3 tokens × 2 × 4 B"


@pytest.mark.parametrize(
    ("config", "shapes"),
    [
        # the sliding layers' own swa_num_key_value_heads and swa_head_dim (Inkling: 16 kv heads to the full
        # layers' 8 by default)
        (transformers.InklingTextConfig(**HYBRID, swa_num_attention_heads=4, swa_num_key_value_heads=4,
                                        swa_head_dim=16, sliding_window_size=4, rel_extent=8, d_rel=4,
                                        moe_intermediate_size=16, n_routed_experts=2, num_experts_per_tok=1,
                                        n_shared_experts=1, local_layer_ids=[0, 2]),
         "2 × (2 layers × 4 kv heads × 16 × 4 tokens + 2 layers × 2 kv heads × 8 × 11 tokens)"),
        # MiMo-V2-Flash's sliding layers have twice num_key_value_heads, in transformers' code alone
        (transformers.MiMoV2FlashConfig(**HYBRID, v_head_dim=4, sliding_window=4, moe_intermediate_size=16,
                                        layer_types=["full_attention", "sliding_attention"] * 2, n_routed_experts=2,
                                        num_experts_per_tok=1),
         "(2 layers × 2 kv heads × (8 + 4) × 11 tokens + 2 layers × 4 kv heads × (8 + 4) × 4 tokens)"),
    ],
    ids=["inkling", "mimo-v2-flash"],
)  # fmt: skip
def test_kv_cache_of_sliding_layers_with_their_own_heads(config: Any, shapes: str) -> None:
    """Sliding-window layers whose key/value heads (and head length) differ from the full layers': the plan counted
    every layer at the model's num_key_value_heads (Inkling's default 66 layers: 55 % of transformers' cache)."""
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    held = [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]
    assert len({tensor.shape[1] for tensor in held}) == 2  # two counts of kv heads
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == storage_bytes(held)
    assert item.formula.startswith(f"{shapes} × 2 × 4 B (2 ")  # each shape's layers at the tokens they hold
    assert multiplied_out(item.formula) == item.total_bytes
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32",
                          config=config.to_dict())  # fmt: skip
    assert config_only.item("KV cache").total_bytes == item.total_bytes


@pytest.mark.parametrize(
    ("config", "layers", "again"),
    [
        # one input layer, two recurrent layers run three times (a cache for each pass), one output layer
        (transformers.DoryConfig(**HYBRID, sliding_window=4, n_input_layers=1, n_output_layers=1,
                                 n_recurrent_loops=3), 8, 4),
        # the recurrent layers keep the last pass's cache alone
        (transformers.DoryConfig(**HYBRID, sliding_window=4, n_input_layers=1, n_output_layers=1,
                                 n_recurrent_loops=3, recurrent_kv_cache_mode="last_loop"), 4, 0),
        # layers 1 and 2 run twice
        (transformers.Inkling2LoopTextConfig(**HYBRID, n_layers_per_attn_res_block=1, loop_layer_index_start=1,
                                             loop_layer_index_end=3, loop_num_passes=2, loop_gate_rank=4,
                                             swa_num_attention_heads=4, swa_num_key_value_heads=2, swa_head_dim=8,
                                             sliding_window_size=4, moe_intermediate_size=16, n_routed_experts=2,
                                             num_experts_per_tok=1, n_shared_experts=1), 6, 2),
    ],
    ids=["dory", "dory-last-loop", "inkling2-loop"],
)  # fmt: skip
def test_kv_cache_of_looped_layers_holds_a_cache_for_each_pass(config: Any, layers: int, again: int) -> None:
    """Models that run some layers again: transformers appends a copy of their caches for each pass after the first
    (Dory's default: 56 caches for its 36 layers; the plan counted 36). Dory's config.json counts 72 layers (an
    attention and an MLP block each), which its class halves."""
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    held = [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]
    assert len(held) == 2 * layers
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == storage_bytes(held)
    assert multiplied_out(item.formula) == item.total_bytes
    assert (f"{again} of them the caches of looped layers again, for the passes after the first" in item.formula) == (
        again > 0
    )
    written = config.to_dict()  # as config.json has it
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32", config=written)
    assert config_only.item("KV cache").total_bytes == item.total_bytes


def test_kv_cache_of_latent_attention_layers_with_their_own_latent() -> None:
    # Dots 3's sliding layers keep a latent of their own (swa_kv_lora_rank, made per_layer_config by its class: 1024
    # to its other layers' 512): the plan counted every layer at kv_lora_rank (61 % of transformers' cache)
    config = transformers.Dots3NoteTextConfig(vocab_size=64, pad_token_id=0, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                                              q_lora_rank=16, kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4,
                                              v_head_dim=8, head_dim=8, swa_num_attention_heads=4,
                                              swa_num_key_value_heads=4, swa_q_lora_rank=16, swa_kv_lora_rank=16,
                                              swa_head_dim=8, swa_qk_nope_head_dim=4, swa_v_head_dim=8,
                                              sliding_window=4, use_dsa=False, moe_intermediate_size=16,
                                              n_routed_experts=4, num_experts_per_tok=1, n_shared_experts=1,
                                              first_k_dense_replace=1)  # fmt: skip
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    held = cache_tensors(cache)
    assert sorted({tensor.shape[-1] for tensor in held}) == [4, 8, 16]  # rotary keys, and two lengths of latent
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == storage_bytes(held)
    assert item.formula == ("(2 layers × (8 + 4) × 11 tokens + 2 layers × (16 + 4) × 4 tokens) latent × 2 × 4 B "
                            "(MLA's compressed cache, as serving engines keep it; 2 sliding layers capped at 4 "
                            "tokens)")  # fmt: skip
    assert multiplied_out(item.formula) == item.total_bytes
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32",
                          config=config.to_dict())  # fmt: skip
    assert config_only.item("KV cache").total_bytes == item.total_bytes


def test_kv_cache_from_a_config_that_counts_two_attention_layers_per_layer() -> None:
    # LongCat-Flash's config.json gives num_layers (28), each layer with two attention blocks: its class's
    # num_hidden_layers is twice that, as many caches as transformers keeps. From the config given alone, the plan
    # counted num_layers caches, half of them
    config = transformers.LongcatFlashConfig(vocab_size=64, hidden_size=32, num_layers=2, num_attention_heads=4,
                                             q_lora_rank=16, kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4,
                                             v_head_dim=8, head_dim=4, ffn_hidden_size=64, expert_ffn_hidden_size=16,
                                             n_routed_experts=4, moe_topk=2, zero_expert_num=2)  # fmt: skip
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    held = cache_tensors(cache)
    assert len(held) == 2 * 4
    written = config.to_dict()  # as config.json has it: num_layers, no num_hidden_layers
    assert (written["num_layers"], "num_hidden_layers" in written) == (2, False)
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32", config=written)
    item = config_only.item("KV cache")
    assert item.total_bytes == storage_bytes(held)
    assert item.formula.startswith("4 layers × (8 + 4) latent × 11 tokens × 2 × 4 B")
    assert plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache").total_bytes == item.total_bytes


SPARSE_MLA = {"vocab_size": 64, "pad_token_id": 0, "hidden_size": 32, "intermediate_size": 64,
              "moe_intermediate_size": 16, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 4,
              "q_lora_rank": 16, "kv_lora_rank": 8, "qk_rope_head_dim": 4, "qk_nope_head_dim": 4, "v_head_dim": 8,
              "n_routed_experts": 4, "num_experts_per_tok": 1, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
              "index_head_dim": 8, "index_n_heads": 2, "index_topk": 4}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "indexers"),
    [
        (transformers.DeepseekV32Config(**SPARSE_MLA), 6),
        # Hunyuan V4's "shared" layers (its class's default indexer_types) reuse another layer's indexer
        (transformers.HYV4Config(**SPARSE_MLA, head_dim=8), 3),
    ],
    ids=["deepseek-v3.2", "hunyuan-v4-shared-indexers"],
)  # fmt: skip
def test_kv_cache_of_sparse_attention_holds_its_indexer_keys(config: Any, indexers: int) -> None:
    # DeepSeek V3.2's sparse attention keeps an indexer key of index_head_dim per token in each indexed layer
    # (transformers' DynamicIndexedLayer) besides the MLA latent: the plan left it out (18 % of the cache at V3.2's
    # 128 to its 576 a token)
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    kept = [layer.indexer_keys for layer in cache.layers if layer.indexer_keys is not None]
    assert [tuple(keys.shape) for keys in kept] == [(batch, tokens + 1, 8)] * indexers
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == storage_bytes([*cache_tensors(cache), *kept])
    assert multiplied_out(item.formula) == item.total_bytes
    assert f" B + {indexers} layers × 8 indexer key × 11 tokens × 2 × 4 B (" in item.formula
    written = {key: value for key, value in config.to_dict().items() if key != "indexer_types"}  # as its class makes
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32", config=written)
    assert config_only.item("KV cache").total_bytes == item.total_bytes


MISTRAL_LARGE_4_TEXT = {k: v for k, v in SPARSE_MLA.items() if k not in ("q_lora_rank", "n_group", "topk_group")}
# Mistral Large 4 as published: 72 layers, every fourth a NoPE layer (its class's default no_rope_layers), layers 39,
# 43, ..., 71 attending to layer 35's latent (kv_source_layers), every layer running its own indexer (its class's
# default indexer_types)
PUBLISHED_SOURCES = [35 if index >= 39 and (index + 1) % 4 == 0 else index for index in range(72)]


@pytest.mark.parametrize(
    "changes",
    [
        {"num_hidden_layers": 72, "kv_source_layers": PUBLISHED_SOURCES},
        # layers 6 and 7 attend to 2's and 3's latent: 6 runs an indexer of its own, 7 reuses 6's and keeps no cache
        {"num_hidden_layers": 8, "kv_source_layers": [0, 1, 2, 3, 4, 5, 2, 3], "index_topk_pattern": "FFFFFFFS"},
    ],
    ids=["published-layers", "shared-indexer"],
)  # fmt: skip
def test_kv_cache_of_mistral_large_4_keeps_what_each_layer_caches(changes: dict[str, Any]) -> None:
    # from the KV cache sweep: Mistral Large 4's NoPE layers (no_rope_layers 0) cache their latent with no rotary key,
    # and its layers that attend to an earlier layer's latent (kv_source_layers) cache none of their own: the plan
    # counted a rotary key and a latent for every layer (12.8 % too much at the published layers)
    config = transformers.MistralLarge4Config(text_config={**MISTRAL_LARGE_4_TEXT, **changes}, image_token_index=63,
                                              vision_config={"hidden_size": 16, "intermediate_size": 32,
                                                             "num_hidden_layers": 1, "num_attention_heads": 2,
                                                             "patch_size": 4, "image_size": 16})  # fmt: skip
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.MistralLarge4ForConditionalGeneration(config).eval()
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    held = [getattr(layer, name, None) for layer in cache.layers for name in ("keys", "values", "indexer_keys")]
    held = [tensor for tensor in held if tensor is not None]
    assert {tuple(tensor.shape) for tensor in held} >= {(batch, 1, tokens + 1, 0), (batch, 1, tokens + 1, 4)}
    truth = storage_bytes(held)
    item = plan_of(model, seq=tokens + 1, batch=batch, dtype="float32").item("KV cache")
    assert item.total_bytes == truth
    assert multiplied_out(item.formula) == item.total_bytes
    written = {**config.to_dict(), "architectures": [type(model).__name__]}  # as config.json has it
    config_only = plan_of(paramscope.inspect(model), seq=tokens + 1, batch=batch, kv_dtype="float32", config=written)
    assert config_only.item("KV cache").total_bytes == truth
    # read from its fields, as without a transformers that knows the model type
    fields = {key: value for key, value in written["text_config"].items() if key != "model_type"}
    assert kv_cache(fields, batch, tokens + 1, "float32")[0] == truth


def test_kv_cache_of_dots3_keeps_its_indexer_keys_in_float32() -> None:
    # Dots 3 computes its indexed layers' rotary embedding in float32, which promotes its indexer's keys: a bfloat16
    # model caches them in float32
    config = transformers.Dots3NoteTextConfig(**{**SPARSE_MLA, "num_hidden_layers": 4}, head_dim=8, sliding_window=4,
                                              swa_kv_lora_rank=16, swa_head_dim=8, swa_qk_nope_head_dim=4,
                                              swa_v_head_dim=8, swa_q_lora_rank=16, swa_num_attention_heads=4,
                                              swa_num_key_value_heads=4, use_dsa=True,
                                              first_k_dense_replace=1)  # fmt: skip
    assert config.layer_types == ["indexed_attention"] * 2 + ["sliding_attention"] * 2
    batch, tokens = 2, 10
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval().to(torch.bfloat16)
    cache = decode_one(model, prefill(model, batch, tokens), batch)
    kept = [layer.indexer_keys for layer in cache.layers if getattr(layer, "indexer_keys", None) is not None]
    assert [keys.dtype for keys in kept] == [torch.float32] * 2
    assert {tensor.dtype for tensor in cache_tensors(cache)} == {torch.bfloat16}
    item = plan_of(model, seq=tokens + 1, batch=batch).item("KV cache")
    assert item.total_bytes == storage_bytes([*cache_tensors(cache), *kept])
    assert multiplied_out(item.formula) == item.total_bytes
    assert " B + 2 layers × 8 indexer key × 11 tokens × 2 × 4 B (" in item.formula
    assert item.formula.endswith("2 indexed_attention layers' sparse-attention indexers keep a key per token, Dots 3's "
                                 "in float32)")  # fmt: skip


@pytest.mark.parametrize("dim_head", [8, 16], ids=["hidden-over-heads", "a-length-of-its-own"])
def test_kv_cache_of_cpmant_holds_its_prompt_tokens_too(dim_head: int) -> None:
    # CPM-Ant's forward prepends prompt_length prompt tokens to every input and caches them with the text: the plan
    # counted the text's tokens alone (a third of the cache at the default 32 prompt tokens and 16 of text). Its
    # heads are dim_head long, which need not be hidden_size / heads (from the KV cache sweep: the plan took 8 for 16)
    config = transformers.CpmAntConfig(vocab_size=64, hidden_size=32, num_attention_heads=4, dim_head=dim_head,
                                       dim_ff=64, num_hidden_layers=2, prompt_length=4, prompt_types=3,
                                       segment_types=3, position_bias_num_buckets=8,
                                       position_bias_max_distance=32)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.CpmAntForCausalLM(config).eval()
    with torch.no_grad():
        cache = cache_of(model(torch.ones(2, 6, dtype=torch.long), use_cache=True))
    assert [tuple(layer.keys.shape) for layer in cache.layers] == [(2, 4, 6 + 4, dim_head)] * 2
    item = plan_of(model, seq=6, batch=2, dtype="float32").item("KV cache")
    assert item.total_bytes == nbytes(cache_tensors(cache))
    assert multiplied_out(item.formula) == item.total_bytes
    assert item.formula == (f"2 × 2 layers × 4 kv heads × {dim_head} × (6 + 4) tokens × 2 × 4 B (CPM-Ant prepends 4 "
                            "prompt tokens to every input and caches them)")  # fmt: skip


def test_kv_cache_of_a_multimodal_decoder_whose_text_config_names_no_architecture() -> None:
    # Fuyu's text config (Persimmon's) names no architecture: merged over the model's own, it hid FuyuForCausalLM,
    # and the plan called the model an encoder with no KV cache
    config = transformers.FuyuConfig(text_config={"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                                                  "num_hidden_layers": 2, "num_attention_heads": 4},
                                     patch_size=4, image_size=16)  # fmt: skip
    model = transformers.FuyuForCausalLM(config).eval()
    truth = nbytes(cache_tensors(prefill(model, 2, 8)))
    plan = plan_of(model, seq=8, batch=2, dtype="float32")
    assert plan.item("KV cache").total_bytes == truth
    assert not [note for note in plan.notes if note.startswith("no KV cache item")]
    as_saved = {**config.to_dict(), "architectures": ["FuyuForCausalLM"]}  # a config.json as save_pretrained writes it
    assert as_saved["text_config"].get("architectures") is None
    from_config = plan_of(paramscope.inspect(model), seq=8, batch=2, kv_dtype="float32", config=as_saved)
    assert from_config.item("KV cache").total_bytes == truth


def test_kv_cache_of_a_multimodal_model_reads_its_language_models_config_alone() -> None:
    # MusicFlamingo's config has a head_dim of its own (its audio's rotary time embedding: the audio encoder's hidden
    # size, 1280 as released) beside its text config (Qwen2, 4096 / 32 heads = 128): the plan read that head_dim for
    # the language model, whose text config gives none, and sized its cache 10 times too large
    text = {"model_type": "qwen2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    audio = {"model_type": "audioflamingo3_encoder", "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_mel_bins": 8, "max_source_positions": 16}  # fmt: skip
    config = transformers.MusicFlamingoConfig(audio_config=audio, text_config=text, audio_token_id=63,
                                              audio_bos_token_id=62, audio_eos_token_id=61)  # fmt: skip
    assert config.head_dim == 48
    assert "head_dim" not in config.to_dict()["text_config"]
    torch.manual_seed(0)
    model = transformers.MusicFlamingoForConditionalGeneration(config).eval()
    held = cache_tensors(prefill(model, 2, 8))
    assert {tensor.shape[-1] for tensor in held} == {8}  # 32 / 4 heads, not the audio's 48
    item = plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache")
    assert (item.total_bytes, item.formula) == (nbytes(held), "2 × 2 layers × 2 kv heads × 8 × 8 tokens × 2 × 4 B")
    saved = {**config.to_dict(), "architectures": [type(model).__name__]}  # as config.json has it
    from_config = plan_of(paramscope.inspect(model), seq=8, batch=2, kv_dtype="float32", config=saved)
    assert from_config.item("KV cache").total_bytes == nbytes(held)


def state_tensors(cache: transformers.DynamicCache) -> list[torch.Tensor]:
    """The recurrent states of a cache's linear-attention and Mamba layers (MiniMax's: its ``linear_cache``)."""
    if hasattr(cache, "linear_cache"):  # transformers.models.minimax's MiniMaxCache
        return [state for state in cache.linear_cache if isinstance(state, torch.Tensor)]
    layers = [layer for layer in cache.layers if hasattr(layer, "recurrent_states")]
    return [tensor for layer in layers for states in (layer.conv_states, layer.recurrent_states)
            for tensor in states.values() if tensor is not None]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "dtype", "layers"),
    [
        (transformers.Qwen3NextConfig(**HYBRID, full_attention_interval=2, num_experts=2, num_experts_per_tok=1,
                                      moe_intermediate_size=16, shared_expert_intermediate_size=16), None, 2),
        (transformers.Qwen3NextConfig(**HYBRID, full_attention_interval=2, num_experts=2, num_experts_per_tok=1,
                                      moe_intermediate_size=16, shared_expert_intermediate_size=16), "bfloat16", 2),
        (transformers.JambaConfig(**HYBRID, attn_layer_period=2, attn_layer_offset=1, num_experts=2,
                                  expert_layer_period=2, mamba_d_state=4, mamba_dt_rank=4), None, 2),
        (transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2), None, 2),
        # as fine-tuned checkpoints often save it: generate() runs with a cache all the same
        (transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2, use_cache=False),
         None, 2),
        (transformers.Mamba2Config(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=3, num_heads=8,
                                   head_dim=8, n_groups=1), None, 3),
        (transformers.MiniMaxConfig(**HYBRID, num_local_experts=2, num_experts_per_tok=1,
                                    layer_types=["linear_attention", "full_attention"] * 2), None, 2),
    ],
    ids=["qwen3-next", "qwen3-next-bf16", "jamba", "mamba", "mamba-use-cache-false", "mamba2", "minimax"],
)  # fmt: skip
def test_recurrent_state_is_what_transformers_cache_holds(config: Any, dtype: str | None, layers: int) -> None:
    """Linear-attention and Mamba layers keep a convolution and a recurrent state per sequence, whatever its length:
    an item of its own, the bytes of those a real prefill's cache holds (in the dtypes the forward makes them)."""
    batch = 3
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    if dtype is not None:
        model.to(getattr(torch, dtype))
    held = state_tensors(prefill(model, batch, 5))
    assert held
    assert storage_bytes(held) == storage_bytes(state_tensors(prefill(model, batch, 9)))  # any length
    plan = plan_of(model, seq=7, batch=batch)
    item = plan.item("recurrent state")
    assert (item.total_bytes, item.label) == (storage_bytes(held), "exact")
    assert item.formula == (
        f"the states of {layers} linear-attention and state-space layers as transformers' cache holds them after the "
        "forward on meta (3 sequences; the same at any length)"
    )
    assert names(plan)[: names(plan).index("recurrent state")] in (["weights", "KV cache"], ["weights"])
    assert plan_of(model, seq=7, batch=1).item("recurrent state").total_bytes * batch == item.total_bytes
    # no length, no forward to measure them: no item
    unmeasured = plan_of(model, batch=batch)
    assert "recurrent state" not in names(unmeasured)


def test_advice_cuts_the_recurrent_state_by_the_batch() -> None:
    # as many states as sequences: fewer sequences, less state; none of the other cuts changes it
    config = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=64, num_hidden_layers=2)
    model = transformers.MambaForCausalLM(config).eval()
    plan = plan_of(model, seq=1, batch=64, device_memory=1)
    state = format_bytes(plan.item("recurrent state").per_device_bytes)
    assert f"recurrent state ({state} per device): try a smaller --batch" in plan.advice
    one = plan_of(model, seq=1, batch=1, device_memory=1)
    assert not any(line.startswith("recurrent state") for line in one.advice)


def test_a_state_space_model_is_said_to_keep_a_recurrent_state_not_a_kv_cache() -> None:
    # Mamba's config names no attention heads: the note said the config lacked them, as if it were incomplete
    config = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2)
    model = transformers.MambaForCausalLM(config).eval()
    with torch.no_grad():
        cache = cache_of(model(torch.zeros(2, 8, dtype=torch.long), use_cache=True))
    assert not [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]  # a state, no keys
    plan = plan_of(model, seq=8, batch=2)
    assert "KV cache" not in names(plan)
    assert ("no KV cache item: every layer keeps a fixed-size recurrent state (linear_attention), no keys and values "
            "per token: the recurrent state item") in plan.notes  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [
        transformers.Qwen3NextConfig(**{**HYBRID, "num_hidden_layers": 2}, num_experts=2, num_experts_per_tok=1,
                                     moe_intermediate_size=16, shared_expert_intermediate_size=16),
        transformers.BailingHybridConfig(**{**HYBRID, "num_hidden_layers": 2}, kv_lora_rank=8, qk_rope_head_dim=4,
                                         qk_nope_head_dim=4, v_head_dim=8, num_experts=2, num_experts_per_tok=1,
                                         moe_intermediate_size=16, pad_token_id=0, eos_token_id=1),
    ],
    ids=["qwen3-next", "bailing-hybrid-mla"],
)  # fmt: skip
def test_a_hybrid_whose_layers_are_all_recurrent_is_said_to_keep_a_state(config: Any) -> None:
    # Two layers of a hybrid whose attention comes one layer in four (or six): all linear attention. The plan gave a
    # KV cache item of 0 B ("2 × 0 layers ...", and for BailingHybrid's MLA "() latent × 8 tokens ...") where a
    # model whose every layer keeps a recurrent state (Mamba's) gets no item and a note saying so.
    assert {type(layer).__name__ for layer in transformers.DynamicCache(config=config).layers} == {
        "LinearAttentionLayer"
    }
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    saved = {**config.to_dict(), "architectures": [type(model).__name__]}
    plan = plan_of(paramscope.inspect(model), seq=8, batch=2, kv_dtype="float32", config=saved)
    assert "KV cache" not in names(plan)
    # planned from a report, no forward ran to measure the state: said, and left out
    assert ("no KV cache item: every layer keeps a fixed-size recurrent state (linear_attention), no keys and values "
            "per token; that state is not counted (no forward measured it)") in plan.notes  # fmt: skip
    assert plan.left_out == ("recurrent state",)


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: transformers.RwkvForCausalLM(transformers.RwkvConfig(vocab_size=64, hidden_size=32,
                                                                      num_hidden_layers=2, attention_hidden_size=32,
                                                                      intermediate_size=64, context_length=32)),
         "rwkv"),
        (lambda: transformers.xLSTMForCausalLM(transformers.xLSTMConfig(vocab_size=64, hidden_size=64,
                                                                        embedding_dim=64, num_hidden_layers=2,
                                                                        num_heads=4, qk_dim_factor=1.0,
                                                                        v_dim_factor=1.0, chunk_size=4)), "xlstm"),
    ],
    ids=["rwkv", "xlstm"],
)  # fmt: skip
def test_recurrent_models_of_their_own_cache_are_said_to_keep_a_state(build: Any, kind: str) -> None:
    # RWKV's state and xLSTM's xLSTMCache: a fixed-size state per layer, the same after 4 tokens as after 8; the note
    # said their configs lacked attention heads, as if they were incomplete (as it did for Mamba's)
    model = build().eval()

    def state_shapes(tokens: int) -> list[tuple[int, ...]]:
        with torch.no_grad():
            output = model(torch.zeros(2, tokens, dtype=torch.long), use_cache=True)
        return [tuple(tensor.shape) for tensor in cache_tensors_of(output)]

    assert state_shapes(4) == state_shapes(8) != []
    plan = plan_of(model, seq=8, batch=2)
    assert "KV cache" not in names(plan)
    # from review: its state was counted nowhere, and the note did not say so
    assert (f"no KV cache item: every layer keeps a fixed-size recurrent state ({kind}), no keys and values per "
            "token; that state is not counted (this plan does not size it)") in plan.notes  # fmt: skip
    assert plan.left_out == ("recurrent state",)


def cache_tensors_of(output: Any) -> list[torch.Tensor]:
    """The tensors of a recurrent model's state: RWKV's ``state`` list, xLSTM's ``cache_params.rnn_state``."""
    if "state" in output:
        return list(output["state"])
    return [tensor for states in output["cache_params"].rnn_state.values() for tensor in states]


def test_a_reformer_is_said_to_cache_hidden_states_not_keys_and_values() -> None:
    # ReformerModelWithLMHead generates (transformers' AutoModelForCausalLM builds it) with a cache of each layer's
    # input hidden states and hash buckets: taken for a generating model by transformers' causal-LM classes, it got a
    # KV cache item of keys and values (16,384 B here, for the 8,704 its cache holds)
    config = transformers.ReformerConfig(vocab_size=64, hidden_size=32, num_attention_heads=2, attention_head_size=16,
                                         attn_layers=["local", "lsh"], axial_pos_shape=[4, 4],
                                         axial_pos_embds_dim=[16, 16], feed_forward_size=64, num_buckets=4,
                                         lsh_attn_chunk_length=4, local_attn_chunk_length=4, is_decoder=True,
                                         max_position_embeddings=16, pad_token_id=0)  # fmt: skip
    model = transformers.ReformerModelWithLMHead(config).eval()
    with torch.no_grad():
        cache = model(torch.zeros(2, 16, dtype=torch.long), use_cache=True)["past_buckets_states"]
    assert not hasattr(cache, "layers")  # no layers of keys and values
    assert [tuple(state.shape) for state in cache.states_cache] == [(2, 16, 32)] * 2  # the hidden states
    plan = plan_of(model, seq=16, batch=2, dtype="float32")
    assert "KV cache" not in names(plan)
    assert ("no KV cache item: transformers' Reformer caches each layer's input hidden states (and its LSH attention "
            "layers' hash buckets), not keys and values; this plan does not size that cache") in plan.notes  # fmt: skip
    assert plan.left_out == ("generation cache",)  # so no plan says it fits without it


def test_an_xlnet_is_said_to_cache_hidden_states_not_keys_and_values() -> None:
    # XLNetLMHeadModel generates with its mems: each layer's input hidden states (the last mem_len tokens), one
    # d_model vector a token, not a key and a value per head: it got a KV cache item of keys and values (16,384 B
    # here, for the 8,192 its mems hold; with mem_len 4, 16,384 for 4,096)
    config = transformers.XLNetConfig(vocab_size=64, d_model=64, n_layer=2, n_head=4, d_inner=128)
    model = transformers.XLNetLMHeadModel(config).eval()
    with torch.no_grad():
        mems = model(torch.zeros(2, 8, dtype=torch.long), use_mems=True)["mems"]
    assert [tuple(state.shape) for state in mems] == [(8, 2, 64)] * 2  # tokens, batch, d_model: the hidden states
    plan = plan_of(model, seq=8, batch=2, dtype="float32")
    assert "KV cache" not in names(plan)
    assert ("no KV cache item: transformers' XLNet caches each layer's input hidden states (its mems, the last "
            "mem_len tokens where the config sets mem_len), not keys and values; this plan does not size that "
            "cache") in plan.notes  # fmt: skip


def test_kv_cache_leaves_out_cross_attention_layers() -> None:
    # Mllama's cross-attention layers keep the image's keys and values (none without an image), not the text's: the
    # plan counted them as self-attention layers (Llama 3.2 Vision 11B: 40 layers for its 32)
    config = transformers.MllamaTextConfig(**HYBRID, cross_attention_layers=[1], pad_token_id=0)
    model = transformers.MllamaForCausalLM(config).eval()
    cache = prefill(model, 2, 8)
    held = [tensor for layer in cache.layers for tensor in (layer.keys, layer.values) if tensor is not None]
    assert len(held) == 2 * 3
    item = plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache")
    assert item.total_bytes == nbytes(held)
    assert item.formula == ("2 × 3 layers × 2 kv heads × 8 × 8 tokens × 2 × 4 B (1 cross_attention layers keep the "
                            "keys and values of the image's tokens instead, not counted)")  # fmt: skip
    config_only = plan_of(paramscope.inspect(model), seq=8, batch=2, kv_dtype="float32", config=config.to_dict())
    assert config_only.item("KV cache").total_bytes == nbytes(held)


def test_a_note_gives_the_keys_and_values_mllamas_cross_attention_layers_keep_of_an_image() -> None:
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_global_layers": 1,
              "attention_heads": 4, "image_size": 28, "patch_size": 14, "max_num_tiles": 2, "vision_output_dim": 64,
              "intermediate_layers_indices": [0], "supported_aspect_ratios": [[1, 1], [1, 2], [2, 1]]}  # fmt: skip
    text = {**HYBRID, "cross_attention_layers": [1], "pad_token_id": 0, "vocab_size": 128, "bos_token_id": 1,
            "eos_token_id": 2}  # fmt: skip
    config = transformers.MllamaConfig(vision_config=vision, text_config=text, image_token_index=127)
    model = transformers.MllamaForConditionalGeneration(config).eval()
    batch, tokens, tiles = 2, 6, 2
    with torch.no_grad():  # one image a sequence, padded to max_num_tiles tiles as Mllama's processor pads it
        output = model(input_ids=torch.ones(batch, tokens, dtype=torch.long),
                       pixel_values=torch.randn(batch, 1, tiles, 3, 28, 28),
                       aspect_ratio_ids=torch.ones(batch, 1, dtype=torch.long),
                       aspect_ratio_mask=torch.ones(batch, 1, tiles, dtype=torch.long),
                       cross_attention_mask=torch.ones(batch, tokens, 1, tiles, dtype=torch.long),
                       use_cache=True)  # fmt: skip
    cache = cache_of(output)
    image_layer = cache.layers[1]
    assert image_layer.keys.shape[-2] == tiles * ((28 // 14) ** 2 + 1)  # a token per patch and a class token a tile
    image = nbytes([image_layer.keys, image_layer.values])
    text_held = [
        tensor for index, layer in enumerate(cache.layers) if index != 1 for tensor in (layer.keys, layer.values)
    ]
    plan = plan_of(model, seq=tokens, batch=batch, dtype="float32")
    assert plan.item("KV cache").total_bytes == nbytes(text_held)
    assert (
        "the KV cache item is the text's; the 1 cross_attention layers also keep the keys and values of each image's "
        "10 tokens (2 tiles × (4 patches + 1)), not included: 2 × 8 × 1 layers × 2 kv heads × 10 tokens × 2 × 4 B = "
        f"{image:,} B per image"
    ) in plan.notes


def assert_kv_item_is_the_nemotron_h_cache(model: nn.Module) -> None:
    """The plan's KV cache item against the keys and values a prefill keeps in the tests' Nemotron-H: two attention
    layers' (its Mamba and MLP layers keep none)."""
    cache = prefill(model, 2, 8)
    held = [tensor for layer in cache.layers for tensor in (getattr(layer, "keys", None), getattr(layer, "values",
            None)) if tensor is not None]  # fmt: skip
    assert len(held) == 2 * 2
    item = plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache")
    assert item.total_bytes == nbytes(held)
    assert item.formula.startswith("2 × 2 layers × 2 kv heads × 8 × 8 tokens × 2 × 4 B (1 linear_attention layers")


def test_kv_cache_of_a_multimodal_model_whose_class_name_does_not_say_it_generates() -> None:
    # from the KV cache sweep: NemotronH_Omni_Reasoning_V3, which transformers' AutoModelForImageTextToText builds,
    # was said not to generate, and had no KV cache item
    text = {"model_type": "nemotron_h", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "mamba_num_heads": 4,
            "mamba_head_dim": 8, "ssm_state_size": 4, "n_groups": 1,
            "layers_block_type": ["linear_attention", "full_attention", "mlp", "full_attention"]}  # fmt: skip
    vision = {"model_type": "radio", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "video_temporal_patch_size": 2}  # fmt: skip
    sizes = {"projector_hidden_size": 16, "vision_hidden_size": 16}
    config = transformers.NemotronH_Omni_Reasoning_V3_Config(text_config=text, vision_config=vision, **sizes)
    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(config).eval()
    assert type(model).__name__ == "NemotronH_Omni_Reasoning_V3"
    assert_kv_item_is_the_nemotron_h_cache(model)


def test_kv_cache_of_a_model_whose_layer_count_is_worked_out_by_its_config_class() -> None:
    # Nemotron-H's num_hidden_layers is a property of its config (the length of layers_block_type), which to_dict()
    # leaves out: the plan said the config gave no layers, and had no KV cache item
    config = transformers.NemotronHConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                          num_key_value_heads=2, head_dim=8, mamba_num_heads=4, mamba_head_dim=8,
                                          ssm_state_size=4, n_groups=1, layers_block_type=["linear_attention",
                                          "full_attention", "mlp", "full_attention"])  # fmt: skip
    assert "num_hidden_layers" not in config.to_dict()
    assert_kv_item_is_the_nemotron_h_cache(transformers.NemotronHForCausalLM(config).eval())


def test_kv_cache_of_a_multimodal_model_whose_language_models_layer_count_is_worked_out_by_its_config_class() -> None:
    # Nemotron 3.5 Transcribe's language model is a Nemotron-H, whose layer count (a property) its to_dict() leaves
    # out of the text config: the plan said the config gave no layers, and had no KV cache item
    text = {"model_type": "nemotron_h", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "mamba_num_heads": 4,
            "mamba_head_dim": 8, "ssm_state_size": 4, "n_groups": 1,
            "layers_block_type": ["linear_attention", "full_attention", "mlp", "full_attention"]}  # fmt: skip
    encoder = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "num_mel_bins": 8}  # fmt: skip
    audio = {"asr_config": encoder, "diarization_config": {"audio_config": encoder,
             "head_config": {"hidden_size": 8, "audio_hidden_size": 16}}}  # fmt: skip
    words = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "vocab_size": 10, "blank_token_id": 9}  # fmt: skip
    config = transformers.Nemotron3_5TranscribeConfig(text_config=text, audio_config=audio,
                                                      word_timestamp_config=words, audio_token_id=64)  # fmt: skip
    assert "num_hidden_layers" not in config.to_dict()["text_config"]
    torch.manual_seed(0)
    assert_kv_item_is_the_nemotron_h_cache(transformers.Nemotron3_5TranscribeForConditionalGeneration(config).eval())


def test_kv_cache_of_a_decoder_built_from_a_config_object() -> None:
    # built directly, the config names no architecture; GPT-NeoX's names no kv heads either: the class tells
    config = transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4)  # fmt: skip
    model = transformers.GPTNeoXForCausalLM(config).eval()
    assert model.config.architectures is None
    truth = nbytes(cache_tensors(prefill(model, 2, 8)))
    assert plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache").total_bytes == truth
    base = transformers.LlamaModel(transformers.LlamaConfig(**TINY_LLAMA))  # a base class: the fields tell
    assert plan_of(base, seq=8, batch=2, dtype="float32").item("KV cache").total_bytes == nbytes(
        cache_tensors(prefill(llama(), 2, 8))
    )
    encoder = transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                             num_attention_heads=4, intermediate_size=64))  # fmt: skip
    assert encoder.config.architectures is None
    assert (
        "no KV cache item: the config describes an encoder, which keeps no generation cache"
        in plan_of(encoder, seq=8, batch=2).notes
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"head_dim": "128"}, 2 * 2 * 2 * 8 * 8 * 4),  # not a size: hidden / heads
        ({"head_dim": -4}, 2 * 2 * 2 * 8 * 8 * 4),
        ({"sliding_window": True}, 2 * 2 * 2 * 8 * 8 * 4),  # a flag, not a window
        ({"layer_types": ["sliding_attention"], "sliding_window": 4}, 2 * (4 + 8) * 2 * 8 * 4),  # unlisted: full
        ({"kv_lora_rank": -16}, 2 * 2 * 2 * 8 * 8 * 4),  # not MLA
    ],
)
def test_kv_cache_of_odd_config_values(changes: dict[str, Any], expected: int) -> None:
    config = {"model_type": "not-a-model", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
              "num_key_value_heads": 2, **changes}  # fmt: skip
    size, _, _ = kv_cache(config, 1, 8, "float32")
    assert size == expected


def test_kv_cache_of_jamba_as_published() -> None:
    # ai21labs' config.json names no layer_types: one attention layer in attn_layer_period = 8, at offset 4, so 4 of
    # 32 (the Jamba paper's 1:7 attention-to-Mamba ratio); transformers' JambaConfig works that out
    config = {"architectures": ["JambaForCausalLM"], "model_type": "jamba", "num_hidden_layers": 32,
              "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "attn_layer_period": 8,
              "attn_layer_offset": 4}  # fmt: skip
    size, formula, _ = kv_cache(config, 1, 8192, "bf16")
    assert size == 2 * 4 * 8 * 128 * 8192 * 2
    assert formula == (
        "2 × 4 layers × 8 kv heads × 128 × 8,192 tokens × 1 × 2 B (28 linear_attention layers keep a fixed-size "
        "recurrent state, not counted)"
    )


def test_kv_cache_layer_types_of_a_config_transformers_does_not_know() -> None:
    config = {"model_type": "not-a-model", "num_hidden_layers": 3, "hidden_size": 32, "num_attention_heads": 4,
              "layer_types": ["linear_attention", "sliding_attention", "full_attention"],
              "sliding_window": 4}  # fmt: skip
    size, formula, _ = kv_cache(config, 1, 10, "float32")
    assert size == 2 * (4 + 10) * 4 * 8 * 4  # keys and values of the two attention layers, 4 heads of 8, float32
    assert formula == (
        "2 × 4 kv heads × 8 × (1 layers × 10 tokens + 1 layers × 4 tokens) × 1 × 4 B (1 sliding layers capped at 4 "
        "tokens; 1 linear_attention layers keep a fixed-size recurrent state, not counted)"
    )
    assert multiplied_out(formula) == size


@pytest.mark.parametrize(
    ("windows", "size"),
    [
        ({}, 2 * (2 + 4 + 2) * 8 * 10 * 4),  # each layer's kv heads at the whole context
        ({"layer_types": ["sliding_attention", "full_attention", "sliding_attention"], "sliding_window": 4},
         2 * (2 * 4 + 4 * 10 + 2 * 4) * 8 * 4),
    ],
    ids=["full", "sliding"],
)  # fmt: skip
def test_kv_cache_formula_of_layers_with_their_own_kv_heads_multiplies_out(windows: dict[str, Any], size: int) -> None:
    # with sliding layers it wrote every layer's heads times every layer's tokens: 9,216 B for 3,584
    config = {"model_type": "not-a-model", "num_hidden_layers": 3, "hidden_size": 32, "num_attention_heads": 4,
              "num_key_value_heads": [2, 4, 2], **windows}  # fmt: skip
    found, formula, _ = kv_cache(config, 1, 10, "float32")
    assert found == multiplied_out(formula) == size


def test_kv_cache_of_gpt2_config_names() -> None:
    # GPT-2's config says n_layer, n_head and n_embd
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    truth = nbytes(cache_tensors(prefill(model, 2, 8)))
    assert plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache").total_bytes == truth


def test_kv_cache_from_a_nested_text_config(tiny_llama: nn.Module) -> None:
    # multimodal configs (Llava, Gemma 3, ...) keep the decoder's hyperparameters under text_config
    config = {"model_type": "llava", "text_config": tiny_llama.config.to_dict()}
    truth = nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    plan = plan_of(paramscope.inspect(tiny_llama), seq=8, batch=2, kv_dtype="float32", config=config)
    assert plan.item("KV cache").total_bytes == truth


TINY_DEEPSEEK: dict[str, Any] = {
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "kv_lora_rank": 16, "q_lora_rank": 24, "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 4, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
    "n_group": 1, "topk_group": 1,
}  # fmt: skip


def deepseek() -> nn.Module:
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(transformers.DeepseekV3Config(**TINY_DEEPSEEK)).eval()


@pytest.mark.parametrize("tp", [1, 2])
def test_kv_cache_of_multi_head_latent_attention(tp: int) -> None:
    # DeepSeek-V2 paper, table 1: MLA caches (d_c + d_h^R) × l elements per token, one latent shared by all heads
    # (so tensor parallelism replicates it); transformers' DynamicCache keeps the same latent and rotary key.
    model, batch, tokens = deepseek(), 2, 8
    per_token = TINY_DEEPSEEK["kv_lora_rank"] + TINY_DEEPSEEK["qk_rope_head_dim"]
    paper = per_token * TINY_DEEPSEEK["num_hidden_layers"] * batch * tokens * 4  # float32
    assert nbytes(cache_tensors(prefill(model, batch, tokens))) == paper
    config = model.config.to_dict()
    item = plan_of(paramscope.inspect(model), seq=tokens, batch=batch, kv_dtype="float32", tp=tp, config=config).item(
        "KV cache"
    )
    assert (item.total_bytes, item.per_device_bytes, item.label) == (paper, paper, "derived")
    assert multiplied_out(item.formula) == item.total_bytes


def test_multi_head_latent_attention_runs_on_meta() -> None:
    model = deepseek()
    with torch.no_grad():
        logits = model(torch.zeros(2, 8, dtype=torch.long)).logits  # fine on CPU
    assert logits.shape == (2, 8, TINY_DEEPSEEK["vocab_size"])
    # the experts' grouped product: torch's meta kernel takes bf16 alone, its CPU kernel float32 as well
    for dtype in ("bf16", "float32"):
        assert plan_of(model, seq=8, batch=2, dtype=dtype).item("activations").total_bytes > 0
    # Its router frees masks and indices it saved, and new storages may take their addresses: the count was one of
    # several from run to run, below the truth.
    ids = torch.zeros(2, 8, dtype=torch.long)
    truth = saved_bytes(model, ids, labels=ids)
    # its values have a head size of their own, which the CPU runs on the math path (a GPU, and meta, fused): the
    # math path on meta too, where sdpa_kernel leaves no other
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        plans = [plan_of(model, train=True, seq=8, batch=2, precision="fp32") for _ in range(3)]
    assert [plan.item("activations").total_bytes for plan in plans] == [truth] * 3
    fused = paramscope.memory(model, train=True, seq=8, batch=2, precision="fp32")
    assert any("whose values have a head size of their own" in note for note in fused.memory.notes)  # type: ignore[union-attr]


@pytest.mark.parametrize("tp", [2, 4])
def test_kv_cache_split_across_tensor_parallel_ranks(tiny_llama: nn.Module, tp: int) -> None:
    # vLLM's rule: each rank holds max(1, kv_heads // tp) key/value heads (replicated when tp > kv_heads).
    kv_heads = TINY_LLAMA["num_key_value_heads"]
    total = nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    item = plan_of(tiny_llama, seq=8, batch=2, dtype="float32", tp=tp).item("KV cache")
    assert item.total_bytes == total
    assert item.per_device_bytes == total * max(1, kv_heads // tp) // kv_heads
    assert item.label == "derived"


def test_a_tensor_parallel_degree_that_splits_key_value_heads_as_no_engine_does_is_refused(tmp_path: Path) -> None:
    # from review: 6 key/value heads at tp 4 were split gcd(4, 6) = 2 ways, a layout vLLM and Megatron refuse
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 64,
        "hidden_size": 96,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 24,
        "num_key_value_heads": 6,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    message = ("tp (4) and the model's 6 key/value heads divide neither the other: each device holds whole key/value "
               "heads, or a copy of one (vLLM and Megatron refuse the split)")  # fmt: skip
    with pytest.raises(paramscope.UsageError, match=f"^{re.escape(message)}$"):
        paramscope.memory(str(tmp_path), seq=16, tp=4)
    for tp, per_device_heads in ((2, 3), (3, 2), (12, 1)):  # whole heads, or a copy of one
        item = plan_of(str(tmp_path), seq=16, tp=tp).item("KV cache")
        assert item.per_device_bytes == item.total_bytes * per_device_heads // 6
    # nor is it tried for the advice: 24 query heads take tp 4, 6 and 8, the key/value heads 6 alone of them
    plan = plan_of(str(tmp_path), seq=4096, tp=2, device_memory=1)
    assert [advice for advice in plan.advice if advice.startswith("KV cache")] == [
        "KV cache (768.00 KiB per device): try --kv-dtype fp8, a shorter --context or a --tp larger than 2"
    ]


FALCON: dict[str, Any] = {"vocab_size": 64, "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                          "bias": False, "alibi": False}  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [
        {"multi_query": True},  # Falcon-7B: one key/value head (to_dict() fills num_kv_heads with the 4 heads)
        {"multi_query": False},  # Falcon-RW: a key/value head per query head
        {"new_decoder_architecture": True, "num_kv_heads": 2},  # Falcon-40B's layout
        {"new_decoder_architecture": True, "num_kv_heads": 2, "alibi": True},
    ],
    ids=["multi-query", "multi-head", "new-decoder-architecture", "new-decoder-architecture-alibi"],
)
def test_kv_cache_of_falcon_matches_a_dynamic_cache(changes: dict[str, Any]) -> None:
    """transformers' FalconAttention caches one key/value head under multi_query, and under the new decoder
    architecture its num_kv_heads repeated for every query head (broadcast before the cache is updated)."""
    torch.manual_seed(0)
    model = transformers.FalconForCausalLM(transformers.FalconConfig(**{**FALCON, **changes})).eval()
    tensors = cache_tensors(prefill(model, 2, 8))
    assert nbytes(tensors) == storage_bytes(tensors)
    item = plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache")
    assert (item.total_bytes, item.label) == (nbytes(tensors), "derived")
    assert multiplied_out(item.formula) == item.total_bytes
    report, architectures = paramscope.inspect(model), ["FalconForCausalLM"]  # as save_pretrained records it
    for config in (  # every field filled in by FalconConfig, and only those written
        {**model.config.to_dict(), "architectures": architectures},
        {"model_type": "falcon", "architectures": architectures, **FALCON, **changes},
    ):
        item = plan_of(report, seq=8, batch=2, kv_dtype="float32", config=config).item("KV cache")
        assert item.total_bytes == nbytes(tensors)
    if changes.get("new_decoder_architecture"):
        assert item.formula.endswith(
            "(transformers' Falcon caches its 2 key/value heads repeated for each of the 4 query heads)"
        )


def test_cli_kv_cache_of_a_multi_query_falcon_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 128,
              "num_attention_heads": 4, "num_hidden_layers": 2, "multi_query": True, "new_decoder_architecture": False,
              "parallel_attn": True, "bias": False, "alibi": False, "vocab_size": 300,
              "torch_dtype": "bfloat16"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(tmp_path))
    tensors = cache_tensors(prefill(model.to(torch.bfloat16).eval(), 1, 100))
    assert {tuple(tensor.shape) for tensor in tensors} == {(1, 1, 100, 32)}  # one key/value head of 128 / 4
    code, out, err = run(capsys, "memory", str(tmp_path / "config.json"), "--context", "100", "--format", "json", "-q")
    assert (code, err) == (0, "")
    items = {item["name"]: item for item in json.loads(out)["memory"]["items"]}
    assert items["KV cache"]["total_bytes"] == nbytes(tensors)
    assert items["KV cache"]["formula"] == "2 × 2 layers × 1 kv heads × 32 × 100 tokens × 1 × 2 B"


@pytest.mark.parametrize(
    "config",
    [
        # n_heads, n_layers and d_model: MptConfig's attribute_map reads num_attention_heads as n_heads, ...
        transformers.MptConfig(vocab_size=64, d_model=32, n_heads=4, n_layers=2, max_seq_len=32),
        # num_heads and num_layers; its local layers' window_size (4) does not cap transformers' cache
        transformers.GPTNeoConfig(vocab_size=64, hidden_size=32, num_heads=4, num_layers=2, window_size=4,
                                  attention_types=[[["global", "local"], 1]], bos_token_id=0, eos_token_id=0),
    ],
    ids=["mpt", "gpt-neo"],
)  # fmt: skip
def test_kv_cache_of_configs_that_name_their_fields_their_own_way(config: Any) -> None:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    truth = nbytes(cache_tensors(prefill(model, 2, 8)))
    assert plan_of(model, seq=8, batch=2, dtype="float32").item("KV cache").total_bytes == truth
    saved = {**config.to_dict(), "architectures": [type(model).__name__]}  # as config.json has it
    as_written = plan_of(paramscope.inspect(model), seq=8, batch=2, kv_dtype="float32", config=saved)
    assert as_written.item("KV cache").total_bytes == truth
    with pytest.raises(paramscope.UsageError) as caught:  # whole heads per device: 4 heads, 3 devices
        paramscope.memory(model, tp=3)
    assert str(caught.value) == "tp (3) must divide the model's 4 attention heads: each device holds whole heads"
    layers_key = next(key for key in ("n_layers", "num_layers") if key in config.to_dict())
    with pytest.raises(paramscope.UsageError) as caught:
        kv_cache({**config.to_dict(), layers_key: 10**12}, 1, 8, "bf16")
    assert str(caught.value) == f"{layers_key} 1,000,000,000,000 is more layers than any model has (at most 100,000)"


def encoder_decoder_cache(
    model: nn.Module, batch: int, encoder_tokens: int, tokens: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The self-attention and the cross-attention keys and values of transformers' EncoderDecoderCache after a real
    forward of ``batch`` × ``encoder_tokens`` ids through the encoder and ``batch`` × ``tokens`` through the decoder."""
    with torch.no_grad():
        output = model(input_ids=torch.zeros(batch, encoder_tokens, dtype=torch.long),
                       decoder_input_ids=torch.zeros(batch, tokens, dtype=torch.long), use_cache=True)  # fmt: skip
    cache = cache_of(output)
    assert isinstance(cache, transformers.EncoderDecoderCache)
    return cache_tensors(cache.self_attention_cache), cache_tensors(cache.cross_attention_cache)


@pytest.mark.parametrize(
    ("config", "decoder_heads"),
    [
        # 3 decoder layers over 2 encoder layers (num_decoder_layers), heads of d_kv = 16, not d_model / heads = 8
        (transformers.T5Config(vocab_size=64, d_model=32, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=3,
                               d_ff=64), 4),
        # the decoder's own layers and heads (decoder_layers, decoder_attention_heads), not the encoder's
        (transformers.BartConfig(vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=3,
                                 encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=64,
                                 decoder_ffn_dim=64, max_position_embeddings=64), 2),
        # EncoderDecoderModel: an encoder and a decoder config of their own (BERT's 4 heads, GPT-2's 3 layers of 2)
        (transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
            transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=64),
            transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=3, n_head=2, n_positions=64, is_decoder=True,
                                    add_cross_attention=True, bos_token_id=0, eos_token_id=0)), 2),
        # SeamlessM4TForTextToText and its v2: a text encoder-decoder whose class name says nothing of generating
        *[(config_class(vocab_size=64, hidden_size=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=64, speech_encoder_layers=1, speech_encoder_attention_heads=2,
                        speech_encoder_intermediate_size=32, t2u_encoder_layers=1, t2u_decoder_layers=1,
                        t2u_encoder_ffn_dim=32, t2u_decoder_ffn_dim=32, t2u_encoder_attention_heads=2,
                        t2u_decoder_attention_heads=2, t2u_vocab_size=32, unit_hifi_gan_vocab_size=16,
                        unit_embed_dim=16), 2)
          for config_class in (transformers.SeamlessM4TConfig, transformers.SeamlessM4Tv2Config)],
    ],
    ids=["t5", "bart", "composite", "seamless-m4t", "seamless-m4t-v2"],
)  # fmt: skip
def test_kv_cache_of_an_encoder_decoder(config: Any, decoder_heads: int) -> None:
    """The KV cache item is the decoder's self-attention cache; the cross-attention cache, whose length is the
    encoder's output's, is given per position of it in a note."""
    torch.manual_seed(0)
    model = transformers.AutoModelForSeq2SeqLM.from_config(config).eval()
    batch, encoder_tokens, tokens = 2, 5, 8
    own, cross = encoder_decoder_cache(model, batch, encoder_tokens, tokens)
    assert len(own) == len(cross) == 2 * 3
    plan = plan_of(model, seq=tokens, batch=batch, dtype="float32")
    item = plan.item("KV cache")
    assert (item.total_bytes, item.label) == (nbytes(own), "derived")
    assert item.formula.endswith("(the decoder's self-attention; its cross-attention cache is not included)")
    assert nbytes(cross) % encoder_tokens == 0
    per_token = nbytes(cross) // encoder_tokens
    note = next(note for note in plan.notes if "cross-attention" in note)
    assert note.startswith("the KV cache item is the decoder's self-attention cache; generating, an encoder-decoder")
    assert f" = {per_token:,} B per position of the encoder's output" in note
    saved = {**config.to_dict(), "architectures": [type(model).__name__]}  # as config.json has it
    as_written = plan_of(paramscope.inspect(model), seq=tokens, batch=batch, kv_dtype="float32", config=saved)
    assert as_written.item("KV cache").total_bytes == nbytes(own)
    with pytest.raises(paramscope.UsageError) as caught:  # the decoder's heads too are split whole
        paramscope.memory(model, tp=2 * decoder_heads)
    message = f"tp ({2 * decoder_heads}) must divide the model's {decoder_heads} attention heads: each device holds"
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "model_class",
    [
        lambda: transformers.ProphetNetForCausalLM(transformers.ProphetNetConfig(
            vocab_size=64, hidden_size=32, encoder_ffn_dim=64, decoder_ffn_dim=64, num_encoder_layers=3,
            num_decoder_layers=2, num_encoder_attention_heads=4, num_decoder_attention_heads=2, ngram=2,
            num_buckets=8, relative_max_distance=16)),
        lambda: transformers.BartForCausalLM(transformers.BartConfig(
            vocab_size=64, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_layers=3, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=2, max_position_embeddings=32)),
    ],
    ids=["prophetnet", "bart"],
)  # fmt: skip
def test_kv_cache_of_an_encoder_decoders_decoder_alone(model_class: Callable[[], nn.Module]) -> None:
    """ProphetNetForCausalLM and BartForCausalLM build the decoder of an encoder-decoder's config alone (is_decoder
    set, is_encoder_decoder cleared): its layers and heads are the decoder's, while the config's num_hidden_layers
    and num_attention_heads are still the encoder's, which the plan read (ProphetNet's config.json gave no layer
    count at all: no KV cache item). transformers' DynamicCache makes a layer per encoder layer; those past the
    decoder's stay empty."""
    torch.manual_seed(0)
    model = model_class().eval()
    with torch.no_grad():
        cache = cache_of(model(torch.zeros(2, 5, dtype=torch.long), use_cache=True))
    held = [tensor for layer in cache.layers if layer.is_initialized for tensor in (layer.keys, layer.values)]
    assert [tensor.shape for tensor in held] == [(2, 2, 5, 16)] * 4  # 2 layers of 2 heads of 16, not 3 of 4 of 8
    plan = plan_of(model, seq=5, batch=2, dtype="float32")
    assert plan.item("KV cache").total_bytes == nbytes(held)
    assert plan.item("KV cache").formula == "2 × 2 layers × 2 kv heads × 16 × 5 tokens × 2 × 4 B"
    saved = {**model.config.to_dict(), "architectures": [type(model).__name__]}  # as config.json has it
    as_written = plan_of(paramscope.inspect(model), seq=5, batch=2, kv_dtype="float32", config=saved)
    assert as_written.item("KV cache").total_bytes == nbytes(held)


def test_what_transformers_warns_of_the_training_forward_is_a_note_not_printed() -> None:
    # transformers' GPT-2 warns of its loss type as the plan's labels reach it: a "[transformers] ..." line printed
    # above every training plan of a GPT-2 (on each of its forwards after the first in a process, nothing)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    model = transformers.GPT2LMHeadModel(config)
    records: list[str] = []
    spy = logging.Handler()
    spy.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(spy)
    try:
        notes = [plan_of(model, seq=8, batch=2, train=True).notes for _ in range(2)]
    finally:
        logger.removeHandler(spy)
    note = ("transformers warned: `loss_type=None` was set in the config but it is unrecognized. Using the default "
            "loss: `ForCausalLMLoss`.")  # fmt: skip
    assert [plan.count(note) for plan in notes] == [1, 1]
    assert records == []


# transformers runs Mamba's scan and convolution in its own PyTorch code without these packages
WITHOUT_MAMBA_KERNELS = all(importlib.util.find_spec(name) is None for name in ("mamba_ssm", "causal_conv1d"))


@pytest.mark.skipif(not WITHOUT_MAMBA_KERNELS, reason="mamba_ssm or causal_conv1d installed: transformers runs them")
@pytest.mark.parametrize(
    ("train", "functions", "packages"),
    [
        (False, "causal_conv1d_fn, selective_scan_fn", "causal_conv1d and mamba_ssm"),
        (True, "mamba_inner_fn, causal_conv1d_fn, selective_scan_fn", "mamba_ssm and causal_conv1d"),
    ],
    ids=["inference", "training"],
)
def test_activations_on_transformers_reference_code_say_what_they_measure(
    train: bool, functions: str, packages: str
) -> None:
    # transformers' three warnings that it fell back to its reference code were three notes that did not say what
    # that does to the figure: the scan keeps a state for every token, which mamba_ssm's fused kernel does not
    config = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2)
    plan = plan_of(transformers.MambaForCausalLM(config), seq=8, batch=2, train=train)
    assert "activations" in names(plan)
    assert (f"activations measured on transformers' reference PyTorch code for {functions}, as {packages} are not "
            "installed here (transformers warned): it materialises intermediates that their fused kernels do not, so "
            "a GPU that runs those kernels needs less than this estimate") in plan.notes  # fmt: skip
    assert not [note for note in plan.notes if "falling back" in note]


def test_a_composite_encoder_decoder_splits_both_parts_heads() -> None:
    # tp must divide the encoder's heads as well as the decoder's, each from its own config
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(hidden_size=48, num_attention_heads=3), transformers.GPT2Config(n_embd=48, n_head=4)
    )
    assert attention_heads(config.to_dict()) == (3, 4)


def test_a_decoder_with_a_classifier_head_is_not_called_an_encoder() -> None:
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, pad_token_id=0)
    plan = plan_of(transformers.GPT2ForSequenceClassification(config).eval(), seq=8)
    assert "KV cache" not in names(plan)
    assert plan.notes[-1] == (
        "no KV cache item: GPT2ForSequenceClassification is not a model that generates (a causal LM or an "
        "encoder-decoder), so it keeps no generation cache"
    )


@pytest.mark.parametrize(
    ("model_type", "architecture"),
    [("bark", "BarkModel"), ("speecht5", "SpeechT5ForTextToSpeech")],
)
def test_a_model_generating_through_a_generate_of_its_own_is_not_said_to_generate_nothing(
    tmp_path: Path, model_type: str, architecture: str
) -> None:
    # BarkModel's generate() runs its semantic and coarse GPT-like models with caches: it had been called "not a
    # model that generates", its cache a silent zero
    assert "generate" in vars(getattr(transformers, architecture))
    config = {**transformers.AutoConfig.for_model(model_type).to_dict(), "architectures": [architecture]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    report = paramscope.memory(str(tmp_path / "config.json"), seq=16)
    assert report.memory is not None
    assert "KV cache" not in names(report.memory)
    assert "KV cache" in report.memory.left_out  # and activations: their forward takes more than token ids
    assert (f"no KV cache item: {architecture} generates through a generate() of its own, over parts whose caches "
            "this plan does not size") in report.memory.notes  # fmt: skip


def test_a_ctc_models_generate_keeps_no_cache() -> None:
    # its generate() is the argmax of one forward: no decoder runs step by step
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=37, conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,),
                                         num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)  # fmt: skip
    plan = plan_of(paramscope.inspect(transformers.Wav2Vec2ForCTC(config)), seq=8,
                   config={**config.to_dict(), "architectures": ["Wav2Vec2ForCTC"]})  # fmt: skip
    assert "KV cache" not in names(plan)
    assert plan.left_out == ()


class HoldsALanguageModel(nn.Module):
    """A module of the user's own that runs a transformers causal LM it holds (a LightningModule's way)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> Any:
        return self.lm(input_ids=input_ids)


@pytest.mark.parametrize(
    ("wrap", "path"), [(HoldsALanguageModel, "lm"), (nn.DataParallel, "module"), (lambda lm: nn.Sequential(lm), "0")]
)
def test_kv_cache_of_a_language_model_a_module_holds(wrap: Callable[[nn.Module], nn.Module], path: str) -> None:
    # it had no KV cache item ("the model has no decoder config"), and a plan that fitted without it said so
    model = llama()
    truth = storage_bytes(cache_tensors(prefill(model, 2, 8)))
    plan = plan_of(wrap(model), seq=8, batch=2, dtype="float32")
    assert plan.item("KV cache").total_bytes == truth
    assert (f"the KV cache is sized from the config of {path} (LlamaForCausalLM), the transformers model the model "
            "holds") in plan.notes  # fmt: skip


def test_no_kv_cache_is_taken_from_one_of_two_language_models_a_module_holds() -> None:
    pair = nn.ModuleDict({"draft": llama(), "target": llama(num_hidden_layers=3)})  # caches of their own sizes
    plan = plan_of(pair, seq=8, batch=2, dtype="float32")
    assert "KV cache" not in names(plan)
    assert "no KV cache item: the model has no decoder config to size it from" in plan.notes


def test_no_kv_cache_is_taken_from_an_encoder_a_module_holds() -> None:
    # a text encoder beside a decoder of the user's own: its config tells nothing of the model's cache
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32))  # fmt: skip
    model = nn.ModuleDict({"encoder": bert, "decoder": nn.TransformerDecoderLayer(16, 2, 32)})
    plan = plan_of(model, seq=8)
    assert "KV cache" not in names(plan)
    assert "no KV cache item: the model has no decoder config to size it from" in plan.notes


def test_a_config_without_the_names_read_says_so() -> None:
    unreadable = {"architectures": ["SomethingForCausalLM"], "layers": 2}  # no names paramscope reads
    plan = plan_of(paramscope.inspect(nn.Linear(4, 4)), seq=8, config=unreadable, device_memory="1GiB")
    assert plan.notes[-1] == (
        "no KV cache item: the config does not give its decoder's layers, attention heads and hidden size "
        "(num_hidden_layers, num_attention_heads, hidden_size, or the names its transformers config class maps them "
        "to)"
    )
    # the cache of a model that generates is not in the total (a Report runs no forward: no activations asked of it)
    assert (plan.left_out, plan.fits) == (("KV cache",), None)


# ---------------------------------------------------------------------------------------------------------------------
# 4. several devices: ZeRO's published formulas, offloading, tensor parallelism


def zero_paper(stage: int, psi: int, gpus: int) -> Fraction:
    """Model-state bytes per device for mixed-precision Adam (K = 12), Rajbhandari et al. 2020, figure 1."""
    n = Fraction(gpus)
    return {0: Fraction(16 * psi), 1: 2 * psi + 2 * psi + 12 * psi / n, 2: 2 * psi + 14 * psi / n, 3: 16 * psi / n}[
        stage
    ]


@pytest.mark.parametrize("gpus", [2, 4, 8])
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_model_states_match_the_paper(stage: int, gpus: int) -> None:
    model = Stack()
    psi = sum(p.numel() for p in model.parameters())
    steps = 4 * sum(1 for p in model.parameters() if p.requires_grad)  # Adam's float32 `step`, one per tensor
    plan = plan_of(model, train=True, optimizer="adamw", precision="bf16-mixed", gpus=gpus, zero=stage)
    items = [plan.item(name) for name in MODEL_STATE_ITEMS]
    expected = zero_paper(stage, psi, gpus) + (Fraction(steps, gpus) if stage >= 1 else steps)
    assert expected.denominator == 1  # Ψ and the step bytes divide evenly: no rounding in the comparison
    assert sum(item.per_device_bytes for item in items) == expected
    assert sum(item.total_bytes for item in items) == 16 * psi + steps  # sharding moves bytes, it adds none


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_shares_round_up(stage: int) -> None:
    model, gpus = Stack(), 3
    psi = sum(p.numel() for p in model.parameters())
    steps = 4 * len(list(model.parameters()))
    plan = plan_of(model, train=True, gpus=gpus, zero=stage)
    for name in MODEL_STATE_ITEMS:
        item = plan.item(name)
        sharded = {"weights": 3, "gradients": 2}.get(name, 1) <= stage
        assert item.per_device_bytes == (-(-item.total_bytes // gpus) if sharded else item.total_bytes), name
    exact = zero_paper(stage, psi, gpus) + Fraction(steps, gpus)
    assert exact <= sum(plan.item(name).per_device_bytes for name in MODEL_STATE_ITEMS) < exact + len(MODEL_STATE_ITEMS)


def test_zero_3_gathers_parameters() -> None:
    sharded = plan_of(Stack(), train=True, gpus=4, zero=3)
    gathered = sharded.item("gathered parameters (ZeRO 3)")
    assert (gathered.label, gathered.where) == ("estimate", "device")
    assert 0 < gathered.per_device_bytes <= sharded.item("weights").total_bytes
    assert "gathered parameters (ZeRO 3)" not in names(plan_of(Stack(), train=True, gpus=4, zero=2))
    assert "gathered parameters (ZeRO 3)" not in names(plan_of(Stack(), train=True, gpus=1, zero=3))


def test_zero_3_gathers_layers_in_a_row_as_one_unit() -> None:
    # the children of an nn.Sequential of a Linear, a ReLU and a Linear were taken for repeated blocks: "the largest
    # two adjacent blocks" were the ReLU and the last Linear
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    values = sum(p.numel() for p in model.parameters())
    gathered = plan_of(model, train=True, gpus=4, zero=3).item("gathered parameters (ZeRO 3)")
    assert gathered.formula == f"{values} parameters × 2 B (one unit: the whole model)"  # bf16-mixed: 2 B a value
    assert gathered.total_bytes == values * 2


def test_zero_on_one_gpu_shards_nothing() -> None:
    one = plan_of(Stack(), train=True, gpus=1, zero=3)
    assert all(item.per_device_bytes == item.total_bytes for item in one.items)
    assert one.per_device_bytes == plan_of(Stack(), train=True).per_device_bytes


def test_offload_optimizer_moves_master_weights_and_states_to_host() -> None:
    on_device = plan_of(Stack(), train=True, gpus=4, zero=2)
    offloaded = plan_of(Stack(), train=True, gpus=4, zero=2, offload_optimizer=True)
    host = [item for item in offloaded.items if item.where == "host"]
    assert [item.name for item in host] == ["fp32 gradients", "fp32 master weights", "optimizer states (adamw)"]
    moved = host[1:]
    assert [item.per_device_bytes for item in moved] == [on_device.item(item.name).per_device_bytes for item in moved]
    assert offloaded.host_bytes == sum(item.per_device_bytes for item in host)
    # from ZeRO 2 on the gradients leave the device too, reduced into the host's fp32 partition (twice their bytes)
    device_gone = on_device.item("gradients").per_device_bytes + sum(item.per_device_bytes for item in moved)
    assert offloaded.per_device_bytes == on_device.per_device_bytes - device_gone
    assert host[0].per_device_bytes == 2 * on_device.item("gradients").per_device_bytes
    assert on_device.host_bytes == 0


@pytest.mark.parametrize("zero", [1, 2, 3])
@pytest.mark.parametrize("precision", ["bf16-mixed", "fp32"])
def test_offload_optimizer_keeps_what_deepspeed_keeps_on_the_host(zero: int, precision: str) -> None:
    # from review: the gradients' fp32 partition was left out of the host (and its shard kept on the device), and in
    # fp32 the copy of the parameters the CPU optimizer steps. DeepSpeed's estimate_zero2/zero3_model_states_mem_needs
    # with cpu_offload: 16 B a parameter in host memory over the GPUs (4 master or copy, 8 Adam, 4 fp32 gradients),
    # and on the GPU the weights alone (a ZeRO 3 shard of them, and its gathered blocks)
    gpus, model = 4, Stack()
    psi = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    plan = plan_of(
        model, train=True, gpus=gpus, zero=zero, offload_optimizer=True, precision=precision, optimizer="adam"
    )
    assert plan.host_bytes == (16 * psi + 4 * tensors) // gpus  # and Adam's float32 step per tensor, sharded too
    weight_bytes = 4 if precision == "fp32" else 2
    device = {item.name: item.per_device_bytes for item in plan.items if item.where == "device"}
    weights = weight_bytes * psi // (gpus if zero == 3 else 1)
    assert device.pop("weights") == weights
    device.pop("gathered parameters (ZeRO 3)", None)
    # under ZeRO 1 autograd's gradients stay whole on the device until the step
    assert device == ({"gradients": weight_bytes * psi} if zero == 1 else {})


def test_offload_optimizer_with_pure_bf16_is_refused() -> None:
    with pytest.raises(paramscope.UsageError, match=r"^--offload-optimizer steps an fp32 copy of the parameters with "
                       r"fp32 states \(DeepSpeed's CPU optimizer\), which bf16-pure training keeps none of: plan it "
                       r"with --precision bf16-mixed \(precision='bf16-mixed'\)$"):  # fmt: skip
        plan_of(Stack(), train=True, zero=1, offload_optimizer=True, precision="bf16-pure")


def test_tensor_parallelism_splits_items_and_marks_them_estimates() -> None:
    plan = plan_of(Stack(), train=True, gpus=4, tp=2, zero=1, input_size=(8, 16), precision="fp32")
    single = plan_of(Stack(), train=True, input_size=(8, 16), precision="fp32")
    ways = {"weights": 2, "gradients": 2, "optimizer states (adamw)": 4}  # ZeRO 1 over dp = 2
    for name, split in ways.items():
        item = plan.item(name)
        assert item.total_bytes == single.item(name).total_bytes, name
        assert item.per_device_bytes == -(-item.total_bytes // split), name
        assert item.label == "estimate", name
    # Korthikanti et al. 2022: without sequence parallelism TP splits 24 of the 34 sbh bytes of a layer's activations
    activations = plan.item("activations")
    assert activations.total_bytes == single.item("activations").total_bytes
    assert activations.per_device_bytes == math.ceil(activations.total_bytes * (10 + 24 / 2) / 34)
    assert activations.label == "estimate"
    assert any(note.startswith("tensor parallelism splits weights") for note in plan.notes)


def kept_layer_inputs(model: nn.Module, ids: torch.Tensor) -> int:
    """The bytes of the tensors a transformers decoder's layers are given in a forward on CPU (by position or keyword:
    the hidden states, the rotary tables), each storage once: what checkpointing its layers keeps."""
    storages: dict[int, int] = {}

    def given(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for value in [*args, *kwargs.values()]:
            for tensor in value if isinstance(value, tuple) else (value,):
                if isinstance(tensor, torch.Tensor):
                    storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()

    layers = model.model.layers  # type: ignore[union-attr]
    handles = [layer.register_forward_pre_hook(given, with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    return sum(storages.values())


def test_tensor_parallelism_leaves_the_checkpointed_inputs_whole(tiny_llama: nn.Module) -> None:
    # from review: the TP factor was applied to the checkpointed blocks' inputs too, which without sequence parallelism
    # every rank holds whole (Korthikanti et al. 2022: 2sbh a layer with full recomputation, not split by t)
    plan = plan_of(tiny_llama, train=True, seq=8, batch=2, precision="fp32", grad_checkpointing=True, gpus=2, tp=2)
    activations = plan.item("activations")
    ids = torch.zeros(2, 8, dtype=torch.long)
    hidden = 2 * 8 * TINY_LLAMA["hidden_size"] * 4  # each layer's input, float32
    layers = TINY_LLAMA["num_hidden_layers"]
    # the hidden states each checkpointed layer is given, and the position tables and mask they share, each once
    kept = kept_layer_inputs(tiny_llama, ids)
    assert kept >= layers * hidden
    split = activations.total_bytes - kept
    assert activations.per_device_bytes == kept + math.ceil(split * (10 + 24 / 2) / 34)
    assert activations.formula.endswith(
        f"; ({split:,} B × (10 + 24/2) / 34 + the checkpointed inputs, {kept:,} B, whole on every rank) per device "
        "(TP 2 without sequence parallelism)"
    )


def test_data_parallelism_without_zero_says_ddp_s_buckets_are_not_counted() -> None:
    # from review: torch's DDP keeps flat buckets the size of all gradients (gradient_as_bucket_view=False)
    note = ("data parallelism without ZeRO (torch's DistributedDataParallel): its gradient buckets, a copy of the "
            "gradients, are not counted; gradient_as_bucket_view=True keeps the gradients in them instead")  # fmt: skip
    assert note in plan_of(Stack(), train=True, gpus=4).notes
    for settings in ({"gpus": 4, "zero": 1}, {"gpus": 1}, {"gpus": 4, "tp": 4}):
        assert note not in plan_of(Stack(), train=True, **settings).notes


def test_tensor_parallel_inference(tiny_llama: nn.Module) -> None:
    weights = nbytes(tiny_llama.parameters())
    plan = plan_of(tiny_llama, seq=8, tp=2)
    assert plan.settings.gpus == 2  # gpus defaults to tp
    item = plan.item("weights")
    assert (item.total_bytes, item.per_device_bytes, item.label) == (weights, weights // 2, "estimate")
    assert plan.item("KV cache").label == "derived"


# ---------------------------------------------------------------------------------------------------------------------
# 5. activations: autograd's saved tensors in a real train-mode forward


@pytest.mark.parametrize(("batch", "tokens"), [(2, 8), (1, 16), (3, 5)])
def test_train_activations_match_saved_tensors_on_cpu(tiny_llama: nn.Module, batch: int, tokens: int) -> None:
    ids = torch.randint(0, TINY_LLAMA["vocab_size"], (batch, tokens))
    with attention_as_on_a_gpu():  # grouped-query attention in float32
        truth = saved_bytes(tiny_llama, ids, labels=ids)  # a causal LM trains on its loss
    item = plan_of(tiny_llama, train=True, seq=tokens, batch=batch, precision="fp32").item("activations")
    assert (item.total_bytes, item.label) == (truth, "estimate")


def test_train_activations_of_a_model_without_a_cache_match_saved_tensors_on_cpu() -> None:
    # a config for training turns the cache off: transformers then checks the position ids the model makes for packed
    # sequences, which on meta (fake tensors, no values) kept a mask and took attention off the fused kernel, its
    # grouped keys and values repeated for every head and saved (88,900 bytes for 83,780)
    model = llama(use_cache=False)
    ids = torch.randint(0, TINY_LLAMA["vocab_size"], (2, 8))
    with attention_as_on_a_gpu():
        truth = saved_bytes(model, ids, labels=ids)
    item = plan_of(model, train=True, seq=8, batch=2, precision="fp32").item("activations")
    assert (item.total_bytes, item.label) == (truth, "estimate")


def test_bf16_pure_activations_match_a_bf16_model_on_cpu(tiny_llama: nn.Module) -> None:
    ids = torch.zeros(2, 8, dtype=torch.long)
    truth = saved_bytes(copy.deepcopy(tiny_llama).to(torch.bfloat16), ids, labels=ids)
    item = plan_of(tiny_llama, train=True, seq=8, batch=2, precision="bf16-pure").item("activations")
    assert (item.total_bytes, item.label) == (truth, "estimate")


def test_train_activations_for_input_size_match_saved_tensors_on_cpu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    truth = saved_bytes(model, torch.randn(4, 3, 8, 8))
    plan = plan_of(model, train=True, input_size=(4, 3, 8, 8), precision="fp32")
    assert plan.settings.batch == 4
    assert (plan.item("activations").total_bytes, plan.item("activations").label) == (truth, "estimate")


def tiny_t5() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                   decoder_start_token_id=0, dropout_rate=0.0)  # fmt: skip
    return transformers.T5ForConditionalGeneration(config).eval()


def decoder_ids_seen(model: nn.Module, plan: Callable[[], MemoryPlan]) -> tuple[MemoryPlan, list[list[int]]]:
    """The plan, and the shapes of the ids the model's decoder got in the plan's forward (a hook of the test's own)."""
    seen: list[list[int]] = []
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.decoder
    handle = decoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(list(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        return plan(), seen
    finally:
        handle.remove()


def test_an_encoder_decoder_trains_on_the_same_ids_for_its_decoder() -> None:
    # T5 raises without decoder inputs: given labels, it shifts them into its decoder's; given only --input-size,
    # the decoder gets the same ids, as a summary's forward does
    model = tiny_t5()
    ids = torch.zeros(2, 16, dtype=torch.long)
    plan, seen = decoder_ids_seen(model, lambda: plan_of(model, train=True, input_size=(2, 16), input_dtypes=["long"],
                                                         precision="fp32"))  # fmt: skip
    assert seen == [[2, 16]]
    item = plan.item("activations")
    assert item.total_bytes == saved_bytes(model, ids, decoder_input_ids=ids)
    assert item.formula.startswith("saved for backward by a train-mode forward on meta (2×16, the decoder on the same "
                                   "ids, float32")  # fmt: skip
    with_labels, seen = decoder_ids_seen(model, lambda: plan_of(model, train=True, seq=16, batch=2, precision="fp32"))
    assert seen == [[2, 16]]
    assert with_labels.item("activations").total_bytes == saved_bytes(model, ids, labels=ids)


def test_an_encoder_decoder_of_audio_features_plans_its_decoder_on_one_token() -> None:
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8, max_source_positions=30,
        max_target_positions=20, pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=0,
    )).eval()  # fmt: skip
    plan, seen = decoder_ids_seen(model, lambda: plan_of(model, input_size=(2, 8, 60)))
    assert seen == [[2, 1]]
    assert plan.item("activations").formula.startswith(
        "peak of live tensors in an eval forward on meta (2×8×60, the decoder over 2 × 1 as in generate()'s first step)"
    )
    plan, seen = decoder_ids_seen(model, lambda: plan_of(model, train=True, input_size=(2, 8, 60), precision="fp32"))
    assert seen == [[2, 1]]
    item = plan.item("activations")
    assert item.formula.startswith(
        "saved for backward by a train-mode forward on meta (2×8×60, the decoder over 2 × 1,"
    )
    start = torch.zeros(2, 1, dtype=torch.long)
    # what the CPU saves, but for its copy of the encoder's attention output for the projection (its fused kernel
    # lays the output out as the query, heads first here, where a GPU's, in float32 the memory-efficient one, lays it
    # out batch first); an H200 saved 89,904 B: that, its random generator's state (16 B a call) and its kernel's
    # logsumexp of each of the 3 attention calls padded to 32 queries, which meta leaves as the CPU's
    cpu = saved_bytes(model, torch.randn(2, 8, 60), decoder_input_ids=start)
    copy, padding = 2 * 30 * 16 * 4, 2 * 2 * 4 * ((32 - 30) + 2 * (32 - 1))
    assert item.total_bytes == cpu - copy == 89_904 - 3 * 16 - padding


def test_an_encoder_decoder_infers_with_its_decoder_at_the_first_token() -> None:
    model = tiny_t5()
    plan, seen = decoder_ids_seen(model, lambda: plan_of(model, seq=16, batch=2))
    assert seen == [[2, 1]]  # generate()'s first step: the encoder over the whole input, the decoder over one token
    assert plan.item("activations").formula == (
        "peak of live tensors in an eval forward on meta (2 × 16 tokens, the decoder over 2 × 1 as in generate()'s "
        "first step); kernel workspaces not counted"
    )
    assert not [note for note in plan.notes if "forward failed" in note]


def tiny_bert2bert() -> nn.Module:
    """An EncoderDecoderModel of two tiny BERTs, without the decoder_start_token_id it would shift labels with."""
    torch.manual_seed(0)
    bert = {"vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}  # fmt: skip
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**bert), transformers.BertConfig(**bert)
    )
    return transformers.EncoderDecoderModel(config).eval()


def test_an_encoder_decoder_that_cannot_shift_its_labels_trains_with_the_same_ids_for_its_decoder() -> None:
    # labels alone make EncoderDecoderModel shift them, which it cannot without a decoder_start_token_id (the plan
    # had no activations item); the same ids for the decoder are the shapes the shifted labels would have
    model = tiny_bert2bert()
    ids = torch.zeros(2, 16, dtype=torch.long)
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model(ids, labels=ids)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, seen = decoder_ids_seen(model, lambda: plan_of(model, train=True, seq=16, batch=2, precision="fp32"))
    assert not [warning for warning in caught if issubclass(warning.category, FutureWarning)]
    assert seen == [[2, 16]]
    item = plan.item("activations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # decoder_input_ids given with labels
        assert item.total_bytes == saved_bytes(model, ids, decoder_input_ids=ids, labels=ids)
    assert item.formula.startswith("saved for backward by a train-mode forward on meta (2 × 16 tokens, the decoder on "
                                   "the same ids, float32")  # fmt: skip
    assert item.formula.endswith(", with the loss")


def tiny_git() -> nn.Module:
    torch.manual_seed(0)
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 16, "patch_size": 8}  # fmt: skip
    config = transformers.GitConfig(vision_config=vision, vocab_size=100, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    return transformers.GitForCausalLM(config).eval()


def test_a_model_whose_labels_are_not_its_input_ids_trains_without_the_loss() -> None:
    # GIT's loss skips the image tokens it has not got without pixel values: the input ids as labels make it raise,
    # where the forward without them runs (the plan had no activations item)
    model = tiny_git()
    ids = torch.zeros(2, 16, dtype=torch.long)
    with pytest.raises(ValueError, match="batch_size"):
        model(ids, labels=ids)
    plan = plan_of(model, train=True, seq=16, batch=2, precision="fp32")
    item = plan.item("activations")
    assert item.total_bytes == saved_bytes(model, ids)
    assert item.formula.startswith("saved for backward by a train-mode forward on meta (2 × 16 tokens, float32")
    assert "with the loss" not in item.formula
    [note] = [note for note in plan.notes if "labels" in note]
    assert note.startswith("the forward with labels (the input ids) failed, so the activations are measured without "
                           "the loss: the forward failed in '(model)' with inputs ([2, 16], labels=[2, 16]): "
                           "ValueError: Expected input batch_size")  # fmt: skip


class FusedSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(*x.shape[:2], 3, 2, 8).permute(2, 0, 3, 1, 4)
        return nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def test_the_activations_formula_says_fused_attention_only_for_a_forward_that_ran_attention() -> None:
    # from review: a ResNet's activations were measured "with fused attention"
    start = "saved for backward by a train-mode forward on meta"
    attention = plan_of(FusedSelfAttention(), train=True, input_size=(2, 5, 16), precision="fp32")
    assert attention.item("activations").formula == f"{start} (2×5×16, float32, fused attention)"
    convnet = plan_of(small_convnet(), train=True, input_size=(2, 3, 8, 8), precision="fp32")
    assert convnet.item("activations").formula == f"{start} (2×3×8×8, float32)"


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def test_training_from_a_summary_uses_the_activations_it_measured() -> None:
    model = small_convnet()
    truth = saved_bytes(model, torch.randn(4, 3, 8, 8))
    summary = paramscope.summary(model, input_size=(4, 3, 8, 8))
    assert summary.totals.activations_bytes == truth
    for given in ({}, {"batch": 4}, {"input_size": (4, 3, 8, 8)}):  # the summary's own inputs, or none
        plan = plan_of(summary, train=True, precision="fp32", **given)
        item = plan.item("activations")
        assert (item.total_bytes, item.label, plan.settings.batch) == (truth, "estimate", 4)
        assert item.formula == (
            "saved for backward by the summary's train-mode forward ([4, 3, 8, 8]: batch 4, weights in float32, "
            "no autocast)"
        )
        assert not any(note.startswith("no activations item") for note in plan.notes)


def test_training_from_an_encoder_decoders_summary_takes_its_input_size() -> None:
    # the summary gave the decoder the same ids (decoder_input_ids in its root row): input_size names the inputs
    # by position, as the summary was given them
    model = tiny_t5()
    ids = torch.zeros(2, 16, dtype=torch.long)
    summary = paramscope.summary(model, input_size=(2, 16), dtypes=["long"])
    assert summary.totals.activations_bytes == saved_bytes(model, ids, decoder_input_ids=ids)
    for given in ({}, {"input_size": (2, 16)}, {"seq": 16, "batch": 2}):
        plan = plan_of(summary, train=True, precision="fp32", **given)
        assert plan.item("activations").total_bytes == summary.totals.activations_bytes
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(summary, train=True, input_size=[(2, 16), (2, 16)])
    assert str(caught.value) == (
        "input_size [2, 16], [2, 16] differs from the inputs the summary measured its activations on ([2, 16], "
        "decoder_input_ids=[2, 16]): leave input_size out, or pass the model to measure others"
    )


def test_a_summary_in_another_precision_says_so() -> None:
    summary = paramscope.summary(small_convnet(), input_size=(4, 3, 8, 8))
    plan = plan_of(summary, train=True)  # bf16-mixed: the summary ran in float32
    assert plan.item("activations").total_bytes == summary.totals.activations_bytes
    assert plan.notes[0] == (
        "the summary measured the activations in float32 without autocast, and bf16-mixed computes in bfloat16: "
        "pass the model to measure them in bfloat16"
    )


def test_a_summary_of_token_ids_takes_its_own_length(tiny_llama: nn.Module) -> None:
    summary = paramscope.summary(tiny_llama, input_size=(2, 8), dtypes=[torch.long])
    plan = plan_of(summary, train=True, seq=8, precision="fp32")
    assert plan.item("activations").total_bytes == summary.totals.activations_bytes
    assert plan.item("activations").formula.startswith("saved for backward by the summary's train-mode forward ([2, 8]")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 2}, "batch 2 differs from the summary's batch 4, at which it measured the activations "
         "([4, 3, 8, 8]): leave batch out, or summarise the model at batch 2"),
        ({"input_size": (2, 3, 8, 8)}, "input_size [2, 3, 8, 8] differs from the inputs the summary measured its "
         "activations on [4, 3, 8, 8]: leave input_size out, or pass the model to measure others"),
        ({"seq": 8}, "seq 8 differs from the inputs the summary measured its activations on [4, 3, 8, 8]: leave seq "
         "out, or pass the model to measure others"),
    ],
)  # fmt: skip
def test_a_summary_refuses_other_inputs(kwargs: dict[str, Any], message: str) -> None:
    summary = paramscope.summary(small_convnet(), input_size=(4, 3, 8, 8))
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(summary, train=True, **kwargs)
    assert str(caught.value) == message


def test_a_summary_is_not_an_inference_forward() -> None:
    # Saved-for-backward bytes outlive the forward; an eval forward frees its tensors as it goes: another figure.
    summary = paramscope.summary(small_convnet(), input_size=(4, 3, 8, 8))
    plan = plan_of(summary, batch=4)
    assert "activations" not in names(plan)
    assert plan.notes == (
        "no activations item: the summary measured what a train-mode forward saves for backward, not the peak of an "
        "inference forward; pass the model with a context length or input_size to measure one",
    )


def test_a_summary_cannot_say_what_checkpointing_leaves() -> None:
    summary = paramscope.summary(small_convnet(), input_size=(4, 3, 8, 8))
    plan = plan_of(summary, train=True, grad_checkpointing=True)
    assert "activations" not in names(plan)
    assert plan.notes[0] == (
        "no activations item: a summary does not record what gradient checkpointing would leave (its blocks' "
        "inputs); pass the model to estimate it"
    )


def test_a_summary_without_activations_says_so() -> None:
    summary = paramscope.summary(small_convnet(), input_size=(4, 3, 8, 8))
    failed = dataclasses.replace(summary, totals=dataclasses.replace(summary.totals, activations_bytes=None))
    plan = plan_of(failed, train=True)
    assert (plan.settings.batch, "activations" in names(plan)) == (1, False)
    assert plan.notes[0] == (
        "no activations item: the summary measured no activations (its notes say why); pass the model"
    )
    calls = tuple(call._replace(inputs="") if call.path == "" else call for call in summary.calls or ())
    unknown = plan_of(dataclasses.replace(summary, calls=calls), train=True)
    assert (unknown.settings.batch, "activations" in names(unknown)) == (1, False)
    assert unknown.notes[0] == (
        "no activations item: the summary does not record the shapes of its inputs (its batch); pass the model"
    )


def test_mixed_precision_and_checkpointed_activations_are_estimates(tiny_llama: nn.Module) -> None:
    full = plan_of(tiny_llama, train=True, seq=8, batch=2, precision="fp32").item("activations")
    assert plan_of(tiny_llama, train=True, seq=8, batch=2).item("activations").label == "estimate"
    checkpointed = plan_of(
        tiny_llama, train=True, seq=8, batch=2, precision="fp32", grad_checkpointing=True
    ).item("activations")  # fmt: skip
    assert checkpointed.label == "estimate"
    assert 0 < checkpointed.total_bytes < full.total_bytes


def test_mixed_precision_runs_ffts_in_float32_as_autocast_does() -> None:
    # FNet mixes its tokens with an FFT, which torch has no bfloat16 kernel for; mixed precision, imitated with weights
    # in bfloat16, failed in it (no activations item), where autocast runs FFTs in float32
    ffts = ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2", "rfftn", "irfftn",
            "hfft", "ihfft", "hfft2", "ihfft2", "hfftn", "ihfftn")  # fmt: skip
    half = torch.ones(4, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the functions autocast runs in float32, by its own doing
        in_float32 = set()
        for name in ffts:
            with contextlib.suppress(RuntimeError):  # Unsupported dtype BFloat16: autocast leaves it alone
                getattr(torch.fft, name)(half)
                in_float32.add(name)
    assert in_float32 == set(ffts) - {"hfft2", "ihfft2", "hfftn", "ihfftn"}
    config = transformers.FNetConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                                     max_position_embeddings=32)  # fmt: skip
    model = transformers.FNetForMaskedLM(config)
    ids = torch.ones(2, 8, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert saved_bytes(model, ids, labels=ids) > 0  # autocast runs FNet's training forward
    for precision in ("bf16-mixed", "fp16-mixed"):
        plan = plan_of(model, train=True, seq=8, batch=2, precision=precision)
        assert plan.item("activations").label == "estimate"
        assert not [note for note in plan.notes if note.startswith("no activations item")]
    # without autocast, in bfloat16 alone, a real device fails in the FFT as torch does on the CPU: the note says so
    with pytest.raises(RuntimeError, match="Unsupported dtype BFloat16"):
        torch.fft.fftn(half)
    pure = plan_of(model, train=True, seq=8, batch=2, precision="bf16-pure")
    assert "activations" not in names(pure)
    failed = "no activations item: the forward failed in 'fnet.encoder.layer.0.fourier.self'"
    assert any(
        note.startswith(failed) and note.endswith("RuntimeError: Unsupported dtype BFloat16") for note in pure.notes
    )


def test_inference_activations_are_an_estimate(tiny_llama: nn.Module) -> None:
    item = plan_of(tiny_llama, seq=8, batch=2).item("activations")
    assert item.label == "estimate"
    assert item.total_bytes > 0


def test_a_report_runs_no_forward(tiny_llama: nn.Module) -> None:
    plan = plan_of(paramscope.inspect(tiny_llama), seq=8)
    assert "activations" not in names(plan)
    assert "KV cache" not in names(plan)
    assert plan.notes == (
        "no activations item: a Report has no model to run a forward; pass the model",
        "no KV cache item: the model has no decoder config to size it from",
    )
    assert plan_of(paramscope.inspect(tiny_llama), train=True).notes[0] == (
        "no activations item: a Report has no model to run a forward; pass the model, or its summary with input_size"
    )


def test_a_report_with_its_config_gets_a_kv_cache(tiny_llama: nn.Module) -> None:
    truth = nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    plan = plan_of(
        paramscope.inspect(tiny_llama), seq=8, batch=2, kv_dtype="float32", config=tiny_llama.config.to_dict()
    )
    assert plan.item("KV cache").total_bytes == truth


def test_a_cache_of_layers_paramscope_does_not_size_is_an_estimate(tmp_path: Path) -> None:
    """DeepSeek V4's compressed attention layers keep compressed entries and an indexer's, not a key and a value per
    token: counted as full attention, the figure is labelled an estimate (10,880 B in transformers' cache after 18
    tokens of 2 sequences in float32, 14,848 B counted)."""
    config = transformers.DeepseekV4Config(
        vocab_size=64, hidden_size=32, moe_intermediate_size=16, num_hidden_layers=4, num_attention_heads=4,
        head_dim=16, q_lora_rank=16, n_routed_experts=4, num_experts_per_tok=2, sliding_window=4,
        compress_rates={"compressed_sparse_attention": 2, "heavily_compressed_attention": 8}, index_n_heads=2,
        index_head_dim=8, index_topk=4, o_groups=2, o_lora_rank=16, pad_token_id=0,
        layer_types=["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
                     "compressed_sparse_attention"],
    )  # fmt: skip
    config.save_pretrained(tmp_path)
    report = paramscope.memory(str(tmp_path), seq=18, batch=2, dtype="float32")
    assert report.memory is not None
    assert report.memory.item("KV cache").label == "estimate"
    assert (
        "the KV cache counts the compressed_sparse_attention, heavily_compressed_attention layers as full attention, "
        "whose cache paramscope does not know: an estimate"
    ) in report.memory.notes


def test_no_length_no_activations(tiny_llama: nn.Module) -> None:
    assert plan_of(tiny_llama).notes == (
        "no activations item: give a context length (or input_size) to measure one forward",
    )
    assert plan_of(tiny_llama, train=True).notes[0] == (
        "no activations item: give a seq length (or input_size) to measure one forward"
    )


# ---------------------------------------------------------------------------------------------------------------------
# 6. the storage table


def per_tensor_bytes(shape: torch.Size, format: str) -> int:
    """What one tensor takes in ``format``: a real (meta) tensor of that dtype, or int4 packed two to a byte."""
    if format == "int4":
        return -(-math.prod(shape) // 2)
    tensor = torch.empty(shape, dtype=FLOAT_TYPES[format], device="meta")
    return tensor.numel() * tensor.element_size()


def test_storage_rows_match_torch_dtypes(tiny_llama: nn.Module) -> None:
    rows = {row.format: row for row in plan_of(tiny_llama).storage}
    for format in (*FLOAT_TYPES, "int4"):
        expected = sum(per_tensor_bytes(p.shape, format) for p in tiny_llama.parameters())
        assert (rows[format].bytes, rows[format].label) == (expected, "derived"), format


def test_storage_keeps_matching_tensors_in_float32(tiny_llama: nn.Module) -> None:
    rows = {row.format: row for row in plan_of(tiny_llama, keep_fp32=("*norm*",)).storage}
    kept = {name for name, _ in tiny_llama.named_parameters() if "norm" in name}
    assert len(kept) == 2 * TINY_LLAMA["num_hidden_layers"] + 1  # two per layer and the final norm
    for format in (*FLOAT_TYPES, "int4"):
        expected = sum(
            4 * p.numel() if name in kept else per_tensor_bytes(p.shape, format)
            for name, p in tiny_llama.named_parameters()
        )
        assert rows[format].bytes == expected, format


class RowsOf256(nn.Module):
    """Matrices whose rows are whole blocks of 256 (llama.cpp quantizes row by row), and 1-D tensors it keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, 256)
        self.norm = nn.LayerNorm(256)
        self.out = nn.Linear(256, 2)


def test_storage_gguf_rows_match_llama_cpp_block_sizes() -> None:
    gguf = pytest.importorskip("gguf")
    with torch.device("meta"):
        model = RowsOf256()
    rows = {row.format: row for row in plan_of(model).storage}
    for format in ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0", "Q3_K", "Q2_K"):
        block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[format]]
        expected = sum(
            p.numel() // block * block_bytes if p.dim() >= 2 else 4 * p.numel()  # 1-D tensors stay F32
            for p in model.parameters()
        )
        assert rows[format].bytes == expected, format


class RowsNotOf256(nn.Module):
    """Rows of 96 values (whole blocks of 32, not of 256) and of 40 (neither), beside rows of 256."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, 256)
        self.up = nn.Linear(96, 8, bias=False)
        self.odd = nn.Linear(40, 8, bias=False)
        self.norm = nn.LayerNorm(8)


# llama.cpp's llama-quant.cpp (llama_tensor_get_type): a tensor whose rows its type's block does not divide is stored
# in this type instead, or in F16 where that one's block does not divide them either (or where none is listed:
# llama-quantize refuses it, convert_hf_to_gguf.py writes F16)
LLAMA_CPP_FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def test_storage_gguf_rows_not_whole_blocks_take_llama_cpp_fallback_types() -> None:
    gguf = pytest.importorskip("gguf")
    with torch.device("meta"):
        model = RowsNotOf256()
    rows = {row.format: row for row in plan_of(model).storage}

    def stored(shape: tuple[int, ...], format: str) -> int:
        kind = gguf.GGMLQuantizationType[format]
        if shape[-1] % gguf.GGML_QUANT_SIZES[kind][0]:
            fallback = gguf.GGMLQuantizationType[LLAMA_CPP_FALLBACK.get(format, "F16")]
            kind = fallback if shape[-1] % gguf.GGML_QUANT_SIZES[fallback][0] == 0 else gguf.GGMLQuantizationType.F16
        return math.prod(gguf.quant_shape_to_byte_shape(shape, kind))

    for format in ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0", "Q3_K", "Q2_K"):
        expected = sum(stored(tuple(p.shape), format) if p.dim() >= 2 else 4 * p.numel() for p in model.parameters())
        assert rows[format].bytes == expected, format
    assert rows["Q4_K"].formula == (
        "1,024 values at 4.5 bits + 768 in Q5_0 + 320 in float16 (rows not whole blocks: llama.cpp's fallback) + 16 "
        "kept in float32"
    )
    assert rows["Q8_0"].formula == (
        "1,792 values at 8.5 bits + 320 in float16 (rows not whole blocks: llama.cpp's fallback) + 16 kept in float32"
    )
    item = plan_of(model, dtype="Q6_K").item("weights")
    assert item.total_bytes == sum(stored(tuple(p.shape), "Q6_K") if p.dim() >= 2 else 4 * p.numel()
                                   for p in model.parameters())  # fmt: skip


def test_storage_gguf_rows_of_gpt2_conv1d_weights_are_their_first_dimension() -> None:
    gguf = pytest.importorskip("gguf")
    # transformers' Conv1D stores GPT-2's weights as (in, out); convert_hf_to_gguf.py (GPT2Model.modify_tensors)
    # transposes every .c_attn/.c_proj/.c_fc weight, so llama.cpp's rows hold n_embd and n_inner values. With rows of
    # 512 (whole blocks) and 1296 (neither Q4_K's 256 nor Q5_0's 32 divide it: F16), the MLP's c_fc and c_proj, whose
    # last dimensions are 1296 and 512, take F16 and Q4_K the other way round from how they are stored
    config = transformers.GPT2Config(n_embd=512, n_inner=1296, n_layer=1, n_head=4, vocab_size=256, n_positions=64)
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(config)

    def stored(name: str, shape: tuple[int, ...], format: str) -> int:
        if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            shape = shape[::-1]  # as convert_hf_to_gguf.py writes it
        kind = gguf.GGMLQuantizationType[format]
        if shape[-1] % gguf.GGML_QUANT_SIZES[kind][0]:
            fallback = gguf.GGMLQuantizationType[LLAMA_CPP_FALLBACK[format]]
            kind = fallback if shape[-1] % gguf.GGML_QUANT_SIZES[fallback][0] == 0 else gguf.GGMLQuantizationType.F16
        return math.prod(gguf.quant_shape_to_byte_shape(shape, kind))

    # the MLP's c_fc kept in float32: c_proj's type alone is left, as llama.cpp's row (1296) makes it
    kept = ["*mlp.c_fc*"]
    expected = sum(
        4 * p.numel() if p.dim() == 1 or ".mlp.c_fc." in name else stored(name, tuple(p.shape), "Q4_K")
        for name, p in model.named_parameters()
    )
    item = plan_of(model, dtype="Q4_K", keep_fp32=kept).item("weights")
    assert item.total_bytes == expected == 4_691_008
    assert item.formula == (
        "Q4_K: 1,212,416 values at 4.5 bits + 663,552 in float16 (rows not whole blocks: llama.cpp's fallback) + "
        "670,480 kept in float32"
    )
    rows = {row.format: row for row in plan_of(model, keep_fp32=kept).storage}
    assert rows["Q4_K"].bytes == expected


# ---------------------------------------------------------------------------------------------------------------------
# 7. inference weights


def test_weights_as_stored_are_exact_and_tied_once() -> None:
    model = gpt2(**TINY_GPT_KWARGS)
    named = dict(model.named_parameters(remove_duplicate=False))
    assert named["lm_head.weight"] is named["transformer.wte.weight"]
    item = plan_of(model).item("weights")
    assert (item.total_bytes, item.label) == (nbytes(model.parameters()), "exact")  # parameters(): a tie once
    assert item.total_bytes < nbytes(named.values())


def test_weights_of_a_model_without_parameters_name_no_dtypes(capsys: pytest.CaptureFixture[str]) -> None:
    # from review: the CSV's weights row read "0 parameters in their dtypes ()"
    assert list(nn.ReLU().parameters()) == []
    code, out, _ = run(capsys, "memory", "torch.nn:ReLU", "--format", "csv")
    weights = next(row for row in csv.DictReader(io.StringIO(out)) if row["name"] == "weights")
    assert (code, weights["total_bytes"], weights["formula"]) == (0, "0", "0 parameters")


def test_weights_in_another_dtype_are_derived(tiny_llama: nn.Module) -> None:
    item = plan_of(tiny_llama, dtype="bf16").item("weights")
    assert (item.total_bytes, item.label) == (2 * sum(p.numel() for p in tiny_llama.parameters()), "derived")
    kept = plan_of(tiny_llama, dtype="bf16", keep_fp32=("*norm*",)).item("weights")
    assert kept.total_bytes == sum(
        (4 if "norm" in name else 2) * p.numel() for name, p in tiny_llama.named_parameters()
    )


def test_buffers_are_counted_as_stored(tiny_llama: nn.Module) -> None:
    item = plan_of(tiny_llama).item("buffers")
    assert (item.total_bytes, item.label) == (nbytes(tiny_llama.buffers()), "exact")


# ---------------------------------------------------------------------------------------------------------------------
# 8. does it fit


def test_device_memory_fits_and_advice() -> None:
    with torch.device("meta"):
        model = nn.Linear(1024, 1024, bias=False)
    assert nbytes(model.parameters()) == 4 * 2**20
    fits = plan_of(model, device_memory="4MiB")
    assert (fits.fits, fits.advice) == (True, ())
    assert plan_of(model, device_memory=4 * 2**20).fits is True
    over = plan_of(model, device_memory="3MiB")
    assert over.fits is False
    assert over.advice == (
        "4.00 MiB per device is 1.00 MiB over the 3.00 MiB available",
        "weights (4.00 MiB per device): try a smaller --dtype (int8, int4) or --tp N",
    )
    assert plan_of(model).fits is None


def test_training_advice_names_the_largest_items() -> None:
    plan = plan_of(Stack(), train=True, precision="fp32", device_memory="1KiB")
    states = plan.item("optimizer states (adamw)")
    assert max(item.per_device_bytes for item in plan.items) == states.per_device_bytes
    assert plan.advice[1].startswith("optimizer states (adamw) (")
    # one GPU: ZeRO shards nothing until there are more, and offloads only under it; 8-bit Adam keeps tensors this
    # small in 32 bits
    assert plan.advice[1].endswith("): try --zero 1 with more --gpus or --zero 1 --offload-optimizer")


def test_cli_budget_exceeded_exits_3_with_the_table(capsys: pytest.CaptureFixture[str], linear_file: str) -> None:
    code, out, err = run(capsys, "memory", linear_file, "--device-memory", "3MiB", "-q")
    # from review: the options that cut the largest items were in the table's notes alone, not in the exit line (a
    # CSV report holds no notes)
    assert (code, err) == (
        3,
        "paramscope: budget exceeded: 4.00 MiB per device is 1.00 MiB over the 3.00 MiB available; weights (4.00 MiB "
        "per device): try a smaller --dtype (int8, int4) or --tp N\n",
    )
    assert "does not fit in 3.00 MiB" in out
    assert "weights (4.00 MiB per device): try a smaller --dtype (int8, int4) or --tp N" in out
    code, out, err = run(capsys, "memory", linear_file, "--device-memory", "4MiB", "-q")
    assert (code, err) == (0, "")
    assert "fits in 4.00 MiB" in out


def test_cli_budget_exceeded_in_a_subprocess(linear_file: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "memory", linear_file, "--device-memory", "3MiB", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 3
    assert result.stderr == (
        "paramscope: budget exceeded: 4.00 MiB per device is 1.00 MiB over the 3.00 MiB available; weights (4.00 MiB "
        "per device): try a smaller --dtype (int8, int4) or --tp N\n"
    )
    assert json.loads(result.stdout)["memory"]["fits"] is False


@pytest.fixture
def lazy_file(tmp_path: Path) -> str:
    """A CLI target whose second layer is lazy: its weights have no size until a forward runs."""
    path = tmp_path / "lazy.py"
    layers = "nn.Linear(4, 8), nn.LazyLinear(1000)"
    path.write_text(f"from torch import nn\n\n\ndef build():\n    return nn.Sequential({layers})\n")
    return f"{path}:build"


def test_a_plan_with_lazy_parameters_cannot_say_it_fits(capsys: pytest.CaptureFixture[str], lazy_file: str) -> None:
    """The known layer alone is 160 B; the lazy one is 1000 × (in + 1) values once it runs, however small its input:
    a plan that counts it as nothing neither fits nor is exact, as a budget on lower bounds is undecided (exit 2)."""
    model = nn.Sequential(nn.Linear(4, 8), nn.LazyLinear(1000))
    known = nbytes(model[0].parameters())
    model(torch.zeros(1, 4))  # the lazy layer's size once it runs, which the plan cannot know
    assert known == 160
    assert nbytes(model.parameters()) == known + 4 * 1000 * 9
    plan = plan_of(nn.Sequential(nn.Linear(4, 8), nn.LazyLinear(1000)), device_memory="1MiB")
    assert plan.fits is None
    assert ("the model has tensors of unknown size (uninitialised lazy parameters), counted as nothing: the items made "
            "from the parameters, and the total, are only lower bounds") in plan.notes  # fmt: skip
    code, out, err = run(capsys, "memory", lazy_file, "--device-memory", "1MiB", "-q")
    assert (code, err) == (2, "paramscope: error: cannot tell whether it fits in 1.00 MiB: the model has tensors of "
                              "unknown size (uninitialised lazy parameters), so the plan's items are only lower "
                              "bounds\n")  # fmt: skip
    assert "cannot tell whether it fits in 1.00 MiB" in out
    assert re.search(r"^  total +≥ 160 B ", out, re.MULTILINE)
    # so is each row made from the parameters: the weights item and every format's size
    assert re.search(r"^  weights +exact +≥ 160 B ", out, re.MULTILINE)
    assert re.search(r"^  float32 +32 +≥ 160 B ", out, re.MULTILINE)


def test_a_plan_with_lazy_parameters_is_over_by_at_least(capsys: pytest.CaptureFixture[str], lazy_file: str) -> None:
    """The known layer's weights, gradients and AdamW states after a real step: the plan is over by at least them."""
    known = nn.Linear(4, 8)
    optimizer = torch.optim.AdamW(known.parameters())
    known(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    grads = nbytes(p.grad for p in known.parameters())
    measured = nbytes(known.parameters()) + grads + optimizer_state_bytes(optimizer)
    code, out, err = run(capsys, "memory", lazy_file, "--train", "--precision", "fp32", "--device-memory", "100B",
                         "-q", "--format", "json")  # fmt: skip
    options = json.loads(out)["memory"]["advice"][1:]  # what would cut it, in the exit line too
    assert [option.split(" (")[0] for option in options] == ["optimizer states", "weights"]
    assert (code, err) == (3, f"paramscope: budget exceeded: at least {measured} B per device is at least "
                              f"{measured - 100} B over the 100 B available; {'; '.join(options)}\n")  # fmt: skip


@pytest.fixture
def item_model_file(tmp_path: Path) -> str:
    """Model code whose forward reads a value (``.item()``), which a forward on meta cannot."""
    path = tmp_path / "item_model.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class ReadsAValue(nn.Module):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        "        self.proj = nn.Linear(256, 256)\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        y = torch.relu(self.proj(x))\n"
        "        return y * float(y.mean().item() > 0)\n\n\n"
        "def build() -> nn.Module:\n"
        "    return ReadsAValue()\n"
    )
    return f"{path}:build"


def test_a_plan_whose_forward_failed_cannot_say_it_fits(
    capsys: pytest.CaptureFixture[str], item_model_file: str
) -> None:
    """The forward's activations are the largest item here; without them the rest fits in 2 MiB and the whole does
    not: a plan that leaves them out is undecided (exit 2), as one with tensors of unknown size is."""
    model = runpy.run_path(item_model_file.rpartition(":")[0])["build"]()
    model_states = 4 * nbytes(model.parameters())  # fp32 weights, gradients and AdamW's two states
    activations = saved_bytes(model, torch.zeros(2048, 256))
    assert model_states + 8 < 2 * 2**20 < model_states + 8 + activations  # the steps' 2 × 4 B besides
    args = ("memory", item_model_file, "--train", "--precision", "fp32", "--input-size", "2048,256")
    code, out, err = run(capsys, *args, "--device-memory", "2MiB", "-q", "--format", "json")
    assert (code, err) == (2, "paramscope: error: cannot tell whether it fits in 2.00 MiB: the plan leaves out the "
                              "activations (the notes say why), so its total is only a lower bound\n")  # fmt: skip
    memory = json.loads(out)["memory"]
    assert (memory["fits"], memory["left_out"], memory["per_device_bytes"]) == (None, ["activations"],
                                                                                model_states + 8)  # fmt: skip
    failed = "no activations item: the forward failed in '(model)' with inputs [2048, 256]"
    assert memory["notes"][0].startswith(failed)
    code, out, _ = run(capsys, *args, "--device-memory", "2MiB", "-q")
    assert code == 2
    assert "cannot tell whether it fits in 2.00 MiB" in out
    assert re.search(r"^  total +≥ [0-9.]+ MiB ", out, re.MULTILINE)
    code, out, _ = run(capsys, *args, "--device-memory", "2MiB", "-q", "--format", "csv")
    *_, total, verdict = csv.DictReader(io.StringIO(out))
    assert (total["name"], int(total["per_device_bytes"]), total["formula"]) == (
        "total",
        model_states + 8,
        "sum of the above; a lower bound (see the notes)",
    )
    assert (verdict["name"], int(verdict["per_device_bytes"]), verdict["formula"]) == (
        "device memory",
        2 * 2**20,
        "cannot tell whether it fits",
    )
    # over on the rest alone is over all the same, by at least as much
    code, out, err = run(capsys, *args, "--device-memory", "512KiB", "-q", "--format", "json")
    over = model_states + 8 - 2**19
    options = json.loads(out)["memory"]["advice"][1:]
    assert options
    assert (code, err) == (3, f"paramscope: budget exceeded: at least {(model_states + 8) / 2**20:.2f} MiB per device "
                              f"is at least {over / 2**10:.2f} KiB over the 512.00 KiB available; "
                              f"{'; '.join(options)}\n")  # fmt: skip
    # without a forward asked for, the plan is of the weights' items, as it says: it fits
    code, out, _ = run(capsys, "memory", item_model_file, "--train", "--precision", "fp32", "--device-memory", "2MiB",
                       "-q", "--format", "json")  # fmt: skip
    assert (code, json.loads(out)["memory"]["fits"], json.loads(out)["memory"]["left_out"]) == (0, True, [])
    code, out, _ = run(capsys, "memory", item_model_file, "--train", "--precision", "fp32", "--device-memory", "2MiB",
                       "-q", "--format", "csv")  # fmt: skip
    *_, total, verdict = csv.DictReader(io.StringIO(out))
    assert (code, total["formula"], verdict["formula"]) == (0, "sum of the above", "fits")


def test_a_forward_that_failed_leaves_the_activations_out_and_one_that_could_not_run_does_not(
    tiny_llama: nn.Module,
) -> None:
    """An embedding given float ids fails, and so did the train-mode forward of a summary without activations: the
    plan leaves them out. A Report has no model to run, and a summary records no checkpointed forward: the plan is
    of what it counts, as one without a length is, and says so."""
    embedding = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    failed = plan_of(embedding, input_size=(2, 3), train=True, device_memory="1GiB")
    assert (failed.left_out, failed.fits) == (("activations",), None)
    summary = paramscope.summary(tiny_llama, input_size=(2, 8), dtypes=["long"], mode="train")
    # as a summary whose train-mode forward failed: its notes say why
    unmeasured = dataclasses.replace(summary, totals=dataclasses.replace(summary.totals, activations_bytes=None))
    assert (plan_of(unmeasured, train=True, device_memory="1GiB").left_out, failed.fits) == (("activations",), None)
    report = paramscope.inspect(tiny_llama)
    for plan in (plan_of(report, seq=8, device_memory="1GiB"),
                 plan_of(summary, train=True, grad_checkpointing=True, device_memory="1GiB")):  # fmt: skip
        assert (plan.left_out, plan.fits) == ((), True)
        assert "activations" not in names(plan)
        assert any(note.startswith("no activations item: ") for note in plan.notes)
    assert plan_of(summary, train=True, device_memory="1GiB").left_out == ()


# ---------------------------------------------------------------------------------------------------------------------
# 9. the command line


TRAIN_ARGS = ("--train", "--seq", "8", "--batch", "2", "--gpus", "2", "--zero", "2", "-q")


def test_cli_table_golden(capsys: pytest.CaptureFixture[str], golden: Callable[[str, str], None]) -> None:
    code, out, err = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS)
    assert (code, err) == (0, "")
    golden("gpt2-tiny-memory-train.txt", out)


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS, "--format", "json")
    assert (code, err) == (0, "")
    memory = json.loads(out)["memory"]
    assert list(memory) == ["scenario", "settings", "items", "per_device_bytes", "host_bytes", "fits", "left_out",
                            "advice", "storage", "notes"]  # fmt: skip
    assert memory["scenario"] == "training"
    assert (memory["settings"]["gpus"], memory["settings"]["zero"], memory["settings"]["tokens"]) == (2, 2, 8)
    device = [item for item in memory["items"] if item["where"] == "device"]
    assert memory["per_device_bytes"] == sum(item["per_device_bytes"] for item in device)
    assert memory["host_bytes"] == 0
    psi = sum(p.numel() for p in gpt2(**TINY_GPT_KWARGS).parameters())
    weights = next(item for item in memory["items"] if item["name"] == "weights")
    assert weights["total_bytes"] == 2 * psi  # bf16-mixed
    api = paramscope.memory(GPT2, TINY_GPT_KWARGS, train=True, seq=8, batch=2, gpus=2, zero=2).memory
    assert api is not None
    assert memory == api.to_dict()


def test_cli_json_of_inference_leaves_the_training_settings_null(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, "--context", "8", "-q", "--format", "json")
    assert code == 0
    settings = json.loads(out)["memory"]["settings"]
    training = ["optimizer", "precision", "grad_checkpointing", "zero", "offload_optimizer"]
    assert [settings[name] for name in training] == [None] * 5
    assert (settings["train"], settings["tokens"], settings["batch"]) == (False, 8, 1)


def test_cli_csv(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS, "--format", "csv")
    assert (code, err) == (0, "")
    reader = csv.reader(io.StringIO(out))
    assert tuple(next(reader)) == MEMORY_COLUMNS
    rows = list(csv.DictReader(io.StringIO(out)))
    *items, total = rows
    assert [row["name"] for row in items] == [
        "weights", "gradients", "fp32 master weights", "optimizer states (adamw)", "buffers", "activations",
    ]  # fmt: skip
    assert all(row["label"] in ("exact", "derived", "estimate") for row in items)
    assert total["name"] == "total per device"
    assert int(total["per_device_bytes"]) == sum(int(row["per_device_bytes"]) for row in items)


def test_cli_csv_host_total(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS, "--offload-optimizer", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    host = [int(row["per_device_bytes"]) for row in rows if row["where"] == "host"]
    assert (code, rows[-1]["name"], int(rows[-1]["per_device_bytes"])) == (0, "host memory per device", sum(host))


def test_the_total_says_what_it_sums_when_items_are_offloaded(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS, "--offload-optimizer", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    items, (total, host) = rows[:-2], rows[-2:]
    device = sum(int(row["per_device_bytes"]) for row in items if row["where"] == "device")
    assert int(total["per_device_bytes"]) == device < sum(int(row["per_device_bytes"]) for row in items)
    assert (total["formula"], host["formula"]) == ("sum of the items on the device", "sum of the (host) items")
    code, out, _ = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS, "--format", "csv")
    assert (code, list(csv.DictReader(io.StringIO(out)))[-1]["formula"]) == (0, "sum of the above")  # all on device


def test_cli_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "memory", GPT2, *TINY_GPT_ARGS, *TRAIN_ARGS, "--format", "markdown")
    assert (code, err) == (0, "")
    assert "### Memory for training (bf16-mixed, adamw, batch 2 per device, 8 tokens, 2 GPUs, ZeRO 2)" in out
    assert "| Item | Label | Per device | Total | Formula |" in out
    assert "### Weights stored in each format" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--dtype", "nope"), "dtype (--dtype): unknown dtype 'nope'; `paramscope dtypes` lists the known names"),
        (
            ("--kv-dtype", "nope", "--seq", "4"),
            "kv_dtype (--kv-dtype): unknown dtype 'nope'; `paramscope dtypes` lists the known names",
        ),
        (
            ("--input-size", "2,8", "--input-dtype", "nope"),
            "input_dtype (--input-dtype): unknown dtype 'nope'; `paramscope dtypes` lists the known names",
        ),
        (("--gpus", "3", "--tp", "2"), "gpus (--gpus) 3 must be a multiple of tp (--tp) 2"),
        (("--gpus", "0"), "gpus (--gpus) must be at least 1, not 0"),
        (("--batch", "0"), "batch (--batch) must be at least 1, not 0"),
        (("--seq", "0"), "the sequence length must be at least 1, not 0"),
        (
            ("--batch", "4", "--input-size", "2,8", "--input-dtype", "long"),
            "batch (--batch) 4 disagrees with input_size (--input-size) [2, 8]: its first dimension is the batch",
        ),
        (
            ("--seq", "8", "--input-size", "2,8"),
            "give a sequence length (seq: --seq, or --context) or input_size (--input-size), not both",
        ),
        (("--input-size", "x,y"), "--input-size 'x,y' is not a shape: write it as 1,3,224,224"),
        (("--offload-optimizer",), "--offload-optimizer applies to training: add --train (train=True) or leave it out"),
        (
            ("--train", "--offload-optimizer"),
            "--offload-optimizer needs ZeRO stage 1, 2 or 3 (DeepSpeed offloads the optimizer only under ZeRO): add "
            "--zero 1 (zero=1) or leave it out",
        ),
        (
            ("--grad-checkpointing",),
            "--grad-checkpointing applies to training: add --train (train=True) or leave it out",
        ),
        (("--optimizer", "sgd"), "--optimizer sgd applies to training: add --train (train=True) or leave it out"),
        (("--precision", "fp32"), "--precision fp32 applies to training: add --train (train=True) or leave it out"),
        (("--zero", "3"), "--zero 3 applies to training: add --train (train=True) or leave it out"),
        (("--tp", "9" * 20), "tp 99,999,999,999,999,999,999 is more devices than any cluster has (at most 16,777,216)"),
        (
            ("--gpus", "9" * 20),
            "gpus 99,999,999,999,999,999,999 is more devices than any cluster has (at most 16,777,216)",
        ),
        (("--batch", "9" * 20), "batch 99,999,999,999,999,999,999 is more than any device could hold"),
        (("--seq", "9" * 20), "1 × 99,999,999,999,999,999,999 tokens is more than any device could hold"),
        (
            ("--train", "--dtype", "int4"),
            "dtype (--dtype) describes inference; training's bytes come from precision (--precision: fp32, "
            "bf16-mixed, fp16-mixed, bf16-pure)",
        ),
        (
            ("--device-memory", "0"),
            "device_memory (--device-memory) must be at least 1 byte, not 0 (a size is read in whole bytes, rounded "
            "down)",
        ),
        (
            ("--device-memory", "lots"),
            "device_memory (--device-memory): size 'lots' is not a number with an optional unit",
        ),
        (
            ("--device-memory", "2G"),
            "device_memory (--device-memory): size '2G': unit 'G' is ambiguous; write GiB (powers of 1024) or GB "
            "(powers of 1000)",
        ),
        (
            ("--zero", "5"),
            "argument --zero: invalid choice: 5 (choose from 0, 1, 2, 3) (see 'paramscope memory --help')",
        ),
        (
            ("--optimizer", "lion"),
            "argument --optimizer: invalid choice: 'lion' (choose from 'adamw', 'adam', 'sgd', 'sgd-momentum', "
            "'adafactor', 'adamw-8bit') (see 'paramscope memory --help')",
        ),
    ],
)
def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str) -> None:
    assert_error(run(capsys, "memory", GPT2, *TINY_GPT_ARGS, "-q", *argv), message)


def test_cli_tp_zero_names_tp(capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(run(capsys, "memory", GPT2, *TINY_GPT_ARGS, "-q", "--tp", "0"), "tp (--tp) must be at least 1, not 0")


@pytest.fixture
def lone_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint with no config.json beside it: no model to run a forward with."""
    path = tmp_path / "lone.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(4, 4), "bias": torch.zeros(4)}, path)
    return path


def test_checkpoint_only_without_a_length(lone_checkpoint: Path) -> None:
    plan = plan_of(str(lone_checkpoint))
    assert plan.item("weights").total_bytes == 4 * 20
    assert plan.notes == ("no activations item: give a context length (or input_size) to measure one forward",)


def test_checkpoint_only_with_a_length_notes_that_no_forward_runs(lone_checkpoint: Path) -> None:
    plan = plan_of(str(lone_checkpoint), seq=8)
    assert plan.item("weights").total_bytes == 4 * 20
    assert "no activations item: a forward needs a model to run (model code, or a config.json)" in plan.notes


@pytest.mark.parametrize(
    ("text", "reason"),
    [("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
     ('{"hidden_size": ' + "9" * 5000 + "}", "a number of more than 4,300 digits")],
    ids=["nested-too-deeply", "number-too-long"],
)  # fmt: skip
def test_config_beside_a_checkpoint_that_cannot_be_read_is_a_note_as_in_inspect(
    lone_checkpoint: Path, text: str, reason: str
) -> None:
    config = lone_checkpoint.parent / "config.json"
    config.write_text(text)
    report = paramscope.memory(str(lone_checkpoint.parent), seq=8)
    assert report.memory is not None
    assert report.memory.item("weights").total_bytes == 4 * 20
    assert f"{config} could not be read ({reason}): counted without it" in report.notes
    assert "no activations item: a forward needs a model to run (model code, or a config.json)" in report.memory.notes


# ---------------------------------------------------------------------------------------------------------------------
# 10. the model is never changed


def test_memory_never_changes_the_model() -> None:
    model = llama()
    model.train()
    model.model.layers[0].eval()
    model.model.layers[1].mlp.requires_grad_(False)
    model.model.norm.weight.grad = torch.ones_like(model.model.norm.weight)
    handle = model.model.layers[0].register_forward_hook(lambda module, args, output: None)
    before = snapshot(model)
    paramscope.memory(model, train=True, seq=8, batch=2, grad_checkpointing=True)
    paramscope.memory(model, train=True, input_size=(2, 8), input_dtypes=[torch.long], precision="fp32")
    paramscope.memory(model, seq=8, batch=2, dtype="bf16", gpus=4, tp=2, device_memory="1KiB")
    assert_same(before, snapshot(model))
    handle.remove()


# ---------------------------------------------------------------------------------------------------------------------
# 11. a checkpoint directory and a config.json


@pytest.fixture
def saved_llama(tmp_path: Path, tiny_llama: nn.Module, capsys: pytest.CaptureFixture[str]) -> Path:
    tiny_llama.save_pretrained(tmp_path)
    capsys.readouterr()  # transformers' progress bar
    return tmp_path


def on_disk_bytes(path: Path) -> int:
    """The bytes of the tensors in a safetensors file: the file less its 8-byte length and its JSON header."""
    header = int.from_bytes(path.read_bytes()[:8], "little")
    tensors = safetensors.torch.load_file(path)
    assert nbytes(tensors.values()) == path.stat().st_size - 8 - header
    return nbytes(tensors.values())


def test_a_checkpoint_that_does_not_load_into_its_configs_model_says_so(saved_llama: Path) -> None:
    # the weights item counted the file and the forward ran the config's model, silently, where from_pretrained
    # refuses the pair (inspect --check exits 1 on it)
    path = saved_llama / "model.safetensors"
    assert not [note for note in paramscope.memory(str(saved_llama), seq=8).notes if "does not match the model" in note]
    state = safetensors.torch.load_file(path)
    del state["model.layers.0.mlp.up_proj.weight"]
    state["extra.weight"] = torch.zeros(2, 2)
    safetensors.torch.save_file(state, path)
    report = paramscope.memory(str(saved_llama), seq=8)
    assert report.memory is not None
    assert report.memory.item("weights").total_bytes == nbytes(state.values())
    assert ("the checkpoint does not match the model its config builds (1 missing, 1 unexpected, 0 of another "
            "shape; inspect --check names them): the weights item counts the checkpoint's tensors, and the forward "
            "that measures the activations, like the KV cache, is the config's model's") in report.notes  # fmt: skip


def test_checkpoint_directory(saved_llama: Path, tiny_llama: nn.Module) -> None:
    plan = plan_of(str(saved_llama), seq=8, batch=2, kv_dtype="float32")
    weights = plan.item("weights")
    assert (weights.total_bytes, weights.label) == (on_disk_bytes(saved_llama / "model.safetensors"), "exact")
    assert plan.item("KV cache").total_bytes == nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    assert plan.item("activations").label == "estimate"


def test_a_checkpoint_stored_in_another_dtype_than_its_config_declares(
    saved_llama: Path, tiny_llama: nn.Module
) -> None:
    """float32 weights, config.json says bfloat16: the plan is of the weights as stored, its forward and its cache in
    float32 as the live model's; with --dtype bfloat16, what from_pretrained loads (it reads the config's dtype)."""
    config = json.loads((saved_llama / "config.json").read_text())
    config.pop("torch_dtype", None)
    (saved_llama / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    report = paramscope.memory(str(saved_llama), seq=8, batch=2)
    plan = report.memory
    assert plan is not None
    live = plan_of(tiny_llama, seq=8, batch=2)
    assert plan.item("weights").total_bytes == on_disk_bytes(saved_llama / "model.safetensors")
    assert plan.item("KV cache").total_bytes == live.item("KV cache").total_bytes
    assert plan.item("KV cache").total_bytes == nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    assert plan.item("activations").total_bytes == live.item("activations").total_bytes
    assert (
        "config.json declares bfloat16 and the weights are stored in float32: the plan is of them as stored, its "
        'forward run in float32; transformers\' from_pretrained (dtype "auto") loads them in bfloat16: give --dtype '
        "bfloat16 to plan that"
    ) in report.notes
    assert not any(note.startswith("parameters in bfloat16") for note in report.notes)
    # training computes in its precision's dtype: the plan is not of the weights as stored
    trained = paramscope.memory(str(saved_llama), train=True, seq=8, batch=2, precision="fp32")
    assert not any(note.startswith(("config.json declares", "parameters in")) for note in trained.notes)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(saved_llama).eval()
    assert loaded.dtype == torch.bfloat16
    as_loaded = paramscope.memory(str(saved_llama), seq=8, batch=2, dtype="bfloat16")
    assert as_loaded.memory is not None
    assert as_loaded.memory.item("weights").total_bytes == nbytes(loaded.parameters())
    assert as_loaded.memory.item("KV cache").total_bytes == nbytes(cache_tensors(prefill(loaded, 2, 8)))
    assert not any(note.startswith("config.json declares") for note in as_loaded.notes)  # the plan is in bfloat16
    # the build's dtype is not the plan's: the weights are the checkpoint's, converted to --dtype
    in_float32 = paramscope.memory(str(saved_llama), seq=8, batch=2, dtype="float32")
    assert not any(note.startswith(("config.json declares", "parameters in")) for note in in_float32.notes)


def test_checkpoint_directory_for_training(saved_llama: Path, tiny_llama: nn.Module) -> None:
    plan = plan_of(str(saved_llama), train=True, seq=8, batch=2, precision="fp32")
    assert plan.item("weights").total_bytes == on_disk_bytes(saved_llama / "model.safetensors")
    ids = torch.zeros(2, 8, dtype=torch.long)
    with attention_as_on_a_gpu():
        assert plan.item("activations").total_bytes == saved_bytes(tiny_llama, ids, labels=ids)
    assert plan.item("gradients").total_bytes == 4 * trainable_numel(tiny_llama)
    assert "the source does not say which parameters are trained: all of them are counted as trainable" in plan.notes


def test_config_json(saved_llama: Path, tiny_llama: nn.Module) -> None:
    plan = plan_of(str(saved_llama / "config.json"), seq=8, batch=2, kv_dtype="float32")
    weights = plan.item("weights")
    assert (weights.total_bytes, weights.label) == (nbytes(tiny_llama.parameters()), "exact")
    assert plan.item("KV cache").total_bytes == nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    train = plan_of(str(saved_llama / "config.json"), train=True, seq=8, batch=2, precision="fp32")
    ids = torch.zeros(2, 8, dtype=torch.long)
    with attention_as_on_a_gpu():
        assert train.item("activations").total_bytes == saved_bytes(tiny_llama, ids, labels=ids)


def test_config_json_declaring_quantisation_sizes_weights_unquantised_as_an_estimate(
    saved_llama: Path, tiny_llama: nn.Module
) -> None:
    config = saved_llama / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "quantization_config": {"quant_method": "gptq"}}))
    plan = plan_of(str(config), seq=8, batch=2)
    weights = plan.item("weights")
    assert (weights.total_bytes, weights.label) == (nbytes(tiny_llama.parameters()), "estimate")
    assert (
        "weights sized unquantised: config.json declares quantisation (gptq), which building from a config does not "
        "apply; plan from the checkpoint for its stored bytes, or give --dtype"
    ) in plan.notes


def test_cli_config_json(capsys: pytest.CaptureFixture[str], saved_llama: Path, tiny_llama: nn.Module) -> None:
    code, out, err = run(capsys, "memory", str(saved_llama / "config.json"), "--context", "8", "--batch", "2",
                         "--kv-dtype", "fp32", "--format", "json", "-q")  # fmt: skip
    assert (code, err) == (0, "")
    items = {item["name"]: item for item in json.loads(out)["memory"]["items"]}
    assert items["KV cache"]["total_bytes"] == nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))


# ---------------------------------------------------------------------------------------------------------------------
# 12. review fixes: what a weight-only format leaves alone, quantisation metadata, encoders, multi-query attention


def test_weight_only_formats_keep_the_kv_cache_in_bf16(tiny_llama: nn.Module) -> None:
    bf16 = plan_of(tiny_llama, seq=8, batch=2, dtype="bf16").item("KV cache").total_bytes
    assert bf16 == nbytes(cache_tensors(prefill(copy.deepcopy(tiny_llama).to(torch.bfloat16), 2, 8)))
    for weight_only in ("Q4_K", "int8", "int4", "fp8"):
        assert plan_of(tiny_llama, seq=8, batch=2, dtype=weight_only).item("KV cache").total_bytes == bf16
    assert plan_of(tiny_llama, seq=8, batch=2, dtype="int4", kv_dtype="fp8").item("KV cache").total_bytes == bf16 // 2


def test_a_quantised_checkpoint_budgets_its_scales_and_zeros(tmp_path: Path) -> None:
    tensors = {
        "up.qweight": torch.zeros(64 * 4 // 32, 32, dtype=torch.int32),
        "up.qzeros": torch.zeros(64 // 32, 32 * 4 // 32, dtype=torch.int32),
        "up.scales": torch.zeros(64 // 32, 32, dtype=torch.float16),
        "up.g_idx": torch.zeros(64, dtype=torch.int32),
        "norm.weight": torch.zeros(64, dtype=torch.float16),
    }
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(tensors, str(path))
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}}))
    plan = plan_of(str(path))
    metadata = ("up.qzeros", "up.scales", "up.g_idx")
    item = plan.item("quantization metadata")
    assert (item.total_bytes, item.label) == (sum(nbytes([tensors[name]]) for name in metadata), "exact")
    assert plan.item("weights").total_bytes == nbytes([tensors["up.qweight"], tensors["norm.weight"]])
    assert plan.per_device_bytes == nbytes(tensors.values())  # everything in the file, each byte once


def test_an_encoder_has_no_kv_cache() -> None:
    model = transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                                           num_attention_heads=2, intermediate_size=32))  # fmt: skip
    plan = plan_of(model, seq=8, batch=2)
    assert "KV cache" not in [item.name for item in plan.items]
    assert "no KV cache item: the config describes an encoder, which keeps no generation cache" in plan.notes


GENERATING_AUTO_CLASSES = ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoModelForSpeechSeq2Seq",
                           "AutoModelForImageTextToText", "AutoModelForMultimodalLM")  # fmt: skip


@pytest.mark.parametrize(
    "model_type",
    # a transducer (Parakeet TDT) generates, but with its decoder's recurrent state, not a KV cache
    ["d_fine", "rt_detr", "detr", "deformable_detr", "conditional_detr", "eurobert", "parakeet_tdt"],
)
def test_a_model_type_transformers_builds_no_generating_model_of_has_no_kv_cache(model_type: str) -> None:
    # from the KV cache sweep: a detector's config without architectures (is_encoder_decoder true) got a KV cache
    # item, and EuroBERT's (an encoder with num_key_value_heads) too
    config = transformers.AutoConfig.for_model(model_type)
    for name in GENERATING_AUTO_CLASSES:  # transformers' own answer: none of its generating models takes the config
        with pytest.raises(ValueError, match="Unrecognized configuration class"):
            getattr(transformers, name).from_config(config)
    fields = config.to_dict()
    assert not fields.get("architectures")
    plan = plan_of(paramscope.inspect(nn.Linear(2, 2)), seq=8, batch=2, config=fields)
    assert "KV cache" not in names(plan)
    assert plan.notes[-1] == (
        f"no KV cache item: transformers builds no causal LM, encoder-decoder LM or image-, speech- or vision-to-text "
        f"model of type {model_type}, the models that keep a KV cache to generate, so it keeps none"
    )


def test_configs_without_architectures_of_decoders_keep_their_kv_cache() -> None:
    # the model type of a decoder, and a hand-written config without one (as a GGUF file's plan), are sized as before
    for fields in (transformers.LlamaConfig(**TINY_LLAMA).to_dict(), {k: v for k, v in TINY_LLAMA.items()}):
        plan = plan_of(paramscope.inspect(llama()), seq=8, batch=2, kv_dtype="float32", config=fields)
        assert plan.item("KV cache").total_bytes == nbytes(cache_tensors(prefill(llama(), 2, 8)))


@pytest.mark.parametrize(
    "model_class", [transformers.BertLMHeadModel, transformers.RobertaForCausalLM, transformers.BertGenerationDecoder]
)
@pytest.mark.parametrize("is_decoder", [False, True])
def test_kv_cache_of_an_encoder_with_a_causal_lm_head(model_class: Any, is_decoder: bool) -> None:
    """BertLMHeadModel and its kin attend both ways and make no cache in their forward unless is_decoder is set;
    generate() passes one all the same, which their layers fill as a decoder's: the plan keeps the item, and says so
    (it said nothing; planned from the model object, it called BertLMHeadModel an encoder and left the cache out).
    BertGenerationDecoder, whose name says nothing of generating, was called a model that does not generate."""
    config = transformers.AutoConfig.for_model(model_class.config_class.model_type, vocab_size=64, hidden_size=32,
                                               num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                               pad_token_id=0, is_decoder=is_decoder)  # fmt: skip
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():
        output = model(torch.ones(2, 4, dtype=torch.long), use_cache=True)
    assert (output.get("cache") is None) is not is_decoder  # a forward of its own keeps none without is_decoder
    passed: list[Any] = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: passed.append(kwargs.get("cache")) or forward(*args, **kwargs)
    model.generate(torch.ones(2, 4, dtype=torch.long), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    held = cache_tensors(passed[-1])  # the prompt's 4 tokens and the 2 fed back: 6 tokens
    assert {tensor.shape[-2] for tensor in held} == {6}
    del model.forward
    plan = plan_of(model, seq=6, batch=2, dtype="float32")
    assert plan.item("KV cache").total_bytes == nbytes(held)
    note = (f"{model_class.__name__}'s config has is_decoder false: transformers runs it as the encoder it is made "
            "of, attending both ways, and its forward makes no cache of its own; generate() passes it one, which it "
            "fills as the KV cache item counts, but each prompt token then attends to the tokens after it too: set "
            "is_decoder true to generate as a causal LM")  # fmt: skip
    assert (note in plan.notes) is not is_decoder
    saved = {**config.to_dict(), "architectures": [model_class.__name__]}  # as config.json has it
    as_written = plan_of(paramscope.inspect(model), seq=6, batch=2, kv_dtype="float32", config=saved)
    assert as_written.item("KV cache").total_bytes == nbytes(held)
    assert (note in as_written.notes) is not is_decoder


@pytest.mark.parametrize("causal", [False, True])
def test_kv_cache_of_an_xlm_that_attends_both_ways(causal: bool) -> None:
    """from the KV cache sweep: XLMWithLMHeadModel attends both ways unless its config sets causal (XLMConfig's default
    leaves it false), as BertLMHeadModel does without is_decoder, and its forward returns no cache; generate() passes
    it one all the same, which it fills as the item counts. The plan said nothing of it."""
    config = transformers.XLMConfig(vocab_size=64, emb_dim=32, n_layers=2, n_heads=4, causal=causal)
    torch.manual_seed(0)
    model = transformers.XLMWithLMHeadModel(config).eval()
    ids = torch.full((2, 4), 5)
    with torch.no_grad():
        output = model(ids, use_cache=True)
        changed = model(torch.cat([ids[:, :-1], torch.full((2, 1), 6)], dim=1)).logits
    assert not {"cache", "past_key_values"} & output.keys()  # a forward of its own returns none
    assert torch.equal(output.logits[:, 0], changed[:, 0]) is causal  # the first token sees the last unless causal
    passed: list[Any] = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: passed.append(kwargs.get("cache")) or forward(*args, **kwargs)
    model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    held = cache_tensors(passed[-1])  # the prompt's 4 tokens, the 2 fed back and the mask token it appends: 7
    assert {tensor.shape[-2] for tensor in held} == {7}
    del model.forward
    plan = plan_of(model, seq=7, batch=2, dtype="float32")
    assert plan.item("KV cache").total_bytes == nbytes(held)
    note = ("XLMWithLMHeadModel's config has causal false: transformers runs it attending both ways, and its forward "
            "returns no cache; generate() passes it one, which it fills as the KV cache item counts, but each prompt "
            "token then attends to the tokens after it too: set causal true to generate as a causal LM")  # fmt: skip
    assert (note in plan.notes) is not causal
    saved = {**config.to_dict(), "architectures": ["XLMWithLMHeadModel"]}  # as config.json has it
    as_written = plan_of(paramscope.inspect(model), seq=7, batch=2, kv_dtype="float32", config=saved)
    assert as_written.item("KV cache").total_bytes == nbytes(held)
    assert (note in as_written.notes) is not causal


@pytest.mark.parametrize("causal", [False, True])
def test_flaubert_generates_without_a_kv_cache(causal: bool) -> None:
    """FlaubertWithLMHeadModel's name reads as a causal LM's, but transformers builds it as a masked LM, and its
    prepare_inputs_for_generation gives its forward no cache: generate() runs the whole sequence at each step. The
    plan had a KV cache item."""
    config = transformers.FlaubertConfig(vocab_size=64, emb_dim=32, n_layers=2, n_heads=4, causal=causal)
    model = transformers.FlaubertWithLMHeadModel(config).eval()
    ids = torch.full((2, 4), 5)
    caches: list[Any] = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: caches.append(kwargs.get("cache")) or forward(*args, **kwargs)
    output = model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert caches == [None] * 3
    assert output.past_key_values.get_seq_length() == 0  # the cache generate() makes is never filled
    assert {tensor for tensor in cache_tensors(output.past_key_values)} == {None}
    del model.forward
    note = ("no KV cache item: transformers builds FlaubertWithLMHeadModel as a masked LM, which keeps no generation "
            "cache (its generate() passes its forward none: each step runs the whole sequence again)")  # fmt: skip
    saved = {**config.to_dict(), "architectures": ["FlaubertWithLMHeadModel"]}  # as config.json has it
    for plan in (plan_of(model, seq=7, batch=2), plan_of(paramscope.inspect(model), seq=7, batch=2, config=saved)):
        assert "KV cache" not in names(plan)
        assert plan.notes[-1] == note


@pytest.mark.parametrize("train", [False, True])
def test_inputs_of_input_size_take_the_models_float_dtype(train: bool) -> None:
    # as a summary's: a bfloat16 model's inference plan gave float32 inputs, and the forward failed ("Input type
    # (float) and bias type (c10::BFloat16) should be the same"), so the plan had no activations item
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).to(torch.bfloat16)
    default = plan_of(model, input_size=(2, 3, 8, 8), train=train)
    explicit = plan_of(model, input_size=(2, 3, 8, 8), input_dtypes=["bfloat16"], train=train)
    assert default.item("activations").total_bytes == explicit.item("activations").total_bytes > 0


@pytest.mark.parametrize("train", [False, True])
def test_a_wrapped_models_forward_is_measured_as_the_model_it_wraps(train: bool) -> None:
    # DataParallel's forward refuses the stateless API the planner runs the weights' stand-ins through: the plan had
    # no activations item ("The stateless API can't be used with nn.DataParallel module"); a summary unwraps it
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    alone = plan_of(model, input_size=(2, 16), train=train).item("activations").total_bytes
    wrapped = plan_of(nn.DataParallel(model), input_size=(2, 16), train=train)
    assert wrapped.item("activations").total_bytes == alone > 0


def test_float_inputs_to_an_embedding_are_told_to_be_long_in_the_note() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    plan = plan_of(model, input_size=(2, 3), train=True)
    assert plan.notes[0] == (
        "no activations item: the forward failed in '0' with inputs [2, 3]: RuntimeError: Expected tensor for "
        "argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.float32 instead; "
        "an embedding looks up integer token ids: give it long inputs (--input-dtype long, input_dtypes=['long'])"
    )
    assert plan_of(model, input_size=(2, 3), input_dtypes=["long"], train=True).item("activations").total_bytes > 0


def test_a_causal_lm_whose_forward_takes_no_cache_has_no_kv_cache_item() -> None:
    # OpenAI GPT: its forward takes no cache and returns none; generate() runs the whole sequence again each token
    config = transformers.OpenAIGPTConfig(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    model = transformers.OpenAIGPTLMHeadModel(config).eval()
    with torch.no_grad():
        output = model(torch.ones(2, 4, dtype=torch.long))
    assert list(output.keys()) == ["logits"]
    for target in (model, paramscope.inspect(model)):
        plan = plan_of(target, seq=6, batch=2, config={**config.to_dict(), "architectures": ["OpenAIGPTLMHeadModel"]})
        assert "KV cache" not in [item.name for item in plan.items]
        note = ("no KV cache item: transformers' OpenAIGPTLMHeadModel keeps no cache (its forward takes none): "
                "generate() runs the whole sequence again for each new token")  # fmt: skip
        assert note in plan.notes


def test_multi_query_attention_caches_one_head() -> None:
    config = {"architectures": ["FalconForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 8,
              "hidden_size": 64, "multi_query": True}  # fmt: skip
    size, formula, heads = kv_cache(config, batch=1, tokens=10, kv_dtype="bf16")  # type: ignore[misc]
    assert (size, heads) == (2 * 2 * 1 * 8 * 10 * 2, 1)
    assert "× 1 kv heads ×" in formula
    # FalconConfig fills num_kv_heads with the attention heads; FalconAttention caches one head all the same
    assert kv_cache({**config, "num_kv_heads": 8}, batch=1, tokens=10, kv_dtype="bf16")[2] == 1  # type: ignore[index]


def test_training_with_huggingface_checkpointing_on(tiny_llama: nn.Module) -> None:
    model = copy.deepcopy(tiny_llama)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    flags = {name for name, module in model.named_modules() if vars(module).get("gradient_checkpointing") is True}
    plan = plan_of(model, train=True, seq=8, batch=2, precision="fp32")
    explicit = plan_of(tiny_llama, train=True, seq=8, batch=2, precision="fp32", grad_checkpointing=True)
    assert plan.item("activations").total_bytes == explicit.item("activations").total_bytes
    assert "the model has gradient checkpointing on: its activations are estimated as checkpointed" in plan.notes
    assert {n for n, m in model.named_modules() if vars(m).get("gradient_checkpointing") is True} == flags != set()


def test_zero_with_one_data_parallel_rank_notes_that_nothing_is_sharded() -> None:
    plan = plan_of(Stack(), train=True, gpus=2, tp=2, zero=3, input_size=(8, 16))
    assert "ZeRO 3 shards over data-parallel ranks, and there is one (gpus ÷ tp = 1): nothing is sharded" in plan.notes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": True, "dtype": "int4"}, "dtype (--dtype) describes inference; training's bytes come from precision "
         "(--precision: fp32, bf16-mixed, fp16-mixed, bf16-pure)"),
        ({"train": True, "keep_fp32": ["*norm*"]}, "keep_fp32 (--keep-fp32) describes inference; training's bytes come "
         "from precision (--precision: fp32, bf16-mixed, fp16-mixed, bf16-pure)"),
        ({"train": True, "dtype": "int4", "kv_dtype": "fp8"}, "dtype (--dtype) and kv_dtype (--kv-dtype) describe "
         "inference; training's bytes come from precision (--precision: fp32, bf16-mixed, fp16-mixed, bf16-pure)"),
        ({"dtype": "bool"}, "dtype (--dtype) 'bool' is not a storage format for weights"),
        ({"kv_dtype": "complex64"}, "kv_dtype (--kv-dtype) 'complex64' is not a storage format for a KV cache"),
        # llama.cpp takes a k-quant for weights, never for its cache (its rows, a head's, are no 256-value blocks)
        ({"kv_dtype": "Q4_K"}, "kv_dtype (--kv-dtype) 'Q4_K' is a format of weights, not of a KV cache: llama.cpp "
         "keeps one in Q8_0, Q5_1, Q5_0, Q4_1, Q4_0 or IQ4_NL blocks, or in a float dtype"),
        ({"device_memory": 0}, "device_memory (--device-memory) must be at least 1 byte, not 0 (a size is read in "
         "whole bytes, rounded down)"),
        ({"device_memory": "0.5"}, "device_memory (--device-memory) must be at least 1 byte, not 0 (a size is read in "
         "whole bytes, rounded down)"),
        ({"device_memory": 10**30}, "device_memory (--device-memory) 1,000,000,000,000,000,000,000,000,000,000 is too "
         "large (at most 9,223,372,036,854,775,807)"),
        ({"seq": 10**14, "batch": 10**8}, "100,000,000 × 100,000,000,000,000 tokens is more than any device could "
         "hold"),
        ({"offload_optimizer": True}, "--offload-optimizer applies to training: add --train (train=True) or leave it "
         "out"),
        ({"train": True, "offload_optimizer": True, "gpus": 8}, "--offload-optimizer needs ZeRO stage 1, 2 or 3 "
         "(DeepSpeed offloads the optimizer only under ZeRO): add --zero 1 (zero=1) or leave it out"),
        ({"gpus": 2**24 + 1}, "gpus 16,777,217 is more devices than any cluster has (at most 16,777,216)"),
        ({"batch": 2**48}, "batch 281,474,976,710,656 is more than any device could hold"),
    ],
)  # fmt: skip
def test_settings_that_describe_nothing_real_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory("paramscope.examples:gpt2", **kwargs)
    assert str(caught.value) == message


def test_large_real_setups_are_planned() -> None:
    plan = plan_of(GPT2, TINY_GPT_KWARGS, train=True, gpus=100_000, tp=8, zero=3, batch=2**20)
    assert plan.settings.gpus == 100_000
    assert plan.item("weights").per_device_bytes == -(-plan.item("weights").total_bytes // 100_000)


def test_tensor_parallelism_gives_each_device_whole_heads(tiny_llama: nn.Module) -> None:
    heads = TINY_LLAMA["num_attention_heads"]  # 4: TP 2 and 4 split them, TP 3 cannot
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(tiny_llama, tp=3)
    assert str(caught.value) == f"tp (3) must divide the model's {heads} attention heads: each device holds whole heads"
    assert plan_of(tiny_llama, train=True, tp=4).settings.tp == 4


def test_zero_3_gathers_two_adjacent_blocks_and_the_root_unit(saved_llama: Path, tiny_llama: nn.Module) -> None:
    sizes = [sum(p.numel() for p in layer.parameters()) for layer in tiny_llama.model.layers]
    outside = sum(p.numel() for p in tiny_llama.parameters()) - sum(sizes)
    expected = (max(a + b for a, b in itertools.pairwise(sizes)) + outside) * 2  # bf16-mixed weights: 2 bytes
    for target in (tiny_llama, str(saved_llama), str(saved_llama / "config.json")):  # model, checkpoint, config
        item = plan_of(target, train=True, gpus=4, zero=3).item("gathered parameters (ZeRO 3)")
        assert (item.total_bytes, item.per_device_bytes) == (expected, expected), target


class Plain(nn.Module):
    """Three linears and a conv, no repeated blocks: FSDP wraps it as one unit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.first = nn.Linear(8, 32)
        self.second = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(self.conv(x).mean((2, 3))).relu()).relu())


class SpectralStack(nn.Module):
    """Repeated blocks of unequal sizes holding complex parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Spectral(), Spectral(), nn.Linear(4, 4)])
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks[2](self.blocks[0](x) + self.blocks[1](x)))


def _block(inputs: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, outputs), nn.ReLU())


class EncoderDecoder(nn.Module):
    """Two stacks of blocks, an encoder's and a decoder's, beside an embedding and a head of two layers in a row."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.encoder = nn.ModuleList([_block(8, 8), _block(8, 8), _block(8, 8)])
        self.decoder = nn.ModuleList([_block(8, 16), _block(16, 8)])
        self.head = nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 10))  # larger than any two blocks

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in (*self.encoder, *self.decoder):
            x = layer(x)
        return self.head(x)


GATHERED_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[str, ...]]] = {
    # four stacks, blocks of unequal sizes: layer4.0 has the downsample, layer4.1 not
    "resnet18": (resnet18, ("layer1", "layer2", "layer3", "layer4")),
    "gpt2": (lambda: gpt2(**{**TINY_GPT_KWARGS, "n_layer": 4}), ("transformer.h",)),  # equal blocks, a tied head
    "plain": (Plain, ()),  # no repeated blocks
    "spectral": (SpectralStack, ("blocks",)),  # a complex parameter is 2 values
    # from review: the encoder's blocks were counted in the root unit, always gathered, beside the decoder's pair; and
    # (a later review) the head's two layers were taken for a stack of blocks, and the pair gathered
    "encoder-decoder": (EncoderDecoder, ("encoder", "decoder")),
}


@pytest.mark.parametrize("precision", ["bf16-mixed", "fp32"])
@pytest.mark.parametrize("case", sorted(GATHERED_CASES))
def test_zero_3_gathers_at_most_the_whole_model(case: str, precision: str) -> None:
    factory, paths = GATHERED_CASES[case]
    model = factory()
    weight = {"bf16-mixed": torch.bfloat16, "fp32": torch.float32}[precision].itemsize
    # the real values of each tensor: a complex element is two
    values = {p: p.numel() * (2 if p.is_complex() else 1) for p in model.parameters()}
    total = sum(values.values())
    note = " (a complex parameter counts as 2 values)" if any(p.is_complex() for p in values) else ""
    if not paths:
        count, formula = total, f"{total:,} parameters × {weight} B (one unit: the whole model){note}"
    else:
        # FSDP wraps every block of every stack: the most gathered at once is the root's and two adjacent blocks
        pairs = []
        for path in paths:
            sizes = [sum(values[p] for p in block.parameters()) for block in model.get_submodule(path)]
            pairs += [(a, b, f"{path}.{index}", f"{path}.{index + 1}")
                      for index, (a, b) in enumerate(itertools.pairwise(sizes))]  # fmt: skip
        a, b, one, two = max(pairs, key=lambda pair: pair[0] + pair[1])  # the first of the largest
        outside = total - sum(values[p] for path in paths for p in model.get_submodule(path).parameters())
        count = a + b + outside
        pair = f"2 × {a:,} of {one} and {two}" if a == b else f"{a:,} of {one} + {b:,} of {two}"
        formula = (f"({pair}, the largest two adjacent blocks, running and prefetched, + {outside:,} outside the "
                   f"blocks) × {weight} B{note}")  # fmt: skip
    unsharded = plan_of(model, train=True, precision=precision)
    for gpus in (2, 4, 8):
        plan = plan_of(model, train=True, precision=precision, gpus=gpus, zero=3)
        item = plan.item("gathered parameters (ZeRO 3)")
        assert (item.total_bytes, item.per_device_bytes, item.formula) == (count * weight, count * weight, formula)
        assert item.total_bytes <= plan.item("weights").total_bytes == total * weight  # never more than the model
        assert plan.per_device_bytes < unsharded.per_device_bytes, gpus  # 16Ψ/N + the gathered part < 16Ψ


# ---------------------------------------------------------------------------------------------------------------------
# 13. review fixes: the KV cache of token ids given as a shape, keep_fp32 as one pattern, advice that cuts, units,
# arguments of the wrong type, layer counts beyond any model


def test_kv_cache_of_token_ids_given_as_input_size(tiny_llama: nn.Module) -> None:
    tensors = cache_tensors(prefill(tiny_llama, 2, 8))
    plan = plan_of(tiny_llama, input_size=(2, 8), input_dtypes=["long"], dtype="float32")
    item = plan.item("KV cache")
    assert (item.total_bytes, item.label, plan.settings.tokens) == (nbytes(tensors), "derived", 8)
    assert item.formula == "2 × 2 layers × 2 kv heads × 8 × 8 tokens × 2 × 4 B"
    fp8 = plan_of(tiny_llama, input_size=[(2, 8)], input_dtypes="long", kv_dtype="fp8").item("KV cache")
    assert fp8.total_bytes == sum(tensor.numel() for tensor in tensors)  # one byte a value
    assert plan.item("activations").formula.startswith("peak of live tensors in an eval forward on meta (2×8)")


def test_kv_cache_of_input_size_for_a_model_whose_main_input_is_token_ids(
    capsys: pytest.CaptureFixture[str], saved_llama: Path, tiny_llama: nn.Module
) -> None:
    """Without --input-dtype, a model whose main input transformers declares to be input_ids runs on token ids (as a
    summary's): its KV cache holds their sequence, as with --input-dtype long, not 'no KV cache item'."""
    assert tiny_llama.main_input_name == "input_ids"
    measured = nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    plan = plan_of(tiny_llama, input_size=(2, 8))
    assert (plan.item("KV cache").total_bytes, plan.settings.tokens) == (measured, 8)
    assert not [note for note in plan.notes if "KV cache" in note]
    code, out, err = run(capsys, "memory", str(saved_llama), "--input-size", "2,8", "--kv-dtype", "fp32", "--format",
                         "json", "-q")  # fmt: skip
    assert (code, err) == (0, "")
    items = {item["name"]: item for item in json.loads(out)["memory"]["items"]}
    assert items["KV cache"]["total_bytes"] == measured


def test_cli_kv_cache_of_token_ids_given_as_input_size(
    capsys: pytest.CaptureFixture[str], saved_llama: Path, tiny_llama: nn.Module
) -> None:
    code, out, err = run(capsys, "memory", str(saved_llama), "--input-size", "2,8", "--input-dtype", "long",
                         "--kv-dtype", "fp32", "--format", "json", "-q")  # fmt: skip
    assert (code, err) == (0, "")
    memory = json.loads(out)["memory"]
    items = {item["name"]: item for item in memory["items"]}
    assert items["KV cache"]["total_bytes"] == nbytes(cache_tensors(prefill(tiny_llama, 2, 8)))
    assert memory["notes"] == []


def test_inputs_that_are_not_token_ids_say_why_there_is_no_kv_cache(tiny_llama: nn.Module) -> None:
    plan = plan_of(tiny_llama, input_size=(2, 8, 32), kv_dtype="fp8")  # embeddings (float32), not ids
    assert "KV cache" not in names(plan)
    assert plan.notes[-1] == (
        "no KV cache item: input_size's first input is not (batch, seq) token ids, so the cache's length is not "
        "known; give a context length instead"
    )
    assert "no KV cache" not in " ".join(plan_of(nn.Linear(4, 4), input_size=(2, 4)).notes)  # no decoder: no cache


def test_a_kv_dtype_without_a_length_is_not_silently_ignored(tiny_llama: nn.Module) -> None:
    plan = plan_of(tiny_llama, kv_dtype="fp8")
    assert "KV cache" not in names(plan)
    assert plan.notes[-1] == (
        "no KV cache item, so kv_dtype fp8 is not used: give a context length (or token ids as input_size) to size one"
    )


def test_keep_fp32_takes_one_pattern_as_a_string(tiny_llama: nn.Module) -> None:
    plan = plan_of(tiny_llama, dtype="bf16", keep_fp32="*norm*")
    assert plan.settings.keep_fp32 == ("*norm*",)
    expected = sum((4 if "norm" in name else 2) * p.numel() for name, p in tiny_llama.named_parameters())
    assert plan.item("weights").total_bytes == expected
    assert plan_of(tiny_llama, dtype="bf16", keep_fp32=["*norm*"]).item("weights").total_bytes == expected


def test_a_keep_fp32_pattern_that_matches_no_parameter_is_refused(
    tiny_llama: nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    # from review: a typo ('*nrom*') was accepted and kept nothing in float32, without a word
    first = next(name for name, _ in tiny_llama.named_parameters())
    assert not any(fnmatch.fnmatchcase(name, "*nrom*") for name, _ in tiny_llama.named_parameters())
    message = f"keep_fp32 (--keep-fp32) '*nrom*' matches no parameter name (parameter names look like {first!r})"
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(tiny_llama, dtype="int4", keep_fp32=["*norm*", "*nrom*"])
    assert str(caught.value) == message
    assert next(name for name, _ in nn.Linear(4, 4).named_parameters()) == "weight"
    assert_error(
        run(capsys, "memory", "torch.nn:Linear", "in_features=4", "out_features=4", "--dtype", "int4",
            "--keep-fp32", "*nrom*"),
        "keep_fp32 (--keep-fp32) '*nrom*' matches no parameter name (parameter names look like 'weight')",
    )  # fmt: skip


ADVICE = re.compile(r"(?P<name>.+) \((?P<size>[^()]+) per device\): try (?P<options>.+)")


def offered(line: str) -> tuple[str, list[str]]:
    """The item an advice line is about, and the options it offers (``a, b or c``; ``(int8, int4)`` is one)."""
    found = ADVICE.fullmatch(line)
    assert found is not None, line
    head, _, last = found["options"].rpartition(" or ")
    return found["name"], [*(re.split(r", (?![^(]*\))", head) if head else []), last]


WEIGHTS = ("weights", "gathered parameters (ZeRO 3)")
"""Both hold the weights on one device under ZeRO 3: its shard, and the blocks gathered whole while they run."""


def device_share(plan: MemoryPlan, name: str) -> int:
    """What the item ``name`` takes of one device: 0 when it moved to the host or is gone (any optimizer's states);
    the weights together with ZeRO 3's gathered parameters."""

    def same(other: str) -> bool:
        if name.startswith("optimizer states"):
            return other.startswith("optimizer states")
        return other in WEIGHTS if name in WEIGHTS else other == name

    return sum(item.per_device_bytes for item in plan.items if same(item.name) and item.where == "device")


def applied(option: str, plan: MemoryPlan, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The arguments of ``memory()`` that the option ``option`` stands for, each a way to take it (every listed
    dtype for ``a smaller --dtype (int8, int4)``, each valid degree for ``--tp N``, 2, 4 or 8 times the GPUs for
    ``more --gpus`` with ZeRO)."""
    settings = plan.settings
    gpus, tp = settings.gpus, settings.tp
    if zero := re.fullmatch(r"--zero (\d)( with more --gpus)?", option):
        return [{"zero": int(zero[1]), "gpus": factor * gpus} for factor in ((2, 4, 8) if zero[2] else (1,))]
    if dtypes := re.fullmatch(r"a smaller --dtype \((.+)\)", option):
        return [{"dtype": name} for name in dtypes[1].split(", ")]
    if option in ("--tp N", f"a --tp larger than {tp}"):  # the GPUs follow --tp unless they are more
        return [{"tp": n, "gpus": n if gpus == tp else gpus} for n in range(tp + 1, 17) if gpus == tp or gpus % n == 0]
    if option == "a smaller --input-size":
        shapes = kwargs["input_size"]
        return [{"input_size": tuple(1 for _ in shapes)}]
    return [{
        "more --gpus": {"gpus": 2 * gpus},
        "--precision bf16-pure": {"precision": "bf16-pure"},
        "--offload-optimizer": {"offload_optimizer": True},
        "--zero 1 --offload-optimizer": {"zero": 1, "offload_optimizer": True},
        "--optimizer adamw-8bit": {"optimizer": "adamw-8bit"},
        "--kv-dtype fp8": {"kv_dtype": "fp8"},
        "--grad-checkpointing": {"grad_checkpointing": True},
        "a smaller --batch": {"batch": 1},
        "a shorter --context": {"seq": 1},
        "a shorter --seq": {"seq": 1},
    }[option]]  # fmt: skip


def big_linear() -> nn.Module:
    return nn.Linear(256, 256)  # 65,536 values: over bitsandbytes' 4,096, so 8-bit Adam keeps them in 8 bits


ADVICE_CASES: list[tuple[str, Callable[[], Any], dict[str, Any], tuple[str, ...]]] = [
    # ZeRO 3 over 8 GPUs: bf16-pure keeps bf16-mixed's 2-byte weights; --tp 2 or 4 leaves 8-way shares of the
    # weights but splits the blocks gathered beside them
    ("gpt2-zero3-offload", lambda: gpt2(**TINY_GPT_KWARGS), {"train": True, "gpus": 8, "zero": 3,
     "offload_optimizer": True}, ("gathered parameters (ZeRO 3) (5.25 KiB per device): try --tp N",
                                 "weights (672 B per device): try --tp N or more --gpus")),
    # one GPU: ZeRO shards nothing without more, and offloads only under it; tensors under 4,096 values keep 32-bit
    # states in 8-bit Adam; ZeRO 3 over 2 GPUs would gather half of Stack's weights beside its half share, over 4 cuts
    ("one-gpu", Stack, {"train": True, "precision": "fp32"},
     ("optimizer states (adamw) (8.53 KiB per device): try --zero 1 with more --gpus or --zero 1 --offload-optimizer",
      "weights (4.25 KiB per device): try --zero 3 with more --gpus, --tp N or --precision bf16-pure")),
    # ZeRO 1 already: offloading needs nothing more, on one GPU too, and more GPUs shard the states
    ("zero-1-one-gpu", Stack, {"train": True, "precision": "fp32", "zero": 1},
     ("optimizer states (adamw) (8.53 KiB per device): try --offload-optimizer or more --gpus",
      "weights (4.25 KiB per device): try --zero 3 with more --gpus, --tp N or --precision bf16-pure")),
    # ZeRO 3 would gather the large block and its neighbour, more than the three quarters of the weights it shards
    ("dominant-block", Dominant, {"train": True, "precision": "fp32", "gpus": 4, "zero": 1},
     ("weights (4.36 KiB per device): try --tp N or --precision bf16-pure",
      "gradients (4.36 KiB per device): try --zero 2")),
    ("eight-gpus", Stack, {"train": True, "precision": "fp32", "gpus": 8, "zero": 1},
     ("weights (4.25 KiB per device): try --zero 3, --tp N or --precision bf16-pure",
      "gradients (4.25 KiB per device): try --zero 2")),
    ("8-bit-adam", big_linear, {"train": True, "gpus": 2},
     ("optimizer states (adamw) (514.01 KiB per device): try --zero 1, --zero 1 --offload-optimizer or --optimizer "
      "adamw-8bit", "fp32 master weights (257.00 KiB per device): try --zero 1 or --zero 1 --offload-optimizer")),
    ("checkpointing", llama, {"train": True, "seq": 64, "batch": 4, "precision": "fp32"},
     ("activations (1.79 MiB per device): try --grad-checkpointing, a smaller --batch or a shorter --seq",
      "optimizer states (adamw) (177.33 KiB per device): try --zero 1 with more --gpus or --zero 1 "
      "--offload-optimizer")),
    # no repeated blocks: checkpointing would leave the activations as they are
    ("no-blocks", mixed, {"train": True, "input_size": (16, 3, 64, 64)},
     ("activations (1.31 MiB per device): try a smaller --input-size",
      "optimizer states (adamw) (2.36 KiB per device): try --zero 1 with more --gpus or --zero 1 --offload-optimizer")),
    # 2 kv heads over TP 2: a larger TP gives each device no fewer of them
    ("kv-heads", lambda: paramscope.inspect(llama()), {"config": llama().config.to_dict(), "seq": 512, "batch": 8,
     "tp": 2}, ("KV cache (512.00 KiB per device): try --kv-dtype fp8, a shorter --context or a smaller --batch",
                "weights (44.31 KiB per device): try a smaller --dtype (int8, int4) or a --tp larger than 2")),
    ("token-ids", llama, {"input_size": (8, 512), "input_dtypes": ["long"]},
     ("activations (68.54 MiB per device): try a smaller --input-size",
      "KV cache (1.00 MiB per device): try --kv-dtype fp8, a smaller --input-size or --tp N")),
    # int8 weights: int8 cuts nothing more, int4 does; the activations are bf16's, which weight-only formats compute in
    ("int8", llama, {"dtype": "int8", "seq": 8, "batch": 2},
     ("weights (22.16 KiB per device): try a smaller --dtype (int4) or --tp N",
      "activations (10.31 KiB per device): try a smaller --batch or a shorter --context")),
]  # fmt: skip


@pytest.mark.parametrize(("model", "kwargs", "expected"), [case[1:] for case in ADVICE_CASES],
                         ids=[case[0] for case in ADVICE_CASES])  # fmt: skip
def test_every_option_the_advice_offers_cuts_its_item(
    model: Callable[[], Any], kwargs: dict[str, Any], expected: tuple[str, ...]
) -> None:
    plan = plan_of(model(), device_memory=1, **kwargs)
    assert plan.advice[1:] == expected
    for line in plan.advice[1:]:
        name, options = offered(line)
        before = device_share(plan, name)
        for option in options:
            shares = []
            for changes in applied(option, plan, kwargs):
                try:
                    shares.append(device_share(plan_of(model(), **{**kwargs, **changes}), name))
                except paramscope.UsageError:
                    if "tp" not in changes:  # a degree that does not divide the heads; any other must be valid
                        raise
            cut = all if option.startswith("a smaller --dtype") else any
            assert shares, (line, option)
            assert cut(share < before for share in shares), (line, option, before, shares)


def test_zero_3_is_advised_for_the_weights_only_when_its_shard_and_the_gathered_blocks_take_less() -> None:
    model = Dominant()
    sizes = [sum(p.numel() for p in block.parameters()) for block in model.blocks]
    assert sizes == [32 * 32 + 32, 20, 20, 20]
    psi = sum(sizes)  # nothing outside the blocks
    largest_pair = max(a + b for a, b in itertools.pairwise(sizes))
    before = plan_of(model, train=True, precision="fp32", gpus=4, zero=1, device_memory=1)
    assert before.item("weights").per_device_bytes == 4 * psi == 4_464  # ZeRO 1 leaves the weights whole
    # ZeRO 3 over 4: a quarter of the weights each, and the large block gathered with its neighbour
    after = plan_of(model, train=True, precision="fp32", gpus=4, zero=3)
    assert (after.item("weights").per_device_bytes, after.item("gathered parameters (ZeRO 3)").per_device_bytes) == (
        4 * psi // 4, 4 * largest_pair)  # fmt: skip
    assert 4 * psi // 4 + 4 * largest_pair == 5_420 > 4_464
    assert before.advice[1] == "weights (4.36 KiB per device): try --tp N or --precision bf16-pure"
    # from one GPU, ZeRO 3 over 2, 4 or 8 leaves at least 4,464 / 8 + 4,304 = 4,862 B for the weights
    one = plan_of(model, train=True, precision="fp32", device_memory=1)
    assert -(-4 * psi // 8) + 4 * largest_pair == 4_862 > one.item("weights").per_device_bytes == 4_464
    assert one.advice[2] == "weights (4.36 KiB per device): try --tp N or --precision bf16-pure"
    # Stack's two adjacent blocks are half its weights: ZeRO 3 over 8 cuts them to 1/8 + 1/2; from one GPU it takes
    # 4 (over 2, 1/2 + 1/2 is all of them)
    stack = plan_of(Stack(), train=True, precision="fp32", gpus=8, zero=1, device_memory=1)
    assert stack.advice[1] == "weights (4.25 KiB per device): try --zero 3, --tp N or --precision bf16-pure"
    weights = 4 * sum(p.numel() for p in Stack().parameters())
    for gpus, share in ((2, weights // 2 + weights // 2), (4, weights // 4 + weights // 2)):
        plan = plan_of(Stack(), train=True, precision="fp32", gpus=gpus, zero=3)
        assert device_share(plan, "weights") == share, gpus
    assert (weights // 2 + weights // 2, weights // 4 + weights // 2) == (weights, 3_264) < (4_352, 4_352)


def test_advice_and_the_exit_line_in_si_units(capsys: pytest.CaptureFixture[str], linear_file: str) -> None:
    # 4 MiB = 4,194,304 B = 4.19 MB
    with torch.device("meta"):
        model = nn.Linear(1024, 1024, bias=False)
    assert plan_of(model, device_memory="3MB", units="si").advice == (
        "4.19 MB per device is 1.19 MB over the 3.00 MB available",
        "weights (4.19 MB per device): try a smaller --dtype (int8, int4) or --tp N",
    )
    code, out, err = run(capsys, "memory", linear_file, "--device-memory", "3MB", "--units", "si", "-q")
    assert (code, err) == (3, "paramscope: budget exceeded: 4.19 MB per device is 1.19 MB over the 3.00 MB available; "
                           "weights (4.19 MB per device): try a smaller --dtype (int8, int4) or --tp N\n")  # fmt: skip
    assert "does not fit in 3.00 MB" in out
    assert "weights (4.19 MB per device): try a smaller --dtype (int8, int4) or --tp N" in out
    assert "MiB" not in out


def test_checkpointed_activations_formula_in_si_units(tiny_llama: nn.Module) -> None:
    formula = plan_of(tiny_llama, train=True, seq=8, grad_checkpointing=True, units="si").item("activations").formula
    assert re.fullmatch(r"[\d.]+ kB saved - [\d.]+ kB inside 2 checkpointed blocks \+ their inputs [\d.]+ (k)?B \+ one "
                        r"block recomputed [\d.]+ kB", formula), formula  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": "8"}, "batch must be an integer, not str '8'"),
        ({"batch": True}, "batch must be an integer, not bool True"),
        ({"seq": 1.5}, "seq must be an integer, not float 1.5"),
        ({"gpus": 2.0}, "gpus must be an integer, not float 2.0"),
        ({"tp": 2.0}, "tp must be an integer, not float 2.0"),
        ({"tp": None}, "tp must be an integer, not None"),
        ({"zero": "3", "train": True}, "zero must be an integer, not str '3'"),
        ({"dtype": 5}, "dtype must be a string, not int 5"),
        ({"kv_dtype": b"fp8", "seq": 4}, "kv_dtype must be a string, not bytes b'fp8'"),
        ({"optimizer": None, "train": True}, "optimizer must be a string, not None"),
        ({"precision": 16, "train": True}, "precision must be a string, not int 16"),
        ({"train": "no"}, "train must be True or False, not str 'no'"),
        ({"grad_checkpointing": 1, "train": True}, "grad_checkpointing must be True or False, not int 1"),
        ({"offload_optimizer": "yes", "train": True}, "offload_optimizer must be True or False, not str 'yes'"),
        ({"device_memory": 1.5e9}, "device_memory must be a number of bytes or a size such as '80GiB', not float "
         "1500000000.0"),
        ({"keep_fp32": 5}, "keep_fp32 must be a pattern such as '*norm*' or a list of patterns, not int 5"),
        ({"keep_fp32": ["*norm*", None]}, "keep_fp32 must be a pattern such as '*norm*' or a list of patterns, not "
         "list ['*norm*', None]"),
        ({"config": [1, 2], "seq": 4}, "config must be a mapping (a config's fields), not list [1, 2]"),
        ({"input_size": 8}, "input_size 8 is not a shape or a list of shapes"),
        ({"units": "metric"}, "units must be 'iec' or 'si', not str 'metric'"),
        ({"arguments": ["n_layer=2"]}, "arguments must be a mapping of the model's arguments, not list"),
        ({"model_class": 5}, "model_class must be a class name (a string), not int"),
        ({"quiet": "no"}, "quiet must be True or False, not str 'no'"),
    ],
)  # fmt: skip
def test_arguments_of_the_wrong_type_are_one_line_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(GPT2, **kwargs)
    assert str(caught.value) == message


def test_integers_of_other_types_are_taken_as_ints() -> None:
    numpy = pytest.importorskip("numpy")
    plan = plan_of(GPT2, TINY_GPT_KWARGS, batch=numpy.int64(2), tp=numpy.int32(1))
    assert (plan.settings.batch, plan.settings.tp) == (2, 1)
    assert type(plan.settings.batch) is int
    assert type(plan.item("weights").per_device_bytes) is int


def test_a_layer_count_beyond_any_model_is_refused_at_once() -> None:
    config = {"hidden_size": 64, "num_hidden_layers": 10**12, "num_attention_heads": 4}
    with pytest.raises(paramscope.UsageError) as caught:
        kv_cache(config, 1, 8, "bf16")  # a list per layer would take terabytes
    message = "num_hidden_layers 1,000,000,000,000 is more layers than any model has (at most 100,000)"
    assert str(caught.value) == message
    largest = kv_cache({**config, "num_hidden_layers": 100_000}, 1, 8, "bf16")
    assert largest is not None
    assert largest[0] == 2 * 100_000 * 4 * 16 * 8 * 2
    report = paramscope.inspect(nn.Linear(4, 4))
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.memory(report, config={"text_config": {"n_embd": 64, "n_layer": 10**12, "n_head": 4}}, seq=8)
    assert str(caught.value) == "n_layer 1,000,000,000,000 is more layers than any model has (at most 100,000)"


def test_a_checkpoint_whose_config_has_more_layers_than_any_model(
    capsys: pytest.CaptureFixture[str], lone_checkpoint: Path
) -> None:
    config = lone_checkpoint.parent / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                  "num_hidden_layers": 10**12, "num_attention_heads": 4}))  # fmt: skip
    message = f"{config}: num_hidden_layers 1,000,000,000,000 is more layers than any model has (at most 100,000)"
    with pytest.raises(paramscope.SourceError) as caught:
        paramscope.memory(str(lone_checkpoint), seq=8)
    assert str(caught.value) == message
    assert_error(run(capsys, "memory", str(lone_checkpoint.parent), "--context", "8", "-q"), message)
    assert plan_of(str(lone_checkpoint)).item("weights").total_bytes == 4 * 20  # not used without a length


@pytest.mark.parametrize("train", [False, True])
def test_a_context_past_the_declared_positions_is_noted(train: bool) -> None:
    # from review: GPT-2's learned positions end at n_positions, and a longer context was planned without a word
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=16, n_embd=32, n_layer=2, n_head=4))
    with pytest.raises(IndexError), torch.no_grad():  # what the note says: it cannot run past them
        model(torch.zeros(1, 17, dtype=torch.long))
    flag = "--seq" if train else "--context"
    past = plan_of(model, seq=17, train=train)
    assert (
        f"{flag} 17 is more than the 16 positions the config declares (n_positions): a model with learned positions "
        "(GPT-2's) cannot run past them, and one with rotary positions was not trained to"
    ) in past.notes
    assert not any("positions the config declares" in note for note in plan_of(model, seq=16, train=train).notes)


def test_a_drafting_assistant_that_reads_its_targets_cache_gets_no_kv_cache_item(tmp_path: Path) -> None:
    # from review: a 0 B "derived" item of formula "2 × () × 1,024 tokens × 2 × 4 B": every layer of Gemma 4's
    # unified assistant shares the target model's keys and values (num_kv_shared_layers: all of them)
    text = {
        "model_type": "gemma4_unified_text",
        "vocab_size": 100,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "global_head_dim": 32,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
    }
    config = transformers.AutoConfig.for_model("gemma4_unified_assistant", text_config=text, backbone_hidden_size=64,
                                               num_centroids=16, centroid_intermediate_top_k=4)  # fmt: skip
    shared = config.get_text_config()
    assert shared.num_kv_shared_layers == shared.num_hidden_layers == 4
    config.architectures = ["Gemma4UnifiedAssistantForCausalLM"]
    config.save_pretrained(tmp_path)
    plan = plan_of(str(tmp_path), seq=1024, batch=2)
    assert "KV cache" not in names(plan)
    assert [note for note in plan.notes if note.startswith("no KV cache item")] == [
        "no KV cache item: none of its 4 layers keeps a cache of its own (no attention, or another layer's or "
        "model's: a drafting assistant reads its target model's)"
    ]


def tiny_whisper(*, d_model: int, decoder_layers: int, max_target_positions: int) -> Any:
    """A Whisper config whose encoder outputs 10 positions (of 20 mel frames of 8 bins)."""
    return transformers.WhisperConfig(
        vocab_size=64, d_model=d_model, encoder_layers=1, decoder_layers=decoder_layers, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_target_positions=max_target_positions,
        max_source_positions=10, num_mel_bins=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1,
    )  # fmt: skip


def _cross_attention_bytes(cache: Any) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.cross_attention_cache.layers
               for t in (layer.keys, layer.values))  # fmt: skip


def test_whispers_cross_attention_note_gives_its_encoders_positions(tmp_path: Path) -> None:
    # from review: "per token of the encoder's input" read 2× too high for Whisper, whose encoder halves its input
    # frames; its output has max_source_positions positions
    config = tiny_whisper(d_model=64, decoder_layers=3, max_target_positions=64)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # 2 × max_source_positions mel frames, as Whisper takes them
        output = model(input_features=torch.zeros(2, 8, 20), decoder_input_ids=torch.zeros(2, 4, dtype=torch.long))
    truth = _cross_attention_bytes(output.past_key_values)
    config.save_pretrained(tmp_path)
    note = next(note for note in plan_of(str(tmp_path), seq=16, batch=2, dtype="float32").notes if "cross" in note)
    assert note.endswith(
        f"= {truth // 10:,} B per position of the encoder's output (its encoder outputs up to 10 positions, "
        f"max_source_positions: {truth:,} B)"
    )


def test_a_decoder_built_with_cross_attention_is_noted_to_keep_its_cache(tmp_path: Path) -> None:
    # from review: GPT-2 with add_cross_attention (a VisionEncoderDecoder's decoder, planned alone) makes an
    # EncoderDecoderCache, whose cross-attention part went unsaid
    config = transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                     add_cross_attention=True, architectures=["GPT2LMHeadModel"])  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        output = model(input_ids=torch.zeros(2, 16, dtype=torch.long), encoder_hidden_states=torch.randn(2, 10, 64),
                       use_cache=True)  # fmt: skip
    truth = _cross_attention_bytes(output.past_key_values)
    config.save_pretrained(tmp_path)
    notes = [note for note in plan_of(str(tmp_path), seq=16, batch=2).notes if "cross-attention" in note]
    assert len(notes) == 1
    assert notes[0].startswith("the KV cache item is the decoder's self-attention cache; generating, a decoder with "
                               "cross-attention also keeps")  # fmt: skip
    assert notes[0].endswith(f"= {truth // 10:,} B per position of the encoder's output")


def test_kv_cache_of_musicgen_whose_decoder_is_a_sub_config_of_its_own(tmp_path: Path) -> None:
    # from review: MusicGen's decoder config is under "decoder" beside a "text_encoder" (Canary's and Dia's under
    # "decoder_config"): no KV cache item, with a note that the config did not give the decoder's layers and heads
    text = transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    audio = transformers.EncodecConfig(codebook_size=64, hidden_size=32, num_filters=4, upsampling_ratios=[2, 2],
                                       codebook_dim=32, num_lstm_layers=1, audio_channels=1, sampling_rate=8000,
                                       target_bandwidths=[1.5])  # fmt: skip
    decoder = transformers.MusicgenDecoderConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2,
                                                 num_attention_heads=4, ffn_dim=128, num_codebooks=4,
                                                 max_position_embeddings=64)  # fmt: skip
    config = transformers.MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(),
                                         decoder=decoder.to_dict())  # fmt: skip
    config.architectures = ["MusicgenForConditionalGeneration"]
    model = transformers.MusicgenForConditionalGeneration(config).eval()
    batch, tokens, text_tokens = 2, 16, 10
    with torch.no_grad():  # a row of decoder ids for each codebook of each sequence
        cache = model(input_ids=torch.randint(3, 99, (batch, text_tokens)), use_cache=True,
                      decoder_input_ids=torch.randint(0, 64, (batch * 4, tokens))).past_key_values  # fmt: skip
    own = sum(t.numel() * t.element_size() for layer in cache.self_attention_cache.layers
              for t in (layer.keys, layer.values))  # fmt: skip
    config.save_pretrained(tmp_path)
    plan = plan_of(str(tmp_path), seq=tokens, batch=batch, dtype="float32")
    assert plan.item("KV cache").total_bytes == own == 32_768
    note = next(note for note in plan.notes if "cross-attention" in note)
    assert note.endswith(f"= {_cross_attention_bytes(cache) // text_tokens:,} B per position of the encoder's output")


def test_a_context_past_whispers_decoder_positions_is_noted(tmp_path: Path) -> None:
    # from review: Whisper's decoder ends at max_target_positions (it has no max_position_embeddings), and a longer
    # context was planned without a word; its encoder's max_source_positions are another thing
    config = tiny_whisper(d_model=32, decoder_layers=1, max_target_positions=16)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    features = torch.zeros(1, 8, 2 * 10)
    with pytest.raises(IndexError), torch.no_grad():  # what the note says: it cannot run past them
        model(input_features=features, decoder_input_ids=torch.zeros(1, 17, dtype=torch.long))
    config.save_pretrained(tmp_path)
    past = plan_of(str(tmp_path), seq=17)
    assert any(note.startswith("--context 17 is more than the 16 positions the config declares (max_target_positions)")
               for note in past.notes), past.notes  # fmt: skip
    assert not any("positions the config declares" in note for note in plan_of(str(tmp_path), seq=16).notes)


def test_input_dtypes_without_input_size_are_refused(tiny_llama: nn.Module) -> None:
    # from review: --input-dtype beside --context was dropped in silence
    message = (
        "input_dtypes (--input-dtype) go with input_size (--input-size); with a context or sequence length the inputs "
        "are token ids"
    )
    with pytest.raises(paramscope.UsageError, match=re.escape(message)):
        paramscope.memory(tiny_llama, seq=8, input_dtypes=["long"])
    plan = plan_of(tiny_llama, input_size=(2, 8), input_dtypes=["long"])
    assert plan.item("KV cache").total_bytes == plan_of(tiny_llama, seq=8, batch=2).item("KV cache").total_bytes


@pytest.mark.parametrize("dtype", ["fp8", "fp4", "float4_e2m1fn_x2", "int4"])
def test_formats_that_need_scales_say_they_are_not_included(tiny_llama: nn.Module, dtype: str) -> None:
    # from review: fp4 weights were sized without the note fp8 and the integer formats carry
    values = sum(param.numel() for param in tiny_llama.parameters())
    weights = plan_of(tiny_llama, dtype=dtype).item("weights")
    bits = 8 if dtype == "fp8" else 4
    assert weights.total_bytes == values * bits // 8
    assert weights.formula.endswith("scales not included")


def test_keep_fp32_without_a_dtype_says_the_weights_are_as_stored(tiny_llama: nn.Module) -> None:
    # from review: the pattern was applied in the formats table and not to the weights item, without a word
    half = copy.deepcopy(tiny_llama).to(torch.bfloat16)
    plan = plan_of(half, keep_fp32=["*norm*"])
    assert plan.item("weights").total_bytes == 2 * sum(param.numel() for param in half.parameters())
    note = ("keep_fp32 applies where weights are converted (--dtype, and the table of formats): without --dtype the "
            "weights item is as stored")  # fmt: skip
    assert note in plan.notes
    assert note not in plan_of(half, keep_fp32=["*norm*"], dtype="bf16").notes


class TwoStacks(nn.Module):
    """An encoder-decoder's shape: two lists of repeated blocks, each block run through torch's checkpoint when
    ``checkpointed``, as transformers' gradient_checkpointing_enable runs both an encoder's and a decoder's layers."""

    def __init__(self, checkpointed: bool = False) -> None:
        super().__init__()
        self.checkpointed = checkpointed
        self.embed = nn.Linear(8, 16)
        self.encoder = nn.ModuleList(nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16)) for _ in range(3))
        self.decoder = nn.ModuleList(nn.Sequential(nn.Linear(16, 48), nn.Tanh(), nn.Linear(48, 16)) for _ in range(2))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(x)
        for block in [*self.encoder, *self.decoder]:
            if self.checkpointed:
                hidden = torch.utils.checkpoint.checkpoint(block, hidden, use_reentrant=False)
            else:
                hidden = block(hidden)
        return self.head(hidden)


def largest_block_saves(blocks: Iterable[nn.Module], hidden: torch.Tensor) -> int:
    """What the block that saves most saves, each measured alone on the input it gets (``hidden``, the first's): what
    lives again while backward recomputes it."""
    recomputed = 0
    for block in blocks:
        recomputed = max(recomputed, saved_bytes(block, hidden))
        hidden = block(hidden)
    return recomputed


def saved_when_checkpointed(model: nn.Module, blocks: Iterable[nn.Module], x: torch.Tensor) -> int:
    """torch's figure for ``model`` with its ``checkpointed`` switch on: what the checkpointed forward saves (the
    blocks' inputs, and what runs outside them), and one block's saved tensors again while backward recomputes it."""
    checkpointed = copy.deepcopy(model)
    checkpointed.checkpointed = True
    return saved_bytes(checkpointed, x) + largest_block_saves(blocks, model.embed(x))


def test_checkpointing_checkpoints_every_stack_of_blocks() -> None:
    torch.manual_seed(0)
    model = TwoStacks()
    x = torch.randn(4, 8)
    truth = saved_when_checkpointed(model, [*model.encoder, *model.decoder], x)
    item = plan_of(model, train=True, input_size=(4, 8), precision="fp32", grad_checkpointing=True).item("activations")
    assert item.total_bytes == truth
    assert "inside 5 checkpointed blocks" in item.formula


class WithHeads(nn.Module):
    """Repeated layers, then a list of heads that each read the last hidden state (Medusa's, MusicGen's lm_heads)."""

    def __init__(self, checkpointed: bool = False) -> None:
        super().__init__()
        self.checkpointed = checkpointed
        self.embed = nn.Linear(8, 16)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16)) for _ in range(3))
        self.heads = nn.ModuleList(nn.Linear(16, 32) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(x)
        for layer in self.layers:
            hidden = torch.utils.checkpoint.checkpoint(layer, hidden, use_reentrant=False) if self.checkpointed else (
                layer(hidden))  # fmt: skip
        return torch.stack([head(hidden) for head in self.heads]).sum()


def test_checkpointing_leaves_a_list_of_heads_alone() -> None:
    torch.manual_seed(0)
    model = WithHeads()
    x = torch.randn(4, 8)
    # torch, with the layers checkpointed as transformers checkpoints them: the heads' shared input is kept once
    item = plan_of(model, train=True, input_size=(4, 8), precision="fp32", grad_checkpointing=True).item("activations")
    assert item.total_bytes == saved_when_checkpointed(model, model.layers, x)
    assert "inside 3 checkpointed blocks" in item.formula


class ReentrantStacks(TwoStacks):
    """:class:`TwoStacks` whose blocks run through torch's reentrant checkpoint, imported by name as models do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        hidden = self.embed(x)
        for block in [*self.encoder, *self.decoder]:
            hidden = checkpoint(block, hidden, use_reentrant=True)
        return self.head(hidden)


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_plan_from_the_summary_of_a_forward_calling_checkpoint_is_not_an_undercount(reentrant: bool) -> None:
    # the summary's activations are what the checkpointed forward keeps (torch's own figure, measured alike); the
    # regions recomputed in backward are not in them, so a plan made from the summary has no activations item
    torch.manual_seed(0)
    model = ReentrantStacks() if reentrant else TwoStacks(checkpointed=True)
    x = torch.randn(4, 8)
    summary = paramscope.summary(model, input_data=x, mode="train")
    assert summary.totals.activations_bytes == saved_bytes(model, x)
    assert ("the train-mode forward ran torch.utils.checkpoint 5 time(s): the activations count what it keeps (the "
            "regions' inputs), not the regions' saved tensors, which live again while backward recomputes them") in (
        summary.notes)  # fmt: skip
    plan = paramscope.memory(summary, train=True, precision="fp32").memory
    assert plan is not None
    assert [item.name for item in plan.items if item.name == "activations"] == []
    assert ("no activations item: the summary's forward ran torch.utils.checkpoint, and a summary does not record the "
            "regions it recomputes in backward; pass the model to estimate it") in plan.notes  # fmt: skip
    assert saved_bytes(model, x) == paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes


@pytest.mark.parametrize("grad_checkpointing", [False, True])
@pytest.mark.parametrize("reentrant", [False, True])
def test_a_forward_calling_checkpoint_is_estimated_as_checkpointed(reentrant: bool, grad_checkpointing: bool) -> None:
    torch.manual_seed(0)
    model = ReentrantStacks() if reentrant else TwoStacks(checkpointed=True)
    x = torch.randn(4, 8)
    # torch: what the model's checkpointed forward saves, and one block's saved tensors again while backward
    # recomputes it
    recomputed = largest_block_saves([*model.encoder, *model.decoder], model.embed(x))
    truth = saved_bytes(model, x) + recomputed
    plan = plan_of(model, train=True, input_size=(4, 8), precision="fp32", grad_checkpointing=grad_checkpointing)
    item = plan.item("activations")
    assert item.total_bytes == truth
    assert "inside 5 regions the model checkpoints" in item.formula
    assert ("the model's forward calls torch.utils.checkpoint: its activations are estimated as checkpointed (the "
            "regions' inputs kept, one region recomputed in backward)") in plan.notes  # fmt: skip
    assert saved_bytes(model, x) == truth - recomputed  # torch's checkpoint put back: the model checkpoints again


SELECTIVE_PROGRAM = """
import fnmatch
import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts


class SelectiveStacks(nn.Module):
    # TwoStacks' shape, each block run through torch's selective activation checkpointing: the outputs of the
    # matrix products (addmm) are kept until backward, the rest recomputed
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.encoder = nn.ModuleList(nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16)) for _ in range(3))
        self.decoder = nn.ModuleList(nn.Sequential(nn.Linear(16, 48), nn.Tanh(), nn.Linear(48, 16)) for _ in range(2))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        context_fn = functools.partial(create_selective_checkpoint_contexts, [torch.ops.aten.addmm.default])
        hidden = self.embed(x)
        for block in [*self.encoder, *self.decoder]:
            hidden = checkpoint(block, hidden, use_reentrant=False, context_fn=context_fn)
        return self.head(hidden)


def build():
    torch.manual_seed(0)
    return SelectiveStacks()
"""


@pytest.fixture
def selective_file(tmp_path: Path) -> str:
    path = tmp_path / "selective.py"
    path.write_text(SELECTIVE_PROGRAM)
    return f"{path}:build"


def selective_stacks() -> nn.Module:
    namespace: dict[str, Any] = {}
    exec(SELECTIVE_PROGRAM, namespace)
    model: nn.Module = namespace["build"]()
    return model


class _Made(torch.utils._python_dispatch.TorchDispatchMode):
    """Each storage the ops of a forward make, weakly, with its bytes; the outputs of ``kept_ops`` held."""

    def __init__(self, kept_ops: Iterable[Any] = ()) -> None:
        super().__init__()
        self.made: list[tuple[int, Any, int]] = []
        self.kept_ops, self.held = set(kept_ops), []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                weak = torch.multiprocessing.reductions.StorageWeakRef(storage)
                self.made.append((storage.data_ptr(), weak, storage.nbytes()))
                if func in self.kept_ops:
                    self.held.append(tensor)
        return out


def kept_after_forward(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes a train-mode forward on CPU (of a copy of the model) keeps for backward, whoever keeps them: the
    storages its ops made that are still alive once it returns (its output held, which holds the graph), and its
    input, each once; the parameters and the output left out. Unlike saved_tensors_hooks, this sees what selective
    checkpointing keeps in a cache of its own."""
    model, x = copy.deepcopy(model).train(), x.clone()
    made = _Made()
    with torch.enable_grad(), made:
        output = model(x)
    left_out = {tensor.untyped_storage().data_ptr() for tensor in [output, *model.parameters()]}
    alive = {key: size for key, weak, size in made.made if not weak.expired() and key not in left_out}
    alive[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
    output.sum().backward()  # what it kept serves a backward
    return sum(alive.values())


def saved_but_not_by(ops: Iterable[Any], block: nn.Module, x: torch.Tensor) -> int:
    """Bytes ``block`` alone saves for backward on ``x`` (each storage once), but for the outputs of ``ops``: what
    it saves again while backward recomputes it under a selective checkpoint that keeps those outputs."""
    seen: set[int] = set()
    made = _Made(ops)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        seen.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), made:
        output = block(x)
    kept = {tensor.untyped_storage().data_ptr() for tensor in [*made.held, *block.parameters()]}
    sizes = {key: size for key, weak, size in made.made if not weak.expired()}
    sizes[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
    del output
    return sum(sizes[key] for key in seen - kept)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_summary_counts_what_selective_checkpointing_keeps(device: str) -> None:
    model, x = selective_stacks(), torch.randn(4, 8)
    truth = kept_after_forward(model, x)
    assert truth > saved_bytes(model, x)  # the products the policy keeps are out of saved_tensors_hooks' sight
    summary = paramscope.summary(model, input_data=x, mode="train", device=device)
    assert summary.totals.activations_bytes == truth
    assert ("the train-mode forward ran torch.utils.checkpoint 5 time(s): the activations count what it keeps (the "
            "regions' inputs, and in the 5 selective one(s) the outputs of the ops the policy saves, in the modules "
            "that ran them), not the regions' saved tensors, which live again while backward recomputes them") in (
        summary.notes)  # fmt: skip


def test_a_summary_of_a_model_file_counts_what_selective_checkpointing_keeps(
    capsys: pytest.CaptureFixture[str], selective_file: str
) -> None:
    code, out, err = run(capsys, "summary", selective_file, "--input-size", "4,8", "--mode", "train", "--format",
                         "json", "--quiet")  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out)["totals"]["activations_bytes"] == kept_after_forward(selective_stacks(), torch.randn(4, 8))


def test_a_plan_counts_what_selective_checkpointing_keeps(
    capsys: pytest.CaptureFixture[str], selective_file: str
) -> None:
    model, x = selective_stacks(), torch.randn(4, 8)
    # torch: what the forward keeps, and one block's saved tensors again while backward recomputes it, but for the
    # products the policy kept
    recomputed, hidden = 0, model.embed(x)
    for block in [*model.encoder, *model.decoder]:
        recomputed = max(recomputed, saved_but_not_by([torch.ops.aten.addmm.default], block, hidden))
        hidden = block(hidden)
    truth = kept_after_forward(model, x) + recomputed
    item = plan_of(model, train=True, input_size=(4, 8), precision="fp32").item("activations")
    assert item.total_bytes == truth
    assert re.search(r"\+ their inputs [\d.]+ KiB \+ kept by their selective checkpointing [\d.]+ KiB \+ one region "
                     r"recomputed", item.formula)  # fmt: skip
    code, out, err = run(capsys, "memory", selective_file, "--train", "--input-size", "4,8", "--precision", "fp32",
                         "--format", "json", "-q")  # fmt: skip
    assert (code, err) == (0, "")
    items = {item["name"]: item for item in json.loads(out)["memory"]["items"]}
    assert items["activations"]["total_bytes"] == truth


class CrossBlock(nn.Module):
    """A decoder layer's shape: it reads the hidden states and, by keyword, the encoder's states."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.cross, self.down = nn.Linear(16, 64), nn.Linear(24, 64), nn.Linear(64, 16)

    def forward(self, hidden: torch.Tensor, encoder_states: torch.Tensor) -> torch.Tensor:
        return self.down(torch.tanh(self.up(hidden) + self.cross(encoder_states)))


class CrossStack(nn.Module):
    """Blocks that each read the one encoder output beside their hidden states, checkpointed (by torch's reentrant
    checkpoint, as transformers runs them) when ``checkpointed``."""

    def __init__(self, checkpointed: bool = False) -> None:
        super().__init__()
        self.checkpointed = checkpointed
        self.embed, self.encoder = nn.Linear(8, 16), nn.Linear(8, 24)
        self.layers = nn.ModuleList(CrossBlock() for _ in range(3))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, states = self.embed(x), self.encoder(x)
        for layer in self.layers:
            if self.checkpointed:
                hidden = torch.utils.checkpoint.checkpoint(layer, hidden, states, use_reentrant=True)
            else:
                hidden = layer(hidden, encoder_states=states)
        return self.head(hidden)


def test_checkpointed_blocks_keep_every_tensor_input_once() -> None:
    torch.manual_seed(0)
    model = CrossStack()
    x = torch.randn(4, 8)
    checkpointed = copy.deepcopy(model)
    checkpointed.checkpointed = True
    # torch: what the checkpointed forward saves (each block's hidden states, the encoder states once), and the
    # block that saves most, measured alone, again while backward recomputes it
    hidden, states, recomputed = model.embed(x), model.encoder(x), 0
    for layer in model.layers:
        recomputed = max(recomputed, saved_bytes(layer, hidden, states))
        hidden = layer(hidden, states)
    truth = saved_bytes(checkpointed, x) + recomputed
    item = plan_of(model, train=True, input_size=(4, 8), precision="fp32", grad_checkpointing=True).item("activations")
    assert item.total_bytes == truth
    assert "inside 3 checkpointed blocks + their inputs 1.12 KiB" in item.formula  # 3 × 4 × 16 × 4 + 4 × 24 × 4 B


def test_regions_the_model_checkpoints_keep_an_input_they_share_once() -> None:
    torch.manual_seed(0)
    model = CrossStack(checkpointed=True)
    x = torch.randn(4, 8)
    # torch: what the model's checkpointed forward saves (the encoder states once, though each region is given
    # them), and the region that saves most, measured alone, again while backward recomputes it
    hidden, states, recomputed = model.embed(x), model.encoder(x), 0
    for layer in model.layers:
        recomputed = max(recomputed, saved_bytes(layer, hidden, states))
        hidden = layer(hidden, states)
    truth = saved_bytes(model, x) + recomputed
    item = plan_of(model, train=True, input_size=(4, 8), precision="fp32").item("activations")
    assert item.total_bytes == truth
    # 3 × 4 × 16 × 4 + 4 × 24 × 4 B
    assert "inside 3 regions the model checkpoints + their inputs 1.12 KiB" in item.formula


class TanhStacks(TwoStacks):
    """:class:`TwoStacks` whose embedding and blocks end in a tanh, which saves its output: each block's input is
    saved first outside it (by the tanh before it), and the last block's output again outside, by the head."""

    def __init__(self, checkpointed: bool = False) -> None:
        super().__init__(checkpointed)
        self.embed = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
        self.encoder = nn.ModuleList(
            nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16), nn.Tanh()) for _ in range(3)
        )
        self.decoder = nn.ModuleList(
            nn.Sequential(nn.Linear(16, 48), nn.GELU(), nn.Linear(48, 16), nn.Tanh()) for _ in range(2)
        )


@pytest.mark.parametrize("checkpointed", [False, True])
def test_checkpointed_blocks_keep_what_is_saved_outside_them_too(checkpointed: bool) -> None:
    # the head's input, the last block's tanh output, is kept for the head; each block recomputed saves its input
    # again, though the tanh before it saved it first
    torch.manual_seed(0)
    model = TanhStacks(checkpointed)
    x = torch.randn(4, 8)
    truth = saved_when_checkpointed(model, [*model.encoder, *model.decoder], x)
    plan = plan_of(model, train=True, input_size=(4, 8), precision="fp32", grad_checkpointing=not checkpointed)
    assert plan.item("activations").total_bytes == truth
    # the first block's input is saved outside it, by the tanh: the other 4 blocks' inputs, 4 × 4 × 16 × 4 B
    assert "+ their inputs not saved outside them 1.00 KiB + one" in plan.item("activations").formula


class TanhBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Parameter(torch.randn(16, 64)), nn.Parameter(torch.randn(64, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.mm(torch.relu(torch.mm(x, self.w1)), self.w2))


class TanhRegions(nn.Module):
    """Blocks that end in a tanh, each run through torch's checkpoint by the forward (selectively, keeping the matrix
    products, when ``selective``), then a linear head, which saves the last block's tanh output again."""

    def __init__(self, selective: bool) -> None:
        super().__init__()
        self.selective = selective
        self.blocks = nn.ModuleList(TanhBlock() for _ in range(3))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

        policy = functools.partial(create_selective_checkpoint_contexts, [torch.ops.aten.mm.default])
        for block in self.blocks:
            if self.selective:
                x = checkpoint(block, x, use_reentrant=False, context_fn=policy)
            else:
                x = checkpoint(block, x, use_reentrant=False)
        return self.head(x)


@pytest.mark.parametrize("selective", [False, True])
def test_a_region_keeps_its_output_the_head_saves(selective: bool) -> None:
    torch.manual_seed(0)
    model, x = TanhRegions(selective), torch.randn(8, 16)
    # torch: what the forward keeps (the regions' inputs, the products a selective policy keeps, the head's input),
    # and the region that saves most, measured alone (but for the products kept), again while it is recomputed
    recomputed, hidden = 0, x
    for block in model.blocks:
        recomputed = max(recomputed, saved_but_not_by([torch.ops.aten.mm.default] if selective else [], block, hidden))
        hidden = block(hidden)
    kept = kept_after_forward(model, x)
    assert plan_of(model, train=True, input_size=(8, 16), precision="fp32").item("activations").total_bytes == (
        kept + recomputed
    )
    assert paramscope.summary(model, input_data=x, mode="train").totals.activations_bytes == kept


class _OtherEntries:
    """An op's entries in a selective checkpointing cache of another layout: set and got by call index, no len()."""

    def __init__(self) -> None:
        self.entries: dict[int, Any] = {}

    def __setitem__(self, index: int, entry: Any) -> None:
        self.entries[index] = entry

    def get(self, index: int) -> Any:
        return self.entries.get(index)


class _OtherWrapper:
    """A stored output wrapped otherwise than torch's ``_VersionWrapper`` (no ``val``)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def get_val(self, allow_cache_entry_mutation: bool) -> Any:
        return self.wrapped.get_val(allow_cache_entry_mutation)


class _RewrappedEntries(dict):  # type: ignore[type-arg]
    def __setitem__(self, index: Any, entry: Any) -> None:
        wrapped = torch.utils._pytree.tree_map(
            lambda leaf: _OtherWrapper(leaf) if hasattr(leaf, "val") else leaf, entry
        )
        super().__setitem__(index, wrapped)


class _OtherStorage:
    """A cache that is no Mapping: entries made on first use, as a defaultdict makes them."""

    def __init__(self) -> None:
        self.ops: dict[Any, dict[int, Any]] = {}

    def __getitem__(self, key: Any) -> dict[int, Any]:
        return self.ops.setdefault(key, {})

    def get(self, key: Any) -> dict[int, Any] | None:
        return self.ops.get(key)


LAYOUTS = {
    "entries without len": lambda: collections.defaultdict(_OtherEntries),
    "entries without val": lambda: collections.defaultdict(_RewrappedEntries),
    "storage no mapping": _OtherStorage,
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_selective_checkpointing_cache_laid_out_otherwise_counts_as_full_checkpointing(
    monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    import torch.utils.checkpoint as checkpointing

    original = checkpointing.create_selective_checkpoint_contexts

    def laid_out_otherwise(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        forward, recompute = original(*args, **kwargs)
        forward.storage = recompute.storage = LAYOUTS[layout]()  # another torch's cache, still empty
        return forward, recompute

    monkeypatch.setattr(checkpointing, "create_selective_checkpoint_contexts", laid_out_otherwise)
    torch.manual_seed(0)
    model, x = TanhRegions(selective=True), torch.randn(8, 16)
    model(x.requires_grad_()).sum().backward()  # torch runs with that cache
    full = TanhRegions(selective=False)
    full.load_state_dict(model.state_dict())
    # torch: what full checkpointing keeps, and the region that saves most again while it is recomputed
    recomputed, hidden = 0, x.detach()
    for block in full.blocks:
        recomputed = max(recomputed, saved_but_not_by([], block, hidden))
        hidden = block(hidden)
    kept = kept_after_forward(full, x.detach())
    unread = ("the tensors the selective activation checkpointing of 3 region(s) keeps could not be read (torch's "
              "private cache of them is laid out otherwise than paramscope knows), so the activations count those "
              "regions as fully checkpointed, their inputs alone kept (a lower bound)")  # fmt: skip
    for mode in ("eval", "train"):
        summary = paramscope.summary(model, input_data=x.detach(), mode=mode)
        assert summary.totals.activations_bytes == kept
        assert ("the train-mode forward ran torch.utils.checkpoint 3 time(s): the activations count what it keeps "
                "(the regions' inputs), not the regions' saved tensors, which live again while backward recomputes "
                "them") in summary.notes  # fmt: skip
        assert unread in summary.notes
    report = paramscope.memory(model, train=True, input_size=(8, 16), precision="fp32")
    assert report.memory is not None
    assert report.memory.item("activations").total_bytes == kept + recomputed
    assert unread in report.memory.notes


def test_a_changed_checkpoint_generator_signature_leaves_its_arguments_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch.utils.checkpoint as checkpointing

    original = checkpointing._checkpoint_without_reentrant_generator

    def generator(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    # another torch's generator, whose signature (as inspect reads it) does not take the arguments checkpoint gives it
    generator.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("fn", inspect.Parameter.POSITIONAL_ONLY)]
    )
    monkeypatch.setattr(checkpointing, "_checkpoint_without_reentrant_generator", generator)
    torch.manual_seed(0)
    model, x = TanhRegions(selective=True), torch.randn(8, 16)
    full = TanhRegions(selective=False)
    full.load_state_dict(model.state_dict())
    # as if no context_fn: what full checkpointing keeps
    assert paramscope.summary(model, input_data=x).totals.activations_bytes == kept_after_forward(full, x)


def test_a_checkpoint_generator_whose_signature_cannot_be_read_runs_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.checkpoint as checkpointing

    original = checkpointing._checkpoint_without_reentrant_generator

    class Generator:  # another torch's private generator, whose signature inspect cannot read
        __signature__ = 1

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs)

    monkeypatch.setattr(checkpointing, "_checkpoint_without_reentrant_generator", Generator())
    with pytest.raises(TypeError):
        inspect.signature(checkpointing._checkpoint_without_reentrant_generator)
    model = TanhRegions(selective=True)
    plan = plan_of(model, train=True, input_size=(8, 16), precision="fp32")
    # the plan stands, the regions run by torch's own checkpoint: what its hooks let the measuring hooks see
    assert plan.item("activations").total_bytes == saved_bytes(model, torch.randn(8, 16))


def test_selective_checkpointing_reads_each_stored_entry_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.checkpoint as checkpointing

    class Entries(dict):  # type: ignore[type-arg]
        read = 0

        def __getitem__(self, index: Any) -> Any:
            Entries.read += 1
            return super().__getitem__(index)

        def values(self) -> Any:
            Entries.read += len(self)
            return super().values()

    original = checkpointing.create_selective_checkpoint_contexts

    def counted(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        forward, recompute = original(*args, **kwargs)
        forward.storage = recompute.storage = collections.defaultdict(Entries)
        return forward, recompute

    monkeypatch.setattr(checkpointing, "create_selective_checkpoint_contexts", counted)

    class Products(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(200):
                x = torch.mm(x, self.w)
            return x

    class Region(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Products()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            context_fn = functools.partial(checkpointing.create_selective_checkpoint_contexts,
                                           [torch.ops.aten.mm.default])  # fmt: skip
            return 2 * checkpointing.checkpoint(self.block, x, use_reentrant=False, context_fn=context_fn)

    summary = paramscope.summary(Region(), input_size=(4, 4), mode="train")
    assert summary.totals.activations_bytes == 4 * 4 * 4 * 201  # the input and the 200 products kept, float32
    assert Entries.read == 200  # each product's entry once, not all of them again after each product


def test_a_failed_train_mode_forward_leaves_no_checkpoint_note() -> None:
    class CheckpointedThenNormed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block, self.norm = nn.Linear(4, 4), nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            from torch.utils.checkpoint import checkpoint

            return self.norm(checkpoint(self.block, x, use_reentrant=False))

    model = CheckpointedThenNormed()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        model.train()(torch.randn(1, 4))  # torch: no train-mode forward on one sample
    summary = paramscope.summary(model.eval(), input_size=(1, 4))
    assert summary.totals.activations_bytes is None
    assert not [note for note in summary.notes if "torch.utils.checkpoint" in note]  # no forward measured ran it


class ScaledTanh(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.tanh(2 * x))  # saves the tanh output alone, not its input


class CostlyRegions(nn.Module):
    """Regions that save less than they are given (one tensor as big as their input, not the input): checkpointing
    them keeps more than running them plainly, and the model checkpoints them all the same."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ScaledTanh() for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        return x.sum()


def test_regions_the_model_checkpoints_count_as_checkpointed_even_when_that_costs_more() -> None:
    torch.manual_seed(0)
    model, x = CostlyRegions(), torch.randn(4, 16)
    recomputed = largest_block_saves(model.blocks, x)
    truth = saved_bytes(model, x) + recomputed  # torch: the 6 regions' inputs, and one region's tanh output again
    assert plan_of(model, train=True, input_size=(4, 16), precision="fp32").item("activations").total_bytes == truth


class SharedActBlock(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.up, self.down, self.act = nn.Linear(16, 64), nn.Linear(64, 16), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class SharedAct(nn.Module):
    """Regions the forward checkpoints that each run the model's one activation module (a tanh), which the head's
    input runs through too, outside them."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.Tanh()
        self.blocks = nn.ModuleList(SharedActBlock(self.act) for _ in range(3))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        return self.head(self.act(x))


def test_a_module_a_region_shares_with_the_rest_of_the_forward_is_not_one_of_its_own() -> None:
    torch.manual_seed(0)
    model, x = SharedAct(), torch.randn(8, 16)
    recomputed = largest_block_saves(model.blocks, x)
    truth = saved_bytes(model, x) + recomputed  # torch: one region's tanh output again, not the three's and the head's
    item = plan_of(model, train=True, input_size=(8, 16), precision="fp32").item("activations")
    assert item.total_bytes == truth
    # its input and its tanh output: 8 × 16 × 4 + 8 × 64 × 4 B
    assert item.formula.endswith("one region recomputed 2.50 KiB")


class OneLayerLooped(nn.Module):
    """One layer the forward runs three times, each through torch's checkpoint (weights shared across depth, as
    ALBERT's, or a recurrent-depth model's core block)."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.reentrant = reentrant
        self.embed = nn.Linear(16, 16)  # the reentrant checkpoint needs an input that requires grad
        self.layer = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 16))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for _ in range(3):
            x = torch.utils.checkpoint.checkpoint(self.layer, x, use_reentrant=self.reentrant)
        return self.head(x)


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_layer_checkpointed_in_several_regions_recomputes_one_call(reentrant: bool) -> None:
    torch.manual_seed(0)
    model, x = OneLayerLooped(reentrant), torch.randn(8, 16)
    recomputed, hidden = 0, model.embed(x)
    for _ in range(3):
        recomputed = max(recomputed, saved_bytes(model.layer, hidden))
        hidden = model.layer(hidden)
    truth = saved_bytes(model, x) + recomputed  # torch: the regions' inputs and the head's, one call's saves again
    item = plan_of(model, train=True, input_size=(8, 16), precision="fp32").item("activations")
    assert item.total_bytes == truth
    # its input and its tanh output: 8 × 16 × 4 + 8 × 64 × 4 B
    assert item.formula.endswith("one region recomputed 2.50 KiB")


@pytest.mark.parametrize(
    "config",
    [
        transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64),
        transformers.OPTConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               ffn_dim=64, word_embed_proj_dim=32),
    ],
    ids=["gpt-neox", "opt"],
)  # fmt: skip
def test_kv_cache_of_a_decoder_config_saved_without_architectures(tmp_path: Path, config: Any) -> None:
    # a config class's save_pretrained writes no architectures: GPT-NeoX's and OPT's were taken for an encoder
    # (no KV cache item) for want of num_key_value_heads or n_layer
    config.save_pretrained(tmp_path)
    assert not json.loads((tmp_path / "config.json").read_text()).get("architectures")
    batch, tokens = 2, 6
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    held = cache_tensors(prefill(model, batch, tokens))  # the ground truth: transformers' own cache
    plan = paramscope.memory(str(tmp_path), seq=tokens, batch=batch, dtype="float32").memory
    assert plan is not None
    assert plan.item("KV cache").total_bytes == storage_bytes(held) == 2 * 2 * batch * 4 * tokens * 8 * 4


class _Link(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)


def deep_chain(depth: int) -> nn.Module:
    """``depth`` links each holding the next: a module tree deeper than Python's recursion limit, which
    ``named_modules()`` recurses through."""
    root = link = _Link()
    for _ in range(depth - 1):
        link.next = _Link()
        link = link.next
    return root


@pytest.mark.parametrize("train", [False, True])
def test_a_module_tree_deeper_than_the_recursion_limit(train: bool) -> None:
    depth = 3000
    model = deep_chain(depth)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # for the ground truth alone: torch's parameters() recurses per level
    try:
        params = sum(p.numel() for p in model.parameters())
    finally:
        sys.setrecursionlimit(limit)
    if train:
        plan = plan_of(model, train=True, precision="fp32", optimizer="sgd-momentum")
        expected = ["weights", "gradients", "optimizer states (sgd-momentum)"]
    else:
        plan, expected = plan_of(model), ["weights"]
    assert [(item.name, item.total_bytes) for item in plan.items] == [(name, 4 * params) for name in expected]


class WithIntegerParameters(nn.Module):
    """A float layer beside integer and boolean parameters (frozen: torch gives them no gradients)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.codes = nn.Parameter(torch.arange(12, dtype=torch.int64), requires_grad=False)
        self.mask = nn.Parameter(torch.ones(7, dtype=torch.bool), requires_grad=False)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8_e4m3fn", "int8", "int4", "nf4"])
def test_conversion_leaves_integer_and_boolean_parameters_in_their_dtypes(dtype: str) -> None:
    model = WithIntegerParameters()
    floats = [p for p in model.parameters() if p.is_floating_point()]
    bits = paramscope.dtypes.lookup(dtype).bits
    expected = math.ceil(sum(p.numel() for p in floats) * bits / 8) + model.codes.nbytes + model.mask.nbytes
    if dtype in ("bfloat16", "float16"):  # what Module.to(dtype) holds
        assert expected == sum(p.nbytes for p in copy.deepcopy(model).to(getattr(torch, dtype)).parameters())
    item = plan_of(model, dtype=dtype).item("weights")
    assert item.total_bytes == expected
    if dtype != "nf4":  # not a row of the table of formats
        assert {row.format: row.bytes for row in plan_of(model).storage}[dtype] == expected
    scales = ", scales not included" if bits < 16 else ""  # NF4's absmax too (from review)
    assert item.formula == (
        f"{dtype}: 35 values at {bits:g} bits{scales} + 12 left in int64 + 7 left in bool (not floating point: not "
        "converted)"
    )


def tiny_omni_config(model_type: str) -> dict[str, Any]:
    """A small speaking model's config.json: its thinker's text model (which writes the text) and its talker's (which
    writes the audio codes) with kv heads and head sizes of their own."""
    config = transformers.AutoConfig.for_model(model_type).to_dict()
    thinker_text = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "vocab_size": 160_000, "head_dim": 16, "num_experts": 4,
                    "num_experts_per_tok": 2, "moe_intermediate_size": 32}  # fmt: skip
    config["thinker_config"]["text_config"].update(thinker_text)
    talker = config["talker_config"].get("text_config", config["talker_config"])
    for text in (config["thinker_config"]["text_config"], talker):
        text.pop("layer_types", None)  # worked out again for the layers given
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": [2, 3, 3]}  # half of a head's 16
    talker.update({"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
                   "head_dim": 12, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                   "shared_expert_intermediate_size": 32})  # fmt: skip
    config["talker_config"].setdefault("spatial_merge_size", 2)  # Qwen3-Omni's talker reads it; its default lacks it
    return config


@pytest.mark.parametrize("model_type", ["qwen2_5_omni", "qwen3_omni_moe"])
def test_kv_cache_of_a_speaking_model_is_its_thinkers_and_a_note_gives_its_talkers_per_token(
    tmp_path: Path, model_type: str
) -> None:
    if model_type not in transformers.CONFIG_MAPPING:
        pytest.skip(f"transformers {transformers.__version__} has no {model_type}")
    config = tiny_omni_config(model_type)
    prefix = {"qwen2_5_omni": "Qwen2_5Omni", "qwen3_omni_moe": "Qwen3OmniMoe"}[model_type]
    modeling = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    thinker = transformers.CONFIG_MAPPING[model_type](**config).thinker_config.text_config
    text_model = getattr(modeling, f"{prefix}ThinkerTextModel")(thinker).eval()  # the thinker's language model alone
    truth = nbytes(cache_tensors(prefill(text_model, 2, 5)))
    architecture = f"{prefix}ForConditionalGeneration"
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": [architecture]}))
    plan = plan_of(str(tmp_path / "config.json"), batch=2, seq=5)
    assert plan.item("KV cache").total_bytes == truth == 2 * 3 * 2 * 16 * 5 * 2 * 4
    per_token = 2 * 2 * 1 * 12 * 1 * 2 * 4  # the talker's: 2 × layers × kv heads × head_dim × 1 token × batch × 4 B
    predictor = " (and its code predictor another, over each code's groups)" if model_type == "qwen3_omni_moe" else ""
    assert (
        "the KV cache item is the thinker's, which writes the text; speaking, the talker keeps a KV cache of its own "
        f"over the audio codes it writes{predictor}, not included: 2 × 2 layers × 1 kv heads × 12 × 1 tokens × 2 × "
        f"4 B = {per_token} B per code token"
    ) in plan.notes


def test_cli_csv_says_which_items_are_lower_bounds(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # from review: the table shows "≥" on the items made from tensors of unknown size; the CSV's rows read as exact
    path = tmp_path / "lazy_model.py"
    path.write_text("from torch import nn\n\ndef build():\n"
                    "    return nn.Sequential(nn.Linear(4, 8), nn.LazyLinear(3), nn.BatchNorm1d(3))\n")  # fmt: skip
    code, out, _ = run(capsys, "memory", f"{path}:build", "-q", "--format", "csv")
    assert code == 0
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(out))}
    known = sum(p.numel() for layer in (nn.Linear(4, 8), nn.BatchNorm1d(3)) for p in layer.parameters())
    assert int(rows["weights"]["per_device_bytes"]) == 4 * known
    assert rows["weights"]["formula"] == (f"{known} parameters in their dtypes (float32); a lower bound (see the "
                                          "notes)")  # fmt: skip
    assert rows["buffers"]["formula"].endswith("; a lower bound (see the notes)")
    code, table, _ = run(capsys, "memory", f"{path}:build", "-q")
    assert re.search(r"^  weights +exact +≥ 184 B ", table, re.MULTILINE)

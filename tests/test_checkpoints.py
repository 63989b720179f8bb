"""Checkpoints read from their headers: safetensors (single, sharded, a directory), PyTorch files, GGUF.

Every figure is checked against a source other than paramscope: the torch tensors that were saved, the
``safetensors`` package's own reader (``safe_open``), the ``gguf`` package's block sizes, or a published count
(ResNet-18: 11,689,512; Llama-3-70B: 70,553,706,496). Big checkpoints are sparse files, so they cost no disk.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pickle
import random
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from gguf.quants import quant_shape_to_byte_shape
from safetensors import safe_open
from torch import nn

import paramscope
from paramscope import dtypes
from paramscope._units import format_bytes, shortened
from paramscope.examples import gpt2, resnet18
from paramscope.sources.safetensors import stored_tensors

from .checkpoints import (
    LLAMA_3_70B,
    LLAMA_3_70B_PARAMS,
    llama_tensors,
    parameter_count,
    write_safetensors,
    write_sharded,
    write_zip64,
)
from .cli import assert_error, run, run_in_a_new_process
from .formula_text import multiplied_out

RESNET18_PARAMS = 11_689_512  # published (torchvision resnet18)
RESNET18_BUFFERS = 9_620  # BatchNorm running_mean/var (2 × 4,800) + 20 num_batches_tracked
TINY_GPT = {"vocab_size": 100, "n_positions": 16, "n_embd": 8, "n_layer": 2, "n_head": 2}
SUBPROCESS_TIMEOUT = 120
GGML = gguf.GGMLQuantizationType


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def run_json(capsys: pytest.CaptureFixture[str], target: Path | str, *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "inspect", str(target), "--format", "json", "--quiet", *argv)
    assert (code, err) == (0, "")
    return json.loads(out)


def torch_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def module_paths(names: Iterable[str], max_depth: int | None = None) -> set[str]:
    """Every dotted prefix of the tensor names (the modules they imply), the root ``""`` included."""
    paths = {""}
    for name in names:
        parts = name.split(".")[:-1]
        paths |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {p for p in paths if max_depth is None or (0 if p == "" else p.count(".") + 1) <= max_depth}


def assert_tree_adds_up(report: paramscope.Report) -> None:
    """Each node's subtree figures are its own tensors plus its children's; the root's are the totals."""
    nodes = {node.path: node for node in report.modules}
    names = [name for record in report.tensors for name in (record.name, *record.aliases)]
    assert set(nodes) == module_paths(names)
    for path, node in nodes.items():
        children = [
            child for child in report.modules if child.depth == node.depth + 1 and child.path.rpartition(".")[0] == path
        ]
        assert node.params == node.own_params + sum(child.params for child in children), path
        assert node.param_bytes == node.own_param_bytes + sum(child.param_bytes for child in children), path
        owned = [r for r in report.tensors if r.name.rpartition(".")[0] == path and r.kind == "parameter"]
        assert node.own_params == sum(r.numel for r in owned), path
        inside = [r for r in report.tensors if path == "" or r.name.startswith(path + ".")]
        assert node.buffers == sum(r.numel for r in inside if r.kind == "buffer"), path
    root = nodes[""]
    assert (root.params, root.param_bytes) == (report.totals.params, report.totals.param_bytes)
    assert (root.buffers, root.buffer_bytes) == (report.totals.buffers, report.totals.buffer_bytes)


def assert_matches_state_dict(report: paramscope.Report, state: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """Every tensor of ``state`` (saved from ``model``, no ties) as it was saved; parameters and buffers told apart."""
    parameters = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    got = {r.name: (r.shape, r.numel, r.dtype, r.bytes, r.kind, r.trainable, r.aliases) for r in report.tensors}
    assert got == {
        name: (
            tuple(t.shape),
            t.numel(),
            torch_name(t.dtype),
            nbytes(t),
            "parameter" if name in parameters else "buffer",
            None,
            (),
        )
        for name, t in state.items()
    }
    totals = report.totals
    assert totals.params == sum(p.numel() for p in model.parameters())
    assert totals.param_bytes == sum(nbytes(p) for p in model.parameters())
    assert totals.buffers == sum(b.numel() for name, b in buffers.items() if name in state)
    assert totals.params + totals.buffers == sum(t.numel() for t in state.values())
    assert totals.param_bytes + totals.buffer_bytes == sum(nbytes(t) for t in state.values())
    assert (totals.trainable, totals.frozen, totals.quantization) == (None, None, 0)
    by_dtype: dict[str, list[int]] = {}
    for p in model.parameters():
        entry = by_dtype.setdefault(torch_name(p.dtype), [0, 0])
        entry[0] += p.numel()
        entry[1] += nbytes(p)
    assert {name: [e.params, e.bytes] for name, e in report.by_dtype.items()} == by_dtype
    assert_tree_adds_up(report)


class Mixed(nn.Module):
    """float16, bfloat16 and float32 parameters; an int64 buffer and BatchNorm statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.encoder = nn.Sequential(nn.Linear(6, 8).to(torch.float16), nn.LayerNorm(8).to(torch.bfloat16))
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3, bias=False)
        self.register_buffer("position_ids", torch.arange(16, dtype=torch.int64).unsqueeze(0))


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18()


@pytest.fixture(scope="module")
def resnet_file(resnet: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resnet") / "model.safetensors"
    safetensors.torch.save_file(resnet.state_dict(), path, metadata={"format": "pt"})
    return path


def trained_tiny_gpt() -> tuple[nn.Module, torch.optim.Optimizer]:
    """A tied GPT after one real Adam step, so the optimizer holds exp_avg, exp_avg_sq and step tensors."""
    torch.manual_seed(0)
    model = gpt2(**TINY_GPT)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randint(0, TINY_GPT["vocab_size"], (2, 5))).float().pow(2).mean().backward()
    optimizer.step()
    return model, optimizer


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in tensor_leaves(item)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in tensor_leaves(item)]
    return []


# ---------------------------------------------------------------------------------------------------------------------
# 1. a safetensors file saved from a real model


def test_resnet18_safetensors_every_tensor_as_saved(resnet: nn.Module, resnet_file: Path) -> None:
    report = paramscope.inspect(str(resnet_file))
    state = resnet.state_dict()
    assert_matches_state_dict(report, state, resnet)
    with safe_open(str(resnet_file), "pt") as handle:
        stored = {
            name: (tuple(handle.get_slice(name).get_shape()), dtypes.lookup(handle.get_slice(name).get_dtype()).name)
            for name in handle.keys()  # noqa: SIM118 (safe_open is not a mapping)
        }
        loaded = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    assert {r.name: (r.shape, r.dtype) for r in report.tensors} == stored
    assert {r.name: r.bytes for r in report.tensors} == {name: nbytes(t) for name, t in loaded.items()}
    assert (report.source.kind, report.source.target, report.source.files) == (
        "safetensors",
        str(resnet_file),
        (str(resnet_file),),
    )


@pytest.mark.parametrize(
    "given",
    [
        "shards/",
        "./shards",
        "./shards/model.safetensors.index.json",
        "./single.pt",
        "shards//model-00001-of-00002.safetensors",
        "./config-only/config.json",
    ],
)
def test_source_target_is_the_target_as_given(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README: source.target is "the target as given", and the table's title names it so (`Llama-3-70B/`).
    (tmp_path / "shards").mkdir()
    write_sharded(tmp_path / "shards", {"a.weight": ("F32", (4, 4)), "b.weight": ("F32", (4,))}, shards=2)
    torch.save({"a.weight": torch.zeros(4, 4)}, tmp_path / "single.pt")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text(json.dumps({"model_type": "gpt2", **TINY_GPT}))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "inspect", given, "--format", "json")
    assert (code, json.loads(out)["source"]["target"]) == (0, given)
    code, out, _ = run(capsys, "inspect", given)
    assert (code, out.splitlines()[0].rpartition(" (")[0]) == (0, given)
    assert paramscope.inspect(given).source.target == given


def test_resnet18_safetensors_totals_are_the_live_models(resnet: nn.Module, resnet_file: Path) -> None:
    report = paramscope.inspect(str(resnet_file))
    live = paramscope.inspect(resnet)
    assert report.totals.params == RESNET18_PARAMS == live.totals.params
    assert report.totals.buffers == RESNET18_BUFFERS == live.totals.buffers
    assert report.totals.param_bytes == live.totals.param_bytes
    assert report.totals.buffer_bytes == live.totals.buffer_bytes
    assert (report.totals.trainable, report.totals.frozen) == (None, None)
    running = [r for r in report.tensors if r.name.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(running) == 3 * sum(isinstance(m, nn.BatchNorm2d) for m in resnet.modules())
    assert {r.kind for r in running} == {"buffer"}
    # the module rows are the live model's, subtree by subtree (modules without tensors leave no trace on disk)
    rows = {n.path: (n.params, n.param_bytes, n.buffers) for n in report.modules}
    assert rows == {n.path: (n.params, n.param_bytes, n.buffers) for n in live.modules if n.path in rows}
    assert set(rows) == {n.path for n in live.modules if n.params or n.buffers}


def test_mixed_dtypes_and_integer_buffers(tmp_path: Path) -> None:
    model = Mixed()
    state = model.state_dict()
    path = tmp_path / "mixed.safetensors"
    safetensors.torch.save_file(state, path)
    report = paramscope.inspect(str(path))
    assert {torch_name(t.dtype) for t in state.values()} >= {"float16", "bfloat16", "float32", "int64"}
    assert_matches_state_dict(report, state, model)
    assert report.tensor("position_ids").kind == "buffer"
    assert report.tensor("norm.num_batches_tracked").kind == "buffer"


def test_json_output_of_a_checkpoint(capsys: pytest.CaptureFixture[str], resnet: nn.Module, resnet_file: Path) -> None:
    data = run_json(capsys, resnet_file)
    state = resnet.state_dict()
    assert data["source"] == {
        "kind": "safetensors",
        "target": str(resnet_file),
        "device": None,
        "files": [str(resnet_file)],
    }
    totals = data["totals"]
    assert (totals["params"], totals["buffers"]) == (RESNET18_PARAMS, RESNET18_BUFFERS)
    assert totals["trainable"] is None
    assert totals["frozen"] is None
    assert {t["name"]: (t["shape"], t["numel"], t["dtype"], t["bytes"]) for t in data["tensors"]} == {
        name: (list(t.shape), t.numel(), torch_name(t.dtype), nbytes(t)) for name, t in state.items()
    }
    assert all(t["trainable"] is None for t in data["tensors"])
    assert {m["path"] for m in data["modules"]} == module_paths(state)
    assert all(m["trainable"] is None and m["type"] is None for m in data["modules"])


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
def test_depth_limits_the_csv_module_rows(
    capsys: pytest.CaptureFixture[str], resnet: nn.Module, resnet_file: Path, depth: int
) -> None:
    code, out, err = run(capsys, "inspect", str(resnet_file), "--format", "csv", "--depth", str(depth))
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {row["path"] for row in rows} == module_paths(resnet.state_dict(), depth)
    params = {name: p.numel() for name, p in resnet.named_parameters()}
    for row in rows:
        inside = [n for n in params if row["path"] == "" or n.startswith(row["path"] + ".")]
        assert int(row["params"]) == sum(params[n] for n in inside), row["path"]
        assert row["trainable"] == ""


def test_tensors_option_lists_every_stored_tensor(
    capsys: pytest.CaptureFixture[str], resnet: nn.Module, resnet_file: Path
) -> None:
    code, out, err = run(capsys, "inspect", str(resnet_file), "--format", "csv", "--tensors")
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    state = resnet.state_dict()
    assert {row["name"]: (int(row["numel"]), row["dtype"], int(row["bytes"])) for row in rows} == {
        name: (t.numel(), torch_name(t.dtype), nbytes(t)) for name, t in state.items()
    }
    assert len(rows) == len(state)

    code, out, err = run(capsys, "inspect", str(resnet_file), "--format", "markdown", "--tensors", "--depth", "1")
    assert (code, err) == (0, "")
    assert out.startswith(f"## {resnet_file} (safetensors)\n")
    rows_md = {line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")}
    assert set(state) <= rows_md
    assert f"| {RESNET18_PARAMS:,} |" in out

    code, out, err = run(capsys, "inspect", str(resnet_file))
    assert (code, err) == (0, "")
    assert f"{RESNET18_PARAMS:,}" in out
    assert "layer4.1.bn2.running_var" not in out  # no --tensors: module rows only


# ---------------------------------------------------------------------------------------------------------------------
# 2. the header reader agrees with the safetensors package


def _raw_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> None:
    """A file written by hand: name → (dtype code, shape, byte size), data laid out in order."""
    header: dict[str, Any] = {"__metadata__": {"made": "by hand"}}
    offset = 0
    for name, (code, shape, size) in tensors.items():
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(offset))


def _torch_many(path: Path) -> None:
    kinds = [
        torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
        torch.int8, torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.bool, torch.complex64,
        torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.float8_e8m0fnu,
    ]  # fmt: skip
    state = {f"layer.{i}.{torch_name(kind)}": torch.zeros((i + 1, 3), dtype=kind) for i, kind in enumerate(kinds)}
    state["scalar"] = torch.tensor(2.5)
    state["empty.weight"] = torch.zeros((0, 4))
    safetensors.torch.save_file(state, path, metadata={"format": "pt"})


def _numpy_many(path: Path) -> None:
    kinds = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
             np.uint32, np.uint64, np.bool_, np.complex64]  # fmt: skip
    safetensors.numpy.save_file({f"a.{np.dtype(k).name}": np.zeros((2, 5), dtype=k) for k in kinds}, path)


def _by_hand(path: Path) -> None:
    # the sub-byte codes that neither torch nor numpy can write: F4 packs 2 values a byte, F6 4 values in 3 bytes
    _raw_safetensors(
        path,
        {
            "fp4.weight": ("F4", [4, 8], 16),
            "fp6a.weight": ("F6_E2M3", [2, 8], 12),
            "fp6b.weight": ("F6_E3M2", [4], 3),
            "scale": ("F8_E8M0", [4], 4),
            "mask": ("BOOL", [3], 3),
        },
    )


@pytest.mark.parametrize("make", [_torch_many, _numpy_many, _by_hand], ids=["torch", "numpy", "by-hand"])
def test_header_reader_agrees_with_safe_open(tmp_path: Path, make: Callable[[Path], None]) -> None:
    path = tmp_path / "t.safetensors"
    make(path)
    tensors, metadata = stored_tensors(path)
    with safe_open(str(path), "numpy") as handle:
        expected = {
            (name, dtypes.lookup(handle.get_slice(name).get_dtype()).name, tuple(handle.get_slice(name).get_shape()))
            for name in handle.keys()  # noqa: SIM118
        }
        expected_metadata = handle.metadata() or {}
    assert {(t.name, t.dtype, t.shape) for t in tensors} == expected
    assert len(tensors) == len(expected)
    assert metadata == expected_metadata
    # the bytes: each tensor's share of the data region, which together cover it exactly
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    assert sum(t.nbytes for t in tensors) == path.stat().st_size - 8 - header_size


def test_header_reader_bytes_are_the_torch_tensors(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    _torch_many(path)
    with safe_open(str(path), "pt") as handle:
        loaded = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    tensors, _ = stored_tensors(path)
    assert {t.name: (t.dtype, t.shape, t.nbytes) for t in tensors} == {
        name: (torch_name(t.dtype), tuple(t.shape), nbytes(t)) for name, t in loaded.items()
    }


# ---------------------------------------------------------------------------------------------------------------------
# 3. sharded checkpoints and directories


@pytest.fixture(scope="module")
def llama_70b(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, tuple[int, ...]]]]:
    directory = tmp_path_factory.mktemp("llama-3-70b")
    tensors = llama_tensors(**LLAMA_3_70B)
    write_sharded(directory, tensors, 30)
    return directory, tensors


@pytest.mark.parametrize("via", ["directory", "index"])
def test_llama_3_70b_sharded_has_its_published_count(
    capsys: pytest.CaptureFixture[str], llama_70b: tuple[Path, dict[str, Any]], via: str
) -> None:
    directory, tensors = llama_70b
    index = directory / "model.safetensors.index.json"
    data = run_json(capsys, directory if via == "directory" else index)
    totals = data["totals"]
    assert totals["params"] == LLAMA_3_70B_PARAMS == sum(math.prod(shape) for _, shape in tensors.values())
    assert totals["param_bytes"] == 2 * LLAMA_3_70B_PARAMS  # bfloat16
    assert (totals["buffers"], totals["trainable"]) == (0, None)
    assert data["by_dtype"] == {"bfloat16": {"params": LLAMA_3_70B_PARAMS, "bytes": 2 * LLAMA_3_70B_PARAMS}}
    assert {t["name"]: tuple(t["shape"]) for t in data["tensors"]} == {n: s for n, (_, s) in tensors.items()}
    shards = list(dict.fromkeys(json.loads(index.read_text())["weight_map"].values()))
    assert data["source"]["files"] == [str(index), *(str(directory / shard) for shard in shards)]  # the files read
    assert data["source"]["kind"] == "safetensors"
    layers = {m["path"]: m for m in data["modules"]}
    assert len([p for p in layers if p.count(".") == 2 and p.startswith("model.layers.")]) == LLAMA_3_70B["layers"]


def test_thirty_shards_are_all_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tensors = llama_tensors(**LLAMA_3_70B)
    names = list(tensors)
    chunks = [names[i::30] for i in range(30)]  # 30 non-empty shards, every one named by the index
    weight_map = {}
    for number, chunk in enumerate(chunks, start=1):
        shard = f"model-{number:05d}-of-00030.safetensors"
        write_safetensors(tmp_path / shard, {name: tensors[name] for name in chunk})
        weight_map |= dict.fromkeys(chunk, shard)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    data = run_json(capsys, tmp_path)
    assert data["totals"]["params"] == LLAMA_3_70B_PARAMS
    assert data["totals"]["param_bytes"] == 2 * LLAMA_3_70B_PARAMS
    index = str(tmp_path / "model.safetensors.index.json")
    assert data["source"]["files"][0] == index
    assert sorted(data["source"]["files"][1:]) == sorted(str(tmp_path / shard) for shard in set(weight_map.values()))
    assert len(data["source"]["files"]) == 1 + 30


def test_safetensors_directory_with_an_index_names_the_files_it_does_not_read(tmp_path: Path) -> None:
    # as a directory of .bin shards does: a file beside the shards that the index does not name is not counted, and
    # the notes say so (an adapter saved beside the model, a shard of another save)
    tensors = llama_tensors(vocab=100, hidden=16, intermediate=32, layers=2, heads=4, kv_heads=2)
    write_sharded(tmp_path, tensors, 2)
    write_safetensors(tmp_path / "adapter_model.safetensors", {"base_model.lora_A.weight": ("F32", (4, 16))})
    write_safetensors(tmp_path / "model-00003-of-00003.safetensors", {"extra.weight": ("F32", (4, 16))})
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == parameter_count(tensors.values())
    assert (
        "not read: adapter_model.safetensors, model-00003-of-00003.safetensors (not a shard that "
        "model.safetensors.index.json names)"
    ) in report.notes
    # the index itself, or a directory whose files are all shards, has nothing to say
    assert not any(
        note.startswith("not read:")
        for note in paramscope.inspect(str(tmp_path / "model.safetensors.index.json")).notes
    )


def test_a_directory_re_saved_in_one_file_is_read_from_it_as_from_pretrained_reads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # save_pretrained deletes the shards of an earlier save, not its index: from_pretrained reads model.safetensors
    # before any index, and so does paramscope (which had refused the directory: the index names missing shards)
    import transformers

    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(path.name for path in tmp_path.glob("*.safetensors"))
    assert len(shards) > 1
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.glob("*.safetensors*")) == [
        "model.safetensors",
        "model.safetensors.index.json",
    ]
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(p.numel() for p in loaded.parameters())
    assert report.source.files == (str(tmp_path / "model.safetensors"), str(tmp_path / "config.json"))
    assert (
        "not read: model.safetensors.index.json (from_pretrained reads model.safetensors, when the directory holds "
        "one, before any index or other file)"
    ) in report.notes
    # the index given by name is still read as it is: its shards are gone
    index = tmp_path / "model.safetensors.index.json"
    first = next(iter(json.loads(index.read_text())["weight_map"].values()))
    assert first in shards
    capsys.readouterr()
    assert_error(run(capsys, "inspect", str(index)), f"{index}: names {first}, which is missing")


def test_an_index_listing_a_tensor_twice_is_read_as_a_json_reader_keeps_it_with_a_note(tmp_path: Path) -> None:
    tensors = {"a": torch.zeros(3), "b": torch.zeros(2), "c": torch.zeros(4)}
    safetensors.torch.save_file({"a": tensors["a"], "b": tensors["b"]}, tmp_path / "one.safetensors")
    safetensors.torch.save_file({"c": tensors["c"]}, tmp_path / "two.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    text = '{"weight_map": {"a": "two.safetensors", "b": "one.safetensors", "c": "two.safetensors", "a": "%s"}}'
    index.write_text(text % "one.safetensors")
    assert json.loads(index.read_text())["weight_map"]["a"] == "one.safetensors"  # what transformers reads
    report = paramscope.inspect(str(index))
    assert report.totals.params == sum(t.numel() for t in tensors.values())
    assert report.notes == (
        "the index lists a in two.safetensors, then one.safetensors: it is read from one.safetensors, listed last (as "
        "JSON readers keep it), which holds it",
    )
    # the same shard twice is no contradiction, and two names listed twice are noted together
    index.write_text('{"weight_map": {"a": "one.safetensors", "b": "one.safetensors", "c": "two.safetensors", '
                     '"a": "one.safetensors"}}')  # fmt: skip
    assert paramscope.inspect(str(index)).notes == ()
    index.write_text('{"weight_map": {"a": "two.safetensors", "b": "two.safetensors", "c": "two.safetensors", '
                     '"a": "one.safetensors", "b": "one.safetensors"}}')  # fmt: skip
    assert paramscope.inspect(str(index)).notes == (
        "the index lists 2 tensors in more than one shard (a, b): each is read from the shard listed last (as JSON "
        "readers keep it), which holds it",
    )


def test_directory_without_index_counts_every_file(tmp_path: Path) -> None:
    parts = [
        {"a.weight": torch.zeros(3, 4), "a.bias": torch.zeros(3)},
        {"b.weight": torch.zeros(5, 3, dtype=torch.float16)},
        {"c.weight": torch.zeros(2, 5, dtype=torch.bfloat16), "c.steps": torch.zeros(1, dtype=torch.int64)},
    ]
    for number, part in enumerate(parts):
        safetensors.torch.save_file(part, tmp_path / f"part{number}.safetensors")
    report = paramscope.inspect(str(tmp_path))
    everything = {name: t for part in parts for name, t in part.items()}
    assert report.totals.params + report.totals.buffers == sum(t.numel() for t in everything.values())
    assert report.totals.param_bytes + report.totals.buffer_bytes == sum(nbytes(t) for t in everything.values())
    assert report.totals.buffers == 1  # the int64 counter
    assert {r.name for r in report.tensors} == set(everything)
    assert report.source.files == tuple(str(tmp_path / f"part{n}.safetensors") for n in range(3))
    assert f"no index file: all 3 *.safetensors files in {tmp_path} are counted" in report.notes


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown", "html"])
def test_state_dict_of_a_model_without_tensors_counts_0_in_every_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    # nn.ReLU's state dict is empty: what torch.save writes for it is a checkpoint of 0 parameters, as the empty
    # safetensors file save_file writes for it
    torch.save(nn.ReLU().state_dict(), tmp_path / "relu.pt")
    safetensors.torch.save_file(nn.ReLU().state_dict(), tmp_path / "relu.safetensors")
    for name in ("relu.pt", "relu.safetensors"):
        report = paramscope.inspect(str(tmp_path / name))
        assert (report.tensors, report.totals.params, report.totals.buffers, report.totals.complete) == ((), 0, 0, True)
        code, out, err = run(capsys, "inspect", str(tmp_path / name), "--format", fmt)
        assert (code, err) == (0, "")
        assert out


@pytest.mark.parametrize("name", ["model.bin", "model.pt", "model"])
def test_safetensors_under_another_name_is_read_as_safetensors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    safetensors.torch.save_file({"a": torch.zeros(4, 4), "b": torch.zeros(3)}, path)
    report = paramscope.inspect(str(path))
    assert (report.source.kind, report.totals.params) == ("safetensors", 19)


@pytest.mark.parametrize("name", ["model.bin", "model"])
@pytest.mark.parametrize("spaces", [10, 2**20 + 3], ids=["short", "past-the-first-bytes"])
def test_safetensors_whose_header_starts_with_whitespace_under_another_name(
    tmp_path: Path, name: str, spaces: int
) -> None:
    # the safetensors library's JSON parser skips whitespace before the header's "{", as paramscope's own does, and
    # any amount of it: past the first 4 KiB read to tell the format, the file was taken for a pickle
    header = b" \t\r\n" * spaces + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with safe_open(path, "pt") as stored:
        expected = sum(stored.get_slice(key).get_shape()[0] for key in stored.keys())  # noqa: SIM118
    report = paramscope.inspect(str(path))
    assert (report.source.kind, report.totals.params) == ("safetensors", expected)


@pytest.mark.parametrize("name", ["model.bin", "model.pt", "model"])
def test_gguf_under_another_name_is_read_as_gguf(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_gguf(path, GGUF_TENSORS)
    report = paramscope.inspect(str(path))
    reader = gguf.GGUFReader(path)
    assert report.source.kind == "gguf"
    assert report.totals.params == sum(int(tensor.n_elements) for tensor in reader.tensors)
    assert report.totals.param_bytes == sum(int(tensor.n_bytes) for tensor in reader.tensors)


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_a_directory_whose_weight_file_is_another_format_under_a_torch_name_reads_it_as_the_file_alone(
    tmp_path: Path, kind: str
) -> None:
    # a safetensors file or a GGUF model saved as pytorch_model.bin: the directory's report is the file's, as its
    # first bytes say, with a note; training state beside it is named as beside torch weights
    weights = tmp_path / "pytorch_model.bin"
    if kind == "safetensors":
        safetensors.torch.save_file({"a": torch.zeros(4, 4), "b": torch.zeros(3)}, weights)
        params = 19
    else:
        write_gguf_decoder(weights)  # with the hyperparameters llama.cpp sizes its KV cache from
        params = sum(int(tensor.n_elements) for tensor in gguf.GGUFReader(weights).tensors)
    (tmp_path / "training_args.bin").write_bytes(b"\x80\x02}q\x00.")
    report = paramscope.inspect(str(tmp_path))
    alone = paramscope.inspect(str(weights))
    assert (report.source.kind, report.totals.params) == (alone.source.kind, params) == (kind, params)
    what = "a GGUF" if kind == "gguf" else "a safetensors"
    assert report.notes == (
        *alone.notes,
        f"pytorch_model.bin is {what} file under a PyTorch checkpoint's name: read as one",
        "not read: training_args.bin (training state saved beside the weights, not the model)",
    )
    plans = [paramscope.memory(str(target), seq=16).memory for target in (tmp_path, weights)]
    items = [[(item.name, item.total_bytes) for item in plan.items] for plan in plans if plan is not None]
    assert items[0] == items[1]
    assert [name for name, _ in items[0]] == (["weights", "KV cache"] if kind == "gguf" else ["weights"])


def test_another_format_under_a_torch_name_beside_torch_weights_or_in_an_index_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # read with the torch files it would fail (not a pickle); read alone, the others would be left out
    safetensors.torch.save_file({"a": torch.zeros(4, 4)}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(3)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        f"{tmp_path / 'pytorch_model-00001-of-00002.bin'}: a safetensors file under a PyTorch checkpoint's name, "
        f"beside 1 other PyTorch weight file(s) in {tmp_path}: inspect it on its own",
    )
    weight_map = {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for target in (tmp_path, tmp_path / "pytorch_model.bin.index.json"):
        assert_error(
            run(capsys, "inspect", str(target)),
            f"{tmp_path / 'pytorch_model-00001-of-00002.bin'}: a safetensors file under a PyTorch checkpoint's "
            "name, a shard pytorch_model.bin.index.json names: inspect it on its own",
        )


@pytest.mark.skipif(sys.platform == "win32", reason="a file name of bytes that are no UTF-8 is POSIX's")
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_a_torch_file_whose_path_is_not_utf8_is_read(tmp_path: Path, legacy: bool) -> None:
    # torch maps the file by its name, passed to C++ as UTF-8: the name's other bytes (surrogates in Python) failed
    state = {"a": torch.zeros(4, 4), "b": torch.zeros(3)}
    directory = Path(os.fsdecode(os.fsencode(tmp_path) + b"/dir_\xfe"))
    directory.mkdir()
    torch.save(state, tmp_path / "plain.pt", _use_new_zipfile_serialization=not legacy)
    (tmp_path / "plain.pt").rename(directory / os.fsdecode(b"file_\xfe.pt"))
    for target in (directory / os.fsdecode(b"file_\xfe.pt"), directory):
        report = paramscope.inspect(str(target))
        assert (report.source.kind, report.totals.params) == ("torch", sum(t.numel() for t in state.values()))


@pytest.mark.parametrize("name", ["weights", "model.data"])
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_torch_file_under_another_name_is_read_as_torch(tmp_path: Path, name: str, legacy: bool) -> None:
    # recognised by its first bytes: a zip archive, or (before PyTorch 1.6) the pickle of torch's magic number
    path = tmp_path / name
    state = {"a": torch.zeros(4, 4), "b": torch.zeros(3)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    report = paramscope.inspect(str(path))
    assert (report.source.kind, report.totals.params) == ("torch", sum(t.numel() for t in state.values()))
    # a pickle of something else is no torch file
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(paramscope.ParamscopeError, match="not a checkpoint paramscope recognises"):
        paramscope.inspect(str(path))


def test_expanded_tensor_in_a_pt_file_is_counted_at_its_logical_size_with_a_note(tmp_path: Path) -> None:
    expanded = torch.zeros(4).expand(1000, 4)
    path = tmp_path / "model.pt"
    torch.save({"e": expanded, "w": torch.zeros(3)}, path)
    report = paramscope.inspect(str(path))
    assert report.tensor("e").bytes == expanded.numel() * 4
    assert report.totals.param_bytes == (expanded.numel() + 3) * 4
    assert "e is a view (expanded or strided) whose storage holds 16 B: counted at its logical size, 15.62 KiB" in (
        report.notes
    )


def test_tensors_that_are_views_of_one_storage_are_counted_at_their_sizes_with_a_note(tmp_path: Path) -> None:
    base = torch.arange(10.0)
    path = tmp_path / "model.pt"
    torch.save({"a": base, "b": base[:5], "c": base[5:], "w": torch.zeros(3)}, path)
    report = paramscope.inspect(str(path))
    assert report.totals.param_bytes == (10 + 5 + 5 + 3) * 4
    assert report.notes == (
        "3 tensors are views of storage they share (a, b, c): counted at their own sizes, 80 B, though the file holds "
        "40 B for them",
    )


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_an_empty_checkpoint_says_it_holds_no_tensors(tmp_path: Path, kind: str) -> None:
    # its 0 parameters had come with no note: never a silent zero
    path = tmp_path / f"model.{kind}"
    if kind == "pt":
        torch.save({}, path)
        assert torch.load(path, weights_only=True) == {}
    else:
        safetensors.torch.save_file({}, path)
        with safe_open(str(path), "pt") as handle:
            assert list(handle.keys()) == []
    report = paramscope.inspect(str(path))
    assert (report.totals.params, report.totals.buffers) == (0, 0)
    assert report.notes == ("the checkpoint holds no tensors: 0 parameters",)


def test_meta_tensors_in_a_pt_file_are_counted_at_their_shapes_with_a_note(tmp_path: Path) -> None:
    # a state dict of a model built on meta saves no data: the file holds the shapes and dtypes alone
    with torch.device("meta"):
        on_meta = nn.Linear(1000, 1000)
    path = tmp_path / "model.pt"
    torch.save({**on_meta.state_dict(), "real": torch.zeros(3)}, path)
    with zipfile.ZipFile(path) as archive:
        held = [entry.file_size for entry in archive.infolist() if "/data/" in entry.filename]
    assert held == [3 * 4]
    report = paramscope.inspect(str(path))
    assert report.totals.params == sum(p.numel() for p in on_meta.parameters()) + 3
    assert report.notes == (
        "2 tensor(s) on the meta device, whose data the file does not hold: counted at their shapes and dtypes, as "
        "the model they were saved from would hold them (weight, bias)",
    )


def test_float4_x2_weights_count_their_values_alike_in_a_model_a_pt_file_and_safetensors(tmp_path: Path) -> None:
    # torch's float4_e2m1fn_x2 holds two float4 values an element; safetensors stores them as F4 of twice the last
    # dimension. The model and its .pt counted 12 elements, the .safetensors 24 values: the diff called them different
    model = nn.Module()
    model.w = nn.Parameter(torch.empty(4, 3, dtype=torch.float4_e2m1fn_x2), requires_grad=False)
    model.b = nn.Parameter(torch.zeros(5))
    safetensors.torch.save_file(model.state_dict(), tmp_path / "model.safetensors")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with safe_open(str(tmp_path / "model.safetensors"), "numpy") as handle:  # the values, as the file holds them
        values = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    assert values == {"w": (4, 6), "b": (5,)}
    reports = [
        paramscope.inspect(model),
        *(paramscope.inspect(str(tmp_path / f"model.{kind}")) for kind in ("pt", "safetensors")),
    ]
    for report in reports:
        assert report.totals.params == sum(math.prod(shape) for shape in values.values()) == 2 * 12 + 5
        assert report.totals.param_bytes == sum(p.numel() * p.element_size() for p in model.parameters()) == 12 + 20
        assert (report.tensor("w").shape, report.tensor("w").dtype) == ((4, 6), "float4_e2m1fn")
    note = ("1 tensor(s) of torch's float4_e2m1fn_x2, two float4 values an element, counted as their values (shown as "
            "float4_e2m1fn, the last dimension doubled, as safetensors stores them): w")  # fmt: skip
    assert note in reports[0].notes
    assert note in reports[1].notes
    assert paramscope.diff(model, str(tmp_path / "model.safetensors")).equal
    assert paramscope.diff(model, str(tmp_path / "model.pt")).equal
    assert paramscope.diff(str(tmp_path / "model.pt"), str(tmp_path / "model.safetensors")).equal


def test_views_of_a_larger_storage_in_a_pt_file_are_counted_at_their_sizes_with_a_note(tmp_path: Path) -> None:
    # torch.save writes a view's whole storage: the file holds 400 B for 10 + 50 elements of float32
    base = torch.arange(100.0)
    path = tmp_path / "model.pt"
    torch.save({"a": base[10:20], "b": base[::2], "w": torch.zeros(3)}, path)
    with zipfile.ZipFile(path) as archive:
        held = sorted(entry.file_size for entry in archive.infolist() if "/data/" in entry.filename)
    assert held == [3 * 4, base.untyped_storage().nbytes()]
    report = paramscope.inspect(str(path))
    assert report.totals.param_bytes == (10 + 50 + 3) * 4
    assert report.notes == (
        "2 tensors are views of larger storages (a, b): counted at their own sizes, 240 B, though the file holds "
        "400 B for them (torch.save writes each storage whole)",
    )
    torch.save({"a": base[10:20]}, path, _use_new_zipfile_serialization=False)
    assert paramscope.inspect(str(path)).notes == (
        "a is a view of a larger storage: counted at 40 B, though the file holds 400 B for it (torch.save writes the "
        "whole storage)",
    )


def test_tensor_name_with_a_lone_surrogate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # a pickle holds a lone surrogate in a str, which is no UTF-8; the output must still be written (a safetensors
    # header's JSON escape of one is refused, as the library refuses it)
    name = "layer\ud800.weight"
    path = tmp_path / "model.pt"
    torch.save({name: torch.zeros(2)}, path)
    assert list(torch.load(path, weights_only=True)) == [name]
    assert [t["name"] for t in run_json(capsys, path, "--tensors")["tensors"]] == [name]
    output = tmp_path / "report.json"
    assert run(capsys, "inspect", str(path), "--format", "json", "-o", str(output)) == (0, "", "")
    assert [t["name"] for t in json.loads(output.read_text(encoding="utf-8"))["tensors"]] == [name]


def test_modules_are_in_natural_order_whatever_their_digits(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # "²" passes str.isdigit() and int() refuses it; int() also refuses a run of more than 4,300 digits
    huge = "9" * 5000
    names = ["a.\u00b2", "a.10", f"a.{huge}", "a.2", "a.1", "a.01", "a.b"]
    path = tmp_path / "model.safetensors"
    _raw_safetensors(path, {f"{name}.weight": ("F32", [2], 8) for name in names})
    code, out, err = run(capsys, "inspect", str(path), "--format", "json")
    assert (code, err) == (0, "")
    modules = [module["path"] for module in json.loads(out)["modules"]]
    # numbers first, by value (a.01 and a.1 tie, kept in file order), then the other names as text
    assert modules == ["", "a", "a.1", "a.01", "a.2", "a.10", f"a.{huge}", "a.b", "a.\u00b2"]


TIED_NOTE = (
    "config.json ties the output head to the input embedding (tie_word_embeddings): the head is that same matrix, "
    "stored once and counted once"
)


def _tied_checkpoint(directory: Path, *, head: bool, tie: bool | None) -> dict[str, torch.Tensor]:
    state = {"model.embed_tokens.weight": torch.zeros(32, 8), "model.norm.weight": torch.ones(8)}
    if head:
        state["lm_head.weight"] = torch.zeros(32, 8)
    safetensors.torch.save_file(state, directory / "model.safetensors")
    if tie is not None:
        (directory / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": tie}))
    return state


@pytest.mark.parametrize("target", ["directory", "file"])
def test_tied_config_without_a_stored_head(tmp_path: Path, target: str) -> None:
    state = _tied_checkpoint(tmp_path, head=False, tie=True)
    report = paramscope.inspect(str(tmp_path if target == "directory" else tmp_path / "model.safetensors"))
    assert report.totals.params == sum(t.numel() for t in state.values())
    assert TIED_NOTE in report.notes


def test_tied_config_with_a_stored_head(tmp_path: Path) -> None:
    state = _tied_checkpoint(tmp_path, head=True, tie=True)
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(t.numel() for t in state.values())  # both matrices are on disk
    assert (
        "config.json ties the output head to the input embedding (tie_word_embeddings), but the checkpoint also "
        "stores lm_head.weight: counted as stored"
    ) in report.notes


@pytest.mark.parametrize("head_first", [False, True])
def test_tied_config_with_the_head_stored_as_the_embedding_itself(tmp_path: Path, head_first: bool) -> None:
    # torch.save of a tied model keeps one storage under both names: that is the tie the config declares, and a
    # second note said the head was "also stored" and "counted as stored", against the first note and the totals
    # (with the head's name first, as in a state dict sorted by key, the embedding's name is the alias)
    embedding = torch.zeros(32, 8)
    state = {"model.embed_tokens.weight": embedding, "lm_head.weight": embedding, "model.norm.weight": torch.ones(8)}
    if head_first:
        state = dict(sorted(state.items()))
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": True}))
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == embedding.numel() + 8  # the head once
    first, alias = ("lm_head.weight", "model.embed_tokens.weight")[:: 1 if head_first else -1]
    assert f"{alias} is stored as the same tensor as {first} (tied): counted once" in report.notes
    assert TIED_NOTE in report.notes
    assert not [note for note in report.notes if "also stores" in note]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
        ('{"tie_word_embeddings": ' + "9" * 5000 + "}", "a number of more than 4,300 digits"),
    ],
    ids=["not-json", "nested-too-deeply", "number-too-long"],
)
def test_config_beside_a_checkpoint_that_cannot_be_read_is_a_note(tmp_path: Path, text: str, reason: str) -> None:
    state = _tied_checkpoint(tmp_path, head=False, tie=None)
    (tmp_path / "config.json").write_text(text)
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(t.numel() for t in state.values())
    assert f"{tmp_path / 'config.json'} could not be read ({reason}): counted without it" in report.notes
    assert str(tmp_path / "config.json") not in report.source.files  # not read


def test_config_beside_a_checkpoint_that_is_no_file_or_has_a_quantization_config_of_no_settings_is_a_note(
    tmp_path: Path,
) -> None:
    state = _tied_checkpoint(tmp_path, head=False, tie=None)
    config = tmp_path / "config.json"
    config.mkdir()
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(t.numel() for t in state.values())
    assert f"{config} is not a file: counted without it" in report.notes
    config.rmdir()
    config.write_text(json.dumps({"quantization_config": "gptq"}))
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(t.numel() for t in state.values())
    assert (
        f"{config}: its quantization_config is 'gptq', not a JSON object: the quantization is told from the tensors' "
        "names and shapes alone"
    ) in report.notes


def test_source_files_are_every_file_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # from review: a directory with an index listed its shards alone, where the README's source.files is "the files
    # read": the index and the config.json beside it are read too
    shards = write_sharded(tmp_path, {"a.weight": ("F32", (2, 2)), "b.weight": ("F32", (3,))}, 2)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "notes.txt").write_text("not read")
    data = run_json(capsys, tmp_path)
    read = [tmp_path / "model.safetensors.index.json", *shards, tmp_path / "config.json"]
    assert data["source"]["files"] == [str(path) for path in read]


@pytest.mark.parametrize("tie", [False, None], ids=["untied", "no-config"])
def test_no_tie_note_without_a_tying_config(tmp_path: Path, tie: bool | None) -> None:
    _tied_checkpoint(tmp_path, head=False, tie=tie)
    assert not any("tie" in note for note in paramscope.inspect(str(tmp_path)).notes)


def test_transformers_save_pretrained_with_tied_embeddings(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert "lm_head.weight" not in handle.keys()  # noqa: SIM118 (the tied head is not stored)
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert TIED_NOTE in report.notes


# ---------------------------------------------------------------------------------------------------------------------
# 4. PyTorch files


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".pth", ".ckpt"])
def test_plain_state_dict(tmp_path: Path, suffix: str) -> None:
    model = Mixed()
    state = model.state_dict()
    path = tmp_path / f"model{suffix}"
    torch.save(state, path)
    report = paramscope.inspect(str(path))
    assert_matches_state_dict(report, state, model)
    assert (report.source.kind, report.source.files) == ("torch", (str(path),))


def test_notes_shorten_long_names_from_the_file(tmp_path: Path) -> None:
    long = "layer." + "x" * 5000  # a name in a checkpoint can have any length; a note is one line
    weight = torch.zeros(3)
    saved = {f"{long}.a": weight, f"{long}.b": weight, f"{long}.view": torch.zeros(4).expand(100, 4), f"{long}.n": 7}
    torch.save(saved, tmp_path / "model.pt")
    report = paramscope.inspect(str(tmp_path / "model.pt"))
    assert report.notes == (
        f"1 entry holds no tensor and is not counted: {shortened(long + '.n (int)')}",
        f"{shortened(long + '.view')} is a view (expanded or strided) whose storage holds 16 B: counted at its "
        "logical size, 1.56 KiB",
        f"{shortened(long + '.b')} is stored as the same tensor as {shortened(long + '.a')} (tied): counted once",
    )
    assert report.tensor(f"{long}.a").aliases == (f"{long}.b",)  # the report itself keeps the names whole


def test_tied_gpt_state_dict_counts_the_head_once(tmp_path: Path) -> None:
    model = gpt2(**TINY_GPT)
    state = model.state_dict()
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()  # tied in the model
    torch.save(state, tmp_path / "gpt.pt")
    report = paramscope.inspect(str(tmp_path / "gpt.pt"))
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.param_bytes == sum(nbytes(p) for p in model.parameters())
    wte = report.tensor("transformer.wte.weight")
    assert wte.aliases == ("lm_head.weight",)
    assert report.tensor("lm_head.weight") is wte
    head = report.module("lm_head")
    assert (head.params, head.shared) == (0, ("transformer.wte.weight",))
    assert "lm_head.weight is stored as the same tensor as transformer.wte.weight (tied): counted once" in report.notes
    names = {name for record in report.tensors for name in (record.name, *record.aliases)}
    assert names == set(state)
    assert_tree_adds_up(report)


def test_a_state_dict_beside_its_optimizer_keeps_a_tensor_named_as_training_state(tmp_path: Path) -> None:
    # 'scaler' is a training state file's name, and here a model's own parameter: only a generator's state
    # (torch.get_rng_state()) at the top of such a file is taken for training state
    model, optimizer = trained_tiny_gpt()
    state = {**model.state_dict(), "scaler": torch.ones(3), "rng_state": torch.get_rng_state()}
    torch.save({**state, "optimizer": optimizer.state_dict()}, tmp_path / "last.pt")
    report = paramscope.inspect(str(tmp_path / "last.pt"))
    assert report.totals.params == sum(p.numel() for p in model.parameters()) + 3
    assert any(note.startswith("entry 'rng_state': 1 tensor(s)") for note in report.notes)


@pytest.mark.parametrize(
    ("layout", "model_key", "optimizer_key"),
    [("lightning", "state_dict", "optimizer_states"), ("model+optimizer", "model", "optimizer")],
)
def test_checkpoint_with_optimizer_state(tmp_path: Path, layout: str, model_key: str, optimizer_key: str) -> None:
    model, optimizer = trained_tiny_gpt()
    optimizer_state = optimizer.state_dict()
    saved: dict[str, Any] = {model_key: model.state_dict()}
    saved[optimizer_key] = [optimizer_state] if layout == "lightning" else optimizer_state
    if layout == "lightning":
        saved["epoch"] = 1
    path = tmp_path / "last.ckpt"
    torch.save(saved, path)
    report = paramscope.inspect(str(path))

    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == 0  # the tiny GPT's attention masks are not persistent
    names = {name for record in report.tensors for name in (record.name, *record.aliases)}
    assert names == set(model.state_dict())
    # the optimizer's tensors: exp_avg and exp_avg_sq per parameter, and Adam's step counters
    moments = tensor_leaves(optimizer_state)
    assert len(moments) == 3 * len(list(model.parameters()))
    elements = sum(t.numel() for t in moments)
    note = next(n for n in report.notes if n.startswith(f"optimizer state {optimizer_key!r}"))
    assert note.startswith(f"optimizer state {optimizer_key!r}: {len(moments)} tensor(s), {elements:,} elements, ")
    assert note.endswith("; not counted in the totals")
    assert f"the model's tensors are the checkpoint's {model_key!r} entry" in report.notes
    assert_tree_adds_up(report)


def test_a_list_the_file_refers_to_at_every_level_is_walked_once(tmp_path: Path) -> None:
    # 2^20 paths through 20 lists, each list once in the file (pickle keeps one copy of an object given twice)
    inner = torch.zeros(3)
    shared: list[Any] = [inner]
    for _ in range(20):
        shared = [shared, shared]
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(4), "x": shared}, path)
    report = paramscope.inspect(str(path))
    assert report.totals.params == 4
    assert "entry 'x': 1 tensor(s), 3 elements, 12 B; not counted in the totals" in report.notes


@pytest.mark.parametrize("holds_a_tensor", [True, False], ids=["with-a-tensor", "without"])
def test_a_list_that_holds_itself(tmp_path: Path, holds_a_tensor: bool) -> None:
    loop: list[Any] = [torch.zeros(3)] if holds_a_tensor else []
    loop.append(loop)
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(4), "x": loop}, path)
    report = paramscope.inspect(str(path))
    assert report.totals.params == 4
    expected = ("entry 'x': 1 tensor(s), 3 elements, 12 B; not counted in the totals" if holds_a_tensor
                else "1 entry holds no tensor and is not counted: x (list)")  # fmt: skip
    assert expected in report.notes


def test_tensors_after_many_entries_that_are_not_tensors_keep_their_names(tmp_path: Path) -> None:
    # The walk that finds the tensors goes only into the containers that hold one: a tensor after 1,000 numbers in
    # a list, or under a list of lists of numbers, is found and named as torch.save's nesting gives it
    weight, deep, last, moment = torch.zeros(2, 3), torch.zeros(4), torch.zeros(5, dtype=torch.float16), torch.zeros(6)
    model = {"w": weight, "logs": [0.5] * 1_000 + [{"a": [1, "x", deep]}, ([[7, 8], [9], []], last)]}
    history = [[0.25] * 10 for _ in range(100)] + [moment]  # each list once: the file refers to none twice
    saved = {"epoch": 2, "model": model, "history": history, "log": [0.1] * 5_000}
    path = tmp_path / "last.ckpt"
    torch.save(saved, path)
    report = paramscope.inspect(str(path))
    assert [(record.name, record.shape, record.bytes) for record in report.tensors] == [
        ("w", (2, 3), 24), ("logs.1000.a.2", (4,), 16), ("logs.1001.1", (5,), 10)
    ]  # fmt: skip
    assert report.notes == (
        "the model's tensors are the checkpoint's 'model' entry",
        "entry 'history': 1 tensor(s), 6 elements, 24 B; not counted in the totals",
        "1,003 entries of 'model' hold no tensor and are not counted: logs.0 (float), logs.1 (float), logs.2 (float), "
        "logs.3 (float), logs.4 (float) and 998 more",
    )


class WithExtraState(nn.Module):
    """A Linear whose state dict also holds a non-tensor ``_extra_state`` (as TransformerEngine's layers do)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.logit_scale = nn.Parameter(torch.tensor(2.5))  # a 0-d parameter, its name without a dot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.logit_scale

    def get_extra_state(self) -> Any:
        return {"format": "fp8", "version": 2}

    def set_extra_state(self, state: Any) -> None:
        pass


def test_flat_state_dict_with_entries_that_are_not_tensors(tmp_path: Path) -> None:
    model = WithExtraState()
    state = model.state_dict()
    assert state["_extra_state"] == {"format": "fp8", "version": 2}  # the control: a state dict holds it
    saved = {**state, "version": 3, "_meta.note": "trained on shards 0-9", "fc._extra_state": None}
    path = tmp_path / "model.pt"
    torch.save(saved, path)
    report = paramscope.inspect(str(path))
    tensors = {name: value for name, value in saved.items() if isinstance(value, torch.Tensor)}
    assert list(tensors) == ["logit_scale", "fc.weight", "fc.bias"]
    assert {r.name: (r.shape, r.numel, r.bytes) for r in report.tensors} == {
        name: (tuple(t.shape), t.numel(), nbytes(t)) for name, t in tensors.items()
    }
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 6 * 4 + 4 + 1
    assert report.notes == (
        "4 entries hold no tensor and are not counted: _extra_state (dict), version (int), _meta.note (str), "
        "fc._extra_state (None)",
    )
    assert_tree_adds_up(report)


def test_flat_state_dict_names_at_most_five_entries_that_are_not_tensors(tmp_path: Path) -> None:
    saved: dict[str, Any] = {"weights": torch.zeros(3, 2), "bias": torch.zeros(3)}  # "weights" is no model entry
    saved |= {f"layer{i}._extra_state": None for i in range(7)}
    path = tmp_path / "model.pt"
    torch.save(saved, path)
    report = paramscope.inspect(str(path))
    assert (report.totals.params, [r.name for r in report.tensors]) == (9, ["weights", "bias"])
    assert report.notes == (
        "7 entries hold no tensor and are not counted: layer0._extra_state (None), layer1._extra_state (None), "
        "layer2._extra_state (None), layer3._extra_state (None), layer4._extra_state (None) and 2 more",
    )


@pytest.mark.parametrize("model_key", ["state_dict", "model"])
def test_nested_checkpoint_whose_state_dict_has_entries_that_are_not_tensors(tmp_path: Path, model_key: str) -> None:
    model = nn.Sequential(WithExtraState(), nn.LayerNorm(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(2, 6))[0].sum().backward()  # a step, so the optimizer holds momentum buffers
    optimizer.step()
    state = model.state_dict()
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 4, model_key: state, "optimizer": optimizer.state_dict(), "note": "x"}, path)
    report = paramscope.inspect(str(path))
    tensors = {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}
    assert {r.name: (r.shape, r.bytes) for r in report.tensors} == {
        name: (tuple(t.shape), nbytes(t)) for name, t in tensors.items()
    }
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 6 * 4 + 4 + 1 + 4 + 4
    momentum = tensor_leaves(optimizer.state_dict())
    assert len(momentum) == len(tensors)
    assert report.notes == (
        f"the model's tensors are the checkpoint's {model_key!r} entry",
        f"optimizer state 'optimizer': {len(momentum)} tensor(s), {sum(t.numel() for t in momentum)} elements, "
        f"{sum(nbytes(t) for t in momentum)} B; not counted in the totals",
        f"1 entry of {model_key!r} holds no tensor and is not counted: 0._extra_state (dict)",
    )


def sparse_parts(tensor: torch.Tensor) -> list[torch.Tensor]:
    if tensor.layout is torch.sparse_coo:
        return [tensor._indices(), tensor._values()]
    return [tensor.crow_indices(), tensor.col_indices(), tensor.values()]


def test_sparse_tensors_count_their_dense_shape_and_stored_bytes(tmp_path: Path) -> None:
    coo = torch.sparse_coo_tensor([[0, 3, 7], [1, 2, 9]], [1.0, 2.0, 3.0], (8, 10), check_invariants=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        csr = torch.eye(5, dtype=torch.float16).to_sparse_csr()
    dense = torch.zeros(5)
    path = tmp_path / "model.pt"
    torch.save({"emb.weight": coo, "fc.weight": csr, "fc.bias": dense, "head.weight": coo}, path)
    report = paramscope.inspect(str(path))
    stored = {
        name: sum(nbytes(part) for part in sparse_parts(t)) for name, t in [("emb.weight", coo), ("fc.weight", csr)]
    }
    assert stored == {"emb.weight": 2 * 3 * 8 + 3 * 4, "fc.weight": 6 * 8 + 5 * 8 + 5 * 2}
    got = {r.name: (r.shape, r.numel, r.dtype, r.bytes, r.aliases) for r in report.tensors}
    assert got == {
        "emb.weight": ((8, 10), coo.numel(), "float32", stored["emb.weight"], ("head.weight",)),
        "fc.weight": ((5, 5), csr.numel(), "float16", stored["fc.weight"], ()),
        "fc.bias": ((5,), 5, "float32", 20, ()),
    }
    assert report.totals.params == 80 + 25 + 5
    assert report.notes[:2] == (
        f"emb.weight is a torch.sparse_coo tensor of 80 elements: counted as its indices and values "
        f"({stored['emb.weight']} B)",
        f"fc.weight is a torch.sparse_csr tensor of 25 elements: counted as its indices and values "
        f"({stored['fc.weight']} B)",
    )
    # the same tensors as a live model's parameters count the same (sources/module.py)
    live = nn.Module()
    live.emb = nn.Module()
    live.emb.weight = nn.Parameter(coo)
    live.fc = nn.Module()
    live.fc.weight, live.fc.bias = nn.Parameter(csr), nn.Parameter(dense)
    totals = paramscope.inspect(live).totals
    assert (report.totals.params, report.totals.param_bytes) == (totals.params, totals.param_bytes)


def test_legacy_format(tmp_path: Path) -> None:
    model = Mixed()
    state = model.state_dict()
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    report = paramscope.inspect(str(path))
    assert_matches_state_dict(report, state, model)
    assert report.source.kind == "torch"


def test_legacy_format_tied_head_counted_once(tmp_path: Path) -> None:
    model = gpt2(**TINY_GPT)
    path = tmp_path / "legacy-gpt.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    reloaded = torch.load(path, weights_only=True)  # the file itself keeps the tie
    assert reloaded["lm_head.weight"].data_ptr() == reloaded["transformer.wte.weight"].data_ptr()
    report = paramscope.inspect(str(path))
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.tensor("transformer.wte.weight").aliases == ("lm_head.weight",)


def test_a_zip_checkpoint_larger_than_memory_is_counted(tmp_path: Path) -> None:
    """A torch.save file of one 1 TiB storage (sparse on disk): torch.load(mmap=True) maps the file private, which
    Linux refuses past the memory it can commit; it is mapped read-only instead. (Where it can commit 1 TiB, torch
    maps it: the same count.)"""
    numel = 2**38
    saved = tmp_path / "small.pt"
    torch.save({"w": torch.zeros(100)}, saved)
    large = b"\x8a\x05" + numel.to_bytes(5, "little")  # LONG1 2**38 for BININT1 100: the storage's element count,
    # before its pickled location's end, and the tensor's shape, before TUPLE1
    records = []
    with zipfile.ZipFile(saved) as archive:
        for entry in archive.infolist():
            content = archive.read(entry)
            if entry.filename.endswith("/data.pkl"):
                assert content.count(b"K\x64") == 2
                content = content.replace(b"K\x64", large)
            records.append((entry.filename, 4 * numel if entry.filename.endswith("/data/0") else content))
    path = tmp_path / "huge.pt"
    write_zip64(path, records)
    report = paramscope.inspect(str(path))
    assert (report.totals.params, report.totals.param_bytes) == (numel, 4 * numel)
    assert report.tensor("w").shape == (numel,)


def test_a_zip_checkpoint_mapped_read_only_is_what_torch_load_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torch cannot map the file its way, the objects are those torch.load gives, ties kept."""
    from paramscope.sources.torchfile import _torch_load

    model = gpt2(**TINY_GPT)
    state = {**model.state_dict(), "sparse": torch.eye(3).to_sparse(), "half": torch.randn(3).half()}
    path = tmp_path / "model.pt"
    torch.save(state, path)
    expected = torch.load(path, weights_only=True)
    from_file = torch.UntypedStorage.from_file

    def refused(name: str, shared: bool, nbytes: int) -> torch.UntypedStorage:
        raise RuntimeError(f"unable to mmap {nbytes} bytes from file <{name}>: Cannot allocate memory (12)")

    monkeypatch.setattr(torch.UntypedStorage, "from_file", refused)
    loaded, _ = _torch_load(path)
    monkeypatch.setattr(torch.UntypedStorage, "from_file", from_file)
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name].to_dense(), tensor.to_dense()), name
    assert loaded["lm_head.weight"].data_ptr() == loaded["transformer.wte.weight"].data_ptr()
    report = paramscope.inspect(str(path))  # and torch's own mapping, as ever
    assert report.totals.params == sum(tensor.numel() for tensor in expected.values()) - model.lm_head.weight.numel()


def test_a_zip_checkpoint_of_the_other_byte_order_is_not_mapped_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch swaps the bytes of a checkpoint saved on a machine of the other byte order in place as it loads it: on
    a read-only mapping that write would crash the process; it is refused in one line instead."""
    saved = tmp_path / "saved.pt"
    torch.save({"w": torch.arange(4.0)}, saved)
    other = "big" if sys.byteorder == "little" else "little"
    with zipfile.ZipFile(saved) as archive:
        records = [(entry.filename, other.encode() if entry.filename.endswith("/byteorder") else archive.read(entry))
                   for entry in archive.infolist()]  # fmt: skip
    path = tmp_path / "model.pt"
    write_zip64(path, records)
    swapped = torch.load(path, weights_only=True)["w"]  # torch's own, private mapping: swapped in it
    assert not torch.equal(swapped, torch.arange(4.0))
    assert paramscope.inspect(str(path)).totals.params == 4

    def refused(name: str, shared: bool, nbytes: int) -> torch.UntypedStorage:
        raise RuntimeError(f"unable to mmap {nbytes} bytes from file <{name}>: Cannot allocate memory (12)")

    monkeypatch.setattr(torch.UntypedStorage, "from_file", refused)
    with pytest.raises(paramscope.SourceError) as refusal:
        paramscope.inspect(str(path))
    assert str(refusal.value) == (
        f"{path}: cannot be mapped: its tensors are stored {other}-endian, which torch swaps in place as it loads "
        f"them, and this machine refuses a writable mapping of the file ({format_bytes(path.stat().st_size)})"
    )
    # a record of neither order: the refusal torch's own mapping gives, its text escaped as any other error's
    monkeypatch.undo()
    odd = tmp_path / "odd.pt"
    write_zip64(odd, [(name, b"x" * 100 + b"\n\x1b[0m" if name.endswith("/byteorder") else data)
                      for name, data in records])  # fmt: skip
    with pytest.raises(paramscope.SourceError) as mapped_by_torch:
        paramscope.inspect(str(odd))
    assert "ValueError: Unknown endianness type: xxx" in str(mapped_by_torch.value)
    monkeypatch.setattr(torch.UntypedStorage, "from_file", refused)
    with pytest.raises(paramscope.SourceError) as unknown:
        paramscope.inspect(str(odd))
    assert str(unknown.value) == str(mapped_by_torch.value)
    assert "\x1b" not in str(unknown.value)
    assert "\n" not in str(unknown.value)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # torch's, on making any qint8 tensor
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")  # torch's, rebuilding a quantized one
def test_legacy_format_read_as_torch_load_reads_it(tmp_path: Path) -> None:
    """paramscope reads the legacy format itself, its storages mapped from the file: the same objects as
    torch.load's, value for value, ties and views of one storage kept; sparse tensors checked as torch.load checks
    them where the process asks for it."""
    from paramscope.sources._legacy_torch import load_legacy

    base = torch.arange(24, dtype=torch.float64)
    weight = torch.randn(6, 4)
    empty = torch.zeros(0)
    state = {
        "w": weight, "tied": weight, "half": torch.randn(3, 5).half(), "bf16": torch.randn(4).bfloat16(),
        "ids": torch.arange(7), "flags": torch.tensor([True, False]), "empty": empty,
        "empty_ints": empty.view(torch.int32),  # one storage key in two dtypes: torch.save checks none without data
        "view": base[2:10], "strided": base.view(4, 6)[:, ::2], "scalar": torch.tensor(3.5),
        "quantized": torch.quantize_per_tensor(torch.randn(3, 4), 0.1, 2, torch.qint8),
        "per_channel": torch.quantize_per_channel(torch.randn(2, 3), torch.tensor([0.1, 0.2]), torch.tensor([0, 1]),
                                                  0, torch.quint8),
        "sparse": torch.eye(3).to_sparse(), "nested": {"list": [torch.ones(2), 5], "name": "x"},
    }  # fmt: skip
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with torch.sparse.check_sparse_tensor_invariants():
        expected, loaded = torch.load(path, weights_only=True), load_legacy(path)
    assert set(loaded) == set(expected)
    for name in ("w", "tied", "half", "bf16", "ids", "flags", "empty", "empty_ints", "view", "strided", "scalar"):
        assert torch.equal(loaded[name], expected[name]), name
        assert (loaded[name].dtype, loaded[name].stride()) == (expected[name].dtype, expected[name].stride())
    for name in ("quantized", "per_channel"):
        assert torch.equal(loaded[name].int_repr(), expected[name].int_repr()), name
        assert loaded[name].qscheme() == expected[name].qscheme(), name
    assert torch.equal(loaded["per_channel"].q_per_channel_scales(), expected["per_channel"].q_per_channel_scales())
    assert torch.equal(loaded["sparse"].to_dense(), expected["sparse"].to_dense())
    assert torch.equal(loaded["nested"]["list"][0], expected["nested"]["list"][0])
    assert loaded["nested"]["list"][1:] == [5]
    assert loaded["nested"]["name"] == "x"
    assert loaded["w"] is loaded["tied"]
    assert loaded["view"].untyped_storage().data_ptr() == loaded["strided"].untyped_storage().data_ptr()
    assert loaded["w"].untyped_storage().nbytes() == weight.nbytes


class OnADevice:
    """Pickles as torch.save pickles a tensor of a device without storage (XLA's): its data on the cpu, its dtype
    and its device."""

    def __init__(self, data: torch.Tensor, device: str) -> None:
        self.data, self.device = data, device

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return torch._utils._rebuild_device_tensor_from_cpu_tensor, (self.data, self.data.dtype, self.device, False)


@pytest.mark.parametrize(
    ("legacy", "device"),
    # torch's legacy loader moves the tensor to its device as saved (on a machine without XLA, it fails)
    [(False, "xla:0"), (False, "cpu"), (True, "cpu")],
)
def test_a_tensor_saved_from_a_device_without_storage_is_read_as_torch_load_reads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, legacy: bool, device: str
) -> None:
    # its data's dtype checked against the dtype given (the pickle walk refuses another): the dtypes of storage
    # classes, of untyped storages (float8, which the legacy format cannot read back) and a stride-0 view
    dtypes = [torch.float32, torch.bfloat16, torch.float64]
    dtypes += [] if legacy else [torch.float8_e4m3fn, torch.float8_e5m2]
    state = {str(dtype): OnADevice(torch.ones(3, 2, dtype=dtype), device) for dtype in dtypes}
    state["expanded"] = OnADevice(torch.ones(1, 4).expand(1000, 4), device)
    path = tmp_path / "xla.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    expected = torch.load(path, weights_only=True, map_location="cpu")
    report = run_json(capsys, path)
    assert report["totals"]["params"] == sum(tensor.numel() for tensor in expected.values())
    assert {name: counts["params"] for name, counts in report["by_dtype"].items()} == {
        torch_name(dtype): 6 + (4000 if dtype == torch.float32 else 0) for dtype in dtypes
    }


def test_legacy_storage_views_as_torch_wrote_them_before_1_0(tmp_path: Path) -> None:
    """Before PyTorch 1.0, torch.save gave a slice of a storage a persistent id of its own, which also names the
    slice's place in its root storage: ``(view key, offset, elements)``. torch.load still reads such files."""

    class Storage:  # stands for a storage when pickled: its persistent id
        def __init__(self, key: str, offset: int, numel: int) -> None:
            self.pid = ("storage", torch.FloatStorage, "0", "cpu", 4, (key, offset, numel))

    class Tensor:
        def __init__(self, storage: Storage, numel: int) -> None:
            self.storage, self.numel = storage, numel

        def __reduce__(self) -> tuple[Any, ...]:
            return torch._utils._rebuild_tensor_v2, (self.storage, 0, (self.numel,), (1,), False, {})

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return obj.pid if isinstance(obj, Storage) else None

    state = io.BytesIO()
    # a view's key names the same view wherever it comes again (torch.load gives "again" the first view "1")
    saved = {"middle": Tensor(Storage("1", 1, 2), 2), "head": Tensor(Storage("2", 0, 3), 3),
             "again": Tensor(Storage("1", 0, 2), 2)}  # fmt: skip
    Pickler(state, protocol=2).dump(saved)
    system = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    preamble = b"".join(pickle.dumps(part, protocol=2) for part in (0x1950A86A20F9469CFC6C, 1001, system))
    keys = pickle.dumps(["0"], protocol=2)
    path = tmp_path / "legacy.pt"
    path.write_bytes(preamble + state.getvalue() + keys + struct.pack("<q4f", 4, 1.0, 2.0, 3.0, 4.0))
    expected = {name: tensor.tolist() for name, tensor in torch.load(path, weights_only=True).items()}
    assert expected == {"middle": [2.0, 3.0], "head": [1.0, 2.0, 3.0], "again": [2.0, 3.0]}
    from paramscope.sources._legacy_torch import load_legacy

    loaded = load_legacy(path)
    assert {name: tensor.tolist() for name, tensor in loaded.items()} == expected
    assert loaded["middle"].data_ptr() == loaded["head"].data_ptr() + 4  # slices of one storage, mapped
    report = paramscope.inspect(str(path))
    assert [(record.name, record.shape) for record in report.tensors] == [("middle", (2,)), ("head", (3,))]
    assert report.tensor("middle").aliases == ("again",)  # one view, saved twice


def test_a_legacy_file_torch_cannot_map_is_mapped_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel refuses torch's private mapping (a file past the memory Linux commits), the file is mapped
    read-only and shared: the same objects as torch.load's, ties kept."""
    from paramscope.sources._legacy_torch import load_legacy

    model = gpt2(**TINY_GPT)
    path = tmp_path / "legacy.pt"
    torch.save({**model.state_dict(), "half": torch.randn(3).half()}, path, _use_new_zipfile_serialization=False)
    expected = torch.load(path, weights_only=True)

    def refused(name: str, shared: bool, nbytes: int) -> torch.UntypedStorage:
        raise RuntimeError(f"unable to mmap {nbytes} bytes from file <{name}>: Cannot allocate memory (12)")

    monkeypatch.setattr(torch.UntypedStorage, "from_file", refused)
    loaded = load_legacy(path)
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
    assert loaded["lm_head.weight"].data_ptr() == loaded["transformer.wte.weight"].data_ptr()


def test_a_failed_legacy_read_leaves_no_sparse_tensor_to_check(tmp_path: Path) -> None:
    """torch keeps the sparse tensors a load rebuilds in a list of its own, to check them at the end (with
    torch.sparse.check_sparse_tensor_invariants on): a file refused on the way leaves none there to be checked with
    the next file's."""
    saved = tmp_path / "saved.pt"
    torch.save({"s": torch.eye(3).to_sparse(), "w": torch.zeros(100)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    assert data.count(b"K\x64N") == 1  # w's storage's persistent id: (..., "cpu", BININT1 100, None)
    refused = tmp_path / "refused.pt"
    refused.write_bytes(data.replace(b"K\x64N", b"\x8a\x07" + (2**50).to_bytes(7, "little") + b"N"))  # LONG1 2**50
    queued = len(torch._utils._sparse_tensors_to_validate)
    with pytest.raises(paramscope.SourceError, match=r"truncated: its pickle gives a storage of 4\.00 PiB"):
        paramscope.inspect(str(refused))
    assert len(torch._utils._sparse_tensors_to_validate) == queued
    with torch.sparse.check_sparse_tensor_invariants():
        assert paramscope.inspect(str(saved)).totals.params == 9 + 100


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts this process's open files in /proc")
def test_a_mapped_legacy_file_holds_no_file_open(tmp_path: Path) -> None:
    """torch maps the file as torch.load(mmap=True) does and closes it: a model in many legacy shards does not run
    into the limit on open files."""
    from paramscope.sources._legacy_torch import load_legacy

    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(4)}, path, _use_new_zipfile_serialization=False)
    before = len(os.listdir("/proc/self/fd"))
    loaded = load_legacy(path)
    assert len(os.listdir("/proc/self/fd")) == before
    assert loaded["w"].tolist() == [1.0] * 4


def test_a_legacy_file_larger_than_memory_is_counted(tmp_path: Path) -> None:
    """A legacy file of one 64 GiB storage (sparse on disk): torch.load would allocate all of it; it is mapped."""
    numel = 2**34
    path = tmp_path / "huge.pt"
    torch.save({"w": torch.zeros(100)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert data[-408:-400] == struct.pack("<q", 100)  # the storage's element count, then its 400 bytes
    large = b"\x8a\x05" + numel.to_bytes(5, "little")  # LONG1 2**34 for BININT1 100: in the storage's persistent
    # id, before None (no view), and in the tensor's shape, before TUPLE1
    pickled = data[:-408].replace(b"K\x64N", large + b"N").replace(b"K\x64\x85", large + b"\x85")
    path.write_bytes(pickled + struct.pack("<q", numel))
    os.truncate(path, len(pickled) + 8 + 4 * numel)
    report = paramscope.inspect(str(path))
    assert (report.totals.params, report.totals.param_bytes) == (numel, 4 * numel)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_empty_tensors_saved_apart_are_not_tied(tmp_path: Path, legacy: bool) -> None:
    # the legacy loader gives every storage of 0 bytes the same address, 0: distinct tensors all the same
    path = tmp_path / "model.pt"
    empty = torch.zeros(0)
    torch.save({"a": torch.zeros(0), "b": torch.zeros(0), "c": empty, "d": empty}, path,
               _use_new_zipfile_serialization=not legacy)  # fmt: skip
    reloaded = torch.load(path, weights_only=True)
    assert reloaded["a"] is not reloaded["b"]
    assert reloaded["c"] is reloaded["d"]  # saved twice: one object
    report = paramscope.inspect(str(path))
    assert [(record.name, record.aliases) for record in report.tensors] == [("a", ()), ("b", ()), ("c", ("d",))]


@pytest.mark.parametrize("via", ["directory", "index"])
def test_sharded_pytorch_bin(tmp_path: Path, via: str) -> None:
    model = Mixed()
    state = model.state_dict()
    names = list(state)
    shards = {"pytorch_model-00001-of-00002.bin": names[:3], "pytorch_model-00002-of-00002.bin": names[3:]}
    for shard, chunk in shards.items():
        torch.save({name: state[name] for name in chunk}, tmp_path / shard)
    weight_map = {name: shard for shard, chunk in shards.items() for name in chunk}
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    report = paramscope.inspect(str(tmp_path if via == "directory" else index))
    assert_matches_state_dict(report, state, model)
    assert report.source.kind == "torch"
    assert report.source.files == (str(index), *(str(tmp_path / shard) for shard in shards))


@dataclasses.dataclass
class TrainingArguments:
    """Stands for transformers' TrainingArguments, which the Trainer pickles into training_args.bin."""

    output_dir: str = "out"
    learning_rate: float = 5e-5


TRAINING_STATE_NOTE = (
    "not read: rng_state.pth, scheduler.pt, training_args.bin (training state saved beside the weights, not the model)"
)


def save_shards(directory: Path, state: Mapping[str, torch.Tensor], shards: Mapping[str, list[str]]) -> None:
    for shard, names in shards.items():
        torch.save({name: state[name] for name in names}, directory / shard)
    weight_map = {name: shard for shard, names in shards.items() for name in names}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_trainer_output_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path, layout: str) -> None:
    """What transformers' Trainer writes to a checkpoint folder: the weights, and the state to resume training."""
    model, optimizer = trained_tiny_gpt()
    state = model.state_dict()
    if layout == "single":
        weights = ["pytorch_model.bin"]
        torch.save(state, tmp_path / weights[0])
    else:  # the tied embedding and head stay in one shard, so the tie is in the files
        weights = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
        last = [name for name in state if name.startswith("transformer.h.1.")]
        save_shards(tmp_path, state, {weights[0]: [n for n in state if n not in last], weights[1]: last})
    torch.save(TrainingArguments(), tmp_path / "training_args.bin")  # a pickled class: weights_only refuses it
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    torch.save(torch.optim.lr_scheduler.StepLR(optimizer, 1).state_dict(), tmp_path / "scheduler.pt")
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(rng, tmp_path / "rng_state.pth")
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 1}))

    report = paramscope.inspect(str(tmp_path))
    index = ["pytorch_model.bin.index.json"] if layout == "sharded" else []
    assert report.source.files == tuple(str(tmp_path / name) for name in (*index, *weights))
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    names = {name for record in report.tensors for name in (record.name, *record.aliases)}
    assert names == set(state)
    moments = tensor_leaves(optimizer.state_dict())
    elements = sum(t.numel() for t in moments)
    optimizer_note = next(note for note in report.notes if note.startswith("optimizer.pt: "))
    assert optimizer_note.startswith(
        f"optimizer.pt: optimizer state: {len(moments)} tensor(s), {elements:,} elements, "
    )
    assert optimizer_note.endswith("; not counted in the totals")
    assert TRAINING_STATE_NOTE in report.notes
    assert not any(note.startswith("not read: ") and note != TRAINING_STATE_NOTE for note in report.notes)
    code, out, err = run(capsys, "inspect", str(tmp_path), "--quiet")
    assert (code, err) == (0, "")
    assert "training_args.bin" in out


def test_training_state_beside_safetensors_is_not_torch_weights(tmp_path: Path) -> None:
    model, optimizer = trained_tiny_gpt()
    safetensors.torch.save_model(model, str(tmp_path / "model.safetensors"))
    torch.save(TrainingArguments(), tmp_path / "training_args.bin")
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    report = paramscope.inspect(str(tmp_path))
    assert (report.source.kind, report.totals.params) == ("safetensors", sum(p.numel() for p in model.parameters()))
    assert not any("also holds" in note for note in report.notes)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # real torch weights beside them: said
    assert (
        "the directory also holds torch weights: only the safetensors ones are read"
        in paramscope.inspect(str(tmp_path)).notes
    )


def test_torch_index_without_its_shards_beside_safetensors_is_not_torch_weights(tmp_path: Path) -> None:
    # a repository converted to safetensors often keeps its old pytorch_model.bin.index.json, and no .bin shard
    model = Mixed()
    state = model.state_dict()
    safetensors.torch.save_file(state, tmp_path / "model.safetensors")
    shards = {name: f"pytorch_model-0000{n % 2 + 1}-of-00002.bin" for n, name in enumerate(state)}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": shards}))
    report = paramscope.inspect(str(tmp_path))
    assert report.source.kind == "safetensors"
    assert_matches_state_dict(report, state, model)
    assert not any("torch" in note for note in report.notes)
    torch.save({name: state[name] for name, shard in shards.items() if "00001" in shard},
               tmp_path / "pytorch_model-00001-of-00002.bin")  # fmt: skip
    assert (
        "the directory also holds torch weights: only the safetensors ones are read"
        in paramscope.inspect(str(tmp_path)).notes
    )


def test_directory_with_usual_weight_names_reads_only_those(tmp_path: Path) -> None:
    model = Mixed()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save({"extra.weight": torch.zeros(5, 5)}, tmp_path / "extra_head.pt")
    report = paramscope.inspect(str(tmp_path))
    assert report.source.files == (str(tmp_path / "model.pt"),)
    assert_matches_state_dict(report, model.state_dict(), model)
    assert (
        "not read: extra_head.pt (not a usual weight file name, unlike the files read; inspect it on its own to count "
        "it)"
    ) in report.notes


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_directory_of_two_weight_files_without_an_index_says_both_are_counted(tmp_path: Path, suffix: str) -> None:
    # shards without an index: both are counted, and a note says so, in either format
    stem = "pytorch_model" if suffix == ".bin" else "model"
    parts = {f"{stem}-00001-of-00002": {"w": torch.zeros(16, 16)}, f"{stem}-00002-of-00002": {"a": torch.zeros(2, 16)}}
    for name, part in parts.items():
        if suffix == ".bin":
            torch.save(part, tmp_path / f"{name}{suffix}")
        else:
            safetensors.torch.save_file(part, tmp_path / f"{name}{suffix}")
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(t.numel() for part in parts.values() for t in part.values())  # 288
    expected = (
        f"no index file: all 2 torch weight files in {tmp_path} are counted (pytorch_model-00001-of-00002.bin, "
        "pytorch_model-00002-of-00002.bin)"
        if suffix == ".bin"
        else f"no index file: all 2 *.safetensors files in {tmp_path} are counted"
    )
    assert expected in report.notes
    assert not any(
        note.startswith("no index file") for note in paramscope.inspect(str(tmp_path / f"{name}{suffix}")).notes
    )


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_directory_of_shards_without_an_index_and_a_shard_missing_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    # shards 1 and 3 of 3 and no index: counted, they passed for the whole model, exit 0; split GGUF files with a
    # part missing are refused so
    stem = "pytorch_model" if suffix == ".bin" else "model"
    for number in (1, 3):
        part, path = {f"w{number}": torch.zeros(4, 4)}, tmp_path / f"{stem}-{number:05d}-of-00003{suffix}"
        torch.save(part, path) if suffix == ".bin" else safetensors.torch.save_file(part, path)
    assert_error(run(capsys, "inspect", str(tmp_path)),
                 f"{tmp_path}: 1 of the 3 shards of {stem}-NNNNN-of-00003{suffix} is not there "
                 f"({stem}-00002-of-00003{suffix}), and no index file names what each holds: the files are part of a "
                 "checkpoint")  # fmt: skip
    # one shard named on its own is counted alone, as asked
    assert paramscope.inspect(str(tmp_path / f"{stem}-00001-of-00003{suffix}")).totals.params == 16


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_directory_with_the_single_weight_file_reads_it_alone_as_from_pretrained(tmp_path: Path, suffix: str) -> None:
    # from_pretrained reads model.safetensors (pytorch_model.bin) alone, whatever else the directory holds: an
    # adapter saved beside the model, or the same weights under Mistral's and Meta's names, which counted twice
    import transformers

    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    if suffix == ".bin":  # transformers 5 saves safetensors only, and still reads pytorch_model.bin
        config.save_pretrained(tmp_path)
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    else:
        model.save_pretrained(tmp_path)
    single = "pytorch_model.bin" if suffix == ".bin" else "model.safetensors"
    state = {name.replace("model.", "", 1): t.clone() for name, t in model.state_dict().items()}  # other names
    others = (["adapter_model.bin", "consolidated.00.pth"] if suffix == ".bin"
              else ["adapter_model.safetensors", "consolidated.safetensors"])  # fmt: skip
    for name, part in zip(others, [{"a": torch.zeros(2, 16)}, state], strict=True):
        if suffix == ".bin":
            torch.save(part, tmp_path / name)
        else:
            safetensors.torch.save_file(part, tmp_path / name)
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path)
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == sum(p.numel() for p in loaded.parameters()) == model.num_parameters()
    assert report.source.files[0] == str(tmp_path / single)
    assert (
        f"not read: {', '.join(others)} (from_pretrained reads {single}, when the directory holds one, before any "
        "index or other file)"
    ) in report.notes
    assert not any(note.startswith("no index file") for note in report.notes)


def test_directory_with_an_index_names_the_files_it_does_not_read(tmp_path: Path) -> None:
    model = Mixed()
    state = model.state_dict()
    names = list(state)
    save_shards(
        tmp_path, state, {"pytorch_model-00001-of-00002.bin": names[:3], "pytorch_model-00002-of-00002.bin": names[3:]}
    )
    torch.save(TrainingArguments(), tmp_path / "training_args.bin")
    torch.save({"extra": torch.zeros(3)}, tmp_path / "adapter_model.bin")
    report = paramscope.inspect(str(tmp_path))
    assert_matches_state_dict(report, state, model)
    assert "not read: adapter_model.bin (not a shard that pytorch_model.bin.index.json names)" in report.notes
    assert "not read: training_args.bin (training state saved beside the weights, not the model)" in report.notes
    # the same weights unsharded: from_pretrained reads pytorch_model.bin before the index, and so does paramscope
    torch.save(state, tmp_path / "pytorch_model.bin")
    report = paramscope.inspect(str(tmp_path))
    assert_matches_state_dict(report, state, model)
    assert report.source.files[0] == str(tmp_path / "pytorch_model.bin")
    assert (
        "not read: adapter_model.bin, pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin, "
        "pytorch_model.bin.index.json (from_pretrained reads pytorch_model.bin, when the directory holds one, before "
        "any index or other file)"
    ) in report.notes
    # two indexes are two checkpoints, refused; beside pytorch_model.bin, neither is read, as the safetensors reader
    # reads model.safetensors
    (tmp_path / "pytorch_model.fp16.bin.index.json").write_text((tmp_path / "pytorch_model.bin.index.json").read_text())
    report = paramscope.inspect(str(tmp_path))
    assert_matches_state_dict(report, state, model)
    assert any(note.endswith("pytorch_model.bin.index.json, pytorch_model.fp16.bin.index.json (from_pretrained reads "
                             "pytorch_model.bin, when the directory holds one, before any index or other "
                             "file)")
               for note in report.notes)  # fmt: skip
    assert "not read: training_args.bin (training state saved beside the weights, not the model)" in report.notes


def test_directory_without_usual_weight_names_reads_every_file_but_training_state(tmp_path: Path) -> None:
    model = Mixed()
    state = model.state_dict()
    names = list(state)
    torch.save({name: state[name] for name in names[:3]}, tmp_path / "part-a.pt")
    torch.save({name: state[name] for name in names[3:]}, tmp_path / "part-b.pt")
    torch.save(TrainingArguments(), tmp_path / "training_args.bin")
    report = paramscope.inspect(str(tmp_path))
    assert report.source.files == (str(tmp_path / "part-a.pt"), str(tmp_path / "part-b.pt"))
    assert_matches_state_dict(report, state, model)
    assert "not read: training_args.bin (training state saved beside the weights, not the model)" in report.notes


def test_directory_of_two_epochs_one_file_each(tmp_path: Path) -> None:
    """epoch1.pt and epoch2.pt beside each other are refused (tests/test_checkpoint_errors.py); each alone is the
    model, and the refusal is what keeps the directory from reading as a model twice as large."""
    model = Mixed()
    for epoch in (1, 2):
        torch.save(model.state_dict(), tmp_path / f"epoch{epoch}.pt")
        assert_matches_state_dict(paramscope.inspect(str(tmp_path / f"epoch{epoch}.pt")), model.state_dict(), model)
    with pytest.raises(paramscope.ParamscopeError, match="look like separate checkpoints"):
        paramscope.inspect(str(tmp_path))


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter: torch.distributed.tensor and torch._dynamo not imported yet."""
    return run_in_a_new_process(*argv, timeout=SUBPROCESS_TIMEOUT)


def fresh_torch_load(path: Path) -> subprocess.CompletedProcess[str]:
    code = f"import torch; torch.load({str(path)!r}, weights_only=True)"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False
    )


# Rank 0 of a world of 2 (torch's fake process group: no peer needed) saves its state dict of DTensors: half of the
# row-sharded weight, all of the replicated bias, and a head tied to the weight.
SAVE_DTENSORS = """
import json, sys
import torch
import torch.distributed as dist
try:
    from torch.testing._internal.distributed.fake_pg import FakeStore
except ImportError:
    sys.exit(77)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard

dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
mesh = init_device_mesh("cpu", (2,))
weight = DTensor.from_local(torch.randn(3, 4), mesh, [Shard(0)], run_check=False)
bias = DTensor.from_local(torch.randn(6, dtype=torch.bfloat16), mesh, [Replicate()], run_check=False)
torch.save({"fc.weight": weight, "fc.bias": bias, "head.weight": weight}, sys.argv[1])
print(json.dumps({"fc.weight": [list(weight.shape), list(weight.to_local().shape)], "fc.bias": [list(bias.shape)]}))
dist.destroy_process_group()
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch has no torch.distributed")
def test_dtensor_state_dict_counts_the_global_tensors(tmp_path: Path) -> None:
    path = tmp_path / "rank0.pt"
    saved = subprocess.run(
        [sys.executable, "-c", SAVE_DTENSORS, str(path)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if saved.returncode == 77:
        pytest.skip("torch's fake process group (torch.testing._internal.distributed.fake_pg) is not available")
    assert saved.returncode == 0, saved.stderr
    shapes = json.loads(saved.stdout)
    assert shapes == {"fc.weight": [[6, 4], [3, 4]], "fc.bias": [[6]]}  # the file holds half of fc.weight
    # the control: a process that has not imported torch.distributed.tensor cannot load it with weights_only
    assert "``torch.distributed.tensor`` must be imported" in fresh_torch_load(path).stderr
    result = run_cli("inspect", str(path), "--format", "json")
    assert (result.returncode, result.stderr) == (0, "")  # no device-mesh warning either
    data = json.loads(result.stdout)
    assert data["totals"]["params"] == 6 * 4 + 6
    assert data["totals"]["param_bytes"] == 6 * 4 * 4 + 6 * 2
    assert [(t["name"], t["shape"], t["dtype"], t["aliases"]) for t in data["tensors"]] == [
        ("fc.weight", [6, 4], "float32", ["head.weight"]),
        ("fc.bias", [6], "bfloat16", []),
    ]
    assert data["notes"][0] == (
        "2 DTensor(s) counted at their global shape, though a rank's file holds only its shard of each (fc.weight: "
        "Shard(0) on device mesh (2,), [3, 4] of it in this file)"
    )


@pytest.mark.parametrize("layout", ["jagged", "strided"])
def test_nested_tensors_count_their_values(tmp_path: Path, layout: str) -> None:
    parts = [torch.zeros(2, 4), torch.zeros(3, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the strided layout is a prototype, and says so
        nested = torch.nested.nested_tensor(parts, layout=getattr(torch, layout))
    path = tmp_path / "model.pt"
    torch.save({"emb": nested, "fc.weight": torch.zeros(3, 4)}, path)
    if layout == "jagged":  # the control: its pickle needs torch._dynamo imported, which a fresh process has not
        assert "must be imported to load nested jagged tensors" in fresh_torch_load(path).stderr
    result = run_cli("inspect", str(path), "--format", "json")
    assert (result.returncode, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    values = sum(part.numel() for part in parts)
    assert data["totals"]["params"] == values + 12
    emb = data["tensors"][0]
    shape = [5, 4] if layout == "jagged" else [20]  # the values: rows of the components stacked, or all flattened
    assert (emb["name"], emb["numel"], emb["shape"]) == ("emb", values, shape)
    assert data["notes"][0] == (
        "1 nested tensor(s) counted as their stored values, shown with the values' shape (a ragged dimension has no "
        "single size): emb"
    )


# ---------------------------------------------------------------------------------------------------------------------
# 5. GGUF


GGUF_TENSORS: dict[str, tuple[gguf.GGMLQuantizationType, tuple[int, ...]]] = {
    "token_embd.weight": (GGML.Q4_0, (12, 64)),
    "blk.0.attn_q.weight": (GGML.Q8_0, (8, 96)),
    "blk.0.ffn_up.weight": (GGML.Q4_K, (3, 512)),
    "blk.0.ffn_down.weight": (GGML.Q6_K, (5, 256)),
    "blk.0.attn_k.weight": (GGML.F16, (6, 32)),
    "blk.0.attn_v.weight": (GGML.BF16, (6, 32)),
    "blk.0.ffn_gate.weight": (GGML.MXFP4, (4, 64)),
    "blk.0.attn_norm.weight": (GGML.F32, (32,)),
}
PLAIN_GGML = {GGML.F32: "float32", GGML.F16: "float16", GGML.BF16: "bfloat16"}


def write_gguf(path: Path, tensors: Mapping[str, tuple[gguf.GGMLQuantizationType, tuple[int, ...]]], **kv: str) -> None:
    """A GGUF file whose tensors have the given GGML types and (PyTorch-order) shapes, data all zeros."""
    writer = gguf.GGUFWriter(str(path), kv.get("architecture", "llama"))
    if "name" in kv:
        writer.add_name(kv["name"])
    for name, (kind, shape) in tensors.items():
        if kind == GGML.F32:
            data = np.zeros(shape, dtype=np.float32)
        elif kind == GGML.F16:
            data = np.zeros(shape, dtype=np.float16)
        else:  # block formats (and BF16) are written as their raw bytes
            data = np.zeros(quant_shape_to_byte_shape(shape, kind), dtype=np.uint8)
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def ggml_bytes(kind: gguf.GGMLQuantizationType, numel: int) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[kind]
    return -(-numel // block) * type_size


def test_gguf_logical_counts_and_block_bytes(tmp_path: Path) -> None:
    path = tmp_path / "tiny-Q4_K_M.gguf"
    write_gguf(path, GGUF_TENSORS, name="tiny")
    report = paramscope.inspect(str(path))
    expected = {
        name: (shape, math.prod(shape), PLAIN_GGML.get(kind, kind.name), ggml_bytes(kind, math.prod(shape)))
        for name, (kind, shape) in GGUF_TENSORS.items()
    }
    assert {r.name: (r.shape, r.numel, r.dtype, r.bytes) for r in report.tensors} == expected
    # the gguf package's own reader agrees on the bytes each tensor occupies
    reader = gguf.GGUFReader(path)
    assert {t.name: int(t.n_bytes) for t in reader.tensors} == {n: e[3] for n, e in expected.items()}
    # GGUF lists dimensions innermost first; the report gives PyTorch's (out, in)
    assert {t.name: tuple(t.shape.tolist())[::-1] for t in reader.tensors} == {n: e[0] for n, e in expected.items()}
    assert report.totals.params == sum(e[1] for e in expected.values())
    assert report.totals.param_bytes == sum(e[3] for e in expected.values())
    assert (report.totals.buffers, report.totals.trainable, report.totals.frozen) == (0, None, None)
    assert (report.source.kind, report.source.files) == ("gguf", (str(path),))
    assert f"{path.name}: GGUF model tiny, architecture llama" in report.notes
    assert_tree_adds_up(report)


def test_gguf_without_output_head_is_tied(tmp_path: Path) -> None:
    note = "no output.weight: llama.cpp then uses token_embd.weight as the output head (tied), so it is counted once"
    path = tmp_path / "tied.gguf"
    write_gguf(path, GGUF_TENSORS, architecture="qwen2")
    report = paramscope.inspect(str(path))
    assert note in report.notes
    assert f"{path.name}: GGUF model (unnamed), architecture qwen2" in report.notes

    untied = tmp_path / "untied.gguf"
    write_gguf(untied, {**GGUF_TENSORS, "output.weight": (GGML.Q6_K, (12, 256))})
    report = paramscope.inspect(str(untied))
    assert note not in report.notes
    assert report.totals.params == sum(math.prod(s) for _, s in GGUF_TENSORS.values()) + 12 * 256


def write_gguf_decoder(path: Path, architecture: str = "llama", **hyper: Any) -> None:
    """A GGUF file with one tensor and the attention hyperparameters llama.cpp reads (GGUF specification names)."""
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(hyper.get("layers", 4))
    writer.add_head_count(hyper.get("heads", 4))
    writer.add_embedding_length(hyper.get("hidden", 32))
    keys = {"kv_heads": "head_count_kv", "window": "sliding_window", "causal": "causal_attention",
            "latent": "kv_lora_rank", "rope": "rope_dimension_count"}  # fmt: skip
    for name, value in hyper.items():
        if name not in ("layers", "heads", "hidden"):
            getattr(writer, f"add_{keys.get(name, name)}")(value)  # GGUFWriter.add_key_length, ...
    writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize(
    ("architecture", "causal", "encoder"),
    [
        ("bert", False, True),  # an embedding model: gguf's BERT tensors include no output.weight
        ("nomic-bert", False, True),
        ("llada", False, False),  # a diffusion model, not causal, with an output head (tied when it is absent)
        ("llama", True, False),
    ],
)
def test_gguf_encoder_has_no_output_head(tmp_path: Path, architecture: str, causal: bool, encoder: bool) -> None:
    path = tmp_path / "model.gguf"
    write_gguf_decoder(path, architecture, causal=causal)
    has_output = (
        gguf.MODEL_TENSOR.OUTPUT
        in gguf.MODEL_TENSORS[next(kind for kind, name in gguf.MODEL_ARCH_NAMES.items() if name == architecture)]
    )
    assert has_output is not encoder  # what llama.cpp can load for the architecture, as gguf lists it
    report = paramscope.inspect(str(path))
    tied = "no output.weight: llama.cpp then uses token_embd.weight as the output head (tied), so it is counted once"
    headless = (
        "model.gguf: an encoder (its attention is not causal), which has no output head in llama.cpp: "
        "token_embd.weight is its input embeddings alone"
    )
    assert (tied in report.notes, headless in report.notes) == (not encoder, encoder)
    assert report.totals.params == 64 * 32


def llama_cpp_kv_bytes(layers: int, tokens: int, kv_heads: int, head_dim: int, value_dim: int | None = None) -> int:
    # llama.cpp's KV cache: n_layer × n_ctx × (n_embd_k_gqa + n_embd_v_gqa) × 2 B (F16, its default cache type),
    # n_embd_k_gqa = key_length × head_count_kv, n_embd_v_gqa = value_length × head_count_kv
    return layers * tokens * (head_dim + (value_dim or head_dim)) * kv_heads * 2


@pytest.mark.parametrize(
    ("hyper", "expected"),
    [
        ({"kv_heads": 2}, llama_cpp_kv_bytes(4, 2048, 2, 8)),  # head_dim: embedding_length / head_count
        ({}, llama_cpp_kv_bytes(4, 2048, 4, 8)),  # head_count_kv defaults to head_count
        ({"kv_heads": 2, "key_length": 16, "value_length": 16}, llama_cpp_kv_bytes(4, 2048, 2, 16)),
        # a key length alone: values keep embedding_length / head_count; or lengths of their own
        ({"kv_heads": 2, "key_length": 16}, llama_cpp_kv_bytes(4, 2048, 2, 16, 8)),
        ({"kv_heads": 2, "key_length": 16, "value_length": 4}, llama_cpp_kv_bytes(4, 2048, 2, 16, 4)),
        ({"kv_heads": 2, "heads": [4, 4, 4, 4]}, llama_cpp_kv_bytes(4, 2048, 2, 8)),  # per layer, all alike
        # Qwen3-Next: one layer in full_attention_interval attends, the others are recurrent
        ({"kv_heads": 2, "full_attention_interval": 2}, llama_cpp_kv_bytes(2, 2048, 2, 8)),
        # Gemma 3n: the last shared_kv_layers layers reuse earlier layers' keys and values
        ({"kv_heads": 2, "shared_kv_layers": 1}, llama_cpp_kv_bytes(3, 2048, 2, 8)),
        # which layers slide, said by the file: those hold the window and llama.cpp's 512-token ubatch, padded to
        # 256 cells (16 + 512 = 528: 768 cells)
        (
            {"kv_heads": 2, "window": 16, "sliding_window_pattern": [True, True, True, False]},
            llama_cpp_kv_bytes(3, 768, 2, 8) + llama_cpp_kv_bytes(1, 2048, 2, 8),
        ),
        # a pattern in which no layer slides: every layer at full length
        ({"kv_heads": 2, "window": 16, "sliding_window_pattern": [False] * 4}, llama_cpp_kv_bytes(4, 2048, 2, 8)),
        # a window whose cells, with a 512-token ubatch, reach the context's: every layer at full length, exact
        ({"kv_heads": 2, "window": 1600}, llama_cpp_kv_bytes(4, 2048, 2, 8)),
        ({"kv_heads": [0, 2, 0, 2]}, llama_cpp_kv_bytes(2, 2048, 2, 8)),  # a hybrid: recurrent layers have none
        # OpenELM: each layer its own query and key/value heads, summed layer by layer
        (
            {"heads": [4, 4, 8, 8], "kv_heads": [1, 1, 2, 4], "key_length": 8, "value_length": 8},
            sum(llama_cpp_kv_bytes(1, 2048, count, 8) for count in (1, 1, 2, 4)),
        ),
        # without head_count_kv, each layer's own head count; a value length of n_embd / the first layer's heads
        (
            {"heads": [4, 4, 8, 8], "key_length": 16},
            sum(llama_cpp_kv_bytes(1, 2048, count, 16, 32 // 4) for count in (4, 4, 8, 8)),
        ),
        # DeepSeek's MLA: llama.cpp caches the latent and the rotary key, kv_lora_rank + n_rot per token and layer
        ({"latent": 16, "rope": 8, "key_length_mla": 24, "value_length_mla": 16}, 4 * 2048 * (16 + 8) * 2),
    ],
    ids=[
        "gqa",
        "default-kv-heads",
        "key-length",
        "key-length-alone",
        "key-value-lengths",
        "head-count-array",
        "full-attention-interval",
        "shared-kv",
        "sliding-pattern",
        "sliding-pattern-none",
        "window-past-context",
        "hybrid",
        "per-layer-heads",
        "per-layer-heads-default-kv",
        "mla",
    ],
)
def test_gguf_kv_cache_from_its_metadata(tmp_path: Path, hyper: dict[str, Any], expected: int) -> None:
    path = tmp_path / "model.gguf"
    write_gguf_decoder(path, **hyper)
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    item = plan.item("KV cache")
    assert (item.total_bytes, item.label) == (expected, "derived")


def test_gguf_sliding_window_is_an_upper_bound(tmp_path: Path) -> None:
    path = tmp_path / "mistral.gguf"  # an architecture whose sliding layers llama.cpp's code does not name either
    write_gguf_decoder(path, "llama", kv_heads=2, window=16)
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    item = plan.item("KV cache")
    assert (item.total_bytes, item.label) == (llama_cpp_kv_bytes(4, 2048, 2, 8), "estimate")
    assert (
        "the GGUF file declares a 16-token sliding window but not which layers use it (llama.cpp's code decides): "
        "the KV cache counts every layer at full length, an upper bound"
    ) in plan.notes


def test_gguf_llama4_chunked_layers_are_an_upper_bound(tmp_path: Path) -> None:
    path = tmp_path / "scout.gguf"
    write_gguf_decoder(path, "llama4", kv_heads=2)
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert (plan.item("KV cache").total_bytes, plan.item("KV cache").label) == (llama_cpp_kv_bytes(4, 2048, 2, 8),
                                                                                 "estimate")  # fmt: skip
    assert (
        "llama.cpp gives some layers of this architecture chunked attention in its code, which the GGUF file does "
        "not describe: the KV cache counts every layer at full length, an upper bound"
    ) in plan.notes


def test_gguf_vision_projector_beside_the_model_is_passed_over(tmp_path: Path) -> None:
    write_gguf_decoder(tmp_path / "qwen-q4.gguf", kv_heads=2)
    projector = gguf.GGUFWriter(str(tmp_path / "mmproj-qwen-f16.gguf"), "clip")  # sorts first; no decoder keys
    projector.add_tensor("v.patch_embd.weight", np.zeros((8, 8), dtype=np.float32))
    projector.write_header_to_file()
    projector.write_kv_data_to_file()
    projector.write_tensors_to_file()
    projector.close()
    plan = paramscope.memory(str(tmp_path), seq=2048).memory
    assert plan is not None
    assert plan.item("KV cache").total_bytes == llama_cpp_kv_bytes(4, 2048, 2, 8)


def test_gguf_beside_a_config_json_still_runs_its_forward(tmp_path: Path) -> None:
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
              "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_gguf_decoder(tmp_path / "model.gguf", kv_heads=2)
    plan = paramscope.memory(str(tmp_path / "model.gguf"), seq=2048).memory
    assert plan is not None
    assert [item.name for item in plan.items] == ["weights", "KV cache", "activations"]
    assert plan.item("KV cache").total_bytes == llama_cpp_kv_bytes(4, 2048, 2, 8)


@pytest.mark.parametrize("target", ["directory", "file"])
def test_check_of_a_gguf_file_against_its_config_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str
) -> None:
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
              "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_gguf_decoder(tmp_path / "model.gguf")
    shown = str(tmp_path if target == "directory" else tmp_path / "model.gguf")
    assert_error(
        run(capsys, "inspect", shown, "--check"),
        f"{shown}: --check compares weights with the config's model by transformers' tensor names, and a GGUF file "
        "names its tensors as llama.cpp does (token_embd.weight, blk.0.attn_q.weight); check the safetensors it was "
        "converted from instead",
    )


def test_gguf_embedding_model_has_no_kv_cache(tmp_path: Path) -> None:
    path = tmp_path / "bert.gguf"
    write_gguf_decoder(path, "bert", causal=False)
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert [item.name for item in plan.items] == ["weights"]
    assert (
        "no KV cache item: bert (GGUF, non-causal attention) is not a model that generates (a causal LM or an "
        "encoder-decoder), so it keeps no generation cache"
    ) in plan.notes


def test_gguf_through_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    write_gguf(path, GGUF_TENSORS)
    data = run_json(capsys, path, "--tensors")
    assert data["totals"]["params"] == sum(math.prod(s) for _, s in GGUF_TENSORS.values())
    assert data["source"]["kind"] == "gguf"
    assert {t["name"]: t["shape"] for t in data["tensors"]} == {n: list(s) for n, (_, s) in GGUF_TENSORS.items()}
    code, out, err = run(capsys, "inspect", str(path), "--format", "csv", "--depth", "1")
    assert (code, err) == (0, "")
    assert {row["path"] for row in csv.DictReader(io.StringIO(out))} == module_paths(GGUF_TENSORS, 1)


def test_two_gguf_quantisations_in_one_directory_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_gguf(tmp_path / "model-Q4_0.gguf", GGUF_TENSORS)
    write_gguf(tmp_path / "model-Q8_0.gguf", GGUF_TENSORS)
    first = next(iter(GGUF_TENSORS))  # in the order the files hold them
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        f"{tmp_path}: tensor {first!r} is in both model-Q4_0.gguf and model-Q8_0.gguf: these look like separate "
        "checkpoints; inspect one file",
    )


def test_gguf_split_model_in_a_directory_needs_all_its_parts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    part = tmp_path / "model-00001-of-00002.gguf"
    write_gguf(part, GGUF_TENSORS)
    assert_error(run(capsys, "inspect", str(tmp_path)), f"{part}: part of a 2-file split, but 1 part(s) found")


def split_gguf(directory: Path, stem: str, parts: int, names: Sequence[int] | None = None) -> list[Path]:
    """Write the parts of a split GGUF model (llama.cpp's ``STEM-00001-of-0000N.gguf``), one tensor each; ``names``
    gives the part numbers in the file names, 1 to ``parts`` unless told otherwise."""
    paths = []
    for number in names or range(1, parts + 1):
        path = directory / f"{stem}-{number:05d}-of-{parts:05d}.gguf"
        write_gguf(path, {f"blk.{number}.attn_q.weight": (GGML.F32, (4, 8))})
        paths.append(path)
    return paths


def test_gguf_split_model_beside_another_split_whose_name_starts_alike(tmp_path: Path) -> None:
    # llama.cpp names part i "STEM-0000i-of-0000N.gguf": the parts of "m-Q4_K_M" are no parts of "m"
    first = split_gguf(tmp_path, "m", 2)[0]
    split_gguf(tmp_path, "m-Q4_K_M", 2)
    report = paramscope.inspect(str(first))
    assert report.source.files == tuple(str(tmp_path / f"m-0000{i}-of-00002.gguf") for i in (1, 2))
    assert report.totals.params == 2 * 32


def test_gguf_split_model_is_named_once(tmp_path: Path) -> None:
    # from review: each part's header names the model (as gguf-split copies it), and each was noted as a model of its
    # own, as several models in a directory are
    first = split_gguf(tmp_path, "m", 3)[0]
    for target in (first, tmp_path):
        report = paramscope.inspect(str(target))
        assert len(report.source.files) == 3
        assert [note for note in report.notes if "GGUF model" in note] == [
            "m-00001-of-00003.gguf: GGUF model (unnamed), architecture llama"
        ]


def test_gguf_split_model_with_a_part_missing_and_one_past_the_count(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # parts 1 and 3 "of 2": two files, but part 2 is missing and part 3 is no part of the split
    first, third = split_gguf(tmp_path, "m", 2, names=(1, 3))
    assert_error(run(capsys, "inspect", str(first)), f"{first}: part of a 2-file split, but 1 part(s) found")
    assert_error(run(capsys, "inspect", str(third)), f"{third}: part 3 of a 2-file split, which has no such part")


def write_gguf_part(path: Path, number: int, count: int) -> None:
    """A part of a split model as llama.cpp's gguf-split writes it: ``split.no`` (from 0) and ``split.count`` in its
    header, one tensor."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint16("split.no", number)
    writer.add_uint16("split.count", count)
    writer.add_tensor(f"blk.{number}.attn_q.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_models_in_one_directory_are_counted_together_with_a_note(tmp_path: Path) -> None:
    # a model and its multimodal projector, or two models: each file's tensors counted, and said to be several models
    parts = split_gguf(tmp_path, "m", 3)
    write_gguf(tmp_path / "mmproj.gguf", GGUF_TENSORS)
    report = paramscope.inspect(str(tmp_path))
    files = [*parts, tmp_path / "mmproj.gguf"]
    assert report.totals.params == sum(int(tensor.n_elements) for f in files for tensor in gguf.GGUFReader(f).tensors)
    assert report.notes[0] == (
        f"2 GGUF models in {tmp_path} are counted together (m-00001-of-00003.gguf (3 parts), mmproj.gguf); inspect "
        "one file, or a split model's first part, to count it alone"
    )
    assert not any("counted together" in note for note in paramscope.inspect(str(parts[0])).notes)


def test_gguf_split_part_whose_header_says_another_split_than_its_name_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # llama.cpp finds the other parts by the first part's name and the count in its header: they must agree
    for number in range(3):
        write_gguf_part(tmp_path / f"m-{number + 1:05d}-of-00003.gguf", number, 3)
    assert paramscope.inspect(str(tmp_path)).totals.params == 3 * 32
    second = tmp_path / "m-00002-of-00003.gguf"
    write_gguf_part(second, 1, 5)
    assert_error(
        run(capsys, "inspect", str(tmp_path)),
        f"{second}: its header says part 2 of a 5-file split, its name part 2 of 3",
    )
    write_gguf_part(second, 2, 3)
    assert_error(
        run(capsys, "inspect", str(second)), f"{second}: its header says part 3 of a 3-file split, its name part 2 of 3"
    )
    # llama.cpp reads no other part of a file whose header says it is one file
    write_gguf_part(second, 0, 1)
    assert_error(
        run(capsys, "inspect", str(tmp_path / "m-00001-of-00003.gguf")),
        f"{second}: its header says a file of its own (split.count 1), its name part 2 of 3",
    )


def test_a_gguf_split_part_renamed_is_counted_alone_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    write_gguf_part(path, 0, 3)
    report = paramscope.inspect(str(path))
    assert report.totals.params == 32
    assert report.notes[0] == (
        "model.gguf: part 1 of a 3-file split (its header says), under a name that is no split part's: only this "
        "part is counted; inspect the split's first part, named as llama.cpp names it, to count the model"
    )


def test_gguf_in_big_endian_byte_order(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_token_list(["a", "bb", "ccc"])  # an array of strings, walked before the reader reads it
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = paramscope.inspect(str(path))
    assert [(r.name, r.shape, r.dtype) for r in report.tensors] == [("token_embd.weight", (4, 8), "float32")]


def test_gguf_with_a_tokenizer_of_200_000_tokens(tmp_path: Path) -> None:
    # a tokenizer as large as Gemma 3's (262,144 tokens, a score and a type for each): its arrays are walked, not read
    path = tmp_path / "big-vocab.gguf"
    vocabulary = 200_000
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("big vocabulary")
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv([2, 1])  # per layer, read as the KV cache's sizes
    writer.add_embedding_length(32)
    writer.add_token_list([f"token{i}" for i in range(vocabulary)])
    writer.add_token_scores([float(-i) for i in range(vocabulary)])
    writer.add_token_types([1] * vocabulary)
    writer.add_tensor("token_embd.weight", np.zeros((vocabulary // 1000, 32), dtype=np.float16))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros(quant_shape_to_byte_shape((32, 256), GGML.Q8_0), dtype=np.uint8),
                      raw_dtype=GGML.Q8_0)  # fmt: skip
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = paramscope.inspect(str(path))
    assert {r.name: (r.shape, r.dtype, r.bytes) for r in report.tensors} == {
        "blk.0.attn_q.weight": ((32, 256), "Q8_0", 32 * 256 // 32 * 34),
        "token_embd.weight": ((200, 32), "float16", 200 * 32 * 2),
    }
    assert (report.totals.params, report.totals.param_bytes) == (32 * 256 + 200 * 32, 32 * 8 * 34 + 200 * 32 * 2)
    assert f"{path.name}: GGUF model big vocabulary, architecture llama" in report.notes
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert plan.item("KV cache").total_bytes == llama_cpp_kv_bytes(1, 2048, 2, 8) + llama_cpp_kv_bytes(1, 2048, 1, 8)


def write_gguf_metadata(path: Path, architecture: str, values: Mapping[str, Any]) -> None:
    """A GGUF file with one tensor and the given ``{arch}.…`` metadata, each value written as its Python type is (a
    str as a string, a negative int as int32, a list of bools or ints as an array), whatever llama.cpp expects."""
    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in values.items():
        name = f"{architecture}.{key}"
        if isinstance(value, list) and any(isinstance(item, int) and item < 0 for item in value):
            writer.add_key_value(name, value, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
        elif isinstance(value, int) and not isinstance(value, bool):
            (writer.add_int32 if value < 0 else writer.add_uint32)(name, value)
        else:
            writer.add_key_value(name, value, gguf.GGUFValueType.get_type(value))
    writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


LLAMA_SHAPE = {"block_count": 4, "attention.head_count": 4, "embedding_length": 32}


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        # llama.cpp reads each of these with its type checked, and refuses a file whose value has another
        ({"attention.head_count_kv": "2"}, "llama.attention.head_count_kv is '2'"),
        ({"attention.head_count_kv": -2}, "llama.attention.head_count_kv is -2"),
        ({"attention.head_count_kv": 0}, "llama.attention.head_count_kv is 0"),
        ({"attention.key_length": "16"}, "llama.attention.key_length is '16'"),
        ({"attention.key_length": 0}, "llama.attention.key_length is 0"),
        ({"attention.value_length": 2.5}, "llama.attention.value_length is 2.5"),
        ({"attention.sliding_window": "16"}, "llama.attention.sliding_window is '16'"),
        ({"block_count": "4"}, "llama.block_count is '4'"),
        ({"block_count": 100_001}, "llama.block_count is 100,001, more layers than any model has (at most 100,000)"),
        ({"embedding_length": -32}, "llama.embedding_length is -32"),
        ({"attention.head_count": 0}, "llama.attention.head_count is 0"),
        ({"attention.head_count": 64}, "llama.embedding_length is 32, less than its 64 attention heads"),
        ({"attention.head_count_kv": [2, 2]}, "llama.attention.head_count_kv lists 2 values for 4 layers"),
        ({"attention.head_count_kv": [2, -1, 2, 2]}, "llama.attention.head_count_kv lists -1"),
        ({"attention.head_count_kv": [0, 0, 0, 0]}, "llama.attention.head_count_kv lists 0 for every layer"),
        ({"attention.head_count": [4, 4]}, "llama.attention.head_count lists 2 values for 4 layers"),
        (
            {"attention.sliding_window": 16, "attention.sliding_window_pattern": [True, False]},
            "llama.attention.sliding_window_pattern lists 2 values for 4 layers",
        ),
        # a key missing: the plan had said "no decoder config", and left nothing out
        ({"block_count": None}, "llama.block_count is missing"),
        ({"attention.head_count": None}, "llama.attention.head_count is missing"),
        ({"block_count": None, "embedding_length": None}, "llama.block_count and llama.embedding_length are missing"),
    ],
    ids=str.split(
        "kv-string kv-negative kv-zero key-length-string key-length-zero value-length-float window-string "
        "layers-string layers-past-any-model hidden-negative heads-zero heads-past-hidden kv-array-short "
        "kv-array-negative kv-array-zeros heads-array-short pattern-short layers-missing heads-missing "
        "layers-and-hidden-missing"
    ),
)
def test_gguf_metadata_that_cannot_size_the_kv_cache_is_said_so(
    tmp_path: Path, values: dict[str, Any], reason: str
) -> None:
    # the value was passed over for llama.cpp's default (4 kv heads, keys of 8) or made the file look like no decoder
    path = tmp_path / "model.gguf"
    given = {key: value for key, value in {**LLAMA_SHAPE, **values}.items() if value is not None}
    write_gguf_metadata(path, "llama", given)
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert [item.name for item in plan.items] == ["weights"]
    assert f"no KV cache item: the GGUF file's {reason}, which llama.cpp cannot size a KV cache from" in plan.notes
    assert plan.left_out == ("KV cache",)  # not sized (the activations: no model to run a forward on, a note says)


@pytest.mark.parametrize("architecture", ["mamba", "rwkv6"])
def test_gguf_recurrent_model_keeps_a_state_not_a_kv_cache(tmp_path: Path, architecture: str) -> None:
    # llama.cpp's Mamba and RWKV files write head_count 0: every layer keeps a recurrent state
    path = tmp_path / "model.gguf"
    write_gguf_metadata(path, architecture, {**LLAMA_SHAPE, "attention.head_count": 0})
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert [item.name for item in plan.items] == ["weights"]
    assert (
        f"no KV cache item: every layer of a GGUF {architecture} model keeps a fixed-size recurrent state, no keys "
        "and values per token"
    ) in plan.notes
    assert plan.left_out == ()  # a KV cache it does not keep is not left out


def test_gguf_file_of_no_decoder_has_no_kv_cache_and_leaves_none_out(tmp_path: Path) -> None:
    # a vision projector (llama.cpp's mmproj files, architecture "clip") gives none of a decoder's keys
    path = tmp_path / "mmproj.gguf"
    write_gguf_metadata(path, "clip", {"vision.block_count": 4, "vision.embedding_length": 32})
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert [item.name for item in plan.items] == ["weights"]
    assert "no KV cache item: the model has no decoder config to size it from" in plan.notes
    assert plan.left_out == ()


def test_gguf_deepseek2_converted_before_mla_caches_every_head(tmp_path: Path) -> None:
    # llama.cpp caches the MLA latent only where the file gives key_length_mla and value_length_mla (its is_mla());
    # a file converted before them (DeepSeek-V2/V3/R1 GGUFs of early 2025) runs as multi-head attention, each layer
    # caching head_count_kv × (key_length + value_length) per token
    def kv_cache_bytes(name: str, metadata: dict[str, Any]) -> int:
        write_gguf_metadata(tmp_path / name, "deepseek2", metadata)
        plan = paramscope.memory(str(tmp_path / name), seq=2048).memory
        assert plan is not None
        return plan.item("KV cache").total_bytes

    mha = {**LLAMA_SHAPE, "attention.head_count_kv": 4, "attention.key_length": 12, "attention.value_length": 8,
           "attention.kv_lora_rank": 16, "rope.dimension_count": 4}  # fmt: skip
    assert kv_cache_bytes("old.gguf", mha) == llama_cpp_kv_bytes(4, 2048, 4, 12, 8)
    # converted since: one key/value head, keys kv_lora_rank + n_rot long, values kv_lora_rank (whose cache llama.cpp
    # now takes from the keys'): the latent and the rotary key, kv_lora_rank + rope per token and layer
    mla = {**mha, "attention.head_count_kv": 1, "attention.key_length": 20, "attention.value_length": 16,
           "attention.key_length_mla": 12, "attention.value_length_mla": 8}  # fmt: skip
    assert kv_cache_bytes("new.gguf", mla) == 4 * 2048 * (16 + 4) * 2


@pytest.mark.parametrize(
    ("period", "sliding"),
    # llama.cpp's set_swa_pattern(n): layer i slides unless i % n == n - 1 (every n-th layer attends in full); 0:
    # every layer slides
    [(2, 2), (3, 3), (4, 3), (0, 4), (1, 0)],
)
def test_gguf_sliding_window_pattern_as_a_period(tmp_path: Path, period: int, sliding: int) -> None:
    path = tmp_path / "gemma3.gguf"
    write_gguf_metadata(path, "gemma3", {**LLAMA_SHAPE, "attention.head_count_kv": 2, "attention.sliding_window": 16,
                                         "attention.sliding_window_pattern": period})  # fmt: skip
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    item = plan.item("KV cache")
    # llama.cpp's sliding layers hold the 16-token window + a 512-token ubatch, padded to 256: 768 cells
    expected = llama_cpp_kv_bytes(sliding, 768, 2, 8) + llama_cpp_kv_bytes(4 - sliding, 2048, 2, 8)
    assert (item.total_bytes, item.label) == (expected, "derived")


@pytest.mark.parametrize(
    ("architecture", "values", "sliding", "cells", "notes"),
    [
        # llama.cpp's load_arch_hparams without sliding_window_pattern: set_swa_pattern(2) for gemma2, 6 for gemma3,
        # 5 for gemma3n, 4 for cohere2 (layer i slides unless i % n == n - 1); of 8 layers, 4, 7, 7 and 6 slide, each
        # holding the 16-token window + a 512-token ubatch, padded to 256: 768 cells
        ("gemma3", {"attention.sliding_window": 16}, 7, 768, []),
        ("gemma3n", {"attention.sliding_window": 16}, 7, 768, []),
        ("cohere2", {"attention.sliding_window": 16}, 6, 768, []),
        ("gemma2", {"attention.sliding_window": 16}, 4, 768, []),
        # Gemma 2 without sliding_window either: llama.cpp's default of 4096 tokens (+ 512: 4608 cells)
        ("gemma2", {}, 4, 4608, ["no gemma2.attention.sliding_window: llama.cpp's gemma2 code gives its sliding "
                                  "layers a 4,096-token window"]),
        # the file's own pattern wins over the architecture's
        ("gemma3", {"attention.sliding_window": 16, "attention.sliding_window_pattern": 2}, 4, 768, None),
    ],
    ids=["gemma3", "gemma3n", "cohere2", "gemma2", "gemma2-no-window", "gemma3-own-pattern"],
)  # fmt: skip
def test_gguf_sliding_window_pattern_from_llama_cpp_code(
    tmp_path: Path, architecture: str, values: dict[str, Any], sliding: int, cells: int, notes: list[str] | None
) -> None:
    path = tmp_path / "model.gguf"
    shape = {**LLAMA_SHAPE, "block_count": 8, "attention.head_count_kv": 2}
    write_gguf_metadata(path, architecture, {**shape, **values})
    plan = paramscope.memory(str(path), seq=8192).memory
    assert plan is not None
    item = plan.item("KV cache")
    expected = llama_cpp_kv_bytes(sliding, cells, 2, 8) + llama_cpp_kv_bytes(8 - sliding, 8192, 2, 8)
    assert (item.total_bytes, item.label) == (expected, "derived")
    said = [note for note in plan.notes if note.startswith(f"no {architecture}.")]
    period = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4}[architecture]
    pattern = (f"no {architecture}.attention.sliding_window_pattern: llama.cpp's {architecture} code gives one layer "
               f"in {period} full attention and slides the others")  # fmt: skip
    assert said == ([] if notes is None else [*notes, pattern])


def test_gguf_kv_cache_holds_the_cells_llama_cpp_allocates(tmp_path: Path) -> None:
    # Gemma 3's layout: 1024-token window, one layer in 6 in full. llama.cpp (llama_kv_cache_iswa) gives the sliding
    # layers GGML_PAD(min(n_ctx, n_swa + n_ubatch), 256) = GGML_PAD(1024 + 512, 256) = 1536 cells, as its log line
    # "creating SWA KV cache, size = 1536 cells" says for -c 8192; the 2 full layers the context's 8192
    path = tmp_path / "gemma3.gguf"
    write_gguf_metadata(path, "gemma3", {**LLAMA_SHAPE, "block_count": 12, "attention.head_count_kv": 2,
                                         "attention.sliding_window": 1024})  # fmt: skip
    plan = paramscope.memory(str(path), seq=8192).memory
    assert plan is not None
    item = plan.item("KV cache")
    # (10 × 1536 + 2 × 8192) cells × 2 kv heads × (8 + 8) × 2 B
    assert (item.total_bytes, item.label) == (2_031_616, "derived")
    assert item.formula == ("2 × 2 kv heads × 8 × (2 layers × 8,192 cells + 10 layers × 1,536 cells) × 1 × 2 B (10 "
                            "sliding layers hold 1,536 cells: the 1,024-token window + llama.cpp's 512-token ubatch, "
                            "padded to 256)")  # fmt: skip
    assert multiplied_out(item.formula) == item.total_bytes
    assert (
        "the KV cache's sliding-window layers are sized as llama.cpp allocates them with its defaults: the window and "
        "one ubatch (n_ubatch 512) of cells for each sequence (kv_unified off), padded to 256; --swa-full would give "
        "them the context's"
    ) in plan.notes
    # llama_context pads the context to 256 cells (-c 3000 -np 3: 1024 cells per sequence); the sliding layers'
    # 1536 cells are then more than the context's, which they never exceed
    plan = paramscope.memory(str(path), seq=1000, batch=3).memory
    assert plan is not None
    item = plan.item("KV cache")
    assert item.total_bytes == 12 * 1024 * 3 * 2 * (8 + 8) * 2
    assert item.formula == (
        "2 × 12 layers × 2 kv heads × 8 × 1,024 cells (1,000 tokens, padded to 256 by llama.cpp) × 3 × 2 B"
    )
    assert not [note for note in plan.notes if "sliding-window layers are sized" in note]  # none of them holds fewer


def test_gguf_claiming_more_layers_than_any_model_is_not_sized_from(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    write_gguf_decoder(path, layers=200_000)
    plan = paramscope.memory(str(path), seq=2048).memory
    assert plan is not None
    assert [item.name for item in plan.items] == ["weights"]
    assert (
        "no KV cache item: the GGUF file's llama.block_count is 200,000, more layers than any model has (at most "
        "100,000), which llama.cpp cannot size a KV cache from"
    ) in plan.notes


# ---------------------------------------------------------------------------------------------------------------------
# 6. without torch


@pytest.fixture(scope="module")
def torchless_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where ``import torch`` fails: a fake torch package on the path before the real one."""
    fake = tmp_path_factory.mktemp("no-torch")
    (fake / "torch").mkdir()
    (fake / "torch" / "__init__.py").write_text("raise ImportError('torch is broken in this environment')\n")
    src = Path(paramscope.__file__).parents[1]  # the tree under test first, then the fake torch
    env = {key: value for key, value in os.environ.items() if key not in {"COLUMNS", "FORCE_COLOR"}}
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(fake)])
    return env


def run_torchless(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return run_in_a_new_process(*argv, env=env, timeout=SUBPROCESS_TIMEOUT)


def test_the_fake_torch_really_fails(torchless_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import torch"], capture_output=True, text=True, env=torchless_env, check=False
    )
    assert result.returncode == 1
    assert "ImportError: torch is broken in this environment" in result.stderr


def test_safetensors_sharded_and_gguf_without_torch(
    tmp_path: Path, torchless_env: dict[str, str], llama_70b: tuple[Path, dict[str, Any]]
) -> None:
    single = tmp_path / "small.safetensors"
    small = {"encoder.weight": ("F16", (64, 32)), "encoder.bias": ("F32", (64,)), "head.weight": ("BF16", (10, 64))}
    write_safetensors(single, small)
    model_gguf = tmp_path / "model.gguf"
    write_gguf(model_gguf, GGUF_TENSORS)
    expected = {
        single: (sum(math.prod(s) for _, s in small.values()), "safetensors"),
        llama_70b[0]: (LLAMA_3_70B_PARAMS, "safetensors"),
        model_gguf: (sum(math.prod(s) for _, s in GGUF_TENSORS.values()), "gguf"),
    }
    for target, (params, kind) in expected.items():
        result = run_torchless(torchless_env, "inspect", str(target), "--format", "json", "--quiet")
        assert (result.returncode, result.stderr) == (0, ""), target
        data = json.loads(result.stdout)
        assert (data["totals"]["params"], data["source"]["kind"]) == (params, kind), target


def test_torch_file_without_torch_installed(tmp_path: Path) -> None:
    """torch absent (``find_spec`` finds nothing): the missing-dependency error names the extra."""
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, path)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from paramscope.cli import main\n"
        f"raise SystemExit(main(['inspect', {str(path)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(paramscope.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=SUBPROCESS_TIMEOUT, check=False
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"paramscope: error: reading {path} needs torch: pip install 'paramscope[torch]'\n"


def test_torch_file_when_torch_cannot_be_imported(tmp_path: Path, torchless_env: dict[str, str]) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, path)
    result = run_torchless(torchless_env, "inspect", str(path))
    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"paramscope: error: reading {path} needs torch: pip install 'paramscope[torch]'\n"


def test_directories_under_weight_file_names_are_passed_over(tmp_path: Path) -> None:
    # a Lightning sharded checkpoint ('epoch=0-step=9.ckpt/') beside a config.json: the model is built from the
    # config, as for any directory with a config and no weights; beside shards, they are read and it is passed over
    import transformers

    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=8)
    model = transformers.GPT2LMHeadModel(config)
    model.config.save_pretrained(tmp_path)
    (tmp_path / "epoch=0-step=9.ckpt").mkdir()
    report = paramscope.inspect(str(tmp_path))
    assert report.source.kind == "hf-config"
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    model.save_pretrained(tmp_path, max_shard_size="4KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    (tmp_path / "model.safetensors").mkdir()  # not the file from_pretrained would read first
    (tmp_path / "extra.safetensors").mkdir()
    report = paramscope.inspect(str(tmp_path))
    assert report.source.kind == "safetensors"
    assert report.totals.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_what_torch_save_pickles_beside_the_weights_passes_the_pickle_walk(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, legacy: bool
) -> None:
    # the walk before torch's unpickler refuses what only a crafted pickle builds: a review's hyperparameters of a
    # tuple of 150,000 numbers were refused, as a tuple repeated within itself
    nested: tuple[Any, ...] = ()
    for _ in range(90):
        nested = (nested, 1)
    shared = (1, 2, 3)
    extras = {
        "numbers": tuple(range(150_000)),
        "floats": [float(i) for i in range(100_000)],
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "empty": bytearray(),
        "nested": {nested: shared, shared: [shared]},
    }
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3, 4), "hyper_parameters": extras}, path, _use_new_zipfile_serialization=not legacy)
    assert run_json(capsys, path)["totals"]["params"] == 12

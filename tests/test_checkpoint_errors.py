"""Bad checkpoints: each gets one line ``paramscope: error: <message>`` on stderr, exit 2, nothing on stdout.

The messages are pinned whole. Every malformed safetensors file here is also rejected by the ``safetensors`` package
itself (``safe_open``), so the reader is neither stricter nor looser than the format. No bad file may cost a large
allocation: a header that claims 200 MB is refused before anything is read.
"""

from __future__ import annotations

import collections
import errno
import io
import json
import math
import os
import pickle
import random
import re
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import pytest
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

import paramscope
from paramscope.cli import MAX_ERROR_TEXT, main
from paramscope.sources.safetensors import stored_tensors

from .checkpoints import write_safetensors
from .cli import assert_error, run, run_in_a_new_process, without_root_privilege

SUBPROCESS_TIMEOUT = 120


@dataclass
class Case:
    argv: list[str]
    message: str
    safetensors_file: Path | None = None
    """A malformed safetensors file, which ``safe_open`` must reject too."""
    extra: dict[str, str] = field(default_factory=dict)
    api: bool = True
    """Whether ``paramscope.inspect`` raises the same message."""


def safetensors_file(path: Path, header: object, data: bytes = b"", *, raw: bytes | None = None) -> Path:
    """A safetensors file with the given header (any JSON value, or raw bytes) and data region."""
    encoded = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


def f32(offsets: list[int], shape: list[int] | None = None) -> dict[str, object]:
    return {"dtype": "F32", "shape": shape or [2], "data_offsets": offsets}


def one_shard(directory: Path) -> Path:
    """A valid first shard and an index that also names a second, absent one."""
    safetensors_file(directory / "model-00001-of-00002.safetensors", {"a": f32([0, 8])}, bytes(8))
    index = directory / "model.safetensors.index.json"
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"metadata": {"total_size": 16}, "weight_map": weight_map}))
    return index


def saved_pt(path: Path) -> Path:
    torch.save({"fc.weight": torch.zeros(64, 64), "fc.bias": torch.zeros(64)}, path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# the cases: each builds its bad input in a fresh directory and says the exact message


def missing_file(tmp: Path) -> Case:
    return Case(["inspect", str(tmp / "model.safetensors")], f"{tmp / 'model.safetensors'}: no such file or directory")


def empty_file(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    path.write_bytes(b"")
    return Case(["inspect", str(path)], f"{path}: empty file (0 bytes): not a safetensors file", path)


def shorter_than_8_bytes(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00")
    message = f"{path}: too short for a safetensors header (3 bytes; the length field alone is 8)"
    return Case(["inspect", str(path)], message, path)


def header_longer_than_file(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    return Case(["inspect", str(path)], f"{path}: header claims 1.00 kB but the file has 10 B", path)


def header_over_100_mb(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 200_000_000) + b"{}")
    message = f"{path}: header claims 200.00 MB, more than the 100 MB safetensors allows"
    return Case(["inspect", str(path)], message, path)


def gguf_named_safetensors(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    path.write_bytes(gguf_bytes())  # its first 8 bytes, read as a header length, are 14 GB
    return Case(["inspect", str(path)], f"{path}: a GGUF file (llama.cpp), not a safetensors file", path)


def pt_named_safetensors(tmp: Path) -> Case:
    path = saved_pt(tmp / "model.safetensors")
    return Case(["inspect", str(path)], f"{path}: a zip archive (what torch.save writes), not a safetensors file", path)


def legacy_pt_named_safetensors(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    return Case(
        ["inspect", str(path)], f"{path}: a pickle (torch.save before PyTorch 1.6), not a safetensors file", path
    )


def header_not_json(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", None, raw=b"{not json}")
    message = (
        f"{path}: header is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1)): not a safetensors file"
    )
    return Case(["inspect", str(path)], message, path)


def header_not_utf8(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", None, raw=b"\xff\xfe{}")
    message = (
        f"{path}: header is not valid JSON ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte): "
        "not a safetensors file"
    )
    return Case(["inspect", str(path)], message, path)


def header_nested_too_deeply(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", None, raw=b"[" * 100_000 + b"]" * 100_000)
    message = f"{path}: header is not valid JSON (nested too deeply to read): not a safetensors file"
    return Case(["inspect", str(path)], message, path)


def header_with_a_number_too_long(tmp: Path) -> Case:
    raw = b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 8]}}'
    path = safetensors_file(tmp / "model.safetensors", None, raw=raw)
    message = f"{path}: header is not valid JSON (a number of more than 4,300 digits): not a safetensors file"
    return Case(["inspect", str(path)], message, path)


def header_is_a_list(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", [{"a": f32([0, 8])}], bytes(8))
    return Case(["inspect", str(path)], f"{path}: header is a JSON array, not an object: not a safetensors file", path)


def header_is_null(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", None)
    return Case(["inspect", str(path)], f"{path}: header is a JSON null, not an object: not a safetensors file", path)


def metadata_false(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"__metadata__": False, "a": f32([0, 8])}, bytes(8))
    return Case(["inspect", str(path)], f"{path}: __metadata__ is not an object of strings", path)


def unknown_dtype(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}})
    return Case(["inspect", str(path)], f"{path}: tensor 'a' has unknown dtype 'F7'", path)


def offsets_outside_the_data(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([0, 8])}, bytes(4))
    message = f"{path}: tensor 'a' ends at byte 8 of the data, past its end (4 bytes in the file)"
    return Case(["inspect", str(path)], message, path)


def overlapping_offsets(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([0, 8]), "b": f32([4, 12])}, bytes(12))
    return Case(["inspect", str(path)], f"{path}: tensors 'a' and 'b' overlap (data offsets 4 < 8)", path)


def gap_in_the_data(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([0, 8]), "b": f32([12, 20])}, bytes(20))
    return Case(["inspect", str(path)], f"{path}: bytes 8 to 12 of the data belong to no tensor", path)


def bytes_after_the_last_tensor(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([0, 8])}, bytes(12))
    return Case(["inspect", str(path)], f"{path}: the tensors end at byte 8 of a 12-byte data region", path)


def span_not_dtype_times_shape(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([0, 12])}, bytes(12))
    message = f"{path}: tensor 'a' is float32 [2] = 8 bytes but its offsets span 12"
    return Case(["inspect", str(path)], message, path)


def shape_overflowing_64_bits(tmp: Path) -> Case:
    # a zero dimension last: the size is 0, but its product overflows on the way, which the crate refuses
    header = {"a": {"dtype": "F32", "shape": [2**62, 2**62, 0], "data_offsets": [0, 0]}}
    path = safetensors_file(tmp / "model.safetensors", header)
    message = (
        f"{path}: tensor 'a' has shape [4611686018427387904, 4611686018427387904, 0], whose size overflows 64 bits"
    )
    return Case(["inspect", str(path)], message, path)


def shape_with_a_dimension_past_64_bits_beside_a_zero(tmp: Path) -> Case:
    # no value, and no product past 64 bits; but serde_json reads 2**64 as a float, which the crate refuses as a size
    # (safe_open: "invalid type: floating point `1.8446744073709552e19`, expected usize")
    header = {"a": {"dtype": "F32", "shape": [0, 2**64], "data_offsets": [0, 0]}}
    path = safetensors_file(tmp / "model.safetensors", header)
    message = f"{path}: tensor 'a' has shape [0, 18446744073709551616], a dimension past 64 bits"
    return Case(["inspect", str(path)], message, path)


def sub_byte_type_in_part_of_a_byte(tmp: Path) -> Case:
    header = {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}
    path = safetensors_file(tmp / "model.safetensors", header, bytes(2))
    return Case(["inspect", str(path)], f"{path}: tensor 'a' is float4_e2m1fn [3]: 12 bits, not whole bytes", path)


def decreasing_offsets(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([8, 0])}, bytes(8))
    message = f"{path}: tensor 'a' has data_offsets [8, 0]: two increasing byte offsets expected"
    return Case(["inspect", str(path)], message, path)


def missing_data_offsets(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": {"dtype": "F32", "shape": [2]}}, bytes(8))
    return Case(["inspect", str(path)], f"{path}: tensor 'a' lacks a valid dtype, shape or data_offsets", path)


def _entry_lacking(tmp: Path, entry: object) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": entry}, bytes(4))
    return Case(["inspect", str(path)], f"{path}: tensor 'a' lacks a valid dtype, shape or data_offsets", path)


def shape_with_a_boolean(tmp: Path) -> Case:
    return _entry_lacking(tmp, {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]})  # JSON's true is no size


def shape_with_a_negative_size(tmp: Path) -> Case:
    return _entry_lacking(tmp, {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]})


def shape_as_a_string(tmp: Path) -> Case:
    return _entry_lacking(tmp, {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]})


def offset_as_a_fraction(tmp: Path) -> Case:
    return _entry_lacking(tmp, {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]})


def offset_as_negative_zero(tmp: Path) -> Case:
    # serde_json reads -0 as a float, which no size is; Python's json as the integer 0
    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [-0, 4]}}'
    path = safetensors_file(tmp / "model.safetensors", None, bytes(4), raw=raw)
    return Case(["inspect", str(path)], f"{path}: tensor 'a' lacks a valid dtype, shape or data_offsets", path)


def _nested(levels: int) -> str:
    """A tensor's entry with a field the crate does not read, nested so that the header is ``levels`` deep."""
    depth = levels - 2  # the header's object, then the entry
    return '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": ' + "[" * depth + "]" * depth + "}}"


def field_nested_128_levels_deep(tmp: Path) -> Case:
    # serde_json, which the crate reads the header with, refuses JSON nested deeper, in any field
    path = safetensors_file(tmp / "model.safetensors", None, bytes(4), raw=_nested(128).encode())
    message = (
        f"{path}: tensor 'a' has a field nested 128 levels deep in the header, more than the 127 that the "
        "safetensors library reads"
    )
    return Case(["inspect", str(path)], message, path)


def field_nested_128_levels_deep_under_a_key_named_twice(tmp: Path) -> Case:
    # the object in "x" names "y" twice: its first value, dropped for the second, is still parsed, 128 levels deep
    depth = 128 - 3  # the header's object, the entry, the object in "x"
    raw = '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": {"y": ' + "[" * depth + "]" * depth
    path = safetensors_file(tmp / "model.safetensors", None, bytes(4), raw=(raw + ', "y": 1}}}').encode())
    message = (
        f"{path}: tensor 'a' has a field nested 128 levels deep in the header, more than the 127 that the "
        "safetensors library reads"
    )
    return Case(["inspect", str(path)], message, path)


def entry_as_an_array_of_two_fields(tmp: Path) -> Case:
    return _entry_lacking(tmp, ["F32", [1]])  # the array form of an entry (read as safe_open reads it) has all three


def entry_as_an_array_of_four(tmp: Path) -> Case:
    return _entry_lacking(tmp, ["F32", [1], [0, 4], "x"])


def name_nested_8000_modules_deep(tmp: Path) -> Case:
    # the module tree keeps each module's dotted name: 8,000 of them, one inside the next, take 64 M characters
    name = ".".join(["a"] * 8_001)
    path = safetensors_file(tmp / "model.safetensors", {name: f32([0, 8])}, bytes(8))
    shown = "a." * 50 + "…" + "a." * 49 + "a"  # 200 characters: its start and its end
    message = (
        f"{path}: tensor '{shown}' is nested 8,000 modules deep: the modules its tensors' names imply have names of "
        "more than 1,176,584 characters in all, more than paramscope reads"
    )
    return Case(["inspect", str(path)], message)


def index_names_a_missing_shard(tmp: Path) -> Case:
    index = one_shard(tmp)
    return Case(["inspect", str(index)], f"{index}: names model-00002-of-00002.safetensors, which is missing")


def directory_index_names_a_missing_shard(tmp: Path) -> Case:
    index = one_shard(tmp)
    return Case(["inspect", str(tmp)], f"{index}: names model-00002-of-00002.safetensors, which is missing")


def index_not_json(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text("not json")
    return Case(["inspect", str(index)], f"{index}: is not valid JSON (Expecting value: line 1 column 1 (char 0))")


def index_nested_too_deeply(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text("[" * 100_000 + "]" * 100_000)
    return Case(["inspect", str(index)], f"{index}: is not valid JSON (nested too deeply to read)")


def index_naming_a_shard_too_long_to_be_a_file(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    shard = "b" * 300 + ".safetensors"
    index.write_text(json.dumps({"weight_map": {"a": shard}}))
    return Case(["inspect", str(index)], f"{tmp / shard}: File name too long")


def index_naming_a_shard_with_control_characters(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "b\u0000\n.safetensors"}}))
    # one line whatever the names: the CLI writes control characters as escapes (the API's message holds them)
    return Case(["inspect", str(index)], f"{index}: names b\\x00\\n.safetensors, which is missing", api=False)


def index_naming_an_empty_shard(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": ""}}))  # the directory itself
    return Case(["inspect", str(index)], f"{index}: names a shard with an empty file name")


def index_naming_the_parent_directory(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": ".."}}))
    return Case(["inspect", str(index)], f"{index}: names shard '..', not a file name: an index names shards beside it")


def index_naming_a_shard_in_a_subdirectory(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "sub/model.safetensors"}}))
    message = f"{index}: names shard 'sub/model.safetensors', not a file name: an index names shards beside it"
    return Case(["inspect", str(index)], message)


def index_naming_a_symlink_loop(tmp: Path) -> Case:
    index = one_shard(tmp)
    (tmp / "model-00002-of-00002.safetensors").symlink_to("model-00002-of-00002.safetensors")
    message = (
        f"{index}: names model-00002-of-00002.safetensors, which cannot be read: Too many levels of symbolic links"
    )
    return Case(["inspect", str(index)], message)


def symlink_loop(tmp: Path) -> Case:
    path = tmp / "model.safetensors"
    path.symlink_to("model.safetensors")
    return Case(["inspect", str(path)], f"{path}: Too many levels of symbolic links")


def index_without_weight_map(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}}))
    return Case(["inspect", str(index)], f"{index}: has no weight_map of tensor name → shard file")


def index_with_an_empty_weight_map(tmp: Path) -> Case:
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {}}))
    return Case(["inspect", str(index)], f"{index}: has an empty weight_map: it names no tensor")


def metadata_not_strings(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"__metadata__": {"format": 1}, "a": f32([0, 8])}, bytes(8))
    return Case(["inspect", str(path)], f"{path}: __metadata__ is not an object of strings", path)


def bin_index_names_a_missing_shard(tmp: Path) -> Case:
    saved_pt(tmp / "pytorch_model-00001-of-00002.bin")
    index = tmp / "pytorch_model.bin.index.json"
    weight_map = {"fc.weight": "pytorch_model-00001-of-00002.bin", "out.weight": "pytorch_model-00002-of-00002.bin"}
    index.write_text(json.dumps({"weight_map": weight_map}))
    return Case(["inspect", str(tmp)], f"{index}: names pytorch_model-00002-of-00002.bin, which is missing")


def two_shards(directory: Path, first: dict[str, object], second: dict[str, object]) -> tuple[str, str]:
    """Two safetensors shards of float32 [2] tensors named by ``first`` and ``second``; their file names."""
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    for name, header in zip(names, (first, second), strict=True):
        safetensors_file(directory / name, header, bytes(8 * len(header)))
    return names


def shards_holding_the_same_tensor(tmp: Path) -> Case:
    # with an index, the index can only put 'a' in one of them: the other is a bad shard
    shards = two_shards(tmp, {"a": f32([0, 8])}, {"a": f32([0, 8]), "b": f32([8, 16])})
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
    message = f"{tmp}: tensor 'a' is stored in more than one shard ({shards[0]} and {shards[1]})"
    return Case(["inspect", str(tmp)], message)


def directory_of_two_safetensors_checkpoints(tmp: Path) -> Case:
    for name in ("base.safetensors", "finetuned.safetensors"):  # no index: every file is read
        safetensors_file(tmp / name, {"a": f32([0, 8])}, bytes(8))
    message = (
        f"{tmp}: tensor 'a' is in both base.safetensors and finetuned.safetensors: these look like separate "
        "checkpoints; inspect one file"
    )
    return Case(["inspect", str(tmp)], message)


def directory_of_two_safetensors_indexes(tmp: Path) -> Case:
    # a model saved in two variants (transformers' variant="fp16", diffusers' fp16 files): two checkpoints, not one
    # whose index is the first in sorted order
    for variant, dtype in (("", "F32"), (".fp16", "F16")):
        shard = f"model{variant}-00001-of-00001.safetensors"
        header = {"a": {"dtype": dtype, "shape": [2], "data_offsets": [0, 4 if variant else 8]}}
        safetensors_file(tmp / shard, header, bytes(4 if variant else 8))
        (tmp / f"model{variant}.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shard}}))
    message = (
        f"{tmp}: holds 2 indexes (model.fp16.safetensors.index.json, model.safetensors.index.json): these look like "
        "separate checkpoints; inspect one index"
    )
    return Case(["inspect", str(tmp)], message)


def directory_of_two_bin_indexes(tmp: Path) -> Case:
    for stem in ("pytorch_model", "pytorch_model.fp16"):
        shard = f"{stem}-00001-of-00001.bin"
        saved_pt(tmp / shard)
        index = {"weight_map": dict.fromkeys(("fc.weight", "fc.bias"), shard)}
        (tmp / f"{stem}.bin.index.json").write_text(json.dumps(index))
    message = (
        f"{tmp}: holds 2 indexes (pytorch_model.bin.index.json, pytorch_model.fp16.bin.index.json): these look like "
        "separate checkpoints; inspect one index"
    )
    return Case(["inspect", str(tmp)], message)


def index_lists_a_tensor_its_shard_lacks(tmp: Path) -> Case:
    shards = two_shards(tmp, {"a": f32([0, 8])}, {"c": f32([0, 8])})
    index = tmp / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
    return Case(["inspect", str(index)], f"{index}: lists 'b' in {shards[1]}, which does not hold it")


def index_lists_a_tensor_twice_and_last_in_a_shard_that_lacks_it(tmp: Path) -> Case:
    # a JSON reader keeps the name's last shard (json.loads, as transformers reads an index): the error says it was
    # listed twice, not only that the last shard lacks it
    shards = two_shards(tmp, {"a": f32([0, 8])}, {"c": f32([0, 8])})
    index = tmp / "model.safetensors.index.json"
    index.write_text(f'{{"weight_map": {{"a": "{shards[0]}", "c": "{shards[1]}", "a": "{shards[1]}"}}}}')
    assert json.loads(index.read_text())["weight_map"]["a"] == shards[1]
    message = (
        f"{index}: lists 'a' in {shards[0]}, then {shards[1]}; {shards[1]}, listed last (as JSON readers keep it), "
        "does not hold it"
    )
    return Case(["inspect", str(index)], message)


def directory_of_two_epochs_pt(tmp: Path) -> Case:
    # no usual weight file name, so every file is read: the same model saved twice is not a model twice as large
    saved_pt(tmp / "epoch1.pt")
    saved_pt(tmp / "epoch2.pt")
    message = (
        f"{tmp}: tensor 'fc.weight' is in both epoch1.pt and epoch2.pt: these look like separate checkpoints; "
        "inspect one file"
    )
    return Case(["inspect", str(tmp)], message)


def llama_slices_for_model_parallel_loading(tmp: Path) -> Case:
    # Meta's original Llama layout: each consolidated.NN.pth holds every name, with its rank's slice of the tensor
    for rank in range(3):
        torch.save({"tok_embeddings.weight": torch.zeros(8, 2), "norm.weight": torch.zeros(6)},
                   tmp / f"consolidated.{rank:02}.pth")  # fmt: skip
    (tmp / "params.json").write_text(json.dumps({"dim": 6, "n_layers": 0}))
    message = (
        f"{tmp}: consolidated.00.pth, consolidated.01.pth, consolidated.02.pth are slices of one model saved for "
        "model-parallel loading, as Meta's original Llama checkpoints are (each holds 'tok_embeddings.weight'): "
        "paramscope cannot join them, as the files do not say which dimension each tensor is split on; inspect the "
        "Hugging Face conversion, or one file, which holds about 1/3 of the model"
    )
    return Case(["inspect", str(tmp)], message)


def bin_shards_holding_the_same_tensor(tmp: Path) -> Case:
    shards = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
    saved_pt(tmp / shards[0])
    torch.save({"fc.bias": torch.zeros(64), "out.weight": torch.zeros(2)}, tmp / shards[1])
    weight_map = {"fc.weight": shards[0], "fc.bias": shards[0], "out.weight": shards[1]}
    (tmp / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return Case(
        ["inspect", str(tmp)], f"{tmp}: tensor 'fc.bias' is stored in more than one shard ({shards[0]} and {shards[1]})"
    )


def bin_index_lists_a_tensor_its_shard_lacks(tmp: Path) -> Case:
    saved_pt(tmp / "pytorch_model-00001-of-00002.bin")
    torch.save({"out.weight": torch.zeros(2)}, tmp / "pytorch_model-00002-of-00002.bin")
    index = tmp / "pytorch_model.bin.index.json"
    weight_map = {
        "fc.weight": "pytorch_model-00001-of-00002.bin",
        "fc.bias": "pytorch_model-00001-of-00002.bin",
        "out.bias": "pytorch_model-00002-of-00002.bin",
    }
    index.write_text(json.dumps({"weight_map": weight_map}))
    return Case(
        ["inspect", str(index)],
        f"{index}: lists 'out.bias' in pytorch_model-00002-of-00002.bin, which does not hold it",
    )


def random_bytes_pt(tmp: Path) -> Case:
    path = tmp / "model.pt"
    path.write_bytes(random.Random(0).randbytes(4096))  # starts with 0xcd: not a zip, not a pickle opcode
    message = (
        f"{path}: not a PyTorch checkpoint (its data is not a pickle torch.load(weights_only=True) accepts: "
        "Unsupported operand 205); nothing in it was executed"
    )
    return Case(["inspect", str(path)], message)


def not_a_pickle(path: Path, reason: str) -> str:
    return (
        f"{path}: not a PyTorch checkpoint (its data is not a pickle torch.load(weights_only=True) accepts: {reason}); "
        "nothing in it was executed"
    )


def text_pt(tmp: Path) -> Case:
    path = tmp / "model.pt"
    path.write_text("this is text\n")  # "t" is the pickle opcode TUPLE, which pops a mark that was never pushed
    return Case(["inspect", str(path)], not_a_pickle(path, "IndexError: pop from empty list"))


def repeated_text_pt(tmp: Path) -> Case:
    path = tmp / "model.pt"
    path.write_text("hello world " * 100)  # "h" is BINGET: it reads memo entry 101 ("e"), which was never stored
    return Case(["inspect", str(path)], not_a_pickle(path, "KeyError: 101"))


def zip_with_data_pkl(tmp: Path, pickled: bytes) -> Path:
    """A checkpoint torch.save wrote, its data.pkl replaced by ``pickled``."""
    saved = saved_pt(tmp / "saved.pt")
    path = tmp / "model.pt"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            replaced = entry.filename.endswith("/data.pkl")
            target.writestr(entry, pickled if replaced else source.read(entry))
    return path


def zip_with_text_pickle(tmp: Path) -> Case:
    path = zip_with_data_pkl(tmp, b"this is text\n")
    return Case(["inspect", str(path)], not_a_pickle(path, "IndexError: pop from empty list"))


def zip_with_a_pickle_popping_an_empty_stack(tmp: Path) -> Case:
    # POP then STOP: opcodes of protocol 0 alone, ending in STOP, yet no pickle (it pops what was never pushed)
    path = zip_with_data_pkl(tmp, b"0.")
    return Case(["inspect", str(path)], not_a_pickle(path, "Unsupported operand 48"))


def zip_with_a_pickle_asking_for_a_mark_it_popped(tmp: Path) -> Case:
    # INT, MARK, NONE, APPEND (which takes the mark away), TUPLE (which asks for it): pickletools' walk fails with an
    # IndexError, not a ValueError
    path = zip_with_data_pkl(tmp, b"I0\n(Nat.")
    return Case(["inspect", str(path)], not_a_pickle(path, "Unsupported operand 73"))


def zip_with_bytes_after_a_protocol_0_pickle(tmp: Path) -> Case:
    # an empty dict in protocol 0 (MARK, DICT, PUT 0, STOP), then a byte the pickle does not account for
    path = zip_with_data_pkl(tmp, b"(dp0\n.x")
    return Case(["inspect", str(path)], not_a_pickle(path, "Unsupported operand 100"))


def pickle_calling_with_wrong_arguments(tmp: Path) -> Case:
    # an allowed rebuild function called with no arguments: the call itself fails, inside the unpickler
    path = tmp / "model.pt"
    path.write_bytes(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.")
    reason = "TypeError: _rebuild_tensor_v2() missing 6 required positional arguments: 'storage', 'storage_offset', "
    reason += "'size', 'stride', 'requires_grad', and 'backward_hooks'"
    return Case(["inspect", str(path)], not_a_pickle(path, reason))


def pickle_with_a_dict_as_a_key(tmp: Path) -> Case:
    path = tmp / "model.pt"
    path.write_bytes(b"\x80\x02}}K\x01s.")  # {}[{}] = 1
    return Case(["inspect", str(path)], not_a_pickle(path, "TypeError: unhashable type: 'dict'"))


def pickle_rebuilding_a_tensor_from_a_tuple(tmp: Path) -> Case:
    # _rebuild_tensor_v2((), 0, (), (), False, {}): torch reads the dtype of a "storage" that is a tuple
    path = tmp / "model.pt"
    path.write_bytes(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n()K\x00))\x89}tR.")
    return Case(["inspect", str(path)], not_a_pickle(path, "AttributeError: 'tuple' object has no attribute 'dtype'"))


def legacy_pt_counting(tmp: Path, count: bytes) -> tuple[Path, str]:
    """A legacy checkpoint of one storage of 100 float32 whose persistent id gives the element count pickled as
    ``count`` instead, and the storage's key."""
    saved = tmp / "whole.pt"
    torch.save({"w": torch.zeros(100)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    numel = data.index(b"K\x64N")  # the storage's persistent id: (..., "cpu", BININT1 100, None)
    path = tmp / "model.pt"
    path.write_bytes(data[:numel] + count + data[numel + 2 :])
    key = re.findall(rb"X....(\d+)", data[:numel], re.DOTALL)[-1]  # the storage's key, just before: digits
    return path, key.decode()


def legacy_pt_claiming_4_pib(tmp: Path) -> Case:
    """A legacy checkpoint whose one storage claims 2**50 float32 elements: torch.load would allocate them before
    reading; the file holds 400 bytes for it."""
    path, _ = legacy_pt_counting(tmp, b"\x8a\x07" + (2**50).to_bytes(7, "little"))  # LONG1 2**50
    size = path.stat().st_size
    message = f"{path}: truncated: its pickle gives a storage of 4.00 PiB, more than the whole file ({size:,} bytes)"
    return Case(["inspect", str(path)], message)


def legacy_pt_with_a_negative_element_count(tmp: Path) -> Case:
    path, key = legacy_pt_counting(tmp, b"J" + struct.pack("<i", -100))  # BININT -100
    return Case(["inspect", str(path)], not_a_pickle(path, f"storage '{key}' has no element count: -100"))


def legacy_pt_of_an_unknown_protocol_version(tmp: Path) -> Case:
    saved = tmp / "whole.pt"
    torch.save({"w": torch.zeros(100)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    version = pickle.dumps(1001, protocol=2)
    assert data.count(version) == 1
    path = tmp / "model.pt"
    path.write_bytes(data.replace(version, pickle.dumps("x" * 100_000, protocol=2)))
    message = f"{path}: a torch.save legacy file of protocol version '{'x' * 39}, which torch cannot read"
    return Case(["inspect", str(path)], message)


# From a review of crafted checkpoints: what torch's unpickler allows and pays for beyond the file's bytes


def _costly(path: Path, builds: str) -> str:
    return (f"{path}: refused: its pickle builds {builds}, which torch's unpickler would take without bound to read; "
            "nothing in it was executed")  # fmt: skip


def _nested_tuple_key(depth: int) -> bytes:
    """``{((((),),),…): 1}``, a tuple ``depth`` deep as a dict key, in protocol 2."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."


def _tuple_dag(depth: int) -> bytes:
    """A tuple of two of the same tuple, ``depth`` times over: 2 ** depth items unfolded, in a few bytes each."""
    return b")" + b"q\x00h\x00h\x00\x86" * depth


def zip_with_a_key_nested_200000_tuples_deep(tmp: Path) -> Case:
    # hashing the key overflowed the C stack inside torch's unpickler (exit 139, no message)
    path = zip_with_data_pkl(tmp, _nested_tuple_key(200_000))
    return Case(["inspect", str(path)], _costly(path, "a tuple nested more than 100 deep"))


def zip_with_a_key_nested_1200_tuples_deep(tmp: Path) -> Case:
    # a RecursionError traceback where the key was named
    path = zip_with_data_pkl(tmp, _nested_tuple_key(1200))
    return Case(["inspect", str(path)], _costly(path, "a tuple nested more than 100 deep"))


def zip_with_a_key_of_2_to_the_100_items(tmp: Path) -> Case:
    # hashing it never ended
    path = zip_with_data_pkl(tmp, b"\x80\x02}" + _tuple_dag(100) + b"K\x01s.")
    items = "a tuple of more than 10,000,000 items unfolded (a tuple repeated within itself)"
    return Case(["inspect", str(path)], _costly(path, items))


def zip_with_a_bytearray_of_a_gib(tmp: Path) -> Case:
    # bytearray(2**30) in 400 bytes: torch's weights-only unpickler allows it, and fills a GiB
    path = zip_with_data_pkl(tmp, b"\x80\x02}X\x01\x00\x00\x00xc__builtin__\nbytearray\nJ\x00\x00\x00@\x85Rs.")
    made = "a bytearray of 1,073,741,824 bytes, made empty (torch.save pickles a bytearray's bytes)"
    return Case(["inspect", str(path)], _costly(path, made))


def zip_with_a_bytearray_made_through_another_function(tmp: Path) -> Case:
    # from review: _rebuild_from_type_v2(bytearray, Tensor, (2**31,), {}) filled 2 GiB before failing
    pickled = (b"\x80\x02}X\x01\x00\x00\x00xctorch._tensor\n_rebuild_from_type_v2\n(c__builtin__\nbytearray\n"
               b"ctorch\nTensor\nJ\x00\x00\x00@\x85}tRs.")  # fmt: skip
    path = zip_with_data_pkl(tmp, pickled)
    return Case(["inspect", str(path)], _costly(path, "a call of bytearray or _codecs.encode through another function"))


def zip_with_bytes_by_the_hex_codec(tmp: Path) -> Case:
    # from review: each hex encoding doubles its text, and chained, a 1.3 KB pickle reached 6.5 GB
    pickled = b"\x80\x02}X\x01\x00\x00\x00xc_codecs\nencode\nX\x02\x00\x00\x00abX\x03\x00\x00\x00hex\x86Rs."
    path = zip_with_data_pkl(tmp, pickled)
    made = "bytes by another codec than latin-1 (torch.save pickles bytes in latin-1)"
    return Case(["inspect", str(path)], _costly(path, made))


def zip_with_a_global_of_a_long_name(tmp: Path) -> Case:
    # from review: torch.load searched its message quoting the name with a pattern quadratic in its length (a 66 KB
    # file of a 64 MiB name: years)
    path = zip_with_data_pkl(tmp, b"\x80\x02c" + b"a" * 100_000 + b"\nb\n.")
    return Case(
        ["inspect", str(path)], _costly(path, "a global named by 100,002 characters, more than torch.save writes")
    )


def plain_pickle_of_a_global_of_a_long_name(tmp: Path) -> Case:
    # the same in a file of neither format, which torch.load reads as a legacy file's first pickle
    path = tmp / "model.pt"
    path.write_bytes(b"\x80\x02c" + b"a" * 100_000 + b"\nb\n.")
    return Case(
        ["inspect", str(path)], _costly(path, "a global named by 100,002 characters, more than torch.save writes")
    )


def zip_with_a_stack_global_of_a_long_name(tmp: Path) -> Case:
    name = b"a" * 5000
    pickled = b"\x80\x04\x8c\x01m" + b"X" + len(name).to_bytes(4, "little") + name + b"\x93."
    path = zip_with_data_pkl(tmp, pickled)
    return Case(["inspect", str(path)], _costly(path, "a global named by a string of more than 1,024 characters"))


def zip_with_a_byteorder_record_of_8_kib(tmp: Path) -> Case:
    # from review: torch quotes the record in its error (a 512 MiB one, deflated to 500 KB: a 512 MiB "one line")
    saved = saved_pt(tmp / "saved.pt")
    path = tmp / "model.pt"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(
                entry.filename, b"l" * 8192 if entry.filename.endswith("/byteorder") else source.read(entry)
            )
    record = next(name for name in zipfile.ZipFile(path).namelist() if name.endswith("/byteorder"))
    return Case(
        ["inspect", str(path)],
        f"{path}: its record {record} is 8.00 KiB unpacked, where torch.save writes a "
        "few bytes: not written by torch.save",
    )


class OfASizePastInt64:
    """Pickles as a tensor of one storage element whose size is 2**70, past what torch's sizes hold."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        storage = torch.zeros(1).untyped_storage()
        return torch._utils._rebuild_tensor_v2, (storage, 0, (2**70,), (1,), False, collections.OrderedDict())


def zip_with_a_size_past_int64(tmp: Path) -> Case:
    # from review: the message carried torch's C++ backtrace (library paths, addresses) after its reason
    path = tmp / "model.pt"
    torch.save({"w": OfASizePastInt64()}, path)
    # torch's text, up to its backtrace (which comes before the closing quote)
    reason = (
        "TypeError: set_(): argument 'size' failed to unpack the object at pos 1 with error \"Overflow when "
        "unpacking long long"
    )
    return Case(["inspect", str(path)], not_a_pickle(path, reason))


class ConvertedOnLoad:
    """Pickles as a tensor of a device without storage (torch.save's call for XLA's), but of another dtype than its
    data, a view of one element as 2^28: torch.load converts each element it views (2 GiB from a 500-byte file).
    ``through`` makes it the call of ``_rebuild_from_type_v2``, as for a subclass of a tensor."""

    def __init__(self, through: bool) -> None:
        self.through = through

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        call = (torch.zeros(1).expand(2**28), torch.float64, "cpu", False)
        rebuild = torch._utils._rebuild_device_tensor_from_cpu_tensor
        if self.through:
            return torch._tensor._rebuild_from_type_v2, (rebuild, torch.Tensor, call, {})
        return rebuild, call


def _converted_on_load(tmp: Path, *, legacy: bool, through: bool) -> Case:
    # from review: it filled 2 GiB while torch unpickled it; the legacy reader then counted it
    path = tmp / "converted.pt"
    torch.save({"w": ConvertedOnLoad(through)}, path, _use_new_zipfile_serialization=not legacy)
    builds = ("a tensor for another device in another dtype than its data, or of data torch.save does not pickle, "
              "converted element by element (torch.save gives it its data's dtype)")  # fmt: skip
    return Case(["inspect", str(path)], _costly(path, builds))


def zip_with_a_tensor_converted_on_load(tmp: Path) -> Case:
    return _converted_on_load(tmp, legacy=False, through=False)


def legacy_with_a_tensor_converted_on_load(tmp: Path) -> Case:
    return _converted_on_load(tmp, legacy=True, through=False)


def zip_with_a_tensor_converted_on_load_through_another_function(tmp: Path) -> Case:
    return _converted_on_load(tmp, legacy=False, through=True)


class HandsOnTheDeviceCall:
    """Gives torch's call for a tensor of another device to another call, not as torch.save does."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        rebuild = torch._utils._rebuild_device_tensor_from_cpu_tensor
        return torch._tensor._rebuild_from_type_v2, (torch.Tensor, rebuild, (), {})


def zip_with_the_device_call_handed_on(tmp: Path) -> Case:
    path = tmp / "handed.pt"
    torch.save({"w": HandsOnTheDeviceCall()}, path)
    builds = "a call of _rebuild_device_tensor_from_cpu_tensor through another function"
    return Case(["inspect", str(path)], _costly(path, builds))


def zip_with_a_decoy_pickle_before_a_deep_one(tmp: Path) -> Case:
    # from review: the walk read the first data.pkl, torch another one (its folder's, the last of that name)
    path = zip_with_data_pkl(tmp, _nested_tuple_key(200_000))
    with zipfile.ZipFile(path) as source:
        entries = [(entry, source.read(entry)) for entry in source.infolist()]
    folder = entries[0][0].filename.split("/")[0]
    with zipfile.ZipFile(path, "w") as target:
        target.writestr(f"{folder}/decoy/data.pkl", pickle.dumps({}, protocol=2))
        for entry, content in entries:
            target.writestr(entry, content)
    return Case(["inspect", str(path)], _costly(path, "a tuple nested more than 100 deep"))


def zip_with_its_pickle_twice(tmp: Path) -> Case:
    # from review: torch reads one of two records of one name, miniz's choice; the walk read the other
    path = zip_with_data_pkl(tmp, _nested_tuple_key(200_000))
    with zipfile.ZipFile(path) as source:
        entries = [(entry, source.read(entry)) for entry in source.infolist()]
    folder = entries[0][0].filename.partition("/")[0]
    with zipfile.ZipFile(path, "w") as target, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        target.writestr(f"{folder}/data.pkl", pickle.dumps({}, protocol=2))
        for entry, content in entries:
            target.writestr(entry, content)
    return Case(
        ["inspect", str(path)], f"{path}: its archive holds {folder}/data.pkl 2 times: not written by torch.save"
    )


def zip_with_a_deep_key_after_9_mib_of_text_compressed(tmp: Path) -> Case:
    # from review: a data.pkl over 8 MiB was not walked, and deflated, it makes a file of 10 KB
    pickled = b"\x80\x02}X\x03\x00\x00\x00padX" + struct.pack("<I", 9 * 2**20) + b"x" * (9 * 2**20)
    pickled += b"s" + _nested_tuple_key(200_000)[3:]
    saved = saved_pt(tmp / "saved.pt")
    path = tmp / "model.pt"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            if entry.filename.endswith("/data.pkl"):
                target.writestr(entry.filename, pickled, compress_type=zipfile.ZIP_DEFLATED)
            else:
                target.writestr(entry, source.read(entry))
    return Case(["inspect", str(path)], _costly(path, "a tuple nested more than 100 deep"))


def legacy_pt_whose_protocol_version_is_a_tuple_of_2_to_the_30_items(tmp: Path) -> Case:
    # its repr, cut to 40 characters in the message, was made whole first: 12 minutes and 13 GB
    saved = tmp / "whole.pt"
    torch.save({"w": torch.zeros(100)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    version = pickle.dumps(1001, protocol=2)
    path = tmp / "model.pt"
    path.write_bytes(data.replace(version, b"\x80\x02" + _tuple_dag(30) + b"."))
    items = "a tuple of more than 10,000,000 items unfolded (a tuple repeated within itself)"
    return Case(["inspect", str(path)], _costly(path, items))


def zip_without_a_version_record(tmp: Path) -> Case:
    # from review: torch's own words followed, "(Could this error message be improved? If so, please report an
    # enhancement request to PyTorch.)"
    saved = saved_pt(tmp / "saved.pt")
    path = tmp / "model.pt"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            if not entry.filename.endswith("/version"):
                target.writestr(entry, source.read(entry))
    message = f'{path}: not a readable PyTorch checkpoint (Expected hasRecord("version") to be true, but got false.)'
    return Case(["inspect", str(path)], message)


def protocol_4_pickle(tmp: Path) -> Case:
    path = tmp / "model.pt"
    path.write_bytes(pickle.dumps({"fc.weight": [0.0] * 4}, protocol=4))  # torch warns of the protocol, then fails
    return Case(["inspect", str(path)], not_a_pickle(path, "Unsupported operand 149"))


def saved_with_protocol(protocol: int, *, legacy: bool) -> Callable[[Path], Case]:
    def saved(tmp: Path) -> Case:
        path = tmp / "model.pt"
        zip_format = not legacy
        torch.save({"w": torch.zeros(3)}, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns of the protocol, then refuses the file itself
            with pytest.raises(pickle.UnpicklingError) as refused:
                torch.load(path, weights_only=True)
        reason = re.search(r"Unsupported operand \d+", str(refused.value))
        assert reason is not None
        named = "0 or 1" if protocol < 2 else str(protocol)
        message = (
            f"{path}: a torch.save file pickled with protocol {named}, which torch.load(weights_only=True) does not "
            f"read (only protocols 2 and 3: {reason.group()}); nothing in it was executed. A copy saved "
            "with torch.save's default protocol can be inspected (loading this one needs weights_only=False: only "
            "for a file you trust)"
        )
        return Case(["inspect", str(path)], message)

    saved.__name__ = f"{'legacy' if legacy else 'zip'}_pt_pickled_with_protocol_{protocol}"
    return saved


def directory_of_training_state_only(tmp: Path) -> Case:
    torch.save(torch.optim.SGD([torch.zeros(2, requires_grad=True)]).state_dict(), tmp / "optimizer.pt")
    torch.save({"last_epoch": 3}, tmp / "scheduler.pt")
    message = f"{tmp}: no model weights, only training state saved beside them (optimizer.pt, scheduler.pt)"
    return Case(["inspect", str(tmp)], message)


def pt_nested_too_deeply(tmp: Path) -> Case:
    nested: list[object] = [torch.zeros(2)]
    for _ in range(1_500):
        nested = [nested]
    path = tmp / "model.pt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # pickle's own recursion, to write it (torch's unpickler reads it without any)
    try:
        torch.save({"w": torch.zeros(2), "x": nested}, path)
    finally:
        sys.setrecursionlimit(limit)
    message = f"{path}: its dicts and lists nest more than 1,000 deep: not a checkpoint paramscope reads"
    return Case(["inspect", str(path)], message)


def truncated_pt(tmp: Path) -> Case:
    torch.save({"w": torch.zeros(100)}, tmp / "whole.pt")
    whole = (tmp / "whole.pt").read_bytes()
    path = tmp / "model.pt"
    path.write_bytes(whole[: len(whole) // 2])  # the zip's central directory is at its end
    message = f"{path}: a zip archive cut short or damaged: truncated, or not a PyTorch checkpoint"
    return Case(["inspect", str(path)], message)


def legacy_pt_whose_storage_has_another_size(tmp: Path) -> Case:
    # torch's own message leaves its format unfilled: "storage has wrong byte size: expected %ld got %ld400396"
    saved = tmp / "whole.pt"
    torch.save({"w": torch.zeros(100)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    assert data[-408:-400] == struct.pack("<q", 100)  # the storage's element count, before its 400 bytes
    path = tmp / "model.pt"
    path.write_bytes(data[:-408] + struct.pack("<q", 99) + data[-400:])
    message = (
        f"{path}: not a readable PyTorch checkpoint (a storage's size in the file is not the size its pickle gives)"
    )
    return Case(["inspect", str(path)], message)


def legacy_pt_whose_storage_keys_are_others(tmp: Path) -> Case:
    saved = tmp / "whole.pt"
    torch.save({"w": torch.zeros(100)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    keys = data[:-408].rindex(b"]")  # the last pickle before the storages' data: the list of their keys
    key = re.search(rb"X(....)(\d+)", data[keys:-408], re.DOTALL)
    assert key is not None
    digits = key.group(2)
    other = str(int(digits) + 1).encode().rjust(len(digits), b"0")[-len(digits) :]
    path = tmp / "model.pt"
    path.write_bytes(data[:keys] + data[keys:-408].replace(digits, other) + data[-408:])
    message = f"{path}: not a readable PyTorch checkpoint (its storage keys are not those its object uses)"
    return Case(["inspect", str(path)], message)


def truncated_legacy_pt(tmp: Path) -> Case:
    path = tmp / "model.pt"
    torch.save({"w": torch.zeros(100)}, tmp / "whole.pt", _use_new_zipfile_serialization=False)
    path.write_bytes((tmp / "whole.pt").read_bytes()[:20])
    return Case(["inspect", str(path)], f"{path}: truncated, or not a PyTorch checkpoint")


FC_BIAS_CUT_SHORT = {"record": "data/1", "nbytes": "256 B", "held": "4 B"}
STORAGE_CUT_SHORT = (
    "{path}: the storage torch loads from its record {record} takes {nbytes}, but the record holds {held}: damaged, "
    "or not written by torch.save"
)


def rewritten(tmp: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """A checkpoint torch.save wrote, its archive written again with each record's bytes as ``change`` makes them
    from its name and bytes."""
    saved = saved_pt(tmp / "saved.pt")
    path = tmp / "model.pt"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            target.writestr(entry, change(entry.filename, source.read(entry)))
    return path


def rezipped(tmp: Path, keep: Callable[[str], bool]) -> Path:
    """A checkpoint torch.save wrote, its archive written again with only the records ``keep`` keeps."""
    saved = saved_pt(tmp / "saved.pt")
    path = tmp / "model.pt"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            if keep(entry.filename):
                target.writestr(entry, source.read(entry))
    return path


def zip_without_a_pickle(tmp: Path) -> Case:
    path = rezipped(tmp, lambda name: not name.endswith("/data.pkl"))
    return Case(["inspect", str(path)], f"{path}: a zip archive without data.pkl: not a PyTorch checkpoint")


def empty_zip(tmp: Path) -> Case:
    path = rezipped(tmp, lambda name: False)
    return Case(["inspect", str(path)], f"{path}: a zip archive without data.pkl: not a PyTorch checkpoint")


def zip_without_a_storage(tmp: Path) -> Case:
    path = rezipped(tmp, lambda name: not name.endswith("/data/0"))
    message = (
        f"{path}: not a readable PyTorch checkpoint (PytorchStreamReader failed locating file data/0: file not found)"
    )
    return Case(["inspect", str(path)], message)


def zip_with_a_storage_cut_short(tmp: Path) -> Case:
    # fc.bias's 64 float32 in 4 bytes: mapped, its storage runs on into the records after it, and torch says nothing
    path = rewritten(tmp, lambda name, content: bytes(4) if name.endswith("/data/1") else content)
    return Case(
        ["inspect", str(path)], STORAGE_CUT_SHORT.format(path=path, record="data/1", nbytes="256 B", held="4 B")
    )


def zip_with_a_storage_cut_short_and_one_too_long(tmp: Path) -> Case:
    # The archive holds as many bytes as the storages take, but fc.bias's 64 float32 are in 4 bytes and the 252 it
    # lacks sit at the end of fc.weight's record: mapped, fc.bias runs on into the records after its own.
    def change(name: str, content: bytes) -> bytes:
        if name.endswith("/data/0"):
            return content + bytes(252)
        return bytes(4) if name.endswith("/data/1") else content

    path = rewritten(tmp, change)
    return Case(
        ["inspect", str(path)], STORAGE_CUT_SHORT.format(path=path, record="data/1", nbytes="256 B", held="4 B")
    )


def zip_with_a_record_no_tensor_uses_and_a_storage_cut_short(tmp: Path) -> Case:
    # from review: the storages were checked against the records' bytes together, which the unused record made up for
    path = rewritten(tmp, lambda name, content: bytes(4) if name.endswith("/data/1") else content)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("saved/data/7", bytes(1024))
    return Case(
        ["inspect", str(path)], STORAGE_CUT_SHORT.format(path=path, record="data/1", nbytes="256 B", held="4 B")
    )


def zip_with_a_storage_record_twice(tmp: Path) -> Case:
    # from review: miniz reads the first, cut short; the second made up for its bytes
    path = rewritten(tmp, lambda name, content: bytes(4) if name.endswith("/data/1") else content)
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name"
        archive.writestr("saved/data/1", bytes(256))
    return Case(["inspect", str(path)], f"{path}: its archive holds saved/data/1 twice: not written by torch.save")


def torchscript_archive(tmp: Path) -> Case:
    path = tmp / "model.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated; such files are still about
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    message = (
        f"{path}: a TorchScript archive (torch.jit.save): its weights come with code, which torch.load("
        "weights_only=True) does not read; inspect the module torch.jit.load gives, if you trust where it comes from"
    )
    return Case(["inspect", str(path)], message)


def empty_pt(tmp: Path) -> Case:
    path = tmp / "model.pt"
    path.write_bytes(b"")
    return Case(["inspect", str(path)], f"{path}: empty file (0 bytes): not a PyTorch checkpoint")


def pt_holding_a_list(tmp: Path) -> Case:
    path = tmp / "model.pt"
    torch.save([torch.zeros(2), torch.zeros(3)], path)
    return Case(["inspect", str(path)], f"{path}: holds an object of type list, not a state dict or a checkpoint dict")


def pt_holding_an_int(tmp: Path) -> Case:
    path = tmp / "model.pt"
    torch.save(7, path)
    return Case(["inspect", str(path)], f"{path}: holds an object of type int, not a state dict or a checkpoint dict")


def pt_holding_none(tmp: Path) -> Case:
    path = tmp / "model.pt"
    torch.save(None, path)
    return Case(["inspect", str(path)], f"{path}: holds None, not a state dict or a checkpoint dict")


def pt_without_tensors(tmp: Path) -> Case:
    path = tmp / "model.ckpt"
    torch.save({"epoch": 3, "global_step": 100}, path)
    return Case(["inspect", str(path)], f"{path}: no model tensors found (top-level keys: 'epoch', 'global_step')")


def adam_state_after_one_step() -> dict[str, Any]:
    """An Adam optimizer's state_dict() after a step: its 'state' holds exp_avg, exp_avg_sq and step tensors."""
    model = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    assert torch.is_tensor(state["state"][0]["exp_avg"])  # tensors: not a dict without any
    return state


def optimizer_state_dict_pt(tmp: Path) -> Case:
    # torch.save(optimizer.state_dict(), "opt.pt"): its 'state' holds tensors, yet no model's
    path = tmp / "opt.pt"
    torch.save(adam_state_after_one_step(), path)
    message = (
        f"{path}: no model weights, only training state (an optimizer's state_dict(): its 'state' and 'param_groups')"
    )
    return Case(["inspect", str(path)], message)


def checkpoint_of_optimizer_state_only(tmp: Path) -> Case:
    path = tmp / "opt.pt"
    torch.save({"optimizer": adam_state_after_one_step(), "scaler": {"scale": torch.ones(())}, "epoch": 3}, path)
    return Case(["inspect", str(path)], f"{path}: no model weights, only training state ('optimizer', 'scaler')")


def checkpoint_of_an_optimizer_before_its_first_step(tmp: Path) -> Case:
    # its state holds no tensor yet: no entry of the file holds any
    path = tmp / "opt.pt"
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    torch.save({"optimizer": optimizer.state_dict(), "epoch": 1}, path)
    return Case(["inspect", str(path)], f"{path}: no model weights, only training state ('optimizer')")


def checkpoint_of_optimizer_and_rng_state(tmp: Path) -> Case:
    # a generator's state saved as a tensor beside the optimizer's: training state too, not a model's weights
    path = tmp / "opt.pt"
    torch.save({"optimizer": adam_state_after_one_step(), "rng_state": torch.get_rng_state(), "epoch": 3}, path)
    return Case(["inspect", str(path)], f"{path}: no model weights, only training state ('optimizer', 'rng_state')")


def sub_models_after_an_optimizer_under_another_key(tmp: Path) -> Case:
    # the advice names a sub-model, not the optimizer's state dict listed before it
    path = tmp / "gan.pt"
    torch.save({"opt_g": adam_state_after_one_step(), "generator": {"w": torch.zeros(3)}}, path)
    message = (
        f"{path}: no model tensors found: its entries 'opt_g', 'generator' hold tensors, but none under a key "
        "paramscope reads as the model's ('state_dict', 'model_state_dict', 'model_state', 'model', …); to count one, "
        f"save it alone and inspect that: torch.save(torch.load({str(path)!r}, weights_only=True)['generator'], "
        "'model.pt')"
    )
    return Case(["inspect", str(path)], message)


def test_sub_models_without_a_model_key_say_how_to_count_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a GAN's checkpoint: two state dicts, neither under a key that names the model, so neither is taken for it
    monkeypatch.chdir(tmp_path)
    gan = {
        "generator": {"w": torch.zeros(3)},
        "discriminator": {"w": torch.zeros(4)},
        "optimizer": {"s": torch.zeros(2)},
    }
    torch.save(gan, "gan.pt")
    advice = "torch.save(torch.load('gan.pt', weights_only=True)['generator'], 'model.pt')"
    message = (
        "gan.pt: no model tensors found: its entries 'generator', 'discriminator', 'optimizer' hold tensors, but none "
        "under a key paramscope reads as the model's ('state_dict', 'model_state_dict', 'model_state', 'model', …); "
        f"to count one, save it alone and inspect that: {advice}"
    )
    assert_error(run(capsys, "inspect", "gan.pt"), message)
    exec(advice, {"torch": torch})  # the advice, followed
    assert paramscope.inspect("model.pt").totals.params == gan["generator"]["w"].numel()


def gguf_bad_magic(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(b"GGML" + struct.pack("<I", 3) + bytes(64))
    return Case(["inspect", str(path)], f"{path}: not a GGUF file (it does not start with the magic bytes 'GGUF')")


def gguf_version_99(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 99) + bytes(64))
    return Case(["inspect", str(path)], f"{path}: GGUF version 99 is not supported (versions 2, 3)")


def gguf_bytes(*pairs: bytes, tensors: int = 0) -> bytes:
    """A GGUF v3 file's header with these key-value pairs (each as :func:`gguf_pair` makes it), and no tensor."""
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, len(pairs)) + b"".join(pairs)


def gguf_pair(key: str, kind: int, value: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + value


GGUF_ARCHITECTURE = gguf_pair("general.architecture", 8, struct.pack("<Q", 5) + b"llama")


def gguf_string_past_the_end(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(gguf_pair("general.name", 8, struct.pack("<Q", 1_000) + b"tiny")))
    return Case(["inspect", str(path)], f"{path}: malformed GGUF (a string of 1,000 bytes at byte 48, past the end of "
                                        "the file)")  # fmt: skip


def gguf_key_given_twice(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(GGUF_ARCHITECTURE, GGUF_ARCHITECTURE))
    message = f"{path}: malformed GGUF (Duplicate general.architecture already in list at offset 69)"
    return Case(["inspect", str(path)], message)


def gguf_empty_array_of_an_unknown_type(tmp: Path) -> Case:
    # an array's item type, 13, is none of GGUF's: llama.cpp refuses it before it reads the count, as it does any value
    # of an unknown type
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(GGUF_ARCHITECTURE, gguf_pair("x.array", 9, struct.pack("<IQ", 13, 0))))
    return Case(["inspect", str(path)], f"{path}: malformed GGUF (unknown metadata value type 13 at byte 88)")


def gguf_tensor(name: bytes, dims: list[int], kind: int = 0, offset: int = 0) -> bytes:
    """A GGUF tensor info: its name, dimensions (innermost first), GGML type (0 is F32) and data offset."""
    head = struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
    return head + b"".join(struct.pack("<Q", dim) for dim in dims) + struct.pack("<IQ", kind, offset)


def gguf_file(path: Path, *tensors: bytes, data: int = 0) -> Path:
    """A GGUF file with these tensor infos after the architecture, aligned to 32 bytes, then ``data`` bytes."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 1) + GGUF_ARCHITECTURE + b"".join(tensors)
    path.write_bytes(head + bytes(-len(head) % 32 + data))
    return path


def gguf_claiming_a_trillion_tensors(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(GGUF_ARCHITECTURE, tensors=2**40))
    message = f"{path}: malformed GGUF (1,099,511,627,776 tensors, more than the 131,072 paramscope reads)"
    return Case(["inspect", str(path)], message)


def gguf_tensor_of_5_dimensions(tmp: Path) -> Case:
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [1, 1, 1, 1, 2]), data=8)
    return Case(
        ["inspect", str(path)], f"{path}: malformed GGUF (tensor 'a.weight' has 5 dimensions, more than GGML's 4)"
    )


def gguf_unknown_ggml_type(tmp: Path) -> Case:
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [32], kind=4), data=32)  # Q4_2, long removed
    return Case(["inspect", str(path)], f"{path}: malformed GGUF (tensor 'a.weight' has unknown GGML type 4)")


def gguf_shape_overflowing_64_bits(tmp: Path) -> Case:
    # numpy's product of the dimensions wraps around to 0
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [2**32, 2**32]), data=16)
    message = (
        f"{path}: malformed GGUF (tensor 'a.weight' has shape [4294967296, 4294967296], whose size overflows 64 bits)"
    )
    return Case(["inspect", str(path)], message)


def gguf_dimension_past_64_bits_beside_a_zero(tmp: Path) -> Case:
    # no value (a dimension is 0), but llama.cpp reads each dimension as an int64 and refuses a negative one; gguf's
    # reader refuses it too (numpy: "Maximum allowed dimension exceeded")
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [0, 2**63]), data=32)
    message = (
        f"{path}: malformed GGUF (tensor 'a.weight' has shape [0, 9223372036854775808], a dimension past GGML's int64 "
        "sizes)"
    )
    return Case(["inspect", str(path)], message)


def gguf_tensor_past_the_end(tmp: Path) -> Case:
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [1024]), data=16)
    message = f"{path}: malformed GGUF (tensor 'a.weight' ends at byte 4,224, past the end of the file (144 bytes))"
    return Case(["inspect", str(path)], message)


def gguf_tensor_not_aligned(tmp: Path) -> Case:
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [8], offset=4), data=64)
    message = (
        f"{path}: malformed GGUF (tensor 'a.weight' starts at byte 4 of the data, not a multiple of the alignment (32))"
    )
    return Case(["inspect", str(path)], message)


def gguf_tensors_overlapping(tmp: Path) -> Case:
    # a.weight's 16 float32 take bytes 0 to 64 of the data; b.weight starts at 32, aligned
    a, b = gguf_tensor(b"a.weight", [16]), gguf_tensor(b"b.weight", [8], offset=32)
    path = gguf_file(tmp / "model.gguf", b, a, data=64)
    message = (
        f"{path}: malformed GGUF (tensors 'a.weight' and 'b.weight' overlap: 'b.weight' starts at byte 32 of the "
        "data, before 'a.weight' ends at byte 64)"
    )
    return Case(["inspect", str(path)], message)


@pytest.mark.parametrize("empty_first", [True, False])
def test_a_gguf_tensor_of_no_elements_overlaps_none(tmp_path: Path, empty_first: bool) -> None:
    # from review: one at another's offset was refused as overlapping it when it came after it in the list
    big, empty = gguf_tensor(b"big", [8]), gguf_tensor(b"empty", [0])
    path = gguf_file(tmp_path / "model.gguf", *((empty, big) if empty_first else (big, empty)), data=32)
    assert [(t.name, t.n_bytes) for t in gguf.GGUFReader(path).tensors] == (
        [("empty", 0), ("big", 32)] if empty_first else [("big", 32), ("empty", 0)]
    )
    records = {record.name: record.bytes for record in paramscope.inspect(str(path)).tensors}
    assert records == {"big": 32, "empty": 0}


def gguf_key_not_utf8(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(struct.pack("<Q", 1) + b"\xff" + struct.pack("<II", 4, 1)))  # key b"\xff", uint32 1
    message = (
        f"{path}: malformed GGUF (the metadata key at byte 24 is not UTF-8: b'\\xff' ('utf-8' codec can't decode byte "
        "0xff in position 0: invalid start byte))"
    )
    return Case(["inspect", str(path)], message)


def gguf_tensor_name_not_utf8(tmp: Path) -> Case:
    # from review: the error did not say which name; a long one is shown by its first 64 bytes
    name = b"blk.0." + b"x" * 60 + b"\xc3("
    path = gguf_file(tmp / "model.gguf", gguf_tensor(b"a.weight", [4]), gguf_tensor(name, [4], offset=32), data=64)
    shown, at = repr(name[:64]) + "…", path.read_bytes().index(name) - 8  # where its length is
    message = (
        f"{path}: malformed GGUF (the name of tensor 1 at byte {at} is not UTF-8: {shown} ('utf-8' codec can't decode "
        "byte 0xc3 in position 66: invalid continuation byte))"
    )
    return Case(["inspect", str(path)], message)


def gguf_of_a_hundred_thousand_keys(tmp: Path) -> Case:
    # each key kept costs a dict entry: a file can hold millions of small pairs (8 GB of them: about 50 GB kept)
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(*(gguf_pair(f"k{index:06}", 0, b"\x01") for index in range(100_000))))
    message = f"{path}: malformed GGUF (100,000 metadata key-value pairs, more than the 65,536 paramscope reads)"
    return Case(["inspect", str(path)], message)


def gguf_key_longer_than_the_specification_allows(tmp: Path) -> Case:
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(gguf_pair("k" * 70_000, 0, b"\x01")))
    message = f"{path}: malformed GGUF (a metadata key of 70,000 bytes at byte 24, longer than GGUF's 65,535)"
    return Case(["inspect", str(path)], message)


def gguf_empty_key(tmp: Path) -> Case:
    # gguf's reader takes it; llama.cpp refuses a file with one ("key 1 is empty")
    path = tmp / "model.gguf"
    path.write_bytes(gguf_bytes(GGUF_ARCHITECTURE, gguf_pair("", 4, struct.pack("<I", 1))))
    return Case(["inspect", str(path)], f"{path}: malformed GGUF (an empty metadata key at byte 69)")


def directory_whose_weights_are_a_dangling_symlink(tmp: Path) -> Case:
    (tmp / "pytorch_model.bin").symlink_to(tmp / "nowhere.bin")
    return Case(["inspect", str(tmp)], f"{tmp / 'pytorch_model.bin'}: cannot be read: No such file or directory")


def directory_without_weights(tmp: Path) -> Case:
    (tmp / "README.md").write_text("# a model card, no weights\n")
    (tmp / "tokenizer.json").write_text("{}")
    message = (
        f"{tmp}: no weights found (no *.safetensors, *.bin, *.pt, *.pth, *.ckpt or *.gguf files, and no config.json)"
    )
    return Case(["inspect", str(tmp)], message)


def directory_whose_weights_are_directories(tmp: Path) -> Case:
    # Lightning saves a sharded checkpoint as a directory named 'epoch=0-step=9.ckpt': no weight file, and no
    # training state either (the torch reader had been given it, and said "only training state saved beside them ()")
    for name in ("epoch=0-step=9.ckpt", "model.safetensors", "model.gguf"):
        (tmp / name).mkdir()
    message = (
        f"{tmp}: no weights found (no *.safetensors, *.bin, *.pt, *.pth, *.ckpt or *.gguf files, and no config.json)"
    )
    return Case(["inspect", str(tmp)], message)


def unrecognised_file(tmp: Path) -> Case:
    path = tmp / "weights.dat"
    path.write_bytes(b"hello world")
    message = (
        f"{path}: not a checkpoint paramscope recognises (expected 'package.module:attr', 'path/to/file.py:attr', a "
        "checkpoint (.safetensors, .pt, .pth, .bin, .ckpt, .gguf, *.safetensors.index.json, *.bin.index.json), "
        "a config.json, a directory holding them, or hf:org/name)"
    )
    return Case(["inspect", str(path)], message)


def explain_on_a_checkpoint(tmp: Path) -> Case:
    path = safetensors_file(tmp / "model.safetensors", {"a": f32([0, 8])}, bytes(8))
    message = f"{path}: --explain needs a model to read layer hyperparameters from; a checkpoint has only tensors"
    return Case(["inspect", str(path), "--explain"], message)


def arguments_on_a_checkpoint(tmp: Path) -> Case:
    path = saved_pt(tmp / "model.pt")
    return Case(["inspect", str(path), "hidden=512"], f"{path}: KEY=VALUE arguments are only for model code targets")


CASES: list[Callable[[Path], Case]] = [
    missing_file, empty_file, shorter_than_8_bytes, header_longer_than_file, header_over_100_mb, gguf_named_safetensors,
    pt_named_safetensors, legacy_pt_named_safetensors, header_not_json,
    header_not_utf8, header_nested_too_deeply, header_with_a_number_too_long, header_is_a_list, header_is_null,
    unknown_dtype,
    offsets_outside_the_data, overlapping_offsets, gap_in_the_data, bytes_after_the_last_tensor,
    span_not_dtype_times_shape, shape_overflowing_64_bits, shape_with_a_dimension_past_64_bits_beside_a_zero,
    sub_byte_type_in_part_of_a_byte, decreasing_offsets,
    missing_data_offsets, shape_with_a_boolean, shape_with_a_negative_size, shape_as_a_string, offset_as_a_fraction,
    offset_as_negative_zero, entry_as_an_array_of_two_fields, entry_as_an_array_of_four, field_nested_128_levels_deep,
    field_nested_128_levels_deep_under_a_key_named_twice,
    name_nested_8000_modules_deep,
    index_names_a_missing_shard, directory_index_names_a_missing_shard, index_not_json,
    index_nested_too_deeply, index_naming_a_shard_too_long_to_be_a_file, index_naming_a_shard_with_control_characters,
    index_without_weight_map, index_naming_an_empty_shard, index_naming_the_parent_directory,
    index_naming_a_shard_in_a_subdirectory, index_naming_a_symlink_loop, symlink_loop,
    index_with_an_empty_weight_map, metadata_not_strings, metadata_false, shards_holding_the_same_tensor,
    directory_of_two_safetensors_checkpoints, directory_of_two_safetensors_indexes, directory_of_two_bin_indexes,
    index_lists_a_tensor_its_shard_lacks, index_lists_a_tensor_twice_and_last_in_a_shard_that_lacks_it,
    directory_of_two_epochs_pt, llama_slices_for_model_parallel_loading,
    bin_shards_holding_the_same_tensor, bin_index_lists_a_tensor_its_shard_lacks, bin_index_names_a_missing_shard,
    random_bytes_pt, text_pt, repeated_text_pt, zip_with_text_pickle, zip_with_a_pickle_popping_an_empty_stack,
    zip_with_bytes_after_a_protocol_0_pickle, pickle_calling_with_wrong_arguments,
    pickle_with_a_dict_as_a_key, pickle_rebuilding_a_tensor_from_a_tuple, legacy_pt_claiming_4_pib, protocol_4_pickle,
    saved_with_protocol(4, legacy=False), saved_with_protocol(5, legacy=True), saved_with_protocol(1, legacy=True),
    saved_with_protocol(0, legacy=False), saved_with_protocol(1, legacy=False),
    pt_nested_too_deeply, truncated_pt, truncated_legacy_pt, legacy_pt_whose_storage_has_another_size,
    legacy_pt_whose_storage_keys_are_others, legacy_pt_with_a_negative_element_count,
    legacy_pt_of_an_unknown_protocol_version, zip_with_a_key_nested_200000_tuples_deep,
    zip_with_a_key_nested_1200_tuples_deep, zip_with_a_key_of_2_to_the_100_items, zip_with_a_bytearray_of_a_gib,
    legacy_pt_whose_protocol_version_is_a_tuple_of_2_to_the_30_items, zip_without_a_version_record,
    zip_with_a_bytearray_made_through_another_function, zip_with_bytes_by_the_hex_codec,
    zip_with_a_global_of_a_long_name, plain_pickle_of_a_global_of_a_long_name, zip_with_a_stack_global_of_a_long_name,
    zip_with_a_byteorder_record_of_8_kib, zip_with_a_size_past_int64,
    zip_with_a_tensor_converted_on_load, legacy_with_a_tensor_converted_on_load,
    zip_with_a_tensor_converted_on_load_through_another_function, zip_with_the_device_call_handed_on,
    zip_with_a_decoy_pickle_before_a_deep_one, zip_with_a_deep_key_after_9_mib_of_text_compressed,
    zip_with_its_pickle_twice,
    zip_without_a_pickle, empty_zip, zip_without_a_storage,
    zip_with_a_storage_cut_short, zip_with_a_storage_cut_short_and_one_too_long,
    zip_with_a_record_no_tensor_uses_and_a_storage_cut_short, zip_with_a_storage_record_twice, torchscript_archive,
    empty_pt, pt_holding_a_list,
    pt_holding_an_int, pt_holding_none, pt_without_tensors, optimizer_state_dict_pt, checkpoint_of_optimizer_state_only,
    checkpoint_of_optimizer_and_rng_state, checkpoint_of_an_optimizer_before_its_first_step,
    zip_with_a_pickle_asking_for_a_mark_it_popped,
    sub_models_after_an_optimizer_under_another_key,
    directory_of_training_state_only, gguf_bad_magic,
    gguf_version_99, gguf_string_past_the_end, gguf_key_given_twice, gguf_empty_array_of_an_unknown_type,
    gguf_claiming_a_trillion_tensors, gguf_tensor_of_5_dimensions, gguf_unknown_ggml_type,
    gguf_shape_overflowing_64_bits, gguf_dimension_past_64_bits_beside_a_zero,
    gguf_tensor_past_the_end, gguf_tensor_not_aligned, gguf_tensors_overlapping,
    gguf_key_not_utf8, gguf_tensor_name_not_utf8, gguf_of_a_hundred_thousand_keys,
    gguf_key_longer_than_the_specification_allows, gguf_empty_key,
    directory_whose_weights_are_a_dangling_symlink, directory_without_weights,
    directory_whose_weights_are_directories,
    unrecognised_file, explain_on_a_checkpoint, arguments_on_a_checkpoint,
]  # fmt: skip


@pytest.mark.parametrize("make", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Callable[[Path], Case]
) -> None:
    case = make(tmp_path)
    assert_error(run(capsys, *case.argv), case.message)
    # the API raises the same message as a ParamscopeError (the CLI adds only the prefix)
    if case.argv[2:] == [] and case.api:
        with pytest.raises(paramscope.ParamscopeError) as raised:
            paramscope.inspect(case.argv[1])
        assert str(raised.value) == case.message


_EVERY_COMMAND = """
import contextlib, io, json, sys
import paramscope
from paramscope.cli import main
results = []
for argv in (["inspect", sys.argv[1]], ["summary", sys.argv[1], "--input-size", "1,4"], ["memory", sys.argv[1]],
             ["diff", sys.argv[1], sys.argv[1]]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        results.append([main(argv), err.getvalue()])
try:
    paramscope.inspect(sys.argv[1])
except paramscope.ParamscopeError as error:
    results.append([None, str(error)])
print(json.dumps(results))
"""


@pytest.mark.parametrize("mode", [0o000, 0o400], ids=["no-permission", "read-only"])
def test_directory_that_cannot_be_looked_into_is_named_itself(tmp_path: Path, mode: int) -> None:
    # Without search permission nothing in it can be looked at; the error named a config.json it may not hold
    # ("DIR/config.json: Permission denied"). Root, which may look into any directory, runs without that privilege.
    directory = tmp_path / "model"
    directory.mkdir()
    safetensors_file(directory / "model.safetensors", {"a": f32([0, 8])}, bytes(8))
    unprivileged = without_root_privilege("read any directory")
    directory.chmod(mode)
    try:
        # the ground truth: what looking at a file in it gives with the same privileges
        look = f"import os; os.stat({str(directory / 'config.json')!r})"
        shell = subprocess.run([*unprivileged, sys.executable, "-c", look], capture_output=True, text=True,
                               timeout=SUBPROCESS_TIMEOUT, check=False)  # fmt: skip
        assert "PermissionError" in shell.stderr
        env = {**os.environ, "PYTHONPATH": str(Path(paramscope.__file__).parents[1])}
        done = subprocess.run(
            [*unprivileged, sys.executable, "-c", _EVERY_COMMAND, str(directory)],
            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env=env, check=False,
        )  # fmt: skip
    finally:
        directory.chmod(0o755)
    assert (done.returncode, done.stderr) == (0, "")
    expected = [2, f"paramscope: error: {directory}: {os.strerror(errno.EACCES)}\n"]
    assert json.loads(done.stdout) == [expected] * 4 + [[None, f"{directory}: {os.strerror(errno.EACCES)}"]]


@pytest.mark.parametrize(("kind", "size"), [(8, 8), (0, 1)], ids=["strings", "uint8"])
def test_gguf_metadata_of_a_billion_items_is_refused_before_it_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: int, size: int
) -> None:
    # a sparse file of zeros, each 8 zero bytes an empty string or each byte a uint8: gguf's reader makes numpy arrays
    # for every item of an array, numbers too (about 1 kB each: 500 GB for these); refused before the reader starts
    path = tmp_path / "model.gguf"
    path.write_bytes(gguf_bytes(gguf_pair("x.array", 9, struct.pack("<IQ", kind, 2**29))))
    os.truncate(path, 2**29 * size + 4096)
    message = f"{path}: malformed GGUF (its metadata arrays hold more than 2,097,152 items, more than any tokenizer's)"
    assert_error(run(capsys, "inspect", str(path)), message)


def test_gguf_tensor_name_of_more_than_16_mib_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # llama.cpp refuses a tensor name of 64 bytes or more; a sparse file of zeros can name one with a terabyte,
    # which would be copied (and decoded, and shown) whole
    path = gguf_file(tmp_path / "model.gguf", gguf_tensor(b"a" * (2**24 + 1), [8]), data=32)
    message = (
        f"{path}: malformed GGUF (its metadata keys and tensor names take more than 16,777,216 bytes, more than any "
        "model's)"
    )
    assert_error(run(capsys, "inspect", str(path)), message)


def test_gguf_string_values_are_kept_within_a_bound_in_all(tmp_path: Path) -> None:
    # 64 string values of 1 MiB each (each under the bound on one string kept), in a sparse file: a 64 GiB file of
    # 65,536 such strings would otherwise be copied into memory whole
    path = tmp_path / "model.gguf"
    with path.open("wb") as handle:
        handle.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 65) + GGUF_ARCHITECTURE)
        for index in range(64):
            handle.write(gguf_pair(f"x.text{index:02}", 8, struct.pack("<Q", 2**20)))
            handle.seek(2**20, os.SEEK_CUR)
        handle.write(bytes(32))
    paramscope.inspect(str(path))  # imports done before the measure
    tracemalloc.start()
    try:
        report = paramscope.inspect(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "model.gguf: GGUF model (unnamed), architecture llama" in report.notes
    assert peak < 2**25  # the strings hold 2^26 bytes


def test_gguf_array_past_the_end_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    # an array of 2^62 uint8: gguf's reader would read empty items past the end of the file for ever (in a process
    # of its own, bounded in time)
    path.write_bytes(gguf_bytes(GGUF_ARCHITECTURE, gguf_pair("x.array", 9, struct.pack("<IQ", 0, 2**62))))
    done = run_in_a_new_process("inspect", str(path), timeout=SUBPROCESS_TIMEOUT)
    message = (
        f"{path}: malformed GGUF (an array of 4,611,686,018,427,387,904 items at byte 88 does not fit in the rest "
        "of the file)"
    )
    assert_error((done.returncode, done.stdout, done.stderr), message)


SAFETENSORS_CASES = [
    empty_file, shorter_than_8_bytes, header_longer_than_file, header_over_100_mb, gguf_named_safetensors,
    pt_named_safetensors, legacy_pt_named_safetensors, header_not_json, header_not_utf8,
    header_nested_too_deeply, header_with_a_number_too_long, header_is_a_list, header_is_null, metadata_false,
    unknown_dtype, offsets_outside_the_data,
    overlapping_offsets, gap_in_the_data, bytes_after_the_last_tensor, span_not_dtype_times_shape,
    shape_overflowing_64_bits, shape_with_a_dimension_past_64_bits_beside_a_zero, sub_byte_type_in_part_of_a_byte,
    decreasing_offsets, missing_data_offsets, shape_with_a_boolean, shape_with_a_negative_size, shape_as_a_string,
    offset_as_a_fraction, offset_as_negative_zero,
    entry_as_an_array_of_two_fields, entry_as_an_array_of_four, field_nested_128_levels_deep,
    field_nested_128_levels_deep_under_a_key_named_twice,
]  # fmt: skip


@pytest.mark.parametrize("make", SAFETENSORS_CASES, ids=lambda m: m.__name__)
def test_safe_open_rejects_the_same_files(tmp_path: Path, make: Callable[[Path], Case]) -> None:
    case = make(tmp_path)
    assert case.safetensors_file is not None
    with pytest.raises(SafetensorError), safe_open(str(case.safetensors_file), "numpy"):
        pass


_A = '"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}'
# A key named twice, and how the safetensors library reads the file (None: it reads it, as its last entries give it)
REPEATED_KEYS = {
    "tensor-moved": (
        '"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        '"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}',
        24,
        "tensor 'a' is in the header twice (read as its last entry, as safetensors does): bytes 0 to 8 of the data "
        "belong to no tensor",
    ),
    "tensor-repeated": (f"{_A}, {_A}", 8, None),
    "tensor-retyped": (f'{_A}, "a": {{"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}', 8, None),
    "tensor-reordered": (f'{_A}, "a": {{"data_offsets": [0, 8], "shape": [2], "dtype": "F32"}}', 8, None),
    "earlier-offsets-decrease": (f'"a": {{"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, {_A}', 8, None),
    "earlier-not-an-entry": (
        f'"a": 5, {_A}',
        8,
        "tensor 'a' is in the header twice, and an entry before the last lacks a valid dtype, shape or data_offsets",
    ),
    "earlier-size-over-64-bits": (
        f'"a": {{"dtype": "F32", "shape": [18446744073709551616], "data_offsets": [0, 8]}}, {_A}',
        8,
        "tensor 'a' is in the header twice, and an entry before the last lacks a valid dtype, shape or data_offsets",
    ),
    "earlier-offset-over-64-bits": (
        f'"a": {{"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551616]}}, {_A}',
        8,
        "tensor 'a' is in the header twice, and an entry before the last lacks a valid dtype, shape or data_offsets",
    ),
    "earlier-size-at-64-bits": (
        f'"a": {{"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 8]}}, {_A}',
        8,
        None,
    ),
    "earlier-unknown-dtype": (
        f'"a": {{"dtype": "XX", "shape": [2], "data_offsets": [0, 8]}}, {_A}',
        8,
        "tensor 'a' is in the header twice, and an entry before the last lacks a valid dtype, shape or data_offsets",
    ),
    "dtype-twice": (
        '"a": {"dtype": "F32", "dtype": "I32", "shape": [2], "data_offsets": [0, 8]}',
        8,
        "tensor 'a' gives its dtype twice",
    ),
    "metadata-twice": (
        f'"__metadata__": {{"x": "1"}}, "__metadata__": {{"y": "2"}}, {_A}',
        8,
        "the header gives __metadata__ twice",
    ),
    "metadata-key-twice": (f'"__metadata__": {{"x": "1", "x": "2"}}, {_A}', 8, None),
}


@pytest.mark.parametrize(("entries", "size", "message"), REPEATED_KEYS.values(), ids=REPEATED_KEYS)
def test_keys_named_twice_are_read_as_safe_open_reads_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, entries: str, size: int, message: str | None
) -> None:
    # JSON allows a key twice; safetensors refuses a field of its structs named twice and keeps the last entry of a
    # tensor named twice, then checks the file as it is left
    path = safetensors_file(tmp_path / "model.safetensors", None, bytes(size), raw=f"{{{entries}}}".encode())
    if message is not None:
        with pytest.raises(SafetensorError), safe_open(str(path), "numpy"):
            pass
        assert_error(run(capsys, "inspect", str(path)), f"{path}: {message}")
        return
    with safe_open(str(path), "numpy") as handle:
        expected = {name: (handle.get_tensor(name).dtype.name, handle.get_tensor(name).shape) for name in handle.keys()}  # noqa: SIM118
        expected_metadata = handle.metadata() or {}
    tensors, metadata = stored_tensors(path)
    assert {t.name: (t.dtype, t.shape) for t in tensors} == expected
    assert metadata == expected_metadata
    assert paramscope.inspect(str(path)).totals.params == 2


def test_a_field_nested_as_deep_as_the_crate_reads_is_read(tmp_path: Path) -> None:
    path = safetensors_file(tmp_path / "model.safetensors", None, bytes(4), raw=_nested(127).encode())
    with safe_open(str(path), "numpy") as handle:
        assert list(handle.keys()) == ["a"]
    assert paramscope.inspect(str(path)).totals.params == 1


def test_a_name_holding_minus_zero_is_read_as_any_other(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"layer-0.weight": ("F32", (2, 3)), "layer-0.bias": ("F32", (3,))})
    with safe_open(str(path), "numpy") as handle:
        expected = {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    tensors, _ = stored_tensors(path)
    assert {t.name: list(t.shape) for t in tensors} == expected
    assert [type(dim) for t in tensors for dim in t.shape] == [int, int, int]


@pytest.mark.parametrize(
    "entries",
    [
        '"a": ["F32", [2], [0, 8]]',
        '"a": ["F32", [2], [0, 8]], "b": {"dtype": "I8", "shape": [3, 1], "data_offsets": [8, 11]}',
        f'"a": ["I32", [2], [0, 8]], {_A}',  # the earlier entry of a repeated tensor
    ],
    ids=["one", "beside-an-object", "repeated"],
)
def test_an_entry_given_as_the_array_of_its_fields_is_read_as_safe_open_reads_it(tmp_path: Path, entries: str) -> None:
    # serde, which the crate reads its header with, takes a struct from the array of its fields in order too
    size = 11 if '"b"' in entries else 8
    path = safetensors_file(tmp_path / "model.safetensors", None, bytes(size), raw=f"{{{entries}}}".encode())
    with safe_open(str(path), "numpy") as handle:
        expected = {name: (handle.get_tensor(name).dtype.name, handle.get_tensor(name).shape) for name in handle.keys()}  # noqa: SIM118
    tensors, _ = stored_tensors(path)
    assert {t.name: (t.dtype, t.shape) for t in tensors} == expected
    assert paramscope.inspect(str(path)).totals.params == sum(math.prod(shape) for _, shape in expected.values())


@pytest.mark.parametrize(("code", "count", "size"), [("Q4_0", 32, 18), ("float32", 2, 8), ("f32", 2, 8), ("nf4", 4, 2)])
def test_dtype_codes_safetensors_does_not_define(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, code: str, count: int, size: int
) -> None:
    header = {"a": {"dtype": code, "shape": [count], "data_offsets": [0, size]}}
    path = safetensors_file(tmp_path / "model.safetensors", header, bytes(size))
    with pytest.raises(SafetensorError), safe_open(str(path), "numpy"):  # the format has no such dtype
        pass
    assert_error(run(capsys, "inspect", str(path)), f"{path}: tensor 'a' has unknown dtype {code!r}")


@pytest.mark.parametrize(
    ("escape", "refused"),
    [("\\ud800", True), ("\\udc00x", True), ("\\ud83d\\ude00", False)],
    ids=["high-half", "low-half", "pair"],
)
def test_a_name_of_half_a_surrogate_pair_is_refused_as_the_library_refuses_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, escape: str, refused: bool
) -> None:
    # Python's parser reads "\ud800" as a lone surrogate; the library's (serde_json) refuses it: it was counted
    entry = json.dumps(f32([0, 8]))
    path = safetensors_file(tmp_path / "model.safetensors", None, bytes(8), raw=f'{{"{escape}": {entry}}}'.encode())
    if refused:
        with pytest.raises(SafetensorError, match="invalid JSON in header"), safe_open(str(path), "numpy"):
            pass
        message = (f"{path}: header is not valid JSON (a \\u escape of half a surrogate pair, which is no character, "
                   "as the safetensors library's parser refuses): not a safetensors file")  # fmt: skip
        assert_error(run(capsys, "inspect", str(path)), message)
    else:
        with safe_open(str(path), "numpy") as opened:
            assert list(opened.keys()) == ["\U0001f600"]
        assert paramscope.inspect(str(path)).tensors[0].name == "\U0001f600"


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint64, torch.float8_e4m3fn], ids=str)
def test_a_legacy_file_of_a_dtype_its_loader_cannot_read_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dtype: torch.dtype
) -> None:
    # torch.save writes it in the legacy format, and torch.load cannot read it back: it was "not a PyTorch checkpoint"
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3, dtype=dtype)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(Exception, match="has no attribute 'dtype'"):
        torch.load(path, weights_only=True)
    code, out, err = run(capsys, "inspect", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(
        f"paramscope: error: {path}: a torch.save file in the legacy format (before torch 1.6) holding a dtype torch's "
        "legacy loader cannot read back (uint16, uint32, uint64, complex32 or float8: "
    )
    assert err.endswith("nothing in it was executed. A copy saved in the zip format (torch.save's default) can be "
                        "inspected\n")  # fmt: skip


def test_larger_zip_checkpoint_cut_in_half(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    whole = saved_pt(tmp_path / "whole.pt").read_bytes()  # 64 × 64 + 64 float32: 18 kB
    path = tmp_path / "model.pt"
    path.write_bytes(whole[: len(whole) // 2])
    message = f"{path}: a zip archive cut short or damaged: truncated, or not a PyTorch checkpoint"
    assert_error(run(capsys, "inspect", str(path)), message)


def _name_not_in_utf8(raw: bytearray) -> None:
    # torch.save flags its names as UTF-8: a byte that is none in the last central-directory entry's name
    raw[raw.rfind(b"PK\x01\x02") + 46 + 2] = 0xFF


def _central_directory_past_any_file(raw: bytearray) -> None:
    # the offset torch's zip64 end record gives the central directory: zipfile makes the entries' offsets negative
    at = raw.rfind(b"PK\x06\x06")
    raw[at + 48 : at + 56] = struct.pack("<Q", 2**64 - 1)


@pytest.mark.parametrize("damage", [_name_not_in_utf8, _central_directory_past_any_file], ids=["name", "offset"])
def test_a_zip_checkpoint_damaged_inside_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: Callable[[bytearray], None]
) -> None:
    # zipfile's UnicodeDecodeError and the seek's ValueError went through as tracebacks, exit 1 (under diff: "differ")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, path)
    raw = bytearray(path.read_bytes())
    damage(raw)
    path.write_bytes(raw)
    with pytest.raises((UnicodeDecodeError, OSError, RuntimeError)):  # torch cannot read it either
        torch.load(path, weights_only=True)
    message = f"{path}: a zip archive cut short or damaged: truncated, or not a PyTorch checkpoint"
    assert_error(run(capsys, "inspect", str(path)), message)
    assert_error(run(capsys, "diff", str(path), str(path)), message)


# ---------------------------------------------------------------------------------------------------------------------
# what torch.load raises: bad bytes are one line, a bug is not dressed up as one


def test_a_zip_bomb_is_refused_before_torch_reads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch reads data.pkl into memory, unpacked: 2 GiB of zeros take 2 MB deflated (here 2 MiB over a limit of 1 MiB)
    from paramscope.sources import torchfile

    monkeypatch.setattr(torchfile, "_MAX_RECORD_BYTES", 2**20, raising=False)
    with zipfile.ZipFile(saved_pt(tmp_path / "saved.pt")) as source:
        entries = {entry.filename: source.read(entry) for entry in source.infolist()}
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, bytes(2**21) if name.endswith("/data.pkl") else content)
    assert path.stat().st_size < 20_000
    message = (
        f"{path}: its record saved/data.pkl is 2.00 MiB unpacked, more than the 1.00 MiB paramscope reads into memory"
    )
    assert_error(run(capsys, "inspect", str(path)), message)


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-limit", "one-over"])
def test_a_checkpoints_entries_are_counted_once_against_the_limit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    # A file holding more entries than the limit is refused, and one holding the limit is read: each entry counts
    # once, however many times the reader walks the containers (it counted every walk: a checkpoint with a list of
    # 10 million numbers beside its weights, half the 20 million, was refused)
    from paramscope.sources import torchfile

    monkeypatch.setattr(torchfile, "_MAX_ENTRIES", 1_000)
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2), "losses": [0.5] * (998 + extra)}, path)  # 2 + 998 + extra entries
    if extra:
        message = f"{path}: its dicts and lists hold more than 1,000 entries to read: not a checkpoint paramscope reads"
        assert_error(run(capsys, "inspect", str(path)), message)
        return
    report = paramscope.inspect(str(path))
    assert [(record.name, record.numel) for record in report.tensors] == [("w", 2)]
    assert report.notes == ("1 entry holds no tensor and is not counted: losses (list)",)


@pytest.mark.parametrize("order", ["deep-first", "shallow-first"])
def test_a_list_nested_too_deeply_is_refused_though_the_file_gives_it_near_the_top_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    # A list 4 deep, with the limit at 3, is refused, whichever way the file reaches it first: the walk that finds
    # the tensors may reach it along another path than the walk that counts the entries
    from paramscope.sources import torchfile

    monkeypatch.setattr(torchfile, "_MAX_NESTING", 3)
    numbers = [1, 2]
    deep, shallow = ("a", [[[numbers]]]), ("b", numbers)
    path = tmp_path / "model.pt"
    torch.save(dict([deep, shallow] if order == "deep-first" else [shallow, deep]) | {"w": torch.zeros(2)}, path)
    message = f"{path}: its dicts and lists nest more than 3 deep: not a checkpoint paramscope reads"
    assert_error(run(capsys, "inspect", str(path)), message)
    torch.save({"w": torch.zeros(2), "a": [[numbers]], "b": numbers}, path)  # the control: 3 deep is read
    assert paramscope.inspect(str(path)).totals.params == 2


class _Stored:
    """A storage of float32 under ``key``, pickled by :class:`_TorchLikePickler` as torch.save pickles one."""

    def __init__(self, key: str, elements: int) -> None:
        self.key, self.elements = key, elements


class _TensorOf:
    """A tensor of all of a :class:`_Stored`'s elements, pickled as torch.save pickles one."""

    def __init__(self, storage: _Stored) -> None:
        self.storage = storage

    def __reduce__(self) -> tuple[Any, ...]:
        size = (self.storage.elements,)
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, size, (1,), False, collections.OrderedDict())


class _TorchLikePickler(pickle.Pickler):
    storage_type: Any = torch.FloatStorage

    def persistent_id(self, obj: Any) -> Any:
        return ("storage", self.storage_type, obj.key, "cpu", obj.elements) if isinstance(obj, _Stored) else None


def _hand_made_archive(path: Path, key: Any, held: int, storage_type: Any = torch.FloatStorage, spare: int = 0) -> Path:
    """A zip checkpoint of ``w``, 25 float32 (100 B) in a storage under ``key`` whose record holds ``held`` bytes,
    pickled with ``storage_type``; with ``spare`` bytes in a record no tensor uses."""
    pickled = io.BytesIO()
    pickler = _TorchLikePickler(pickled, protocol=2)
    pickler.storage_type = storage_type
    pickler.dump({"w": _TensorOf(_Stored(key, 25))})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr(f"archive/data/{key}", bytes(held))
        if spare:
            archive.writestr("archive/data/spare", bytes(spare))
        archive.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize(("key", "storage_type"), [(0, torch.FloatStorage), ("0", torch.cuda.FloatStorage)],
                         ids=["int-key", "cuda-storage-type"])  # fmt: skip
def test_a_storage_cut_short_is_refused_whatever_key_and_type_torch_takes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Any, storage_type: Any
) -> None:
    # from review: the walk read a str key and torch's own storage types alone; the spare record made up the bytes
    path = _hand_made_archive(tmp_path / "model.pt", key, 8, storage_type, spare=200)
    assert torch.load(path, weights_only=True, mmap=True)["w"].numel() == 25  # the control: torch maps it
    assert_error(
        run(capsys, "inspect", str(path)),
        STORAGE_CUT_SHORT.format(path=path, record="data/0", nbytes="100 B", held="8 B"),
    )


def test_a_storage_the_walk_cannot_read_beside_a_spare_record_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # its key is longer than the walk keeps: it cannot be checked against its record, and the spare bytes could stand
    # in for the bytes it lacks
    path = _hand_made_archive(tmp_path / "model.pt", "k" * 20, 8, spare=200)
    message = (
        f"{path}: its pickle names 1 storage(s) by a key or type paramscope does not read, and 2 storage records are "
        "left for them (archive/data/kkkkkkkkkkkkkkkkkkkk, archive/data/spare): which each takes cannot be checked; "
        "not written by torch.save"
    )
    assert_error(run(capsys, "inspect", str(path)), message)


@pytest.mark.parametrize("held", [100, 8])
def test_a_storage_under_a_key_the_pickle_walk_does_not_keep_is_checked_once_loaded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, held: int
) -> None:
    # the walk keeps strings of up to 16 characters: the check after loading covers the storage of a longer key
    key = "k" * 20
    path = _hand_made_archive(tmp_path / "model.pt", key, held)
    if held == 100:
        assert paramscope.inspect(str(path)).totals.params == torch.load(path, weights_only=True)["w"].numel() == 25
        return
    message = (
        f"{path}: the storage of w takes 100 B, but its record data/{key} holds 8 B: damaged, or not written by "
        "torch.save"
    )
    assert_error(run(capsys, "inspect", str(path)), message)


@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr])
def test_a_sparse_tensors_storage_cut_short_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, layout: torch.layout
) -> None:
    # the values' 64 float32 in 4 bytes: mapped, they run on into the records after theirs, and torch says nothing
    dense = torch.eye(8)
    saved = tmp_path / "saved.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        torch.save({"w": dense.to_sparse(layout=layout)}, saved)
    with zipfile.ZipFile(saved) as source:
        entries = [(entry, source.read(entry)) for entry in source.infolist()]
    values = max(name for name in (entry.filename for entry, _ in entries) if "/data/" in name)  # the last storage
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as target:
        for entry, content in entries:
            target.writestr(entry, bytes(4) if entry.filename == values else content)
    loaded = torch.load(path, weights_only=True, mmap=True)["w"]  # the control: torch reads it without a word
    assert loaded.values().numel() == 8
    message = STORAGE_CUT_SHORT.format(path=path, record=values.partition("/")[2], nbytes="32 B", held="4 B")
    assert_error(run(capsys, "inspect", str(path)), message)


def test_a_checkpoint_whose_storages_are_compressed_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # a checkpoint packed again by a zip tool: torch.load reads it whole, but cannot map its storages
    with zipfile.ZipFile(saved_pt(tmp_path / "saved.pt")) as source:
        entries = {entry.filename: source.read(entry) for entry in source.infolist()}
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    expected = torch.load(path, weights_only=True)  # the file is sound
    with pytest.raises(RuntimeError, match="Trying to resize storage that is not resizable"):
        torch.load(path, weights_only=True, mmap=True)
    storage = next(name for name in entries if "/data/" in name)
    message = (
        f"{path}: its storage record {storage} is compressed (deflate), which torch.load(mmap=True) cannot map "
        "(torch.save writes them uncompressed); a copy saved with torch.save(torch.load(FILE, weights_only=True), "
        "COPY) can be inspected"
    )
    assert_error(run(capsys, "inspect", str(path)), message)
    # only the pickle compressed: read as it is
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content, zipfile.ZIP_DEFLATED if name.endswith("data.pkl") else zipfile.ZIP_STORED)
    report = paramscope.inspect(str(path))
    assert report.totals.params == sum(tensor.numel() for tensor in expected.values())


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_memory_error_is_a_read_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=not legacy)

    def out_of_memory(*args: object, **kwargs: object) -> object:
        raise MemoryError

    # the unpickler both formats are read with (a legacy file's by paramscope, a zip file's by torch.load)
    monkeypatch.setattr(torch._weights_only_unpickler.Unpickler, "load", out_of_memory)
    assert_error(run(capsys, "inspect", str(path)), f"{path}: cannot be read: out of memory")


@pytest.mark.parametrize("error", [TypeError("a bug"), AttributeError("a bug")], ids=lambda e: type(e).__name__)
def test_a_bug_in_torch_load_is_not_called_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # raised by torch outside its unpickler: not the file's bytes at work, so not reported as a bad file
    path = saved_pt(tmp_path / "model.pt")

    def broken(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(torch, "load", broken)
    with pytest.raises(type(error), match="a bug"):
        paramscope.inspect(str(path))


def mutated(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a few bytes changed, a run inserted, repeated or cut off."""
    out = bytearray(data)
    kind = rng.choice(["flip", "cut", "insert", "repeat"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == "cut":
        del out[rng.randrange(1, len(out)) :]
    else:
        at = rng.randrange(len(out))
        end = rng.randrange(at, len(out))
        out[at:at] = rng.randbytes(rng.randint(1, 8)) if kind == "insert" else out[at:end]
    return bytes(out)


def test_mutated_checkpoints_are_counted_or_one_line_errors(tmp_path: Path) -> None:
    """Damaged pickles, legacy and zip: each is read or refused in one line, never a traceback (torch's unpickler
    raises IndexError, KeyError, TypeError, struct.error... on them)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 3)).sum().backward()
    optimizer.step()
    checkpoint = {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}
    legacy, zipped = tmp_path / "legacy.pt", tmp_path / "zipped.pt"
    torch.save(checkpoint, legacy, _use_new_zipfile_serialization=False)
    torch.save(checkpoint, zipped)
    with zipfile.ZipFile(zipped) as archive:
        entries = {entry.filename: archive.read(entry) for entry in archive.infolist()}
    pickle_name = next(name for name in entries if name.endswith("/data.pkl"))
    rng = random.Random(0)
    path = tmp_path / "model.pt"
    outcomes: dict[str, int] = {}
    multi_line = []
    for _ in range(1500):
        if rng.random() < 0.5:
            path.write_bytes(mutated(legacy.read_bytes(), rng))
        else:
            with zipfile.ZipFile(path, "w") as archive:
                for name, content in entries.items():
                    archive.writestr(name, mutated(content, rng) if name == pickle_name else content)
        try:
            paramscope.inspect(str(path))
            outcome = "read"
        except paramscope.ParamscopeError as error:
            message = str(error)
            if "\n" in message or not message.startswith(f"{path}: "):
                multi_line.append(message)
            outcome = message.removeprefix(f"{path}: ").split(" (")[0]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert multi_line == []
    assert {"read", "not a PyTorch checkpoint", "truncated, or not a PyTorch checkpoint"} <= set(outcomes)


# ---------------------------------------------------------------------------------------------------------------------
# code in a pickle is never run


class Evil:
    """Unpickling this runs a shell command: the test's proof is the file it would create."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class Payload:
    """Unpickling this calls ``function(*arguments)``."""

    def __init__(self, function: Callable[..., object], *arguments: object) -> None:
        self.function = function
        self.arguments = arguments

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.function, self.arguments)


@dataclass
class TrainingArguments:
    """Stands for transformers' TrainingArguments, which the Trainer pickles into training_args.bin."""

    output_dir: str = "out"
    learning_rate: float = 5e-5


def refused(path: Path, reason: str) -> str:
    return (
        f"{path}: refused: its pickle needs something torch.load(weights_only=True) does not allow ({reason}); "
        "nothing in it was executed. Load it without weights_only only if you trust where it comes from"
    )


def not_allowed(name: str) -> str:
    return f"Unsupported global: GLOBAL {name} was not an allowed global by default."


BLOCKED = "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."


def eval_payload(marker: Path) -> tuple[object, str]:
    code = Payload(eval, f"open({str(marker)!r}, 'w').close()")
    return {"fc.weight": torch.zeros(2, 2), "payload": code}, not_allowed("eval")


def subprocess_payload(marker: Path) -> tuple[object, str]:
    code = Payload(subprocess.call, [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"])
    # pickle's protocol 2 (torch.save's) writes the module subprocess under its Python 2 name, commands
    return {"fc.weight": torch.zeros(2, 2), "payload": code}, not_allowed("commands.call")


def whole_module(marker: Path) -> tuple[object, str]:
    return nn.Linear(3, 2), not_allowed("torch.nn.modules.linear.Linear")  # torch.save(model), not its state dict


def pickled_dataclass(marker: Path) -> tuple[object, str]:
    return TrainingArguments(), not_allowed(f"{__name__}.TrainingArguments")


RUNS_CODE = [eval_payload, subprocess_payload]


@pytest.mark.parametrize("make", [*RUNS_CODE, whole_module, pickled_dataclass], ids=lambda m: m.__name__)
def test_every_refusal_of_weights_only_is_reported_as_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Callable[[Path], tuple[object, str]]
) -> None:
    marker = tmp_path / "pwned"
    saved, reason = make(marker)
    path = tmp_path / "model.pt"
    torch.save(saved, path)
    assert_error(run(capsys, "inspect", str(path)), refused(path, reason))
    assert not marker.exists()
    # the control: loading it the unsafe way works, and runs the code where there is some
    torch.load(path, weights_only=False)
    assert marker.exists() == (make in RUNS_CODE)


@pytest.mark.skipif(os.name != "posix", reason="the pickle names posix.system")
def test_pickle_that_would_run_code_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": Evil(marker)}, path)
    assert_error(run(capsys, "inspect", str(path)), refused(path, BLOCKED))
    assert not marker.exists()
    # the control: loading it the unsafe way does run the command
    torch.load(path, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------------------------------------------------------------
# no large allocation


@pytest.mark.parametrize("claimed", [200_000_000, 99_000_000], ids=["over-the-limit", "under-the-limit"])
def test_a_huge_header_length_allocates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, claimed: int
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", claimed) + b"{}")
    run(capsys, "inspect", str(path))  # imports everything once
    tracemalloc.start()
    try:
        code = main(["inspect", str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    assert peak < 5_000_000
    # the control: reading what the header claims would allocate it, although the file has 10 bytes
    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            handle.read(8)
            handle.read(claimed)
        control = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert control >= claimed
    capsys.readouterr()


def _peak_memory_of_torch_load_and_inspect(path: Path) -> tuple[int, int]:
    """The peak memory Python allocates to read ``path`` with torch.load, and with paramscope.inspect."""
    peaks = []
    for read in (lambda: torch.load(path, weights_only=True, mmap=True), lambda: paramscope.inspect(str(path))):
        tracemalloc.start()
        try:
            read()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return peaks[0], peaks[1]


def test_a_long_list_of_numbers_beside_the_weights_costs_no_more_memory_than_torch_load(tmp_path: Path) -> None:
    # A training checkpoint's log of losses beside its weights: reading the file is what it costs; finding the
    # tensors walks no further into the list than to see it holds none (each of its items was given a name, 6× the
    # memory torch.load took: 2.7 GB for a list of 10^7 numbers, where torch.load took 0.35 GB)
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3), "losses": [0.5] * 100_000}, path)
    report = paramscope.inspect(str(path))  # imports done before the measure
    assert report.notes == ("1 entry holds no tensor and is not counted: losses (list)",)
    loaded, inspected = _peak_memory_of_torch_load_and_inspect(path)
    assert loaded > 800_000  # the control: torch.load holds the list, 8 bytes an item
    assert inspected < 1.5 * loaded


def test_a_long_list_of_numbers_beside_a_tensor_in_the_model_costs_no_more_memory_than_torch_load(
    tmp_path: Path,
) -> None:
    # A list of numbers that ends in a tensor, inside the model's entry: the note on the entries without a tensor
    # counts them and names the first five (each of them was given a name, twice: 1.0 GB for a list of 3 x 10^6
    # numbers, where torch.load took 0.31 GB)
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(3), "tail": [0.5] * 100_000 + [torch.ones(2)]}}, path)
    report = paramscope.inspect(str(path))  # imports done before the measure
    assert [(record.name, record.shape) for record in report.tensors] == [("w", (3,)), ("tail.100000", (2,))]
    assert report.notes == (
        "the model's tensors are the checkpoint's 'model' entry",
        "100,000 entries of 'model' hold no tensor and are not counted: tail.0 (float), tail.1 (float), tail.2 "
        "(float), tail.3 (float), tail.4 (float) and 99,995 more",
    )
    loaded, inspected = _peak_memory_of_torch_load_and_inspect(path)
    assert loaded > 800_000  # the control: torch.load holds the list, 8 bytes an item
    assert inspected < 1.5 * loaded


# ---------------------------------------------------------------------------------------------------------------------
# the real entry point


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_in_a_new_process(*argv, timeout=SUBPROCESS_TIMEOUT)


@pytest.mark.parametrize(
    "make",
    [missing_file, header_over_100_mb, overlapping_offsets, text_pt, zip_with_text_pickle, protocol_4_pickle],
    ids=lambda m: m.__name__,
)
def test_bad_input_as_a_subprocess(tmp_path: Path, make: Callable[[Path], Case]) -> None:
    case = make(tmp_path)
    result = run_module(*case.argv)
    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"paramscope: error: {case.message}\n")


@pytest.mark.skipif(os.name != "posix", reason="the pickle names posix.system")
def test_pickle_refused_as_a_subprocess(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": Evil(marker)}, path)
    result = run_module("inspect", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"paramscope: error: {refused(path, BLOCKED)}\n",
    )
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------------
# files that are not regular files: opening a FIFO blocks until something writes to it, so each is refused first


FIFO_TIMEOUT = 60  # a regression hangs: the timeout fails the test instead


def not_regular(path: Path, kind: str = "a FIFO") -> str:
    reads = "configs" if path.name == "config.json" else "checkpoints"
    return f"{path}: not a regular file ({kind}): paramscope reads {reads} from regular files"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("model.safetensors", "file"),
        ("model.pt", "file"),
        ("model.gguf", "file"),
        ("weights.xyz", "file"),  # an unknown suffix: the format would be sniffed from its first bytes
        ("config.json", "file"),
        ("model.safetensors.index.json", "file"),
        ("model.safetensors", "directory"),
        ("model.safetensors.index.json", "directory"),
        ("model.bin", "directory"),
        ("model.gguf", "directory"),
        # from review: said there was no config.json
        ("config.json", "directory"),
    ],
)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, name: str, target: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "inspect", str(fifo if target == "file" else tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(paramscope.__file__).parents[1])},
        timeout=FIFO_TIMEOUT,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"paramscope: error: {not_regular(fifo)}\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "{weights}", "--from-config"],
        ["inspect", "{weights}", "--check"],
        ["summary", "{weights}", "--input-size", "1,4"],
        ["summary", "{folder}", "--input-size", "1,4"],
    ],
)
def test_a_config_json_that_is_no_file_is_refused_where_one_is_needed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    # from review: a FIFO or a folder named config.json was reported as none there (memory, which reads the weights
    # alone without one, says so in a note)
    torch.save({"fc.weight": torch.zeros(3, 2)}, tmp_path / "pytorch_model.bin")
    filled = [part.format(weights=tmp_path / "pytorch_model.bin", folder=tmp_path) for part in argv]
    os.mkfifo(tmp_path / "config.json")
    assert_error(run(capsys, *filled), not_regular(tmp_path / "config.json"))
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").mkdir()
    assert_error(run(capsys, *filled), not_regular(tmp_path / "config.json", "a directory"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_shard_named_by_an_index_is_refused(tmp_path: Path) -> None:
    index = one_shard(tmp_path)
    os.mkfifo(tmp_path / "model-00002-of-00002.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "inspect", str(index)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(paramscope.__file__).parents[1])},
        timeout=FIFO_TIMEOUT,
        check=False,
    )
    message = not_regular(tmp_path / "model-00002-of-00002.safetensors")
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"paramscope: error: {message}\n")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(run(capsys, "inspect", "/dev/null"), not_regular(Path("/dev/null"), "a character device"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_training_state_that_is_a_fifo_is_only_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(3, 2)}, tmp_path / "pytorch_model.bin")
    os.mkfifo(tmp_path / "optimizer.pt")  # read for its tensors when it is a file; a FIFO is passed over, not opened
    report = paramscope.inspect(str(tmp_path))
    assert report.totals.params == 6
    assert report.notes[-1] == "not read: optimizer.pt (training state saved beside the weights, not the model)"


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt", "weights.xyz"])
def test_a_symlink_to_a_checkpoint_is_read(tmp_path: Path, name: str) -> None:
    real = tmp_path / "blobs" / "0123abcd"  # as in the Hugging Face cache: snapshots link to blobs
    real.parent.mkdir()
    torch.save({"fc.weight": torch.zeros(3, 2), "fc.bias": torch.zeros(3)}, real)
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({"fc.weight": torch.zeros(3, 2), "fc.bias": torch.zeros(3)}, real)
    link = tmp_path / name
    link.symlink_to(real)
    assert paramscope.inspect(str(link)).totals.params == 9
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / name).symlink_to(real)
    if name != "weights.xyz":  # a directory is read by its files' suffixes
        assert paramscope.inspect(str(tmp_path / "snapshot")).totals.params == 9


def test_an_error_quoting_a_long_name_is_one_line_of_bounded_length(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # from review: a 90 MB tensor name in an error made a 90 MB "one line"; the API keeps the whole message
    name = "layers." + "9" * 100_000 + ".weight"
    path = safetensors_file(
        tmp_path / "model.safetensors", {name: {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}}
    )
    code, out, err = run(capsys, "inspect", str(path))
    with pytest.raises(paramscope.SourceError) as raised:
        paramscope.inspect(str(path))
    whole = f"paramscope: error: {raised.value}"
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert len(whole) > len("paramscope: error: ") + MAX_ERROR_TEXT
    assert len(err.rstrip("\n")) == len("paramscope: error: ") + MAX_ERROR_TEXT
    head, _, tail = err.rstrip("\n").partition("…")
    assert whole.startswith(head)
    assert whole.endswith(tail)
    assert tail.endswith("has unknown dtype 'F7'")


def test_running_out_of_memory_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # what no source knew to refuse first: a line, not a traceback
    def asks_too_much(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(paramscope.cli, "_run_inspect", asks_too_much)
    assert_error(run(capsys, "inspect", "paramscope.examples:resnet18"),
                 "out of memory: the input asks for more than this machine can hold")  # fmt: skip


def test_a_gguf_file_emptied_while_read_is_a_read_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # from review: a file emptied between its first bytes and the map of it (a download, a rewrite in place) made
    # mmap raise ValueError, a traceback
    import mmap

    path = tmp_path / "model.gguf"
    path.write_bytes(gguf_bytes(GGUF_ARCHITECTURE))
    real_map = mmap.mmap

    def emptied_first(fileno: int, *args: Any, **kwargs: Any) -> mmap.mmap:
        os.truncate(path, 0)  # by another process, between the read of the magic bytes and the map
        return real_map(fileno, *args, **kwargs)

    monkeypatch.setattr(mmap, "mmap", emptied_first)
    assert_error(run(capsys, "inspect", str(path)), f"{path}: cannot be read: it was emptied while being read")

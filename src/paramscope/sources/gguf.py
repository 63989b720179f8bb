"""GGUF files (llama.cpp): the header's metadata and tensor infos only, no tensor data is read.

The header is parsed here, with the ``gguf`` package's constants (GGML types, their block sizes, metadata value
types) but not its reader (see :func:`_parse`). Each tensor's element count is its logical size; its bytes come from
its GGML type's block format in the dtype table (Q4_K: 256 values in 144 bytes), checked against ``gguf``'s sizes.
"""

from __future__ import annotations

import itertools
import math
import mmap
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import dtypes as dtype_table
from .._cache_layers import size_of
from .._errors import SourceError
from .._memory import MAX_LAYERS
from .._report import Report
from .._units import listed, shortened
from .checkpoint import StoredTensor, check_files, checkpoint_report
from .safetensors import check_regular_file

if TYPE_CHECKING:
    from gguf.constants import GGMLQuantizationType

_MAGIC = b"GGUF"
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


def _read_header(path: Path) -> _Header:
    """The metadata and tensor infos of the GGUF file ``path``, of a supported version (in either byte order, as
    gguf's writer writes both), once each of them is checked to lie within the file."""
    check_regular_file(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8 or head[:4] != _MAGIC:
                raise SourceError(f"{path}: not a GGUF file (it does not start with the magic bytes 'GGUF')")
            order = next((order for order in "<>" if struct.unpack(f"{order}I", head[4:])[0] in _VERSIONS), None)
            if order is None:
                (version,) = struct.unpack("<I", head[4:])
                raise SourceError(
                    f"{path}: GGUF version {version} is not supported (versions {', '.join(map(str, _VERSIONS))})"
                )
            try:
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # emptied since its first bytes were read: being written, or rewritten in place
                raise SourceError(f"{path}: cannot be read: it was emptied while being read") from None
            with data:
                return _parse(path, data, order)
    except OSError as error:
        raise SourceError(f"{path}: cannot be read: {error.strerror or error}") from None


_VERSIONS = (2, 3)
_MAX_ARRAY_NESTING = 8
# A file of zeros can claim billions of array items or tensors: each count is checked against the bytes left before
# anything is read for it, and bounded. The largest tokenizers hold under a million items (Gemma 3: 262,144 tokens, a
# score and a type for each; Llama 3: 128,256 tokens and 280,147 merges), and llama.cpp's models about 2,000 tensors.
_MAX_ITEMS = 2**21
_MAX_TENSORS = 2**17
_MAX_PAIRS = 2**16  # llama.cpp's files hold under a hundred metadata keys; each kept costs a dict entry
_MAX_KEY = 2**16 - 1  # the GGUF specification's limit on a key's length
_MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp refuses a tensor of more dimensions
_MAX_KEPT_STRING = 2**20  # a longer string value is kept as its length: names and architectures are short
# What is copied out of the header is bounded in all, not only item by item: the string values kept (beyond this
# they are kept as their lengths), and the keys and tensor names (refused beyond this). A sparse file of zeros costs
# nothing to make and can hold 65,536 strings of a megabyte, or one tensor name of a terabyte; a real model's keys
# and names take a few hundred kilobytes (llama.cpp refuses a tensor name of 64 bytes or more).
_MAX_KEPT_STRINGS = 2**24
_MAX_NAMES = 2**24
_DEFAULT_ALIGNMENT = 32


class _Unread(NamedTuple):
    """A metadata value kept as its length only: an array of strings (a tokenizer's tokens, its merges) or of arrays,
    or a string longer than :data:`_MAX_KEPT_STRING` bytes, or past :data:`_MAX_KEPT_STRINGS` in all."""

    length: int  # an array's items, a string's bytes


class _Numbers(NamedTuple):
    """An array of numbers or booleans as the file stores it, unpacked only when its key is asked for (a tokenizer's
    262,144 scores never are)."""

    layout: str  # for struct: byte order, count and item format
    raw: bytes


class _TensorInfo(NamedTuple):
    name: str
    dims: tuple[int, ...]  # innermost first, as GGML lists them
    kind: GGMLQuantizationType
    offset: int  # where its data starts, from the start of the data region
    nbytes: int  # its data's bytes, as gguf's table of block sizes gives them


class _Header(NamedTuple):
    values: dict[str, Any]  # by key: an int, float or bool; bytes (a string); _Numbers; _Unread; [] (an empty array)
    tensors: list[_TensorInfo]


def _parse(path: Path, data: mmap.mmap, order: str) -> _Header:
    """The metadata values and tensor infos of a GGUF file (after its magic and version), in one walk that checks
    every value, tensor info and tensor's data to lie within the file.

    gguf's own ``GGUFReader`` is not used: it makes numpy arrays for every item of every metadata array, a number as
    a string (15 to 18 µs and about 1 kB each: 8 s for a 262,144-token tokenizer), and trusts the counts it reads (an
    array that claims 2^62 items past the end of a 128-byte file has it read empty items for ever). Here a string
    array's items are skipped over by their lengths, a numeric array is kept as its bytes, and each count is checked
    against the bytes left before anything is read for it. What the reader refused, this refuses in the reader's
    words (a key given twice, a name not UTF-8, a bad ``general.alignment``, a tensor named twice, a row of a block
    format that is not whole blocks), after the checks of the file's structure, as before."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

    layouts: dict[int, str] = {
        GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
        GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?",
        GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
    }  # fmt: skip
    formats = {layout: struct.Struct(order + layout) for layout in ("Q", "I", *layouts.values())}
    length_at = formats["Q"].unpack_from
    size = len(data)
    items = kept = named_bytes = 0
    problem: str | None = None  # the first thing gguf's reader refused that the walk goes past: raised after it

    def fail(reason: str) -> SourceError:
        return SourceError(f"{path}: malformed GGUF ({reason})")

    def read(layout: str, offset: int) -> tuple[Any, int]:
        unpacked = formats[layout]
        if offset + unpacked.size > size:
            raise fail("its metadata runs past the end of the file")
        return unpacked.unpack_from(data, offset)[0], offset + unpacked.size

    def string(offset: int) -> tuple[int, int]:
        """Where a string's bytes start and end (read for each of a tokenizer's tokens: kept short)."""
        if offset + 8 > size:
            raise fail("its metadata runs past the end of the file")
        (length,) = length_at(data, offset)
        offset += 8
        if length > size - offset:
            raise fail(f"a string of {length:,} bytes at byte {offset - 8:,}, past the end of the file")
        return offset, offset + length

    def named(start: int, end: int) -> bytes:
        """A key's or a tensor name's bytes, all of them together bounded before they are copied."""
        nonlocal named_bytes
        named_bytes += end - start
        if named_bytes > _MAX_NAMES:
            raise fail(f"its metadata keys and tensor names take more than {_MAX_NAMES:,} bytes, more than any model's")
        return bytes(data[start:end])

    def value(kind: int, offset: int, nesting: int = 0) -> tuple[Any, int]:
        """A value and where it ends; an array's items are walked, not read (within an array, its arrays are None)."""
        nonlocal items, kept
        if kind in layouts:
            return read(layouts[kind], offset)
        if kind == GGUFValueType.STRING:
            start, end = string(offset)
            if end - start > _MAX_KEPT_STRING or kept + end - start > _MAX_KEPT_STRINGS:
                return _Unread(end - start), end
            kept += end - start
            return bytes(data[start:end]), end
        if kind != GGUFValueType.ARRAY:
            raise fail(f"unknown metadata value type {kind} at byte {offset - 4:,}")
        if nesting == _MAX_ARRAY_NESTING:
            raise fail(f"arrays nested more than {_MAX_ARRAY_NESTING} deep")
        item, offset = read("I", offset)
        if item not in layouts and item not in (GGUFValueType.STRING, GGUFValueType.ARRAY):  # llama.cpp refuses it
            raise fail(f"unknown metadata value type {item} at byte {offset - 4:,}")  # even in an empty array
        count, offset = read("Q", offset)
        width = formats[layouts[item]].size if item in layouts else 0
        smallest = width or (8 if item == GGUFValueType.STRING else 12)  # a string's length, an array's head
        if count > (size - offset) // smallest:
            raise fail(f"an array of {count:,} items at byte {offset - 12:,} does not fit in the rest of the file")
        items += count
        if items > _MAX_ITEMS:
            raise fail(f"its metadata arrays hold more than {_MAX_ITEMS:,} items, more than any tokenizer's")
        if item in layouts:
            end = offset + count * width
            if nesting:
                return None, end
            if not count:
                return [], end
            return _Numbers(f"{order}{count}{layouts[item]}", bytes(data[offset:end])), end
        if item == GGUFValueType.STRING:  # a tokenizer's tokens: walked by their lengths alone
            for _ in range(count):
                offset = string(offset)[1]
        else:
            for _ in range(count):
                offset = value(item, offset, nesting + 1)[1]
        return _Unread(count) if count else [], offset

    tensors, offset = read("Q", 8)  # after the magic and the version
    pairs, offset = read("Q", offset)
    if pairs > (size - offset) // 13:  # a pair takes 13 bytes at least: a key's length, its type, a uint8
        raise fail(f"{pairs:,} metadata key-value pairs do not fit in the file")
    if pairs > _MAX_PAIRS:
        raise fail(f"{pairs:,} metadata key-value pairs, more than the {_MAX_PAIRS:,} paramscope reads")
    values: dict[str, Any] = {}
    alignment, alignment_field = _DEFAULT_ALIGNMENT, None
    for _ in range(pairs):
        pair = offset
        start, end = string(offset)
        if end - start > _MAX_KEY:
            raise fail(f"a metadata key of {end - start:,} bytes at byte {pair:,}, longer than GGUF's {_MAX_KEY:,}")
        if end == start:  # llama.cpp refuses it
            raise fail(f"an empty metadata key at byte {pair:,}")
        kind, offset = read("I", end)
        found, offset = value(kind, offset)
        key = named(start, end)
        if key == b"general.alignment":
            alignment_field = kind, found
            if kind == GGUFValueType.UINT32:
                alignment = found or _DEFAULT_ALIGNMENT
        if problem is None:
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as error:
                problem = _not_utf8(f"the metadata key at byte {pair:,}", key, error)
                continue
            if name in values:  # llama.cpp refuses it too
                problem = f"Duplicate {name} already in list at offset {pair}"  # the reader's words, which tests pin
            values[name] = found
    if tensors > _MAX_TENSORS:
        raise fail(f"{tensors:,} tensors, more than the {_MAX_TENSORS:,} paramscope reads")
    if tensors > (size - offset) // 24:  # a tensor info takes 24 bytes at least: a name's length, dims, type, offset
        raise fail(f"{tensors:,} tensor infos do not fit in the file")
    infos: list[_TensorInfo] = []
    for index in range(tensors):
        at = offset
        start, offset = string(offset)
        raw = named(start, offset)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problem = problem or _not_utf8(f"the name of tensor {index:,} at byte {at:,}", raw, error)
            name = raw.decode("utf-8", "replace")
        dims, offset = read("I", offset)
        if dims > _MAX_DIMS:
            raise fail(f"tensor {name!r} has {dims:,} dimensions, more than GGML's {_MAX_DIMS}")
        shape = []
        for _ in range(dims):
            dim, offset = read("Q", offset)
            shape.append(dim)
        kind, offset = read("I", offset)
        begin, offset = read("Q", offset)  # where its data starts in the data region
        if kind not in GGMLQuantizationType._value2member_map_:
            raise fail(f"tensor {name!r} has unknown GGML type {kind}")
        # llama.cpp reads each dimension as an int64 and refuses a negative one, as gguf's reader refuses it (numpy's
        # limit), even beside a 0, where the tensor holds no value
        if any(dim >= 2**63 for dim in shape):
            raise fail(f"tensor {name!r} has shape {shape}, a dimension past GGML's int64 sizes")
        numel = math.prod(shape)
        if numel >= 2**63:  # llama.cpp's int64 count of elements would overflow
            raise fail(f"tensor {name!r} has shape {shape}, whose size overflows 64 bits")
        ggml_type = GGMLQuantizationType(kind)
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        infos.append(_TensorInfo(name, tuple(shape), ggml_type, begin, numel * type_size // block))
    if alignment & (alignment - 1) == 0:  # else refused below
        data_start = -(-offset // alignment) * alignment
        for info in infos:
            if data_start + info.offset + info.nbytes > size:
                raise fail(f"tensor {info.name!r} ends at byte {data_start + info.offset + info.nbytes:,}, past the "
                           f"end of the file ({size:,} bytes)")  # fmt: skip
    # What gguf's reader refused (in its words and order), once the file's structure is known to be sound.
    if problem is not None:
        raise fail(problem)
    if alignment_field is not None:
        kind, found = alignment_field
        if kind != GGUFValueType.UINT32:
            raise fail("Bad type for general.alignment field")
        if found == 0 or found & (found - 1):
            raise fail("Invalid alignment: must be a non-zero power of two")
    names: set[str] = set()
    for info in infos:
        if info.name in names:
            raise fail(f"Found duplicated tensor with name {info.name}")
        names.add(info.name)
        if info.offset % alignment:  # the specification's rule, which llama.cpp checks and gguf's reader does not
            raise fail(f"tensor {info.name!r} starts at byte {info.offset:,} of the data, not a multiple of the "
                       f"alignment ({alignment})")  # fmt: skip
        block = GGML_QUANT_SIZES[info.kind][0]
        row = info.dims[0] if info.dims else 1  # a tensor of no dimensions holds one value
        if row % block:  # llama.cpp refuses a row that is not whole blocks
            raise fail(f"Quantized tensor row size ({row}) is not a multiple of {info.kind.name} block size ({block})")
    overlap = _overlap(infos)
    if overlap is not None:
        raise fail(overlap)
    return _Header(values, infos)


def _overlap(infos: list[_TensorInfo]) -> str | None:
    """What is wrong when two tensors' data overlap (each would be counted as bytes of its own); None when none do. A
    tensor of no elements holds no bytes to overlap, wherever it is said to start."""
    ordered = sorted((info for info in infos if info.nbytes), key=lambda info: info.offset)
    for before, after in itertools.pairwise(ordered):
        if after.offset < before.offset + before.nbytes:
            return (
                f"tensors {before.name!r} and {after.name!r} overlap: {after.name!r} starts at byte {after.offset:,} "
                f"of the data, before {before.name!r} ends at byte {before.offset + before.nbytes:,}"
            )
    return None


def _not_utf8(what: str, raw: bytes, error: UnicodeDecodeError) -> str:
    """Why a name that is no UTF-8 is refused (as gguf's reader refuses it), with its bytes (the first 64) to find it
    by."""
    shown = repr(raw[:64]) + ("…" if len(raw) > 64 else "")
    return f"{what} is not UTF-8: {shown} ({error})"


def _text(values: dict[str, Any], key: str) -> str | None:
    value = _value(values, key)
    return value if value is None or isinstance(value, str) else str(value)


def _value(values: dict[str, Any], key: str) -> Any:
    """A metadata value: a number, a bool, a string, a list for an array of numbers; None when absent or unreadable
    (a string not UTF-8, an array of strings)."""
    value = values.get(key)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, _Numbers):
        return list(struct.unpack(value.layout, value.raw))
    return None if isinstance(value, _Unread) else value


# A decoder config per file read (by path, size and modification time), so that a memory plan sizes the KV cache
# without parsing the file's metadata twice (a large vocabulary takes seconds).
_DECODER_CONFIGS: dict[tuple[str, int, int], dict[str, Any] | None] = {}


# Architectures whose layers llama.cpp gives a window of their own in code, when the file says not which: counted at
# full length, as an upper bound. Qwen3-Next's recurrent layers default to three in four.
_WINDOWED_IN_CODE = {"llama4": "chunked attention"}
_FULL_ATTENTION_INTERVAL = {"qwen3next": 4}
# llama.cpp's recurrent architectures (llm_arch_is_recurrent): every layer keeps a fixed-size state, no KV cache
_RECURRENT = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
# Architectures whose integer sliding_window_pattern llama.cpp reads otherwise than set_swa_pattern's default (the
# full-attention layer first, a window set in code): left as an upper bound
_PERIOD_IN_CODE = frozenset({"smallthinker"})
# The period llama.cpp's load_arch_hparams gives set_swa_pattern when the file has no sliding_window_pattern (its
# src/models/gemma2.cpp, gemma3.cpp, gemma3n.cpp, cohere2.cpp), and Gemma 2's window when the file has none
_DEFAULT_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4}
_DEFAULT_WINDOW = {"gemma2": 4096}


class _Unusable(Exception):
    """A metadata value llama.cpp cannot size a KV cache from (a string for a count, a negative or zero length, an
    array of another length than the layers'): what it is, in the words of :func:`_decoder_config`'s note."""


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return f"an array of {len(value)} values"
    return "not a readable value" if value is None else repr(value)


class _Metadata:
    """A GGUF file's ``{arch}.…`` values, each read as the size llama.cpp reads it or refused as :class:`_Unusable`."""

    def __init__(self, values: dict[str, Any], arch: str) -> None:
        self.values, self.arch = values, arch

    def name(self, key: str) -> str:
        return f"{self.arch}.{key}"

    def given(self, key: str) -> bool:
        return self.name(key) in self.values

    def raw(self, key: str) -> Any:
        return _value(self.values, self.name(key))

    def size(self, key: str, *, zero: bool = False) -> int | None:
        """A count or length: None when absent (or 0 where ``zero`` allows it: "none"), :class:`_Unusable` when it
        is not a positive whole number."""
        if not self.given(key):
            return None
        value = self.raw(key)
        if zero and value == 0 and type(value) is int:
            return None
        if size_of(value) is None:
            raise _Unusable(f"{self.name(key)} is {_shown(value)}")
        return int(value)

    def per_layer(self, key: str, layers: int) -> int | list[int] | None:
        """A count given once or for each layer (0 for a layer without attention): the count, the list, or None
        when absent."""
        value = self.raw(key)
        if not isinstance(value, list):
            return self.size(key)
        if len(value) != layers:
            raise _Unusable(f"{self.name(key)} lists {len(value)} values for {layers} layers")
        wrong = next((count for count in value if type(count) is not int or count < 0), None)
        if wrong is not None:
            raise _Unusable(f"{self.name(key)} lists {wrong!r}")
        if not any(value):
            raise _Unusable(f"{self.name(key)} lists 0 for every layer")
        return [int(count) for count in value]


def _decoder_config(values: dict[str, Any]) -> dict[str, Any] | None:
    """The attention hyperparameters of a GGUF model, named as a transformers config names them, from the keys the
    GGUF specification and llama.cpp define (``{arch}.block_count``, ``{arch}.attention.head_count_kv``, ...): what
    llama.cpp sizes its KV cache from. ``None`` when the file has no decoder hyperparameters; a config of the
    architecture and ``gguf_no_kv_cache``, why there is no KV cache, when a recurrent model keeps none, or
    ``gguf_unsized_kv_cache``, why it cannot be sized, when a value is not one llama.cpp can size it from."""
    arch = _text(values, "general.architecture")
    if not arch:
        return None
    try:
        return _attention_config(_Metadata(values, arch))
    except _Unusable as error:
        return {"gguf_architecture": arch, "gguf_unsized_kv_cache": (f"the GGUF file's {error}, which llama.cpp "
                                                                     "cannot size a KV cache from")}  # fmt: skip


def _attention_config(meta: _Metadata) -> dict[str, Any] | None:
    """:func:`_decoder_config` of a file's architecture's metadata."""
    arch = meta.arch
    layers = meta.size("block_count")
    hidden = meta.size("embedding_length")
    head_count = meta.raw("attention.head_count")
    if arch in _RECURRENT and (head_count == 0 or not meta.given("attention.head_count")) and layers:
        return {"gguf_architecture": arch, "gguf_no_kv_cache": f"every layer of a GGUF {arch} model keeps a "
                "fixed-size recurrent state, no keys and values per token"}  # fmt: skip
    if not meta.given("attention.head_count") or layers is None or hidden is None:
        given = {"block_count": layers is not None, "embedding_length": hidden is not None,
                 "attention.head_count": meta.given("attention.head_count")}  # fmt: skip
        if not any(given.values()):  # no decoder hyperparameters at all (a vision projector, "clip")
            return None
        # llama.cpp refuses a file without block_count or embedding_length, and has no heads to size a cache from
        missing = [meta.name(key) for key, present in given.items() if not present]
        raise _Unusable(f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing")
    if layers > MAX_LAYERS:  # more layers than any model has: a list of each layer's kind would take gigabytes
        raise _Unusable(f"{meta.name('block_count')} is {layers:,}, more layers than any model has (at most "
                        f"{MAX_LAYERS:,})")  # fmt: skip
    head_count = meta.per_layer("attention.head_count", layers)
    # llama.cpp's n_head(): the first layer's, where each layer has its own (OpenELM)
    heads = size_of(head_count[0] if isinstance(head_count, list) else head_count)
    if heads is None:
        raise _Unusable(f"{meta.name('attention.head_count')} is {_shown(meta.raw('attention.head_count'))}")
    config: dict[str, Any] = {
        "gguf_architecture": arch, "num_hidden_layers": layers, "num_attention_heads": heads, "hidden_size": hidden,
    }  # fmt: skip
    types = ["full_attention"] * layers
    kv_heads = meta.per_layer("attention.head_count_kv", layers)
    if isinstance(kv_heads, list):  # per layer: 0 for a layer without attention (a hybrid's recurrent layers)
        counts = {count for count in kv_heads if count}
        # one count for every attention layer, or each layer's own (OpenELM), which kv_cache sums layer by layer
        config["num_key_value_heads"] = counts.pop() if len(counts) == 1 else kv_heads
        types = ["full_attention" if count else "linear_attention" for count in kv_heads]
    elif kv_heads is None and isinstance(head_count, list) and len(set(head_count)) > 1:
        config["num_key_value_heads"] = head_count  # llama.cpp's default: each layer's own head count
    else:
        config["num_key_value_heads"] = kv_heads or heads  # the specification's default
    interval = meta.size("full_attention_interval", zero=True) or _FULL_ATTENTION_INTERVAL.get(arch)
    if interval:  # llama.cpp: layer i is recurrent unless (i + 1) is a multiple of the interval
        types = [kind if (i + 1) % interval == 0 else "linear_attention" for i, kind in enumerate(types)]
    if meta.raw("attention.causal") is False:  # an embedding model: it generates nothing
        config["architectures"] = [f"{arch} (GGUF, non-causal attention)"]
    # keys and values of their own lengths; without them, embedding_length / head_count (llama.cpp's defaults)
    config["head_dim"] = meta.size("attention.key_length") or hidden // heads
    config["v_head_dim"] = meta.size("attention.value_length") or hidden // heads
    if not config["head_dim"] or not config["v_head_dim"]:  # more heads than embedding_length: keys of 0 values
        raise _Unusable(f"{meta.name('embedding_length')} is {hidden}, less than its {heads} attention heads")
    latent = meta.size("attention.kv_lora_rank", zero=True)
    rope = meta.size("rope.dimension_count", zero=True)
    mla = meta.size("attention.key_length_mla", zero=True), meta.size("attention.value_length_mla", zero=True)
    # llama.cpp caches the latent only for a file that gives key_length_mla and value_length_mla (its is_mla());
    # one converted before them (DeepSeek's of early 2025) runs as multi-head attention, every head cached
    if latent and all(mla):  # multi-head latent attention (DeepSeek): the compressed latent and the rotary key
        config["kv_lora_rank"] = latent
        config["qk_rope_head_dim"] = rope or 0
    window = meta.size("attention.sliding_window", zero=True)
    if not meta.given("attention.sliding_window") and arch in _DEFAULT_WINDOW:
        window = _DEFAULT_WINDOW[arch]
        config["gguf_swa_in_code"] = [f"no {meta.name('attention.sliding_window')}: llama.cpp's {arch} code gives "
                                      f"its sliding layers a {window:,}-token window"]  # fmt: skip
    pattern = _sliding_layers(meta, layers) if window and arch not in _PERIOD_IN_CODE else None
    if window and pattern is None and arch in _DEFAULT_PERIOD:
        period = _DEFAULT_PERIOD[arch]
        pattern = _period(period, layers)
        config.setdefault("gguf_swa_in_code", []).append(
            f"no {meta.name('attention.sliding_window_pattern')}: llama.cpp's {arch} code gives one layer in {period} "
            "full attention and slides the others"
        )
    if window and pattern is not None:
        if any(pattern):  # else no layer slides: without layer_types, a window would make them all
            config["sliding_window"] = window
        types = ["sliding_attention" if slides and kind == "full_attention" else kind
                 for slides, kind in zip(pattern, types, strict=True)]  # fmt: skip
    elif window or arch in _WINDOWED_IN_CODE:
        config["gguf_windowed_layers"] = (window, _WINDOWED_IN_CODE.get(arch, "sliding-window attention"))
    shared = meta.size("attention.shared_kv_layers", zero=True)
    if shared and shared < layers:  # the last layers reuse earlier layers' keys and values (Gemma 3n)
        types[-shared:] = ["dummy"] * shared
    if any(kind != "full_attention" for kind in types):
        config["layer_types"] = types
    return config


def _sliding_layers(meta: _Metadata, layers: int) -> list[bool] | None:
    """Which layers slide, as ``{arch}.attention.sliding_window_pattern`` says: a bool for each layer, or a period
    n (llama.cpp's set_swa_pattern: layer i slides unless i % n == n - 1; with 0, every layer slides); None when the
    file does not say."""
    key = "attention.sliding_window_pattern"
    pattern = meta.raw(key)
    if not meta.given(key):
        return None
    if isinstance(pattern, list):
        if len(pattern) != layers or not all(isinstance(slides, bool) for slides in pattern):
            raise _Unusable(f"{meta.name(key)} lists {len(pattern)} values for {layers} layers"
                            if len(pattern) != layers else f"{meta.name(key)} is not an array of booleans")  # fmt: skip
        return pattern
    if type(pattern) is not int or pattern < 0:
        raise _Unusable(f"{meta.name(key)} is {_shown(pattern)}")
    return _period(pattern, layers)


def _period(period: int, layers: int) -> list[bool]:
    """Which of ``layers`` layers slide with a period n (llama.cpp's set_swa_pattern: layer i slides unless
    i % n == n - 1; with 0, every layer slides).

    >>> _period(3, 6)
    [True, True, False, True, True, False]
    """
    return [period == 0 or index % period < period - 1 for index in range(layers)]


def decoder_config(files: Sequence[Path]) -> dict[str, Any] | None:
    """The decoder hyperparameters of a GGUF model, as :func:`_decoder_config` reads them: from the first of its
    ``files`` (those its report read) that has them (a vision projector beside the model has none)."""
    for path in files:
        key = _config_key(path)
        if key not in _DECODER_CONFIGS:
            _read(path)
        if _DECODER_CONFIGS.get(key) is not None:
            return _DECODER_CONFIGS[key]
    return None


def _config_key(path: Path) -> tuple[str, int, int]:
    status = path.stat()
    return os.fspath(path.resolve()), status.st_size, status.st_mtime_ns


def _files(target: Path) -> tuple[list[Path], list[str]]:
    """The files a report of ``target`` reads, and a note where they are several models (a directory's)."""
    if not target.is_dir():
        return _split_parts(target) or [target], []
    files = sorted(path for path in target.glob("*.gguf") if not path.is_dir())
    if not files:
        raise SourceError(f"{target}: no *.gguf files")
    models: dict[str, list[Path]] = {}  # each split model in it whole, under its first part's name
    for path in files:
        parts = _split_parts(path) or [path]
        models.setdefault(parts[0].name, parts)
    notes = []
    if len(models) > 1:  # a model and its multimodal projector (mmproj), or models that are not one
        named = [name if len(parts) == 1 else f"{name} ({len(parts)} parts)" for name, parts in models.items()]
        notes.append(f"{len(models)} GGUF models in {target} are counted together ({listed(named)}); inspect one "
                     "file, or a split model's first part, to count it alone")  # fmt: skip
    return files, notes


def split_parts(path: Path) -> tuple[list[Path], int]:
    """The parts found of the split model that ``path`` is one part of (llama.cpp's ``-00001-of-00003.gguf`` names),
    which a report of it reads, and how many its name says there are; none and 0 when it is a file of its own.

    The parts are the names llama.cpp gives them (``STEM-%05d-of-%05d.gguf``, numbered from 1), not whatever else
    starts with the stem: ``m-Q4_K_M-00001-of-00002.gguf`` is no part of ``m-00001-of-00002.gguf``'s model."""
    split = _SPLIT.match(path.name)
    if not split:
        return [], 0
    count = int(split["count"])
    names = (f"{split['stem']}-{number:05d}-of-{split['count']}.gguf" for number in range(1, count + 1))
    return [part for part in map(path.parent.joinpath, names) if os.path.lexists(part)], count


def _split_parts(path: Path) -> list[Path]:
    """:func:`split_parts`, all of them."""
    files, count = split_parts(path)
    split = _SPLIT.match(path.name)
    if split and not 1 <= int(split["index"]) <= count:  # "-00003-of-00002", "-00000-of-00002"
        raise SourceError(f"{path}: part {int(split['index'])} of a {count}-file split, which has no such part")
    if len(files) != count:
        raise SourceError(f"{path}: part of a {count}-file split, but {len(files)} part(s) found")
    return files


def _split_as_named(path: Path, values: dict[str, Any]) -> list[str]:
    """Check a part of a split model against what its header says of the split (llama.cpp's gguf-split writes
    ``split.no``, from 0, and ``split.count``): llama.cpp finds the other parts by the name, so the name must say the
    same. A part under a name that is no split part's is counted alone, which the note returned says."""
    count, number = _value(values, "split.count"), _value(values, "split.no")
    named = _SPLIT.match(path.name)
    if type(count) is not int or count <= 1:  # not a split (bool is an int, and no count)
        # a header without the key (parts not written by gguf-split) is let be: the name is all there is to go by
        if type(count) is int and named is not None and int(named["count"]) > 1:
            raise SourceError(f"{path}: its header says a file of its own (split.count {count}), its name part "
                              f"{int(named['index'])} of {int(named['count'])}")  # fmt: skip
        return []
    part = f"part {number + 1} of a {count}-file split" if type(number) is int else f"part of a {count}-file split"
    if named is None:
        return [f"{path.name}: {part} (its header says), under a name that is no split part's: only this part is "
                "counted; inspect the split's first part, named as llama.cpp names it, to count the model"]  # fmt: skip
    if int(named["count"]) != count or (type(number) is int and int(named["index"]) != number + 1):
        raise SourceError(
            f"{path}: its header says {part}, its name part {int(named['index'])} of {int(named['count'])}"
        )
    return []


def _has_no_output_head(values: dict[str, Any]) -> bool:
    """Whether llama.cpp builds no output head for a GGUF file's model: an encoder (its header says its attention is
    not causal: BERT and its kin, which llama.cpp runs for embeddings) of an architecture whose tensors, as gguf
    lists them, include no ``output.weight`` (a diffusion model such as LLaDA is not causal either, but has one)."""
    from gguf.constants import MODEL_ARCH_NAMES, MODEL_TENSOR, MODEL_TENSORS

    arch = _text(values, "general.architecture")
    if not arch or _value(values, f"{arch}.attention.causal") is not False:
        return False
    known = [kind for kind, name in MODEL_ARCH_NAMES.items() if name == arch]
    return bool(known) and MODEL_TENSOR.OUTPUT not in MODEL_TENSORS.get(known[0], ())


def _read(path: Path) -> tuple[list[StoredTensor], list[str], bool]:
    """The tensors of the GGUF file ``path``, its notes, and whether its model has no output head (an encoder)."""
    header = _read_header(path)
    tensors = []
    for info in header.tensors:
        entry = dtype_table.find(info.kind.name)
        if entry is None:
            raise SourceError(f"{path}: tensor {info.name!r} has GGML type {info.kind.name}, not in the table")
        numel = math.prod(info.dims)
        nbytes = entry.nbytes(numel)
        if nbytes != info.nbytes:
            raise SourceError(
                f"{path}: tensor {info.name!r}: {numel:,} {entry.name} values take {nbytes:,} bytes, but the file "
                f"says {info.nbytes:,}"
            )
        # GGML lists dimensions innermost first; PyTorch's order is the reverse (a weight is (out, in)).
        tensors.append(StoredTensor(info.name, entry.name, info.dims[::-1], nbytes, str(path)))
    if len(_DECODER_CONFIGS) >= 16:
        _DECODER_CONFIGS.clear()
    _DECODER_CONFIGS[_config_key(path)] = _decoder_config(header.values)
    notes = _split_as_named(path, header.values)
    architecture, name = _text(header.values, "general.architecture"), _text(header.values, "general.name")
    split = _SPLIT.match(path.name)
    # a split model is named once, by its first part (read with the others: a part is never counted alone)
    if (architecture or name) and (split is None or int(split["index"]) == 1):
        model, architecture = shortened(name or "(unnamed)"), shortened(architecture or "unknown")
        notes.append(f"{path.name}: GGUF model {model}, architecture {architecture}")
    headless = _has_no_output_head(header.values)
    if headless:
        notes.append(f"{path.name}: an encoder (its attention is not causal), which has no output head in llama.cpp: "
                     "token_embd.weight is its input embeddings alone")  # fmt: skip
    return tensors, notes, headless


def load(target: Path, *, quiet: bool = False) -> Report:
    """The report of a GGUF file, all parts of a split GGUF, or a directory of GGUF files."""
    from .._progress import progress

    tensors: list[StoredTensor] = []
    files, notes = _files(target)
    encoder = False
    for path in progress(files, "reading GGUF files", quiet=quiet):
        found, file_notes, headless = _read(path)
        tensors.extend(found)
        notes.extend(file_notes)
        encoder = encoder or headless
    check_files(os.fspath(target), tensors)  # two quantisations side by side are two models, not one
    names = {tensor.name for tensor in tensors}
    if "token_embd.weight" in names and "output.weight" not in names and not encoder:
        notes.append(
            "no output.weight: llama.cpp then uses token_embd.weight as the output head (tied), so it is counted once"
        )
    return checkpoint_report(
        tensors, kind="gguf", target=os.fspath(target), files=[os.fspath(p) for p in files], notes=notes, sort=True
    )

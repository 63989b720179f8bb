"""Hand-made checkpoint files for the tests and benchmarks: safetensors headers and zip archives over sparse data
regions.

A sparse file (``truncate``) has the size of a real checkpoint and costs no disk, so a 70B model's 140 GB of
shards can be laid out in a temporary directory in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# bytes per element of the safetensors dtype codes used here (sub-byte codes are not needed by the layouts)
ELEMENT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                 "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


def safetensors_header(tensors: Mapping[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str] | None = None):
    """The header bytes (length prefix included) and the data size of tensors laid out in the given order."""
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * ELEMENT_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw, offset


def write_safetensors(path: Path, tensors: Mapping[str, tuple[str, tuple[int, ...]]], metadata=None) -> int:
    """Write a valid safetensors file whose data region is a hole; returns the file size."""
    prefix, data = safetensors_header(tensors, metadata)
    with path.open("wb") as handle:
        handle.write(prefix)
        handle.truncate(len(prefix) + data)
    return len(prefix) + data


def llama_tensors(
    *, vocab: int, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, tied: bool = False,
    dtype: str = "BF16",
) -> dict[str, tuple[str, tuple[int, ...]]]:  # fmt: skip
    """The tensor names and shapes of a Hugging Face Llama checkpoint (LlamaForCausalLM)."""
    head_dim = hidden // heads
    tensors = {"model.embed_tokens.weight": (dtype, (vocab, hidden))}
    for i in range(layers):
        prefix = f"model.layers.{i}"
        tensors |= {
            f"{prefix}.input_layernorm.weight": (dtype, (hidden,)),
            f"{prefix}.self_attn.q_proj.weight": (dtype, (heads * head_dim, hidden)),
            f"{prefix}.self_attn.k_proj.weight": (dtype, (kv_heads * head_dim, hidden)),
            f"{prefix}.self_attn.v_proj.weight": (dtype, (kv_heads * head_dim, hidden)),
            f"{prefix}.self_attn.o_proj.weight": (dtype, (hidden, heads * head_dim)),
            f"{prefix}.post_attention_layernorm.weight": (dtype, (hidden,)),
            f"{prefix}.mlp.gate_proj.weight": (dtype, (intermediate, hidden)),
            f"{prefix}.mlp.up_proj.weight": (dtype, (intermediate, hidden)),
            f"{prefix}.mlp.down_proj.weight": (dtype, (hidden, intermediate)),
        }
    tensors["model.norm.weight"] = (dtype, (hidden,))
    if not tied:
        tensors["lm_head.weight"] = (dtype, (vocab, hidden))
    return tensors


# Llama-3-70B: 70,553,706,496 parameters (published; the lm_head is not tied).
LLAMA_3_70B = {"vocab": 128256, "hidden": 8192, "intermediate": 28672, "layers": 80, "heads": 64, "kv_heads": 8}
LLAMA_3_70B_PARAMS = 70_553_706_496


def write_sharded(directory: Path, tensors: Mapping[str, tuple[str, tuple[int, ...]]], shards: int) -> list[Path]:
    """Split ``tensors`` over ``shards`` sparse safetensors files plus a ``model.safetensors.index.json``."""
    names = list(tensors)
    files, weight_map, total = [], {}, 0
    for index in range(shards):
        chunk = names[index * len(names) // shards : (index + 1) * len(names) // shards]
        path = directory / f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(path, {name: tensors[name] for name in chunk}, metadata={"format": "pt"})
        total += sum(math.prod(tensors[name][1]) * ELEMENT_BYTES[tensors[name][0]] for name in chunk)
        weight_map |= dict.fromkeys(chunk, path.name)
        files.append(path)
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))
    return files


def parameter_count(tensors: Iterable[tuple[str, tuple[int, ...]]]) -> int:
    return sum(math.prod(shape) for _, shape in tensors)


def write_zip64(path: Path, records: Sequence[tuple[str, bytes | int]]) -> None:
    """A zip archive of stored (uncompressed) records in the zip64 format, each ``(name, bytes)``, or ``(name, size)``
    for a record of ``size`` zero bytes left as a hole (a sparse file: a checkpoint of any size that costs no disk;
    its CRC is not computed, and readers that map storages do not check it)."""
    central = []
    with path.open("wb") as handle:
        for name, content in records:
            offset = handle.tell()
            size = content if isinstance(content, int) else len(content)
            crc = 0 if isinstance(content, int) else zlib.crc32(content)
            encoded = name.encode()
            extra = struct.pack("<HHQQ", 1, 16, size, size)
            handle.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                     len(encoded), len(extra)) + encoded + extra)  # fmt: skip
            if isinstance(content, int):
                handle.seek(size, os.SEEK_CUR)
            else:
                handle.write(content)
            extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                                       0xFFFFFFFF, len(encoded), len(extra), 0, 0, 0, 0, 0xFFFFFFFF)
                           + encoded + extra)  # fmt: skip
        start = handle.tell()
        directory = b"".join(central)
        handle.write(directory)
        end = handle.tell()
        count = len(central)
        handle.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(directory), start))
        handle.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        handle.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))

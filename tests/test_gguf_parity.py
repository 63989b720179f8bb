"""paramscope's GGUF header parser against the ``gguf`` package's reader (``GGUFReader``) on generated files: it
refuses a file exactly when the reader does, and reads the same tensors from any other.

The files are mostly valid, with one thing wrong now and then: cut short (in the header or the data), another
version, ``general.alignment`` of another value or type, metadata of every value type (arrays of each, arrays of
arrays, strings not UTF-8), a key or a tensor named twice, dimensions of 0 or past 64 bits, rows that are not whole
blocks, GGML types the format does not have. Left out are the files paramscope refuses by design where the reader
does not (data not aligned or overlapping, more than 4 dimensions, an empty key: llama.cpp refuses them too), and
those the reader cannot end on (counts claiming more than the file holds) or trips over (a quantised or bfloat16
tensor of no dimensions).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

import paramscope
from paramscope import dtypes

TYPES = [GGMLQuantizationType[name] for name in ("F32", "F16", "BF16", "I8", "I32", "F64", "Q4_0", "Q8_0", "Q4_K",
                                                 "Q6_K", "IQ4_XS", "TQ1_0", "MXFP4")]  # fmt: skip
NUMPY_TYPES = {"F32", "F16", "F64", "I8", "I16", "I32", "I64"}  # the reader's own dtypes; others are blocks of bytes
NAMES = [b"token_embd.weight", b"output.weight", b"blk.0.attn_q.weight", b"blk.0.ffn_up.weight", b"a.b", b"\xff.bad"]
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRINGS = [b"", b"llama", "é".encode(), b"\xff\xfe"]


def _string(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def _value(rng: random.Random, kind: int, depth: int = 0) -> bytes:
    """A metadata value of type ``kind`` (after its type field)."""
    if kind in SCALARS:
        return struct.pack("<" + SCALARS[kind], rng.choice([0, 1]))
    if kind == 8:
        return _string(rng.choice(STRINGS))
    item = rng.choice([*SCALARS, 8, 9] if depth < 2 else [*SCALARS, 8])
    count = rng.choice([0, 1, 3])
    return struct.pack("<IQ", item, count) + b"".join(_value(rng, item, depth + 1) for _ in range(count))


def _file(rng: random.Random) -> bytes:
    version = rng.choice([3] * 20 + [2, 1, 4])
    pairs = [(b"general.architecture", 8, _string(b"llama"))]
    for index in range(rng.randint(0, 4)):
        kind = rng.choice([*SCALARS, 8, 9])
        pairs.append((f"x.key{index}".encode(), kind, _value(rng, kind)))
    alignment = 32
    if rng.random() < 0.2:
        alignment = rng.choice([1, 8, 64, 0, 48])
        kind = rng.choice([4] * 4 + [5, 10])
        pairs.append((b"general.alignment", kind, struct.pack("<" + SCALARS[kind], alignment)))
    if rng.random() < 0.05:
        pairs.append(rng.choice(pairs))  # a key given twice
    if rng.random() < 0.05:
        pairs.append((b"\xffkey", 4, struct.pack("<I", 1)))
    rng.shuffle(pairs)
    step = alignment if alignment in (1, 8, 64) else 32
    infos, offset = [], 0
    for index in range(rng.randint(0, 4)):
        kind = rng.choice(TYPES)
        block, size = GGML_QUANT_SIZES[kind]
        dims = [block * rng.randint(1, 2)] + [rng.randint(1, 3) for _ in range(rng.randint(0, 3))]
        if kind.name in NUMPY_TYPES and rng.random() < 0.1:
            dims = []
        if dims and rng.random() < 0.05:
            dims[0] += 1  # a row of a block format that is not whole blocks
        if rng.random() < 0.04:
            dims = rng.choice([[0, 2**63], [block, 0, 2**64 - 1], [0, 3]])
        type_id = int(kind) if rng.random() > 0.04 else rng.choice([4, 31, 36, 99])
        name = rng.choice(NAMES) if rng.random() < 0.2 else b"blk.%d.w" % index
        count = 1
        for dim in dims:
            count *= dim
        nbytes = count * size // block if count < 2**32 else 0
        info = _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", dim) for dim in dims)
        infos.append(info + struct.pack("<IQ", type_id, offset))
        offset += -(-nbytes // step) * step
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos), len(pairs))
    head += b"".join(_string(key) + struct.pack("<I", kind) + value for key, kind, value in pairs) + b"".join(infos)
    raw = head + bytes(-len(head) % step + offset)
    if rng.random() < 0.08:
        raw = raw[: rng.randrange(len(raw))]
    return raw


def _ours(path: Path) -> dict[str, tuple[tuple[int, ...] | None, str, int | None]] | None:
    """Each tensor's shape, dtype and bytes in paramscope's report of the file; None where it refuses it."""
    try:
        report = paramscope.inspect(str(path))
    except paramscope.ParamscopeError:
        return None
    return {t.name: (t.shape, t.dtype, t.bytes) for t in report.tensors}


def _reader(path: Path) -> dict[str, tuple[tuple[int, ...] | None, str, int | None]] | None:
    """Each tensor's shape (PyTorch's order: the reverse of GGML's), GGML type (by the dtype table's name for it) and
    bytes as the reader reads the file; None where it refuses it."""
    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, IndexError):  # a UnicodeDecodeError is a ValueError
        return None
    return {
        t.name: (tuple(int(dim) for dim in reversed(t.shape)), dtypes.lookup(t.tensor_type.name).name, t.n_bytes)
        for t in reader.tensors
    }


SEEDS = 1_500  # each a file; every kind of fault above comes up dozens of times


def test_the_parser_refuses_what_gguf_refuses_and_reads_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    differences = []
    for seed in range(SEEDS):  # seeded, so that a failure names the file to look at, run after run
        path.write_bytes(_file(random.Random(seed)))
        ours, theirs = _ours(path), _reader(path)
        if ours != theirs:
            differences.append(f"seed {seed}: gguf read {theirs}, we {ours}")
    assert not differences, f"{len(differences)} of {SEEDS} files read differently, such as " + "; ".join(
        differences[:3]
    )

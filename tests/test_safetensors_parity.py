"""paramscope's safetensors reader against the safetensors crate (``safe_open``) on generated headers: it refuses a
file exactly when the crate does, and reads the same tensors from any other.

The headers are mostly valid, with one thing wrong now and then: a dtype or shape of the wrong kind, offsets that
overlap or leave gaps, a field missing, named twice or of no use to the crate, a tensor named twice, an entry given
as the array of its fields, numbers as JSON writes them in odd ways (``-0``, ``8.0``, ``1e0``, ``2**64``), fields
nested near the crate's depth limit, ``__metadata__`` of every JSON type, and bytes around the JSON object.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from paramscope._errors import SourceError
from paramscope.sources.safetensors import stored_tensors

ELEMENT_BITS = {"F32": 32, "F16": 16, "BF16": 16, "I8": 8, "U8": 8, "BOOL": 8, "F64": 64, "C64": 64, "F8_E4M3": 8,
                "F4": 4, "F6_E2M3": 6}  # fmt: skip
ODD_DTYPES = ["XX", "f32", "float32", 5, None, ["F32"]]
ODD_DIMS = [[-1], [True], [1.0], "2", None, [[2]], {}, [2**64], [2**63, 2, 0], [1, 2**64], [0, 2**64]]
NAMES = ["a", "b", "a.b", "", "é", "a-0"]
METADATA = [{}, {"x": "y"}, {"x": 1}, None, [], "s", False, 0, {"x": None}, {"x": "1", "y": "2"}]
AROUND = [b"", b"", b"", b" ", b"\x00\x00", b"\xef\xbb\xbf", b" x", b"\n\t\r", b"{}"]


def _entry(rng: random.Random, offset: int) -> tuple[Any, int]:
    """A tensor's entry at ``offset`` of the data, and the bytes it takes there."""
    dtype: Any = rng.choice(list(ELEMENT_BITS)) if rng.random() > 0.1 else rng.choice(ODD_DTYPES)
    shape: Any = [rng.choice([0, 1, 2, 3, 4]) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.1:
        shape = rng.choice(ODD_DIMS)
    numel = 1
    for dim in shape if isinstance(shape, list) else []:
        numel *= dim if type(dim) is int and 0 <= dim < 2**20 else 1
    size = numel * ELEMENT_BITS.get(dtype, 32) // 8 if isinstance(dtype, str) else 4
    offsets: Any = [offset, offset + size]
    if rng.random() < 0.1:
        end = offset + size
        odd = [[offset], [offset, end, 3], [end, offset], [offset, end + 1], [offset + 1, end + 1], {"0": offset}]
        offsets = rng.choice([*odd, [offset, float(end)]])
    entry: dict[str, Any] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
    if rng.random() < 0.05:
        del entry[rng.choice(list(entry))]
    if rng.random() < 0.05:
        entry["extra"] = rng.choice([1, "x", None, [1, [2]]])
    if rng.random() < 0.04:
        depth = rng.randint(122, 128)
        entry["deep"] = json.loads("[" * depth + "]" * depth)
    form = rng.random()
    if form < 0.08:
        return [entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")], size
    if form < 0.1:
        return rng.choice([5, None, "x", [], True]), size
    return entry, size


def _header(rng: random.Random) -> tuple[bytes, int]:
    """The bytes of a header (JSON and what is around it), and the size of the data region after it."""
    items: list[tuple[str, Any]] = []
    offset = 0
    for _ in range(rng.randint(0, 4)):
        entry, size = _entry(rng, offset)
        items.append((rng.choice(NAMES), entry))
        offset += size
    if rng.random() < 0.3:
        items.insert(rng.randint(0, len(items)), ("__metadata__", rng.choice(METADATA)))
    text = "{" + ", ".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in items) + "}"
    if rng.random() < 0.2:  # a field named twice, or spelt with an escape
        text = text.replace(
            '"shape"', rng.choice(['"dtype": "F32", "shape"', '"shape": [1], "shape"', '"sha\\u0070e"']), 1
        )
    if rng.random() < 0.2:  # numbers JSON may write in other ways
        text = text.replace(
            rng.choice(["[0, ", ", 8]", ", 4]"]), rng.choice(["[-0, ", "[0.0, ", "[1e0, ", ", 8.0]"]), 1
        )
    raw = text.encode()
    around = rng.choice(AROUND)
    raw = around + raw if around in (b" ", b"\xef\xbb\xbf") else raw + around
    if rng.random() < 0.5:
        raw += b" " * (-len(raw) % 8)
    data = offset + (rng.choice([-1, 1]) if rng.random() < 0.05 else 0)
    return raw, min(max(data, 0), 2**16)


def _crate(path: Path) -> dict[str, list[int]] | None:
    """Each tensor's shape as the crate reads the file; None where it refuses it."""
    try:
        with safe_open(str(path), "numpy") as handle:
            return {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    except SafetensorError:
        return None


SEEDS = 3_000  # each a header; every kind of fault above comes up dozens of times


def test_the_reader_refuses_what_the_crate_refuses_and_reads_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    differences = []
    for seed in range(SEEDS):  # seeded, so that a failure names the header to look at, run after run
        raw, data = _header(random.Random(seed))
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))
        try:
            ours: dict[str, list[int]] | None = {t.name: list(t.shape) for t in stored_tensors(path)[0]}
        except SourceError:
            ours = None
        theirs = _crate(path)
        if ours != theirs:
            differences.append(f"seed {seed}, {raw.decode('utf-8', 'replace')!r}: the crate read {theirs}, we {ours}")
    assert not differences, f"{len(differences)} of {SEEDS} headers read differently, such as " + "; ".join(
        differences[:3]
    )

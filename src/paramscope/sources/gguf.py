"""GGUF files (llama.cpp) through the ``gguf`` package: tensor infos only, no tensor data is read.

Each tensor's element count is its logical size; its bytes come from its GGML type's block format in the dtype
table (Q4_K: 256 values in 144 bytes), checked against what the ``gguf`` reader computes.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

from .. import dtypes as dtype_table
from .._errors import SourceError
from .._report import Report
from .checkpoint import StoredTensor, check_files, checkpoint_report
from .safetensors import check_regular_file

_MAGIC = b"GGUF"
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


def _check_header(path: Path) -> None:
    # The reader's own checks end in "GGUF magic invalid"; these say what the file is, before numpy maps it.
    check_regular_file(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise SourceError(f"{path}: cannot be read: {error.strerror or error}") from None
    if len(head) < 8 or head[:4] != _MAGIC:
        raise SourceError(f"{path}: not a GGUF file (it does not start with the magic bytes 'GGUF')")
    (version,) = struct.unpack("<I", head[4:])
    supported = (2, 3)
    if version not in supported:
        raise SourceError(
            f"{path}: GGUF version {version} is not supported (versions {', '.join(map(str, supported))})"
        )


def _text(reader: Any, key: str) -> str | None:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        value = field.contents()
    except (ValueError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) else str(value)


def _files(target: Path) -> list[Path]:
    if target.is_dir():
        files = sorted(target.glob("*.gguf"))
        if not files:
            raise SourceError(f"{target}: no *.gguf files")
        return files
    split = _SPLIT.match(target.name)
    if split:  # one part of a split model: read all its parts
        pattern = f"{split['stem']}-*-of-{split['count']}.gguf"
        files = sorted(target.parent.glob(pattern))
        if len(files) != int(split["count"]):
            raise SourceError(f"{target}: part of a {int(split['count'])}-file split, but {len(files)} part(s) found")
        return files
    return [target]


def _read(path: Path) -> tuple[list[StoredTensor], list[str]]:
    import gguf

    _check_header(path)
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OverflowError, struct.error) as error:
        raise SourceError(f"{path}: malformed GGUF ({error})") from None
    tensors = []
    for tensor in reader.tensors:
        entry = dtype_table.find(tensor.tensor_type.name)
        if entry is None:
            raise SourceError(
                f"{path}: tensor {tensor.name!r} has GGML type {tensor.tensor_type.name}, not in the table"
            )
        numel = int(tensor.n_elements)
        nbytes = entry.nbytes(numel)
        if nbytes != int(tensor.n_bytes):
            raise SourceError(
                f"{path}: tensor {tensor.name!r}: {numel:,} {entry.name} values take {nbytes:,} bytes, but the file "
                f"says {int(tensor.n_bytes):,}"
            )
        # GGML lists dimensions innermost first; PyTorch's order is the reverse (a weight is (out, in)).
        shape = tuple(int(dim) for dim in reversed(tensor.shape.tolist()))
        tensors.append(StoredTensor(tensor.name, entry.name, shape, nbytes, str(path)))
    notes = []
    architecture, name = _text(reader, "general.architecture"), _text(reader, "general.name")
    if architecture or name:
        notes.append(f"{path.name}: GGUF model {name or '(unnamed)'}, architecture {architecture or 'unknown'}")
    return tensors, notes


def load(target: Path, *, quiet: bool = False) -> Report:
    """The report of a GGUF file, all parts of a split GGUF, or a directory of GGUF files."""
    from .._progress import progress

    tensors: list[StoredTensor] = []
    notes: list[str] = []
    files = _files(target)
    for path in progress(files, "reading GGUF files", quiet=quiet):
        found, file_notes = _read(path)
        tensors.extend(found)
        notes.extend(file_notes)
    check_files(os.fspath(target), tensors)  # two quantisations side by side are two models, not one
    names = {tensor.name for tensor in tensors}
    if "token_embd.weight" in names and "output.weight" not in names:
        notes.append(
            "no output.weight: llama.cpp then uses token_embd.weight as the output head (tied), so it is counted once"
        )
    return checkpoint_report(
        tensors, kind="gguf", target=os.fspath(target), files=[os.fspath(p) for p in files], notes=notes, sort=True
    )

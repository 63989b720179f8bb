"""A checkpoint file mapped, as one torch storage its tensors' storages are slices of."""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import torch

MAP_REFUSED = "unable to mmap"
"""What torch says where the kernel refuses its mapping of a file: "unable to mmap 42949672960 bytes from file <…>:
Cannot allocate memory (12)"."""


def mapped_storage(path: Path, handle: IO[bytes], size: int) -> torch.UntypedStorage:
    """The whole file at ``path`` (``size`` bytes, open in ``handle``) as an untyped storage on the cpu: mapped
    private (copy-on-write) by torch, as ``torch.load(mmap=True)`` maps a file, or where that is refused,
    read-only and shared (:func:`read_only_storage`)."""
    try:
        with named_in_utf8(path) as name:
            mapped = torch.UntypedStorage.from_file(os.fspath(name), shared=False, nbytes=size)
            return cast(torch.UntypedStorage, mapped)
    except RuntimeError as error:
        if MAP_REFUSED not in str(error):
            raise
    return read_only_storage(handle)


def read_only_storage(handle: IO[bytes]) -> torch.UntypedStorage:
    """The whole file open in ``handle``, mapped read-only and shared, as an untyped storage (on the cpu).

    For a file torch cannot map its way: a private mapping is writable, and Linux charges a writable private
    mapping to the memory it commits, under its default overcommit heuristic refusing one larger than the
    machine's memory and swap, which the checkpoint of a large model (or of its optimizer state) is; a shared
    read-only one is charged nothing. A write to it would fault: nothing paramscope does writes to a tensor it
    counts, and the loaders that would (torch swapping a checkpoint saved on a machine of the other byte order) are
    not given one. The mapping lives as long as a tensor on it does, after ``handle`` is closed, and holds a file
    descriptor of its own until then (Python's mmap keeps one).
    """
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the buffer is not writable
        return torch.frombuffer(mapped, dtype=torch.uint8).untyped_storage()


def zeros_storage(nbytes: int) -> torch.UntypedStorage:
    """``nbytes`` zero bytes (at least one) as an untyped storage on the cpu, which costs no memory: private,
    anonymous and read-only, every page of it the kernel's one page of zeros (on POSIX systems; on Windows, a
    read-only section of the paging file)."""
    if hasattr(mmap, "MAP_PRIVATE"):
        mapped = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    else:
        mapped = mmap.mmap(-1, max(nbytes, 1), access=mmap.ACCESS_READ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not writable, as above
        return torch.frombuffer(mapped, dtype=torch.uint8).untyped_storage()


@contextlib.contextmanager
def named_in_utf8(path: Path) -> Iterator[Path]:
    """``path``, or where its name's bytes are not its text in UTF-8 (bytes that are no UTF-8, which a POSIX file name
    may hold and Python keeps as surrogates; a file system encoding other than UTF-8), a link to it named in UTF-8 for
    the block: torch maps the file by its name passed to C++ as UTF-8. The mapping outlives the link."""
    try:
        same = os.fspath(path).encode("utf-8") == os.fsencode(path)
    except UnicodeEncodeError:
        same = False
    if same:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="paramscope-") as scratch:
        link = Path(scratch) / "checkpoint"
        link.symlink_to(path.resolve())
        yield link

"""torch.save's legacy format (before PyTorch 1.6, or ``_use_new_zipfile_serialization=False``), its storages mapped.

``torch.load`` reads every storage of a legacy file into memory: ``mmap=True`` is for the zip format only, and its
fake-tensor mode, which skips the data, skips checking it too. This reads the file as torch's ``_legacy_load``
does, with torch's own weights-only unpickler and tensor rebuilding, but gives each storage the bytes of the file
that hold it, mapped (:func:`._file_mapping.mapped_storage`): a legacy checkpoint costs no memory to count, and
tied weights still share one storage.

The format: five pickles (a magic number, a protocol version, system information, the object, whose storages are
persistent ids, and the keys of the storages in the order their data follows), then each storage as its element
count (8 bytes, little-endian) and its bytes.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import _weights_only_unpickler as weights_only
from torch.serialization import PROTOCOL_VERSION

from .._errors import SourceError
from .._units import format_bytes
from ._file_mapping import mapped_storage, zeros_storage
from ._pickle_scan import check_pickle

_COUNT = struct.Struct("<q")
WRONG_SIZE = "a storage's size in the file is not the size its pickle gives"


@dataclass(frozen=True)
class _Storage:
    """A storage as the object's pickle gives it: its dtype and element count."""

    dtype: torch.dtype
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def load_legacy(path: Path) -> Any:
    """The object torch.save wrote to ``path`` in the legacy format, its tensors' storages mapped from the file.

    Only what torch's weights-only unpickler allows is rebuilt; a file whose storages do not lie where its pickles
    say (cut short, a count that is not the pickle's) is refused with a :class:`SourceError`.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        _check_preamble(path, handle)
        start = handle.tell()
        # Where the object's pickle ends and which storages it uses, learnt by unpickling it on stand-ins: zeros that
        # cost no memory, for rebuilding functions that need a real tensor (quantized and sparse ones, views of a
        # storage); each storage's place in the file follows from the keys pickled after the object.
        storages: dict[str, _Storage] = {}
        zeros = zeros_storage(size)
        with _sparse_checks(keep=False):  # the stand-ins' zeros: not the file's sparse tensors
            _unpickled(handle, lambda pid: _stand_in(path, _recorded(pid, storages), zeros, size))
        keys = _unpickled(handle)
        offsets = _data_offsets(path, handle, keys, storages, size)
        whole = mapped_storage(path, handle, size)
        handle.seek(start)
        roots: dict[str, torch.UntypedStorage] = {}
        views: dict[str, torch.storage.TypedStorage] = {}

        def persistent_load(pid: tuple[Any, ...]) -> torch.storage.TypedStorage:
            key, record, view = _recorded(pid, storages)
            if key not in roots:
                roots[key] = whole[offsets[key] : offsets[key] + storages[key].nbytes]
            if view is None:
                return _typed(roots[key], record.dtype, None)
            if view[0] not in views:  # a view's key names it wherever it comes again, as torch.load reads it
                views[view[0]] = _typed(roots[key], record.dtype, view)
            return views[view[0]]

        with _sparse_checks(keep=True):
            loaded = _unpickled(handle, persistent_load)
    torch._utils._validate_loaded_sparse_tensors()  # type: ignore[no-untyped-call]  # as torch.load does
    return loaded


@contextlib.contextmanager
def _sparse_checks(*, keep: bool) -> Iterator[None]:
    """torch queues the sparse tensors a load rebuilds, in a list of its own, to check them when the load ends
    (``_validate_loaded_sparse_tensors``): those the block queues are dropped if it fails (not to be checked with
    the next load's), and whatever happens unless ``keep``."""
    queued = torch._utils._sparse_tensors_to_validate
    before = len(queued)
    try:
        yield
    except BaseException:
        del queued[before:]
        raise
    if not keep:
        del queued[before:]


def _unpickled(handle: IO[bytes], persistent_load: Any = None) -> Any:
    start = handle.tell()
    check_pickle(handle)  # walked first: what would cost torch's unpickler more than its bytes is refused
    handle.seek(start)
    unpickler = weights_only.Unpickler(handle, encoding="utf-8")  # torch.load's encoding
    if persistent_load is not None:
        unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
    return unpickler.load()  # type: ignore[no-untyped-call]


def _check_preamble(path: Path, handle: IO[bytes]) -> None:
    _unpickled(handle)  # the magic number, by whose pickle the file was recognised (target.is_legacy_torch_head)
    protocol = _unpickled(handle)
    if protocol != PROTOCOL_VERSION:
        raise SourceError(f"{path}: a torch.save legacy file of protocol version {protocol!r:.40}, which torch cannot "
                          "read")  # fmt: skip
    _unpickled(handle)  # the system it was saved on: byte order and sizes of C types, which torch.load ignores too


def _recorded(pid: Any, storages: dict[str, _Storage]) -> tuple[str, _Storage, tuple[Any, ...] | None]:
    """A storage's persistent id, ``("storage", storage_type, key, location, numel, view)``: its key, its storage as
    this id gives it (recorded the first time) and its view's ``(key, offset, numel)``, if any."""
    if not isinstance(pid, tuple) or len(pid) != 6:
        raise pickle.UnpicklingError(f"a storage's persistent id is not as torch.save writes it: {pid!r:.80}")
    _, storage_type, key, _, numel, view = pid
    if not isinstance(key, str):  # torch.save numbers its storages "0", "1", …
        raise pickle.UnpicklingError(f"a storage's key is not a string: {key!r:.40}")
    if type(numel) is not int or numel < 0:
        raise pickle.UnpicklingError(f"storage {key!r:.40} has no element count: {numel!r:.40}")
    if view is not None and not (
        isinstance(view, tuple)
        and len(view) == 3
        and isinstance(view[0], str)
        and all(type(part) is int and part >= 0 for part in view[1:])
    ):
        raise pickle.UnpicklingError(
            f"storage {key!r:.40} has a view that is not as torch.save writes it: {view!r:.80}"
        )
    record = _Storage(storage_type.dtype, numel)
    known = storages.setdefault(key, record)
    # torch.save writes a storage once, in one dtype, but an empty one (no data, so never checked) in each dtype its
    # tensors view it in; torch.load gives each an empty storage of its own dtype
    if known != record and not (known.numel == record.numel == 0):
        raise pickle.UnpicklingError(f"storage {key!r:.40} is given twice, as {known} and {record}")
    return key, record, view


def _stand_in(
    path: Path, recorded: tuple[str, _Storage, tuple[Any, ...] | None], zeros: torch.UntypedStorage, size: int
) -> torch.storage.TypedStorage:
    """The storage the first pass rebuilds a tensor on: as many of ``zeros`` as it holds; one larger than the file
    cannot be in it."""
    _, record, view = recorded
    if record.nbytes > size:
        raise SourceError(f"{path}: truncated: its pickle gives a storage of {format_bytes(record.nbytes)}, more than "
                          f"the whole file ({size:,} bytes)")  # fmt: skip
    return _typed(zeros[: record.nbytes], record.dtype, view)


def _typed(root: torch.UntypedStorage, dtype: torch.dtype, view: tuple[Any, ...] | None) -> torch.storage.TypedStorage:
    """The typed storage a tensor is rebuilt on: the root, or a view of it (``(key, offset, numel)`` in elements)."""
    storage = root
    if view is not None:
        element = dtype.itemsize
        _, offset, numel = view
        storage = root[offset * element : (offset + numel) * element]
    return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)  # type: ignore[no-untyped-call]


def _data_offsets(path: Path, handle: IO[bytes], keys: Any, storages: dict[str, _Storage], size: int) -> dict[str, int]:
    """Where each storage's bytes start in the file, its element count checked against the pickle's."""
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys) and sorted(keys) == sorted(storages)):
        raise SourceError(f"{path}: not a readable PyTorch checkpoint (its storage keys are not those its object uses)")
    offsets: dict[str, int] = {}
    position = handle.tell()
    for key in keys:
        record = storages[key]
        handle.seek(position)
        count = handle.read(_COUNT.size)
        end = position + _COUNT.size + record.nbytes
        if len(count) < _COUNT.size or end > size:
            raise SourceError(
                f"{path}: truncated: its pickle gives a storage of {format_bytes(record.nbytes)} at byte "
                f"{position + _COUNT.size:,}, past the end of the file ({size:,} bytes)"
            )
        if _COUNT.unpack(count)[0] != record.numel:
            raise SourceError(f"{path}: not a readable PyTorch checkpoint ({WRONG_SIZE})")
        offsets[key] = position + _COUNT.size
        position = end
    return offsets

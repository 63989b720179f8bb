"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``): ``torch.load(weights_only=True, mmap=True)``, and
torch's legacy format read with its weights-only unpickler, its storages mapped (:mod:`._legacy_torch`).

``weights_only=True`` unpickles only tensors and plain containers, never arbitrary code; ``mmap=True`` maps the
tensor data without reading it, so a 100 GB checkpoint costs no memory to count. Plain state dicts and nested
checkpoints (Lightning's ``state_dict``, dicts with ``model``/``optimizer`` entries) are understood: the model's
tensors are counted; optimizer state and other entries are reported in the notes, apart from the totals. In a
directory, such as a Hugging Face Trainer's output, the files with the usual weight names are read, and the training
state saved beside them (``training_args.bin``, ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``) is only noted;
files that hold the same tensor names (``epoch1.pt``, ``epoch2.pt``) are separate checkpoints, refused rather than
added up. DTensors count at their global shape (a rank's file holds its shards), nested tensors as their values,
sparse tensors as their dense shape's elements in the bytes of their indices and values. Entries of a state dict that
are not tensors (a module's ``_extra_state``, a version number) are named in the notes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import logging
import math
import os
import pickle
import pickletools
import re
import struct
import sys
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from .. import dtypes as dtype_table
from .._errors import SourceError, printable
from .._report import Report
from .._units import format_bytes, format_count, listed, shortened
from ._file_mapping import MAP_REFUSED, named_in_utf8, read_only_storage
from ._legacy_torch import WRONG_SIZE, load_legacy
from ._pickle_scan import CostlyPickle, PickledStorages, check_pickle
from ._sharded import dtensor_class, dtensor_sharding
from ._tensors import PACKED_FP4, fp4_note, fp4_values, sparse_parts, unusual_bytes
from .checkpoint import (
    TRAINING_STATE,
    StoredTensor,
    check_files,
    check_no_shard_missing,
    checkpoint_report,
    files_read,
    read_config,
)
from .quantization import per_channel_qparams
from .safetensors import check_regular_file, directory_index, load_index

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Where nested checkpoints keep the model's state dict, most specific first.
_MODEL_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "weights")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_states", "optim", "optimizer_state")
# File names that hold a model's weights by convention: Hugging Face's pytorch_model.bin and its shards, PEFT's
# adapter_model.bin, diffusers' diffusion_pytorch_model.bin, Meta's consolidated.00.pth, a plain model.pt.
_WEIGHT_FILE = re.compile(
    r"(pytorch_model|diffusion_pytorch_model|adapter_model|model)(-\d+-of-\d+)?\.(bin|pt|pth|ckpt)|consolidated(\.\d+)?\.pth"
)
_SINGLE_FILE = "pytorch_model.bin"
"""The file ``from_pretrained`` reads a model's torch weights from, before any index."""
_OPTIMIZER_FILE = re.compile(r"optimizer(_\d+)?\.(bin|pt|pth)")
_MAX_NAMED = 5  # entries a note names before "and N more"
# torch.save of a model's state nests a few levels, and its dicts hold an entry per tensor and per optimizer state
# (10^5 for the largest models): a file beyond these is made to be walked, not a checkpoint
_MAX_NESTING = 1000
_MAX_ENTRIES = 20_000_000
_SPARSE = frozenset({torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc})
_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
_TORCH_PREAMBLE = "Weights only load failed."
_TORCH_DOCS = "Check the documentation of torch.load"
# What the weights_only unpickler says when the pickle asks for code (a global, a call, a class) it does not allow,
# as opposed to bytes it cannot parse ("Unsupported operand 205").
_REFUSALS = ("GLOBAL", "allowlisted", "unrecognized function", "must be imported")
# torch's unpickler allows DTensors and nested jagged tensors only once these modules are imported (they register
# their classes as safe globals), and says so: "``torch.distributed.tensor`` must be imported to load DTensors".
# Only these are imported for a file; a module any other message names is not.
_TORCH_MODULES = frozenset({"torch.distributed.tensor", "torch.nested", "torch._dynamo"})
_NAMED_MODULE = re.compile(r"``([\w.]+)``")
# What the weights_only unpickler raises on bytes that are no valid pickle, besides UnpicklingError: each opcode
# reads, pops and indexes without checks of its own (verified by mutating saved checkpoints, zip and legacy).
_BAD_PICKLE = (IndexError, KeyError, ValueError, struct.error, AssertionError)  # ValueError: UnicodeDecodeError too
# These too, when raised while the unpickler runs the file's opcodes (an allowed function called with the file's
# arguments: "_rebuild_tensor_v2() missing 2 required positional arguments", "unhashable type: 'dict'") or while
# the legacy loader reads what they returned; raised anywhere else they are bugs, and not hidden.
_BAD_CALL = (TypeError, AttributeError)
_UNPICKLER_FILE = "_weights_only_unpickler.py"
_LEGACY_LOADER = "_legacy_load"
# torch's CPU allocator, failing, raises a RuntimeError rather than a MemoryError.
# torch reads an archive's pickle and small records (byteorder, version) into memory, decompressing them where the
# archive compressed them (torch.save does not): a few MB of zeros can claim gigabytes. Storages are mapped, not read.
_MAX_RECORD_BYTES = 2**30
# The records of a few bytes torch reads besides the pickle (an order of bytes, versions, an alignment, an id), and
# quotes in its errors: a record of them of more than this is no torch.save's
_SMALL_RECORDS = frozenset({"byteorder", "version", ".data/version", ".format_version", ".storage_alignment",
                            ".data/serialization_id"})  # fmt: skip
_MAX_SMALL_RECORD = 4096
# A zip record's local header: signature, versions, flags, method, time, date, CRC, sizes, then the lengths of the
# name and the extra field that come before the record's bytes.
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_ZIP_METHODS = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_MINIZ_ADVICE = " This is an internal miniz error"  # torch's words after a record it cannot find: "... corrupted"
# A legacy file's storage of another size than its pickle gives: torch's message leaves its format unfilled and runs
# the two sizes together ("storage has wrong byte size: expected %ld got %ld396400": 396, or 39 and 6400?).
_WRONG_STORAGE_SIZE = "storage has wrong byte size: expected %ld got %ld"
_ALLOCATION_FAILED = re.compile(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes")
# what torch's C++ checks add to their messages, about torch itself: the check's source line, and a request for reports
_TORCH_CHECK_WORDS = re.compile(
    r"^\[enforce fail at [^\]]*\] \.? ?|\s*\(Could this error message be improved\?\s+If so, please report an\s+"
    r"enhancement request to PyTorch\.\)"
)


def _unpickler_message(error: Exception) -> str:
    """The unpickler's own words inside the text torch wraps them in, on one line and without ANSI codes.

    torch (2.6 and later) puts them after a preamble about the weights_only default: after "WeightsUnpickler error:"
    when a global is not allowlisted, else in a paragraph of their own, and before a link to the documentation.
    """
    text = _ANSI_CODE.sub("", str(error)).split(_TORCH_DOCS)[0]
    tail = text.rpartition("WeightsUnpickler error:")[2]
    if tail.strip():
        text = tail
    paragraphs = [part.strip() for part in text.split("\n\n") if part.strip()]
    reason = paragraphs[-1] if paragraphs else ""
    if reason.startswith(_TORCH_PREAMBLE):  # "... must be imported to load ...": the reason, then advice
        reason = reason.removeprefix(_TORCH_PREAMBLE).strip().splitlines()[0]
    reason = reason.split(" Please use `torch.serialization", 1)[0]  # how to allowlist it: not advice for our users
    return _one_line(reason) or type(error).__name__


# torch's C++ errors end with a backtrace of its frames (library paths, addresses), after these words
_BACKTRACE = " Exception raised from "
# the most of an error's text kept: torch quotes a file's bytes in some (a byteorder record of 512 MiB)
_MAX_REASON = 1000


def _one_line(text: str) -> str:
    """``text`` with its whitespace collapsed and control characters escaped, without a C++ backtrace, and shortened
    to :data:`_MAX_REASON` characters: it may quote bytes of the file.

    >>> _one_line("Overflow when unpacking long\\nException raised from THPUtils_unpackLong at x.h:79 (frame #0: …")
    'Overflow when unpacking long'
    """
    text = " ".join(text[: 4 * _MAX_REASON].split())
    return printable(shortened(text.split(_BACKTRACE.strip(), 1)[0].strip(), _MAX_REASON))


def _torch_load(path: Path) -> tuple[Any, _Contents | None]:
    """``torch.load(path, weights_only=True)``, its failures one-line errors; DTensors and nested tensors loaded. With
    what it loaded, its contents where they were walked already (a zip file's, to check its storages), else None."""
    with _load_errors(path):
        try:
            return _load_file(path)
        except pickle.UnpicklingError as error:
            if not _import_torch_modules(path, _unpickler_message(error)):
                raise
        return _load_file(path)  # once more, now that the module torch asked for is imported


def _load_file(path: Path) -> tuple[Any, _Contents | None]:
    check_regular_file(path)
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file (0 bytes): not a PyTorch checkpoint")
    if zipfile.is_zipfile(path):
        records = _check_archive(path)
        try:
            loaded = _load_quietly(path, mmap=True)
        except RuntimeError as error:
            if MAP_REFUSED not in str(error):
                raise
            loaded = _load_mapped_read_only(path)
        contents = None if isinstance(loaded, torch.Tensor) else _Contents(path, loaded)
        _check_storages(path, loaded, records, contents)
        return loaded, contents
    with path.open("rb") as handle:
        if handle.read(4) == b"PK\x03\x04":
            raise SourceError(_DAMAGED.format(path=path))
    if _is_legacy_file(path):  # torch.load would read its storages into memory
        with _quietly():
            return load_legacy(path), None
    with path.open("rb") as handle:  # its first pickle, which torch.load reads as a legacy file's magic number
        check_pickle(handle)
    return _load_quietly(path), None  # in neither format: torch.load's error says what it is not


_DAMAGED = "{path}: a zip archive cut short or damaged: truncated, or not a PyTorch checkpoint"


def _check_archive(path: Path) -> list[_Record]:
    """Refuse a zip archive that has no pickle, or records torch would read into memory larger than
    :data:`_MAX_RECORD_BYTES` (a zip bomb), before torch reads any of it; its storage records."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, UnicodeDecodeError, ValueError, OverflowError, NotImplementedError):
        # a name not in the UTF-8 its flag declares, offsets past any file (zipfile's own errors for a damaged one)
        raise SourceError(_DAMAGED.format(path=path)) from None
    with archive:
        storages = _checked_entries(path, archive)
    return _storage_records(path, storages)


def _checked_entries(path: Path, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The storage records of ``archive`` (``path``'s), after the checks of :func:`_check_archive`."""
    entries = archive.infolist()
    pickles = [entry for entry in entries if entry.filename.rpartition("/")[2] == "data.pkl"]
    if not pickles:
        raise SourceError(f"{path}: a zip archive without data.pkl: not a PyTorch checkpoint")
    if any(entry.filename.rpartition("/")[2] == "constants.pkl" for entry in entries):  # torch.load's own test
        raise SourceError(
            f"{path}: a TorchScript archive (torch.jit.save): its weights come with code, which torch.load("
            "weights_only=True) does not read; inspect the module torch.jit.load gives, if you trust where it comes "
            "from"
        )
    for entry in entries:
        if "/data/" not in entry.filename and entry.file_size > _MAX_RECORD_BYTES:
            raise SourceError(
                f"{path}: its record {printable(entry.filename)} is {format_bytes(entry.file_size)} unpacked, more "
                f"than the {format_bytes(_MAX_RECORD_BYTES)} paramscope reads into memory"
            )
        if entry.filename.partition("/")[2] in _SMALL_RECORDS and entry.file_size > _MAX_SMALL_RECORD:
            raise SourceError(
                f"{path}: its record {printable(shortened(entry.filename))} is {format_bytes(entry.file_size)} "
                f"unpacked, where torch.save writes a few bytes: not written by torch.save"
            )
    # the one torch reads: the data.pkl in the folder of the archive's first entry (others it never opens)
    read = f"{entries[0].filename.partition('/')[0]}/data.pkl"
    named = [entry for entry in pickles if entry.filename == read]
    if len(named) > 1:  # which one torch reads is miniz's to choose
        raise SourceError(f"{path}: its archive holds {printable(read)} {len(named)} times: not written by torch.save")
    try:
        # at most _MAX_RECORD_BYTES, checked above; none where torch finds no data.pkl to read (its error says so)
        pickled = check_pickle(archive.read(named[0])) if named else PickledStorages({}, 0)
    except (zipfile.BadZipFile, EOFError, ValueError, OverflowError, NotImplementedError, zlib.error):
        raise SourceError(_DAMAGED.format(path=path)) from None
    storages = [entry for entry in entries if "/data/" in entry.filename]
    by_name = {entry.filename: entry for entry in storages}
    if len(by_name) < len(storages):
        twice = next(name for name, count in Counter(entry.filename for entry in storages).items() if count > 1)
        raise SourceError(f"{path}: its archive holds {printable(twice)} twice: not written by torch.save")
    folder = read.rpartition("/")[0]
    for key, nbytes in pickled.claimed.items():
        # torch maps a storage from its record on, as long as the pickle says: a record cut short would be counted
        # at bytes that lie in the records after it (a plain torch.load refuses it)
        record = by_name.get(f"{folder}/data/{key}")
        if record is not None and nbytes > record.file_size:
            raise SourceError(
                f"{path}: the storage torch loads from its record {printable(record.filename.partition('/')[2])} "
                f"takes {format_bytes(nbytes)}, but the record holds {format_bytes(record.file_size)}: damaged, or "
                "not written by torch.save"
            )
    claimed = {f"{folder}/data/{key}" for key in pickled.claimed}
    spare = [entry.filename for entry in storages if entry.filename not in claimed and entry.file_size]
    if pickled.unread and len(spare) > pickled.unread:
        # the storages of those ids cannot be checked against their records (each may be one of these), and the
        # records left over could stand in for the bytes they lack
        raise SourceError(
            f"{path}: its pickle names {pickled.unread} storage(s) by a key or type paramscope does not read, and "
            f"{len(spare)} storage records are left for them ({listed([printable(name) for name in spare])}): which "
            "each takes cannot be checked; not written by torch.save"
        )
    for entry in storages:
        # torch maps a storage from the bytes of its record as they lie in the file (mmap=True): a compressed one
        # (an archive packed again by a zip tool) fails inside torch with "Trying to resize storage that is not
        # resizable"
        if entry.compress_type != zipfile.ZIP_STORED and entry.file_size:
            method = _ZIP_METHODS.get(entry.compress_type, f"zip method {entry.compress_type}")
            raise SourceError(
                f"{path}: its storage record {printable(entry.filename)} is compressed ({method}), which "
                "torch.load(mmap=True) cannot map (torch.save writes them uncompressed); a copy saved with "
                "torch.save(torch.load(FILE, weights_only=True), COPY) can be inspected"
            )
    return storages


@dataclass(frozen=True)
class _Record:
    """A storage record of a zip checkpoint: its name, where its bytes start in the file and how many there are."""

    name: str
    offset: int
    size: int


def _storage_records(path: Path, entries: list[zipfile.ZipInfo]) -> list[_Record]:
    """The records ``entries`` name, each with the offset of its bytes, read from its local header (the central
    directory gives only the header's offset; torch maps a storage from the bytes that follow the header)."""
    records = []
    with path.open("rb") as handle:
        for entry in entries:
            if entry.header_offset < 0:  # a central directory's offset past the file's start (a damaged zip64 record)
                raise SourceError(_DAMAGED.format(path=path))
            handle.seek(entry.header_offset)
            header = handle.read(_LOCAL_HEADER.size)
            if len(header) < _LOCAL_HEADER.size:
                raise SourceError(_DAMAGED.format(path=path))
            name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
            offset = entry.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            records.append(_Record(entry.filename.partition("/")[2], offset, entry.file_size))
    return records


def _import_torch_modules(path: Path, reason: str) -> bool:
    """Import the torch modules the unpickler says it needs (of :data:`_TORCH_MODULES` only); whether any was new."""
    if "must be imported" not in reason:
        return False
    modules = [name for name in _NAMED_MODULE.findall(reason) if name in _TORCH_MODULES and name not in sys.modules]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise SourceError(f"{path}: its tensors need {name}, which cannot be imported here ({error})") from None
    return bool(modules)


@contextlib.contextmanager
def _load_errors(path: Path) -> Iterator[None]:
    """Turn what ``torch.load`` raises on a bad file into one-line errors; anything else (a bug) goes through."""
    try:
        yield
    except SourceError:
        raise
    except CostlyPickle as error:
        raise SourceError(
            f"{path}: refused: its pickle builds {error}, which torch's unpickler would take without bound to read; "
            "nothing in it was executed"
        ) from None
    except pickle.UnpicklingError as error:
        reason = _unpickler_message(error)
        if not any(marker in reason for marker in _REFUSALS):  # bytes that are no pickle torch.load can read
            raise _not_a_pickle(path, reason) from None
        raise SourceError(
            f"{path}: refused: its pickle needs something torch.load(weights_only=True) does not allow "
            f"({reason}); nothing in it was executed. Load it without weights_only only if you trust where it "
            "comes from"
        ) from None
    except (EOFError, zipfile.BadZipFile):
        raise SourceError(f"{path}: truncated, or not a PyTorch checkpoint") from None
    except OSError as error:
        raise SourceError(f"{path}: cannot be read: {error.strerror or error}") from None
    except MemoryError:
        raise _out_of_memory(path, None) from None
    except RuntimeError as error:
        wanted = _ALLOCATION_FAILED.search(str(error))
        if wanted:
            raise _out_of_memory(path, int(wanted.group(1))) from None
        text = _TORCH_CHECK_WORDS.sub("", str(error)).strip()
        if _MINIZ_ADVICE in text:  # "failed locating file data/0: file not found. This is an internal miniz ..."
            text = text.split(_MINIZ_ADVICE)[0].removesuffix(".")
        first = _one_line(text.splitlines()[0]) if text else type(error).__name__
        if first.startswith(_WRONG_STORAGE_SIZE):  # torch's words, its "%ld" unfilled and the two sizes run together
            first = WRONG_SIZE
        raise SourceError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    except _BAD_PICKLE as error:
        raise _not_a_pickle(path, _reason(error)) from None
    except _BAD_CALL as error:
        if not _raised_reading_the_file(error.__traceback__):
            raise
        raise _not_a_pickle(path, _reason(error)) from None


def _out_of_memory(path: Path, wanted: int | None) -> SourceError:
    asked = f" (it asked for {format_bytes(wanted)})" if wanted is not None else ""
    return SourceError(f"{path}: cannot be read: out of memory{asked}")


def _reason(error: BaseException) -> str:
    message = _one_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _not_a_pickle(path: Path, reason: str) -> SourceError:
    protocol = _unread_protocol(path)
    if protocol is not None:
        return SourceError(
            f"{path}: a torch.save file pickled with protocol {protocol}, which torch.load(weights_only=True) does "
            f"not read (only protocols 2 and 3: {reason}); nothing in it was executed. A copy saved with "
            "torch.save's default protocol can be inspected (loading this one needs weights_only=False: only for a "
            "file you trust)"
        )
    if _LEGACY_DTYPE_UNREAD in reason and _is_legacy_file(path):
        # torch's legacy loader looks a storage's dtype up on a class that has none for the dtypes added after the
        # format was retired (uint16 to uint64, complex32, float8): torch.save still writes them, torch.load fails
        return SourceError(
            f"{path}: a torch.save file in the legacy format (before torch 1.6) holding a dtype torch's legacy loader "
            f"cannot read back (uint16, uint32, uint64, complex32 or float8: {reason}); nothing in it was executed. A "
            "copy saved in the zip format (torch.save's default) can be inspected"
        )
    return SourceError(
        f"{path}: not a PyTorch checkpoint (its data is not a pickle torch.load(weights_only=True) accepts: "
        f"{reason}); nothing in it was executed"
    )


_LEGACY_DTYPE_UNREAD = "'torch.storage.UntypedStorage' has no attribute 'dtype'"


def _is_legacy_file(path: Path) -> bool:
    from .target import is_legacy_torch_head

    try:
        with path.open("rb") as handle:
            return is_legacy_torch_head(handle.read(32))
    except OSError:
        return False


# torch.save(..., pickle_protocol=N) writes its pickle in any protocol, and torch's weights-only unpickler knows the
# opcodes of protocols 2 and 3 alone (torch.save's default is 2): "Unsupported operand 149", FRAME, for 4 and 5.
_READ_PROTOCOLS = (2, 3)
_PROTO = 0x80  # the opcode that opens a pickle of protocol 2 or more, its protocol in the next byte
# A data.pkl without PROTO is walked, opcode by opcode, to tell a pickle of protocol 0 or 1 from bytes that are no
# pickle; one larger than this is not (pickletools, in pure Python, takes about a second for 2 MB: 13,000 tensors).
_MAX_WALKED = 8 * 2**20
_MAX_OPCODES = 500_000  # and as many opcodes (one-byte opcodes, 8 MiB of them, would take 13 s)


def _unread_protocol(path: Path) -> str | None:
    """The pickle protocol of a file torch.save wrote (its archive's data.pkl, or a legacy file's first pickle), when
    it is one the weights-only unpickler does not read; None otherwise, and for a file torch.save did not write."""
    from .target import is_legacy_torch_head

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.rpartition("/")[2] == "data.pkl")
                with archive.open(name) as pickled:
                    head = pickled.read(2)
                if head[:1] != bytes([_PROTO]):
                    return _protocol_0_or_1(archive, name)
        else:
            with path.open("rb") as handle:
                head = handle.read(32)
            if not is_legacy_torch_head(head):
                return None
    except (OSError, zipfile.BadZipFile, StopIteration, RuntimeError, NotImplementedError, UnicodeDecodeError,
            ValueError):  # fmt: skip
        return None
    if head[:1] != bytes([_PROTO]):  # a legacy file's magic pickled without a PROTO opcode: protocol 0 or 1
        return "0 or 1"
    return None if head[1] in _READ_PROTOCOLS else str(head[1])


class _Discarded(io.StringIO):
    def write(self, text: str) -> int:
        return len(text)


def _protocol_0_or_1(archive: zipfile.ZipFile, name: str) -> str | None:
    """ "0 or 1" when an archive's data.pkl (one without PROTO) is a whole pickle of protocol 0 or 1: its opcodes,
    walked without executing any, are all of those protocols, keep to the pickle machine's stack and memo, and end
    in STOP at its last byte; None for anything else (text, damaged bytes, one too large to walk)."""
    if archive.getinfo(name).file_size > _MAX_WALKED:
        return None
    try:
        data = archive.read(name)
        for count, (opcode, _, at) in enumerate(pickletools.genops(data)):
            if count == _MAX_OPCODES or opcode.proto > 1 or (opcode.name == "STOP" and at != len(data) - 1):
                return None
        pickletools.dis(data, out=_Discarded())  # checks the stack, the marks and the memo
    except Exception:  # ValueError, IndexError…: what pickletools raises for bytes that are no such pickle; a hint only
        return None
    return "0 or 1"


def _raised_reading_the_file(traceback: TracebackType | None) -> bool:
    """Whether torch's weights-only unpickler, or its legacy loader, was running where the error was raised."""
    while traceback is not None:
        code = traceback.tb_frame.f_code
        if code.co_filename.endswith(_UNPICKLER_FILE) or code.co_name == _LEGACY_LOADER:
            return True
        traceback = traceback.tb_next
    return False


def _byte_order(reader: Any) -> str | None:
    """The byte order of the tensors in a zip checkpoint, as ``torch.serialization._load`` tells it (which swaps the
    bytes of any other in place): its ``byteorder`` record (None for one that is neither, which torch refuses),
    else torch's default for a file without one."""
    if reader.has_record("byteorder"):
        return {b"little": "little", b"big": "big"}.get(reader.get_record("byteorder"))
    default = torch.serialization.get_default_load_endianness()
    endianness = torch.serialization.LoadEndianness
    return sys.byteorder if default == endianness.NATIVE else "big" if default == endianness.BIG else "little"


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    # A DTensor's mesh, unpickled where no process group exists, logs a warning about torch.compile: not ours to show.
    mesh_log = logging.getLogger("torch.distributed.device_mesh")
    level = mesh_log.level
    mesh_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4 in the checkpoint": a file torch.save did not write, so the one-line
            # error that follows says all there is to say
            warnings.simplefilter("ignore")
            yield
    finally:
        mesh_log.setLevel(level)


def _load_quietly(path: Path, *, mmap: bool = False) -> Any:
    with _quietly(), named_in_utf8(path) if mmap else contextlib.nullcontext(path) as name:
        return torch.load(name, map_location="cpu", weights_only=True, mmap=mmap)


def _load_mapped_read_only(path: Path) -> Any:
    """What ``torch.load(path, weights_only=True, mmap=True)`` gives, the file mapped read-only and shared
    (:func:`._file_mapping.read_only_storage`: where torch's own, private mapping is refused). torch.load takes no
    mapping of the caller's, so this calls the loader it passes its own to (``torch.serialization._load``, its
    ``overall_storage`` since torch 2.1)."""
    from torch import _weights_only_unpickler

    with _quietly(), named_in_utf8(path) as name, name.open("rb") as handle:
        reader = torch._C.PyTorchFileReader(os.fspath(name))
        order = _byte_order(reader)
        if order is not None and order != sys.byteorder:  # None: torch's own error says what the record is
            raise SourceError(
                f"{path}: cannot be mapped: its tensors are stored {order}-endian, which torch swaps in place as it "
                f"loads them, and this machine refuses a writable mapping of the file "
                f"({format_bytes(path.stat().st_size)})"
            )
        whole = read_only_storage(handle)
        return torch.serialization._load(
            reader, "cpu", _weights_only_unpickler, overall_storage=whole, encoding="utf-8"
        )


def _pairs(value: Any) -> Iterator[tuple[Any, Any]]:
    """The ``(key, item)`` entries of a dict, list or tuple, one at a time."""
    return iter(value.items()) if isinstance(value, Mapping) else enumerate(value)


def _items(value: Any) -> Sequence[Any] | None:
    """The items of a dict (its values), list or tuple, in order, without their keys; None for anything else."""
    if isinstance(value, Mapping):
        return [item for _, item in value.items()]
    if isinstance(value, (list, tuple)):
        return value
    return None


# The types of the items a file's containers hold most (a log of numbers or strings): neither tensors nor containers.
_PLAIN = frozenset({int, float, bool, str, bytes, complex, type(None)})


class _Contents:
    """What one loaded file holds, in nested dicts, lists and tuples: its tensors and its other entries.

    Walked without recursion, each container once per walk, and within bounds: the unpickler builds whatever graph
    of containers a file describes, and a file of a few hundred bytes can hold a list in itself, nest lists 10^5
    deep, or hold one list twice at each of 40 levels (2^40 paths). A file beyond the bounds is refused.
    """

    def __init__(self, path: Path, loaded: Any) -> None:
        self.path = path
        self._visited = 0
        self._shared = False
        """Whether the file refers to a container more than once (or holds one in itself)."""
        self.holders = self._holders(loaded)
        """The ids of the containers from which a tensor can be reached."""

    def holds_tensors(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) or id(value) in self.holders

    def is_container_of_tensors(self, value: Any) -> bool:
        return not isinstance(value, torch.Tensor) and id(value) in self.holders

    def leaves(self, value: Any) -> list[tuple[str, torch.Tensor]]:
        """Every tensor in ``value``, with a dotted name, in order.

        Only the containers that hold a tensor are walked into, and only their tensors and those containers named: a
        list of 10^7 numbers beside the weights costs no walk. Where the file refers to a container twice, the others
        are walked into too, for their depth alone: reached by another path than _holders took, one may lie deeper
        than the depth _holders checked (in a tree, each lies where _holders found it)."""
        tensors = []
        seen: set[int] = set()
        stack = [("", value, 0)]
        while stack:
            name, item, depth = stack.pop()
            if isinstance(item, torch.Tensor):
                tensors.append((name, item))
            elif self._walked(item) and id(item) not in seen:
                seen.add(id(item))
                self._visit(0, depth)  # its entries are counted once, by _holders, which walks every container
                entries = item.items() if isinstance(item, Mapping) else enumerate(item)
                kept = [(key, child) for key, child in entries if type(child) not in _PLAIN
                        and (isinstance(child, torch.Tensor) or self._walked(child))]  # fmt: skip
                stack += [(f"{name}.{key}" if name else str(key), child, depth + 1) for key, child in reversed(kept)]
        return tensors

    def _walked(self, value: Any) -> bool:
        """Whether :meth:`leaves` walks into ``value``: a container that holds a tensor, or any one in a file that
        refers to a container twice."""
        return id(value) in self.holders or (self._shared and isinstance(value, (Mapping, list, tuple)))

    def without_tensors(self, value: Any) -> tuple[int, list[tuple[str, Any]]]:
        """How many entries of a state dict (nested dicts and lists walked) hold no tensor (a module's
        ``_extra_state``, a version number, a metadata string), and the first :data:`_MAX_NAMED` of them in order,
        with a dotted name.

        Only the containers that hold a tensor are walked into; one that holds none is an entry. Only the entries
        named are given a name: a list of 10^7 numbers beside a tensor costs a count."""
        if not self.is_container_of_tensors(value):
            return (0, []) if isinstance(value, torch.Tensor) else (1, [("", value)])
        count = 0
        named: list[tuple[str, Any]] = []
        seen = {id(value)}
        self._visit(0, 0)  # its entries are counted once, by _holders, which walks every container
        # the containers walked into, depth first and each one's entries in order: its name, the entries left, the
        # depth of its entries
        walking: list[tuple[str, Iterator[tuple[Any, Any]], int]] = [("", _pairs(value), 1)]
        while walking:
            name, rest, depth = walking[-1]
            for key, child in rest:
                if type(child) in _PLAIN or not (isinstance(child, torch.Tensor) or id(child) in self.holders):
                    count += 1
                    if len(named) < _MAX_NAMED:
                        named.append((f"{name}.{key}" if name else str(key), child))
                elif not isinstance(child, torch.Tensor) and id(child) not in seen:
                    seen.add(id(child))
                    self._visit(0, depth)
                    walking.append((f"{name}.{key}" if name else str(key), _pairs(child), depth + 1))
                    break
            else:
                walking.pop()
        return count, named

    def _holders(self, value: Any) -> set[int]:
        """The ids of the containers from which a tensor can be reached. Each container is visited once, depth first
        and each one's entries from the last: its entries are counted and its depth checked there."""
        holding: list[int] = []  # the containers that hold a tensor themselves
        parents: dict[int, list[int]] = {}  # the containers each container that holds more than plain items is in
        seen: set[int] = set()
        walking: list[tuple[int, Iterator[Any], int]] = []  # the containers walked into: the items left, the depth
        item: Any = value
        parent: int | None = None
        depth = 0
        while item is not None:
            items = _items(item)
            if items is None:  # the file holds a tensor, or no container
                break
            seen.add(id(item))
            self._visit(len(items), depth)
            # a container of plain items (a list of 10^7 losses) holds no tensor, nor another container: told at C
            # speed, and none is a parent
            if not _PLAIN.issuperset(map(type, items)):
                if parent is not None:
                    parents.setdefault(id(item), []).append(parent)
                walking.append((id(item), reversed(items), depth))
            item = None
            while walking and item is None:
                container, rest, at = walking[-1]
                for child in rest:
                    if type(child) in _PLAIN:
                        continue
                    if isinstance(child, torch.Tensor):
                        holding.append(container)
                    elif isinstance(child, (Mapping, list, tuple)):
                        if id(child) not in seen:
                            item, parent, depth = child, container, at + 1
                            break
                        parents.setdefault(id(child), []).append(container)
                        self._shared = True
                else:
                    walking.pop()
        found: set[int] = set()
        while holding:
            holder = holding.pop()
            if holder not in found:
                found.add(holder)
                holding += parents.get(holder, ())
        return found

    def _visit(self, entries: int, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise SourceError(f"{self.path}: its dicts and lists nest more than {_MAX_NESTING:,} deep: not a "
                              "checkpoint paramscope reads")  # fmt: skip
        self._visited += entries
        if self._visited > _MAX_ENTRIES:
            raise SourceError(f"{self.path}: its dicts and lists hold more than {_MAX_ENTRIES:,} entries to read: not "
                              "a checkpoint paramscope reads")  # fmt: skip


def _nbytes(tensor: torch.Tensor) -> int:
    if tensor.layout in _SPARSE:
        return unusual_bytes("", tensor, 0)[0]  # its indices and values
    return tensor.numel() * tensor.element_size()


def _summary(tensors: list[tuple[str, torch.Tensor]]) -> str:
    elements = sum(tensor.numel() for _, tensor in tensors)
    size = sum(_nbytes(tensor) for _, tensor in tensors)
    return f"{format_count(len(tensors))} tensor(s), {format_count(elements)} elements, {format_bytes(size)}"


def _left_out_note(count: int, named: list[tuple[str, Any]], where: str) -> list[str]:
    """The note on the ``count`` entries that hold no tensor, ``named`` the first of them (:data:`_MAX_NAMED` or
    more) with their names."""
    if not count:
        return []
    shown = listed(
        [f"{name} ({'None' if item is None else type(item).__name__})" for name, item in named], _MAX_NAMED, total=count
    )
    if count == 1:
        return [f"1 entry{where} holds no tensor and is not counted: {shown}"]
    return [f"{format_count(count)} entries{where} hold no tensor and are not counted: {shown}"]


# A random generator's state as torch gives it (torch.get_rng_state(), a uint8 tensor), under the name training
# loops save it by: a tensor at the top of a checkpoint that is no model's.
_RNG_STATE = re.compile(r"(cuda_|cpu_)?rng_state(_\d+)?")


def _is_optimizer_state(value: Any) -> bool:
    """Whether ``value`` is an optimizer's ``state_dict()``: ``{"state": {…}, "param_groups": […]}``."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("state"), Mapping)
        and isinstance(value.get("param_groups"), list)
    )


def _is_training_state(key: Any, value: Any) -> bool:
    """Whether a checkpoint's entry is training state, not a model: an optimizer's state dict, or an entry under an
    optimizer's key or the name of a training state file (``scheduler``, ``scaler``, ``rng_state``)."""
    return key in _OPTIMIZER_KEYS or TRAINING_STATE.fullmatch(f"{key}.pt") is not None or _is_optimizer_state(value)


def _split_checkpoint(
    path: Path, loaded: Any, contents: _Contents | None = None
) -> tuple[list[tuple[str, torch.Tensor]], list[str], Any]:
    """The model's named tensors, notes on everything else the checkpoint holds, and the dict the model's tensors
    are in (its ``_metadata`` is what ``load_state_dict`` reads module versions from), or None.

    A dict whose values are tensors is a state dict: each of them is the model's, whatever its name (``fc.weight``,
    ``logit_scale``), and values that are not tensors (``_extra_state``, a version) are named in a note. A dict with
    a model entry (a state dict under one of :data:`_MODEL_KEYS`) is a training checkpoint: that entry is the model,
    and the tensors of the other entries (optimizer state) are summed up in notes.
    """
    if isinstance(loaded, torch.Tensor):
        return [(path.stem, loaded)], [], None
    if not isinstance(loaded, Mapping):
        held = "None" if loaded is None else f"an object of type {type(loaded).__name__}"  # no article to guess
        raise SourceError(f"{path}: holds {held}, not a state dict or a checkpoint dict")
    contents = contents or _Contents(path, loaded)
    # A model entry is a container of tensors; a tensor under such a name ("weights") is one of a state dict's.
    model_key = next((key for key in _MODEL_KEYS if contents.is_container_of_tensors(loaded.get(key))), None)
    notes = []
    if model_key is None:
        model = [(str(key), value) for key, value in loaded.items() if isinstance(value, torch.Tensor)]
        others = [key for key, value in loaded.items() if contents.is_container_of_tensors(value)]
        if any(_is_training_state(key, loaded[key]) for key in others):
            # a training checkpoint's loose state beside its optimizer's (torch.get_rng_state() under 'rng_state')
            loose = [key for key, value in loaded.items() if isinstance(value, torch.Tensor)
                     and _RNG_STATE.fullmatch(str(key)) and value.dtype == torch.uint8]  # fmt: skip
            model = [(name, value) for name, value in model if name not in {str(key) for key in loose}]
            others += loose
        if not model and _is_optimizer_state(loaded):
            raise SourceError(f"{path}: no model weights, only training state (an optimizer's state_dict(): its "
                              "'state' and 'param_groups')")  # fmt: skip
        if not model and others and all(_is_training_state(key, loaded[key]) for key in others):
            named = listed([repr(key) for key in others])
            raise SourceError(f"{path}: no model weights, only training state ({named})")
        if not model and others:  # sub-models ({"generator": …, "discriminator": …}): which is the model is the user's
            first = next(key for key in others if not _is_training_state(key, loaded[key]))
            raise SourceError(
                f"{path}: no model tensors found: its entries {listed([repr(key) for key in others])} hold tensors, "
                f"but none under a key paramscope reads as the model's ({', '.join(map(repr, _MODEL_KEYS[:4]))}, …); "
                f"to count one, save it alone and inspect that: torch.save(torch.load({str(path)!r}, "
                f"weights_only=True)[{first!r}], 'model.pt')"
            )
        state = [key for key in loaded if _is_training_state(key, loaded[key])]
        if not model and not others and state:  # an optimizer before its first step holds no tensor yet
            raise SourceError(f"{path}: no model weights, only training state ({listed([repr(key) for key in state])})")
        if not model and loaded:  # an empty dict is the state dict of a model without tensors (nn.ReLU): 0 of them
            keys = ", ".join(repr(key) for key in list(loaded)[:8])
            raise SourceError(f"{path}: no model tensors found (top-level keys: {keys})")
        count = sum(not contents.holds_tensors(value) for value in loaded.values())
        without = ((str(key), value) for key, value in loaded.items() if not contents.holds_tensors(value))
        left_out = _left_out_note(count, list(itertools.islice(without, _MAX_NAMED)), "")
    else:
        model = contents.leaves(loaded[model_key])
        others = [key for key in loaded if key != model_key and contents.holds_tensors(loaded[key])]
        notes.append(f"the model's tensors are the checkpoint's {model_key!r} entry")
        left_out = _left_out_note(*contents.without_tensors(loaded[model_key]), f" of {model_key!r}")
    for key in others:
        what = "optimizer state" if key in _OPTIMIZER_KEYS else "entry"
        notes.append(
            f"{what} {shortened(repr(key))}: {_summary(contents.leaves(loaded[key]))}; not counted in the totals"
        )
    return model, notes + left_out, loaded if model_key is None else loaded[model_key]


def _state_dict_metadata(state_dict: Any) -> dict[str, dict[str, Any]] | None:
    """The ``_metadata`` that ``torch.save`` keeps with a module's ``state_dict()`` (module prefix -> ``{"version":
    …}``), as ``load_state_dict`` reads it; None for a dict without (one made by hand, a sharded file's)."""
    metadata = getattr(state_dict, "_metadata", None)
    if not isinstance(metadata, Mapping):
        return None
    return {str(prefix): dict(entry) for prefix, entry in metadata.items() if isinstance(entry, Mapping)}


def _check_storages(path: Path, loaded: Any, records: list[_Record], contents: _Contents | None) -> None:
    """Refuse a zip checkpoint whose tensors' storages take more bytes than its archive's storage records hold, once
    torch has loaded them: for the storages whose key or size the walk of the pickle could not read, which the
    check before loading (:func:`_checked_entries`) leaves out.

    Mapped (``mmap=True``), each storage is the stretch of the file that starts at its record and is as long as the
    pickle says; a record cut short (a damaged or hand-made archive) makes it run on into the records after it, and
    the tensors would be counted at sizes the file does not hold. torch.save writes each storage whole, so the
    storages of a file it wrote never take more than their records hold.

    Each storage is checked against its own record: ordered by where they lie in memory, the storages match the
    records ordered by where they lie in the file, when there are as many of each and all lie the same distance
    apart (the start of the mapping). Otherwise (records no tensor uses) the storages are checked together."""
    tensors = [("the tensor", loaded)] if contents is None else contents.leaves(loaded)
    storages: dict[int, tuple[int, str]] = {}  # where a storage's data starts: its bytes, and a tensor it holds
    for name, tensor in tensors:
        data = _counted(tensor)[0]
        if data.is_meta:  # a meta tensor's storage is not saved
            continue
        # a sparse tensor's storages are those of its indices and values
        for part in sparse_parts(data) or (data,):
            storage = part.untyped_storage()
            storages.setdefault(storage.data_ptr(), (storage.nbytes(), name))
    mapped = sorted((start, nbytes, name) for start, (nbytes, name) in storages.items() if nbytes)
    filled = sorted((record for record in records if record.size), key=lambda record: record.offset)
    pairs = list(zip(mapped, filled, strict=False))
    if len(mapped) == len(filled) and len({start - record.offset for (start, _, _), record in pairs}) < 2:
        for (_, nbytes, name), record in pairs:
            if nbytes > record.size:
                raise SourceError(
                    f"{path}: the storage of {printable(name)} takes {format_bytes(nbytes)}, but its record "
                    f"{printable(record.name)} holds {format_bytes(record.size)}: damaged, or not written by torch.save"
                )
        return
    claimed = sum(nbytes for nbytes, _ in storages.values())
    held = sum(record.size for record in records)
    if claimed > held:
        raise SourceError(
            f"{path}: its tensors' storages take {format_bytes(claimed)}, but its archive holds "
            f"{format_bytes(held)} of storage data: damaged, or not written by torch.save"
        )


def _counted(tensor: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], str]:
    """The plain tensor holding ``tensor``'s data in the file, the shape ``tensor`` is counted at, and what it is."""
    dtensor = dtensor_class()
    if dtensor is not None and isinstance(tensor, dtensor):
        local: torch.Tensor = tensor.to_local()  # type: ignore[attr-defined]  # DTensor is no type here
        return local, tuple(tensor.shape), "dtensor"  # the file holds one rank's shard; counted whole
    if tensor.is_nested:  # its shape has a ragged dimension; its values are a plain tensor
        values = tensor.values()
        return values, tuple(values.shape), "nested"
    return tensor, tuple(tensor.shape), "plain"


def _stored(named: list[tuple[Path, str, torch.Tensor]]) -> tuple[list[StoredTensor], list[str]]:
    """One StoredTensor per distinct tensor, and notes on DTensors and nested tensors; names of the same tensor (a
    tied weight saved twice) become aliases."""
    first_of: dict[tuple[Any, ...], int] = {}
    order: list[tuple[Path, str, tuple[int, ...], torch.Tensor, str]] = []
    aliases: dict[int, list[str]] = {}
    for path, name, tensor in named:
        data, shape, what = _counted(tensor)
        address = 0 if data.is_meta or data.layout in _SPARSE else data.untyped_storage().data_ptr()
        # a sparse tensor has no single storage, and the legacy loader puts every empty storage at address 0; the
        # unpickler gives a tensor saved twice one id
        key = (id(tensor),) if not address else (address, data.storage_offset(), shape, data.stride(), data.dtype)
        position = first_of.get(key)
        if position is None:
            first_of[key] = len(order)
            order.append((path, name, shape, tensor, what))
        else:
            aliases.setdefault(position, []).append(name)
    stored = []
    qparams: list[StoredTensor] = []  # after the tensors, each of which is at its place in ``order`` in ``stored``
    sparse: list[str] = []
    views: list[str] = []
    fp4: list[str] = []
    for position, (path, name, shape, tensor, what) in enumerate(order):
        entry = dtype_table.find(str(tensor.dtype))
        if entry is None:
            raise SourceError(f"{path}: tensor {name!r} has dtype {tensor.dtype}, which paramscope does not know")
        nbytes = entry.nbytes(math.prod(shape))
        # counted as a live model's tensors are: a sparse one as its dense shape's elements and the bytes it stores,
        # an expanded or strided view at its logical size, with a note when its storage holds less
        if tensor.layout in _SPARSE:
            nbytes, note = unusual_bytes(name, tensor, nbytes)
            sparse.extend([note] if note else [])
        elif what == "plain" and not tensor.is_meta and not tensor.is_contiguous():
            nbytes, note = unusual_bytes(name, tensor, nbytes)
            views.extend([note] if note else [])
        dtype = entry.name
        if dtype == PACKED_FP4 and shape:  # its values, two an element, as safetensors stores them
            shape, dtype = fp4_values(shape)
            fp4.append(name)
        stored.append(StoredTensor(name, dtype, shape, nbytes, str(path), tuple(aliases.get(position, ()))))
        for suffix, part in per_channel_qparams(tensor):  # counted as quantization tensors
            qparams.append(StoredTensor(f"{name}{suffix}", str(part.dtype).removeprefix("torch."), tuple(part.shape),
                                        part.numel() * part.element_size(), str(path)))  # fmt: skip
    dtensors = [(name, tensor) for _, name, _, tensor, what in order if what == "dtensor"]
    nested = [name for _, name, _, _, what in order if what == "nested"]
    on_meta = [name for _, name, _, tensor, _ in order if _counted(tensor)[0].is_meta]
    notes = sparse[:_MAX_NAMED]
    if len(sparse) > _MAX_NAMED:
        notes.append(f"… and {len(sparse) - _MAX_NAMED} more sparse tensors counted as their indices and values")
    notes += views[:_MAX_NAMED]
    if len(views) > _MAX_NAMED:
        notes.append(f"… and {len(views) - _MAX_NAMED} more views whose storage holds less, counted at their logical "
                     "sizes")  # fmt: skip
    notes += _shared_storage_note(order, stored)
    if dtensors:
        sharding, _ = dtensor_sharding(dtensors[0][1])
        notes.append(
            f"{len(dtensors)} DTensor(s) counted at their global shape, though a rank's file holds only its shard of "
            f"each ({shortened(dtensors[0][0])}: {', '.join(sharding.placements)} on device mesh {sharding.mesh}, "
            f"{list(sharding.local_shape or ())} of it in this file)"
        )
    if nested:
        notes.append(
            f"{len(nested)} nested tensor(s) counted as their stored values, shown with the values' shape (a ragged "
            f"dimension has no single size): {listed(nested)}"
        )
    if fp4:
        notes.append(fp4_note(fp4, _MAX_NAMED))
    if on_meta:
        notes.append(
            f"{len(on_meta)} tensor(s) on the meta device, whose data the file does not hold: counted at their shapes "
            f"and dtypes, as the model they were saved from would hold them ({listed(on_meta, _MAX_NAMED)})"
        )
    return stored + qparams, notes


def _shared_storage_note(order: list[tuple[Path, str, tuple[int, ...], torch.Tensor, str]],
                         stored: list[StoredTensor]) -> list[str]:  # fmt: skip
    """Notes where the bytes counted are not those the file holds for them: distinct tensors (not one tensor saved
    twice: those are aliases) that are views of one storage and add up to more than it holds, and views of a storage
    larger than they are (torch.save writes the whole storage). Each is counted at its own size, as a live model's
    would be."""
    by_storage: dict[int, list[int]] = {}
    for position, (_, _, _, tensor, what) in enumerate(order):
        if what == "plain" and tensor.layout is torch.strided and not tensor.is_meta:
            by_storage.setdefault(tensor.untyped_storage().data_ptr(), []).append(position)
    shared: list[tuple[int, int, list[str]]] = []  # (bytes counted, bytes held, names), one per storage
    larger: list[tuple[int, int, list[str]]] = []
    for positions in by_storage.values():
        storage = order[positions[0]][3].untyped_storage().nbytes()
        total = sum(stored[position].nbytes for position in positions)
        names = [stored[position].name for position in positions]
        if len(positions) > 1 and total > storage:
            shared.append((total, storage, names))
        elif total < storage:
            larger.append((total, storage, names))
    notes = []
    if shared:
        names = [name for _, _, group in shared for name in group]
        counted, held = sum(total for total, _, _ in shared), sum(storage for _, storage, _ in shared)
        notes.append(
            f"{len(names)} tensors are views of storage they share ({listed(names, _MAX_NAMED)}): counted at their "
            f"own sizes, {format_bytes(counted)}, though the file holds {format_bytes(held)} for them"
        )
    if larger:
        names = [name for _, _, group in larger for name in group]
        counted, held = sum(total for total, _, _ in larger), sum(storage for _, storage, _ in larger)
        if len(names) == 1:
            notes.append(
                f"{shortened(names[0])} is a view of a larger storage: counted at {format_bytes(counted)}, though the "
                f"file holds {format_bytes(held)} for it (torch.save writes the whole storage)"
            )
        else:
            notes.append(
                f"{len(names)} tensors are views of larger storages ({listed(names, _MAX_NAMED)}): counted at their "
                f"own sizes, {format_bytes(counted)}, though the file holds {format_bytes(held)} for them (torch.save "
                "writes each storage whole)"
            )
    return notes


@dataclass(frozen=True)
class _Files:
    """What a checkpoint file, index or directory has to read."""

    weights: list[Path]
    """The weight files to read."""
    training: list[Path]
    """The training-state files beside them."""
    notes: list[str]
    """Notes on other files left unread."""
    index: Path | None = None
    weight_map: dict[str, str] | None = None
    """The index's tensor name → file, to check the files against."""


def _files(target: Path) -> _Files:
    """The files of a checkpoint file, index or directory: in a directory, the shards its index names, else the files
    with the usual weight names, else every file but training state."""
    if not target.is_dir():
        if target.name.endswith(".index.json"):
            shards, index_map = load_index(target)
            return _Files(shards, [], [], index=target, weight_map=index_map)
        return _Files([target], [], [])
    # a FIFO named model.pt is a candidate, refused when read rather than passed over
    # a symlink to nothing (or a loop) too: reading it says so, where leaving it out would not
    candidates = sorted(p for p in target.iterdir()
                        if p.suffix in SUFFIXES and (p.is_symlink() or p.exists()) and not p.is_dir())  # fmt: skip
    training = [p for p in candidates if TRAINING_STATE.fullmatch(p.name)]
    indexes = sorted(target.glob("*.bin.index.json")) + sorted(target.glob("*.pt.index.json"))
    weight_map: dict[str, str] | None = None
    single = target / _SINGLE_FILE
    # from_pretrained reads pytorch_model.bin before any index (a model re-saved in one file keeps its old index) and
    # any other weight file (Meta's consolidated.00.pth of the same weights beside it)
    index = None
    if single in candidates:
        files = [single]
        why = f"from_pretrained reads {_SINGLE_FILE}, when the directory holds one, before any index or other file"
        candidates += indexes  # named among the files not read
    elif (index := directory_index(target, indexes)) is not None:
        files, weight_map = load_index(index)
        why = f"not a shard that {index.name} names"
    else:
        # A training run's output folder holds the weights under their usual name beside anything else it saved.
        usual = [p for p in candidates if _WEIGHT_FILE.fullmatch(p.name)]
        files = usual or [p for p in candidates if p not in training]
        check_no_shard_missing(target, files)
        why = "not a usual weight file name, unlike the files read; inspect it on its own to count it"
    notes = []
    if index is None and len(files) > 1:  # as for a directory of *.safetensors files without an index
        notes.append(f"no index file: all {len(files)} torch weight files in {target} are counted "
                     f"({listed([p.name for p in files])})")  # fmt: skip
    if not files:
        names = ", ".join(p.name for p in training)
        raise SourceError(f"{target}: no model weights, only training state saved beside them ({names})")
    others = [p.name for p in candidates if p not in files and p not in training]
    notes += [f"not read: {', '.join(others)} ({why})"] if others else []
    return _Files(files, training, notes, index, weight_map)


def _training_notes(paths: list[Path]) -> list[str]:
    """Notes on training state files: an optimizer's tensors are summed up (as in a checkpoint), the rest named."""
    notes = []
    unread = []
    for path in paths:
        tensors: list[tuple[str, torch.Tensor]] = []
        if _OPTIMIZER_FILE.fullmatch(path.name):
            with contextlib.suppress(SourceError):  # one that cannot be read is only named, like the rest
                loaded, contents = _torch_load(path)
                tensors = (contents or _Contents(path, loaded)).leaves(loaded)
        if tensors:
            notes.append(f"{path.name}: optimizer state: {_summary(tensors)}; not counted in the totals")
        else:
            unread.append(path.name)
    if unread:
        notes.append(f"not read: {', '.join(unread)} (training state saved beside the weights, not the model)")
    return notes


def _in_another_format(target: Path, found: _Files, quiet: bool) -> Report | None:
    """The report of a directory whose one weight file is no torch.save file under its PyTorch name (a safetensors
    file, a GGUF model saved as .bin), read as its first bytes say, as that file given alone is; None where the
    weight files are torch's. One such file among several, or a shard an index names, is refused: the torch reader
    cannot read it, and reading it alone would leave the others out."""
    from .target import other_format, read_as

    for file in found.weights:
        kind = other_format(file)
        if kind is None:
            continue
        what = f"a {'GGUF' if kind == 'gguf' else kind} file under a PyTorch checkpoint's name"
        where = f"a shard {found.index.name} names" if found.index is not None else None
        if where is None and len(found.weights) > 1:
            where = f"beside {len(found.weights) - 1} other PyTorch weight file(s) in {target}"
        if where is not None:
            raise SourceError(f"{file}: {what}, {where}: inspect it on its own")
        report = read_as(kind, file, quiet)
        note = f"{file.name} is {what}: read as one"
        return replace(report, notes=(*report.notes, note, *_training_notes(found.training), *found.notes))
    return None


def load(target: Path, *, quiet: bool = False) -> Report:
    """The report of a PyTorch checkpoint file, a ``*.bin.index.json``, or a directory of them."""
    from .._progress import progress

    found = _files(target)
    if found.index is not None or target.is_dir():
        misnamed = _in_another_format(target, found, quiet)
        if misnamed is not None:
            return misnamed
    named: list[tuple[Path, str, torch.Tensor]] = []
    notes: list[str] = []
    metadata: dict[str, dict[str, Any]] | None = None
    for path in progress(found.weights, "reading PyTorch checkpoints", quiet=quiet):
        tensors, file_notes, state_dict = _split_checkpoint(path, *_torch_load(path))
        file_metadata = _state_dict_metadata(state_dict)
        if file_metadata is not None:
            metadata = {**(metadata or {}), **file_metadata}
        named.extend((path, name, tensor) for name, tensor in tensors)
        notes.extend(f"{path.name}: {note}" if len(found.weights) > 1 else note for note in file_notes)
    stored, tensor_notes = _stored(named)
    index = os.fspath(found.index) if found.index else ""
    notes += check_files(os.fspath(target), stored, found.weight_map, index) + tensor_notes
    notes += _training_notes(found.training) + found.notes
    directory = target if target.is_dir() else target.parent
    config, config_notes = read_config(directory)
    report = checkpoint_report(
        stored,
        kind="torch",
        target=os.fspath(target),
        files=files_read(found.index, found.weights, directory if config is not None else None),
        config=config,
        notes=notes + config_notes,
    )
    return report if metadata is None else replace(report, state_dict_metadata=metadata)

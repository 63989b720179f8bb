"""safetensors checkpoints, single, sharded (``*.safetensors.index.json``) or a directory of them: headers only.

The header is read here rather than through the ``safetensors`` package: its Python API opens a file only
through a framework (``safe_open(..., "numpy")`` imports numpy, ``"pt"`` torch) and does not expose the data
offsets, which the byte sizes come from. The format is small (an 8-byte little-endian length, then a JSON object;
see the safetensors README), and the checks below are the ones the safetensors crate makes before it loads a
file: a bounded header, known dtypes, offsets that match each tensor's size, do not overlap and cover the data
region exactly. The tests check this reader against ``safetensors.safe_open`` on the same files. Across the files of
one checkpoint, :func:`.checkpoint.check_files` makes sure that each tensor is in one file only, the one the index
names (the Hub reader, :mod:`.hub`, makes the same checks).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable, Iterable
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

from .. import dtypes as dtype_table
from .._errors import SourceError
from .._report import Report
from .._units import format_bytes
from ._json import loads as json_loads
from .checkpoint import (
    StoredTensor,
    WeightMap,
    check_files,
    check_no_shard_missing,
    checkpoint_report,
    files_read,
    read_config,
)

MAX_HEADER_BYTES = 100_000_000  # the safetensors crate's own limit
MAX_INDEX_BYTES = 100_000_000
_MAX_SIZE = 2**64 - 1  # the crate's sizes are 64-bit


def _fail(path: Path | str, message: str) -> SourceError:
    return SourceError(f"{path}: {message}")


# What a path that is not a regular file is, for the error that refuses it.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def check_regular_file(path: Path, *, reads: str = "checkpoints") -> None:
    """Refuse ``path`` unless it is a regular file (or a symlink to one), before anything opens it; the error says
    paramscope ``reads`` (checkpoints, configs) from regular files.

    Opening a FIFO blocks until something writes to it, and a device never ends: either would hang the count. A path
    that cannot be stat'ed is left to the open that follows, which says why.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
        raise _fail(path, f"not a regular file ({kind}): paramscope reads {reads} from regular files")


def _reader(path: Path, start: int) -> Callable[[int], bytes]:
    def read(size: int) -> bytes:
        with path.open("rb") as handle:
            handle.seek(start)
            return handle.read(size)

    return read


def read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """The parsed header, the offset where tensor data starts, and the length of the data region."""
    check_regular_file(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:

            def read(start: int, count: int) -> bytes:
                handle.seek(start)
                return handle.read(count)

            return parse_header(path, size, read)
    except OSError as error:
        raise _fail(path, f"cannot be read: {error.strerror or error}") from None


def _other_format(prefix: bytes) -> str | None:
    """What a file that starts with these bytes is, when they are another format's magic bytes.

    >>> _other_format(b"GGUF\\x03\\x00\\x00\\x00"), _other_format(b"\\x80\\x02\\x8a\\x0al\\xfc\\x9cF")
    ('a GGUF file (llama.cpp)', 'a pickle (torch.save before PyTorch 1.6)')
    """
    if prefix.startswith(b"GGUF"):
        return "a GGUF file (llama.cpp)"
    if prefix.startswith(b"PK\x03\x04"):
        return "a zip archive (what torch.save writes)"
    if prefix[:1] == b"\x80" and 2 <= prefix[1] <= 5:  # the PROTO opcode and a protocol number
        return "a pickle (torch.save before PyTorch 1.6)"
    return None


def parse_header(path: Path | str, size: int, read: Callable[[int, int], bytes]) -> tuple[dict[str, Any], int, int]:
    """:func:`read_header` of a file of ``size`` bytes that ``read(start, count)`` reads (from disk, over HTTP)."""
    prefix = read(0, 8)
    if size == 0:
        raise _fail(path, "empty file (0 bytes): not a safetensors file")
    if len(prefix) < 8:
        raise _fail(path, f"too short for a safetensors header ({size} bytes; the length field alone is 8)")
    (length,) = struct.unpack("<Q", prefix)
    other = _other_format(prefix)
    if other and 8 + length > min(size, 8 + MAX_HEADER_BYTES):  # its first bytes are no header length
        raise _fail(path, f"{other}, not a safetensors file")
    if length > MAX_HEADER_BYTES:
        raise _fail(path, f"header claims {format_bytes(length, 'si')}, more than the 100 MB safetensors allows")
    if 8 + length > size:
        raise _fail(path, f"header claims {format_bytes(length, 'si')} but the file has {format_bytes(size, 'si')}")
    raw = read(8, length)
    try:
        text = raw.decode("utf-8")
        header = json_loads(text, object_pairs_hook=_JSONObject.of, negative_zero_as_float=True)
    except ValueError as error:
        raise _fail(path, f"header is not valid JSON ({error}): not a safetensors file") from None
    if "\\u" in text and _holds_a_lone_surrogate(header):  # only an escape can give one: most headers have none
        raise _fail(path, "header is not valid JSON (a \\u escape of half a surrogate pair, which is no character, "
                          "as the safetensors library's parser refuses): not a safetensors file")  # fmt: skip
    if not isinstance(header, dict):
        raise _fail(path, f"header is a JSON {_json_type(header)}, not an object: not a safetensors file")
    return header, 8 + length, size - 8 - length


class _JSONObject(dict[str, Any]):
    """A JSON object of a header that names a key more than once: its last entry for each key, as a dict parsed from
    JSON keeps, and in ``earlier`` the entries before it."""

    earlier: dict[str, list[Any]]

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """The object of ``pairs``: a plain dict where each key is named once."""
        made = dict(pairs)
        if len(made) == len(pairs):
            return made
        entries: dict[str, list[Any]] = {}
        for key, value in pairs:
            entries.setdefault(key, []).append(value)
        repeated = cls(made)
        repeated.earlier = {key: values[:-1] for key, values in entries.items() if len(values) > 1}
        return repeated


def _holds_a_lone_surrogate(value: Any) -> bool:
    """Whether a string of ``value`` (a key or a value, at any depth) holds half a UTF-16 surrogate pair, which
    Python's JSON parser reads from a ``\\ud800`` escape and serde_json refuses."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += [*item, *item.values(), *getattr(item, "earlier", {}).values()]
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _repeated(value: Any) -> dict[str, list[Any]]:
    """The entries before the last of each key a parsed JSON object names more than once."""
    return value.earlier if isinstance(value, _JSONObject) else {}


def _json_type(value: Any) -> str:
    """What JSON calls the type of a parsed value.

    >>> _json_type(None), _json_type([]), _json_type(True), _json_type(2.5)
    ('null', 'array', 'boolean', 'number')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {list: "array", str: "string", int: "number", float: "number"}.get(type(value), "object")


# The dtype codes of the safetensors format (its Rust crate's Dtype enum), and their names in the dtype table.
DTYPE_CODES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "U32": "uint32", "I32": "int32",
    "U64": "uint64", "I64": "int64", "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn", "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
}  # fmt: skip


def _dtype_name(path: Path | str, name: str, code: Any) -> str:
    table_name = DTYPE_CODES.get(code) if isinstance(code, str) else None
    if table_name is None:
        raise _fail(path, f"tensor {name!r} has unknown dtype {code!r}")
    return table_name


def _dims(value: Any) -> list[int] | None:
    """``value`` if it is a JSON array of natural numbers (a shape, or data offsets), else None.

    >>> _dims([4, 0]), _dims([4, -1]), _dims([True]), _dims("4")
    ([4, 0], None, None, None)
    """
    if type(value) is not list:
        return None
    for item in value:
        if type(item) is not int or item < 0:  # not isinstance: JSON's true is no number here
            return None
    return value


def stored_tensors(path: Path) -> tuple[list[StoredTensor], dict[str, str]]:
    """Every tensor of one safetensors file, validated, and the file's ``__metadata__``."""
    header, data_start, data_size = read_header(path)
    return header_tensors(path, header, data_size, str(path), lambda begin: _reader(path, data_start + begin))


def header_tensors(
    path: Path | str,
    header: dict[str, Any],
    data_size: int,
    file: str,
    reader: Callable[[int], Callable[[int], bytes]] | None = None,
) -> tuple[list[StoredTensor], dict[str, str]]:
    """The tensors of a parsed header over a data region of ``data_size`` bytes, validated, and its ``__metadata__``.

    Errors start with ``path``; each tensor's ``file`` is ``file``, and ``reader(offset)`` (if given) reads its data.
    """
    # A key the header names more than once is read as the safetensors crate reads it (0.8: serde_json into its
    # Metadata): a field of a struct (__metadata__, a tensor's dtype, shape or data_offsets) is refused ("duplicate
    # field"); a tensor's name is a key of a map, whose last entry replaces the ones before, each of which must still
    # be a tensor's entry. The checks below then see the last entries alone: a repeat that changes nothing passes,
    # and an error of the layout that is left names the repeated tensor.
    repeated = _repeated(header)
    if "__metadata__" in repeated:
        raise _fail(path, f"the header gives __metadata__ {_times(len(repeated['__metadata__']) + 1)}")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata  # false, 0, "" and [] are no object: refused, as safe_open does
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        raise _fail(path, "__metadata__ is not an object of strings")  # the format's rule, which safe_open applies
    tensors: list[tuple[int, int, StoredTensor]] = []
    dtypes: dict[str, tuple[str, dtype_table.DType]] = {}  # per dtype code: a header of 1M tensors has a few
    for name, info in header.items():
        earlier = repeated.get(name, [])
        if earlier or isinstance(info, _JSONObject):
            _check_repeats(path, name, earlier, info)
        info = _as_object(info)
        if isinstance(info, dict) and len(info) > len(_TENSOR_FIELDS):
            _check_depth(path, name, info)
        shape = _dims(info.get("shape")) if isinstance(info, dict) else None
        offsets = _dims(info.get("data_offsets")) if shape is not None else None
        if shape is None or offsets is None:
            raise _fail(path, f"tensor {name!r} lacks a valid dtype, shape or data_offsets")
        if len(offsets) != 2 or offsets[0] > offsets[1]:
            raise _fail(path, f"tensor {name!r} has data_offsets {offsets}: two increasing byte offsets expected")
        code = info.get("dtype")
        known = dtypes.get(code) if isinstance(code, str) else None
        if known is None:
            dtype = _dtype_name(path, name, code)
            known = dtypes[code] = dtype, dtype_table.lookup(dtype)
        dtype, entry = known
        numel = _check_size(path, name, dtype, entry, shape)
        begin, end = offsets
        expected = entry.nbytes(numel)
        if expected != end - begin:
            raise _fail(
                path,
                f"tensor {name!r} is {dtype} {shape} = {expected:,} bytes but its offsets span {end - begin:,}",
            )
        if end > data_size:
            raise _fail(
                path,
                f"tensor {name!r} ends at byte {end:,} of the data, past its end ({data_size:,} bytes in the file)",
            )
        stored = StoredTensor(name, dtype, tuple(shape), end - begin, file, read=reader(begin) if reader else None)
        tensors.append((begin, end, stored))
    twice = next(iter(repeated), None)

    def layout_error(message: str) -> SourceError:
        if twice is not None:
            count = _times(len(repeated[twice]) + 1)
            message = (
                f"tensor {twice!r} is in the header {count} (read as its last entry, as safetensors does): {message}"
            )
        return _fail(path, message)

    position = 0
    previous = None
    for begin, end, stored in sorted(tensors, key=itemgetter(0, 1)):
        if begin < position:
            raise layout_error(
                f"tensors {previous!r} and {stored.name!r} overlap (data offsets {begin:,} < {position:,})"
            )
        if begin > position:
            raise layout_error(f"bytes {position:,} to {begin:,} of the data belong to no tensor")
        position, previous = end, stored.name
    if position != data_size:
        raise layout_error(f"the tensors end at byte {position:,} of a {data_size:,}-byte data region")
    return [stored for _, _, stored in tensors], {str(k): str(v) for k, v in metadata.items()}


_TENSOR_FIELDS = ("dtype", "shape", "data_offsets")


def _check_repeats(path: Path | str, name: str, earlier: list[Any], info: Any) -> None:
    """Refuse a field that a tensor's entry gives twice, and an entry before the last of a repeated tensor that is
    not a tensor's entry."""
    for entry in (*earlier, info):
        field = next((key for key in _TENSOR_FIELDS if key in _repeated(entry)), None)
        if field is not None:
            raise _fail(path, f"tensor {name!r} gives its {field} {_times(len(_repeated(entry)[field]) + 1)}")
    for entry in earlier:
        if isinstance(entry, dict) and len(entry) > len(_TENSOR_FIELDS):
            _check_depth(path, name, entry)
    if not all(map(_is_entry, earlier)):
        raise _fail(
            path,
            f"tensor {name!r} is in the header {_times(len(earlier) + 1)}, and an entry before the last lacks a "
            "valid dtype, shape or data_offsets",
        )


def _as_object(info: Any) -> Any:
    """A tensor's entry given as the array of its three fields (dtype, shape, data_offsets) as the object of them:
    the crate reads its entries with serde, which takes a struct from either form. Any other value as it is.

    >>> _as_object(["F32", [2], [0, 8]])
    {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}
    """
    if type(info) is list and len(info) == len(_TENSOR_FIELDS):
        return dict(zip(_TENSOR_FIELDS, info, strict=True))
    return info


# serde_json's recursion limit, as the crate meets it: the header's object is the first level, a tensor's entry the
# second. A deeper value is refused even in a field the crate does not read.
_MAX_DEPTH = 127


def _check_depth(path: Path | str, name: str, entry: dict[str, Any]) -> None:
    """Refuse a field of a tensor's entry (one the crate does not read: the others have their own form) nested
    deeper than the crate reads."""
    extra = [value for key, value in entry.items() if key not in _TENSOR_FIELDS]
    extra += [value for key, values in _repeated(entry).items() for value in values]  # parsed too, then replaced
    levels = 2 + _depth(extra) - 1  # the list of them is no level of the header
    if levels > _MAX_DEPTH:
        raise _fail(
            path,
            f"tensor {name!r} has a field nested {levels:,} levels deep in the header, more than the {_MAX_DEPTH} "
            "that the safetensors library reads",
        )


def _depth(value: Any) -> int:
    """Levels of arrays and objects in ``value``: 0 for a number or a string, 1 for a flat array. An object's
    entries before the last of a key it names twice count too: the parser reads them before it drops them.

    >>> _depth(5), _depth([1, 2]), _depth({"a": [[]], "b": 1})
    (0, 1, 3)
    """
    depth, level = 0, [value]
    while level:
        containers = [item for item in level if isinstance(item, (list, dict))]
        if not containers:
            break
        depth += 1
        # chained in C, not a list made per container: a header of 10^7 tiny objects is walked in seconds
        level = list(chain.from_iterable(item.values() if isinstance(item, dict) else item for item in containers))
        level += [entry for item in containers if isinstance(item, _JSONObject)
                  for entries in item.earlier.values() for entry in entries]  # fmt: skip
    return depth


def _is_entry(info: Any) -> bool:
    """Whether ``info`` has the form of a tensor's entry: a known dtype, a shape and two data offsets, each number
    one the crate's 64-bit sizes hold (it reads a larger one as a float, and refuses it).

    >>> _is_entry(["F32", [2], [0, 8]]), _is_entry(["F32", [2**64], [0, 8]])
    (True, False)
    """
    info = _as_object(info)
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in DTYPE_CODES:
        return False
    shape, offsets = _dims(info.get("shape")), _dims(info.get("data_offsets"))
    return shape is not None and offsets is not None and len(offsets) == 2 and max(*shape, *offsets) <= _MAX_SIZE


def _times(count: int) -> str:
    """
    >>> _times(2), _times(3)
    ('twice', '3 times')
    """
    return "twice" if count == 2 else f"{count:,} times"


def _check_size(path: Path | str, name: str, dtype: str, entry: dtype_table.DType, shape: list[int]) -> int:
    """The safetensors crate's checks of a tensor's size: its shape's product, taken from the first dimension on,
    and its bits fit in 64 bits (a zero dimension after a huge product does not make it fit), each dimension too, and
    a sub-byte type fills whole bytes. Returns the product."""
    numel = 1
    for dim in shape:
        numel *= dim
        if numel > _MAX_SIZE:
            raise _fail(path, f"tensor {name!r} has shape {shape}, whose size overflows 64 bits")
        if dim > _MAX_SIZE:  # beside a 0: the crate's parser reads the number as a float, which is no size
            raise _fail(path, f"tensor {name!r} has shape {shape}, a dimension past 64 bits")
    if entry.category == "block":
        return numel
    bits = numel * int(entry.bits)  # whole bits a value but in block formats; in ints, as exact as the crate's
    if bits > _MAX_SIZE:
        raise _fail(path, f"tensor {name!r} has shape {shape}, whose size overflows 64 bits")
    if bits % 8:
        raise _fail(path, f"tensor {name!r} is {dtype} {shape}: {bits} bits, not whole bytes")
    return numel


SINGLE_FILE = "model.safetensors"
"""The file ``from_pretrained`` reads a model's weights from, before any index."""


def read_index(index: Path, name: Path | str | None = None) -> WeightMap:
    """The weight_map (tensor name → shard file) of a ``*.safetensors.index.json``; errors start with ``name``."""
    where = index if name is None else name
    check_regular_file(index)
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise _fail(where, "index larger than 100 MB")
        data = json_loads(index.read_text(encoding="utf-8"), object_pairs_hook=WeightMap.of)
    except OSError as error:
        raise _fail(where, f"cannot be read: {error.strerror or error}") from None
    except ValueError as error:
        raise _fail(where, f"is not valid JSON ({error})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, WeightMap) or not all(isinstance(v, str) for v in weight_map.values()):
        raise _fail(where, "has no weight_map of tensor name → shard file")
    if not weight_map:
        raise _fail(where, "has an empty weight_map: it names no tensor")
    for shard in dict.fromkeys(weight_map.values()):
        if not shard:
            raise _fail(where, "names a shard with an empty file name")
        if shard == ".." or Path(shard).name != shard:  # Path("..").name is ".."
            # transformers writes shards beside their index, named by file name alone; a path is refused, not
            # followed (one may lead out of the directory)
            raise _fail(where, f"names shard {shard!r}, not a file name: an index names shards beside it")
    return weight_map


def symlink_loop(path: Path) -> str | None:
    """Why a ``path`` that ``exists()`` calls missing cannot be read, when it is a link in a loop (which exists()
    does not tell from a missing file): the system's words; None when it is missing or otherwise unreadable."""
    try:
        path.stat()
    except ValueError:  # a NUL in the name
        pass
    except OSError as error:
        if error.errno == errno.ELOOP:
            return error.strerror or "a loop of symbolic links"
    return None


def load_index(index: Path) -> tuple[list[Path], WeightMap]:
    """The shard files a local ``*.index.json`` names, each checked to exist, and its weight_map."""
    weight_map = read_index(index)
    shards: list[Path] = []
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = index.parent / shard
        if not shard_path.exists():
            loop = symlink_loop(shard_path)
            raise _fail(index, f"names {shard}, which {f'cannot be read: {loop}' if loop else 'is missing'}")
        check_regular_file(shard_path)
        shards.append(shard_path)
    return shards, weight_map


def directory_index(directory: Path, indexes: list[Path]) -> Path | None:
    """The one index of the ``indexes`` found in ``directory``; None when there is none. Two indexes are two
    checkpoints (a model saved in two variants, ``model.safetensors.index.json`` and
    ``model.fp16.safetensors.index.json``): refused, as two unindexed files holding the same tensors are."""
    if len(indexes) > 1:
        names = ", ".join(index.name for index in indexes)
        raise _fail(
            directory,
            f"holds {len(indexes)} indexes ({names}): these look like separate checkpoints; inspect one index",
        )
    return indexes[0] if indexes else None


def _read_shards(files: Iterable[Path], quiet: bool) -> tuple[list[StoredTensor], list[dict[str, str]]]:
    from .._progress import progress

    tensors: list[StoredTensor] = []
    metadata = []
    for path in progress(list(files), "reading safetensors headers", quiet=quiet):
        found, meta = stored_tensors(path)
        tensors.extend(found)
        metadata.append(meta)
    return tensors, metadata


def _directory_files(directory: Path) -> tuple[list[Path], Path | None, dict[str, str] | None, list[str]]:
    """The files of a directory to read, as ``from_pretrained`` picks them: ``model.safetensors`` before any index
    (a model re-saved in one file keeps the index of its earlier shards: save_pretrained deletes the shards, not
    the index) and any other file (Mistral's ``consolidated.safetensors`` of the same weights beside it), then the
    shards an index names, else every ``*.safetensors`` file. With them, the index read and its weight_map, and notes
    on the files not read."""
    indexes = sorted(directory.glob("*.safetensors.index.json"))
    everything = sorted(path for path in directory.glob("*.safetensors") if not path.is_dir())
    single = directory / SINGLE_FILE
    if single.is_file():
        others = ", ".join(path.name for path in indexes + everything if path != single)
        why = f"from_pretrained reads {SINGLE_FILE}, when the directory holds one, before any index or other file"
        return [single], None, None, [f"not read: {others} ({why})"] if others else []
    index = directory_index(directory, indexes)
    if index is None:
        check_no_shard_missing(directory, everything)
        counted = f"no index file: all {len(everything)} *.safetensors files in {directory} are counted"
        return everything, None, None, [counted] if len(everything) > 1 else []
    files, weight_map = load_index(index)
    # the files beside the shards are not counted: said, as for a directory of .bin shards
    others = ", ".join(path.name for path in everything if path not in files)
    return files, index, weight_map, [f"not read: {others} (not a shard that {index.name} names)"] if others else []


def load(target: Path, *, quiet: bool = False) -> Report:
    """The report of a ``.safetensors`` file, a ``*.safetensors.index.json``, or a directory holding them."""
    if target.is_dir():
        directory = target
        files, index, weight_map, notes = _directory_files(directory)
    elif target.name.endswith(".index.json"):
        directory, index, notes = target.parent, target, []
        files, weight_map = load_index(index)
    else:
        directory, index, weight_map, files, notes = target.parent, None, None, [target], []
    tensors, _ = _read_shards(files, quiet)
    notes += check_files(os.fspath(target), tensors, weight_map, os.fspath(index) if index else "")
    config, config_notes = read_config(directory)
    return checkpoint_report(
        tensors,
        kind="safetensors",
        target=os.fspath(target),
        files=files_read(index, files, directory if config is not None else None),
        config=config,
        notes=notes + config_notes,
        sort=True,
    )

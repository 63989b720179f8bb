"""A walk of a checkpoint's pickle, opcode by opcode and executing none, before torch's unpickler reads it.

torch's weights-only unpickler refuses code, not cost. Opcodes it allows can make a few bytes expensive to read: a
tuple nested a hundred thousand deep, which hashing as a dict key overflows the C stack with (Python's tuple hash
does not check its depth); a tuple whose items are the same memoized tuple, level upon level, whose hash and repr
cost 2 to the number of levels; ``bytearray(n)``, which fills n bytes; ``_codecs.encode`` by a codec that makes
more bytes than it is given (hex), or takes quadratic time (punycode); a tensor rebuilt for another device in
another dtype than its data's, which converts every element it views (a stride-0 view of one element: gigabytes). The
walk follows the pickle machine's stack as ``pickletools`` describes each opcode, with what it needs of each object:
a tuple's depth and its size unfolded, an integer's value, a global's name, the dtype of a storage or a tensor. It
gives the bytes each storage claims, which a zip checkpoint's reader checks against the record holding them.

>>> import pickle
>>> check_pickle(pickle.dumps({(1, (2, 3)): [bytearray(b"ok"), b"ok", bytearray()]}, protocol=2))  # no storage
PickledStorages(claimed={}, unread=0)
>>> nested = ()
>>> for _ in range(200):
...     nested = (nested,)
>>> check_pickle(pickle.dumps({nested: 1}, protocol=2))
Traceback (most recent call last):
...
paramscope.sources._pickle_scan.CostlyPickle: a tuple nested more than 100 deep
"""

from __future__ import annotations

import functools
import io
import itertools
import pickletools
import re
from collections.abc import Iterator
from typing import IO, NamedTuple

MAX_TUPLE_DEPTH = 100
"""The deepest tuple a pickle may build: torch.save's are a handful deep (shapes, strides, storage ids)."""
MAX_GLOBAL_NAME = 1024
"""The longest module or name a global may have: torch.save's are under a hundred characters, and torch.load quotes a
refused one in a message it then searches with a pattern whose time grows with the square of its length (a name of
10^5 characters: over a minute)."""
MAX_TUPLE_ITEMS = 10_000_000
"""The most items a tuple may hold, unfolded (each item as many times as it appears, inside its items too): far more
than torch.save writes (a tuple of 150,000 numbers in hyperparameters, which torch.load reads in a quarter of a
second), and reached in 24 levels by a tuple of two of the same tuple, level upon level."""

_BYTEARRAY = {"builtins bytearray", "__builtin__ bytearray"}  # the unpickler maps Python 2's module names
_ENCODE = {"_codecs encode"}
# torch.save's call for a tensor of a device without storage (XLA's): its data as a cpu tensor, its dtype and device.
# torch.load converts the data to that dtype, a copy of every element the data views where the dtype is another
_ON_A_DEVICE = {"torch._utils _rebuild_device_tensor_from_cpu_tensor"}
_CHECKED = _BYTEARRAY | _ENCODE | _ON_A_DEVICE
# the calls that make a tensor of a storage: the tensor's dtype is the storage's, or v3's argument (at that index)
_TENSOR_OF_A_STORAGE = {"torch._utils _rebuild_tensor": None, "torch._utils _rebuild_tensor_v2": None,
                        "torch._utils _rebuild_tensor_v3": 6}  # fmt: skip
# what torch.save pickles bytes as, in protocol 2: _codecs.encode(their latin-1 text, "latin1"); another codec makes
# more bytes of fewer (hex doubles them, and chained, doubles them again) or takes quadratic time (punycode)
_LATIN_1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1"}
_TUPLES = {"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"}
_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
            "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}  # fmt: skip

# What the walk does for each opcode: memo put, memo get, mark, dup, or an op that takes objects (how many before the
# mark, if it takes one, and how many else) and makes one or none, of a kind that matters here or another
_PUT, _MEMOIZE, _GET, _MARK, _DUP, _TAKES = range(6)
_OTHER, _TUPLE, _INT, _GLOBAL, _REDUCE, _STRING, _PERSISTENT, _STORAGE, _TENSOR, _STACK_GLOBAL = range(10)
_LONG = object()
"""The value kept of a string longer than :data:`MAX_GLOBAL_NAME`: too long to name a global (STACK_GLOBAL's)."""
_KEPT_ITEMS = 8
"""A tuple of up to this many items keeps them: a call's arguments (``_rebuild_tensor_v3`` takes 8), a storage's
persistent id (5, or 6 in the legacy format)."""


def _plan(opcode: pickletools.OpcodeInfo) -> tuple[int, int, int, bool, int]:
    """``(action, taken before the mark or -1 without one, taken otherwise, makes one, kind made)``."""
    name, before = opcode.name, opcode.stack_before
    action = {"PUT": _PUT, "BINPUT": _PUT, "LONG_BINPUT": _PUT, "MEMOIZE": _MEMOIZE, "GET": _GET, "BINGET": _GET,
              "LONG_BINGET": _GET, "MARK": _MARK, "DUP": _DUP}.get(name, _TAKES)  # fmt: skip
    marked = before.index(pickletools.markobject) if pickletools.markobject in before else -1
    kind = (_TUPLE if name in _TUPLES else _INT if name in _INTS else _GLOBAL if name == "GLOBAL"
            else _REDUCE if name == "REDUCE" else _STRING if name in _STRINGS
            else _PERSISTENT if name == "BINPERSID" else _STACK_GLOBAL if name == "STACK_GLOBAL"
            else _OTHER)  # fmt: skip
    return action, marked, len(before), bool(opcode.stack_after), kind


_PLANS = {opcode.code: _plan(opcode) for opcode in pickletools.opcodes}

# an object the walk knows nothing of that matters: (kind, tuple depth, tuple items unfolded, value)
_ANY = (_OTHER, 0, 0, None)


class CostlyPickle(Exception):
    """A pickle that would cost more to read than its bytes: the message says what it builds."""


class PickledStorages(NamedTuple):
    """The storages a zip checkpoint's pickle loads, as the walk reads their persistent ids."""

    claimed: dict[str, int]
    """Each storage's key (``"0"``, which names its record ``data/0``) -> the bytes torch.load maps for it, from the
    first persistent id of that key."""
    unread: int
    """The persistent ids whose key, type or size the walk does not know."""


def check_pickle(data: bytes | IO[bytes]) -> PickledStorages:
    """Raise :class:`CostlyPickle` for a pickle (bytes, or a stream at its start, read to its STOP) that builds a
    tuple deeper than :data:`MAX_TUPLE_DEPTH` or of more than :data:`MAX_TUPLE_ITEMS` items unfolded, or calls
    ``bytearray``, ``_codecs.encode`` or ``_rebuild_device_tensor_from_cpu_tensor`` otherwise than torch.save does.
    A pickle the walk cannot follow (damaged, cut short) is left to the unpickler, which refuses it.

    Returns the storages a zip checkpoint's pickle loads (:class:`PickledStorages`).

    The objects on the pickle machine's stack are ``(kind, depth, items, value)``: a tuple's depth and its items
    unfolded, an int's value, a global's "module name", a tuple's own items where it has up to
    :data:`_KEPT_ITEMS` (a call's arguments, a storage's persistent id), a storage's or a tensor's dtype where the
    walk knows it (its name, ``"float32"``)."""
    stack: list[tuple[int, int, int, object]] = []
    marks: list[int] = []
    storages: dict[str, int] = {}
    unread = 0
    memo: dict[object, tuple[int, int, int, object]] = {}
    opcodes = (
        _opcodes(data) if isinstance(data, bytes) else ((op.code, arg, 1) for op, arg, _ in pickletools.genops(data))
    )
    try:
        for code, arg, count in opcodes:
            if count > 1:  # numbers, one after another (a list's items): objects of no concern here
                stack.extend(itertools.repeat(_ANY, count))
                continue
            action, marked, taken, makes, kind = _PLANS[code]
            if action == _TAKES:
                if marked < 0:
                    at = start = len(stack) - taken
                else:
                    at = marks.pop()
                    start = at - marked
                if start < 0:
                    return PickledStorages(storages, unread)  # the stack runs out: the unpickler refuses it
                popped = stack[at:] if kind in (_TUPLE, _REDUCE, _PERSISTENT, _STACK_GLOBAL) else None
                del stack[start:]
                if not makes:
                    continue
                if kind == _OTHER:
                    stack.append(_ANY)
                elif kind == _TUPLE:
                    stack.append(_tuple(popped))  # type: ignore[arg-type]
                elif kind == _REDUCE:
                    stack.append(_check_call(*popped))  # type: ignore[misc]
                elif kind == _PERSISTENT:
                    stack.append(_storage(*popped))  # type: ignore[misc]
                    claimed = _claimed_bytes(*popped)  # type: ignore[misc]
                    if claimed is None:
                        unread += 1
                    else:
                        storages.setdefault(*claimed)
                elif kind == _STRING:  # its text kept where it may name a codec
                    stack.append((kind, 0, 0, _string_kept(arg)))
                elif kind == _STACK_GLOBAL:  # a global named by the two strings before it
                    if any(item[3] is _LONG for item in popped):  # type: ignore[union-attr]
                        raise CostlyPickle(f"a global named by a string of more than {MAX_GLOBAL_NAME:,} characters")
                    stack.append(_ANY)
                else:  # an int, a global
                    if kind == _GLOBAL and isinstance(arg, str) and len(arg) > 2 * MAX_GLOBAL_NAME + 1:
                        raise CostlyPickle(f"a global named by {len(arg):,} characters, more than torch.save writes")
                    stack.append((kind, 0, 0, arg))
            elif action == _PUT:
                memo[arg] = stack[-1]
            elif action == _GET:
                stack.append(memo[arg])
            elif action == _MARK:
                marks.append(len(stack))
            elif action == _MEMOIZE:
                memo[len(memo)] = stack[-1]
            else:  # DUP
                stack.append(stack[-1])
    except (ValueError, IndexError, KeyError):  # what genops and the walk meet in bytes no pickle machine runs
        pass
    return PickledStorages(storages, unread)


def _string_kept(arg: object) -> object:
    """What the walk keeps of a string: its text where it may name a codec (16 characters at most), :data:`_LONG`
    where it is too long to name a global, else nothing."""
    if not isinstance(arg, (str, bytes)):
        return None
    if len(arg) > MAX_GLOBAL_NAME:
        return _LONG
    return arg if isinstance(arg, str) and len(arg) <= 16 else None


# Runs of one opcode of a number with an argument of fixed size (a float, an int of 1, 2 or 4 bytes), by the
# opcode's byte: a list of numbers pickles as thousands of them, which the walk steps over at C speed (an 80 MiB list
# of 10^7 floats took 12 s op by op, where torch.load takes 18)
_RUNS = {ord(code): (re.compile(rb"(?:%s[\s\S]{%d})+" % (code.encode(), width)), 1 + width)
         for code, width in (("G", 8), ("J", 4), ("K", 1), ("M", 2))}  # fmt: skip
_OPCODES = {ord(opcode.code): opcode for opcode in pickletools.opcodes}


def _opcodes(data: bytes) -> Iterator[tuple[str, object, int]]:
    """The codes and arguments of the opcodes of a pickle in ``data``, as ``pickletools.genops`` reads them, each
    with a count of 1, but for a run of numbers of one opcode, given as ``("", None, how many)``."""
    stream = io.BytesIO(data)
    position = 0
    while position < len(data):
        run = _RUNS.get(data[position])
        if run is not None:
            pattern, width = run
            found = pattern.match(data, position)
            if found is not None and found.end() - position > width:
                yield "", None, (found.end() - position) // width
                position = found.end()
                continue
        opcode = _OPCODES.get(data[position])
        if opcode is None:
            raise ValueError(f"no opcode {data[position]!r} at {position}")
        stream.seek(position + 1)
        arg = None if opcode.arg is None else opcode.arg.reader(stream)
        position = stream.tell()
        yield opcode.code, arg, 1
        if opcode.name == "STOP":
            return
    raise ValueError("the pickle ends before its STOP")


def _tuple(items: list[tuple[int, int, int, object]]) -> tuple[int, int, int, object]:
    for index, item in enumerate(items):
        if item[0] != _GLOBAL or item[3] not in _CHECKED:
            continue
        if item[3] in _ON_A_DEVICE and index == 0 and len(items) == 4:
            # (function, type, arguments, state): torch.save's _rebuild_from_type_v2 call for a subclass of a tensor
            # on such a device, whose function is checked as if called here
            _check_call(item, items[2])
        else:
            # handed to another call to make (_rebuild_from_type_v2(bytearray, ..., (n,), ...)): torch.save calls
            # them
            called = (
                "_rebuild_device_tensor_from_cpu_tensor" if item[3] in _ON_A_DEVICE else "bytearray or _codecs.encode"
            )
            raise CostlyPickle(f"a call of {called} through another function")
    depth = 1 + max((item[1] for item in items), default=0)
    unfolded = len(items) + sum(item[2] for item in items)
    if depth > MAX_TUPLE_DEPTH:
        raise CostlyPickle(f"a tuple nested more than {MAX_TUPLE_DEPTH} deep")
    if unfolded > MAX_TUPLE_ITEMS:
        raise CostlyPickle(f"a tuple of more than {MAX_TUPLE_ITEMS:,} items unfolded (a tuple repeated within itself)")
    return _TUPLE, depth, unfolded, tuple(items) if len(items) <= _KEPT_ITEMS else None


def _storage(pid: tuple[int, int, int, object]) -> tuple[int, int, int, object]:
    """A storage torch loads for a persistent id, ``("storage", its type, key, location, elements[, view])``, with
    the dtype its type gives."""
    items = pid[3] if pid[0] == _TUPLE and isinstance(pid[3], tuple) else ()
    of_type = items[1] if len(items) > 1 else _ANY
    return _STORAGE, 0, 0, _dtype(of_type)


def _claimed_bytes(pid: tuple[int, int, int, object]) -> tuple[str, int] | None:
    """The key of the storage of a zip checkpoint's persistent id, ``("storage", its type, key, location,
    elements)``, and the bytes torch.load maps for it; None where the walk does not know one of them."""
    items = pid[3] if pid[0] == _TUPLE and isinstance(pid[3], tuple) else ()
    if len(items) != 5:
        return None
    _, of_type, key, _, elements = items
    dtype = _dtype(of_type)
    # torch.load names the record f"data/{key}": an int key as its digits
    if dtype is None or key[0] not in (_STRING, _INT) or not isinstance(key[3], (str, int)) or elements[0] != _INT:
        return None
    count = elements[3]
    return (str(key[3]), count * _itemsizes()[dtype]) if isinstance(count, int) and count >= 0 else None


def _dtype(named: tuple[int, int, int, object]) -> str | None:
    """The dtype (its name) a global names, as a dtype (``torch float32``) or a storage type (``torch
    FloatStorage``, ``torch UntypedStorage``: bytes); None for anything else."""
    if named[0] != _GLOBAL or not isinstance(named[3], str):
        return None
    module, _, name = named[3].partition(" ")
    # torch.save names the untyped storage (of a dtype without a typed one: float8) by the module defining it; the
    # weights-only unpickler takes torch.cuda's storage types for torch's
    known = module in ("torch", "torch.cuda") or named[3] == "torch.storage UntypedStorage"
    return _dtype_names().get(name) if known else None


@functools.cache
def _dtype_names() -> dict[str, str]:
    """What each name torch's globals give a dtype by stands for: a dtype's (``float32``, and aliases such as
    ``float``), a storage type's (``FloatStorage``; ``UntypedStorage``, bytes). Made on first use: torch is
    imported only then."""
    import torch

    canonical = {name: str(value).removeprefix("torch.") for name, value in vars(torch).items()
                 if isinstance(value, torch.dtype)}  # fmt: skip
    storages = {storage: str(dtype).removeprefix("torch.")
                for dtype, storage in torch.storage._dtype_to_storage_type_map().items()}  # fmt: skip
    return {**canonical, **storages, "UntypedStorage": "uint8"}


@functools.cache
def _itemsizes() -> dict[str, int]:
    """The bytes of an element of each dtype :func:`_dtype_names` names."""
    import torch

    return {name: getattr(torch, name).itemsize for name in set(_dtype_names().values())}


def _check_call(
    function: tuple[int, int, int, object], arguments: tuple[int, int, int, object]
) -> tuple[int, int, int, object]:
    """What a call makes, having refused a call of ``bytearray`` or ``_codecs.encode`` with other arguments than
    torch.save pickles them with: bytes, and text in the latin-1 codec (``bytearray(n)`` fills n bytes from a few; a
    tensor's size is n too). ``encode`` makes bytes, as a string opcode does. A tensor of a storage has its dtype;
    one rebuilt for another device must be of its data's (torch.save gives that tensor's own)."""
    if function[0] != _GLOBAL:
        return _ANY
    given = arguments[3] if arguments[0] == _TUPLE and isinstance(arguments[3], tuple) else None
    if function[3] in _TENSOR_OF_A_STORAGE:
        at = _TENSOR_OF_A_STORAGE[function[3]]
        if not given or (at is not None and len(given) <= at):
            return _ANY
        if at is None:  # the storage's
            return _TENSOR, 0, 0, given[0][3] if given[0][0] == _STORAGE else None
        return _TENSOR, 0, 0, _dtype(given[at])
    if function[3] not in _CHECKED:
        return _ANY
    if function[3] in _ON_A_DEVICE:
        # (data, dtype, device, requires_grad), the data a tensor of a storage of that dtype
        if (given is None or len(given) != 4 or given[0][0] != _TENSOR or given[0][3] is None
                or _dtype(given[1]) != given[0][3]):  # fmt: skip
            raise CostlyPickle(
                "a tensor for another device in another dtype than its data, or of data torch.save does not pickle, "
                "converted element by element (torch.save gives it its data's dtype)"
            )
        return _TENSOR, 0, 0, given[0][3]
    if function[3] in _BYTEARRAY:
        if given is None or any(kind != _STRING for kind, _, _, _ in given):
            sizes = [value for kind, _, _, value in given or () if kind == _INT and isinstance(value, int)]
            made = f"a bytearray of {sizes[0]:,} bytes, made empty" if sizes else "a bytearray of other than bytes"
            raise CostlyPickle(f"{made} (torch.save pickles a bytearray's bytes)")
        return _ANY
    if given is None or len(given) != 2 or given[1][0] != _STRING or given[1][3] not in _LATIN_1:
        raise CostlyPickle("bytes by another codec than latin-1 (torch.save pickles bytes in latin-1)")
    return _STRING, 0, 0, None

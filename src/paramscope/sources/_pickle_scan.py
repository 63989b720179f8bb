"""A walk of a checkpoint's pickle, opcode by opcode and executing none, before torch's unpickler reads it.

torch's weights-only unpickler refuses code, not cost. Opcodes it allows can make a few bytes expensive to read: a
tuple nested a hundred thousand deep, which hashing as a dict key overflows the C stack with (Python's tuple hash
does not check its depth); a tuple whose items are the same memoized tuple, level upon level, whose hash and repr
cost 2 to the number of levels; ``bytearray(n)``, which fills n bytes. The walk follows the pickle machine's stack
as ``pickletools`` describes each opcode, with what it needs of each object: a tuple's depth and its size unfolded,
an integer's value, a global's name.

>>> import pickle
>>> check_pickle(pickle.dumps({(1, (2, 3)): bytearray(b"ok")}, protocol=2))
>>> nested = ()
>>> for _ in range(200):
...     nested = (nested,)
>>> check_pickle(pickle.dumps({nested: 1}, protocol=2))
Traceback (most recent call last):
...
paramscope.sources._pickle_scan.CostlyPickle: a tuple nested more than 100 deep
"""

from __future__ import annotations

import io
import pickletools
from typing import IO

MAX_TUPLE_DEPTH = 100
"""The deepest tuple a pickle may build: torch.save's are a handful deep (shapes, strides, storage ids)."""
MAX_TUPLE_ITEMS = 100_000
"""The most items a tuple may hold, unfolded (each item as many times as it appears, inside its items too)."""
MAX_BYTEARRAY = 2**20
"""The largest ``bytearray(n)`` a pickle may ask for: torch.save pickles a bytearray's bytes, never its size."""

_BYTEARRAY = {"builtins bytearray", "__builtin__ bytearray"}  # the unpickler maps Python 2's names
_TUPLES = {"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"}
_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}

# What the walk does for each opcode: memo put, memo get, mark, dup, or an op that takes objects (how many before the
# mark, if it takes one, and how many else) and makes one or none, of a kind that matters here or another
_PUT, _MEMOIZE, _GET, _MARK, _DUP, _TAKES = range(6)
_OTHER, _TUPLE, _INT, _GLOBAL, _REDUCE = range(5)


def _plan(opcode: pickletools.OpcodeInfo) -> tuple[int, int, int, bool, int]:
    """``(action, taken before the mark or -1 without one, taken otherwise, makes one, kind made)``."""
    name, before = opcode.name, opcode.stack_before
    action = {"PUT": _PUT, "BINPUT": _PUT, "LONG_BINPUT": _PUT, "MEMOIZE": _MEMOIZE, "GET": _GET, "BINGET": _GET,
              "LONG_BINGET": _GET, "MARK": _MARK, "DUP": _DUP}.get(name, _TAKES)  # fmt: skip
    marked = before.index(pickletools.markobject) if pickletools.markobject in before else -1
    kind = (_TUPLE if name in _TUPLES else _INT if name in _INTS else _GLOBAL if name == "GLOBAL"
            else _REDUCE if name == "REDUCE" else _OTHER)  # fmt: skip
    return action, marked, len(before), bool(opcode.stack_after), kind


_PLANS = {opcode.code: _plan(opcode) for opcode in pickletools.opcodes}

# an object the walk knows nothing of that matters: (kind, tuple depth, tuple items unfolded, value)
_ANY = (_OTHER, 0, 0, None)


class CostlyPickle(Exception):
    """A pickle that would cost more to read than its bytes: the message says what it builds."""


def check_pickle(data: bytes | IO[bytes]) -> None:
    """Raise :class:`CostlyPickle` for a pickle (bytes, or a stream at its start, read to its STOP) that builds a
    tuple deeper than :data:`MAX_TUPLE_DEPTH` or of more than :data:`MAX_TUPLE_ITEMS` items unfolded, or calls
    ``bytearray`` with a size over :data:`MAX_BYTEARRAY`. A pickle the walk cannot follow (damaged, cut short) is
    left to the unpickler, which refuses it.

    The objects on the pickle machine's stack are ``(kind, depth, items, value)``: a tuple's depth and its items
    unfolded, an int's value, a global's "module name", a tuple's own items where it has up to 3 (a call's
    arguments)."""
    stack: list[tuple[int, int, int, object]] = []
    marks: list[int] = []
    memo: dict[object, tuple[int, int, int, object]] = {}
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data) if isinstance(data, bytes) else data):
            action, marked, taken, makes, kind = _PLANS[opcode.code]
            if action == _TAKES:
                if marked < 0:
                    at = start = len(stack) - taken
                else:
                    at = marks.pop()
                    start = at - marked
                if start < 0:
                    return  # the stack runs out: the unpickler refuses it
                popped = stack[at:] if kind in (_TUPLE, _REDUCE) else None
                del stack[start:]
                if not makes:
                    continue
                if kind == _OTHER:
                    stack.append(_ANY)
                elif kind == _TUPLE:
                    stack.append(_tuple(popped))  # type: ignore[arg-type]
                elif kind == _REDUCE:
                    _check_call(*popped)  # type: ignore[misc]
                    stack.append(_ANY)
                else:  # an int, a global
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
        return


def _tuple(items: list[tuple[int, int, int, object]]) -> tuple[int, int, int, object]:
    depth = 1 + max((item[1] for item in items), default=0)
    unfolded = len(items) + sum(item[2] for item in items)
    if depth > MAX_TUPLE_DEPTH:
        raise CostlyPickle(f"a tuple nested more than {MAX_TUPLE_DEPTH} deep")
    if unfolded > MAX_TUPLE_ITEMS:
        raise CostlyPickle(f"a tuple of more than {MAX_TUPLE_ITEMS:,} items unfolded (a tuple repeated within itself)")
    return _TUPLE, depth, unfolded, tuple(items) if len(items) <= 3 else None


def _check_call(function: tuple[int, int, int, object], arguments: tuple[int, int, int, object]) -> None:
    if function[0] != _GLOBAL or function[3] not in _BYTEARRAY or not isinstance(arguments[3], tuple):
        return
    for kind, _, _, value in arguments[3]:
        if kind == _INT and isinstance(value, int) and value > MAX_BYTEARRAY:
            raise CostlyPickle(f"a bytearray of {value:,} bytes, made empty (more than {MAX_BYTEARRAY:,})")

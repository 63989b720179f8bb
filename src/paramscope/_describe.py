"""A forward's inputs and outputs as the rows of a summary show them: each tensor's shape (and dtype, unless a
common one), in the structure that holds them (tuples, lists, dicts, named tuples, dataclasses, ``ModelOutput``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import _disable_current_modes

# dtypes a row does not name (a half-precision model's rows would all say so), and those an error's inputs do not
# (torch's default and token ids'): a float16 input to a float32 layer fails for its dtype, which the error shows
_PLAIN_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int64)
PLAIN_DTYPES_IN_ERRORS = (torch.float32, torch.int64)


# Containers inside containers described at most; deeper ones are written "…".
_MAX_NESTING = 100
# A tensor's text by shape and dtype: a summary describes every module's inputs and outputs, inside the forward.
_tensor_texts: dict[tuple[torch.Size, torch.dtype], str] = {}


def describe(value: Any, plain: tuple[torch.dtype, ...] = _PLAIN_DTYPES) -> str:
    """The shapes of a forward's inputs or outputs, keeping their structure. A container met again inside itself (a
    list that holds itself) is written as Python's repr writes it: ``[...]``.

    >>> describe((torch.zeros(2, 3), None, {"mask": torch.zeros(2, dtype=torch.bool)}))
    '([2, 3], None, {mask: [2] bool})'
    """
    if isinstance(value, torch.Tensor):
        return _tensor_text(value, plain)
    return _describe(value, set(), plain)


def _tensor_text(value: torch.Tensor, plain: tuple[torch.dtype, ...] = _PLAIN_DTYPES) -> str:
    """``value``'s shape, its dtype unless it is one of ``plain``, and its layout unless it is strided (dense)."""
    if value.is_nested:  # strided nested tensors have no overall shape: the shape of each sequence
        try:
            # describing is not the forward: the op recorder must not see it, nor autograd (which would save the
            # jagged tensor for the unbind's backward, and count it as an activation)
            with _disable_current_modes(), torch.no_grad():
                parts = value.unbind()
        except RuntimeError:  # torch made it inconsistent (a cat of strided nested tensors): no sequences to show
            return "nested(unreadable)"
        return "nested(" + ", ".join(_tensor_text(part, plain) for part in parts) + ")"
    if value.layout is not torch.strided:  # a sparse tensor holds its values alone: not a dense one of its shape
        dense = _tensor_text(torch.empty(value.shape, dtype=value.dtype, device="meta"), plain)
        return f"{dense} {str(value.layout).removeprefix('torch.')}"
    shape, dtype = value.shape, value.dtype
    if plain is not _PLAIN_DTYPES:  # the texts kept are the rows'
        dims = str(list(shape))
        return dims if dtype in plain else f"{dims} {str(dtype).removeprefix('torch.')}"
    try:
        text, kept = _tensor_texts.get((shape, dtype)), True
    except TypeError:  # symbolic sizes do not hash
        text, kept = None, False
    if text is None:
        dims = str(list(shape))
        text = dims if dtype in _PLAIN_DTYPES else f"{dims} {str(dtype).removeprefix('torch.')}"
        if kept and len(_tensor_texts) < 4096:
            _tensor_texts[shape, dtype] = text
    return text


def _describe(value: Any, enclosing: set[int], plain: tuple[torch.dtype, ...] = _PLAIN_DTYPES) -> str:
    """:func:`describe` of ``value`` met inside the containers ``enclosing`` (by id); ``enclosing`` is as it was
    when it returns."""
    if isinstance(value, torch.Tensor):
        return _tensor_text(value, plain)
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    held = id(value)
    if held in enclosing:  # a cycle, which would recurse without end
        return _inside_itself(value)
    if len(enclosing) >= _MAX_NESTING:  # a forward may return an output nested past Python's recursion limit
        return "…"
    enclosing.add(held)
    try:
        if type(value) is tuple or type(value) is list:  # the common case first: a NamedTuple is a tuple too
            inner = ", ".join([_describe(item, enclosing, plain) for item in value])
            return f"[{inner}]" if type(value) is list else f"({inner}{',' if len(value) == 1 else ''})"
        if hasattr(value, "_fields"):  # a NamedTuple, or a record that names its fields so (those it has)
            inner = ", ".join(f"{name}={_describe(getattr(value, name), enclosing, plain)}" for name in value._fields
                              if hasattr(value, name))  # fmt: skip
            return f"{type(value).__name__}({inner})"
        if isinstance(value, (list, tuple)):
            inner = ", ".join(_describe(item, enclosing, plain) for item in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
        if isinstance(value, deque):  # as Python writes them: deque([…]), {…}, frozenset({…})
            return f"{type(value).__name__}([{', '.join(_describe(item, enclosing, plain) for item in value)}])"
        if isinstance(value, (set, frozenset)):
            # a set of tensors is ordered by their ids, which change from run to run: the texts are sorted
            inner = ", ".join(sorted(_describe(item, enclosing, plain) for item in value))
            return f"{{{inner}}}" if type(value) is set else f"{type(value).__name__}({{{inner}}})"
        if isinstance(value, Mapping):  # dicts, and transformers' ModelOutput (an OrderedDict and a dataclass)
            # a tensor as a key (hashed by its id) is shown as any tensor is, not with its values
            inner = ", ".join(f"{_tensor_text(key, plain) if isinstance(key, torch.Tensor) else key}: "
                              f"{_describe(item, enclosing, plain)}" for key, item in value.items())  # fmt: skip
            return f"{'' if type(value) is dict else type(value).__name__}{{{inner}}}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # a field without a default that nothing has set yet (init=False) is no attribute: left out
            inner = ", ".join(f"{f.name}={_describe(getattr(value, f.name), enclosing, plain)}"
                              for f in dataclasses.fields(value) if hasattr(value, f.name))  # fmt: skip
            return f"{type(value).__name__}({inner})"
        return type(value).__name__
    finally:
        enclosing.discard(held)


def _inside_itself(value: Any) -> str:
    """A container of :func:`_describe`'s met inside itself, its items written ``...`` as Python's repr writes
    them."""
    if type(value) is list or (isinstance(value, list) and not hasattr(value, "_fields")):
        return "[...]"
    if type(value) is tuple or (isinstance(value, tuple) and not hasattr(value, "_fields")):
        return "(...)"
    if isinstance(value, Mapping) and not hasattr(value, "_fields"):
        return f"{'' if type(value) is dict else type(value).__name__}{{...}}"
    return f"{type(value).__name__}(...)"  # a named tuple, a record with _fields, a dataclass


def describe_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], plain: tuple[torch.dtype, ...] = _PLAIN_DTYPES
) -> str:
    """A call's arguments: the one argument alone, or ``(a, b, key=c)``; keyword arguments left at None are left
    out (transformers passes a dozen of them)."""
    if kwargs:
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if len(args) == 1 and not kwargs:
        return describe(args[0], plain)
    parts = [describe(arg, plain) for arg in args] + [
        f"{key}={describe(value, plain)}" for key, value in kwargs.items()
    ]
    return "(" + ", ".join(parts) + ")"

"""A forward's inputs made for the device it runs on: tensors moved (on meta, laid out in storages as the caller's
are), and the containers and objects holding them copied, so that nothing the forward does reaches the caller's.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import UserDict, deque
from collections.abc import Mapping, MutableMapping
from copy import copy
from types import FunctionType, MemberDescriptorType, MethodType, ModuleType
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ._storages import storage_key

_MOVED = "tensors moved"
"""The key of :func:`to_device`'s ``memo`` under which it lists the tensors it moved (see :func:`moved_tensors`),
beside the moved objects it keeps by id."""


def to_device(value: Any, device: str, memo: dict[Any, Any] | None = None) -> Any:
    """Inputs for a forward on ``device``: tensors moved (to meta: empty tensors of the same shape, dtype, strides and
    ``requires_grad``, in storages of the sizes theirs have, one for the inputs that share one, see :func:`_meta_twin`;
    a plain one already there an alias of its values; one that requires grad a leaf of its own), numpy arrays copied, in
    lists, tuples, named tuples, mappings (of their own type, see :func:`_copied_mapping`), sets, frozensets, deques and
    dataclasses as deep as they go, and in copies of other objects with attributes (a key/value cache, see
    :func:`_copied`); a random generator as a copy in its state. A PackedSequence keeps its batch sizes on the cpu,
    where torch takes them. One tensor or container given twice is one moved (``memo``, by id, shared by the calls for
    one forward's inputs): attention given the same query, key and value takes its self-attention path, and a list that
    holds itself is moved into one that holds itself."""
    memo = {} if memo is None else memo
    moved = memo.get(id(value))
    if moved is not None:
        return moved
    if isinstance(value, torch.Tensor):
        moved = memo[id(value)] = _moved(value, device, memo)
        memo.setdefault(_MOVED, []).append((value, moved))
        return moved
    if isinstance(value, torch.Generator):
        # one the forward draws from (a VAE's sample(generator=)): a twin in its state draws what it would draw,
        # and the caller's draws next what it would have drawn without the summary
        moved = torch.Generator(device=value.device)
        moved.set_state(value.get_state())
    elif isinstance(value, PackedSequence):
        data, batch_sizes, *indices = value
        moved = type(value)(to_device(data, device, memo), batch_sizes,
                            *(to_device(item, device, memo) for item in indices))  # fmt: skip
    elif isinstance(value, tuple) and hasattr(value, "_make"):  # a named tuple
        moved = value._make(to_device(item, device, memo) for item in value)
    elif isinstance(value, (tuple, frozenset)):
        moved = type(value)(to_device(item, device, memo) for item in value)
    # the mutable containers are kept in the memo before their items are moved: one may hold itself, a tuple cannot
    # without one of them in between
    elif isinstance(value, list):
        moved = memo[id(value)] = copy(value)  # a subclass keeps its type and attributes, as copy makes them
        moved[:] = [to_device(item, device, memo) for item in value]
        _attributes_moved(value, moved, device, memo, objects=False)
    elif isinstance(value, (set, deque)):  # copies of their own type (a deque keeps its maxlen)
        moved = memo[id(value)] = copy(value)
        moved.clear()
        items = [to_device(item, device, memo) for item in value]
        if isinstance(moved, set):
            moved.update(items)
        else:
            moved.extend(items)
        _attributes_moved(value, moved, device, memo, objects=False)
    elif isinstance(value, Mapping):
        # a dict of its own type (a batch whose keys are attributes too, a defaultdict), where it can be copied
        moved = memo[id(value)] = _copied_mapping(value)
        for key, item in value.items():
            moved[key] = to_device(item, device, memo)
        if isinstance(value, dict):  # a UserDict's attribute is its items, moved above
            _attributes_moved(value, moved, device, memo, objects=False)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = memo[id(value)] = copy(value)
        for item in dataclasses.fields(value):
            if hasattr(value, item.name):  # a field without a default that its __post_init__ never set is not
                object.__setattr__(moved, item.name, to_device(getattr(value, item.name), device, memo))
    elif _is_numpy_array(value):  # which the forward may wrap (torch.as_tensor) and write to: a copy, as of a list
        moved = value.copy()
    elif _copied(value):
        # an object with attributes of its own (a key/value cache): a copy, which the forward changes (a DynamicCache
        # takes the step's keys and values) where the caller's stays as it was
        try:
            moved = copy(value)
        except Exception:  # an object that cannot be copied (it holds a lock): passed as it is
            return value
        attributes = getattr(moved, "__dict__", None)
        if moved is value or (attributes is not None and attributes is vars(value)):  # an enum's member
            return value
        memo[id(value)] = moved
        _attributes_moved(value, moved, device, memo)
    else:
        return value
    memo[id(value)] = moved
    return moved


def _is_numpy_array(value: Any) -> bool:
    numpy = sys.modules.get("numpy")  # one that is not imported made none
    return numpy is not None and isinstance(value, numpy.ndarray)


def _attributes_moved(value: Any, moved: Any, device: str, memo: dict[Any, Any], *, objects: bool = True) -> None:
    """Move the instance attributes of ``value`` (in its ``__dict__`` and ``__slots__``) into ``moved``, its copy,
    which ``copy`` gave the caller's own objects: a key/value cache's, a batch dict's of a subclass (``batch.log``,
    which the forward appends to). Without ``objects``, those that are objects with attributes of their own stay
    shared (a container's: a batch holding its tokenizer, whose copy would cost more than the forward)."""
    attributes = getattr(moved, "__dict__", None)
    if attributes:
        for name, item in vars(value).items():
            if objects or not _copied(item):
                attributes[name] = to_device(item, device, memo)
    for slot in _slots(type(value)):
        try:
            item = slot.__get__(value)
        except AttributeError:  # a slot not set
            continue
        # not on a plain dict that stands for a mapping copy() could not copy
        if (objects or not _copied(item)) and isinstance(moved, slot.__objclass__):
            slot.__set__(moved, to_device(item, device, memo))


def moved_tensors(memo: Mapping[Any, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The caller's tensors that :func:`to_device` moved with ``memo``, each with the tensor the forward gets for it,
    however deep the containers and objects that held them.

    >>> memo = {}
    >>> ids = torch.ones(2, 3, dtype=torch.long)
    >>> moved = to_device({"ids": [[ids]]}, "meta", memo)
    >>> [(given is ids, twin is moved["ids"][0][0]) for given, twin in moved_tensors(memo)]
    [(True, True)]
    """
    moved: list[tuple[torch.Tensor, torch.Tensor]] = memo.get(_MOVED, [])
    return moved


def _copied_mapping(value: Mapping[Any, Any]) -> MutableMapping[Any, Any]:
    """A shallow copy of ``value`` of its own type when it is a dict or a ``UserDict`` (whose copies hold their items
    apart: another mapping's copy may share them, and the moved items would be written into the caller's), else a
    dict (of the same items)."""
    if isinstance(value, (dict, UserDict)):
        try:
            mapping = copy(value)
        except Exception:  # one that cannot be copied: a dict of its items
            return dict(value)
        if mapping is not value:
            return mapping
    return dict(value)


def _copied(value: Any) -> bool:
    """Whether ``value`` is an object with attributes of its own (in an instance ``__dict__``, not empty, or in
    ``__slots__``, set: one without any, a sentinel, has no state to change and is passed as itself, as code may
    test it by identity) that a forward gets a copy of: not a module (a model's, whose state the summary keeps
    itself), class, function or Python module."""
    if isinstance(value, (nn.Module, type, FunctionType, MethodType, ModuleType)):
        return False
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and attributes:
        return True
    return any(_is_set(slot, value) for slot in _slots(type(value)))


def _is_set(slot: Any, value: Any) -> bool:
    try:
        slot.__get__(value)
    except AttributeError:
        return False
    return True


def _slots(cls: type) -> tuple[MemberDescriptorType, ...]:
    """The descriptors of the ``__slots__`` that ``cls`` and its bases declare (read and set through them, not
    through a class's own ``__getattr__`` or properties); none for the standard library's classes (``Path``,
    ``Fraction``, ``UUID``: values, not states a forward changes, passed as themselves). Looked up once a class."""
    found = _SLOTS.get(cls)
    if found is None:
        package = cls.__module__.partition(".")[0].lstrip("_")  # _pydecimal's too
        standard = package == "builtins" or package in sys.stdlib_module_names
        found = _SLOTS[cls] = () if standard else tuple(
            descriptor for base in cls.__mro__ for descriptor in vars(base).values()
            if isinstance(descriptor, MemberDescriptorType) and descriptor.__objclass__ is base
        )  # fmt: skip
    return found


_SLOTS: dict[type, tuple[MemberDescriptorType, ...]] = {}


def _moved(value: torch.Tensor, device: str, memo: dict[Any, Any]) -> torch.Tensor:
    tensor = _meta_twin(value, memo) if device == "meta" else value.to(device)
    if tensor is value and type(value) is torch.Tensor:
        # the caller's own plain tensor, already on the device: the forward gets an alias of it, whose values are the
        # caller's (a write to them is put back) but whose autograd state, ``.data``, attributes and hooks are its
        # own (a physics-informed net's requires_grad_() on its input). A parameter or a subclass goes as itself: an
        # alias would be a plain tensor, or one without the attributes its class keeps
        tensor = value.detach()
    if tensor.is_inference():  # made in torch.inference_mode(): autograd cannot save it, a copy it can
        tensor = tensor.clone()
    if not value.requires_grad:
        return tensor
    # cut from the graph it came from: a backward in the forward neither fills the input's grad nor reaches the
    # caller's graph; a leaf as it was one (an in-place op on it fails, as it would), or else not one
    leaf = tensor.detach().requires_grad_()
    if value.is_leaf:
        return leaf
    with torch.enable_grad():  # an eval-mode summary runs without: the clone would not require grad
        return leaf.clone()


def _meta_twin(value: torch.Tensor, memo: dict[Any, Any]) -> torch.Tensor:
    """An empty tensor on meta laid out as ``value`` is in its storage (shape, strides, offset), in a storage of the
    size of ``value``'s, one for the inputs whose storage is one (kept in ``memo`` by the storage's key). What
    autograd keeps of an input is its storage: an expanded tensor (position ids) keeps the few values it views, a
    slice the whole tensor it was cut from, and two views of one tensor one storage, as on a real device."""
    if value.is_nested:
        # torch's fake tensors, which the forward on meta runs on, take a jagged nested tensor only while
        # torch.compile traces (its lengths become symbols) and a strided one not at all (it has no sizes)
        raise NotImplementedError("a nested tensor cannot be made on meta")
    plain = type(value) in (torch.Tensor, nn.Parameter) and value.layout == torch.strided
    if not plain or value.is_quantized or value.untyped_storage().nbytes() % value.itemsize:
        return torch.empty_like(value, device="meta")
    key = ("storage", storage_key(value))
    storage = memo.get(key)
    if storage is None or storage.numel() < value.untyped_storage().nbytes() or storage.numel() % value.itemsize:
        storage = memo[key] = torch.empty(value.untyped_storage().nbytes(), dtype=torch.uint8, device="meta")
    return storage.view(value.dtype).as_strided(value.shape, value.stride(), value.storage_offset())

"""Storages, as a summary tells them apart: the key of each (one per storage, on meta and for fake tensors too), the
plain tensors a tensor keeps its data in, the storages among a call's arguments, and which storages hold bytes that
can be kept and put back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import _disable_current_modes

from .sources._tensors import PLAIN_TENSOR_CLASSES, plain_parts, sparse_parts

_PLAIN_TYPES = PLAIN_TENSOR_CLASSES | {FakeTensor}  # a fake tensor holds its (meta) storage itself


def plain_tensors_of(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensor``, or the tensors a wrapper subclass keeps its data in (:func:`plain_parts`); told by type first,
    as most are plain."""
    return (tensor,) if type(tensor) in _PLAIN_TYPES else plain_parts(tensor)


def storage_parts(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors that hold ``tensor``'s storages: itself, a wrapper subclass's or a jagged nested tensor's plain
    tensors, or a sparse tensor's indices and values (it has no storage of its own), read outside the dispatch
    modes running (reading them is not the forward: the op recorder must not see it)."""
    if tensor.layout is torch.strided or tensor.layout is torch.jagged:
        return plain_tensors_of(tensor)
    with _disable_current_modes():
        return sparse_parts(tensor) or ()


def input_storages(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[int, int]:
    """The storages of the tensors among a call's arguments (by position or keyword, and one level down in a tuple,
    list or dict), each once, with their bytes: what a checkpoint of the call keeps."""
    storages: dict[int, int] = {}
    for item in (*args, *kwargs.values()):
        for tensor in item.values() if isinstance(item, dict) else item if isinstance(item, (tuple, list)) else (item,):
            if not isinstance(tensor, torch.Tensor):
                continue
            for part in storage_parts(tensor):
                try:
                    storages.setdefault(storage_key(part), part.untyped_storage().nbytes())
                except (RuntimeError, NotImplementedError):  # no storage to read (a strided nested tensor's)
                    continue
    return storages


def storage_key(tensor: torch.Tensor) -> int:
    """What ``tensor``'s storage is known by, the same for every tensor viewing it: its data's address, or on meta
    the storage itself, which has no data."""
    storage = tensor.untyped_storage()
    # a fake tensor made on cpu inside a forward on meta has no data either
    return int(storage._cdata) if isinstance(tensor, FakeTensor) or tensor.is_meta else int(storage.data_ptr())


def has_plain_storage(tensor: torch.Tensor) -> bool:
    """A dense tensor with values (not meta, nor a subclass, nor a sparse, mkldnn, nested or quantized one): one whose
    storage is bytes that can be kept and put back."""
    return (type(tensor) in (torch.Tensor, nn.Parameter) and tensor.layout == torch.strided and not tensor.is_nested
            and not tensor.is_meta and not tensor.is_quantized)  # fmt: skip

"""Sizes of tensors that are not plain dense tensors, and weights kept outside ``_parameters``.

The walk in ``module.py`` sizes ordinary tensors as ``numel × element size``; everything here is the exception,
and each exception comes with a note saying how it was counted.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from .._units import format_bytes

PLAIN_TENSOR_CLASSES = frozenset({torch.Tensor, nn.Parameter, nn.Buffer})


def _is_wrapper_subclass(tensor: torch.Tensor) -> bool:
    # A plain bool: torch's TypeGuard makes type checkers treat the rest of a branch as unreachable.
    return bool(is_traceable_wrapper_subclass(tensor))


def _inner_tensors(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """The plain tensors a wrapper subclass (TwoTensor, torchao's quantized tensors, …) stores, recursively."""
    names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
    for name in names:
        inner = getattr(tensor, name)
        if _is_wrapper_subclass(inner):
            yield from _inner_tensors(inner)
        else:
            yield inner


def _dense_bytes(tensor: torch.Tensor) -> int:
    if tensor.layout is torch.strided:
        return tensor.numel() * tensor.element_size()
    return _sparse_bytes(tensor)[0]


def _sparse_bytes(tensor: torch.Tensor) -> tuple[int, str]:
    parts: tuple[torch.Tensor, ...]
    if tensor.layout is torch.sparse_coo:
        parts = (tensor._indices(), tensor._values())
    elif tensor.layout in (torch.sparse_csr, torch.sparse_bsr):
        parts = (tensor.crow_indices(), tensor.col_indices(), tensor.values())
    elif tensor.layout in (torch.sparse_csc, torch.sparse_bsc):
        parts = (tensor.ccol_indices(), tensor.row_indices(), tensor.values())
    else:
        return tensor.numel() * tensor.element_size(), f"layout {tensor.layout} is counted at its dense size"
    return sum(part.numel() * part.element_size() for part in parts), "counted as its indices and values"


def unusual_bytes(name: str, tensor: torch.Tensor, logical_bytes: int) -> tuple[int, str | None]:
    """The bytes of a tensor that may not be plain, and a note when they differ from ``numel × element size``."""
    if _is_wrapper_subclass(tensor):
        inner = sum(_dense_bytes(part) for part in _inner_tensors(tensor))
        return inner, (
            f"{name} is a {type(tensor).__name__}: its bytes ({format_bytes(inner)}) are those of the tensors it "
            f"holds, not its {tensor.numel():,} elements × {tensor.element_size()} B"
        )
    if tensor.layout is not torch.strided:
        size, how = _sparse_bytes(tensor)
        return size, f"{name} is a {tensor.layout} tensor of {tensor.numel():,} elements: {how} ({format_bytes(size)})"
    if not tensor.is_contiguous():
        storage = tensor.untyped_storage().nbytes()
        if storage < logical_bytes:
            return logical_bytes, (
                f"{name} is a view (expanded or strided) whose storage holds {format_bytes(storage)}: counted at "
                f"its logical size, {format_bytes(logical_bytes)}"
            )
    return logical_bytes, None


def packed_weights(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Weights that torch.ao's quantized modules keep packed in a C++ object, outside ``_parameters``.

    Read through the module's own ``_weight_bias()``, which returns fresh tensors and changes nothing.
    """
    packed = vars(module).get("_packed_params")
    weight_bias = getattr(module, "_weight_bias", None)
    if packed is None or isinstance(packed, nn.Module) or not callable(weight_bias):
        return []
    if not type(module).__module__.startswith("torch.ao.nn."):
        return []
    weight, bias = weight_bias()
    return [(label, tensor) for label, tensor in (("weight", weight), ("bias", bias)) if tensor is not None]

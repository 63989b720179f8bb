"""Sizes of tensors that are not plain dense tensors, and weights kept outside ``_parameters``.

The walk in ``module.py`` sizes ordinary tensors as ``numel × element size``; everything here is the exception,
and each exception comes with a note saying how it was counted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from .._units import format_bytes, listed, shortened

PLAIN_TENSOR_CLASSES = frozenset({torch.Tensor, nn.Parameter, nn.Buffer})
PACKED_FP4 = "float4_e2m1fn_x2"
"""torch's dtype of two float4 values an element (MXFP4, NVFP4 weights), counted as its values (see
:func:`fp4_values`)."""


def fp4_values(shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """The shape and dtype of the float4 values a ``float4_e2m1fn_x2`` tensor of ``shape`` holds, two an element
    along its last dimension: what ``safetensors.torch`` writes it as (``F4``, the last dimension doubled), and the
    weights it is. Its bytes are the same.

    >>> fp4_values((4, 3))
    ((4, 6), 'float4_e2m1fn')
    """
    return (*shape[:-1], shape[-1] * 2), "float4_e2m1fn"


def fp4_note(names: list[str], limit: int) -> str:
    """The note on the ``float4_e2m1fn_x2`` tensors ``names``, counted as their values."""
    return (
        f"{len(names)} tensor(s) of torch's float4_e2m1fn_x2, two float4 values an element, counted as their values "
        f"(shown as float4_e2m1fn, the last dimension doubled, as safetensors stores them): {listed(names, limit)}"
    )


def _is_wrapper_subclass(tensor: torch.Tensor) -> bool:
    # A plain bool: torch's TypeGuard makes type checkers treat the rest of a branch as unreachable.
    return bool(is_traceable_wrapper_subclass(tensor))


def _inner_tensors(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """The plain tensors a wrapper subclass (TwoTensor, torchao's quantized tensors, …) stores, recursively."""
    names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
    for name in names:
        inner = getattr(tensor, name, None)
        if not isinstance(inner, torch.Tensor):  # a field of a subclass's own that holds no data (a device mesh)
            continue
        if _is_wrapper_subclass(inner):
            yield from _inner_tensors(inner)
        else:
            yield inner


def plain_parts(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors that hold ``tensor``'s data in storages of their own: itself, or the plain tensors a wrapper
    subclass stores (a jagged nested tensor's values and offsets, torchao's quantized data and scales), whose own
    storage is no storage (its address cannot be read)."""
    return tuple(_inner_tensors(tensor)) if _is_wrapper_subclass(tensor) else (tensor,)


def _view_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """What tells a view of the same elements of the same storage (by address; a tensor without one by itself)."""
    try:
        address = tensor.untyped_storage().data_ptr() if tensor.layout is torch.strided else 0
    except (RuntimeError, NotImplementedError):  # no storage to ask for (torch.func's wrappers)
        address = 0
    if not address:
        return (id(tensor),)
    return address, tensor.storage_offset(), tensor.shape, tensor.stride(), tensor.dtype


def _dense_bytes(tensor: torch.Tensor) -> int:
    if tensor.layout is torch.strided:
        return tensor.numel() * tensor.element_size()
    return _sparse_bytes(tensor)[0]


def sparse_parts(tensor: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The dense tensors a sparse tensor keeps its indices and values in; None for another layout."""
    if tensor.layout is torch.sparse_coo:
        return (tensor._indices(), tensor._values())
    if tensor.layout in (torch.sparse_csr, torch.sparse_bsr):
        return (tensor.crow_indices(), tensor.col_indices(), tensor.values())
    if tensor.layout in (torch.sparse_csc, torch.sparse_bsc):
        return (tensor.ccol_indices(), tensor.row_indices(), tensor.values())
    return None


def _sparse_bytes(tensor: torch.Tensor) -> tuple[int, str]:
    parts = sparse_parts(tensor)
    if parts is None:
        return tensor.numel() * tensor.element_size(), f"layout {tensor.layout} is counted at its dense size"
    return sum(part.numel() * part.element_size() for part in parts), "counted as its indices and values"


def unusual_bytes(name: str, tensor: torch.Tensor, logical_bytes: int) -> tuple[int, str | None]:
    """The bytes of a tensor that may not be plain, and a note when they differ from ``numel × element size``."""
    name = shortened(name)  # for the note
    if _is_wrapper_subclass(tensor):
        # a tensor it holds twice (TwoTensor(a, a), whose detach makes two views of a) is held once
        inner = sum(map(_dense_bytes, {_view_key(part): part for part in _inner_tensors(tensor)}.values()))
        return inner, (
            f"{name} is a {type(tensor).__name__}: its bytes ({format_bytes(inner)}) are those of the tensors it "
            f"holds, not its {tensor.numel():,} elements × {tensor.element_size()} B"
        )
    if tensor.layout is not torch.strided:
        size, how = _sparse_bytes(tensor)
        return size, f"{name} is a {tensor.layout} tensor of {tensor.numel():,} elements: {how} ({format_bytes(size)})"
    if not tensor.is_contiguous():
        try:
            storage = tensor.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # no storage to look at (torch.func's wrappers)
            return logical_bytes, None
        if storage < logical_bytes:
            return logical_bytes, (
                f"{name} is a view (expanded or strided) whose storage holds {format_bytes(storage)}: counted at "
                f"its logical size, {format_bytes(logical_bytes)}"
            )
    return logical_bytes, None


class Packed(NamedTuple):
    """What one of torch.ao's quantized modules keeps packed in C++ objects (``torch.ScriptObject``), read back."""

    weights: list[tuple[str, torch.Tensor]]
    """Each weight read, under its name in the module, in the dtype it is stored in."""
    reader: str
    """What the weights were read through: the module's own method (``_weight_bias()``, ``_weight()``), or the
    unpack of each object's type (``torch.ops.quantized.linear_unpack``)."""
    unread: list[tuple[str, str]]
    """The packed objects that could not be read: their attribute names, and why."""
    children_read: list[int]
    """The ``id`` of the child modules whose packed objects are read here (a dynamic LSTM reads its layers')."""


UNREAD_PACKING = "packed by torch.ao, cannot be read"
"""The ``packing`` of a record that stands for packed weights that could not be read: their size is unknown."""

# The method that unpacks a module's packed objects, and the attributes that hold them.
_READERS = (
    ("_weight_bias", ("_packed_params",)),  # quantized Conv*, and the LinearPackedParams of Linear
    ("_weight_bias", ("_packed_weight_ih", "_packed_weight_hh")),  # dynamic RNNCell, LSTMCell, GRUCell
    ("_weight", ("_packed_weight",)),  # EmbeddingPackedParams of Embedding and EmbeddingBag
)


def packed_weights(module: nn.Module, read_by_parent: Container[int], quantized_only: bool = False) -> Packed | None:
    """The weights that torch.ao's quantized modules keep packed outside ``_parameters``; ``None`` when there are
    none. A module in ``read_by_parent`` (by ``id``) had its packed objects counted with a parent module. With
    ``quantized_only`` (a module not of torch.ao), only the objects of torch's quantized engines are its weights.

    They are read through the module's own ``_weight_bias()`` or ``_weight()``, which return fresh tensors and
    change nothing. A packed object no reader knows, or whose reader fails, is listed in ``unread``: its size is
    unknown, never taken as 0.
    """
    if id(module) in read_by_parent:
        return None
    packed = packed_objects(module)
    if quantized_only:
        packed = {name: value for name, value in packed.items() if is_quantized_engines(value)}
    reader, attributes, children_read = _reader(module, packed)
    if not packed and not reader:
        return None
    # the objects no method of the module reads (a GraphModule's _packed_weight_0): each through its type's unpack
    unread, weights, readers = _unpacked_alone(
        {name: value for name, value in packed.items() if name not in attributes}
    )
    method: list[tuple[str, torch.Tensor]] = []
    read: Any = getattr(module, reader, None) if reader else None
    shown = f"{reader}()"
    if reader and not callable(read) and attributes == ("_all_weight_values",):
        # a TorchScript dynamic LSTM or GRU exports no _weight_bias(), but its layers' packed objects keep theirs
        read, shown = functools.partial(_recurrent_weight_bias, module), _RECURRENT_READER
    if reader and not callable(read):
        # TorchScript keeps only the methods torch.ao exports (LinearPackedParams' _weight_bias, not a Conv's)
        unread = [(name, f"its TorchScript module has no {reader}() to read them") for name in attributes] + unread
    elif reader:
        try:
            method = _read(module, read)
        except Exception as error:  # a C++ unpack may refuse (no engine on this machine, a newer layout)
            unread = [(name, f"{shown} raised {type(error).__name__}: {error}") for name in attributes] + unread
        else:
            readers.insert(0, shown)
    return Packed(method + weights, " and ".join(readers), unread, children_read)


# How torch's quantized engines unpack their packed objects, by the object's type, where no method of the module
# holding one reads it: the weight (and bias) as torch.ao's own modules read them.
_UNPACKERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "LinearPackedParamsBase": (
        "torch.ops.quantized.linear_unpack",
        lambda packed: torch.ops.quantized.linear_unpack(packed),
    ),
    "EmbeddingPackedParamsBase": (
        "torch.ops.quantized.embedding_bag_unpack",
        lambda packed: torch.ops.quantized.embedding_bag_unpack(packed),
    ),
    **{f"Conv{d}dPackedParamsBase": ("its unpack()", lambda packed: packed.unpack()) for d in (1, 2, 3)},
}


def _unpacked_alone(
    packed: Mapping[str, torch.ScriptObject],
) -> tuple[list[tuple[str, str]], list[tuple[str, torch.Tensor]], list[str]]:
    """The objects of ``packed`` read each through its type's unpack (:data:`_UNPACKERS`): those that cannot be
    (with why), the weights read (``<attribute>.weight``, ``<attribute>.bias``), and the unpacks used."""
    still: list[tuple[str, str]] = []
    weights: list[tuple[str, torch.Tensor]] = []
    used: list[str] = []
    for name, value in packed.items():
        kind = _script_type(value)
        short = kind.rpartition(".")[2]
        unpacker = _UNPACKERS.get(short)
        if unpacker is None:
            still.append((name, f"no reader for {kind}"))
            continue
        try:
            result = unpacker[1](value)
        except Exception as error:  # no engine on this machine, a newer layout
            still.append((name, f"{unpacker[0]} raised {type(error).__name__}: {error}"))
            continue
        weight, bias = result if isinstance(result, tuple) else (result, None)
        if short == "LinearPackedParamsBase" and weight.dtype == torch.float32:
            # linear_prepack_fp16 packs float16 values, which linear_unpack gives back in float32: torch.ao's Linear
            # declares its dtype for that; the int8 packings unpack to qint8
            weight = weight.to(torch.float16)
        weights += [(f"{name}.weight", weight)] + ([(f"{name}.bias", bias)] if isinstance(bias, torch.Tensor) else [])
        if unpacker[0] not in used:
            used.append(unpacker[0])
    return still, weights, used


_RECURRENT_READER = "each layer's packed parameters (as torch.ao's _weight_bias() reads them)"


def _recurrent_weight_bias(module: Any) -> dict[str, dict[str, torch.Tensor]]:
    """What torch.ao's dynamic ``LSTM``/``GRU`` ``_weight_bias()`` returns, for one compiled by TorchScript, which
    keeps no such method: each layer and direction's ``CellParamsBase`` holds its input and hidden weights packed,
    each a ``LinearPackedParamsBase`` whose own ``__getstate__()`` (C++, as that method reads it) gives ``(weight,
    bias)``."""
    found: dict[str, dict[str, torch.Tensor]] = {"weight": {}, "bias": {}}
    layers = list(module._modules["_all_weight_values"].children())
    directions = 2 if module.bidirectional else 1
    if len(layers) != module.num_layers * directions:
        raise ValueError(f"{len(layers)} packed layers for {module.num_layers} layers × {directions} directions")
    for index, layer in enumerate(layers):
        suffix = f"_l{index // directions}" + ("_reverse" if index % directions else "")
        input_packed, hidden_packed = layer._c.getattr("param").__getstate__()[0][4]  # a TorchScript module's
        for kind, packed in (("ih", input_packed), ("hh", hidden_packed)):
            weight, bias = packed.__getstate__()[0][:2]
            found["weight"][f"weight_{kind}{suffix}"], found["bias"][f"bias_{kind}{suffix}"] = weight, bias
    return found


def packed_objects(module: nn.Module) -> dict[str, torch.ScriptObject]:
    """The C++ objects (``torch.ScriptObject``) a module keeps packed weights in, by attribute name: in its
    ``__dict__``, or, for a TorchScript module (scripted, traced or loaded), among its C++ module's attributes."""
    if isinstance(module, torch.jit.ScriptModule):
        concrete, held = getattr(module, "_concrete_type", None), getattr(module, "_c", None)
        if concrete is None or held is None:
            return {}
        values = {name: held.getattr(name) for name in concrete.get_attributes() if held.hasattr(name)}
    else:
        values = vars(module)
    return {name: value for name, value in values.items() if isinstance(value, torch.ScriptObject)}


# TorchScript keeps a module's dtype attribute as the number of its c10::ScalarType (archives store these numbers,
# so they do not change): those of the dtypes torch.ao's packed modules declare.
_SCRIPT_DTYPES = {5: torch.float16, 12: torch.qint8, 13: torch.quint8, 16: torch.quint4x2}


def declared_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype a torch.ao module declares its packed weights in (``weight_dtype`` or ``dtype``), if it does."""
    declared = getattr(module, "weight_dtype", None) or getattr(module, "dtype", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return _SCRIPT_DTYPES.get(declared)
    return declared if isinstance(declared, torch.dtype) else None


def _reader(module: nn.Module, packed: Container[str]) -> tuple[str, tuple[str, ...], list[int]]:
    """The method that reads ``module``'s packed weights (``""`` when none does), the attributes of ``packed`` it
    reads, and the ``id`` of the child modules whose packed objects it reads too."""
    # dynamic LSTM and GRU: a PackedParameter child per layer and direction holds them (not _modules.get(): a
    # TorchScript module's _modules has none)
    if "_all_weight_values" in module._modules and (layers := module._modules["_all_weight_values"]) is not None:
        return "_weight_bias", ("_all_weight_values",), [id(child) for child in layers.children()]
    for method, names in _READERS:
        if all(name in packed for name in names):
            return method, names, []
    return "", (), []


def is_quantized_engines(value: torch.ScriptObject) -> bool:
    """Whether ``value`` is one of the objects torch's quantized engines pack weights in (its type in
    ``torch.classes.quantized``)."""
    return _script_type(value).startswith("__torch__.torch.classes.quantized.")


def _script_type(value: torch.ScriptObject) -> str:
    try:
        return str(value._type().qualified_name())
    except Exception:  # a foreign object: its Python type is all there is to say
        return type(value).__name__


def _read(module: nn.Module, reader: Callable[[], Any]) -> list[tuple[str, torch.Tensor]]:
    """Call ``reader`` and name what it returns: a weight, ``(weight, bias)`` or ``{"weight": {…}, "bias": {…}}``."""
    result = reader()
    if isinstance(result, dict):
        weights = list(result.get("weight", {}).items())
        biases = list(result.get("bias", {}).items())
    elif isinstance(result, tuple):
        weights, biases = [("weight", result[0])], [("bias", result[1])]
    else:
        weights, biases = [("weight", result)], []
    stored = declared_dtype(module)
    if stored is not None and stored.is_floating_point:
        # float16 dynamic quantization keeps float16 weights, and its _weight_bias() unpacks them to float32
        weights = [(name, _as_stored(tensor, stored)) for name, tensor in weights]
    return [(name, tensor) for name, tensor in weights + biases if isinstance(tensor, torch.Tensor)]


def _as_stored(tensor: torch.Tensor | None, stored: torch.dtype) -> torch.Tensor | None:
    if tensor is None or not tensor.is_floating_point() or tensor.dtype == stored:
        return tensor
    return tensor.to(stored)

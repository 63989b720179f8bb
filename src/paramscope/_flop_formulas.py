"""FLOP formulas for the ops torch's ``FlopCounterMode`` has none for (it counts them as 0), which a summary meets:
torch's fused CPU kernels (attention, ``nn.MultiheadAttention``'s and ``nn.TransformerEncoderLayer``'s fast paths,
an LSTM layer), mixtures of experts' grouped products, ``nn.Bilinear``'s product, matrix-vector and dot products,
``addbmm``, fairseq's ``conv_tbc``, a sparse matrix's product (``torch.sparse.mm``), and ``aten.linear`` on a nested
tensor.

Each counts what the unfused ops would, 2 FLOPs per multiply-add, as torch's own formulas do. Those marked with
:func:`_gets_tensors` take the op's tensors; the others, as FlopCounterMode's own, their shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import flop_registry, sdpa_flop_count, shape_wrapper

aten = torch.ops.aten


def _gets_tensors(formula: Callable[..., int]) -> Callable[..., int]:
    """Mark a FLOP formula as taking the op's tensors: FlopCounterMode passes shapes to the others."""
    formula._get_raw = True  # type: ignore[attr-defined]
    return formula


def _cpu_flash_attention_on_shapes(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    # FlopCounterMode has no formula for the CPU flash-attention kernel; it computes the same attention as the
    # kernels it does count, so torch's own attention formula applies. Grouped-query attention (fewer key and value
    # heads, enable_gqa) does the products of its keys repeated for every query head: given so, as torch's formula
    # takes keys of fewer heads only from torch 2.13 on (before, an AssertionError failed the forward).
    if len(query) == len(key) == len(value) == 4 and key[1] and query[1] % key[1] == 0:
        key, value = (*key[:1], query[1], *key[2:]), (*value[:1], query[1], *value[2:])
    return int(sdpa_flop_count(query, key, value))


# on shapes, as FlopCounterMode's own formulas are: worked out once per shape
_cpu_flash_attention_flops: Callable[..., int] = shape_wrapper(_cpu_flash_attention_on_shapes)


def _rows(tensor: torch.Tensor) -> int:
    """Vectors of the last dimension in ``tensor`` (batch × sequence), nested tensors included."""
    if tensor.is_nested:
        return sum(part.numel() // part.shape[-1] for part in tensor.unbind())
    return tensor.numel() // tensor.shape[-1]


def _attention_flops(query: torch.Tensor, key: torch.Tensor, embed_dim: int) -> int:
    # The projections of queries, keys, values and output (2 per multiply-add), and the two attention products,
    # Q·Kᵀ and weights·V, of 2·L·S·E each per sequence: what the unfused path counts op by op.
    if query.is_nested:  # sequences of their own lengths
        return sum(_attention_flops(q, k, embed_dim) for q, k in zip(query.unbind(), key.unbind(), strict=True))
    queries, keys = _rows(query), _rows(key)
    sequences = 1 if query.dim() == 2 else query.shape[0]
    projections = 2 * embed_dim * embed_dim * (2 * queries + 2 * keys)
    return projections + 4 * embed_dim * (queries * keys // sequences)


@_gets_tensors
def _fused_attention_flops(query: Any, key: Any, value: Any, embed_dim: int, *args: Any, **kwargs: Any) -> int:
    # nn.MultiheadAttention's fast path (eval, no grad, on CPU/GPU): one op that FlopCounterMode counts as 0.
    return _attention_flops(query, key, embed_dim)


_ENCODER_LAYER_ARGUMENTS = [argument.name for argument in aten._transformer_encoder_layer_fwd.default._schema.arguments]


@_gets_tensors
def _fused_encoder_layer_flops(*args: Any, **kwargs: Any) -> int:
    # nn.TransformerEncoderLayer's fast path: self-attention, then the feed-forward block (linear1, linear2).
    named = dict(zip(_ENCODER_LAYER_ARGUMENTS, args, strict=False)) | kwargs
    source, embed_dim, hidden = named["src"], named["embed_dim"], named["ffn_weight_1"].shape[0]
    return _attention_flops(source, source, embed_dim) + 2 * 2 * _rows(source) * embed_dim * hidden


@_gets_tensors
def _grouped_mm_flops(first: Any, second: Any, *args: Any, **kwargs: Any) -> int:
    # Mixture-of-experts layers (transformers 5) multiply each token by its expert's weights in one grouped op:
    # (tokens, k) × (experts, k, n): every token through one expert; (g, m, k) × (g, k, n): g products;
    # (m, k) × (k, n) split along k into groups (a weight gradient), and (g, m, k) × (k, n) split along n: one
    # product's worth.
    if first.dim() == 2 and second.dim() == 3:
        return 2 * first.shape[0] * first.shape[1] * second.shape[2]
    if first.dim() == 3 and second.dim() == 3:
        return 2 * first.shape[0] * first.shape[1] * first.shape[2] * second.shape[2]
    if first.dim() == 2 and second.dim() == 2:
        return 2 * first.shape[0] * first.shape[1] * second.shape[1]
    if first.dim() == 3 and second.dim() == 2:
        return 2 * first.shape[1] * first.shape[2] * second.shape[1]
    raise NotImplementedError(f"no FLOP formula for _grouped_mm of {first.dim()}-D × {second.dim()}-D operands")


@_gets_tensors
def _mkldnn_rnn_layer_flops(inputs: Any, weight_ih: Any, weight_hh: Any, *args: Any, **kwargs: Any) -> int:
    # One layer and direction of an nn.LSTM on CPU (RNN and GRU run unfused there): every step multiplies the input
    # and the hidden state by their gate weights, as the unfused cells do op by op.
    gates, features = weight_ih.shape
    return 2 * _rows(inputs) * gates * (features + weight_hh.shape[1])


@_gets_tensors
def _linear_flops(inputs: Any, weight: Any, *args: Any, **kwargs: Any) -> int:
    # aten.linear reaches a dispatch mode only for a tensor with kernels of its own (a nested tensor), where the
    # decomposition into matrix products that FlopCounterMode runs cannot take the input's sizes: the same count,
    # 2 per multiply-add, from the input's rows.
    return 2 * _rows(inputs) * weight.shape[0] * weight.shape[1]


def _trilinear_on_shapes(first: Any, second: Any, third: Any, *expands_and_sums: Any, **kwargs: Any) -> int:
    # nn.Bilinear's product (F.bilinear): each operand given a size-1 dimension at each of its expand positions, the
    # three multiplied element-wise and summed over sumdim. Its kernel multiplies the first two element-wise (0, as
    # torch counts element-wise ops) and contracts that with the third in a matrix product: 2 per multiply-add, one
    # for every element of the three broadcast together (bilinear: 2 · rows · out · in1 · in2).
    expands = expands_and_sums[:3]
    sizes = []
    for shape, expand in zip((first, second, third), expands, strict=True):
        dims = iter(shape)
        sizes.append([1 if position in expand else next(dims) for position in range(len(shape) + len(expand))])
    return 2 * math.prod(max(dimension) for dimension in zip(*sizes, strict=True))


_trilinear_flops: Callable[..., int] = shape_wrapper(_trilinear_on_shapes)


def _mv_on_shapes(matrix: Any, vector: Any, *args: Any, **kwargs: Any) -> int:
    # what aten.mm counts for the vector as a column
    return 2 * matrix[0] * matrix[1]


def _addmv_on_shapes(bias: Any, matrix: Any, vector: Any, *args: Any, **kwargs: Any) -> int:
    return _mv_on_shapes(matrix, vector)


def _dot_on_shapes(first: Any, *args: Any, **kwargs: Any) -> int:
    # aten.dot and aten.vdot: a 1 × n by n × 1 product
    return 2 * first[0]


def _addbmm_on_shapes(bias: Any, first: Any, second: Any, *args: Any, **kwargs: Any) -> int:
    # the batch's products summed into one matrix: bmm's count, (b, n, m) × (b, m, p)
    return 2 * first[0] * first[1] * first[2] * second[2]


def _conv_tbc_on_shapes(inputs: Any, weight: Any, bias: Any, pad: int = 0, **kwargs: Any) -> int:
    # fairseq's 1-D convolution of (time, batch, in) by (kernel, in, out): a Conv1d's count for its output steps
    steps = inputs[0] + 2 * pad - weight[0] + 1
    return 2 * max(steps, 0) * inputs[1] * weight[0] * weight[1] * weight[2]


@_gets_tensors
def _sparse_addmm_flops(bias: Any, sparse: Any, dense: Any, *args: Any, **kwargs: Any) -> int:
    # torch.sparse.mm of a sparse COO or CSR matrix by a dense one: each stored value multiplies a row of the dense
    # one, the work its kernel does (the dense count would take every zero as a value)
    return 2 * int(sparse._nnz()) * dense.shape[-1]


_mv_flops: Callable[..., int] = shape_wrapper(_mv_on_shapes)
_addbmm_flops: Callable[..., int] = shape_wrapper(_addbmm_on_shapes)
_conv_tbc_flops: Callable[..., int] = shape_wrapper(_conv_tbc_on_shapes)
_addmv_flops: Callable[..., int] = shape_wrapper(_addmv_on_shapes)
_dot_flops: Callable[..., int] = shape_wrapper(_dot_on_shapes)


_EXTRA_FLOP_FORMULAS_BY_OP: dict[str, Callable[..., int]] = {
    "_scaled_dot_product_flash_attention_for_cpu": _cpu_flash_attention_flops,
    "_native_multi_head_attention": _fused_attention_flops,
    "_transformer_encoder_layer_fwd": _fused_encoder_layer_flops,
    "mkldnn_rnn_layer": _mkldnn_rnn_layer_flops,
    "_grouped_mm": _grouped_mm_flops,
    "linear": _linear_flops,
    "_trilinear": _trilinear_flops,
    "mv": _mv_flops,
    "addmv": _addmv_flops,
    "dot": _dot_flops,
    "vdot": _dot_flops,
    "addbmm": _addbmm_flops,
    "conv_tbc": _conv_tbc_flops,
    "_sparse_addmm": _sparse_addmm_flops,
}
# by name: an op newer than the torch installed (_grouped_mm came in torch 2.8) cannot run, and needs no formula
EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    getattr(aten, name): formula for name, formula in _EXTRA_FLOP_FORMULAS_BY_OP.items() if hasattr(aten, name)
}


def flop_formulas() -> dict[Any, Callable[..., int]]:
    """Every FLOP formula by op packet: torch's ``FlopCounterMode``'s (``flop_registry``, read now: a formula
    registered since import, ``register_flop_formula``, is among them) and :data:`EXTRA_FLOP_FORMULAS`."""
    return {**flop_registry, **EXTRA_FLOP_FORMULAS}

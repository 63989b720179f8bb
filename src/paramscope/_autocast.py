"""CUDA autocast's casts, for a forward on meta that stands for one under ``torch.autocast("cuda")``.

``torch.autocast`` casts at the dispatcher, and only tensors on the device it runs for: a forward on meta sees none
of its casts, so it would keep in bfloat16 what a GPU computes and saves in float32 (a softmax, a layer norm's
input, everything after a ``pow``). :class:`AsUnderAutocast` makes the same casts one level up, on the torch
functions a model calls, by the lists torch keeps for CUDA (``aten/src/ATen/autocast_mode.h``; XPU and MPS share
them):

- **lower precision** (matrix products, convolutions, attention, recurrent cells): floating operands in the compute
  dtype; a weight (a leaf that requires grad) is cast once per forward, as autocast caches it;
- **float32** (transcendental functions, ``pow``, norms, losses, interpolation): float16 and bfloat16 operands in
  float32;
- **float32 results** (``softmax``, ``log_softmax``, ``sum``, ``prod``, ``cumsum``, ``cumprod``, the vector and matrix
  norms): run with ``dtype=torch.float32`` unless the call gives a dtype;
- **promote** (``dot``, ``cross``, ``index_put``, ``scatter_add`` and a few more): operands in the widest floating
  dtype among them.

torch's own autocast state is left as it is: code that reads it (``torch.is_autocast_enabled()``) finds it off, as
on meta it is, and a region that a model runs with autocast off or in another dtype (``torch.autocast(device_type,
enabled=False)``, ``custom_fwd(cast_inputs=...)``) is cast here as the rest of the forward is. Turning CUDA's flag
on instead would answer such code, but it then asks about its tensors' device, meta, which torch refuses
(Nemotron's layer norm: ``torch.get_autocast_dtype("meta")``).

A function that torch writes in Python is cast as a whole where this module lists it (``F.layer_norm``,
``F.softmax``, ``F.interpolate``, ``F.cross_entropy``); inside the others the calls are not seen, and run in their
operands' dtypes (``F.normalize``'s ``norm``, which autocast gives a float32 result). In-place functions and
``out=`` are never cast, as autocast casts neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map_only

F = torch.nn.functional

# The aten operators of each of CUDA autocast's lists (torch's autocast_mode.h), by name; tests check these against
# the kernels the installed torch registers for the AutocastCUDA key.
LOWER_PRECISION_OPS = (
    "_convolution", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "convolution", "cudnn_convolution", "cudnn_convolution_transpose", "prelu", "addmm", "addmv",
    "addr", "matmul", "einsum", "mm", "mv", "linalg_vecdot", "linear", "addbmm", "baddbmm", "bmm", "chain_matmul",
    "linalg_multi_dot", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "lstm_cell", "gru_cell", "rnn_tanh_cell",
    "rnn_relu_cell", "_scaled_dot_product_flash_attention", "scaled_dot_product_attention",
)  # fmt: skip
FLOAT32_OPS = (
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt", "sinh",
    "tan", "pow", "softplus", "layer_norm", "native_layer_norm", "rms_norm", "group_norm", "frobenius_norm",
    "nuclear_norm", "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "nll_loss2d",
    "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss",
    "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss",
    "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp", "upsample_nearest1d",
    "_upsample_nearest_exact1d", "upsample_nearest2d", "_upsample_nearest_exact2d", "upsample_nearest3d",
    "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d", "_upsample_bilinear2d_aa",
    "upsample_trilinear3d", "upsample_bicubic2d", "_upsample_bicubic2d_aa",
)  # fmt: skip
FLOAT32_RESULT_OPS = (
    "prod", "softmax", "log_softmax", "cumprod", "cumsum", "linalg_vector_norm", "linalg_matrix_norm", "sum", "norm",
)  # fmt: skip
PROMOTE_OPS = (
    "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot", "grid_sampler", "index_put", "tensordot",
    "scatter_add",
)  # fmt: skip
BANNED_OPS = ("binary_cross_entropy",)


def _functions(names: tuple[str, ...], *extra: Any) -> frozenset[Any]:
    """The torch functions and tensor methods of these operators' names (those this torch has), and ``extra``."""
    found: set[Any] = set(extra)
    for name in names:
        for namespace in (torch, torch.Tensor, F, torch._C._nn, torch.linalg, torch.special):
            function = getattr(namespace, name.removeprefix("linalg_") if namespace is torch.linalg else name, None)
            if callable(function):
                found.add(function)
    return frozenset(found)


_LOWER_PRECISION = _functions(LOWER_PRECISION_OPS, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__)
# F.cross_entropy runs log_softmax (a float32 result) and nll_loss (float32) inside, where autocast casts them; the
# upsampling functions are reached through F.interpolate (see _interpolates)
_FLOAT32 = _functions(FLOAT32_OPS, torch.Tensor.__pow__, torch.Tensor.__rpow__, F.cross_entropy, F.nll_loss)
_FLOAT32_RESULT = _functions(FLOAT32_RESULT_OPS, F.softmin)
_PROMOTE = _functions(PROMOTE_OPS, F.grid_sample)
_BANNED = _functions(BANNED_OPS)
_INTERPOLATION = frozenset({F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear})
# the modes of F.interpolate that run an upsampling kernel of the float32 list ("area" runs an adaptive average pool)
_FLOAT32_MODES = frozenset({"nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear"})
# The torch.fft functions: torch has no bfloat16 FFT (a float16 one for powers of two on CUDA alone). CUDA's lists
# leave them out, the CPU's run them in float32: given float16 or bfloat16 here, they run in float32 as on the CPU
_FFT_NAMES = ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2", "rfftn", "irfftn",
              "hfft", "ihfft")  # fmt: skip
_FFT = frozenset(getattr(torch.fft, name) for name in _FFT_NAMES)

_BANNED_MESSAGE = (
    "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast: use "
    "binary_cross_entropy_with_logits or nn.BCEWithLogitsLoss (torch refuses it under autocast on a GPU)"
)


class AsUnderAutocast(TorchFunctionMode):
    """Within the block, torch functions cast their operands as CUDA autocast in ``dtype`` casts them (see the
    module's docstring). ``on_weight_cast`` is called with each cast of a weight (a float32 leaf that requires grad)
    to ``dtype``, made once for the block as autocast caches it.

    >>> import torch
    >>> x = torch.empty(4, 8, dtype=torch.bfloat16, device="meta")
    >>> with AsUnderAutocast(torch.bfloat16):
    ...     torch.softmax(x, -1).dtype, torch.nn.functional.linear(x.float(), torch.empty(2, 8, device="meta")).dtype
    (torch.float32, torch.bfloat16)
    """

    def __init__(self, dtype: torch.dtype, on_weight_cast: Callable[[torch.Tensor], object] | None = None) -> None:
        super().__init__()
        self.dtype = dtype
        self.on_weight_cast = on_weight_cast
        self.weight_casts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __enter__(self) -> AsUnderAutocast:
        _running.dtypes = [*getattr(_running, "dtypes", ()), self.dtype]
        try:
            super().__enter__()  # type: ignore[no-untyped-call]
        except BaseException:
            _running.dtypes = _running.dtypes[:-1]
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)  # type: ignore[no-untyped-call]
        finally:
            _running.dtypes = _running.dtypes[:-1]
            self.weight_casts.clear()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if kwargs.get("out") is not None:
            return func(*args, **kwargs)  # out= has no autocast kernel
        dtype = self.dtype
        if func in _LOWER_PRECISION:  # the one policy whose casts of weights autocast caches
            weight_cast = self._weight_cast
            return func(*_cast(args, dtype, _CASTABLE, weight_cast), **_cast(kwargs, dtype, _CASTABLE, weight_cast))
        if func in _FLOAT32 or (func in _FFT and _any_tensor(args, kwargs, _HALF)):
            return func(*_cast(args, torch.float32, _HALF), **_cast(kwargs, torch.float32, _HALF))
        if func in _FLOAT32_RESULT:
            return _with_float32_result(func, args, kwargs)
        if func in _INTERPOLATION and _interpolates(func, args, kwargs):
            return func(*_cast(args, torch.float32, _HALF), **_cast(kwargs, torch.float32, _HALF))
        if func in _PROMOTE:
            widest = torch.float32 if _any_tensor(args, kwargs, frozenset({torch.float32})) else dtype
            return func(*_cast(args, widest, _CASTABLE), **_cast(kwargs, widest, _CASTABLE))
        if func in _BANNED:
            raise RuntimeError(_BANNED_MESSAGE)
        return func(*args, **kwargs)

    def _weight_cast(self, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``weight`` in ``dtype``: made once for the block, as autocast caches the casts of float32 weights (leaves
        that require grad, not views) to its dtype; others are cast at each call."""
        if weight.dtype != torch.float32 or weight._is_view():
            return weight.to(dtype)
        kept = self.weight_casts.get(id(weight))
        if kept is None or kept[0] is not weight:
            kept = (weight, weight.to(dtype))
            self.weight_casts[id(weight)] = kept
            if self.on_weight_cast is not None:
                self.on_weight_cast(kept[1])
        return kept[1]


_running = threading.local()
"""The dtypes of the :class:`AsUnderAutocast` blocks running in this thread (``dtypes``), innermost last."""


def _cast(
    value: Any,
    dtype: torch.dtype,
    eligible: frozenset[torch.dtype],
    weight_cast: Callable[[torch.Tensor, torch.dtype], torch.Tensor] | None = None,
) -> Any:
    """``value`` with each tensor of an ``eligible`` dtype in ``dtype``, in the containers torch's pytree walks too
    (tuples, named ones, lists, dicts); a leaf that requires grad (a weight) through ``weight_cast`` when given."""

    def cast(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype not in eligible or tensor.dtype == dtype:
            return tensor
        if weight_cast is not None and tensor.is_leaf and tensor.requires_grad:
            return weight_cast(tensor, dtype)
        return tensor.to(dtype)

    return tree_map_only(torch.Tensor, cast, value)


# the dtypes autocast casts from: floating, not float64
_CASTABLE = frozenset({torch.float32, torch.float16, torch.bfloat16})
_HALF = frozenset({torch.float16, torch.bfloat16})


def lower_precision(value: Any) -> Any:
    """``value`` (a tensor, or tuples, lists and dicts of them) with its floating tensors in the dtype of the
    :class:`AsUnderAutocast` block running in this thread, as autocast gives them to the functions of its
    lower-precision list; unchanged outside one.

    >>> with AsUnderAutocast(torch.float16):
    ...     lower_precision({"q": torch.empty(2, device="meta")})["q"].dtype
    torch.float16
    """
    dtypes = getattr(_running, "dtypes", ())
    return _cast(value, dtypes[-1], _CASTABLE) if dtypes else value


def _any_tensor(args: Any, kwargs: dict[str, Any], dtypes: frozenset[torch.dtype]) -> bool:
    return any(isinstance(leaf, torch.Tensor) and leaf.dtype in dtypes for leaf in tree_leaves((args, kwargs)))


def _with_float32_result(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """``func`` with ``dtype=torch.float32`` when its first tensor is floating (not float64) and no dtype is given,
    as autocast's ``fp32_set_opt_dtype`` (``fp32_append_dtype`` for ``norm``) calls it."""
    first = next((arg for arg in (*args, *kwargs.values()) if isinstance(arg, torch.Tensor)), None)
    given = kwargs.get("dtype") is not None or any(isinstance(arg, torch.dtype) for arg in args)
    if first is None or first.dtype not in _CASTABLE or given:
        return func(*args, **kwargs)
    return func(*args, **{**kwargs, "dtype": torch.float32})


def _interpolates(func: Any, args: Any, kwargs: dict[str, Any]) -> bool:
    """Whether an upsampling call runs a kernel of autocast's float32 list."""
    if func is not F.interpolate and func is not F.upsample:
        return True  # upsample_nearest and upsample_bilinear
    mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
    return mode in _FLOAT32_MODES

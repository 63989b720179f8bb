"""A forward on the meta device that runs the kernels a real device would, where meta's own differ.

- The tensors are torch's fake tensors (meta tensors that say they are fake), so code that would read values goes
  the way it goes under a trace: transformers keeps an attention mask computed from inputs made from sizes instead of
  reading it to see whether it may skip it, and leaves out its checks for padding. Code that still needs values
  fails, with the op named.
- Except for the values of the inputs given (``input_data``), and those the forward makes from no data of its own
  (``torch.arange`` positions, a ``torch.ones`` mask, the elements it writes to a small ``torch.empty`` tensor), and
  what is computed from them alone but by a large product: those are the same on every device, and are kept on
  the cpu beside their fake tensors (:class:`_Values`), so reading them (``bool()``, ``.item()``) gives what a real
  device reads, and transformers' masks read them as they do on a real device (``masking_utils.is_tracing`` answers
  for them as for a tensor with values). Without a cache or a mask given, transformers checks the position ids it made
  for packed sequences, and BART's decoder checks the all-ones mask it made for padding: under a trace both keep a
  mask, which takes attention off the fused kernel that a real device runs (Llama's and Mistral's grouped keys and
  values then repeated for every head, and saved).
- ``scaled_dot_product_attention``: meta takes the math fallback, which materialises the attention matrix; a GPU
  runs a fused kernel that keeps only the output and the logsumexp, and the meta form of torch's CPU
  flash-attention op does the same (grouped-query shapes included). Where the CPU kernel refuses the shapes (heads
  or a batch to broadcast, a mask of 3 dimensions, a transposed last dimension), torch takes the math path on the
  CPU, and so does meta here. So it does for grouped-query attention (``enable_gqa``, fewer key than query heads)
  in float32, and for any attention in float64, as a GPU does: CUDA's flash kernel, the one that takes grouped
  heads, takes float16 and bfloat16 alone, and its memory-efficient one float32 as well, with one number of heads
  (an H200 kept 2.6 times the bytes of the fused form for a float32 Llama of 8 layers). In float32 the fused
  output is laid out as that memory-efficient kernel lays it out, batch first, where the CPU's follows the query
  (``nn.MultiheadAttention`` then copies it for its projection, as on the GPU). Values of a head size other than
  the queries' and keys' (multi-head latent attention: DeepSeek's 128 beside 192) no flash kernel takes, the CPU's
  nor CUDA's; CUDA's memory-efficient kernel does, and here torch's meta form of that kernel runs them.
- ``_grouped_mm`` (the experts of transformers 5's mixtures of experts): torch's meta kernel checks what the fast
  CUDA kernel takes, bfloat16 alone; torch's CPU kernel and CUDA's fallback also take float32 and float16, so a
  float32 model runs on both, and here on meta too.
- ``nn.TransformerEncoder`` given a padding mask: its check that the padding lies on the right is answered no, its
  values known or not: the layers run on the padded batch, as in a train-mode forward (a real device's fast path
  packs the real tokens into a nested tensor, which the fake tensors do not take).
- Ops whose result's size follows values (``nonzero``, ``masked_select``, ``unique``), which the fake tensors refuse:
  of arguments whose values are all known, run on the cpu, their results fake tensors of the cpu's sizes, with its
  values. Indexing by a boolean mask whose values are known takes the positions it holds, as torch does with a
  real one.
- ``_pack_padded_sequence`` (``pack_padded_sequence``): the packed data's length follows the lengths' values, which
  the fake tensors refuse. By lengths with known values, it is packed as torch's kernel packs it (its rows and checks
  those of the kernel run on the cpu), and its batch sizes are a real cpu tensor, as torch keeps them: the kernels
  that read them there (an LSTM's, ``pad_packed_sequence``'s) run on the fake data as on a device.
- ``_embedding_bag`` (``nn.EmbeddingBag``): torch's meta kernel makes the bag index of every id, the bag sizes and
  ``max_indices`` as CUDA does; torch's CPU kernel skips the bag index on its fast path (mode sum, float32, float16
  or bfloat16 weights, no padding index) and makes it one longer than it keeps otherwise, makes the bag sizes one
  per offset, and a ``max_indices`` of one per bag outside mode max. Autograd saves them for backward, so meta
  makes them as the CPU does.
- ``native_batch_norm`` in eval mode (a BatchNorm kept in eval mode in a train-mode forward): torch's meta kernel
  returns a mean and an inverse standard deviation of the running statistics, as CUDA's own kernel does, where the
  CPU kernel returns empty ones. Autograd saves them for backward, so meta makes them as the CPU does.
- A check of activations for infinities or NaNs that the forward reads (``if not torch.isfinite(h).all()``, the
  guard of BART's family against float16 overflow, and of DETR's in training; ``torch.isinf(h).any()``): a tensor
  without values has none to check, and it is answered as a forward of finite values answers it (all finite, none
  infinite or NaN), which the notes say.
- ``convolution`` of a channels-last input or weight: the fake tensors give the result the layout of the backend its
  device runs, and meta runs none (a contiguous result); the CPU's kernels keep the channels-last layout, and later
  ops' layouts (a reshape that copies or not), so the bytes saved for backward, follow it. Here as on the CPU.
- Matrix products and convolutions of operands in different dtypes (a float16 input to a float32 ``nn.Linear``):
  every device refuses them, torch's meta kernels do not check; refused here too. So are an embedding's ids whose
  values are known and lie outside its table, which every device refuses (an ``IndexError``).
- ``native_layer_norm`` of a float16 or bfloat16 input: torch's meta kernel returns float32 statistics, as CUDA's
  does, where the CPU's are in the input's dtype; kept as a GPU's, and counted for a note.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from types import FunctionType
from typing import Any

import torch
from torch._prims_common import suggest_memory_format
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from ._autocast import lower_precision
from ._fake_outputs import FakeOutputs
from ._flop_formulas import flop_formulas
from ._process_settings import KEEPS_DYNAMO_OUT, set_eval_frame, skipped_by_dynamo
from ._storages import has_plain_storage, storage_key

aten = torch.ops.aten
# torch 2.8 added the op; with an older torch no model calls it
_GROUPED_MM: Any = getattr(getattr(aten, "_grouped_mm", None), "default", None)

# nn.TransformerEncoder's check, before its fast path, that a padding mask leaves its padding on the right: it reads
# the mask's values, and has no meta kernel
_LEFT_ALIGNED: Any = aten._nested_tensor_from_mask_left_aligned.default

_DEVICE: Any = torch.ops.prim.device.default
# pack_padded_sequence's kernel: its result's length follows the lengths' values, which it reads on the cpu
_PACK_PADDED_SEQUENCE: Any = aten._pack_padded_sequence.default
_EMBEDDING_BAG: Any = aten._embedding_bag.default
_EMBEDDING: Any = aten.embedding.default
# LayerNorm: torch's meta kernel returns float32 statistics for a float16 or bfloat16 input, as CUDA's does; the
# CPU's are in the input's dtype, and autograd saves them
_LAYER_NORM: Any = aten.native_layer_norm.default
# the weights the CPU kernel adds up on its fast path of mode sum (torch's meta kernel leaves bfloat16 out)
_FAST_EMBEDDING_BAG = (torch.float32, torch.float16, torch.bfloat16)

# What torch's real kernels multiply besides bfloat16 (the CPU kernel refuses float64).
_GROUPED_MM_DTYPES = (torch.float32, torch.float16)

# torch's attention kernel as torch.nn.functional names it on import: what a function mode is handed when a model
# calls it, through a wrapper in its place too (a shim that logs, then calls torch's)
_SCALED_DOT_PRODUCT_ATTENTION: Any = torch.nn.functional.scaled_dot_product_attention


def fake_tensors() -> FakeTensorMode:
    """The fake tensors a forward on meta runs on (see the module's docstring): the stand-ins and inputs are made
    fake with its ``from_tensor``, and any other tensor (a constant the model holds) as an op meets it."""
    return FakeTensorMode(allow_non_fake_inputs=True)


@contextlib.contextmanager
def as_on_a_device(fake: FakeTensorMode | None = None, *, one_dtype: bool = True) -> Iterator[_Values]:
    """Within the block, a forward on meta runs as a real device runs it (see the module's docstring), on the fake
    tensors of ``fake`` (made by :func:`fake_tensors`; a new one when None). Modes entered after it see each op
    before it runs here. Without ``one_dtype``, products of operands in different dtypes run as meta runs them: a
    forward whose weights were cast to a compute dtype stands for one under autocast, which casts the operands.
    Yields the values the forward knows (see :class:`_Values`), with the checks of transformers' masks that met a
    tensor without them.

    >>> import torch
    >>> experts = torch.empty(4, 64, 32, device="meta")  # float32: torch's meta kernel takes bfloat16 alone
    >>> offs = torch.empty(4, dtype=torch.int32, device="meta")
    >>> with as_on_a_device():
    ...     out = torch._grouped_mm(torch.empty(16, 64, device="meta"), experts, offs=offs)
    >>> out.shape, out.dtype
    (torch.Size([16, 32]), torch.float32)
    """
    logging.getLogger(FakeTensorMode.__module__).addFilter(_kernel_failure_logs)  # once: a filter is added once
    kernels = _MetaKernels(one_dtype)
    _running.depth = getattr(_running, "depth", 0) + 1
    outer, _running.values = getattr(_running, "values", None), kernels.values
    try:
        with _masks_read_known_values(), fake or fake_tensors(), _FusedAttention(), kernels:
            yield kernels.values
    finally:
        _running.depth -= 1
        _running.values = outer


_running = threading.local()
"""How many forwards on meta run in this thread now (``depth``: one inside another's forward, a model that
summarises), the values known of the innermost one's tensors (``values``, see :class:`_Values`), and whether the
torch function running now was called under autocast (``autocast``)."""

_masking_lock = threading.Lock()
_masking_users = 0
"""How many forwards on meta run in all threads with transformers' ``masking_utils.is_tracing`` answered by
:func:`_is_tracing_unless_known` (the first sets it, the last puts transformers' own back)."""


@contextlib.contextmanager
def _masks_read_known_values() -> Iterator[None]:
    """Within the block, transformers' masks (``masking_utils``, when transformers is imported) read the values of a
    fake tensor the forward on meta in this thread knows (see :class:`_Values`), as they read a real tensor's; other
    threads, and any other tensor, get transformers' own answer. Put back when the last forward on meta ends, even
    on error, unless something else has replaced it since."""
    global _masking_users
    masking = sys.modules.get("transformers.masking_utils")
    original = getattr(masking, "is_tracing", None)
    if original is None:
        yield
        return
    with _masking_lock:
        if _masking_users == 0 and not hasattr(original, "_paramscope_original"):
            masking.is_tracing = _is_tracing_unless_known(original)  # type: ignore[union-attr]
        _masking_users += 1
    try:
        yield
    finally:
        with _masking_lock:
            _masking_users -= 1
            ours = getattr(masking, "is_tracing", None)
            if _masking_users == 0 and hasattr(ours, "_paramscope_original"):
                masking.is_tracing = ours._paramscope_original  # type: ignore[union-attr]


def _is_tracing_unless_known(original: Callable[..., bool]) -> Callable[..., bool]:
    """transformers' ``is_tracing(tensor=None)``, which is true of every fake tensor, false of one whose values the
    forward on meta running in this thread knows (it is then true only while transformers traces, compiles or
    captures, as of any tensor)."""

    @functools.wraps(original)
    def is_tracing(tensor: Any = None) -> bool:
        values = getattr(_running, "values", None)
        if tensor is not None and values is not None:
            if values.knows(tensor):
                return original()
            if isinstance(tensor, FakeTensor):  # a mask or position ids given: their values are not on meta
                values.unread.add(sys._getframe(1).f_code.co_name)
        return original(tensor)

    is_tracing._paramscope_original = original  # type: ignore[attr-defined]
    return is_tracing


def _kernel_failure_logs(record: logging.LogRecord) -> bool:
    """False for torch's log of a meta kernel that raised, with its traceback, while a forward on meta runs in this
    thread: the exception goes on up, to a one-line error of the summary's (a shape that does not fit), and the log
    would print before it."""
    return not (getattr(_running, "depth", 0) and str(record.msg).startswith("failed while attempting to run meta"))


def _check_ids(ids: Any, rows: int) -> None:
    """The IndexError every device raises for an embedding's id outside its table, where the ids' values are known
    (given, or made from no data): a forward on meta would otherwise run where no device runs."""
    if isinstance(ids, torch.Tensor) and ids.numel() and not ids.is_floating_point():
        with unset_fake_temporarily():  # the known values are a cpu tensor, read outside the fake tensors' mode
            low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= rows:
            raise IndexError(f"index out of range in self: an id of {low if low < 0 else high} for an embedding of "
                             f"{rows} rows")  # fmt: skip


def _fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor | None:
    if not (query.is_meta and query.dim() == 4):
        return None
    if attn_mask is not None and attn_mask.requires_grad and torch.is_grad_enabled():
        return None  # a learned bias (T5's relative positions) needs its gradient: the CPU kernel has none
    if not _fused_kernel_takes(query, key, value, attn_mask, enable_gqa):
        return None
    if value.shape[-1] != query.shape[-1]:
        return _efficient_attention(query, key, value, attn_mask, dropout_p, is_causal, scale)
    grouped = enable_gqa and key.shape[1] != query.shape[1]
    values = getattr(_running, "values", None)
    if query.dtype not in (torch.float16, torch.bfloat16) and (grouped or query.dtype != torch.float32):
        # the CPU's fused kernel takes them (its shapes above): it saves less
        if torch.backends.cuda.flash_sdp_enabled() and torch.is_grad_enabled() and values is not None:
            if query.dtype == torch.float64:
                values.float64_attention += 1
            elif query.dtype == torch.float32:
                values.grouped_float32_attention += 1
        return None  # no fused GPU kernel takes float64, nor grouped heads in float32 (the module's docstring)
    if not _fused_kernel_enabled(query.dtype):
        return None  # sdpa_kernel(SDPBackend.MATH) around the forward, or in it: every device runs the math path
    attn_mask = _additive(attn_mask, query.dtype)
    if values is not None:
        values.fused_attention += 1
    if dropout_p > 0 and torch.is_grad_enabled() and values is not None:
        values.fused_with_dropout += 1  # torch's CPU kernel refuses dropout: on cpu this call takes the math path
    output, _ = aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )
    return output


def _additive(attn_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The mask as torch's scaled_dot_product_attention makes it before any kernel runs, on every device and each
    call: a boolean mask becomes an additive one, in the query's dtype (which the kernel then saves for backward)."""
    if attn_mask is None or attn_mask.dtype != torch.bool:
        return attn_mask
    zero, minus_inf = (torch.scalar_tensor(value, dtype=dtype, device=attn_mask.device)
                       for value in (0.0, float("-inf")))  # fmt: skip
    return torch.where(attn_mask, zero, minus_inf)


def _efficient_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
) -> torch.Tensor | None:
    """Attention whose values have a head size of their own (DeepSeek's multi-head latent attention: queries and keys
    of 192, values of 128) as a GPU runs it: CUDA's flash kernel, and the CPU's, want one head size for the three;
    its memory-efficient kernel only the query's and the key's, each a multiple of 8 elements in float16 and
    bfloat16, of 4 in float32 (``check_head_dim_size_mem_efficient``), with one number of heads. It keeps the output
    and the logsumexp, not the attention matrix that the math path, the CPU's, keeps. ``None`` where it does not
    take them."""
    alignment = {torch.float16: 8, torch.bfloat16: 8, torch.float32: 4}.get(query.dtype)
    if alignment is None or not torch.backends.cuda.mem_efficient_sdp_enabled():
        return None
    if key.shape[-1] != query.shape[-1] or key.shape[1] != query.shape[1]:
        return None
    if query.shape[-1] % alignment or value.shape[-1] % alignment:
        return None
    attn_mask = _additive(attn_mask, query.dtype)
    batch, heads, queries, _ = query.shape
    if attn_mask is not None:
        # torch's preprocess_mask: a mask whose rows are not 8-element aligned is copied into padded rows (kept for
        # backward), then broadcast to every batch and head
        aligned = attn_mask.stride(-1) == 1 and all(stride % 8 == 0 for stride in attn_mask.stride()[:-1])
        if not aligned:
            keys = attn_mask.shape[-1]
            attn_mask = torch.nn.functional.pad(attn_mask, (0, 8 - keys % 8))[..., :keys]
        attn_mask = attn_mask.expand(batch, heads, queries, key.shape[2])
    values = getattr(_running, "values", None)
    if values is not None:
        values.fused_attention += 1
        if torch.is_grad_enabled():
            values.value_head_attention += 1
    logsumexp = torch.is_grad_enabled() and any(tensor.requires_grad for tensor in (query, key, value))
    output, *_ = aten._scaled_dot_product_efficient_attention(
        query, key, value, attn_mask, logsumexp, dropout_p, is_causal, scale=scale
    )
    return output


def _fused_kernel_enabled(dtype: torch.dtype) -> bool:
    """Whether ``torch.nn.attention.sdpa_kernel`` (or ``torch.backends.cuda.enable_flash_sdp`` and its kin) leaves a
    GPU a fused kernel for ``dtype``: their flags are the process's, and every device's choice reads them (the CPU's
    flash kernel the flash one). Of the fused kernels, only the memory-efficient one takes float32."""
    backends = torch.backends.cuda
    if dtype == torch.float32:
        return backends.mem_efficient_sdp_enabled()
    return backends.flash_sdp_enabled() or backends.mem_efficient_sdp_enabled() or backends.cudnn_sdp_enabled()


def _fused_kernel_takes(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None, enable_gqa: bool
) -> bool:
    """Whether torch's CPU flash-attention kernel takes these shapes (its checks in ``use_flash_attention_cpp``,
    sdp_utils_cpp.cpp); where it does not, torch runs the math path, which keeps the attention matrix for backward.
    It does not broadcast: one batch size for the three, and one number of heads unless ``enable_gqa`` (Falcon gives
    one key and value head for all its query heads: the math path); the last dimension of each with stride 1; a mask
    of 2 or 4 dimensions whose batch and heads are 1 or the query's."""
    batch, heads = query.shape[:2]
    if key.dim() != 4 or value.dim() != 4 or key.shape[0] != batch or value.shape[0] != batch:
        return False
    if enable_gqa:
        if key.shape[1] != value.shape[1] or heads % key.shape[1]:
            return False
    elif key.shape[1] != heads or value.shape[1] != heads:
        return False
    if any(tensor.stride(-1) != 1 for tensor in (query, key, value)):
        return False
    if 0 in (query.shape[2], key.shape[2]):
        return False  # no tokens: torch returns zeros (or runs the math path)
    if attn_mask is None:
        return True
    if attn_mask.shape[-2] not in (1, query.shape[2]) or attn_mask.shape[-1] not in (1, key.shape[2]):
        return False
    return attn_mask.dim() == 2 or (attn_mask.dim() == 4 and attn_mask.shape[0] in (1, batch)
                                    and attn_mask.shape[1] in (1, heads))  # fmt: skip


def _attention(*args: Any, **kwargs: Any) -> torch.Tensor:
    """``scaled_dot_product_attention`` as a real device runs it: fused on meta where it can be; under CUDA's
    autocast (:class:`~paramscope._autocast.AsUnderAutocast`, which sees this call after the function mode that
    sends it here), with its operands cast as autocast casts them."""
    args, kwargs = lower_precision(args), lower_precision(kwargs)
    fused = _fused_attention(*args, **kwargs)
    return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs) if fused is None else fused


def _multi_head_attention_forward() -> Callable[..., Any]:
    """``F.multi_head_attention_forward`` (nn.MultiheadAttention's, nn.TransformerEncoderLayer's) calling
    :func:`_attention` for its attention. torch hands the whole function to the function mode, which runs it with
    the mode off, and so its own call of ``scaled_dot_product_attention`` would take meta's math path, which keeps
    the attention matrix. A copy of it with that one name bound otherwise, in a namespace of its own made anew for
    each call (torch's module is not changed, and a patch of it made since is seen). Where torch's function no
    longer calls it by that name, torch's runs as it is. The copy does not hand itself to the function modes below
    this one (its ``has_torch_function`` check): they would run torch's function as a whole, with every mode off, and
    :class:`~paramscope._autocast.AsUnderAutocast` would see none of its products; they see each call in it."""
    original = torch.nn.functional.multi_head_attention_forward
    code = original.__code__
    if "scaled_dot_product_attention" not in code.co_names:
        return original
    namespace = {**original.__globals__, "scaled_dot_product_attention": _attention,
                 "has_torch_function": _no_torch_function}  # fmt: skip
    twin = FunctionType(code, namespace, original.__name__, original.__defaults__, original.__closure__)
    twin.__kwdefaults__ = original.__kwdefaults__
    return twin


def _no_torch_function(relevant_args: Any) -> bool:
    return False


class _FusedAttention(TorchFunctionMode):
    """``scaled_dot_product_attention`` on meta as a fused kernel, where a model calls it and where
    ``nn.MultiheadAttention`` does; dropout as CUDA's fused kernel (see :func:`_dropout`)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        # torch's kernel, or what torch.nn.functional names now (a Python function that hands itself to the modes)
        if func is _SCALED_DOT_PRODUCT_ATTENTION or func is torch.nn.functional.scaled_dot_product_attention:
            return _attention(*args, **kwargs)
        if func in _DROPOUT:
            return _dropout(func, args, kwargs)
        if func in _FINITE_CHECKS:
            values = getattr(_running, "values", None)
            if values is not None:
                return values.check_finite(func, args, kwargs)
        if func is torch.nn.functional.multi_head_attention_forward:
            return _multi_head_attention_forward()(*args, **kwargs)
        if not torch._C._is_any_autocast_enabled():
            return func(*args, **kwargs)
        # under autocast, which a dispatch mode no longer sees: it casts a product's operands on a real device
        _running.autocast = True
        try:
            return func(*args, **kwargs)
        finally:
            _running.autocast = False


# each dropout function's arguments, in order, with their defaults (torch.dropout has none)
_DROPOUT: dict[Any, tuple[tuple[str, ...], dict[str, Any]]] = {
    torch.nn.functional.dropout: (
        ("input", "p", "training", "inplace"),
        {"p": 0.5, "training": True, "inplace": False},
    ),
    torch.dropout: (("input", "p", "train"), {}),
}


def _dropout(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Dropout as a GPU runs it: torch's ``dropout`` runs CUDA's fused kernel, which keeps a boolean mask for
    backward, where other devices (the cpu, meta) draw a noise tensor in the input's dtype and keep that (four times
    the bytes in float32). In place, every device runs the noise path.

    >>> x = torch.empty(4, 8, device="meta", requires_grad=True)
    >>> type(_dropout(torch.nn.functional.dropout, (x, 0.1), {}).grad_fn).__name__
    'NativeDropoutBackward0'
    """
    names, defaults = _DROPOUT[func]
    given = {**defaults, **dict(zip(names, args, strict=False)), **kwargs}  # more arguments: torch refuses them
    tensor, p = given.get("input"), given.get("p")
    train = given.get(names[2]) is True and given.get("inplace", False) is False
    fused = (set(given) == set(names) and isinstance(tensor, torch.Tensor) and isinstance(p, float | int)
             and 0 < p < 1 and train and tensor.numel() > 0)  # fmt: skip
    if not fused:
        return func(*args, **kwargs)
    values = getattr(_running, "values", None)
    if values is not None and torch.is_grad_enabled() and tensor.requires_grad:  # type: ignore[union-attr]
        values.mask_dropout += 1  # a mask kept for backward
    return torch.native_dropout(tensor, float(p), True)[0]  # type: ignore[arg-type]


def grouped_mm_size(mat_a: torch.Tensor, mat_b: torch.Tensor, offs: torch.Tensor | None) -> list[int] | None:
    """The size of ``_grouped_mm(mat_a, mat_b, offs=offs)``, as torch's kernels make it; None for operands whose
    shapes they refuse. A 2-D operand is cut into ``len(offs)`` groups: (tokens, k) × (experts, k, n) sends each
    expert its tokens; (m, k) × (k, n) cut along k gives one (m, n) product per group (a weight gradient);
    (g, m, k) × (k, n) cut along n fills one (m, n) result group by group; (g, m, k) × (g, k, n) is a batch of
    products without offsets.

    >>> empty = lambda *size: torch.empty(size, device="meta")
    >>> experts, offs = empty(4, 64, 32), empty(4)
    >>> grouped_mm_size(empty(16, 64), experts, offs), grouped_mm_size(empty(16, 63), experts, offs)
    ([16, 32], None)
    """
    a_is_2d, b_is_2d = mat_a.dim() == 2, mat_b.dim() == 2
    if mat_a.dim() not in (2, 3) or mat_b.dim() not in (2, 3) or (offs is not None) != (a_is_2d or b_is_2d):
        return None
    if not (a_is_2d and b_is_2d) and mat_a.shape[-1] != mat_b.shape[-2]:
        return None  # the contraction; two 2-D operands share theirs group by group
    groups = offs.shape[0] if offs is not None and offs.dim() == 1 else None
    if a_is_2d and b_is_2d:
        return None if groups is None else [groups, mat_a.shape[0], mat_b.shape[1]]
    if a_is_2d:
        return [mat_a.shape[0], mat_b.shape[-1]] if groups == mat_b.shape[0] else None
    if b_is_2d:
        return [mat_a.shape[1], mat_b.shape[1]] if groups == mat_a.shape[0] else None
    return [mat_a.shape[0], mat_a.shape[1], mat_b.shape[-1]] if mat_a.shape[0] == mat_b.shape[0] else None


def _layout_fits(mat: torch.Tensor) -> bool:
    """Whether the kernels take ``mat``'s layout: row- or column-major in its last two dimensions, with the longer
    stride a multiple of 16 bytes."""
    rows, columns = mat.stride()[-2:]
    alignment = 16 // mat.element_size()
    if rows == 1 and columns >= max(1, mat.shape[-2]):  # column-major
        return columns % alignment == 0
    if columns == 1 and rows >= max(1, mat.shape[-1]):  # row-major
        return rows % alignment == 0
    return False


class _MetaKernels(TorchDispatchMode):
    """Above the fake tensors' mode: ``_grouped_mm`` in the dtypes torch's CPU kernel and CUDA's fallback take, with
    their result (the size torch's kernels give, contiguous), and the ops on the cpu alone run for real.

    Below autograd, which records ``_grouped_mm`` as it would on a real device (and saves the same tensors for
    backward). The fake tensors would make every tensor fake, those the model makes on the cpu too, and code that
    draws a random number there to skip a layer (wav2vec2's LayerDrop) then reads a value no fake tensor has; run
    for real, as on plain meta, the cpu side keeps its values.

    One more dispatch mode besides the fake tensors' and the summary's recorder (see ``trace._OpRecorder``, which is
    entered after it, to see each op before it runs here): a forward on meta computes nothing, and one more mode adds
    5 to 15 % to its Python."""

    def __init__(self, one_dtype: bool = True) -> None:
        super().__init__()
        self.one_dtype = one_dtype
        """Whether products of operands in different dtypes are refused, as every device refuses them."""
        self.values = _Values()

    def _mask_values(self, index: Any) -> torch.Tensor | None:
        """The values of a boolean mask among an index's tensors, a real one's own or a fake one's known values
        (a mask given, or made from one); None for any other index."""
        if not isinstance(index, torch.Tensor) or index.dtype not in (torch.bool, torch.uint8):
            return None
        if not _without_values(index):
            return index
        known = self.values._value(index)
        return None if known is _UNKNOWN else known

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return not KEEPS_DYNAMO_OUT  # torch's wrapper only where the handler cannot keep dynamo out itself

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is _DEVICE and type(args[0]) is FakeTensor:
            # the fake tensors' own answer, without their mode's dispatch: torch asks for the device of a fake
            # tensor several times an op (half the calls here)
            return args[0].fake_device
        callback = set_eval_frame(None)  # dynamo kept out of what runs from here (see skipped_by_dynamo)
        try:
            return self._run(func, args, kwargs or {})
        finally:
            set_eval_frame(callback)

    def _run(self, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if id(func) in _ONE_DTYPE and self.one_dtype:
            _check_one_dtype(func, args)
        if func is _GROUPED_MM:
            out = _grouped_mm_on_meta(*args, **kwargs)
            if out is not None:
                return out
        if func is _EMBEDDING_BAG and _without_values(args[0]):
            return _embedding_bag_as_on_cpu(*args, **kwargs)
        if func is _LEFT_ALIGNED and _without_values(args[1]):
            # answered no, the mask's values known or not: the encoder runs its layers on the padded batch (a real
            # device's fast path packs the real tokens into a nested tensor, which the fake tensors do not take)
            self.values.padded_encoder += 1
            return False
        if func is _EMBEDDING and len(args) > 1:
            _check_ids(self.values._value(args[1]), args[0].shape[0])
        if func is _LAYER_NORM and args[0].dtype in (torch.float16, torch.bfloat16) and torch.is_grad_enabled():
            self.values.float32_layer_norm += 1
        if func is _PACK_PADDED_SEQUENCE:
            packed = _pack_padded_sequence(self.values, *args, **kwargs)
            if packed is not None:
                return packed
        if _on_the_cpu_alone(args, kwargs):
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        if id(func) in _BATCH_NORM:
            # laid out as the devices' kernels lay it out: in the input's suggested memory format (a 3-D input
            # transposed: contiguous), where the meta kernel keeps the input's strides; a transpose back then
            # views it otherwise, and the layers after it copy their input or not
            output, *statistics = self.values.run(func, args, kwargs)
            _restrided(output, _strides_in_format(output, suggest_memory_format(args[0])))
            if _in_eval(func, args, kwargs):
                # no batch statistics to keep for backward: torch's CPU kernel returns empty ones (which autograd
                # saves), its meta kernel a mean and an inverse std of the running statistics as CUDA's own kernel
                # does
                return output, output.new_empty(0), output.new_empty(0)
            return (output, *statistics)
        if func is _MASKED_SELECT and args[1].dtype == torch.bool:  # every device refuses another mask
            mask = self._mask_values(args[1])
            if mask is not None:
                # its result's size follows the mask's values alone: the input indexed by the mask, both broadcast
                shape = torch.broadcast_shapes(args[0].shape, args[1].shape)
                with unset_fake_temporarily():
                    positions = list(mask.expand(shape).nonzero().unbind(1))
                source = self.values.run(aten.expand.default, (args[0], list(shape)), {})  # with its values, if known
                return self.values.run(aten.index.Tensor, (source, positions), {})
        if id(func) in _INDEXING:
            masks = [self._mask_values(index) for index in args[1]]
            if any(mask is not None for mask in masks):
                # through the values, as any op: a write to a tensor with values is made to them too, or forgets them
                return self.values.run(func, (args[0], _positions(args[1], masks), *args[2:]), kwargs)
        if id(func) in _VIEWS:
            return _strided_as_on_a_device(args[0], self.values.run(func, args, kwargs))
        if func is _CONVOLUTION and not (_row_major(args[0]) and _row_major(args[1])):
            return _convolution_strided_as_on_cpu(func, args, kwargs, self.values.run(func, args, kwargs))
        if func is _FUSED_ATTENTION and args[0].dtype == torch.float32:
            return _as_cudas_efficient_attention(self.values.run(func, args, kwargs), self.values)
        return self.values.run(func, args, kwargs)


if KEEPS_DYNAMO_OUT:
    skipped_by_dynamo(_MetaKernels.__torch_dispatch__)


# The most elements of a tensor whose values a forward on meta keeps on the cpu (see _Values): position ids of 8 ×
# 128k tokens and the steps of transformers' check for packed sequences (32 MiB in int64, a few milliseconds)
KNOWN_VALUES_LIMIT = 1 << 22
# The most FLOPs of a matrix product, convolution or attention (the ops the summary counts) run on known values as
# well: a few milliseconds on a cpu. The Gram matrix of a 2048 × 2048 input given (17 GFLOPs, 1 to 2 s) runs on meta
# alone, and its result has no values.
_KNOWN_VALUES_FLOPS = 10**8

# ops that make a tensor without setting its values: its elements have values once written (see _Values.blank), in
# a tensor of up to _EMPTY_LIMIT elements (a tensor of sizes; the stand-ins of the inputs and weights are made so too)
_EMPTY = frozenset(("empty", "empty_like", "empty_strided", "empty_permuted", "new_empty", "new_empty_strided"))
_EMPTY_LIMIT = 1 << 12
# ops that may leave elements without values (the ones a resize adds)
_UNINITIALISED = frozenset(("resize", "resize_", "resize_as", "resize_as_", "_resize_output", "_resize_output_"))
# ops that write every element of the tensor they write to, whatever it held (see _Values.blank)
_OVERWRITES = frozenset(("fill_", "copy_", "zero_"))


# ops that read a tensor's values into Python: .item(), bool(), torch.equal
_READS = {id(op) for op in (aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default)}

# The checks of a tensor's values for infinities and NaNs, each with what it gives for every element of a tensor of
# finite values. torch.isfinite runs as several ops (eq, abs, ne, mul), so it is seen as the function is called.
_FINITE_CHECKS = {torch.isfinite: True, torch.Tensor.isfinite: True, torch.isinf: False, torch.Tensor.isinf: False,
                  torch.isnan: False, torch.Tensor.isnan: False}  # fmt: skip
# the ops that keep one value for every element (not), or reduce them to it (all, any): on the checks' results
_NOT = {id(op) for op in (aten.logical_not.default, aten.bitwise_not.default)}
_ALL, _ANY = id(aten.all.default), id(aten.any.default)


class _OpValues:
    """What :class:`_Values` needs to know of an op: whether its result follows its arguments' values (a tensor not
    random nor uninitialised, or a read of values), and the arguments it writes to (positions and names)."""

    __slots__ = ("counted", "empty", "follows", "overwrites", "positioned", "reads", "sized_by_values", "view",
                 "writes")  # fmt: skip

    def __init__(self, func: Any, formulas: dict[Any, Callable[..., int]]) -> None:
        schema = getattr(func, "_schema", None)
        self.writes: tuple[tuple[int, str], ...] = ()
        self.follows = self.view = False
        self.reads = id(func) in _READS
        """Whether it reads values into Python (the fake tensors' mode refuses it); any other op that returns no
        tensor asks for what a fake tensor knows itself (its device, its size)."""
        packet = getattr(func, "overloadpacket", None)
        name = getattr(packet, "__name__", "")
        self.counted = formulas.get(packet)
        """Its FLOP formula, for a matrix product, a convolution, attention: the ops whose cost grows faster than
        their arguments."""
        self.empty = name in _EMPTY
        """Whether it makes a tensor without setting its values."""
        self.overwrites = name in _OVERWRITES
        """Whether it writes every element of its first argument, whatever it held."""
        self.positioned = id(func) in _SCATTERS or id(func) in _INDEX_PUTS
        """Whether it writes its first argument's elements at positions, whatever they held (see
        :func:`_mark_written`)."""
        self.sized_by_values = torch.Tag.dynamic_output_shape in getattr(func, "tags", ())
        """Whether its result's size follows its arguments' values (nonzero, masked_select, unique), which the fake
        tensors refuse."""
        if schema is None:
            return
        # those that return nothing too (the _foreach_ ops write to lists of tensors)
        self.writes = tuple((index, item.name) for index, item in enumerate(schema.arguments)
                            if item.alias_info is not None and item.alias_info.is_write)  # fmt: skip
        self.view = any(item.alias_info is not None and not item.alias_info.is_write for item in schema.returns)
        if not (self.reads or any("Tensor" in str(item.type) for item in schema.returns)):
            return
        self.follows = torch.Tag.nondeterministic_seeded not in func.tags and name not in _UNINITIALISED


class _Values:
    """The values of the fake tensors a forward on meta makes from no data of its own, kept on the cpu beside them
    (each up to :data:`KNOWN_VALUES_LIMIT` elements): an op whose tensor arguments all have known values (a factory
    has none; a real cpu tensor has its own) runs on the cpu as well, and a read of such values (``bool()``,
    ``.item()``) gets the cpu's, which a fake tensor has not. The weights, the inputs made from sizes, and whatever
    is computed from them have none; the inputs given have theirs (:meth:`know`). So has the result of a matrix
    product, a convolution or attention of known values only up to :data:`_KNOWN_VALUES_FLOPS`: beyond, it is the
    compute a real device does. A write to a tensor with known values is made to its values too when all the op's
    other arguments have known values; otherwise the values of every tensor in its storage are forgotten. A tensor
    whose storage is no longer the one it had with its values (``set_``, ``.data =``, which torch makes without an
    op) has none."""

    def __init__(self) -> None:
        self.cpu: WeakIdKeyDictionary = WeakIdKeyDictionary()
        """A fake tensor -> its values, a cpu tensor of its shape and dtype, and the fake tensor's storage then
        (``_cdata``)."""
        self.storages: set[int] = set()
        """The storages (``_cdata``) of the fake tensors with values (some of them since freed)."""
        self.ops: dict[Any, _OpValues] = {}
        self.formulas = flop_formulas()
        """The FLOP formulas, which tell a matrix product, a convolution or attention (see :class:`_OpValues`)."""
        self.outputs = FakeOutputs()
        """The ops run on the fake tensors, whose repeats it answers (see :class:`FakeOutputs`)."""
        self.fused_attention = 0
        """Calls of attention that ran fused (as on a GPU)."""
        self.fused_with_dropout = 0
        """Calls of attention with dropout, for backward, that ran fused (as on a GPU), where the CPU runs the math
        path, which saves the attention matrix and the dropout mask too."""
        self.batch_first_attention = 0
        """Calls of attention in float32 whose output is laid out batch first, as on a GPU, where the CPU's follows
        the query (see :func:`_as_cudas_efficient_attention`)."""
        self.grouped_float32_attention = 0
        """Calls of grouped-query attention in float32, for backward, run on the math path as on a GPU, where the
        CPU's fused kernel takes them and saves less."""
        self.mask_dropout = 0
        """Calls of dropout, for backward, that kept a boolean mask as CUDA's fused kernel does, where the CPU keeps
        its noise in the input's dtype."""
        self.float64_attention = 0
        """Calls of attention in float64, for backward, run on the math path as on a GPU, where the CPU's fused
        kernel takes them and saves less."""
        self.value_head_attention = 0
        """Calls of attention whose values' head size is not the queries', for backward, run fused as on a GPU (its
        memory-efficient kernel), where the CPU runs the math path, which saves the attention matrix too."""
        self.float32_layer_norm = 0
        """Calls of LayerNorm of a float16 or bfloat16 input, for backward, whose statistics are float32 as on a GPU,
        where the CPU keeps them in the input's dtype."""
        self.padded_encoder = 0
        """Calls of nn.TransformerEncoder's check that its padding mask leaves the padding on the right, answered
        no: its layers ran on the padded batch, where a real device's eval fast path packs the real tokens."""
        self.given: dict[int, torch.UntypedStorage] = {}
        """The copies of the storages of the inputs given, by the key of the storage copied (see :meth:`know`)."""
        self.too_large: list[int] = []
        """The elements of each input's storage that was too large to keep the values of (over
        :data:`KNOWN_VALUES_LIMIT`): why a read of its values fails."""
        self.unread: set[str] = set()
        """The functions of transformers' masks that checked a fake tensor without values, and went the way they go
        under a trace (a mask kept where a real device may skip it)."""
        self.uniform: WeakIdKeyDictionary = WeakIdKeyDictionary()
        """A fake tensor made by a check for infinities or NaNs of one without values -> the one value each of its
        elements has for finite values (see :meth:`check_finite`)."""
        self.assumed: WeakIdKeyDictionary = WeakIdKeyDictionary()
        """The fake tensors whose known values follow from that assumption."""
        self.finite_reads = 0
        """Reads of values (``bool()``, ``.item()``) that follow from it."""
        self.blank: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        """The storage (``_cdata``) of a fake tensor made without values (``torch.empty``, filled element by element
        with sizes: RT-DETR's ``spatial_shapes``) -> its values' tensor on the cpu and which of its storage's elements
        have been written (by an op that writes every element of a view, with known values). A view of it has values
        where all its elements were written; only a view of it, or a write of all of a view's elements, takes one
        whose elements were not all written."""

    def know(self, fake: Any, given: torch.Tensor) -> None:
        """Keep the values of ``given``, an input the caller gave, for ``fake``, its twin on meta: a real device
        reads them (the lengths ``pack_padded_sequence`` packs by, a mask's, position ids; whether a float attention
        mask is causal, which ``nn.TransformerEncoder`` checks). Each storage is copied once, and viewed as ``given``
        views its own, as its twin's storage is (see ``_inputs._meta_twin``): an expanded tensor's rows are one, and
        the forward's writes do not reach the caller's. Up to :data:`KNOWN_VALUES_LIMIT` elements in the storage, of
        a plain tensor of the twin's shape and dtype. Only the ops on inputs alone run on the cpu as well: what meets
        a weight, or anything else without values, has none."""
        if (not isinstance(fake, FakeTensor) or not has_plain_storage(given)
                or (fake.shape, fake.dtype) != (given.shape, given.dtype)):  # fmt: skip
            return
        storage = given.untyped_storage()
        if storage.nbytes() % given.itemsize:
            return
        if storage.nbytes() // given.itemsize > KNOWN_VALUES_LIMIT:
            self.too_large.append(storage.nbytes() // given.itemsize)
            return
        key = storage_key(given)
        with unset_fake_temporarily():
            copy = self.given.get(key)
            if copy is None:
                copy = self.given[key] = torch.UntypedStorage(storage.nbytes()).copy_(storage)
            values = torch.empty(0, dtype=given.dtype).set_(copy, given.storage_offset(), given.shape, given.stride())
        self.cpu[fake] = (values, fake.untyped_storage()._cdata)
        self.storages.add(fake.untyped_storage()._cdata)

    def knows(self, tensor: Any) -> bool:
        if not isinstance(tensor, FakeTensor):
            return False
        known = self._known(tensor)
        return known is not _UNKNOWN and (not self.blank or self._all_written(tensor, known))

    def check_finite(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func`` (one of :data:`_FINITE_CHECKS`) of a tensor; on a fake tensor without values, its result holds
        for every element what a tensor of finite values gives: a forward reads it (BART's guard against overflow
        in float16, DETR's in training) where a real device has the values."""
        out = func(*args, **kwargs)
        tensor = args[0] if args else kwargs.get("input")
        if isinstance(out, FakeTensor) and isinstance(tensor, FakeTensor) and not self.knows(tensor):
            self.uniform[out] = _FINITE_CHECKS[func]
        return out

    def _uniform(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func`` of a check's result (see :meth:`check_finite`): ``not`` of it is one value too, ``all`` and
        ``any`` of it have known values. _UNKNOWN for any other op or argument."""
        key = id(func)
        if not (key in _NOT or key in (_ALL, _ANY)) or kwargs or len(args) != 1:
            return _UNKNOWN
        value = self.uniform.get(args[0]) if isinstance(args[0], FakeTensor) else None
        if value is None:
            return _UNKNOWN
        out = func(*args)
        if key in _NOT:
            self.uniform[out] = not value
        else:  # all of no elements is true, any of none false
            known = torch.tensor(value if args[0].numel() else key == _ALL)
            self.cpu[out] = (known, out.untyped_storage()._cdata)
            self.storages.add(out.untyped_storage()._cdata)
            self.assumed[out] = True
        return out

    def _known(self, fake: FakeTensor) -> Any:
        """The values of ``fake``, _UNKNOWN when it has none, or no longer the storage it had with them."""
        known = self.cpu.get(fake)
        if known is None:
            return _UNKNOWN
        if fake.untyped_storage()._cdata != known[1]:
            del self.cpu[fake]
            return _UNKNOWN
        return known[0]

    def run(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func(*args, **kwargs)`` on the fake tensors, and on the values of its arguments when all are known."""
        op = self.ops.get(func)
        if op is None:
            op = self.ops[func] = _OpValues(func, self.formulas)
        if self.uniform and not op.writes:
            out = self._uniform(func, args, kwargs)
            if out is not _UNKNOWN:
                return out
        on_cpu = self._on_cpu(args, kwargs, op.view or op.overwrites or op.positioned) if op.follows else None
        if on_cpu is not None and op.reads:  # a read of values (.item(), bool()): the one a real device reads
            if self.assumed and self._assumed(args):
                self.finite_reads += 1
            return _run_on_cpu(func, on_cpu)
        if on_cpu is not None and op.sized_by_values and not op.writes:
            return self._sized_by_values(func, args, kwargs, on_cpu)
        out = self.outputs.run(func, args, kwargs)
        if (
            on_cpu is not None
            and op.counted is not None
            and op.counted(*args, **kwargs, out_val=out) > _KNOWN_VALUES_FLOPS
        ):
            on_cpu = None  # what a real device computes, which meta does not
        if op.writes:
            if self.uniform:  # a check's result written to holds other values, through a view of it too
                for index, name in op.writes:
                    written = _argument(args, kwargs, index, name)
                    if isinstance(written, FakeTensor):
                        storage = written.untyped_storage()._cdata
                        for check in [t for t in self.uniform if t.untyped_storage()._cdata == storage]:
                            self.uniform.pop(check, None)
            if self.storages or on_cpu is not None:
                self._written(func, op, args, kwargs, on_cpu)
        elif on_cpu is not None:
            self._keep(func, out, on_cpu)
            if self.assumed and self._assumed(args):
                for item in out if isinstance(out, (list, tuple)) else (out,):
                    if isinstance(item, FakeTensor) and item in self.cpu:
                        self.assumed[item] = True
        return out

    def _sized_by_values(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], on_cpu: tuple[list[Any], dict[str, Any]]
    ) -> Any:
        """``func``, whose result's size follows values, of arguments whose values are all known: run on the cpu,
        its results fake tensors of the sizes (and strides) the cpu's have, on the device of its tensor arguments,
        each with the cpu's values."""
        values = _run_on_cpu(func, on_cpu)
        tensors = (arg for arg in chain(args, kwargs.values()) if isinstance(arg, torch.Tensor))
        device = next(tensors).device  # one at least: its values are why it runs here
        fakes = []
        for value in values if isinstance(values, (list, tuple)) else (values,):
            fake = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=device)
            if isinstance(fake, FakeTensor) and value.numel() <= KNOWN_VALUES_LIMIT:
                self.cpu[fake] = (value, fake.untyped_storage()._cdata)
                self.storages.add(fake.untyped_storage()._cdata)
            fakes.append(fake)
        return type(values)(fakes) if isinstance(values, (list, tuple)) else fakes[0]

    def _assumed(self, args: Sequence[Any]) -> bool:
        """Whether one of ``args`` has values that follow from a check answered for finite values."""
        return any(isinstance(arg, FakeTensor) and arg in self.assumed for arg in args)

    def _on_cpu(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], loose: bool = False
    ) -> tuple[list[Any], dict[str, Any]] | None:
        """The arguments with the values of each tensor for the tensor, on the cpu; None when one has none known.
        With ``loose``, the first may have elements not written (:attr:`blank`): a view of it, or a write of all its
        elements, reads none of them."""
        if loose and args:
            first, rest = self._value(args[0], loose=True), self._value(list(args[1:]))
            cpu_args = _UNKNOWN if first is _UNKNOWN or rest is _UNKNOWN else [first, *rest]
        else:
            cpu_args = self._value(list(args))
        if cpu_args is _UNKNOWN:
            return None
        cpu_kwargs = {}
        for name, arg in kwargs.items():
            value = torch.device("cpu") if name == "device" else self._value(arg)
            if value is _UNKNOWN:
                return None
            cpu_kwargs[name] = value
        return cpu_args, cpu_kwargs

    def _value(self, value: Any, loose: bool = False) -> Any:
        if isinstance(value, (list, tuple)):
            items = []
            for item in value:
                known = self._value(item)
                if known is _UNKNOWN:
                    return _UNKNOWN
                items.append(known)
            return type(value)(items)
        if not isinstance(value, torch.Tensor):
            return value
        if isinstance(value, FakeTensor):
            known = self._known(value)
            if self.blank and not loose and known is not _UNKNOWN and not self._all_written(value, known):
                return _UNKNOWN
            return known
        return value if value.device.type == "cpu" else _UNKNOWN

    def _written_elements(self, fake: FakeTensor, known: torch.Tensor) -> torch.Tensor | None:
        """Which of the elements of ``known`` (the values of ``fake``) were written, in a storage made without
        values; None in any other storage, or in a view of another element size."""
        blank = self.blank.get(fake.untyped_storage()._cdata)
        if blank is None:
            return None
        base, written = blank
        if known.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
            return None
        if known.element_size() != base.element_size():
            return written[:0]  # not all known: a view of another dtype
        with unset_fake_temporarily():
            return written.as_strided(known.shape, known.stride(), known.storage_offset())

    def _all_written(self, fake: FakeTensor, known: torch.Tensor) -> bool:
        written = self._written_elements(fake, known)
        if written is None or known.numel() == 0:
            return True
        with unset_fake_temporarily():
            return written.numel() > 0 and bool(written.all())

    def _keep(self, func: Any, out: Any, on_cpu: tuple[list[Any], dict[str, Any]]) -> None:
        fakes = out if isinstance(out, (list, tuple)) else (out,)
        empty = self.ops[func].empty
        limit = _EMPTY_LIMIT if empty else KNOWN_VALUES_LIMIT
        # a sparse result has no storage of its own to know values by: its values stay unknown
        if not all(isinstance(item, FakeTensor) and item.layout is torch.strided and item.numel() <= limit
                   for item in fakes):  # fmt: skip
            return
        try:
            values = _run_on_cpu(func, on_cpu)
        except Exception:  # an op the cpu has no kernel for (a dtype): its result's values stay unknown
            return
        values = values if isinstance(values, (list, tuple)) else (values,)
        if len(values) != len(fakes):
            return
        for fake, value in zip(fakes, values, strict=True):
            if isinstance(value, torch.Tensor) and value.shape == fake.shape and value.dtype == fake.dtype:
                storage = fake.untyped_storage()._cdata
                if empty:  # no element has a value until written: zeros, never read unwritten
                    with unset_fake_temporarily():
                        value.zero_()
                        elements = value.untyped_storage().nbytes() // value.element_size()
                        self.blank[storage] = (value, torch.zeros(elements, dtype=torch.bool))
                self.cpu[fake] = (value, storage)
                self.storages.add(storage)

    def _written(self, func: Any, op: _OpValues, args: tuple[Any, ...], kwargs: dict[str, Any], on_cpu: Any) -> None:
        """After ``func`` wrote to some of its arguments: their values written too when all its arguments had known
        values, else the values of every tensor in their storages forgotten (those viewing the values written on the
        cpu are written with them)."""
        if on_cpu is not None:
            try:
                _run_on_cpu(func, on_cpu)
            except Exception:
                on_cpu = None
        for index, name in op.writes:
            written = _argument(args, kwargs, index, name)
            values = None if on_cpu is None else _argument(on_cpu[0], on_cpu[1], index, name)
            storage = written.untyped_storage()._cdata if isinstance(written, FakeTensor) else None
            if self.blank and storage in self.blank:
                elements = self._written_elements(written, values) if isinstance(values, torch.Tensor) else None
                if elements is not None and elements.numel() == written.numel():
                    with unset_fake_temporarily():
                        if op.overwrites and index == 0:
                            elements.fill_(True)
                            continue
                        if index == 0 and _mark_written(func, elements, on_cpu):
                            continue
                        # a write that reads elements without values (add_) forgets the storage's values
                        kept = bool(elements.all())
                else:  # a write of unknown values, or of an unknown region, forgets them
                    kept = False
                if not kept:
                    self.blank.pop(storage)
                    # but values of their own, not the blank tensor's, are this storage's: the blank one was freed,
                    # and this one took its address (_cdata)
                    if not (elements is None and isinstance(values, torch.Tensor)):
                        values = None
            if isinstance(written, (list, tuple)):  # the _foreach_ ops': written on the cpu alike, or forgotten
                for item, value in zip(written, values or [None] * len(written), strict=True):
                    self._forget(item, value)
            else:
                self._forget(written, values)

    def _forget(self, written: Any, value: Any) -> None:
        """Forget the values of the tensors in the storage of ``written``, but those viewing ``value``'s on the cpu
        (written on the cpu too)."""
        if not isinstance(written, FakeTensor) or written.untyped_storage()._cdata not in self.storages:
            return
        storage = written.untyped_storage()._cdata
        kept = value.untyped_storage()._cdata if isinstance(value, torch.Tensor) else None
        for fake, known in list(self.cpu.items()):
            if fake.untyped_storage()._cdata == storage and known[0].untyped_storage()._cdata != kept:
                del self.cpu[fake]


_VIEWS = {id(aten.view.default), id(aten._unsafe_view.default)}


def _strided_as_on_a_device(source: torch.Tensor, view: Any) -> Any:
    """``view`` of ``source``, with the strides torch's device kernels give it. The fake tensors' view (torch._refs'
    ``_reshape_view_helper``) gives a dimension of size 1 another stride than theirs: no element's place depends on
    it, but later ops' layouts do (an elementwise op's result follows its inputs' strides, a reshape copies or not),
    and so the bytes a forward saves for backward (Mamba2's mixer at one token: 3 MiB less than a device's). Only a
    dimension of size 1 can differ: those of other sizes are fixed by the elements a view addresses.

    >>> from torch._subclasses.fake_tensor import FakeTensorMode
    >>> with FakeTensorMode():
    ...     source = torch.empty_strided((3, 1, 1024), (1536, 1, 1))
    ...     source.view(3, 1, 128, 8).stride(), _strided_as_on_a_device(source, source.view(3, 1, 128, 8)).stride()
    ((1536, 1, 8, 1), (1536, 1024, 8, 1))
    """
    if not isinstance(view, FakeTensor) or 1 not in view.shape:
        return view
    with unset_fake_temporarily():
        # the strides of a view do not depend on the dtype (and a quantised one has no meta tensors)
        on_meta = torch.empty_strided(source.shape, source.stride(), dtype=torch.uint8, device="meta")
        stride = on_meta.view(view.shape).stride()
    return _restrided(view, stride)


_CONVOLUTION: Any = aten.convolution.default


def _row_major(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` has the strides of a new contiguous tensor, those of its dimensions of size 1 too (a 1×1
    kernel's weight in channels-last has strides a contiguous one has not, yet ``is_contiguous()`` is true of both;
    torch's kernels pick the layout of a convolution's result by the strides)."""
    expected = 1
    for size, stride in zip(reversed(tensor.shape), reversed(tensor.stride()), strict=True):
        if stride != expected:
            return False
        expected *= size
    return True


def _convolution_strided_as_on_cpu(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
    """``out`` of a convolution on meta, with the memory format torch's CPU kernel gives it. The fake tensors pick
    the layout of a convolution's result by the backend its device would run: on meta there is none, and the result
    is contiguous, where the CPU's kernels (and CUDA's) keep a channels-last input's or weight's layout, so later
    ops' layouts differ (a reshape that copies or not) and so the bytes a forward saves for backward (a channels-last
    patch embedding flattened and transposed for two ``nn.Linear``: one copy of its output for each). Asked of the
    fake tensors for the same tensors on the CPU."""
    if not (isinstance(out, FakeTensor) and out.fake_device.type == "meta"):
        return out
    mode = out.fake_mode

    def on_cpu(tensor: Any) -> Any:
        if not isinstance(tensor, FakeTensor):
            return tensor
        with unset_fake_temporarily():
            elem = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
        return FakeTensor(mode, elem, torch.device("cpu"))

    with mode:
        stride = func(*[on_cpu(arg) for arg in args], **{key: on_cpu(value) for key, value in kwargs.items()}).stride()
    return _restrided(out, stride)


_FUSED_ATTENTION = aten._scaled_dot_product_flash_attention_for_cpu.default


def _as_cudas_efficient_attention(
    out: tuple[torch.Tensor, torch.Tensor], values: _Values
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused attention's output (batch, heads, queries, head size) in float32 laid out as CUDA's memory-efficient
    kernel, the one that runs it on a GPU, lays it out: batch, queries, heads, head size in memory, whatever the
    query's layout (the CPU's kernel, and CUDA's flash kernel for float16 and bfloat16, follow the query's). Later
    ops' layouts follow it, and so what they save for backward: ``nn.MultiheadAttention`` copies it for its
    projection (an H200 saved that copy in each layer of an ``nn.TransformerEncoder`` in float32, which the CPU's
    layout does not make), Whisper's attention does not. That kernel also pads its logsumexp to a multiple of 32
    queries, which is left as the CPU's: a few bytes a call (Whisper's 30 frames: 16 B a head). A call whose layout
    the CPU's kernel lays out otherwise is counted in ``values``."""
    output, logsumexp = out
    if isinstance(output, FakeTensor) and output.dim() == 4:
        _, heads, queries, size = output.shape
        batch_first = (queries * heads * size, size, heads * size, 1)
        # a dimension of size 1 (one head, one query) has any stride: a layout differs in the others' alone
        layouts = zip(output.shape, output.stride(), batch_first, strict=True)
        if output.numel() and any(extent > 1 and kept != made for extent, kept, made in layouts):
            values.batch_first_attention += 1
        output = _restrided(output, batch_first)
    return output, logsumexp


def _restrided(tensor: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """``tensor`` (a fake tensor on meta, of a new storage or a view) with ``stride``, in place: the layout a real
    device's kernel gives it, for the ops after it."""
    if tensor.stride() != stride:
        tensor.as_strided_(tensor.shape, stride, tensor.storage_offset())
    return tensor


def _argument(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else args[index] if index < len(args) else None


# writes of the elements at positions, whatever they held: a scatter's, an index_put's without accumulating
_SCATTERS = {id(aten.scatter_.src), id(aten.scatter_.value)}
_INDEX_PUTS = {id(aten.index_put_.default), id(aten._index_put_impl_.default)}


def _mark_written(func: Any, elements: torch.Tensor, on_cpu: tuple[list[Any], dict[str, Any]]) -> bool:
    """Mark in ``elements`` (of a storage made without values) those that ``func`` wrote to its first argument at
    positions it was given with values (``on_cpu``): a scatter's (``invert_permutation``'s, of
    ``pack_padded_sequence``), an index_put's; False for any other op, and for one that reads what it writes to."""
    args, kwargs = on_cpu
    if id(func) in _SCATTERS:
        elements.scatter_(_argument(args, kwargs, 1, "dim"), _argument(args, kwargs, 2, "index"), True)
    elif id(func) in _INDEX_PUTS and not _argument(args, kwargs, 3, "accumulate"):
        elements.index_put_(tuple(_argument(args, kwargs, 1, "indices")), torch.tensor(True))
    else:
        return False
    return True


def _run_on_cpu(func: Any, on_cpu: tuple[list[Any], dict[str, Any]]) -> Any:
    with unset_fake_temporarily(), torch.no_grad():
        return func(*on_cpu[0], **on_cpu[1])


_UNKNOWN: Any = object()


def _embedding_bag_as_on_cpu(
    weight: torch.Tensor,
    indices: torch.Tensor,
    offsets: torch.Tensor,
    scale_grad_by_freq: bool = False,
    mode: int = 0,
    sparse: bool = False,
    per_sample_weights: torch.Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int = -1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``_embedding_bag`` with the bag index, bag sizes and ``max_indices`` torch's CPU kernel makes
    (``_embedding_bag_cpu_impl`` in EmbeddingBag.cpp), which autograd saves for backward; torch's meta kernel checks
    the arguments and makes the output."""
    output, *_ = aten._embedding_bag.default(
        weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights, include_last_offset,
        padding_idx,
    )  # fmt: skip
    bags, ids = output.shape[0], indices.shape[0]
    fast_sum = (weight.dtype in _FAST_EMBEDDING_BAG and weight.stride(1) == 1 and output.stride(1) == 1
                and padding_idx < 0 and (per_sample_weights is None or per_sample_weights.stride(0) == 1))  # fmt: skip
    # the fast path of mode sum adds up the rows without the bag index; elsewhere it is made one longer, then cut
    # (the storage keeps the length)
    offset2bag = offsets.new_empty(0) if mode == 0 and fast_sum else offsets.new_empty(ids + 1).resize_(ids)
    bag_size = offsets.new_empty(offsets.shape[0]).resize_(bags)  # one per offset, the last cut off as a bag
    max_indices = offsets.new_empty((bags, weight.shape[1]) if mode == 2 else (bags,))
    return output, offset2bag, bag_size, max_indices


# Products whose tensor operands every device takes in one dtype (a CPU or CUDA kernel refuses a float16 input to a
# float32 weight, and autocast casts both first), and whose meta kernels do not check it (they give a result in one
# of the dtypes); by id, as _INDEXING. bmm, baddbmm, addmv, dot and the attention kernels check on meta themselves.
_ONE_DTYPE = {id(op) for op in (aten.mm.default, aten.addmm.default, aten._addmm_activation.default, aten.mv.default,
                                aten.addbmm.default, aten.convolution.default)}  # fmt: skip


def _check_one_dtype(func: Any, args: tuple[Any, ...]) -> None:
    """Refuse ``func``'s operands in different dtypes, as a real device does (unless autocast is on, which casts
    them on a real device: on meta it applies to nothing, and the model counts on it)."""
    dtypes = [str(arg.dtype).removeprefix("torch.") for arg in args if isinstance(arg, torch.Tensor)]
    if len(set(dtypes)) > 1 and not getattr(_running, "autocast", False):
        operands = f"{', '.join(dtypes[:-1])} and {dtypes[-1]}"
        raise RuntimeError(f"{func.overloadpacket.__name__} takes operands of one dtype, not {operands}")


# BatchNorm's kernels, whose output the devices' kernels lay out in its input's suggested memory format and whose
# statistics for backward torch's CPU kernel leaves empty in eval mode; by id, as _INDEXING
_BATCH_NORM = {
    id(op)
    for op in (aten.native_batch_norm.default, aten._native_batch_norm_legit_no_training.default,
               aten._native_batch_norm_legit.default, aten._native_batch_norm_legit.no_stats)
}  # fmt: skip


def _in_eval(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call of one of :data:`_BATCH_NORM` normalises with the running statistics (eval mode)."""
    if func is aten._native_batch_norm_legit_no_training.default:
        return True
    if func is aten._native_batch_norm_legit.no_stats:  # the batch's statistics alone
        return False
    return not (args[5] if len(args) > 5 else kwargs["training"])


def _strides_in_format(tensor: torch.Tensor, memory_format: torch.memory_format) -> tuple[int, ...]:
    """The strides a new tensor of ``tensor``'s shape has in ``memory_format``."""
    with unset_fake_temporarily():
        return torch.empty(tensor.shape, device="meta", memory_format=memory_format).stride()


_MASKED_SELECT = aten.masked_select.default

# ops whose second argument is a list of indices, a boolean mask among them standing for the positions it holds;
# by id: an op overload hashes in Python, and every op of the forward is looked up
_INDEXING = {id(op) for op in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
                               aten._index_put_impl_.default)}  # fmt: skip


def _pack_padded_sequence(
    values: _Values, input: torch.Tensor, lengths: torch.Tensor, batch_first: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``_pack_padded_sequence`` of a fake ``input`` by ``lengths`` whose values are known (a cpu tensor, as torch
    takes them): the packed data a fake tensor of the rows torch's kernel packs, and the batch sizes a real cpu
    tensor, as torch makes them, which the kernels that read a packed sequence (an LSTM's, ``pad_packed_sequence``)
    read on the cpu. None where the lengths have no values known: the fake tensors refuse it.

    The batch sizes are the kernel's own, and its checks too (the lengths' dtype, sorted, none 0), run on the cpu on
    one step of the batch, a single element expanded: they follow the lengths alone. The data holds a row for each
    sequence at each step up to the input's length (the kernel's slices stop there).
    """
    known = values._value(lengths)
    if known is _UNKNOWN or not isinstance(input, FakeTensor):
        return None
    steps_dim = 1 if batch_first else 0
    with unset_fake_temporarily():
        if input.dim() < 2 or input.numel() == 0:  # the kernel refuses it, as it refuses the input
            probe = torch.zeros((), dtype=torch.bool).expand(input.shape)
        else:
            one_step = list(input.shape[:2])
            one_step[steps_dim] = 1
            probe = torch.zeros((), dtype=torch.bool).expand(one_step)
        _, batch_sizes = _PACK_PADDED_SEQUENCE(probe, known, batch_first)
        rows = int(batch_sizes[: input.shape[steps_dim]].sum())
    return input.new_empty((rows, *input.shape[2:])), batch_sizes


def _without_values(tensor: torch.Tensor) -> bool:
    """A meta or fake tensor (a fake one the forward made on the cpu too)."""
    return isinstance(tensor, FakeTensor) or tensor.is_meta


def _positions(indices: list[torch.Tensor | None], masks: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """``indices`` with each boolean mask (whose values are ``masks``' item at its place) replaced by the positions
    it holds, one tensor a dimension, as torch expands them itself: found on the cpu, where the values are (a fake
    tensor has none)."""
    with unset_fake_temporarily():
        return [
            item
            for index, mask in zip(indices, masks, strict=True)
            for item in (mask.nonzero().unbind(1) if mask is not None else (index,))
        ]


def _on_the_cpu_alone(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether an op makes or takes real cpu tensors alone: no meta or fake tensor among its arguments (nor in a list
    of them), and a cpu ``device`` when it names one (a factory's default is the cpu)."""
    device = kwargs.get("device")
    if device is not None and torch.device(device).type != "cpu":
        return False
    for value in chain(args, kwargs.values()):
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, torch.Tensor) and (_without_values(item) or item.device.type != "cpu"):
                return False
    return True


def _grouped_mm_on_meta(
    mat_a: torch.Tensor,
    mat_b: torch.Tensor,
    offs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor | None:
    """The result of float32 and float16 operands on meta, refused as torch's CPU kernel refuses them (in its words
    where it has them); None for the others, which torch's own meta kernel takes (bfloat16) or refuses."""
    dtype = mat_a.dtype
    if not (_without_values(mat_a) and _without_values(mat_b)) or dtype not in _GROUPED_MM_DTYPES:
        return None
    if mat_b.dtype != dtype:
        raise RuntimeError(f"_grouped_mm takes operands of one dtype, not {dtype} and {mat_b.dtype}")
    if bias is not None:
        raise RuntimeError("Bias not supported yet")
    if out_dtype not in (None, dtype):
        raise RuntimeError("Grouped gemm output dtype must match `mat_a` dtype")
    if offs is not None and (offs.dim() != 1 or offs.dtype != torch.int32):
        raise RuntimeError(f"Offsets have to be a 1-D int32 tensor, not {offs.dim()}-D {offs.dtype}")
    size = grouped_mm_size(mat_a, mat_b, offs)
    if size is None:
        offsets = "" if offs is None else f" with offsets of shape {list(offs.shape)}"
        raise RuntimeError(f"_grouped_mm cannot multiply {list(mat_a.shape)} by {list(mat_b.shape)}{offsets}")
    if not (_layout_fits(mat_a) and _layout_fits(mat_b)):
        raise RuntimeError("strides should be multiple of 16 bytes")
    return torch.empty(size, dtype=dtype, device=mat_a.device)

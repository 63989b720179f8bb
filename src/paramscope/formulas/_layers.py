"""The closed-form parameter counts of torch.nn's layers, one small function each, with the arithmetic as text.

Arguments are the torch constructor's, named alike, so ``paramscope formula conv2d in_channels=3 …`` reads like the
Python call. Where a constructor takes an object the count depends on, the formula takes what matters of it
instead: the number of class weights of a loss (``weight_elements``), whether a Transformer stack ends in a
LayerNorm (``norm``, ``norm_bias``). Each function's comment names the tensors the count comes from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._registry import REGISTRY, FormulaError, Ratio, Shapes, Tally, Terms, num, register, register_structural

_DEVICE = ("device", "dtype")


def _tensors(tally: Tally, prefix: str = "") -> Shapes:
    """The tensors of a formula that knows them (every one composed below does), named as its parent names them:
    ``weight`` of ``out_proj`` is ``out_proj.weight``."""
    assert tally.tensors is not None
    return {f"{prefix}{name}": shape for name, shape in tally.tensors().items()}


def _children(parts: Mapping[str, Tally], *, sizes: bool = False) -> Shapes:
    """The tensors of a layer made of children (those whose sizes are checked, with ``sizes``), each child's under
    its name."""
    shapes: Shapes = {}
    for label, part in parts.items():
        listed = part.checked_sizes() if sizes else _tensors(part)
        shapes |= {f"{label}.{name}": shape for name, shape in listed.items()}
    return shapes


def _at_least_one(layer: str, **sizes: int) -> None:
    """FormulaError for a size torch refuses at 0 (most others it accepts: a 0-size tensor has no elements)."""
    for name, value in sizes.items():
        if value < 1:
            raise FormulaError(f"{layer}: {name} must be at least 1, not {value}")


# --- Linear family -------------------------------------------------------------------------------------------------


@register("Linear", ignored=_DEVICE)
def linear(in_features: int, out_features: int, bias: bool = True) -> Tally:
    # weight (out, in), bias (out)
    terms = Terms().product(out_features, in_features)
    if bias:
        terms.product(out_features)
    return Tally(terms, tensors=lambda: {"weight": (out_features, in_features)} | _bias(bias, out_features))


def _bias(bias: bool, size: int) -> Shapes:
    return {"bias": (size,)} if bias else {}


@register("Bilinear", ignored=_DEVICE)
def bilinear(in1_features: int, in2_features: int, out_features: int, bias: bool = True) -> Tally:
    # weight (out, in1, in2), bias (out)
    _at_least_one("Bilinear", in1_features=in1_features)  # torch checks only this one (its init divides by it)
    terms = Terms().product(out_features, in1_features, in2_features)
    if bias:
        terms.product(out_features)
    return Tally(
        terms, tensors=lambda: {"weight": (out_features, in1_features, in2_features)} | _bias(bias, out_features)
    )


# --- Convolutions --------------------------------------------------------------------------------------------------


_PADDING_STRINGS = ("valid", "same")
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _one_of(layer: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        shown = f"one of {', '.join(map(repr, choices))}" if len(choices) > 1 else f"only {choices[0]!r}"
        raise FormulaError(f"{layer}: {name}={value!r} is refused by torch: it takes {shown}")


def _validate_conv(layer: str, given: Mapping[str, Any]) -> None:
    """What torch's _ConvNd refuses of the arguments the count ignores: a padding string it does not know, 'same'
    with a stride, a padding mode it does not know, and any but zeros for a transposed convolution."""
    padding = given.get("padding", 0)
    if isinstance(padding, str):
        _one_of(layer, "padding", padding, _PADDING_STRINGS)
        stride = given.get("stride", 1)
        if padding == "same" and any(
            step != 1 for step in (stride if isinstance(stride, (tuple, list)) else (stride,))
        ):
            raise FormulaError(
                f"{layer}: padding='same' is refused by torch for strided convolutions (stride={stride!r})"
            )
    modes = ("zeros",) if layer.startswith("ConvTranspose") else _PADDING_MODES
    _one_of(layer, "padding_mode", given.get("padding_mode", "zeros"), modes)


def _register_conv(name: str, dims: int, transposed: bool) -> None:
    ignored = ("stride", "padding", "dilation", "padding_mode", *_DEVICE) + (("output_padding",) if transposed else ())

    @register(name, ignored=ignored, validate=_validate_conv)
    def conv(
        in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...], groups: int = 1, bias: bool = True
    ) -> Tally:
        # Conv: weight (out, in/groups, *k); ConvTranspose: weight (in, out/groups, *k); bias (out)
        kernel = (kernel_size,) * dims if isinstance(kernel_size, int) else kernel_size
        if len(kernel) != dims:
            raise FormulaError(f"{name}: kernel_size={kernel_size!r} must be one int or {dims} ints")
        _at_least_one(name, groups=groups)
        if in_channels % groups or out_channels % groups:
            raise FormulaError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by "
                f"groups ({groups})"
            )
        first, second = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        terms = Terms().product(first, Ratio(second, groups), *kernel)
        if bias:
            terms.product(out_channels)
        return Tally(terms, tensors=lambda: {"weight": (first, second // groups, *kernel)} | _bias(bias, out_channels))


for _dims in (1, 2, 3):
    _register_conv(f"Conv{_dims}d", _dims, transposed=False)
    _register_conv(f"ConvTranspose{_dims}d", _dims, transposed=True)


# --- Normalisation -------------------------------------------------------------------------------------------------


def _affine(shape: tuple[int, ...], affine: bool, bias: bool) -> Tally:
    # weight (shape) and, unless bias=False, bias (shape); a 0-d shape has one element
    terms = Terms()
    if affine:
        factors = shape or (1,)
        terms.product(2, *factors) if bias else terms.product(*factors)
    names = ("weight", "bias") if bias else ("weight",)
    return Tally(terms, tensors=lambda: dict.fromkeys(names, shape) if affine else {})


def _running_stats(features: int, track_running_stats: bool) -> Tally:
    # running_mean (C), running_var (C), num_batches_tracked (one int64)
    terms = Terms()
    if track_running_stats:
        terms.product(2, features).product(1)
    statistics: Shapes = {"running_mean": (features,), "running_var": (features,), "num_batches_tracked": ()}
    return Tally(terms, tensors=lambda: dict(statistics) if track_running_stats else {})


def _register_batch_norm(name: str, affine_default: bool, stats_default: bool, sync: bool = False) -> None:
    ignored = ("eps", "momentum", *_DEVICE) + (("process_group",) if sync else ())

    @register(name, ignored=ignored)
    def batch_norm(
        num_features: int, affine: bool = affine_default, track_running_stats: bool = stats_default, bias: bool = True
    ) -> Tally:
        weights, statistics = _affine((num_features,), affine, bias), _running_stats(num_features, track_running_stats)
        return Tally(weights.params, statistics.params, lambda: _tensors(weights) | _tensors(statistics))


for _name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"):
    _register_batch_norm(_name, affine_default=True, stats_default=True)
_register_batch_norm("SyncBatchNorm", affine_default=True, stats_default=True, sync=True)
for _name in ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"):
    _register_batch_norm(_name, affine_default=False, stats_default=False)


def _shape(normalized_shape: int | tuple[int, ...]) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape


@register("LayerNorm", ignored=("eps", *_DEVICE))
def layer_norm(normalized_shape: int | tuple[int, ...], elementwise_affine: bool = True, bias: bool = True) -> Tally:
    return _affine(_shape(normalized_shape), elementwise_affine, bias)


@register("RMSNorm", ignored=("eps", *_DEVICE))
def rms_norm(normalized_shape: int | tuple[int, ...], elementwise_affine: bool = True) -> Tally:
    # weight only
    return _affine(_shape(normalized_shape), elementwise_affine, bias=False)


@register("GroupNorm", ignored=("eps", *_DEVICE))
def group_norm(num_groups: int, num_channels: int, affine: bool = True, bias: bool = True) -> Tally:
    _at_least_one("GroupNorm", num_groups=num_groups)
    if num_channels % num_groups:
        raise FormulaError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
    return _affine((num_channels,), affine, bias)


# --- Embeddings and activations with weights ------------------------------------------------------------------------

_EMBEDDING_IGNORED = ("padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse", "_freeze", *_DEVICE)


def _validate_embedding(layer: str, given: Mapping[str, Any]) -> None:
    """torch's refusal of a padding_idx outside the table (negative ones count from its end)."""
    index, rows = given.get("padding_idx"), given["num_embeddings"]
    if isinstance(index, int) and not isinstance(index, bool) and not -rows <= index < rows:
        raise FormulaError(f"{layer}: padding_idx={index} is refused by torch: it must be within num_embeddings "
                           f"({-rows} to {rows - 1})")  # fmt: skip


@register("Embedding", ignored=_EMBEDDING_IGNORED, validate=_validate_embedding)
@register("EmbeddingBag", ignored=(*_EMBEDDING_IGNORED, "mode", "include_last_offset"), validate=_validate_embedding)
def embedding(num_embeddings: int, embedding_dim: int) -> Tally:
    # weight (num_embeddings, embedding_dim)
    return Tally(
        Terms().product(num_embeddings, embedding_dim), tensors=lambda: {"weight": (num_embeddings, embedding_dim)}
    )


@register("PReLU", ignored=("init", *_DEVICE))
def prelu(num_parameters: int = 1) -> Tally:
    # weight (num_parameters): one slope per channel, or one shared
    return Tally(Terms().product(num_parameters), tensors=lambda: {"weight": (num_parameters,)})


# --- Attention ------------------------------------------------------------------------------------------------------


def _read_attention(module: Any) -> dict[str, Any]:
    return {
        "embed_dim": module.embed_dim,
        "num_heads": module.num_heads,
        "kdim": module.kdim,
        "vdim": module.vdim,
        "bias": module.in_proj_bias is not None,
        "add_bias_kv": module.bias_k is not None,
    }


@register("MultiheadAttention", ignored=("dropout", "add_zero_attn", "batch_first", *_DEVICE), read=_read_attention)
def multihead_attention(
    embed_dim: int,
    num_heads: int,
    bias: bool = True,
    add_bias_kv: bool = False,
    kdim: int | None = None,
    vdim: int | None = None,
) -> Tally:
    _at_least_one("MultiheadAttention", embed_dim=embed_dim, num_heads=num_heads)
    if embed_dim % num_heads:
        raise FormulaError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    e = embed_dim
    k = e if kdim is None else kdim
    v = e if vdim is None else vdim
    terms = Terms()
    packed = k == e and v == e
    if packed:  # one packed in_proj_weight (3E, E)
        terms.product(3, e, e)
    else:  # q_proj_weight (E, E), k_proj_weight (E, kdim), v_proj_weight (E, vdim)
        terms.product(e, e).product(e, k).product(e, v)
    if bias:
        terms.product(3, e)  # in_proj_bias
    if add_bias_kv:
        terms.product(2, e)  # bias_k, bias_v (1, 1, E) each
    terms.product(e, e)  # out_proj.weight
    if bias:
        terms.product(e)  # out_proj.bias

    def tensors() -> Shapes:
        shapes: Shapes = {"in_proj_weight": (3 * e, e)} if packed else {
            "q_proj_weight": (e, e), "k_proj_weight": (e, k), "v_proj_weight": (e, v)
        }  # fmt: skip
        if bias:
            shapes["in_proj_bias"] = (3 * e,)
        if add_bias_kv:
            shapes |= {"bias_k": (1, 1, e), "bias_v": (1, 1, e)}
        return shapes | _tensors(linear(e, e, bias), "out_proj.")

    return Tally(terms, tensors=tensors)


# --- Recurrent layers -----------------------------------------------------------------------------------------------


def _one_layer(gates: int, hidden_size: int, inputs: int, outputs: int, bias: bool, proj_size: int) -> Terms:
    # weight_ih (gH, in), weight_hh (gH, H_out), bias_ih and bias_hh (gH each); with a projection, weight_hr (P, H)
    terms = Terms().product(gates, hidden_size, inputs).product(gates, hidden_size, outputs)
    if bias:
        terms.product(2, gates, hidden_size)
    if proj_size:
        terms.product(proj_size, hidden_size)
    return terms


def _layer_tensors(
    gates: int, hidden_size: int, inputs: int, outputs: int, bias: bool, proj_size: int, suffix: str
) -> Shapes:
    # named as torch names them: weight_ih_l0, bias_hh_l1_reverse, …; a cell's without a suffix
    tensors: Shapes = {
        f"weight_ih{suffix}": (gates * hidden_size, inputs),
        f"weight_hh{suffix}": (gates * hidden_size, outputs),
    }
    if bias:
        tensors |= {f"bias_ih{suffix}": (gates * hidden_size,), f"bias_hh{suffix}": (gates * hidden_size,)}
    if proj_size:
        tensors[f"weight_hr{suffix}"] = (proj_size, hidden_size)
    return tensors


def _recurrent(
    name: str,
    gates: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    bidirectional: bool,
    proj_size: int,
) -> Tally:
    # Layer 0 reads the input; later layers read H_out × directions, where H_out is proj_size or hidden_size.
    _at_least_one(name, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    if proj_size and proj_size >= hidden_size:
        raise FormulaError(f"{name}: proj_size ({proj_size}) must be smaller than hidden_size ({hidden_size})")
    directions = 2 if bidirectional else 1
    out = proj_size or hidden_size

    def tensors(layers: int = num_layers) -> Shapes:
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(layers):
            inputs = input_size if layer == 0 else out * directions
            for suffix in (f"_l{layer}", f"_l{layer}_reverse")[:directions]:
                shapes |= _layer_tensors(gates, hidden_size, inputs, out, bias, proj_size, suffix)
        return shapes

    def sizes() -> Shapes:  # layer 1 stands for the later ones: they read what it reads
        return tensors(min(num_layers, 2))

    first = _one_layer(gates, hidden_size, input_size, out, bias, proj_size)
    if num_layers == 1 and directions == 1:
        return Tally(first, tensors=tensors, sizes=sizes)
    both = "2 directions × " if directions == 2 else ""
    terms = Terms().add(f"{both}({first.expression()}) [layer 0]", directions * first.total)
    if num_layers > 1:
        rest = _one_layer(gates, hidden_size, out * directions, out, bias, proj_size)
        repeat = f"{num_layers - 1:,} × " if num_layers > 2 else ""
        label = "layer 1" if num_layers == 2 else f"layers 1–{num_layers - 1:,}"
        terms.add(f"{repeat}{both}({rest.expression()}) [{label}]", (num_layers - 1) * directions * rest.total)
    return Tally(terms, tensors=tensors, sizes=sizes)


_RNN_IGNORED = ("dropout", "batch_first", *_DEVICE)
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _validate_rnn(layer: str, given: Mapping[str, Any]) -> None:
    """What torch's RNNBase refuses of the arguments the count ignores: a dropout that is no probability, and RNN's
    nonlinearity other than tanh or relu."""
    dropout = given.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
        raise FormulaError(f"{layer}: dropout={dropout!r} is refused by torch: it must be a number in range [0, 1]")
    if layer == "RNN":
        _one_of(layer, "nonlinearity", given.get("nonlinearity", "tanh"), ("tanh", "relu"))


def _register_rnn(name: str, gates: int) -> None:
    ignored = (*_RNN_IGNORED, "nonlinearity") if name == "RNN" else _RNN_IGNORED

    @register(name, ignored=ignored, validate=_validate_rnn)
    def rnn(
        input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, bidirectional: bool = False
    ) -> Tally:
        return _recurrent(name, gates, input_size, hidden_size, num_layers, bias, bidirectional, 0)


_register_rnn("RNN", 1)
_register_rnn("GRU", 3)


@register("LSTM", ignored=_RNN_IGNORED, validate=_validate_rnn)
def lstm(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> Tally:
    return _recurrent("LSTM", 4, input_size, hidden_size, num_layers, bias, bidirectional, proj_size)


@register("RNNBase", ignored=(*_RNN_IGNORED, "nonlinearity"))
def rnn_base(
    mode: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> Tally:
    if mode not in _GATES:
        raise FormulaError(f"RNNBase: mode={mode!r} is not one of {', '.join(sorted(_GATES))}")
    return _recurrent("RNNBase", _GATES[mode], input_size, hidden_size, num_layers, bias, bidirectional, proj_size)


def _register_cell(name: str, gates: int) -> None:
    ignored = (*_DEVICE, "nonlinearity") if name == "RNNCell" else _DEVICE

    @register(name, ignored=ignored)
    def cell(input_size: int, hidden_size: int, bias: bool = True) -> Tally:
        return rnn_cell_base(input_size, hidden_size, bias, gates)


_register_cell("RNNCell", 1)
_register_cell("LSTMCell", 4)
_register_cell("GRUCell", 3)


def _read_cell_base(module: Any) -> dict[str, Any]:
    # torch does not keep num_chunks: weight_ih has num_chunks × hidden_size rows
    if not module.hidden_size:
        raise FormulaError("RNNCellBase: hidden_size is 0, so num_chunks cannot be read off its weights")
    return {
        "input_size": module.input_size,
        "hidden_size": module.hidden_size,
        "bias": module.bias,
        "num_chunks": module.weight_ih.shape[0] // module.hidden_size,
    }


@register("RNNCellBase", ignored=_DEVICE, read=_read_cell_base)
def rnn_cell_base(input_size: int, hidden_size: int, bias: bool, num_chunks: int) -> Tally:
    terms = _one_layer(num_chunks, hidden_size, input_size, hidden_size, bias, 0)
    return Tally(terms, tensors=lambda: _layer_tensors(num_chunks, hidden_size, input_size, hidden_size, bias, 0, ""))


# --- Transformer family: the sum of their children's formulas ------------------------------------------------------


def _validate_transformer(layer: str, given: Mapping[str, Any]) -> None:
    """What torch refuses of the arguments the count ignores: an activation named other than relu or gelu (a
    function is taken as it is), and a dropout that is no probability."""
    activation = given.get("activation", "relu")
    if isinstance(activation, str):
        _one_of(layer, "activation", activation, ("relu", "gelu"))
    dropout = given.get("dropout", 0.1)
    if isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and not 0 <= dropout <= 1:
        raise FormulaError(f"{layer}: dropout={dropout!r} is refused by torch: it must be between 0 and 1")


_TRANSFORMER_IGNORED = (
    "dropout", "activation", "layer_norm_eps", "batch_first", "norm_first", "enable_nested_tensor", "mask_check",
    *_DEVICE,
)  # fmt: skip


def _part(terms: Terms, label: str, part: Tally, repeat: int = 1) -> Terms:
    prefix = f"{num(repeat)} × " if repeat != 1 else ""  # "0 × layer 35,144" too: the text must add up
    return terms.add(f"{prefix}{label} {num(part.params.total)}", repeat * part.params.total)


def _layer(name: str, d_model: int, nhead: int, dim_feedforward: int, bias: bool, decoder: bool) -> Tally:
    _at_least_one(name, d_model=d_model, nhead=nhead)
    if d_model % nhead:
        raise FormulaError(f"{name}: d_model ({d_model}) must be divisible by nhead ({nhead})")
    attention, norm = multihead_attention(d_model, nhead, bias=bias), layer_norm(d_model, bias=bias)
    attentions = ("self_attn", "multihead_attn") if decoder else ("self_attn",)
    norms = ("norm1", "norm2", "norm3") if decoder else ("norm1", "norm2")
    feed_forward = {
        "linear1": linear(d_model, dim_feedforward, bias),
        "linear2": linear(dim_feedforward, d_model, bias),
    }
    parts = dict.fromkeys(attentions, attention) | feed_forward | dict.fromkeys(norms, norm)
    terms = Terms()
    for label in (*attentions, *feed_forward):
        _part(terms, label, parts[label])
    _part(terms, "norm", norm, repeat=len(norms))
    return Tally(terms, tensors=lambda: _children(parts))


def _read_layer(module: Any) -> dict[str, Any]:
    return {
        "d_model": module.linear1.in_features,
        "nhead": module.self_attn.num_heads,
        "dim_feedforward": module.linear1.out_features,
        "bias": module.linear1.bias is not None,
    }


def _register_transformer_layer(name: str, decoder: bool) -> None:
    @register(name, ignored=_TRANSFORMER_IGNORED, read=_read_layer, validate=_validate_transformer)
    def transformer_layer(d_model: int, nhead: int, dim_feedforward: int = 2048, bias: bool = True) -> Tally:
        return _layer(name, d_model, nhead, dim_feedforward, bias, decoder)


_register_transformer_layer("TransformerEncoderLayer", decoder=False)
_register_transformer_layer("TransformerDecoderLayer", decoder=True)


def _final_norm(stack: Any, d_model: int) -> dict[str, bool]:
    """``norm``/``norm_bias`` of a stack's final norm; FormulaError for a norm the formula does not describe."""
    norm = stack.norm
    if norm is None:
        return {"norm": False, "norm_bias": True}
    if type(norm).__name__ != "LayerNorm" or tuple(norm.normalized_shape) != (d_model,) or not norm.elementwise_affine:
        raise FormulaError(f"its final norm is {type(norm).__name__}, not an affine LayerNorm({d_model})")
    return {"norm": True, "norm_bias": norm.bias is not None}


def _read_stack(module: Any) -> dict[str, Any]:
    if not len(module.layers):
        raise FormulaError("it has no layers to read the layer's sizes from (num_layers 0)")
    layer = _read_layer(module.layers[0])
    return {**layer, "num_layers": module.num_layers, **_final_norm(module, layer["d_model"])}


def _stack(name: str, layer: str, decoder: bool) -> Callable[..., Tally]:
    @register(name, ignored=_TRANSFORMER_IGNORED, read=_read_stack, validate=_validate_transformer)
    def transformer_stack(
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int = 2048,
        bias: bool = True,
        norm: bool = False,
        norm_bias: bool = True,
    ) -> Tally:
        # num_layers copies of the layer, then the optional final LayerNorm(d_model, bias=norm_bias)
        one = _layer(layer, d_model, nhead, dim_feedforward, bias, decoder)
        terms = _part(Terms(), "layer", one, repeat=num_layers)
        final = layer_norm(d_model, bias=norm_bias)
        if norm:
            _part(terms, "norm", final)

        def tensors(layers: int = num_layers) -> Shapes:  # listed only when asked for: num_layers may be any number
            stack = {f"layers.{i}": one for i in range(layers)}
            return _children(stack | {"norm": final} if norm else stack)

        return Tally(terms, tensors=tensors, sizes=lambda: tensors(min(num_layers, 1)))  # the layers are alike

    return transformer_stack


transformer_encoder = _stack("TransformerEncoder", "TransformerEncoderLayer", decoder=False)
transformer_decoder = _stack("TransformerDecoder", "TransformerDecoderLayer", decoder=True)


def _read_transformer(module: Any) -> dict[str, Any]:
    encoder, decoder = _read_stack(module.encoder), _read_stack(module.decoder)
    shared = ("d_model", "nhead", "dim_feedforward", "bias")
    if not (encoder["norm"] and decoder["norm"]) or any(encoder[key] != decoder[key] for key in shared):
        raise FormulaError("its encoder and decoder are not the stacks nn.Transformer builds (a custom one?)")
    return {
        **{key: encoder[key] for key in shared},
        "num_encoder_layers": encoder["num_layers"],
        "num_decoder_layers": decoder["num_layers"],
    }


@register("Transformer", ignored=_TRANSFORMER_IGNORED, read=_read_transformer, validate=_validate_transformer)
def transformer(
    d_model: int = 512,
    nhead: int = 8,
    num_encoder_layers: int = 6,
    num_decoder_layers: int = 6,
    dim_feedforward: int = 2048,
    bias: bool = True,
) -> Tally:
    # encoder and decoder stacks, each closed by a LayerNorm(d_model, bias=bias), as nn.Transformer builds them
    stacks = {"dim_feedforward": dim_feedforward, "bias": bias, "norm": True, "norm_bias": bias}
    encoder = transformer_encoder(d_model=d_model, nhead=nhead, num_layers=num_encoder_layers, **stacks)
    decoder = transformer_decoder(d_model=d_model, nhead=nhead, num_layers=num_decoder_layers, **stacks)
    terms = _part(_part(Terms(), "encoder", encoder), "decoder", decoder)
    parts = {"encoder": encoder, "decoder": decoder}
    return Tally(terms, tensors=lambda: _children(parts), sizes=lambda: _children(parts, sizes=True))


# --- Output layers with weights -------------------------------------------------------------------------------------


def _read_adaptive(module: Any) -> dict[str, Any]:
    return {
        "in_features": module.in_features,
        "n_classes": module.n_classes,
        "cutoffs": tuple(module.cutoffs[:-1]),  # torch appends n_classes to the cutoffs it was given
        "div_value": module.div_value,
        "head_bias": module.head_bias,
    }


@register("AdaptiveLogSoftmaxWithLoss", ignored=_DEVICE, read=_read_adaptive)
def adaptive_log_softmax(
    in_features: int, n_classes: int, cutoffs: tuple[int, ...], div_value: float = 4.0, head_bias: bool = False
) -> Tally:
    # head: Linear(in, shortlist + clusters); cluster i: Linear(in, in // div^(i+1), no bias), then
    # Linear(that, cluster size, no bias)
    name = "AdaptiveLogSoftmaxWithLoss"
    if not cutoffs or list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= n_classes:
        raise FormulaError(f"{name}: cutoffs must be increasing, positive and below n_classes ({n_classes})")
    if not div_value > 0:
        raise FormulaError(f"{name}: div_value must be a positive number, not {div_value!r}")
    bounds = [*cutoffs, n_classes]
    head = linear(in_features, cutoffs[0] + len(cutoffs), head_bias)
    terms = _part(Terms(), "head", head)
    tails: Shapes = {}
    for i in range(len(cutoffs)):
        try:
            scale = div_value ** (i + 1)
        except OverflowError:  # a float power past 1.8e308: torch's constructor raises it too
            raise FormulaError(f"{name}: div_value={div_value!r} to the power {i + 1} is out of range (torch's "
                               "constructor raises OverflowError)") from None  # fmt: skip
        hidden = in_features // scale if scale > 0 and math.isfinite(in_features / scale) else math.inf
        if not math.isfinite(hidden) or hidden > 2**63 - 1:
            raise FormulaError(f"{name}: div_value={div_value!r} makes cluster {i} wider than any tensor")
        size = bounds[i + 1] - bounds[i]
        terms.product(int(hidden), in_features + size, label=f"cluster {i}")
        tails |= {f"tail.{i}.0.weight": (int(hidden), in_features), f"tail.{i}.1.weight": (size, int(hidden))}
    return Tally(terms, tensors=lambda: _tensors(head, "head.") | tails)


def _buffer_elements(module: Any) -> int:
    return sum(buffer.numel() for buffer in module._buffers.values() if buffer is not None)


def _class_weights(weight_elements: int) -> Terms:
    return Terms().add(f"{num(weight_elements)} class weights", weight_elements) if weight_elements else Terms()


def _read_linear_cross_entropy(module: Any) -> dict[str, Any]:
    return {
        "in_features": module.linear.in_features,
        "num_classes": module.num_classes,
        "out_features": tuple(module.out_features),
        "bias": module.linear.bias is not None,
        "weight_elements": _buffer_elements(module),
    }


@register(
    "LinearCrossEntropyLoss",
    ignored=("reduction", "ignore_index", "label_smoothing", "options", *_DEVICE),
    read=_read_linear_cross_entropy,
)
def linear_cross_entropy(
    in_features: int,
    num_classes: int,
    out_features: tuple[int, ...] | None = None,
    bias: bool = False,
    weight_elements: int = 0,
) -> Tally:
    # one Linear(in, num_classes × prod(out_features)); the optional class weights are a buffer
    outputs = num_classes * math.prod(out_features or ())
    projection = linear(in_features, outputs, bias)
    terms = _part(Terms(), "linear", projection)

    def tensors() -> Shapes:
        return _tensors(projection, "linear.")

    # the class weights' shape is not known here, only their number: the projection's sizes are checked all the same
    return Tally(terms, _class_weights(weight_elements), None if weight_elements else tensors, tensors)


# --- Layers without parameters --------------------------------------------------------------------------------------


def _read_loss(module: Any) -> dict[str, Any]:
    return {"weight_elements": _buffer_elements(module)}


_LOSSES_WITH_WEIGHTS = (
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss", "NLLLoss",
    "NLLLoss2d",
)  # fmt: skip
# `weight` itself is refused: the formula takes its size (weight_elements), which a tensor argument cannot give.
_LOSS_IGNORED = ("size_average", "reduce", "reduction", "ignore_index", "label_smoothing", "p", "margin")


@register(*_LOSSES_WITH_WEIGHTS, ignored=_LOSS_IGNORED, read=_read_loss)
def weighted_loss(weight_elements: int = 0) -> Tally:
    # no parameters; the optional class weights (and BCEWithLogitsLoss's pos_weight) are buffers
    return Tally(Terms(), _class_weights(weight_elements))


_PARAMETER_FREE = (
    # activations
    "CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "LogSigmoid",
    "LogSoftmax", "Mish", "RReLU", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softmax", "Softmax2d", "Softmin",
    "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink", "Threshold",
    # pooling
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "FractionalMaxPool2d", "FractionalMaxPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "MaxUnpool1d", "MaxUnpool2d",
    "MaxUnpool3d",
    # dropout
    "AlphaDropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "FeatureAlphaDropout",
    # padding
    "CircularPad1d", "CircularPad2d", "CircularPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
    "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
    # reshaping, resampling, distances
    "ChannelShuffle", "CosineSimilarity", "Flatten", "Fold", "Identity", "PairwiseDistance", "PixelShuffle",
    "PixelUnshuffle", "Unflatten", "Unfold", "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d",
    # normalisation computed from the input alone
    "CrossMapLRN2d", "LocalResponseNorm",
    # losses without weights
    "CTCLoss", "CosineEmbeddingLoss", "GaussianNLLLoss", "HingeEmbeddingLoss", "HuberLoss", "KLDivLoss", "L1Loss",
    "MSELoss", "MarginRankingLoss", "MultiLabelMarginLoss", "PoissonNLLLoss", "SmoothL1Loss", "SoftMarginLoss",
    "TripletMarginLoss", "TripletMarginWithDistanceLoss",
)  # fmt: skip


# A parameter-free layer has no parameters whatever it is built with, so its constructor arguments (which differ
# from layer to layer and from one torch release to the next) are accepted without being checked.
@register(*_PARAMETER_FREE, ignores_any=True)
def parameter_free() -> Tally:
    return Tally(Terms(), tensors=dict)


register_structural(
    "container",
    "a container: its parameters live in its children, each counted by its own formula",
    "Module", "Container", "Sequential", "ModuleList", "ModuleDict", "DataParallel",
)  # fmt: skip
register_structural(
    "direct",
    "holds any number of parameters of any shape: they are counted directly",
    "ParameterList", "ParameterDict",
)  # fmt: skip


# A lazy layer becomes its plain class at its first forward pass (LazyLinear → Linear, in_features read off the
# input), so its formula is that class's, with the sizes it has then.
for _name in (
    "Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
):  # fmt: skip
    REGISTRY.add_alias(f"Lazy{_name}", _name)

"""The closed-form parameter counts of torch.nn's layers, one small function each, with the arithmetic as text.

Argument names and defaults are those of the torch constructors, so ``paramscope formula conv2d in_channels=3 …``
reads like the Python call. Each function's comment gives the tensors the count comes from.
"""

from __future__ import annotations

import math
from typing import Any

from ._registry import Count, FormulaError, Terms, count, n, register, register_structural

_DEVICE = ("device", "dtype")


# --- Linear family -------------------------------------------------------------------------------------------------


@register("Linear", ignored=_DEVICE)
def linear(layer: str, in_features: int, out_features: int, bias: bool = True) -> Count:
    # weight (out, in), bias (out)
    terms = Terms().add(f"{n(out_features)} × {n(in_features)}", out_features * in_features)
    if bias:
        terms.add(n(out_features), out_features)
    return count(layer, terms)


@register("Bilinear", ignored=_DEVICE)
def bilinear(layer: str, in1_features: int, in2_features: int, out_features: int, bias: bool = True) -> Count:
    # weight (out, in1, in2), bias (out)
    weight = out_features * in1_features * in2_features
    terms = Terms().add(f"{n(out_features)} × {n(in1_features)} × {n(in2_features)}", weight)
    if bias:
        terms.add(n(out_features), out_features)
    return count(layer, terms)


# --- Convolutions --------------------------------------------------------------------------------------------------


def _kernel(layer: str, kernel_size: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    kernel = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(kernel) != dims:
        raise FormulaError(f"{layer}: kernel_size={kernel_size!r} must be one int or {dims} ints")
    return kernel


def _groups(layer: str, in_channels: int, out_channels: int, groups: int) -> None:
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise FormulaError(
            f"{layer}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by "
            f"groups ({groups})"
        )


def _register_conv(name: str, dims: int, transposed: bool) -> None:
    ignored = ("stride", "padding", "dilation", "padding_mode", *_DEVICE) + (("output_padding",) if transposed else ())

    @register(name, ignored=ignored)
    def conv(
        layer: str,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        groups: int = 1,
        bias: bool = True,
    ) -> Count:
        # Conv: weight (out, in/groups, *k); ConvTranspose: weight (in, out/groups, *k); bias (out)
        kernel = _kernel(layer, kernel_size, dims)
        _groups(layer, in_channels, out_channels, groups)
        first, second = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        text = f"{n(first)} × {n(second)}/{groups} × " + " × ".join(n(k) for k in kernel)
        terms = Terms().add(text, first * (second // groups) * math.prod(kernel))
        if bias:
            terms.add(n(out_channels), out_channels)
        return count(layer, terms)


for _dims in (1, 2, 3):
    _register_conv(f"Conv{_dims}d", _dims, transposed=False)
    _register_conv(f"ConvTranspose{_dims}d", _dims, transposed=True)


# --- Normalisation -------------------------------------------------------------------------------------------------


def _affine(features: int, affine: bool, bias: bool, text: str | None = None) -> Terms:
    # weight (features) and, unless bias=False, bias (features)
    terms = Terms()
    if affine:
        factor = 2 if bias else 1
        terms.add(f"{factor} × {text or n(features)}", factor * features)
    return terms


def _running_stats(features: int, track_running_stats: bool) -> Terms:
    # running_mean (C), running_var (C), num_batches_tracked (one int64)
    terms = Terms()
    if track_running_stats:
        terms.add(f"2 × {n(features)}", 2 * features).add("1", 1)
    return terms


def _register_batch_norm(name: str, affine_default: bool, stats_default: bool) -> None:
    ignored = ("eps", "momentum", "process_group", *_DEVICE)

    @register(name, ignored=ignored)
    def batch_norm(
        layer: str,
        num_features: int,
        affine: bool = affine_default,
        track_running_stats: bool = stats_default,
        bias: bool = True,
    ) -> Count:
        return count(layer, _affine(num_features, affine, bias), _running_stats(num_features, track_running_stats))


for _name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"):
    _register_batch_norm(_name, affine_default=True, stats_default=True)
for _name in ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"):
    _register_batch_norm(_name, affine_default=False, stats_default=False)


def _shape(normalized_shape: int | tuple[int, ...]) -> tuple[int, str]:
    dims = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    size = math.prod(dims)
    return size, n(size) if len(dims) == 1 else "(" + " × ".join(n(d) for d in dims) + ")"


@register("LayerNorm", ignored=("eps", *_DEVICE))
def layer_norm(
    layer: str, normalized_shape: int | tuple[int, ...], elementwise_affine: bool = True, bias: bool = True
) -> Count:
    size, text = _shape(normalized_shape)
    return count(layer, _affine(size, elementwise_affine, bias, text))


@register("RMSNorm", ignored=("eps", *_DEVICE))
def rms_norm(layer: str, normalized_shape: int | tuple[int, ...], elementwise_affine: bool = True) -> Count:
    # weight only
    size, text = _shape(normalized_shape)
    return count(layer, _affine(size, elementwise_affine, bias=False, text=text))


@register("GroupNorm", ignored=("eps", *_DEVICE))
def group_norm(layer: str, num_groups: int, num_channels: int, affine: bool = True, bias: bool = True) -> Count:
    if num_groups < 1 or num_channels % num_groups:
        raise FormulaError(f"{layer}: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
    return count(layer, _affine(num_channels, affine, bias))


# --- Embeddings and activations with weights ------------------------------------------------------------------------

_EMBEDDING_IGNORED = ("padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse", "_freeze", *_DEVICE)


@register("Embedding", ignored=_EMBEDDING_IGNORED)
@register("EmbeddingBag", ignored=(*_EMBEDDING_IGNORED, "mode", "include_last_offset"))
def embedding(layer: str, num_embeddings: int, embedding_dim: int) -> Count:
    # weight (num_embeddings, embedding_dim)
    return count(layer, Terms().add(f"{n(num_embeddings)} × {n(embedding_dim)}", num_embeddings * embedding_dim))


@register("PReLU", ignored=("init", *_DEVICE))
def prelu(layer: str, num_parameters: int = 1) -> Count:
    # weight (num_parameters): one slope per channel, or one shared
    return count(layer, Terms().add(n(num_parameters), num_parameters))


# --- Attention and recurrent layers ---------------------------------------------------------------------------------


def _read_attention(module: Any) -> dict[str, Any]:
    return {
        "embed_dim": module.embed_dim,
        "num_heads": module.num_heads,
        "kdim": module.kdim,
        "vdim": module.vdim,
        "bias": module.in_proj_bias is not None,
        "add_bias_kv": module.bias_k is not None,
    }


@register(
    "MultiheadAttention",
    ignored=("dropout", "add_zero_attn", "batch_first", *_DEVICE),
    read=_read_attention,
)
def multihead_attention(
    layer: str,
    embed_dim: int,
    num_heads: int,
    bias: bool = True,
    add_bias_kv: bool = False,
    kdim: int | None = None,
    vdim: int | None = None,
) -> Count:
    if num_heads < 1 or embed_dim % num_heads:
        raise FormulaError(f"{layer}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    e, k, v = embed_dim, kdim or embed_dim, vdim or embed_dim
    terms = Terms()
    if k == e and v == e:  # one packed in_proj_weight (3E, E)
        terms.add(f"3 × {n(e)} × {n(e)}", 3 * e * e)
    else:  # q_proj_weight (E, E), k_proj_weight (E, kdim), v_proj_weight (E, vdim)
        terms.add(f"{n(e)} × ({n(e)} + {n(k)} + {n(v)})", e * (e + k + v))
    if bias:
        terms.add(f"3 × {n(e)}", 3 * e)  # in_proj_bias
    if add_bias_kv:
        terms.add(f"2 × {n(e)}", 2 * e)  # bias_k, bias_v
    terms.add(f"{n(e)} × {n(e)}", e * e)  # out_proj.weight
    if bias:
        terms.add(n(e), e)  # out_proj.bias
    return count(layer, terms)


_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "RNN": 1, "LSTM": 4, "GRU": 3}


def _recurrent(
    layer: str,
    gates: int,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    bidirectional: bool,
    proj_size: int,
) -> Count:
    # Per layer and direction: weight_ih (gH, in), weight_hh (gH, H_out), bias_ih and bias_hh (gH each) and, with a
    # projection, weight_hr (P, H). Layer 0 reads the input; later layers read H_out × directions.
    if num_layers < 1:
        raise FormulaError(f"{layer}: num_layers must be at least 1")
    if proj_size and proj_size >= hidden_size:
        raise FormulaError(f"{layer}: proj_size ({proj_size}) must be smaller than hidden_size ({hidden_size})")
    directions = 2 if bidirectional else 1
    out = proj_size or hidden_size
    gh = gates * hidden_size
    gh_text = f"{gates}×{n(hidden_size)}" if gates > 1 else n(hidden_size)

    def one_layer(inputs: int) -> Terms:
        terms = Terms().add(f"{gh_text} × ({n(inputs)} + {n(out)})", gh * (inputs + out))
        if bias:
            terms.add(f"2 × {gh_text}", 2 * gh)
        if proj_size:
            terms.add(f"{n(proj_size)} × {n(hidden_size)}", proj_size * hidden_size)
        return terms

    first = one_layer(input_size)
    if num_layers == 1 and directions == 1:
        return count(layer, first)
    both = "2 directions × " if directions == 2 else ""
    terms = Terms().add(f"{both}({first.expression()}) [layer 0]", directions * first.total)
    if num_layers > 1:
        rest = one_layer(out * directions)
        repeat = f"{num_layers - 1} × " if num_layers > 2 else ""
        label = "layer 1" if num_layers == 2 else f"layers 1–{num_layers - 1}"
        terms.add(f"{repeat}{both}({rest.expression()}) [{label}]", (num_layers - 1) * directions * rest.total)
    return count(layer, terms)


_RNN_IGNORED = ("nonlinearity", "dropout", "batch_first", *_DEVICE)


@register("RNN", "GRU", ignored=_RNN_IGNORED)
def rnn(
    layer: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, bidirectional: bool = False
) -> Count:
    return _recurrent(layer, _GATES[layer.upper()], input_size, hidden_size, num_layers, bias, bidirectional, 0)


@register("LSTM", ignored=_RNN_IGNORED)
def lstm(
    layer: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> Count:
    return _recurrent(layer, 4, input_size, hidden_size, num_layers, bias, bidirectional, proj_size)


@register("RNNBase", ignored=_RNN_IGNORED)
def rnn_base(
    layer: str,
    mode: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> Count:
    if mode not in _GATES:
        raise FormulaError(f"{layer}: mode={mode!r} is not one of {', '.join(sorted(_GATES))}")
    return _recurrent(layer, _GATES[mode], input_size, hidden_size, num_layers, bias, bidirectional, proj_size)


def _cell(layer: str, gates: int, input_size: int, hidden_size: int, bias: bool) -> Count:
    # weight_ih (gH, in), weight_hh (gH, H), bias_ih and bias_hh (gH each)
    gh = gates * hidden_size
    gh_text = f"{gates}×{n(hidden_size)}" if gates > 1 else n(hidden_size)
    terms = Terms().add(f"{gh_text} × ({n(input_size)} + {n(hidden_size)})", gh * (input_size + hidden_size))
    if bias:
        terms.add(f"2 × {gh_text}", 2 * gh)
    return count(layer, terms)


@register("RNNCell", "LSTMCell", "GRUCell", ignored=("nonlinearity", *_DEVICE))
def rnn_cell(layer: str, input_size: int, hidden_size: int, bias: bool = True) -> Count:
    return _cell(layer, {"RNNCell": 1, "LSTMCell": 4, "GRUCell": 3}[layer], input_size, hidden_size, bias)


def _read_cell_base(module: Any) -> dict[str, Any]:
    # torch does not keep num_chunks: weight_ih has num_chunks × hidden_size rows
    return {
        "input_size": module.input_size,
        "hidden_size": module.hidden_size,
        "bias": module.bias,
        "num_chunks": module.weight_ih.shape[0] // module.hidden_size,
    }


@register("RNNCellBase", ignored=_DEVICE, read=_read_cell_base)
def rnn_cell_base(layer: str, input_size: int, hidden_size: int, bias: bool, num_chunks: int) -> Count:
    return _cell(layer, num_chunks, input_size, hidden_size, bias)


# --- Transformer family: the sum of their children's formulas ------------------------------------------------------

_TRANSFORMER_IGNORED = (
    "dropout", "activation", "layer_norm_eps", "batch_first", "norm_first", "enable_nested_tensor", "mask_check",
    *_DEVICE,
)  # fmt: skip


def _part(terms: Terms, label: str, part: Count, repeat: int = 1) -> Terms:
    prefix = f"{repeat} × " if repeat > 1 else ""
    return terms.add(f"{prefix}{label} {n(part.params)}", repeat * part.params)


def _layer_terms(d_model: int, nhead: int, dim_feedforward: int, bias: bool, decoder: bool) -> Terms:
    attention = multihead_attention("MultiheadAttention", d_model, nhead, bias=bias)
    norm = layer_norm("LayerNorm", d_model, bias=bias)
    terms = _part(Terms(), "self_attn", attention)
    if decoder:
        _part(terms, "multihead_attn", attention)
    _part(terms, "linear1", linear("Linear", d_model, dim_feedforward, bias))
    _part(terms, "linear2", linear("Linear", dim_feedforward, d_model, bias))
    return _part(terms, "norm", norm, repeat=3 if decoder else 2)


def _read_layer(module: Any) -> dict[str, Any]:
    return {
        "d_model": module.linear1.in_features,
        "nhead": module.self_attn.num_heads,
        "dim_feedforward": module.linear1.out_features,
        "bias": module.linear1.bias is not None,
    }


@register("TransformerEncoderLayer", "TransformerDecoderLayer", ignored=_TRANSFORMER_IGNORED, read=_read_layer)
def transformer_layer(layer: str, d_model: int, nhead: int, dim_feedforward: int = 2048, bias: bool = True) -> Count:
    return count(layer, _layer_terms(d_model, nhead, dim_feedforward, bias, decoder=layer.startswith("TransformerDe")))


def _stack(layer_count: Count, num_layers: int, norm: bool, d_model: int, norm_bias: bool) -> Terms:
    terms = _part(Terms(), "layers", layer_count, repeat=num_layers)
    if norm:
        _part(terms, "norm", layer_norm("LayerNorm", d_model, bias=norm_bias))
    return terms


def _read_stack(module: Any) -> dict[str, Any]:
    norm = module.norm
    return {
        **_read_layer(module.layers[0]),
        "num_layers": module.num_layers,
        "norm": norm is not None,
        "norm_bias": getattr(norm, "bias", None) is not None,
    }


@register("TransformerEncoder", "TransformerDecoder", ignored=_TRANSFORMER_IGNORED, read=_read_stack)
def transformer_stack(
    layer: str,
    d_model: int,
    nhead: int,
    num_layers: int,
    dim_feedforward: int = 2048,
    bias: bool = True,
    norm: bool = False,
    norm_bias: bool = True,
) -> Count:
    # `norm` stands for the optional final LayerNorm(d_model, bias=norm_bias) the stack is given
    inner = "TransformerEncoderLayer" if layer == "TransformerEncoder" else "TransformerDecoderLayer"
    one = transformer_layer(inner, d_model, nhead, dim_feedforward, bias)
    return count(layer, _stack(one, num_layers, norm, d_model, norm_bias))


def _read_transformer(module: Any) -> dict[str, Any]:
    first = module.encoder.layers[0]
    return {
        "d_model": module.d_model,
        "nhead": module.nhead,
        "num_encoder_layers": module.encoder.num_layers,
        "num_decoder_layers": module.decoder.num_layers,
        "dim_feedforward": first.linear1.out_features,
        "bias": first.linear1.bias is not None,
    }


@register("Transformer", ignored=(*_TRANSFORMER_IGNORED, "custom_encoder", "custom_decoder"), read=_read_transformer)
def transformer(
    layer: str,
    d_model: int = 512,
    nhead: int = 8,
    num_encoder_layers: int = 6,
    num_decoder_layers: int = 6,
    dim_feedforward: int = 2048,
    bias: bool = True,
) -> Count:
    # encoder and decoder stacks, each closed by a LayerNorm(d_model)
    stacks = {"dim_feedforward": dim_feedforward, "bias": bias, "norm": True, "norm_bias": bias}
    encoder = transformer_stack("TransformerEncoder", d_model, nhead, num_encoder_layers, **stacks)
    decoder = transformer_stack("TransformerDecoder", d_model, nhead, num_decoder_layers, **stacks)
    terms = _part(_part(Terms(), "encoder", encoder), "decoder", decoder)
    return count(layer, terms)


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
    layer: str,
    in_features: int,
    n_classes: int,
    cutoffs: tuple[int, ...],
    div_value: float = 4.0,
    head_bias: bool = False,
) -> Count:
    # head: Linear(in, shortlist + clusters); cluster i: Linear(in, in // div^(i+1), no bias) then
    # Linear(that, cluster size, no bias)
    bounds = [*cutoffs, n_classes]
    if not cutoffs or list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= n_classes:
        raise FormulaError(f"{layer}: cutoffs must be increasing, positive and below n_classes ({n_classes})")
    if not div_value > 0 or math.isinf(div_value):  # also refuses NaN
        raise FormulaError(f"{layer}: div_value must be a positive number, not {div_value!r}")
    head_size = cutoffs[0] + len(cutoffs)
    terms = _part(Terms(), "head", linear("Linear", in_features, head_size, head_bias))
    for i in range(len(cutoffs)):
        hidden = int(in_features // (div_value ** (i + 1)))
        size = bounds[i + 1] - bounds[i]
        terms.add(f"{n(hidden)} × ({n(in_features)} + {n(size)})", hidden * (in_features + size))
    return count(layer, terms)


def _buffer_elements(module: Any) -> int:
    return sum(buffer.numel() for buffer in module._buffers.values() if buffer is not None)


def _class_weights(weight_elements: int) -> Terms:
    return Terms().add(f"{n(weight_elements)} class weights", weight_elements) if weight_elements else Terms()


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
    layer: str,
    in_features: int,
    num_classes: int,
    out_features: tuple[int, ...] | None = None,
    bias: bool = False,
    weight_elements: int = 0,
) -> Count:
    # one Linear(in, num_classes × prod(out_features)); the optional class weights are a buffer
    outputs = num_classes * math.prod(out_features or ())
    terms = _part(Terms(), "linear", linear("Linear", in_features, outputs, bias))
    return count(layer, terms, _class_weights(weight_elements))


# --- Layers without parameters --------------------------------------------------------------------------------------


def _read_loss(module: Any) -> dict[str, Any]:
    return {"weight_elements": _buffer_elements(module)}


_LOSSES_WITH_WEIGHTS = (
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss", "NLLLoss",
    "NLLLoss2d",
)  # fmt: skip


# `weight` itself is not accepted: the formula takes its size (weight_elements), which a tensor cannot be typed as.
_LOSS_IGNORED = ("size_average", "reduce", "reduction", "ignore_index", "label_smoothing", "p", "margin")


@register(*_LOSSES_WITH_WEIGHTS, ignored=_LOSS_IGNORED, read=_read_loss)
def weighted_loss(layer: str, weight_elements: int = 0) -> Count:
    # no parameters; the optional class weights (and BCEWithLogitsLoss's pos_weight) are buffers
    return count(layer, Terms(), _class_weights(weight_elements))


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


@register(*_PARAMETER_FREE, ignores_any=True)
def parameter_free(layer: str) -> Count:
    return count(layer, Terms())


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

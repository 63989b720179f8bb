"""The layer formulas against torch itself: hypothesis draws hyperparameters, torch builds the layer, the counts must
agree; every torch.nn class has an entry; lookup follows the class hierarchy; texts and error messages are pinned.

Every registered formula has a case below (``CASES``): a strategy that draws the keyword arguments given to both
``formulas.evaluate`` and the torch constructor (the constructor's ignored arguments included, so they are proved not
to change the count), and a builder. Modules are built on the meta device: counting needs shapes, not values.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import sys
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from torch import nn

from paramscope import UsageError, formulas
from paramscope.formulas import REGISTRY, Count, FormulaError, evaluate, explain_module

Hyperparameters = dict[str, Any]
Builder = Callable[[str, Hyperparameters], nn.Module]

# --- Strategies ------------------------------------------------------------------------------------------------------

SIZE = st.integers(1, 16)
SMALL = st.integers(1, 4)
FLAG = st.booleans()
UNIT = st.floats(0.0, 1.0)
EPS = st.sampled_from([1e-5, 1e-6, 0.1])
REDUCTION = st.sampled_from(["none", "mean", "sum"])


def kwargs(required: dict[str, Any] | None = None, **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Keyword arguments: ``required`` keys always drawn, the others drawn or left to their defaults."""
    return st.fixed_dictionaries(required or {}, optional=optional)


def kernel(dims: int, high: int = 5) -> st.SearchStrategy[int | tuple[int, ...]]:
    """A kernel size: one int, or a tuple of ``dims`` ints."""
    return st.integers(1, high) | st.tuples(*[st.integers(1, high)] * dims)


def shape(max_dims: int = 3) -> st.SearchStrategy[int | tuple[int, ...]]:
    """A normalized_shape: one int or a tuple of 1..max_dims ints."""
    return st.integers(1, 8) | st.lists(st.integers(1, 6), min_size=1, max_size=max_dims).map(tuple)


def conv(dims: int, transposed: bool) -> st.SearchStrategy[Hyperparameters]:
    @st.composite
    def draw_conv(draw: st.DrawFn) -> Hyperparameters:
        groups = draw(st.integers(1, 4))
        hp = {
            "in_channels": groups * draw(SMALL),
            "out_channels": groups * draw(SMALL),
            "kernel_size": draw(kernel(dims, high=4 if dims == 3 else 5)),
        }
        modes = ["zeros"] if transposed else ["zeros", "reflect", "replicate", "circular"]
        optional = {
            "bias": FLAG,
            "stride": st.integers(1, 3),
            "dilation": st.integers(1, 2),
            "padding": st.integers(0, 2),
            "padding_mode": st.sampled_from(modes),
        }
        if groups > 1:
            hp["groups"] = groups
        else:
            optional["groups"] = st.just(1)
        extra = draw(kwargs(**optional))
        if transposed:
            extra["output_padding"] = draw(st.integers(0, extra.get("stride", 1) - 1))
        return hp | extra

    return draw_conv()


def batch_norm() -> st.SearchStrategy[Hyperparameters]:
    # BatchNorm and InstanceNorm alike; the flags are optional keys, so a minimal draw is torch's default
    return kwargs(
        {"num_features": SIZE},
        affine=FLAG,
        track_running_stats=FLAG,
        bias=FLAG,
        eps=EPS,
        momentum=st.sampled_from([0.1, 0.01, None]),
    )


@st.composite
def group_norm(draw: st.DrawFn) -> Hyperparameters:
    groups = draw(st.integers(1, 4))
    hp = {"num_groups": groups, "num_channels": groups * draw(SMALL)}
    return hp | draw(kwargs(affine=FLAG, bias=FLAG, eps=EPS))


def embedding(bag: bool) -> st.SearchStrategy[Hyperparameters]:
    @st.composite
    def draw_embedding(draw: st.DrawFn) -> Hyperparameters:
        num = draw(SIZE)
        optional: dict[str, st.SearchStrategy[Any]] = {
            "padding_idx": st.integers(-num, num - 1),
            "max_norm": st.sampled_from([1.0, 2.5]),
            "norm_type": st.sampled_from([1.0, 2.0]),
            "scale_grad_by_freq": FLAG,
            "sparse": FLAG,
        }
        if bag:
            optional |= {"mode": st.sampled_from(["sum", "mean", "max"]), "include_last_offset": FLAG}
        else:
            optional["_freeze"] = FLAG
        return {"num_embeddings": num, "embedding_dim": draw(SIZE)} | draw(kwargs(**optional))

    return draw_embedding()


@st.composite
def multihead_attention(draw: st.DrawFn) -> Hyperparameters:
    heads = draw(st.integers(1, 4))
    hp = {"embed_dim": heads * draw(SMALL), "num_heads": heads}
    other = st.none() | SIZE | st.just(hp["embed_dim"])  # kdim=embed_dim keeps the packed in_proj_weight
    optional = {
        "bias": FLAG,
        "add_bias_kv": FLAG,
        "kdim": other,
        "vdim": other,
        "dropout": UNIT,
        "add_zero_attn": FLAG,
        "batch_first": FLAG,
    }
    return hp | draw(kwargs(**optional))


def recurrent(name: str) -> st.SearchStrategy[Hyperparameters]:
    @st.composite
    def draw_recurrent(draw: st.DrawFn) -> Hyperparameters:
        hidden = draw(st.integers(1, 8))
        mode = name
        hp: Hyperparameters = {}
        if name == "RNNBase":
            mode = draw(st.sampled_from(["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]))
            hp["mode"] = mode
        hp |= {"input_size": draw(st.integers(1, 8)), "hidden_size": hidden}
        optional: dict[str, st.SearchStrategy[Any]] = {
            "num_layers": st.integers(1, 3),
            "bias": FLAG,
            "bidirectional": FLAG,
            "batch_first": FLAG,
        }
        if mode == "LSTM":
            optional["proj_size"] = st.integers(0, hidden - 1)
        if name == "RNN":
            optional["nonlinearity"] = st.sampled_from(["tanh", "relu"])
        hp |= draw(kwargs(**optional))
        if hp.get("num_layers", 1) > 1:
            hp["dropout"] = draw(UNIT)  # torch warns about dropout on a single layer
        return hp

    return draw_recurrent()


def cell(name: str) -> st.SearchStrategy[Hyperparameters]:
    required = {"input_size": SIZE, "hidden_size": SIZE}
    if name == "RNNCellBase":
        return kwargs(required | {"bias": FLAG, "num_chunks": st.integers(1, 4)})
    if name == "RNNCell":
        return kwargs(required, bias=FLAG, nonlinearity=st.sampled_from(["tanh", "relu"]))
    return kwargs(required, bias=FLAG)


TRANSFORMER_IGNORED = {
    "dropout": UNIT,
    "activation": st.sampled_from(["relu", "gelu"]),
    "layer_norm_eps": EPS,
    "batch_first": FLAG,
    "norm_first": FLAG,
}


@st.composite
def transformer_layer(draw: st.DrawFn) -> Hyperparameters:
    heads = draw(st.integers(1, 4))
    hp = {"d_model": heads * draw(SMALL), "nhead": heads, "dim_feedforward": draw(SIZE)}
    return hp | draw(kwargs(bias=FLAG, **TRANSFORMER_IGNORED))


@st.composite
def transformer_stack(draw: st.DrawFn) -> Hyperparameters:
    return draw(transformer_layer()) | {"num_layers": draw(st.integers(1, 3))} | draw(kwargs(norm=FLAG, norm_bias=FLAG))


@st.composite
def transformer(draw: st.DrawFn) -> Hyperparameters:
    heads = draw(st.integers(1, 4))
    hp = {
        "d_model": heads * draw(SMALL),
        "nhead": heads,
        "num_encoder_layers": draw(st.integers(1, 2)),
        "num_decoder_layers": draw(st.integers(1, 2)),
        "dim_feedforward": draw(SIZE),
    }
    return hp | draw(kwargs(bias=FLAG, **TRANSFORMER_IGNORED))


@st.composite
def adaptive_log_softmax(draw: st.DrawFn) -> Hyperparameters:
    n_classes = draw(st.integers(2, 32))
    cutoffs = draw(st.lists(st.integers(1, n_classes - 1), min_size=1, max_size=4, unique=True).map(sorted))
    hp = {"in_features": draw(SIZE), "n_classes": n_classes, "cutoffs": tuple(cutoffs)}
    div_value = st.sampled_from([1, 2, 4.0, 1.5, 3.3, 0.5]) | st.floats(0.25, 8.0)
    return hp | draw(kwargs(div_value=div_value, head_bias=FLAG))


def linear_cross_entropy() -> st.SearchStrategy[Hyperparameters]:
    return kwargs(
        {"in_features": SIZE, "num_classes": SIZE},
        out_features=st.lists(SMALL, max_size=3).map(tuple),
        bias=FLAG,
        reduction=REDUCTION,
        label_smoothing=UNIT,
    )


def weighted_loss(name: str) -> st.SearchStrategy[Hyperparameters]:
    # weight_elements: the size of the `weight` tensor (and BCEWithLogitsLoss's pos_weight) the builder passes
    optional: dict[str, st.SearchStrategy[Any]] = {"weight_elements": st.integers(0, 16), "reduction": REDUCTION}
    if name in ("CrossEntropyLoss", "NLLLoss", "NLLLoss2d"):
        optional["ignore_index"] = st.integers(-100, 3)
    if name == "MultiMarginLoss":
        optional |= {"p": st.sampled_from([1, 2]), "margin": UNIT}
    return kwargs(**optional)


# Parameter-free layers: their constructor arguments, drawn over valid values (all ignored by the formula).
POSITIVE = st.floats(0.1, 3.0)
DIM = st.integers(-2, 1)
INPLACE = {"inplace": FLAG}


def _pool(name: str) -> st.SearchStrategy[Hyperparameters]:
    dims = int(name[-2])
    if name.startswith("Adaptive"):
        extra = {"return_indices": FLAG} if "Max" in name else {}
        return kwargs({"output_size": st.integers(1, 4) | st.tuples(*[st.integers(1, 4)] * dims)}, **extra)
    if name.startswith("FractionalMaxPool"):
        size = kwargs({"kernel_size": kernel(dims, 3), "output_size": st.integers(1, 4)}, return_indices=FLAG)
        return size | kwargs({"kernel_size": kernel(dims, 3), "output_ratio": st.floats(0.1, 0.9)})
    if name.startswith("LPPool"):
        return kwargs({"norm_type": st.sampled_from([1.0, 2.0, 3]), "kernel_size": kernel(dims, 3)}, ceil_mode=FLAG)
    if name.startswith("MaxUnpool"):
        return kwargs({"kernel_size": kernel(dims, 3)}, stride=st.integers(1, 3))
    extra = {"dilation": st.integers(1, 2), "return_indices": FLAG} if name.startswith("MaxPool") else {}
    return kwargs({"kernel_size": kernel(dims, 3)}, stride=st.integers(1, 3), ceil_mode=FLAG, **extra)


def _pad(name: str) -> st.SearchStrategy[Hyperparameters]:
    dims = int(name[-2])
    padding = st.integers(0, 3) | st.tuples(*[st.integers(0, 3)] * (2 * dims))
    extra = {"value": st.floats(-2, 2)} if name.startswith("Constant") else {}
    return kwargs({"padding": padding} | extra)


_LOSS = {"reduction": REDUCTION}
PARAMETER_FREE: dict[str, st.SearchStrategy[Hyperparameters]] = {
    "CELU": kwargs(alpha=POSITIVE, **INPLACE),
    "ELU": kwargs(alpha=POSITIVE, **INPLACE),
    "GELU": kwargs(approximate=st.sampled_from(["none", "tanh"])),
    "GLU": kwargs(dim=DIM),
    "Hardshrink": kwargs(lambd=POSITIVE),
    "Hardsigmoid": kwargs(**INPLACE),
    "Hardswish": kwargs(**INPLACE),
    "Hardtanh": kwargs(min_val=st.floats(-3, -0.1), max_val=st.floats(0, 3), **INPLACE),
    "LeakyReLU": kwargs(negative_slope=UNIT, **INPLACE),
    "LogSigmoid": kwargs(),
    "LogSoftmax": kwargs(dim=DIM),
    "Mish": kwargs(**INPLACE),
    "RReLU": kwargs(lower=st.floats(0, 0.2), upper=st.floats(0.2, 0.5), **INPLACE),
    "ReLU": kwargs(**INPLACE),
    "ReLU6": kwargs(**INPLACE),
    "SELU": kwargs(**INPLACE),
    "SiLU": kwargs(**INPLACE),
    "Sigmoid": kwargs(),
    "Softmax": kwargs(dim=DIM),
    "Softmax2d": kwargs(),
    "Softmin": kwargs(dim=DIM),
    "Softplus": kwargs(beta=POSITIVE, threshold=st.floats(1, 30)),
    "Softshrink": kwargs(lambd=POSITIVE),
    "Softsign": kwargs(),
    "Tanh": kwargs(),
    "Tanhshrink": kwargs(),
    "Threshold": kwargs({"threshold": st.floats(-1, 1), "value": st.floats(-1, 1)}, **INPLACE),
    **{
        f"{kind}{d}d": _pool(f"{kind}{d}d")
        for kind in ("AdaptiveAvgPool", "AdaptiveMaxPool", "AvgPool", "LPPool", "MaxPool", "MaxUnpool")
        for d in (1, 2, 3)
    },
    "FractionalMaxPool2d": _pool("FractionalMaxPool2d"),
    "FractionalMaxPool3d": _pool("FractionalMaxPool3d"),
    **{
        name: kwargs(p=UNIT, **INPLACE)
        for name in ("AlphaDropout", "FeatureAlphaDropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d")
    },
    **{
        f"{kind}Pad{d}d": _pad(f"{kind}Pad{d}d")
        for kind in ("Circular", "Constant", "Reflection", "Replication", "Zero")
        for d in (1, 2, 3)
    },
    "ChannelShuffle": kwargs({"groups": SMALL}),
    "CosineSimilarity": kwargs(dim=DIM, eps=EPS),
    "Flatten": kwargs(start_dim=st.integers(0, 1), end_dim=st.just(-1)),
    "Fold": kwargs({"output_size": st.integers(3, 6), "kernel_size": st.integers(1, 3)}, stride=SMALL),
    "Identity": kwargs(),
    "PairwiseDistance": kwargs(p=st.sampled_from([1.0, 2.0]), eps=EPS, keepdim=FLAG),
    "PixelShuffle": kwargs({"upscale_factor": SMALL}),
    "PixelUnshuffle": kwargs({"downscale_factor": SMALL}),
    "Unflatten": kwargs({"dim": st.integers(0, 2), "unflattened_size": st.tuples(SMALL, SMALL)}),
    "Unfold": kwargs({"kernel_size": st.integers(1, 3)}, dilation=SMALL, padding=st.integers(0, 2), stride=SMALL),
    "Upsample": kwargs({"scale_factor": st.sampled_from([2, 3.0])}, mode=st.sampled_from(["nearest", "bilinear"]))
    | kwargs({"size": st.integers(1, 8)}),
    "UpsamplingBilinear2d": kwargs({"scale_factor": st.sampled_from([2, 3.0])}) | kwargs({"size": st.integers(1, 8)}),
    "UpsamplingNearest2d": kwargs({"scale_factor": st.sampled_from([2, 3.0])}) | kwargs({"size": st.integers(1, 8)}),
    "CrossMapLRN2d": kwargs({"size": SMALL}, alpha=UNIT, beta=UNIT, k=POSITIVE),
    "LocalResponseNorm": kwargs({"size": SMALL}, alpha=UNIT, beta=UNIT, k=POSITIVE),
    "CTCLoss": kwargs(blank=st.integers(0, 3), zero_infinity=FLAG, **_LOSS),
    "CosineEmbeddingLoss": kwargs(margin=UNIT, **_LOSS),
    "GaussianNLLLoss": kwargs(full=FLAG, eps=EPS, **_LOSS),
    "HingeEmbeddingLoss": kwargs(margin=POSITIVE, **_LOSS),
    "HuberLoss": kwargs(delta=POSITIVE, **_LOSS),
    "KLDivLoss": kwargs(log_target=FLAG, **_LOSS),
    "L1Loss": kwargs(**_LOSS),
    "MSELoss": kwargs(**_LOSS),
    "MarginRankingLoss": kwargs(margin=UNIT, **_LOSS),
    "MultiLabelMarginLoss": kwargs(**_LOSS),
    "PoissonNLLLoss": kwargs(log_input=FLAG, full=FLAG, eps=EPS, **_LOSS),
    "SmoothL1Loss": kwargs(beta=POSITIVE, **_LOSS),
    "SoftMarginLoss": kwargs(**_LOSS),
    "TripletMarginLoss": kwargs(margin=POSITIVE, p=st.sampled_from([1.0, 2.0]), swap=FLAG, **_LOSS),
    "TripletMarginWithDistanceLoss": kwargs(margin=POSITIVE, swap=FLAG, **_LOSS),
}

# --- Builders --------------------------------------------------------------------------------------------------------


def build_plain(name: str, hp: Hyperparameters) -> nn.Module:
    return getattr(nn, name)(**hp)


def build_weighted_loss(name: str, hp: Hyperparameters) -> nn.Module:
    # BCEWithLogitsLoss gets both tensors (weight, then pos_weight with the remainder), the others one `weight`
    hp = dict(hp)
    elements = hp.pop("weight_elements", 0)
    weight = (elements + 1) // 2 if name == "BCEWithLogitsLoss" else elements
    if weight:
        hp["weight"] = torch.ones(weight)
    if elements - weight:
        hp["pos_weight"] = torch.ones(elements - weight)
    return getattr(nn, name)(**hp)


_LAYER_ARGUMENTS = ("d_model", "nhead", "dim_feedforward", "bias", *TRANSFORMER_IGNORED)


def build_transformer_stack(name: str, hp: Hyperparameters) -> nn.Module:
    # `norm=True` stands for the final LayerNorm(d_model, bias=norm_bias) the stack is given
    layer_class = nn.TransformerEncoderLayer if name == "TransformerEncoder" else nn.TransformerDecoderLayer
    layer = layer_class(**{key: value for key, value in hp.items() if key in _LAYER_ARGUMENTS})
    norm = nn.LayerNorm(hp["d_model"], bias=hp.get("norm_bias", True)) if hp.get("norm") else None
    extra = {"enable_nested_tensor": False} if name == "TransformerEncoder" else {}
    return getattr(nn, name)(layer, hp["num_layers"], norm=norm, **extra)


BATCH_NORMS = (
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "SyncBatchNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
)
WEIGHTED_LOSSES = (
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss", "NLLLoss",
    "NLLLoss2d",
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """How to test one formula: the hyperparameters to draw, how torch builds the layer, how many examples."""

    strategy: st.SearchStrategy[Hyperparameters]
    build: Builder = build_plain
    examples: int = 300


CASES: dict[str, Case] = {
    "Linear": Case(kwargs({"in_features": SIZE, "out_features": SIZE}, bias=FLAG)),
    "Bilinear": Case(kwargs({"in1_features": SMALL, "in2_features": SIZE, "out_features": SIZE}, bias=FLAG)),
    **{f"Conv{d}d": Case(conv(d, transposed=False)) for d in (1, 2, 3)},
    **{f"ConvTranspose{d}d": Case(conv(d, transposed=True)) for d in (1, 2, 3)},
    **{name: Case(batch_norm()) for name in BATCH_NORMS},
    "LayerNorm": Case(kwargs({"normalized_shape": shape()}, elementwise_affine=FLAG, bias=FLAG, eps=EPS)),
    "RMSNorm": Case(kwargs({"normalized_shape": shape()}, elementwise_affine=FLAG, eps=st.none() | EPS)),
    "GroupNorm": Case(group_norm()),
    "Embedding": Case(embedding(bag=False)),
    "EmbeddingBag": Case(embedding(bag=True)),
    "PReLU": Case(kwargs(num_parameters=SIZE, init=UNIT)),
    "MultiheadAttention": Case(multihead_attention()),
    **{name: Case(recurrent(name)) for name in ("RNN", "LSTM", "GRU", "RNNBase")},
    **{name: Case(cell(name)) for name in ("RNNCell", "LSTMCell", "GRUCell", "RNNCellBase")},
    "TransformerEncoderLayer": Case(transformer_layer()),
    "TransformerDecoderLayer": Case(transformer_layer()),
    "TransformerEncoder": Case(transformer_stack(), build_transformer_stack, examples=200),
    "TransformerDecoder": Case(transformer_stack(), build_transformer_stack, examples=200),
    "Transformer": Case(transformer(), examples=150),
    "AdaptiveLogSoftmaxWithLoss": Case(adaptive_log_softmax()),
    "LinearCrossEntropyLoss": Case(linear_cross_entropy()),
    **{name: Case(weighted_loss(name), build_weighted_loss, examples=40) for name in WEIGHTED_LOSSES},
    **{name: Case(strategy, examples=20) for name, strategy in PARAMETER_FREE.items()},
}

FORMULAS = sorted(name for name, entry in REGISTRY.items() if entry.kind == "formula")


def build(name: str, hp: Hyperparameters, device: str = "meta") -> nn.Module:
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLLLoss2d's deprecation, nested-tensor advice: not what is tested here
        return CASES[name].build(name, hp)


def actual(module: nn.Module) -> tuple[int, int]:
    """What torch holds: every parameter and buffer of the module and its children."""
    return sum(p.numel() for p in module.parameters()), sum(b.numel() for b in module.buffers())


def actual_tensors(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer of the module and its children, by name, with its shape."""
    return {name: tuple(t.shape) for name, t in [*module.named_parameters(), *module.named_buffers()]}


# Formulas that know only how many elements a layer's tensors hold: the size of a loss's class weights is an
# argument, their shape (and, for BCEWithLogitsLoss, how they split between weight and pos_weight) is not.
COUNTS_ONLY = {*WEIGHTED_LOSSES, "LinearCrossEntropyLoss"}


def text_value(equation: str) -> int:
    """What the left side of a formula's equation adds up to, read as arithmetic: words and [labels] dropped, ``×`` a
    product, ``a/b`` a whole quotient (``128 × 64/1 × 3 × 3 + 128 = 73,856`` → 73,856)."""
    expression = re.sub(r"\[[^]]*\]|[A-Za-z_]\w*", "", equation.partition(" = ")[0])
    expression = expression.replace(",", "").replace("×", "*").replace("/", "//")
    assert re.fullmatch(r"[\d\s()+*/]+", expression), equation
    return int(eval(expression))  # only digits, spaces, brackets and + * //, checked above


def test_a_deep_recurrent_stack_writes_its_layer_count_with_separators() -> None:
    count = evaluate("LSTM", input_size=8, hidden_size=8, num_layers=1_100)
    built = nn.LSTM(8, 8, num_layers=1_100, device="meta")
    assert text_value(count.text.partition(": ")[2]) == count.params == sum(p.numel() for p in built.parameters())
    assert "+ 1,099 × (" in count.text  # as every other count in a formula is written
    assert "[layers 1–1,099]" in count.text


def check_text(name: str, result: Count) -> None:
    """The text names the layer, ends with the total (`… = 73,856`, or the plain number when it is the sum), and
    its arithmetic comes to that total."""
    assert result.layer == name
    assert result.text.startswith(f"{name}: ")
    params_text, _, buffers_text = result.text.partition(" (buffers: ")
    if params_text != f"{name}: 0 (no parameters)":
        assert text_value(params_text.removeprefix(f"{name}: ")) == result.params, result.text
    if buffers_text:
        assert text_value(buffers_text.removesuffix(")")) == result.buffers, result.text
    if result.params:
        assert params_text.endswith((f" = {result.params:,}", f": {result.params:,}")), result.text
    else:
        assert params_text in (f"{name}: 0 (no parameters)", f"{name}: 0") or params_text.endswith(" = 0")
    if result.buffers:
        assert buffers_text.endswith((f" = {result.buffers:,})", f"{result.buffers:,})")), result.text
    else:
        assert not buffers_text, result.text


@functools.cache
def minimal(name: str) -> Hyperparameters:
    """Simple hyperparameters of a case: hypothesis draws the simplest example first (optional keys left out, so
    torch's defaults; sizes 1); no shrinking needed."""
    return find(CASES[name].strategy, lambda _: True, settings=settings(database=None, phases=[Phase.generate]))


# --- 1. Every formula agrees with torch ------------------------------------------------------------------------------


def test_every_formula_has_a_case():
    assert set(CASES) == set(FORMULAS)


def test_registry_names_are_torch_classes():
    for name in REGISTRY:
        assert isinstance(getattr(nn, name, None), type), name
        assert formulas.lookup(name.lower()) is formulas.lookup(name.upper()) is REGISTRY[name]


@pytest.mark.parametrize("name", FORMULAS)
def test_formula_matches_torch(name: str):
    case = CASES.get(name)
    assert case is not None, f"no hypothesis case for the {name} formula: add one to CASES"

    @settings(
        max_examples=case.examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(hp=case.strategy)
    def check(hp: Hyperparameters) -> None:
        result = evaluate(name, **hp)
        module = build(name, hp)
        assert type(module).__name__ == name
        assert (result.params, result.buffers) == actual(module), result.text
        if result.tensors is not None:
            assert result.tensors() == actual_tensors(module), result.text
        else:
            assert name in COUNTS_ONLY
            assert name != "LinearCrossEntropyLoss" or hp.get("weight_elements")
        check_text(name, result)
        explanation = explain_module(module)
        assert explanation.entry is REGISTRY[name]
        assert explanation.count == result, explanation.reason

    check()


def test_lstm_projection_and_layers():
    # one case worked out by hand: 2 layers, both directions, projection 3 of hidden 5, input 4
    first = 4 * 5 * (4 + 3) + 2 * 4 * 5 + 3 * 5
    later = 4 * 5 * (2 * 3 + 3) + 2 * 4 * 5 + 3 * 5
    result = evaluate("lstm", input_size=4, hidden_size=5, num_layers=2, bidirectional=True, proj_size=3)
    assert result.params == 2 * first + 2 * later
    assert result.params == actual(nn.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3))[0]


# --- 2. Every torch.nn class has an entry ----------------------------------------------------------------------------

TORCH_NN_CLASSES = sorted(
    name for name, obj in vars(nn).items() if isinstance(obj, type) and issubclass(obj, nn.Module)
)
CONTAINERS = {"Module", "Container", "Sequential", "ModuleList", "ModuleDict", "DataParallel"}
DIRECT = {"ParameterList", "ParameterDict"}


def _sample_modules() -> dict[str, Callable[[], nn.Module]]:
    def child() -> nn.Module:
        return nn.Linear(2, 3)

    def parameter() -> nn.Parameter:
        return nn.Parameter(torch.ones(2, 2))

    def module() -> nn.Module:
        parent = nn.Module()
        parent.add_module("child", child())
        return parent

    return {
        "Module": module,
        "Container": lambda: nn.Container(child=child()),
        "Sequential": lambda: nn.Sequential(child(), nn.ReLU()),
        "ModuleList": lambda: nn.ModuleList([child()]),
        "ModuleDict": lambda: nn.ModuleDict({"child": child()}),
        "DataParallel": lambda: nn.DataParallel(child()),
        "ParameterList": lambda: nn.ParameterList([parameter()]),
        "ParameterDict": lambda: nn.ParameterDict({"p": parameter()}),
        "LazyLinear": lambda: nn.LazyLinear(3),
        "LazyConv1d": lambda: nn.LazyConv1d(3, 2),
        "LazyConv2d": lambda: nn.LazyConv2d(3, 2),
        "LazyConv3d": lambda: nn.LazyConv3d(3, 2),
        "LazyConvTranspose1d": lambda: nn.LazyConvTranspose1d(3, 2),
        "LazyConvTranspose2d": lambda: nn.LazyConvTranspose2d(3, 2),
        "LazyConvTranspose3d": lambda: nn.LazyConvTranspose3d(3, 2),
        "LazyBatchNorm1d": nn.LazyBatchNorm1d,
        "LazyBatchNorm2d": nn.LazyBatchNorm2d,
        "LazyBatchNorm3d": nn.LazyBatchNorm3d,
        "LazyInstanceNorm1d": lambda: nn.LazyInstanceNorm1d(affine=True),
        "LazyInstanceNorm2d": lambda: nn.LazyInstanceNorm2d(affine=True),
        "LazyInstanceNorm3d": lambda: nn.LazyInstanceNorm3d(affine=True),
    }


SAMPLES = _sample_modules()
LAZY = sorted(name for name in TORCH_NN_CLASSES if name.startswith("Lazy"))


def _sample(name: str) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.Container and NLLLoss2d are deprecated
        if name in SAMPLES:
            return SAMPLES[name]()
        if name in CASES:
            return build(name, minimal(name))
    raise AssertionError(f"torch.nn.{name} is new: give it sample constructor arguments in this file")


@pytest.mark.parametrize("name", TORCH_NN_CLASSES)
def test_every_torch_nn_class_is_covered(name: str):
    cls = getattr(nn, name)
    entry = REGISTRY.for_class(cls)
    assert entry is not None, f"torch.nn.{name} has no formula"
    if name.startswith("Lazy"):
        # covered through the class it becomes after its first forward pass (LazyLinear → Linear)
        assert entry is REGISTRY.for_class(cls.cls_to_become), entry.name
    else:
        assert entry.name == name, f"torch.nn.{name} only inherits {entry.name}'s entry"
    module = _sample(name)
    owns = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))
    if name in CONTAINERS:
        assert entry.kind == "container"
        assert not owns
        assert any(True for _ in module.parameters())  # the sample has a parameterised child
        return
    # parameter-free layers are registered as 0 explicitly: every layer that is not a container is a formula
    expected = "direct" if name in DIRECT else "formula"
    assert entry.kind == expected, f"torch.nn.{name} ({'with' if owns else 'without'} tensors) is a {entry.kind} entry"


def test_samples_and_cases_cover_exactly_torch_nn():
    assert set(SAMPLES) | set(CASES) == set(TORCH_NN_CLASSES)


@pytest.mark.parametrize("name", LAZY)
def test_lazy_layers_after_first_forward(name: str):
    module = _sample(name)
    explanation = explain_module(module)
    assert explanation.count is None
    assert explanation.reason == "uninitialised lazy layer: no sizes until its first forward pass"
    module(torch.ones(2, 5) if name == "LazyLinear" else torch.ones(2, 3, *[4] * int(name[-2])))
    explanation = explain_module(module)
    assert explanation.entry is not None
    assert explanation.entry.name == name.removeprefix("Lazy")
    assert explanation.count is not None
    assert (explanation.count.params, explanation.count.buffers) == actual(module)


def test_lazy_names_are_aliases_of_the_class_they_become():
    # `paramscope formula lazylinear in_features=… out_features=…`: the layer after its first forward pass
    assert dict(REGISTRY.aliases) == {name: getattr(nn, name).cls_to_become.__name__ for name in LAZY}
    for name in LAZY:
        assert name not in REGISTRY  # not a second entry: --list and the coverage tests see each formula once
        entry = formulas.lookup(name.upper())
        assert (entry.name, entry.alias) == (name.removeprefix("Lazy"), name)
        module = _sample(name)
        module(torch.ones(2, 5) if name == "LazyLinear" else torch.ones(2, 3, *[4] * int(name[-2])))
        result = entry(**entry.read_module(module))
        assert result == REGISTRY[entry.name](**entry.read_module(module))
        assert (result.params, result.buffers) == actual(module)


def test_an_alias_cannot_take_a_registered_name():
    registry = type(REGISTRY)()
    registry.add(REGISTRY["Linear"])
    registry.add_alias("LazyLinear", "Linear")
    for taken in ("linear", "LAZYLINEAR"):
        with pytest.raises(ValueError, match="already registered"):
            registry.add_alias(taken, "Linear")
    with pytest.raises(TypeError, match="identifier"):
        registry.add_alias("Lazy Linear", "Linear")
    assert list(registry) == ["Linear"]


# Sizes torch refuses at 0 (most others it accepts: a 0-size tensor has no elements); the formula refuses them too.
ZERO_SIZES = [
    ("Conv2d", {"in_channels": 4, "out_channels": 64, "kernel_size": 7, "groups": 0}, "groups"),
    ("ConvTranspose1d", {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "groups": 0}, "groups"),
    ("Bilinear", {"in1_features": 0, "in2_features": 2, "out_features": 3}, "in1_features"),
    ("GroupNorm", {"num_groups": 0, "num_channels": 4}, "num_groups"),
    ("MultiheadAttention", {"embed_dim": 4, "num_heads": 0}, "num_heads"),
    ("MultiheadAttention", {"embed_dim": 0, "num_heads": 1}, "embed_dim"),
    ("LSTM", {"input_size": 0, "hidden_size": 4}, "input_size"),
    ("GRU", {"input_size": 3, "hidden_size": 0}, "hidden_size"),
    ("RNN", {"input_size": 3, "hidden_size": 4, "num_layers": 0}, "num_layers"),
    ("TransformerEncoderLayer", {"d_model": 4, "nhead": 0}, "nhead"),
    ("TransformerDecoderLayer", {"d_model": 0, "nhead": 1}, "d_model"),
]


@pytest.mark.parametrize(("layer", "hp", "argument"), ZERO_SIZES)
def test_sizes_that_must_be_at_least_one(layer: str, hp: Hyperparameters, argument: str):
    with pytest.raises(FormulaError) as error:
        evaluate(layer, **hp)
    assert str(error.value) == f"{layer}: {argument} must be at least 1, not 0"
    with pytest.raises((ValueError, ZeroDivisionError)), torch.device("meta"):
        getattr(nn, layer)(**hp)


@pytest.mark.parametrize(
    ("layer", "hp"),
    [
        ("Linear", {"in_features": 0, "out_features": 0}),
        ("Bilinear", {"in1_features": 1, "in2_features": 0, "out_features": 0}),
        ("Conv2d", {"in_channels": 0, "out_channels": 0, "kernel_size": 0}),
        ("GroupNorm", {"num_groups": 1, "num_channels": 0}),
        ("GRUCell", {"input_size": 0, "hidden_size": 0}),
        ("Embedding", {"num_embeddings": 0, "embedding_dim": 3}),
        ("TransformerEncoderLayer", {"d_model": 4, "nhead": 1, "dim_feedforward": 0}),
    ],
)
def test_zero_sizes_torch_accepts(layer: str, hp: Hyperparameters):
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op"
        module = getattr(nn, layer)(**hp)
    result = evaluate(layer, **hp)
    assert (result.params, result.buffers) == actual(module)


# --- 3. Lookup follows the class hierarchy, from torch.nn classes only -----------------------------------------------


class MyLinear(nn.Linear):
    """A subclass that adds nothing: Linear's formula applies as it is."""


class ScaledLinear(nn.Linear):
    """A subclass that adds a parameter: Linear's formula no longer covers every tensor."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.scale = nn.Parameter(torch.ones(out_features))


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 3))


class Linear(nn.Module):
    """Named like the torch layer, but not one."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(7))


class NotAModule:
    pass


NotAModule.__name__ = "Linear"


def test_subclass_uses_base_formula():
    assert REGISTRY.for_class(MyLinear) is REGISTRY["Linear"]
    module = MyLinear(5, 7)
    explanation = explain_module(module)
    assert explanation.count == evaluate("Linear", in_features=5, out_features=7)
    assert explanation.count.params == actual(module)[0] == 42


def test_subclass_with_an_extra_parameter_disagrees_with_its_tensors():
    module = ScaledLinear(5, 7)
    explanation = explain_module(module)
    assert explanation.entry is REGISTRY["Linear"]
    assert explanation.count is not None
    assert explanation.count.params == 42
    assert actual(module)[0] == 49
    assert explanation.count.params != actual(module)[0]


def test_plain_module_resolves_to_the_container_entry():
    entry = REGISTRY.for_class(Plain)
    assert entry is REGISTRY["Module"]
    assert entry.kind == "container"
    explanation = explain_module(Plain())
    assert explanation.entry is entry
    assert explanation.count is None
    assert explanation.reason == entry.description


def test_a_user_class_named_linear_is_not_torch_linear():
    assert REGISTRY.for_class(Linear) is REGISTRY["Module"]
    assert explain_module(Linear()).count is None
    assert REGISTRY.for_class(NotAModule) is None
    assert explain_module(NotAModule()) == formulas.Explanation(None, None, "no formula")


def test_direct_entries_have_no_formula():
    for name in DIRECT:
        entry = REGISTRY[name]
        explanation = explain_module(_sample(name))
        assert explanation.entry is entry
        assert explanation.count is None
        assert explanation.reason == "holds any number of parameters of any shape: they are counted directly"
        with pytest.raises(FormulaError) as error:
            evaluate(name)
        assert str(error.value) == f"{name} has no closed-form formula: {entry.description}"


# --- 4. The study note's examples, exactly --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "hp", "text"),
    [
        (
            "conv2d",
            {"in_channels": 64, "out_channels": 128, "kernel_size": 3},
            "Conv2d: 128 × 64/1 × 3 × 3 + 128 = 73,856",
        ),
        (
            "conv2d",
            {"in_channels": 3, "out_channels": 64, "kernel_size": 7, "bias": False},
            "Conv2d: 64 × 3/1 × 7 × 7 = 9,408",
        ),
        ("BatchNorm2d", {"num_features": 64}, "BatchNorm2d: 2 × 64 = 128 (buffers: 2 × 64 + 1 = 129)"),
        ("LayerNorm", {"normalized_shape": 768}, "LayerNorm: 2 × 768 = 1,536"),
        ("LayerNorm", {"normalized_shape": (3, 4), "bias": False}, "LayerNorm: 3 × 4 = 12"),
        ("Embedding", {"num_embeddings": 50257, "embedding_dim": 768}, "Embedding: 50,257 × 768 = 38,597,376"),
        ("ReLU", {}, "ReLU: 0 (no parameters)"),
        ("linear", {"in_features": 512, "out_features": 1000}, "Linear: 1,000 × 512 + 1,000 = 513,000"),
        ("PReLU", {}, "PReLU: 1"),
        (
            "conv2d",
            {"in_channels": 64, "out_channels": 64, "kernel_size": 3, "groups": 64},
            "Conv2d: 64 × 64/64 × 3 × 3 + 64 = 640",
        ),
        (
            "MultiheadAttention",
            {"embed_dim": 768, "num_heads": 12},
            "MultiheadAttention: 3 × 768 × 768 + 3 × 768 + 768 × 768 + 768 = 2,362,368",
        ),
    ],
)
def test_pinned_texts(layer: str, hp: Hyperparameters, text: str):
    assert evaluate(layer, **hp).text == text


def test_batch_norm_counts():
    result = evaluate("BatchNorm2d", num_features=64)
    assert (result.params, result.buffers) == (128, 129) == actual(nn.BatchNorm2d(64))


# --- 5. Errors, word for word ----------------------------------------------------------------------------------------

CONV2D_ARGUMENTS = (
    "arguments: in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...], groups: int = 1, "
    "bias: bool = True"
)


LINEAR_ARGUMENTS = "arguments: in_features: int, out_features: int, bias: bool = True"


KNOWN_LAYERS = ", ".join(sorted(REGISTRY, key=str.lower))


@pytest.mark.parametrize("layer", [nn.Linear, MyLinear])
def test_a_torch_nn_class_is_evaluated_as_its_formula(layer: type[nn.Linear]) -> None:
    count = evaluate(layer, in_features=5, out_features=3)
    built = layer(5, 3, device="meta")
    assert count.params == sum(p.numel() for p in built.parameters()) == 18
    assert count.text == "Linear: 3 × 5 + 3 = 18"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (dict, "no formula for class builtins.dict: it is no torch.nn layer paramscope knows, nor derives from one"),
        (nn.Linear(2, 3), "a layer is a name or a torch.nn class, not an object of type Linear"),
        (3, "a layer is a name or a torch.nn class, not an object of type int"),
    ],
)  # fmt: skip
def test_a_layer_that_is_no_name_nor_known_class(layer: object, message: str) -> None:
    with pytest.raises(FormulaError) as error:
        evaluate(layer, in_features=3)  # type: ignore[arg-type]
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("conv4d", f"no formula for layer 'conv4d'; did you mean Conv3d, Conv2d, Conv1d? known layers: {KNOWN_LAYERS}"),
        ("frobnicator", f"no formula for layer 'frobnicator'; known layers: {KNOWN_LAYERS}"),
        (
            "lazyconv2",
            f"no formula for layer 'lazyconv2'; did you mean LazyConv2d, LazyConv3d, LazyConv1d? known layers: "
            f"{KNOWN_LAYERS}",
        ),
    ],
)
def test_unknown_layer(layer: str, message: str):
    with pytest.raises(FormulaError) as error:
        evaluate(layer, in_channels=3)
    assert str(error.value).startswith(f"no formula for layer {layer!r}; ")
    assert str(error.value) == message
    assert KNOWN_LAYERS.startswith("AdaptiveAvgPool1d, AdaptiveAvgPool2d, ")  # every layer, case-insensitive order
    assert "Container, Conv1d, Conv2d, Conv3d, ConvTranspose1d" in KNOWN_LAYERS


@pytest.mark.parametrize(
    ("layer", "hp", "message"),
    [
        ("conv2d", {"in_channels": 3, "out_channels": 4}, f"Conv2d needs 'kernel_size'; {CONV2D_ARGUMENTS}"),
        (
            "Linear",
            {},
            "Linear needs 'in_features', 'out_features'; "
            "arguments: in_features: int, out_features: int, bias: bool = True",
        ),
        (
            "conv2d",
            {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stide": 2, "channels": 1},
            f"Conv2d takes no argument 'channels', 'stide'; {CONV2D_ARGUMENTS}",
        ),
        (
            "conv2d",
            {"in_channels": 3, "out_channels": 4, "kernel_size": "3"},
            f"Conv2d: kernel_size='3' is not int | tuple[int, ...]; {CONV2D_ARGUMENTS}",
        ),
        (
            "linear",
            {"in_features": True, "out_features": 4},
            f"Linear: in_features=True is not int; {LINEAR_ARGUMENTS}",
        ),
        (
            "linear",
            {"in_features": 3, "out_features": 4, "bias": "false"},
            f"Linear: bias='false' is not bool; {LINEAR_ARGUMENTS}",
        ),
        (
            "conv2d",
            {"in_channels": -3, "out_channels": 4, "kernel_size": 3},
            "Conv2d: in_channels=-3 must not be negative",
        ),
        (
            "conv2d",
            {"in_channels": 3, "out_channels": 4, "kernel_size": (3, -1)},
            "Conv2d: kernel_size=(3, -1) must not be negative",
        ),
        (
            "conv2d",
            {"in_channels": 6, "out_channels": 4, "kernel_size": 3, "groups": 4},
            "Conv2d: in_channels (6) and out_channels (4) must be divisible by groups (4)",
        ),
        (
            "conv1d",
            {"in_channels": 6, "out_channels": 4, "kernel_size": 3, "groups": 0},
            "Conv1d: groups must be at least 1, not 0",
        ),
        (
            "multiheadattention",
            {"embed_dim": 10, "num_heads": 3},
            "MultiheadAttention: embed_dim (10) must be divisible by num_heads (3)",
        ),
        (
            "conv2d",
            {"in_channels": 3, "out_channels": 4, "kernel_size": (3, 3, 3)},
            "Conv2d: kernel_size=(3, 3, 3) must be one int or 2 ints",
        ),
        (
            "conv3d",
            {"in_channels": 3, "out_channels": 4, "kernel_size": [3, 3]},
            "Conv3d: kernel_size=(3, 3) must be one int or 3 ints",  # a list is read as a tuple
        ),
        (
            "groupnorm",
            {"num_groups": 3, "num_channels": 8},
            "GroupNorm: num_channels (8) must be divisible by num_groups (3)",
        ),
        (
            "lstm",
            {"input_size": 3, "hidden_size": 4, "proj_size": 4},
            "LSTM: proj_size (4) must be smaller than hidden_size (4)",
        ),
        ("gru", {"input_size": 3, "hidden_size": 4, "num_layers": 0}, "GRU: num_layers must be at least 1, not 0"),
        (
            "LazyLinear",
            {"out_features": 4},
            f"LazyLinear is Linear once initialised: Linear needs 'in_features'; {LINEAR_ARGUMENTS}",
        ),
        (
            "lazyconv2d",
            {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 0},
            "LazyConv2d is Conv2d once initialised: Conv2d: groups must be at least 1, not 0",
        ),
        (
            "RNNBase",
            {"mode": "SRU", "input_size": 3, "hidden_size": 4},
            "RNNBase: mode='SRU' is not one of GRU, LSTM, RNN_RELU, RNN_TANH",
        ),
        (
            "AdaptiveLogSoftmaxWithLoss",
            {"in_features": 4, "n_classes": 10, "cutoffs": (5, 2)},
            "AdaptiveLogSoftmaxWithLoss: cutoffs must be increasing, positive and below n_classes (10)",
        ),
    ],
)
def test_error_messages(layer: str, hp: Hyperparameters, message: str):
    with pytest.raises(FormulaError) as error:
        evaluate(layer, **hp)
    assert str(error.value) == message
    assert isinstance(error.value, UsageError)
    assert "\n" not in str(error.value)


def typed(annotation: Any) -> st.SearchStrategy[Any]:
    """Any value of a formula argument's declared type, valid for torch or not."""
    if annotation is bool:
        return FLAG
    if annotation is int:
        return st.integers(0, 6) | st.integers(-3, 10**6)
    if annotation is float:
        return st.sampled_from([0, 0.0, 0.5, 1, 4.0, float("inf"), float("nan")]) | st.floats(-10, 10)
    if annotation is str:
        return st.sampled_from(["LSTM", "GRU", "RNN", "RNN_TANH", "RNN_RELU", "lstm", ""])
    if annotation is type(None):
        return st.none()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([typed(option) for option in typing.get_args(annotation)])
    assert origin is tuple, annotation
    return st.lists(typed(typing.get_args(annotation)[0]), max_size=4).map(tuple)


@pytest.mark.parametrize("name", FORMULAS)
def test_any_typed_input_gives_a_count_or_a_formula_error(name: str):
    # the calculator's promise: whatever the values, a Count or a one-line FormulaError, never a traceback
    # (missing arguments are test_error_messages' business: the required ones are always given here)
    entry = REGISTRY[name]
    required = {a.name: typed(a.annotation) for a in entry.arguments.values() if a.required}
    optional = {a.name: typed(a.annotation) for a in entry.arguments.values() if not a.required}

    @settings(max_examples=100, deadline=None, database=None)
    @given(hp=st.fixed_dictionaries(required, optional=optional))
    def check(hp: Hyperparameters) -> None:
        try:
            result = evaluate(name, **hp)
        except FormulaError as error:
            message = str(error)
        else:
            message = ""
            assert result.params >= 0
            assert result.buffers >= 0
        assert "\n" not in message

    check()


# --- 6. No torch needed --------------------------------------------------------------------------------------------


def test_formulas_do_not_import_torch():
    code = (
        "import sys, paramscope.formulas as f\n"
        "c = f.evaluate('conv2d', in_channels=64, out_channels=128, kernel_size=3)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(c.text)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Conv2d: 128 × 64/1 × 3 × 3 + 128 = 73,856\n"


def test_every_formula_evaluates_with_torch_blocked():
    # the minimal hyperparameters of every case, evaluated where `import torch` fails
    samples = {name: minimal(name) for name in FORMULAS}
    code = (
        "import json, sys\n"
        "sys.modules['torch'] = None\n"
        "from paramscope import formulas\n"
        "samples = json.loads(sys.stdin.read())\n"
        "print(json.dumps({name: formulas.evaluate(name, **hp).text for name, hp in samples.items()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(samples), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {name: evaluate(name, **hp).text for name, hp in samples.items()}


# --- Bugs found in src/paramscope/formulas, fixed: each stays pinned here ------------------------------------------


def test_explain_reads_rnn_cell_base():
    module = nn.RNNCellBase(3, 4, True, 2)
    explanation = explain_module(module)
    assert explanation.count == evaluate("RNNCellBase", input_size=3, hidden_size=4, bias=True, num_chunks=2)


@pytest.mark.parametrize(
    "bad",
    [{"cutoffs": ()}, {"cutoffs": (2,), "div_value": 0}, {"cutoffs": (2,), "div_value": float("nan")}],
    ids=["no-cutoffs", "div_value-0", "div_value-nan"],
)
def test_adaptive_log_softmax_bad_input_is_a_formula_error(bad: Hyperparameters):
    with pytest.raises(FormulaError):
        evaluate("AdaptiveLogSoftmaxWithLoss", in_features=4, n_classes=10, **bad)


@pytest.mark.parametrize("div_value", [1e19, 2.0**70, 10**30], ids=["1e19", "2**70", "int-10**30"])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op:UserWarning")
def test_adaptive_log_softmax_divides_by_a_value_larger_than_any_size_as_torch_does(div_value: float):
    # div_value is a divisor, not a size: the clusters' projections are 0 wide; it had been refused as "larger than
    # any tensor size", given as a float and then as an int
    module = nn.AdaptiveLogSoftmaxWithLoss(16, 100, [10, 50], div_value=div_value)
    found = evaluate("AdaptiveLogSoftmaxWithLoss", in_features=16, n_classes=100, cutoffs=(10, 50), div_value=div_value)
    assert found.params == sum(p.numel() for p in module.parameters()) == 16 * (10 + 2)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op:UserWarning")
def test_adaptive_log_softmax_whose_div_value_overflows_is_refused_as_torch_refuses_it():
    with pytest.raises(OverflowError):
        nn.AdaptiveLogSoftmaxWithLoss(8, 10, [2, 5], div_value=1e200)
    with pytest.raises(FormulaError) as refused:
        evaluate("AdaptiveLogSoftmaxWithLoss", in_features=8, n_classes=10, cutoffs=(2, 5), div_value=1e200)
    assert str(refused.value) == (
        "AdaptiveLogSoftmaxWithLoss: div_value=1e+200 to the power 2 is out of range (torch's constructor raises "
        "OverflowError)"
    )


def test_linear_cross_entropy_weight_is_a_buffer():
    module = nn.LinearCrossEntropyLoss(3, 4, weight=torch.ones(4))
    assert actual(module) == (12, 4)
    explanation = explain_module(module)
    assert explanation.count is not None
    assert (explanation.count.params, explanation.count.buffers) == actual(module)


def test_weighted_loss_weight_argument_is_not_silently_ignored():
    try:
        result = evaluate("CrossEntropyLoss", weight=[1.0] * 5)
    except FormulaError:
        return  # refusing it is as good as counting it
    assert result.buffers == 5


def test_transformer_stack_with_a_default_layer_norm():
    layer = nn.TransformerEncoderLayer(4, 2, 8, bias=False)
    module = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(4), enable_nested_tensor=False)
    explanation = explain_module(module)
    assert explanation.count is not None
    assert explanation.count.params == actual(module)[0]


@pytest.mark.parametrize(
    ("layer", "hp"),
    [
        ("LayerNorm", {"normalized_shape": np.array([2, 3])}),
        ("Conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": np.array([3, 2])}),
        ("AdaptiveLogSoftmaxWithLoss", {"in_features": 32, "n_classes": 10, "cutoffs": np.array([2, 5])}),
        ("Linear", {"in_features": np.int64(3), "out_features": np.array(4)}),
    ],
)
def test_numpy_sizes_torch_accepts(layer: str, hp: Hyperparameters):
    # an array of sizes (``x.shape`` of a numpy array turned into one, ``np.array(kernel)``) is a tuple to torch
    result = evaluate(layer, **hp)
    module = getattr(nn, layer)(**hp, device="meta")
    assert (result.params, result.buffers) == actual(module)
    assert result.tensors is not None
    assert result.tensors() == actual_tensors(module)


def test_sizes_that_are_no_integers_are_a_formula_error():
    # numpy and torch refuse an index of these: a FormulaError, not their TypeError
    for value in (np.array([[2, 3]]), np.array(2.5), torch.tensor(3.0)):
        with pytest.raises(FormulaError, match=r"^LayerNorm: normalized_shape=.* is not int \| tuple\[int, \.\.\.\]; "):
            evaluate("LayerNorm", normalized_shape=value)


def test_a_formula_lists_its_tensors_only_when_asked():
    # a count needs no list of tensors: a stack of 10^12 layers is counted at once
    result = evaluate("TransformerEncoder", d_model=4, nhead=2, num_layers=10**12)
    assert result.params == 10**12 * evaluate("TransformerEncoderLayer", d_model=4, nhead=2).params
    assert result.tensors is not None
    assert evaluate("TransformerEncoder", d_model=4, nhead=2, num_layers=1).tensors() == actual_tensors(
        nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2), 1, enable_nested_tensor=False)
    )


@pytest.mark.parametrize(
    ("layer", "hp", "text"),
    [
        (
            "TransformerEncoder",
            {"d_model": 8, "nhead": 2, "num_layers": 0, "norm": True},
            "TransformerEncoder: 0 × layer 35,144 + norm 16 = 16",
        ),
        ("TransformerDecoder", {"d_model": 8, "nhead": 2, "num_layers": 0}, "TransformerDecoder: 0 × layer 35,448 = 0"),
        (
            "TransformerEncoder",
            {"d_model": 8, "nhead": 2, "num_layers": 1},
            "TransformerEncoder: layer 35,144 = 35,144",
        ),
    ],
)
def test_a_stack_says_how_many_layers_it_counts(layer: str, hp: Hyperparameters, text: str):
    # the text of a stack of 0 layers added the layer in and still gave the right total: "layer 35,144 + norm 16 = 16"
    result = evaluate(layer, **hp)
    assert result.text == text
    assert text_value(text.removeprefix(f"{layer}: ")) == result.params == actual(build(layer, hp))[0]


G62 = 2**62
# (layer, hyperparameters, the tensor too large or None where every tensor fits): torch's truth is a build on meta
# in a one-byte dtype, where a tensor of up to 2**63 - 1 elements is made and any larger one refused
TENSOR_LIMIT = [
    ("Linear", {"in_features": G62, "out_features": G62}, ("weight", (G62, G62))),
    ("Linear", {"in_features": G62, "out_features": 2, "bias": False}, ("weight", (2, G62))),
    ("Linear", {"in_features": 2**63 - 1, "out_features": 1}, None),
    ("Bilinear", {"in1_features": G62, "in2_features": 2, "out_features": 1}, ("weight", (1, G62, 2))),
    ("Conv2d", {"in_channels": 2**31, "out_channels": 2**31, "kernel_size": 2}, ("weight", (2**31, 2**31, 2, 2))),
    ("ConvTranspose1d", {"in_channels": G62, "out_channels": 1, "kernel_size": 2}, ("weight", (G62, 1, 2))),
    ("LayerNorm", {"normalized_shape": (G62, 2)}, ("weight", (G62, 2))),
    ("Embedding", {"num_embeddings": G62, "embedding_dim": 2}, ("weight", (G62, 2))),
    ("MultiheadAttention", {"embed_dim": 2**31, "num_heads": 1}, ("in_proj_weight", (3 * 2**31, 2**31))),
    ("MultiheadAttention", {"embed_dim": 2, "num_heads": 1, "kdim": G62}, ("k_proj_weight", (2, G62))),
    ("LSTM", {"input_size": 1, "hidden_size": 2**30, "bidirectional": True}, None),
    (
        "LSTM",
        {"input_size": 1, "hidden_size": 2**30, "num_layers": 2, "bidirectional": True},
        ("weight_ih_l1", (2**32, 2**31)),
    ),
    ("GRUCell", {"input_size": 1, "hidden_size": G62}, ("weight_ih", (3 * G62, 1))),
    (
        "TransformerEncoderLayer",
        {"d_model": 2**31, "nhead": 1, "dim_feedforward": 1},
        ("self_attn.in_proj_weight", (3 * 2**31, 2**31)),
    ),
    (
        "TransformerDecoder",
        {"d_model": 2**31, "nhead": 1, "num_layers": 1, "dim_feedforward": 1},
        ("layers.0.self_attn.in_proj_weight", (3 * 2**31, 2**31)),
    ),
    (
        "Transformer",
        {"d_model": 2**31, "nhead": 1, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 1},
        ("encoder.layers.0.self_attn.in_proj_weight", (3 * 2**31, 2**31)),
    ),
    (
        "AdaptiveLogSoftmaxWithLoss",
        {"in_features": G62, "n_classes": 4, "cutoffs": (2,), "div_value": 1.0},
        ("head.weight", (3, G62)),
    ),
    ("LinearCrossEntropyLoss", {"in_features": G62, "num_classes": 2}, ("linear.weight", (2, G62))),
    (
        "LinearCrossEntropyLoss",
        {"in_features": G62, "num_classes": 2, "weight_elements": 2},  # its tensors are not listed, only counted
        ("linear.weight", (2, G62)),
    ),
]


def built_in_torch(layer: str, hp: Hyperparameters) -> nn.Module | None:
    """The layer as torch builds it on meta in a one-byte dtype; None where torch refuses a tensor of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested-tensor advice
        if layer in ("TransformerEncoder", "TransformerDecoder"):
            sizes = {key: value for key, value in hp.items() if key != "num_layers"}
            layer, hp = f"{layer}Layer", sizes  # the stack's layer is what torch builds first
        if "weight_elements" in hp:  # the formula takes the number of class weights, torch the weights
            count = hp["weight_elements"]
            hp = {key: value for key, value in hp.items() if key != "weight_elements"} | {"weight": torch.ones(count)}
        try:
            return getattr(nn, layer)(**hp, device="meta", dtype=torch.float8_e4m3fn)
        except (RuntimeError, TypeError) as error:  # "Storage size calculation overflowed"; a size past int64
            if "overflow" not in str(error).lower():
                raise
            return None


@pytest.mark.parametrize(("layer", "hp", "too_large"), TENSOR_LIMIT)
def test_a_tensor_torch_cannot_make_is_refused(layer: str, hp: Hyperparameters, too_large: tuple | None):
    module = built_in_torch(layer, hp)
    assert (module is None) == (too_large is not None)
    if module is not None:
        assert evaluate(layer, **hp).params == actual(module)[0]
        return
    name, shape = too_large
    with pytest.raises(FormulaError) as error:
        evaluate(layer, **hp)
    dims = " × ".join(f"{size:,}" for size in shape)
    assert str(error.value) == (
        f"{layer}: {name} ({dims}) would have {math.prod(shape):,} elements, more than a tensor can hold (2**63 - 1)"
    )


def test_the_tensor_limit_is_checked_on_one_layer_of_a_stack():
    # a stack of any number of layers is checked at once: its layers are alike
    for layers in (0, 1, 10**12):
        hp = {"d_model": 2**31, "nhead": 1, "num_layers": layers, "dim_feedforward": 1}
        if layers:
            with pytest.raises(FormulaError, match=r"^TransformerEncoder: layers\.0\.self_attn\.in_proj_weight "):
                evaluate("TransformerEncoder", **hp)
        else:  # no layer, so no tensor of one
            assert evaluate("TransformerEncoder", **hp).params == 0
    assert evaluate("LSTM", input_size=1, hidden_size=1, num_layers=10**12).params == 10**12 * actual(nn.LSTM(1, 1))[0]


# (layer, torch's constructor, the arguments, the formula's refusal): each is refused by torch too
REFUSED_AS_TORCH_REFUSES = [
    ("Conv2d", nn.Conv2d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "full"},
     "Conv2d: padding='full' is refused by torch: it takes one of 'valid', 'same'"),
    ("Conv1d", nn.Conv1d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "same", "stride": 2},
     "Conv1d: padding='same' is refused by torch for strided convolutions (stride=2)"),
    ("Conv3d", nn.Conv3d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "same",
                           "stride": (1, 2, 1)},
     "Conv3d: padding='same' is refused by torch for strided convolutions (stride=(1, 2, 1))"),
    ("Conv2d", nn.Conv2d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding_mode": "mirror"},
     "Conv2d: padding_mode='mirror' is refused by torch: it takes one of 'zeros', 'reflect', 'replicate', "
     "'circular'"),
    ("ConvTranspose2d", nn.ConvTranspose2d,
     {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding_mode": "reflect"},
     "ConvTranspose2d: padding_mode='reflect' is refused by torch: it takes only 'zeros'"),
    ("Embedding", nn.Embedding, {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 10},
     "Embedding: padding_idx=10 is refused by torch: it must be within num_embeddings (-10 to 9)"),
    ("EmbeddingBag", nn.EmbeddingBag, {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": -11},
     "EmbeddingBag: padding_idx=-11 is refused by torch: it must be within num_embeddings (-10 to 9)"),
    ("LSTM", nn.LSTM, {"input_size": 4, "hidden_size": 8, "dropout": 1.5},
     "LSTM: dropout=1.5 is refused by torch: it must be a number in range [0, 1]"),
    ("GRU", nn.GRU, {"input_size": 4, "hidden_size": 8, "dropout": True},
     "GRU: dropout=True is refused by torch: it must be a number in range [0, 1]"),
    ("RNN", nn.RNN, {"input_size": 4, "hidden_size": 8, "nonlinearity": "sigmoid"},
     "RNN: nonlinearity='sigmoid' is refused by torch: it takes one of 'tanh', 'relu'"),
    ("TransformerEncoderLayer", nn.TransformerEncoderLayer, {"d_model": 8, "nhead": 2, "activation": "swish"},
     "TransformerEncoderLayer: activation='swish' is refused by torch: it takes one of 'relu', 'gelu'"),
    ("TransformerDecoderLayer", nn.TransformerDecoderLayer, {"d_model": 8, "nhead": 2, "dropout": 2.0},
     "TransformerDecoderLayer: dropout=2.0 is refused by torch: it must be between 0 and 1"),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "build", "arguments", "message"), REFUSED_AS_TORCH_REFUSES,
                         ids=[case[3].partition(" is ")[0] for case in REFUSED_AS_TORCH_REFUSES])  # fmt: skip
def test_arguments_the_count_ignores_are_refused_where_torch_refuses_them(
    layer: str, build: Any, arguments: Hyperparameters, message: str
) -> None:
    # they had been accepted unchecked: a count for a layer torch does not build
    with pytest.raises((ValueError, AssertionError, RuntimeError)):
        build(**arguments)
    with pytest.raises(FormulaError) as refused:
        evaluate(layer, **arguments)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("layer", "build", "arguments"),
    [
        ("Conv2d", nn.Conv2d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "same"}),
        ("Conv2d", nn.Conv2d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "same",
                               "stride": (1, 1), "dilation": 2}),
        ("Conv2d", nn.Conv2d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "same",
                               "stride": [1, 1]}),
        ("Conv1d", nn.Conv1d, {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": "valid",
                               "stride": 2, "padding_mode": "circular"}),
        ("Embedding", nn.Embedding, {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": -10}),
        ("LSTM", nn.LSTM, {"input_size": 4, "hidden_size": 8, "num_layers": 2, "dropout": 1}),
        ("RNN", nn.RNN, {"input_size": 4, "hidden_size": 8, "nonlinearity": "relu"}),
        ("TransformerEncoderLayer", nn.TransformerEncoderLayer, {"d_model": 8, "nhead": 2, "activation": "gelu"}),
    ],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_arguments_torch_accepts_are_accepted(layer: str, build: Any, arguments: Hyperparameters) -> None:
    assert evaluate(layer, **arguments).params == sum(p.numel() for p in build(**arguments).parameters())

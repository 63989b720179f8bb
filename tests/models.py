"""Small models with the features the counting must get right; every one is checked by the invariant tests."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrizations

from paramscope.examples import gpt2, resnet18, resnet50


def tiny_gpt() -> nn.Module:
    return gpt2(vocab_size=101, n_positions=16, n_embd=12, n_layer=2, n_head=3)


class TiedEncoderDecoder(nn.Module):
    """Three names for one embedding matrix, and a head that reuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Embedding(50, 8)
        self.decoder = nn.Embedding(50, 8)
        self.decoder.weight = self.encoder.weight
        self.head = nn.Linear(8, 50)
        self.head.weight = self.encoder.weight


class ReusedBlock(nn.Module):
    """The same Linear object used at two places in the tree (ALBERT-style sharing)."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6))
        self.first = shared
        self.middle = nn.Linear(6, 4)
        self.second = shared


class MixedDtypes(nn.Module):
    """Parameters and buffers of many dtypes, persistent and not."""

    def __init__(self) -> None:
        super().__init__()
        self.half = nn.Linear(4, 4).to(torch.float16)
        self.bf16 = nn.Linear(4, 3).to(torch.bfloat16)
        self.f64 = nn.Parameter(torch.zeros(5, dtype=torch.float64))
        self.c64 = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
        self.fp8 = nn.Parameter(torch.zeros(7, dtype=torch.float8_e4m3fn), requires_grad=False)
        self.int8 = nn.Parameter(torch.zeros(9, dtype=torch.int8), requires_grad=False)
        self.register_buffer("mask", torch.zeros(11, dtype=torch.bool))
        self.register_buffer("codes", torch.zeros(13, dtype=torch.uint4), persistent=False)
        self.register_buffer("steps", torch.zeros(6, dtype=torch.int64))


class RotaryNet(nn.Module):
    """A non-persistent buffer (rotary frequencies) beside BatchNorm's persistent running stats."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(8)
        self.proj = nn.Linear(8, 8)
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8)), persistent=False)


class PartlyFrozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, groups=2))
        self.head = nn.Linear(8, 10)
        for param in self.backbone.parameters():
            param.requires_grad_(False)


class Symmetric(nn.Module):
    """A parametrization with no tensors of its own (the one from torch's parametrize tutorial)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.triu() + weight.triu(1).transpose(-1, -2)


def parametrized() -> nn.Module:
    model = nn.Sequential(nn.Linear(5, 7), nn.Conv1d(2, 4, 3), nn.Linear(7, 7))
    parametrizations.weight_norm(model[0])
    parametrizations.spectral_norm(model[1])  # adds buffers _u and _v to the parametrization
    torch.nn.utils.parametrize.register_parametrization(model[2], "weight", Symmetric())
    return model


def legacy_weight_norm() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated, still used
        return nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(5, 7)), torch.nn.utils.spectral_norm(nn.Linear(7, 2)))


def lazy() -> nn.Module:
    return nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 2), nn.LazyBatchNorm1d())


def transformer() -> nn.Module:
    return nn.Transformer(
        d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32, batch_first=True
    )


def recurrent() -> nn.Module:
    return nn.ModuleDict({"lstm": nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3), "gru": nn.GRU(3, 5)})


class BufferAlsoParameter(nn.Module):
    """A Linear weight that an earlier module also registers as a buffer: it is still a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Module()
        self.second = nn.Linear(3, 3)
        self.first.register_buffer("alias", self.second.weight)


def reused_compiled() -> nn.Module:
    """A block holding a torch.compile wrapper, reused at two places: names are free of `_orig_mod.` everywhere."""
    block = nn.Sequential(torch.compile(nn.Linear(2, 2)), nn.ReLU())
    return nn.Sequential(block, nn.Linear(2, 2), block)


def reused_inside_reused() -> nn.Module:
    """Layers sharing one module (a rotary table) and holding a tied pair, their stack reachable under two names: each
    share lies inside a module reused in turn, and names every tensor under both."""
    rotary = nn.Module()
    rotary.register_buffer("inv_freq", torch.zeros(4), persistent=False)
    layers = nn.ModuleList()
    for _ in range(3):
        layer = nn.Module()
        layer.fc, layer.out, layer.rotary = nn.Linear(2, 2), nn.Linear(2, 2), rotary
        layer.out.weight = layer.fc.weight
        layers.append(layer)
    model = nn.Module()
    model.decoder = nn.Module()
    model.decoder.layers = layers
    model.layers = layers
    return nn.Sequential(model, model)


def tied_parametrized() -> nn.Module:
    """A tied weight that is parametrized on one side."""
    model = TiedEncoderDecoder()
    torch.nn.utils.parametrize.register_parametrization(model.encoder, "weight", nn.Identity())
    return model


class OwnTensors(nn.Module):
    """Modules holding tensors of their own beside their children (ViT's class_token and pos_embedding), one of
    them frozen, and a lazy one whose size is unknown."""

    def __init__(self) -> None:
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.register_buffer("scale", torch.ones(3))
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.zeros(1, 5, 4), requires_grad=False)
        self.encoder.layers = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.decoder = nn.Module()
        self.decoder.register_buffer("stats", nn.UninitializedBuffer())
        self.decoder.head = nn.Linear(4, 2)
        self.act = nn.ReLU()


# name -> factory; each builds on the current default device.
MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "gpt2-tiny": tiny_gpt,
    "tied-encoder-decoder": TiedEncoderDecoder,
    "reused-block": ReusedBlock,
    "mixed-dtypes": MixedDtypes,
    "rotary": RotaryNet,
    "partly-frozen": PartlyFrozen,
    "parametrized": parametrized,
    "legacy-weight-norm": legacy_weight_norm,
    "lazy": lazy,
    "transformer": transformer,
    "recurrent": recurrent,
    "buffer-also-parameter": BufferAlsoParameter,
    "reused-compiled": reused_compiled,
    "reused-inside-reused": reused_inside_reused,
    "tied-parametrized": tied_parametrized,
    "own-tensors": OwnTensors,
}

"""Benchmark: the cost per module of ``paramscope.inspect`` and ``paramscope.summary`` on models of many small modules.

A model of N ``nn.Linear(2, 2)`` layers, in ``nn.Sequential`` blocks of 50 held by an ``nn.Sequential`` (built on
the cpu), is counted and summarised at each size of ``--sizes``, next to what the same work costs without
paramscope:

* ``sum(p.numel() for p in model.parameters())`` and a plain ``no_grad`` forward: the floors;
* ``paramscope.inspect(model)``; and of a model of layers sharing one module, the stack of layers reachable under
  two names (each share an alias inside a module reused in turn);
* ``paramscope.summary(model, input_size=(1, 2), device="cpu")``: one forward, recorded;
* ``paramscope.summary(model, input_size=(1, 2))``: on meta, an eval-mode forward and a train-mode one (for the
  activations), both on fake tensors, each costing what torch's fake tensors cost (a bare forward of fake tensors
  is the floor given with it);
* the same on meta for a model of blocks whose second module runs in training alone (``Linear`` then ``Tanh``):
  each such module's row is placed among the others.

Each line gives the time per module at each size and how much it grew from the smallest size to the largest: a
linear cost stays near 1× (≤ 1.5× counts as linear). Each call is timed once per ``--repeat`` round, the best
kept; the garbage collector runs as in a user's process (its full collections are part of the cost at this many
objects), after a full collection before each call.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_modules.py
    .venv/bin/python benchmarks/bench_modules.py --sizes 2000,20000 --repeat 3

The exit status is 0 whatever the timings; a cost that grows faster than linear is printed as MISS.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import torch
from torch import nn

import paramscope

DEFAULT_SIZES = (2_000, 8_000)
PER_BLOCK = 50
LINEAR_TOLERANCE = 1.5
"""A per-module time growth up to this factor from the smallest to the largest size still counts as linear."""


def build_layers(modules: int) -> nn.Sequential:
    """``modules`` layers of ``nn.Linear(2, 2)`` in blocks of ``PER_BLOCK`` (fewer in the last)."""
    layers = [nn.Linear(2, 2) for _ in range(modules)]
    return nn.Sequential(*(nn.Sequential(*layers[start : start + PER_BLOCK]) for start in range(0, modules, PER_BLOCK)))


class AuxiliaryInTraining(nn.Module):
    """A layer, and a module that runs after it in training alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.aux = nn.Linear(2, 2), nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return self.aux(x) if self.training else x


def build_auxiliaries(modules: int) -> nn.Sequential:
    """About ``modules`` modules: blocks of three (the block, its layer, its module run in training alone)."""
    return nn.Sequential(*(AuxiliaryInTraining() for _ in range(modules // 3)))


class SharedRotary(nn.Module):
    """A layer holding a module every layer shares (a rotary embedding's table)."""

    def __init__(self, rotary: nn.Module) -> None:
        super().__init__()
        self.fc, self.rotary = nn.Linear(2, 2), rotary


def build_reused_inside_reused(modules: int) -> nn.Module:
    """About ``modules`` modules: layers sharing one module, their stack reachable under two names (a decoder's
    layers, and the model's ``layers`` referring to them), so each share lies inside a module reused in turn."""
    rotary = nn.Module()
    rotary.register_buffer("inv_freq", torch.zeros(4), persistent=False)
    model = nn.Module()
    model.decoder = nn.ModuleList(SharedRotary(rotary) for _ in range(modules // 2))
    model.layers = model.decoder
    return model


def fake_forward(model: nn.Module) -> None:
    """A forward on fake tensors and nothing else, with fake copies of the weights: what any forward on meta that
    runs the model's own code pays."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    weights = {name: fake.from_tensor(torch.empty_like(tensor, device="meta"))
               for name, tensor in model.named_parameters()}  # fmt: skip
    with fake:
        torch.func.functional_call(model, weights, (fake.from_tensor(torch.empty(1, 2, device="meta")),))


def _best(call: Callable[[nn.Module], object], model: nn.Module, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        call(model)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="modules in each model")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each call, the best kept (default: 1)")
    options = parser.parse_args()
    sizes = sorted(int(size) for size in options.sizes.split(","))
    x = torch.randn(1, 2)
    contenders: dict[str, tuple[Callable[[int], nn.Module], Callable[[nn.Module], object]]] = {
        "sum(p.numel() for p in model.parameters())": (build_layers, lambda m: sum(p.numel() for p in m.parameters())),
        "paramscope.inspect(model)": (build_layers, paramscope.inspect),
        "  a shared module in layers reached twice": (build_reused_inside_reused, paramscope.inspect),
        "plain no_grad forward": (build_layers, lambda m: torch.no_grad()(m)(x)),
        "summary(device='cpu')": (build_layers, lambda m: paramscope.summary(m, input_size=(1, 2), device="cpu")),
        "fake tensors' forward alone (one)": (build_layers, fake_forward),
        "summary() on meta (two forwards)": (build_layers, lambda m: paramscope.summary(m, input_size=(1, 2))),
        "  modules run in training alone": (build_auxiliaries, lambda m: paramscope.summary(m, input_size=(1, 2))),
    }
    paramscope.summary(nn.Sequential(nn.Linear(2, 2)), input_size=(1, 2))  # first-call costs: imports
    print(f"µs per module, best of {options.repeat}, at {' / '.join(f'{size:,}' for size in sizes)} modules")
    for name, (build, call) in contenders.items():
        per_module = []
        for size in sizes:
            model = build(size)
            count = sum(1 for _ in model.modules())
            per_module.append(_best(call, model, options.repeat) / count * 1e6)
            del model
        growth = per_module[-1] / per_module[0]
        verdict = "" if len(sizes) < 2 else "linear" if growth <= LINEAR_TOLERANCE else "MISS (superlinear)"
        figures = " / ".join(f"{value:8.1f}" for value in per_module)
        print(f"  {name:44s} {figures}   growth {growth:.2f}×  {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

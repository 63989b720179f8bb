"""Benchmark: ``paramscope.inspect`` against the usual ways of counting a model's parameters.

A synthetic model with N parameter tensors (an ``nn.ModuleList`` of ``nn.Sequential`` blocks of ``nn.Linear(4, 4)``
layers, weight + bias = 2 tensors each, built on the meta device so that nothing is allocated) is counted by:

* the plain sum, ``sum(p.numel() for p in model.parameters())``: the floor, no module tree;
* ``paramscope.inspect(model)``: the full Report, module tree included;
* fvcore's ``parameter_count(model)``: a per-module dict;
* torchinfo's ``summary(model, verbose=0)``: its layer table, without a forward pass.

All of them are run side by side on the same model in one process, and the table gives each one's best time and its
ratio to the plain sum. The targets (from the project's issue) are: inspect ≤ 3× the plain sum at 100,000 tensors,
and linear in the number of tensors (torchinfo is superlinear).

Run it from the repository root::

    .venv/bin/python benchmarks/bench_tally.py
    .venv/bin/python benchmarks/bench_tally.py --sizes 10000,100000 --repeat 7 --skip-torchinfo

torchinfo and fvcore are not paramscope dependencies; install them with ``pip install -r requirements/bench.txt``
(``make bench`` does, then runs this script). When one is missing it is skipped, and the output says so.

Method: before any timing, every contender's total is checked against the plain sum (a disagreement stops the run,
since the timings would then compare different things). Each contender is then timed with ``time.perf_counter``,
``--repeat`` times in round-robin order (so slow drift of the machine hits everyone alike), and the best (minimum)
time is reported. A contender's repeats stop early once its timed runs add up to ``--budget`` seconds (torchinfo at
100,000 tensors takes seconds per call); the output says where that happened. Only the call itself is timed: the
returned object is freed after the clock stops. The garbage collector is disabled during every timed call of every
contender (as ``timeit`` does), with a full collection before each call; ``--gc`` leaves it enabled for all of them.

The exit status is 0 whatever the timings (this is a benchmark, not a test): a missed target is printed as MISS.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch
from torch import nn

import paramscope

DEFAULT_SIZES = (10_000, 30_000, 100_000)
LAYERS_PER_BLOCK = 10
"""``nn.Linear`` layers in each ``nn.Sequential`` block (20 parameter tensors)."""
PARAMS_PER_LAYER = 4 * 4 + 4
TARGET_RATIO = 3.0
"""The issue's target: inspect (with module tree) at most this many times the plain sum."""
LINEAR_TOLERANCE = 1.5
"""A per-tensor time growth up to this factor from the smallest to the largest size still counts as linear."""
INSTALL_HINT = "pip install -r requirements/bench.txt"


# --------------------------------------------------------------------------------------------------- the model


def build_model(tensors: int) -> nn.ModuleList:
    """A model with exactly ``tensors`` parameter tensors, on the meta device.

    ``tensors // 2`` layers of ``nn.Linear(4, 4)`` (weight and bias), plus one ``nn.Linear(4, 4, bias=False)`` when
    ``tensors`` is odd, grouped by ``LAYERS_PER_BLOCK`` into ``nn.Sequential`` blocks held by an ``nn.ModuleList``.

    >>> model = build_model(5)
    >>> len(list(model.parameters())), [len(block) for block in model]
    (5, [3])
    """
    if tensors < 1:
        raise ValueError(f"a model needs at least one parameter tensor, not {tensors}")
    with torch.device("meta"):
        layers = [nn.Linear(4, 4) for _ in range(tensors // 2)]
        if tensors % 2:
            layers.append(nn.Linear(4, 4, bias=False))
        blocks = [
            nn.Sequential(*layers[start : start + LAYERS_PER_BLOCK])
            for start in range(0, len(layers), LAYERS_PER_BLOCK)
        ]
        return nn.ModuleList(blocks)


# --------------------------------------------------------------------------------------------- the contenders


@dataclass(frozen=True)
class Contender:
    """One way of counting: ``call`` is what is timed; ``total`` reads the parameter count from its result."""

    name: str
    call: Callable[[nn.Module], Any]
    total: Callable[[Any], int]


def _plain_sum(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_paramscope(model: nn.Module, report: paramscope.Report) -> None:
    """Beyond the total: inspect must have built the whole module tree and seen every tensor."""
    modules = sum(1 for _ in model.modules())
    tensors = sum(1 for _ in model.parameters())
    if len(report.modules) != modules or len(report.tensors) != tensors:
        raise SystemExit(
            f"paramscope.inspect saw {len(report.modules)} modules and {len(report.tensors)} tensors, "
            f"expected {modules} and {tensors}"
        )
    if report.modules[0].params != report.totals.params:
        raise SystemExit("paramscope.inspect: the root of the module tree does not hold the total")


def available_contenders(skip_fvcore: bool, skip_torchinfo: bool) -> tuple[list[Contender], list[str]]:
    """The contenders to run, plain sum first, and the lines to print about the ones left out."""
    contenders = [
        Contender("plain sum", _plain_sum, int),
        Contender("paramscope.inspect", paramscope.inspect, lambda report: report.totals.params),
    ]
    notes: list[str] = []
    if skip_fvcore:
        notes.append("fvcore: skipped (--skip-fvcore)")
    else:
        try:
            from fvcore.nn import parameter_count
        except ImportError:
            notes.append(f"fvcore: not installed, skipped (install the bench peers: {INSTALL_HINT})")
        else:
            contenders.append(Contender("fvcore parameter_count", parameter_count, lambda counts: counts[""]))
    if skip_torchinfo:
        notes.append("torchinfo: skipped (--skip-torchinfo)")
    else:
        try:
            from torchinfo import summary
        except ImportError:
            notes.append(f"torchinfo: not installed, skipped (install the bench peers: {INSTALL_HINT})")
        else:
            contenders.append(
                Contender(
                    "torchinfo summary", lambda model: summary(model, verbose=0), lambda stats: stats.total_params
                )
            )
    return contenders, notes


# ------------------------------------------------------------------------------------------------- the timing


@dataclass
class Timing:
    """The timed runs of one contender on one model."""

    runs: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)


def time_once(contender: Contender, model: nn.Module, keep_gc: bool) -> float:
    """Seconds for one call of ``contender`` on ``model``; its result is freed after the clock stops."""
    gc.collect()
    if not keep_gc:
        gc.disable()
    try:
        start = time.perf_counter()
        result = contender.call(model)
        elapsed = time.perf_counter() - start
    finally:
        if not keep_gc:
            gc.enable()
    del result
    return elapsed


def check_totals(contenders: Sequence[Contender], model: nn.Module) -> int:
    """Run every contender once (untimed, also a warm-up) and check they all agree with the plain sum."""
    expected = _plain_sum(model)
    for contender in contenders:
        result = contender.call(model)
        got = contender.total(result)
        if got != expected:
            raise SystemExit(f"{contender.name} counts {got:,} parameters, the plain sum {expected:,}: not comparable")
        if isinstance(result, paramscope.Report):
            _check_paramscope(model, result)
        del result
    return expected


def bench_size(
    contenders: Sequence[Contender], model: nn.Module, repeat: int, budget: float, keep_gc: bool
) -> dict[str, Timing]:
    """Time every contender on ``model``: ``repeat`` rounds, round-robin, each stopping early past ``budget``."""
    timings = {contender.name: Timing() for contender in contenders}
    for _ in range(repeat):
        for contender in contenders:
            timing = timings[contender.name]
            if sum(timing.runs) < budget:
                timing.runs.append(time_once(contender, model, keep_gc))
    return timings


# ------------------------------------------------------------------------------------------------- the output


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _seconds(value: float) -> str:
    return f"{value:.4f} s" if value < 10 else f"{value:.2f} s"


def print_table(results: dict[int, dict[str, Timing]], names: Sequence[str]) -> None:
    """One row per size: each contender's best time and its ratio to the plain sum."""
    header = ["tensors", *names]
    rows: list[list[str]] = []
    for size, timings in results.items():
        base = timings[names[0]].best
        cells = [f"{size:,}"]
        for name in names:
            best = timings[name].best
            cells.append(_seconds(best) if name == names[0] else f"{_seconds(best)} ({best / base:.2f}×)")
        rows.append(cells)
    widths = [max(len(line[column]) for line in (header, *rows)) for column in range(len(header))]
    print("  ".join(text.rjust(width) for text, width in zip(header, widths, strict=True)))
    for cells in rows:
        print("  ".join(text.rjust(width) for text, width in zip(cells, widths, strict=True)))


def linearity(results: dict[int, dict[str, Timing]], name: str) -> float:
    """Time per tensor at the largest size divided by time per tensor at the smallest (≈1: linear)."""
    smallest, largest = min(results), max(results)
    return (results[largest][name].best / largest) / (results[smallest][name].best / smallest)


def print_targets(results: dict[int, dict[str, Timing]], names: Sequence[str]) -> None:
    plain, inspect = names[0], names[1]
    largest, smallest = max(results), min(results)
    ratio = results[largest][inspect].best / results[largest][plain].best
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"inspect / plain sum at {largest:,} tensors: {ratio:.2f}× (target ≤ {TARGET_RATIO:g}×)  {verdict}")
    if smallest == largest:
        print("linearity: needs at least two sizes (--sizes)")
        return
    print(
        f"linearity, time per tensor at {largest:,} ÷ time per tensor at {smallest:,} "
        f"(≈1 is linear; ≤ {LINEAR_TOLERANCE:g} counted as linear):"
    )
    for name in names:
        factor = linearity(results, name)
        verdict = ("  PASS" if factor <= LINEAR_TOLERANCE else "  MISS") if name == inspect else ""
        print(f"  {name:<24} {factor:5.2f}{verdict}")


# --------------------------------------------------------------------------------------------------------- main


def _sizes(text: str) -> tuple[int, ...]:
    """``"10000,100_000,30k"`` → ``(10000, 30000, 100000)``."""
    sizes: set[int] = set()
    for item in text.split(","):
        item = item.strip().replace("_", "").lower()
        try:
            size = int(item[:-1]) * 1000 if item.endswith("k") else int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of tensors: {item!r}") from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"a size must be at least 1, not {size}")
        sizes.add(size)
    return tuple(sorted(sizes))


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="comma-separated numbers of parameter tensors (default: 10000,30000,100000)",
    )
    parser.add_argument("--repeat", type=_positive(int), default=5, help="timed runs per contender (default: 5)")
    parser.add_argument(
        "--budget",
        type=_positive(float),
        default=10.0,
        help="stop repeating a contender once its timed runs add up to this many seconds (default: 10)",
    )
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector enabled while timing")
    parser.add_argument("--skip-fvcore", action="store_true", help="leave fvcore out")
    parser.add_argument("--skip-torchinfo", action="store_true", help="leave torchinfo out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    contenders, notes = available_contenders(args.skip_fvcore, args.skip_torchinfo)
    names = [contender.name for contender in contenders]

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, paramscope {paramscope.__version__}, "
        f"fvcore {_version('fvcore')}, torchinfo {_version('torchinfo')}; {platform.platform()}"
    )
    print(
        f"best of {args.repeat} runs per contender (fewer once a contender's runs pass {args.budget:g} s), "
        f"garbage collector {'ENABLED' if args.gc else 'DISABLED'} during timing for all contenders"
    )
    for note in notes:
        print(note)
    print()

    results: dict[int, dict[str, Timing]] = {}
    for size in args.sizes:
        start = time.perf_counter()
        model = build_model(size)
        built = time.perf_counter() - start
        total = check_totals(contenders, model)
        print(f"{size:,} tensors, {total:,} parameters: model built on meta in {built:.1f} s, totals agree", flush=True)
        results[size] = bench_size(contenders, model, args.repeat, args.budget, args.gc)
        del model
    print()

    print_table(results, names)
    for size, timings in results.items():
        for name, timing in timings.items():
            if len(timing.runs) < args.repeat:
                print(f"  {name} at {size:,} tensors: best of {len(timing.runs)} runs (--budget {args.budget:g} s)")
    print()
    print_targets(results, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())

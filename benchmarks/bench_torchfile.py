"""Benchmark: ``paramscope inspect FILE.pt --format json`` of checkpoints with long lists of numbers, against
``torch.load(FILE, weights_only=True)`` alone.

The first checkpoint is what a training loop saves with a log of its losses: ``{"w": torch.zeros(3), "losses": [0] *
10**7}`` (20 MB). The second holds such a list inside the model's entry, ending in a tensor, and another beside it:
``{"model": {"w": torch.zeros(3), "tail": [0] * 3 * 10**6 + [torch.ones(2)]}, "metrics": [0.5] * 10**6}`` (the
lists are ``--items`` long, and 3/10 and 1/10 of it). torch's weights-only unpickler builds the lists item by item;
paramscope loads the file the same way and then walks its containers, to find the tensors, to count the entries
against its limit and to count the entries that hold no tensor. Both run as fresh processes, alternately,
``--repeat`` times; the tables show wall time and peak resident memory (``ru_maxrss`` of the child), best and median,
and the ratios of the medians. The inspect command runs the paramscope of the checkout this file lies in (``src/``
first on PYTHONPATH).

The target is ≤ 1.5× torch.load for both wall time and peak memory: the walk looks at each item once, at C speed
where a list holds only numbers, and names only the containers that hold a tensor (it named every item: 3.1× the
time and 7.8× the memory, on 2026-11-27), and the note on the entries without a tensor names only the first five
it shows (it named every number of the model's list: 1.8× the time and 3.4× the memory, on 2026-11-27).

Run it from the repository root::

    .venv/bin/python benchmarks/bench_torchfile.py
    .venv/bin/python benchmarks/bench_torchfile.py --repeat 5 --items 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.5
LOAD = "import sys, torch; torch.load(sys.argv[1], weights_only=True)"


def _measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident memory (MiB) and stdout of ``command``, run in a wrapper process of its own so
    that ``RUSAGE_CHILDREN`` holds that command's peak alone."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True)\n"
        "wall = time.perf_counter() - start\n"
        "print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stdout.write(done.stdout)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True, env=env
    )
    first, _, rest = output.stdout.partition("\n")
    wall, peak_kib = first.split()
    return float(wall), int(peak_kib) / 1024, rest


def _cases(items: int) -> list[tuple[str, Any, int, list[str]]]:
    """Each case: what it is, what is saved, the parameters and the notes paramscope must give for it."""
    import torch

    tail = 3 * items // 10
    return [
        (
            f"a list of {items:,} numbers beside 3 weights",
            {"w": torch.zeros(3), "losses": [0] * items},
            3,
            ["1 entry holds no tensor and is not counted: losses (list)"],
        ),
        (
            f"a list of {tail:,} numbers and a tensor in the model's entry, {items // 10:,} beside it",
            {"model": {"w": torch.zeros(3), "tail": [0] * tail + [torch.ones(2)]}, "metrics": [0.5] * (items // 10)},
            5,
            [
                "the model's tensors are the checkpoint's 'model' entry",
                f"{tail:,} entries of 'model' hold no tensor and are not counted: tail.0 (int), tail.1 (int), tail.2 "
                f"(int), tail.3 (int), tail.4 (int) and {tail - 5:,} more",
            ],
        ),
    ]


def _run(
    path: Path, params: int, expected: list[str], repeat: int, env: dict[str, str]
) -> dict[str, tuple[float, float]] | None:
    """The medians of wall time and peak memory of each command on ``path``, with a table of them; None (and why)
    where paramscope does not give ``params`` parameters and the ``expected`` notes."""
    commands = {
        "paramscope inspect FILE --format json": [
            sys.executable, "-m", "paramscope.cli", "inspect", str(path), "--format", "json",
        ],
        "torch.load(FILE, weights_only=True)": [sys.executable, "-c", LOAD, str(path)],
    }  # fmt: skip
    report = json.loads(_measured(commands["paramscope inspect FILE --format json"], env)[2])
    if report["totals"]["params"] != params or report["notes"] != expected:
        print(f"paramscope counted {report['totals']['params']:,} parameters, with notes {report['notes']}: "
              f"not the {params} expected and {expected}: stopping")  # fmt: skip
        return None
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(repeat):
        for label, command in commands.items():
            wall, peak, _ = _measured(command, env)
            runs[label].append((wall, peak))
    print(f"{'command':40}  {'wall best':>9}  {'median':>7}  {'peak MiB':>9}  {'median':>7}")
    medians = {}
    for label, values in runs.items():
        walls = [wall for wall, _ in values]
        peaks = [peak for _, peak in values]
        medians[label] = (statistics.median(walls), statistics.median(peaks))
        print(f"{label:40}  {min(walls):8.2f}s  {medians[label][0]:6.2f}s  {min(peaks):9.0f}  {medians[label][1]:7.0f}")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default: 3)")
    parser.add_argument("--items", type=int, default=10_000_000, help="items of the list (default: 10,000,000)")
    options = parser.parse_args()

    import torch

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}; {options.repeat} runs each")
    for what, saved, params, expected in _cases(options.items):
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "last.pt"
            torch.save(saved, path)
            print()
            print(f"{what}: {path.stat().st_size:,} bytes")
            medians = _run(path, params, expected, options.repeat, env)
        if medians is None:
            return 1
        ours, peer = medians.values()
        for label, index in (("wall time", 0), ("peak memory", 1)):
            ratio = ours[index] / peer[index]
            verdict = "PASS" if ratio <= TARGET else "MISS"
            print(f"{label}: paramscope / torch.load = {ratio:.2f}× (target ≤ {TARGET}×)  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

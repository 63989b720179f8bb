"""Benchmark: ``paramscope inspect FILE.pt --format json`` of a checkpoint with a long list beside its weights, against
``torch.load(FILE, weights_only=True)`` alone.

The checkpoint is what a training loop saves with a log of its losses: ``{"w": torch.zeros(3), "losses": [0] *
10**7}`` (20 MB). torch's weights-only unpickler builds the list item by item; paramscope loads the file the same way
and then walks its containers, to find the tensors and to count the entries against its limit. Both run as fresh
processes, alternately, ``--repeat`` times; the table shows wall time and peak resident memory (``ru_maxrss`` of the
child), best and median, and the ratios of the medians. The inspect command runs the paramscope of the checkout this
file lies in (``src/`` first on PYTHONPATH).

The target is ≤ 1.5× torch.load for both wall time and peak memory: the walk looks at each item once, at C speed
where a list holds only numbers, and names only the containers that hold a tensor (it named every item: 3.1× the
time and 7.8× the memory, on 2026-11-27).

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default: 3)")
    parser.add_argument("--items", type=int, default=10_000_000, help="items of the list (default: 10,000,000)")
    options = parser.parse_args()

    import torch

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "last.pt"
        torch.save({"w": torch.zeros(3), "losses": [0] * options.items}, path)
        commands = {
            "paramscope inspect FILE --format json": [
                sys.executable, "-m", "paramscope.cli", "inspect", str(path), "--format", "json",
            ],
            "torch.load(FILE, weights_only=True)": [sys.executable, "-c", LOAD, str(path)],
        }  # fmt: skip
        report = json.loads(_measured(commands["paramscope inspect FILE --format json"], env)[2])
        expected = ["1 entry holds no tensor and is not counted: losses (list)"]
        if report["totals"]["params"] != 3 or report["notes"] != expected:
            print(f"paramscope counted {report['totals']['params']:,} parameters, with notes {report['notes']}: "
                  "not the 3 of 'w' and the list named: stopping")  # fmt: skip
            return 1
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for _ in range(options.repeat):
            for label, command in commands.items():
                wall, peak, _ = _measured(command, env)
                runs[label].append((wall, peak))
        size = path.stat().st_size

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}; a list of {options.items:,} numbers beside "
          f"3 weights, {size:,} bytes, {options.repeat} runs each")  # fmt: skip
    print()
    print(f"{'command':40}  {'wall best':>9}  {'median':>7}  {'peak MiB':>9}  {'median':>7}")
    medians = {}
    for label, values in runs.items():
        walls = [wall for wall, _ in values]
        peaks = [peak for _, peak in values]
        medians[label] = (statistics.median(walls), statistics.median(peaks))
        print(f"{label:40}  {min(walls):8.2f}s  {medians[label][0]:6.2f}s  {min(peaks):9.0f}  {medians[label][1]:7.0f}")
    ours, peer = medians.values()
    print()
    for what, index in (("wall time", 0), ("peak memory", 1)):
        ratio = ours[index] / peer[index]
        verdict = "PASS" if ratio <= TARGET else "MISS"
        print(f"{what}: paramscope / torch.load = {ratio:.2f}× (target ≤ {TARGET}×)  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

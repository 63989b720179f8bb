"""Benchmark: ``paramscope inspect DIR --format json`` on a 30-shard Llama-3-70B checkpoint, against ``import torch``.

The checkpoint has the real tensor names and shapes of Llama-3-70B (723 tensors, 70,553,706,496 parameters, 141 GB
in bfloat16), written as 30 safetensors shards plus their index, with the data regions left as holes of sparse
files: it takes a few hundred kilobytes of disk. Both commands run as fresh processes, alternately, ``--repeat``
times; the table shows each one's best and median wall time, and the ratio of the medians.

The target (from the project's issue) is inspect ≤ 0.15 × the time of ``python -c "import torch"``: reading only
headers, without torch, should cost a small fraction of merely importing torch.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_headers.py
    .venv/bin/python benchmarks/bench_headers.py --repeat 21

The exit status is 0 whatever the timings (a benchmark, not a test): a missed target is printed as MISS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the layout helpers live with the tests

from tests.checkpoints import LLAMA_3_70B, LLAMA_3_70B_PARAMS, llama_tensors, write_sharded  # noqa: E402

TARGET = 0.15


def _wall(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="runs of each command (default: 11)")
    parser.add_argument("--shards", type=int, default=30, help="number of shards (default: 30)")
    options = parser.parse_args()

    python = sys.executable
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_sharded(directory, llama_tensors(**LLAMA_3_70B), options.shards)
        inspect = [python, "-m", "paramscope.cli", "inspect", str(directory), "--format", "json"]
        import_torch = [python, "-c", "import torch"]

        _, output = _wall(inspect)  # also warms the page cache for both
        _wall(import_torch)
        totals = json.loads(output)["totals"]
        if totals["params"] != LLAMA_3_70B_PARAMS:
            print(f"paramscope counted {totals['params']:,} parameters, not {LLAMA_3_70B_PARAMS:,}: stopping")
            return 1

        times: dict[str, list[float]] = {"paramscope inspect DIR --format json": [], 'python -c "import torch"': []}
        for _ in range(options.repeat):
            for label, command in zip(times, (inspect, import_torch), strict=True):
                times[label].append(_wall(command)[0])

    print(f"python {sys.version.split()[0]}; {options.shards} shards, Llama-3-70B layout, {options.repeat} runs each")
    print(
        f"counted: {totals['params']:,} parameters, {totals['param_bytes']:,} bytes (published: {LLAMA_3_70B_PARAMS:,})"
    )
    print()
    print(f"{'command':40}  {'best':>8}  {'median':>8}")
    for label, runs in times.items():
        print(f"{label:40}  {min(runs):7.3f}s  {statistics.median(runs):7.3f}s")
    ratio = statistics.median(times["paramscope inspect DIR --format json"]) / statistics.median(
        times['python -c "import torch"']
    )
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print()
    print(f"inspect / import torch (medians): {ratio:.3f}× (target ≤ {TARGET}×)  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: ``paramscope inspect FILE`` on safetensors files of 100,000 and 1,000,000 tensors, against a walk of
the same file's tensors with the safetensors package.

Each file holds N small bfloat16 tensors named as a mixture of experts names them
(``blocks.7.experts.123.w2``: three weights an expert, 1,000 experts a block), over a data region left as a hole of a
sparse file. A million tensors with these names make a header of about 96 MB, near the 100 MB the format allows:
the most tensors one file can hold with names of this length. Checkpoints of mixtures of experts come near the
smaller size (DeepSeek-V3: about 91,000 tensors across its shards). ``--names deep`` names each tensor at the end of a
module chain of its own (``a7.b.c.d.w``): a table whose every module shown has modules below it.

The commands run as fresh processes, each ``--repeat`` times in turn:

* ``paramscope inspect FILE``: the header read and checked, the module tree (100,000 modules for a million
  tensors), the text report;
* ``paramscope inspect FILE --format json``: the same, and a row for every tensor;
* ``safe_open(FILE, "numpy")`` and each tensor's shape and dtype from ``get_slice``, summed up: the safetensors crate
  parsing and checking the header, with no module tree and no report, the floor of any count of that file.

The table gives each one's median wall time, its ratio to the safetensors walk and the time per tensor. The target
(as for a live model's count, ``bench_tally.py``): inspect linear in the number of tensors (the time per tensor
grows at most 1.5× from the smaller file to the larger).

Run it from the repository root::

    .venv/bin/python benchmarks/bench_many_tensors.py
    .venv/bin/python benchmarks/bench_many_tensors.py --sizes 100000 --repeat 5
    .venv/bin/python benchmarks/bench_many_tensors.py --names deep --sizes 10000,40000

The exit status is 0 whatever the timings (a benchmark, not a test): a missed target is printed as MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (100_000, 1_000_000)
LINEAR_TOLERANCE = 1.5
SHAPE = (4, 4)  # bfloat16: 32 bytes a tensor
MAX_HEADER_BYTES = 100_000_000  # the format's limit

WALK = """
import math, sys
from safetensors import safe_open
params = 0
with safe_open(sys.argv[1], "numpy") as handle:
    for name in handle.keys():
        view = handle.get_slice(name)
        view.get_dtype()
        params += math.prod(view.get_shape())
print(params)
"""


NAMES = {
    "experts": lambda index: f"blocks.{index // 3000}.experts.{index // 3 % 1000}.w{index % 3}",
    # each tensor its own module, at the end of a chain of its own: the table's modules at --depth each have children
    "deep": lambda index: f"a{index}.b.c.d.w",
}


def write_experts(path: Path, tensors: int, names: str = "experts") -> int:
    """A safetensors file of ``tensors`` bfloat16 tensors over a hole, named as ``NAMES[names]`` names them;
    returns their parameter count."""
    size = 2 * SHAPE[0] * SHAPE[1]
    shape = list(SHAPE)
    name = NAMES[names]
    header = {
        name(index): {
            "dtype": "BF16",
            "shape": shape,
            "data_offsets": [index * size, (index + 1) * size],
        }
        for index in range(tensors)
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    if len(raw) > MAX_HEADER_BYTES:
        raise SystemExit(f"{tensors:,} tensors make a {len(raw):,}-byte header, over the format's 100 MB")
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + tensors * size)
    return tensors * SHAPE[0] * SHAPE[1]


def _wall(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="tensor counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command at each size (default: 3)")
    parser.add_argument("--names", choices=sorted(NAMES), default="experts",
                        help="how the tensors are named (default: experts; deep: a module chain for each tensor, "
                             "five modules a tensor, so sizes of 100,000 and less)")  # fmt: skip
    options = parser.parse_args()
    sizes = sorted(int(size) for size in options.sizes.split(","))

    python = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    labels = ("paramscope inspect FILE", "paramscope inspect FILE --format json", "safe_open(FILE) walk")
    medians: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for tensors in sizes:
            path = Path(scratch) / f"experts-{tensors}.safetensors"
            params = write_experts(path, tensors, options.names)
            commands = (
                [python, "-m", "paramscope.cli", "inspect", str(path)],
                [python, "-m", "paramscope.cli", "inspect", str(path), "--format", "json"],
                [python, "-c", WALK, str(path)],
            )
            _, output = _wall(commands[1], env)  # also warms the page cache for all three
            counted = json.loads(output)["totals"]["params"]
            walked = int(_wall(commands[2], env)[1])
            if counted != params or walked != params:
                print(f"{tensors:,} tensors: paramscope counted {counted:,}, the walk {walked:,}, not {params:,}")
                return 1
            runs: dict[str, list[float]] = {label: [] for label in labels}
            for _ in range(options.repeat):
                for label, command in zip(labels, commands, strict=True):
                    runs[label].append(_wall(command, env)[0])
            medians[tensors] = {label: statistics.median(times) for label, times in runs.items()}

    print(f"python {sys.version.split()[0]}; median of {options.repeat} runs of each command, fresh processes")
    print()
    header = f"{'command':40}" + "".join(f"  {f'{size:,} tensors':>28}" for size in sizes)
    print(header)
    floor = labels[2]
    for label in labels:
        cells = []
        for size in sizes:
            wall = medians[size][label]
            cells.append(f"{wall:7.2f}s {wall / medians[size][floor]:5.2f}× {wall / size * 1e6:6.1f} µs")
        print(f"{label:40}" + "".join(f"  {cell:>28}" for cell in cells))
    print("(each cell: wall time, its ratio to the safetensors walk, time per tensor)")
    if len(sizes) > 1:
        print()
        for label in labels[:2]:
            small, large = (medians[size][label] / size for size in (sizes[0], sizes[-1]))
            growth = large / small
            verdict = "PASS" if growth <= LINEAR_TOLERANCE else "MISS"
            print(f"{label}: time per tensor grew {growth:.2f}× from {sizes[0]:,} to {sizes[-1]:,} tensors "
                  f"(linear: ≤ {LINEAR_TOLERANCE}×)  {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: ``paramscope inspect FILE.gguf --format json`` on a GGUF with a 262,144-token tokenizer, against
``gguf.GGUFReader(FILE)`` alone.

The file has Gemma 3's tokenizer size (262,144 tokens, a score and a type for each: 786,432 metadata array items),
the decoder keys paramscope reads (block count, per-layer head_count_kv, sliding_window_pattern, ...) and a few
small tensors; it takes about 4 MB. Both commands run as fresh processes, alternately, ``--repeat`` times; the table
shows each one's best and median wall time, and the ratio of the medians. The inspect command runs the paramscope of
the checkout this file lies in (``src/`` first on PYTHONPATH).

gguf's reader makes numpy arrays for every item of every metadata array (about 15 µs and 1 kB each); paramscope
parses the header itself and walks a string array's items by their lengths, so it should take a small fraction of
the reader's time (target: ≤ 0.25×, inspect's own start-up included).

Run it from the repository root::

    .venv/bin/python benchmarks/bench_gguf.py
    .venv/bin/python benchmarks/bench_gguf.py --repeat 11 --vocabulary 128256

The exit status is 0 whatever the timings (a benchmark, not a test): a missed target is printed as MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.25
LAYERS = 26


def _wall(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - start, done.stdout


def write_gguf(path: Path, vocabulary: int) -> int:
    """A GGUF file with a tokenizer of ``vocabulary`` tokens and Gemma 3's decoder keys; its parameter count."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_name("bench")
    writer.add_block_count(LAYERS)
    writer.add_head_count(4)
    writer.add_head_count_kv([1] * LAYERS)
    writer.add_embedding_length(1152)
    writer.add_key_length(256)
    writer.add_sliding_window(512)
    writer.add_array("gemma3.attention.sliding_window_pattern", [(i + 1) % 6 != 0 for i in range(LAYERS)])
    writer.add_token_list([f"<token {i}>" for i in range(vocabulary)])
    writer.add_token_scores([float(-i) for i in range(vocabulary)])
    writer.add_token_types([1] * vocabulary)
    params = 0
    for layer in range(LAYERS):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.zeros((8, 32), dtype=np.float16))
            params += 8 * 32
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default: 5)")
    parser.add_argument("--vocabulary", type=int, default=262_144, help="tokens (default: 262,144, Gemma 3's)")
    options = parser.parse_args()

    python = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.gguf"
        params = write_gguf(path, options.vocabulary)
        inspect = [python, "-m", "paramscope.cli", "inspect", str(path), "--format", "json"]
        reader = [python, "-c", "import sys, gguf; gguf.GGUFReader(sys.argv[1])", str(path)]

        _, output = _wall(inspect, env)  # also warms the page cache for both
        _wall(reader, env)
        totals = json.loads(output)["totals"]
        if totals["params"] != params:
            print(f"paramscope counted {totals['params']:,} parameters, not {params:,}: stopping")
            return 1

        labels = ("paramscope inspect FILE --format json", "gguf.GGUFReader(FILE)")
        times: dict[str, list[float]] = {label: [] for label in labels}
        for _ in range(options.repeat):
            for label, command in zip(labels, (inspect, reader), strict=True):
                times[label].append(_wall(command, env)[0])
        size = path.stat().st_size

    print(f"python {sys.version.split()[0]}; {options.vocabulary:,}-token tokenizer, {size:,} bytes, "
          f"{options.repeat} runs each")  # fmt: skip
    print(f"counted: {totals['params']:,} parameters (written: {params:,})")
    print()
    print(f"{'command':40}  {'best':>8}  {'median':>8}")
    for label, runs in times.items():
        print(f"{label:40}  {min(runs):7.3f}s  {statistics.median(runs):7.3f}s")
    ratio = statistics.median(times[labels[0]]) / statistics.median(times[labels[1]])
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print()
    print(f"inspect / GGUFReader (medians): {ratio:.3f}× (target ≤ {TARGET}×)  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

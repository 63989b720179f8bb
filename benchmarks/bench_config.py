"""Benchmark: ``paramscope inspect config.json`` on Llama-3-70B, against the floor of building that model on meta.

The floor is a process that only imports torch and transformers and builds ``LlamaForCausalLM`` from the same
config on the meta device (what any config-based count must do). paramscope does that and then the accounting and
the JSON report. Both run as fresh processes, alternately, ``--repeat`` times; the table shows wall time and peak
resident memory (``ru_maxrss`` of the child), best and median, and the ratios of the medians.

The target (from the project's issue) is ≤ 1.2× the floor for both wall time and peak memory.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_config.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 1.2
LLAMA_3_70B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
PUBLISHED = 70_553_706_496

FLOOR = """
import sys, torch, transformers
config = transformers.AutoConfig.from_pretrained(sys.argv[1])
with torch.device("meta"):
    model = transformers.LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
print(sum(p.numel() for p in model.parameters()))
"""


def _measured(command: list[str]) -> tuple[float, float, str]:
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
    output = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    first, _, rest = output.stdout.partition("\n")
    wall, peak_kib = first.split()
    return float(wall), int(peak_kib) / 1024, rest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default: 5)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "config.json"
        config.write_text(json.dumps(LLAMA_3_70B))
        commands = {
            "paramscope inspect config.json --format json": [
                sys.executable, "-m", "paramscope.cli", "inspect", str(config), "--format", "json",
            ],
            "floor: import torch, transformers; build on meta": [sys.executable, "-c", FLOOR, scratch],
        }  # fmt: skip
        counted = json.loads(_measured(commands["paramscope inspect config.json --format json"])[2])["totals"]["params"]
        floor_count = int(_measured(commands["floor: import torch, transformers; build on meta"])[2])
        if counted != PUBLISHED or floor_count != PUBLISHED:
            print(f"counts disagree: paramscope {counted:,}, floor {floor_count:,}, published {PUBLISHED:,}")
            return 1
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for _ in range(options.repeat):
            for label, command in commands.items():
                wall, peak, _ = _measured(command)
                runs[label].append((wall, peak))

    print(f"python {sys.version.split()[0]}; Llama-3-70B config ({PUBLISHED:,} parameters), {options.repeat} runs each")
    print()
    print(f"{'command':52}  {'wall best':>9}  {'median':>7}  {'peak MiB':>9}  {'median':>7}")
    medians = {}
    for label, values in runs.items():
        walls = [wall for wall, _ in values]
        peaks = [peak for _, peak in values]
        medians[label] = (statistics.median(walls), statistics.median(peaks))
        print(f"{label:52}  {min(walls):8.2f}s  {medians[label][0]:6.2f}s  {min(peaks):9.0f}  {medians[label][1]:7.0f}")
    ours, floor = medians.values()
    print()
    for what, index in (("wall time", 0), ("peak memory", 1)):
        ratio = ours[index] / floor[index]
        verdict = "PASS" if ratio <= TARGET else "MISS"
        print(f"{what}: paramscope / floor = {ratio:.2f}× (target ≤ {TARGET}×)  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""paramscope's memory estimates against a real GPU: run it on a machine with CUDA (CI has none).

paramscope sizes activations with a forward on the meta device that runs the kernels a GPU would (fused attention,
autocast's float32 ops). This script runs the same forwards on the GPU and measures, for each model, input and
precision:

1. **activations**: ``paramscope.memory(..., train=True)``'s activations item against the bytes the same forward
   saves for backward on the GPU, measured independently of paramscope: ``saved_tensors_hooks``, each storage
   once, the parameters, buffers and autocast's casts of them left out (the plan counts weights in items of their
   own). Exit 1 when one differs by more than ``--tolerance``.
2. **training step**: the plan's per-device total against ``torch.cuda.max_memory_allocated`` over one AdamW step
   (the second, when the optimizer's states exist). The plan leaves out the step's temporaries, kernel workspaces
   and fragmentation, and says so; the ratio is printed, not checked.
3. **inference**: the plan's activations item (the peak of live tensors in an eval forward on meta) and its KV
   cache against the GPU's peak over a ``no_grad`` forward (which fills transformers' cache), less what was
   allocated before it; printed, not checked.

Run it from the repository root on a GPU machine::

    python benchmarks/gpu_estimates.py [--only gpt2-hf] [--json results.json]

``--no-gpu`` prints paramscope's figures alone (to compare two torch versions on a machine without CUDA).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import paramscope  # after the path: the checkout's paramscope, installed or not
from paramscope.examples import gpt2, resnet50


def _gpt2_hf() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa"))


def _llama_hf() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=32, num_key_value_heads=4,
        vocab_size=32000, max_position_embeddings=4096, attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)  # nn.MultiheadAttention, with dropout
    return nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    batch: int
    seq: int | None = None  # token ids of batch × seq
    sample: tuple[int, ...] | None = None  # else float inputs of batch × sample
    precisions: tuple[str, ...] = ("fp32", "bf16-mixed", "bf16-pure")


DEVICE = "cuda"

CASES = (
    Case("gpt2-example", gpt2, batch=8, seq=1024),
    Case("gpt2-hf", _gpt2_hf, batch=8, seq=1024),
    Case("llama-hf", _llama_hf, batch=4, seq=2048),
    Case("resnet50-example", resnet50, batch=64, sample=(3, 224, 224)),
    Case("encoder", _encoder, batch=32, sample=(512, 512)),
)


@dataclass
class Saved:
    """What a forward saved for backward, each storage once: activations, and autocast's casts of the weights."""

    activations: int = 0
    weight_casts: int = 0
    by_function: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class _CurrentFunction(torch.overrides.TorchFunctionMode):
    """The innermost torch function running, to say which one saved a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = ["?"]

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.append(getattr(func, "__name__", str(func)))
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.names.pop()


# the graph nodes of a cast and of views: what lies between a weight and autocast's copy of it as an op saves it
_CAST = "ToCopyBackward0"
_VIEWS = frozenset({"TBackward0", "TransposeBackward0", "TransposeBackward1", "ViewBackward0", "PermuteBackward0",
                    "ExpandBackward0", "UnsqueezeBackward0", "SqueezeBackward0", "SqueezeBackward1", "AliasBackward0",
                    "UnsafeViewBackward0", "ReshapeAliasBackward0"})  # fmt: skip


def _cast_of_a_weight(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a weight cast to another dtype, seen through views (autocast's bfloat16 copy of a
    weight, its transpose): its graph reaches a leaf through a cast and views alone."""
    node, cast = tensor.grad_fn, False
    while node is not None:
        name = type(node).__name__
        if name == "AccumulateGrad":
            return cast
        if name != _CAST and name not in _VIEWS:
            return False
        cast = cast or name == _CAST
        node = node.next_functions[0][0]
    return False


@contextlib.contextmanager
def _saved_on_gpu(model: nn.Module) -> Iterator[Saved]:
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved = Saved()
    seen: set[int] = set()
    current = _CurrentFunction()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in weights and pointer not in seen and pointer != 0:
            seen.add(pointer)
            if _cast_of_a_weight(tensor):
                saved.weight_casts += storage.nbytes()
            else:
                saved.activations += storage.nbytes()
                saved.by_function[f"{current.names[-1]} {tuple(tensor.shape)} {tensor.dtype}"] += storage.nbytes()
        # not the tensor itself: an op that saves its output (softmax, tanh) would then hold its own graph node
        # through it, a cycle through C++ that is never freed
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), current:
        yield saved


def _inputs(case: Case, device: str, train: bool) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    generator = torch.Generator(device=device).manual_seed(0)
    if case.seq is not None:
        ids = torch.randint(0, 32000, (case.batch, case.seq), device=device, generator=generator)
        return (ids,), _keywords(case, ids, train)
    assert case.sample is not None
    return (torch.randn(case.batch, *case.sample, device=device, generator=generator),), {}


def _keywords(case: Case, ids: torch.Tensor, train: bool) -> dict[str, Any]:
    if not case.name.endswith("-hf"):
        return {}
    return {"labels": ids} if train else {"logits_to_keep": 1}  # as paramscope's plan runs a causal LM


def _loss(output: Any) -> torch.Tensor:
    loss = getattr(output, "loss", None)
    return loss if loss is not None else output.float().sum()


def _autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16-mixed":
        return torch.autocast(DEVICE, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _on_gpu(case: Case, precision: str) -> nn.Module:
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = case.build()
    return model.to(torch.bfloat16) if precision == "bf16-pure" else model


def _plans(case: Case, precision: str) -> tuple[paramscope.Report, paramscope.Report | None]:
    with torch.device("meta"):
        model = case.build()
    sizes: dict[str, Any] = (
        {"batch": case.batch, "seq": case.seq}
        if case.seq is not None
        else {"input_size": (case.batch, *(case.sample or ()))}
    )
    train = paramscope.memory(model, train=True, precision=precision, **sizes)
    inference = paramscope.memory(model, **sizes) if precision == "fp32" else None
    return train, inference


def _measure(case: Case, precision: str) -> dict[str, Any]:
    try:
        return _measured(case, precision)
    finally:  # what a failed case holds is freed for the next
        gc.collect()
        torch.cuda.empty_cache()


def _measured(case: Case, precision: str) -> dict[str, Any]:
    baseline = torch.cuda.memory_allocated()
    model = _on_gpu(case, precision)
    model.train()
    args, kwargs = _inputs(case, DEVICE, train=True)
    if precision == "bf16-pure" and case.sample is not None:
        args = tuple(arg.to(torch.bfloat16) for arg in args)
    with _saved_on_gpu(model) as saved, _autocast(precision):
        _loss(model(*args, **kwargs))
    result: dict[str, Any] = {
        "saved": saved.activations,
        "weight_casts": saved.weight_casts,
        "by_function": dict(sorted(saved.by_function.items(), key=lambda item: -item[1])),
    }
    torch.cuda.synchronize()

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with _autocast(precision):
            loss = _loss(model(*args, **kwargs))
        loss.backward()
        del loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    result["step_peak"] = torch.cuda.max_memory_allocated() - baseline
    del optimizer

    if precision == "fp32":
        model.eval()
        args, kwargs = _inputs(case, DEVICE, train=False)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            output = model(*args, **kwargs)
        torch.cuda.synchronize()
        result["inference_peak"] = torch.cuda.max_memory_allocated() - before
        del output
    return result


def _ratio(mine: int, theirs: int) -> str:
    return f"{mine / theirs:.4f}×" if theirs else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="a case's name (repeat for several; default: all)")
    parser.add_argument("--json", type=Path, help="write every figure, with the GPU's saved bytes by function")
    parser.add_argument("--tolerance", type=float, default=0.01, help="activations' allowed difference (0.01)")
    parser.add_argument("--no-gpu", action="store_true", help="paramscope's figures alone")
    options = parser.parse_args()
    gpu = not options.no_gpu
    if gpu and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or with --no-gpu")
    print(f"torch {torch.__version__}", torch.cuda.get_device_name() if gpu else "(no GPU)", flush=True)

    rows: list[dict[str, Any]] = []
    failed = 0
    for case in CASES:
        if options.only and case.name not in options.only:
            continue
        for precision in case.precisions:
            row: dict[str, Any] = {"case": case.name, "precision": precision}
            rows.append(row)
            started = time.perf_counter()
            try:
                train, inference = _plans(case, precision)
                assert train.memory is not None
                row["estimate"] = train.memory.item("activations").total_bytes
                row["plan_total"] = train.memory.per_device_bytes
                if inference is not None:
                    assert inference.memory is not None
                    # the GPU's peak holds the cache transformers fills in the forward: the plan's KV cache item
                    items = [item for item in inference.memory.items if item.name in ("activations", "KV cache")]
                    row["inference_estimate"] = sum(item.total_bytes for item in items)
                if gpu:
                    row.update(_measure(case, precision))
            except Exception as error:  # one case's failure is a row of its own; the others still run
                row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
            row["seconds"] = round(time.perf_counter() - started, 1)
            failed += _print(row, options.tolerance)
    if options.json:
        options.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failed else 0


def _print(row: dict[str, Any], tolerance: float) -> int:
    """Print one row; 1 when its activations are off by more than ``tolerance`` or it failed."""
    head = f"{row['case']:>16} {row['precision']:>10}"
    if "error" in row:
        print(f"{head}  ERROR {row['error']}", flush=True)
        return 1
    if "saved" not in row:
        print(f"{head}  activations {row['estimate']:,} B  plan {row['plan_total']:,} B", flush=True)
        return 0
    off = abs(row["estimate"] - row["saved"]) / row["saved"]
    verdict = "PASS" if off <= tolerance else "MISS"
    ratio = _ratio(row["estimate"], row["saved"])
    line = (
        f"{head}  activations: meta {row['estimate']:,} B, GPU {row['saved']:,} B ({ratio}"
        f" {verdict}; casts {row['weight_casts']:,} B)  step: plan {row['plan_total']:,} B, peak {row['step_peak']:,} B"
        f" ({_ratio(row['plan_total'], row['step_peak'])})"
    )
    if "inference_peak" in row:
        line += (
            f"  inference: meta {row['inference_estimate']:,} B, GPU {row['inference_peak']:,} B"
            f" ({_ratio(row['inference_estimate'], row['inference_peak'])})"
        )
    print(f"{line}  [{row['seconds']} s]", flush=True)
    return verdict == "MISS"


if __name__ == "__main__":
    sys.exit(main())

"""On meta, the grouped matrix product of mixtures of experts takes what torch's CPU kernel takes, with its results.

torch's meta kernel of ``_grouped_mm`` takes bfloat16 alone (its fast CUDA kernel's limit); the CPU kernel also takes
float32 and float16. Every case here runs on CPU first: the truth is what torch's CPU kernel returns or refuses.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import paramscope
from paramscope._on_meta import as_on_a_device

# (mat_a, mat_b, group sizes or None): each layout torch's kernels take
LAYOUTS = {
    "tokens × experts": ((16, 64), (4, 64, 32), [3, 5, 0, 8]),
    "batch × batch": ((4, 16, 64), (4, 64, 32), None),
    "split along k": ((16, 64), (64, 32), [16, 16, 0, 32]),
    "split along n": ((4, 16, 64), (64, 32), [8, 8, 0, 16]),
}


def _operands(layout: str, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    first, second, groups = LAYOUTS[layout]
    offs = None if groups is None else torch.tensor(groups, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    tensors = (torch.randn(first, dtype=dtype), torch.randn(second, dtype=dtype), offs)
    return tuple(None if t is None else t.to(device) for t in tensors)  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_results_are_the_cpu_kernels(layout: str, dtype: torch.dtype) -> None:
    mat_a, mat_b, offs = _operands(layout, dtype, "cpu")
    truth = torch._grouped_mm(mat_a, mat_b, offs=offs)
    mat_a, mat_b, offs = _operands(layout, dtype, "meta")
    with as_on_a_device():
        out = torch._grouped_mm(mat_a, mat_b, offs=offs)
    assert (out.device.type, out.shape, out.stride(), out.dtype) == ("meta", truth.shape, truth.stride(), truth.dtype)


def _misaligned(device: str) -> dict[str, Any]:  # rows of 10 float32 elements: 40 bytes, not a multiple of 16
    return {"mat_a": torch.randn(16, 10, device=device), "mat_b": torch.randn(4, 10, 32, device=device)}


REFUSED: dict[str, tuple[Callable[[str], dict[str, Any]], str]] = {
    "strides not 16-byte aligned": (_misaligned, "strides should be multiple of 16 bytes"),
    "int64 offsets": (lambda device: {"offs": torch.tensor([4, 8, 12, 16], device=device)}, "Offsets have to be"),
    "a bias": (lambda device: {"bias": torch.randn(4, 32, device=device)}, "Bias not supported yet"),
    "another output dtype": (lambda device: {"out_dtype": torch.bfloat16}, "Grouped gemm output dtype must match"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_cpu_kernel_refuses_is_refused(case: str) -> None:
    changes, message = REFUSED[case]
    for device in ("cpu", "meta"):
        mat_a, mat_b, offs = _operands("tokens × experts", torch.float32, device)
        arguments = {"mat_a": mat_a, "mat_b": mat_b, "offs": offs, **changes(device)}
        on_meta = as_on_a_device() if device == "meta" else contextlib.nullcontext()
        with pytest.raises(RuntimeError) as caught, on_meta:
            torch._grouped_mm(arguments.pop("mat_a"), arguments.pop("mat_b"), **arguments)
        assert str(caught.value).startswith(message), device


def test_mismatched_operands_are_refused_by_shape() -> None:
    mat_a, _, offs = _operands("tokens × experts", torch.float32, "meta")
    with pytest.raises(RuntimeError) as caught, as_on_a_device():
        torch._grouped_mm(mat_a, torch.empty(4, 63, 32, device="meta"), offs=offs)
    assert str(caught.value) == "_grouped_mm cannot multiply [16, 64] by [4, 63, 32] with offsets of shape [4]"


class Grouped(nn.Module):
    """One grouped product of a layout, its second operand a parameter (as experts' weights are)."""

    def __init__(self, layout: str) -> None:
        super().__init__()
        _, weight, self.offs = _operands(layout, torch.float32, "cpu")
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offs = None if self.offs is None else self.offs.to(x.device)
        return torch._grouped_mm(x, self.weight, offs=offs)


# multiply-adds, by hand: each row of mat_a through the k × n it meets (k cut in groups, or n, adds up to the same)
MACS = {
    "tokens × experts": 16 * 64 * 32,
    "batch × batch": 4 * 16 * 64 * 32,
    "split along k": 16 * 64 * 32,
    "split along n": 16 * 64 * 32,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_flops_of_each_layout_are_its_products(layout: str, device: str) -> None:
    inputs = _operands(layout, torch.float32, "cpu")[0]
    report = paramscope.summary(Grouped(layout), input_data=inputs, device=device)
    assert report.totals.flops == 2 * MACS[layout]


def test_the_meta_kernels_keep_dynamo_out_of_their_handler() -> None:
    # In a process of its own (dynamo marks a handler's code to skip for good once it has met it): a compiled
    # function runs as it is under the dispatch modes of a forward on meta, and dynamo, still on for the function
    # while a mode's handler runs, would trace the handler (and warn of the call that turns its callback off)
    code = textwrap.dedent(
        """
        import torch
        from torch._dynamo.utils import counters
        from paramscope._on_meta import as_on_a_device

        compiled = []
        mix = torch.compile(lambda x: torch.tanh(x) @ x.mT, backend=lambda graph, inputs: compiled.append(graph))
        with as_on_a_device():
            out = mix(torch.empty(4, 8, device="meta"))
        print(len(compiled), counters["frames"]["total"], *out.shape)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert (done.stdout.split(), done.stderr) == (["0", "0", "4", "4"], "")

"""The dtype table against torch itself: every dtype known, every size equal to a real tensor's storage."""

from __future__ import annotations

import warnings

import pytest
import torch

from paramscope import UsageError
from paramscope.dtypes import DTYPES, lookup

TORCH_DTYPES = sorted({value for value in vars(torch).values() if isinstance(value, torch.dtype)}, key=str)


def _storage_bytes(dtype: torch.dtype, numel: int, device: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized and complex32 tensors warn that they are experimental
        return torch.empty(numel, dtype=dtype, device=device).untyped_storage().nbytes()


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_every_torch_dtype_is_in_the_table(dtype: torch.dtype) -> None:
    assert lookup(str(dtype)).name == str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_table_bytes_equal_torch_storage_bytes(dtype: torch.dtype, device: str) -> None:
    entry = lookup(str(dtype))
    for numel in (0, 1, 2, 3, 7, 8, 9, 17, 1000):
        assert entry.nbytes(numel) == _storage_bytes(dtype, numel, device), (dtype, numel)


def test_torch_aliases_resolve_to_the_same_entry() -> None:
    for name, value in vars(torch).items():
        if isinstance(value, torch.dtype):
            assert lookup(name) is lookup(str(value)), name


def test_common_short_names() -> None:
    assert lookup("bf16").name == "bfloat16"
    assert lookup("FP16").name == "float16"
    assert lookup("fp32").nbytes(3) == 12
    assert lookup("int4").bits == 4
    assert lookup("float4_e2m1fn_x2").values_per_element == 2


def test_table_names_are_unique() -> None:
    names = [key.lower() for entry in DTYPES for key in (entry.name, *entry.aliases)]
    assert len(names) == len(set(names))


def test_unknown_dtype_error() -> None:
    with pytest.raises(UsageError) as error:
        lookup("float7")
    assert str(error.value) == "unknown dtype 'float7'; `paramscope dtypes` lists the known names"


def test_each_float8_dtype_answers_to_fp8_and_f8_with_torchs_suffix() -> None:
    # fp8_e4m3fnuz was known and fp8_e4m3fn, the most common of them, was not
    for name, value in vars(torch).items():
        if isinstance(value, torch.dtype) and name.startswith("float8_"):
            suffix = name.removeprefix("float8_")
            assert lookup(f"fp8_{suffix}") is lookup(f"f8_{suffix}") is lookup(name), name

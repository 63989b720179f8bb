"""The public functions' arguments: a value of the wrong type, or an option that does not apply to the model given,
is a one-line UsageError or TargetError that names it, never a TypeError from deep inside or an option ignored in
silence."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import paramscope
from paramscope import Budget, TargetError, UsageError

RESNET = "paramscope.examples:resnet18"
UNITS = "B, KiB, MiB, GiB, TiB, PiB, kB, MB, GB, TB, PB"
BUDGET = "budget must be a paramscope.Budget such as Budget(max_params=7_000_000_000)"


def linear() -> nn.Module:
    return nn.Linear(3, 4)


def report_model(**kwargs: Any) -> paramscope.Report:
    return paramscope.report_model(linear(), file=kwargs.pop("file", io.StringIO()), **kwargs)


def summary(**kwargs: Any) -> paramscope.Report:
    return paramscope.summary(kwargs.pop("model", linear()), input_size=(1, 3), **kwargs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paramscope.params_size(linear(), None), f"unit must be a byte unit such as 'MiB' ({UNITS}), not None"),
        (lambda: paramscope.params_size(linear(), 3), f"unit must be a byte unit such as 'MiB' ({UNITS}), not int 3"),
        (lambda: paramscope.params_size(linear(), buffers="yes"), "buffers must be True or False, not str 'yes'"),
        (lambda: report_model(depth="2"), "depth must be an integer, not str '2'"),
        (lambda: report_model(depth=-1), "depth must be 0 or more, not -1"),
        (lambda: report_model(depth=True), "depth must be an integer, not bool True"),
        (lambda: report_model(depth=1.5), "depth must be an integer, not float 1.5"),
        (lambda: report_model(title=3), "title must be a string, not int 3"),
        (lambda: report_model(tensors="no"), "tensors must be True or False, not str 'no'"),
        (lambda: report_model(file="out.txt"), "file must be an open text file (with a write method), not str "
         "'out.txt'"),
        (lambda: summary(depth=None), "depth must be an integer, not None"),
        (lambda: summary(depth=True), "depth must be an integer, not bool True"),
        (lambda: summary(depth="2"), "depth must be an integer, not str '2'"),
        (lambda: summary(quiet="no"), "quiet must be True or False, not str 'no'"),
        (lambda: summary(trust_remote_code="no"), "trust_remote_code must be True or False, not str 'no'"),
        (lambda: paramscope.summary(linear(), input_size=3), "input_size 3 is not a shape or a list of shapes"),
        (lambda: summary(model=RESNET, arguments=["num_classes=10"]),
         "arguments must be a mapping of the model's arguments, not list"),
        (lambda: summary(model=RESNET, model_class=3), "model_class must be a class name (a string), not int"),
        (lambda: paramscope.inspect(RESNET, ["num_classes=10"]),
         "arguments must be a mapping of the model's arguments, not list"),
        (lambda: paramscope.inspect(RESNET, "num_classes=10"),
         "arguments must be a mapping of the model's arguments, not str"),
        (lambda: paramscope.inspect(RESNET, model_class=3), "model_class must be a class name (a string), not int"),
        (lambda: paramscope.inspect(RESNET, quiet="no"), "quiet must be True or False, not str 'no'"),
        (lambda: paramscope.inspect(RESNET, from_config=1), "from_config must be True or False, not int 1"),
        (lambda: paramscope.inspect(RESNET, check="yes"), "check must be True or False, not str 'yes'"),
        (lambda: paramscope.inspect(linear(), explain="no"), "explain must be True or False, not str 'no'"),
        (lambda: paramscope.inspect(linear(), exclude_embeddings="no"),
         "exclude_embeddings must be True or False, not str 'no'"),
        (lambda: paramscope.inspect(linear(), all_ranks="no"), "all_ranks must be True or False, not str 'no'"),
        (lambda: paramscope.diff(RESNET, linear(), arguments_a=["num_classes=10"]),
         "arguments_a must be a mapping of the model's arguments, not list"),
        (lambda: paramscope.diff(linear(), RESNET, arguments_b="num_classes=10"),
         "arguments_b must be a mapping of the model's arguments, not str"),
        (lambda: paramscope.diff(RESNET, linear(), model_class=3), "model_class must be a class name (a string), not "
         "int"),
        (lambda: paramscope.diff(RESNET, linear(), from_config="no"), "from_config must be True or False, not str "
         "'no'"),
        (lambda: paramscope.diff(RESNET, linear(), quiet=None), "quiet must be True or False, not None"),
        (lambda: paramscope.check_budget(linear(), linear()), f"{BUDGET}, not Linear"),  # type: ignore[arg-type]
        (lambda: paramscope.check_budget(linear(), "1M"), f"{BUDGET}, not str '1M'"),  # type: ignore[arg-type]
        (lambda: paramscope.check_budget(linear(), None), f"{BUDGET}, not None"),  # type: ignore[arg-type]
        (lambda: paramscope.check_budget(linear(), Budget(max_bytes=1), "metric"),  # type: ignore[arg-type]
         "units must be 'iec' or 'si', not str 'metric'"),
        (lambda: Budget(max_params="1M"), "max_params must be a number or None, not str '1M'"),  # type: ignore[arg-type]
        (lambda: Budget(max_bytes=True), "max_bytes must be a number or None, not bool True"),
        (lambda: Budget(max_params=float("nan")), "max_params must be a number or None, not float nan"),  # never over
        # as the command line refuses --max-params -5: no model is under it, and the message's percentage would be < 0
        (lambda: Budget(max_params=-1), "max_params must be 0 or more, not int -1"),
        (lambda: Budget(max_bytes=-2.5), "max_bytes must be 0 or more, not float -2.5"),
        (lambda: Budget(max_bytes=float("-inf")), "max_bytes must be 0 or more, not float -inf"),
    ],
)  # fmt: skip
def test_an_argument_of_the_wrong_type_is_a_usage_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        call()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: summary(arguments={"x": 1}), "arguments applies to target strings only"),
        (lambda: summary(model_class="Foo"), "model_class applies to target strings only"),
        (lambda: summary(trust_remote_code=True), "trust_remote_code applies to target strings only"),
        (lambda: summary(arguments={"x": 1}, model_class="Foo", trust_remote_code=True),
         "arguments, model_class and trust_remote_code apply to target strings only"),
        (lambda: paramscope.inspect(linear(), model_class="Foo"), "model_class applies to target strings only"),
        (lambda: paramscope.inspect(linear(), trust_remote_code=True), "trust_remote_code applies to target strings "
         "only"),
        (lambda: paramscope.inspect(linear(), {"x": 1}, device="cpu", from_config=True, check=True,
                                    model_class="Foo", trust_remote_code=True),
         "arguments, device, from_config, check, model_class and trust_remote_code apply to target strings only"),
        (lambda: paramscope.memory(linear(), {"x": 1}), "arguments applies to target strings only"),
        (lambda: paramscope.memory(paramscope.inspect(linear()), model_class="Foo"),
         "model_class applies to target strings only"),
        (lambda: paramscope.memory(linear(), trust_remote_code=True), "trust_remote_code applies to target strings "
         "only"),
        (lambda: paramscope.diff(linear(), RESNET, arguments_a={"x": 1}), "arguments_a applies to target strings only"),
        (lambda: paramscope.diff(RESNET, linear(), arguments_b={"x": 1}), "arguments_b applies to target strings only"),
        (lambda: paramscope.diff(linear(), paramscope.inspect(linear()), device="cpu", from_config=True),
         "device and from_config apply to target strings only"),
        (lambda: paramscope.diff(linear(), linear(), model_class="Foo", trust_remote_code=True),
         "model_class and trust_remote_code apply to target strings only"),
    ],
)  # fmt: skip
def test_an_option_for_target_strings_is_refused_for_a_model(call: Callable[[], object], message: str) -> None:
    with pytest.raises(TargetError) as caught:
        call()
    assert str(caught.value) == message


def test_check_budget_takes_a_model_as_count_params_does() -> None:
    model = linear()  # 3 × 4 + 4 = 16 parameters
    with pytest.raises(paramscope.BudgetExceededError) as caught:
        paramscope.check_budget(model, Budget(max_params=10))
    assert str(caught.value) == "parameters: 16 > --max-params 10 (over by 6, 60.0 %)"
    paramscope.check_budget(model, Budget(max_params=16, max_bytes=64))
    paramscope.check_budget(RESNET, Budget(max_params=11_689_512))
    with pytest.raises(TargetError) as refused:
        paramscope.check_budget(object(), Budget())  # type: ignore[arg-type]
    assert str(refused.value) == "cannot inspect an object of type object: pass a torch.nn.Module or a target string"


@pytest.mark.parametrize("dtypes", [torch.long, "long"])
def test_summary_takes_one_dtype_for_every_input_as_memory_does(dtypes: Any) -> None:
    model = nn.Embedding(10, 4)
    report = paramscope.summary(model, input_size=(2, 5), dtypes=dtypes)
    assert report.calls[0].outputs == "[2, 5, 4]"


def test_numpys_bools_are_flags_as_its_integers_are_numbers() -> None:
    # explain=np.True_ was refused as "must be True or False, not bool" (numpy 2 names its type bool)
    import numpy as np

    model = nn.Sequential(linear())
    assert paramscope.inspect(model, explain=np.True_).module("0").formula == "Linear: 4 × 3 + 4 = 16"
    assert paramscope.inspect(model, explain=np.bool_(False)).module("0").formula is None
    assert paramscope.summary(model, input_size=(1, 3), depth=np.int64(0)).totals.params == 16


def test_what_the_refusals_leave_working() -> None:
    """A guard, not a fix: options reach the side that is a target string, empty ones pass with a model, and a
    budget in floats still counts."""
    from paramscope.examples import resnet18

    found = paramscope.diff(RESNET, resnet18(num_classes=10), arguments_a={"num_classes": 10}, device="meta")
    assert found.equal
    assert paramscope.inspect(linear(), {}, device=None, model_class=None).totals.params == 16
    assert paramscope.summary(linear(), input_size=(1, 3), arguments={}).totals.params == 16
    paramscope.check_budget(linear(), Budget(max_params=16.0, max_bytes=64.5))


def test_a_budget_in_floats_is_read_as_the_command_line_reads_it() -> None:
    """``Budget(max_params=7e9)``: a float limit is rounded down to whole parameters and bytes, as ``--max-params 7e9``
    is, so the message reads as the command line's (not ``--max-params 7,000,000,000.0``, ``over by 0.5``)."""
    model = linear()
    params = sum(p.numel() for p in model.parameters())  # 16
    size = sum(p.numel() * p.element_size() for p in model.parameters())  # 64 B
    assert Budget(max_params=1e1, max_bytes=63.9) == Budget(max_params=10, max_bytes=63)
    assert Budget(max_params=float("inf")).max_params == float("inf")  # no limit reached: kept as given
    assert Budget(max_params=2**2000).max_params == 2**2000  # no float holds it: an OverflowError before
    with pytest.raises(paramscope.BudgetExceededError) as caught:
        paramscope.check_budget(model, Budget(max_params=1e1, max_bytes=size - 0.1))
    assert str(caught.value) == (
        f"parameters: {params} > --max-params 10 (over by {params - 10}, {100 * (params - 10) / 10:.1f} %); "
        f"size (parameters + buffers): {size} B > --max-bytes {size - 1} B (over by 1 B, {100 / (size - 1):.1f} %)"
    )


def test_an_excess_that_rounds_to_no_percent_still_reads_as_one() -> None:
    model = nn.Linear(100, 100)
    params = sum(p.numel() for p in model.parameters())  # 10,100
    size = sum(p.numel() * p.element_size() for p in model.parameters())  # 40,400 B
    with pytest.raises(paramscope.BudgetExceededError) as caught:
        paramscope.check_budget(model, Budget(max_params=params - 1, max_bytes=size - 1))
    assert str(caught.value) == (
        f"parameters: {params:,} > --max-params {params - 1:,} (over by 1, < 0.1 %); size (parameters + buffers): "
        f"{size / 1024:.2f} KiB ({size:,} B) > --max-bytes {(size - 1) / 1024:.2f} KiB ({size - 1:,} B) (over by 1 B, "
        "< 0.1 %)"
    )


def test_an_excess_of_a_lower_bound_that_rounds_to_no_percent_reads_as_more_than_none() -> None:
    # a lazy layer's parameters are not counted yet: the excess is a lower bound, and so is its share of the limit
    model = nn.Sequential(nn.Linear(100, 100), nn.LazyLinear(3))
    params = sum(p.numel() for p in model[0].parameters())  # 10,100
    with pytest.raises(paramscope.BudgetExceededError) as caught:
        paramscope.check_budget(model, Budget(max_params=params - 1))
    assert (
        str(caught.value)
        == f"parameters: at least {params:,} > --max-params {params - 1:,} (over by at least 1, > 0.0 %)"
    )


def test_a_budget_one_byte_under_the_model_reads_as_two_sizes() -> None:
    # rounded alike (44.63 MiB > 44.63 MiB), the size and the limit each read in whole bytes too
    model = nn.Linear(1000, 1000)
    size = sum(p.numel() * p.element_size() for p in model.parameters())  # 4,004,000 B
    with pytest.raises(paramscope.BudgetExceededError) as caught:
        paramscope.check_budget(model, Budget(max_bytes=size - 1))
    assert str(caught.value) == (
        f"size (parameters + buffers): 3.82 MiB ({size:,} B) > --max-bytes 3.82 MiB ({size - 1:,} B) "
        "(over by 1 B, < 0.1 %)"
    )


def test_a_large_excess_reads_with_thousands_separators() -> None:
    model = linear()
    params = sum(p.numel() for p in model.parameters())  # 16
    with pytest.raises(paramscope.BudgetExceededError) as caught:
        paramscope.check_budget(model, Budget(max_params=1))
    assert str(caught.value) == f"parameters: {params} > --max-params 1 (over by {params - 1}, 1,500.0 %)"


def test_a_whole_limit_past_a_floats_precision_is_kept_exact() -> None:
    numpy = pytest.importorskip("numpy")
    for value in (numpy.int64(2**53 + 1), numpy.uint64(2**64 - 1), 2**53 + 1):
        assert Budget(max_params=value, max_bytes=value) == Budget(max_params=int(value), max_bytes=int(value))
        assert type(Budget(max_params=value).max_params) is int


def test_a_pathlib_path_is_the_target_it_names(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    path = tmp_path / "model.pt"
    expected = sum(p.numel() for p in model.parameters())
    assert paramscope.inspect(path).totals.params == paramscope.inspect(str(path)).totals.params == expected
    assert paramscope.memory(path).memory.item("weights").total_bytes == 4 * expected
    assert paramscope.diff(path, tmp_path).equal
    code = tmp_path / "net.py"
    code.write_text("from torch import nn\nnet = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))\n")
    report = paramscope.summary(Path(f"{code}:net"), input_size=(1, 4))
    assert report.totals.params == expected
    assert report.source.target == f"{code}:net"

"""The calculator (`paramscope formula`) and the dtype table (`paramscope dtypes`) from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import paramscope
from paramscope import formulas
from paramscope.cli import main
from paramscope.dtypes import DTYPES


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_study_note_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "formula", "conv2d", "in_channels=3", "out_channels=64", "kernel_size=7", "bias=false"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Conv2d: 64 × 3/1 × 7 × 7 = 9,408"
    rows = {line.split()[0]: line.split() for line in lines[4:] if line.strip()}
    # 9,408 parameters: 4 bytes each in float32, 2 in (b)float16, 1 in 8-bit types, half a byte in int4
    assert rows["float32"][-1] == "37,632"
    assert rows["bfloat16"][-1] == "18,816"
    assert rows["int8"][-1] == "9,408"
    assert rows["int4"][-1] == "4,704"


def test_layer_names_are_case_insensitive_and_ignored_arguments_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    _, out_lower, _ = _run(capsys, "formula", "conv2d", "in_channels=8", "out_channels=8", "kernel_size=(3,1)")
    _, out_mixed, _ = _run(
        capsys, "formula", "Conv2D", "in_channels=8", "out_channels=8", "kernel_size=(3,1)", "stride=2", "padding=1"
    )
    assert out_lower == out_mixed
    assert out_lower.splitlines()[0] == "Conv2d: 8 × 8/1 × 3 × 1 + 8 = 200"


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "formula", "batchnorm2d", "num_features=64", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data == {
        "layer": "BatchNorm2d",
        "params": 128,
        "buffers": 129,
        "text": "BatchNorm2d: 2 × 64 = 128 (buffers: 2 × 64 + 1 = 129)",
        "arguments": {"num_features": 64},
        "bytes": {"float32": 512, "float16": 256, "bfloat16": 256, "float8_e4m3fn": 128, "int8": 128, "int4": 64},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["formula", "conv2d", "in_channels=3"],
            "Conv2d needs 'out_channels', 'kernel_size'; arguments: in_channels: int, out_channels: int, "
            "kernel_size: int | tuple[int, ...], groups: int = 1, bias: bool = True",
        ),
        (
            ["formula", "linear", "in_features=3", "out_features=4", "baias=false"],
            "Linear takes no argument 'baias'; arguments: in_features: int, out_features: int, bias: bool = True",
        ),
        (
            ["formula", "linear", "in_features=three", "out_features=4"],
            "Linear: in_features='three' is not int; arguments: in_features: int, out_features: int, bias: bool = True",
        ),
        (
            ["formula", "conv2d", "in_channels=4", "out_channels=64", "kernel_size=7", "groups=0"],
            "Conv2d: groups must be at least 1, not 0",
        ),
        (
            ["formula", "multiheadattention", "embed_dim=8", "num_heads=0"],
            "MultiheadAttention: num_heads must be at least 1, not 0",
        ),
        (
            ["formula", "lazylinear", "out_features=4"],
            "LazyLinear is Linear once initialised: Linear needs 'in_features'; arguments: in_features: int, "
            "out_features: int, bias: bool = True",
        ),
        (
            ["formula", "linear", "in_features=4611686018427387904", "out_features=4611686018427387904"],
            "Linear: weight (4,611,686,018,427,387,904 × 4,611,686,018,427,387,904) would have "
            "21,267,647,932,558,653,966,460,912,964,485,513,216 elements, more than a tensor can hold (2**63 - 1)",
        ),
        (["formula"], "name a LAYER (e.g. conv2d), or use --list to see them all"),
        (["formula", "relu", "--list"], "--list takes no LAYER or arguments"),
        (["formula", "linear", "in_features"], "argument 'in_features' is not of the form key=value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = _run(capsys, *argv)
    assert (code, out, err) == (2, "", f"paramscope: error: {message}\n")


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["lazylinear", "in_features=512", "out_features=10"], "Linear: 10 × 512 + 10 = 5,130"),
        (["LazyConv2d", "in_channels=3", "out_channels=8", "kernel_size=3"], "Conv2d: 8 × 3/1 × 3 × 3 + 8 = 224"),
        (["lazybatchnorm1d", "num_features=4"], "BatchNorm1d: 2 × 4 = 8 (buffers: 2 × 4 + 1 = 9)"),
    ],
)
def test_lazy_layers_are_counted_as_the_layer_they_become(
    capsys: pytest.CaptureFixture[str], argv: list[str], first_line: str
) -> None:
    # LazyLinear is a Linear once its first forward pass has read in_features off the input
    code, out, err = _run(capsys, "formula", *argv)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == first_line


def test_unknown_layer_lists_the_valid_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "formula", "conv4d")
    assert code == 2
    assert err.startswith("paramscope: error: no formula for layer 'conv4d'; did you mean Conv3d, Conv2d, Conv1d? ")
    assert err.count("\n") == 1
    for name in formulas.REGISTRY:
        assert name in err


def test_list_shows_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "formula", "--list", "--format", "json")
    assert code == 0
    listed = {entry["layer"]: entry for entry in json.loads(out)}
    assert set(listed) == set(formulas.REGISTRY)
    assert listed["Linear"]["arguments"] == ["in_features: int", "out_features: int", "bias: bool = True"]
    assert listed["Sequential"]["kind"] == "container"


def test_dtypes_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "dtypes", "--format", "json")
    assert code == 0
    table = {entry["name"]: entry for entry in json.loads(out)}
    assert [entry["name"] for entry in json.loads(out)] == [dtype.name for dtype in DTYPES]
    assert table["bfloat16"]["bits"] == 16
    assert table["quint4x2"]["block_elements"] == 2
    code, out, _ = _run(capsys, "dtypes")
    assert code == 0
    assert "float8_e4m3fn" in out
    assert "bf16" in out


def test_dtypes_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "dtypes", "float32")
    assert code == 2
    assert err == "paramscope: error: unrecognized arguments: float32 (see 'paramscope dtypes --help')\n"


def test_dtypes_takes_no_units(capsys: pytest.CaptureFixture[str]) -> None:
    # from review: --units was accepted and changed nothing: the table's sizes are bytes per element
    code, _, err = _run(capsys, "dtypes", "--units", "si")
    assert code == 2
    assert err == "paramscope: error: unrecognized arguments: --units si (see 'paramscope dtypes --help')\n"
    code, out, _ = _run(capsys, "dtypes", "--help")
    assert (code, "--format" in out, "--units" in out) == (0, True, False)


@pytest.mark.parametrize(
    "argv", [["dtypes"], ["formula", "lstm", "input_size=8", "hidden_size=16"], ["formula", "--list"]]
)
def test_formula_and_dtypes_take_quiet_as_every_command_does(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # a script passes -q to every command: these show no progress, and write the same with it
    plain = _run(capsys, *argv)
    for quiet in ("-q", "--quiet"):
        assert _run(capsys, *argv, quiet) == plain
    assert plain[0] == 0


def test_formula_and_dtypes_work_without_torch(tmp_path) -> None:
    # A `torch` package whose import fails stands in front of the real one: the commands must not need it.
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('torch must not be imported here')\n")
    # the tree under test first, then the stand-in `torch`
    env = {"PYTHONPATH": os.pathsep.join([str(Path(paramscope.__file__).parents[1]), str(tmp_path)])}
    for argv in (["formula", "lstm", "input_size=8", "hidden_size=16"], ["dtypes"], ["formula", "--list"]):
        result = subprocess.run(
            [sys.executable, "-m", "paramscope.cli", *argv],
            capture_output=True,
            text=True,
            env={**env, "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
    lstm = subprocess.run(
        [sys.executable, "-m", "paramscope.cli", "formula", "lstm", "input_size=8", "hidden_size=16"],
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert lstm.stdout.splitlines()[0] == "LSTM: 4 × 16 × 8 + 4 × 16 × 16 + 2 × 4 × 16 = 1,664"

"""The outputs a forward on meta makes of an op it has seen, without running it, are those the op gives.

Two checks against torch's fake tensors themselves: each output made without running the op is compared with the
op's own output for the same arguments (size, strides, offset, dtype, device, storage and what it shares), through
whole forwards of models of many kinds; and the reports of those forwards are the reports made with every op run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

import paramscope
from paramscope import _fake_outputs
from paramscope._fake_outputs import FakeOutputs
from paramscope.trace import ForwardError

from .models import tiny_gpt
from .test_summary import tiny_decoders, tiny_mixtral, tiny_t5, tiny_whisper

aten = torch.ops.aten


def _described(out: Any, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Each output's metadata, its storage's size, and which of the arguments' storages and the earlier outputs' it
    shares."""
    storages = [arg.untyped_storage()._cdata for arg in args if isinstance(arg, torch.Tensor)]
    described: list[tuple[Any, ...]] = []
    for output in out if isinstance(out, (tuple, list)) else (out,):
        if not isinstance(output, torch.Tensor):
            described.append((type(output), output))
            continue
        storage = output.untyped_storage()._cdata
        shares = [index for index, other in enumerate(storages) if other == storage]
        described.append((type(output), output.shape, output.stride(), output.storage_offset(), output.dtype,
                          output.device, output.requires_grad, output.untyped_storage().nbytes(), shares))  # fmt: skip
        storages.append(storage)
    return described


@pytest.fixture
def made_and_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, list[Any], list[Any]]]:
    """Every op answered without running: the op, its outputs as made, and as the op gives them."""
    checked: list[tuple[Any, list[Any], list[Any]]] = []
    run = FakeOutputs.run

    def checked_run(self: FakeOutputs, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        repeats = self.repeats
        out = run(self, func, args, kwargs)
        if self.repeats > repeats:
            checked.append((func, _described(out, args), _described(func(*args, **kwargs), args)))
        return out

    monkeypatch.setattr(FakeOutputs, "run", checked_run)
    return checked


class _ConvNet(nn.Module):
    """Convolutions in channels-last, a BatchNorm, pooling, dropout and a LSTM: ops of other kinds than a
    transformer's."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, groups=2), nn.MaxPool2d(2), nn.Dropout(0.1))  # fmt: skip
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x.contiguous(memory_format=torch.channels_last))
        sequence = features.flatten(2).transpose(1, 2)
        out, _ = self.rnn(sequence)
        return self.head(out.chunk(2, dim=1)[0].mean(1))


def _ids() -> torch.Tensor:
    return torch.randint(3, 100, (2, 8))


def _encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


# each built when its test runs, with its inputs
MODELS: dict[str, Callable[[], tuple[nn.Module, dict[str, Any]]]] = {
    **{name: (lambda name=name: tiny_decoders()[name]) for name in ("llama", "mistral", "bart")},
    "t5": lambda: (tiny_t5(), {"input_ids": (ids := _ids()), "decoder_input_ids": ids}),
    "whisper": lambda: (tiny_whisper(), {"input_features": torch.randn(2, 8, 60), "decoder_input_ids": _ids()}),
    "mixtral": lambda: (tiny_mixtral(), {"input_ids": torch.randint(0, 50, (2, 8))}),
    "gpt": lambda: (tiny_gpt(), {"idx": torch.randint(0, 101, (2, 16))}),
    "conv": lambda: (_ConvNet(), {"x": torch.randn(2, 3, 16, 16)}),
    "encoder": lambda: (_encoder(), {"src": torch.randn(2, 8, 16)}),
}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_made_without_running_an_op_are_its_own(
    name: str, mode: str, made_and_run: list[tuple[Any, list[Any], list[Any]]]
) -> None:
    model, inputs = MODELS[name]()
    paramscope.summary(model, input_data=inputs, mode=mode)
    assert made_and_run, "no op was answered without running"
    assert [(func, made) for func, made, _ in made_and_run] == [(func, truth) for func, _, truth in made_and_run]


@pytest.mark.parametrize("name", list(MODELS))
def test_reports_are_those_of_a_forward_that_runs_every_op(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = MODELS[name]()

    def reports() -> list[paramscope.Report]:
        made = [paramscope.summary(model, input_data=inputs, mode=mode, depth=10) for mode in ("eval", "train")]
        if len(inputs) == 1:  # a memory plan takes the sizes of positional inputs
            (tensor,) = inputs.values()
            made += [paramscope.memory(model, input_size=tensor.shape, input_dtypes=[tensor.dtype], train=train)
                     for train in (False, True)]  # fmt: skip
        return made

    made = reports()
    monkeypatch.setattr(_fake_outputs, "_covered", lambda func: False)
    assert made == reports()


def test_a_python_number_is_kept_with_its_type() -> None:
    # 2 and 2.0 are one key in a dict, and make outputs of different dtypes from an integer tensor
    with FakeTensorMode() as fake:
        counts = torch.empty(4, dtype=torch.int64)
    outputs = FakeOutputs()
    with fake:
        by_int = outputs.run(aten.mul.Scalar, (counts, 2), {})
        by_float = outputs.run(aten.mul.Scalar, (counts, 2.0), {})
        by_int_again = outputs.run(aten.mul.Scalar, (counts, 2), {})
    assert (by_int.dtype, by_float.dtype, by_int_again.dtype, outputs.repeats) == (
        torch.int64,
        torch.float32,
        torch.int64,
        1,
    )


def test_a_view_is_made_of_its_arguments_storage_and_a_new_output_has_its_own() -> None:
    with FakeTensorMode() as fake:
        x = torch.empty(4, 6)
    outputs = FakeOutputs()
    with fake:
        views = [outputs.run(aten.transpose.int, (x, 0, 1), {}) for _ in range(2)]
        products = [outputs.run(aten.mul.Tensor, (x, x), {}) for _ in range(2)]
    storage = x.untyped_storage()._cdata
    assert [view.untyped_storage()._cdata == storage for view in views] == [True, True]
    assert [(view.shape, view.stride()) for view in views] == [((6, 4), (1, 6))] * 2
    assert len({product.untyped_storage()._cdata for product in products} | {storage}) == 3
    assert outputs.repeats == 2


def test_ops_that_write_or_read_values_always_run() -> None:
    with FakeTensorMode() as fake:
        x = torch.empty(4, 6)
        mask = torch.empty(4, 6, dtype=torch.bool)
    outputs = FakeOutputs()
    with fake:
        for _ in range(2):
            assert outputs.run(aten.add_.Tensor, (x, x), {}) is x
            with pytest.raises(Exception, match=r"nonzero|data-dependent|dynamic"):
                outputs.run(aten.nonzero.default, (mask,), {})
    assert outputs.repeats == 0


def test_tensors_that_are_not_fake_or_hold_a_constant_always_run() -> None:
    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        x = torch.empty(3)
    # a fake tensor that keeps its values, as torch's fake tensors make of a small tensor they see made
    constant = fake.fake_tensor_converter.from_real_tensor(fake, torch.ones(3), make_constant=True)
    assert isinstance(constant, FakeTensor)
    assert constant.constant is not None
    real = torch.ones(3)
    outputs = FakeOutputs()
    with fake:
        for _ in range(2):
            outputs.run(aten.add.Tensor, (x, real), {})
            outputs.run(aten.add.Tensor, (constant, constant), {})
    assert outputs.repeats == 0


def test_an_argument_with_a_storage_of_another_size_is_not_a_repeat() -> None:
    # torch's meta kernel of as_strided reads the storage's size (a view past its end); torch's cache keys it too
    with FakeTensorMode() as fake:
        ten, five = torch.empty(10)[:5], torch.empty(5)
    outputs = FakeOutputs()
    with fake:
        views = [outputs.run(aten.as_strided.default, (base, (5,), (1,)), {}) for base in (ten, five)]
    assert [view.untyped_storage().nbytes() for view in views] == [40, 20]
    assert outputs.repeats == 0


class _Checked(nn.Module):
    """A layer that checks its input first, with an op that returns nothing (a repeat of it in the next layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert_async((x.abs() >= 0).all(), "values must be finite")
        return self.linear(x)


def test_an_op_that_returns_nothing_runs_each_time() -> None:
    report = paramscope.summary(nn.Sequential(_Checked(), _Checked()), input_size=(2, 8))
    assert report.totals.flops == 2 * (2 * 2 * 8 * 8)


class _InferenceTable(nn.Module):
    """A view of a tensor made in inference mode, with the metadata of a view of one made outside it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.linear(x.transpose(0, 1))
        with torch.inference_mode():
            table = x * 1
        return first + self.linear(table.transpose(0, 1))


def test_an_inference_tensor_saved_for_backward_is_refused_as_on_cpu() -> None:
    model, x = _InferenceTable(), torch.randn(8, 2)
    message = "Inference tensors cannot be saved for backward"
    with pytest.raises(RuntimeError, match=message):
        model(x)
    with pytest.raises(ForwardError, match=message):
        paramscope.summary(model, input_data={"x": x}, mode="train")


class _FrozenUnderInferenceMode(nn.Module):
    """Two frozen blocks run in inference mode (views of the weights made there, repeated), then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.ParameterList([nn.Parameter(torch.randn(16, 16)) for _ in range(2)])
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            for weight in self.frozen:
                x = torch.relu(x @ weight.t())
        return self.head(x.clone())


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_forward_in_inference_mode_runs_on_meta_as_on_cpu(mode: str) -> None:
    model, inputs = _FrozenUnderInferenceMode(), {"x": torch.randn(2, 16)}
    cpu, meta = (paramscope.summary(model, input_data=inputs, mode=mode, device=device) for device in ("cpu", "meta"))
    assert meta.totals.flops == cpu.totals.flops == 2 * 2 * (2 * 16 * 16) + 2 * 2 * 16 * 4
    if mode == "train":  # on the cpu, an eval-mode summary measures none
        assert meta.totals.activations_bytes == cpu.totals.activations_bytes == 2 * 16 * 4  # the head's input


def test_an_output_that_is_not_a_tensor_is_not_remembered() -> None:
    # an op whose one output is optional and was None (or a number): made again, it would be called as a container
    with FakeTensorMode() as fake:
        x = torch.empty(4)
    with fake:
        assert [_fake_outputs._remembered(out, [x], fake, False) for out in (None, 4)] == [None, None]
        assert _fake_outputs._remembered((None, x * 2), [x], fake, False) is not None  # one of several: kept

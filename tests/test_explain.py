"""inspect --explain: each layer's formula next to its count, checked against the tensors it holds."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
import torch
from torch import nn

import paramscope
from paramscope import formulas
from paramscope.cli import main
from paramscope.render import View, render

from .models import lazy, parametrized, tiny_gpt


class ScaledLinear(nn.Linear):
    """A Linear subclass that adds a parameter: Linear's formula no longer describes it."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.scale = nn.Parameter(torch.ones(out_features))


class WithOwnParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(3))
        self.proj = ScaledLinear(4, 5)


def _explained(model: nn.Module) -> paramscope.Report:
    return paramscope.inspect(model, explain=True)


def test_every_layer_of_resnet18_has_a_matching_formula() -> None:
    report = paramscope.inspect("paramscope.examples:resnet18", explain=True)
    layers = [node for node in report.modules if node.type in {"Conv2d", "BatchNorm2d", "Linear"}]
    assert len(layers) == 20 + 20 + 1
    assert all(node.formula_matches for node in layers)
    assert report.module("conv1").formula == "Conv2d: 64 × 3/1 × 7 × 7 = 9,408"
    assert report.module("fc").formula == "Linear: 1,000 × 512 + 1,000 = 513,000"
    assert report.module("layer1").formula is None  # a container: its children carry the counts
    assert report.totals == paramscope.inspect("paramscope.examples:resnet18").totals


def test_tied_head_keeps_its_formula() -> None:
    with torch.device("meta"):
        report = _explained(tiny_gpt())
    head = report.module("lm_head")
    assert (head.params, head.formula, head.formula_matches) == (0, "Linear: 101 × 12 = 1,212", True)


def test_subclass_that_adds_a_parameter_is_flagged_and_counted_from_its_tensors() -> None:
    model = WithOwnParameter()
    report = _explained(model)
    proj = report.module("proj")
    assert proj.formula == "Linear: 5 × 4 + 5 = 25"
    assert proj.formula_matches is False
    assert proj.params == sum(p.numel() for p in model.proj.parameters()) == 30
    assert (
        "'proj' (ScaledLinear): the Linear formula gives 25 parameters and 0 buffer elements, but its tensors hold "
        "30 and 0; the tensors are counted" in report.notes
    )
    assert "'(model)' (WithOwnParameter) has parameters of its own and no formula: they are counted directly" in (
        report.notes
    )
    text = render(report, "table", View(depth=1, explain=True))
    assert "no formula — counted directly" in text
    assert "✗ formula differs from its tensors: the tensors are counted" in text


def test_parametrized_layers_are_flagged() -> None:
    report = _explained(parametrized())
    weight_norm = report.module("0")
    assert weight_norm.formula == "Linear: 7 × 5 + 7 = 42"
    assert weight_norm.formula_matches is False  # weight_norm stores g (7×1) beside v (7×5)
    assert weight_norm.params == 7 + 35 + 7
    assert report.module("2").formula_matches is True  # a parametrization without tensors of its own


def unwritten(layer: str, formula: str) -> str:
    return (
        f"{layer}: no {formula} formula until the uninitialised lazy tensors in it have sizes (its first forward pass)"
    )


def test_lazy_layers_have_no_formula_until_initialised() -> None:
    model = lazy()
    report = _explained(model)
    assert report.module("0").formula is None
    assert report.module("2").formula == "Linear: 2 × 6 + 2 = 14"
    # from review: the formula column was blank and no note said why
    assert report.notes == (*paramscope.inspect(model).notes, unwritten("'0' (LazyLinear)", "Linear"),
                            unwritten("'3' (LazyBatchNorm1d)", "BatchNorm1d"))  # fmt: skip
    model(torch.zeros(3, 4))
    initialised = _explained(model)
    assert initialised.module("0").formula == "Linear: 6 × 4 + 6 = 30"
    assert initialised.module("3").formula_matches is True
    assert not [note for note in initialised.notes if "no Linear formula" in note]


def test_a_layer_whose_formula_reads_a_lazy_child_says_why_it_has_none() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32)
    layer.linear1 = nn.LazyLinear(32)
    report = _explained(layer)
    assert (report.module("").formula, report.module("linear1").formula) == (None, None)
    assert report.notes[-2:] == (unwritten("'(model)' (TransformerEncoderLayer)", "TransformerEncoderLayer"),
                                 unwritten("'linear1' (LazyLinear)", "Linear"))  # fmt: skip


def test_explain_golden_resnet18(golden, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "paramscope.examples:resnet18", "--explain"]) == 0
    golden("resnet18-explain.txt", capsys.readouterr().out)


def test_explain_golden_gpt2(golden, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["vocab_size=1000", "n_positions=64", "n_embd=32", "n_layer=2", "n_head=4"]
    assert main(["inspect", "paramscope.examples:gpt2", *args, "--explain"]) == 0
    golden("gpt2-explain.txt", capsys.readouterr().out)


def test_explain_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "paramscope.examples:resnet18", "--explain", "--format", "json"]) == 0
    modules = {entry["path"]: entry for entry in json.loads(capsys.readouterr().out)["modules"]}
    assert modules["conv1"]["formula"] == "Conv2d: 64 × 3/1 × 7 × 7 = 9,408"
    assert modules["conv1"]["formula_matches"] is True
    assert (modules["layer1"]["formula"], modules["layer1"]["formula_matches"]) == (None, None)


def test_without_explain_the_formula_fields_are_null(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "paramscope.examples:resnet18", "--format", "json"]) == 0
    modules = json.loads(capsys.readouterr().out)["modules"]
    assert all(entry["formula"] is None and entry["formula_matches"] is None for entry in modules)


def _lazy_out_proj() -> nn.Module:
    attention = nn.MultiheadAttention(8, 2)
    attention.out_proj = nn.LazyLinear(8)  # type: ignore[assignment]
    return attention


def _lazy_weight() -> nn.Module:
    layer = nn.Linear(3, 3)
    layer.weight = nn.UninitializedParameter()
    return nn.Sequential(layer)


@pytest.mark.parametrize(
    ("build", "path", "formula", "layer"),
    [
        (
            _lazy_out_proj,
            "",
            "MultiheadAttention: 3 × 8 × 8 + 3 × 8 + 8 × 8 + 8 = 288",
            "'(model)' (MultiheadAttention)",
        ),
        (_lazy_weight, "0", "Linear: 3 × 3 + 3 = 12", "'0' (Linear)"),
    ],
    ids=["lazy-child", "lazy-weight"],
)
def test_a_layer_with_lazy_tensors_has_its_formula_unchecked(build, path: str, formula: str, layer: str) -> None:
    model = build()
    plain = paramscope.inspect(model)
    report = _explained(model)
    assert report.totals == plain.totals
    assert not report.totals.complete
    node = report.module(path)
    assert (node.formula, node.formula_matches) == (formula, None)
    params = formula.rpartition(" = ")[2]
    lazy_child = [unwritten("'out_proj' (LazyLinear)", "Linear")] if path == "" else []  # the lazy layer itself
    assert report.notes == (
        *plain.notes,
        f"{layer}: the {formula.partition(':')[0]} formula gives {params} parameters and 0 buffer elements, which "
        "cannot be checked: some of its tensors have no known size",
        *lazy_child,
    )
    text = render(report, "table", View(depth=1, explain=True))
    assert "sizes unknown (see notes); formula cannot be checked" in text


class HiddenExtra(nn.Linear):
    """A Linear whose named_parameters leaves out a parameter it holds."""

    def __init__(self) -> None:
        super().__init__(3, 3)
        self.extra = nn.Parameter(torch.ones(5))

    def named_parameters(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        return ((name, p) for name, p in super().named_parameters(*args, **kwargs) if not name.endswith("extra"))


def test_formula_is_checked_against_the_tensors_the_report_counts() -> None:
    model = nn.Sequential(HiddenExtra())
    report = _explained(model)
    held = sum(t.numel() for t in model[0]._parameters.values())  # what the module holds, as the walk reads it
    node = report.module("0")
    assert (node.params, node.formula_matches) == (held, False)
    assert held == 17
    assert report.notes == (
        "'0' (HiddenExtra): the Linear formula gives 12 parameters and 0 buffer elements, but its tensors hold 17 "
        "and 0; the tensors are counted",
    )


def _chain(length: int) -> nn.Module:
    """Linear layers each holding the next as its child ``c``: a model as deep as it is long."""
    root = current = nn.Linear(1, 1)
    for _ in range(length):
        current.c = nn.Linear(1, 1)
        current = current.c
    return root


def test_explain_a_model_as_deep_as_it_is_long() -> None:
    length = 1000  # deeper than Python's default recursion limit
    report = _explained(_chain(length))
    assert report.totals == paramscope.inspect(_chain(length)).totals
    layers = report.modules
    assert len(layers) == length + 1
    assert [node.params for node in layers] == [2 * (length + 1 - depth) for depth in range(length + 1)]
    assert all(node.formula == "Linear: 1 × 1 + 1 = 2" for node in layers)
    assert [node.formula_matches for node in layers] == [False] * length + [True]
    assert report.notes[0] == (
        "'(model)' (Linear): the Linear formula gives 2 parameters and 0 buffer elements, but its tensors hold 2,002 "
        "and 0; the tensors are counted"
    )
    assert report.notes[8:] == (
        f"… and {length - 8} more layers whose tensors differ from their formula (see formula_matches)",
    )


def _transposed_weight() -> nn.Module:
    layer = nn.Linear(4, 3)
    layer.weight = nn.Parameter(torch.ones(4, 3))
    return layer


def _batch_norm_with_other_buffers() -> nn.Module:
    norm = nn.BatchNorm1d(4)
    norm.running_mean = torch.zeros(1)
    norm.register_buffer("x", torch.zeros(3))
    return norm


@pytest.mark.parametrize(
    ("build", "difference"),
    [
        (_transposed_weight, "'(model)' (Linear): its tensors are not those of the Linear formula (weight is (4, 3), "
         "not (3, 4))"),
        (_batch_norm_with_other_buffers, "'(model)' (BatchNorm1d): its tensors are not those of the BatchNorm1d "
         "formula (running_mean is (1), not (4); x (3) is not in the formula)"),
    ],
    ids=["Linear", "BatchNorm1d"],
)  # fmt: skip
def test_tensors_of_other_shapes_or_names_are_flagged_when_the_counts_agree(build, difference: str) -> None:
    model = build()
    report = _explained(model)
    node = report.module("")
    assert node.formula_matches is False
    counted = (sum(p.numel() for p in model.parameters()), sum(b.numel() for b in model.buffers()))
    assert (node.params, node.buffers) == counted
    formula = formulas.explain_module(model).count
    assert formula is not None
    assert (formula.params, formula.buffers) == counted  # the counts agree: only the tensors tell them apart
    assert report.notes == (f"{difference}; the tensors are counted",)


def test_traced_layers_are_named_and_explained_as_far_as_tracing_keeps_them() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still shipped
        traced = torch.jit.trace(model.eval(), torch.zeros(2, 3))
    report = _explained(traced)
    assert [node.type for node in report.modules] == ["Sequential", "Linear", "BatchNorm1d"]
    assert report.totals == paramscope.inspect(model).totals
    # tracing keeps tensors, not the hyperparameters a formula reads (scripting keeps them as constants)
    assert report.notes == (
        "'0' (Linear): the Linear formula needs in_features, which TorchScript did not keep; its tensors are counted",
        "'1' (BatchNorm1d): the BatchNorm1d formula needs num_features, which TorchScript did not keep; its tensors "
        "are counted",
    )


@pytest.mark.parametrize("stack", [nn.TransformerEncoder, nn.TransformerDecoder])
def test_a_stack_of_no_layers_says_there_is_no_layer_to_read(stack: type[nn.Module]) -> None:
    is_decoder = stack is nn.TransformerDecoder
    layer = (nn.TransformerDecoderLayer if is_decoder else nn.TransformerEncoderLayer)(8, 2, 16)
    kwargs = {} if is_decoder else {"enable_nested_tensor": False}
    report = _explained(stack(layer, num_layers=0, **kwargs))
    assert report.totals.params == 0
    assert report.notes == (
        f"'(model)' ({stack.__name__}): the {stack.__name__} formula does not apply: it has no layers to read the "
        "layer's sizes from (num_layers 0); its tensors are counted",
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_scripted_subclass_of_a_torch_layer_keeps_its_base_formula() -> None:
    # MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear, a subclass of nn.Linear: scripting keeps
    # its class's name, not its bases, so the formula comes from the Python class torch has imported
    model = nn.TransformerEncoderLayer(8, 2, 16)
    scripted = torch.jit.script(model)
    report = _explained(scripted)
    out_proj = report.module("self_attn.out_proj")
    assert out_proj.type == type(model.self_attn.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    assert (out_proj.formula, out_proj.formula_matches) == ("Linear: 8 × 8 + 8 = 72", True)
    assert out_proj.params == model.self_attn.out_proj.weight.numel() + model.self_attn.out_proj.bias.numel()
    assert report.notes == ()
    assert [(n.path, n.formula, n.formula_matches) for n in report.modules] == [
        (n.path, n.formula, n.formula_matches) for n in _explained(model).modules
    ]


class ConfiguredLinear(nn.Linear):
    """A layer that answers a name it lacks from its config, with a KeyError for one the config lacks too."""

    def __init__(self, config: dict[str, int]) -> None:
        self.__dict__["config"] = config
        super().__init__(config["hidden"], config["hidden"])

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name in ("weight", "bias"):  # hasattr() while they are registered
                raise
            return self.__dict__["config"][name]


def test_a_layer_whose_getattr_raises_another_error_is_explained() -> None:
    # the lookup of the lazy layers' has_uninitialized_params went through the layer's __getattr__: its KeyError
    # failed the whole report
    model = nn.Sequential(ConfiguredLinear({"hidden": 3}))
    with pytest.raises(KeyError):
        _ = model[0].has_uninitialized_params
    report = paramscope.inspect(model, explain=True)
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 3 * 3 + 3
    node = report.module("0")
    assert (node.formula, node.formula_matches) == ("Linear: 3 × 3 + 3 = 12", True)


def test_repeated_layers_each_get_the_formula_of_their_own_hyperparameters() -> None:
    # layers alike share one count; a layer that differs in any hyperparameter gets its own
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 8), nn.Linear(4, 8, bias=False))
    report = paramscope.inspect(model, explain=True)
    formulas_shown = [report.module(str(index)).formula for index in range(4)]
    assert formulas_shown == [
        "Linear: 4 × 4 + 4 = 20", "Linear: 4 × 4 + 4 = 20", "Linear: 8 × 4 + 8 = 40", "Linear: 8 × 4 = 32"
    ]  # fmt: skip
    held = [sum(p.numel() for p in layer.parameters()) for layer in model]
    assert [report.module(str(index)).params for index in range(4)] == held == [20, 20, 40, 32]
    assert all(report.module(str(index)).formula_matches for index in range(4))


@pytest.mark.parametrize(
    "build",
    [
        lambda: nn.LSTM(4, 8, bidirectional=0),
        lambda: nn.LSTM(4, 8, bidirectional=1),
        lambda: nn.LSTMCell(4, 8, bias=0),
        lambda: nn.BatchNorm1d(8, affine=0),
        lambda: nn.BatchNorm1d(8, track_running_stats=0),
        lambda: nn.LayerNorm(8, elementwise_affine=0),
        lambda: nn.GroupNorm(2, 8, affine=0),
        lambda: nn.RMSNorm(8, elementwise_affine=0),
    ],
    ids=["lstm-bidirectional-0", "lstm-bidirectional-1", "lstmcell-bias-0", "batchnorm-affine-0",
         "batchnorm-track-0", "layernorm-affine-0", "groupnorm-affine-0", "rmsnorm-affine-0"],
)  # fmt: skip
def test_a_flag_given_as_an_int_is_read_as_torch_reads_it(build: Any) -> None:
    # torch keeps affine=0 or bidirectional=1 as given and reads it as a bool; the formula read any value that is
    # not a bool as "not None" (bias's tensor-or-None), so a 0 flag became True and the layer was flagged
    model = nn.Sequential(build())
    node = _explained(model).module("0")
    assert node.formula_matches is True
    assert (node.params, node.buffers) == (
        sum(p.numel() for p in model.parameters()),
        sum(b.numel() for b in model.buffers()),
    )

"""Each exactness case of paramscope.inspect against truth computed independently with torch."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import paramscope
from paramscope import IncompleteCountError, TargetError
from paramscope._units import listed, shortened
from paramscope.examples import gpt2, resnet18
from paramscope.render import View, render

from .models import (
    BufferAlsoParameter,
    MixedDtypes,
    PartlyFrozen,
    ReusedBlock,
    RotaryNet,
    TiedEncoderDecoder,
    lazy,
    parametrized,
    reused_compiled,
)


def test_gpt2_tied_head_is_counted_once() -> None:
    with torch.device("meta"):
        model = gpt2()
    report = paramscope.inspect(model)
    assert report.totals.params == 124_439_808  # GPT-2 small, published
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    wte = report.tensor("transformer.wte.weight")
    assert wte.aliases == ("lm_head.weight",)
    assert report.tensor("lm_head.weight") is wte
    assert report.totals.param_bytes == 4 * 124_439_808
    head = report.module("lm_head")
    assert (head.params, head.param_bytes, head.shared) == (0, 0, ("transformer.wte.weight",))
    assert report.module("transformer.wte").params == 50257 * 768
    assert "lm_head.weight is the same tensor as transformer.wte.weight (tied): counted once" in report.notes[0]


@pytest.mark.parametrize(
    ("lookup", "name", "message"),
    [
        ("tensor", "lm_head.weigth", "no tensor 'lm_head.weigth' in this report; the closest: 'lm_head.weight'"),
        ("tensor", "encoder.0.weight", "no tensor 'encoder.0.weight' in this report; none has a name close to it"),
        ("module", "transformer.h.11.attn.c_atn",
         "no module 'transformer.h.11.attn.c_atn' in this report; the closest: 'transformer.h.11.attn.c_attn', "
         "'transformer.h.1.attn.c_attn', 'transformer.h.10.attn.c_attn'"),
    ],
)  # fmt: skip
def test_lookup_of_a_name_the_report_lacks_names_the_closest(lookup: str, name: str, message: str) -> None:
    with torch.device("meta"):
        report = paramscope.inspect(gpt2(n_layer=12))
    with pytest.raises(KeyError) as raised:
        getattr(report, lookup)(name)
    assert raised.value.args == (name,)  # as a dict's
    assert str(raised.value) == message


@pytest.mark.parametrize("parametrize", ["weight_norm", "orthogonal"])
def test_lookup_of_a_parametrized_tensor_names_what_it_is_computed_from(parametrize: str) -> None:
    # the closest names were other layers' weights, not the originals it is stored as
    model = nn.Sequential(nn.Linear(4, 4), getattr(nn.utils.parametrizations, parametrize)(nn.Linear(4, 4)))
    stored = sorted(name for name in model.state_dict() if name.startswith("1.parametrizations.weight."))
    assert stored in (["1.parametrizations.weight.original0", "1.parametrizations.weight.original1"],
                      ["1.parametrizations.weight.0.base", "1.parametrizations.weight.original"])  # fmt: skip
    with pytest.raises(KeyError) as raised:
        paramscope.inspect(model).tensor("1.weight")
    assert str(raised.value) == (
        f"no tensor '1.weight' in this report: it is computed by a parametrization, from {', '.join(map(repr, stored))}"
    )


def test_gpt2_matches_transformers_gpt2_built_on_meta() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=32)
    with torch.device("meta"):
        reference = transformers.GPT2LMHeadModel(config)
        ours = gpt2(vocab_size=1000, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    expected = sum(p.numel() for p in reference.parameters())  # transformers ties lm_head to wte
    assert paramscope.inspect(ours).totals.params == expected
    assert paramscope.inspect(reference).totals.params == expected
    assert "lm_head.weight" in paramscope.inspect(reference).tensor("transformer.wte.weight").aliases


def test_three_names_for_one_matrix() -> None:
    model = TiedEncoderDecoder()
    report = paramscope.inspect(model)
    record = report.tensor("encoder.weight")
    assert record.aliases == ("decoder.weight", "head.weight")
    assert report.totals.params == 50 * 8 + 50  # the matrix once, plus the head's bias
    assert report.totals.param_bytes == sum(p.untyped_storage().nbytes() for p in model.parameters())
    assert report.module("decoder").shared == ("encoder.weight",)


def reused_within_reused(order: str) -> nn.Module:
    """A layer reused inside a block that is itself reused (``b``, ``a1.0``, ``a2.0`` are one Linear), the layer met
    first on its own (``order`` "layer first") or inside the block; and a layer three reuses deep."""
    layer, inner = nn.Linear(2, 2), nn.Linear(3, 3)
    block = nn.Sequential(layer, nn.Sequential(inner))
    model = nn.Module()
    if order == "layer first":
        model.b = layer
    model.a1, model.a2 = block, block
    model.deep = nn.Sequential(block, inner)
    if order != "layer first":
        model.b = layer
    return model


@pytest.mark.parametrize("order", ["layer first", "block first"])
def test_every_name_of_a_module_reused_inside_a_reused_module_is_an_alias(order: str) -> None:
    # b's weight was named a1.0.weight, but not a2.0.weight: the block's reuse (a2 of a1) added no name for what the
    # block held by a reuse of its own (a1.0 of b)
    model = reused_within_reused(order)
    report = paramscope.inspect(model)
    names: dict[int, list[str]] = {}  # the ground truth: every name torch gives each tensor
    for name, tensor in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(tensor), []).append(name)
    assert sorted(sorted((record.name, *record.aliases)) for record in report.tensors) == sorted(
        map(sorted, names.values())
    )
    for name, tensor in model.named_parameters(remove_duplicate=False):
        assert report.tensor(name).numel == tensor.numel()
    assert report.totals.params == sum(p.numel() for p in model.parameters())


def test_reused_module_is_counted_once_under_its_first_path() -> None:
    model = ReusedBlock()
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    first, second = report.module("first"), report.module("second")
    assert first.params == 6 * 6 + 6 + 2 * 6
    assert (second.params, second.same_as) == (0, "first")
    assert [node.path for node in report.modules] == ["", "first", "first.0", "first.1", "middle", "second"]
    assert report.tensor("first.0.weight").aliases == ("second.0.weight",)
    assert "module 'second' is the same object as 'first'" in " ".join(report.notes)


def test_notes_shorten_long_module_names() -> None:
    a, b, c = ("x" * 5000 + end for end in "abc")  # add_module takes a name of any length
    # b is a, reused: a module of its own in the tree; c's weight is a's, tied
    model = nn.Module()
    model.add_module(a, nn.Linear(2, 2))
    model.add_module(b, model.get_submodule(a))
    model.add_module(c, nn.Linear(2, 2))
    model.get_submodule(c).weight = model.get_submodule(a).weight
    report = paramscope.inspect(model)
    weight = shortened(f"{a}.weight")
    assert report.notes == (
        f"{shortened(f'{c}.weight')} is the same tensor as {weight} (tied): counted once, under {weight}",
        f"module {shortened(repr(b))} is the same object as '{shortened(a)}': its tensors are counted once, under "
        f"'{shortened(a)}'",
    )


def test_bytes_follow_each_dtype() -> None:
    model = MixedDtypes()
    report = paramscope.inspect(model)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        record = report.tensor(name)
        assert record.dtype == str(tensor.dtype).removeprefix("torch.")
        assert record.bytes == tensor.untyped_storage().nbytes(), name
    assert report.tensor("c64").bytes == 3 * 8
    assert report.tensor("fp8").bytes == 7
    assert report.tensor("codes").bytes == 13  # torch keeps one uint4 per byte in a plain tensor
    assert report.by_dtype["float16"].params == 4 * 4 + 4
    assert report.by_dtype["float16"].bytes == 2 * (4 * 4 + 4)
    assert report.by_dtype["bfloat16"].bytes == 2 * (4 * 3 + 3)
    assert report.totals.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report.totals.frozen == 7 + 9


def test_buffers_are_apart_from_parameters_and_persistence_is_known() -> None:
    model = RotaryNet()
    report = paramscope.inspect(model)
    saved = set(model.state_dict())
    for name, _ in model.named_buffers():
        record = report.tensor(name)
        assert record.kind == "buffer"
        assert record.trainable is None
        assert record.persistent is (name in saved), name
    assert report.tensor("bn.num_batches_tracked").dtype == "int64"
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == 8 + 8 + 1 + 4
    assert report.totals.buffer_bytes == sum(b.untyped_storage().nbytes() for b in model.buffers())
    assert all(record.persistent is None for record in report.tensors if record.kind == "parameter")


def test_parametrizations_count_stored_tensors_under_the_layer() -> None:
    model = parametrized()
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == sum(b.numel() for b in model.buffers())
    paths = [node.path for node in report.modules]
    assert paths == ["", "0", "1", "2"]  # no `parametrizations` rows: the stored tensors sit under the layer
    assert report.module("0").own_params == sum(p.numel() for p in model[0].parameters())
    assert report.module("1").buffers == sum(b.numel() for b in model[1].buffers())
    names = {record.name for record in report.tensors}
    assert {"0.parametrizations.weight.original0", "0.parametrizations.weight.original1", "0.bias"} <= names
    assert (
        "0.weight is parametrized (_WeightNorm): counted as the stored 0.parametrizations.weight.original0, "
        "0.parametrizations.weight.original1" in report.notes
    )


def test_orthogonal_parametrization_on_cpu() -> None:
    layer = nn.utils.parametrizations.orthogonal(nn.Linear(6, 6))
    report = paramscope.inspect(layer)
    assert report.totals.params == sum(p.numel() for p in layer.parameters())
    assert [node.path for node in report.modules] == [""]


def test_legacy_weight_norm_counts_g_and_v() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        layer = torch.nn.utils.weight_norm(nn.Linear(5, 7))
    report = paramscope.inspect(layer)
    assert {record.name for record in report.tensors} == {"bias", "weight_g", "weight_v"}
    assert report.totals.params == 7 + 7 + 35


def test_lazy_parameters_are_reported_not_zero() -> None:
    model = lazy()
    report = paramscope.inspect(model)
    assert not report.totals.complete
    assert report.totals.params == 6 * 2 + 2  # only the initialised Linear is known
    weight = report.tensor("0.weight")
    assert (weight.shape, weight.numel, weight.bytes) == (None, None, None)
    assert not report.module("0").complete
    assert not report.module("").complete
    assert report.module("2").complete
    assert any(
        note.startswith("2 uninitialised lazy tensor(s) in '0' (0.weight, 0.bias)") and "totals are incomplete" in note
        for note in report.notes
    )
    with pytest.raises(IncompleteCountError):
        paramscope.count_params(model)
    with pytest.raises(IncompleteCountError):
        paramscope.params_size(model)


def test_lazy_parameters_after_a_forward_are_exact() -> None:
    model = lazy()
    model(torch.zeros(4, 3))
    report = paramscope.inspect(model)
    assert report.totals.complete
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert paramscope.count_params(model) == (report.totals.params, report.totals.params)


def test_frozen_parameters() -> None:
    model = PartlyFrozen()
    report = paramscope.inspect(model)
    frozen = sum(p.numel() for p in model.backbone.parameters())
    assert (report.totals.frozen, report.totals.trainable) == (frozen, 8 * 10 + 10)
    assert report.module("backbone").trainable == 0
    assert report.module("head").trainable == 90
    assert paramscope.count_params(model) == (frozen + 90, 90)


def test_a_checkpoint_does_not_say_what_is_trainable(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(4, 3)}, tmp_path / "m.safetensors")
    assert paramscope.count_params(str(tmp_path / "m.safetensors")) == (12, None)


class _ConfigThatRaises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    @property
    def config(self) -> Any:
        raise ValueError("config not loaded")


def test_a_config_attribute_that_raises_is_no_config() -> None:
    model = _ConfigThatRaises()
    assert paramscope.inspect(model).totals.params == sum(p.numel() for p in model.parameters())


def test_meta_model_allocates_nothing_and_counts_the_same() -> None:
    with torch.device("meta"):
        model = resnet18()
    assert all(p.is_meta for p in model.parameters())
    assert paramscope.count_params(model) == (11_689_512, 11_689_512)
    assert paramscope.inspect(model).totals.param_bytes == 4 * 11_689_512


def test_torch_compile_wrapper_is_unwrapped() -> None:
    model = TiedEncoderDecoder()
    compiled = torch.compile(model)
    assert any(name.startswith("_orig_mod.") for name, _ in compiled.named_parameters())
    report = paramscope.inspect(compiled)
    assert report.tensors == paramscope.inspect(model).tensors
    assert report.modules[0].type == "TiedEncoderDecoder"
    assert "unwrapped torch.compile's OptimizedModule: names are shown without its '_orig_mod.' prefix" in report.notes


def test_data_parallel_is_unwrapped() -> None:
    model = ReusedBlock()
    report = paramscope.inspect(nn.DataParallel(model))
    assert report.tensors == paramscope.inspect(model).tensors
    assert "unwrapped DataParallel: names are shown without its 'module.' prefix" in report.notes


def test_distributed_data_parallel_is_unwrapped(tmp_path) -> None:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = TiedEncoderDecoder()
        wrapped = nn.parallel.DistributedDataParallel(model)
        report = paramscope.inspect(wrapped)
        assert report.tensors == paramscope.inspect(model).tensors
        assert "unwrapped DistributedDataParallel: names are shown without its 'module.' prefix" in report.notes
    finally:
        dist.destroy_process_group()


def test_wrapper_inside_a_model_is_folded_too() -> None:
    inner = nn.Linear(3, 3)
    model = nn.Sequential(nn.DataParallel(inner), nn.ReLU())
    report = paramscope.inspect(model)
    assert [node.path for node in report.modules] == ["", "0", "1"]
    assert report.module("0").type == "Linear"
    assert {record.name for record in report.tensors} == {"0.weight", "0.bias"}


def test_inspect_rejects_other_objects() -> None:
    with pytest.raises(TargetError) as error:
        paramscope.inspect(42)  # type: ignore[arg-type]
    assert str(error.value) == "cannot inspect an object of type int: pass a torch.nn.Module or a target string"


def test_study_note_helpers() -> None:
    model = PartlyFrozen()
    total, trainable = paramscope.count_params(model)
    assert (total, trainable) == (
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    assert paramscope.params_size(model, "B") == param_bytes
    assert paramscope.params_size(model, "KiB") == param_bytes / 1024
    assert paramscope.params_size(model, "kB", buffers=True) == (param_bytes + buffer_bytes) / 1000


def test_report_model_prints_the_per_tensor_report(capsys: pytest.CaptureFixture[str]) -> None:
    model = TiedEncoderDecoder()
    returned = paramscope.report_model(model, title="my model")
    out = capsys.readouterr().out
    assert out.startswith("my model\n")
    assert returned.totals.params == 450
    for name, _ in model.named_parameters():
        assert name in out
    assert "decoder.weight, head.weight" in out  # the aliases of encoder.weight


def test_target_strings_work_in_the_api() -> None:
    report = paramscope.inspect("paramscope.examples:resnet18", {"num_classes": 10})
    assert report.totals.params == 11_689_512 - 512 * 1000 - 1000 + 512 * 10 + 10
    assert (report.source.kind, report.source.target, report.source.device) == (
        "module",
        "paramscope.examples:resnet18",
        "meta",
    )


def test_parameter_registered_as_a_buffer_first_is_a_parameter() -> None:
    model = BufferAlsoParameter()
    report = paramscope.inspect(model)
    record = report.tensor("first.alias")
    assert (record.name, record.kind, record.trainable, record.aliases) == (
        "second.weight",
        "parameter",
        True,
        ("first.alias",),
    )
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 12
    assert report.totals.buffers == 0
    assert report.module("second").own_params == 12
    assert report.module("first").shared == ("second.weight",)


class _Owner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = _Head(self)


class _Head(nn.Module):
    def __init__(self, owner: nn.Module) -> None:
        super().__init__()
        self.owner = owner  # a back-reference: the module graph has a cycle
        self.fc = nn.Linear(4, 2)


def test_a_cycle_in_the_module_graph_is_walked_once() -> None:
    model = _Owner()
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 30
    assert report.module("head.owner").same_as == ""
    assert report.tensor("body.weight").aliases == ()
    assert (
        "module 'head.owner' refers back to '(model)', which contains it (a cycle): it is not walked again"
        in report.notes
    )


def test_reused_module_holding_a_wrapper_gets_clean_alias_names() -> None:
    report = paramscope.inspect(reused_compiled())
    assert report.tensor("0.0.weight").aliases == ("2.0.weight",)
    assert not any("_orig_mod" in name for record in report.tensors for name in (record.name, *record.aliases))


def test_many_reuses_and_ties_give_grouped_notes() -> None:
    norm = nn.LayerNorm(4)
    report = paramscope.inspect(nn.Sequential(*[norm] * 50))
    assert report.notes == (
        "modules '1', '2', '3', '4' and 45 more are the same object as '0': their tensors are counted once, under '0'",
    )
    assert len(report.tensor("0.weight").aliases) == 49


def test_tensor_subclass_sparse_and_expanded_tensors() -> None:
    from torch.testing._internal.two_tensor import TwoTensor

    model = nn.Module()
    model.pair = nn.Parameter(TwoTensor(torch.zeros(1000), torch.zeros(1000)))
    model.register_buffer("adjacency", torch.eye(100).to_sparse())
    model.register_buffer("broadcast", torch.zeros(1, 64).expand(4096, 64))
    report = paramscope.inspect(model)
    assert report.tensor("pair").bytes == 2 * 1000 * 4  # the two tensors it holds
    sparse = model.adjacency
    assert report.tensor("adjacency").bytes == sparse._indices().untyped_storage().nbytes() + (
        sparse._values().untyped_storage().nbytes()
    )
    assert report.tensor("broadcast").bytes == 4096 * 64 * 4  # logical size, with a note
    assert any(note.startswith("broadcast is a view (expanded or strided)") for note in report.notes)
    assert any(note.startswith("pair is a TwoTensor") for note in report.notes)


def test_a_tensor_subclass_holding_one_tensor_twice_holds_its_bytes_once() -> None:
    # from review: TwoTensor(a, a) was counted at twice the memory it holds (its detach makes two views of a)
    from torch.testing._internal.two_tensor import TwoTensor

    shared = torch.zeros(3, 4)
    model = nn.Module()
    model.same = nn.Parameter(TwoTensor(shared, shared))
    model.apart = nn.Parameter(TwoTensor(shared, shared.clone()))  # two storages: both count
    report = paramscope.inspect(model)
    inner = [getattr(model.same, name) for name in model.same.__tensor_flatten__()[0]]
    assert len({part.untyped_storage().data_ptr() for part in inner}) == 1
    assert report.tensor("same").bytes == shared.nbytes
    assert report.tensor("apart").bytes == 2 * shared.nbytes


def _storage_notes(report: paramscope.Report) -> list[str]:
    return [note for note in report.notes if " storage of " in note]


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_view_of_a_larger_storage_is_counted_at_its_size_with_a_note(device: str) -> None:
    # nn.Parameter(pretrained[:10]) keeps all of pretrained in memory: numel() counts 10 rows, the storage is whole.
    # Built on meta (the CLI's default for model code), the model is the same, and so is what it would hold.
    pretrained = torch.zeros(1000, 64, device=device)
    model = nn.Module()
    model.rows = nn.Parameter(pretrained[:10])
    model.columns = nn.Parameter(torch.zeros(64, 1000, device=device)[:, :8])  # strided: not contiguous
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 10 * 64 + 64 * 8
    assert report.totals.param_bytes == 4 * report.totals.params
    assert _storage_notes(report) == [
        "rows is a view of a storage of 250.00 KiB, counted at 2.50 KiB: the whole storage stays in memory (and "
        "torch.save writes all of it)",
        "columns is a view of a storage of 250.00 KiB, counted at 2.00 KiB: the whole storage stays in memory (and "
        "torch.save writes all of it)",
    ]
    assert pretrained.untyped_storage().nbytes() == 250 * 1024


class _MyParameter(nn.Parameter):
    pass


class _KeepsLayersInPlainContainers(nn.Module):
    """The classic slip: layers in a plain list (or dict, or tuple) where an nn.ModuleList was meant."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.blocks = [nn.Linear(4, 4) for _ in range(3)]
        self.heads = {"a": nn.Linear(4, 2)}
        self.scales = (nn.Parameter(torch.ones(4)),)
        self.shortcuts = [self.first]  # a reference to a registered layer: counted, under first
        self.cached = torch.zeros(100)  # a plain tensor attribute: state the model keeps, not a layer


def test_layers_kept_in_plain_containers_are_said_not_counted() -> None:
    # from review: left out without a word, as torch's parameters() leaves them out
    model = _KeepsLayersInPlainContainers()
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 20
    blocks = sum(p.numel() for block in model.blocks for p in block.parameters())
    heads = sum(p.numel() for p in model.heads["a"].parameters())
    assert [note for note in report.notes if "which does not register them" in note] == [
        _not_registered("3 module(s)", "blocks (a list)", "nn.ModuleList", f"{blocks} parameters"),
        _not_registered("1 module(s)", "heads (a dict)", "nn.ModuleDict", f"{heads} parameters"),
        _not_registered("1 parameter(s)", "scales (a tuple)", "nn.ParameterList", "4 parameters"),
    ]


def _not_registered(what: str, where: str, registers: str, counted: str) -> str:
    return (f"'(model)' keeps {what} in {where}, which does not register them ({registers} would): their {counted} are "
            "not counted, as torch's parameters() and state_dict() leave them out")  # fmt: skip


class _RaisesOnParameters(nn.Linear):
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        raise RuntimeError("not here")


def test_lazy_or_odd_modules_kept_in_plain_containers_are_said_not_counted() -> None:
    # from review: the note called numel() on an uninitialised parameter (a ValueError, a traceback in summary and
    # memory), and the held module's own parameters(), and recursed through a chain of them as deep as it went
    model = nn.Module()
    model.body = nn.Linear(4, 4)
    model.heads = [nn.LazyLinear(2) for _ in range(3)]
    model.odd = {"a": _RaisesOnParameters(4, 2)}
    chain = inner = nn.Sequential()
    for _ in range(3000):
        inner.add_module("next", nn.Sequential())
        inner = inner.next
    inner.add_module("last", nn.Linear(2, 2))
    model.deep = (chain,)
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 20
    assert [note for note in report.notes if "which does not register them" in note] == [
        _not_registered("3 module(s)", "heads (a list)", "nn.ModuleList",
                        "6 uninitialised lazy parameter(s), of no size yet,"),
        _not_registered("1 module(s)", "odd (a dict)", "nn.ModuleDict", "10 parameters"),
        _not_registered("1 module(s)", "deep (a tuple)", "nn.ModuleList", "6 parameters"),
    ]  # fmt: skip


def test_a_container_many_modules_share_is_looked_into_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # from review: 24 layers sharing one list of a million ids took 10.6 s, each layer's reference looked into anew
    from paramscope.sources import module as walk

    looked_into: list[int] = []
    original = walk._modules_and_parameters_in
    monkeypatch.setattr(
        walk, "_modules_and_parameters_in", lambda value: looked_into.append(id(value)) or original(value)
    )
    shared, stray = list(range(1000)), [nn.Linear(2, 2)]
    layers = [nn.Linear(2, 2) for _ in range(24)]
    for layer in layers:
        layer.vocabulary, layer.stray = shared, stray
    report = paramscope.inspect(nn.Sequential(*layers))
    assert sorted(looked_into) == sorted([id(shared), id(stray)])
    assert report.totals.params == 24 * 6
    said = "keeps 1 module(s) in stray (a list)"
    assert [note.split(",")[0] for note in report.notes if said in note][:2] == [f"'0' {said}", f"'1' {said}"]


@pytest.mark.parametrize("holders_known", [True, False])
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("parameter", [nn.Parameter, _MyParameter])
def test_tensors_sharing_a_storage_are_noted_where_counted_and_held_bytes_differ(
    monkeypatch: pytest.MonkeyPatch, holders_known: bool, device: str, parameter: type[nn.Parameter]
) -> None:
    # from review: on meta, and for a Parameter subclass, the storages were not looked into
    if not holders_known:  # without torch's count of a storage's holders, every storage is looked into
        monkeypatch.setattr("paramscope.sources.module._storage_holders", lambda cdata: 3)
    flat = torch.zeros(100, device=device)
    model = nn.Module()
    model.first = parameter(flat[:30])
    model.second = parameter(flat[30:60])  # 40 of the 100 floats are no tensor's
    model.copy = nn.Parameter(torch.zeros(4, device=device))
    model.alias = nn.Parameter(model.copy.data)  # another Parameter on the same memory: not a tie
    report = paramscope.inspect(model)
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 30 + 30 + 4 + 4
    assert _storage_notes(report) == [
        "first, second are views of a storage of 400 B, counted at 240 B: the whole storage stays in memory (and "
        "torch.save writes all of it)",
        "copy, alias share one storage of 16 B, counted at 32 B: each at its own size, though they hold the same "
        "memory",
    ]


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("left", [0, 10])
def test_a_parameter_whose_storage_was_freed_is_counted_at_its_size_with_a_note(device: str, left: int) -> None:
    # from review: counted at 64 B as any other, where its storage holds none (or some) of it
    model = nn.Sequential(nn.Linear(4, 4, device=device), nn.Linear(4, 2, device=device))
    model[0].weight.untyped_storage().resize_(left)
    report = paramscope.inspect(model)
    assert report.totals.param_bytes == sum(p.numel() * p.element_size() for p in model.parameters()) == 120
    assert report.notes == (
        f"0.weight's storage holds {left} B, less than its elements take: freed or shrunk "
        "(untyped_storage().resize_(), as FSDP frees what it shards), so its values are not all held; counted at its "
        "size, 64 B",
    )


def test_storages_held_as_counted_get_no_storage_note() -> None:
    flat = torch.zeros(20)
    model = nn.Module()
    model.low = nn.Parameter(flat[:10])
    model.high = nn.Parameter(flat[10:])  # together the whole storage: what a flat parameter buffer does
    model.tied = nn.Linear(4, 4)
    model.again = model.tied  # the same tensors: a tie, noted as one
    model.register_buffer("broadcast", torch.zeros(1, 8).expand(16, 8))  # noted as an expanded view instead
    assert _storage_notes(paramscope.inspect(model)) == []


def test_tensors_without_a_storage_to_look_at_are_counted() -> None:
    # inside torch.func's transforms a tensor is a wrapper whose storage cannot be asked for
    def count(x: torch.Tensor) -> torch.Tensor:
        model = nn.Module()
        model.register_buffer("batched", x)
        model.weight = nn.Parameter(x.new_zeros(4, 2)[:, :1])  # a strided view, as the wrapper too
        report = paramscope.inspect(model)
        assert (report.totals.buffers, report.totals.params) == (3, 4)
        return x.sum()

    torch.func.vmap(count)(torch.zeros(2, 3))
    torch.func.grad(count)(torch.zeros(3))


def test_dynamically_quantized_linear_is_not_a_silent_zero() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(nn.Linear(64, 32)), {nn.Linear}, dtype=torch.qint8
        )
        weight, bias = quantized[0]._weight_bias()
    report = paramscope.inspect(quantized)
    assert report.totals.params == weight.numel() + bias.numel() == 64 * 32 + 32
    assert report.totals.param_bytes == weight.untyped_storage().nbytes() + bias.untyped_storage().nbytes()
    assert report.totals.trainable == 0
    assert "keeps its weights packed outside its parameters" in " ".join(report.notes)


def test_packed_weights_two_layers_share_are_counted_once() -> None:
    # from review: each unpack makes fresh tensors, so one packed object held by two layers was counted twice (40 of
    # 20 values), though the note saw their bias storage shared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), {nn.Linear}, dtype=torch.qint8
        )
        quantized[1]._packed_params._packed_params = quantized[0]._packed_params._packed_params
        weight, bias = quantized[0]._weight_bias()
    report = paramscope.inspect(quantized)
    assert report.totals.params == weight.numel() + bias.numel() == 20
    assert [(record.name, record.aliases) for record in report.tensors] == [
        ("0._packed_params.weight", ("1._packed_params.weight",)),
        ("0._packed_params.bias", ("1._packed_params.bias",)),
    ]


def _quantized_dynamically(layer: nn.Module, dtype: torch.dtype) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated, still shipped
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(layer), {type(layer)}, dtype=dtype)


def _stored_bytes(tensor: torch.Tensor, dtype: torch.dtype) -> int:
    return (
        tensor.to(dtype).untyped_storage().nbytes() if tensor.is_floating_point() else tensor.untyped_storage().nbytes()
    )


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16], ids=["qint8", "float16"])
@pytest.mark.parametrize(
    "layer",
    [
        lambda: nn.LSTM(4, 3),
        lambda: nn.LSTM(4, 3, num_layers=2, bidirectional=True),
        lambda: nn.GRU(5, 2),
        lambda: nn.LSTMCell(4, 3),
        lambda: nn.GRUCell(4, 3),
        lambda: nn.RNNCell(4, 3),
    ],
    ids=["LSTM", "LSTM-2-layers-bidirectional", "GRU", "LSTMCell", "GRUCell", "RNNCell"],
)
def test_dynamically_quantized_recurrent_layers_count_their_packed_weights(layer, dtype: torch.dtype) -> None:
    model = _quantized_dynamically(layer(), dtype)
    quantized = model[0]
    weights, biases = quantized.get_weight(), quantized.get_bias()
    # float16 dynamic quantization stores float16 weights; get_weight() unpacks them to float32
    expected = {f"0.{name}": (tuple(w.shape), w.numel(), _stored_bytes(w, dtype)) for name, w in weights.items()}
    expected |= {f"0.{name}": (tuple(b.shape), b.numel(), b.untyped_storage().nbytes()) for name, b in biases.items()}
    report = paramscope.inspect(model)
    assert {r.name: (r.shape, r.numel, r.bytes) for r in report.tensors} == expected
    assert {report.tensor(f"0.{name}").dtype for name in weights} == {"qint8" if dtype == torch.qint8 else "float16"}
    assert {report.tensor(f"0.{name}").dtype for name in biases} == {"float32"}
    assert report.totals.params == sum(count for _, count, _ in expected.values())
    assert report.totals.param_bytes == sum(size for _, _, size in expected.values())
    assert report.totals.complete
    assert report.totals.trainable == 0
    kind = type(quantized).__name__
    assert report.notes == (
        f"'0' ({kind}) keeps its weights packed outside its parameters: counted through _weight_bias() as "
        + listed(list(expected), 4),
    )


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("layer", [nn.Embedding, nn.EmbeddingBag])
def test_quantized_embeddings_count_their_packed_weight(layer: type[nn.Module], bits: int) -> None:
    from torch.ao import quantization

    original = layer(10, 6)
    original.qconfig = (
        quantization.float_qparams_weight_only_qconfig
        if bits == 8
        else quantization.float_qparams_weight_only_qconfig_4bit
    )
    quantized = getattr(torch.ao.nn.quantized, layer.__name__).from_float(original)
    weight = quantized.weight()
    assert weight.dtype == (torch.quint8 if bits == 8 else torch.quint4x2)
    report = paramscope.inspect(quantized)
    record = report.tensor("_packed_params.weight")
    assert (record.shape, record.numel, record.dtype) == ((10, 6), 60, str(weight.dtype).removeprefix("torch."))
    assert record.bytes == weight.untyped_storage().nbytes() == 60 * bits // 8
    assert (report.totals.params, report.totals.complete) == (60, True)
    assert report.notes == (
        "'_packed_params' (EmbeddingPackedParams) keeps its weights packed outside its parameters: counted through "
        "_weight() as _packed_params.weight",
    )


def test_float16_dynamic_linear_is_counted_in_its_packed_dtype() -> None:
    model = _quantized_dynamically(nn.Linear(8, 4), torch.float16)
    assert model[0]._packed_params.dtype == torch.float16
    weight, bias = model[0]._weight_bias()  # the weight unpacked to float32
    report = paramscope.inspect(model)
    stored = report.tensor("0._packed_params.weight")
    assert bias.dtype == torch.float32
    assert (stored.dtype, stored.numel, stored.bytes) == (
        "float16",
        weight.numel(),
        weight.half().untyped_storage().nbytes(),
    )
    assert stored.bytes == 64
    assert (report.tensor("0._packed_params.bias").dtype, report.tensor("0._packed_params.bias").bytes) == (
        "float32",
        16,
    )
    assert report.by_dtype["float16"].bytes == 64


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16], ids=["qint8", "float16"])
@pytest.mark.parametrize("compile_with", ["script", "trace"])
def test_torchscript_of_a_quantized_model_counts_its_packed_weights(compile_with: str, dtype: torch.dtype) -> None:
    # a scripted, traced or torch.jit.load-ed module keeps the packed objects in its C++ module, not its __dict__
    eager = _quantized_dynamically(nn.Linear(8, 4), dtype)
    weight, bias = eager[0]._weight_bias()  # float16's weight unpacked to float32
    scripted = torch.jit.script(eager) if compile_with == "script" else torch.jit.trace(eager, torch.zeros(2, 8))
    report = paramscope.inspect(scripted)
    assert (report.totals.params, report.totals.complete) == (weight.numel() + bias.numel(), True)
    assert report.totals.param_bytes == _stored_bytes(weight, dtype) + bias.untyped_storage().nbytes()
    assert report.tensor("0._packed_params.weight").dtype == str(dtype).removeprefix("torch.")
    assert report.notes == (
        "'0._packed_params' (LinearPackedParams) keeps its weights packed outside its parameters: counted through "
        "_weight_bias() as 0._packed_params.weight, 0._packed_params.bias",
    )


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16], ids=["qint8", "float16"])
@pytest.mark.parametrize("layer", [nn.LSTM, nn.GRU])
def test_torchscript_dynamic_recurrent_layers_count_their_packed_weights(
    layer: type[nn.Module], dtype: torch.dtype
) -> None:
    # TorchScript keeps no _weight_bias() on a dynamic LSTM or GRU: its layers' packed objects are read instead
    eager = _quantized_dynamically(layer(4, 3, num_layers=2, bidirectional=True), dtype)
    unpacked = eager[0]._weight_bias()  # torch.ao's own reading: {"weight": {name: tensor}, "bias": {...}}
    expected = {
        f"0.{name}": (tensor.numel(), _stored_bytes(tensor, dtype) if kind == "weight" else tensor.nbytes)
        for kind in ("weight", "bias")
        for name, tensor in unpacked[kind].items()
    }
    archive = io.BytesIO()
    torch.jit.save(torch.jit.script(eager), archive)
    archive.seek(0)
    for compiled in (torch.jit.script(eager), torch.jit.load(archive)):
        report = paramscope.inspect(compiled)
        assert {t.name: (t.numel, t.bytes) for t in report.tensors} == expected
        assert report.totals.complete
        assert report.totals.params == sum(numel for numel, _ in expected.values())


def test_packed_weights_of_the_model_itself_are_named_as_the_model() -> None:
    conv = torch.ao.nn.quantized.Conv2d(3, 4, 3)
    weight, bias = conv._weight_bias()
    report = paramscope.inspect(conv)
    assert report.totals.params == weight.numel() + bias.numel()
    assert report.notes == (
        "'(model)' (Conv2d) keeps its weights packed outside its parameters: counted through _weight_bias() as "
        "weight, bias",
    )


class _LinearByFunction(nn.Module):
    """A layer that calls ``F.linear`` on parameters of its own: FX's convert_fx packs them into the GraphModule."""

    def __init__(self) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(4, 8)), nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.w, self.b)


def _unpacked_bytes(*tensors: torch.Tensor) -> tuple[int, int]:
    return sum(t.numel() for t in tensors), sum(t.numel() * t.element_size() for t in tensors)


def test_weights_fx_packed_into_a_graph_module_are_counted() -> None:
    # from review: convert_fx keeps them in the GraphModule's _packed_weight_0, outside any torch.ao module: 0, as
    # complete, without a word
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    example = (torch.randn(2, 8),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(_LinearByFunction().eval(), get_default_qconfig_mapping("fbgemm"), example)
        prepared(*example)
        model = convert_fx(prepared)
    weight, bias = torch.ops.quantized.linear_unpack(model._packed_weight_0)
    report = paramscope.inspect(model)
    packed = [r for r in report.tensors if r.name.startswith("_packed_weight_0") and r.kind == "parameter"]
    assert [r.name for r in packed] == ["_packed_weight_0.weight", "_packed_weight_0.bias"]
    assert (report.totals.params, sum(r.bytes or 0 for r in packed)) == _unpacked_bytes(weight, bias) == (36, 48)
    assert report.totals.complete
    assert report.notes[0] == (
        "'(model)' (GraphModule) keeps its weights packed outside its parameters: counted through "
        "torch.ops.quantized.linear_unpack as _packed_weight_0.weight, _packed_weight_0.bias"
    )


class _QuantizedConvOfMyOwn(torch.ao.nn.quantized.Conv2d):
    pass


class _HoldsPackedWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        int8 = torch.quantize_per_tensor(torch.randn(4, 8), 0.1, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(int8, torch.randn(4))
        self.half = torch.ops.quantized.linear_prepack_fp16(torch.randn(5, 8), None)


def test_packed_weights_of_a_subclass_or_held_as_attributes_are_counted() -> None:
    # from review: only classes defined under torch.ao.nn were looked into
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(_QuantizedConvOfMyOwn(3, 4, 3), _HoldsPackedWeights())
    conv = _unpacked_bytes(*model[0]._weight_bias())
    linear = _unpacked_bytes(*torch.ops.quantized.linear_unpack(model[1].packed))
    half = (5 * 8, 5 * 8 * 2)  # linear_prepack_fp16 keeps float16 values (linear_unpack gives them in float32)
    report = paramscope.inspect(model)
    assert (report.totals.params, report.totals.param_bytes) == tuple(map(sum, zip(conv, linear, half, strict=True)))
    assert report.tensor("1.half.weight").dtype == "float16"
    assert report.notes == (
        "'0' (_QuantizedConvOfMyOwn) keeps its weights packed outside its parameters: counted through _weight_bias() "
        "as 0.weight, 0.bias",
        "'1' (_HoldsPackedWeights) keeps its weights packed outside its parameters: counted through "
        "torch.ops.quantized.linear_unpack as 1.packed.weight, 1.packed.bias, 1.half.weight",
    )


def test_packed_weights_that_cannot_be_read_make_the_totals_incomplete() -> None:
    model = _quantized_dynamically(nn.Linear(8, 4), torch.qint8)

    def no_engine() -> None:
        raise RuntimeError("no engine")

    model[0]._packed_params._weight_bias = no_engine
    report = paramscope.inspect(model)
    assert (report.totals.params, report.totals.complete) == (0, False)
    assert not report.module("0._packed_params").complete
    record = report.tensor("0._packed_params._packed_params")
    assert (record.shape, record.numel, record.bytes, record.dtype) == (None, None, None, "qint8")
    assert record.packing == "packed by torch.ao, cannot be read"
    assert report.notes == (
        "'0._packed_params' (LinearPackedParams) keeps weights packed in 0._packed_params._packed_params that cannot "
        "be read (_weight_bias() raised RuntimeError: no engine): their size is unknown; totals are incomplete",
    )
    with pytest.raises(IncompleteCountError):
        paramscope.count_params(model)


def test_packed_weights_no_reader_knows_make_the_totals_incomplete() -> None:
    lstm = _quantized_dynamically(nn.LSTM(4, 3), torch.qint8)[0]
    report = paramscope.inspect(nn.Sequential(lstm._all_weight_values[0]))  # one layer's weights, without its LSTM
    assert (report.totals.params, report.totals.complete) == (0, False)
    assert report.tensor("0.param").numel is None
    assert report.notes == (
        "'0' (PackedParameter) keeps weights packed in 0.param that cannot be read (no reader for "
        "__torch__.torch.classes.rnn.CellParamsBase): their size is unknown; totals are incomplete",
    )


def test_messages_on_packed_weights_that_cannot_be_read_name_them_not_lazy_parameters() -> None:
    lstm = _quantized_dynamically(nn.LSTM(4, 3), torch.qint8)[0]
    packed = nn.Sequential(lstm._all_weight_values[0])
    unknown = "the model has tensors of unknown size (packed weights that cannot be read)"
    with pytest.raises(IncompleteCountError) as count:
        paramscope.count_params(packed)
    assert str(count.value) == (
        f"cannot give a parameter count: {unknown}; use paramscope.inspect() to see the known part"
    )
    with pytest.raises(IncompleteCountError) as budget:
        paramscope.check_budget(packed, paramscope.Budget(max_params=10**9))
    assert str(budget.value) == f"cannot check the budget: {unknown}, so its totals are only lower bounds"
    plan = paramscope.memory(packed, device_memory=10**9).memory
    assert plan is not None
    assert plan.fits is None
    assert (
        f"{unknown}, counted as nothing: the items made from the parameters, and the total, are only lower bounds"
        in (plan.notes)
    )
    both = nn.Sequential(lstm._all_weight_values[0], nn.LazyLinear(3))
    assert paramscope.inspect(both).unknown_sizes == (
        "uninitialised lazy parameters",
        "packed weights that cannot be read",
    )
    with pytest.raises(IncompleteCountError, match=r"\(uninitialised lazy parameters and packed weights that cannot "
                       r"be read\); run one forward pass first, or use"):  # fmt: skip
        paramscope.count_params(both)


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.proj = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.scale


def test_traced_and_scripted_modules_show_their_own_classes() -> None:
    model = Scaled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still shipped
        traced, scripted = torch.jit.trace(model, torch.zeros(2, 3)), torch.jit.script(model)
    expected = [(path, type(module).__name__) for path, module in model.named_modules()]
    assert expected == [("", "Scaled"), ("proj", "Linear")]
    for compiled in (traced, scripted):
        report = paramscope.inspect(compiled)
        assert [(node.path, node.type) for node in report.modules] == expected
        assert report.totals == paramscope.inspect(model).totals


def test_parametrized_layer_shows_its_own_class() -> None:
    report = paramscope.inspect(parametrized())
    assert [node.type for node in report.modules] == ["Sequential", "Linear", "Conv1d", "Linear"]


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


class ParametrizedBlock(Block):
    """A class of the user's whose name happens to read as the subclass torch.nn.utils.parametrize generates."""


def test_a_class_named_parametrized_by_its_author_keeps_its_name() -> None:
    report = paramscope.inspect(nn.Sequential(ParametrizedBlock()))
    assert [node.type for node in report.modules] == ["Sequential", "ParametrizedBlock", "Linear"]
    assert paramscope.inspect(ParametrizedBlock()).source.target == f"{__name__}.ParametrizedBlock"


def test_garbage_collector_state_is_restored() -> None:
    import gc

    model = TiedEncoderDecoder()
    assert gc.isenabled()
    paramscope.inspect(model)
    assert gc.isenabled()
    gc.disable()
    try:
        paramscope.inspect(model)
        assert not gc.isenabled()
    finally:
        gc.enable()
    broken = nn.Sequential(nn.Linear(2, 2))
    broken._modules["bad"] = 3  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        paramscope.inspect(broken)
    assert gc.isenabled()


def test_reports_compare_by_value_and_are_not_hashable() -> None:
    assert paramscope.inspect(TiedEncoderDecoder()) == paramscope.inspect(TiedEncoderDecoder())
    with pytest.raises(TypeError, match="unhashable type: 'Report'"):
        hash(paramscope.inspect(TiedEncoderDecoder()))


def test_api_target_import_leaves_module_level_tensors_real(tmp_path, monkeypatch) -> None:
    (tmp_path / "realmodels.py").write_text(
        "import torch\nfrom torch import nn\nMASK = torch.ones(3)\nclass Net(nn.Linear):\n"
        "    def __init__(self):\n        super().__init__(3, 3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    report = paramscope.inspect("realmodels:Net")
    import realmodels  # type: ignore[import-not-found]

    assert report.source.device == "meta"
    assert report.totals.params == 12
    assert realmodels.MASK.device.type == "cpu"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.freeze` is deprecated:DeprecationWarning")
def test_a_frozen_torchscript_module_says_its_weights_are_constants() -> None:
    scripted = torch.jit.script(nn.Sequential(nn.Linear(8, 4)).eval())
    frozen = torch.jit.freeze(scripted)
    report = paramscope.inspect(frozen)
    assert report.totals.params == sum(p.numel() for p in frozen.parameters()) == 0
    weights = sum(p.numel() for p in scripted.parameters())
    assert report.notes == (
        f"the TorchScript graph holds 2 constant tensor(s), {weights:,} elements ({weights * 4} B), that are neither "
        "parameters nor buffers and are not counted (a module frozen with torch.jit.freeze holds its weights so: "
        "inspect it before freezing)",
    )
    assert paramscope.inspect(scripted).notes == ()  # its weights are parameters, counted


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
@pytest.mark.parametrize("layout", ["strided", "jagged"])
def test_a_nested_tensor_buffer_has_no_one_shape_and_its_elements_counted(layout: str) -> None:
    # a strided nested tensor has no sizes to read (torch raised from inspect), and a jagged one's ragged size is a
    # SymInt (the JSON report could not be written)
    model = nn.Linear(8, 2)
    parts = [torch.zeros(2, 3), torch.zeros(4, 3)]
    model.register_buffer("queue", torch.nested.nested_tensor(parts, layout=getattr(torch, layout)))
    report = paramscope.inspect(model)
    record = report.tensor("queue")
    assert (record.shape, record.numel) == (None, sum(part.numel() for part in parts))
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == sum(part.numel() for part in parts) == 18
    note = "queue is a nested tensor of 2 component(s), which has no one shape: its 18 elements are counted"
    assert report.notes[0] == note
    tensors = {entry["name"]: entry for entry in json.loads(render(report, "json"))["tensors"]}
    assert (tensors["queue"]["shape"], tensors["queue"]["numel"]) == (None, 18)
    assert "  queue   buffer     nested " in render(report, "table", View(tensors=True))


def tied_in_hidden_modules() -> nn.Module:
    """A decoder whose layer shares the encoder's embedding, and a block that ties two of its own layers."""
    model = nn.Module()
    model.enc = nn.Sequential(nn.Embedding(10, 4))
    model.dec = nn.Sequential(nn.Linear(4, 10, bias=False))
    model.dec[0].weight = model.enc[0].weight
    model.block = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model.block[1].weight = model.block[0].weight
    return model


def test_a_row_at_the_depth_shown_says_what_its_hidden_modules_share() -> None:
    # at --depth 1, dec showed 0 parameters and no word of why: its layer shares the encoder's weight, which the
    # deeper row said
    model = tied_in_hidden_modules()
    names = [name for name, tensor in model.named_parameters(remove_duplicate=False) if tensor is model.enc[0].weight]
    assert names == ["enc.0.weight", "dec.0.weight"]
    report = paramscope.inspect(model)
    assert report.module("dec").params == 0
    table = render(report, "table", View(depth=1))
    assert "    dec    Sequential       0    0 B  shares enc.0.weight\n" in table
    assert "    block  Sequential      24   96 B\n" in table  # tied within it: counted in it, nothing to say
    deeper = render(report, "table", View(depth=2)).splitlines()
    assert "    dec        Sequential       0    0 B" in deeper  # said on the row that holds it
    assert "      dec.0    Linear           0    0 B  shares enc.0.weight" in deeper

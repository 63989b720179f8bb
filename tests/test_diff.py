"""``paramscope diff``: the three everyday questions, each against an independent answer.

- A model against its checkpoint: what ``load_state_dict`` itself reports missing, unexpected and mismatched.
- A base model against its fine-tuned (dtype changed, adapters added) or pruned (smaller layers) version: the
  counts of the two models from ``sum(p.numel())``.
- Two configs (what doubling the layers costs): the two models built by transformers and counted by torch.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import re
import sys
import types
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

import paramscope
from paramscope import SharingChange, TensorChange
from paramscope.render.diff import render_diff, shown_modules
from paramscope.sources.module import forward_module

from .checkpoints import write_safetensors
from .cli import run


class Net(nn.Module):
    def __init__(self, hidden: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden)) for _ in range(blocks)
        )
        self.norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, 20, bias=False)
        self.head.weight = self.embed.weight  # tied: a checkpoint stores it once
        self.register_buffer("scale", torch.ones(1), persistent=False)


def count(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


# ---------------------------------------------------------------------------------------------------------------------
# 1. a model against its checkpoint: the load_state_dict question


def edited_checkpoint(model: nn.Module, path: Path) -> Path:
    """The model's state dict with one tensor dropped, one resized, one renamed and one extra, saved as
    safetensors the way transformers saves (tied and non-persistent tensors left out)."""
    state = {name: tensor.clone() for name, tensor in model.state_dict().items() if name != "head.weight"}
    del state["blocks.1.1.bias"]
    state["blocks.0.0.weight"] = torch.zeros(8, 16)
    state["blocks.0.weight_extra"] = torch.zeros(3)
    state["norm.renamed"] = state.pop("norm.running_var")
    safetensors.torch.save_file(state, str(path))
    return path


def load_state_dict_answer(model: nn.Module, path: Path) -> tuple[set[str], set[str], set[str]]:
    """Missing, unexpected and size-mismatched keys, as torch reports them when loading the file."""
    state = safetensors.torch.load_file(str(path))
    mismatched = {name for name, tensor in state.items() if name in model.state_dict() and
                  model.state_dict()[name].shape != tensor.shape}  # fmt: skip
    loadable = {name: tensor for name, tensor in state.items() if name not in mismatched}
    result = model.load_state_dict(loadable, strict=False)
    missing = set(result.missing_keys) - mismatched - {"head.weight"}  # the tie is restored by the model itself
    return missing, set(result.unexpected_keys), mismatched


def test_model_against_its_checkpoint_answers_load_state_dict(tmp_path: Path) -> None:
    model = Net()
    path = edited_checkpoint(model, tmp_path / "model.safetensors")
    missing, unexpected, mismatched = load_state_dict_answer(Net(), path)
    found = paramscope.diff(model, str(path))
    assert set(found.only_in_a) == missing == {"blocks.1.1.bias", "norm.running_var"}
    assert set(found.only_in_b) == unexpected == {"blocks.0.weight_extra", "norm.renamed"}
    assert {change.name for change in found.changed} == mismatched == {"blocks.0.0.weight"}
    change = found.changed[0]
    assert (change.shape_a, change.shape_b, change.dtype_a, change.dtype_b) == ((16, 16), (8, 16), "float32", "float32")
    assert "scale" not in found.only_in_a  # non-persistent: never in a checkpoint
    assert found.notes == (
        "non-persistent buffers are left out: a checkpoint does not store them",
        "B stores tensors that A ties under one of their names, and lacks head.weight (tied to embed.weight): matched "
        "as the tied tensor, which load_state_dict(strict=True) would report missing and safetensors.torch.load_model "
        "and transformers' from_pretrained fill from the tie",  # the tie: left out of load_state_dict_answer's keys
        *(f"A: {note}" for note in found.a.notes),  # each side's own notes: how its totals were counted
        *(f"B: {note}" for note in found.b.notes),
    )
    assert found.a.notes
    assert found.b.notes
    assert not found.equal


def test_model_against_its_own_checkpoint_is_equal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Net()
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(model, str(path))  # drops the tied head, as transformers does
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed) == ((), (), ())
    assert found.equal
    code, out, err = run(capsys, "diff", "tests.test_diff:Net", str(path))
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("  - the models are the same")
    # the tied head holds nothing of its own, so the checkpoint has no module 'head': not a module that differs
    assert [(delta.path, delta.params_a, delta.params_b) for delta in found.modules if delta.params_b is None] == [
        ("head", 0, None)
    ]
    assert shown_modules(found, depth=2, everything=False) == []
    assert "\n    head " not in out
    # a module without tensors (an activation, a dropout) is never in a checkpoint
    with_activation = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    safetensors.torch.save_model(with_activation, str(tmp_path / "activation.safetensors"))
    found = paramscope.diff(with_activation, str(tmp_path / "activation.safetensors"))
    assert (found.equal, shown_modules(found, depth=2, everything=False)) == (True, [])
    assert [delta.path for delta in shown_modules(found, depth=2, everything=True)] == ["", "0", "1"]
    # between two models, one is: the activation was removed
    found = paramscope.diff(with_activation, nn.Sequential(nn.Linear(2, 2)))
    assert [delta.path for delta in shown_modules(found, depth=2, everything=False)] == ["1"]


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_no_module_table_when_no_module_differs(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    # from review: two identical models printed an empty "Modules (modules that differ)" table; the sections of
    # tensors that differ are left out when there are none, and so is this one now
    code, out, err = run(capsys, "diff", "tests.test_diff:Net", "tests.test_diff:Net", "--format", fmt)
    assert (code, err) == (0, "")
    assert "Modules (" not in out
    assert "the models are the same" in out
    code, out, err = run(capsys, "diff", "tests.test_diff:Net", "tests.test_diff:Net", "--format", fmt, "--all")
    assert (code, "Modules (all modules, depth 2)" in out) == (0, True)


def test_a_buffer_persistent_under_its_second_name_is_in_the_checkpoint(tmp_path: Path) -> None:
    class Rotary(nn.Module):
        def __init__(self, table: torch.Tensor, persistent: bool) -> None:
            super().__init__()
            self.register_buffer("inv_freq", table, persistent=persistent)

    table = torch.arange(4.0)
    model = nn.Sequential(Rotary(table, persistent=False), Rotary(table, persistent=True))  # one tensor, two names
    assert list(model.state_dict()) == ["1.inv_freq"]  # torch saves it under its persistent name
    (record,) = paramscope.inspect(model).tensors
    assert (record.name, record.aliases, record.persistent) == ("0.inv_freq", ("1.inv_freq",), True)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path))
    assert not model.load_state_dict(safetensors.torch.load_file(str(path))).unexpected_keys
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed, found.equal) == ((), (), (), True)


# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_side", ["a", "b"])
def test_a_parametrized_layer_against_its_checkpoint_is_one_module(tmp_path: Path, model_side: str) -> None:
    # The checkpoint names weight_norm's stored tensors under lin.parametrizations.weight; the model's report counts
    # them in lin, as inspect shows them. No module differs, and lin holds its whole state dict on each side.
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential()
    model.add_module("lin", weight_norm(nn.Linear(8, 8)))
    model.add_module("conv", nn.Sequential(weight_norm(nn.Conv1d(8, 4, 3), dim=1)))
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(model, str(path))
    assert "lin.parametrizations.weight.original1" in safetensors.torch.load_file(str(path))
    found = paramscope.diff(model, str(path)) if model_side == "a" else paramscope.diff(str(path), model)
    assert found.equal
    assert shown_modules(found, depth=5, everything=False) == []
    rows = {delta.path: (delta.params_a, delta.params_b) for delta in shown_modules(found, depth=5, everything=True)}
    parameters = {name for name, _ in model.named_parameters()}
    for module in ("lin", "conv", "conv.0"):
        held = sum(tensor.numel() for name, tensor in model.state_dict().items()
                   if name.startswith(f"{module}.") and name in parameters)  # fmt: skip
        assert rows[module] == (held, held)
    assert sorted(rows) == ["", "conv", "conv.0", "lin"]  # in A's order: a safetensors file sorts its names


def batch_norm() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))


def weight_normed(out_features: int = 4) -> nn.Module:
    from torch.nn.utils.parametrizations import weight_norm

    return nn.Sequential(weight_norm(nn.Linear(4, out_features)))


def load_state_dict_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What torch's load_state_dict itself reports missing and unexpected, on a copy of the model."""
    result = copy.deepcopy(model).load_state_dict(state, strict=False)
    return tuple(result.missing_keys), tuple(result.unexpected_keys)


def without_num_batches_tracked(path: Path, how: str) -> dict[str, torch.Tensor]:
    """A checkpoint of batch_norm() without 0.num_batches_tracked, as an old torchvision .pth or safetensors."""
    state = batch_norm().state_dict()
    del state["1.num_batches_tracked"]
    if how == "safetensors":
        safetensors.torch.save_file(dict(state), str(path))
        return safetensors.torch.load_file(str(path))
    if how == "plain dict":
        torch.save(dict(state), path)
    else:  # a state dict with its _metadata: BatchNorm's version, 2 since torch 0.4.1
        version = int(how.removeprefix("version "))
        if version:
            state._metadata["1"]["version"] = version  # type: ignore[attr-defined]
        else:
            del state._metadata["1"]  # type: ignore[attr-defined]
        torch.save(state, path)
    loaded: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return loaded


@pytest.mark.parametrize("how", ["safetensors", "plain dict", "version 0", "version 1", "version 2"])
def test_batch_norm_without_its_counter_loads_as_load_state_dict_says(
    tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # BatchNorm's _load_from_state_dict adds num_batches_tracked to a checkpoint of a version before 2, or of none
    path = tmp_path / ("model.safetensors" if how == "safetensors" else "model.pth")
    model = batch_norm()
    missing, unexpected = load_state_dict_keys(model, without_num_batches_tracked(path, how))
    assert missing == (("1.num_batches_tracked",) if how == "version 2" else ())
    assert unexpected == ()
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed) == (missing, unexpected, ())
    assert found.equal == (how != "version 2")
    reverse = paramscope.diff(str(path), model)
    assert (reverse.only_in_a, reverse.only_in_b, reverse.equal) == (unexpected, missing, found.equal)
    code, out, err = run(capsys, "diff", "tests.test_diff:batch_norm", str(path))
    assert (code, err) == ((1, "") if missing else (0, ""))
    if not missing:
        assert (
            "  - the model's own load code (its modules' _load_from_state_dict and load_state_dict hooks, run on "
            "meta stand-ins) fills 1 tensor(s) the checkpoint lacks (1.num_batches_tracked): compared as "
            "load_state_dict loads them\n"
        ) in out


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_an_old_weight_norm_checkpoint_loads_into_the_parametrization(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # torch's weight_norm parametrization renames an old checkpoint's weight_g and weight_v in a load pre-hook
    path = tmp_path / f"old{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
        old = nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(4, 4)))
    state = {name: tensor.detach().clone() for name, tensor in old.state_dict().items()}
    assert sorted(state) == ["0.bias", "0.weight_g", "0.weight_v"]
    safetensors.torch.save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model = weight_normed()
    assert load_state_dict_keys(model, state) == ((), ())
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed, found.equal) == ((), (), (), True)
    assert found.notes[0] == (
        "the model's own load code (its modules' _load_from_state_dict and load_state_dict hooks, run on meta "
        "stand-ins) loads 2 of the checkpoint's tensors under other names (0.weight_g as "
        "0.parametrizations.weight.original0, 0.weight_v as 0.parametrizations.weight.original1): compared as "
        "load_state_dict loads them"
    )
    assert paramscope.diff(str(path), model).equal
    code, _, err = run(capsys, "diff", "tests.test_diff:weight_normed", str(path))
    assert (code, err) == (0, "")
    # into a layer of another size: torch's size mismatches are under the names the hook loads them as
    wider = weight_normed(out_features=5)
    with pytest.raises(RuntimeError) as raised:
        copy.deepcopy(wider).load_state_dict(state, strict=False)
    mismatched = re.findall(r"size mismatch for ([\w.]+)", str(raised.value))
    found = paramscope.diff(wider, str(path))
    assert (found.only_in_a, found.only_in_b) == ((), ())
    assert [change.name for change in found.changed] == mismatched == [
        "0.bias", "0.parametrizations.weight.original0", "0.parametrizations.weight.original1"
    ]  # fmt: skip
    assert found.changed[1].shape_a == (5, 1)
    assert found.changed[1].shape_b == (4, 1)


class RenamedOnLoad(nn.Module):
    """A module whose own load pre-hook, registered with the module, renames an old key and counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.calls = 0
        self.register_load_state_dict_pre_hook(self.rename)

    def rename(self, module: nn.Module, state: dict[str, torch.Tensor], prefix: str, *args: Any) -> None:
        self.calls += 1
        module.seen = sorted(state)
        if f"{prefix}old.weight" in state:
            state[f"{prefix}lin.weight"] = state.pop(f"{prefix}old.weight")


def test_the_models_own_load_hooks_run_on_stand_ins(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    state = {"old.weight": torch.zeros(4, 3), "lin.bias": torch.zeros(4), "extra": torch.zeros(2)}
    safetensors.torch.save_file(state, str(path))
    model = RenamedOnLoad()
    assert load_state_dict_keys(model, state) == ((), ("extra",))
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed) == ((), ("extra",), ())
    # its modules as loaded too: old.weight in lin, not a module of B's own
    assert [(row.path, row.params_a, row.params_b) for row in found.modules] == [("", 16, 18), ("lin", 16, 16)]
    assert model.calls == 0  # the hook ran on the model's stand-in, not on the model
    assert "seen" not in vars(model)
    # a lazy layer's load hook materialises its weights: the stand-in's, never the model's
    lazy = nn.Sequential(nn.LazyLinear(4))
    paramscope.diff(lazy, str(tmp_path / "model.safetensors"))
    assert isinstance(lazy[0].weight, nn.parameter.UninitializedParameter)
    assert type(lazy[0]) is nn.LazyLinear


class _HookHoldingItself(nn.Module):
    """A load pre-hook that holds the module itself, the way ``how`` says; it records what it is given on it."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.calls = 0
        if how == "closure":
            self._register_load_state_dict_pre_hook(lambda *args: self.record())
        else:
            self._register_load_state_dict_pre_hook(functools.partial(_HookHoldingItself.record_from_hook, self))

    def record(self) -> None:
        self.calls += 1

    def record_from_hook(self, *args: object) -> None:
        self.calls += 1


@pytest.mark.parametrize("how", ["closure", "partial"])
def test_load_code_that_holds_the_model_itself_is_not_run(tmp_path: Path, how: str) -> None:
    model = _HookHoldingItself(how)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    found = paramscope.diff(model, str(path))
    assert model.calls == 0  # run on a stand-in it would still have reached the model
    assert (found.equal, found.only_in_a, found.only_in_b) == (True, (), ())
    assert found.notes[-1] == (
        "the model's own load code (its load_state_dict hooks, _load_from_state_dict) was not run (the load code of "
        "'(model)' holds the model itself, which running it could change): names compared as stored"
    )


class _Patcher:
    """Not a module: a helper object holding the model, whose method is the model's load hook."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def hook(self, *args: object) -> None:
        self.model.touched = True


_GLOBAL_MODEL: list[nn.Module] = []


def _hook_reading_a_global(*args: object) -> None:
    _GLOBAL_MODEL[0].touched = True


class _LoadReachingItsParent(nn.Linear):
    def _load_from_state_dict(self, *args: Any) -> None:
        super()._load_from_state_dict(*args)
        self.parents[0].touched = True


def _with_hook(how: str) -> nn.Module:
    if how == "method of a helper":
        model = nn.Sequential(nn.Linear(4, 4))
        model._register_load_state_dict_pre_hook(_Patcher(model).hook)
    elif how == "global":
        model = nn.Sequential(nn.Linear(4, 4))
        _GLOBAL_MODEL[:] = [model]
        model._register_load_state_dict_pre_hook(_hook_reading_a_global)
    else:
        model = nn.Sequential(_LoadReachingItsParent(4, 4))
        vars(model[0])["parents"] = [model]
    return model


@pytest.mark.parametrize("how", ["method of a helper", "global", "class method through a list"])
def test_load_code_that_reaches_the_model_further_is_not_run(tmp_path: Path, how: str) -> None:
    model = _with_hook(how)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(dict(model.state_dict()), str(path))
    found = paramscope.diff(model, str(path))
    assert "touched" not in vars(model)
    assert found.equal
    assert "holds the model itself, which running it could change" in found.notes[-1]


def test_a_load_method_set_on_the_instance_runs_on_its_stand_in(tmp_path: Path) -> None:
    def load(self: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *rest: object) -> None:
        self.seen = sorted(state_dict)
        nn.Linear._load_from_state_dict(self, state_dict, prefix, *rest)  # type: ignore[arg-type]

    model = nn.Sequential(nn.Linear(4, 4))
    vars(model[0])["_load_from_state_dict"] = types.MethodType(load, model[0])
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(dict(model.state_dict()), str(path))
    found = paramscope.diff(model, str(path))
    assert "seen" not in vars(model[0])
    assert (found.equal, found.notes) == (True, ())


class _NewTakesArguments(nn.Module):
    def __new__(cls, size: int) -> _NewTakesArguments:
        return super().__new__(cls)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(size, size)


def test_load_code_that_cannot_run_on_stand_ins_leaves_the_names_as_stored(tmp_path: Path) -> None:
    model = _NewTakesArguments(4)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    found = paramscope.diff(model, str(path))
    assert (found.equal, found.only_in_a, found.only_in_b) == (True, (), ())
    assert found.notes[-1] == (
        "the model's own load code (its load_state_dict hooks, _load_from_state_dict) was not run (it failed on meta "
        "stand-ins: TypeError: _NewTakesArguments.__new__() missing 1 required positional argument: 'size'): names "
        "compared as stored"
    )


# 2. a base model against its fine-tuned or pruned version


def test_fine_tuned_in_bf16_with_adapters() -> None:
    base = Net()
    tuned = Net().to(torch.bfloat16)
    tuned.blocks[0].add_module("lora_a", nn.Linear(16, 4, bias=False))
    tuned.blocks[0].add_module("lora_b", nn.Linear(4, 16, bias=False))
    found = paramscope.diff(base, tuned)
    assert found.only_in_b == ("blocks.0.lora_a.weight", "blocks.0.lora_b.weight")
    assert found.only_in_a == ()
    tensors = [*base.named_parameters(), *base.named_buffers()]  # ties once, non-persistent buffers too
    assert {change.name for change in found.changed} == {name for name, t in tensors if t.is_floating_point()}
    assert all((c.dtype_a, c.dtype_b) == ("float32", "bfloat16") for c in found.changed)
    assert (found.a.totals.params, found.a.totals.param_bytes) == count(base)
    assert (found.b.totals.params, found.b.totals.param_bytes) == count(tuned)
    block = next(delta for delta in found.modules if delta.path == "blocks.0")
    assert block.params_delta == 16 * 4 * 2
    assert block.bytes_delta == count(tuned.blocks[0])[1] - count(base.blocks[0])[1]
    added = next(delta for delta in found.modules if delta.path == "blocks.0.lora_a")
    assert (added.params_a, added.params_b, added.type_b) == (None, 64, "Linear")
    paths = [delta.path for delta in found.modules]
    assert paths.index("blocks.0.lora_a") < paths.index("blocks.1")  # shown inside the block it was added to


def frozen_blocks() -> Net:
    """A Net whose blocks are frozen, as for fine-tuning the head only."""
    model = Net()
    model.blocks.requires_grad_(False)
    return model


def test_freezing_layers_is_a_difference(capsys: pytest.CaptureFixture[str]) -> None:
    base, frozen = Net(), frozen_blocks()
    found = paramscope.diff(base, frozen)
    assert not found.equal
    assert {change.name for change in found.changed} == {
        name for name, _ in frozen.blocks.named_parameters(prefix="blocks")
    }
    assert all((c.trainable_a, c.trainable_b, c.shape_a == c.shape_b) == (True, False, True) for c in found.changed)
    trainable = sum(p.numel() for p in frozen.parameters() if p.requires_grad)
    assert (found.a.totals.trainable, found.b.totals.trainable) == (count(base)[0], trainable)
    code, out, _ = run(capsys, "diff", "tests.test_diff:Net", "tests.test_diff:frozen_blocks")
    assert code == 1
    assert "Different shape, dtype, kind, trainability or persistence (" in out
    assert re.search(
        r"^  blocks\.0\.0\.weight\s+\(16, 16\) float32, trainable\s+\(16, 16\) float32, frozen$", out, re.M
    )
    assert "the models differ" in out


def test_trainability_is_not_compared_with_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(Net(), str(path))
    assert paramscope.diff(frozen_blocks(), str(path)).equal  # a checkpoint knows nothing of requires_grad


def test_pruned_model_is_smaller_module_by_module() -> None:
    base, pruned = Net(hidden=16), Net(hidden=16)
    pruned.blocks[1][0] = nn.Linear(16, 16, bias=False)
    pruned.blocks = nn.ModuleList(list(pruned.blocks)[:1])
    found = paramscope.diff(base, pruned)
    assert found.b.totals.params - found.a.totals.params == count(pruned)[0] - count(base)[0] < 0
    removed = next(delta for delta in found.modules if delta.path == "blocks.1")
    assert (removed.params_a, removed.params_b) == (count(base.blocks[1])[0], None)
    assert set(found.only_in_a) == {f"blocks.1.{name}" for name in base.blocks[1].state_dict()}


def test_a_layer_of_another_class_is_a_module_that_differs(capsys: pytest.CaptureFixture[str]) -> None:
    # LayerNorm without a bias and RMSNorm hold the same tensor (weight, of the same shape): the class is the change
    base = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4, bias=False))
    changed = nn.Sequential(nn.Linear(4, 4), nn.RMSNorm(4))
    assert [(n, tuple(p.shape)) for n, p in base.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in changed.named_parameters()
    ]
    found = paramscope.diff(base, changed)
    assert [delta.path for delta in shown_modules(found, depth=2, everything=False)] == ["1"]
    out = render_diff(found, "table")
    assert "\n    1     LayerNorm → RMSNorm         4         4         0     0 B\n" in out
    assert (found.equal, found.decided) == (False, True)


@pytest.mark.parametrize(
    "changed",
    [nn.Sequential(nn.Linear(4, 4), nn.GELU()), nn.Sequential(nn.Linear(4, 4))],
    ids=["of another class", "removed"],
)
def test_a_module_without_tensors_changed_differs(changed: nn.Module) -> None:
    # the state dicts are the same, the models are not: the table shows the module, the answer must agree with it
    base = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    assert base.state_dict().keys() == changed.state_dict().keys()
    found = paramscope.diff(base, changed)
    assert [delta.path for delta in shown_modules(found, depth=2, everything=False)] == ["1"]
    assert (found.equal, found.decided) == (False, True)
    assert paramscope.diff(base, nn.Sequential(nn.Linear(4, 4), nn.ReLU())).equal


# ---------------------------------------------------------------------------------------------------------------------
# 3. two configs: what does doubling the layers cost?


@pytest.fixture(scope="module")
def llama_configs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    transformers = pytest.importorskip("transformers")
    directory = tmp_path_factory.mktemp("configs")
    paths = []
    for layers in (2, 4):
        config = transformers.LlamaConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=2, architectures=["LlamaForCausalLM"],
        )  # fmt: skip
        config.save_pretrained(directory / f"layers{layers}")
        paths.append(directory / f"layers{layers}" / "config.json")
    return paths[0], paths[1]


def test_doubling_the_layers_costs_one_layer_per_layer_added(llama_configs: tuple[Path, Path]) -> None:
    import transformers

    small, large = llama_configs
    found = paramscope.diff(str(small), str(large))
    built = [transformers.LlamaForCausalLM(transformers.AutoConfig.from_pretrained(p.parent)) for p in (small, large)]
    one_layer = sum(p.numel() for p in built[0].model.layers[0].parameters())
    assert found.b.totals.params - found.a.totals.params == count(built[1])[0] - count(built[0])[0] == 2 * one_layer
    assert [delta.path for delta in found.modules if delta.params_a is None and delta.depth == 3] == [
        "model.layers.2",
        "model.layers.3",
    ]
    assert len(found.only_in_b) == 2 * len(list(built[0].model.layers[0].state_dict()))


def test_a_base_models_checkpoint_is_compared_module_by_module_as_loaded(
    llama_configs: tuple[Path, Path], tmp_path: Path
) -> None:
    # from review: its tensors were matched under the model's names (model.layers.0...), its modules under their own:
    # the whole decoder shown missing from B, and B's layers as modules of its own
    import transformers

    small, _ = llama_configs
    model = transformers.LlamaForCausalLM(transformers.AutoConfig.from_pretrained(small.parent))
    state = {name.removeprefix("model."): tensor.contiguous() for name, tensor in model.state_dict().items()}
    del state["lm_head.weight"]  # a base model's checkpoint: what LlamaModel.save_pretrained writes
    safetensors.torch.save_file(state, str(tmp_path / "model.safetensors"))
    found = paramscope.diff(str(small), str(tmp_path / "model.safetensors"))
    assert (found.only_in_a, found.only_in_b) == (("lm_head.weight",), ())
    head = model.lm_head.weight.numel()
    held = {path: sum(p.numel() for p in module.parameters()) for path, module in model.named_modules()}
    expected = {
        path: (n, n - head if path == "" else None if path == "lm_head" else n) for path, n in held.items() if n
    }
    assert {row.path: (row.params_a, row.params_b) for row in found.modules if row.params_a} == expected
    assert all(row.params_a is not None for row in found.modules)  # no module of B's own


def test_cli_formats_and_exit_codes(llama_configs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    small, large = (str(path) for path in llama_configs)
    code, out, err = run(capsys, "diff", small, large, "--depth", "3")
    assert (code, err) == (1, "")
    assert re.search(r"^  Parameters\s+[\d,]+\s+[\d,]+\s+\+[\d,]+$", out, re.MULTILINE)
    assert "Only in B (" in out
    assert out.rstrip().endswith("  - the models differ")

    code, out, _ = run(capsys, "diff", small, large, "--format", "json")
    data = json.loads(out)
    assert code == 1
    assert list(data) == [
        "schema",
        "a",
        "b",
        "equal",
        "decided",
        "totals",
        "modules",
        "only_in_a",
        "only_in_b",
        "changed",
        "sharing",
        "notes",
    ]
    assert data["schema"] == "paramscope.diff/1"
    assert data["equal"] is False
    params = data["totals"]["params"]
    assert params["delta"] == params["b"] - params["a"] > 0
    for module in data["modules"]:
        assert module["params_delta"] == (module["params_b"] or 0) - (module["params_a"] or 0)
        assert module["bytes_delta"] == (module["bytes_b"] or 0) - (module["bytes_a"] or 0)
    api = paramscope.diff(small, large)
    assert data == json.loads(json.dumps(api.to_dict()))

    code, out, _ = run(capsys, "diff", small, small, "--format", "markdown")
    assert code == 0
    assert "| Parameters |" in out

    code, out, _ = run(capsys, "diff", small, large, "--format", "html", "--depth", "3")
    assert code == 1
    assert out.startswith("<!DOCTYPE html>")
    assert 'class="added"' in out
    assert 'class="grown"' in out
    assert "http://" not in out
    assert "https://" not in out


def test_cli_arguments_per_side(capsys: pytest.CaptureFixture[str]) -> None:
    target = "tests.test_diff:Net"
    code, out, _ = run(capsys, "diff", target, target, "--args-b", "blocks=3", "--format", "json")
    data = json.loads(out)
    assert code == 1
    assert data["totals"]["params"]["b"] - data["totals"]["params"]["a"] == count(Net(blocks=3))[0] - count(Net())[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["diff", "missing.safetensors", "paramscope.examples:gpt2"], "missing.safetensors: no such file or directory"),
        (["diff", "paramscope.examples:gpt2", "paramscope.examples:gpt2", "--depth", "-1"],
         "--depth must be 0 or more, not -1"),
        (["diff", "paramscope.examples:gpt2", "paramscope.examples:gpt2", "--args-a", "novalue"],
         "argument 'novalue' is not of the form key=value"),
    ],
)  # fmt: skip
def test_cli_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err == f"paramscope: error: {message}\n"


def test_a_default_dtype_set_by_one_model_is_not_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # scientific code sets float64 for the process when imported: the other model is built as it would be alone, so
    # the answer does not depend on the order of A and B
    linear = "def build():\n    return nn.Linear(4, 4)\n"
    (tmp_path / "f64.py").write_text(
        f"import torch\nfrom torch import nn\n\ntorch.set_default_dtype(torch.float64)\n{linear}"
    )
    (tmp_path / "plain.py").write_text(f"from torch import nn\n\n\n{linear}")
    f64, plain = f"{tmp_path / 'f64.py'}:build", f"{tmp_path / 'plain.py'}:build"
    try:
        for a, b, dtypes in ((f64, plain, ("float64", "float32")), (plain, f64, ("float32", "float64"))):
            code, out, _ = run(capsys, "diff", a, b, "--format", "json")
            changed = [(change["name"], change["dtype_a"], change["dtype_b"]) for change in json.loads(out)["changed"]]
            assert (code, changed) == (1, [("weight", *dtypes), ("bias", *dtypes)])
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(torch.float32)


# ---------------------------------------------------------------------------------------------------------------------
# 4. model files in two folders, each importing a neighbour of the same name


def two_versions(tmp_path: Path, neighbour: str) -> tuple[str, str]:
    """``v1/model.py`` and ``v2/model.py``, each building ``nn.Linear(WIDTH, WIDTH)`` with the WIDTH (4, then 8) of
    the ``neighbour`` module beside it."""
    targets = []
    for folder, width in (("v1", 4), ("v2", 8)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{neighbour}.py").write_text(f"WIDTH = {width}\n")
        build = "def build():\n    return nn.Linear(WIDTH, WIDTH)\n"
        (tmp_path / folder / "model.py").write_text(f"from torch import nn\nfrom {neighbour} import WIDTH\n\n\n{build}")
        targets.append(f"{tmp_path / folder / 'model.py'}:build")
    return targets[0], targets[1]


def test_each_file_imports_its_own_neighbours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    neighbour = f"helper_{uuid.uuid4().hex}"
    a, b = two_versions(tmp_path, neighbour)
    try:
        found = paramscope.diff(a, b)
        code, out, _ = run(capsys, "diff", a, b, "--format", "json")
        again = paramscope.diff(b, a)
        # A's neighbour is no longer in sys.modules under its name, but it is still a file A is read from.
        refused = run(capsys, "diff", a, b, "--output", str(tmp_path / "v1" / f"{neighbour}.py"))
    finally:
        sys.modules.pop(neighbour, None)
    assert (found.a.totals.params, found.b.totals.params) == (count(nn.Linear(4, 4))[0], count(nn.Linear(8, 8))[0])
    assert (again.a.totals.params, again.b.totals.params) == (72, 20)
    assert code == 1
    assert json.loads(out)["totals"]["params"] == {"a": 20, "b": 72, "delta": 52}
    assert refused[0] == 2
    assert (tmp_path / "v1" / f"{neighbour}.py").read_text() == "WIDTH = 4\n"


def test_a_neighbour_only_the_other_folder_has_is_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    neighbour = f"helper_{uuid.uuid4().hex}"
    a, b = two_versions(tmp_path, neighbour)
    (tmp_path / "v2" / f"{neighbour}.py").unlink()  # as when v2/model.py is run as a script: no such module
    try:
        code, out, err = run(capsys, "diff", a, b)
    finally:
        sys.modules.pop(neighbour, None)
    assert (code, out) == (2, "")
    assert err == f"paramscope: error: importing {b} failed: ModuleNotFoundError: No module named '{neighbour}'\n"


# ---------------------------------------------------------------------------------------------------------------------
# 5. differences the names alone do not show: a tensor's kind, ties, reused modules, totals, unknown sizes


def holds_parameter() -> nn.Module:
    model = nn.Module()
    model.p = nn.Parameter(torch.ones(3))
    return model


def holds_buffer() -> nn.Module:
    model = nn.Module()
    model.register_buffer("p", torch.ones(3))
    return model


def untied() -> nn.Module:
    model = nn.Module()
    model.emb = nn.Embedding(10, 4)
    model.head = nn.Linear(4, 10, bias=False)
    return model


def tied() -> nn.Module:
    model = untied()
    model.head.weight = model.emb.weight
    return model


def two_layers() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))


def one_layer_twice() -> nn.Sequential:
    layer = nn.Linear(2, 2)
    return nn.Sequential(layer, layer)


def lazy(n: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.LazyLinear(n))


def section(out: str, title: str) -> list[str]:
    """The lines of the table section whose title starts with ``title``, its title included."""
    lines = out.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(title))
    end = lines.index("", start)
    return lines[start:end]


class HoldsABuffer(nn.Module):
    def __init__(self, persistent: bool = True) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.register_buffer("table", torch.zeros(3), persistent=persistent)


def test_a_buffer_that_left_the_state_dict_differs(capsys: pytest.CaptureFixture[str]) -> None:
    # the same tensors, but one model saves the buffer and the other does not: a state dict of one does not load
    # strictly into the other. The diff had said "the models are the same"
    a, b = HoldsABuffer(), HoldsABuffer(persistent=False)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "table"'):
        b.load_state_dict(a.state_dict())
    found = paramscope.diff(a, b)
    assert found.changed == (
        TensorChange("table", (3,), (3,), "float32", "float32", None, None, "buffer", "buffer", True, False),
    )
    assert not found.equal
    assert paramscope.diff(a, HoldsABuffer()).equal
    code, out, _ = run(capsys, "diff", "tests.test_diff:HoldsABuffer", "tests.test_diff:HoldsABuffer",
                       "--args-b", "persistent=false")  # fmt: skip
    assert code == 1
    assert section(out, "Different") == [
        "Different shape, dtype, kind, trainability or persistence (1)",
        "  Tensor  A                        B",
        "  ------  -----------------------  ---------------------------------------------------",
        "  table   (3) float32, persistent  (3) float32, non-persistent (not in the state dict)",
    ]
    data = json.loads(run(capsys, "diff", "tests.test_diff:HoldsABuffer", "tests.test_diff:HoldsABuffer",
                          "--args-b", "persistent=false", "--format", "json")[1])  # fmt: skip
    assert (data["changed"][0]["persistent_a"], data["changed"][0]["persistent_b"]) == (True, False)


@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile], ids=["DataParallel", "compile"])
def test_a_wrapped_model_against_its_own_state_dict_is_the_same(tmp_path: Path, wrap: Any) -> None:
    # its keys carry the wrapper's prefix (module., _orig_mod.), which the report's names do not: every one had been
    # missing and unexpected, though the wrapped model loads its own state dict
    model = wrap(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    path = tmp_path / "wrapped.pt"
    torch.save(model.state_dict(), path)
    model.load_state_dict(torch.load(path, weights_only=True))  # strict: every key is the wrapper's
    prefix = "module." if wrap is nn.DataParallel else "_orig_mod."
    assert all(name.startswith(prefix) for name in torch.load(path, weights_only=True))
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed) == ((), (), ())
    assert found.equal
    assert paramscope.diff(str(path), model).equal
    # a checkpoint of the wrapped model alone is still matched, as before
    torch.save(forward_module(model).state_dict(), path)
    assert paramscope.diff(model, str(path)).equal


def test_a_wrapped_models_state_dict_with_a_key_of_its_own_is_matched_as_the_wrapper_loads_it(tmp_path: Path) -> None:
    # one key without the prefix made every tensor missing and unexpected; the wrapper finds that key unexpected alone
    model = nn.DataParallel(nn.Sequential(nn.Linear(2, 3)))
    path = tmp_path / "wrapped.pt"
    torch.save({**model.state_dict(), "extra": torch.zeros(1)}, path)
    incompatible = model.load_state_dict(torch.load(path, weights_only=True), strict=False)
    assert (incompatible.missing_keys, incompatible.unexpected_keys) == ([], ["extra"])
    found = paramscope.diff(model, str(path))
    assert (found.only_in_a, found.only_in_b, found.changed) == ((), ("extra",), ())


class HoldsAScalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))


@pytest.mark.parametrize("shape", [(1,), (3,), (1, 1)], ids=str)
def test_a_scalar_against_a_checkpoint_differs_where_load_state_dict_says_so(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    # torch loads a 1-d tensor of one value into a 0-d parameter (torch 0.3 saved scalars so): no size mismatch
    path = tmp_path / "model.pt"
    torch.save({"p": torch.ones(shape)}, path)
    model = HoldsAScalar()
    found = paramscope.diff(model, str(path))
    if shape == (1,):
        model.load_state_dict(torch.load(path, weights_only=True))
        assert found.equal
        assert found.changed == ()
        assert (
            "p: a scalar in the model, of shape (1) in B, which load_state_dict loads (as torch 0.3 saved scalars): "
            "not a size mismatch"
        ) in found.notes
    else:  # of three values, or of shape (1, 1), torch refuses the size
        with pytest.raises(RuntimeError, match="size mismatch for p"):
            model.load_state_dict(torch.load(path, weights_only=True))
        assert not found.equal
        assert [change.name for change in found.changed] == ["p"]
    assert paramscope.diff(str(path), model).equal == found.equal  # either side


def test_a_parameter_that_became_a_buffer_differs(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = holds_parameter(), holds_buffer()
    found = paramscope.diff(a, b)
    assert found.changed == (
        TensorChange("p", (3,), (3,), "float32", "float32", True, None, "parameter", "buffer", None, True),
    )
    assert (found.a.totals.params, found.a.totals.buffers) == (count(a)[0], 0) == (3, 0)
    assert (found.b.totals.params, found.b.totals.buffers) == (0, sum(t.numel() for t in b.buffers())) == (0, 3)
    assert not found.equal
    code, out, _ = run(capsys, "diff", "tests.test_diff:holds_parameter", "tests.test_diff:holds_buffer")
    assert code == 1
    assert section(out, "Different") == [
        "Different shape, dtype, kind, trainability or persistence (1)",
        "  Tensor  A                      B",
        "  ------  ---------------------  ------------------",
        "  p       (3) float32 parameter  (3) float32 buffer",
    ]
    assert out.rstrip().endswith("  - the models differ")
    data = json.loads(run(capsys, "diff", "tests.test_diff:holds_parameter", "tests.test_diff:holds_buffer",
                          "--format", "json")[1])  # fmt: skip
    assert (data["changed"][0]["kind_a"], data["changed"][0]["kind_b"], data["equal"]) == ("parameter", "buffer", False)


@pytest.mark.parametrize(("a", "b", "counts"), [("untied", "tied", (2, 1)), ("tied", "untied", (1, 2))])
def test_a_tie_added_or_removed_differs(
    a: str, b: str, counts: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    models = {"tied": tied, "untied": untied}
    found = paramscope.diff(models[a](), models[b]())
    # The state dicts have the same keys (a tied head's too): no tensor is on one side only.
    assert set(tied().state_dict()) == set(untied().state_dict())
    assert (found.only_in_a, found.only_in_b, found.changed) == ((), (), ())
    assert found.sharing == (SharingChange("tensor", ("emb.weight", "head.weight"), *counts),)
    assert (found.a.totals.params, found.b.totals.params) == (count(models[a]())[0], count(models[b]())[0])
    assert not found.equal
    code, out, _ = run(capsys, "diff", f"tests.test_diff:{a}", f"tests.test_diff:{b}")
    assert code == 1
    cells = ("2 tensors", "one tensor (tied)") if a == "untied" else ("one tensor (tied)", "2 tensors")
    assert section(out, "Tied")[0] == "Tied or reused differently (1)"
    row = rf"  emb\.weight, head\.weight  {re.escape(cells[0])}\s+{re.escape(cells[1])}"
    assert re.fullmatch(row, section(out, "Tied")[3])
    assert out.rstrip().endswith("  - the models differ")


def tied_under_another_name() -> nn.Module:
    """``tied`` with its head renamed ``lm``: the same tensors, under another state-dict key."""
    model = nn.Module()
    model.emb = nn.Embedding(10, 4)
    model.lm = nn.Linear(4, 10, bias=False)
    model.lm.weight = model.emb.weight
    return model


def test_a_tied_head_renamed_differs(capsys: pytest.CaptureFixture[str]) -> None:
    # load_state_dict answers by the state dict's keys, a tied head's included
    result = tied_under_another_name().load_state_dict(tied().state_dict(), strict=False)
    assert (result.missing_keys, result.unexpected_keys) == (["lm.weight"], ["head.weight"])
    found = paramscope.diff(tied(), tied_under_another_name())
    assert (found.only_in_a, found.only_in_b) == (("head.weight",), ("lm.weight",))
    assert (found.changed, found.sharing) == ((), ())
    assert not found.equal
    code, out, _ = run(capsys, "diff", "tests.test_diff:tied", "tests.test_diff:tied_under_another_name")
    assert code == 1
    assert section(out, "Only in A") == ["Only in A (1: missing from B)", "  Tensor", "  -----------", "  head.weight"]
    assert section(out, "Only in B") == ["Only in B (1: unexpected in A)", "  Tensor", "  ---------", "  lm.weight"]
    assert out.rstrip().endswith("  - the models differ")


def test_a_module_reused_differs(capsys: pytest.CaptureFixture[str]) -> None:
    found = paramscope.diff(two_layers(), one_layer_twice())
    assert found.b.totals.params - found.a.totals.params == count(one_layer_twice())[0] - count(two_layers())[0] == -6
    assert found.sharing == (
        SharingChange("tensor", ("0.weight", "1.weight"), 2, 1),
        SharingChange("tensor", ("0.bias", "1.bias"), 2, 1),
        SharingChange("module", ("0", "1"), 2, 1),
    )
    assert not found.equal
    activation = nn.ReLU()  # no tensors: only the module tells
    found = paramscope.diff(nn.Sequential(nn.ReLU(), nn.ReLU()), nn.Sequential(activation, activation))
    assert found.sharing == (SharingChange("module", ("0", "1"), 2, 1),)
    assert not found.equal
    code, out, _ = run(capsys, "diff", "tests.test_diff:two_layers", "tests.test_diff:one_layer_twice", "--format",
                       "json")  # fmt: skip
    assert code == 1
    assert json.loads(out)["sharing"][2] == {"what": "module", "names": ["0", "1"], "count_a": 2, "count_b": 1}


def test_a_tie_stored_twice_in_a_checkpoint_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file({name: tensor.clone() for name, tensor in tied().state_dict().items()}, str(path))
    result = tied().load_state_dict(safetensors.torch.load_file(str(path)))
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    found = paramscope.diff(tied(), str(path))
    assert (found.only_in_a, found.only_in_b, found.changed, found.sharing) == ((), (), (), ())
    assert found.equal  # a checkpoint is compared as load_state_dict compares it
    # the totals differ by the copy, and a note says why
    emb = tied().emb.weight
    assert found.b.totals.params - found.a.totals.params == emb.numel()
    assert found.notes[0] == (
        "B stores as separate copies tensors that A ties (emb.weight = head.weight): B's totals count each copy, A's "
        "the tied tensor once; load_state_dict loads the copies into that one tensor"
    )
    flipped = paramscope.diff(str(path), tied())
    assert flipped.notes[0] == (
        "A stores as separate copies tensors that B ties (emb.weight = head.weight): A's totals count each copy, B's "
        "the tied tensor once; load_state_dict loads the copies into that one tensor"
    )
    # stored once, or as one tensor: nothing to explain
    torch.save(tied().state_dict(), tmp_path / "model.pt")
    assert not any("copies" in note for note in paramscope.diff(tied(), str(tmp_path / "model.pt")).notes)


def test_a_tie_stored_under_one_name_is_the_same_with_a_note(tmp_path: Path) -> None:
    # safetensors.torch.save_model keeps one name of a tie: load_state_dict(strict=True) reports the other missing,
    # load_model fills it; the diff said "equal" without a word
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(tied(), str(path))
    stored = set(safetensors.torch.load_file(str(path)))
    with pytest.raises(RuntimeError, match="Missing key"):
        tied().load_state_dict(safetensors.torch.load_file(str(path)))
    safetensors.torch.load_model(tied(), str(path))  # the tie fills it
    missing = sorted({"emb.weight", "head.weight"} - stored)
    kept = sorted({"emb.weight", "head.weight"} & stored)
    assert len(missing) == len(kept) == 1
    found = paramscope.diff(tied(), str(path))
    assert found.equal
    assert (
        f"B stores tensors that A ties under one of their names, and lacks {missing[0]} (tied to {kept[0]}): matched "
        "as the tied tensor, which load_state_dict(strict=True) would report missing and safetensors.torch.load_model "
        "and transformers' from_pretrained fill from the tie"
    ) in found.notes
    torch.save(tied().state_dict(), tmp_path / "model.pt")  # both names: nothing to say
    assert not any(
        "under one of their names" in note for note in paramscope.diff(tied(), str(tmp_path / "model.pt")).notes
    )


def test_two_checkpoints_of_a_tie_stored_once_and_under_both_names_are_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # safetensors (as transformers saves) drops the tied head; torch.save of the state dict keeps it as a second name
    # of the embedding's storage. The head's module, on B's side only and holding nothing of its own, made the two
    # differ (exit 1), though every tensor matched.
    once, twice = tmp_path / "model.safetensors", tmp_path / "model.pt"
    safetensors.torch.save_model(tied(), str(once))
    torch.save(tied().state_dict(), twice)
    assert set(safetensors.torch.load_file(str(once))) == {"emb.weight"}
    assert set(torch.load(twice)) == {"emb.weight", "head.weight"}
    # both load whole into the tied model
    missing, unexpected = safetensors.torch.load_model(tied(), str(once))
    assert (set(missing), set(unexpected)) == (set(), set())
    result = tied().load_state_dict(torch.load(twice))
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    for a, b in ((once, twice), (twice, once)):
        found = paramscope.diff(str(a), str(b))
        assert (found.only_in_a, found.only_in_b, found.changed, found.sharing) == ((), (), (), ())
        assert found.equal
        # from review: nothing said that one lacks a name load_state_dict(strict=True) asks for
        side, other = ("A", "B") if a == twice else ("B", "A")
        assert (
            f"{other} stores tensors that {side} ties under one of their names, and lacks head.weight (tied to "
            "emb.weight): matched as the tied tensor, which load_state_dict(strict=True) would report missing and "
            "safetensors.torch.load_model and transformers' from_pretrained fill from the tie"
        ) in found.notes
        assert shown_modules(found, depth=2, everything=False) == []
        code, out, err = run(capsys, "diff", str(a), str(b))
        assert (code, err) == (0, "")
        assert out.rstrip().endswith("  - the models are the same")
    # a head stored apart is another checkpoint still
    torch.save(untied().state_dict(), tmp_path / "untied.pt")
    assert run(capsys, "diff", str(once), str(tmp_path / "untied.pt"))[0] == 1


def gptq_layout(group: int, scales: str = "F16") -> dict[str, tuple[str, tuple[int, ...]]]:
    """A GPTQ checkpoint of one 128 → 64 layer, 4-bit, quantised in groups of ``group`` inputs."""
    return {
        "embed.weight": ("F16", (10, 128)),
        "up.qweight": ("I32", (128 * 4 // 32, 64)),
        "up.qzeros": ("I32", (128 // group, 64 * 4 // 32)),
        "up.scales": (scales, (128 // group, 64)),
        "up.g_idx": ("I32", (128,)),
    }


def test_quantised_checkpoints_with_other_scales_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Another group size (or scales in another dtype) is another checkpoint: a GPTQ layer built for one refuses the
    # other's scales and zeros, as torch's load_state_dict refuses a tensor of another shape.
    paths = {}
    for name, layout in (("g32", gptq_layout(32)), ("g64", gptq_layout(64)), ("f32", gptq_layout(32, "F32"))):
        paths[name] = tmp_path / f"{name}.safetensors"
        write_safetensors(paths[name], layout)
    found = paramscope.diff(str(paths["g32"]), str(paths["g64"]))
    assert found.changed == (
        TensorChange("up.qzeros", (4, 8), (2, 8), "int32", "int32", kind_a="quantization", kind_b="quantization"),
        TensorChange("up.scales", (4, 64), (2, 64), "float16", "float16", kind_a="quantization",
                     kind_b="quantization"),
    )  # fmt: skip
    assert not found.equal
    code, out, _ = run(capsys, "diff", str(paths["g32"]), str(paths["f32"]), "--format", "json")
    assert code == 1
    assert json.loads(out)["changed"] == [{
        "name": "up.scales", "shape_a": [4, 64], "shape_b": [4, 64], "dtype_a": "float16", "dtype_b": "float32",
        "trainable_a": None, "trainable_b": None, "kind_a": "quantization", "kind_b": "quantization",
        "persistent_a": None, "persistent_b": None,
    }]  # fmt: skip
    # the scales, zeros and group indices, apart from the parameters, are totals of their own
    code, out, _ = run(capsys, "diff", str(paths["g32"]), str(paths["g64"]), "--format", "json")
    sizes = {"I32": 4, "F16": 2}
    metadata = {
        name: [(math.prod(gptq_layout(group)[tensor][1]), sizes[gptq_layout(group)[tensor][0]])
               for tensor in ("up.qzeros", "up.scales", "up.g_idx")]
        for name, group in (("g32", 32), ("g64", 64))
    }  # fmt: skip
    elements = {name: sum(numel for numel, _ in tensors) for name, tensors in metadata.items()}
    stored = {name: sum(numel * size for numel, size in tensors) for name, tensors in metadata.items()}
    assert (code, elements, stored) == (1, {"g32": 416, "g64": 272}, {"g32": 1152, "g64": 832})
    totals = json.loads(out)["totals"]
    assert totals["quantization"] == {"a": 416, "b": 272, "delta": -144}
    assert totals["quantization_bytes"] == {"a": 1152, "b": 832, "delta": -320}
    out = run(capsys, "diff", str(paths["g32"]), str(paths["g64"]))[1]
    assert "  Quantization            416       272    -144\n" in out
    assert "  Quantization size  1.12 KiB     832 B  -320 B\n" in out
    layout = gptq_layout(32)
    del layout["up.g_idx"]
    write_safetensors(tmp_path / "no-g_idx.safetensors", layout)
    found = paramscope.diff(str(paths["g32"]), str(tmp_path / "no-g_idx.safetensors"))
    assert (found.only_in_a, found.equal) == (("up.g_idx",), False)
    assert paramscope.diff(str(paths["g32"]), str(paths["g32"])).equal


def test_totals_that_disagree_are_a_difference() -> None:
    report = paramscope.inspect(two_layers())
    totals = dataclasses.replace(report.totals, param_bytes=report.totals.param_bytes + 4)
    other = dataclasses.replace(report, totals=totals)
    found = paramscope.diff(report, other)
    assert (found.only_in_a, found.only_in_b, found.changed, found.sharing) == ((), (), (), ())
    assert not found.equal


LAZY = (
    "cannot tell whether the models are the same: A and B have tensors of unknown size (uninitialised lazy "
    "parameters), and nothing known differs"
)


def test_lazy_models_cannot_be_told_apart(capsys: pytest.CaptureFixture[str]) -> None:
    uninitialised = [name for name, p in lazy().named_parameters() if isinstance(p, nn.UninitializedParameter)]
    assert uninitialised == ["0.weight", "0.bias"]
    argv = ("diff", "tests.test_diff:lazy", "tests.test_diff:lazy", "--args-b", "n=500")
    code, out, err = run(capsys, *argv, "--format", "json")
    assert (code, err) == (2, f"paramscope: error: {LAZY}\n")  # exit 2, as for a budget on lower bounds
    data = json.loads(out)
    assert (data["equal"], data["decided"]) == (False, False)
    assert (data["a"]["complete"], data["b"]["complete"]) == (False, False)
    assert data["totals"]["params"] == {"a": 0, "b": 0, "delta": None}
    assert all(total["delta"] is None for total in data["totals"].values())
    assert [(module["complete_a"], module["complete_b"]) for module in data["modules"]] == [(False, False)] * 2
    assert [(module["params_delta"], module["bytes_delta"]) for module in data["modules"]] == [(None, None)] * 2
    assert data["notes"] == [
        "A and B: 2 uninitialised lazy tensor(s) in '0' (0.weight, 0.bias): their sizes are unknown until the first "
        "forward pass; totals are incomplete"
    ]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (2, f"paramscope: error: {LAZY}\n")
    assert section(out, "Totals") == [
        "Totals",
        "                      A      B  Δ",
        "  --------------  -----  -----  -",
        "  Parameters        ≥ 0    ≥ 0  ?",
        "    trainable       ≥ 0    ≥ 0  ?",
        "  Parameter size  ≥ 0 B  ≥ 0 B  ?",
        "  Buffers           ≥ 0    ≥ 0  ?",
        "  Buffer size     ≥ 0 B  ≥ 0 B  ?",
    ]
    assert "    0      LazyLinear       ≥ 0       ≥ 0         ?       ?" in out
    assert out.rstrip().endswith(f"  - {LAZY}")


def test_a_lazy_model_against_a_built_one() -> None:
    built = lazy()
    built(torch.ones(1, 5))
    found = paramscope.diff(lazy(), built)
    assert (found.a.totals.complete, found.b.totals.complete) == (False, True)
    assert (found.equal, found.decided) == (False, False)  # A's weight may yet become B's (3, 5)
    found = paramscope.diff(lazy(), nn.Sequential(nn.LazyLinear(3), nn.Linear(3, 2)))
    assert found.only_in_b == ("1.weight", "1.bias")
    assert (found.equal, found.decided) == (False, True)  # a known difference decides


def test_html_colours_no_row_whose_change_is_unknown() -> None:
    # A's LazyLinear may yet become B's Linear(5, 3) (18 parameters): its row's change is '?', neither grown nor
    # shrunk; the Linear(3, 2) beside it, known on both sides and one parameter wider in B, grew
    built = lazy()
    built(torch.ones(1, 5))
    a, b = nn.Sequential(lazy(), nn.Linear(3, 2)), nn.Sequential(built, nn.Linear(3, 2, bias=False))
    b[1].weight = nn.Parameter(torch.zeros(3, 3))
    page = render_diff(paramscope.diff(a, b), "html", depth=2, everything=True)
    table = page.partition("<h2>Modules")[2].partition("</table>")[0]
    modules = {name: css for css, name in re.findall(r'<tr class="([a-z]*)">\n<td class=""[^>]*>([^<]*)</td>', table)}
    assert modules == {"(model)": "", "0": "", "0.0": "", "1": "grown"}
    assert sum(p.numel() for p in b[1].parameters()) - sum(p.numel() for p in a[1].parameters()) == 1


def test_html_shows_odd_names_as_the_other_formats_do(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A lone surrogate comes from a pickled str; a bidi override and an escape sequence could be anywhere.
    odd, ok = tmp_path / "odd.pt", tmp_path / "ok.safetensors"
    torch.save({f"{name}.weight": torch.zeros(2) for name in ("a\ud800", "b\u202egnp_exe", "c\x1b[31m")}, odd)
    write_safetensors(ok, {"a.weight": ("F32", (2,))})
    table = run(capsys, "diff", str(odd), str(ok))[1]
    output = tmp_path / "diff.html"
    assert run(capsys, "diff", str(odd), str(ok), "--format", "html", "-o", str(output)) == (1, "", "")
    page = output.read_text(encoding="utf-8")
    assert not re.search("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u202e\ud800-\udfff]", page)
    for shown in ("a\\ud800.weight", "b\\u202egnp_exe.weight", "c\\x1b[31m.weight"):
        assert shown in table
        assert f'<td class="">{shown}</td>' in page


def test_html_keeps_the_module_tree_indented() -> None:
    # HTML collapses a cell's leading spaces: each level of the tree is a padding instead
    a = nn.Sequential(nn.Sequential(nn.Sequential(nn.Linear(2, 2))))
    b = nn.Sequential(nn.Sequential(nn.Sequential(nn.Linear(2, 3))))
    page = render_diff(paramscope.diff(a, b), "html", depth=3, everything=True)
    cells = re.findall(
        r'<tr class="[a-z]*">\n<td class=""(?: style="padding-left:calc\(10px \+ ([0-9.]+)em\)")?>([^<]*)</td>', page
    )
    levels = {text: float(em or 0) / 1.25 for em, text in cells}
    # the modules, each as deep as its path has parts; the totals' trainable under Parameters
    assert levels == {
        "Parameters": 0, "trainable": 1, "Parameter size": 0, "Buffers": 0, "Buffer size": 0,
        "(model)": 0, "0": 1, "0.0": 2, "0.0.0": 3,
        "0.0.0.weight": 0, "0.0.0.bias": 0,
    }  # fmt: skip


class _WithOwnTensors(nn.Module):
    """A module holding a tensor of its own beside its children, as a ViT holds its class token."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(tokens))
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        self.head = nn.Linear(2, 3)


@pytest.mark.parametrize("depth", [1, 2])
def test_the_module_rows_add_up_at_each_depth(depth: int) -> None:
    from paramscope.render.diff import shown_modules

    a, b = _WithOwnTensors(tokens=7), _WithOwnTensors(tokens=9)
    rows = shown_modules(paramscope.diff(a, b), depth, everything=True)
    for model, side in ((a, "params_a"), (b, "params_b")):
        deepest = [row for row in rows if row.depth == depth or (row.depth < depth and not _has_rows_under(row, rows))]
        assert sum(getattr(row, side) for row in deepest) == count(model)[0]
        own = next(row for row in rows if row.path == "(own tensors)")
        assert getattr(own, side) == model.token.numel()
    # unless everything is asked for, the rows that differ: the model and its own tensors
    assert [row.path for row in shown_modules(paramscope.diff(a, b), depth, everything=False)] == ["", "(own tensors)"]


def _has_rows_under(row: Any, rows: list[Any]) -> bool:
    prefix = f"{row.path}." if row.path else ""
    return any(other.depth > row.depth and other.path.startswith(prefix) and other is not row for other in rows)


# ---------------------------------------------------------------------------------------------------------------------
# 6. a deep chain: each module holds the next


class _Level(nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width, device="meta")


def _chain(depth: int, *, wide: int = -1, extra: int = -1, wrapped: int = -1) -> tuple[nn.Module, list[str]]:
    """A chain of ``depth`` levels built without recursion, and its levels' paths. At level ``wide`` the Linear is
    3 × 3 (12 parameters, not 6); at ``extra`` the level holds a Linear(2, 1) after the rest of the chain; at
    ``wrapped`` its Linear is inside a Sequential."""
    root = _Level()
    levels, node = [""], root
    for level in range(1, depth):
        child = _Level(3 if level == wide else 2)
        node.next = child
        if level - 1 == extra:  # node is that level: its extra comes after its next
            node.extra = nn.Linear(2, 1, device="meta")
        if level == wrapped:
            child.lin = nn.Sequential(child.lin)
        levels.append(f"{levels[-1]}.next" if levels[-1] else "next")
        node = child
    return root, levels


def test_a_deep_chain_against_a_grown_one() -> None:
    depth, wide, extra, wrapped = 3000, 1000, 2000, 2500
    a, levels = _chain(depth)
    b, _ = _chain(depth, wide=wide, extra=extra, wrapped=wrapped)
    found = paramscope.diff(a, b)
    # Independently: level k's module holds the levels from k down, 6 parameters each; B's grow by 6 above the wide
    # level and by 3 above the extra one. A's modules in A's order, B's own after the last of their parent's subtree.
    expected = []
    for k, path in enumerate(levels):
        grown = 6 * (k <= wide) + 3 * (k <= extra)
        lin = f"{path}.lin" if path else "lin"
        expected += [(path, 6 * (depth - k), 6 * (depth - k) + grown), (lin, 6, 12 if k == wide else 6)]
        if k == wrapped:
            expected.append((f"{lin}.0", None, 6))
    expected.append((f"{levels[extra]}.extra", None, 3))
    assert [(row.path, row.params_a, row.params_b) for row in found.modules] == expected
    assert found.b.totals.params - found.a.totals.params == 9
    assert found.only_in_a == (f"{levels[wrapped]}.lin.weight", f"{levels[wrapped]}.lin.bias")
    assert found.only_in_b == (
        f"{levels[wrapped]}.lin.0.weight", f"{levels[wrapped]}.lin.0.bias",
        f"{levels[extra]}.extra.weight", f"{levels[extra]}.extra.bias",
    )  # fmt: skip
    assert [(change.name, change.shape_a, change.shape_b) for change in found.changed] == [
        (f"{levels[wide]}.lin.weight", (2, 2), (3, 3)), (f"{levels[wide]}.lin.bias", (2,), (3,)),
    ]  # fmt: skip


def _tiny_vit() -> Any:
    import transformers

    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8)  # fmt: skip
    return transformers.ViTForImageClassification(config)


def _tiny_mixtral() -> Any:
    import transformers

    config = transformers.MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, num_local_experts=2,
                                        num_experts_per_tok=1, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return transformers.MixtralForCausalLM(config)


@pytest.mark.parametrize("make", [_tiny_vit, _tiny_mixtral], ids=["vit-renamed", "mixtral-merged"])
def test_a_transformers_model_against_its_saved_weights_is_matched_as_from_pretrained_loads_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any
) -> None:
    # transformers 5 keeps ViT's legacy names on disk (encoder.layer.0.attention.attention.query) and Mixtral's experts
    # one by one (block_sparse_moe.experts.0.w1), and renames or merges them as it loads; the diff had matched names
    # as stored (every tensor missing and unexpected) where inspect --check said the weights load
    model = make()
    model.save_pretrained(tmp_path)
    stored = safetensors.torch.load_file(tmp_path / "model.safetensors")
    names = {name for name, _ in model.named_parameters()}
    assert set(stored) - names  # stored under other names than the model's
    _, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    for a, b in ((str(tmp_path / "config.json"), str(tmp_path)), (model, str(tmp_path / "model.safetensors"))):
        found = paramscope.diff(a, b)
        assert (found.only_in_a, found.only_in_b, found.changed) == ((), (), ())
        assert found.equal
    capsys.readouterr()
    assert run(capsys, "inspect", str(tmp_path), "--check")[0] == 0
    assert run(capsys, "diff", str(tmp_path / "config.json"), str(tmp_path))[0] == 0


def test_merged_experts_that_hold_fewer_values_than_the_model_differ(tmp_path: Path) -> None:
    model = _tiny_mixtral()
    model.save_pretrained(tmp_path)
    stored = safetensors.torch.load_file(tmp_path / "model.safetensors")
    dropped = "model.layers.0.block_sparse_moe.experts.1.w1.weight"
    del stored[dropped]
    safetensors.torch.save_file(stored, tmp_path / "model.safetensors", metadata={"format": "pt"})
    found = paramscope.diff(str(tmp_path / "config.json"), str(tmp_path))
    assert not found.equal
    fused = "model.layers.0.mlp.experts.gate_up_proj"
    (change,) = found.changed
    held = dict(model.named_parameters())[fused]
    assert (change.name, change.shape_a, change.shape_b) == (fused, tuple(held.shape), (held.numel() * 3 // 4,))


class HeadSortsFirst(nn.Module):
    """GPT-2's layout: the head's name (lm_head) sorts before the embedding's (wte), so safetensors' save_model keeps
    the tie under the head's name, and torch.save of the state dict under both."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.block = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.wte.weight


def test_two_checkpoints_of_a_tie_kept_under_the_heads_name_and_under_both_are_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the embedding's module, holding the tie in A and absent from B, made them differ (exit 1) with nothing listed
    once, both = tmp_path / "once.safetensors", tmp_path / "both.pt"
    safetensors.torch.save_model(HeadSortsFirst(), str(once))
    torch.save(HeadSortsFirst().state_dict(), both)
    assert set(safetensors.torch.load_file(str(once))) == {"lm_head.weight", "block.weight", "block.bias"}
    for path in (once, both):  # each loads whole into the tied model
        state = safetensors.torch.load_file(str(path)) if path == once else torch.load(path, weights_only=True)
        result = HeadSortsFirst().load_state_dict(state, strict=False)
        assert set(result.unexpected_keys) == set()
        assert set(result.missing_keys) <= {"wte.weight"}
    for a, b in ((both, once), (once, both)):
        found = paramscope.diff(str(a), str(b))
        assert (found.only_in_a, found.only_in_b, found.changed, found.sharing) == ((), (), (), ())
        assert found.equal
        assert run(capsys, "diff", str(a), str(b))[0] == 0
    # a checkpoint of another embedding still differs
    other = HeadSortsFirst()
    other.wte = nn.Embedding(11, 4)
    other.lm_head.weight = other.wte.weight
    torch.save(other.state_dict(), tmp_path / "other.pt")
    assert run(capsys, "diff", str(both), str(tmp_path / "other.pt"))[0] == 1


@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile], ids=["DataParallel", "compile"])
def test_a_wrapped_model_against_a_checkpoint_of_the_model_it_wraps_says_the_wrapper_would_not_load_it(
    tmp_path: Path, wrap: Any
) -> None:
    model = wrap(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3)))
    path = tmp_path / "inner.pt"
    torch.save(forward_module(model).state_dict(), path)
    result = model.load_state_dict(torch.load(path, weights_only=True), strict=False)
    prefix = "module." if wrap is nn.DataParallel else "_orig_mod."
    label = "DataParallel" if wrap is nn.DataParallel else "torch.compile's OptimizedModule"
    assert set(result.missing_keys) == {prefix + name for name in forward_module(model).state_dict()}
    assert set(result.unexpected_keys) == set(forward_module(model).state_dict())
    found = paramscope.diff(model, str(path))
    assert found.equal  # the model it wraps loads it
    assert (
        f"A is the model inside {label}, compared with B's names as its load_state_dict takes them; the wrapper's own "
        f"state_dict and load_state_dict put '{prefix}' before each name: loaded into A itself, each of B's tensors "
        f"would be unexpected and each of A's missing; load B into A.{prefix.rstrip('.')}"
    ) in found.notes
    # a checkpoint of the wrapper itself needs no note
    torch.save(model.state_dict(), path)
    assert not [note for note in paramscope.diff(model, str(path)).notes if "inside" in note]


def test_a_gguf_file_in_llama_cpps_names_against_a_model_in_torchs_says_why_no_name_matches(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    for name, shape in (("token_embd.weight", (10, 4)), ("blk.0.attn_q.weight", (4, 4))):
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4, bias=False))
    found = paramscope.diff(model, str(path))
    assert (len(found.only_in_a), len(found.only_in_b)) == (2, 2)
    assert (
        "B is a GGUF file, which names its tensors as llama.cpp does (token_embd.weight, blk.0.attn_q.weight): no "
        "name matches the other side's, so every tensor is on one side only; compare with the safetensors it was "
        "converted from"
    ) in found.notes


class WithActivation(nn.Module):
    def __init__(self, activation: str = "gelu") -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(4, 4), nn.GELU() if activation == "gelu" else nn.ReLU()) for _ in range(2)
        )


def test_modules_that_differ_below_the_depth_shown_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    # a GELU made a ReLU changes no figure: at the default depth the verdict said "differ" and nothing showed why
    code, out, _ = run(capsys, "diff", "tests.test_diff:WithActivation", "tests.test_diff:WithActivation",
                       "--args-b", "activation=relu")  # fmt: skip
    assert code == 1
    assert ("  - 2 module(s) below depth 2 are of another class or on one side only, which changes no figure above "
            "them: blocks.0.1, blocks.1.1 (--depth 3 shows them)") in out  # fmt: skip
    code, out, _ = run(capsys, "diff", "tests.test_diff:WithActivation", "tests.test_diff:WithActivation",
                       "--args-b", "activation=relu", "--depth", "3")  # fmt: skip
    assert "below depth" not in out
    assert "GELU → ReLU" in out


class HoldsAFloatTable(nn.Module):
    """A persistent float buffer, which a checkpoint (no kinds of its own) counts as a parameter, and an integer
    parameter, which it counts as a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.register_buffer("freqs", torch.ones(10, 4))
        self.codes = nn.Parameter(torch.zeros(6, dtype=torch.int64), requires_grad=False)


def test_tensors_a_checkpoint_counts_as_the_other_kind_are_named(tmp_path: Path) -> None:
    # the totals of parameters and buffers differed by them with no note, though the verdict was "same"
    model = HoldsAFloatTable()
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path))
    result = HoldsAFloatTable().load_state_dict(safetensors.torch.load_file(str(path)))
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    found = paramscope.diff(model, str(path))
    assert found.equal
    assert found.b.totals.params - found.a.totals.params == model.freqs.numel() - model.codes.numel()
    assert (
        "A's 1 buffer(s) freqs are counted as parameters in B, which guesses each tensor's kind from its name and "
        "dtype: the totals of parameters and buffers differ by them, and load_state_dict loads them all the same"
    ) in found.notes
    assert (
        "A's 1 parameter(s) codes are counted as buffers in B, which guesses each tensor's kind from its name and "
        "dtype: the totals of parameters and buffers differ by them, and load_state_dict loads them all the same"
    ) in found.notes

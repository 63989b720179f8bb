"""inspect only reads: device, mode, requires_grad, hooks, buffers and attributes are the same afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import paramscope
from paramscope.render import FORMATS, View, render

from .models import MODELS


def _snapshot(model: nn.Module) -> list[Any]:
    state: list[Any] = []
    for name, module in model.named_modules(remove_duplicate=False):
        hooks = [
            len(getattr(module, attr))
            for attr in vars(module)
            if attr.endswith("_hooks") and isinstance(getattr(module, attr), dict)
        ]
        state.append((name, type(module), module.training, sorted(vars(module)), hooks))
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            state.append((name, type(tensor), tensor.requires_grad))
            continue
        # The raw bytes of the storage, which every dtype has (some, like uint4, cannot be cloned directly).
        values = None if tensor.is_meta else torch.empty(0, dtype=torch.uint8).set_(tensor.untyped_storage()).clone()
        state.append(
            (name, type(tensor), tensor.device, tensor.dtype, tensor.shape, tensor.requires_grad, tensor.grad,
             tensor.data_ptr(), values)
        )  # fmt: skip
    return state


def _same(before: list[Any], after: list[Any]) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert len(old) == len(new)
        for a, b in zip(old, new, strict=True):
            if isinstance(a, torch.Tensor):
                assert torch.equal(a, b)
            else:
                assert a == b


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_inspect_and_render_leave_the_model_unchanged(name: str, device: str) -> None:
    with torch.device(device):
        model = MODELS[name]()
    model.train(name.startswith("r"))  # some in train mode, some in eval
    handles = [model.register_forward_hook(lambda *args: None), model.register_forward_pre_hook(lambda *args: None)]
    before = _snapshot(model)
    report = paramscope.inspect(model)
    for fmt in FORMATS:
        render(report, fmt, View(depth=9, tensors=True))
    _same(before, _snapshot(model))
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_diff_against_a_checkpoint_leaves_the_model_unchanged(name: str, tmp_path: Path) -> None:
    # the model's own load code runs on stand-ins of it (what load_state_dict's hooks make of the names)
    model = MODELS[name]()
    path = tmp_path / "model.pt"
    lazy = nn.parameter.UninitializedTensorMixin
    has_lazy = any(isinstance(tensor, lazy) for tensor in [*model.parameters(), *model.buffers()])
    if has_lazy:  # an uninitialised tensor cannot be saved: the state dict of the others
        torch.save({name: tensor for name, tensor in [*model.named_parameters(), *model.named_buffers()]
                    if not isinstance(tensor, lazy)}, path)  # fmt: skip
    else:
        torch.save(model.state_dict(), path)
    before = _snapshot(model)
    found = paramscope.diff(model, str(path))
    _same(before, _snapshot(model))
    if not has_lazy:  # what load_state_dict reports, into another instance of the model
        result = MODELS[name]().load_state_dict(torch.load(path, weights_only=True), strict=False)
        assert (found.only_in_a, found.only_in_b) == (tuple(result.missing_keys), tuple(result.unexpected_keys))
        assert found.changed == ()

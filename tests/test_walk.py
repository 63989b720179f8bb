"""ModuleWalk reads what nn.Module's own generators yield, in the same order, from one walk."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import paramscope
from paramscope._walk import ModuleWalk
from paramscope.examples import gpt2, resnet18


class Shared(nn.Module):
    """A module under two names, a weight tied across modules, a None bias, and a buffer under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.again = self.block
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("steps", torch.zeros(()))
        self.block[1].register_buffer("alias", self.steps)
        self.empty = nn.Linear(4, 4)
        self.empty.bias = None


MODELS = {
    "shared": Shared,
    "resnet18": resnet18,
    "gpt2": lambda: gpt2(n_layer=2, n_embd=32, n_head=2, vocab_size=64),
}


@pytest.mark.parametrize("name", MODELS)
def test_the_walk_yields_what_the_modules_generators_do(name: str) -> None:
    model = MODELS[name]()
    walk = ModuleWalk(model)
    assert walk.named_modules == list(model.named_modules(remove_duplicate=False))
    assert walk.modules == list(model.modules())
    assert walk.paths == {id(module): path for path, module in model.named_modules()}  # each module's first path
    for kind, named in (("parameters", model.named_parameters), ("buffers", model.named_buffers)):
        for remove_duplicate in (True, False):
            expected = [(key, id(value)) for key, value in named(remove_duplicate=remove_duplicate)]
            got = [(key, id(value)) for key, value in walk.named_tensors(kind, remove_duplicate=remove_duplicate)]
            assert got == expected, (kind, remove_duplicate)
    assert [id(p) for p in walk.parameters] == [id(p) for p in model.parameters()]
    assert [id(b) for b in walk.buffers] == [id(b) for b in model.buffers()]


class Owner(nn.Module):
    """A module that holds its owner: the module graph has a cycle."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Sequential(nn.Linear(4, 2))
        self.head.owner = self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[0](self.body(x))


def test_a_cycle_is_cut_where_it_closes() -> None:
    model = Owner()
    with pytest.raises(RecursionError):  # what torch's own walk does with it
        list(model.named_modules(remove_duplicate=False))
    walk = ModuleWalk(model)
    assert walk.cycles == [("head.owner", "")]
    assert walk.named_modules == list(model.named_modules())  # torch's walk that remembers what it has seen
    assert walk.modules == list(model.modules())
    assert [key for key, _ in walk.named_tensors("parameters")] == [key for key, _ in model.named_parameters()]


def test_a_chain_deeper_than_python_recurses_is_walked() -> None:
    model: nn.Module = nn.Linear(2, 2)
    for _ in range(5_000):
        model = nn.Sequential(model)
    walk = ModuleWalk(model)
    assert len(walk.named_modules) == len(walk.modules) == 5_001
    assert walk.named_modules[-1][0] == ".".join(["0"] * 5_000)
    # its forward recurses as deep, in torch's own code: that is the forward's failure, said in one line
    with pytest.raises(paramscope.TargetError, match=r"^the forward failed: RecursionError: ") as failed:
        paramscope.summary(model, input_size=(1, 2))
    limit = sys.getrecursionlimit()
    assert str(failed.value).endswith(f"(Python's limit is {limit}: sys.setrecursionlimit raises it)")

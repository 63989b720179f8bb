"""The built-in examples against published counts (torchvision's ResNets, GPT-2 small)."""

from __future__ import annotations

import pytest
import torch

import paramscope
from paramscope import examples


@pytest.mark.parametrize(
    ("factory", "published"),
    [
        (examples.resnet18, 11_689_512),
        (examples.resnet34, 21_797_672),
        (examples.resnet50, 25_557_032),
        (examples.gpt2, 124_439_808),
    ],
)
def test_published_counts(factory, published: int) -> None:
    with torch.device("meta"):
        model = factory()
    assert sum(p.numel() for p in model.parameters()) == published
    assert paramscope.count_params(model) == (published, published)


def test_resnet18_runs_forward() -> None:
    model = examples.resnet18(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_gpt_runs_forward_and_head_is_tied() -> None:
    model = examples.gpt2(vocab_size=50, n_positions=8, n_embd=16, n_layer=1, n_head=2).eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    with torch.no_grad():
        assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 50)

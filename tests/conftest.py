"""Shared fixtures: the golden-file switch and the catalogue of models every invariant is checked on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--overwrite", action="store_true", help="rewrite the golden files instead of comparing")


@pytest.fixture(autouse=True)
def _without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test as on CI, which has no GPU: where CUDA is, ``nn.DataParallel`` moves the module it wraps to the
    first GPU as it is made (the tests' models are on the cpu or meta, some shared between tests). Tests of what
    paramscope does with CUDA stand its functions in themselves."""
    torch = sys.modules.get("torch")  # imported by the test modules that use it; the others stay torch-free
    if torch is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare text with tests/golden/<name>, or rewrite that file when pytest runs with --overwrite."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--overwrite"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"no golden file {path}: run pytest --overwrite once and review it"
        assert text == path.read_text(encoding="utf-8")

    return check

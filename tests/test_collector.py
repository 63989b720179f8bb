"""The cyclic garbage collector is paused while a checkpoint is read and a report written as JSON, and left as the
caller had it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import paramscope
from paramscope._collector import collector_paused
from paramscope.render import View, render
from tests.checkpoints import write_safetensors

TENSORS = 20_000  # about 200,000 containers: some 300 collections of the youngest generation when not paused


@pytest.fixture
def collector_on() -> Iterator[None]:
    """The collector on for the test (pytest may run with it off), put back as it was after."""
    was_on = gc.isenabled()
    gc.enable()
    yield
    if was_on:
        gc.enable()
    else:
        gc.disable()


@pytest.fixture
def many_tensors(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {f"blocks.{index // 10}.w{index % 10}": ("F32", (2,)) for index in range(TENSORS)})
    return path


def _collections(work: Callable[[], Any]) -> int:
    """How many collections the collector starts while ``work`` runs."""
    started: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(count)
    try:
        work()
    finally:
        gc.callbacks.remove(count)
    return len(started)


def test_the_collector_is_back_on_after_an_error(collector_on: None) -> None:
    seen = []

    def fail() -> None:
        with collector_paused():
            seen.append(gc.isenabled())
            raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        fail()
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off(collector_on: None, many_tensors: Path) -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
    report = paramscope.inspect(str(many_tensors))
    render(report, "json", View())
    assert not gc.isenabled()


def test_reading_a_checkpoint_runs_no_collection_for_its_tensors(collector_on: None, many_tensors: Path) -> None:
    report = paramscope.inspect(str(many_tensors))
    assert report.totals.params == 2 * TENSORS
    # what is left of a collection's youngest generation when the pause ends may start one or two
    assert _collections(lambda: paramscope.inspect(str(many_tensors))) <= 3
    assert gc.isenabled()


def test_writing_a_report_as_json_runs_no_collection_for_its_rows(collector_on: None, many_tensors: Path) -> None:
    report = paramscope.inspect(str(many_tensors))
    text = render(report, "json", View())
    assert text.count('"kind": "parameter"') == TENSORS
    assert _collections(lambda: render(report, "json", View())) <= 3
    assert gc.isenabled()


def test_a_checkpoint_refused_leaves_the_collector_on(collector_on: None, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x02" + bytes(7) + b"{x")  # a header that is no JSON
    with pytest.raises(paramscope.ParamscopeError, match="header is not valid JSON"):
        paramscope.inspect(str(path))
    assert gc.isenabled()

"""Progress bars: on stderr when it is a terminal and there is more than one item; never when piped or quiet."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator

import pytest

from paramscope._progress import progress, status


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(["a", "b", "c"], "reading shards")) == ["a", "b", "c"]
    assert "reading shards" in terminal.getvalue()


@pytest.mark.parametrize(("items", "quiet"), [(["a", "b", "c"], True), (["only"], False)])
def test_no_bar_when_quiet_or_for_one_item(monkeypatch: pytest.MonkeyPatch, items: list[str], quiet: bool) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(items, "reading shards", quiet=quiet)) == items
    assert terminal.getvalue() == ""


def test_no_bar_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(["a", "b"], "reading shards")) == ["a", "b"]
    assert capsys.readouterr().err == ""


def test_no_bar_when_there_is_no_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)  # a process started with stderr closed (2>&-)
    assert list(progress(["a", "b"], "reading shards")) == ["a", "b"]
    with status("asking the Hub"):
        pass


def test_a_forward_pass_shows_its_modules_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import paramscope
    from paramscope._progress import steps

    advanced = []

    @contextlib.contextmanager
    def counted(description: str, total: int, *, quiet: bool = False) -> Iterator[Callable[[], None] | None]:
        with steps(description, total, quiet=quiet) as advance:
            advanced.append((description, total, 0))
            if advance is None:
                yield None
                return

            def step() -> None:
                description, total, done = advanced[-1]
                advanced[-1] = (description, total, done + 1)
                advance()

            yield step

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr("paramscope.trace.steps", counted)
    from paramscope.examples import resnet18

    modules = len({id(module) for module in resnet18().modules()})  # 68, every one of which runs
    paramscope.summary("paramscope.examples:resnet18", input_size=(1, 3, 224, 224), quiet=False)
    # the eval pass asked for, then the train-mode pass that measures the activations: every module once each
    assert advanced == [("forward pass (eval) on meta", modules, modules),
                        ("forward pass (train) on meta", modules, modules)]  # fmt: skip
    assert "forward pass (eval) on meta" in terminal.getvalue()
    advanced.clear()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    paramscope.summary("paramscope.examples:resnet18", input_size=(1, 3, 224, 224))  # the API is quiet by default
    assert quiet.getvalue() == ""
    assert [total for _, total, _ in advanced] == [modules, modules]

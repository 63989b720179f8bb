"""Progress bars: on stderr when it is a terminal and there is more than one item; never when piped or quiet."""

from __future__ import annotations

import io
import sys

import pytest

from paramscope._progress import progress


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

"""Running the CLI in-process, and the shape every usage error must have."""

from __future__ import annotations

import pytest

from paramscope.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result: tuple[int, str, str], message: str) -> None:
    """Exit 2, nothing on stdout, and exactly the one line ``paramscope: error: <message>`` on stderr."""
    code, out, err = result
    assert err == f"paramscope: error: {message}\n"
    assert code == 2
    assert out == ""

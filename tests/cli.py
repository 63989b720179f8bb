"""Running the CLI in-process, and the shape every usage error must have."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import paramscope
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


def run_in_a_new_process(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m paramscope.cli argv`` in a fresh interpreter, with plain output (no terminal width or colour
    forced) and this checkout's paramscope importable, unless ``env`` says otherwise."""
    if env is None:
        env = {key: value for key, value in os.environ.items() if key not in {"COLUMNS", "FORCE_COLOR"}}
        env["PYTHONPATH"] = str(Path(paramscope.__file__).parents[1])
    return subprocess.run(
        [sys.executable, "-m", "paramscope.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def without_root_privilege(what: str) -> list[str]:
    """The command prefix that runs a process as a user whom file permissions bind: none for such a user; for root,
    which may read and write any file, ``setpriv`` dropping that privilege (the test is skipped without it, saying
    it could not drop the privilege to do ``what``)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(f"running as root without setpriv to drop the privilege to {what}")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]

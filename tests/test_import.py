"""The torch-free core and the public API's shape."""

from __future__ import annotations

import subprocess
import sys

import paramscope


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_paramscope_does_not_import_torch() -> None:
    loaded = _modules_after("import paramscope")
    assert "torch" not in loaded
    assert "rich" not in loaded  # only the terminal renderer needs rich


def test_cli_module_and_help_do_not_import_torch() -> None:
    loaded = _modules_after("import paramscope.cli\ntry:\n    paramscope.cli.main(['--help'])\nexcept SystemExit: pass")
    assert "torch" not in loaded


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(paramscope) if not name.startswith("_")} - {"annotations"}
    private_modules = {name for name in public if isinstance(getattr(paramscope, name), type(paramscope))}
    assert sorted(paramscope.__all__) == paramscope.__all__
    assert set(paramscope.__all__) - {"__version__"} == public - private_modules

"""The torch-free core and the public API's shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import paramscope

from .test_checkpoints import write_gguf_decoder


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


@pytest.mark.parametrize("hyper", [{}, {"causal": False}])  # a decoder, and an embedding model (BERT's)
def test_a_gguf_memory_plan_does_not_import_transformers(tmp_path: Path, hyper: dict[str, Any]) -> None:
    # the file's metadata sizes the plan; transformers (seconds to import) is for configs that name its classes
    path = tmp_path / "decoder.gguf"
    write_gguf_decoder(path, "bert" if hyper else "llama", kv_heads=2, **hyper)
    loaded = _modules_after(f"import paramscope.cli\nparamscope.cli.main(['memory', {str(path)!r}, '--context', '8'])")
    assert "gguf" in loaded
    assert "transformers" not in loaded


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(paramscope) if not name.startswith("_")} - {"annotations"}
    private_modules = {name for name in public if isinstance(getattr(paramscope, name), type(paramscope))}
    assert sorted(paramscope.__all__) == paramscope.__all__
    assert set(paramscope.__all__) - {"__version__"} == public - private_modules

"""Turns a target string (as given on the command line) into a Report, choosing the right source."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._errors import MissingDependencyError, SourceError, TargetError, UsageError
from .._report import Report

TARGET_FORMS = (
    "'package.module:attr', 'path/to/file.py:attr', a checkpoint (.safetensors, .pt, .pth, .bin, .ckpt, .gguf, "
    "*.index.json) or a directory holding one"
)
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def is_code_target(target: str) -> bool:
    """Whether ``target`` has the ``module:attr`` / ``file.py:attr`` form."""
    location, sep, attr = target.rpartition(":")
    if not sep or not location or not attr:
        return False
    return location.endswith(".py") or all(part.isidentifier() for part in location.split("."))


def require(package: str, extra: str, purpose: str) -> None:
    """Raise MissingDependencyError naming the extra to install when ``package`` cannot be imported."""
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(package, extra, purpose)
    try:
        importlib.import_module(package)
    except ImportError:  # installed but broken (a missing shared library, a mismatched build)
        raise MissingDependencyError(package, extra, purpose) from None


def _safetensors(path: Path, quiet: bool) -> Report:
    from . import safetensors

    return safetensors.load(path, quiet=quiet)


def _torch(path: Path, quiet: bool) -> Report:
    require("torch", "torch", f"reading {path}")
    from . import torchfile

    return torchfile.load(path, quiet=quiet)


def _gguf(path: Path, quiet: bool) -> Report:
    require("gguf", "gguf", f"reading {path}")
    from . import gguf

    return gguf.load(path, quiet=quiet)


Loader = Callable[[Path, bool], Report]


def _for_file(path: Path) -> Loader:
    name = path.name
    if name.endswith(".safetensors") or name.endswith(".safetensors.index.json"):
        return _safetensors
    if name.endswith(".gguf"):
        return _gguf
    if path.suffix in _TORCH_SUFFIXES or name.endswith((".bin.index.json", ".pt.index.json")):
        return _torch
    with path.open("rb") as handle:  # an unusual name: the first bytes tell the format
        head = handle.read(8)
    if head[:4] == b"GGUF":
        return _gguf
    if head[:4] == b"PK\x03\x04":  # torch.save writes a zip archive
        return _torch
    raise SourceError(f"{path}: not a checkpoint paramscope recognises (expected {TARGET_FORMS})")


def _for_directory(path: Path) -> tuple[Loader, list[str]]:
    found = {
        "safetensors": any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")),
        "torch": any(p.suffix in _TORCH_SUFFIXES for p in path.iterdir()) or any(path.glob("*.bin.index.json")),
        "gguf": any(path.glob("*.gguf")),
    }
    formats = [name for name, present in found.items() if present]
    if not formats:
        raise SourceError(f"{path}: no weights found (no *.safetensors, *.bin, *.pt, *.pth, *.ckpt or *.gguf files)")
    loaders: dict[str, Loader] = {"safetensors": _safetensors, "torch": _torch, "gguf": _gguf}
    notes = [f"the directory also holds {other} weights: only the {formats[0]} ones are read" for other in formats[1:]]
    return loaders[formats[0]], notes


def _checkpoint(target: str, *, quiet: bool) -> Report:
    path = Path(target)
    if path.is_dir():
        loader, notes = _for_directory(path)
        report = loader(path, quiet)
        return report if not notes else _with_notes(report, notes)
    if not path.exists():
        raise SourceError(f"{target}: no such file or directory")
    return _for_file(path)(path, quiet)


def _with_notes(report: Report, notes: list[str]) -> Report:
    from dataclasses import replace

    return replace(report, notes=(*report.notes, *notes))


def load_report(
    target: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    device: str = "meta",
    explain: bool = False,
    import_on_device: bool = False,
    quiet: bool = False,
) -> Report:
    """The report of whatever ``target`` names; see :func:`paramscope.inspect` (and ``build_model`` for
    ``import_on_device``)."""
    if is_code_target(target) and not Path(target).exists():
        require("torch", "torch", f"building {target}")
        from .code import build_model, user_code
        from .module import inspect_module

        model = build_model(target, arguments, device=device, import_on_device=import_on_device)
        # A malformed module tree (a non-module in _modules, a broken attribute) is the model's fault, not ours.
        with user_code(f"inspecting {target}"):
            return inspect_module(model, target=target, device=device, explain=explain)
    looks_like_path = "/" in target or "\\" in target or Path(target).suffix or Path(target).exists()
    if not looks_like_path:
        raise TargetError(f"{target}: not a target paramscope can read; expected {TARGET_FORMS}")
    if arguments:
        raise UsageError(f"{target}: KEY=VALUE arguments are only for model code targets")
    if explain:
        raise UsageError(f"{target}: --explain needs a model to read layer hyperparameters from; a checkpoint has "
                         "only tensors")  # fmt: skip
    return _checkpoint(target, quiet=quiet)

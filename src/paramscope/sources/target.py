"""Turns a target string (as given on the command line) into a Report, choosing the right source."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from .._errors import MissingDependencyError, TargetError
from .._report import Report
from .code import is_code_target

TARGET_FORMS = "'package.module:attr' or 'path/to/file.py:attr'"


def require(package: str, extra: str, purpose: str) -> None:
    """Raise MissingDependencyError naming the extra to install when ``package`` is not importable."""
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(package, extra, purpose)


def load_report(
    target: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    device: str = "meta",
    explain: bool = False,
    import_on_device: bool = False,
) -> Report:
    """The report of whatever ``target`` names; see :func:`paramscope.inspect` (and ``build_model`` for
    ``import_on_device``)."""
    if is_code_target(target):
        require("torch", "torch", f"building {target}")
        from .code import build_model, user_code
        from .module import inspect_module

        model = build_model(target, arguments, device=device, import_on_device=import_on_device)
        # A malformed module tree (a non-module in _modules, a broken attribute) is the model's fault, not ours.
        with user_code(f"inspecting {target}"):
            return inspect_module(model, target=target, device=device, explain=explain)
    raise TargetError(f"{target}: not a target paramscope can read; expected {TARGET_FORMS}")

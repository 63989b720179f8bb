"""Closed-form parameter counts of torch.nn layers: why a layer has the count it has, and its size before it exists.

>>> from paramscope import formulas
>>> formulas.evaluate("conv2d", in_channels=64, out_channels=128, kernel_size=3).text
'Conv2d: 128 × 64/1 × 3 × 3 + 128 = 73,856'
>>> formulas.evaluate("BatchNorm2d", num_features=64).buffers
129

Every formula is plain arithmetic: importing and calling them needs no torch. ``explain_module`` reads a live
module's hyperparameters (through ``getattr`` only) and evaluates the formula of its class, or of the nearest
torch.nn class it derives from.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from . import _layers as _layers  # registers the torch.nn formulas
from ._registry import (
    REGISTRY,
    Count,
    FormulaError,
    LayerFormula,
    Ratio,
    Tally,
    Terms,
    count,
    register,
    register_structural,
)

__all__ = [
    "REGISTRY",
    "Count",
    "Explanation",
    "FormulaError",
    "LayerFormula",
    "Ratio",
    "Tally",
    "Terms",
    "count",
    "evaluate",
    "explain_module",
    "lookup",
    "register",
    "register_structural",
]


def lookup(layer: str | type) -> LayerFormula:
    """The registry entry of ``layer``, a name (case-insensitive) or a torch.nn class; FormulaError listing the known
    layers otherwise."""
    return REGISTRY.lookup(layer)


def evaluate(layer: str | type, **hyperparameters: Any) -> Count:
    """The parameters and buffers of ``layer`` (a name, or a torch.nn class) built with ``hyperparameters``, and the
    arithmetic as text.

    >>> evaluate("linear", in_features=512, out_features=1000).text
    'Linear: 1,000 × 512 + 1,000 = 513,000'
    >>> evaluate("LayerNorm", normalized_shape=(3, 4), bias=False).params
    12
    """
    return REGISTRY.lookup(layer)(**hyperparameters)


@dataclass(frozen=True, slots=True)
class Explanation:
    """A live module's formula: the registry entry that applies, its Count, or why there is none."""

    entry: LayerFormula | None
    count: Count | None
    reason: str | None = None


def explain_module(module: Any, counts: dict[Any, Count] | None = None) -> Explanation:
    """Evaluate the formula that applies to a live module, with the hyperparameters read off it.

    The count covers the whole layer, children included (MultiheadAttention's ``out_proj``, a Transformer layer's
    attention and feed-forward), to be compared with all the tensors the module holds. ``counts``, where given,
    keeps each count made by its layer and hyperparameters, for the next layer alike (a model's repeated blocks).

    >>> import torch
    >>> explain_module(torch.nn.Linear(512, 1000)).count.text
    'Linear: 1,000 × 512 + 1,000 = 513,000'
    """
    entry = _entry_of(module)
    if entry is None:
        return Explanation(None, None, "no formula")
    # looked up on the class: a layer's own __getattr__ may answer a name it lacks with any error (a KeyError)
    has_uninitialized = getattr(type(module), "has_uninitialized_params", None)
    try:
        if callable(has_uninitialized) and has_uninitialized(module):
            return Explanation(entry, None, "uninitialised lazy layer: no sizes until its first forward pass")
        if entry.kind != "formula":
            return Explanation(entry, None, entry.description)
        hyperparameters = entry.read_module(module)
        if counts is None:
            return Explanation(entry, entry(**hyperparameters))
        key: Any = (entry.name, entry.alias, *hyperparameters.items())
        try:
            found = counts.get(key)
        except TypeError:  # a value that cannot be a key (a list): counted each time
            return Explanation(entry, entry(**hyperparameters))
        if found is None:
            found = counts[key] = entry(**hyperparameters)
        return Explanation(entry, found)
    except Exception as error:  # anything read off a foreign object may fail; the caller counts the tensors then
        if isinstance(error, AttributeError) and error.name and _is_torchscript(type(module)):
            # tracing keeps a layer's tensors and drops its other attributes (scripting keeps its __constants__)
            return Explanation(
                entry, None, f"the {entry.name} formula needs {error.name}, which TorchScript did not keep"
            )
        return Explanation(entry, None, f"the {entry.name} formula does not apply: {error}")


def _is_torchscript(cls: type) -> bool:
    # scripted modules are RecursiveScriptModules, traced ones TracedModules: both are torch.jit's ScriptModules
    return any(base.__name__ == "ScriptModule" and base.__module__ == "torch.jit._script" for base in cls.__mro__)


def _entry_of(module: Any) -> LayerFormula | None:
    if _is_torchscript(type(module)):
        # TorchScript modules share a few classes; the compiled class's qualified name says what the layer is
        try:
            qualified = module._c._type().qualified_name()
        except (AttributeError, RuntimeError):
            return None
        prefix = "__torch__.torch.nn.modules."
        if not qualified.startswith(prefix):
            return None
        path, _, name = qualified.removeprefix("__torch__.").rpartition(".")
        entry = REGISTRY.get(name)
        if entry is None:
            # A subclass of a torch.nn layer (MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear):
            # the compiled class keeps its name, not its bases; the Python class, which torch has imported, has them.
            # Scripting adds a ___torch_mangle_N part to the name of a class compiled more than once.
            parts = [part for part in path.split(".") if not part.startswith("___torch_mangle_")]
            cls = getattr(sys.modules.get(".".join(parts)), name, None)
            entry = REGISTRY.for_class(cls) if isinstance(cls, type) else None
        return entry
    return REGISTRY.for_class(type(module))

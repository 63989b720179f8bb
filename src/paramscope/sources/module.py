"""Reports for live ``torch.nn.Module`` objects, on any device including meta.

The model is only read: parameters and buffers are reached through ``_parameters``/``_buffers``/``_modules``
(what ``named_parameters`` itself walks), so no hook, forward, parametrization or device move ever runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter
from torch.nn.utils import parametrize

from .. import _dtypes
from .._report import Report, Source, TensorKind, TensorRecord, summarize
from .._tree import TreeBuilder

if TYPE_CHECKING:
    from .._dtypes import DType

_MAX_NAMES_IN_NOTE = 4


@dataclass(frozen=True)
class Wrapper:
    """A module type that only wraps another one: it is skipped in names and in the tree."""

    label: str
    inner: str
    matches: Callable[[nn.Module], bool]


def _is_optimized_module(module: nn.Module) -> bool:
    # torch._dynamo is heavy to import; an OptimizedModule can only exist if torch.compile already imported it.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)


WRAPPERS: list[Wrapper] = [
    Wrapper("torch.compile's OptimizedModule", "_orig_mod", _is_optimized_module),
    Wrapper("DataParallel", "module", lambda m: isinstance(m, nn.DataParallel)),
    Wrapper("DistributedDataParallel", "module", lambda m: isinstance(m, nn.parallel.DistributedDataParallel)),
]


def _transparent_wrapper(module: nn.Module) -> Wrapper | None:
    """The wrapper ``module`` is, when it holds nothing but the module it wraps."""
    for wrapper in WRAPPERS:
        if (
            wrapper.matches(module)
            and list(module._modules) == [wrapper.inner]
            and not module._parameters
            and not module._buffers
        ):
            return wrapper
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _parametrizations(module: nn.Module) -> nn.ModuleDict | None:
    """The ``parametrizations`` container that ``torch.nn.utils.parametrize`` adds to a layer, if it has one."""
    container = module._modules.get("parametrizations")
    if isinstance(container, nn.ModuleDict) and all(
        isinstance(entry, parametrize.ParametrizationList) for entry in container.values()
    ):
        return container
    return None


class _Walk:
    """One pre-order pass over a model, collecting unique tensors, the tree and notes."""

    def __init__(self) -> None:
        self.tree = TreeBuilder()
        self.records: list[TensorRecord] = []
        self.record_index: dict[int, int] = {}
        self.dtypes: dict[torch.dtype, DType | None] = {}
        self.seen_modules: dict[int, str] = {}
        self.notes: list[str] = []
        self.unwrapped: dict[str, str] = {}
        self.lazy: dict[str, list[str]] = {}
        self.unknown_dtypes: dict[str, str] = {}
        self.reused: list[tuple[str, str]] = []
        self.tied: list[tuple[str, str]] = []
        self.parametrized: list[tuple[str, nn.ModuleDict]] = []
        self.devices: set[torch.device] = set()

    def run(self, model: nn.Module) -> None:
        stack: list[tuple[str, nn.Module, int]] = [("", model, -1)]
        while stack:
            path, module, parent = stack.pop()
            wrapper = _transparent_wrapper(module)
            if wrapper is not None:
                self.unwrapped.setdefault(wrapper.label, wrapper.inner)
                stack.append((path, module._modules[wrapper.inner], parent))  # type: ignore[arg-type]
                continue
            first_path = self.seen_modules.get(id(module))
            if first_path is not None:
                self.reused.append((path, first_path))
                self.tree.add_module(path, type(module).__name__, parent, same_as=first_path)
                self._add_aliases_below(path, module)
                continue
            self.seen_modules[id(module)] = path
            index = self.tree.add_module(path, type(module).__name__, parent)
            self._add_own_tensors(index, path, module)
            children = module._modules
            parametrizations = _parametrizations(module)
            if parametrizations is not None:
                # Parametrizations store the real tensors (e.g. `original0`, `original1` of weight_norm) in
                # `<layer>.parametrizations.<name>`; count them as the layer's own so the tree shows the layer.
                self.parametrized.append((path, parametrizations))
                self._add_subtree_tensors(index, path, parametrizations)
                children = {key: child for key, child in children.items() if key != "parametrizations"}
            for name, child in reversed(children.items()):
                if child is not None:
                    stack.append((_join(path, name), child, index))

    def _add_own_tensors(self, owner: int, path: str, module: nn.Module) -> None:
        for name, param in module._parameters.items():
            if param is not None:
                self._add_tensor(owner, path, _join(path, name), param, "parameter", None)
        if module._buffers:
            non_persistent = module._non_persistent_buffers_set
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    self._add_tensor(owner, path, _join(path, name), buffer, "buffer", name not in non_persistent)

    def _add_subtree_tensors(self, owner: int, owner_path: str, subtree: nn.Module) -> None:
        for path, module in subtree.named_modules(prefix=_join(owner_path, "parametrizations")):
            for name, param in module._parameters.items():
                if param is not None:
                    self._add_tensor(owner, owner_path, _join(path, name), param, "parameter", None)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    persistent = name not in module._non_persistent_buffers_set
                    self._add_tensor(owner, owner_path, _join(path, name), buffer, "buffer", persistent)

    def _add_aliases_below(self, prefix: str, module: nn.Module) -> None:
        """A module object seen before: its tensors are all known, so its names only become aliases."""
        named = (
            *module.named_parameters(prefix=prefix, remove_duplicate=False),
            *module.named_buffers(prefix=prefix, remove_duplicate=False),
        )
        for name, tensor in named:
            position = self.record_index.get(id(tensor))
            if position is not None:
                self._alias(position, name)

    def _add_tensor(
        self, owner: int, owner_path: str, name: str, tensor: torch.Tensor, kind: TensorKind, persistent: bool | None
    ) -> None:
        key = id(tensor)
        position = self.record_index.get(key)
        if position is not None:
            first = self.records[position].name
            self._alias(position, name)
            self.tree.add_shared(owner, first)
            self.tied.append((name, first))
            return
        self.record_index[key] = len(self.records)
        self.devices.add(tensor.device)
        dtype = tensor.dtype
        trainable = tensor.requires_grad if kind == "parameter" else None
        if isinstance(tensor, (UninitializedParameter, UninitializedBuffer)):
            self.lazy.setdefault(owner_path, []).append(name)
            record = TensorRecord(name, None, None, _dtype_name(dtype), None, kind, trainable, persistent)
        else:
            numel = tensor.numel()
            record = TensorRecord(
                name, tuple(tensor.shape), numel, _dtype_name(dtype), self._nbytes(tensor, numel), kind,
                trainable, persistent,
            )  # fmt: skip
        self.records.append(record)
        self.tree.add_tensor(owner, record)

    def _nbytes(self, tensor: torch.Tensor, numel: int) -> int:
        dtype = tensor.dtype
        try:
            entry = self.dtypes[dtype]
        except KeyError:
            entry = self.dtypes[dtype] = _dtypes.find(_dtype_name(dtype))
        if entry is not None:
            return entry.nbytes(numel)
        # A dtype newer than the table: torch's own element size is exact for it, and the notes say so.
        self.unknown_dtypes.setdefault(_dtype_name(dtype), tensor.__class__.__name__)
        return numel * tensor.element_size()

    def _alias(self, position: int, name: str) -> None:
        record = self.records[position]
        if name != record.name and name not in record.aliases:
            self.records[position] = replace(record, aliases=(*record.aliases, name))

    def collect_notes(self) -> list[str]:
        notes = [
            f"unwrapped {label}: names are shown without its '{inner}.' prefix"
            for label, inner in self.unwrapped.items()
        ]
        for name, first in self.tied:
            notes.append(f"{name} is the same tensor as {first} (tied): counted once, under {first}")
        for path, first in self.reused:
            notes.append(
                f"module '{path}' is the same object as '{first}': its tensors are counted once, under '{first}'"
            )
        for path, names in self.lazy.items():
            shown = ", ".join(names[:_MAX_NAMES_IN_NOTE]) + (", …" if len(names) > _MAX_NAMES_IN_NOTE else "")
            notes.append(
                f"{len(names)} uninitialised lazy tensor(s) in '{path or '(root)'}' ({shown}): their sizes are "
                "unknown until the first forward pass; totals are incomplete"
            )
        for path, parametrizations in self.parametrized:
            for tensor_name, parametrization in parametrizations.items():
                kinds = ", ".join(type(step).__name__ for step in parametrization.children())
                prefix = f"{_join(path, 'parametrizations')}.{tensor_name}"
                stored = ", ".join(name for name, _ in parametrization.named_parameters(prefix=prefix))
                notes.append(f"{_join(path, tensor_name)} is parametrized ({kinds}): counted as the stored {stored}")
        for dtype in self.unknown_dtypes:
            notes.append(f"dtype {dtype} is not in paramscope's dtype table: its bytes come from torch's element_size")
        return notes


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def inspect_module(model: nn.Module, *, target: str | None = None, device: str | None = None) -> Report:
    """Build the report of a live module. The model is only read, never changed."""
    walk = _Walk()
    walk.run(model)
    notes = walk.collect_notes()
    totals, by_dtype = summarize(walk.records)
    modules = walk.tree.build()
    name = target if target is not None else f"{type(model).__module__}.{type(model).__qualname__}"
    if device is None and walk.devices:
        device = ", ".join(sorted(str(d) for d in walk.devices))
    return Report(
        source=Source(kind="module", target=name, device=device),
        totals=totals,
        by_dtype=by_dtype,
        tensors=tuple(walk.records),
        modules=modules,
        notes=tuple(notes),
    )

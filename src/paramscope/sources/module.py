"""Reports for live ``torch.nn.Module`` objects, on any device including meta.

The model is only read: parameters and buffers are reached through ``_parameters``/``_buffers``/``_modules``
(what ``named_parameters`` itself walks), so no hook, forward, parametrization or device move ever runs.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter
from torch.nn.utils import parametrize

from .. import _dtypes
from .._report import ModuleNode, Report, Source, TensorKind, TensorRecord, summarize
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


@contextmanager
def _gc_paused() -> Iterator[None]:
    # The walk allocates ~2 acyclic objects per tensor. On a model with 10^5 tensors that triggers a full
    # collection, which traverses every object of the user's model and costs more than the walk itself.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


_UNKNOWN = Wrapper("", "", lambda module: False)  # marks a module class not yet checked against WRAPPERS

# (owner node index, owner path, tensor name, tensor, kind, persistent): one per registration of a tensor.
_Entry = tuple[int, str, str, torch.Tensor, TensorKind, "bool | None"]


class _Walk:
    """One pre-order pass over a model: the tree, the unique tensors, and what the notes need.

    This is the hot path for models with 10^5 tensors: the module walk only lists tensor registrations, and one
    tight loop turns them into records, with per-class and per-dtype facts cached.
    """

    def __init__(self) -> None:
        self.tree = TreeBuilder()
        self.records: list[TensorRecord] = []
        self.owners: list[int] = []
        self.node_modules: list[nn.Module] = []
        self.devices: set[torch.device] = set()
        self.unwrapped: dict[str, str] = {}
        self.lazy: dict[str, list[str]] = {}
        self.unknown_dtypes: set[str] = set()
        self.reused: list[tuple[str, str]] = []
        self.tied: list[tuple[str, str]] = []
        self.parametrized: list[tuple[str, nn.ModuleDict]] = []
        self._entries: list[_Entry] = []
        self._reused_modules: list[tuple[str, nn.Module]] = []
        self._record_index: dict[int, int] = {}
        self._wrappers: dict[type, Wrapper | None] = {}
        self._lazy_classes: dict[type, bool] = {}
        self._dtype_info: dict[torch.dtype, tuple[str, int, DType | None]] = {}

    def run(self, model: nn.Module) -> None:
        self._walk_modules(model)
        self._make_records()

    def _walk_modules(self, model: nn.Module) -> None:
        tree, wrappers = self.tree, self._wrappers
        seen: dict[int, str] = {}
        stack: list[tuple[str, nn.Module, int]] = [("", model, -1)]
        while stack:
            path, module, parent = stack.pop()
            if wrappers.get(type(module), _UNKNOWN) is not None:
                inner = self._unwrap(module)
                if inner is not None:
                    stack.append((path, inner, parent))
                    continue
            first_path = seen.get(id(module))
            self.node_modules.append(module)
            if first_path is not None:
                tree.add_module(path, type(module).__name__, parent, same_as=first_path)
                self.reused.append((path, first_path))
                self._reused_modules.append((path, module))
                continue
            seen[id(module)] = path
            index = tree.add_module(path, type(module).__name__, parent)
            prefix = path + "." if path else ""
            if module._parameters or module._buffers:
                self._list_own_tensors(index, path, prefix, module)
            children = module._modules
            if "parametrizations" in children:
                children = self._fold_parametrizations(index, path, module)
            for name, child in reversed(children.items()):
                if child is not None:
                    stack.append((prefix + name, child, index))

    def _unwrap(self, module: nn.Module) -> nn.Module | None:
        """The module that ``module`` wraps, when it is a known wrapper holding nothing else."""
        cls = type(module)
        if cls not in self._wrappers:
            self._wrappers[cls] = next((w for w in WRAPPERS if w.matches(module)), None)
        wrapper = self._wrappers[cls]
        if wrapper is None or module._parameters or module._buffers or list(module._modules) != [wrapper.inner]:
            return None
        self.unwrapped.setdefault(wrapper.label, wrapper.inner)
        return module._modules[wrapper.inner]

    def _fold_parametrizations(self, index: int, path: str, module: nn.Module) -> dict[str, nn.Module | None]:
        """List a parametrized layer's stored tensors as its own; return the children left to walk."""
        parametrizations = _parametrizations(module)
        if parametrizations is None:
            return module._modules
        # The real tensors (e.g. `original0`, `original1` of weight_norm) live in `<layer>.parametrizations.<name>`;
        # counting them as the layer's own keeps the tree showing the layer.
        self.parametrized.append((path, parametrizations))
        for sub_path, sub_module in parametrizations.named_modules(prefix=_join(path, "parametrizations")):
            self._list_own_tensors(index, path, sub_path + ".", sub_module)
        return {key: child for key, child in module._modules.items() if key != "parametrizations"}

    def _list_own_tensors(self, owner: int, owner_path: str, prefix: str, module: nn.Module) -> None:
        """List the tensors registered directly on ``module`` (names start with ``prefix``) for node ``owner``."""
        entries = self._entries
        for name, param in module._parameters.items():
            if param is not None:
                entries.append((owner, owner_path, prefix + name, param, "parameter", None))
        if module._buffers:
            non_persistent = module._non_persistent_buffers_set
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    entries.append((owner, owner_path, prefix + name, buffer, "buffer", name not in non_persistent))

    def _make_records(self) -> None:
        records, owners, record_index = self.records, self.owners, self._record_index
        dtype_info, lazy_classes, devices = self._dtype_info, self._lazy_classes, self.devices
        for owner, owner_path, name, tensor, kind, persistent in self._entries:
            key = id(tensor)
            position = record_index.get(key)
            if position is not None:
                self._tie(owner, position, name)
                continue
            record_index[key] = len(records)
            devices.add(tensor.device)
            dtype = tensor.dtype
            dtype_name, element_bytes, entry = dtype_info.get(dtype) or self._learn_dtype(dtype)
            trainable = tensor.requires_grad if kind == "parameter" else None
            cls = type(tensor)
            lazy = lazy_classes.get(cls)
            if lazy is None:
                # issubclass once per class: isinstance on a Parameter goes through a slow Python metaclass hook.
                lazy = lazy_classes[cls] = issubclass(cls, (UninitializedParameter, UninitializedBuffer))
            if lazy:
                self.lazy.setdefault(owner_path, []).append(name)
                records.append(TensorRecord(name, None, None, dtype_name, None, kind, trainable, persistent))
            else:
                numel = tensor.numel()
                if element_bytes:
                    nbytes = numel * element_bytes
                elif entry is not None:
                    nbytes = entry.nbytes(numel)
                else:  # a dtype newer than the table: torch's element size is exact for it, and the notes say so
                    nbytes = numel * tensor.element_size()
                shape = tuple(tensor.shape)
                records.append(TensorRecord(name, shape, numel, dtype_name, nbytes, kind, trainable, persistent))
            owners.append(owner)
        for path, module in self._reused_modules:
            self._add_aliases_below(path, module)

    def _learn_dtype(self, dtype: torch.dtype) -> tuple[str, int, DType | None]:
        name = str(dtype).removeprefix("torch.")
        entry = _dtypes.find(name)
        if entry is None:
            self.unknown_dtypes.add(name)
        # Types stored one element per whole number of bytes take the fast path: numel × bytes.
        element_bytes = entry.storage_block_bytes if entry is not None and entry.block_elements == 1 else 0
        self._dtype_info[dtype] = info = (name, element_bytes, entry)
        return info

    def _tie(self, owner: int, position: int, name: str) -> None:
        """A tensor seen before under another name: an alias, counted under its first owner."""
        first = self.records[position].name
        self._alias(position, name)
        self.tree.add_shared(owner, first)
        self.tied.append((name, first))

    def _add_aliases_below(self, prefix: str, module: nn.Module) -> None:
        """A module object seen before: its tensors are all known, so its names only become aliases."""
        named = (
            *module.named_parameters(prefix=prefix, remove_duplicate=False),
            *module.named_buffers(prefix=prefix, remove_duplicate=False),
        )
        for name, tensor in named:
            position = self._record_index.get(id(tensor))
            if position is not None:
                self._alias(position, name)

    def _alias(self, position: int, name: str) -> None:
        record = self.records[position]
        if name != record.name and name not in record.aliases:
            self.records[position] = record._replace(aliases=(*record.aliases, name))

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


def _explain(nodes: tuple[ModuleNode, ...], modules: list[nn.Module]) -> tuple[tuple[ModuleNode, ...], list[str]]:
    """Each node with its layer formula, checked against the tensors the module holds, and the notes that raises."""
    from .. import formulas

    explained, notes = [], []
    for node, module in zip(nodes, modules, strict=True):
        if node.same_as is not None:
            explained.append(node)
            continue
        explanation = formulas.explain_module(module)
        layer = f"'{node.path or '(model)'}' ({node.type})"
        if explanation.count is None:
            if node.own_params and node.complete:
                notes.append(f"{layer} has parameters of its own and no formula: they are counted directly")
            explained.append(node)
            continue
        # All tensors the layer holds, shared ones included: a tied head still has its formula's weight.
        params = sum(p.numel() for p in module.parameters())
        buffers = sum(b.numel() for b in module.buffers())
        count = explanation.count
        matches = (count.params, count.buffers) == (params, buffers)
        if not matches:
            notes.append(
                f"{layer}: the {count.layer} formula gives {count.params:,} parameters and {count.buffers:,} buffer "
                f"elements, but its tensors hold {params:,} and {buffers:,}; the tensors are counted"
            )
        explained.append(node._replace(formula=count.text, formula_matches=matches))
    return tuple(explained), notes


def inspect_module(
    model: nn.Module, *, target: str | None = None, device: str | None = None, explain: bool = False
) -> Report:
    """Build the report of a live module. The model is only read, never changed.

    With ``explain``, each module gets its layer formula (see :mod:`paramscope.formulas`), checked against its
    tensors.
    """
    walk = _Walk()
    with _gc_paused():
        walk.run(model)
        modules = walk.tree.build(walk.records, walk.owners)
    notes = walk.collect_notes()
    if explain:
        modules, formula_notes = _explain(modules, walk.node_modules)
        notes += formula_notes
    totals, by_dtype = summarize(walk.records)
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

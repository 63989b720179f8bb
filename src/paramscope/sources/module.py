"""Reports for live ``torch.nn.Module`` objects, on any device including meta.

The model is only read: parameters and buffers are reached through ``_parameters``/``_buffers``/``_modules``
(what ``named_parameters`` itself walks), so no hook, forward, parametrization or device move ever runs.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from .. import dtypes as dtype_table
from .._collector import collector_paused
from .._diff import model_read
from .._moe import with_active_params
from .._report import ModuleNode, Report, Source, TensorKind, TensorRecord
from .._tree import TreeBuilder
from .._units import format_bytes, listed, shortened
from ._sharded import (
    FlatParameters,
    HeldStorage,
    dtensor_class,
    dtensor_sharding,
    fsdp2_gathered,
    held_storage,
    of_class,
    placement_text,
    unflatten,
    zero3_sharding,
)
from ._tensors import (
    PACKED_FP4,
    PLAIN_TENSOR_CLASSES,
    UNREAD_PACKING,
    declared_dtype,
    fp4_note,
    fp4_values,
    is_quantized_engines,
    packed_objects,
    packed_weights,
    unusual_bytes,
)
from .quantization import per_channel_qparams

if TYPE_CHECKING:
    from ..dtypes import DType

_MAX_NAMES_IN_NOTE = 4
_MAX_NOTES_OF_A_KIND = 8


@dataclass(frozen=True)
class Wrapper:
    """A module type that only wraps another one: it is skipped in names and in the tree."""

    label: str
    inner: str
    matches: Callable[[nn.Module], bool]


def _listed(names: list[str]) -> str:
    return listed(names, _MAX_NAMES_IN_NOTE)


def _is_optimized_module(module: nn.Module) -> bool:
    # torch._dynamo is heavy to import; an OptimizedModule can only exist if torch.compile already imported it.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)


def _named(class_name: str) -> Callable[[nn.Module], bool]:
    return lambda module: of_class(module, class_name)


FSDP1 = Wrapper("FSDP1's FullyShardedDataParallel", "_fsdp_wrapped_module", _named("FullyShardedDataParallel"))
WRAPPERS: list[Wrapper] = [
    Wrapper("torch.compile's OptimizedModule", "_orig_mod", _is_optimized_module),
    Wrapper("DataParallel", "module", lambda m: isinstance(m, nn.DataParallel)),
    Wrapper("DistributedDataParallel", "module", lambda m: isinstance(m, nn.parallel.DistributedDataParallel)),
    FSDP1,
    Wrapper("CheckpointWrapper", "_checkpoint_wrapped_module", _named("CheckpointWrapper")),
    Wrapper("OffloadWrapper", "_checkpoint_wrapped_module", _named("OffloadWrapper")),
]


def _run_inside(model: nn.Module) -> Iterator[tuple[Wrapper, nn.Module]]:
    """The wrappers around ``model`` that run the model they wrap (torch.compile's OptimizedModule,
    DataParallel/DistributedDataParallel), outermost first, each with that model."""
    while True:
        wrapper = _class_info(model).wrapper
        if wrapper is None or wrapper is FSDP1 or wrapper.inner == "_checkpoint_wrapped_module":
            return
        inner = model._modules.get(wrapper.inner)
        if inner is None:
            return
        yield wrapper, inner
        model = inner


def forward_module(model: nn.Module) -> nn.Module:
    """The module whose forward to run and trace: inside torch.compile's OptimizedModule (run eagerly: compiling
    on meta is not the point, and its rows would read ``_orig_mod.``) and DataParallel/DistributedDataParallel
    (which scatter across devices), the model they wrap; the report's names are the wrapped model's too."""
    inside = [inner for _, inner in _run_inside(model)]
    return inside[-1] if inside else model


def state_dict_prefix(model: nn.Module) -> tuple[str, tuple[str, ...]]:
    """The prefix the wrappers around ``model`` (see :func:`forward_module`) give every name of its state dict,
    which their ``load_state_dict`` expects (torch.compile's ``_orig_mod.``, DataParallel's ``module.``), and their
    labels; the report names the model they wrap.

    >>> from torch import nn
    >>> state_dict_prefix(nn.DataParallel(nn.Linear(2, 2))), state_dict_prefix(nn.Linear(2, 2))
    (('module.', ('DataParallel',)), ('', ()))
    """
    wrappers = [wrapper for wrapper, _ in _run_inside(model)]
    return "".join(f"{wrapper.inner}." for wrapper in wrappers), tuple(wrapper.label for wrapper in wrappers)


def reported_paths(named_modules: Iterable[tuple[str, nn.Module]]) -> dict[str, str]:
    """The paths of ``named_modules`` (parents before their children, as ``named_modules()`` lists them) that the
    report names otherwise, with its names: a wrapper's module (torch.compile's ``_orig_mod``, a checkpoint
    wrapper's, DataParallel's ``module``) in the wrapper's place, where the wrapper holds nothing else, as the
    report's walk unwraps it. A path not in the result is the report's too.

    >>> from torch import nn
    >>> from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    >>> model = nn.Sequential(checkpoint_wrapper(nn.Sequential(nn.Linear(2, 2))), nn.ReLU())
    >>> reported_paths(model.named_modules())
    {'0._checkpoint_wrapped_module': '0', '0._checkpoint_wrapped_module.0': '0.0'}
    """
    named_modules = list(named_modules)
    wrappers: dict[type, Wrapper | None] = {}
    for kind, module in {type(module): module for _, module in named_modules}.items():
        wrappers[kind] = _class_info(module).wrapper
    if not any(wrappers.values()):  # the common case, decided per class
        return {}
    reported: dict[str, str] = {}
    inner_of: dict[str, str] = {}  # the wrappers among the paths, with the name of the module each holds
    for path, module in named_modules:
        parent, _, name = path.rpartition(".")
        if not path:
            reported[path] = ""
        elif inner_of.get(parent) == name:
            reported[path] = reported[parent]
        else:
            reported[path] = _join(reported[parent], name)
        wrapper = wrappers[type(module)]
        if wrapper is not None and _only_wraps(module, wrapper):
            inner_of[path] = wrapper.inner
    return {path: name for path, name in reported.items() if name != path}


def _only_wraps(module: nn.Module, wrapper: Wrapper) -> bool:
    """Whether ``module`` (of a wrapper type) holds its wrapped module and nothing else: only then is it left out."""
    return not (module._parameters or module._buffers) and list(module._modules) == [wrapper.inner]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _within_any(path: str, paths: Container[str]) -> bool:
    """Whether ``path`` is one of ``paths`` or lies under one of them."""
    parts = path.split(".")
    return any(".".join(parts[:end]) in paths for end in range(1, len(parts) + 1))


class _NameTree:
    """Dotted tensor names by their parts, each with the positions of the records it names: the names under a module
    path are found, and a name added, in the time of the names found (a sorted list of every name took the time of
    all of them to add one, for each reuse of a module inside a module reused in turn)."""

    def __init__(self) -> None:
        self._root: dict[str | None, Any] = {}

    def add(self, name: str, position: int) -> None:
        node = self._root
        for part in name.split("."):
            node = node.setdefault(part, {})
        node.setdefault(None, []).append(position)  # None: the positions named here, beside the parts below

    def under(self, path: str) -> list[tuple[str, int]]:
        """The names under module ``path`` (without its prefix) and their positions, sorted by name."""
        node: dict[str | None, Any] | None = self._root
        for part in path.split("."):
            node = node.get(part) if node is not None else None
        if node is None:
            return []
        found: list[tuple[str, int]] = []
        stack: list[tuple[str, dict[str | None, Any]]] = [(part, below) for part, below in _sorted_parts(node)]
        while stack:
            name, node = stack.pop()
            found += [(name, position) for position in sorted(node.get(None, ()))]
            stack += [(f"{name}.{part}", below) for part, below in _sorted_parts(node)]
        return found


def _sorted_parts(node: dict[str | None, Any]) -> list[tuple[str, Any]]:
    """A node's parts with the nodes below them, last first (for a stack that takes the first off first)."""
    return sorted(((part, below) for part, below in node.items() if part is not None), reverse=True)


def _parametrizations(module: nn.Module) -> nn.ModuleDict | None:
    """The ``parametrizations`` container that ``torch.nn.utils.parametrize`` adds to a layer, if it has one."""
    container = module._modules.get("parametrizations")
    if isinstance(container, nn.ModuleDict) and all(
        isinstance(entry, parametrize.ParametrizationList) for entry in container.values()
    ):
        return container
    return None


def _original_class(cls: type) -> type:
    """The class a module was built as, behind the subclass that torch generates for it."""
    name = cls.__name__
    bases = cls.__bases__
    if len(bases) == 1 and name == f"Parametrized{bases[0].__name__}" and cls.__module__ == parametrize.__name__:
        # parametrize swaps a layer's class for a subclass it generates: show the layer's own class (not a class of
        # the user's that is named so)
        return bases[0]
    if len(bases) == 2 and bases[0].__name__ == "FSDPModule" and name == f"FSDP{bases[1].__name__}":
        return bases[1]  # FSDP2's fully_shard does the same
    return cls


def _class_name(cls: type) -> str:
    """The name a module class is shown under."""
    return _original_class(cls).__name__


# The classes torch.ao's quantized modules are defined in, as TorchScript names them (torch.nn.quantized in archives
# saved before torch 1.13 moved them).
_TORCH_AO_SCRIPT_PREFIXES = ("__torch__.torch.ao.nn.", "__torch__.torch.nn.quantized.", "__torch__.torch.nn.intrinsic.")


def _scripted_torch_ao(module: nn.Module) -> bool:
    """Whether a TorchScript module (scripted, traced or loaded) was made from one of torch.ao's modules, which may
    keep packed weights among its C++ module's attributes."""
    try:
        name = getattr(module, "_c")._type().qualified_name()  # noqa: B009 (torch's stubs type _c as a Tensor)
    except (AttributeError, RuntimeError):  # a ScriptModule without a C++ module of its own
        return False
    return isinstance(name, str) and name.startswith(_TORCH_AO_SCRIPT_PREFIXES)


@dataclass(frozen=True, slots=True)
class _ClassInfo:
    """What the walk needs to know about a module class, worked out once per class."""

    name: str
    wrapper: Wrapper | None
    packed: bool
    """A torch.ao quantized module (or a subclass of one), which may keep weights outside ``_parameters``."""
    scripted: bool
    """A TorchScript module, scripted or traced: its class is RecursiveScriptModule or TracedModule, its own name
    is ``original_name``."""
    fsdp2: bool
    """A module FSDP2's ``fully_shard`` was applied to."""


def _class_info(module: nn.Module) -> _ClassInfo:
    cls = type(module)
    wrapper = next((w for w in WRAPPERS if w.matches(module)), None)
    packed = any(base.__module__.startswith("torch.ao.nn.") for base in cls.__mro__)  # a subclass of one too
    fsdp2 = any(base.__name__ == "FSDPModule" for base in cls.__mro__)
    return _ClassInfo(_class_name(cls), wrapper, packed, issubclass(cls, torch.jit.ScriptModule), fsdp2)


def _freed_note(name: str, held: int, counted: int) -> str:
    return (f"{shortened(name)}'s storage holds {format_bytes(held)}, less than its elements take: freed or shrunk "
            f"(untyped_storage().resize_(), as FSDP frees what it shards), so its values are not all held; counted at "
            f"its size, {format_bytes(counted)}")  # fmt: skip


def _holds_others(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s values are other tensors' (a wrapper subclass: DTensor, TwoTensor; a nested tensor), not
    its storage's."""
    return tensor.is_nested or bool(is_traceable_wrapper_subclass(tensor))


# What every nn.Module keeps in its __dict__ (its tensors, children, hooks): not attributes of the model's own.
_MODULE_OWN = frozenset(vars(nn.Module()))


def own_attributes(module: nn.Module) -> Iterator[tuple[str, str | None, str, Any]]:
    """Each attribute ``module`` sets itself (not nn.Module's own: its tensors, children, hooks), and each item of
    the plain lists, tuples and dicts among them: the attribute, the kind of container (None for the attribute
    itself), where the value is (``blocks[0]``, ``heads['a']``), and the value."""
    for name, value in vars(module).items():
        if name in _MODULE_OWN:
            continue
        items = _container_items(name, value)
        if not items:
            yield name, None, name, value
        for kind, where, item in items:
            yield name, kind, where, item


def _container_values(value: Any) -> tuple[str, Iterable[tuple[Any, Any]]] | None:
    """The kind of container ``value`` is, when it is a plain list, tuple or dict, and its items' keys (indices for
    a list or tuple) and values; ``None`` for any other value. By type, not isinstance: a transformers config
    answers isinstance through a ``__getattribute__`` of its own, in Python, and every layer of a model holds one."""
    # read through the base classes' own methods: a subclass's iteration is code of its own, not run here
    cls = type(value)
    if issubclass(cls, dict):
        return "dict", dict.items(value)
    if issubclass(cls, list):
        return "list", enumerate(list.__iter__(value))
    if issubclass(cls, tuple):
        return "tuple", enumerate(tuple.__iter__(value))
    return None


def _container_items(name: str, value: Any) -> list[tuple[str, str, Any]]:
    """The items of ``value``, attribute ``name``, when it is a plain list, tuple or dict: the kind of container,
    where each item is, and the item (see :func:`_container_values`)."""
    found = _container_values(value)
    if found is None:
        return []
    kind, items = found
    if kind == "dict":
        return [(kind, f"{name}[{key!r}]", item) for key, item in items]
    return [(kind, f"{name}[{key}]", item) for key, item in items]


def _modules_and_parameters_in(value: Any) -> tuple[str, list[Any]]:
    """The kind of container ``value`` is (a plain list, tuple or dict), and the modules and parameters among its
    items. A vocabulary of a million strings is looked at by the types of its items, in C, and no further."""
    kind, items = _container_values(value) or ("", ())
    values = [item for _, item in items]
    if not any(issubclass(cls, (nn.Module, nn.Parameter)) for cls in set(map(type, values))):
        return kind, []
    return kind, [item for item in values if issubclass(type(item), (nn.Module, nn.Parameter))]


def _attributes_to_look_into(
    module: nn.Module, containers: dict[int, tuple[str, list[Any]]]
) -> tuple[bool, list[tuple[str, str, list[Any]]]]:
    """Whether ``module``, not one of torch.ao's, keeps weights packed by torch's quantized engines among its
    attributes, as FX's ``convert_fx`` keeps those of an ``F.linear`` it quantized (a GraphModule's
    ``_packed_weight_0``); and the modules and parameters it keeps in plain lists, tuples and dicts, by attribute
    (with the kind of container), which it does not register by that (nn.ModuleList would). A scan of every module
    of the model, so by type (see :func:`_container_values`); ``containers`` holds what each container looked at
    held (by id), one that many modules refer to looked at once."""
    packed = False
    apart: list[tuple[str, str, list[Any]]] = []
    kinds = _KIND_OF_TYPE
    for name, value in vars(module).items():
        cls = type(value)
        kind = kinds.get(cls)
        if kind is None:
            kind = kinds[cls] = _kind_of_type(cls)
        if kind == _SCRIPT_OBJECT:
            packed = packed or is_quantized_engines(value)
        elif kind == _CONTAINER and name not in _MODULE_OWN:
            found = containers.get(id(value))
            if found is None:
                found = containers[id(value)] = _modules_and_parameters_in(value)
            if found[1]:
                apart.append((name, *found))
    return packed, apart


_OTHER, _SCRIPT_OBJECT, _CONTAINER = range(3)
_KIND_OF_TYPE: dict[type, int] = {}
"""What :func:`_attributes_to_look_into` makes of an attribute of each type, worked out once per type."""


def _kind_of_type(cls: type) -> int:
    if issubclass(cls, torch.ScriptObject):
        return _SCRIPT_OBJECT
    return _CONTAINER if issubclass(cls, (dict, list, tuple)) else _OTHER


def _parameters_beneath(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """The parameters registered in ``modules`` and their submodules, as ``parameters()`` gives them, but read from
    the registries themselves: a module held apart from the model is not run (its own ``parameters()`` may be
    code of its own), a chain of them as deep as any, a cycle once."""
    found: dict[int, nn.Parameter] = {}
    seen: set[int] = set()
    stack = list(modules)
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        registered = vars(module)
        found.update((id(p), p) for p in registered.get("_parameters", {}).values() if p is not None)
        stack.extend(child for child in registered.get("_modules", {}).values() if child is not None)
    return list(found.values())


def _capped(notes: list[str], what: str) -> list[str]:
    if len(notes) <= _MAX_NOTES_OF_A_KIND:
        return notes
    return [*notes[:_MAX_NOTES_OF_A_KIND], f"… and {len(notes) - _MAX_NOTES_OF_A_KIND} more {what}"]


# How many hold a storage (by its C pointer, ``_cdata``): a tensor alone on its storage, asked through the storage's
# Python object, makes 2 (the tensor and that object); more means another tensor may share it, which the walk then
# looks into. A private call of torch's: without it, every storage is looked into (correct, a little slower).
_storage_holders: Callable[[int], int] = getattr(torch._C, "_storage_Use_Count", lambda cdata: 3)


# (owner node index, owner path, tensor name, tensor, kind, persistent): one per registration of a tensor.
_Entry = tuple[int, str, str, torch.Tensor, TensorKind, "bool | None"]


class _Walk:
    """One pre-order pass over a model: the tree, the unique tensors, and what the notes need.

    This is the hot path for models with 10^5 tensors: the module walk only lists tensor registrations, and one
    tight loop turns them into records, with per-class and per-dtype facts cached.
    """

    def __init__(self) -> None:
        self.flat = FlatParameters()
        """FSDP1's flat parameters met so far, unflattened."""
        self.tree = TreeBuilder()
        self.records: list[TensorRecord] = []
        self.owners: list[int] = []
        self.node_modules: list[nn.Module] = []
        self.devices: set[torch.device] = set()
        self.unwrapped: dict[str, str] = {}
        self.lazy: dict[str, list[str]] = {}
        self.unknown_dtypes: set[str] = set()
        self.reused: dict[str, list[str]] = {}
        self.cycles: list[tuple[str, str]] = []
        self.parametrized: list[tuple[str, str, list[str]]] = []
        self.packed: list[tuple[str, str, list[str]]] = []
        """Modules with packed weights read: the layer as the notes name it, the method read through, the names."""
        self.unread: list[tuple[int, str, str, str, str]] = []
        """Packed weights that could not be read: owner, the layer as the notes name it, name, dtype, why."""
        self._packed_read: set[int] = set()
        self._packed_by_object: dict[frozenset[int], list[tuple[str, torch.Tensor]]] = {}
        """The weights read from each module's packed objects (by their ``id``s): a module holding the same objects
        as one read before holds the same weights, not a copy of them."""
        self.size_notes: list[str] = []
        self._held_apart: list[tuple[str, str, str, list[Any]]] = []
        """Modules and parameters a module keeps in a plain list, tuple or dict: its path, the attribute, the kind
        of container, and what it holds."""
        self.fp4: list[str] = []
        """The float4_e2m1fn_x2 tensors, counted as their values."""
        self._storage_first: dict[int | tuple[str, int], torch.Tensor] = {}
        """The first tensor met on each storage, by address (on meta, which has none, by the storage itself)."""
        self._storage_users: dict[int | tuple[str, int], list[torch.Tensor]] = {}
        """Storages, by address, held by several tensors or by one that fills only part of it: their tensors."""
        self._entries: list[_Entry] = []
        self.tie_owners: list[tuple[int, int]] = []
        """Each registration of a tensor counted under another module: that module's index, and the record's."""
        self._record_index: dict[int, int] = {}
        self._aliases: dict[int, list[str]] = {}
        self._tied: dict[int, list[str]] = {}
        self._reused_paths: list[tuple[str, str]] = []
        self._classes: dict[type, _ClassInfo] = {}
        self._special_classes: dict[type, bool] = {}
        self._dtype_info: dict[torch.dtype, tuple[str, int, DType | None]] = {}
        self.local_params = 0
        self.gathered: dict[int, Any] = {}
        """FSDP2 parameters gathered now (by id of the registered tensor): the sharded parameters they come from."""
        self.gathered_causes: dict[int, str] = {}
        """Why each of those is gathered (by id of the registered tensor), as torch's FSDP2 state records it."""
        self.gathered_by_cause: dict[str, tuple[list[str], dict[Any, int]]] = {}
        """Per cause: the FSDP2 modules gathered for it, and the storages of their gathered copies with their bytes
        (in the mixed-precision policy's dtype, the all-gather's padding included; of this rank's part where they are
        resharded to a smaller group)."""
        self.zero3_gathered: list[str] = []
        """ZeRO-3 parameters whose data is the whole tensor now (inside GatheredParameters, or a forward)."""
        self.zero3_gathered_bytes = 0
        """The bytes of those gathered ZeRO-3 copies."""
        self.local_storages: dict[Any, int] = {}
        """This rank's parameter storages (by key, each once) and their bytes, for the local share of a sharded
        model."""
        self.sharded = False

    def run(self, model: nn.Module) -> None:
        self._walk_modules(model)
        self._make_records()
        for owner, _, name, dtype, _ in self.unread:
            record = TensorRecord(name, None, None, dtype, None, "parameter", False, None, packing=UNREAD_PACKING)
            self.records.append(record)
            self.owners.append(owner)
        self._alias_reused_modules()
        for position, names in self._aliases.items():
            self.records[position] = self.records[position]._replace(aliases=tuple(names))

    # --- the module tree --------------------------------------------------------------------------------------

    def _walk_modules(self, model: nn.Module) -> None:
        tree, classes = self.tree, self._classes
        seen: dict[int, str] = {}
        containers: dict[int, tuple[str, list[Any]]] = {}
        stack: list[tuple[str, nn.Module, int]] = [("", model, -1)]
        while stack:
            path, module, parent = stack.pop()
            info = classes.get(type(module))
            if info is None:
                info = classes[type(module)] = _class_info(module)
            if info.wrapper is not None:
                if info.wrapper is FSDP1:
                    unflatten(module, self.flat, path)  # before the wrapped modules, which the stand-ins replace
                    self.sharded = self.sharded or bool(self.flat)
                inner = self._unwrap(module, info.wrapper)
                if inner is not None:
                    stack.append((path, inner, parent))
                    continue
            name = info.name
            if info.scripted:
                original = getattr(module, "original_name", None)
                name = original if isinstance(original, str) else name
            self.node_modules.append(module)
            first_path = seen.get(id(module))
            if first_path is not None:
                tree.add_module(path, name, parent, same_as=first_path)
                if first_path == "" or path.startswith(first_path + "."):
                    self.cycles.append((path, first_path))  # a module that holds one of its ancestors
                else:
                    self.reused.setdefault(first_path, []).append(path)
                    self._reused_paths.append((path, first_path))
                continue
            seen[id(module)] = path
            if info.fsdp2:
                gathered, cause = fsdp2_gathered(module)
                if gathered:
                    self.gathered.update(gathered)
                    self.gathered_causes.update(dict.fromkeys(gathered, cause))
                    self.gathered_by_cause.setdefault(cause, ([], {}))[0].append(path or "(model)")
            index = tree.add_module(path, name, parent)
            prefix = path + "." if path else ""
            if self.flat:
                self._list_unflattened(index, path, prefix, module)
            elif module._parameters or module._buffers:
                self._list_own_tensors(index, path, prefix, module)
            if info.packed or (info.scripted and _scripted_torch_ao(module)):
                self._list_packed_weights(index, path, prefix, module, name)
            elif not info.scripted:
                packed, apart = _attributes_to_look_into(module, containers)
                if packed:
                    self._list_packed_weights(index, path, prefix, module, name, quantized_only=True)
                if apart:
                    self._held_apart += [(path, attribute, kind, held) for attribute, kind, held in apart]
            children = module._modules
            if "parametrizations" in children:
                children = self._fold_parametrizations(index, path, module)
            for child_name, child in reversed(children.items()):
                if child is not None:
                    stack.append((prefix + child_name, child, index))

    def _unwrap(self, module: nn.Module, wrapper: Wrapper) -> nn.Module | None:
        """The module that ``module`` wraps, when it holds nothing else."""
        if not _only_wraps(module, wrapper):
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
        for tensor_name, chain in parametrizations.items():
            first = len(self._entries)
            for sub_path, sub_module in chain.named_modules(prefix=_join(path, f"parametrizations.{tensor_name}")):
                self._list_own_tensors(index, path, sub_path + ".", sub_module)
            stored = [entry[2] for entry in self._entries[first:]]
            kinds = ", ".join(type(step).__name__ for step in chain.children())
            self.parametrized.append((_join(path, tensor_name), kinds, stored))
        return {key: child for key, child in module._modules.items() if key != "parametrizations"}

    def _list_own_tensors(self, owner: int, owner_path: str, prefix: str, module: nn.Module) -> None:
        """List the tensors registered directly on ``module`` (names start with ``prefix``) for node ``owner``."""
        entries = self._entries
        for name, param in module._parameters.items():
            if param is not None:
                entries.append((owner, owner_path, prefix + name, param, "parameter", None))
                if param.is_quantized:
                    self._list_qparams(owner, owner_path, prefix + name, param)
        if module._buffers:
            non_persistent = module._non_persistent_buffers_set
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    entries.append((owner, owner_path, prefix + name, buffer, "buffer", name not in non_persistent))
                    if buffer.is_quantized:
                        self._list_qparams(owner, owner_path, prefix + name, buffer)

    def _list_qparams(self, owner: int, owner_path: str, name: str, tensor: torch.Tensor) -> None:
        """List the scales and zero points a tensor quantized per channel holds beside its values, as quantization
        tensors (as a checkpoint of it stores them)."""
        for suffix, part in per_channel_qparams(tensor):
            self._entries.append((owner, owner_path, name + suffix, part, "quantization", None))

    def _list_unflattened(self, owner: int, owner_path: str, prefix: str, module: nn.Module) -> None:
        """Like ``_list_own_tensors``, with FSDP1's flat parameters shown as the original parameters."""
        first = len(self._entries)
        self._list_own_tensors(owner, owner_path, prefix, module)
        flat = self.flat
        kept = []
        for entry in self._entries[first:]:
            tensor = entry[3]
            if id(tensor) in flat.hidden:
                continue
            stand_in = flat.replaced.get(id(tensor))
            kept.append(entry if stand_in is None else (*entry[:3], stand_in, *entry[4:]))
        del self._entries[first:]
        self._entries += kept
        for name, stand_in in flat.on_module.get(id(module), ()):
            if module._parameters.get(name) is None:  # use_orig_params registers them itself
                self._entries.append((owner, owner_path, prefix + name, stand_in, "parameter", None))

    def _list_packed_weights(
        self, owner: int, owner_path: str, prefix: str, module: nn.Module, kind: str, quantized_only: bool = False
    ) -> None:
        packed = packed_weights(module, self._packed_read, quantized_only)
        if packed is None:
            return
        self._packed_read.update(packed.children_read)
        # Packed weights are not trained: fresh, detached tensors say so (requires_grad False).
        weights = [(label, tensor.detach()) for label, tensor in packed.weights]
        objects = frozenset(id(value) for value in packed_objects(module).values())
        earlier = self._packed_by_object.get(objects) if objects else None
        shared = earlier is not None and [label for label, _ in earlier] == [label for label, _ in weights]
        if shared:  # each unpack makes fresh tensors: the first module's stand for the objects, a tie here
            weights = earlier  # type: ignore[assignment]
        elif objects:
            self._packed_by_object[objects] = weights
        for label, tensor in weights:
            self._entries.append((owner, owner_path, prefix + label, tensor, "parameter", None))
            if not shared:  # the scales and zero points too are the first module's
                self._list_qparams(owner, owner_path, prefix + label, tensor)
        layer = f"'{shortened(owner_path) or '(model)'}' ({kind})"
        if packed.weights:
            self.packed.append((layer, packed.reader, [prefix + label for label, _ in packed.weights]))
        declared = declared_dtype(module)
        dtype = "unknown" if declared is None else str(declared).removeprefix("torch.")
        for attribute, why in packed.unread:
            self.unread.append((owner, layer, prefix + attribute, dtype, why))

    # --- the tensors ------------------------------------------------------------------------------------------

    def _make_records(self) -> None:
        records, owners, record_index = self.records, self.owners, self._record_index
        dtype_info, special_classes, devices = self._dtype_info, self._special_classes, self.devices
        strided = torch.strided
        flat_shards = self.flat.shards
        storage_holders = _storage_holders
        for owner, owner_path, name, tensor, kind, persistent in self._entries:
            key = id(tensor)
            position = record_index.get(key)
            if position is not None:
                self._tie(owner, position, name, tensor, kind, persistent)
                continue
            record_index[key] = len(records)
            if self.gathered and key in self.gathered:
                # counted as the sharded parameter it was gathered from: a mixed-precision policy gathers copies in
                # its param_dtype (bf16), the parameters stay in theirs; resharded to a smaller group after a forward,
                # the registered DTensor holds its part of the whole
                held = tensor.to_local() if self._is_dtensor(tensor) else tensor  # type: ignore[attr-defined]
                storage_key, storage_bytes = held_storage(held)
                self.gathered_by_cause[self.gathered_causes[key]][1][storage_key or key] = storage_bytes
                tensor = self.gathered[key]
            shard = flat_shards.get(key) if flat_shards else None
            flat_shard = shard is not None
            if not flat_shard:
                devices.add(tensor.device)
            dtype = tensor.dtype
            dtype_name, element_bytes, entry = dtype_info.get(dtype) or self._learn_dtype(dtype)
            trainable = tensor.requires_grad if kind == "parameter" else None
            cls = type(tensor)
            special = special_classes.get(cls)
            if special is None:
                # Decided once per class: isinstance on a Parameter goes through a slow Python metaclass hook.
                special = special_classes[cls] = cls not in PLAIN_TENSOR_CLASSES
            if special and isinstance(tensor, (UninitializedParameter, UninitializedBuffer)):
                self.lazy.setdefault(owner_path, []).append(name)
                records.append(TensorRecord(name, None, None, dtype_name, None, kind, trainable, persistent))
            else:
                numel = tensor.numel()
                try:
                    # a jagged nested tensor's ragged dimension is symbolic (torch's (2, j1, 3))
                    shape = None if special and tensor.is_nested else tuple(tensor.shape)
                except RuntimeError:  # a nested tensor of the strided layout has no sizes to read
                    shape = None
                if shape is None:
                    self.size_notes.append(
                        f"{shortened(name)} is a nested tensor of {tensor.size(0):,} component(s), which has no one "
                        f"shape: its {numel:,} elements are counted"
                    )
                if kind == "parameter" and tensor.__dict__:  # ZeRO-3 keeps its attributes on the parameter
                    zero3 = zero3_sharding(tensor)
                    if zero3 is not None:
                        if numel:  # gathered now (GatheredParameters, a forward): the partition is still its share
                            self.zero3_gathered.append(name)
                            self.zero3_gathered_bytes += numel * tensor.element_size()
                        shape, numel, shard, storage = zero3
                        self._hold(key, shard.local_numel, storage)
                if element_bytes:
                    nbytes = numel * element_bytes
                elif entry is not None:
                    nbytes = entry.nbytes(numel)
                else:  # a dtype newer than the table: torch's element size is exact for it, and the notes say so
                    nbytes = numel * tensor.element_size()
                if special and shard is None and self._is_dtensor(tensor):
                    # a buffer counts at its global size, as its shape says; only parameters make a rank's share
                    if kind == "parameter":
                        shard, storage = dtensor_sharding(tensor)
                        self._hold(key, shard.local_numel, storage)
                    else:
                        local = tensor.to_local()  # type: ignore[attr-defined]
                        if local.numel() != numel:
                            placements = ", ".join(map(placement_text, tensor.placements))  # type: ignore[attr-defined]
                            self.size_notes.append(
                                f"{shortened(name)} is a buffer sharded as a DTensor ({placements}): counted at its "
                                f"global size, {format_bytes(nbytes)}; this rank holds "
                                f"{format_bytes(local.numel() * local.element_size())} of it"
                            )
                elif flat_shard and shard is not None:
                    self.local_params += shard.local_numel  # FSDP1: the flat shards' bytes are added apart
                elif special or tensor.layout is not strided or not tensor.is_contiguous():
                    nbytes, note = unusual_bytes(name, tensor, nbytes)
                    if note:
                        self.size_notes.append(note)
                    # a Parameter subclass, a fake tensor: a storage of its own, as a plain one's
                    if tensor.layout is strided and shard is None and not (special and _holds_others(tensor)):
                        self._place(tensor, nbytes)
                elif shard is None:  # the common case, inlined: only a view or a shared storage goes further
                    try:
                        held = tensor.untyped_storage()
                    except (RuntimeError, NotImplementedError):  # no storage to look at (torch.func's wrappers)
                        held = None
                    if held is not None:
                        size = held.nbytes()
                        if size < nbytes:
                            self.size_notes.append(_freed_note(name, size, nbytes))
                        elif size > nbytes or storage_holders(held._cdata) > 2:
                            self._place(tensor, nbytes)
                if dtype_name == PACKED_FP4 and shape:  # its values, two an element
                    (shape, dtype_name), numel = fp4_values(shape), numel * 2
                    self.fp4.append(name)
                # positional: keyword arguments make a NamedTuple noticeably slower to build
                records.append(TensorRecord(name, shape, numel, dtype_name, nbytes, kind, trainable, persistent, (),
                                            None, shard))  # fmt: skip
            owners.append(owner)

    def _place(self, tensor: torch.Tensor, nbytes: int) -> None:
        """Note which storage a dense tensor is on, to tell where the bytes counted are not the bytes held: a view
        that keeps a larger storage alive, or tensors that share one."""
        try:
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
        except (RuntimeError, NotImplementedError):  # no storage to look at
            return
        address: int | tuple[str, int] = pointer
        if not pointer:  # no bytes at all (nothing held), or on meta: a storage of its own all the same
            if storage.device.type != "meta" or not storage.nbytes():
                return
            address = ("meta", storage._cdata)
        first = self._storage_first.setdefault(address, tensor)
        if first is tensor:
            if storage.nbytes() > nbytes:
                self._storage_users.setdefault(address, [tensor])
        elif first.device == tensor.device:  # not two devices' memory at the same address
            users = self._storage_users.setdefault(address, [first])
            users.append(tensor)

    def _storage_notes(self) -> list[str]:
        """Where the bytes counted (each tensor at its own size, as ``numel()`` says) are not those its storage
        holds."""
        notes = []
        records, record_index = self.records, self._record_index
        for users in self._storage_users.values():
            held = users[0].untyped_storage().nbytes()
            counted = [records[record_index[id(tensor)]] for tensor in users]
            counted_bytes = sum(record.bytes or 0 for record in counted)
            names = [shortened(record.name) for record in counted]
            if held > counted_bytes:
                subject = f"{names[0]} is a view" if len(names) == 1 else f"{_listed(names)} are views"
                notes.append(
                    f"{subject} of a storage of {format_bytes(held)}, counted at {format_bytes(counted_bytes)}: the "
                    "whole storage stays in memory (and torch.save writes all of it)"
                )
            elif held < counted_bytes:
                notes.append(
                    f"{_listed(names)} share one storage of {format_bytes(held)}, counted at "
                    f"{format_bytes(counted_bytes)}: each at its own size, though they hold the same memory"
                )
        return notes

    def _is_dtensor(self, tensor: torch.Tensor) -> bool:
        dtensor = dtensor_class()
        return dtensor is not None and isinstance(tensor, dtensor)

    def _hold(self, key: int, numel: int, storage: HeldStorage) -> None:
        """Count a shard of a parameter (registered as ``key``) as held by this rank, in ``storage``: a storage that
        several shards are views of is held once."""
        self.sharded = True
        self.local_params += numel
        storage_key, storage_bytes = storage
        self.local_storages[key if storage_key is None else storage_key] = storage_bytes

    def local_share(self) -> tuple[int, int] | None:
        """``(elements, bytes)`` of the parameters this rank holds, when the model is sharded; the parameters that
        are not sharded are held whole."""
        if not self.sharded:
            return None
        whole = [r for r in self.records if r.kind == "parameter" and r.sharding is None]
        elements = self.local_params + sum(r.numel or 0 for r in whole)
        storage = sum(self.local_storages.values()) + self.flat.local_storage_bytes + sum(r.bytes or 0 for r in whole)
        return elements, storage

    def _learn_dtype(self, dtype: torch.dtype) -> tuple[str, int, DType | None]:
        name = str(dtype).removeprefix("torch.")
        entry = dtype_table.find(name)
        if entry is None:
            self.unknown_dtypes.add(name)
        # Types stored one element per whole number of bytes take the fast path: numel × bytes.
        element_bytes = entry.storage_block_bytes if entry is not None and entry.block_elements == 1 else 0
        self._dtype_info[dtype] = info = (name, element_bytes, entry)
        return info

    def _tie(
        self, owner: int, position: int, name: str, tensor: torch.Tensor, kind: TensorKind, persistent: bool | None
    ) -> None:
        """A tensor seen before under another name: an alias, counted under its first owner."""
        record = self.records[position]
        if persistent and record.persistent is False:
            # A buffer non-persistent where it was met first and persistent here: the state dict holds it (under
            # this name), so a checkpoint has it
            self.records[position] = record = record._replace(persistent=True)
        if kind == "parameter" and record.kind == "buffer":
            # Registered as a buffer first and as a parameter here: it is a parameter (as named_parameters says),
            # named and owned where it is one.
            self.records[position] = record._replace(
                name=name, kind="parameter", trainable=tensor.requires_grad, persistent=None
            )
            self.tree.add_shared(self.owners[position], name)
            self.tie_owners.append((self.owners[position], position))
            self.owners[position] = owner
            name = record.name
        else:
            self.tree.add_shared(owner, record.name)
            self.tie_owners.append((owner, position))
        self._aliases.setdefault(position, []).append(name)
        self._tied.setdefault(position, []).append(name)

    def _alias_reused_modules(self) -> None:
        """A module object reached under a second path adds, for each name under its first path, an alias."""
        if not self._reused_paths:
            return
        names = _NameTree()
        for position, record in enumerate(self.records):
            for name in (record.name, *self._aliases.get(position, ())):
                names.add(name, position)
        reused = {first_path for _, first_path in self._reused_paths}
        # in the order of the walk, which meets a module's own reuses (a1.0, the b it holds) before its reuse (a2, a1)
        for path, first_path in self._reused_paths:
            found = [(_join(path, name), position) for name, position in names.under(first_path)]
            for alias, position in found:
                self._aliases.setdefault(position, []).append(alias)
            if found and _within_any(path, reused):  # a module reused in turn holds them: its reuse names them too
                for alias, position in found:
                    names.add(alias, position)

    # --- notes ------------------------------------------------------------------------------------------------

    def _unregistered_notes(self) -> list[str]:
        """The modules and parameters kept in plain containers, outside the model's tree (a list where an
        nn.ModuleList was meant): their parameters are not counted, as torch's ``parameters()`` leaves them out."""
        if not self._held_apart:
            return []
        in_tree = {id(module) for module in self.node_modules}
        counted = set(self._record_index)
        notes = []
        for path, attribute, kind, held in self._held_apart:
            modules = [item for item in held if isinstance(item, nn.Module) and id(item) not in in_tree]
            parameters = [item for item in held if isinstance(item, nn.Parameter) and id(item) not in counted]
            if not (modules or parameters):  # references to the model's own (a list of some of its layers)
                continue
            apart = {id(p): p for p in [*_parameters_beneath(modules), *parameters] if id(p) not in counted}
            lazy = sum(isinstance(p, UninitializedParameter) for p in apart.values())
            numel = sum(p.numel() for p in apart.values() if not isinstance(p, UninitializedParameter))
            what = " and ".join(
                f"{len(items)} {noun}(s)" for items, noun in ((modules, "module"), (parameters, "parameter")) if items
            )
            plural = "Dict" if kind == "dict" else "List"
            registers = " or ".join(
                f"nn.{noun}{plural}" for items, noun in ((modules, "Module"), (parameters, "Parameter")) if items
            )
            counts = [f"{numel:,} parameters"] if numel or not lazy else []
            counts += [f"{lazy} uninitialised lazy parameter(s), of no size yet,"] if lazy else []
            notes.append(
                f"'{shortened(path) or '(model)'}' keeps {what} in {attribute} (a {kind}), which does not register "
                f"them ({registers} would): their {' and '.join(counts)} are not counted, as torch's parameters() "
                "and state_dict() leave them out"
            )
        return notes

    def collect_notes(self) -> list[str]:
        notes = [
            f"unwrapped {label}: names are shown without its '{inner}.' prefix"
            for label, inner in self.unwrapped.items()
        ]
        tie_notes = []
        for position, names in self._tied.items():
            first = shortened(self.records[position].name)
            verb = "is" if len(names) == 1 else "are"
            tie_notes.append(f"{_listed(names)} {verb} the same tensor as {first} (tied): counted once, under {first}")
        notes += _capped(tie_notes, "tied tensors (see each tensor's aliases)")
        reuse_notes = []
        for first_path, paths in self.reused.items():
            first = shortened(first_path)
            quoted = [shortened(f"'{path}'") for path in paths]
            if len(paths) == 1:
                subject = f"module {quoted[0]} is the same object as '{first}': its tensors are"
            else:
                subject = f"modules {_listed(quoted)} are the same object as '{first}': their tensors are"
            reuse_notes.append(f"{subject} counted once, under '{first}'")
        notes += _capped(reuse_notes, "reused modules (see same_as)")
        for path, ancestor in self.cycles:
            notes.append(
                f"module '{shortened(path)}' refers back to '{shortened(ancestor) or '(model)'}', which contains it "
                "(a cycle): it is not walked again"
            )
        for path, names in self.lazy.items():
            notes.append(
                f"{len(names)} uninitialised lazy tensor(s) in '{shortened(path) or '(model)'}' ({_listed(names)}): "
                "their sizes are unknown until the first forward pass; totals are incomplete"
            )
        for name, kinds, stored in self.parametrized:
            what = f"the stored {', '.join(stored)}" if stored else "no stored tensors of its own"
            notes.append(f"{shortened(name)} is parametrized ({kinds}): counted as {what}")
        for layer, reader, names in self.packed:
            notes.append(
                f"{layer} keeps its weights packed outside its parameters: counted through {reader} as {_listed(names)}"
            )
        for _, layer, name, _, why in self.unread:
            notes.append(
                f"{layer} keeps weights packed in {shortened(name)} that cannot be read ({why}): their size is "
                "unknown; totals are incomplete"
            )
        notes += _capped(self.size_notes + self._storage_notes(), "tensors with unusual storage")
        notes += [fp4_note(self.fp4, _MAX_NAMES_IN_NOTE)] if self.fp4 else []
        notes += _capped(self._unregistered_notes(), "containers of modules or parameters not registered")
        for cause, (paths, storages) in self.gathered_by_cause.items():
            notes.append(
                f"FSDP2 parameters of {_listed(paths)} are gathered now ({cause}): this rank's share is of their "
                f"shards; it also holds the gathered copies, {sum(storages.values()):,} B, until they are resharded"
            )
        if self.zero3_gathered:
            notes.append(
                f"ZeRO-3 parameters gathered now ({_listed([shortened(n) for n in self.zero3_gathered])}): this "
                "rank's share is of their partitions; it also holds the gathered copies, "
                f"{self.zero3_gathered_bytes:,} B, until they are released"
            )
        if self.flat.gathered_paths:
            notes.append(
                f"FSDP1 flat parameters of {_listed(self.flat.gathered_paths)} are gathered now (inside "
                "summon_full_params, or after a forward that does not reshard): this rank's share is of their shards; "
                f"it also holds the gathered copies, {self.flat.gathered_bytes:,} B, until they are resharded"
            )
        for dtype in sorted(self.unknown_dtypes):
            notes.append(f"dtype {dtype} is not in paramscope's dtype table: its bytes come from torch's element_size")
        return notes


class _Held:
    """What each module holds, its subtree's tensors and the shared ones counted elsewhere, read off the walk's
    records: what a layer's formula is checked against. Each module's counts cost O(1) (its row's figures and the
    ties into its subtree), so a model as deep as it is long costs no more than a wide one."""

    def __init__(self, walk: _Walk, nodes: tuple[ModuleNode, ...]) -> None:
        self.walk, self.nodes = walk, nodes
        self.end = [len(nodes)] * len(nodes)
        """One past the last node of each module's subtree (pre-order keeps a subtree together)."""
        parents = [-1] * len(nodes)
        open_nodes: list[int] = []
        for index, node in enumerate(nodes):
            while open_nodes and nodes[open_nodes[-1]].depth >= node.depth:
                self.end[open_nodes.pop()] = index
            parents[index] = open_nodes[-1] if open_nodes else -1
            open_nodes.append(index)
        self.shared: dict[int, dict[int, TensorRecord]] = {}
        """Per module, the records it holds that are counted outside its subtree (tied weights)."""
        for holder, position in walk.tie_owners:
            counted = walk.owners[position]
            while holder >= 0 and not holder <= counted < self.end[holder]:
                self.shared.setdefault(holder, {})[position] = walk.records[position]
                holder = parents[holder]
        self._entry_owners: list[int] | None = None
        self._stored: dict[str, str] | None = None

    def counts(self, index: int) -> tuple[int, int, bool]:
        """Parameters and buffer elements the module holds, and whether every size among them is known."""
        node = self.nodes[index]
        params, buffers, complete = node.params, node.buffers, node.complete
        for record in self.shared.get(index, {}).values():
            if record.numel is None:
                complete = False
            elif record.kind == "parameter":
                params += record.numel
            elif record.kind == "buffer":
                buffers += record.numel
        return params, buffers, complete

    def shapes(self, index: int) -> dict[str, tuple[int, ...] | None]:
        """The tensors the module holds by name below it, with their shapes; a parametrized tensor (``weight``
        computed from ``parametrizations.weight.original``) with ``None``: only its stored tensors have shapes."""
        walk = self.walk
        if self._entry_owners is None:
            self._entry_owners = [entry[0] for entry in walk._entries]  # pre-order: sorted
            self._stored = {stored: name for name, _, names in walk.parametrized for stored in names}
        assert self._stored is not None
        start = bisect.bisect_left(self._entry_owners, index)
        stop = bisect.bisect_left(self._entry_owners, self.end[index], start)
        path = self.nodes[index].path
        skip = len(path) + 1 if path else 0
        shapes: dict[str, tuple[int, ...] | None] = {}
        for entry in walk._entries[start:stop]:
            parametrized = self._stored.get(entry[2])
            if parametrized is not None:
                shapes[parametrized[skip:]] = None
            else:
                shapes[entry[2][skip:]] = walk.records[walk._record_index[id(entry[3])]].shape
        return shapes


def _dims(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def _differences(expected: Mapping[str, tuple[int, ...]], held: Mapping[str, tuple[int, ...] | None]) -> list[str]:
    """How the tensors a module holds differ from those its formula describes, in words."""
    differences = []
    for name, shape in expected.items():
        if name not in held:
            differences.append(f"{name} {_dims(shape)} is missing")
        elif (actual := held[name]) is not None and actual != shape:
            differences.append(f"{name} is {_dims(actual)}, not {_dims(shape)}")
    for name, actual in held.items():
        if name not in expected:
            differences.append(
                f"{shortened(name)}{'' if actual is None else ' ' + _dims(actual)} is not in the formula"
            )
    return differences


def _explain(walk: _Walk, nodes: tuple[ModuleNode, ...]) -> tuple[tuple[ModuleNode, ...], list[str]]:
    """Each node with its layer formula, checked against the records of the tensors the module holds (as the report
    counts them), and the notes that raises."""
    from .. import formulas

    held = _Held(walk, nodes)
    explained, notes, differing, unchecked, unwritten = [], [], [], [], []
    counts: dict[Any, formulas.Count] = {}  # a model's repeated layers count alike
    for index, (node, module) in enumerate(zip(nodes, walk.node_modules, strict=True)):
        if node.same_as is not None:
            explained.append(node)
            continue
        explanation = formulas.explain_module(module, counts)
        layer = f"'{shortened(node.path) or '(model)'}' ({node.type})"
        if explanation.count is None:
            entry = explanation.entry
            if entry is not None and entry.kind == "formula" and not node.complete:
                # a lazy layer, or one whose formula reads a lazy child's sizes: they come with the first forward
                unwritten.append(f"{layer}: no {entry.name} formula until the uninitialised lazy tensors in it "
                                 "have sizes (its first forward pass)")  # fmt: skip
            elif entry is not None and entry.kind == "formula":
                notes.append(f"{layer}: {explanation.reason}; its tensors are counted")
            elif node.own_params and node.complete:
                notes.append(f"{layer} has parameters of its own and no formula: they are counted directly")
            explained.append(node)
            continue
        # All tensors the layer holds, shared ones included: a tied head still has its formula's weight.
        params, buffers, complete = held.counts(index)
        count = explanation.count
        if not complete:
            unchecked.append(
                f"{layer}: the {count.layer} formula gives {count.params:,} parameters and {count.buffers:,} buffer "
                "elements, which cannot be checked: some of its tensors have no known size"
            )
            explained.append(node._replace(formula=count.text))
            continue
        matches = (count.params, count.buffers) == (params, buffers)
        if not matches:
            differing.append(
                f"{layer}: the {count.layer} formula gives {count.params:,} parameters and {count.buffers:,} buffer "
                f"elements, but its tensors hold {params:,} and {buffers:,}; the tensors are counted"
            )
        elif count.tensors is not None and (differences := _differences(count.tensors(), held.shapes(index))):
            matches = False
            shown = "; ".join(differences[:_MAX_NAMES_IN_NOTE])
            more = (
                f" and {len(differences) - _MAX_NAMES_IN_NOTE:,} more" if len(differences) > _MAX_NAMES_IN_NOTE else ""
            )
            differing.append(
                f"{layer}: its tensors are not those of the {count.layer} formula ({shown}{more}); the tensors are "
                "counted"
            )
        explained.append(node._replace(formula=count.text, formula_matches=matches))
    notes += _capped(differing, "layers whose tensors differ from their formula (see formula_matches)")
    notes += _capped(unchecked, "layers whose formula cannot be checked")
    notes += _capped(unwritten, "layers with no formula until their lazy tensors have sizes")
    return tuple(explained), notes


def inspect_module(
    model: nn.Module, *, target: str | None = None, device: str | None = None, explain: bool = False
) -> Report:
    """Build the report of a live module. The model is only read, never changed.

    With ``explain``, each module gets its layer formula (see :mod:`paramscope.formulas`), checked against its
    tensors.
    """
    model_read(model)
    walk = _Walk()
    with collector_paused():  # the walk makes ~2 acyclic objects a tensor, each a full collection would walk again
        walk.run(model)
        modules, totals, by_dtype = walk.tree.build(walk.records, walk.owners)
    notes = walk.collect_notes()
    share = walk.local_share()
    if share is not None:
        totals = replace(totals, local_params=share[0], local_param_bytes=share[1])
        walk.devices |= walk.flat.devices
    if explain:
        modules, formula_notes = _explain(walk, modules)
        notes += formula_notes
    constants = _graph_constants_note(walk.node_modules[0])
    if constants:
        notes.append(constants)
    if target is None:
        root = _original_class(type(walk.node_modules[0]))  # the model itself once wrappers are looked through
        target = f"{root.__module__}.{root.__qualname__}"
    if device is None and walk.devices:
        device = ", ".join(sorted(str(d) for d in walk.devices))
    embeddings = (nn.Embedding, nn.EmbeddingBag)
    embedding_layers = [node.path for node, module in zip(modules, walk.node_modules, strict=True)
                        if isinstance(module, embeddings)]  # fmt: skip
    report = Report(
        source=Source(kind="module", target=target, device=device),
        totals=totals,
        by_dtype=by_dtype,
        tensors=tuple(walk.records),
        modules=modules,
        notes=tuple(notes),
        embedding_layers=frozenset(embedding_layers),
    )
    return with_active_params(report, _hf_config(walk.node_modules[0]))


def _graph_constants_note(model: nn.Module) -> str | None:
    """What a TorchScript module's graph holds as constant tensors, which are neither parameters nor buffers: a
    module frozen with ``torch.jit.freeze`` holds its weights so, and would otherwise count as 0 in silence."""
    if not isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        graph = model.graph
    except (AttributeError, RuntimeError):  # a module without a forward
        return None
    # findAllNodes looks into the graph's blocks too (branches, loops); torch's stubs do not list it
    nodes = graph.findAllNodes("prim::Constant")  # type: ignore[attr-defined]
    tensors = [value for node in nodes if isinstance(value := node.output().toIValue(), torch.Tensor)]
    if not tensors:
        return None
    elements = sum(tensor.numel() for tensor in tensors)
    size = format_bytes(sum(tensor.numel() * tensor.element_size() for tensor in tensors))
    return (
        f"the TorchScript graph holds {len(tensors):,} constant tensor(s), {elements:,} elements ({size}), that are "
        "neither parameters nor buffers and are not counted (a module frozen with torch.jit.freeze holds its weights "
        "so: inspect it before freezing)"
    )


def _hf_config(model: nn.Module) -> dict[str, Any] | None:
    """A transformers model's config as a dict (for mixture-of-experts settings)."""
    try:  # a foreign model's attribute and method (a property that raises): no config is better than a crash
        to_dict = getattr(getattr(model, "config", None), "to_dict", None)
        config = to_dict() if callable(to_dict) else None
    except Exception:
        return None
    return config if isinstance(config, dict) else None

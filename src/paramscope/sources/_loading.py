"""What a model's own load code makes of a checkpoint's names: ``load_state_dict`` run on meta stand-ins.

``load_state_dict`` does more than match names: each module's ``_load_from_state_dict`` and the hooks registered
with ``_register_load_state_dict_pre_hook`` may rename keys of the state dict before they are matched (the
``weight_norm`` parametrization takes an old ``weight_g``/``weight_v`` as ``parametrizations.weight.original0``/
``original1``) or add keys of their own (BatchNorm fills ``num_batches_tracked`` for a checkpoint saved before its
version 2, or without versions at all: safetensors, a dict made by hand), and post-hooks may drop keys from the
unexpected ones. That code is the model's own, as its ``__init__`` is, and it is run here as torch runs it, on
stand-ins:

- the checkpoint's tensors are empty meta tensors of their shapes and dtypes, under their stored names, with the
  ``_metadata`` a ``torch.save``'d state dict carries (its module versions); no value of the file is read;
- the model is a tree of shells, one per module: an instance of the module's class made without ``__init__``, with a
  copy of the module's attributes (its dicts, lists and sets copied too), meta stand-ins for its parameters and
  buffers, the shells of its submodules, and its load hooks bound to the shell where they were bound to the module.
  What the load code writes goes to the shells, never to the model.

Each shell's ``_load_from_state_dict`` is wrapped to see, once it has run, which tensor each of the module's keys
holds: a checkpoint tensor (under its stored name or another), or one the load code made itself. When the load
code fails on meta, or the shells' keys are not the report's names (a sharded model whose wrappers rename its
state dict), there is no answer and names are compared as stored.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import types
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _WrappedHook
from torch.nn.parameter import is_lazy

from .._diff import LoadedNames
from .._errors import first_line
from .._report import Report
from .._units import shortened
from .module import forward_module, reported_paths

_CONTAINERS = (dict, list, set)
LoadFunction = Callable[[dict[str, Any], str, dict[str, Any], bool, list[str], list[str], list[str]], None]


def _stand_in(tensor: torch.Tensor) -> torch.Tensor:
    """An empty meta tensor of ``tensor``'s shape and dtype, a Parameter where it is one (an uninitialised lazy one
    stays uninitialised: its load hook materialises it from the checkpoint's shape)."""
    if is_lazy(tensor):
        return type(tensor)(requires_grad=tensor.requires_grad, device="meta", dtype=tensor.dtype)  # type: ignore[call-arg]
    empty = torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device="meta")
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(empty, requires_grad=tensor.requires_grad)
    return empty


def _shells(model: nn.Module) -> dict[int, nn.Module]:
    """A shell per module of ``model`` (see the module docstring), by the module's id; a module reused is one
    shell, a tensor tied is one stand-in."""
    shells: dict[int, nn.Module] = {}
    tensors: dict[int, torch.Tensor] = {}

    def stand_in(tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None:
            return None
        if id(tensor) not in tensors:
            tensors[id(tensor)] = _stand_in(tensor)
        return tensors[id(tensor)]

    stack = [model]
    order = []
    while stack:
        module = stack.pop()
        if id(module) in shells:
            continue
        shell = type(module).__new__(type(module))
        attributes = {name: copy.copy(value) if isinstance(value, _CONTAINERS) else value
                      for name, value in vars(module).items()}  # fmt: skip
        attributes["_parameters"] = {name: stand_in(value) for name, value in module._parameters.items()}
        attributes["_buffers"] = {name: stand_in(value) for name, value in module._buffers.items()}
        object.__setattr__(shell, "__dict__", attributes)
        shells[id(module)] = shell
        order.append(module)
        stack.extend(child for child in module._modules.values() if child is not None)
    # Written into each shell's __dict__, never through setattr: a wrapper's __setattr__ (torch.compile's
    # OptimizedModule) may pass it on to the module it wraps, which is the model's.
    for module in order:
        attributes = vars(shells[id(module)])
        children = module._modules.items()
        attributes["_modules"] = {name: None if child is None else shells[id(child)] for name, child in children}
        for name, value in attributes.items():  # a method set on the instance (a patched _load_from_state_dict)
            if isinstance(value, types.MethodType) and id(value.__self__) in shells:
                attributes[name] = types.MethodType(value.__func__, shells[id(value.__self__)])
        for kind in ("_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"):
            hooks = attributes.get(kind)
            if isinstance(hooks, dict):
                for key, hook in hooks.items():
                    hooks[key] = _rebound(hook, shells)
    return shells


# What a shell holds of its own, not copied from its module: stand-ins, shells and hooks bound to it.
_SHELL_OWN = frozenset({"_parameters", "_buffers", "_modules", "_load_state_dict_pre_hooks",
                        "_load_state_dict_post_hooks"})  # fmt: skip
# What load_state_dict calls of a module besides its class's methods: what a shell holds under these names runs.
_LOAD_CODE = ("_load_from_state_dict", "load_state_dict", "set_extra_state")


def _holding_the_model(shells: dict[int, nn.Module], model: nn.Module) -> str | None:
    """The path of a shell whose load code (hooks, functions set on the instance, or its class's own
    ``_load_from_state_dict`` with the attributes copied into the shell) reaches a module or tensor of ``model``
    itself (see :func:`_holds`): run on the shell, it would reach the model. None when there is none."""
    held = {id(module) for module in model.modules()}
    held |= {id(tensor) for tensor in (*model.parameters(), *model.buffers())}
    for path, shell in shells[id(model)].named_modules(remove_duplicate=False):
        attributes = vars(shell)
        code = [attributes[name] for name in _LOAD_CODE if name in attributes]
        for kind in ("_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"):
            hooks = attributes.get(kind)
            code += list(hooks.values()) if isinstance(hooks, dict) else []
        load = getattr(type(shell), "_load_from_state_dict", None)
        if not getattr(load, "__module__", "").startswith("torch."):  # a class's own, which reads the shell's copies
            copied = [value for name, value in attributes.items() if name not in _SHELL_OWN]
            code += [load, copied]
        if any(_holds(function, held) for function in code):
            return path or "(model)"
    return None


# The objects the check of what load code reaches looks at before it gives up, taking the code for one that holds
# the model: a hook's closure, its globals and what they hold are a few dozen in real models.
_REACH_BUDGET = 5_000


def _holds(value: Any, held: set[int]) -> bool:
    """Whether ``value`` (load code) reaches an object of ``held`` (by ``id``): through a closure, the globals its
    code names (nested functions' too), a partial's arguments, a bound method's object, and the attributes and items
    of whatever those are, without end but for modules and classes, and torch's own code, which holds no user's
    model. True too when there is more to look at than :data:`_REACH_BUDGET`: not known, so not run."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in held:
            return True
        if id(item) in seen or isinstance(item, (type, types.ModuleType, str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(item))
        if len(seen) > _REACH_BUDGET:
            return True
        if isinstance(item, (torch.Tensor, nn.Module)):
            continue  # not the model's (checked above): a tensor or module of its own, whose insides are torch's
        if isinstance(item, _WrappedHook):
            stack.append(item.hook)  # its module, where it is passed one, is the shell (see _rebound)
        elif isinstance(item, functools.partial):
            stack += [item.func, *item.args, *item.keywords.values()]
        elif isinstance(item, types.MethodType):
            stack += [item.__self__, item.__func__]
        elif isinstance(item, types.FunctionType):
            if item.__module__ and item.__module__.startswith("torch."):
                continue
            for cell in item.__closure__ or ():
                with contextlib.suppress(ValueError):  # a cell not assigned yet
                    stack.append(cell.cell_contents)
            stack += [*(item.__defaults__ or ()), *(item.__kwdefaults__ or {}).values()]
            stack += [item.__globals__[name] for name in _names_used(item.__code__) if name in item.__globals__]
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack += list(item)
        elif isinstance(item, dict):
            stack += list(item.values())
        else:
            stack += list(getattr(item, "__dict__", {}).values())
            stack += [getattr(item, name) for name in getattr(type(item), "__slots__", ()) if hasattr(item, name)]
    return False


def _names_used(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the functions defined in it use."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names_used(constant)
    return names


def _rebound(hook: Any, shells: dict[int, nn.Module]) -> Any:
    """``hook`` calling the shell where it would call a module of the model (with the module, or as its method)."""
    if isinstance(hook, _WrappedHook):
        wrapped = copy.copy(hook)
        wrapped.hook = _rebound(hook.hook, shells)
        if hook.with_module:
            module = hook.module()
            wrapped.module = weakref.ref(shells.get(id(module), module))  # type: ignore[arg-type]
        return wrapped
    if isinstance(hook, types.MethodType) and id(hook.__self__) in shells:
        return types.MethodType(hook.__func__, shells[id(hook.__self__)])
    return hook


def _own_keys(module: nn.Module) -> list[str]:
    """The names ``Module._load_from_state_dict`` looks for in a module: its parameters and persistent buffers."""
    buffers = [name for name, value in module._buffers.items()
               if value is not None and name not in module._non_persistent_buffers_set]  # fmt: skip
    return [name for name, value in module._parameters.items() if value is not None] + buffers


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.uint8  # a quantised block type: any dtype stands in


class _NotRun(Exception):
    """The model's load code is not run on stand-ins, for the reason given."""


def loaded_names(model: nn.Module, model_report: Report, checkpoint: Report) -> LoadedNames:
    """What ``model``'s load code makes of ``checkpoint``'s names (see the module docstring); where that cannot be
    told, :attr:`LoadedNames.not_run` says why, and the names are compared as stored."""
    try:
        return _run_load_code(model, model_report, checkpoint)
    except _NotRun as reason:
        return LoadedNames.unknown(str(reason))
    except Exception as error:  # the model's own code, on shells: whatever it raises, the diff goes on without it
        return LoadedNames.unknown(f"it failed on meta stand-ins: {type(error).__name__}: {first_line(error)}")


def _wrapper_prefix(model: nn.Module, inner: nn.Module) -> str:
    """The prefix a top-level wrapper (DataParallel's ``module.``, torch.compile's ``_orig_mod.``, both nested) puts
    on the names of the ``inner`` model it wraps, which the report names without it; empty when there is none."""
    if inner is model:
        return ""
    return next(f"{path}." for path, module in model.named_modules() if module is inner)


def _run_load_code(model: nn.Module, model_report: Report, checkpoint: Report) -> LoadedNames:
    inner = forward_module(model)
    # the state dict of a wrapped model carries its wrapper's prefix (a DDP or compiled model's own checkpoint):
    # loaded into the wrapper, as its own load_state_dict loads it; one without is the inner model's, loaded there
    prefix = _wrapper_prefix(model, inner)
    stored = {name for record in checkpoint.tensors for name in (record.name, *record.aliases)}
    carrying = {name.removeprefix(prefix) for name in stored if prefix and name.startswith(prefix)}
    # names without it are the wrapper's unexpected keys, as its load_state_dict finds them (unless one is the same
    # name without the prefix: then the checkpoint is not the wrapper's alone, and names are matched as stored)
    prefixed = bool(carrying) and not carrying & stored
    model = inner
    shells = _shells(model)
    holding = _holding_the_model(shells, model)
    if holding is not None:
        raise _NotRun(f"the load code of '{shortened(holding)}' holds the model itself, which running it could change")
    root = shells[id(model)]
    # a wrapper inside the model (torch.compile's, a checkpoint wrapper's) is in its keys and not in the report's
    # names: ``0._orig_mod.weight`` is loaded into the report's ``0.weight``
    modules = list(root.named_modules(remove_duplicate=False))
    paths = reported_paths(modules)

    def reported(prefix: str, name: str) -> str:
        path = paths.get(prefix[:-1], prefix[:-1])
        return f"{path}.{name}" if path else name

    keys = {reported(f"{path}." if path else "", name) for path, module in modules for name in _own_keys(module)}
    names = {name for record in model_report.tensors for name in (record.name, *record.aliases)}
    if not keys <= names:
        raise _NotRun("its state dict's keys are not the names it is reported under: a wrapper renames them")
    state: dict[str, torch.Tensor] = {}
    origin: dict[int, str] = {}
    for record in checkpoint.tensors:
        for name in (record.name, *record.aliases):
            shape = record.shape if record.shape is not None else (0,)
            tensor = torch.empty(shape, dtype=_dtype(record.dtype), device="meta")
            state[name.removeprefix(prefix) if prefixed else name] = tensor
            origin[id(tensor)] = name
    state_dict: Any = dict(state)
    metadata = checkpoint.state_dict_metadata
    if metadata is not None and prefixed:  # the versions of the wrapped model's modules, by their paths in it
        metadata = {path.removeprefix(prefix) if path != prefix[:-1] else "": entry for path, entry in metadata.items()
                    if path.startswith(prefix) or path == prefix[:-1]}  # fmt: skip
    if metadata is not None:
        state_dict = _with_metadata(state_dict, metadata)
    loaded: dict[str, str | None] = {}  # the model's key -> the checkpoint name loaded into it (None: its own)
    unexpected: dict[str, str] = {}  # torch's unexpected key -> the checkpoint name it was stored under
    seen: list[list[str]] = []

    def traced(shell: nn.Module, load: LoadFunction) -> LoadFunction:
        def traced_load(
            state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any], strict: bool,
            missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
        ) -> None:  # fmt: skip
            before = len(unexpected_keys)
            load(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
            if not seen:
                seen.append(unexpected_keys)
            for name in _own_keys(shell):
                tensor = state_dict.get(prefix + name)
                if tensor is not None:
                    loaded[reported(prefix, name)] = origin.get(id(tensor))
            for key in unexpected_keys[before:]:
                unexpected[key] = origin.get(id(state_dict.get(key)), key)

        return traced_load

    for shell in shells.values():
        vars(shell)["_load_from_state_dict"] = traced(shell, shell._load_from_state_dict)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:
        if not str(error).startswith("Error(s) in loading state_dict"):  # size mismatches: compared by paramscope
            raise
    still_unexpected = {unexpected[key] for key in (seen[0] if seen else []) if key in unexpected}
    sources = {source for source in loaded.values() if source is not None}
    return LoadedNames(
        renamed={source: key for key, source in loaded.items() if source is not None and source != key},
        supplied=frozenset(key for key, source in loaded.items() if source is None),
        consumed=frozenset(name for name in origin.values() if name not in sources and name not in still_unexpected),
    )


def _with_metadata(state_dict: dict[str, torch.Tensor], metadata: Any) -> Any:
    from collections import OrderedDict

    ordered: Any = OrderedDict(state_dict)
    ordered._metadata = OrderedDict((prefix, dict(entry)) for prefix, entry in metadata.items())
    return ordered

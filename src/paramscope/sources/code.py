"""Model code as a target: ``package.module:attr`` or ``path/to/file.py:attr``, built on a chosen device.

``attr`` may be an ``nn.Module`` instance, a class, or any callable returning one; keyword arguments are passed to
it. Building happens inside ``torch.device(device)``, so on ``meta`` no weight memory is allocated.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import random
import sys
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .._errors import TargetError, UsageError, first_line, is_meta_device_failure, raise_if_interrupted

_NEIGHBOURS: dict[Path, dict[str, ModuleType]] = {}
"""For each folder a file target was loaded from: the modules of that folder its loading imported (its neighbours)."""


def _found_in(folder: Path, name: str, module: object) -> bool:
    """Whether ``module`` was found in ``folder`` itself, as a file or package beside the target (not deeper: a
    virtual environment inside the project holds installed packages)."""
    if not isinstance(module, ModuleType):
        return False
    top = name.partition(".")[0]
    namespace = vars(module)  # not getattr: a module's own __getattr__ may import or raise
    search = namespace.get("__path__")  # a package's folders: a namespace package has no __file__
    for place in [namespace.get("__file__"), *(search if isinstance(search, Iterable) else ())]:
        if not isinstance(place, str) or not place:
            continue
        path = Path(os.path.abspath(place))
        if path != folder and path.is_relative_to(folder) and path.relative_to(folder).parts[0].split(".")[0] == top:
            return True
    return False


def neighbour_modules() -> list[ModuleType]:
    """Every module file targets imported from their folders, those set aside from ``sys.modules`` included."""
    return [module for modules in _NEIGHBOURS.values() for module in modules.values()]


@contextlib.contextmanager
def _imports_from(folder: Path) -> Iterator[None]:
    """Import as a script in ``folder`` does: its neighbours are found there, first on ``sys.path``.

    The neighbours earlier file targets imported from other folders are set aside meanwhile: they stay in
    ``sys.modules`` under their plain names (``helper``), where an import would take them instead of this folder's
    own. Those this folder's modules did not replace are put back after.
    """
    aside = {
        name: sys.modules.pop(name)
        for other, modules in _NEIGHBOURS.items()
        if other != folder
        for name, module in modules.items()
        if sys.modules.get(name) is module
    }
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        brought = {
            name: module
            for name, module in list(sys.modules.items())
            if name not in before and _found_in(folder, name, module)
        }
        _NEIGHBOURS.setdefault(folder, {}).update(brought)
        for name, module in aside.items():
            sys.modules.setdefault(name, module)


def _package_of(path: Path) -> tuple[Path, str] | None:
    """For a file inside a package (its folder holds an ``__init__.py``): the folder that holds the outermost package,
    and the file's dotted name from there (``project/models/net.py`` -> ``project.models.net``); ``None`` otherwise.

    >>> _package_of(Path(__file__).resolve())[1]
    'paramscope.sources.code'
    """
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    if folder == path.parent or not all(part.isidentifier() for part in parts):
        return None
    return folder, ".".join(parts)


def _imports_relatively(path: Path) -> bool:
    """Whether the file has a relative import (``from .layers import Block``), which only an import as a module of its
    package runs: a file without one is loaded on its own, as a script, and its package's ``__init__`` (which may
    import what the file does not need) is left alone. A file that does not parse is loaded on its own, to fail
    there with its own error."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return False
    return any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))


def _import_from_package(folder: Path, root: Path, name: str) -> ModuleType | None:
    """Import the file ``name`` names as a module of its package, so that its relative imports (``from .layers import
    Block``) work, as they do under ``python -m``; its own folder is on the path too, for the neighbours it imports
    as a script would. ``None`` where a package of that name is imported already from elsewhere (a ``models`` or
    ``utils`` of another project): the file is then loaded on its own. ``folder`` is the file's, ``root`` and ``name``
    as :func:`_package_of` gives them."""
    with _imports_from(root), _imports_from(folder):
        top = name.partition(".")[0]
        if top in sys.modules and not _found_in(root, top, sys.modules[top]):
            return None
        return importlib.import_module(name)


def _working_directory_holding(location: str) -> Path | None:
    """The working directory, where the package or module of ``location`` is there and nowhere on ``sys.path``: the
    console script ``paramscope`` has its own folder on the path, not the working directory (which ``python -m``
    has), and ``paramscope inspect mypackage.models:Net`` is run from the project's folder."""
    top = location.partition(".")[0]
    try:
        folder = Path(os.getcwd())
    except OSError:  # a directory removed under us
        return None
    if top in sys.modules or not ((folder / top).is_dir() or (folder / f"{top}.py").is_file()):
        return None
    return folder if importlib.util.find_spec(top) is None else None


def _import_location(location: str, target: str) -> Any:
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            if path.exists():  # a folder or a FIFO named x.py: there, but no file to import
                raise TargetError(f"{target}: {location} is not a file")
            raise TargetError(f"{target}: no such file: {location}")
        resolved = path.resolve()
        package = _package_of(resolved) if _imports_relatively(path) else None
        if package is not None:
            module = _import_from_package(resolved.parent, *package)
            if module is not None:
                return module
        module_name = f"_paramscope_target_{abs(hash(resolved))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"{target}: cannot load {location} as Python code")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            # The file may import its neighbours, as it would when run as a script.
            with _imports_from(resolved.parent):
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    try:
        folder = _working_directory_holding(location)
        if folder is not None:
            with _imports_from(folder):
                return importlib.import_module(location)
        return importlib.import_module(location)
    except ModuleNotFoundError as error:
        if error.name is not None and location.startswith(error.name):
            raise TargetError(f"{target}: no module named {error.name!r}") from None
        raise


def _module_candidates(namespace: Any) -> list[str]:
    """Public names in ``namespace`` that could be targets: module instances, module classes and functions.

    Only names the namespace exports (its ``__all__``) or defines itself, so imported helpers are not offered.
    """
    exported = getattr(namespace, "__all__", None)
    names = []
    for name, value in vars(namespace).items():
        if name.startswith("_"):
            continue
        own = name in exported if exported is not None else getattr(value, "__module__", None) == namespace.__name__
        is_module_class = isinstance(value, type) and issubclass(value, nn.Module)
        is_function = inspect.isfunction(value)
        if isinstance(value, nn.Module) or (own and (is_module_class or is_function)):
            names.append(name)
    return sorted(names)


def _resolve(target: str) -> Any:
    location, _, attr = target.rpartition(":")
    namespace = _import_location(location, target)
    value: Any = namespace
    for part in attr.split("."):
        if not hasattr(value, part):
            candidates = _module_candidates(namespace)
            close = difflib.get_close_matches(attr, candidates, n=1)
            hint = f"; did you mean {close[0]!r}? It defines" if close else "; it defines"
            hint = f"{hint}: {', '.join(candidates)}" if candidates else ""
            raise TargetError(f"{target}: {location} has no attribute {attr!r}{hint}")
        value = getattr(value, part)
    return value


@contextlib.contextmanager
def user_code(what: str, device: str | None = None) -> Iterator[None]:
    """Turn any exception raised by the user's code into one TargetError that names the target.

    That includes BaseExceptions other than KeyboardInterrupt (SystemExit, GeneratorExit, a class of the user's own):
    whatever the model code raises is a fault of the target, reported in one line; Ctrl-C still interrupts.
    """
    try:
        yield
    except (TargetError, KeyboardInterrupt):
        raise
    except BaseException as error:
        raise_if_interrupted(error)
        message = first_line(error)
        hint = ""
        if device == "meta" and is_meta_device_failure(error):
            hint = "; the model needs real tensors while it is built: try --device cpu"
        raise TargetError(f"{what} failed: {type(error).__name__}: {message}{hint}") from error


def _check_signature(target: str, factory: Any, arguments: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and some C extensions have none: let the call itself decide
        return
    try:
        signature.bind(**arguments)
    except TypeError as error:
        parameters = signature.parameters.values()
        accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        why = _why_not_bound(parameters, arguments) or error
        raise TargetError(
            f"{target} cannot be called with {', '.join(f'{k}=' for k in arguments) or 'no arguments'}: "
            f"{why}; it accepts: {', '.join(accepted) or 'no keyword arguments'}"
        ) from None


def _why_not_bound(parameters: Iterable[inspect.Parameter], arguments: Mapping[str, Any]) -> str | None:
    """Every keyword argument a callable does not take and every required one missing, where ``inspect``'s own
    message names only the first missing one and hides an unknown name behind it (``widht=3`` for ``width``);
    ``None`` for other faults (a positional-only parameter given by name)."""
    parameters = list(parameters)
    if any(p.name in arguments and p.kind is p.POSITIONAL_ONLY for p in parameters):
        return None
    missing = [p.name for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
               p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in arguments]  # fmt: skip
    named = {p.name for p in parameters}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    unknown = [] if takes_any else [name for name in arguments if name not in named]
    reasons = []
    if unknown:
        what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
        reasons.append(f"got {what} {', '.join(repr(name) for name in unknown)}")
    if missing:
        what = "a required argument" if len(missing) == 1 else "required arguments"
        reasons.append(f"missing {what}: {', '.join(repr(name) for name in missing)}")
    return ", and ".join(reasons) or None


def build_model(
    target: str, arguments: Mapping[str, Any] | None = None, *, device: str = "meta", import_on_device: bool = False
) -> nn.Module:
    """Import ``target`` and build the model it names on ``device``.

    The call that builds the model runs inside ``torch.device(device)``. With ``import_on_device`` the import
    does too, so models created at module level land there as well: the command line does this (its process ends
    with the report), while from Python the import stays ordinary, so the user's package keeps real tensors.

    >>> model = build_model("paramscope.examples:resnet18", {"num_classes": 10})
    >>> type(model).__name__, next(model.parameters()).device.type
    ('ResNet', 'meta')
    """
    arguments = dict(arguments or {})
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}") from None
    with _process_state_kept():
        model = _build(target, arguments, device, torch_device, import_on_device=import_on_device)
        left = torch.get_default_dtype()
    if left != torch.get_default_dtype():
        from .module import forward_module

        # the model, and the one a forward runs inside a wrapper of it (torch.compile's, DataParallel's)
        for each in (model, forward_module(model)):
            _default_dtypes[each] = left
    return model


_default_dtypes: weakref.WeakKeyDictionary[nn.Module, torch.dtype] = weakref.WeakKeyDictionary()


def default_dtype_of_code(model: nn.Module) -> torch.dtype | None:
    """torch's default dtype as the code that built ``model`` left it (``build_model`` puts the process's back), where
    it differs: the dtype its author runs the forward under, which the tensors the forward makes itself
    (``torch.zeros(3)``) take. Scientific code sets float64 at import."""
    return _default_dtypes.get(model)


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Put back what model code may change for the whole process: the working directory (research code moves to its
    repository to find its assets), so the caller's relative paths (an --output, a second target) lead where they
    did; torch's default dtype (scientific code sets float64), so a second model is built as it would be alone; and
    what torch's random generators draw next and its grad mode (code seeds at import, and turns gradients off for
    inference), so the caller's own work goes on as before."""
    dtype = torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    try:
        directory: str | None = os.getcwd()
    except OSError:  # a directory removed under us: there is nothing to go back to
        directory = None
    try:
        with contextlib.ExitStack() as stack:
            random_states_put_back(stack)
            yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        if directory is not None:
            with contextlib.suppress(OSError):
                os.chdir(directory)


def random_states_put_back(stack: contextlib.ExitStack) -> None:
    """Have ``stack`` put the process's random generators back as they are now: torch's (the cpu's, and each CUDA
    device's where CUDA is initialized already: reading their states would initialize it, a change of its own),
    Python's ``random`` and, where it is imported, numpy's global one."""
    stack.callback(torch.set_rng_state, torch.get_rng_state())
    if torch.cuda.is_initialized():
        stack.callback(torch.cuda.set_rng_state_all, torch.cuda.get_rng_state_all())
    stack.callback(random.setstate, random.getstate())
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        stack.callback(numpy_random.set_state, numpy_random.get_state())


@contextlib.contextmanager
def _default_device(device: torch.device | None) -> Iterator[None]:
    """Run model code with torch's default device set to ``device`` (or as it is, for ``None``), and put the caller's
    default back after, whatever the code set.

    Through ``torch.set_default_device``, not ``with torch.device(...)``: torch keeps one device context at a time, and
    code that calls ``torch.set_default_device`` itself (at import, or as it builds) inside a ``with`` block trips
    torch's check of that ("Found nested DeviceContext") or, when the block ends, leaves a default behind that a
    later ``set_default_device`` brings back. Its setting holds while it runs, as it would alone.
    """
    # torch keeps the default set by set_default_device here; a `with torch.device(...)` block of the caller's is on
    # torch's mode stack instead, and comes back when the default set here is unset
    holder = getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None)
    context = getattr(holder, "device_context", None)
    previous = getattr(context, "device", None)
    if device is not None:
        torch.set_default_device(device)
    try:
        yield
    finally:
        if device is not None or getattr(holder, "device_context", None) is not context:
            torch.set_default_device(previous)


def _build(
    target: str, arguments: dict[str, Any], device: str, torch_device: torch.device, *, import_on_device: bool
) -> nn.Module:
    where = "the meta device" if device == "meta" else device
    importing = f"importing {target}" + (f" on {where}" if import_on_device else "")
    with _default_device(torch_device if import_on_device else None), user_code(importing, device):
        value = _resolve(target)
    if isinstance(value, nn.Module):
        if arguments:
            raise TargetError(f"{target} is a module instance: it takes no arguments ({', '.join(arguments)})")
        return value
    if not callable(value):
        raise TargetError(f"{target} is of type {type(value).__name__}, not an nn.Module, a class or a function")
    _check_signature(target, value, arguments)
    with _default_device(torch_device), user_code(f"building {target} on {where}", device):
        model = value(**arguments)
    if not isinstance(model, nn.Module):
        raise TargetError(f"{target} returned an object of type {type(model).__name__}, not a torch.nn.Module")
    return model

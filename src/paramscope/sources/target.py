"""Turns a target string (as given on the command line) into a Report, choosing the right source."""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from .._errors import MissingDependencyError, SourceError, TargetError, UsageError
from .._report import Report

TARGET_FORMS = (
    "'package.module:attr', 'path/to/file.py:attr', a checkpoint (.safetensors, .pt, .pth, .bin, .ckpt, .gguf, "
    "*.safetensors.index.json, *.bin.index.json), a config.json, a directory holding them, or hf:org/name"
)
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# torch.save's legacy format (before PyTorch 1.6, or _use_new_zipfile_serialization=False) starts with this number
# (torch.serialization.MAGIC_NUMBER) pickled on its own, in the file's pickle protocol (2 by default); torch.load's
# _legacy_load reads it first and refuses a file without it
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_HEAD_BYTES = 4096  # a safetensors header length and its "{" after any whitespace before it; the legacy magic
_JSON_WHITESPACE = b" \t\r\n"


def _check_not_empty(target: str) -> None:
    # Path("") is the current directory: an empty argument (an unset shell variable) must not read it.
    if not target.strip():
        raise TargetError(f"the target is empty; expected {TARGET_FORMS}")


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
_LOADERS: dict[str, Loader] = {"safetensors": _safetensors, "torch": _torch, "gguf": _gguf}


def _for_file(path: Path) -> Loader:
    name = path.name
    if name.endswith(".safetensors") or name.endswith(".safetensors.index.json"):
        return _safetensors
    if name.endswith(".gguf"):
        return _gguf
    if name.endswith((".bin.index.json", ".pt.index.json")):
        return _torch
    from .safetensors import check_regular_file

    check_regular_file(path)  # before it is opened: a FIFO would block
    with path.open("rb") as handle:  # an unusual name, or a torch name on a safetensors file: the first bytes tell
        head = _read_head(handle)
    other = _format_of_head(head)
    if other is not None:
        return _LOADERS[other]
    if path.suffix in _TORCH_SUFFIXES:
        return _torch
    if head[:4] == b"PK\x03\x04":  # torch.save writes a zip archive
        return _torch
    if is_legacy_torch_head(head):
        return _torch
    raise SourceError(f"{path}: not a checkpoint paramscope recognises (expected {TARGET_FORMS})")


def _read_head(handle: BinaryIO) -> bytes:
    """A file's first bytes, as many as tell its format: :data:`_HEAD_BYTES`, and where they are a safetensors header's
    length and whitespace alone, the header's first byte past the whitespace in place of the rest (the safetensors
    library's parser skips any amount of it, as far as the header's length, itself bounded)."""
    head = handle.read(_HEAD_BYTES)
    if len(head) < _HEAD_BYTES or head[8:].lstrip(_JSON_WHITESPACE):
        return head
    from .safetensors import MAX_HEADER_BYTES

    left = min(int.from_bytes(head[:8], "little"), MAX_HEADER_BYTES) - (len(head) - 8)
    while left > 0 and (chunk := handle.read(min(left, 2**20))):
        left -= len(chunk)
        if rest := chunk.lstrip(_JSON_WHITESPACE):
            return head[:8] + rest[:1]
    return head


def _format_of_head(head: bytes) -> str | None:
    """The format a file's first bytes say it is, where they are not torch.save's: ``"safetensors"`` or ``"gguf"``
    (a GGUF model saved as .bin); None for any other bytes."""
    if _is_safetensors_head(head):
        return "safetensors"
    if head[:4] == b"GGUF":  # no torch file starts so (a zip archive or a pickle)
        return "gguf"
    return None


def _is_safetensors_head(head: bytes) -> bool:
    """Whether a file's first bytes start a safetensors file: a header length the format allows, then ``{`` after
    any JSON whitespace (the safetensors library's parser skips it). A torch.save file starts with a zip archive's or
    a pickle's magic bytes instead."""
    from .safetensors import MAX_HEADER_BYTES

    length = int.from_bytes(head[:8], "little")
    return (
        len(head) >= 9 and 2 <= length <= MAX_HEADER_BYTES and head[8 : 8 + length].lstrip(_JSON_WHITESPACE)[:1] == b"{"
    )


def is_legacy_torch_head(head: bytes) -> bool:
    """Whether a file's first bytes start torch.save's legacy format: the pickle of its magic number, as torch.save
    writes it with any pickle protocol.

    >>> is_legacy_torch_head(b"\\x80\\x02\\x8a\\nl\\xfc\\x9cF\\xf9 j\\xa8P\\x19.\\x80\\x02M\\xe9\\x03.")
    True
    """
    protocols = range(pickle.HIGHEST_PROTOCOL + 1)
    return any(head.startswith(pickle.dumps(_LEGACY_MAGIC, protocol)) for protocol in protocols)


def _for_directory(path: Path) -> tuple[Loader, list[str]]:
    from .checkpoint import TRAINING_STATE

    # a directory under a weight file's name is none (Lightning saves a sharded checkpoint as 'epoch=0-step=9.ckpt/')
    torch_files = [p for p in path.iterdir() if p.suffix in _TORCH_SUFFIXES and not p.is_dir()]
    found = {
        "safetensors": any(
            not p.is_dir() for suffix in ("", ".index.json") for p in path.glob(f"*.safetensors{suffix}")
        ),
        # a Trainer's training state (optimizer.pt, training_args.bin) is no torch weights, and neither is an index
        # without its shards (a repository converted to safetensors often keeps pytorch_model.bin.index.json)
        "torch": any(not TRAINING_STATE.fullmatch(p.name) for p in torch_files),
        "gguf": any(not p.is_dir() for p in path.glob("*.gguf")),
    }
    formats = [name for name, present in found.items() if present]
    if not formats and (torch_files or any(path.glob("*.bin.index.json"))):
        # training state or an index alone: the torch reader says there are no weights beside it, or which is missing
        formats = ["torch"]
    if not formats:
        raise SourceError(f"{path}: no weights found (no *.safetensors, *.bin, *.pt, *.pth, *.ckpt or *.gguf files)")
    notes = [f"the directory also holds {other} weights: only the {formats[0]} ones are read" for other in formats[1:]]
    return _LOADERS[formats[0]], notes


def other_format(file: Path) -> str | None:
    """What ``file``, named as a PyTorch checkpoint, is by its first bytes where it is no torch.save file:
    ``"safetensors"`` or ``"gguf"``; None for a torch file, and for one that cannot be read (the torch reader says
    why)."""
    if not file.is_file():  # a FIFO would block
        return None
    try:
        with file.open("rb") as handle:
            return _format_of_head(_read_head(handle))
    except OSError:
        return None


def read_as(kind: str, file: Path, quiet: bool) -> Report:
    """The report of ``file`` read as a file of ``kind`` (``"safetensors"``, ``"torch"`` or ``"gguf"``)."""
    return _LOADERS[kind](file, quiet)


@dataclass(frozen=True)
class Request:
    """How to read a target; the defaults are what ``paramscope inspect TARGET`` does."""

    arguments: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for model code."""
    device: str = "meta"
    explain: bool = False
    import_on_device: bool = False
    """Import model code under the device too (see ``build_model``); the CLI does."""
    quiet: bool = False
    from_config: bool = False
    """Build from the config.json beside the weights instead of reading the weights."""
    check: bool = False
    """Also build from the config.json and compare the model with the weights."""
    model_class: str | None = None
    trust_remote_code: bool = False
    exclude_embeddings: bool = False
    commit: str | None = None
    """An hf: target's commit, which an earlier read of the same command resolved its branch to: this read asks for
    it too (a push in between changes nothing of what is read), and adds no second note naming it. None: the read
    resolves the branch itself."""


def no_weights_to_check(target: str) -> UsageError:
    return UsageError(
        f"{target}: --check compares weights with the model config.json describes, and there are no weights"
    )


# why --model-class is refused, where no model is built from a config.json
_BUILD_IT = "add --from-config to build it from config.json, or --check to compare the two"
_OWN_MODEL = "model code builds its own model"


def _refuse_irregular_config(config: Path) -> None:
    """Where a config.json is needed and none was found: refuse one that is there but is no regular file (a FIFO,
    whose read would block, or a directory), rather than say there is none."""
    if config.exists():
        from .safetensors import check_regular_file

        check_regular_file(config, reads="configs")


def _refuse_model_class(target: str, request: Request, why: str) -> None:
    """Refuse ``--model-class`` where no model is built from a config.json (``why`` says what is read instead): the
    report would not be of the class asked for. ``--trust-remote-code`` passes: it permits code to run where a model
    is built, and asks for nothing where none is."""
    if request.model_class:
        raise UsageError(f"{target}: --model-class is for a model built from a config.json; {why}")


# what a path that does not exist can still be meant as: a name with one of these endings is a file's
_FILE_SUFFIXES = frozenset((*_TORCH_SUFFIXES, ".safetensors", ".gguf", ".json", ".py"))


def _missing(target: str) -> TargetError | SourceError:
    """The error for a target that names nothing on disk and is no model code: a name without a path's marks is not a
    target at all; a dotted module name (``paramscope.examples``) lacks the model's name after a colon."""
    path = Path(target)
    if "/" in target or "\\" in target:
        return SourceError(f"{target}: {_why_missing(path)}")
    if not path.suffix:
        return TargetError(f"{target}: not a target paramscope can read; expected {TARGET_FORMS}")
    if path.suffix.lower() not in _FILE_SUFFIXES and all(part.isidentifier() for part in target.split(".")):
        return TargetError(
            f"{target}: no such file or directory; for model code, name the model after a colon ({target}:NAME)"
        )
    return SourceError(f"{target}: {_why_missing(path)}")


def _why_missing(path: Path) -> str:
    """Why ``path.exists()`` is false: no such file, or a link in a loop (which exists() does not tell)."""
    from .safetensors import symlink_loop

    return symlink_loop(path) or "no such file or directory"


def _check_can_look_into(path: Path) -> None:
    """Refuse a directory whose entries cannot be listed (no read permission) or looked at (no search permission) as
    itself, before any file in it is named in the error: ``DIR/config.json: Permission denied`` for a directory that
    may hold no config.json."""
    if not path.is_dir():
        return
    try:
        os.scandir(path).close()
        os.stat(os.path.join(path, os.curdir))  # through the directory (a Path drops the "."): needs search permission
    except OSError as error:
        raise SourceError(f"{path}: {error.strerror or error}") from None


def _config_report(config: Path, request: Request, target: str | None = None) -> Report:
    from .hf import config_report

    if request.check and not request.from_config:
        raise no_weights_to_check(target or str(config))

    return config_report(
        config,
        model_class=request.model_class,
        trust_remote_code=request.trust_remote_code,
        device=request.device,
        explain=request.explain,
        target=target,
        quiet=request.quiet,
    )


def _path_report(target: str, request: Request) -> Report:
    path = Path(target)
    if not path.exists():
        raise _missing(target)
    _check_can_look_into(path)
    is_config = path.name.endswith(".json") and not path.name.endswith(".index.json")
    if not path.is_dir():
        from .safetensors import check_regular_file

        # a FIFO would block the first read, a device never end
        check_regular_file(path, reads="configs" if is_config else "checkpoints")
    if is_config and path.is_file():
        return _config_report(path, request)  # a config.json
    directory = path if path.is_dir() else path.parent
    config = directory / "config.json"
    has_config = config.is_file()
    if path.is_dir():
        has_weights = _has_weights(path)
        if not has_weights and has_config:
            return _config_report(config, request, target)
        if not has_weights:
            _refuse_irregular_config(config)
            raise SourceError(
                f"{path}: no weights found (no *.safetensors, *.bin, *.pt, *.pth, *.ckpt or *.gguf files, and no "
                "config.json)"
            )
    if request.explain and not request.from_config:
        hint = "add --from-config to build it from config.json" if has_config else "a checkpoint has only tensors"
        raise UsageError(f"{target}: --explain needs a model to read layer hyperparameters from; {hint}")
    if (request.from_config or request.check) and not has_config:
        _refuse_irregular_config(config)
        flag = "--from-config" if request.from_config else "--check"
        raise UsageError(f"{target}: {flag} needs a config.json beside the weights, and there is none")
    if request.from_config:
        return _config_report(config, request, target)
    if not request.check:
        build = _BUILD_IT if has_config else "there is no config.json beside it to build a model from"
        _refuse_model_class(target, request, f"a checkpoint is read from its weights: {build}")
    report = _checkpoint(path, quiet=request.quiet)
    if request.check and report.source.kind == "gguf":
        # transformers reads a GGUF file only through its own name conversion (from_pretrained(gguf_file=...)):
        # compared by name, every tensor would be missing and every one unexpected
        raise UsageError(
            f"{target}: --check compares weights with the config's model by transformers' tensor names, and a GGUF "
            "file names its tensors as llama.cpp does (token_embd.weight, blk.0.attn_q.weight); check the "
            "safetensors it was converted from instead"
        )
    if request.check:
        report = _checked_against(report, config, request)
    return report


def _checked_against(report: Report, config: Path, request: Request) -> Report:
    """``report`` (of a checkpoint) compared with the model ``config`` describes, names mapped as the loader does."""
    from .._check import with_check
    from .hf import build_from_config, checkpoint_loading
    from .module import inspect_module

    model, _ = build_from_config(
        config, model_class=request.model_class, trust_remote_code=request.trust_remote_code, device="meta"
    )
    return with_check(report, inspect_module(model, target=str(config)), checkpoint_loading(model))


def _has_weights(directory: Path) -> bool:
    try:
        _for_directory(directory)
    except SourceError:
        return False
    return True


def _checkpoint(path: Path, *, quiet: bool) -> Report:
    from .._collector import collector_paused

    with collector_paused():
        if path.is_dir():
            loader, notes = _for_directory(path)
            report = loader(path, quiet)
            return report if not notes else replace(report, notes=(*report.notes, *notes))
        return _for_file(path)(path, quiet)


def _module_report(target: str, request: Request) -> Report:
    if request.from_config or request.check:
        raise UsageError(f"{target}: --from-config and --check need a config.json, not model code")
    _refuse_model_class(target, request, _OWN_MODEL)
    require("torch", "torch", f"building {target}")
    from .code import build_model, user_code
    from .module import inspect_module

    model = build_model(target, request.arguments, device=request.device, import_on_device=request.import_on_device)
    # A malformed module tree (a non-module in _modules, a broken attribute) is the model's fault, not ours.
    with user_code(f"inspecting {target}"):
        return inspect_module(model, target=target, device=request.device, explain=request.explain)


def _hub_report(target: str, request: Request) -> tuple[Report, str | None]:
    from . import hub

    report, commit = hub.load(
        target,
        quiet=request.quiet,
        from_config=request.from_config,
        model_class=request.model_class,
        trust_remote_code=request.trust_remote_code,
        explain=request.explain,
        commit=request.commit,
    )
    if report.source.kind != "hf-config" and not request.check:
        _refuse_model_class(target, request, f"the repository's safetensors weights are read: {_BUILD_IT}")
    if request.check:
        from .._check import with_check
        from .hf import checkpoint_loading
        from .module import inspect_module

        if report.source.kind == "hf-config":  # built from the config: the repo has no safetensors weights
            raise no_weights_to_check(target)
        model, _, _ = hub.build(target, replace(request, device="meta"), commit)  # the weights' commit
        report = with_check(report, inspect_module(model, target=target), checkpoint_loading(model))
    return report, commit


def _refuse_arguments(target: str, request: Request) -> None:
    """KEY=VALUE arguments are for model code: a config or a checkpoint would leave them unused."""
    if request.arguments:
        raise UsageError(f"{target}: KEY=VALUE arguments are only for model code targets")


def load_report(target: str, request: Request | None = None) -> Report:
    """The report of whatever ``target`` names; see :func:`paramscope.inspect`."""
    return load_report_and_commit(target, request)[0]


def load_report_and_commit(target: str, request: Request | None = None) -> tuple[Report, str | None]:
    """:func:`load_report`, and the commit an hf: target was read at (None for any other target, or where no answer
    named one): a later read of the same command asks for it too (``Request.commit``)."""
    request = request or Request()
    commit = None
    _check_not_empty(target)
    if request.check and request.from_config:
        raise UsageError(
            f"{target}: --check compares the weights with the model config.json describes, and --from-config leaves "
            "the weights out: pass one of them"
        )
    if target.startswith("hf:"):
        _refuse_arguments(target, request)
        report, commit = _hub_report(target, request)
    elif is_code_target(target) and not Path(target).exists():
        report = _module_report(target, request)
    else:
        if not Path(target).exists():
            raise _missing(target)
        _refuse_arguments(target, request)
        try:
            report = _path_report(target, request)
        except OSError as error:  # a file it leads to that cannot be looked at: permission denied, a name too long
            raise SourceError(f"{error.filename or target}: {error.strerror or error}") from None
        # the target as given ('Llama-3-70B/', './model.pt'), not as Path writes it back
        report = replace(report, source=replace(report.source, target=target))
    if request.exclude_embeddings:
        from .._embeddings import without_embeddings

        report = without_embeddings(report)
    return report, commit


def builds_model(target: str) -> bool:
    """Whether ``target`` is model code or a config without weights, whose report comes from building the model
    (rather than from a checkpoint's headers)."""
    if target.startswith("hf:") or not target.strip():
        return False
    if is_code_target(target) and not Path(target).exists():
        return True
    path = Path(target)
    if path.is_file():
        return path.name.endswith(".json") and not path.name.endswith(".index.json")
    try:
        return path.is_dir() and (path / "config.json").is_file() and not _has_weights(path)
    except OSError:  # a directory that cannot be looked into: reading it says so
        return False


def builds_from_config(target: str, from_config: bool = False) -> bool:
    """Whether the report of ``target`` is of a model built from a config.json, whose class ``--model-class`` names:
    a config, a directory holding one and no weights, or (``from_config``) weights with a config beside them. A Hub
    repository is taken as read from its weights unless ``from_config`` (nearly every one has safetensors)."""
    if target.startswith("hf:"):
        return from_config
    if is_code_target(target) and not Path(target).exists():
        return False
    return from_config or builds_model(target)


def load_model(target: str, request: Request) -> tuple[Any, str, list[str], str | None]:
    """The live model a target names, for work that runs it (a summary): ``(module, source kind, notes, commit)``,
    the commit an hf: target was read at (as :func:`load_report_and_commit`'s), else None.

    Model code is built as ``inspect`` builds it; a config.json (a file, a directory holding one, a Hub id) through
    transformers. A checkpoint alone has no code to run.
    """
    _check_not_empty(target)
    code = is_code_target(target) and not Path(target).exists() and not target.startswith("hf:")
    if not code:
        _refuse_arguments(target, request)
    if target.startswith("hf:"):
        from . import hub

        model, notes, commit = hub.build(target, request, request.commit)
        return model, "hf-config", notes, commit
    if code:
        _refuse_model_class(target, request, _OWN_MODEL)
        require("torch", "torch", f"building {target}")
        from .code import build_model

        return (
            build_model(target, request.arguments, device=request.device, import_on_device=request.import_on_device),
            ("module"),
            [],
            None,
        )
    path = Path(target)
    if not path.exists():
        raise _missing(target)
    _check_can_look_into(path)
    # a config.json named itself; beside a checkpoint (a sharded one's *.index.json too) or in a directory
    config = (
        path
        if path.is_file() and path.name.endswith(".json") and not path.name.endswith(".index.json")
        else (path if path.is_dir() else path.parent) / "config.json"
    )
    if not config.is_file():
        _refuse_irregular_config(config)
        raise UsageError(f"{target}: a forward pass needs a model to run, model code or a config.json; a checkpoint "
                         "has only weights")  # fmt: skip
    from .hf import build_from_config

    model, notes = build_from_config(
        config, model_class=request.model_class, trust_remote_code=request.trust_remote_code, device=request.device
    )
    return model, "hf-config", notes, None

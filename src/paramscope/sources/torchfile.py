"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``): ``torch.load(weights_only=True, mmap=True)``.

``weights_only=True`` unpickles only tensors and plain containers, never arbitrary code; ``mmap=True`` maps the
tensor data without reading it, so a 100 GB checkpoint costs no memory to count. Plain state dicts and nested
checkpoints (Lightning's ``state_dict``, dicts with ``model``/``optimizer`` entries) are understood: the model's
tensors are counted; optimizer state and other entries are reported in the notes, apart from the totals. In a
directory, such as a Hugging Face Trainer's output, the files with the usual weight names are read, and the training
state saved beside them (``training_args.bin``, ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``) is only noted.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import dtypes as dtype_table
from .._errors import SourceError
from .._report import Report
from .._units import format_bytes, format_count
from .checkpoint import TRAINING_STATE, StoredTensor, checkpoint_report, read_config

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Where nested checkpoints keep the model's state dict, most specific first.
_MODEL_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "weights")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_states", "optim", "optimizer_state")
# File names that hold a model's weights by convention: Hugging Face's pytorch_model.bin and its shards, PEFT's
# adapter_model.bin, diffusers' diffusion_pytorch_model.bin, Meta's consolidated.00.pth, a plain model.pt.
_WEIGHT_FILE = re.compile(
    r"(pytorch_model|diffusion_pytorch_model|adapter_model|model)(-\d+-of-\d+)?\.(bin|pt|pth|ckpt)|consolidated(\.\d+)?\.pth"
)
_OPTIMIZER_FILE = re.compile(r"optimizer(_\d+)?\.(bin|pt|pth)")
_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
_TORCH_PREAMBLE = "Weights only load failed."
_TORCH_DOCS = "Check the documentation of torch.load"
# What the weights_only unpickler says when the pickle asks for code (a global, a call, a class) it does not allow,
# as opposed to bytes it cannot parse ("Unsupported operand 205").
_REFUSALS = ("GLOBAL", "allowlisted", "unrecognized function", "must be imported")


def _unpickler_message(error: Exception) -> str:
    """The unpickler's own words inside the text torch wraps them in, on one line and without ANSI codes.

    torch (2.6 and later) puts them after a preamble about the weights_only default: after "WeightsUnpickler error:"
    when a global is not allowlisted, else in a paragraph of their own, and before a link to the documentation.
    """
    text = _ANSI_CODE.sub("", str(error)).split(_TORCH_DOCS)[0]
    tail = text.rpartition("WeightsUnpickler error:")[2]
    if tail.strip():
        text = tail
    paragraphs = [part.strip() for part in text.split("\n\n") if part.strip()]
    reason = paragraphs[-1] if paragraphs else ""
    if reason.startswith(_TORCH_PREAMBLE):  # "... must be imported to load ...": the reason, then advice
        reason = reason.removeprefix(_TORCH_PREAMBLE).strip().splitlines()[0]
    reason = reason.split(" Please use `torch.serialization", 1)[0]  # how to allowlist it: not advice for our users
    return _one_line(reason) or type(error).__name__


def _one_line(text: str) -> str:
    """``text`` with its whitespace collapsed and control characters escaped: it may quote bytes of the file."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in " ".join(text.split()))


def _torch_load(path: Path) -> Any:
    try:
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: empty file (0 bytes): not a PyTorch checkpoint")
        if zipfile.is_zipfile(path):
            return _load_quietly(path, mmap=True)
        with path.open("rb") as handle:
            if handle.read(4) == b"PK\x03\x04":
                raise SourceError(f"{path}: a zip archive cut short or damaged: truncated, or not a PyTorch checkpoint")
        # The legacy (pre-1.6) format cannot be memory-mapped: its tensors are read into memory (on CPU, where tensors
        # that share storage, such as tied weights, can be recognised).
        return _load_quietly(path)
    except SourceError:
        raise
    except pickle.UnpicklingError as error:
        reason = _unpickler_message(error)
        if not any(marker in reason for marker in _REFUSALS):  # bytes that are no pickle torch.load can read
            raise SourceError(
                f"{path}: not a PyTorch checkpoint (its data is not a pickle torch.load(weights_only=True) accepts: "
                f"{reason}); nothing in it was executed"
            ) from None
        raise SourceError(
            f"{path}: refused: its pickle needs something torch.load(weights_only=True) does not allow "
            f"({reason}); nothing in it was executed. Load it without weights_only only if you trust where it "
            "comes from"
        ) from None
    except (EOFError, zipfile.BadZipFile):
        raise SourceError(f"{path}: truncated, or not a PyTorch checkpoint") from None
    except OSError as error:
        raise SourceError(f"{path}: cannot be read: {error.strerror or error}") from None
    except RuntimeError as error:
        first = _one_line(str(error).strip().splitlines()[0]) if str(error).strip() else type(error).__name__
        raise SourceError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    except Exception as error:
        # torch's weights_only unpickler lets junk bytes surface as IndexError ("pop from empty list"), KeyError (a
        # memo index), UnicodeDecodeError, struct.error, AssertionError...: each means the data is no valid pickle.
        message = _one_line(str(error))
        reason = f"{type(error).__name__}: {message}" if message else type(error).__name__
        raise SourceError(
            f"{path}: not a PyTorch checkpoint (its data is not a pickle torch.load(weights_only=True) accepts: "
            f"{reason}); nothing in it was executed"
        ) from None


def _load_quietly(path: Path, *, mmap: bool = False) -> Any:
    with warnings.catch_warnings():
        # e.g. "Detected pickle protocol 4 in the checkpoint": a file torch.save did not write, so the one-line error
        # that follows says all there is to say
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, with a dotted name."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            yield from _leaves(item, f"{prefix}.{position}" if prefix else str(position))


def _summary(tensors: list[tuple[str, torch.Tensor]]) -> str:
    elements = sum(tensor.numel() for _, tensor in tensors)
    size = sum(tensor.numel() * tensor.element_size() for _, tensor in tensors)
    return f"{len(tensors)} tensor(s), {format_count(elements)} elements, {format_bytes(size)}"


def _split_checkpoint(path: Path, loaded: Any) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """The model's named tensors, and notes on everything else the checkpoint holds."""
    if isinstance(loaded, torch.Tensor):
        return [(path.stem, loaded)], []
    if not isinstance(loaded, Mapping):
        raise SourceError(f"{path}: holds a {type(loaded).__name__}, not a state dict or a checkpoint dict")
    if all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return list(_leaves(loaded)), []
    model_key = next((key for key in _MODEL_KEYS if any(True for _ in _leaves(loaded.get(key)))), None)
    notes = []
    if model_key is None:
        model = [(name, tensor) for name, tensor in _leaves(loaded) if "." not in name]
        others = [key for key in loaded if not isinstance(loaded[key], torch.Tensor)]
        if not model:
            keys = ", ".join(repr(key) for key in list(loaded)[:8])
            raise SourceError(f"{path}: no model tensors found (top-level keys: {keys})")
    else:
        model = list(_leaves(loaded[model_key]))
        others = [key for key in loaded if key != model_key]
        notes.append(f"the model's tensors are the checkpoint's {model_key!r} entry")
    for key in others:
        tensors = list(_leaves(loaded[key]))
        if not tensors:
            continue
        what = "optimizer state" if key in _OPTIMIZER_KEYS else "entry"
        notes.append(f"{what} {key!r}: {_summary(tensors)}; not counted in the totals")
    return model, notes


def _stored(path: Path, named: list[tuple[str, torch.Tensor]]) -> list[StoredTensor]:
    """One StoredTensor per distinct tensor; names of the same tensor (a tied weight saved twice) become aliases."""
    first_of: dict[tuple[Any, ...], int] = {}
    order: list[tuple[str, torch.Tensor]] = []
    aliases: dict[int, list[str]] = {}
    for name, tensor in named:
        storage = tensor.untyped_storage()
        key = (
            (id(tensor),)
            if tensor.is_meta
            else (storage.data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        )
        position = first_of.get(key)
        if position is None:
            first_of[key] = len(order)
            order.append((name, tensor))
        else:
            aliases.setdefault(position, []).append(name)
    stored = []
    for position, (name, tensor) in enumerate(order):
        entry = dtype_table.find(str(tensor.dtype))
        if entry is None:
            raise SourceError(f"{path}: tensor {name!r} has dtype {tensor.dtype}, which paramscope does not know")
        stored.append(
            StoredTensor(
                name,
                entry.name,
                tuple(tensor.shape),
                entry.nbytes(tensor.numel()),
                str(path),
                tuple(aliases.get(position, ())),
            )
        )
    return stored


def _files(target: Path) -> tuple[list[Path], list[Path], list[str]]:
    """The weight files to read, the training-state files beside them, and notes on other files left unread."""
    if not target.is_dir():
        return (_index_files(target) if target.name.endswith(".index.json") else [target]), [], []
    candidates = sorted(p for p in target.iterdir() if p.suffix in SUFFIXES and p.is_file())
    training = [p for p in candidates if TRAINING_STATE.fullmatch(p.name)]
    indexes = sorted(target.glob("*.bin.index.json")) + sorted(target.glob("*.pt.index.json"))
    if indexes:
        files, why = _index_files(indexes[0]), f"not a shard that {indexes[0].name} names"
    else:
        # A training run's output folder holds the weights under their usual name beside anything else it saved.
        usual = [p for p in candidates if _WEIGHT_FILE.fullmatch(p.name)]
        files = usual or [p for p in candidates if p not in training]
        why = "not a usual weight file name, unlike the files read; inspect it on its own to count it"
    if not files:
        names = ", ".join(p.name for p in training)
        raise SourceError(f"{target}: no model weights, only training state saved beside them ({names})")
    others = [p.name for p in candidates if p not in files and p not in training]
    return files, training, [f"not read: {', '.join(others)} ({why})"] if others else []


def _training_notes(paths: list[Path]) -> list[str]:
    """Notes on training state files: an optimizer's tensors are summed up (as in a checkpoint), the rest named."""
    notes = []
    unread = []
    for path in paths:
        tensors: list[tuple[str, torch.Tensor]] = []
        if _OPTIMIZER_FILE.fullmatch(path.name):
            with contextlib.suppress(SourceError):  # one that cannot be read is only named, like the rest
                tensors = list(_leaves(_torch_load(path)))
        if tensors:
            notes.append(f"{path.name}: optimizer state: {_summary(tensors)}; not counted in the totals")
        else:
            unread.append(path.name)
    if unread:
        notes.append(f"not read: {', '.join(unread)} (training state saved beside the weights, not the model)")
    return notes


def _index_files(index: Path) -> list[Path]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(f"{index}: cannot be read as an index ({error})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise SourceError(f"{index}: has no weight_map of tensor name → shard file")
    files = []
    for shard in dict.fromkeys(str(value) for value in weight_map.values()):
        if Path(shard).name != shard:
            raise SourceError(f"{index}: names shard {shard!r} outside its directory")
        if not (index.parent / shard).is_file():
            raise SourceError(f"{index}: names {shard}, which is missing")
        files.append(index.parent / shard)
    return files


def load(target: Path, *, quiet: bool = False) -> Report:
    """The report of a PyTorch checkpoint file, a ``*.bin.index.json``, or a directory of them."""
    from .._progress import progress

    files, training, unread_notes = _files(target)
    named: list[tuple[str, torch.Tensor]] = []
    notes: list[str] = []
    for path in progress(files, "reading PyTorch checkpoints", quiet=quiet):
        tensors, file_notes = _split_checkpoint(path, _torch_load(path))
        named.extend(tensors)
        notes.extend(f"{path.name}: {note}" if len(files) > 1 else note for note in file_notes)
    notes += _training_notes(training) + unread_notes
    config, config_notes = read_config(target if target.is_dir() else target.parent)
    return checkpoint_report(
        _stored(target, named),
        kind="torch",
        target=os.fspath(target),
        files=[os.fspath(path) for path in files],
        config=config,
        notes=notes + config_notes,
    )

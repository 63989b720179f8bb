"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``): ``torch.load(weights_only=True, mmap=True)``.

``weights_only=True`` unpickles only tensors and plain containers, never arbitrary code; ``mmap=True`` maps the
tensor data without reading it, so a 100 GB checkpoint costs no memory to count. Plain state dicts and nested
checkpoints (Lightning's ``state_dict``, dicts with ``model``/``optimizer`` entries) are understood: the model's
tensors are counted; optimizer state and other entries are reported in the notes, apart from the totals.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import dtypes as dtype_table
from .._errors import SourceError
from .._report import Report
from .._units import format_bytes, format_count
from .checkpoint import StoredTensor, checkpoint_report, read_config

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Where nested checkpoints keep the model's state dict, most specific first.
_MODEL_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "weights")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_states", "optim", "optimizer_state")


def _refusal_reason(error: Exception) -> str:
    # torch's message is a preamble about weights_only defaults, then the reason in its own paragraph
    paragraphs = [part.strip() for part in str(error).split("\n\n") if part.strip()]
    for paragraph in paragraphs[1:]:
        if not paragraph.startswith("Check the documentation"):
            return paragraph.splitlines()[-1].strip() or paragraph
    return paragraphs[0].splitlines()[0] if paragraphs else type(error).__name__


def _torch_load(path: Path) -> Any:
    try:
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: empty file (0 bytes): not a PyTorch checkpoint")
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        with path.open("rb") as handle:
            if handle.read(4) == b"PK\x03\x04":
                raise SourceError(f"{path}: a zip archive cut short or damaged: truncated, or not a PyTorch checkpoint")
        # The legacy (pre-1.6) format cannot be memory-mapped: its tensors are read into memory (on CPU, where tensors
        # that share storage, such as tied weights, can be recognised).
        return torch.load(path, map_location="cpu", weights_only=True)
    except SourceError:
        raise
    except pickle.UnpicklingError as error:
        reason = _refusal_reason(error)
        if "global" not in reason.lower():  # not a refusal of code: bytes that are no pickle torch.load can read
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
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


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


def _files(target: Path) -> tuple[list[Path], Path]:
    if target.is_dir():
        indexes = sorted(target.glob("*.bin.index.json")) + sorted(target.glob("*.pt.index.json"))
        if indexes:
            return _index_files(indexes[0]), target
        files = sorted(p for p in target.iterdir() if p.suffix in SUFFIXES and p.is_file())
        return files, target
    if target.name.endswith(".index.json"):
        return _index_files(target), target.parent
    return [target], target.parent


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

    files, directory = _files(target)
    named: list[tuple[str, torch.Tensor]] = []
    notes: list[str] = []
    for path in progress(files, "reading PyTorch checkpoints", quiet=quiet):
        tensors, file_notes = _split_checkpoint(path, _torch_load(path))
        named.extend(tensors)
        notes.extend(f"{path.name}: {note}" if len(files) > 1 else note for note in file_notes)
    config, config_notes = read_config(directory)
    return checkpoint_report(
        _stored(target, named),
        kind="torch",
        target=os.fspath(target),
        files=[os.fspath(path) for path in files],
        config=config,
        notes=notes + config_notes,
    )

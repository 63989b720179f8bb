"""``--check``: a model (built from its config) against a checkpoint, before anything is loaded.

The classic ``load_state_dict`` error, ahead of time: tensors the model has and the checkpoint lacks (missing),
tensors the checkpoint has and the model lacks (unexpected), and tensors whose shapes differ. Tied weights and
non-persistent buffers, which a checkpoint leaves out on purpose, are not reported missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ._report import Report, TensorRecord

Renamer = Callable[[str], tuple[str, bool]]
"""Maps a checkpoint's tensor name to the model's, and says whether loading converts it (merges experts, …)."""


@dataclass(frozen=True, slots=True)
class ShapeMismatch:
    name: str
    model_shape: tuple[int, ...] | None
    checkpoint_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Check:
    """What a model and a checkpoint disagree on; empty tuples when the checkpoint loads into the model."""

    against: str
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[ShapeMismatch, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _names(record: TensorRecord) -> tuple[str, ...]:
    return (record.name, *record.aliases)


def compare(model: Report, checkpoint: Report, rename: Renamer | None = None) -> Check:
    """Which of the model's tensors the checkpoint lacks, which it has in excess, and which differ in shape.

    ``rename`` maps checkpoint names to the model's as the loader does (transformers renames keys and merges some
    layouts when it loads a checkpoint); a tensor the loader converts is not compared by shape.
    """
    stored: dict[str, TensorRecord | None] = {}  # None: produced by a conversion, shape not comparable
    checkpoint_names: dict[str, str] = {}
    for record in checkpoint.tensors:
        for name in _names(record):
            target, converted = rename(name) if rename is not None else (name, False)
            stored[target] = None if converted or target in stored else record
            checkpoint_names[record.name] = target
    expected = {name for record in model.tensors for name in _names(record)}
    missing, mismatched = [], []
    for record in model.tensors:
        if record.kind == "buffer" and record.persistent is False:
            continue  # not saved in a state dict
        names = [name for name in _names(record) if name in stored]
        if not names:
            missing.append(record.name)
            continue
        found = stored[names[0]]
        if found is not None and found.shape != record.shape and found.packing is None:
            mismatched.append(ShapeMismatch(record.name, record.shape, found.shape))
    unexpected = [
        record.name
        for record in checkpoint.tensors
        if record.kind != "quantization" and checkpoint_names[record.name] not in expected
    ]
    return Check(model.source.target, tuple(missing), tuple(unexpected), tuple(mismatched))


def with_check(checkpoint: Report, model: Report, rename: Renamer | None = None) -> Report:
    """``checkpoint`` carrying the result of comparing it with ``model``."""
    return replace(checkpoint, check=compare(model, checkpoint, rename))

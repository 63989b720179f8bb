"""What every checkpoint source shares: stored tensors → records → the same Report as a live model.

A checkpoint knows names, dtypes, shapes and byte sizes, not modules or trainability: the module tree comes from the
dotted names, ``trainable``/``frozen`` are null, and whether a tensor is a parameter or a buffer is inferred from
its name and dtype (said in the notes). Quantised layouts are recognised first (see ``quantization.py``), so packed
weights count as the parameters they encode.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import dtypes as dtype_table
from .._errors import SourceError
from .._moe import with_active_params
from .._report import Report, Source, TensorKind, TensorRecord
from .._tree import tree_from_names
from .._units import format_bytes, listed, shortened
from ._json import loads as json_loads

# What training loops save beside the weights to resume a run (Hugging Face Trainer, Accelerate): not the model.
TRAINING_STATE = re.compile(
    r"(training_args|(optimizer|scheduler|sampler|scaler|rng_state|dl_state_dict)(_\d+)?)\.(bin|pt|pth)"
)
# Meta's original checkpoints (Llama 1 to 3, Code Llama): a file per model-parallel rank, each holding every tensor's
# name with that rank's slice of it, split on a dimension that depends on the layer and that the files do not record.
_MODEL_PARALLEL_FILE = re.compile(r"consolidated\.\d+\.pth")
# save_pretrained's names for the files of a checkpoint in several shards: model-00001-of-00003.safetensors
_SHARD = re.compile(r"(?P<stem>.+)-(?P<number>\d{5})-of-(?P<count>\d{5})(?P<suffix>\.[^.]+)")

MAX_CONFIG_BYTES = 16 * 2**20  # a config.json larger than this is not a model config
# Float buffers that models keep in their state dict, recognisable by name: BatchNorm statistics and rotary tables.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "inv_freq")
# Index-like dtypes: a checkpoint's int64 and bool tensors are position ids, token type ids and masks.
_BUFFER_DTYPES = frozenset({"int64", "bool"})
# The module tree keeps each module's full dotted name, so a name nested n modules deep costs n²/2 characters (20,000
# levels of "a." in a 40 kB name: 400 MB). In real checkpoints the module names add up to less than twice the tensor
# names; beyond this factor (and a floor for a few deeply nested names) a checkpoint is refused before its tree is
# built.
_MODULE_NAMES_FACTOR = 8
_MODULE_NAMES_FLOOR = 2**20


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as a checkpoint stores it: the dtype is a name in the dtype table, ``nbytes`` the bytes on disk."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str = ""
    aliases: tuple[str, ...] = ()
    read: Callable[[int], bytes] | None = field(default=None, compare=False, repr=False)
    """Reads up to N bytes of the tensor's data; only used for small metadata tensors (bitsandbytes quant state)."""

    @property
    def numel(self) -> int:
        size = 1
        for dim in self.shape:
            size *= dim
        return size


def read_config(directory: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``config.json`` beside a checkpoint, if there is one that parses; a note when it does not."""
    path = directory / "config.json"
    if not path.is_file():
        # a directory of that name, or a FIFO (which would block): a config that is there but cannot be read, said
        return None, [f"{path} is not a file: counted without it"] if path.exists() else []
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None, [f"{path} is larger than {format_bytes(MAX_CONFIG_BYTES)}: not read"]
        config = json_loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return None, [f"{path} could not be read ({error}): counted without it"]
    if not isinstance(config, dict):
        return None, [f"{path} is not a JSON object: counted without it"]
    settings = config.get("quantization_config")
    if settings is not None and not isinstance(settings, dict):  # transformers reads it as a dict of settings
        return config, [f"{path}: its quantization_config is {shortened(repr(settings))}, not a JSON object: the "
                        "quantization is told from the tensors' names and shapes alone"]  # fmt: skip
    return config, []


def files_read(index: Path | None, weights: Sequence[Path], config_directory: Path | None) -> list[str]:
    """A checkpoint's files as ``Source.files`` lists them, every file read: its index (when it has one), its weight
    files, and the config.json in ``config_directory`` (where one was read)."""
    config = [] if config_directory is None else [config_directory / "config.json"]
    return [os.fspath(path) for path in (*([index] if index is not None else []), *weights, *config)]


class WeightMap(dict[str, str]):
    """An index's weight_map (tensor name → shard file), as a JSON reader keeps it: a name given twice is in the
    shard given last. ``repeated`` holds the names given more than one shard, with every shard given, in order.

    >>> weight_map = WeightMap.of([("a", "1.safetensors"), ("b", "1.safetensors"), ("a", "2.safetensors")])
    >>> weight_map, weight_map.repeated
    ({'a': '2.safetensors', 'b': '1.safetensors'}, {'a': ['1.safetensors', '2.safetensors']})
    """

    repeated: dict[str, list[str]]

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> WeightMap:
        """The object of a JSON text's ``pairs`` (a ``json.loads`` object_pairs_hook)."""
        weight_map = cls(pairs)
        weight_map.repeated = {}
        if len(weight_map) < len(pairs):
            given: dict[str, list[Any]] = {}
            for name, shard in pairs:
                given.setdefault(name, []).append(shard)
            weight_map.repeated = {name: shards for name, shards in given.items() if len(set(map(repr, shards))) > 1}
        return weight_map


def check_no_shard_missing(directory: Path, files: Sequence[Path]) -> None:
    """Refuse ``files`` (a directory's, read without an index) where they are shards of a checkpoint, by
    save_pretrained's names, and some of its shards are not there: counted, the rest would pass for the whole model.

    >>> check_no_shard_missing(Path("ckpt"), [Path("ckpt/model-00001-of-00003.safetensors"),
    ...                                       Path("ckpt/model-00003-of-00003.safetensors")])
    Traceback (most recent call last):
    ...
    paramscope._errors.SourceError: ckpt: 1 of the 3 shards of model-NNNNN-of-00003.safetensors is not there \
(model-00002-of-00003.safetensors), and no index file names what each holds: the files are part of a checkpoint
    """
    found: dict[tuple[str, str, str], set[int]] = {}
    for path in files:
        if (shard := _SHARD.fullmatch(path.name)) is not None:
            found.setdefault((shard["stem"], shard["count"], shard["suffix"]), set()).add(int(shard["number"]))
    for (stem, count, suffix), numbers in found.items():
        missing = [f"{stem}-{number:05d}-of-{count}{suffix}" for number in range(1, int(count) + 1)
                   if number not in numbers]  # fmt: skip
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise SourceError(f"{directory}: {len(missing):,} of the {int(count):,} shards of {stem}-NNNNN-of-{count}"
                              f"{suffix} {verb} not there ({listed(missing)}), and no index file names what each "
                              "holds: the files are part of a checkpoint")  # fmt: skip


def check_files(
    target: str,
    tensors: Sequence[StoredTensor],
    weight_map: Mapping[str, str] | None = None,
    index: str = "",
) -> list[str]:
    """Check that a checkpoint's files hold each tensor once, and agree with its index; notes on what it omits.

    ``tensors`` come from every file read, each ``file`` naming its own. A name in two files would be counted twice,
    so it is an error: with an index the files are shards of one checkpoint and one of them is wrong; without one
    they look like separate checkpoints (two epochs, two quantisations) to inspect one at a time. ``weight_map`` is
    the index's tensor name → file name (errors about it start with ``index``): a tensor it names must be in that
    file; tensors of the files that it does not name are counted, and noted.
    """
    first: dict[str, str] = {}
    file_names = {file: Path(file).name for file in {t.file for t in tensors}}  # a Path a tensor costs 5 µs
    for name, file in ((name, file_names[t.file]) for t in tensors for name in (t.name, *t.aliases)):
        other = first.get(name)
        if other is None:
            first[name] = file
            continue
        if other == file:
            raise SourceError(f"{target}: tensor {name!r} is stored twice in {file}")
        if weight_map is not None:
            raise SourceError(f"{target}: tensor {name!r} is stored in more than one shard ({other} and {file})")
        if _MODEL_PARALLEL_FILE.fullmatch(other) and _MODEL_PARALLEL_FILE.fullmatch(file):
            slices = sorted(part for part in file_names.values() if _MODEL_PARALLEL_FILE.fullmatch(part))
            raise SourceError(
                f"{target}: {listed(slices)} are slices of one model saved for model-parallel loading, as Meta's "
                f"original Llama checkpoints are (each holds {name!r}): paramscope cannot join them, as the files do "
                "not say which dimension each tensor is split on; inspect the Hugging Face conversion, or one file, "
                f"which holds about 1/{len(slices)} of the model"
            )
        raise SourceError(
            f"{target}: tensor {name!r} is in both {other} and {file}: these look like separate checkpoints; "
            "inspect one file"
        )
    if weight_map is None:
        return []
    repeated = weight_map.repeated if isinstance(weight_map, WeightMap) else {}
    for name, shard in weight_map.items():
        if first.get(name) == shard:
            continue
        if name in repeated:
            given = ", then ".join(map(str, repeated[name]))
            raise SourceError(
                f"{index}: lists {name!r} in {given}; {shard}, listed last (as JSON readers keep it), does not hold it"
            )
        raise SourceError(f"{index}: lists {name!r} in {shard}, which does not hold it")
    notes = []
    if len(repeated) == 1:
        name, shards = next(iter(repeated.items()))
        notes.append(
            f"the index lists {shortened(name)} in {', then '.join(map(str, shards))}: it is read from "
            f"{weight_map[name]}, listed last (as JSON readers keep it), which holds it"
        )
    elif repeated:
        notes.append(
            f"the index lists {len(repeated)} tensors in more than one shard ({listed(list(repeated))}): each is read "
            "from the shard listed last (as JSON readers keep it), which holds it"
        )
    extra = [name for name in first if name not in weight_map]
    if extra:
        shown = shortened(extra[0])
        notes.append(f"{len(extra)} tensor(s) in the shards are not in the index ({shown}, …): counted too")
    return notes


def _kind(tensor: StoredTensor) -> TensorKind:
    if tensor.name.rpartition(".")[2] in _BUFFER_SUFFIXES or tensor.dtype in _BUFFER_DTYPES:
        return "buffer"
    return "parameter"


def plain_records(tensors: Sequence[StoredTensor]) -> tuple[list[TensorRecord], list[str]]:
    """Records for tensors stored as they are (no quantisation), parameters and buffers told apart by name/dtype."""
    records = []
    buffers: list[str] = []
    for tensor in tensors:
        kind = _kind(tensor)
        if kind == "buffer":
            buffers.append(tensor.name)
        records.append(
            TensorRecord(
                tensor.name, tensor.shape, tensor.numel, tensor.dtype, tensor.nbytes, kind, None, None, tensor.aliases
            )
        )
    notes = []
    if buffers:
        notes.append(
            f"{len(buffers)} tensor(s) counted as buffers, not parameters, from their names or integer/bool dtype "
            f"({listed(buffers)}): a checkpoint does not say which is which"
        )
    return records, notes


def _tie_notes(records: Sequence[TensorRecord], config: dict[str, Any] | None) -> list[str]:
    notes = [
        f"{', '.join(map(shortened, record.aliases))} {'is' if len(record.aliases) == 1 else 'are'} stored as the "
        f"same tensor as {shortened(record.name)} (tied): counted once"
        for record in records
        if record.aliases
    ]
    return notes + _config_tie_notes(records, config)


def _config_tie_notes(records: Sequence[TensorRecord], config: dict[str, Any] | None) -> list[str]:
    if not config:
        return []
    tied = config.get("tie_word_embeddings")
    # a head stored as the same tensor as another name (the embedding's, whichever of them comes first) is the tie,
    # not a head of its own
    names = {record.name for record in records if not record.aliases}
    heads = [name for name in ("lm_head.weight", "embed_out.weight", "output.weight") if name in names]
    if tied is True and not heads:
        return ["config.json ties the output head to the input embedding (tie_word_embeddings): the head is that "
                "same matrix, stored once and counted once"]  # fmt: skip
    if tied is True and heads:
        return [f"config.json ties the output head to the input embedding (tie_word_embeddings), but the checkpoint "
                f"also stores {heads[0]}: counted as stored"]  # fmt: skip
    return []


def check_module_names(target: str, tensors: Sequence[StoredTensor]) -> None:
    """Refuse tensor names whose modules' names (every dotted prefix, once) add up to more than
    :data:`_MODULE_NAMES_FACTOR` times the names themselves: the tree of them would take memory and time quadratic
    in how deep they nest. Stops counting at the limit, so the check itself costs no more than that."""
    names = [name for tensor in tensors for name in (tensor.name, *tensor.aliases)]
    budget = _MODULE_NAMES_FACTOR * sum(map(len, names)) + _MODULE_NAMES_FLOOR
    seen: set[str] = set()
    total = 0
    for name in names:
        end = name.rfind(".")
        while end > 0 and name[:end] not in seen:
            seen.add(name[:end])
            total += end
            if total > budget:
                raise SourceError(
                    f"{target}: tensor {shortened(name)!r} is nested {name.count('.'):,} modules deep: the modules its "
                    f"tensors' names imply have names of more than {budget:,} characters in all, more than paramscope "
                    "reads"
                )
            end = name.rfind(".", 0, end)


def checkpoint_report(
    tensors: Sequence[StoredTensor],
    *,
    kind: str,
    target: str,
    files: Sequence[str],
    config: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    sort: bool = False,
) -> Report:
    """The Report of a checkpoint's tensors (quantised layouts recognised, buffers told apart)."""
    from .quantization import quantized_records

    for tensor in tensors:
        dtype_table.lookup(tensor.dtype)  # every source maps dtypes to table names; an unknown one is a bug there
    check_module_names(target, tensors)
    records, record_notes = quantized_records(tensors, config)
    nodes, totals, by_dtype = tree_from_names(records, trainability_known=False, sort=sort)
    report = Report(
        source=Source(kind=kind, target=target, files=tuple(files)),
        totals=totals,
        by_dtype=by_dtype,
        tensors=tuple(records),
        modules=nodes,
        notes=(*notes, *record_notes, *_tie_notes(records, config), *(() if records else (_EMPTY,))),
    )
    return with_active_params(report, config)


_EMPTY = "the checkpoint holds no tensors: 0 parameters"

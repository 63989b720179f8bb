"""``paramscope diff``: what differs between two models, module by module and tensor by tensor.

Works on two Reports, whatever they were made from: a model against its checkpoint (the ``load_state_dict``
question: what is missing, unexpected or of another shape), a base model against its fine-tuned or pruned version,
two configs (what doubling the layers costs). Tensors are matched by name, their aliases (tied weights) included.

A model and a checkpoint are compared as ``load_state_dict`` compares them: names, shapes and dtypes. Two models, or
two checkpoints, count alike, so their totals, the kind of each tensor (parameter or buffer), what is tied or
reused and a quantised checkpoint's scales and zeros are compared too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Literal

from ._report import ModuleNode, Report, TensorKind, TensorRecord
from ._tree import tree_from_names
from ._units import listed

SCHEMA = "paramscope.diff/1"
_MODELS_READ: ContextVar[list[Any] | None] = ContextVar("paramscope_models_read", default=None)
_CHECKPOINT_KINDS = frozenset({"safetensors", "torch", "gguf"})
_TOTALS = ("params", "trainable", "param_bytes", "buffers", "buffer_bytes", "quantization", "quantization_bytes")


@dataclass(frozen=True, slots=True)
class ModuleDelta:
    """One module path in A, in B or in both; ``None`` figures where the module is absent on that side."""

    path: str
    depth: int
    type_a: str | None
    type_b: str | None
    params_a: int | None
    params_b: int | None
    bytes_a: int | None
    bytes_b: int | None
    complete_a: bool = True
    """False when a tensor of A's module has no known size (uninitialised lazy): its figures are lower bounds."""
    complete_b: bool = True

    @property
    def params_delta(self) -> int:
        return (self.params_b or 0) - (self.params_a or 0)

    @property
    def bytes_delta(self) -> int:
        return (self.bytes_b or 0) - (self.bytes_a or 0)

    @property
    def changed(self) -> bool:
        """The figures differ, or may (a side's are lower bounds), or the module is of another class on each side (a
        checkpoint has no classes)."""
        figures_differ = (self.params_a, self.bytes_a) != (self.params_b, self.bytes_b)
        return figures_differ or self.rebuilt or not (self.complete_a and self.complete_b)

    @property
    def rebuilt(self) -> bool:
        """The module is on one side only, or of another class on each side (a checkpoint has no classes): the
        models differ there, even where it holds no tensor (an ``nn.ReLU`` made an ``nn.GELU``). Classes are told by
        name, as shown: two versions of a model's code define their ``Block`` in two modules, and it is the same layer
        in both. An uninitialised lazy module becomes another class at its first forward (``LazyLinear``,
        ``Linear``): not told."""
        if (self.params_a is None) != (self.params_b is None):
            return True
        known = None not in (self.type_a, self.type_b) and self.complete_a and self.complete_b
        return known and self.type_a != self.type_b

    @property
    def holds_nothing(self) -> bool:
        """On one side only, and holding no parameter there (its size known)."""
        if self.params_b is None:
            return self.params_a == self.bytes_a == 0 and self.complete_a
        return self.params_a is None and self.params_b == self.bytes_b == 0 and self.complete_b


@dataclass(frozen=True, slots=True)
class TensorChange:
    """A tensor in both models whose shape, dtype, kind, trainability or persistence differs (trainability and a
    buffer's persistence are compared only where both sides know them: a checkpoint does not; kinds only between two
    models or two checkpoints)."""

    name: str
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    dtype_a: str
    dtype_b: str
    trainable_a: bool | None = None
    trainable_b: bool | None = None
    kind_a: TensorKind = "parameter"
    kind_b: TensorKind = "parameter"
    persistent_a: bool | None = None
    """For a buffer: in its model's state dict or not (``register_buffer(persistent=...)``); ``None`` where not
    known (a parameter, a checkpoint's tensor)."""
    persistent_b: bool | None = None

    @property
    def trainability_changed(self) -> bool:
        return None not in (self.trainable_a, self.trainable_b) and self.trainable_a != self.trainable_b

    @property
    def persistence_changed(self) -> bool:
        """A buffer in one model's state dict and not in the other's: a state dict saved from one does not load
        strictly into the other."""
        return None not in (self.persistent_a, self.persistent_b) and self.persistent_a != self.persistent_b

    @property
    def kind_changed(self) -> bool:
        return self.kind_a != self.kind_b


@dataclass(frozen=True, slots=True)
class SharingChange:
    """Names that are one tensor in one model and several in the other (a tie added or removed), or one module and
    several (a module reused, or no longer): each model's count of distinct objects among ``names``."""

    what: Literal["tensor", "module"]
    names: tuple[str, ...]
    count_a: int
    count_b: int


_OWN_LOAD_CODE = (
    "the model's own load code (its modules' _load_from_state_dict and load_state_dict hooks, run on meta stand-ins)"
)


@dataclass(frozen=True)
class LoadedNames:
    """What a model's own load code makes of a checkpoint's names, beyond matching them as stored: the
    ``_load_from_state_dict`` of each module and the hooks registered with ``_register_load_state_dict_pre_hook``
    and ``register_load_state_dict_post_hook`` (run on meta stand-ins of the model and of the checkpoint's tensors:
    see ``sources/_loading.py``)."""

    renamed: Mapping[str, str]
    """Checkpoint name -> the model's name it is loaded into, where they differ (an old ``weight_g`` into
    ``parametrizations.weight.original0``)."""
    supplied: frozenset[str]
    """The model's names its load code fills without a checkpoint tensor (BatchNorm's ``num_batches_tracked`` for
    a checkpoint saved before version 2): not missing."""
    consumed: frozenset[str]
    """Checkpoint names its load code takes and loads into no tensor: not unexpected."""
    not_run: str = ""
    """Why the load code was not run, where it was not (the names are then compared as stored)."""
    merged: frozenset[str] = frozenset()
    """The model's names that loading fills from several checkpoint tensors (transformers' conversion of Mixtral's
    experts, stored one by one, into one tensor): compared by their count of values, not their shapes."""
    loader: str = _OWN_LOAD_CODE
    """What loads the checkpoint, as the notes name it."""

    @classmethod
    def unknown(cls, why: str) -> LoadedNames:
        """Nothing known of the load code, which was not run for the reason ``why``."""
        return cls({}, frozenset(), frozenset(), why)


@dataclass(frozen=True)
class Diff:
    """The differences between model A and model B. Build one with :func:`paramscope.diff`."""

    a: Report
    b: Report
    modules: tuple[ModuleDelta, ...]
    """Every module path of either model: A's in A's order, B's own ones after the nearest module both have. Against
    a checkpoint, its paths under which the model holds tensors with no module of its own (a parametrized layer's
    ``parametrizations.weight``) are counted in the model's module above them, as inspect counts them."""
    only_in_a: tuple[str, ...]
    """Tensors of A that B lacks: for a model A and its checkpoint B, the keys ``load_state_dict`` reports missing."""
    only_in_b: tuple[str, ...]
    """Tensors of B that A lacks: the unexpected keys."""
    changed: tuple[TensorChange, ...]
    notes: tuple[str, ...] = ()
    sharing: tuple[SharingChange, ...] = ()
    """Ties and reused modules that differ (between two models, or two checkpoints)."""

    @property
    def complete(self) -> bool:
        """Both models' sizes are known: no tensor of unknown size on either side."""
        return self.a.totals.complete and self.b.totals.complete

    @property
    def decided(self) -> bool:
        """Whether the models are known to be the same or not: false when nothing known differs but a side has
        tensors of unknown size (uninitialised lazy parameters, packed weights that cannot be read)."""
        return self.complete or self._differs()

    @property
    def equal(self) -> bool:
        """Nothing differs: no tensor on one side only, none of another shape, dtype, kind, trainability or
        persistence, no tie or reused module on one side only, and (between two models, or two checkpoints) the same
        totals and no module on one side only or of another class; and both sides' sizes are known."""
        return self.complete and not self._differs()

    @property
    def with_checkpoint(self) -> bool:
        """A side is a checkpoint, which holds tensors, not modules: a module that holds no tensor of its own there
        (a tied head stored under its name too) is a name of a tensor, compared with the tensors."""
        return is_checkpoint(self.a) or is_checkpoint(self.b)

    @property
    def counts_alike(self) -> bool:
        """Both sides are checkpoints, or neither is: their totals, and modules without tensors, compare."""
        return _count_alike(self.a, self.b)

    def _differs(self) -> bool:
        if self.only_in_a or self.only_in_b or self.changed or self.sharing:
            return True
        # a checkpoint holds tensors, not modules: its module paths are its tensors' names, compared above (a tied
        # tensor stored under another of its names makes a module of each name on one side only)
        if self.counts_alike and not self.with_checkpoint and any(module.rebuilt for module in self.modules):
            return True
        if not (self.complete and self.counts_alike):
            return False
        return any(getattr(self.a.totals, key) != getattr(self.b.totals, key) for key in _TOTALS)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"schema": "paramscope.diff/1", "a", "b", "equal", "decided", "totals", "modules",
        "only_in_a", "only_in_b", "changed", "sharing", "notes"}``; each total is ``{"a", "b", "delta"}`` (delta
        null where a side is, or where a side's sizes are not all known: its figures are then lower bounds, and a
        module's deltas are null likewise)."""
        complete = self.complete

        def total(key: str) -> dict[str, int | None]:
            a, b = getattr(self.a.totals, key), getattr(self.b.totals, key)
            return {"a": a, "b": b, "delta": None if a is None or b is None or not complete else b - a}

        def side(report: Report) -> dict[str, Any]:
            return {"kind": report.source.kind, "target": report.source.target, "complete": report.totals.complete}

        return {
            "schema": SCHEMA,
            "a": side(self.a),
            "b": side(self.b),
            "equal": self.equal,
            "decided": self.decided,
            "totals": {key: total(key) for key in _TOTALS},
            "modules": [
                {
                    "path": delta.path,
                    "type_a": delta.type_a,
                    "type_b": delta.type_b,
                    "params_a": delta.params_a,
                    "params_b": delta.params_b,
                    "bytes_a": delta.bytes_a,
                    "bytes_b": delta.bytes_b,
                    "params_delta": delta.params_delta if delta.complete_a and delta.complete_b else None,
                    "bytes_delta": delta.bytes_delta if delta.complete_a and delta.complete_b else None,
                    "complete_a": delta.complete_a,
                    "complete_b": delta.complete_b,
                }
                for delta in self.modules
            ],
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "changed": [
                {
                    "name": change.name,
                    "shape_a": None if change.shape_a is None else list(change.shape_a),
                    "shape_b": None if change.shape_b is None else list(change.shape_b),
                    "dtype_a": change.dtype_a,
                    "dtype_b": change.dtype_b,
                    "trainable_a": change.trainable_a,
                    "trainable_b": change.trainable_b,
                    "kind_a": change.kind_a,
                    "kind_b": change.kind_b,
                    "persistent_a": change.persistent_a,
                    "persistent_b": change.persistent_b,
                }
                for change in self.changed
            ],
            "sharing": [
                {"what": item.what, "names": list(item.names), "count_a": item.count_a, "count_b": item.count_b}
                for item in self.sharing
            ],
            "notes": list(self.notes),
        }


@contextmanager
def models_read() -> Iterator[list[Any]]:
    """The live models reported on in the block (built from code or a config, or given), in order: a diff of a model
    and a checkpoint runs the model's own load code (:class:`LoadedNames`)."""
    models: list[Any] = []
    token = _MODELS_READ.set(models)
    try:
        yield models
    finally:
        _MODELS_READ.reset(token)


def model_read(model: Any) -> None:
    """Keep ``model`` for :func:`models_read`, where one is collecting."""
    models = _MODELS_READ.get()
    if models is not None:
        models.append(model)


def _names(record: TensorRecord) -> tuple[str, ...]:
    return (record.name, *record.aliases)


def _stored(report: Report, alike: bool) -> list[TensorRecord]:
    """The tensors to compare: all of them between two checkpoints (or two models); against a model, not a quantised
    checkpoint's scales, zeros and group indices, which no model holds as they are stored."""
    return [record for record in report.tensors if alike or record.kind != "quantization"]


def _count_alike(a: Report, b: Report) -> bool:
    """Whether both are checkpoints or neither is: a checkpoint guesses which tensors are buffers, knows no
    trainability, and may store a tied tensor once or twice."""
    return is_checkpoint(a) == is_checkpoint(b)


def is_checkpoint(report: Report) -> bool:
    """Whether ``report`` is of a checkpoint's tensors, which has no modules of its own."""
    return report.source.kind in _CHECKPOINT_KINDS


def _sharing_changes(
    what: Literal["tensor", "module"], object_a: dict[str, str], object_b: dict[str, str]
) -> list[SharingChange]:
    """The names both sides have, grouped where either side has them as one object (``object_*``: name -> the
    object's first name), where a group is not one object on each side."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # halve the path: a long chain of ties stays cheap
            node = parent[node]
        return node

    common = [name for name in object_a if name in object_b]
    for name in common:
        parent[root(("a", object_a[name]))] = root(("b", object_b[name]))
    groups: dict[tuple[str, str], list[str]] = {}
    for name in common:
        groups.setdefault(root(("a", object_a[name])), []).append(name)
    changes = []
    for names in groups.values():
        count_a, count_b = len({object_a[name] for name in names}), len({object_b[name] for name in names})
        if (count_a, count_b) != (1, 1):
            changes.append(SharingChange(what, tuple(names), count_a, count_b))
    return changes


def _copies_of_ties(model: list[TensorRecord], checkpoint: dict[str, TensorRecord], side: str, other: str) -> list[str]:
    """A note when the checkpoint (its tensors by name) stores tensors the model ties as copies of one another (as
    ``safetensors.torch.save_file`` of cloned tensors does): each copy is counted there, so the totals differ."""
    copies = []
    for record in model:
        names = [name for name in _names(record) if name in checkpoint]
        if len({checkpoint[name].name for name in names}) > 1:
            copies.append(" = ".join(names))
    if not copies:
        return []
    return [
        f"{other} stores as separate copies tensors that {side} ties ({listed(copies)}): {other}'s totals count each "
        f"copy, {side}'s the tied tensor once; load_state_dict loads the copies into that one tensor"
    ]


def _ties_stored_once(
    model: list[TensorRecord], checkpoint: dict[str, TensorRecord], side: str, other: str
) -> list[str]:
    """A note when the checkpoint stores a tensor the model ties under some of its names only (as
    ``safetensors.torch.save_model`` and transformers' ``save_pretrained`` do): the tie is matched by the name it
    has, though ``load_state_dict(strict=True)`` would report the others missing."""
    lacking = []
    for record in model:
        names = _names(record)
        held = [name for name in names if name in checkpoint]
        if held and len(held) < len(names):
            lacking += [f"{name} (tied to {held[0]})" for name in names if name not in checkpoint]
    if not lacking:
        return []
    return [
        f"{other} stores tensors that {side} ties under one of their names, and lacks {listed(lacking)}: matched as "
        f"the tied tensor, which load_state_dict(strict=True) would report missing and safetensors.torch.load_model "
        "and transformers' from_pretrained fill from the tie"
    ]


def _loaded_notes(loaded: LoadedNames) -> list[str]:
    if loaded.not_run:
        return [f"the model's own load code (its load_state_dict hooks, _load_from_state_dict) was not run "
                f"({loaded.not_run}): names compared as stored"]  # fmt: skip
    parts = []
    if loaded.renamed:
        renamed = [f"{stored} as {name}" for stored, name in loaded.renamed.items()]
        parts.append(f"loads {len(renamed)} of the checkpoint's tensors under other names ({listed(renamed, 2)})")
    if loaded.supplied:
        supplied = listed(sorted(loaded.supplied))
        parts.append(f"fills {len(loaded.supplied)} tensor(s) the checkpoint lacks ({supplied})")
    if loaded.consumed:
        parts.append(
            f"takes {len(loaded.consumed)} of its tensors without loading them ({listed(sorted(loaded.consumed))})"
        )
    if loaded.merged:
        parts.append(
            f"fills {len(loaded.merged)} of the model's tensors each from several of its tensors "
            f"({listed(sorted(loaded.merged))}; compared by their count of values)"
        )
    if not parts:
        return []
    how = "load_state_dict loads" if loaded.loader == _OWN_LOAD_CODE else "it loads"
    return [f"{loaded.loader} {', and '.join(parts)}: compared as {how} them"]


def _tensor_differences(
    a: Report, b: Report, loaded: LoadedNames | None = None
) -> tuple[list[str], list[str], list[TensorChange], list[SharingChange], list[str]]:
    notes = []
    alike = _count_alike(a, b)
    stored_a, stored_b = _stored(a, alike), _stored(b, alike)
    # A model's non-persistent buffers are not in its state dict, so no checkpoint has them.
    with_checkpoint = is_checkpoint(a) or is_checkpoint(b)
    records_a = [r for r in stored_a if not (with_checkpoint and r.kind == "buffer" and r.persistent is False)]
    records_b = [r for r in stored_b if not (with_checkpoint and r.kind == "buffer" and r.persistent is False)]
    if len(records_a) != len(stored_a) or len(records_b) != len(stored_b):
        notes.append("non-persistent buffers are left out: a checkpoint does not store them")
    # The names each tensor is matched under: a checkpoint's as the model's load code loads them (renamed, or taken
    # without being loaded), where it was run (``loaded``); the model's own, but those it fills itself.
    names_a = names_b = _names
    supplied_a: frozenset[str] = frozenset()
    supplied_b: frozenset[str] = frozenset()
    if loaded is not None and not alike:
        notes += _loaded_notes(loaded)

        def as_loaded(record: TensorRecord) -> tuple[str, ...]:
            return tuple(loaded.renamed.get(name, name) for name in _names(record) if name not in loaded.consumed)

        if is_checkpoint(a):
            names_a, supplied_b = as_loaded, loaded.supplied
        else:
            names_b, supplied_a = as_loaded, loaded.supplied
    by_name_a: dict[str, TensorRecord] = {}
    by_name_b: dict[str, TensorRecord] = {}
    for records, by_name, names in ((records_a, by_name_a, names_a), (records_b, by_name_b, names_b)):
        for record in records:
            for name in names(record):
                by_name.setdefault(name, record)
    if not alike:  # one side is a model, the other a checkpoint
        model_is_b = not is_checkpoint(b)
        model, checkpoint = (records_b, by_name_a) if model_is_b else (records_a, by_name_b)
        sides = ("B", "A") if model_is_b else ("A", "B")
        notes += _copies_of_ties(model, checkpoint, *sides) + _ties_stored_once(model, checkpoint, *sides)
    elif is_checkpoint(a):  # two checkpoints: one may store a tie (torch.save's state dict) the other saved once
        for records, by_name, sides in ((records_a, by_name_b, ("A", "B")), (records_b, by_name_a, ("B", "A"))):
            notes += _copies_of_ties(records, by_name, *sides) + _ties_stored_once(records, by_name, *sides)
    if with_checkpoint:  # a checkpoint may store a tied tensor under one of its names: any one matches
        only_a = [
            record.name
            for record in records_a
            if names_a(record) and not any(name in by_name_b or name in supplied_a for name in names_a(record))
        ]
        only_b = [
            record.name
            for record in records_b
            if names_b(record) and not any(name in by_name_a or name in supplied_b for name in names_b(record))
        ]
    else:  # two models: every name is a key of the state dict, a tied one's too (a tied head renamed differs)
        only_a = [name for record in records_a for name in _names(record) if name not in by_name_b]
        only_b = [name for record in records_b for name in _names(record) if name not in by_name_a]
    # Each pair of tensors that share a name is compared once, under the first name they share: with a tie on one
    # side only, one tensor of A is two of B (or the other way round), and each of them must fit it.
    changed, compared = [], set()
    scalars_loaded = []  # a model's 0-d tensor against a checkpoint's 1-d one: load_state_dict loads its first value
    counted_otherwise: dict[TensorKind, list[str]] = {}  # the model's kind of each tensor the checkpoint guesses else
    held_by_checkpoint = (records_a, names_a) if is_checkpoint(a) else (records_b, names_b)
    merged = _merged_values(loaded, *held_by_checkpoint) if not alike else {}
    for record in records_a:
        for name in names_a(record):
            found = by_name_b.get(name)
            if found is None:
                continue
            pair = (name, name) if name in merged else (record.name, found.name)  # a merged tensor: compared once
            if pair in compared:
                continue
            compared.add(pair)
            shape_a, shape_b = record.shape, found.shape
            if name in merged:  # several checkpoint tensors loaded into one: compared by their count of values
                held = found if is_checkpoint(a) else record  # the model's tensor
                stored = held.shape if held.numel == merged[name] else (merged[name],)
                shape_a, shape_b = (stored, held.shape) if is_checkpoint(a) else (held.shape, stored)
            change = TensorChange(
                name, shape_a, shape_b, record.dtype, found.dtype, record.trainable, found.trainable,
                record.kind, found.kind, record.persistent, found.persistent,
            )  # fmt: skip
            # an unknown shape (uninitialised lazy) is no difference: the totals say the comparison is incomplete
            shapes_differ = None not in (shape_a, shape_b) and shape_a != shape_b
            if shapes_differ and not alike and _loads_as_a_scalar(*(
                (found, record) if is_checkpoint(a) else (record, found)
            )):  # fmt: skip
                shapes_differ = False
                scalars_loaded.append(name)
            kinds_differ = alike and change.kind_changed
            if not alike and change.kind_changed and "quantization" not in (change.kind_a, change.kind_b):
                counted_otherwise.setdefault(found.kind if is_checkpoint(a) else record.kind, []).append(name)
            if (shapes_differ or found.dtype != record.dtype or kinds_differ or change.trainability_changed
                    or change.persistence_changed):  # fmt: skip
                changed.append(change)
    if scalars_loaded:
        checkpoint_side = "A" if is_checkpoint(a) else "B"
        notes.append(
            f"{listed(scalars_loaded)}: a scalar in the model, of shape (1) in {checkpoint_side}, which "
            "load_state_dict loads (as torch 0.3 saved scalars): not a size mismatch"
        )
    checkpoint_side, model_side = ("A", "B") if is_checkpoint(a) else ("B", "A")
    for kind, guessed in counted_otherwise.items():  # totals that differ for it: the one place they are explained
        other = "parameters" if kind == "buffer" else "buffers"
        notes.append(f"{model_side}'s {len(guessed)} {kind}(s) {listed(guessed)} are counted as {other} in "
                     f"{checkpoint_side}, which guesses each tensor's kind from its name and dtype: the totals of "
                     "parameters and buffers differ by them, and load_state_dict loads them all the same")  # fmt: skip
    sharing = []
    if alike:
        tensor_a = {name: record.name for name, record in by_name_a.items()}
        tensor_b = {name: record.name for name, record in by_name_b.items()}
        module_a = {node.path: node.same_as or node.path for node in a.modules}
        module_b = {node.path: node.same_as or node.path for node in b.modules}
        sharing = _sharing_changes("tensor", tensor_a, tensor_b) + _sharing_changes("module", module_a, module_b)
    return only_a, only_b, changed, sharing, notes


def _merged_values(
    loaded: LoadedNames | None, records: list[TensorRecord], names: Callable[[TensorRecord], tuple[str, ...]]
) -> dict[str, int]:
    """For each model name the loader fills from several of the checkpoint's ``records`` (their ``names`` as
    loaded; :attr:`LoadedNames.merged`), the values those tensors hold together."""
    if loaded is None or not loaded.merged:
        return {}
    values: dict[str, int] = {}
    for record in records:
        for name in set(names(record)) & loaded.merged:
            values[name] = values.get(name, 0) + (record.numel or 0)
    return values


def _loads_as_a_scalar(model: TensorRecord, checkpoint: TensorRecord) -> bool:
    """Whether ``load_state_dict`` loads the checkpoint's tensor into the model's though their shapes differ: a 0-d
    parameter or buffer takes a 1-d tensor of one value (torch's ``_load_from_state_dict``, for checkpoints saved by
    torch 0.3, whose scalars were 1-d); one of more values is a size mismatch."""
    return model.shape == () and checkpoint.shape == (1,)


def _report_notes(a: Report, b: Report) -> list[str]:
    """Each side's own notes (how its figures were counted: ties, lazy tensors, what a checkpoint holds), marked
    with the side; a note both have once."""
    both = set(a.notes) & set(b.notes)
    notes = [f"A and B: {note}" if note in both else f"A: {note}" for note in a.notes]
    return notes + [f"B: {note}" for note in b.notes if note not in both]


def _folded(model: Report, checkpoint: Report) -> set[str]:
    """The checkpoint's module paths that the model holds tensors under without a module of its own there: a
    parametrized layer's ``parametrizations.weight``, which the model's report counts in the layer (as inspect shows
    it). Shown apart, they would be modules on one side only, and the layer's own tensors would differ by theirs."""
    paths = {node.path for node in model.modules}
    in_checkpoint = {node.path for node in checkpoint.modules}
    folded: set[str] = set()
    for record in model.tensors:
        for name in _names(record):
            path = name.rpartition(".")[0]
            while path and path not in paths and path not in folded:
                if path in in_checkpoint:
                    folded.add(path)
                path = path.rpartition(".")[0]
    return folded


def _module_deltas(a: Report, b: Report) -> list[ModuleDelta]:
    folded: set[str] = set()
    if is_checkpoint(a) != is_checkpoint(b):
        folded = _folded(b, a) if is_checkpoint(a) else _folded(a, b)
    nodes_b = {node.path: node for node in b.modules}
    in_a = {node.path for node in a.modules}

    def delta(path: str, node_a: ModuleNode | None, node_b: ModuleNode | None) -> ModuleDelta:
        depth = (node_a or node_b).depth  # type: ignore[union-attr]
        return ModuleDelta(
            path,
            depth,
            None if node_a is None else node_a.type,
            None if node_b is None else node_b.type,
            None if node_a is None else node_a.params,
            None if node_b is None else node_b.params,
            None if node_a is None else node_a.param_bytes,
            None if node_b is None else node_b.param_bytes,
            node_a is None or node_a.complete,
            node_b is None or node_b.complete,
        )

    # B's modules that A lacks go after the last module of A's order whose path is their nearest shared ancestor's
    # subtree, so a grown model reads top to bottom. Both walks up the dotted paths stop at the first path already
    # walked, so each path is split once, not once per module below it: a 10,000-deep chain has some 10^8 pairs of a
    # module and an ancestor, each ancestor a string as long as its path.
    extra: dict[str, list[ModuleNode]] = {}
    anchor_of: dict[str, str] = {}  # a path that A lacks -> its nearest ancestor that A has
    for node in b.modules:
        if node.path in in_a or node.path in folded:
            continue
        walked: list[str] = []
        anchor = node.path
        while anchor not in in_a and anchor not in anchor_of:
            walked.append(anchor)
            anchor = anchor.rpartition(".")[0]
        anchor = anchor_of.get(anchor, anchor)
        anchor_of.update(dict.fromkeys(walked, anchor))
        extra.setdefault(anchor, []).append(node)
    # Walked from A's end, the first module reached under a path is the last of its subtree; the paths set are their
    # ancestors' too, so a walk up stops at the first one set.
    last_in_subtree: dict[str, str] = {}
    for node in reversed(a.modules):
        ancestor = node.path
        while ancestor not in last_in_subtree:
            last_in_subtree[ancestor] = node.path
            if not ancestor:
                break
            ancestor = ancestor.rpartition(".")[0]
    after: dict[str, list[ModuleNode]] = {}
    for anchor, nodes in extra.items():
        after.setdefault(last_in_subtree[anchor], []).extend(nodes)
    deltas = []
    for node in a.modules:
        if node.path not in folded:
            deltas.append(delta(node.path, node, nodes_b.get(node.path)))
        deltas.extend(delta(extra_node.path, None, extra_node) for extra_node in after.get(node.path, ()))
    return deltas


def _modules_as_loaded(checkpoint: Report, loaded: LoadedNames) -> Report:
    """``checkpoint`` with its modules those of its tensors' names as the model's load code loads them (a base
    model's checkpoint, saved without the prefix its model with a head adds, has ``layers.0`` where the model has
    ``model.layers.0``), so that its modules are compared with the model's as its tensors are; as stored where two
    tensors would take one name."""
    if not loaded.renamed:
        return checkpoint
    records = [
        record._replace(name=loaded.renamed.get(record.name, record.name),
                        aliases=tuple(loaded.renamed.get(alias, alias) for alias in record.aliases))
        for record in checkpoint.tensors
    ]  # fmt: skip
    names = [name for record in records for name in _names(record)]
    if len(set(names)) != len(names):
        return checkpoint
    return replace(checkpoint, modules=tree_from_names(records)[0])


def compare(a: Report, b: Report, loaded: LoadedNames | None = None) -> Diff:
    """The differences between the models of two reports; ``loaded``, for a model and a checkpoint, says what the
    model's own load code makes of the checkpoint's names.

    >>> import paramscope
    >>> from paramscope._diff import compare
    >>> small = paramscope.inspect("paramscope.examples:gpt2", {"n_layer": 2})
    >>> large = paramscope.inspect("paramscope.examples:gpt2", {"n_layer": 4})
    >>> found = compare(small, large)
    >>> found.equal, len(found.only_in_b), found.b.totals.params - found.a.totals.params
    (False, 26, 14175744)
    """
    only_a, only_b, changed, sharing, notes = _tensor_differences(a, b, loaded)
    notes += _report_notes(a, b)
    modules_a, modules_b = a, b
    if loaded is not None and not _count_alike(a, b):
        if is_checkpoint(a):
            modules_a = _modules_as_loaded(a, loaded)
        else:
            modules_b = _modules_as_loaded(b, loaded)
    modules = tuple(_module_deltas(modules_a, modules_b))
    return Diff(a, b, modules, tuple(only_a), tuple(only_b), tuple(changed), tuple(notes), tuple(sharing))

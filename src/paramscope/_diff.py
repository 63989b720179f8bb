"""``paramscope diff``: what differs between two models, module by module and tensor by tensor.

Works on two Reports, whatever they were made from: a model against its checkpoint (the ``load_state_dict``
question: what is missing, unexpected or of another shape), a base model against its fine-tuned or pruned version,
two configs (what doubling the layers costs). Tensors are matched by name, their aliases (tied weights) included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._report import ModuleNode, Report, TensorRecord

SCHEMA = "paramscope.diff/1"
_CHECKPOINT_KINDS = frozenset({"safetensors", "torch", "gguf"})


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

    @property
    def params_delta(self) -> int:
        return (self.params_b or 0) - (self.params_a or 0)

    @property
    def bytes_delta(self) -> int:
        return (self.bytes_b or 0) - (self.bytes_a or 0)

    @property
    def changed(self) -> bool:
        return (self.params_a, self.bytes_a) != (self.params_b, self.bytes_b)


@dataclass(frozen=True, slots=True)
class TensorChange:
    """A tensor in both models whose shape, dtype or trainability differs (trainability is compared only where
    both sides know it: a checkpoint does not)."""

    name: str
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    dtype_a: str
    dtype_b: str
    trainable_a: bool | None = None
    trainable_b: bool | None = None

    @property
    def trainability_changed(self) -> bool:
        return None not in (self.trainable_a, self.trainable_b) and self.trainable_a != self.trainable_b


@dataclass(frozen=True)
class Diff:
    """The differences between model A and model B. Build one with :func:`paramscope.diff`."""

    a: Report
    b: Report
    modules: tuple[ModuleDelta, ...]
    """Every module path of either model: A's in A's order, B's own ones after the nearest module both have."""
    only_in_a: tuple[str, ...]
    """Tensors of A that B lacks: for a model A and its checkpoint B, the keys ``load_state_dict`` reports missing."""
    only_in_b: tuple[str, ...]
    """Tensors of B that A lacks: the unexpected keys."""
    changed: tuple[TensorChange, ...]
    notes: tuple[str, ...] = ()

    @property
    def equal(self) -> bool:
        """No tensor on one side only, and none of another shape, dtype or trainability."""
        return not (self.only_in_a or self.only_in_b or self.changed)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"schema": "paramscope.diff/1", "a", "b", "equal", "totals", "modules", "only_in_a",
        "only_in_b", "changed", "notes"}``; each total is ``{"a", "b", "delta"}`` (delta null where a side is)."""
        keys = ("params", "trainable", "param_bytes", "buffers", "buffer_bytes")

        def total(key: str) -> dict[str, int | None]:
            a, b = getattr(self.a.totals, key), getattr(self.b.totals, key)
            return {"a": a, "b": b, "delta": None if a is None or b is None else b - a}

        return {
            "schema": SCHEMA,
            "a": {"kind": self.a.source.kind, "target": self.a.source.target},
            "b": {"kind": self.b.source.kind, "target": self.b.source.target},
            "equal": self.equal,
            "totals": {key: total(key) for key in keys},
            "modules": [
                {
                    "path": delta.path,
                    "type_a": delta.type_a,
                    "type_b": delta.type_b,
                    "params_a": delta.params_a,
                    "params_b": delta.params_b,
                    "bytes_a": delta.bytes_a,
                    "bytes_b": delta.bytes_b,
                    "params_delta": delta.params_delta,
                    "bytes_delta": delta.bytes_delta,
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
                }
                for change in self.changed
            ],
            "notes": list(self.notes),
        }


def _names(record: TensorRecord) -> tuple[str, ...]:
    return (record.name, *record.aliases)


def _stored(report: Report) -> list[TensorRecord]:
    """The tensors to compare: a checkpoint stores neither quantisation metadata as weights nor, for a model,
    non-persistent buffers."""
    return [record for record in report.tensors if record.kind != "quantization"]


def _tensor_differences(a: Report, b: Report) -> tuple[list[str], list[str], list[TensorChange], list[str]]:
    notes = []
    # A model's non-persistent buffers are not in its state dict, so no checkpoint has them.
    skip_buffers = a.source.kind in _CHECKPOINT_KINDS or b.source.kind in _CHECKPOINT_KINDS
    records_a = [r for r in _stored(a) if not (skip_buffers and r.kind == "buffer" and r.persistent is False)]
    records_b = [r for r in _stored(b) if not (skip_buffers and r.kind == "buffer" and r.persistent is False)]
    if len(records_a) != len(_stored(a)) or len(records_b) != len(_stored(b)):
        notes.append("non-persistent buffers are left out: a checkpoint does not store them")
    by_name_b = {name: record for record in records_b for name in _names(record)}
    matched_b: set[str] = set()
    only_a, changed = [], []
    for record in records_a:
        found = next((by_name_b[name] for name in _names(record) if name in by_name_b), None)
        if found is None:
            only_a.append(record.name)
            continue
        matched_b.add(found.name)
        change = TensorChange(
            record.name, record.shape, found.shape, record.dtype, found.dtype, record.trainable, found.trainable
        )
        if found.shape != record.shape or found.dtype != record.dtype or change.trainability_changed:
            changed.append(change)
    only_b = [record.name for record in records_b if record.name not in matched_b]
    return only_a, only_b, changed, notes


def _module_deltas(a: Report, b: Report) -> list[ModuleDelta]:
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
        )

    # B's modules that A lacks go after the last module of A's order whose path is their nearest shared ancestor's
    # subtree, so a grown model reads top to bottom.
    extra: dict[str, list[ModuleNode]] = {}
    for node in b.modules:
        if node.path not in in_a:
            anchor = node.path
            while anchor not in in_a:
                anchor = anchor.rpartition(".")[0]
            extra.setdefault(anchor, []).append(node)
    last_in_subtree: dict[str, str] = {}
    for node in a.modules:
        path = node.path
        ancestor = path
        while True:
            last_in_subtree[ancestor] = path
            if not ancestor:
                break
            ancestor = ancestor.rpartition(".")[0]
    after: dict[str, list[ModuleNode]] = {}
    for anchor, nodes in extra.items():
        after.setdefault(last_in_subtree[anchor], []).extend(nodes)
    deltas = []
    for node in a.modules:
        deltas.append(delta(node.path, node, nodes_b.get(node.path)))
        deltas.extend(delta(extra_node.path, None, extra_node) for extra_node in after.get(node.path, ()))
    return deltas


def compare(a: Report, b: Report) -> Diff:
    """The differences between the models of two reports.

    >>> import paramscope
    >>> from paramscope._diff import compare
    >>> small = paramscope.inspect("paramscope.examples:gpt2", {"n_layer": 2})
    >>> large = paramscope.inspect("paramscope.examples:gpt2", {"n_layer": 4})
    >>> found = compare(small, large)
    >>> found.equal, len(found.only_in_b), found.b.totals.params - found.a.totals.params
    (False, 26, 14175744)
    """
    only_a, only_b, changed, notes = _tensor_differences(a, b)
    return Diff(a, b, tuple(_module_deltas(a, b)), tuple(only_a), tuple(only_b), tuple(changed), tuple(notes))

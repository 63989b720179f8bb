"""The Report: plain frozen data about a model's tensors, module tree and totals. No formatting lives here.

A Report is the same whatever it was made from (a live module, later a checkpoint or a config), so every renderer
and every check works on all of them. ``Report.to_dict()`` is the JSON contract (schema ``paramscope.report/1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from ._check import Check
    from ._memory import MemoryPlan

SCHEMA = "paramscope.report/1"

TensorKind = Literal["parameter", "buffer", "quantization"]
"""``quantization``: the scales, zero points, group indices and absmax of a quantised checkpoint, which belong to no
parameter count of the model they encode."""


# TensorRecord and ModuleNode are NamedTuples rather than frozen dataclasses: a model can have 10^5 of each, and a
# NamedTuple is built 3-4x faster and is ignored by the garbage collector once it holds only strings and numbers.


class Sharding(NamedTuple):
    """How a tensor is split across ranks, and what this rank holds of it."""

    scheme: str
    """``"dtensor"``, ``"fsdp1"`` or ``"zero3"``."""
    mesh: tuple[int, ...] | None
    """The device mesh's shape (``(world size,)`` for FSDP1 and ZeRO-3); ``None`` where it is not known."""
    placements: tuple[str, ...]
    """Per mesh dimension: ``Shard(0)``, ``Replicate()``, ``Partial(sum)``; a flat shard for FSDP1 and ZeRO-3."""
    local_shape: tuple[int, ...] | None
    local_numel: int
    local_bytes: int
    """The bytes of this tensor's elements on this rank (its share of a flat shard's padding is not included)."""


class RankShare(NamedTuple):
    """What one rank holds of a sharded model (see ``inspect(model, all_ranks=True)``)."""

    rank: int
    params: int
    param_bytes: int
    model_params: int | None = None
    """The parameters of the whole model the rank holds a share of (its own: pipeline stages differ)."""


class TensorRecord(NamedTuple):
    """One unique tensor. Tensors reachable under several names (tied weights) appear once, with ``aliases``.

    ``shape``, ``numel`` and ``bytes`` are ``None`` when the size is unknown (an uninitialised lazy parameter,
    packed weights that cannot be read); the report's notes and ``Totals.complete`` say so.
    """

    name: str
    shape: tuple[int, ...] | None
    numel: int | None
    dtype: str
    bytes: int | None
    kind: TensorKind
    trainable: bool | None
    """``requires_grad`` for parameters; ``None`` for buffers and for sources that do not know."""
    persistent: bool | None
    """For buffers: saved in the ``state_dict`` or not; ``None`` for parameters."""
    aliases: tuple[str, ...] = ()
    """Other names that refer to this same tensor, e.g. a tied ``lm_head.weight``."""
    packing: str | None = None
    """For a quantised weight: how its values are stored (``8 × int4 per int32 (GPTQ)``); ``shape``, ``numel`` and
    ``dtype`` then describe the logical weight, and ``bytes`` the storage."""
    sharding: Sharding | None = None
    """For a tensor sharded across ranks (DTensor, FSDP1, ZeRO-3): the mesh, the placements and this rank's share;
    ``shape``, ``numel`` and ``bytes`` are the global tensor's."""


class ModuleNode(NamedTuple):
    """One module of the tree. ``params``/``param_bytes`` cover the subtree, each tensor counted once.

    A tensor shared by several modules is counted under its first owner (in registration order), so for every node
    ``params == own_params + sum(child.params)`` and the rows at any depth add up to the totals.
    """

    path: str
    """Dotted path from the root; ``""`` is the root."""
    type: str | None
    """The module's class name; ``None`` where the source does not say (checkpoints)."""
    depth: int
    own_params: int
    own_param_bytes: int
    params: int
    param_bytes: int
    trainable: int | None
    buffers: int
    buffer_bytes: int
    complete: bool = True
    """False when a tensor in the subtree has no known size."""
    same_as: str | None = None
    """For a module object reached under a second path: the path where it was first seen (and counted)."""
    shared: tuple[str, ...] = ()
    """Names of this module's own tensors that are counted under another module (tied weights)."""
    formula: str | None = None
    """With ``explain``: the layer's closed-form count written out (``Conv2d: 64 × 3/1 × 7 × 7 = 9,408``)."""
    formula_matches: bool | None = None
    """With ``explain``: whether the formula equals the tensors the module holds (False: the tensors are counted)."""
    active_params: int | None = None
    """For a mixture of experts: the parameters of this subtree used per token; ``None`` for dense models (and for
    a single expert, which a token uses or not)."""


class CallRecord(NamedTuple):
    """One module's part in a forward pass (see :func:`paramscope.summary`), in execution order.

    ``flops``, ``macs`` and ``activations_bytes`` cover the module's subtree, as ``params`` does; a module called
    several times is one record, its figures summed over the calls. ``own_flops`` and ``own_activations_bytes`` are
    those of the ops the module ran itself, outside the modules it called (an attention's product of queries and
    keys): a module's figures are its own plus its children's, when no child is also called from elsewhere.
    """

    path: str
    type: str
    depth: int
    inputs: str
    """The shapes of the first call's inputs, structure kept: ``([1, 3, 224, 224],)``."""
    outputs: str
    params: int
    flops: int
    macs: int
    calls: int
    activations_bytes: int | None
    """Bytes autograd saves for backward inside this module in a train-mode forward; None when the model could not
    run one (the notes say why)."""
    own_flops: int = 0
    own_activations_bytes: int | None = None
    """Of ``activations_bytes``, what the module's own ops saved; None as that is."""


@dataclass(frozen=True, slots=True)
class Totals:
    """Whole-model figures. ``trainable``/``frozen`` are ``None`` where the source cannot tell (checkpoints)."""

    params: int
    trainable: int | None
    frozen: int | None
    param_bytes: int
    buffers: int
    buffer_bytes: int
    complete: bool = True
    """False when some tensors have no known size: the figures above are then lower bounds (see the notes)."""
    quantization: int = 0
    """Elements of quantisation tensors (scales, zeros, group indices), apart from the parameters."""
    quantization_bytes: int = 0
    active_params: int | None = None
    """For a mixture of experts: parameters used per token (routed experts × top-k / experts); ``None`` if dense."""
    non_embedding_params: int | None = None
    """With ``exclude_embeddings``: the parameters without the input embeddings and an untied output head."""
    flops: int | None = None
    """With a forward pass (``summary``): floating-point operations, as torch's FlopCounterMode counts them."""
    macs: int | None = None
    """Multiply-accumulates: half the FLOPs (every op FlopCounterMode counts is a matmul, convolution or attention)."""
    activations_bytes: int | None = None
    """With a forward pass: bytes autograd saves for backward in train mode; ``None`` when no forward ran."""
    local_params: int | None = None
    """For a sharded model: the parameter elements this rank holds; ``None`` when nothing is sharded."""
    local_param_bytes: int | None = None
    """For a sharded model: the parameter bytes this rank holds, flat shards' padding included."""


@dataclass(frozen=True, slots=True)
class DtypeTotals:
    """Parameters and their bytes for one dtype."""

    params: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Source:
    """What the report was made from: ``kind`` (``"module"``, …), the ``target`` as given, and the device."""

    kind: str
    target: str
    device: str | None = None
    files: tuple[str, ...] = ()
    """The files read, for sources on disk (a sharded checkpoint's index and all its shards, and its config.json)."""


LAZY_PARAMETERS = "uninitialised lazy parameters"
UNREAD_PACKED_WEIGHTS = "packed weights that cannot be read"


def unknown_sizes(tensors: Iterable[TensorRecord]) -> tuple[str, ...]:
    """The kinds of the tensors of unknown size among ``tensors`` (see :attr:`Report.unknown_sizes`)."""
    unknown = [record for record in tensors if record.numel is None]
    kinds = []
    # a record of unknown size is a lazy tensor's, or that of packed weights that cannot be read, which has a packing
    if any(record.packing is None for record in unknown):
        kinds.append(LAZY_PARAMETERS)
    if any(record.packing is not None for record in unknown):
        kinds.append(UNREAD_PACKED_WEIGHTS)
    return tuple(kinds)


@dataclass(frozen=True)
class Report:
    """Everything paramscope knows about one model. Build one with :func:`paramscope.inspect`."""

    source: Source
    totals: Totals
    by_dtype: Mapping[str, DtypeTotals]
    tensors: tuple[TensorRecord, ...]
    modules: tuple[ModuleNode, ...]
    notes: tuple[str, ...] = ()
    check: Check | None = None
    """With ``check``: how a checkpoint and the model its config describes disagree."""
    calls: tuple[CallRecord, ...] | None = None
    """With a forward pass (``summary``): each module's call, in execution order; ``None`` otherwise."""
    memory: MemoryPlan | None = None
    """With :func:`paramscope.memory`: the itemised memory budget."""
    ranks: tuple[RankShare, ...] | None = None
    """With ``inspect(model, all_ranks=True)``: each rank's share of the parameters, in rank order."""
    state_dict_metadata: Mapping[str, Mapping[str, Any]] | None = None
    """For a state dict saved with ``torch.save``: its ``_metadata`` (each module prefix's ``{"version": …}``), which
    ``load_state_dict`` hands to each module's load code; ``None`` where the checkpoint has none (safetensors, a plain
    dict). Not part of the JSON form."""
    embedding_layers: frozenset[str] | None = None
    """For a live model: the paths of its embedding layers (``nn.Embedding`` and ``nn.EmbeddingBag``, subclasses
    too), whose ``weight`` ``exclude_embeddings`` leaves out; ``None`` where the source has no modules' classes (a
    checkpoint: told by their names). Not part of the JSON form."""

    def __post_init__(self) -> None:
        if not isinstance(self.by_dtype, MappingProxyType):
            object.__setattr__(self, "by_dtype", MappingProxyType(dict(self.by_dtype)))
        metadata = self.state_dict_metadata
        if metadata is not None and not isinstance(metadata, MappingProxyType):
            frozen = {prefix: MappingProxyType(dict(entry)) for prefix, entry in metadata.items()}
            object.__setattr__(self, "state_dict_metadata", MappingProxyType(frozen))

    @property
    def unknown_sizes(self) -> tuple[str, ...]:
        """The kinds of the tensors of unknown size: :data:`LAZY_PARAMETERS` (``"uninitialised lazy parameters"``),
        :data:`UNREAD_PACKED_WEIGHTS` (``"packed weights that cannot be read"``), both, or none when every size is
        known.

        >>> import paramscope
        >>> paramscope.inspect("paramscope.examples:resnet18").unknown_sizes
        ()
        """
        return unknown_sizes(self.tensors)

    def tensor(self, name: str) -> TensorRecord:
        """The record of the tensor called ``name`` (its own name or one of its aliases).

        Raises ``KeyError`` when the model has no tensor of that name, naming the closest names it has.
        """
        try:
            return self._tensors_by_name[name]
        except KeyError:
            raise NotInReportError("tensor", name, self._tensors_by_name) from None

    @cached_property
    def _tensors_by_name(self) -> dict[str, TensorRecord]:
        index: dict[str, TensorRecord] = {}
        for record in self.tensors:
            for key in (record.name, *record.aliases):
                index.setdefault(key, record)
        return index

    # Frozen but not hashable: by_dtype is a mapping. Reports compare by value.
    __hash__ = None  # type: ignore[assignment]

    def module(self, path: str) -> ModuleNode:
        """The tree node at ``path`` (``""`` for the root). Raises ``KeyError`` when there is none, naming the closest
        paths there are."""
        try:
            return self._modules_by_path[path]
        except KeyError:
            raise NotInReportError("module", path, self._modules_by_path) from None

    @cached_property
    def _modules_by_path(self) -> dict[str, ModuleNode]:
        return {node.path: node for node in self.modules}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"schema": "paramscope.report/1", "source", "totals", "by_dtype", "tensors",
        "modules", "notes", "check", "calls", "memory", "ranks"}``, with only JSON types (lists, not tuples)."""
        return {
            "schema": SCHEMA,
            "source": {**asdict(self.source), "files": list(self.source.files)},
            "totals": asdict(self.totals),
            "by_dtype": {name: asdict(entry) for name, entry in self.by_dtype.items()},
            "tensors": [_record_dict(record) for record in self.tensors],
            "modules": [_node_dict(node) for node in self.modules],
            "notes": list(self.notes),
            "check": None if self.check is None else _check_dict(self.check),
            "calls": None if self.calls is None else [call._asdict() for call in self.calls],
            "memory": None if self.memory is None else self.memory.to_dict(),
            "ranks": None if self.ranks is None else [share._asdict() for share in self.ranks],
        }

    def __rich__(self) -> Any:
        from .render.text import rich_renderable

        return rich_renderable(self)

    def _repr_html_(self) -> str:
        """The HTML report (totals, treemap, tables) for Jupyter, scoped to its own element."""
        import secrets

        from .render.html import html_fragment

        return html_fragment(self, element_id=f"paramscope-{secrets.token_hex(6)}")

    def __str__(self) -> str:
        from .render.text import render_plain

        return render_plain(self)


def _record_dict(record: TensorRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "shape": None if record.shape is None else list(record.shape),
        "numel": record.numel,
        "dtype": record.dtype,
        "bytes": record.bytes,
        "kind": record.kind,
        "trainable": record.trainable,
        "persistent": record.persistent,
        "aliases": list(record.aliases),
        "packing": record.packing,
        "sharding": None if record.sharding is None else _sharding_dict(record.sharding),
    }


def _sharding_dict(sharding: Sharding) -> dict[str, Any]:
    return {
        "scheme": sharding.scheme,
        "mesh": None if sharding.mesh is None else list(sharding.mesh),
        "placements": list(sharding.placements),
        "local_shape": None if sharding.local_shape is None else list(sharding.local_shape),
        "local_numel": sharding.local_numel,
        "local_bytes": sharding.local_bytes,
    }


def _check_dict(check: Check) -> dict[str, Any]:
    return {
        "against": check.against,
        "ok": check.ok,
        "missing": list(check.missing),
        "unexpected": list(check.unexpected),
        "mismatched": [
            {
                "name": item.name,
                "model_shape": None if item.model_shape is None else list(item.model_shape),
                "checkpoint_shape": None if item.checkpoint_shape is None else list(item.checkpoint_shape),
            }
            for item in check.mismatched
        ],
    }


def _node_dict(node: ModuleNode) -> dict[str, Any]:
    data = node._asdict()
    data["shared"] = list(node.shared)
    return data


class NotInReportError(KeyError):
    """A lookup by a name the report does not have: ``args`` is the name, as a dict's KeyError has it; its text names
    the closest names the report has, worked out when shown (with 10^5 names, a search takes seconds: a caller that
    catches the KeyError does not wait for it)."""

    def __init__(self, kind: str, name: str, names: Mapping[str, object]) -> None:
        super().__init__(name)
        self._kind, self._names = kind, names

    def __str__(self) -> str:
        import difflib  # only on this error path

        name = self.args[0]
        # a parametrized layer's weight is computed, and stored as torch.nn.utils.parametrize keeps its originals
        owner, _, leaf = name.rpartition(".")
        kept = f"{owner}.parametrizations.{leaf}." if owner else f"parametrizations.{leaf}."
        originals = [held for held in self._names if held.startswith(kept)]
        if self._kind == "tensor" and originals:
            return (f"no tensor {name!r} in this report: it is computed by a parametrization, from "
                    f"{', '.join(map(repr, sorted(originals)))}")  # fmt: skip
        close = difflib.get_close_matches(name, self._names, n=3, cutoff=0.8)
        hint = f"the closest: {', '.join(map(repr, close))}" if close else "none has a name close to it"
        return f"no {self._kind} {name!r} in this report; {hint}"

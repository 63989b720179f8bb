"""Aggregation of tensors into the module tree, shared by every source.

A source walks its model in pre-order, adding each module with its parent, and lists its unique tensors with the
index of the module that owns each; ``build`` then sums every subtree bottom-up in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._report import DtypeTotals, ModuleNode, TensorRecord, Totals


class TreeBuilder:
    """Collects modules in pre-order, then aggregates tensors into ``ModuleNode`` rows.

    >>> from paramscope._report import TensorRecord
    >>> tree = TreeBuilder()
    >>> root = tree.add_module("", "Net", parent=-1)
    >>> fc = tree.add_module("fc", "Linear", parent=root)
    >>> weight = TensorRecord("fc.weight", (2, 3), 6, "float32", 24, "parameter", True, None)
    >>> nodes, totals, by_dtype = tree.build([weight], owners=[fc])
    >>> [(node.path, node.own_params, node.params) for node in nodes], totals.param_bytes, by_dtype["float32"].params
    ([('', 0, 6), ('fc', 6, 6)], 24, 6)
    """

    def __init__(self, *, trainability_known: bool = True) -> None:
        self._paths: list[str] = []
        self._types: list[str | None] = []
        self._parents: list[int] = []
        self._depths: list[int] = []
        self._same_as: dict[int, str] = {}
        self._shared: dict[int, list[str]] = {}
        self.trainability_known = trainability_known

    def add_module(self, path: str, type_name: str | None, parent: int, *, same_as: str | None = None) -> int:
        """Add a module below ``parent`` (-1 for the root); modules must come in pre-order. Returns its index."""
        index = len(self._paths)
        self._paths.append(path)
        self._types.append(type_name)
        self._parents.append(parent)
        self._depths.append(self._depths[parent] + 1 if parent >= 0 else 0)
        if same_as is not None:
            self._same_as[index] = same_as
        return index

    def add_shared(self, owner: int, name: str) -> None:
        """Record that module ``owner`` also holds the tensor ``name``, which is counted under another module."""
        self._shared.setdefault(owner, []).append(name)

    def build(
        self, records: Sequence[TensorRecord], owners: Sequence[int]
    ) -> tuple[tuple[ModuleNode, ...], Totals, dict[str, DtypeTotals]]:
        """The nodes in pre-order, the totals and the per-dtype figures, in one pass over the tensors.

        ``owners[i]`` is the index of the module that owns ``records[i]``; the root's subtree is the whole model,
        so the totals are the root's figures. A tensor of unknown size makes its module, its ancestors and the
        totals incomplete.
        """
        count = len(self._paths)
        if not count:
            raise ValueError("a tree needs its root module before it can be built")
        own_params = [0] * count
        own_param_bytes = [0] * count
        own_trainable = [0] * count
        own_buffers = [0] * count
        own_buffer_bytes = [0] * count
        own_complete = [True] * count
        dtype_params: dict[str, int] = {}
        dtype_bytes: dict[str, int] = {}
        quantization = quantization_bytes = 0
        for record, owner in zip(records, owners, strict=True):
            numel, size = record.numel, record.bytes
            if numel is None or size is None:
                own_complete[owner] = False
            elif record.kind == "parameter":
                own_params[owner] += numel
                own_param_bytes[owner] += size
                if record.trainable:
                    own_trainable[owner] += numel
                dtype = record.dtype
                dtype_params[dtype] = dtype_params.get(dtype, 0) + numel
                dtype_bytes[dtype] = dtype_bytes.get(dtype, 0) + size
            elif record.kind == "quantization":
                quantization += numel
                quantization_bytes += size
            else:
                own_buffers[owner] += numel
                own_buffer_bytes[owner] += size
        params, param_bytes, trainable = list(own_params), list(own_param_bytes), own_trainable
        buffers, buffer_bytes, complete = own_buffers, own_buffer_bytes, own_complete
        # Pre-order puts every child after its parent, so one reverse sweep folds each subtree into its parent.
        parents = self._parents
        for index in range(count - 1, 0, -1):
            parent = parents[index]
            params[parent] += params[index]
            param_bytes[parent] += param_bytes[index]
            trainable[parent] += trainable[index]
            buffers[parent] += buffers[index]
            buffer_bytes[parent] += buffer_bytes[index]
            if not complete[index]:
                complete[parent] = False
        known = self.trainability_known
        same_as, shared = self._same_as, self._shared
        nodes = tuple(
            ModuleNode(
                self._paths[i],
                self._types[i],
                self._depths[i],
                own_params[i],
                own_param_bytes[i],
                params[i],
                param_bytes[i],
                trainable[i] if known else None,
                buffers[i],
                buffer_bytes[i],
                complete[i],
                same_as.get(i),
                tuple(shared.get(i, ())),
            )
            for i in range(count)
        )
        totals = Totals(  # the root's subtree is the whole model
            params=params[0],
            trainable=trainable[0] if known else None,
            frozen=params[0] - trainable[0] if known else None,
            param_bytes=param_bytes[0],
            buffers=buffers[0],
            buffer_bytes=buffer_bytes[0],
            complete=complete[0],
            quantization=quantization,
            quantization_bytes=quantization_bytes,
        )
        by_dtype = {
            name: DtypeTotals(dtype_params[name], dtype_bytes[name])
            for name in sorted(dtype_params, key=lambda name: -dtype_bytes[name])
        }
        return nodes, totals, by_dtype


def _natural_key(path: str) -> tuple[int, int, str]:
    # "layers.10" after "layers.9": among siblings (one parent, so only the last part differs), parts of ASCII
    # digits compare as numbers, before the other parts. Not by int(): it refuses "²" (which str.isdigit() accepts)
    # and runs of more than 4,300 digits, so by length, then digits.
    part = path.rpartition(".")[2]
    if part.isascii() and part.isdigit():
        digits = part.lstrip("0") or "0"
        return 0, len(digits), digits
    return 1, 0, part


def tree_from_names(
    records: Sequence[TensorRecord], *, trainability_known: bool = False, sort: bool = False
) -> tuple[tuple[ModuleNode, ...], Totals, dict[str, DtypeTotals]]:
    """The module tree implied by dotted tensor names (``model.layers.0.mlp.up_proj.weight`` lives in module
    ``model.layers.0.mlp.up_proj``), for sources that have names and no modules: checkpoints.

    Modules are listed in pre-order, children in the order their first tensor appears (or in natural order of
    their names with ``sort``).

    >>> from paramscope._report import TensorRecord
    >>> weight = TensorRecord("encoder.fc.weight", (2, 3), 6, "float32", 24, "parameter", None, None)
    >>> nodes, totals, _ = tree_from_names([weight])
    >>> [(node.path, node.params) for node in nodes], totals.trainable
    ([('', 6), ('encoder', 6), ('encoder.fc', 6)], None)
    """
    children: dict[str, list[str]] = {"": []}

    def add_path(name: str) -> str:
        path = name.rpartition(".")[0]
        missing = []  # this module and its ancestors not seen yet, innermost first
        while path not in children:
            missing.append(path)
            path = path.rpartition(".")[0]
        for module in reversed(missing):
            children[module] = []
            children[module.rpartition(".")[0]].append(module)
        return name.rpartition(".")[0]

    owner_paths = [add_path(record.name) for record in records]
    # A tensor stored once under several names (a tied head): the other names' modules hold it as shared.
    shared = [(add_path(alias), record.name) for record in records for alias in record.aliases]
    tree = TreeBuilder(trainability_known=trainability_known)
    index_of: dict[str, int] = {}
    stack: list[tuple[str, int]] = [("", -1)]
    while stack:
        path, parent = stack.pop()
        index_of[path] = tree.add_module(path, None, parent)
        kids = sorted(children[path], key=_natural_key) if sort else children[path]
        stack.extend((kid, index_of[path]) for kid in reversed(kids))
    for path, name in shared:
        tree.add_shared(index_of[path], name)
    return tree.build(records, [index_of[path] for path in owner_paths])

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
        self._types: list[str] = []
        self._parents: list[int] = []
        self._depths: list[int] = []
        self._same_as: dict[int, str] = {}
        self._shared: dict[int, list[str]] = {}
        self.trainability_known = trainability_known

    def add_module(self, path: str, type_name: str, parent: int, *, same_as: str | None = None) -> int:
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
        )
        by_dtype = {
            name: DtypeTotals(dtype_params[name], dtype_bytes[name])
            for name in sorted(dtype_params, key=lambda name: -dtype_bytes[name])
        }
        return nodes, totals, by_dtype

"""Aggregation of tensors into the module tree, shared by every source.

A source walks its model in pre-order, adding each module with its parent, and lists its unique tensors with the
index of the module that owns each; ``build`` then sums every subtree bottom-up in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._report import ModuleNode, TensorRecord


class TreeBuilder:
    """Collects modules in pre-order, then aggregates tensors into ``ModuleNode`` rows.

    >>> from paramscope._report import TensorRecord
    >>> tree = TreeBuilder()
    >>> root = tree.add_module("", "Net", parent=-1)
    >>> fc = tree.add_module("fc", "Linear", parent=root)
    >>> weight = TensorRecord("fc.weight", (2, 3), 6, "float32", 24, "parameter", True, None)
    >>> [(node.path, node.own_params, node.params) for node in tree.build([weight], owners=[fc])]
    [('', 0, 6), ('fc', 6, 6)]
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

    def build(self, records: Sequence[TensorRecord], owners: Sequence[int]) -> tuple[ModuleNode, ...]:
        """The nodes in pre-order; ``owners[i]`` is the index of the module that owns ``records[i]``."""
        count = len(self._paths)
        own_params = [0] * count
        own_param_bytes = [0] * count
        own_trainable = [0] * count
        own_buffers = [0] * count
        own_buffer_bytes = [0] * count
        own_complete = [True] * count
        for record, owner in zip(records, owners, strict=True):
            numel, size = record.numel, record.bytes
            if numel is None or size is None:
                own_complete[owner] = False
            elif record.kind == "parameter":
                own_params[owner] += numel
                own_param_bytes[owner] += size
                if record.trainable:
                    own_trainable[owner] += numel
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
        return tuple(
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

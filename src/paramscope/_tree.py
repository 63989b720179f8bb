"""Aggregation of tensors into the module tree, shared by every source.

A source walks its model in pre-order, adding each module with its parent and each unique tensor with the module
that owns it; ``build`` then sums every subtree bottom-up in one pass.
"""

from __future__ import annotations

from ._report import ModuleNode, TensorRecord


class TreeBuilder:
    """Collects modules (in pre-order) and their own tensors, then yields the aggregated ``ModuleNode`` tuple.

    >>> from paramscope._report import TensorRecord
    >>> tree = TreeBuilder()
    >>> root = tree.add_module("", "Net", parent=-1)
    >>> fc = tree.add_module("fc", "Linear", parent=root)
    >>> tree.add_tensor(fc, TensorRecord("fc.weight", (2, 3), 6, "float32", 24, "parameter", True, None))
    >>> [(node.path, node.params) for node in tree.build()]
    [('', 6), ('fc', 6)]
    """

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._types: list[str] = []
        self._parents: list[int] = []
        self._depths: list[int] = []
        self._same_as: list[str | None] = []
        self._params: list[int] = []
        self._param_bytes: list[int] = []
        self._trainable: list[int] = []
        self._buffers: list[int] = []
        self._buffer_bytes: list[int] = []
        self._complete: list[bool] = []
        self._shared: dict[int, list[str]] = {}
        self.trainability_known = True

    def add_module(self, path: str, type_name: str, parent: int, *, same_as: str | None = None) -> int:
        """Add a module below ``parent`` (-1 for the root); modules must come in pre-order. Returns its index."""
        self._paths.append(path)
        self._types.append(type_name)
        self._parents.append(parent)
        self._depths.append(0 if parent < 0 else self._depths[parent] + 1)
        self._same_as.append(same_as)
        self._params.append(0)
        self._param_bytes.append(0)
        self._trainable.append(0)
        self._buffers.append(0)
        self._buffer_bytes.append(0)
        self._complete.append(True)
        return len(self._paths) - 1

    def add_tensor(self, owner: int, record: TensorRecord) -> None:
        """Count ``record`` as an own tensor of module ``owner``."""
        if record.numel is None or record.bytes is None:
            self._complete[owner] = False
        elif record.kind == "parameter":
            self._params[owner] += record.numel
            self._param_bytes[owner] += record.bytes
            if record.trainable:
                self._trainable[owner] += record.numel
        else:
            self._buffers[owner] += record.numel
            self._buffer_bytes[owner] += record.bytes

    def add_shared(self, owner: int, name: str) -> None:
        """Record that module ``owner`` also holds the tensor ``name``, which is counted under another module."""
        self._shared.setdefault(owner, []).append(name)

    def build(self) -> tuple[ModuleNode, ...]:
        """Sum every subtree and return the nodes in pre-order."""
        count = len(self._paths)
        params = list(self._params)
        param_bytes = list(self._param_bytes)
        trainable = list(self._trainable)
        buffers = list(self._buffers)
        buffer_bytes = list(self._buffer_bytes)
        complete = list(self._complete)
        # Pre-order puts every child after its parent, so one reverse sweep folds each subtree into its parent.
        for index in range(count - 1, 0, -1):
            parent = self._parents[index]
            params[parent] += params[index]
            param_bytes[parent] += param_bytes[index]
            trainable[parent] += trainable[index]
            buffers[parent] += buffers[index]
            buffer_bytes[parent] += buffer_bytes[index]
            complete[parent] = complete[parent] and complete[index]
        known = self.trainability_known
        return tuple(
            ModuleNode(
                path=self._paths[index],
                type=self._types[index],
                depth=self._depths[index],
                own_params=self._params[index],
                own_param_bytes=self._param_bytes[index],
                params=params[index],
                param_bytes=param_bytes[index],
                trainable=trainable[index] if known else None,
                buffers=buffers[index],
                buffer_bytes=buffer_bytes[index],
                complete=complete[index],
                same_as=self._same_as[index],
                shared=tuple(self._shared.get(index, ())),
            )
            for index in range(count)
        )

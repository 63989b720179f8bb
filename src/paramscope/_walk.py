"""One walk over a model's modules, read as often as a forward's bookkeeping needs.

``nn.Module.modules()``, ``parameters()`` and ``buffers()`` walk the whole tree again on every call, through a
generator per level. A summary reads the tree a dozen times around one forward (checks, hooks, stand-ins, the
modes and flags to restore); on CPU each walk costs several times what it costs alone, since the forward's kernels
leave the caches cold, and the summary's target is a few percent of that forward.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn


class ModuleWalk:
    """The modules of ``model``, each under every path it is registered at (a path back to a module that contains
    it, a cycle, cut where it closes), and their tensors.

    >>> from torch import nn
    >>> shared = nn.Linear(2, 2)
    >>> walk = ModuleWalk(nn.Sequential(shared, shared))
    >>> [path for path, _ in walk.named_modules], len(walk.modules)
    (['', '0', '1'], 2)
    >>> [name for name, _ in walk.named_tensors("parameters")]
    ['0.weight', '0.bias']
    >>> [name for name, _ in walk.named_tensors("parameters", remove_duplicate=False)]
    ['0.weight', '0.bias', '1.weight', '1.bias']
    """

    def __init__(self, model: nn.Module) -> None:
        self.named_modules: list[tuple[str, nn.Module]] = []
        """Every module under every path, as ``model.named_modules(remove_duplicate=False)``, a cycle cut where it
        closes."""
        self.cycles: list[tuple[str, str]] = []
        """Where the module graph refers back to a module that contains it: the path of the reference and the
        module's own path. ``named_modules(remove_duplicate=False)`` recurses through these without end."""
        self.paths: dict[int, str] = {}
        """Each module's first path, by ``id``."""
        self.modules: list[nn.Module] = []
        """Each module once, as ``model.modules()``."""
        self._visit(model)
        self._named_tensors: dict[tuple[str, bool], list[tuple[str, torch.Tensor]]] = {}

    def _visit(self, model: nn.Module) -> None:
        # Depth-first, in pre-order, with a stack rather than a recursion as deep as the model (a chain of thousands
        # of modules), and not torch's named_modules, which nests a generator per level and passes each module up
        # through all of them. ``containing``: the modules on the path from the root, by id, to tell a cycle.
        containing: dict[int, str] = {}
        stack: list[tuple[str, nn.Module, bool]] = [("", model, False)]  # (path, module, leaving it)
        while stack:
            path, module, leaving = stack.pop()
            if leaving:
                del containing[id(module)]
                continue
            if id(module) in containing:  # an ancestor of itself: a cycle, not entered
                self.cycles.append((path, containing[id(module)]))
                continue
            self.named_modules.append((path, module))
            if id(module) not in self.paths:
                self.paths[id(module)] = path
                self.modules.append(module)
            containing[id(module)] = path
            stack.append((path, module, True))
            prefix = path + "." if path else ""
            children = [(prefix + name, child, False) for name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def named_tensors(
        self, kind: Literal["parameters", "buffers"], *, remove_duplicate: bool = True
    ) -> list[tuple[str, torch.Tensor]]:
        """As ``model.named_parameters()`` / ``named_buffers()``, with the same ``remove_duplicate``: the list of
        the walk, each made once."""
        named = self._named_tensors.get((kind, remove_duplicate))
        if named is None:
            named = self._named_tensors[kind, remove_duplicate] = self._list_tensors(kind, remove_duplicate)
        return named

    def _list_tensors(self, kind: str, remove_duplicate: bool) -> list[tuple[str, torch.Tensor]]:
        attribute = "_parameters" if kind == "parameters" else "_buffers"
        named: list[tuple[str, torch.Tensor]] = []
        seen: set[int] = set()
        for path, module in self.named_modules:
            if remove_duplicate and self.paths[id(module)] != path:
                continue
            for name, tensor in getattr(module, attribute).items():
                if tensor is None or (remove_duplicate and id(tensor) in seen):
                    continue
                seen.add(id(tensor))
                named.append((f"{path}.{name}" if path else name, tensor))
        return named

    @cached_property
    def each_module(self) -> list[tuple[str, nn.Module]]:
        """Each module once, under its first path, as ``model.named_modules()`` gives them (which nests a generator
        per level: a chain of some 1,000 modules passes Python's recursion limit)."""
        return [(self.paths[id(module)], module) for module in self.modules]

    @cached_property
    def parameters(self) -> list[torch.Tensor]:
        """Each parameter once, as ``model.parameters()``."""
        return [tensor for _, tensor in self.named_tensors("parameters")]

    @cached_property
    def buffers(self) -> list[torch.Tensor]:
        """Each buffer once, as ``model.buffers()``."""
        return [tensor for _, tensor in self.named_tensors("buffers")]


def path_depth(path: str) -> int:
    """A module path's depth below the model: the model itself (``""``) 0, its children 1.

    >>> path_depth(""), path_depth("encoder"), path_depth("encoder.layer.0")
    (0, 1, 3)
    """
    return path.count(".") + 1 if path else 0

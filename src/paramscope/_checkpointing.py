"""What a forward's calls of ``torch.utils.checkpoint`` keep, as they run: its functions replaced for a block, and
what selective activation checkpointing stores in its forward (outputs kept until backward, which
``saved_tensors_hooks`` does not see) read from torch's cache as it fills.
"""

from __future__ import annotations

import contextlib
import inspect as pyinspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@contextlib.contextmanager
def checkpoint_replaced(replacements: Mapping[str, Callable[[Any], Any]]) -> Iterator[None]:
    """Within the block, ``torch.utils.checkpoint``'s reentrant ``CheckpointFunction`` and non-reentrant
    ``_checkpoint_without_reentrant_generator`` are what ``replacements[name](original)`` makes of them: replaced in
    that module itself, where ``checkpoint`` looks the names up, however the model imported it; put back after, even
    on error. A name this torch lacks is left alone."""
    import torch.utils.checkpoint as checkpointing

    originals = {name: getattr(checkpointing, name) for name in replacements if hasattr(checkpointing, name)}
    try:
        for name, original in originals.items():
            setattr(checkpointing, name, replacements[name](original))
        yield
    finally:
        for name, original in originals.items():
            setattr(checkpointing, name, original)


_UNREAD: Any = object()  # an entry of torch's cache without the ``val`` its layout wraps an output in


class _SelectivelyKept(TorchDispatchMode):
    """Above torch's selective activation checkpointing mode in a checkpointed region's forward: after each op, each
    tensor that mode has newly stored in ``storage`` (the outputs of the ops its policy saves, which the region keeps
    until backward, outside ``saved_tensors_hooks``' sight) goes to ``keep``, while the op's module is running.

    The storage is torch's private cache: where it holds anything this does not know (another layout in another
    torch), ``unread`` is called once and the cache is read no more in this region, whose ops the mode then only
    runs (what the region keeps is counted as under full checkpointing). The model's forward never fails for it."""

    def __init__(
        self, storage: Mapping[Any, Any], keep: Callable[[torch.Tensor], object], unread: Callable[[], object]
    ) -> None:
        super().__init__()
        self.storage, self.keep, self.unread = storage, keep, unread
        self.stored: dict[Any, int] = {}
        self.reading = True
        import torch.utils.checkpoint as checkpointing

        # what torch stores for an output recomputed in backward, or one backward has used
        self.marks = tuple(mark for name in ("_RECOMPUTE", "_CONSUMED") if (mark := getattr(checkpointing, name, None)))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        output = func(*args, **(kwargs or {}))
        if self.reading:
            new = self._new_tensors()
            if new is None:
                self.reading = False
                self.unread()
            else:
                for tensor in new:
                    self.keep(tensor)
        return output

    def _new_tensors(self) -> list[torch.Tensor] | None:
        """The tensors stored since the last op, each op's entries read from where the last read stopped; None where
        the storage holds what torch's layout does not."""
        # torch's storage maps each op to its entries in order (a list; a dict by call index since torch 2.10),
        # each the op's outputs wrapped (in a _VersionWrapper's ``val``), or a mark for an output recomputed
        new: list[torch.Tensor] = []
        try:
            for key, entries in self.storage.items():
                if not isinstance(entries, (list, Mapping)):
                    return None
                stored, size = self.stored.get(key, 0), len(entries)
                if size <= stored:
                    continue
                self.stored[key] = size
                added = (
                    entries[stored:] if isinstance(entries, list) else [entries[index] for index in range(stored, size)]
                )
                for leaf in tree_leaves(added):
                    if any(leaf is mark for mark in self.marks):
                        continue
                    value = getattr(leaf, "val", _UNREAD)
                    if value is _UNREAD:
                        return None
                    if isinstance(value, torch.Tensor):
                        new.append(value)
        except Exception:  # a cache that does not behave as a dict of lists or dicts (a KeyError: not by call index)
            return None
        return new


class _SelectiveForward:
    """The forward context of a region under selective activation checkpointing, with a :class:`_SelectivelyKept`
    above it; its ``storage`` is the context's, for another to be put above (the planner's, over the summary's)."""

    def __init__(self, forward: Any, kept: _SelectivelyKept) -> None:
        self.forward, self.kept, self.storage = forward, kept, kept.storage
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.forward)
            stack.enter_context(self.kept)
            self._stack = stack.pop_all()

    def __exit__(self, *error: Any) -> bool:
        return bool(self._stack.__exit__(*error))


def selectively_kept(
    generator: Callable[..., Any],
    given: tuple[Any, ...],
    kwargs: dict[str, Any],
    keep: Callable[[torch.Tensor], object],
    selective: Callable[[], object],
    unread: Callable[[], object],
) -> tuple[tuple[Any, ...], dict[str, Any], Callable[[], Any] | None]:
    """The arguments of a call of ``torch.utils.checkpoint``'s non-reentrant ``generator``, with its ``context_fn``
    made to call ``selective`` when its forward context is torch's selective activation checkpointing
    (``create_selective_checkpoint_contexts``), and give ``keep`` each tensor that context keeps in the forward (or
    call ``unread`` where torch's cache of them cannot be read); any other context as it is. Also the ``context_fn``
    given now, None where there is none (or the arguments do not fit the generator's signature: they are left as
    they are)."""
    import torch.utils.checkpoint as checkpointing

    try:
        bound = pyinspect.signature(generator).bind(*given, **kwargs)
    except (TypeError, ValueError):  # another torch's signature: torch's own call of it says what is wrong
        return given, kwargs, None
    context_fn = bound.arguments.get("context_fn")
    if context_fn is None or context_fn is checkpointing.noop_context_fn:
        return given, kwargs, None
    caching = getattr(checkpointing, "_CachingTorchDispatchMode", None)

    def contexts() -> tuple[Any, Any]:
        forward, recompute = context_fn()
        storage = getattr(forward, "storage", None)
        if isinstance(forward, (TorchDispatchMode, _SelectiveForward)) and isinstance(storage, Mapping):
            selective()
            return _SelectiveForward(forward, _SelectivelyKept(storage, keep, unread)), recompute
        if caching is not None and isinstance(forward, caching):  # torch's, with its cache laid out otherwise
            selective()
            unread()
        return forward, recompute

    bound.arguments["context_fn"] = contexts
    return bound.args, bound.kwargs, contexts

"""Pausing Python's cyclic garbage collector while a checkpoint's, or a model's, many small objects are made."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off; it is back on after (if it was on), on error too.

    Reading a checkpoint, or walking a live model, makes a few small containers a tensor (its parsed header entry,
    its record, its module), none of them in a reference cycle: millions for a checkpoint of a million tensors. Each
    full pass of the collector walks all of them again, and every object of the user's model too, which doubled the
    time to inspect such a file (20 s against 10 s). Reference counting frees them as usual; only cycles wait, to
    the end of the block. The pause is the whole process's (every thread's), for the block alone.

    >>> import gc
    >>> with collector_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    if not gc.isenabled():  # off already: the caller's setting, or an enclosing pause, stays as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

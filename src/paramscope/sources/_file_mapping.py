"""A checkpoint file mapped read-only, as one torch storage its tensors' storages are slices of."""

from __future__ import annotations

import mmap
import warnings
from typing import IO

import torch


def read_only_storage(handle: IO[bytes]) -> torch.UntypedStorage:
    """The whole file open in ``handle``, mapped read-only and shared, as an untyped storage (on CPU).

    Read-only and shared, where torch.load(mmap=True) maps a file private (copy-on-write): Linux charges a private
    writable mapping to the memory it commits, and under its default overcommit heuristic refuses one larger than
    the machine's memory and swap, which the checkpoint of a large model (or of its optimizer state) is; a shared
    read-only one is charged nothing. Nothing paramscope does writes to a tensor it counts. The mapping lives as
    long as a tensor on it does, after ``handle`` is closed.
    """
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the buffer is not writable
        return torch.frombuffer(mapped, dtype=torch.uint8).untyped_storage()

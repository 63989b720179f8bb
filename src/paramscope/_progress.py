"""Progress for long work: a rich progress bar on stderr when it is a terminal, nothing when piped or quiet."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

Item = TypeVar("Item")

_MIN_ITEMS = 2  # a single file or request needs no bar


def progress(items: Sequence[Item], description: str, *, quiet: bool = False) -> Iterator[Item]:
    """Yield ``items``, drawing a transient progress bar on stderr for several items on a terminal.

    >>> list(progress([1, 2, 3], "counting"))  # stderr is not a terminal here: no bar
    [1, 2, 3]
    """
    with steps(description, len(items), quiet=quiet) as advance:
        for item in items:
            yield item
            if advance is not None:
                advance()


@contextlib.contextmanager
def steps(description: str, total: int, *, quiet: bool = False) -> Iterator[Callable[[], None] | None]:
    """A transient progress bar of ``total`` steps on stderr while the block runs, advanced one step by each call
    of what it yields; None (nothing drawn) when quiet, when stderr is not a terminal, or for a single step.

    >>> with steps("forward pass", 3) as advance:  # stderr is not a terminal here
    ...     advance is None
    True
    """
    if quiet or total < _MIN_ITEMS or not _on_a_terminal():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=_stderr_console(),
        redirect_stdout=False,  # the model's own prints stay on stdout, where its caller expects them
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def _on_a_terminal() -> bool:
    """Whether stderr is a terminal (there is none in a process started with it closed, ``2>&-``)."""
    return sys.stderr is not None and sys.stderr.isatty()


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def status(message: str, *, quiet: bool = False) -> Iterator[None]:
    """A spinner with ``message`` on stderr while the block runs (network calls of unknown length)."""
    if quiet or not _on_a_terminal():
        yield
        return
    with _stderr_console().status(message):
        yield

"""What a library logs while paramscope works through it, kept instead of printed.

transformers logs warnings about a config's fields as it reads the config and builds the model (a special token
outside the vocabulary, a rope field of the wrong type) on its own stderr handler, as ``[transformers] …`` lines.
Printed, they land above paramscope's report, or above its one-line error; kept, they become the report's notes,
and an error names them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

# a config can hold any number of fields to warn about; the first are the ones shown
MAX_KEPT = 20


class Logged:
    """The warnings kept: ``texts``, one line each and each once, in the order given; ``more``, how many others
    came after the first ``MAX_KEPT``."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.more = 0
        self._seen: set[str] = set()

    def keep(self, text: str) -> None:
        if text in self._seen:
            return
        self._seen.add(text)
        if len(self.texts) < MAX_KEPT:
            self.texts.append(text)
        else:
            self.more += 1

    def notes(self, library: str) -> list[str]:
        """A note for each warning kept, and one for the others after the first ``MAX_KEPT``.

        >>> logged = Logged()
        >>> for text in [f"token {number} outside the vocabulary" for number in range(MAX_KEPT + 2)] * 2:
        ...     logged.keep(text)
        >>> notes = logged.notes("transformers")
        >>> len(notes), notes[0], notes[-1]
        (21, 'transformers warned: token 0 outside the vocabulary', 'transformers gave 2 more warning(s), not shown')
        """
        notes = [f"{library} warned: {text}" for text in self.texts]
        if self.more:
            notes.append(f"{library} gave {self.more:,} more warning(s), not shown")
        return notes

    def said(self, library: str) -> str:
        """The warnings, for the end of an error: ``" (transformers warned: …)"``, or nothing when there are none.

        >>> logged = Logged()
        >>> logged.said("transformers")
        ''
        >>> for text in ("factor must be >= 1, got 'x'.", "b", "c"):
        ...     logged.keep(text)
        >>> logged.said("transformers")
        " (transformers warned: factor must be >= 1, got 'x'; and 2 more)"
        """
        if not self.texts:
            return ""
        more = len(self.texts) - 1 + self.more
        if not more:
            return f" ({library} warned: {self.texts[0]})"
        return f" ({library} warned: {self.texts[0].rstrip('.')}; and {more:,} more)"


class _Route(logging.Handler):
    """Each record to what the thread that gave it keeps (:func:`logged`); those of other threads as the library's
    logging would have handled them."""

    def __init__(self, logger: logging.Logger, handlers: list[logging.Handler], propagate: bool) -> None:
        super().__init__()
        self.logger, self.handlers, self.propagate = logger, handlers, propagate
        self.kept: dict[int, Logged] = {}
        """The threads inside :func:`logged` and what each keeps."""

    def emit(self, record: logging.LogRecord) -> None:
        kept = self.kept.get(record.thread) if record.thread is not None else None
        if kept is None:
            for handler in self.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            if self.propagate and self.logger.parent is not None:
                self.logger.parent.handle(record)
            return
        if record.levelno < logging.WARNING:
            return
        try:
            text = " ".join(record.getMessage().split())
        except Exception:  # a record whose arguments do not format: what the library meant is lost, not the run
            return
        if text:
            kept.keep(text)


def _warning(self: logging.Logger, *args: Any, **kwargs: Any) -> None:
    self.warning(*args, **kwargs)


# Each library's logging as it was before the first thread entered logged(), put back when the last leaves (its
# handlers and warning_once are the process's, not a thread's), with the router that stands in for its handlers
_lock = threading.Lock()
_routes: dict[str, tuple[_Route, Any]] = {}


@contextlib.contextmanager
def logged(library: str) -> Iterator[Logged]:
    """The warnings ``library``'s loggers give inside the block, in this thread, kept and not printed (those its
    verbosity lets through: none at a level above warnings); its logging is as it was afterwards, whatever happens
    inside, and other threads' records go where they went. Import the library first: importing it may set up its
    logging.

    >>> import logging
    >>> with logged("somelib") as kept:
    ...     logging.getLogger("somelib.config").warning("pad_token_id %d is\\n outside the vocabulary", 50256)
    >>> kept.notes("somelib")
    ['somelib warned: pad_token_id 50256 is outside the vocabulary']
    """
    logger = logging.getLogger(library)
    kept = Logged()
    thread = threading.get_ident()
    with _lock:
        if library not in _routes:
            # transformers' warning_once (set on logging.Logger) remembers each message for the process: a second
            # build of one config would say less than the first, and a report would depend on what ran before it
            once = vars(logging.Logger).get("warning_once")
            route = _Route(logger, logger.handlers[:], logger.propagate)
            _routes[library] = route, once
            logger.handlers, logger.propagate = [route], False
            if once is not None and once is not _warning:
                logging.Logger.warning_once = _warning  # type: ignore[attr-defined]
        route, once = _routes[library]
        outer = route.kept.get(thread)  # a build inside a build: the outer one's warnings are its own
        route.kept[thread] = kept
    try:
        yield kept
    finally:
        with _lock:
            if outer is None:
                del route.kept[thread]
            else:
                route.kept[thread] = outer
            if not route.kept:
                del _routes[library]
                logger.handlers, logger.propagate = route.handlers, route.propagate
                if once is not None and once is not _warning:
                    logging.Logger.warning_once = once  # type: ignore[attr-defined]


def logged_if_imported(library: str) -> AbstractContextManager[Logged]:
    """:func:`logged`, for a library that is imported; nothing is kept of one that is not (it logs nothing)."""
    return logged(library) if library in sys.modules else contextlib.nullcontext(Logged())

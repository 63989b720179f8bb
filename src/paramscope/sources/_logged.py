"""What a library logs while paramscope works through it, kept instead of printed.

transformers logs warnings about a config's fields as it reads the config and builds the model (a special token
outside the vocabulary, a rope field of the wrong type) on its own stderr handler, as ``[transformers] …`` lines.
Printed, they land above paramscope's report, or above its one-line error; kept, they become the report's notes,
and an error names them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

# a config can hold any number of fields to warn about; the first are the ones shown
MAX_KEPT = 20


class Logged:
    """The warnings kept: ``texts``, one line each and each once, in the order given; ``more``, how many others
    came after the first ``MAX_KEPT``."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.more = 0

    def keep(self, text: str) -> None:
        if text in self.texts:
            return
        if len(self.texts) < MAX_KEPT:
            self.texts.append(text)
        else:
            self.more += 1

    def notes(self, library: str) -> list[str]:
        """A note for each warning kept, and one for those after the first ``MAX_KEPT``."""
        notes = [f"{library} warned: {text}" for text in self.texts]
        if self.more:
            notes.append(f"{library} warned {self.more:,} more time(s), not shown")
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


class _Keep(logging.Handler):
    def __init__(self, logged: Logged) -> None:
        super().__init__(logging.WARNING)
        self.logged = logged

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
        except Exception:  # a record whose arguments do not format: what the library meant is lost, not the run
            return
        if text:
            self.logged.keep(text)


def _warning(self: logging.Logger, *args: Any, **kwargs: Any) -> None:
    self.warning(*args, **kwargs)


@contextlib.contextmanager
def logged(library: str) -> Iterator[Logged]:
    """The warnings ``library``'s loggers give inside the block, kept and not printed; its logging is as it was
    afterwards, whatever happens inside. Import the library first: importing it may set up its logging.

    >>> import logging
    >>> with logged("somelib") as kept:
    ...     logging.getLogger("somelib.config").warning("pad_token_id %d is\\n outside the vocabulary", 50256)
    >>> kept.notes("somelib")
    ['somelib warned: pad_token_id 50256 is outside the vocabulary']
    """
    logger = logging.getLogger(library)
    kept = Logged()
    handlers, propagate = logger.handlers[:], logger.propagate
    # transformers' warning_once (set on logging.Logger) remembers each message for the process: a second build of
    # one config would say less than the first, and a report would depend on what ran before it
    once = vars(logging.Logger).get("warning_once")
    logger.handlers = [_Keep(kept)]
    logger.propagate = False
    if once is not None:
        logging.Logger.warning_once = _warning  # type: ignore[attr-defined]
    try:
        yield kept
    finally:
        logger.handlers, logger.propagate = handlers, propagate
        if once is not None:
            logging.Logger.warning_once = once  # type: ignore[attr-defined]

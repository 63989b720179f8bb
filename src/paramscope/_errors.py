"""The exceptions paramscope raises on purpose.

Everything a user can cause (a bad target, a broken file, an unknown unit) raises a ``ParamscopeError`` with a
message that reads well on one line; the CLI prints it as ``paramscope: error: <message>`` and exits 2.
"""

from __future__ import annotations


class ParamscopeError(Exception):
    """Base class of every error paramscope raises on purpose; its message is one line for the user."""


class UsageError(ParamscopeError):
    """An argument or option value that paramscope cannot use (an unknown unit, a malformed limit)."""


class TargetError(ParamscopeError):
    """A target that cannot be resolved, imported or built."""


class SourceError(ParamscopeError):
    """A model source (file, directory, header) that is malformed or unreadable."""


class MissingDependencyError(ParamscopeError):
    """An optional dependency that the requested work needs is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {package}: pip install 'paramscope[{extra}]'")
        self.package = package
        self.extra = extra


class IncompleteCountError(ParamscopeError):
    """A single number was asked for, but some tensors have no known size (uninitialised lazy parameters)."""


class BudgetExceededError(ParamscopeError):
    """A model is larger than a limit given with ``--max-params`` or ``--max-bytes`` (CLI exit code 3)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for a one-line error: ``(no message)`` when it has none, and a
    word on it when its ``__str__`` itself fails (user code can define any exception).

    >>> first_line(ValueError("bad shape\\nmore detail")), first_line(RuntimeError())
    ('bad shape', '(no message)')
    """
    try:
        lines = str(error).strip().splitlines()
    except KeyboardInterrupt:
        raise
    except BaseException as failure:  # the exception's own __str__ is broken: its type still says what happened
        return f"(its message could not be shown: {type(error).__name__}.__str__ raised {type(failure).__name__})"
    return lines[0] if lines else "(no message)"

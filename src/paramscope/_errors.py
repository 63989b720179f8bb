"""The exceptions paramscope raises on purpose.

Everything a user can cause (a bad target, a broken file, an unknown unit) raises a ``ParamscopeError`` with a
message that reads well on one line; the CLI prints it as ``paramscope: error: <message>`` and exits 2.
"""

from __future__ import annotations

import os
import re
import sys


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


def printable(text: str) -> str:
    """``text`` with the characters that are not printable as escapes (a name from a file may hold a newline, a NUL,
    an escape sequence, a bidi override or a lone surrogate): it stays one line of text, whatever is in it, and can
    neither drive a terminal nor reorder what it shows.

    >>> printable("b\\x00\\n.safetensors")
    'b\\\\x00\\\\n.safetensors'
    >>> print(printable("emb\\x1b[31m.weight\\u202e"))
    emb\\x1b[31m.weight\\u202e
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def raise_if_interrupted(error: BaseException) -> None:
    """Raise the Ctrl-C that ``error`` was raised in handling, or from, if any: Python re-raises a KeyboardInterrupt
    that comes in ``__set_name__`` (a class body, as torch's own imports run) as a RuntimeError caused by it, which
    must still interrupt, not be reported as the model's error.

    >>> failure = RuntimeError("Error calling __set_name__"); failure.__cause__ = KeyboardInterrupt()
    >>> raise_if_interrupted(ValueError("bad shape"))  # no Ctrl-C in it: nothing raised
    >>> try:  # doctest itself re-raises a KeyboardInterrupt, which would end the run: caught here
    ...     raise_if_interrupted(failure)
    ... except KeyboardInterrupt:
    ...     print("interrupted")
    interrupted
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            raise current from None
        seen.add(id(current))
        current = current.__cause__ or current.__context__


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
    if not lines:
        return "(no message)"
    # torch's dispatcher goes on, in the same line, with why that may be and every backend the op has (2,000
    # characters): its first sentence says it
    dispatcher = _NO_KERNEL.match(lines[0])
    return dispatcher.group(1) if dispatcher else lines[0]


_NO_KERNEL = re.compile(r"(Could not run '[^']*' with arguments from the '[^']*' backend)\.")

# the meta device named, or a custom op without a fake implementation (torch._library's words)
_META = re.compile(r"\bmeta\b|\bno fake impl\b|'Sparse\w*Meta' backend", re.IGNORECASE)  # SparseCsrMeta too
# what torch's fake tensors (a forward on meta runs on them) raise where an op needs values or has no meta kernel;
# by name: this module does not import torch
_FAKE_TENSOR_NEEDS_VALUES = {
    "DataDependentOutputException",
    "DynamicOutputShapeException",
    "UnsupportedOperatorException",
}


def is_meta_device_failure(error: BaseException) -> bool:
    """Whether ``error`` looks like the meta device's own failure: its message names the meta device (``.item()`` or
    a copy out of a meta tensor, an op without a Meta kernel) or a custom op without a fake implementation, or torch
    itself raised NotImplementedError or a fake tensor's exception for an op that needs values (``.item()``,
    ``nonzero``). A model's own NotImplementedError is not one.

    >>> is_meta_device_failure(RuntimeError("Tensor.item() cannot be called on meta tensors"))
    True
    >>> is_meta_device_failure(KeyError("metadata")), is_meta_device_failure(NotImplementedError("subclasses do"))
    (False, False)
    """
    if _META.search(first_line(error)):
        return True
    if not isinstance(error, NotImplementedError) and type(error).__name__ not in _FAKE_TENSOR_NEEDS_VALUES:
        return False
    torch_file = getattr(sys.modules.get("torch"), "__file__", None)  # imported already if torch raised it
    if torch_file is None or error.__traceback__ is None:
        return False
    innermost = error.__traceback__
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    code = innermost.tb_frame.f_code
    in_torch = code.co_filename.startswith(os.path.dirname(torch_file) + os.sep)
    # nn.Module's stand-in for a forward the class does not define raises on every device
    return in_torch and code.co_name != "_forward_unimplemented"

"""The CI budget gate: ``--max-params`` and ``--max-bytes``."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING

from ._checks import one_of, shown
from ._errors import BudgetExceededError, IncompleteCountError, UsageError
from ._report import Report
from ._units import Units, format_bytes, format_count, format_share, parse_bytes, parse_count

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Budget:
    """Upper limits for a model: parameters, and the bytes it stores (parameters, buffers, quantisation tensors).

    Each is a number of 0 or more, or None for no limit; a fraction is rounded down, as on the command line.
    """

    max_params: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_params", "max_bytes"):
            value = getattr(self, name)
            if value is None:
                continue
            # value != value: NaN, which no model exceeds (math.isnan would take an int past a float's range for one)
            if isinstance(value, bool) or not isinstance(value, Real) or value != value:
                raise UsageError(f"{name} must be a number or None, not {shown(value)}")
            if value < 0:  # as --max-params -5 is refused: no model is under it
                raise UsageError(f"{name} must be 0 or more, not {shown(value)}")
            if value != math.inf:
                # rounded down as the command line's limits are (7e9, 474.7 MiB): a whole total is over x exactly
                # when it is over floor(x), and the message shows whole parameters and bytes
                # a whole number exactly, past a float's 2**53 too (math.floor of numpy's goes through one)
                whole = operator.index(value) if hasattr(value, "__index__") else math.floor(value)
                object.__setattr__(self, name, whole)


def parse_budget(max_params: str | None = None, max_bytes: str | None = None) -> Budget:
    """The Budget the command line's ``--max-params`` and ``--max-bytes`` give; None leaves that limit off.

    Fractions are rounded down (see :func:`parse_count`, :func:`parse_bytes`); a value that cannot be read is a
    UsageError that names its flag.

    >>> parse_budget("1.5B", "474.7MiB")
    Budget(max_params=1500000000, max_bytes=497759027)
    >>> parse_budget(max_params="abc")
    Traceback (most recent call last):
    ...
    paramscope._errors.UsageError: --max-params: count 'abc' is not a number with an optional unit
    """
    return Budget(
        max_params=_parsed("--max-params", max_params, parse_count),
        max_bytes=_parsed("--max-bytes", max_bytes, parse_bytes),
    )


def _parsed(flag: str, text: str | None, parse: Callable[[str], int]) -> int | None:
    if text is None:
        return None
    try:
        return parse(text)
    except UsageError as error:
        raise UsageError(f"{flag}: {error}") from None


def budget_violations(report: Report, budget: Budget, units: Units = "iec") -> list[str]:
    """One message per exceeded limit; empty when the model fits.

    Raises IncompleteCountError when the report's totals are lower bounds that fit: whether the model fits cannot
    then be told.

    >>> import paramscope
    >>> report = paramscope.inspect("paramscope.examples:resnet18")
    >>> budget_violations(report, Budget(max_params=10_000_000))
    ['parameters: 11,689,512 > --max-params 10,000,000 (over by 1,689,512, 16.9 %)']
    """
    totals = report.totals
    violations = []
    at_least = "" if totals.complete else "at least "  # tensors of unknown size: lower bounds
    if budget.max_params is not None and totals.params > budget.max_params:
        over = totals.params - budget.max_params
        violations.append(
            f"parameters: {at_least}{format_count(totals.params)} > --max-params {format_count(budget.max_params)} "
            f"(over by {at_least}{format_count(over)}, {_percent(over, budget.max_params, totals.complete)})"
        )
    # everything the model stores: a quantised checkpoint's scales and zeros too
    size = totals.param_bytes + totals.buffer_bytes + totals.quantization_bytes
    what = "parameters + buffers" + (" + quantization" if totals.quantization_bytes else "")
    if budget.max_bytes is not None and size > budget.max_bytes:
        over = size - budget.max_bytes
        violations.append(
            f"size ({what}): {at_least}{_bytes(size, units)} > --max-bytes "
            f"{_bytes(budget.max_bytes, units)} (over by {at_least}{format_bytes(over, units)}, "
            f"{_percent(over, budget.max_bytes, totals.complete)})"
        )
    limited = budget.max_params is not None or budget.max_bytes is not None
    if limited and not violations and not totals.complete:
        raise IncompleteCountError(
            f"cannot check the budget: the model has tensors of unknown size ({' and '.join(report.unknown_sizes)}), "
            "so its totals are only lower bounds"
        )
    return violations


def _bytes(size: int, units: Units) -> str:
    """``size`` in ``units``, and in bytes where that is not already how it reads (``288 B``, not ``288 B (288 B)``)."""
    shown = format_bytes(size, units)
    return shown if shown == f"{size} B" else f"{shown} ({size:,} B)"


def _percent(over: int, limit: int, exact: bool) -> str:
    """How much of ``limit`` ``over`` is; an excess that rounds to 0.0 % still reads as one. Of an ``over`` that is a
    lower bound (not ``exact``), the share rounded down, as one too."""
    if not limit:
        return "limit is 0"
    if exact:
        return format_share(over, limit)
    tenths = 1000 * over // limit
    return f"at least {tenths / 10:,.1f} %" if tenths else "> 0.0 %"


def check_budget(report: nn.Module | Report | str, budget: Budget, units: Units = "iec") -> None:
    """Raise BudgetExceededError, listing every exceeded limit, when the model does not fit ``budget``.

    ``report`` is a Report, or anything :func:`paramscope.inspect` takes (a live model, a target string), as for
    :func:`paramscope.count_params`.

    >>> import paramscope
    >>> from paramscope.examples import resnet18
    >>> paramscope.check_budget(resnet18(), Budget(max_params=10_000_000))
    Traceback (most recent call last):
    ...
    paramscope._errors.BudgetExceededError: parameters: 11,689,512 > --max-params 10,000,000 (over by 1,689,512, 16.9 %)
    """
    if not isinstance(budget, Budget):
        raise UsageError(
            f"budget must be a paramscope.Budget such as Budget(max_params=7_000_000_000), not {shown(budget)}"
        )
    one_of("units", units, ("iec", "si"))
    if not isinstance(report, Report):
        from ._api import inspect

        report = inspect(report)
    violations = budget_violations(report, budget, units)
    if violations:
        raise BudgetExceededError("; ".join(violations))

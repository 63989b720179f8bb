"""Parsing and formatting of parameter counts and byte sizes.

Two unit systems, always labelled: IEC (KiB, MiB, GiB: powers of 1024) and SI (kB, MB, GB: powers of 1000).
Counts use the suffixes ML papers use (K, M, B, T: powers of 1000).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Literal

from ._errors import UsageError

Units = Literal["iec", "si"]

_COUNT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}

BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
    "kB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
}
# Spellings people type for the same units; matched case-insensitively.
_BYTE_ALIASES = {
    "": "B",
    "b": "B",
    "bytes": "B",
    "kib": "KiB",
    "ki": "KiB",
    "mib": "MiB",
    "mi": "MiB",
    "gib": "GiB",
    "gi": "GiB",
    "tib": "TiB",
    "ti": "TiB",
    "pib": "PiB",
    "kb": "kB",
    "mb": "MB",
    "gb": "GB",
    "tb": "TB",
    "pb": "PB",
}
# underscores only between two digits, as in Python's literals: "80_GiB" or "8__0" is a typo, not a number; or commas
# between groups of three digits, as paramscope prints counts and sizes ("11,689,512"), so a figure reads back; a
# fraction may start at its point, as in Python (".5GiB")
_NUMBER_AND_UNIT = re.compile(
    r"^\s*((?:(?:[0-9](?:_?[0-9])*|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$"
)


def _quoted(text: str) -> str:
    """A value given as an error line quotes it: shortened (a value can be any length, a message is one line)."""
    return repr(shortened(text, 80))


def _split(text: str, what: str) -> tuple[Decimal, str]:
    match = _NUMBER_AND_UNIT.match(text)
    if match is None:
        if _NUMBER_AND_UNIT.match(text.strip().removeprefix("-")):  # no limit is under 0: no model fits it
            raise UsageError(f"{what} {_quoted(text)} must be 0 or more")
        raise UsageError(f"{what} {_quoted(text)} is not a number with an optional unit")
    try:
        return Decimal(match.group(1).replace("_", "").replace(",", "")), match.group(2)
    except InvalidOperation:
        raise UsageError(f"{what} {_quoted(text)} is not a number with an optional unit") from None


_MAX_LIMIT = 2**63 - 1


def _whole(value: Decimal, factor: int, text: str, what: str) -> int:
    """``value × factor`` rounded down to a whole number.

    Counts and sizes are parsed as limits (``--max-bytes 474.7MiB``, ``--device-memory``), and for a whole total
    ``n`` and any ``x``, ``n > x`` exactly when ``n > floor(x)``: rounding down changes no verdict.
    """
    try:
        whole = int((value * factor).to_integral_value(rounding=ROUND_FLOOR))
    except ArithmeticError:  # decimal.Overflow: an exponent beyond what Decimal holds (1e999999999)
        whole = _MAX_LIMIT + 1
    if whole > _MAX_LIMIT:  # no model or device comes near; beyond it, floats (percentages, GiB) overflow
        raise UsageError(f"{what} {_quoted(text)} is too large (at most {_MAX_LIMIT:,})")
    return whole


def parse_count(text: str) -> int:
    """Parse a parameter count such as ``125M``, ``7B``, ``1.5e9``, ``1_000_000`` or ``1,000,000``.

    Suffixes are K, M, B, T (powers of 1000, either case). A fraction of one parameter is rounded down: the count
    is a limit, and a model of whole parameters is over ``x`` exactly when it is over ``floor(x)``.

    >>> parse_count("7B"), parse_count("125m"), parse_count("1.5e9"), parse_count("12345"), parse_count("1.2345678901B")
    (7000000000, 125000000, 1500000000, 12345, 1234567890)
    """
    value, suffix = _split(text, "count")
    factor = _COUNT_SUFFIXES.get(suffix.upper())
    if factor is None:
        raise UsageError(f"count {_quoted(text)} has an unknown suffix {suffix!r}; use K, M, B or T")
    return _whole(value, factor, text, "count")


def parse_bytes(text: str) -> int:
    """Parse a byte size such as ``2GiB``, ``1.5 GB``, ``512MiB``, ``1048576`` or ``1,048,576 B``.

    IEC units (KiB, MiB, GiB, TiB) are powers of 1024, SI units (kB, MB, GB, TB) powers of 1000. A bare ``G`` or
    ``M`` is refused because it is ambiguous, and ``Gb`` or ``Mb`` because it is bits (``gb``, all in lowercase, is
    read as bytes, as people type it). A fraction of a byte is rounded down (``474.7MiB`` is
    497,759,027.2 bytes, read as 497,759,027): sizes are limits, and a whole number of bytes is over ``x`` exactly
    when it is over ``floor(x)``.

    >>> parse_bytes("2GiB"), parse_bytes("1.5GB"), parse_bytes("4096"), parse_bytes("474.7MiB")
    (2147483648, 1500000000, 4096, 497759027)
    """
    value, unit = _split(text, "size")
    canonical = _BYTE_ALIASES.get(unit.lower())
    prefix = unit[:1].upper()
    # Gb, Mb, Mib: a known prefix in capitals, and a lowercase b (a bit), not a byte unit mistyped (MiBb)
    if unit.endswith("b") and unit[:-1] != unit[:-1].lower() and unit.lower() in _BYTE_ALIASES:
        si = "k" if prefix == "K" else prefix
        raise UsageError(f"size {_quoted(text)}: unit {unit!r} is in bits (a lowercase b); write {prefix}iB (bytes, "
                         f"powers of 1024) or {si}B (powers of 1000)")  # fmt: skip
    if canonical is None:
        if unit.upper() in {"K", "M", "G", "T", "P"}:
            raise UsageError(
                f"size {_quoted(text)}: unit {unit!r} is ambiguous; write {unit.upper()}iB (powers of 1024) "
                f"or {unit.upper() if unit.upper() != 'K' else 'k'}B (powers of 1000)"
            )
        raise UsageError(
            f"size {_quoted(text)} has an unknown unit {unit!r}; use B, KiB, MiB, GiB, TiB, PiB, kB, MB, GB, TB or PB"
        )
    return _whole(value, BYTE_UNITS[canonical], text, "size")


def byte_unit(name: str) -> int:
    """The number of bytes in one ``name`` (``"MiB"``, ``"GB"``, …), for converting sizes.

    >>> byte_unit("MiB"), byte_unit("kB")
    (1048576, 1000)
    """
    canonical = _BYTE_ALIASES.get(name.lower()) if name not in BYTE_UNITS else name
    if canonical is None:
        raise UsageError(f"unknown byte unit {name!r}; use one of {', '.join(BYTE_UNITS)}")
    return BYTE_UNITS[canonical]


_IEC_STEPS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SI_STEPS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(n: int, units: Units = "iec") -> str:
    """A byte size with two decimals in the largest unit that keeps it at or above 1.

    >>> format_bytes(46_759_168), format_bytes(46_759_168, "si"), format_bytes(512)
    ('44.59 MiB', '46.76 MB', '512 B')
    """
    steps, base = (_IEC_STEPS, 1024) if units == "iec" else (_SI_STEPS, 1000)
    scaled = _scaled(n, steps, base)
    return f"{n} B" if scaled is None else f"{scaled[0]:.2f} {scaled[1]}"


def _scaled(n: int, steps: Sequence[str], base: int) -> tuple[float, str] | None:
    """``n`` in the largest of ``steps`` (units ``base`` times the one before, from 1) where it shows, with two
    decimals, at or above 1 (below ``base``, unless no larger unit is left); None where ``n`` is below ``base``."""
    if abs(n) < base:
        return None
    for power, unit in enumerate(steps[1:], start=1):
        value = n / base**power
        if round(abs(value), 2) < base or unit == steps[-1]:  # 1023.996 GiB prints as 1.00 TiB, not 1024.00 GiB
            return value, unit
    raise AssertionError("unreachable")  # pragma: no cover


def format_count(n: int) -> str:
    """A count with thousands separators.

    >>> format_count(124439808)
    '124,439,808'
    """
    return f"{n:,}"


MAX_NAME_IN_NOTE = 200
"""Characters of a name a note shows: a name from a file can be thousands of characters long, and a note is a line."""


def shortened(name: str, limit: int = MAX_NAME_IN_NOTE) -> str:
    """``name`` as a note shows it: whole up to ``limit`` characters, else its start and its end around an ellipsis,
    ``limit`` characters in all (the start says where a tensor is, the end what it is).

    >>> shortened("layers." + "9" * 5000 + ".weight", 24), shortened("h.0.attn.c_attn.weight", 24)
    ('layers.99999…9999.weight', 'h.0.attn.c_attn.weight')
    """
    if len(name) <= limit:
        return name
    end = (limit - 1) // 2
    return f"{name[: limit - 1 - end]}…{name[len(name) - end :]}"


def listed(names: Sequence[str], limit: int = 3, *, total: int | None = None) -> str:
    """The first ``limit`` of ``names``, each ``shortened``, and how many more there are: of ``total`` names in
    all, where ``names`` are only the first of them.

    >>> listed(["a", "b", "c", "d", "e"]), listed(["a"]), listed(["a", "b", "c"], total=10_000)
    ('a, b, c and 2 more', 'a', 'a, b, c and 9,997 more')
    """
    count = len(names) if total is None else total
    more = f" and {format_count(count - limit)} more" if count > limit else ""
    return ", ".join(shortened(name) for name in names[:limit]) + more


def format_share(part: int, whole: int) -> str:
    """``part`` as a percentage of ``whole``, one decimal: a share that is not nothing, or not all, never reads as
    ``0.0 %`` or ``100.0 %``.

    >>> format_share(1, 3), format_share(16, 2**21), format_share(2**21 - 16, 2**21), format_share(50, 2)
    ('33.3 %', '< 0.1 %', '> 99.9 %', '2,500.0 %')
    """
    share = f"{100 * part / whole:,.1f}"
    if share == "0.0" and part:
        return "< 0.1 %"
    if share == "100.0" and part != whole:
        return "> 99.9 %" if part < whole else "> 100.0 %"
    return f"{share} %"


def humanize_count(n: int) -> str:
    """A count in the short form papers use: ``124.44M``, ``6.74B``; plain below one thousand.

    >>> humanize_count(124_439_808), humanize_count(6_738_415_616), humanize_count(512)
    ('124.44M', '6.74B', '512')
    """
    scaled = _scaled(n, ("", "K", "M", "B", "T"), 1000)
    return str(n) if scaled is None else f"{scaled[0]:.2f}{scaled[1]}"


def humanize_operations(n: int) -> str:
    """An operation count with SI prefixes, as FLOPs and MACs are written: ``3.63G``, ``812.00M``.

    >>> humanize_operations(3_628_146_688), humanize_operations(950)
    ('3.63G', '950')
    """
    scaled = _scaled(n, ("", "K", "M", "G", "T", "P"), 1000)
    return str(n) if scaled is None else f"{scaled[0]:.2f}{scaled[1]}"

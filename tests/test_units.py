"""Parsing and formatting of counts and sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paramscope import UsageError
from paramscope._budget import Budget, parse_budget
from paramscope._units import (
    byte_unit,
    format_bytes,
    humanize_count,
    humanize_operations,
    parse_bytes,
    parse_count,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7B", 7 * 10**9),
        ("125M", 125 * 10**6),
        ("125m", 125 * 10**6),
        ("1.5e9", 1_500_000_000),
        ("1.5B", 1_500_000_000),
        ("12345", 12345),
        ("1_000_000", 10**6),
        ("10K", 10_000),
        ("2T", 2 * 10**12),
        (" 3M ", 3 * 10**6),
        ("1.5", 1),  # a limit: rounded down
        ("0.5", 0),
        ("1.2345678901B", 1_234_567_890),
        ("11,689,512", 11_689_512),  # as paramscope prints counts: a figure of its report reads back
        ("1,234.5K", 1_234_500),
        (".5K", 500),  # a fraction from its point, as Python reads .5
        (".5e3", 500),
    ],
)
def test_parse_count(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7X", "count '7X' has an unknown suffix 'X'; use K, M, B or T"),
        ("1e999999999", "count '1e999999999' is too large (at most 9,223,372,036,854,775,807)"),
        ("1e19", "count '1e19' is too large (at most 9,223,372,036,854,775,807)"),
        ("abc", "count 'abc' is not a number with an optional unit"),
        ("", "count '' is not a number with an optional unit"),
        ("-5", "count '-5' must be 0 or more"),  # no model is under it
        ("--5", "count '--5' is not a number with an optional unit"),
        ("7_B", "count '7_B' is not a number with an optional unit"),  # underscores only between digits, as Python
        ("1__000", "count '1__000' is not a number with an optional unit"),
        ("1_.5", "count '1_.5' is not a number with an optional unit"),
        ("1,5", "count '1,5' is not a number with an optional unit"),  # a decimal comma, or a typo: not thousands
        ("1,00,000", "count '1,00,000' is not a number with an optional unit"),
        ("1,000_000", "count '1,000_000' is not a number with an optional unit"),
        (".", "count '.' is not a number with an optional unit"),
        (".K", "count '.K' is not a number with an optional unit"),
        ("._5", "count '._5' is not a number with an optional unit"),
    ],
)
def test_parse_count_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_count(text)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GiB", 2 * 2**30),
        ("2 GiB", 2 * 2**30),
        ("2gib", 2 * 2**30),
        ("1.5GB", 1_500_000_000),
        ("16gb", 16 * 10**9),  # all in lowercase, as people type bytes
        ("512MiB", 512 * 2**20),
        ("500MB", 500 * 10**6),
        ("4096", 4096),
        ("10kB", 10_000),
        ("10KiB", 10 * 1024),
        ("1Ti", 2**40),
        ("7B", 7),
        ("474.7MiB", 497_759_027),  # 497,759,027.2 bytes, rounded down
        ("0.5B", 0),
        ("1.9", 1),
        ("1_024 MiB", 2**30),
        ("46,796,608 B", 46_796_608),  # as a budget message prints a size
        (".5GiB", 2**29),
    ],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2G", "size '2G': unit 'G' is ambiguous; write GiB (powers of 1024) or GB (powers of 1000)"),
        ("2k", "size '2k': unit 'k' is ambiguous; write KiB (powers of 1024) or kB (powers of 1000)"),
        # a lowercase b after a capital prefix is a bit: 1 Gb is 125 MB
        (
            "1Gb",
            "size '1Gb': unit 'Gb' is in bits (a lowercase b); write GiB (bytes, powers of 1024) or GB (powers "
            "of 1000)",
        ),
        (
            "1Kb",
            "size '1Kb': unit 'Kb' is in bits (a lowercase b); write KiB (bytes, powers of 1024) or kB (powers "
            "of 1000)",
        ),
        (
            "8 Mib",
            "size '8 Mib': unit 'Mib' is in bits (a lowercase b); write MiB (bytes, powers of 1024) or MB "
            "(powers of 1000)",
        ),
        ("2XB", "size '2XB' has an unknown unit 'XB'; use B, KiB, MiB, GiB, TiB, PiB, kB, MB, GB, TB or PB"),
        ("2MiBb", "size '2MiBb' has an unknown unit 'MiBb'; use B, KiB, MiB, GiB, TiB, PiB, kB, MB, GB, TB or PB"),
        ("1e999999999GiB", "size '1e999999999GiB' is too large (at most 9,223,372,036,854,775,807)"),
        ("1e5000GB", "size '1e5000GB' is too large (at most 9,223,372,036,854,775,807)"),
        ("80_GiB", "size '80_GiB' is not a number with an optional unit"),
        ("-1GiB", "size '-1GiB' must be 0 or more"),
        # a value of any length is quoted in one line of bounded length: its start and its end
        (
            "9" * 50_000 + "XB",
            f"size '{'9' * 40}…{'9' * 37}XB' has an unknown unit 'XB'; use B, KiB, MiB, GiB, TiB, "
            "PiB, kB, MB, GB, TB or PB",
        ),
        ("x" * 50_000, f"size '{'x' * 40}…{'x' * 39}' is not a number with an optional unit"),
    ],
)
def test_parse_bytes_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_bytes(text)
    assert str(error.value) == message


@given(st.integers(min_value=0, max_value=2**63 // 1024 - 1), st.integers(min_value=0, max_value=10**6))
def test_fractions_are_rounded_down(whole: int, fraction: int) -> None:
    # limits: a whole total n is over x exactly when it is over floor(x)
    assert parse_count(f"{whole}.{fraction}") == whole
    assert parse_bytes(f"{whole}.{fraction}B") == whole
    assert parse_bytes(f"{whole}.{fraction:07}KiB") == whole * 1024 + fraction * 1024 // 10**7


@pytest.mark.parametrize(
    ("max_params", "max_bytes", "message"),
    [
        ("abc", None, "--max-params: count 'abc' is not a number with an optional unit"),
        ("7GiB", None, "--max-params: count '7GiB' has an unknown suffix 'GiB'; use K, M, B or T"),
        (
            None,
            "2G",
            "--max-bytes: size '2G': unit 'G' is ambiguous; write GiB (powers of 1024) or GB (powers of 1000)",
        ),
        ("1B", "lots", "--max-bytes: size 'lots' is not a number with an optional unit"),
    ],
)
def test_budget_errors_name_the_flag(max_params: str | None, max_bytes: str | None, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_budget(max_params, max_bytes)
    assert str(error.value) == message


def test_parse_budget() -> None:
    assert parse_budget() == Budget()
    assert parse_budget("1.5B", "474.7MiB") == Budget(max_params=1_500_000_000, max_bytes=497_759_027)
    assert parse_budget(max_bytes="0") == Budget(max_bytes=0)


def test_format_bytes_picks_the_largest_unit_at_or_above_one() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1.00 KiB"
    assert format_bytes(1000, "si") == "1.00 kB"
    assert format_bytes(3 * 2**30) == "3.00 GiB"
    assert format_bytes(5 * 2**50 * 2000) == "10000.00 PiB"


def test_byte_unit_and_humanize() -> None:
    assert byte_unit("GiB") == 2**30
    assert byte_unit("gb") == 10**9
    assert humanize_count(999) == "999"
    assert humanize_count(1_000) == "1.00K"
    with pytest.raises(UsageError, match="unknown byte unit 'parsecs'"):
        byte_unit("parsecs")


@given(st.integers(min_value=0, max_value=10**18))
def test_plain_integers_parse_as_themselves(value: int) -> None:
    assert parse_count(str(value)) == value
    assert parse_bytes(str(value)) == value
    assert parse_count(f"{value:_}") == value


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["K", "M", "B", "T"]))
def test_count_suffixes_are_powers_of_1000(value: int, suffix: str) -> None:
    assert parse_count(f"{value}{suffix}") == value * 1000 ** (1 + "KMBT".index(suffix))


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["KiB", "MiB", "GiB", "TiB", "kB", "MB", "GB", "TB"]))
def test_byte_units(value: int, unit: str) -> None:
    base = 1024 if unit.endswith("iB") else 1000
    power = 1 + "KMGT".index(unit[0].upper())
    assert parse_bytes(f"{value}{unit}") == value * base**power
    assert parse_bytes(f"{value} {unit.lower()}") == value * base**power


@given(st.integers(min_value=0, max_value=2**60), st.sampled_from(["iec", "si"]))
def test_formatted_sizes_read_back_within_rounding(size: int, units: str) -> None:
    text = format_bytes(size, units)  # type: ignore[arg-type]
    number, unit = text.split()
    # two decimals: off by at most half of the last place (and float noise on that half)
    assert abs(float(number) * byte_unit(unit) - size) <= 0.005 * byte_unit(unit) * (1 + 1e-9)
    assert float(number) < (1024 if units == "iec" else 1000) or unit in {"PiB", "PB"}


@pytest.mark.parametrize(
    ("value", "count", "operations"),
    [
        (999_994, "999.99K", "999.99K"),
        (999_999, "1.00M", "1.00M"),  # 999.999K rounds to 1000.00K: one M
        (999_999_999, "1.00B", "1.00G"),
        (999_999_999_999, "1.00T", "1.00T"),
        (999_999_999_999_999, "1000.00T", "1.00P"),  # T is the largest count suffix
        (-999_999_999, "-1.00B", "-1.00G"),
    ],
)
def test_humanized_numbers_roll_over_to_the_next_suffix(value: int, count: str, operations: str) -> None:
    assert (humanize_count(value), humanize_operations(value)) == (count, operations)


# any count, and those just short of a power of 1000, which round up to it
NEAR_A_POWER = st.builds(lambda power, short: 10**power - short, st.integers(3, 18), st.integers(1, 10**4))


@given(st.integers(min_value=0, max_value=10**18) | NEAR_A_POWER)
def test_humanized_numbers_read_back_within_rounding(value: int) -> None:
    for text, suffixes in ((humanize_count(value), "KMBT"), (humanize_operations(value), "KMGTP")):
        number, suffix = (text[:-1], text[-1]) if text[-1] in suffixes else (text, "")
        factor = 1000 ** (suffixes.index(suffix) + 1) if suffix else 1
        # two decimals: off by at most half of the last place (and float noise on that half)
        assert abs(float(number) * factor - value) <= 0.005 * factor * (1 + 1e-9)
        assert float(number) < 1000 or suffix == suffixes[-1]

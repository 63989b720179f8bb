"""Reading back the arithmetic a memory item's formula writes, to check that it multiplies out to the item's size."""

from __future__ import annotations

import math
import re

# what llama.cpp's padding of a context says in a GGUF model's formula: words about the number before it
_PADDED = re.compile(r" \([\d,]+ tokens, padded to \d+ by llama\.cpp\)")
_WORDS = re.compile(r"[A-Za-z_][A-Za-z_'\-]*")


def multiplied_out(formula: str) -> int:
    """The bytes a KV cache formula multiplies out to (rounded up, as sizes are), its closing remark left out.

    >>> multiplied_out("2 × (1 layers × 64 tokens + 6 layers × 8 tokens) × 2 kv heads × 16 × 1 × 4 B (6 sliding)")
    28672
    """
    arithmetic, _, _ = formula.rpartition(" B")  # the remark follows the last term's bytes
    arithmetic = _PADDED.sub("", arithmetic).replace(" B + ", " + ")
    expression = _WORDS.sub("", arithmetic).replace("×", "*").replace(",", "")
    assert re.fullmatch(r"[\d\s.*+()]+", expression), f"not arithmetic: {expression!r} (from {formula!r})"
    return math.ceil(eval(expression))  # digits, operators and parentheses only, checked above

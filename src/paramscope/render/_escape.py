"""Names from files as text that every format can write and shows the same way: each character a format cannot
take is written as the escape ``printable`` gives it (``\\ud800``, ``\\u202e``, ``\\x1b``)."""

from __future__ import annotations

import html
import re

from .._errors import printable

# A lone surrogate (U+D800 to U+DFFF) is a str but no UTF-8: a tensor name in a file may hold one (a pickle's str, a
# JSON index's or config's escape), and the output could not be written.
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    r"""``text`` with each lone surrogate written as its escape: text UTF-8 can encode. In JSON text the escape reads
    back as the same str; in CSV it is the name as the table format shows it.

    >>> encodable("caf\u00e9\ud800")
    'café\\ud800'
    """
    return _SURROGATE.sub(lambda found: printable(found.group()), text)


def html_text(text: str) -> str:
    """A name as HTML text or a quoted attribute value, shown as the table format shows it: a control character would
    be a parse error, a bidi override would reorder what is shown, and a lone surrogate could not be written."""
    return html.escape(printable(text), quote=True)


def name_cell(name: str) -> str:
    r"""A name as a table's cell shows it, with each space it starts or ends with written as ``\x20``: the tables
    indent a module by its depth with spaces, so a module named ``"  b"`` would read as a level deeper than it is,
    Markdown and HTML drop a cell's outer spaces, and a trailing space is seen in none of them.

    >>> name_cell("  b"), name_cell("c "), name_cell("a b")
    ('\\x20\\x20b', 'c\\x20', 'a b')
    """
    body = name.strip(" ")
    if body == name:
        return name
    if not body:
        return "\\x20" * len(name)
    lead, trail = len(name) - len(name.lstrip(" ")), len(name) - len(name.rstrip(" "))
    return "\\x20" * lead + body + "\\x20" * trail

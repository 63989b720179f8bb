"""The Markdown format: the same sections as the table format, as GitHub-flavoured Markdown tables."""

from __future__ import annotations

import html
import re

from .._errors import printable
from .._report import Report
from ._layout import Document, Section, View, layout

# The ASCII punctuation with a meaning inside a line (backslash escapes, code, emphasis, links and images, GitHub's
# strikethrough and math, a heading's closing #s, and | that ends a cell), each escaped with a backslash. A "_"
# between letters or digits cannot start or end emphasis, and is left as it is: names are full of them.
_INLINE = re.compile(r"[\\`*\[\]#$~|]|(?<![^\W_])_|_(?![^\W_])")
# What would start another block at the start of a list item's text, past what _INLINE escapes ("*", "#", "_", "`",
# "~") and HTML ("<", ">"): a list marker ("-", "+", or "1." and "1)" before a space or the end) or a thematic break
# ("---"). A backslash before its last character makes it text.
_BLOCK_START = re.compile(r"[-+]|\d{1,9}[.)](?= |$)")


def _escape(cell: str) -> str:
    """A name as text: Markdown's punctuation would be markup (``[a](b)`` a link, ``*a*`` emphasis), ``|`` would end
    the cell, and ``<``, ``>``, ``&`` would be HTML to renderers that pass it through (``<script>`` is a valid module
    name)."""
    return html.escape(_INLINE.sub(r"\\\g<0>", printable(cell)), quote=False)


def _item(note: str) -> str:
    """A note as the text of one list item: escaped as a cell is, and neither a nested list nor a heading, a rule or
    a code block. Its leading spaces (four would make a code block) are dropped, as Markdown drops a paragraph's."""
    text = _escape(note).strip(" ")
    marker = _BLOCK_START.match(text)
    return text if marker is None else f"{text[: marker.end() - 1]}\\{text[marker.end() - 1 :]}"


def _cell(cell: str, indented: bool) -> str:
    """A cell as Markdown. A table's cell loses its leading spaces, so an indent that says a row belongs to the one
    above (the totals' "trainable" under "Parameters") is kept as non-breaking spaces."""
    indent = len(cell) - len(cell.lstrip(" ")) if indented else 0
    return "&nbsp;" * indent + _escape(cell.strip())


def _section(section: Section) -> list[str]:
    headers = [column.header or " " for column in section.columns]
    rule = ["---:" if column.align == "right" else ":---" for column in section.columns]
    lines = [f"### {_escape(section.title)}", "", "| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    # a module's path already says how deep it is: the tree's indent is left out
    indented = not section.columns or section.columns[0].header != "Module"
    lines += ["| " + " | ".join(_cell(cell, indented) for cell in row) + " |" for row in section.rows]
    return [*lines, ""]


def render_markdown(report: Report, view: View | None = None) -> str:
    """The report as Markdown: a heading, one table per section, the notes as a list."""
    return draw_markdown(layout(report, view or View()))


def draw_markdown(document: Document) -> str:
    """Draw a document as Markdown."""
    lines = [f"## {_escape(document.heading)}", ""]
    for section in document.sections:
        lines += _section(section)
    if document.notes:
        lines += ["### Notes", "", *(f"- {_item(note)}" for note in document.notes), ""]
    return "\n".join(lines)

"""The table format: plain text for pipes and files, rich tables in a terminal. Both draw the same layout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import printable
from .._report import Report
from ._layout import Column, Document, Section, View, layout

if TYPE_CHECKING:
    from rich.console import RenderableType


def _plain_section(section: Section) -> list[str]:
    # widths in the columns a terminal or a monospaced font gives the text: a CJK character or an emoji takes two,
    # a combining accent none (rich's table of widths imported only for such text: 10 ms)
    def cell_len(text: str) -> int:
        if text.isascii():
            return len(text)
        from rich.cells import cell_len as wide_len

        return wide_len(text)

    headers = tuple(column.header for column in section.columns)
    show_header = any(headers)
    rows = [tuple(printable(cell) for cell in row) for row in section.rows]
    table = [headers, *rows] if show_header else rows
    widths = [max(cell_len(row[i]) for row in table) for i in range(len(section.columns))] if table else []
    lines = [section.title]

    def line(cells: tuple[str, ...]) -> str:
        padded = (
            " " * (width - cell_len(cell)) + cell if column.align == "right" else cell + " " * (width - cell_len(cell))
            for cell, width, column in zip(cells, widths, section.columns, strict=True)
        )
        return ("  " + "  ".join(padded)).rstrip()

    if show_header:
        lines.append(line(headers))
        lines.append(line(tuple("-" * width for width in widths)))
    lines.extend(line(row) for row in rows)
    return lines


def draw_plain(document: Document) -> str:
    """Draw a document as aligned plain text (stable: no colour, no terminal width)."""
    lines = [printable(document.heading), ""]
    for section in document.sections:
        lines += [*_plain_section(section), ""]
    if document.notes:
        lines.append("Notes")
        lines += [f"  - {printable(note)}" for note in document.notes]
        lines.append("")
    return "\n".join(lines)


def render_plain(report: Report, view: View | None = None) -> str:
    """The report as plain text.

    >>> import paramscope
    >>> print(render_plain(paramscope.inspect("paramscope.examples:resnet18"), View(depth=0)).splitlines()[0])
    paramscope.examples:resnet18 (nn.Module on meta)
    """
    return draw_plain(layout(report, view or View()))


def _whole(column: Column, index: int) -> bool:
    """Whether a column is drawn whole, never folded: figures and the first column (paths, names). A cut
    "124,439,8…" is worse than a wide table. Types and notes fold when the terminal is narrow."""
    return column.align == "right" or index == 0


_LONGEST_WORD_KEPT = 16
"""A folded column is at least as wide as its longest word holding a figure, up to this many cells: a shape wraps at
its spaces, as ``(50257,`` / ``768)``, never inside a figure (``(5025`` / ``7,``), nor a dtype (``float3`` / ``2``);
words of letters alone fold, as a narrow terminal needs (``Line`` / ``ar``)."""


def _folded_width(section: Section, index: int) -> int:
    """The narrowest a folded column is drawn: its header's width (at least 4) or its longest word holding a figure,
    what is shorter of that and its widest cell."""
    from rich.cells import cell_len

    cells = [printable(cell) for cell in (section.columns[index].header, *(row[index] for row in section.rows))]
    words = (word for cell in cells for word in cell.split() if any(character.isdigit() for character in word))
    longest_word = max(map(cell_len, words), default=0)
    widest = max(cell_len(cell) for cell in cells)
    return min(widest, max(cell_len(section.columns[index].header), 4, min(longest_word, _LONGEST_WORD_KEPT)))


def rich_width(document: Document) -> int:
    """The narrowest width at which rich draws every table of ``document`` with the figures and first columns whole
    (the other columns folded down to their header's width): below it, rich would cut them ("124,4…") and drop
    columns.

    >>> rich_width(Document("", [Section("", (Column("Module"), Column("Note")), [("(model)", "a long note")])], []))
    18
    """
    from rich.cells import cell_len

    needed = 0
    for section in document.sections:
        widths = []
        for index, column in enumerate(section.columns):
            widest = max(cell_len(printable(cell)) for cell in (column.header, *(row[index] for row in section.rows)))
            widths.append(widest if _whole(column, index) else _folded_width(section, index))
        # a space of padding on either side of each cell, a separator between columns and an edge on either side
        needed = max(needed, sum(widths) + 3 * len(widths) + 1)
    return needed


def draw_rich(document: Document) -> RenderableType:
    """Draw a document as rich tables (used in terminals and by ``rich.print(report)``)."""
    from rich.console import Group

    return Group(*rich_parts(document))


def rich_parts(document: Document) -> list[RenderableType]:
    """The lines of text and the tables a document is drawn as with rich, in order. Each title is text of its own,
    not the table's title, which rich wraps to the table's width (a title wider than its table took several
    lines: "Only in A (1:", "missing", "from B)")."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Text, never str: rich reads a str as console markup, and a name such as "a[/].weight" would break it.
    parts: list[RenderableType] = [Text(printable(document.heading), style="bold")]
    for section in document.sections:
        headers = [column.header for column in section.columns]
        table = Table(box=box.SIMPLE_HEAD, show_header=any(headers), header_style="bold")
        for index, column in enumerate(section.columns):
            if _whole(column, index):  # never cut, given the width rich_width says
                table.add_column(column.header, justify=column.align, no_wrap=True)
            else:  # wrapped at its spaces, not narrower than its longest word
                narrowest = _folded_width(section, index)
                table.add_column(column.header, justify="left", overflow="fold", min_width=narrowest)
        for row in section.rows:
            table.add_row(*(Text(printable(cell)) for cell in row))
        parts += [Text(printable(section.title), style="bold cyan"), table]
    if document.notes:
        parts.append(Text("Notes", style="bold yellow"))
        parts.extend(Text(f"  • {printable(note)}") for note in document.notes)
    return parts


def rich_renderable(report: Report, view: View | None = None) -> RenderableType:
    """The report as a rich renderable."""
    return draw_rich(layout(report, view or View()))

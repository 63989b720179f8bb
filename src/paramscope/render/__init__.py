"""Renderers: functions of a Report. Nothing here changes or computes figures; ``_layout`` formats them once."""

from __future__ import annotations

from typing import IO, Literal

from .._checks import one_of, shown
from .._errors import UsageError
from .._report import Report
from ._layout import Document, View

Format = Literal["table", "json", "csv", "markdown", "html"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv", "markdown", "html")

__all__ = ["FORMATS", "Document", "Format", "View", "draw", "render", "write_document", "write_report"]


def render(report: Report, fmt: Format, view: View | None = None) -> str:
    """The report as text in ``fmt`` (the table format as plain text).

    >>> import paramscope
    >>> render(paramscope.inspect("paramscope.examples:resnet18"), "csv", View(depth=0)).splitlines()[1]
    ',ResNet,0,11689512,46758048,0,0,11689512,9620,38560,True,,,,,'

    Raises ``UsageError`` for a format not in ``FORMATS``, a ``report`` that is not a ``Report`` or a ``view``
    that is not a ``View``.
    """
    if not isinstance(report, Report):
        raise UsageError(f"report must be a paramscope.Report, not {shown(report)}")
    one_of("format", fmt, FORMATS)
    if view is not None and not isinstance(view, View):
        raise UsageError(f"view must be a paramscope.render.View, not {shown(view)}")
    view = view or View()
    if fmt == "json":
        from .json import render_json

        return render_json(report)
    if fmt == "csv":
        from .csv import render_csv

        return render_csv(report, view)
    if fmt == "markdown":
        from .markdown import render_markdown

        return render_markdown(report, view)
    if fmt == "html":
        from .html import render_html

        return render_html(report, view)
    from .text import render_plain

    return render_plain(report, view)


def write_report(report: Report, view: View, stream: IO[str], fmt: Format) -> None:
    """Write the report to ``stream``: rich tables when ``fmt`` is the table and the stream is a terminal."""
    if fmt == "table" and stream.isatty():
        from ._layout import layout

        write_document(layout(report, view), stream, "table")
        return
    stream.write(render(report, fmt, view))


def draw(document: Document, fmt: Literal["table", "markdown"]) -> str:
    """A document as plain text or Markdown."""
    if fmt == "markdown":
        from .markdown import draw_markdown

        return draw_markdown(document)
    from .text import draw_plain

    return draw_plain(document)


def write_document(document: Document, stream: IO[str], fmt: Literal["table", "markdown"]) -> None:
    """Write a document to ``stream``; the table format is drawn with rich when the stream is a terminal, as wide as
    the terminal, its tables wider where a figure or a name would not fit whole (the terminal then wraps their
    lines)."""
    if fmt == "table" and stream.isatty():
        from rich.console import Console
        from rich.table import Table

        from .text import rich_parts, rich_width

        console = Console(file=stream)
        if console.width < 1:  # COLUMNS=0: rich would draw the text at no width, which shows none of it
            console = Console(file=stream, width=80)
        needed = rich_width(document)
        wide = Console(file=stream, width=needed) if needed > console.width else console
        # only the tables wider than the terminal: text drawn that wide would be wrapped twice, by rich at the
        # tables' width, then by the terminal. Drawn first, written in one go: a terminal whose encoding cannot take
        # a character of the report gets none of it, as a pipe does
        drawn = []
        for part in rich_parts(document):
            drawer = wide if isinstance(part, Table) else console
            with drawer.capture() as captured:
                drawer.print(part)
            drawn.append(captured.get())
        stream.write("".join(drawn))
        return
    stream.write(draw(document, fmt))

"""Tables for people, through rich: columns size to their content and wrap, never overflow.

Every table the CLI prints goes through :func:`render`, so ``str()`` of a library result and
the command's output are the same text. Cells are plain text (never rich markup), so a
solver's message or a plugin's name cannot restyle or hide anything.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

WIDE = 10_000  # columns when the output is not a terminal: a file or a pipe gets whole lines
# rich's SIMPLE_HEAD in ASCII: a dashed rule under the header, nothing else.
RULE_UNDER_HEADER = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[str] = (),
          title: str | None = None) -> Table:
    """A borderless table; ``right`` names the columns aligned right (numbers)."""
    right = set(right)
    t = Table(box=RULE_UNDER_HEADER, show_edge=False, pad_edge=False, title=title,
              title_justify="left", title_style=None, header_style="bold")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", overflow="fold")
    for row in rows:
        t.add_row(*(Text("-" if v is None else str(v)) for v in row))
    return t


def output_width(stream: Any = None) -> int:
    """The terminal's width when ``stream`` is one, else :data:`WIDE`."""
    stream = sys.stdout if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return shutil.get_terminal_size((WIDE, 24)).columns if tty else WIDE


def render(*parts: Any, width: int = WIDE) -> str:
    """Text of rich renderables (tables, strings), without colour or trailing spaces."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False,
                      highlight=False, markup=False, emoji=False, soft_wrap=False)
    for part in parts:
        console.print(part)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())

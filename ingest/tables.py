"""Tables -> readable lines: each row names its cells by their column (``Planet: Mars | Moons: 2``).

A table cut into chunks loses its header row to the first chunk, and a row
of bare cells (``Mars | 2 | 6792``) says nothing about what its numbers are.
So under a header every row carries the column names, and any chunk of a
table reads on its own, in the index and in the source card the UI shows.
The CSV loader writes rows the same way; DOCX, HTML, Markdown and PPTX
tables go through :func:`table_lines`.

Whether the first row is a header comes from the document where it says
(``<th>``, ``<thead>``, a Markdown table, Word's "repeat header row") and is
otherwise guessed from the cells: a first row of names over rows of numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["is_header", "markdown_tables", "row_text", "table_lines"]

#: A cell that is a plain number: sign, currency, thousands separators, decimal point or comma, exponent,
#: then a percent, currency, currency code, unit of temperature or k/M/bn (``25,5 %``, ``2,50 €``, ``5 USD``).
_NUMBER = re.compile(
    r"[-+−(]?[$€£¥]?[-+−]? ?(?:\d{1,3}(?:[,. ]?\d{3})*(?:[.,]\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
    r" ?(?:%|[$€£¥]|[A-Z]{3}|°[CF]|[kMB]|bn)?\)?"
)


def is_header(row: Sequence[str]) -> bool:
    """Could this row name the columns?

    A header names things; a row holding a plain number is data (``Acme,12.5``,
    ``Temperature,25 °C``), except where the numbers are labels: years, which
    head financial tables (``,2019,2018``), and runs of consecutive integers,
    which head scales, sizes and pandas frames (``Question,1,2,3,4,5``, ``,0,1,2``).
    """
    def is_year(cell: str) -> bool:  # 2019, or 2019 EUR
        return re.fullmatch(r"(?:18|19|20|21)\d\d(?: ?[A-Za-z]+)?", cell) is not None

    numbers = [cell for cell in row if _NUMBER.fullmatch(cell)]
    counting = len(numbers) >= 3 and all(c.isdigit() for c in numbers) and all(
        int(b) == int(a) + 1 for a, b in zip(numbers, numbers[1:]))
    return counting or all(is_year(cell) for cell in numbers)


def row_text(names: Sequence[str], row: Sequence[str]) -> str:
    """``name: value`` for each non-empty cell, `` | `` between; a cell whose column has no name stands alone."""
    cells = (f"{names[i]}: {value}" if i < len(names) and names[i] else value for i, value in enumerate(row) if value)
    return " | ".join(cells)


def table_lines(rows: Sequence[Sequence[str]], header: bool | None = None) -> list[str]:
    """One line per row of a table, its cells named by the header when there is one.

    Args:
        rows: the table's rows of cell texts (whitespace already collapsed), first row first.
        header: True when the document marks the first row as the header, False when it has none,
            None to guess: a first row that :func:`is_header` accepts over at least one row of data numbers.

    Returns:
        A line per non-empty row; under a header the header row itself is left out (each row names its
        columns), unless it is the only row. Without one, cells are joined by `` | ``.
    """
    rows = [list(row) for row in rows if any(row)]
    if not rows:
        return []
    if header is None:
        header = len(rows) > 1 and is_header(rows[0]) and any(not is_header(row) for row in rows[1:])
    if not header or len(rows) == 1:
        return [" | ".join(cell for cell in row if cell) for row in rows]
    names = rows[0]
    return [line for line in (row_text(names, row) for row in rows[1:]) if line]


# A Markdown table's delimiter row (``|---|:--:|``, ``--- | ---``): without one a file has no table to parse.
_DELIMITER_ROW = re.compile(r"^[ \t>]*\|?[ \t]*:?-+:?[ \t]*\|", re.MULTILINE)


def markdown_tables(text: str) -> tuple[str, Callable[[int], int]]:
    """``text`` with each pipe table (GitHub's tables, found by markdown-it) written as :func:`table_lines`.

    Code fences keep their tables; inline markup in a cell (``**x**``, ``<b>x</b>``, a link) keeps only
    its text.

    Returns:
        The new text, and a function that maps a position of ``text`` outside the tables (a heading's)
        to the same place in the new text.
    """
    if not _DELIMITER_ROW.search(text):
        return text, lambda pos: pos
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    pieces: list[str] = []
    moved: list[tuple[int, int]] = []  # (end of a table in text, shift of everything after it)
    done = 0
    for i, token in enumerate(tokens):
        if token.type != "table_open" or token.map is None:
            continue
        first, last = token.map
        start, end = starts[first], min(starts[last] - 1, len(text))  # the table's lines, without the last \n
        rows = _markdown_rows(tokens, i)
        pieces += [text[done:start], "\n".join(table_lines(rows, header=True))]
        done = end
        moved.append((end, len("".join(pieces)) - end))
    pieces.append(text[done:])

    def shift(pos: int) -> int:
        return pos + next((delta for end, delta in reversed(moved) if end <= pos), 0)

    return "".join(pieces), shift


def _markdown_rows(tokens: Sequence[Any], table: int) -> list[list[str]]:
    """The cell texts of the table whose ``table_open`` token is ``tokens[table]``, header row first."""
    rows: list[list[str]] = []
    for token in tokens[table + 1 :]:
        if token.type == "table_close":
            break
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows:
            rows[-1].append(" ".join(_inline_text(token).split()))
    return rows


def _inline_text(token: Any) -> str:
    """The words of an inline token: text and code, not markup or raw HTML tags; an image gives its alt text."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(_inline_text(child))
    return "".join(parts)

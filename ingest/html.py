"""HTML -> visible text with ``#``-headings, so :mod:`ingest.loaders` cuts it like Markdown.

Scripts, styles, navigation and forms are dropped; block elements go on
their own lines, list items get ``- ``, and a table becomes rows that name
their cells (:func:`ingest.tables.table_lines`), whatever the page's nesting.
"""

from __future__ import annotations

import re
from typing import Any

from ingest.tables import table_lines

__all__ = ["html_to_text"]

# HTML elements whose text is never content a question could be about.
_HTML_DROP = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "form", "button")
_HTML_SKIP = frozenset(("head", "title", *_HTML_DROP))
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_END = object()  # on _html_text's stack: the heading being gathered ends here
_HTML_BLOCKS = (
    "p", "div", "section", "article", "main", "aside", "header", "footer", "blockquote", "pre", "ul", "ol",
    "dl", "dt", "dd", "table", "tr", "figure", "figcaption", "address", "hr",
)  # fmt: skip


def html_to_text(data: bytes) -> str:
    """Visible text of an HTML page, with ``#``-headings so it can be cut like Markdown."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")  # bytes: bs4 sniffs the charset (meta tag, BOM, then guesses)
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    lines = [" ".join(line.replace("\xa0", " ").split()).removesuffix(" |") for line in _html_text(soup).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if title and not re.search(r"^# ", text, re.MULTILINE):
        text = f"# {title}\n\n{text}"  # the page title heads the page when it has no <h1>
    return text


def _html_text(root: Any, tables: bool = True) -> str:
    """The tree's visible text: blocks on their own lines, ``#``-headings, ``- `` list items, tables as rows.

    A table's rows are :func:`_html_table_lines`; a table inside a table's
    cell (``tables=False``) is written as cells followed by ``|``, so the
    recursion is one level deep at most.

    One walk with an explicit stack, linear in the size of the tree and safe at
    any depth. (Editing the tree in place, bs4's ``insert_before`` and
    ``replace_with``, costs time proportional to its depth per edit: deeply
    nested divs took minutes, docs/RELIABILITY.md.) A heading's words are gathered by the same walk:
    inside one, only strings are written, and at its end they become one
    ``## words`` line.
    """
    from bs4 import CData, NavigableString, Tag

    texts = (NavigableString, CData)  # what get_text returns: no comments, doctypes, processing instructions
    out: list[str] = []
    stack: list[Any] = [root]  # nodes to visit, plain str marks to write once a tag's children are done, _END
    heading: tuple[int, int] | None = None  # inside a heading: its level, and where its words start in out
    while stack:
        node = stack.pop()
        if node is _END:
            assert heading is not None
            level, start = heading
            words = " ".join(" ".join(out[start:]).split())
            out[start:] = [f"\n\n{'#' * level} {words}\n\n" if words else "\n"]
            heading = None
        elif type(node) is str:
            out.append(node)
        elif not isinstance(node, Tag):
            if type(node) in texts:
                out.append(node)
        elif node.name in _HTML_SKIP:
            continue
        elif heading is not None:  # in a heading (a nested one too): its strings only, no layout
            stack.extend(reversed(node.contents))
        elif node.name in _HTML_HEADINGS:
            heading = (_HTML_HEADINGS[node.name], len(out))
            stack.append(_END)
            stack.extend(reversed(node.contents))
        elif node.name == "br":
            out.append("\n")
        elif node.name == "table" and tables:
            out.append("\n" + "\n".join(_html_table_lines(node)) + "\n")
        else:
            mark = "\n\n" if node.name == "p" else "\n" if node.name in _HTML_BLOCKS else ""
            out.append("\n- " if node.name == "li" else mark)
            stack.append(" | " if node.name in ("td", "th") else mark)
            stack.extend(reversed(node.contents))
    return "".join(out)


_MAX_SPAN = 64  # a colspan past this is no layout a reader sees: a hostile file's, counted as 1


def _html_table_lines(table: Any) -> list[str]:
    """A ``<table>``'s own rows (not a nested table's) as :func:`~ingest.tables.table_lines`.

    The first row is the header when it sits in ``<thead>`` or is all ``<th>``; otherwise it is guessed
    from the cells. A cell spanning columns names all of them in a header and fills one in a data row.
    """
    rows: list[list[str]] = []
    marked = False
    for tr, group in _html_rows(table):
        cells = tr.find_all(("td", "th"), recursive=False)
        if not cells:
            continue
        header = not rows and (group == "thead" or all(c.name == "th" for c in cells))
        marked = marked or header
        row: list[str] = []
        for cell in cells:
            words = "".join(_html_text(child, tables=False) for child in cell.contents).replace("\xa0", " ")
            text = " ".join(words.split()).removesuffix(" |")
            span = str(cell.get("colspan", "1"))
            width = int(span) if span.isdigit() and 0 < int(span) <= _MAX_SPAN else 1
            row.extend([text] * width if header else [text] + [""] * (width - 1))
        rows.append(row)
    return table_lines(rows, header=True if marked else None)


def _html_rows(table: Any) -> list[tuple[Any, str | None]]:
    """The table's ``<tr>`` elements, each with the row group (``thead``, ``tbody``, ``tfoot``) it is in."""
    from bs4 import Tag

    rows: list[tuple[Any, str | None]] = []
    for child in table.children:
        if isinstance(child, Tag) and child.name == "tr":
            rows.append((child, None))
        elif isinstance(child, Tag) and child.name in ("thead", "tbody", "tfoot"):
            rows.extend((tr, child.name) for tr in child.find_all("tr", recursive=False))
    return rows

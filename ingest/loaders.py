"""Loaders: one file -> a list of :class:`Section` (text + where it sits in the file).

A section is the unit the chunker cuts: a PDF page, a Markdown/HTML/DOCX
heading section, or a whole plain-text file. Each one remembers where its
text starts in the file's *loaded text* so every chunk can point back to an
exact character span, which is what the UI shows beside an answer.

The loaded text of a file is:

- ``.txt``: the decoded file with newlines normalised to ``\\n``;
- ``.md``: the same, with each pipe table written as rows; sections are cut at
  ATX (``## x``) and setext headings outside code fences, each carrying its
  heading path (``Guide > Install``);
- ``.html``: visible text (``script``, ``style``, ``nav`` ... dropped), block
  elements on their own lines, ``<hN>`` rendered as ``#``-headings, tables as
  rows, then cut like Markdown;
- ``.docx``: paragraphs and tables (as rows) separated by blank lines, cut at
  ``Title``/``Heading N`` styles;
- ``.pdf``: each page's text as :mod:`ingest.pdf` extracts and cleans it; pages
  joined by a blank line. Chunk spans of a PDF are relative to the page text
  (the store's convention), while :attr:`Section.offset` still places the page
  in the whole file.
- ``.pptx``: each slide's text (titles, text boxes, tables as rows, speaker
  notes) as a section headed ``Slide N: title``; slides joined by a blank line.

A table's rows name their cells by the header (``Segment: Intelligent Cloud |
Revenue 2024: 28,515``), as :mod:`ingest.tables` writes them, so a chunk of a
table reads on its own.
- ``.csv`` / ``.tsv``: one line per row, each cell named by its column
  (``Name: Ada | Born: 1815``), each row its own section headed with its
  spreadsheet row number (``row 7``; the header is row 1). A first row holding a
  number other than a year is data, not a header: its columns are then
  ``column 1``, ``column 2``... A row per chunk is
  what the small generator reads right: tried by hand on a six-planet table,
  with all rows in one chunk it answered Mars's moons with Venus's diameter;
  with a row per chunk it answered three questions of that kind right.

A file that cannot be read raises :class:`~rag_app.errors.LoaderError` with the
reason; ingest reports it and goes on with the other files.

``load(path, data=...)`` parses bytes (or a binary file object) it is given:
ingest opens each file once with :func:`open_checked` and hashes the very
bytes parsed. Which encoding a text file is in is :mod:`ingest.encoding`'s
question.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from rag_app.errors import LoaderError

from ingest.encoding import SNIFF, decode_text, sniff_encoding, wide_codec
from ingest.html import html_to_text
from ingest.pdf import page_texts
from ingest.tables import is_header, markdown_tables, row_text, table_lines

__all__ = ["SUPPORTED_TYPES", "Section", "decode_text", "is_supported", "load", "open_checked", "reader_version"]

log = logging.getLogger(__name__)
_CHANGED = "changed while being indexed ({}); ingest again to index it"

#: extension -> loader kind. Everything else is "skipped: unsupported type".
SUPPORTED_TYPES = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".csv": "csv",
    ".tsv": "csv",
}

#: loader kind -> how it reads; bump when the same bytes load differently (ingest folds it into a file's
#: digest, so an indexed file is re-read once instead of staying "unchanged"). 1 where absent.
READER_VERSIONS = {
    "csv": 2,  # 2: header-less CSVs keep their first row; decimal-comma ; files
    # 2 (issue #20): PDF text cleaned (ligatures, hyphenation, one-word lines), AES PDFs open; tables as
    # rows that name their cells (DOCX, HTML, Markdown, PPTX). PDF 3: words in capitals broken at a line end
    # are joined (OP- / TIONAL -> OPTIONAL).
    "pdf": 3, "docx": 2, "html": 2, "markdown": 2, "pptx": 2,
}


def reader_version(path: str | Path) -> int:
    """How :func:`load` reads this kind of file now (see ``READER_VERSIONS``)."""
    return READER_VERSIONS.get(SUPPORTED_TYPES.get(Path(path).suffix.lower(), ""), 1)

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t](.*))?$")  # the closing #s are cut by _atx_title: linear
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A line above "---" that is a list item, quote, table row or heading is not a setext title.
_NOT_SETEXT_TEXT = re.compile(r"^(?:[-*+] |\d+[.)] |>|\||#)")


@dataclass(frozen=True)
class Section:
    """A contiguous piece of a file's loaded text.

    Attributes:
        text: the section text, stripped of surrounding whitespace.
        offset: where ``text`` starts in the file's loaded text (characters).
        page: 1-based page number for PDFs, else None.
        heading: heading path (``"Guide > Install"``) for Markdown/HTML/DOCX sections under a heading.
    """

    text: str
    offset: int = 0
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True)
class _Heading:
    start: int  # first character of the heading line(s)
    body: int  # first character after them
    level: int
    title: str


def is_supported(path: str | Path) -> bool:
    """True for the extensions :func:`load` reads (case-insensitive)."""
    return Path(path).suffix.lower() in SUPPORTED_TYPES


def load(path: str | Path, data: bytes | BinaryIO | None = None) -> list[Section]:
    """Read one file into sections.

    Text kinds are checked for binary content on their first 64 KB before the
    rest is read, so a multi-gigabyte binary under ``.txt`` costs one small
    read; that detection runs once per file, and its codec decodes the text.

    Args:
        path: a ``.txt .md .markdown .html .htm .pdf .docx .pptx .csv .tsv`` file; its extension picks the loader.
        data: the file's bytes, or a binary file object to read them from; None opens ``path`` (following
            links). Ingest passes the descriptor :func:`open_checked` opened, so the bytes it parses are
            the bytes it hashes, whatever happens to the path meanwhile.

    Returns:
        Sections in file order; empty when the file holds no text (an empty file).

    Raises:
        LoaderError: unsupported type, unreadable, binary content under a text
            extension, an encoding not recognised, a PDF that is corrupt, over a
            safety limit, needs a password or has no text layer, invalid DOCX or PPTX.
    """
    path = Path(path)
    kind = SUPPORTED_TYPES.get(path.suffix.lower())
    if kind is None:
        raise LoaderError(f"unsupported type {path.suffix or '(no extension)'}")
    if data is None:
        with _open(path, "rb") as fh:
            raw, codec = _read(fh, kind)
    else:
        raw, codec = _read(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, kind)
    if kind == "text":
        return _whole(decode_text(raw, codec))
    if kind == "markdown":
        return _markdown_sections(decode_text(raw, codec), setext=True, tables=True)
    if kind == "html":
        return _markdown_sections(html_to_text(raw), setext=False)
    if kind == "pdf":
        return _load_pdf(raw)
    if kind == "csv":
        return _load_csv(decode_text(raw, codec), tab=path.suffix.lower() == ".tsv")
    if kind == "pptx":
        return _load_pptx(raw)
    return _load_docx(raw)


def _read(source: BinaryIO, kind: str) -> tuple[bytes, str | None]:
    """All the bytes of ``source``, and a text kind's codec, found from its first 64 KB before the rest is read."""
    try:
        head = source.read(SNIFF)
        codec = None
        if kind in ("text", "markdown", "csv"):
            codec = sniff_encoding(head)
        elif kind == "html":
            wide_codec(head)  # refuses binary; bs4 finds the charset itself
        return head + source.read(), codec
    except OSError as err:
        raise LoaderError(f"cannot read file: {err.strerror or err}") from None


def _open(path: Path, mode: str, opener: Any = None) -> BinaryIO:
    """``open(path, mode)``, failing as a :class:`LoaderError` with the reason."""
    try:
        return open(path, mode, opener=opener)
    except PermissionError:
        raise LoaderError("permission denied: cannot read") from None
    except OSError as err:
        if opener is not None and err.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a link (EMLINK: BSD)
            raise LoaderError(_CHANGED.format("it is a link now")) from None
        raise LoaderError(f"cannot read file: {err.strerror or err}") from None


def _no_follow(path: str, flags: int) -> int:
    """Open no link, and do not wait on a FIFO: one swapped in is then refused as no regular file."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)


def open_checked(path: str | Path, within: Path, expect: tuple[int, int] | None = None) -> tuple[BinaryIO, os.stat_result]:
    """Open ``path`` for :func:`load` so that what is read is the regular file the walk saw, inside ``within``.

    Ingest hashes each file while it walks the folder and opens it again to
    load it. In between, a path can be swapped for a link (``notes.txt ->
    ../secret.txt``), for another file, or a folder on the way to it for a
    link to outside; reading the path again would index what it then names.
    So the one descriptor that is read is checked, and nothing is read by path:

    - opened with ``O_NOFOLLOW``: the file itself is no link (ingest passes
      the resolved target of a link that stays inside the folder);
    - ``fstat``: a regular file, and ``expect`` (``st_dev, st_ino``, what the
      walk hashed) when given;
    - under ``within`` (resolved): the path resolves there now and names this
      very file, so a file reached through a folder swapped for a link is refused.

    A hard link cannot be told by any path: a file in the folder that is a
    hard link to one outside is the same file in both places, and is read like
    any other.

    Returns:
        The open file (the caller closes it) and its ``fstat``.

    Raises:
        LoaderError: unreadable, or changed since the walk (a link, no regular
            file, another file, outside ``within``).
    """
    path = Path(path)
    fh = _open(path, "rb", opener=_no_follow)
    try:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise LoaderError(_CHANGED.format("it is no regular file now"))
        if expect is not None and (st.st_dev, st.st_ino) != tuple(expect):
            raise LoaderError(_CHANGED.format("another file is there now"))
        if not _names_within(path, st, within):
            raise LoaderError(_CHANGED.format("it is outside the folder now"))
    except BaseException:
        fh.close()
        raise
    return fh, st


def _names_within(path: Path, st: os.stat_result, within: Path) -> bool:
    """Does ``path`` resolve under ``within`` to the file ``st`` describes (no folder on the way leads out)?"""
    try:
        real = Path(os.path.realpath(path))
        here = os.stat(real)
    except OSError:
        return False
    return real.is_relative_to(within) and (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino)


def _strip_span(text: str, start: int, end: int) -> tuple[str, int]:
    """``text[start:end]`` without surrounding whitespace, and where that begins."""
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return piece.strip(), start + lead


def _whole(text: str) -> list[Section]:
    stripped, offset = _strip_span(text, 0, len(text))
    return [Section(stripped, offset)] if stripped else []


def _find_headings(text: str, setext: bool) -> list[_Heading]:
    """ATX and (optionally) setext headings outside code fences and YAML front matter."""
    heads: list[_Heading] = []
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    first = 0
    if lines and lines[0].strip() == "---":  # front matter: skip to its closing line
        for j in range(1, len(lines)):
            if lines[j].strip() in ("---", "..."):
                first = j + 1
                break
    fence: str | None = None
    for i in range(first, len(lines)):
        line = lines[i]
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark[0] * len(mark)
            elif mark.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        m = _ATX.match(line)
        if m:
            heads.append(_Heading(starts[i], starts[i + 1], len(m.group(1)), _atx_title(m.group(2) or "")))
            continue
        m = _SETEXT.match(line) if setext and i > first else None
        prev = lines[i - 1].strip() if i > 0 else ""
        if m and prev and not _NOT_SETEXT_TEXT.match(prev) and not (heads and heads[-1].body > starts[i - 1]):
            heads.append(_Heading(starts[i - 1], starts[i + 1], 1 if m.group(1)[0] == "=" else 2, prev))
    return heads


def _atx_title(rest: str) -> str:
    """A heading's text without its optional closing ``#``s, by string ops.

    Why not in the regex: ``(.*?)(?:[ \t]+#+)?[ \t]*$`` backtracks
    quadratically on a long run of spaces (docs/RELIABILITY.md, "A folder's contents").
    """
    title = rest.strip(" \t")
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):
        title = bare.rstrip(" \t")
    return title.strip()


def _split_at_headings(text: str, heads: Sequence[_Heading]) -> list[Section]:
    """Cut ``text`` before each heading; each section keeps its heading path.

    A section is its heading line(s) plus the body up to the next heading; one
    whose body is blank (a heading directly followed by a sub-heading) is
    dropped, since a chunk of a lone title retrieves nothing useful.
    """
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    bounds = [h.start for h in heads] + [len(text)]
    pre, offset = _strip_span(text, 0, bounds[0])
    if pre:
        sections.append(Section(pre, offset))
    for i, head in enumerate(heads):
        while stack and stack[-1][0] >= head.level:
            stack.pop()
        if head.title:
            stack.append((head.level, head.title))
        if not text[head.body : bounds[i + 1]].strip():
            continue
        body, offset = _strip_span(text, head.start, bounds[i + 1])
        path = " > ".join(title for _, title in stack) or None
        sections.append(Section(body, offset, heading=path))
    return sections


def _markdown_sections(text: str, setext: bool, tables: bool = False) -> list[Section]:
    """Cut at headings; with ``tables``, pipe tables become rows (headings are found before, in the file's own text)."""
    heads = _find_headings(text, setext)
    if tables:
        text, shift = markdown_tables(text)
        heads = [replace(h, start=shift(h.start), body=shift(h.body)) for h in heads]
    return _split_at_headings(text, heads)


def _load_pdf(data: bytes) -> list[Section]:
    return _joined([Section(text, page=number) for number, text in page_texts(data)])


def _load_docx(data: bytes) -> list[Section]:
    try:
        import docx
        from docx.table import Table

        document = docx.Document(io.BytesIO(data))
        blocks: list[tuple[int | None, str]] = []  # (heading level or None, text)
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                text, level = "\n".join(_docx_table_lines(item)), None
            else:
                text, level = item.text.strip(), _docx_heading_level(item.style.name if item.style else "")
            if text.strip():
                blocks.append((level, text))
    except Exception as err:  # not a zip, missing parts, bad XML: all mean "not a readable .docx"
        raise LoaderError(f"not a readable .docx ({type(err).__name__}: {err})") from None
    parts: list[str] = []
    heads: list[_Heading] = []
    pos = 0
    for level, text in blocks:
        if level is not None:
            heads.append(_Heading(pos, pos + len(text) + 2, level, " ".join(text.split())))
        parts.append(text)
        pos += len(text) + 2
    return _split_at_headings("\n\n".join(parts), heads)


def _docx_table_lines(table: Any) -> list[str]:
    """A Word table as :func:`~ingest.tables.table_lines`; the first row is the header where Word marks it so.

    A merged cell is one cell: python-docx repeats it in every grid column it spans, and its text is kept
    once (a header's name is repeated, so the columns under it are named).
    """
    from docx.oxml.ns import qn

    rows: list[list[str]] = []
    for number, row in enumerate(table.rows):
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            text = " ".join(cell.text.split())
            cells.append("" if cell._tc is previous and number else text)
            previous = cell._tc
        rows.append(cells)
    first = table.rows[0]._tr if rows else None
    marked = first is not None and first.trPr is not None and first.trPr.find(qn("w:tblHeader")) is not None
    return table_lines(rows, header=True if marked else None)


def _docx_heading_level(style: str) -> int | None:
    """``Title`` -> 0 (so ``Heading 1`` nests under it), ``Heading N`` -> N, else None."""
    if style == "Title":
        return 0
    m = re.fullmatch(r"Heading (\d)", style)
    return int(m.group(1)) if m else None


def _joined(parts: Sequence[Section]) -> list[Section]:
    """Sections (pages, slides, rows) joined by blank lines into the loaded text: each placed at its offset there."""
    sections: list[Section] = []
    pos = 0
    for part in parts:
        sections.append(replace(part, offset=pos))
        pos += len(part.text) + 2
    return sections


def _delimiter(sample: str) -> str:
    """The sniffed delimiter, ``;`` over ``,`` when both split every line alike (``Kaffee;2,50 €``: decimal commas)."""
    sniffer = csv.Sniffer()
    try:  # only the delimiter: the sniffer's quoting guesses misread standard "" escapes and apostrophes
        delimiter = sniffer.sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # one column, or too irregular to tell: plain commas
        return ","
    if delimiter == ",":
        try:
            return sniffer.sniff(sample, delimiters=";").delimiter
        except csv.Error:
            pass
    return delimiter


def _load_csv(text: str, tab: bool) -> list[Section]:
    """The first non-empty row names the columns unless it holds data numbers (then columns are numbered)."""
    delimiter = "\t" if tab else _delimiter(text[:65536])
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # one long cell (an article) is still a cell
    try:
        records = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as err:
        raise LoaderError(f"not a readable table ({err})") from None
    _check_quotes_close(text, delimiter, len(records))
    rows = [[" ".join(c.split()) for c in row] for row in records]
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if any(row)]
    if not numbered:
        return []
    header = numbered[0][1] if is_header(numbered[0][1]) else []
    if header and len(numbered) == 1:  # a header alone still says what the file is about
        return [Section(" | ".join(h for h in header if h), 0)]
    width = max(len(row) for _, row in numbered)
    names = [header[i] if i < len(header) and header[i] else f"column {i + 1}" for i in range(width)]
    data = numbered[1:] if header else numbered
    rows_as_text = ((n, row_text(names, row)) for n, row in data)
    return _joined([Section(text, heading=f"row {n}") for n, text in rows_as_text])


def _check_quotes_close(text: str, delimiter: str, n_records: int) -> None:
    """Refuse a quote left open: the lenient reader would fold every later row into that one cell, unseen.

    A line appended after an open quote lands in the open cell (no new record); after a closed one it is a row.
    (csv's strict mode stops at the first complaint, often harmless text after a closing quote, and misses this.)
    """
    if len(list(csv.reader(io.StringIO(text + "\nx"), delimiter=delimiter))) == n_records:
        raise LoaderError(f"row {n_records}: a quoted cell never closes, so every row after it would be lost; "
                          'close or remove the stray " and ingest again')


def _load_pptx(data: bytes) -> list[Section]:
    try:
        from pptx import Presentation

        slides = []
        for number, slide in enumerate(Presentation(io.BytesIO(data)).slides, start=1):
            title_shape = slide.shapes.title
            title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
            lines = [line for shape in slide.shapes for line in _pptx_shape_lines(shape)]
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = " ".join(slide.notes_slide.notes_text_frame.text.split())
                if notes:
                    lines.append(f"Notes: {notes}")
            text = "\n".join(lines).strip()
            if text:
                slides.append(Section(text, heading=f"Slide {number}: {title}" if title else f"Slide {number}"))
    except Exception as err:  # not a zip, missing parts, bad XML: all mean "not a readable .pptx"
        raise LoaderError(f"not a readable .pptx ({type(err).__name__}: {err})") from None
    return _joined(slides)


def _pptx_shape_lines(shape: Any) -> list[str]:
    """A shape's text in reading order: paragraphs, table rows as ``a | b``, groups recursed."""
    from pptx.shapes.group import GroupShape

    if isinstance(shape, GroupShape):  # not shape.shape_type: it raises on shapes without geometry (Google Slides)
        return [line for inner in shape.shapes for line in _pptx_shape_lines(inner)]
    if shape.has_table:  # PowerPoint's "Header Row" option (on by default) marks the first row
        rows = [[" ".join(c.text.split()) for c in row.cells] for row in shape.table.rows]
        return table_lines(rows, header=True if shape.table.first_row else None)
    if shape.has_text_frame:
        return [t for t in (" ".join(p.text.split()) for p in shape.text_frame.paragraphs) if t]
    return []

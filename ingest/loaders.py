"""Loaders: one file -> a list of :class:`Section` (text + where it sits in the file).

A section is the unit the chunker cuts: a PDF page, a Markdown/HTML/DOCX
heading section, or a whole plain-text file. Each one remembers where its
text starts in the file's *loaded text* so every chunk can point back to an
exact character span, which is what the UI shows beside an answer.

The loaded text of a file is:

- ``.txt``: the decoded file with newlines normalised to ``\\n``;
- ``.md``: the same; sections are cut at ATX (``## x``) and setext headings
  outside code fences, each carrying its heading path (``Guide > Install``);
- ``.html``: visible text (``script``, ``style``, ``nav`` ... dropped), block
  elements on their own lines, ``<hN>`` rendered as ``#``-headings, then cut
  like Markdown;
- ``.docx``: paragraphs and table rows separated by blank lines, cut at
  ``Title``/``Heading N`` styles;
- ``.pdf``: each page's extracted text, stripped; pages joined by a blank line.
  Chunk spans of a PDF are relative to the page text (the store's convention),
  while :attr:`Section.offset` still places the page in the whole file.
- ``.pptx``: each slide's text (titles, text boxes, table rows, speaker notes)
  as a section headed ``Slide N: title``; slides joined by a blank line.
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
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag_app.errors import LoaderError

log = logging.getLogger(__name__)

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
READER_VERSIONS = {"csv": 2}  # 2: header-less CSVs keep their first row; decimal-comma ; files


def reader_version(path: str | Path) -> int:
    """How :func:`load` reads this kind of file now (see ``READER_VERSIONS``)."""
    return READER_VERSIONS.get(SUPPORTED_TYPES.get(Path(path).suffix.lower(), ""), 1)

# HTML elements whose text is never content a question could be about.
_HTML_DROP = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "form", "button")
_HTML_SKIP = frozenset(("head", "title", *_HTML_DROP))
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_BLOCKS = (
    "p", "div", "section", "article", "main", "aside", "header", "footer", "blockquote", "pre", "ul", "ol",
    "dl", "dt", "dd", "table", "tr", "figure", "figcaption", "address", "hr",
)  # fmt: skip
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A line above "---" that is a list item, quote, table row or heading is not a setext title.
_NOT_SETEXT_TEXT = re.compile(r"^(?:[-*+] |\d+[.)] |>|\||#)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{3,}")
_SNIFF = 65536  # bytes read to tell text from binary and find the encoding
# UTF-32 first: its LE mark starts like UTF-16's. (A UTF-8 mark is read by the utf-8-sig codec.)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_UNICODE = ["utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be"]


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


def load(path: str | Path) -> list[Section]:
    """Read one file into sections.

    Text kinds are checked for binary content on their first 64 KB before the
    rest is read, so a multi-gigabyte binary under ``.txt`` costs one small read.

    Args:
        path: a ``.txt .md .markdown .html .htm .pdf .docx .pptx .csv .tsv`` file.

    Returns:
        Sections in file order; empty when the file holds no text (an empty file).

    Raises:
        LoaderError: unsupported type, unreadable, binary content under a text
            extension, an encoding not recognised, corrupt or encrypted PDF,
            invalid DOCX or PPTX.
    """
    path = Path(path)
    kind = SUPPORTED_TYPES.get(path.suffix.lower())
    if kind is None:
        raise LoaderError(f"unsupported type {path.suffix or '(no extension)'}")
    data = _read(path, whole=kind in ("text", "markdown", "html", "csv"))
    if kind == "text":
        return _whole(decode_text(data))
    if kind == "markdown":
        return _markdown_sections(decode_text(data), setext=True)
    if kind == "html":
        return _markdown_sections(_html_to_text(data), setext=False)
    if kind == "pdf":
        return _load_pdf(path, data)
    if kind == "csv":
        return _load_csv(decode_text(data), tab=path.suffix.lower() == ".tsv")
    if kind == "pptx":
        return _load_pptx(path)
    return _load_docx(path)


def _read(path: Path, whole: bool) -> bytes:
    """The file's bytes (``whole``: text, refused as binary from its first 64 KB), else just those 64 KB."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF)
            if not whole:
                return head
            _reject_binary(head)
            return head + fh.read()
    except PermissionError:
        raise LoaderError("permission denied: cannot read") from None
    except OSError as err:
        raise LoaderError(f"cannot read file: {err.strerror or err}") from None


def decode_text(data: bytes) -> str:
    """Bytes of a text file -> str, in the encoding :func:`_sniff_encoding` finds.

    Valid UTF-8 is decided on the whole file; the other encodings on its first
    64 KB, and bytes after them that do not fit become U+FFFD. Newlines are
    normalised to ``\\n``.

    Raises:
        LoaderError: the bytes are binary, or in no encoding recognised.
    """
    codec = _sniff_encoding(data[:_SNIFF])
    text = None
    if codec == "utf-8-sig":
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:  # UTF-8 in its first 64 KB only: a legacy encoding after all
            codec = _legacy_codec(data[:_SNIFF])
    if text is None:
        text = data.decode(codec, errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sniff_encoding(head: bytes) -> str:
    """The codec of a text file from its first bytes.

    In order: a UTF-16/32 byte-order mark; UTF-16/32 without one (NUL bytes
    laid out as such, which charset-normalizer recognises); UTF-8; then a
    legacy encoding (:func:`_legacy_codec`).

    Raises:
        LoaderError: binary content (NUL bytes or many control characters), or
            an encoding not recognised (random bytes, say).
    """
    codec = _reject_binary(head)
    if codec is not None:
        return codec
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at 64 KB is fine
        return "utf-8-sig"
    except UnicodeDecodeError:
        return _legacy_codec(head)


def _legacy_codec(head: bytes) -> str:
    """cp1252 or latin-1 for Western text, else what charset-normalizer finds (Shift-JIS, GB18030, cp1251...).

    Western first because charset-normalizer cannot tell the Latin code pages
    apart (it reads French cp1252 as cp1250, è as č) nor place a short line:
    text whose non-ASCII characters stand alone between ASCII ones (café,
    Straße) is Western; Japanese, Cyrillic and random bytes come in runs.

    Raises:
        LoaderError: neither Western nor any encoding charset-normalizer recognises.
    """
    from charset_normalizer import from_bytes

    try:
        western, text = "cp1252", head.decode("cp1252")
    except UnicodeDecodeError:  # one of the five bytes cp1252 leaves undefined: latin-1 maps every byte
        western, text = "latin-1", head.decode("latin-1")
    if _looks_western(text):
        return western
    cut = head.rfind(b"\n")  # end the sample on a line: a multi-byte character cut in two fails every codec
    best = from_bytes(head[: cut + 1] if cut > 0 else head, cp_exclusion=_UNICODE).best()
    if best is None:
        raise LoaderError("encoding not recognised (not UTF-8, nor a legacy encoding); save the file as UTF-8 to index it")
    return best.encoding


def _looks_western(text: str) -> bool:
    """Few of the non-ASCII characters sit in runs of three or more."""
    high = len(_NON_ASCII.findall(text))
    return sum(len(run) for run in _NON_ASCII_RUN.findall(text)) <= 0.1 * high


def _reject_binary(head: bytes) -> str | None:
    """Refuse binary content; returns the codec of a UTF-16/32 file (it holds NULs), else None."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if b"\x00" in head:
        codec = _unmarked_unicode(head)
        if codec is None:
            raise LoaderError("binary content (NUL bytes), not text")
        return codec
    if head and len(_CONTROL.findall(head.decode("latin-1"))) > 0.05 * len(head):
        raise LoaderError("binary content (control characters), not text")
    return None


def _unmarked_unicode(head: bytes) -> str | None:
    """UTF-16 or UTF-32 without a byte-order mark, as charset-normalizer finds it; None for binary.

    Its guess is checked: it calls a few bytes of garbage UTF-16, while real
    UTF-16 has its NUL bytes in the high byte of each pair (``H\\x00i\\x00``
    in little-endian), not in the low one, and decodes to no control characters.
    """
    from charset_normalizer import from_bytes

    best = from_bytes(head[: len(head) // 2 * 2], cp_isolation=_UNICODE).best()
    if best is None or best.encoding not in _UNICODE:
        return None
    if best.encoding.startswith("utf_16"):
        high, low = (head[1::2], head[0::2]) if best.encoding == "utf_16_le" else (head[0::2], head[1::2])
        if low.count(0) >= high.count(0):
            return None
    text = str(best)
    return None if len(_CONTROL.findall(text)) > 0.05 * len(text) else best.encoding


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
            heads.append(_Heading(starts[i], starts[i + 1], len(m.group(1)), (m.group(2) or "").strip()))
            continue
        m = _SETEXT.match(line) if setext and i > first else None
        prev = lines[i - 1].strip() if i > 0 else ""
        if m and prev and not _NOT_SETEXT_TEXT.match(prev) and not (heads and heads[-1].body > starts[i - 1]):
            heads.append(_Heading(starts[i - 1], starts[i + 1], 1 if m.group(1)[0] == "=" else 2, prev))
    return heads


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


def _markdown_sections(text: str, setext: bool) -> list[Section]:
    return _split_at_headings(text, _find_headings(text, setext))


def _html_to_text(data: bytes) -> str:
    """Visible text of an HTML page, with ``#``-headings so it can be cut like Markdown."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")  # bytes: bs4 sniffs the charset (meta tag, BOM, then guesses)
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    lines = [" ".join(line.replace("\xa0", " ").split()).removesuffix(" |") for line in _html_text(soup).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if title and not re.search(r"^# ", text, re.MULTILINE):
        text = f"# {title}\n\n{text}"  # the page title heads the page when it has no <h1>
    return text


def _html_text(root: Any) -> str:
    """The tree's visible text: blocks on their own lines, ``#``-headings, ``- `` list items, ``|`` after cells.

    One walk with an explicit stack, linear in the size of the tree and safe at
    any depth. (Editing the tree in place, bs4's ``insert_before`` and
    ``replace_with``, costs time proportional to its depth per edit: 100,000
    nested divs took 339 s.)
    """
    from bs4 import CData, NavigableString, Tag

    texts = (NavigableString, CData)  # what get_text returns: no comments, doctypes, processing instructions
    out: list[str] = []
    stack: list[Any] = [root]  # nodes to visit, and plain str marks to write once a tag's children are done
    while stack:
        node = stack.pop()
        if type(node) is str:
            out.append(node)
        elif not isinstance(node, Tag):
            if type(node) in texts:
                out.append(node)
        elif node.name in _HTML_SKIP:
            continue
        elif node.name in _HTML_HEADINGS:
            words = " ".join(" ".join(_html_strings(node, texts)).split())
            out.append(f"\n\n{'#' * _HTML_HEADINGS[node.name]} {words}\n\n" if words else "\n")
        elif node.name == "br":
            out.append("\n")
        else:
            mark = "\n\n" if node.name == "p" else "\n" if node.name in _HTML_BLOCKS else ""
            out.append("\n- " if node.name == "li" else mark)
            stack.append(" | " if node.name in ("td", "th") else mark)
            stack.extend(reversed(node.contents))
    return "".join(out)


def _html_strings(root: Any, texts: tuple[type, ...]) -> list[str]:
    """The visible strings under ``root`` (dropped elements left out), in order; iterative like :func:`_html_text`."""
    from bs4 import Tag

    found: list[str] = []
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Tag):
            if node.name not in _HTML_SKIP:
                stack.extend(reversed(node.contents))
        elif type(node) in texts:
            found.append(node)
    return found


def _load_pdf(path: Path, data: bytes) -> list[Section]:
    if b"%PDF" not in data[:1024]:
        raise LoaderError("not a PDF (no %PDF header); corrupt or misnamed file")
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError("encrypted PDF; save an unprotected copy to index it")
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except Exception as err:  # pypdf raises many types on damaged files; any of them means "unreadable"
        raise LoaderError(f"corrupt or unreadable PDF ({type(err).__name__}: {err})") from None
    texts = [raw.replace("\r\n", "\n").replace("\r", "\n").strip() for raw in pages]
    sections = _joined([Section(text, page=number) for number, text in enumerate(texts, start=1) if text])
    if not sections and pages:
        raise LoaderError(f"no extractable text in {len(pages)} page(s); a scanned PDF needs OCR first")
    return sections


def _load_docx(path: Path) -> list[Section]:
    try:
        import docx
        from docx.table import Table

        document = docx.Document(str(path))
        blocks: list[tuple[int | None, str]] = []  # (heading level or None, text)
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                rows = [" | ".join(" ".join(c.text.split()) for c in row.cells) for row in item.rows]
                text, level = "\n".join(r for r in rows if r.strip(" |")), None
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


#: A cell that is a plain number: sign, currency, thousands separators, decimal point or comma, exponent,
#: then a percent, currency, currency code, unit of temperature or k/M/bn (``25,5 %``, ``2,50 €``, ``5 USD``).
_NUMBER = re.compile(
    r"[-+−(]?[$€£¥]?[-+−]? ?(?:\d{1,3}(?:[,. ]?\d{3})*(?:[.,]\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
    r" ?(?:%|[$€£¥]|[A-Z]{3}|°[CF]|[kMB]|bn)?\)?"
)


def _is_header(row: Sequence[str]) -> bool:
    """Does the first non-empty row name the columns?

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
    header = numbered[0][1] if _is_header(numbered[0][1]) else []
    if header and len(numbered) == 1:  # a header alone still says what the file is about
        return [Section(" | ".join(h for h in header if h), 0)]
    width = max(len(row) for _, row in numbered)
    names = [header[i] if i < len(header) and header[i] else f"column {i + 1}" for i in range(width)]
    data = numbered[1:] if header else numbered
    rows_as_text = ((n, " | ".join(f"{names[i]}: {v}" for i, v in enumerate(row) if v)) for n, row in data)
    return _joined([Section(text, heading=f"row {n}") for n, text in rows_as_text])


def _check_quotes_close(text: str, delimiter: str, n_records: int) -> None:
    """Refuse a quote left open: the lenient reader would fold every later row into that one cell, unseen.

    A line appended after an open quote lands in the open cell (no new record); after a closed one it is a row.
    (csv's strict mode stops at the first complaint, often harmless text after a closing quote, and misses this.)
    """
    if len(list(csv.reader(io.StringIO(text + "\nx"), delimiter=delimiter))) == n_records:
        raise LoaderError(f"row {n_records}: a quoted cell never closes, so every row after it would be lost; "
                          'close or remove the stray " and ingest again')


def _load_pptx(path: Path) -> list[Section]:
    try:
        from pptx import Presentation

        slides = []
        for number, slide in enumerate(Presentation(str(path)).slides, start=1):
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
    if shape.has_table:
        rows = [" | ".join(" ".join(c.text.split()) for c in row.cells) for row in shape.table.rows]
        return [r for r in rows if r.strip(" |")]
    if shape.has_text_frame:
        return [t for t in (" ".join(p.text.split()) for p in shape.text_frame.paragraphs) if t]
    return []

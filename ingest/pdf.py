"""PDF -> the text of each page, reading like the document (issue #20).

pypdf extracts what the page draws, which is not always what a reader sees:

- typeset words broken at a line end (``informa-`` / ``tion``), ligature
  glyphs (``ﬁ``, ``ﬂ``) that no question contains, and exports that place
  every word on a line of its own. :func:`clean_page_text` undoes these, so
  a question's words match the chunk's;
- limits against hostile files. pypdf stops a content stream after a fixed
  number of tokens; a page with a detailed vector chart reaches it long
  before any of its byte limits, so real
  filings failed whole. ``PDF_LIMITS`` raises that count to a bound that
  still refuses a hostile stream; a file past it and one past pypdf's
  unchanged byte limits (a decompression bomb) stop with one line;
- encryption. A PDF encrypted with an empty user password (AES, as many
  filings are: they restrict printing or copying, not opening) opens with
  ``cryptography`` (``pypdf[crypto]``); one that needs a password is refused
  by name.

A PDF whose pages hold no text layer (a scan) is refused as such: rag_app
has no OCR, so the message says to make a searchable copy first.
"""

from __future__ import annotations

import io
import re
import unicodedata

from rag_app.errors import LoaderError

__all__ = ["PDF_LIMITS", "clean_page_text", "page_texts"]

#: pypdf ``Configuration`` fields overridden while a PDF is read. pypdf's budget of 2,000,000 tokens per
#: content stream is the limit a real page reaches first: a one-page vector chart in a filing of a megabyte or
#: two has more, and is still far under pypdf's byte limits (75 MB a stream), which stay as they are. Raised
#: 2.5 times: a page past it costs tens of seconds and under a GB of parsed operands before it is refused.
PDF_LIMITS = {"stream_parsing_work_maximum_count": 5_000_000}

ENCRYPTED = "encrypted: needs a password; save an unprotected copy (or one with an empty password) to index it"
SCANNED = "scanned, no text (OCR not installed): {} page(s) without a text layer; make a searchable copy (ocrmypdf) and ingest that"

_LIGATURES = re.compile("[\ufb00-\ufb06]")  # ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ: NFKC spells each out; nothing else is touched
# A word broken at a line end: letter, hyphen (or soft hyphen), newline, letter or digit on the next line.
_BROKEN = re.compile(r"([^\W\d_])([-\u2010\u00ad])[ \t]*\n[ \t]*(?=\w)")
_WORD_BEFORE = re.compile(r"\S*\Z")  # the rest of the broken word, looked for in the 64 characters before
_WORD_AFTER = re.compile(r"[^\W_]*")
_LETTERS_END = re.compile(r"[^\W\d_]*\Z")  # the letters that end the broken word, without ( or " before them
_WORD_RUN = 3  # this many single-word lines in a row are one line broken up, not a list


def page_texts(data: bytes) -> list[tuple[int, str]]:
    """The cleaned text of each page that has some, with its 1-based page number.

    Raises:
        LoaderError: not a PDF, corrupt, over a safety limit, encrypted with a password,
            or no page has text (a scan).
    """
    if b"%PDF" not in data[:1024]:
        raise LoaderError("not a PDF (no %PDF header); corrupt or misnamed file")
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import DependencyError, LimitReachedError

    try:
        with apply_configuration(**PDF_LIMITS):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise LoaderError(ENCRYPTED)
            pages = [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except DependencyError as err:  # AES without cryptography: an install, not a broken file
        raise LoaderError(f"encrypted PDF that pypdf cannot open ({err}); pip install 'pypdf[crypto]'") from None
    except LimitReachedError as err:
        raise LoaderError(f"over the PDF reader's safety limits ({err}); a decompression bomb, "
                          "or a page too large to read: print it to a new PDF to index it") from None
    except Exception as err:  # pypdf raises many types on damaged files; any of them means "unreadable"
        raise LoaderError(f"corrupt or unreadable PDF ({type(err).__name__}: {err})") from None
    texts = [(number, clean_page_text(raw)) for number, raw in enumerate(pages, start=1)]
    texts = [(number, text) for number, text in texts if text]
    if not texts and pages:
        raise LoaderError(SCANNED.format(len(pages)))
    return texts


def clean_page_text(text: str) -> str:
    """One page's extracted text as it reads: ligatures spelt out, broken words and lines joined.

    - ``ﬁ ﬂ ﬀ ﬃ ﬄ`` become ``fi fl ff ffi ffl`` (and only those: other
      compatibility characters, ``½`` or ``²``, keep their meaning);
    - a word hyphenated at a line end is joined: ``informa-`` + ``tion`` ->
      ``information``, and in capitals ``OP-`` + ``TIONAL`` -> ``OPTIONAL``.
      The hyphen stays where it is part of the word: a compound already
      hyphenated (``state-of-the-`` + ``art``), a change of case or a digit
      after it (``Non-`` + ``GAAP``, ``X-`` + ``Ray``, ``COVID-`` + ``19``),
      one capital before it (``X-`` + ``RAY``: hyphenation leaves at least two
      letters on the line), or a hyphenated form the page also writes within a
      line, in any case (``well-known``; ``Non-GAAP`` keeps ``NON-`` + ``GAAP``);
    - a run of lines that hold one word each (an export that placed every
      word on its own) becomes one line.

    Blank lines, and so paragraphs, are kept; the result is stripped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _LIGATURES.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    inline = {w.casefold() for w in re.findall(r"\b[^\W\d_]+-[^\W\d_]+\b", text)}  # hyphenated within a line
    text = _BROKEN.sub(lambda m: _join_broken(m, inline, text), text)
    return _join_word_runs(text).strip()


def _join_broken(m: re.Match[str], inline: set[str], text: str) -> str:
    """The hyphenated word at a line end, joined to its rest on the next line (hyphen kept or not)."""
    last, hyphen = m.group(1), m.group(2)
    if hyphen == "\u00ad":  # a soft hyphen marks where a word may break: never part of it
        return last
    word = _WORD_BEFORE.search(text, max(0, m.start() - 64), m.start()).group() + last  # type: ignore[union-attr]
    tail = _WORD_AFTER.match(text, m.end()).group()  # type: ignore[union-attr]
    stem = _LETTERS_END.search(word).group()  # type: ignore[union-attr]
    lower = last.islower() and tail[:1].islower()
    caps = len(stem) > 1 and stem.isupper() and tail.isalpha() and tail.isupper()
    keep = "-" in word or not (lower or caps) or f"{word}-{tail}".casefold() in inline
    return last + ("-" if keep else "")


def _join_word_runs(text: str) -> str:
    """Join each run of at least ``_WORD_RUN`` lines that hold a single word each into one line."""
    lines = text.split("\n")
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        word = line.strip()
        if word and len(word.split()) == 1:
            run.append(word)
            continue
        if len(run) >= _WORD_RUN:
            out.append(" ".join(run))
        else:
            out.extend(run)
        run = []
        out.append(line)
    return "\n".join(out[:-1])

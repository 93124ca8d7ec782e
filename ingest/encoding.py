"""Text or binary, and in which encoding: what :mod:`ingest.loaders` asks of a text file's first bytes.

Kept apart from the loaders because it is a question of its own, answered
from the first :data:`SNIFF` bytes of a file before the rest is read, with
heuristics (byte-order marks, where NUL bytes sit, runs of non-ASCII
characters, charset-normalizer) that are tested on their own; the loaders
only parse the text it decodes.

:func:`sniff_encoding` runs the detection once per file; :func:`decode_text`
takes the codec it found, so charset-normalizer (tens of milliseconds on
64 KB) never runs twice on the same bytes.
"""

from __future__ import annotations

import codecs
import re

from rag_app.errors import LoaderError

__all__ = ["SNIFF", "decode_text", "sniff_encoding", "wide_codec"]

SNIFF = 65536  # bytes read to tell text from binary and find the encoding
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{3,}")
# UTF-32 first: its LE mark starts like UTF-16's. (A UTF-8 mark is read by the utf-8-sig codec.)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_UNICODE = ["utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be"]


def decode_text(data: bytes, codec: str | None = None) -> str:
    """Bytes of a text file -> str, in ``codec`` (default: what :func:`sniff_encoding` finds in its first 64 KB).

    Valid UTF-8 is decided on the whole file; the other encodings on its first
    64 KB, and bytes after them that do not fit become U+FFFD. Newlines are
    normalised to ``\\n``.

    Raises:
        LoaderError: the bytes are binary, or in no encoding recognised.
    """
    if codec is None:
        codec = sniff_encoding(data[:SNIFF])
    text = None
    if codec == "utf-8-sig":
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:  # UTF-8 in its first 64 KB only: a legacy encoding after all
            codec = _legacy_codec(data[:SNIFF])
    if text is None:
        text = data.decode(codec, errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def sniff_encoding(head: bytes) -> str:
    """The codec of a text file from its first bytes.

    In order: a UTF-16/32 byte-order mark; UTF-16/32 without one (NUL bytes
    laid out as such, which charset-normalizer recognises); UTF-8; then a
    legacy encoding (:func:`_legacy_codec`).

    Raises:
        LoaderError: binary content (NUL bytes or many control characters), or
            an encoding not recognised (random bytes, say).
    """
    codec = wide_codec(head)
    if codec is not None:
        return codec
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at 64 KB is fine
        return "utf-8-sig"
    except UnicodeDecodeError:
        return _legacy_codec(head)


def wide_codec(head: bytes) -> str | None:
    """The UTF-16/32 codec of text stored in one, else None; binary content is refused on the way.

    UTF-16/32 is told by a byte-order mark, or by NUL bytes laid out as such
    (:func:`_unmarked_unicode`). Any other NUL byte, or more than 5% control
    characters, means binary. HTML needs only this much (bs4 finds its
    charset); other text goes on to :func:`sniff_encoding`.

    Raises:
        LoaderError: binary content (NUL bytes or control characters).
    """
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

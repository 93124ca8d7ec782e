"""Chunking: sections -> :class:`~rag_app.store.Chunk` objects with exact spans.

LangChain's ``RecursiveCharacterTextSplitter`` cuts each section at the
coarsest separator that fits (blank line, line, sentence end, clause, word),
so a chunk is a run of whole paragraphs or sentences where it can be. Sizes
count characters, or tokens of the embedding model's own tokenizer
(``chunk_unit = "tokens"``), which is what bounds what the embedder sees:
MiniLM truncates at 256 tokens, so a chunk longer than that is only partly
embedded.

Sections are chunked separately, so a chunk never straddles a Markdown
heading or a PDF page, and carries that heading or page. Each chunk's
``start``/``end`` index the file's loaded text (the page's text for a PDF),
so ``loaded[start:end] == chunk.text`` exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from rag_app.config import IngestConfig
from rag_app.errors import ConfigError
from rag_app.store import Chunk, chunk_id

from ingest.loaders import Section

log = logging.getLogger(__name__)

# Coarsest first. Keeping the separator at the *end* of the left piece keeps
# sentences whole ("... end. " | "Next ...") instead of starting chunks with ". ".
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


def make_splitter(config: IngestConfig, tokenizer: Any = None) -> Any:
    """The text splitter for ``config``; build it once per ingest and reuse it.

    Args:
        config: chunk size, overlap and unit.
        tokenizer: a Hugging Face tokenizer, required when ``config.chunk_unit == "tokens"``.

    Raises:
        ConfigError: token-sized chunks were asked for without a tokenizer.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    kwargs = {
        "chunk_size": config.chunk_size,
        "chunk_overlap": config.chunk_overlap,
        "separators": SEPARATORS,
        "keep_separator": "end",
        "strip_whitespace": True,
    }
    if config.chunk_unit == "tokens":
        if tokenizer is None:
            raise ConfigError(
                "ingest.chunk_unit = 'tokens' needs the embedding model's tokenizer, and this embedder has none; "
                "use chunk_unit = 'chars'"
            )
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tokenizer, **kwargs)
    return RecursiveCharacterTextSplitter(**kwargs)


def chunk(
    sections: Sequence[Section],
    source: str,
    config: IngestConfig,
    tokenizer: Any = None,
    splitter: Any = None,
) -> list[Chunk]:
    """Cut one file's sections into chunks.

    Args:
        sections: what :func:`ingest.loaders.load` returned for the file.
        source: the file's path relative to the ingested folder (POSIX); stored and hashed into ids.
        config: chunking settings; their signature is hashed into the chunk ids, so changing
            them gives new ids.
        tokenizer: Hugging Face tokenizer for ``chunk_unit = "tokens"``.
        splitter: a splitter from :func:`make_splitter`, to avoid rebuilding it per file.

    Returns:
        Chunks in file order, ``ordinal`` 0..n-1, ids unique within the file.
    """
    splitter = splitter or make_splitter(config, tokenizer)
    signature = config.chunking_signature()
    doc_id = PurePosixPath(source).stem
    chunks: list[Chunk] = []
    for section in sections:
        spans = _merge_small(section.text, _spans(section.text, splitter.split_text(section.text)), config.chunk_size // 4)
        for local, piece in spans:
            # The id uses the position in the whole file, so identical text on two
            # PDF pages (a repeated header) still gets two ids.
            global_start = section.offset + local
            start = local if section.page is not None else global_start
            chunks.append(
                Chunk(
                    id=chunk_id(source, piece, global_start, signature),
                    text=piece,
                    source=source,
                    doc_id=doc_id,
                    ordinal=len(chunks),
                    page=section.page,
                    heading=section.heading,
                    start=start,
                    end=start + len(piece),
                )
            )
    return chunks


def _spans(text: str, pieces: Sequence[str]) -> list[tuple[int, str]]:
    """Where each split piece sits in ``text``.

    The recursive splitter emits contiguous, stripped substrings in order, so
    each piece is found at or after the previous piece's start (overlap makes
    it begin before the previous end).
    """
    out: list[tuple[int, str]] = []
    cursor = 0
    for piece in pieces:
        if not piece:
            continue
        at = text.find(piece, cursor)
        if at < 0:  # not expected from the recursive splitter; never store a wrong span
            at = text.find(piece)
            if at < 0:
                raise ValueError(f"chunk not found in its section: {piece[:60]!r}")
            log.warning("chunk located out of order at %d", at)
        out.append((at, piece))
        cursor = at + 1
    return out


def _merge_small(text: str, spans: list[tuple[int, str]], min_chars: int) -> list[tuple[int, str]]:
    """Fold a piece shorter than ``min_chars`` into its neighbour.

    The splitter cuts at the first line break when a title plus its paragraph
    exceed the chunk size, leaving a chunk that is only the title ("Nikola
    Tesla"). Such a chunk matches every question about its topic, takes a
    source slot and answers nothing; joined to the paragraph after it (or
    before it, at the end of a section) it labels that paragraph instead. The
    merged chunk may exceed the size by at most ``min_chars``.
    """
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for start, piece in spans:
        if pending is not None:
            start, piece = pending[0], text[pending[0] : start + len(piece)]
            pending = None
        if len(piece) < min_chars:
            pending = (start, piece)
            continue
        out.append((start, piece))
    if pending is not None:
        if out:
            prev_start, _ = out.pop()
            out.append((prev_start, text[prev_start : pending[0] + len(pending[1])]))
        else:
            out.append(pending)
    return out

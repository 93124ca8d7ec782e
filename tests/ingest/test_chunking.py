"""Chunking: sizes, overlap, exact spans back into the loaded text, stable ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import chunk, make_splitter
from ingest.loaders import Section, decode_text, load
from rag_app.config import IngestConfig
from rag_app.errors import ConfigError

SENTENCES = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)]
TEXT = "Title line\n\n" + "\n\n".join(" ".join(SENTENCES[i : i + 4]) for i in range(0, 60, 4))


def test_chunks_are_exact_spans_of_the_loaded_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n  " + TEXT + "\n", encoding="utf-8")
    loaded = decode_text(path.read_bytes())
    config = IngestConfig(chunk_size=200, chunk_overlap=40)
    chunks = chunk(load(path), "sub/notes.txt", config)
    assert len(chunks) > 5
    for i, c in enumerate(chunks):
        assert loaded[c.start : c.end] == c.text
        assert len(c.text) <= 200
        assert c.ordinal == i and c.source == "sub/notes.txt" and c.doc_id == "notes"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    assert "".join(c.text for c in chunks).count("Sentence number 59") >= 1


def test_neighbouring_chunks_overlap_and_keep_sentences_whole() -> None:
    text = " ".join(SENTENCES)  # one long paragraph: only sentence and word boundaries to cut at
    chunks = chunk([Section(text)], "a.txt", IngestConfig(chunk_size=300, chunk_overlap=100))
    assert any(nxt.start < prev.end for prev, nxt in zip(chunks, chunks[1:]))  # overlap
    assert all(c.text.endswith(".") for c in chunks[:-1])  # cut after ". ", not mid-sentence


def test_ids_are_deterministic_unique_and_depend_on_settings() -> None:
    sections = [Section(TEXT)]
    a = chunk(sections, "a.txt", IngestConfig(chunk_size=200, chunk_overlap=40))
    b = chunk(sections, "a.txt", IngestConfig(chunk_size=200, chunk_overlap=40))
    c = chunk(sections, "a.txt", IngestConfig(chunk_size=300, chunk_overlap=40))
    other_file = chunk(sections, "b.txt", IngestConfig(chunk_size=200, chunk_overlap=40))
    assert [x.id for x in a] == [x.id for x in b]
    assert len({x.id for x in a}) == len(a)
    assert not {x.id for x in a} & {x.id for x in c}
    assert not {x.id for x in a} & {x.id for x in other_file}
    assert all(0 <= x.id < 2**63 for x in a)


def test_headings_are_carried_and_chunks_never_cross_them(tmp_path: Path) -> None:
    text = "# Setup\n\n" + " ".join(SENTENCES[:10]) + "\n\n## Linux\n\nUse apt to install it.\n"
    (tmp_path / "g.md").write_text(text, encoding="utf-8")
    chunks = chunk(load(tmp_path / "g.md"), "g.md", IngestConfig(chunk_size=200, chunk_overlap=20))
    assert {c.heading for c in chunks} == {"Setup", "Setup > Linux"}
    assert chunks[-1].heading == "Setup > Linux" and chunks[-1].text == "## Linux\n\nUse apt to install it."
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert not (c.heading == "Setup" and "Linux" in c.text)


def test_pdf_chunks_keep_page_and_page_relative_spans(tmp_path: Path, make_pdf) -> None:
    header = "ACME annual report"  # the same text at the same place on every page
    path = make_pdf(tmp_path / "r.pdf", [header, header, f"{header}\nRevenue was 42 million."])
    sections = load(path)
    chunks = chunk(sections, "r.pdf", IngestConfig(chunk_size=200, chunk_overlap=20))
    assert [c.page for c in chunks] == [1, 2, 3]
    assert len({c.id for c in chunks}) == 3  # identical text on two pages still gets two ids
    for c, s in zip(chunks, sections):
        assert s.text[c.start : c.end] == c.text


def test_token_sized_chunks_fit_the_embedding_model() -> None:
    from transformers import AutoTokenizer

    from rag_app.embeddings import bundled_minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    config = IngestConfig(chunk_size=64, chunk_overlap=8, chunk_unit="tokens")
    chunks = chunk([Section(TEXT)], "a.txt", config, tokenizer=tokenizer)
    assert len(chunks) > 3
    for c in chunks:
        assert len(tokenizer.tokenize(c.text)) <= 64
        assert TEXT[c.start : c.end] == c.text
    assert max(len(c.text) for c in chunks) > 64  # tokens, not characters


def test_token_unit_without_tokenizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="chunk_unit = 'chars'"):
        make_splitter(IngestConfig(chunk_unit="tokens"))


def test_a_title_line_is_not_a_chunk_of_its_own():
    """A short title before a paragraph that fills the chunk joins that paragraph."""
    from ingest.chunking import chunk as chunk_sections
    from ingest.loaders import Section
    from rag_app.config import IngestConfig

    text = "Nikola Tesla\n" + " ".join(["Tesla worked on alternating current systems."] * 16)
    chunks = chunk_sections([Section(text=text)], "tesla.txt", IngestConfig(chunk_size=800, chunk_overlap=0))
    assert all(len(c.text) >= 200 for c in chunks)
    assert chunks[0].text.startswith("Nikola Tesla\nTesla worked")
    assert all(text[c.start : c.end] == c.text for c in chunks)

"""Ingest over the real-shaped filings corpus (issue #20): what each file gives, and re-ingest after the change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from filings import build_filings
from ingest.pipeline import ingest_folder
from rag_app.config import load_settings
from rag_app.store import IndexStore


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(index=tmp_path / "index", ingest={"chunk_size": 400, "chunk_overlap": 40})


def _texts(index: Path) -> dict[str, list[tuple[int | None, str]]]:
    with IndexStore.open(index) as store:
        out: dict[str, list[tuple[int | None, str]]] = {}
        for c in store.iter_chunks():
            out.setdefault(c.source, []).append((c.page, c.text))
        return out


def test_each_filing_is_indexed_as_it_reads_or_refused_by_name(tmp_path: Path, settings, fake_embedder) -> None:
    expected = build_filings(tmp_path / "docs")
    report = ingest_folder(tmp_path / "docs", settings, embedder=fake_embedder)
    texts = _texts(settings.index)
    failed = dict(report.failed)
    for filing in expected:
        if filing.fails:
            assert filing.source not in texts and re.match(filing.fails, failed[filing.source]), filing
            assert "\n" not in failed[filing.source]
        else:
            joined = " ".join(" ".join(text.split()) for _, text in texts[filing.source])
            assert filing.reads in joined, (filing.source, joined)
    assert sorted(failed) == sorted(f.source for f in expected if f.fails)
    pages = [page for page, text in texts["msft-10q.pdf"] if "efficiency" in text]
    assert pages == [2]  # the chunk still says which page it came from
    again = ingest_folder(tmp_path / "docs", settings, embedder=fake_embedder)
    assert not again.committed and sorted(again.unchanged) == sorted(texts)  # unchanged files: a no-op


def test_an_index_built_by_the_old_readers_rereads_pdf_and_table_files_once(tmp_path: Path, settings, fake_embedder,
                                                                             monkeypatch) -> None:
    docs = tmp_path / "docs"
    build_filings(docs)
    (docs / "notes.txt").write_text("Plain notes are read as before.", encoding="utf-8")
    (docs / "t.csv").write_text("k,v\nx,1\n", encoding="utf-8")
    monkeypatch.setattr("ingest.loaders.READER_VERSIONS", {"csv": 2})  # as before issue #20
    ingest_folder(docs, settings, embedder=fake_embedder)
    monkeypatch.undo()
    report = ingest_folder(docs, settings, embedder=fake_embedder)
    assert sorted(report.unchanged) == ["notes.txt", "t.csv"]
    assert sorted(report.updated) == ["aes-10k.pdf", "msft-10q-export.pdf", "msft-10q.pdf", "segments.docx",
                                      "segments.html", "segments.md"]
    assert not ingest_folder(docs, settings, embedder=fake_embedder).committed  # once, not on every run

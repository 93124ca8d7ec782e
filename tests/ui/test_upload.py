"""Browser uploads -> the indexed folder -> ingest, with rollback of what cannot be read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_app.errors import IndexLockedError, IngestError
from rag_app.store import IndexStore, IndexWriter, Manifest
from ui.upload import ingest_uploads, supported_extensions, upload_folder

NOTE = b"# Oxygen\n\nOxygen was discovered by Carl Wilhelm Scheele and Joseph Priestley."


def test_supported_extensions_match_the_loaders():
    assert {"txt", "md", "html", "pdf", "docx"} <= set(supported_extensions())


def test_upload_is_saved_into_the_indexed_folder_and_indexed(built_index, docs_dir: Path, fake_embedder):
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)

    assert result.folder == docs_dir.resolve()
    assert result.saved == ["oxygen.md"] and not result.rolled_back
    assert result.report.added == ["oxygen.md"]
    assert (docs_dir / "oxygen.md").read_bytes() == NOTE
    with IndexStore.open(built_index.index) as store:
        assert set(store.files()) == {"france.txt", "rivers.md", "space.txt", "oxygen.md"}
        assert "Scheele" in " ".join(c.text for c in store.iter_chunks("oxygen.md"))


def test_first_upload_creates_the_index_beside_it(ui_settings, fake_embedder):
    result = ingest_uploads([("C:\\Users\\me\\notes.txt", b"Rivers flow into the sea.")], ui_settings, fake_embedder)

    assert result.folder == ui_settings.index.parent / "uploads"
    assert result.saved == ["notes.txt"]  # a browser's path is reduced to the file name
    with IndexStore.open(ui_settings.index) as store:
        assert list(store.files()) == ["notes.txt"]


def test_unsupported_and_hidden_files_are_rejected_not_saved(built_index, docs_dir: Path, fake_embedder):
    result = ingest_uploads([("tool.exe", b"MZ"), (".env", b"SECRET=1"), ("ok.txt", b"fine text"),
                             ("../../evil name.txt", b"volcanoes")], built_index, fake_embedder)

    assert [name for name, _ in result.rejected] == ["tool.exe", ".env"]
    assert "unsupported type" in result.rejected[0][1]
    assert result.saved == ["ok.txt", "evil name.txt"]  # a path never escapes the folder
    assert not (docs_dir / "tool.exe").exists() and not (docs_dir / ".env").exists()
    assert (docs_dir / "evil name.txt").is_file() and not (docs_dir.parent.parent / "evil name.txt").exists()


def test_unreadable_upload_is_rolled_back_and_the_old_version_kept(built_index, docs_dir: Path, fake_embedder):
    before = (docs_dir / "france.txt").read_bytes()
    broken_docx = b"PK\x03\x04 not a real docx"
    binary = b"MZ\x90\x00\x03\x00" * 40  # an executable renamed .txt: NUL bytes, not text
    result = ingest_uploads([("broken.docx", broken_docx), ("france.txt", binary)], built_index, fake_embedder)

    assert {source for source, _ in result.report.failed} == {"broken.docx", "france.txt"}
    assert sorted(result.rolled_back) == ["broken.docx", "france.txt"]
    assert not (docs_dir / "broken.docx").exists()
    assert (docs_dir / "france.txt").read_bytes() == before  # the readable version is back on disk...
    with IndexStore.open(built_index.index) as store:
        assert "broken.docx" not in store.files()
        assert "Paris" in " ".join(c.text for c in store.iter_chunks("france.txt"))  # ...and still indexed


def test_locked_index_rolls_back_every_file(built_index, docs_dir: Path, fake_embedder):
    manifest = Manifest(embedding_model="fake-embedder", dim=64, chunking=built_index.ingest.chunking_signature())
    with IndexWriter(built_index.index, manifest):  # another writer holds the lock
        with pytest.raises(IndexLockedError):
            ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    assert not (docs_dir / "oxygen.md").exists()
    with IndexStore.open(built_index.index) as store:
        assert "oxygen.md" not in store.files()


def test_missing_source_folder_is_refused_instead_of_emptying_the_index(built_index, docs_dir: Path, fake_embedder):
    shutil.rmtree(docs_dir)
    with pytest.raises(IngestError, match="no longer exists"):
        upload_folder(built_index)
    with pytest.raises(IngestError, match="no longer exists"):
        ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    with IndexStore.open(built_index.index) as store:
        assert len(store.files()) == 3

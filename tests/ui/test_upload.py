"""Browser uploads -> the indexed folder -> ingest, with rollback of what cannot be read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_app.errors import IndexLockedError, IngestError
from rag_app.store import IndexStore, IndexWriter, Manifest
from ui.upload import ingest_uploads, supported_extensions, upload_folder

DOCS = ["france.txt", "rivers.md", "space.txt"]  # what the built_index fixture holds
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


def test_unreadable_upload_is_rolled_back_and_the_original_kept(built_index, docs_dir: Path, fake_embedder):
    before = (docs_dir / "france.txt").read_bytes()
    broken_docx = b"PK\x03\x04 not a real docx"
    binary = b"MZ\x90\x00\x03\x00" * 40  # an executable renamed .txt: NUL bytes, not text
    result = ingest_uploads([("broken.docx", broken_docx), ("france.txt", binary)], built_index, fake_embedder)

    assert result.renamed == [("france.txt", "france (2).txt")]  # never over the user's own france.txt
    assert {source for source, _ in result.report.failed} == {"broken.docx", "france (2).txt"}
    assert sorted(result.rolled_back) == ["broken.docx", "france (2).txt"]
    assert not (docs_dir / "broken.docx").exists() and not (docs_dir / "france (2).txt").exists()
    assert (docs_dir / "france.txt").read_bytes() == before
    with IndexStore.open(built_index.index) as store:
        assert set(store.files()) == set(DOCS)
        assert "Paris" in " ".join(c.text for c in store.iter_chunks("france.txt"))


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


def test_an_upload_looks_at_the_index_once_before_ingest(built_index, docs_dir: Path, fake_embedder, monkeypatch):
    import ingest.pipeline

    opens: list[Path] = []
    at_ingest: list[int] = []
    real_open, real_ingest = IndexStore.open.__func__, ingest.pipeline.ingest_folder

    def counting_open(cls, index_dir, *args, **kwargs):
        opens.append(Path(index_dir))
        return real_open(cls, index_dir, *args, **kwargs)

    def ingest_folder(*args, **kwargs):
        at_ingest.append(len(opens))
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(IndexStore, "open", classmethod(counting_open))
    monkeypatch.setattr(ingest.pipeline, "ingest_folder", ingest_folder)
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    assert result.saved == ["oxygen.md"] and result.report.added == ["oxygen.md"]
    assert at_ingest == [1]  # folder and indexed files from one open; ingest then reads the index itself


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.uploading"))


def test_unsavable_names_are_rejected_in_one_line_and_leave_no_temp_file(built_index, docs_dir: Path, fake_embedder):
    (docs_dir / "notes.md").mkdir()  # a folder holds the name
    long_name = "é" * 126 + ".txt"  # 256 bytes in UTF-8 (130 characters)
    longest = "a" * 251 + ".txt"  # 255 bytes: still a valid name
    result = ingest_uploads([("notes.md", NOTE), ("bad\x00name.txt", b"x"), (long_name, b"long"),
                             (longest, b"The longest name a file may have."), ("ok.txt", b"fine text")],
                            built_index, fake_embedder)

    reasons = dict(result.rejected)
    assert set(reasons) == {"notes.md", "bad\\x00name.txt", long_name}
    assert "has a folder of that name" in reasons["notes.md"]
    assert "NUL byte" in reasons["bad\\x00name.txt"]
    assert "256 bytes long, over the 255" in reasons[long_name]
    assert all("\n" not in why for why in reasons.values())
    assert result.saved == [longest, "ok.txt"]
    assert (docs_dir / "notes.md").is_dir() and _leftovers(docs_dir) == []
    with IndexStore.open(built_index.index) as store:
        assert {longest, "ok.txt"} <= set(store.files())


def test_a_failed_write_is_rejected_and_its_temp_file_removed(built_index, docs_dir: Path, fake_embedder, monkeypatch):
    import errno

    import ui.upload

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ui.upload.os, "fsync", full)
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    monkeypatch.undo()

    assert result.rejected == [("oxygen.md", f"could not be saved in {docs_dir.resolve()}: No space left on device")]
    assert not result.saved and result.report is None
    assert _leftovers(docs_dir) == [] and not (docs_dir / "oxygen.md").exists()


def test_an_upload_never_replaces_a_different_document_of_that_name(built_index, docs_dir: Path, fake_embedder):
    original = (docs_dir / "france.txt").read_bytes()
    lyon = b"Lyon is the third city of France."
    first = ingest_uploads([("france.txt", lyon)], built_index, fake_embedder)
    second = ingest_uploads([("france.txt", b"Marseille is a port in France.")], built_index, fake_embedder)

    assert first.saved == ["france (2).txt"] and first.renamed == [("france.txt", "france (2).txt")]
    assert second.saved == ["france (3).txt"] and second.renamed == [("france.txt", "france (3).txt")]
    assert (docs_dir / "france.txt").read_bytes() == original and (docs_dir / "france (2).txt").read_bytes() == lyon
    with IndexStore.open(built_index.index) as store:
        assert {"france.txt", "france (2).txt", "france (3).txt"} <= set(store.files())
        assert "Paris" in " ".join(c.text for c in store.iter_chunks("france.txt"))


def test_the_same_bytes_again_are_not_duplicated(built_index, docs_dir: Path, fake_embedder):
    ingest_uploads([("france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)  # -> france (2).txt
    again = ingest_uploads([("france.txt", (docs_dir / "france.txt").read_bytes()),
                            ("france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)
    assert again.unchanged == ["france.txt"] and again.saved == [] and again.report is None
    assert [name for name, _ in again.rejected] == ["france.txt"]  # the second of the batch: kept the first
    resend = ingest_uploads([("C:\\tmp\\france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)
    assert resend.unchanged == ["france (2).txt"] and not resend.saved
    assert sorted(p.name for p in docs_dir.iterdir()) == sorted([*DOCS, "france (2).txt"])


def test_the_same_bytes_as_a_file_not_yet_indexed_get_indexed_and_stay(built_index, docs_dir: Path, fake_embedder):
    (docs_dir / "manual.txt").write_bytes(b"Copied here by hand, never ingested.")
    result = ingest_uploads([("manual.txt", b"Copied here by hand, never ingested.")], built_index, fake_embedder)
    assert not result.saved and not result.unchanged and result.report.added == ["manual.txt"]
    assert (docs_dir / "manual.txt").is_file()


BINARY = b"MZ\x90\x00\x03\x00" * 40  # an executable renamed .txt: ingest cannot read it


def test_a_good_upload_stays_when_a_failed_file_elsewhere_has_its_name(built_index, docs_dir: Path, fake_embedder):
    (docs_dir / "old").mkdir()
    (docs_dir / "old" / "report.txt").write_bytes(BINARY)  # the user's own unreadable file, in a subfolder
    result = ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)

    assert "old/report.txt" in {source for source, _ in result.report.failed}
    assert result.saved == ["report.txt"] and result.rolled_back == []  # compared as old/report.txt, not report.txt
    assert (docs_dir / "report.txt").is_file() and (docs_dir / "old" / "report.txt").read_bytes() == BINARY
    with IndexStore.open(built_index.index) as store:
        assert "report.txt" in store.files()


def _race(monkeypatch, path: Path, data: bytes) -> None:
    """Another tab writes ``path`` between this upload's check for a free name and its write."""
    import ui.upload

    real = ui.upload._write_temp

    def write_temp(*args, **kwargs):
        if not path.exists():
            path.write_bytes(data)
        return real(*args, **kwargs)

    monkeypatch.setattr(ui.upload, "_write_temp", write_temp)


def test_an_upload_never_overwrites_a_file_another_tab_saved_meanwhile(built_index, docs_dir: Path, fake_embedder,
                                                                       monkeypatch):
    theirs = b"The other tab's report: costs fell."
    _race(monkeypatch, docs_dir / "report.txt", theirs)
    result = ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)
    monkeypatch.undo()

    assert (docs_dir / "report.txt").read_bytes() == theirs
    assert result.saved == ["report (2).txt"] and result.renamed == [("report.txt", "report (2).txt")]
    assert (docs_dir / "report (2).txt").read_bytes() == b"The quarterly report: sales rose."
    assert _leftovers(docs_dir) == []


def test_without_hard_links_the_name_is_still_taken_exclusively(built_index, docs_dir: Path, fake_embedder,
                                                                monkeypatch):
    import errno

    import ui.upload

    def no_links(*_args):
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT, some network shares

    theirs = b"The other tab's report: costs fell."
    monkeypatch.setattr(ui.upload.os, "link", no_links)
    _race(monkeypatch, docs_dir / "report.txt", theirs)
    result = ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)
    monkeypatch.undo()

    assert (docs_dir / "report.txt").read_bytes() == theirs
    assert result.saved == ["report (2).txt"]
    assert (docs_dir / "report (2).txt").read_bytes() == b"The quarterly report: sales rose."
    assert _leftovers(docs_dir) == []


def test_the_same_bytes_saved_meanwhile_by_another_tab_are_not_duplicated(built_index, docs_dir: Path, fake_embedder,
                                                                          monkeypatch):
    same = b"The quarterly report: sales rose."
    _race(monkeypatch, docs_dir / "report.txt", same)
    result = ingest_uploads([("report.txt", same)], built_index, fake_embedder)
    monkeypatch.undo()

    assert result.saved == [] and (docs_dir / "report.txt").read_bytes() == same
    assert not (docs_dir / "report (2).txt").exists() and _leftovers(docs_dir) == []
    assert result.report.added == ["report.txt"]  # not indexed yet: ingest picks it up


def test_a_locked_index_rolls_back_only_the_files_this_upload_created(built_index, docs_dir: Path, fake_embedder,
                                                                      monkeypatch):
    theirs = b"The other tab's report: costs fell."
    _race(monkeypatch, docs_dir / "report.txt", theirs)
    manifest = Manifest(embedding_model="fake-embedder", dim=64, chunking=built_index.ingest.chunking_signature())
    with IndexWriter(built_index.index, manifest):  # the other tab is ingesting
        with pytest.raises(IndexLockedError):
            ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)
    monkeypatch.undo()

    assert (docs_dir / "report.txt").read_bytes() == theirs  # not ours: kept
    assert not (docs_dir / "report (2).txt").exists()  # ours: removed


def test_an_upload_over_max_file_mb_is_rejected_before_it_is_saved(config_file: Path, built_index, docs_dir: Path,
                                                                   fake_embedder):
    from rag_app.config import load_settings

    small = load_settings(config_file, index=built_index.index, ingest={"max_file_mb": 0.001})  # 1,000 bytes
    result = ingest_uploads([("big.txt", b"x" * 1_500), ("ok.txt", b"fine text")], small, fake_embedder)

    assert result.rejected == [("big.txt", "0.0015 MB, over ingest.max_file_mb = 0.001; raise it in rag.toml "
                                           "to upload it")]
    assert result.saved == ["ok.txt"] and not (docs_dir / "big.txt").exists()
    unlimited = load_settings(config_file, index=built_index.index, ingest={"max_file_mb": 0})
    assert ingest_uploads([("big.txt", b"x" * 1_500)], unlimited, fake_embedder).saved == ["big.txt"]


@pytest.mark.parametrize(("size", "shown"), [(500_000, "0.5"), (500_001, "0.501"), (1_500, "0.0015"),
                                             (1_400_000, "1.4"), (101_000_000, "101"), (1_234_500_000, "1,235")])
def test_upload_sizes_read_in_mb_rounded_up(size: int, shown: str):
    from ui.upload import _mb

    assert _mb(size) == shown  # rounded up, so a size over the limit never reads as the limit itself


def test_an_upload_gets_the_mode_the_umask_gives_new_files(built_index, docs_dir: Path, fake_embedder):
    import os

    old = os.umask(0o022)
    try:
        result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    finally:
        os.umask(old)
    assert result.saved == ["oxygen.md"]
    assert (docs_dir / "oxygen.md").stat().st_mode & 0o777 == 0o644  # others sharing the folder can read it


def test_an_upload_ingest_skips_is_taken_back_out_of_the_folder(built_index, docs_dir: Path, fake_embedder):
    result = ingest_uploads([("blank.txt", b"   \n\n  ")], built_index, fake_embedder)
    assert result.rolled_back == ["blank.txt"] and not (docs_dir / "blank.txt").exists()

"""Browser uploads -> the index's uploads/ folder -> added to the index, with rollback of what cannot be read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_app.errors import IndexLockedError, IngestError
from rag_app.store import IndexStore, IndexWriter, Manifest
from ui.upload import ingest_uploads, supported_extensions, upload_folder

DOCS = ["france.txt", "rivers.md", "space.txt"]  # what the built_index fixture holds
U = "uploads/"  # an upload's source in the index
NOTE = b"# Oxygen\n\nOxygen was discovered by Carl Wilhelm Scheele and Joseph Priestley."


@pytest.fixture
def up(built_index) -> Path:
    """Where uploads are kept: the index's own data folder."""
    return built_index.index / "uploads"


def test_supported_extensions_match_the_loaders():
    assert {"txt", "md", "html", "pdf", "docx"} <= set(supported_extensions())


def test_upload_is_kept_in_the_index_folder_and_indexed(built_index, docs_dir: Path, up: Path, fake_embedder):
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)

    assert result.folder == up
    assert result.saved == ["oxygen.md"] and not result.rolled_back
    assert result.report.added == [U + "oxygen.md"]
    assert (up / "oxygen.md").read_bytes() == NOTE
    assert sorted(p.name for p in docs_dir.iterdir()) == sorted(DOCS)  # the user's folder is left alone
    with IndexStore.open(built_index.index) as store:
        assert set(store.files()) == {*DOCS, U + "oxygen.md"}
        assert "Scheele" in " ".join(c.text for c in store.iter_chunks(U + "oxygen.md"))


def test_uploads_survive_a_re_ingest_of_the_folder(built_index, docs_dir: Path, up: Path, fake_embedder):
    from ingest.pipeline import ingest_folder

    ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    (docs_dir / "space.txt").unlink()
    (docs_dir / "france.txt").write_text("Lyon is a city in France.", encoding="utf-8")
    report = ingest_folder(docs_dir, built_index, embedder=fake_embedder)
    assert report.removed == ["space.txt"] and report.updated == ["france.txt"]
    with IndexStore.open(built_index.index) as store:
        assert set(store.files()) == {"france.txt", "rivers.md", U + "oxygen.md"}
        assert store.manifest.source_dir == str(docs_dir.resolve())  # still the folder it mirrors
    # and the retriever shows it as a source, like any file
    from rag_app.retriever import Retriever

    with IndexStore.open(built_index.index) as store:
        hits = Retriever(store, fake_embedder, built_index.retrieve).retrieve("Who discovered oxygen? Scheele")
        assert hits[0].chunk.source == U + "oxygen.md"


def test_first_upload_creates_the_index_beside_it(ui_settings, fake_embedder):
    result = ingest_uploads([("C:\\Users\\me\\notes.txt", b"Rivers flow into the sea.")], ui_settings, fake_embedder)

    assert result.folder == ui_settings.index / "uploads"
    assert result.saved == ["notes.txt"]  # a browser's path is reduced to the file name
    with IndexStore.open(ui_settings.index) as store:
        assert list(store.files()) == [U + "notes.txt"]


def test_unsupported_and_hidden_files_are_rejected_not_saved(built_index, up: Path, fake_embedder):
    result = ingest_uploads([("tool.exe", b"MZ"), (".env", b"SECRET=1"), ("ok.txt", b"fine text"),
                             ("../../evil name.txt", b"volcanoes")], built_index, fake_embedder)

    assert [name for name, _ in result.rejected] == ["tool.exe", ".env"]
    assert "unsupported type" in result.rejected[0][1]
    assert result.saved == ["ok.txt", "evil name.txt"]  # a path never escapes the folder
    assert not (up / "tool.exe").exists() and not (up / ".env").exists()
    assert (up / "evil name.txt").is_file() and not (up.parent.parent / "evil name.txt").exists()


def test_unreadable_upload_is_rolled_back_and_the_original_kept(built_index, docs_dir: Path, up: Path, fake_embedder):
    before = (docs_dir / "france.txt").read_bytes()
    ingest_uploads([("france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)
    broken_docx = b"PK\x03\x04 not a real docx"
    binary = b"MZ\x90\x00\x03\x00" * 40  # an executable renamed .txt: NUL bytes, not text
    result = ingest_uploads([("broken.docx", broken_docx), ("france.txt", binary)], built_index, fake_embedder)

    assert result.renamed == [("france.txt", "france (2).txt")]  # never over the user's own france.txt
    assert {source for source, _ in result.report.failed} == {U + "broken.docx", U + "france (2).txt"}
    assert sorted(result.rolled_back) == ["broken.docx", "france (2).txt"]
    assert not (up / "broken.docx").exists() and not (up / "france (2).txt").exists()
    assert (docs_dir / "france.txt").read_bytes() == before
    with IndexStore.open(built_index.index) as store:
        assert set(store.files()) == {*DOCS, U + "france.txt"}
        assert "Paris" in " ".join(c.text for c in store.iter_chunks("france.txt"))


def test_locked_index_rolls_back_every_file(built_index, up: Path, fake_embedder):
    manifest = Manifest(embedding_model="fake-embedder", dim=64, chunking=built_index.ingest.chunking_signature())
    with IndexWriter(built_index.index, manifest):  # another writer holds the lock
        with pytest.raises(IndexLockedError):
            ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    assert not (up / "oxygen.md").exists()
    with IndexStore.open(built_index.index) as store:
        assert U + "oxygen.md" not in store.files()


def test_a_missing_source_folder_neither_blocks_an_upload_nor_empties_the_index(built_index, docs_dir: Path,
                                                                                fake_embedder):
    shutil.rmtree(docs_dir)  # uploads no longer go there, and only the uploaded files are read
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    assert result.folder == upload_folder(built_index) and result.report.added == [U + "oxygen.md"]
    with IndexStore.open(built_index.index) as store:
        assert set(store.files()) == {*DOCS, U + "oxygen.md"}


def test_an_upload_looks_at_the_index_once_before_ingest(built_index, fake_embedder, monkeypatch):
    import ingest.files

    opens: list[Path] = []
    at_ingest: list[int] = []
    real_open, real_ingest = IndexStore.open.__func__, ingest.files.ingest_files

    def counting_open(cls, index_dir, *args, **kwargs):
        opens.append(Path(index_dir))
        return real_open(cls, index_dir, *args, **kwargs)

    def ingest_files(*args, **kwargs):
        at_ingest.append(len(opens))
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(IndexStore, "open", classmethod(counting_open))
    monkeypatch.setattr(ingest.files, "ingest_files", ingest_files)
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    assert result.saved == ["oxygen.md"] and result.report.added == [U + "oxygen.md"]
    assert at_ingest == [1]  # folder and indexed files from one open; ingest then reads the index itself


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.uploading"))


def test_unsavable_names_are_rejected_in_one_line_and_leave_no_temp_file(built_index, up: Path, fake_embedder):
    up.mkdir()
    (up / "notes.md").mkdir()  # a folder holds the name
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
    assert (up / "notes.md").is_dir() and _leftovers(up) == []
    with IndexStore.open(built_index.index) as store:
        assert {U + longest, U + "ok.txt"} <= set(store.files())


def test_a_failed_write_is_rejected_and_its_temp_file_removed(built_index, up: Path, fake_embedder, monkeypatch):
    import errno

    import ui.upload

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ui.upload.os, "fsync", full)
    result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    monkeypatch.undo()

    assert result.rejected == [("oxygen.md", f"could not be saved in {up}: No space left on device")]
    assert not result.saved and result.report is None
    assert _leftovers(up) == [] and not (up / "oxygen.md").exists()


def test_an_upload_never_replaces_a_different_document_of_that_name(built_index, up: Path, fake_embedder):
    lyon = b"Lyon is the third city of France."
    first = ingest_uploads([("france.txt", lyon)], built_index, fake_embedder)  # the folder's france.txt is another source
    second = ingest_uploads([("france.txt", b"Marseille is a port in France.")], built_index, fake_embedder)
    third = ingest_uploads([("france.txt", b"Nice is on the coast.")], built_index, fake_embedder)

    assert first.saved == ["france.txt"] and first.renamed == []
    assert second.saved == ["france (2).txt"] and second.renamed == [("france.txt", "france (2).txt")]
    assert third.saved == ["france (3).txt"]
    assert (up / "france.txt").read_bytes() == lyon
    with IndexStore.open(built_index.index) as store:
        assert {"france.txt", U + "france.txt", U + "france (2).txt", U + "france (3).txt"} <= set(store.files())
        assert "Paris" in " ".join(c.text for c in store.iter_chunks("france.txt"))


def test_the_same_bytes_again_are_not_duplicated(built_index, up: Path, fake_embedder):
    ingest_uploads([("france.txt", b"Paris, again.")], built_index, fake_embedder)
    ingest_uploads([("france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)  # -> france (2).txt
    again = ingest_uploads([("france.txt", b"Paris, again."),
                            ("france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)
    assert again.unchanged == ["france.txt"] and again.saved == [] and again.report is None
    assert [name for name, _ in again.rejected] == ["france.txt"]  # the second of the batch: kept the first
    resend = ingest_uploads([("C:\\tmp\\france.txt", b"Lyon is the third city of France.")], built_index, fake_embedder)
    assert resend.unchanged == ["france (2).txt"] and not resend.saved
    assert sorted(p.name for p in up.iterdir()) == ["france (2).txt", "france.txt"]


def test_the_same_bytes_as_a_file_not_yet_indexed_get_indexed_and_stay(built_index, up: Path, fake_embedder):
    up.mkdir()
    (up / "manual.txt").write_bytes(b"Copied here by hand, never ingested.")
    result = ingest_uploads([("manual.txt", b"Copied here by hand, never ingested.")], built_index, fake_embedder)
    assert not result.saved and not result.unchanged and result.report.added == [U + "manual.txt"]
    assert (up / "manual.txt").is_file()


BINARY = b"MZ\x90\x00\x03\x00" * 40  # an executable renamed .txt: ingest cannot read it


def test_a_good_upload_stays_when_a_failed_file_elsewhere_has_its_name(built_index, docs_dir: Path, up: Path,
                                                                       fake_embedder):
    (docs_dir / "old").mkdir()
    (docs_dir / "old" / "report.txt").write_bytes(BINARY)  # the user's own unreadable file, in a subfolder
    result = ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)

    assert result.report.failed == []  # an upload reads only what was uploaded
    assert result.saved == ["report.txt"] and result.rolled_back == []
    assert (up / "report.txt").is_file() and (docs_dir / "old" / "report.txt").read_bytes() == BINARY
    with IndexStore.open(built_index.index) as store:
        assert U + "report.txt" in store.files()


def _race(monkeypatch, path: Path, data: bytes) -> None:
    """Another tab writes ``path`` between this upload's check for a free name and its write."""
    import ui.upload

    real = ui.upload._write_temp

    def write_temp(*args, **kwargs):
        if not path.exists():
            path.write_bytes(data)
        return real(*args, **kwargs)

    monkeypatch.setattr(ui.upload, "_write_temp", write_temp)


def test_an_upload_never_overwrites_a_file_another_tab_saved_meanwhile(built_index, up: Path, fake_embedder,
                                                                       monkeypatch):
    theirs = b"The other tab's report: costs fell."
    _race(monkeypatch, up / "report.txt", theirs)
    result = ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)
    monkeypatch.undo()

    assert (up / "report.txt").read_bytes() == theirs
    assert result.saved == ["report (2).txt"] and result.renamed == [("report.txt", "report (2).txt")]
    assert (up / "report (2).txt").read_bytes() == b"The quarterly report: sales rose."
    assert _leftovers(up) == []


def test_without_hard_links_the_name_is_still_taken_exclusively(built_index, up: Path, fake_embedder,
                                                                monkeypatch):
    import errno

    import ui.upload

    def no_links(*_args):
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT, some network shares

    theirs = b"The other tab's report: costs fell."
    monkeypatch.setattr(ui.upload.os, "link", no_links)
    _race(monkeypatch, up / "report.txt", theirs)
    result = ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)
    monkeypatch.undo()

    assert (up / "report.txt").read_bytes() == theirs
    assert result.saved == ["report (2).txt"]
    assert (up / "report (2).txt").read_bytes() == b"The quarterly report: sales rose."
    assert _leftovers(up) == []


def test_the_same_bytes_saved_meanwhile_by_another_tab_are_not_duplicated(built_index, up: Path, fake_embedder,
                                                                          monkeypatch):
    same = b"The quarterly report: sales rose."
    _race(monkeypatch, up / "report.txt", same)
    result = ingest_uploads([("report.txt", same)], built_index, fake_embedder)
    monkeypatch.undo()

    assert result.saved == [] and (up / "report.txt").read_bytes() == same
    assert not (up / "report (2).txt").exists() and _leftovers(up) == []
    assert result.report.added == [U + "report.txt"]  # not indexed yet: ingest picks it up


def test_a_locked_index_rolls_back_only_the_files_this_upload_created(built_index, up: Path, fake_embedder,
                                                                      monkeypatch):
    theirs = b"The other tab's report: costs fell."
    _race(monkeypatch, up / "report.txt", theirs)
    manifest = Manifest(embedding_model="fake-embedder", dim=64, chunking=built_index.ingest.chunking_signature())
    with IndexWriter(built_index.index, manifest):  # the other tab is ingesting
        with pytest.raises(IndexLockedError):
            ingest_uploads([("report.txt", b"The quarterly report: sales rose.")], built_index, fake_embedder)
    monkeypatch.undo()

    assert (up / "report.txt").read_bytes() == theirs  # not ours: kept
    assert not (up / "report (2).txt").exists()  # ours: removed


def test_an_upload_over_max_file_mb_is_rejected_before_it_is_saved(config_file: Path, built_index, up: Path,
                                                                   fake_embedder):
    from rag_app.config import load_settings

    small = load_settings(config_file, index=built_index.index, ingest={"max_file_mb": 0.001})  # 1,000 bytes
    result = ingest_uploads([("big.txt", b"x" * 1_500), ("ok.txt", b"fine text")], small, fake_embedder)

    assert result.rejected == [("big.txt", "0.0015 MB, over ingest.max_file_mb = 0.001; raise it in rag.toml "
                                           "to upload it")]
    assert result.saved == ["ok.txt"] and not (up / "big.txt").exists()
    unlimited = load_settings(config_file, index=built_index.index, ingest={"max_file_mb": 0})
    assert ingest_uploads([("big.txt", b"x" * 1_500)], unlimited, fake_embedder).saved == ["big.txt"]


@pytest.mark.parametrize(("size", "shown"), [(500_000, "0.5"), (500_001, "0.501"), (1_500, "0.0015"),
                                             (1_400_000, "1.4"), (101_000_000, "101"), (1_234_500_000, "1,235")])
def test_upload_sizes_read_in_mb_rounded_up(size: int, shown: str):
    from ui.upload import _mb

    assert _mb(size) == shown  # rounded up, so a size over the limit never reads as the limit itself


def test_an_upload_gets_the_mode_the_umask_gives_new_files(built_index, up: Path, fake_embedder):
    import os

    old = os.umask(0o022)
    try:
        result = ingest_uploads([("oxygen.md", NOTE)], built_index, fake_embedder)
    finally:
        os.umask(old)
    assert result.saved == ["oxygen.md"]
    assert (up / "oxygen.md").stat().st_mode & 0o777 == 0o644  # others sharing the folder can read it


def test_an_upload_ingest_skips_is_taken_back_out_of_the_folder(built_index, up: Path, fake_embedder):
    result = ingest_uploads([("blank.txt", b"   \n\n  ")], built_index, fake_embedder)
    assert result.rolled_back == ["blank.txt"] and not (up / "blank.txt").exists()

"""ingest_folder end to end with the fake embedder: incremental, atomic, one bad file never aborts.

(Named test_ingest_pipeline.py, not test_pipeline.py: test files are imported by
base name, and tests/rag_app/test_pipeline.py tests rag_app/pipeline.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest_folder, upload_dir
from rag_app.config import load_settings
from rag_app.errors import ConfigError, EmbeddingMismatchError, IndexLockedError, IngestError
from rag_app.store import IndexStore, IndexWriter, Manifest

DOCS = {
    "rivers.txt": "The Rhine rises in the Swiss Alps and flows into the North Sea. " * 3,
    "space/apollo.txt": "Apollo 11 landed on the Moon in July 1969. Neil Armstrong walked first. " * 3,
    "guide.md": "# Guide\n\nIntro to the guide.\n\n## Install\n\nRun pip install to set it up.\n",
}


class CountingEmbedder:
    """Wraps the fake embedder and counts the texts it embeds."""

    def __init__(self, inner, model_name: str | None = None) -> None:
        self.inner = inner
        self.model_name = model_name or inner.model_name
        self.dim = inner.dim
        self.texts = 0

    def embed_documents(self, texts, batch_size: int = 32) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed_documents(texts, batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(index=tmp_path / "index", ingest={"chunk_size": 120, "chunk_overlap": 20, "embed_batch_size": 4})


@pytest.fixture
def embedder(fake_embedder) -> CountingEmbedder:
    return CountingEmbedder(fake_embedder)


def _chunk_ids(index: Path) -> dict[str, set[int]]:
    with IndexStore.open(index) as store:
        out: dict[str, set[int]] = {}
        for c in store.iter_chunks():
            out.setdefault(c.source, set()).add(c.id)
        return out


def _top_texts(index: Path, embedder, queries: list[str], k: int = 3) -> list[list[str]]:
    with IndexStore.open(index) as store:
        _, ids = store.search(np.stack([embedder.embed_query(q) for q in queries]), k)
        return [[c.text for c in store.get_chunks(row)] for row in ids]


def _live(index: Path) -> str:
    return (index / "CURRENT").read_text(encoding="utf-8")


def test_first_ingest_indexes_every_file(docs: Path, settings, embedder) -> None:
    report = ingest_folder(docs, settings, embedder=embedder)
    assert sorted(report.added) == sorted(DOCS) and report.committed and report.generation == 1
    assert report.chunks_embedded == report.total_chunks == embedder.texts > 3
    assert report.documents == 3 and report.chunks_per_s > 0
    with IndexStore.open(settings.index, embedding_model="fake-embedder") as store:
        m = store.manifest
        assert (m.embedding_model, m.dim, m.chunking) == ("fake-embedder", 64, settings.ingest.chunking_signature())
        assert m.source_dir == str(docs.resolve())
        assert set(store.files()) == set(DOCS)
        chunk = next(c for c in store.iter_chunks("space/apollo.txt"))
        assert chunk.doc_id == "apollo"
        assert DOCS["space/apollo.txt"][chunk.start : chunk.end] == chunk.text
        headings = {c.heading for c in store.iter_chunks("guide.md")}
        assert headings == {"Guide", "Guide > Install"}
    assert "files: 3 added, 0 updated, 0 unchanged" in report.summary().plain


def test_unchanged_folder_embeds_nothing_and_writes_no_generation(docs: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    before = (_live(settings.index), embedder.texts, sorted(p.name for p in settings.index.iterdir()))
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.chunks_embedded == 0 and not report.committed
    assert sorted(report.unchanged) == sorted(DOCS)
    assert (_live(settings.index), embedder.texts, sorted(p.name for p in settings.index.iterdir())) == before
    assert report.summary().plain.startswith("index is up to date")
    assert report.total_chunks > 0 and report.documents == 3


def test_up_to_date_and_removal_runs_load_no_model(docs: Path, settings, embedder, monkeypatch) -> None:
    ingest_folder(docs, settings, embedder=embedder)

    def no_model(name):
        raise AssertionError("the embedder must not be loaded for an up-to-date folder")

    monkeypatch.setattr("rag_app.embeddings.load_embedder", no_model)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake-embedder")
    plain = load_settings(index=settings.index, ingest=settings.ingest.model_dump())
    assert not ingest_folder(docs, plain).committed
    (docs / "guide.md").unlink()  # a removal needs no embedding either
    report = ingest_folder(docs, plain)
    assert report.committed and report.removed == ["guide.md"] and report.model_seconds == 0
    with IndexStore.open(settings.index, embedding_model="fake-embedder") as store:
        assert store.manifest.dim == 64 and set(store.files()) == {"rivers.txt", "space/apollo.txt"}


def test_edited_file_replaces_only_its_chunks(docs: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    before = _chunk_ids(settings.index)
    (docs / "rivers.txt").write_text("The Rhine is 1,230 km long and passes Basel and Cologne.", encoding="utf-8")
    embedded_before = embedder.texts
    report = ingest_folder(docs, settings, embedder=embedder)
    after = _chunk_ids(settings.index)
    assert report.updated == ["rivers.txt"] and sorted(report.unchanged) == ["guide.md", "space/apollo.txt"]
    assert report.chunks_embedded == len(after["rivers.txt"]) == embedder.texts - embedded_before
    assert after["guide.md"] == before["guide.md"] and after["space/apollo.txt"] == before["space/apollo.txt"]
    assert not after["rivers.txt"] & before["rivers.txt"]
    assert _top_texts(settings.index, embedder, ["How long is the Rhine, Basel Cologne?"], k=1)[0][0].startswith(
        "The Rhine is 1,230 km"
    )


def test_deleted_file_loses_its_chunks(docs: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    (docs / "space" / "apollo.txt").unlink()
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.removed == ["space/apollo.txt"] and report.chunks_embedded == 0 and report.committed
    assert set(_chunk_ids(settings.index)) == {"rivers.txt", "guide.md"}
    with IndexStore.open(settings.index) as store:
        assert store.faiss_index.ntotal == len(store) == report.total_chunks


def test_bad_files_are_reported_and_the_rest_ingested(docs: Path, settings, embedder, make_pdf) -> None:
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R")
    (docs / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (docs / "data.xlsx").write_text("a,b\n1,2\n", encoding="utf-8")
    (docs / "empty.txt").write_text("   \n", encoding="utf-8")
    make_pdf(docs / "paper.pdf", ["Page one is about glaciers.", "Page two is about fjords."])
    report = ingest_folder(docs, settings, embedder=embedder)
    failed = dict(report.failed)
    assert set(failed) == {"broken.pdf", "photo.txt"}
    assert "corrupt or unreadable PDF" in failed["broken.pdf"] and "binary content" in failed["photo.txt"]
    assert dict(report.skipped) == {"data.xlsx": "unsupported type .xlsx", "empty.txt": "no text"}
    assert sorted(report.added) == sorted([*DOCS, "paper.pdf"])
    text = report.summary().plain
    assert "failed: broken.pdf: corrupt or unreadable PDF" in text and "skipped: data.xlsx: unsupported type" in text
    with IndexStore.open(settings.index) as store:
        pages = [(c.page, c.text) for c in store.iter_chunks("paper.pdf")]
    assert pages == [(1, "Page one is about glaciers."), (2, "Page two is about fjords.")]


def test_previous_version_of_a_file_that_turns_corrupt_is_kept(docs: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    before = _chunk_ids(settings.index)
    (docs / "rivers.txt").write_bytes(b"\x00\x01\x02 garbage")
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.failed == [("rivers.txt", "binary content (NUL bytes), not text; the previous version stays indexed")]
    assert not report.committed and _chunk_ids(settings.index) == before


def test_cp1252_file_is_ingested(docs: Path, settings, embedder) -> None:
    (docs / "menu.txt").write_bytes("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e costs \u20ac7.".encode("cp1252"))
    report = ingest_folder(docs, settings, embedder=embedder)
    assert "menu.txt" in report.added and not report.failed
    with IndexStore.open(settings.index) as store:
        assert [c.text for c in store.iter_chunks("menu.txt")] == ["Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e costs \u20ac7."]


def test_hidden_files_other_globs_and_an_inner_index_are_ignored(docs: Path, tmp_path: Path, embedder) -> None:
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.txt").write_text("git internals", encoding="utf-8")
    (docs / ".draft.md").write_text("# hidden", encoding="utf-8")
    settings = load_settings(index=docs / "idx", ingest={"globs": ["**/*.txt"]})
    ingest_folder(docs, settings, embedder=embedder)
    report = ingest_folder(docs, settings, embedder=embedder)  # the index now lives inside the folder
    assert sorted(report.unchanged) == ["rivers.txt", "space/apollo.txt"] and not report.skipped


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "unsupported_only"])
def test_folders_with_nothing_to_ingest_are_one_line_errors(tmp_path: Path, settings, embedder, kind: str) -> None:
    folder = tmp_path / "in"
    if kind == "file":
        folder.write_text("x", encoding="utf-8")
    elif kind != "missing":
        folder.mkdir()
        if kind == "unsupported_only":
            (folder / "a.xlsx").write_text("a,b", encoding="utf-8")
    expected = {"missing": "does not exist", "file": "is a file, not a folder", "empty": "nothing to ingest",
                "unsupported_only": r"nothing to ingest .* \(1 files of other types\)"}[kind]  # fmt: skip
    with pytest.raises(IngestError, match=expected) as err:
        ingest_folder(folder, settings, embedder=embedder)
    assert "\n" not in str(err.value)
    assert not settings.index.exists()


def test_a_folder_where_no_file_can_be_read_is_an_error(tmp_path: Path, settings, embedder) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"nope")
    with pytest.raises(IngestError, match=r"no document .* could be read \(a.pdf: not a PDF"):
        ingest_folder(folder, settings, embedder=embedder)
    assert not (settings.index / "CURRENT").exists()


def test_unwritable_index_dir_is_an_error(docs: Path, tmp_path: Path, embedder) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    settings = load_settings(index=tmp_path / "afile" / "index")
    with pytest.raises(IngestError, match="cannot create the index directory"):
        ingest_folder(docs, settings, embedder=embedder)


def test_other_embedding_model_is_refused_unless_rebuild(docs: Path, settings, embedder, fake_embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    other = CountingEmbedder(fake_embedder, model_name="other-model")
    with pytest.raises(EmbeddingMismatchError, match="--rebuild"):
        ingest_folder(docs, settings, embedder=other)
    assert other.texts == 0
    report = ingest_folder(docs, settings, embedder=other, rebuild=True)
    assert report.committed and sorted(report.added) == sorted(DOCS)
    with IndexStore.open(settings.index, embedding_model="other-model") as store:
        assert store.manifest.embedding_model == "other-model"


def test_second_writer_gets_a_lock_error(docs: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    (docs / "new.txt").write_text("A new file.", encoding="utf-8")
    manifest = Manifest(embedding_model="fake-embedder", dim=64, chunking=settings.ingest.chunking_signature())
    with IndexWriter(settings.index, manifest):
        with pytest.raises(IndexLockedError, match="another process is writing"):
            ingest_folder(docs, settings, embedder=embedder)
    assert "new.txt" in ingest_folder(docs, settings, embedder=embedder).added  # the lock was released


@pytest.mark.parametrize("where", ["build_bm25", "write_index", "embedding"])
def test_crash_mid_ingest_leaves_the_old_index_usable(docs: Path, settings, embedder, monkeypatch, where: str) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    queries = ["Where does the Rhine rise?", "Who walked on the Moon?", "How to install?"]
    before = (_live(settings.index), _top_texts(settings.index, embedder, queries), _chunk_ids(settings.index))
    (docs / "rivers.txt").write_text("Completely new text about the Danube river in Vienna.", encoding="utf-8")
    (docs / "guide.md").unlink()

    def boom(*args, **kwargs):
        error = {"build_bm25": RuntimeError, "write_index": OSError, "embedding": KeyboardInterrupt}[where]
        raise error(f"crash in {where}")

    if where == "build_bm25":
        monkeypatch.setattr(IndexWriter, "_build_bm25", boom)
    elif where == "write_index":
        import faiss

        monkeypatch.setattr(faiss, "write_index", boom)
    else:
        monkeypatch.setattr(embedder, "embed_documents", boom)
    with pytest.raises((RuntimeError, IngestError, KeyboardInterrupt)):
        ingest_folder(docs, settings, embedder=embedder)
    assert (_live(settings.index), _top_texts(settings.index, embedder, queries), _chunk_ids(settings.index)) == before
    assert not any(p.name == "gen-000002" for p in settings.index.iterdir())  # the staged generation is gone
    monkeypatch.undo()
    report = ingest_folder(docs, settings, embedder=embedder)  # lock released, next run applies the changes
    assert report.updated == ["rivers.txt"] and report.removed == ["guide.md"]


def test_changed_chunking_settings_rechunk_every_file(docs: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    wider = load_settings(index=settings.index, ingest={"chunk_size": 400, "chunk_overlap": 0})
    report = ingest_folder(docs, wider, embedder=embedder)
    assert sorted(report.updated) == sorted(DOCS) and report.committed
    assert any("chunking changed" in n for n in report.notes)
    with IndexStore.open(settings.index) as store:
        assert store.manifest.chunking == wider.ingest.chunking_signature()


def test_token_chunks_need_a_tokenizer(docs: Path, tmp_path: Path, embedder) -> None:
    settings = load_settings(index=tmp_path / "index", ingest={"chunk_unit": "tokens", "chunk_size": 64, "chunk_overlap": 8})
    with pytest.raises(ConfigError, match="tokenizer"):
        ingest_folder(docs, settings, embedder=embedder)
    assert not (settings.index / "CURRENT").exists()


def test_same_files_from_another_folder_record_the_new_source_dir(docs: Path, tmp_path: Path, settings, embedder) -> None:
    ingest_folder(docs, settings, embedder=embedder)
    moved = tmp_path / "moved"
    docs.rename(moved)
    report = ingest_folder(moved, settings, embedder=embedder)
    assert sorted(report.unchanged) == sorted(DOCS) and report.chunks_embedded == 0 and report.committed
    with IndexStore.open(settings.index) as store:
        assert store.manifest.source_dir == str(moved.resolve()) and any("now mirrors" in n for n in report.notes)
    assert upload_dir(settings) == settings.index / "uploads"  # uploads stay with the index, wherever the folder is
    assert not ingest_folder(moved, settings, embedder=embedder).committed


@pytest.mark.slow
def test_real_minilm_on_the_sample_finds_the_sentence(tmp_path: Path) -> None:
    """Bundled all-MiniLM-L6-v2 over data/sample: a question retrieves the chunk holding its answer."""
    import json

    from rag_app.config import REPO_ROOT
    from rag_app.embeddings import load_embedder

    settings = load_settings(index=tmp_path / "index")
    embedder = load_embedder(settings.embedding_model)
    report = ingest_folder(REPO_ROOT / "data" / "sample" / "docs", settings, embedder=embedder)
    assert len(report.added) == 30 and not report.failed
    sentence = "The company installed electrical arc light based illumination systems designed by Tesla"
    [top] = _top_texts(settings.index, embedder, ["What did Tesla Electric Light & Manufacturing do?"], k=1)
    assert sentence in top[0]
    # And over all 150 sample questions, the top chunk comes from the gold paragraph most of the time.
    questions = [json.loads(line) for line in (REPO_ROOT / "data" / "sample" / "qa.jsonl").open(encoding="utf-8")]
    with IndexStore.open(settings.index, embedding_model=embedder.model_name) as store:
        _, ids = store.search(np.stack([embedder.embed_query(q["question"]) for q in questions]), 1)
        hits = sum(store.get_chunks(row)[0].doc_id in q["gold_doc_ids"] for row, q in zip(ids, questions))
    assert hits / len(questions) > 0.8  # 131/150 when written
    assert not ingest_folder(REPO_ROOT / "data" / "sample" / "docs", settings, embedder=embedder).committed


def test_a_csv_row_is_a_chunk_that_retrieval_finds(docs: Path, settings, fake_embedder) -> None:
    from rag_app.config import RetrieveConfig
    from rag_app.retriever import Retriever

    rows = ["Planet,Moons,Diameter (km)", "Mercury,0,4879", "Venus,0,12104", "Mars,2,6792", "Saturn,146,120536"]
    (docs / "planets.csv").write_text("\n".join(rows), encoding="utf-8")
    ingest_folder(docs, settings, embedder=fake_embedder)
    with IndexStore.open(settings.index) as store:
        chunks = [(c.heading, c.text) for c in store.iter_chunks("planets.csv")]
        assert chunks[2] == ("row 4", "Planet: Mars | Moons: 2 | Diameter (km): 6792") and len(chunks) == 4
        [hit] = Retriever(store, fake_embedder, RetrieveConfig(top_k=1, mode="dense")).retrieve("Mars Moons")
    assert hit.chunk.location == "planets.csv § row 4"


def test_a_changed_csv_reader_rereads_only_the_csv_files(docs: Path, settings, embedder, monkeypatch) -> None:
    # An index built before a loader change: the CSV's chunks must not stay as the old reader made them.
    (docs / "log.csv").write_text("2024-01-05,Acme,12.5\n2024-01-06,Beta,13\n", encoding="utf-8")
    from ingest.loaders import READER_VERSIONS

    monkeypatch.setitem(READER_VERSIONS, "csv", 1)  # as before the CSV reader was versioned
    ingest_folder(docs, settings, embedder=embedder)
    monkeypatch.undo()
    before = _chunk_ids(settings.index)
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.updated == ["log.csv"] and sorted(report.unchanged) == sorted(DOCS)
    after = _chunk_ids(settings.index)
    assert all(after[name] == before[name] for name in DOCS)
    assert not ingest_folder(docs, settings, embedder=embedder).committed  # once, not on every run


# ---------------------------------------------------------------- a folder's contents must not break ingest (issue #23)


def _sources(index: Path) -> set[str]:
    with IndexStore.open(index) as store:
        return set(store.files())


def _all_text(index: Path) -> str:
    with IndexStore.open(index) as store:
        return "\n".join(c.text for c in store.iter_chunks())


def test_links_to_outside_the_folder_are_skipped(docs: Path, tmp_path: Path, settings, embedder) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 the password is hunter2", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "private.txt").write_text("private notes hunter2", encoding="utf-8")
    (docs / "passwd.txt").symlink_to(secret)
    (docs / "elsewhere").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (docs / "rivers-link.txt").symlink_to(docs / "rivers.txt")  # inside the folder: fine
    (docs / "loop").symlink_to(docs, target_is_directory=True)  # inside, and never followed
    report = ingest_folder(docs, settings, embedder=embedder)
    assert dict(report.skipped) == {"passwd.txt": "link to outside the folder", "elsewhere/": "link to outside the folder"}
    assert _sources(settings.index) == {*DOCS, "rivers-link.txt"}
    assert "hunter2" not in _all_text(settings.index)


def test_an_unreadable_file_is_reported_and_the_rest_indexed(docs: Path, settings, embedder, monkeypatch) -> None:
    # Simulated: as root (CI containers) chmod 000 does not stop a read; the test below does it for real.
    import ingest.walk as walk

    real_hash = walk.hash_file

    def denied(path: Path, *args):
        if path.name == "rivers.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path, *args)

    monkeypatch.setattr(walk, "hash_file", denied)
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.failed == [("rivers.txt", "permission denied: cannot read")]
    assert report.committed and _sources(settings.index) == set(DOCS) - {"rivers.txt"}
    monkeypatch.undo()
    ingest_folder(docs, settings, embedder=embedder)  # readable again: indexed; then unreadable once more
    monkeypatch.setattr(walk, "hash_file", denied)
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.failed == [("rivers.txt", "permission denied: cannot read; the previous version stays indexed")]
    assert report.removed == [] and _sources(settings.index) == set(DOCS)


def test_an_unreadable_folder_is_reported_and_what_it_held_stays(docs: Path, settings, embedder, monkeypatch) -> None:
    import os

    ingest_folder(docs, settings, embedder=embedder)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fsdecode(path)) == "space":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # what os.walk lists a folder with
    report = ingest_folder(docs, settings, embedder=embedder)
    kept = "; the files indexed from it before stay indexed"
    assert report.failed == [("space/", f"permission denied: cannot list the folder{kept}")]
    assert not report.committed and _sources(settings.index) == set(DOCS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads whatever the mode; the two tests above simulate it")
def test_chmod_000_file_and_folder_are_reported(docs: Path, settings, embedder) -> None:
    (docs / "locked.txt").write_text("Nobody may read this.", encoding="utf-8")
    (docs / "locked").mkdir()
    (docs / "locked" / "inner.txt").write_text("Nor this.", encoding="utf-8")
    os.chmod(docs / "locked.txt", 0)
    os.chmod(docs / "locked", 0)
    try:
        report = ingest_folder(docs, settings, embedder=embedder)
    finally:
        os.chmod(docs / "locked.txt", 0o644)
        os.chmod(docs / "locked", 0o755)
    assert dict(report.failed) == {"locked.txt": "permission denied: cannot read",
                                   "locked/": "permission denied: cannot list the folder"}
    assert _sources(settings.index) == set(DOCS)


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:  # no disk used: a hole reads as NUL bytes
        fh.truncate(size)
    return path


def test_a_file_over_the_size_limit_is_skipped_unread(docs: Path, tmp_path: Path, embedder, monkeypatch) -> None:
    import ingest.walk as walk

    _sparse(docs / "huge.txt", 101 * 10**6)
    hashed: list[str] = []
    real_hash = walk.hash_file
    monkeypatch.setattr(walk, "hash_file", lambda path, *args: hashed.append(path.name) or real_hash(path, *args))
    settings = load_settings(index=tmp_path / "index")  # the default limit: 100 MB
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.skipped == [("huge.txt", "101 MB, over ingest.max_file_mb = 100; raise it in rag.toml to index it")]
    assert "huge.txt" not in hashed and sorted(report.added) == sorted(DOCS)
    small = load_settings(index=tmp_path / "index", ingest={"max_file_mb": 0.5})
    _sparse(docs / "half.md", 600_000)
    assert ("half.md", "1 MB, over ingest.max_file_mb = 0.5; raise it in rag.toml to index it") in (
        ingest_folder(docs, small, embedder=embedder).skipped)
    unlimited = load_settings(index=tmp_path / "index", ingest={"max_file_mb": 0})
    failed = dict(ingest_folder(docs, unlimited, embedder=embedder).failed)
    assert failed["huge.txt"].startswith("binary content (NUL bytes)")  # read, then refused from its first bytes


def test_max_file_mb_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match=r"ingest.max_file_mb must be >= 0 \(0 = no limit\)"):
        load_settings(ingest={"max_file_mb": -1})


def test_text_in_other_encodings_is_indexed_or_refused(docs: Path, settings, embedder) -> None:
    import random

    (docs / "tokyo.txt").write_bytes("東京は日本の首都です。富士山は日本で一番高い山です。".encode("shift_jis"))
    (docs / "windows.txt").write_bytes("Exported from Windows: caf\u00e9 au lait.".encode("utf-16-le"))
    rng = random.Random(7)
    (docs / "noise.txt").write_bytes(bytes(rng.randrange(0x80, 0x100) for _ in range(3000)))
    report = ingest_folder(docs, settings, embedder=embedder)
    assert [s for s, _ in report.failed] == ["noise.txt"] and "encoding not recognised" in report.failed[0][1]
    with IndexStore.open(settings.index) as store:
        assert [c.text for c in store.iter_chunks("tokyo.txt")] == ["東京は日本の首都です。富士山は日本で一番高い山です。"]
        assert [c.text for c in store.iter_chunks("windows.txt")] == ["Exported from Windows: caf\u00e9 au lait."]


def test_every_failure_and_skip_is_in_the_report_file(docs: Path, settings, embedder) -> None:
    for i in range(14):
        (docs / f"sheet{i:02d}.xlsx").write_text("a,b", encoding="utf-8")
    for i in range(5):
        (docs / f"bad{i}.pdf").write_bytes(b"not a pdf")
    report = ingest_folder(docs, settings, embedder=embedder)
    path = settings.index / "last-ingest-report.txt"
    assert report.report_file == path
    text = report.summary().plain
    assert "skipped: ... and 4 more" in text and f"all 5 failed and 14 skipped, with reasons: {path}" in text
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("failed: ")] == [
        f"failed: bad{i}.pdf: not a PDF (no %PDF header); corrupt or misnamed file" for i in range(5)]
    assert [line for line in lines if line.startswith("skipped: ")] == [
        f"skipped: sheet{i:02d}.xlsx: unsupported type .xlsx" for i in range(14)]
    stamp = path.stat().st_mtime_ns
    listing = sorted(p.name for p in settings.index.iterdir())
    again = ingest_folder(docs, settings, embedder=embedder)  # nothing changed: nothing written
    assert not again.committed and again.report_file == path and path.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in settings.index.iterdir()) == listing
    for p in [*docs.glob("*.xlsx"), *docs.glob("bad*.pdf")]:
        p.unlink()
    clean = ingest_folder(docs, settings, embedder=embedder)
    assert clean.report_file is None and not path.exists() and "with reasons" not in clean.summary().plain


def test_a_file_name_that_is_not_utf8_is_skipped_and_printed_safely(docs: Path, settings, embedder) -> None:
    import io

    from rich.console import Console

    folder = os.fsencode(docs)
    fd = os.open(os.path.join(folder, b"caf\xe9-latin1.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"A file whose name is latin-1, not UTF-8.")
    os.close(fd)
    os.mkdir(os.path.join(folder, b"dir\xff"))
    with open(os.path.join(folder, b"dir\xff", b"inner.txt"), "wb") as fh:
        fh.write(b"Inside a folder whose name is not UTF-8.")
    report = ingest_folder(docs, settings, embedder=embedder)  # SQLite refused these names: the run aborted
    reason = "the file name is not valid UTF-8; rename the file to index it"
    assert report.skipped == [("caf\\xe9-latin1.txt", reason), ("dir\\xff/inner.txt", reason)]
    assert report.committed and _sources(settings.index) == set(DOCS)
    out = io.StringIO()
    Console(file=out, width=200).print(report.summary())
    assert "skipped: caf\\xe9-latin1.txt: the file name is not valid UTF-8" in out.getvalue()
    assert "dir\\xff/inner.txt" in (settings.index / "last-ingest-report.txt").read_text(encoding="utf-8")


# ---------------------------------------------------------------- what is indexed is what was read, once


def _swap_after_walk(monkeypatch, swap) -> None:
    """Run ``swap()`` right after the walk hashed the folder, before any file is loaded."""
    import ingest.pipeline as pipeline

    real_walk = pipeline.walk_folder

    def walk(*args):
        walked = real_walk(*args)
        swap()
        return walked

    monkeypatch.setattr(pipeline, "walk_folder", walk)


@pytest.mark.parametrize(("swap", "reason"), [
    ("link", "changed while being indexed (it is a link now); ingest again to index it"),
    ("file", "changed while being indexed (another file is there now); ingest again to index it"),
])  # fmt: skip
def test_a_file_swapped_after_the_walk_is_not_indexed(docs: Path, tmp_path: Path, settings, embedder, monkeypatch,
                                                      swap: str, reason: str) -> None:
    (tmp_path / "secret.txt").write_text("root:x:0:0 the password is hunter2", encoding="utf-8")
    notes, harmless = docs / "notes.txt", "Harmless notes about the Rhine and its barges."
    notes.write_text(harmless, encoding="utf-8")
    aside = tmp_path / "notes.aside"

    def swap_in() -> None:
        notes.rename(aside)
        if swap == "link":
            notes.symlink_to("../secret.txt")
        else:  # another inode at the same path (a rename over it, as an editor's save does)
            notes.write_text("Swapped in after the walk: hunter2", encoding="utf-8")

    _swap_after_walk(monkeypatch, swap_in)
    report = ingest_folder(docs, settings, embedder=embedder)
    monkeypatch.undo()
    notes.unlink()
    aside.rename(notes)  # and back: nothing must remember what was there meanwhile
    assert report.failed == [("notes.txt", reason)]
    assert "hunter2" not in _all_text(settings.index) and _sources(settings.index) == set(DOCS)
    again = ingest_folder(docs, settings, embedder=embedder)  # read for real now, not "unchanged"
    assert again.added == ["notes.txt"] and harmless in _all_text(settings.index)


def test_a_file_edited_after_the_walk_records_the_digest_of_what_was_indexed(docs: Path, settings, embedder,
                                                                            monkeypatch) -> None:
    import hashlib

    edited = "Edited after the walk: the Danube flows into the Black Sea."
    _swap_after_walk(monkeypatch, lambda: (docs / "rivers.txt").write_text(edited, encoding="utf-8"))  # same inode
    ingest_folder(docs, settings, embedder=embedder)
    monkeypatch.undo()
    with IndexStore.open(settings.index) as store:
        assert store.files()["rivers.txt"].sha256 == hashlib.sha256(edited.encode()).hexdigest()
        assert [c.text for c in store.iter_chunks("rivers.txt")] == [edited]
    again = ingest_folder(docs, settings, embedder=embedder)
    assert not again.committed and "rivers.txt" in again.unchanged  # was "updated": the walk's digest was recorded


def test_a_folder_swapped_for_a_link_during_the_walk_leads_nowhere_outside(docs: Path, tmp_path: Path, settings,
                                                                          embedder, monkeypatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("private notes: hunter2", encoding="utf-8")
    real_scandir, swapped = os.scandir, []

    def scandir(path="."):  # os.walk checks space/ is no link, then lists it: swapped in between
        if not isinstance(path, int) and os.path.basename(os.fsdecode(path)) == "space" and not swapped:
            (docs / "space").rename(tmp_path / "space.aside")
            (docs / "space").symlink_to(outside, target_is_directory=True)
            swapped.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = ingest_folder(docs, settings, embedder=embedder)
    monkeypatch.undo()
    assert swapped and "hunter2" not in _all_text(settings.index)
    assert report.failed == [
        ("space/private.txt", "changed while being indexed (it is outside the folder now); ingest again to index it")]
    assert _sources(settings.index) == {"rivers.txt", "guide.md"}


def test_a_file_that_grew_past_the_limit_after_the_walk_is_refused(docs: Path, tmp_path: Path, embedder,
                                                                   monkeypatch) -> None:
    settings = load_settings(index=tmp_path / "index", ingest={"max_file_mb": 0.5})
    def grow() -> None:
        with open(docs / "rivers.txt", "a", encoding="utf-8") as fh:
            fh.write(" More about the Rhine." * 30_000)  # 660 kB of text

    _swap_after_walk(monkeypatch, grow)
    report = ingest_folder(docs, settings, embedder=embedder)
    assert report.failed == [("rivers.txt", "1 MB, over ingest.max_file_mb = 0.5; raise it in rag.toml to index it")]
    assert _sources(settings.index) == set(DOCS) - {"rivers.txt"}


def test_a_file_that_grows_while_it_is_read_is_refused_at_the_limit() -> None:
    import io

    from ingest.walk import HashingReader
    from rag_app.errors import LoaderError

    reader = HashingReader(io.BytesIO(b"x" * 100), version=1, max_file_mb=50e-6)  # 50 bytes
    with pytest.raises(LoaderError, match=r"^it grew past ingest.max_file_mb = 5e-05 while being indexed"):
        reader.read()
    assert reader.size == 51  # one byte past the limit is all that is read


def test_rebuild_promises_no_kept_version_of_what_it_cannot_read(docs: Path, settings, embedder, monkeypatch) -> None:
    import ingest.walk as walk

    ingest_folder(docs, settings, embedder=embedder)
    real_hash, real_scandir = walk.hash_file, os.scandir

    def denied(path: Path, *args):
        if path.name == "rivers.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path, *args)

    def scandir(path="."):
        if not isinstance(path, int) and os.path.basename(os.fsdecode(path)) == "space":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(walk, "hash_file", denied)
    monkeypatch.setattr(os, "scandir", scandir)
    report = ingest_folder(docs, settings, rebuild=True, embedder=embedder)
    monkeypatch.undo()
    assert report.failed == [("rivers.txt", "permission denied: cannot read"),
                             ("space/", "permission denied: cannot list the folder")]  # no "stays indexed"
    assert _sources(settings.index) == {"guide.md"}


def test_the_report_file_is_written_through_a_temp_file_of_its_own(tmp_path: Path, monkeypatch) -> None:
    from ingest.report import REPORT_NAME, IngestReport

    index = tmp_path / "index"
    index.mkdir()
    (index / f"{REPORT_NAME}.tmp").mkdir()  # the one fixed temp name every run used to share
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    report = IngestReport(folder=tmp_path / "docs", index=index, failed=[("a.txt", "binary content")])
    report.write_file()
    assert report.report_file == index / REPORT_NAME and not report.notes and synced
    assert "failed: a.txt: binary content" in (index / REPORT_NAME).read_text(encoding="utf-8")
    assert sorted(p.name for p in index.iterdir()) == [REPORT_NAME, f"{REPORT_NAME}.tmp"]  # no temp file left behind


def test_a_file_swapped_for_a_device_before_it_is_hashed_is_refused_not_read_forever(tmp_path):
    from ingest.walk import hash_file
    from rag_app.errors import LoaderError

    with pytest.raises(LoaderError, match="not a regular file"):
        hash_file(Path("/dev/zero"))
    link = tmp_path / "notes.txt"
    link.symlink_to("/etc/hostname")
    with pytest.raises(OSError):  # O_NOFOLLOW: a link swapped in is not followed
        hash_file(link)


def test_an_unreadable_file_with_a_control_character_in_its_name_stays_indexed(tmp_path, fake_embedder, monkeypatch):
    import ingest.walk as walk

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("Good text here.", encoding="utf-8")
    (docs / "tab\there.txt").write_text("Tabbed name text.", encoding="utf-8")
    settings = load_settings(index=tmp_path / "index")
    ingest_folder(docs, settings, embedder=fake_embedder)
    real = walk.hash_file

    def denied(path, *args):
        if "tab" in path.name:
            raise PermissionError(13, "Permission denied")
        return real(path, *args)

    (docs / "tab\there.txt").write_text("Changed text.", encoding="utf-8")
    monkeypatch.setattr(walk, "hash_file", denied)
    report = ingest_folder(docs, settings, embedder=fake_embedder)
    assert [s for s, _ in report.failed] == ["tab\there.txt"] and report.removed == []
    with IndexStore.open(settings.index) as store:
        assert sorted(store.files()) == ["good.txt", "tab\there.txt"]

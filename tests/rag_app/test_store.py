"""The index store on its own: round trip, atomic commit, lock, generations, model mismatch."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rag_app.errors import EmbeddingMismatchError, IndexCorruptError, IndexLockedError, IndexNotFoundError, IndexWriteError
from rag_app.store import Chunk, IndexStore, IndexWriter, Manifest, chunk_id, index_exists

DIM = 8
CHUNKING = {"chunk_size": 100, "chunk_overlap": 10, "chunk_unit": "chars"}


def _manifest(model: str = "m1") -> Manifest:
    return Manifest(embedding_model=model, dim=DIM, chunking=dict(CHUNKING))


def _file(source: str, texts: list[str], seed: int) -> tuple[list[Chunk], np.ndarray]:
    chunks, start = [], 0
    for i, text in enumerate(texts):
        cid = chunk_id(source, text, start, CHUNKING)
        chunks.append(Chunk(cid, text, source, Path(source).stem, i, None, None, start, start + len(text)))
        start += len(text) + 1
    vectors = np.random.default_rng(seed).normal(size=(len(texts), DIM)).astype(np.float32)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _write(index: Path, files: dict[str, tuple[list[Chunk], np.ndarray]], remove=(), model="m1", rebuild=False):
    with IndexWriter(index, _manifest(model), rebuild=rebuild) as w:
        for source in remove:
            w.remove_file(source)
        for source, (chunks, vectors) in files.items():
            w.add_file(source, f"sha-{source}-{len(chunks)}", 100, chunks, vectors)
        return w.commit()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    path = tmp_path / "index"
    _write(path, {"a.txt": _file("a.txt", ["alpha one", "alpha two"], 1), "b.txt": _file("b.txt", ["beta"], 2)})
    return path


def test_chunk_id_is_a_stable_positive_int63() -> None:
    a = chunk_id("a.txt", "hello", 0, CHUNKING)
    assert a == chunk_id("a.txt", "hello", 0, dict(reversed(list(CHUNKING.items()))))
    assert 0 <= a < 2**63
    assert len({a, chunk_id("a.txt", "hello", 1, CHUNKING), chunk_id("b.txt", "hello", 0, CHUNKING),
                chunk_id("a.txt", "hello", 0, {**CHUNKING, "chunk_size": 200})}) == 4  # fmt: skip


def test_round_trip_search_and_metadata(index: Path) -> None:
    chunks, vectors = _file("a.txt", ["alpha one", "alpha two"], 1)
    with IndexStore.open(index, embedding_model="m1") as store:
        assert len(store) == 3 and store.manifest.documents == 2 and store.manifest.generation == 1
        scores, ids = store.search(vectors, k=2)
        assert ids[:, 0].tolist() == [c.id for c in chunks]
        np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
        assert store.get_chunks([chunks[1].id, -1, chunks[0].id]) == [chunks[1], chunks[0]]
        np.testing.assert_allclose(store.get_vectors([chunks[0].id]), vectors[:1], rtol=1e-6)
        assert set(store.files()) == {"a.txt", "b.txt"} and store.files()["a.txt"].n_chunks == 2
        retriever, bm25_ids = store.bm25()
        assert sorted(bm25_ids.tolist()) == sorted(c.id for c in store.iter_chunks())
        assert store.info()["chunks"] == 3


def test_missing_index_and_wrong_model_are_clear_errors(tmp_path: Path, index: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag ingest DIR"):
        IndexStore.open(tmp_path / "nowhere")
    with pytest.raises(EmbeddingMismatchError, match="built with embedding model 'm1'"):
        IndexStore.open(index, embedding_model="m2")
    with pytest.raises(EmbeddingMismatchError, match="--rebuild"):
        _write(index, {"c.txt": _file("c.txt", ["gamma"], 3)}, model="m2")
    manifest = _write(index, {"c.txt": _file("c.txt", ["gamma"], 3)}, model="m2", rebuild=True)
    assert (manifest.embedding_model, manifest.documents) == ("m2", 1)


def test_replacing_and_removing_files(index: Path) -> None:
    new = _file("a.txt", ["alpha three"], 4)
    _write(index, {"a.txt": new}, remove=["b.txt"])
    with IndexStore.open(index) as store:
        assert [c.text for c in store.iter_chunks()] == ["alpha three"]
        assert store.faiss_index.ntotal == 1 and set(store.files()) == {"a.txt"}


def test_leaving_without_commit_changes_nothing(index: Path) -> None:
    with IndexWriter(index, _manifest()) as w:
        w.remove_file("a.txt")
    with IndexStore.open(index) as store:
        assert len(store) == 3 and store.manifest.generation == 1
    assert sorted(p.name for p in index.glob("gen-*")) == ["gen-000001"]


@pytest.mark.parametrize("target", ["faiss.write_index", "IndexWriter._build_bm25", "Manifest.write"])
def test_crash_during_commit_keeps_the_old_generation(index: Path, monkeypatch, target: str) -> None:
    probe = _file("a.txt", ["alpha one", "alpha two"], 1)[1]
    with IndexStore.open(index) as store:
        before = store.search(probe, 3)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    if target == "faiss.write_index":
        import faiss

        monkeypatch.setattr(faiss, "write_index", boom)
    else:
        owner, name = target.split(".")
        monkeypatch.setattr({"IndexWriter": IndexWriter, "Manifest": Manifest}[owner], name, boom)
    raised = IndexWriteError if target == "faiss.write_index" else RuntimeError  # faiss's errors are its writes failing
    with pytest.raises(raised, match="disk on fire"):
        _write(index, {"c.txt": _file("c.txt", ["gamma"], 3)}, remove=["a.txt"])
    monkeypatch.undo()
    with IndexStore.open(index) as store:
        after = store.search(probe, 3)
        assert store.manifest.generation == 1 and set(store.files()) == {"a.txt", "b.txt"}
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    assert sorted(p.name for p in index.glob("gen-*")) == ["gen-000001"]
    assert _write(index, {"c.txt": _file("c.txt", ["gamma"], 3)}).generation == 2  # lock released


def test_a_second_writer_is_refused_while_one_holds_the_lock(index: Path) -> None:
    with IndexWriter(index, _manifest()):
        with pytest.raises(IndexLockedError, match="another process is writing"):
            IndexWriter(index, _manifest()).__enter__()
    with IndexWriter(index, _manifest()) as w:  # free again
        assert set(w.files()) == {"a.txt", "b.txt"}


def test_old_generations_are_pruned_and_a_reader_survives_one_commit(index: Path) -> None:
    reader = IndexStore.open(index)
    _write(index, {"c.txt": _file("c.txt", ["gamma"], 3)})
    assert reader.is_stale() and len(reader) == 3  # still reads its own snapshot
    reader.search(_file("b.txt", ["beta"], 2)[1], 1)
    reader.close()
    _write(index, {"d.txt": _file("d.txt", ["delta"], 5)})
    assert sorted(p.name for p in index.glob("gen-*")) == ["gen-000002", "gen-000003"]
    assert (index / "CURRENT").read_text() == "gen-000003" and index_exists(index)


def test_unreadable_manifest_is_reported_as_corrupt(index: Path) -> None:
    (index / "gen-000001" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="--rebuild"):
        IndexStore.open(index)


def test_manifest_records_how_the_index_was_made(index: Path) -> None:
    data = json.loads((index / "gen-000001" / "manifest.json").read_text(encoding="utf-8"))
    assert data["embedding_model"] == "m1" and data["dim"] == DIM and data["chunking"] == CHUNKING
    assert data["schema_version"] >= 1 and data["created"] and data["updated"]


# ---------------------------------------------------------------- a full disk: one line, the old generation served


def _assert_old_index_served(index: Path) -> None:
    with IndexStore.open(index) as store:
        assert store.manifest.generation == 1 and set(store.files()) == {"a.txt", "b.txt"}
        assert sorted(c.text for c in store.iter_chunks()) == ["alpha one", "alpha two", "beta"]
    assert sorted(p.name for p in index.iterdir() if p.name != ".lock") == ["CURRENT", "gen-000001"]  # no .tmp left


def _assert_disk_full_line(err: pytest.ExceptionInfo, index: Path) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"the disk is full at {index}, ") and " free;" in message
    assert "the previous index is still served" in message


@pytest.mark.parametrize("how", ["faiss says so", "/dev/full"])
def test_full_disk_while_faiss_writes_keeps_the_old_index(index: Path, monkeypatch, how: str) -> None:
    import faiss

    real = faiss.write_index
    if how == "/dev/full":  # a real ENOSPC from faiss's own fwrite (the index must outgrow stdio's buffer)
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full here")
        monkeypatch.setattr(faiss, "write_index", lambda idx, _path: real(idx, "/dev/full"))
    else:
        def full(*_args):
            raise RuntimeError("Error in faiss::FileIOWriter::operator() at impl/io.cpp:105: "
                               "write error in vectors.faiss: 0 != 4096 (No space left on device)")

        monkeypatch.setattr(faiss, "write_index", full)
    big = _file("c.txt", [f"gamma {i}" for i in range(600)], 3)
    with pytest.raises(IndexWriteError) as err:
        _write(index, {"c.txt": big})
    _assert_disk_full_line(err, index)
    _assert_old_index_served(index)
    monkeypatch.undo()
    assert _write(index, {"c.txt": big}).generation == 2  # space again: the next run commits


def test_sqlite_full_disk_while_adding_keeps_the_old_index(index: Path) -> None:
    with pytest.raises(IndexWriteError) as err:
        with IndexWriter(index, _manifest()) as w:
            pages = w._db.execute("PRAGMA page_count").fetchone()[0]
            w._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
            w.add_file("c.txt", "sha", 100, *_file("c.txt", ["gamma " * 20_000], 3))
    _assert_disk_full_line(err, index)
    _assert_old_index_served(index)


class _FullDisk:
    """A connection whose commit meets a full disk (sqlite3.Connection's methods cannot be patched)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name: str):
        return getattr(self._db, name)

    def commit(self) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def test_sqlite_full_disk_at_commit_keeps_the_old_index(index: Path) -> None:
    with pytest.raises(IndexWriteError) as err:
        with IndexWriter(index, _manifest()) as w:
            w.add_file("c.txt", "sha", 100, *_file("c.txt", ["gamma"], 3))
            w._db = _FullDisk(w._db)
            w.commit()
    _assert_disk_full_line(err, index)
    _assert_old_index_served(index)


def test_a_first_build_that_fails_to_write_says_no_index_was_written(tmp_path: Path, monkeypatch) -> None:
    def broken(*_args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Manifest, "write", broken)
    with pytest.raises(IndexWriteError, match=r"writing the index at .* failed \(Input/output error, .* free\); "
                                              r"no index was written; check the disk"):
        _write(tmp_path / "index", {"a.txt": _file("a.txt", ["alpha"], 1)})
    assert not index_exists(tmp_path / "index")


@pytest.mark.parametrize("err", [PermissionError(errno.EACCES, "Permission denied"),
                                 PermissionError(errno.EPERM, "Operation not permitted"),
                                 RuntimeError("Error in faiss::FileIOWriter: could not open vectors.faiss for writing: "
                                              "Permission denied")])
def test_a_permission_error_says_the_index_directory_is_not_writable(index: Path, monkeypatch, err) -> None:
    import faiss

    def denied(*_args):
        raise err

    monkeypatch.setattr(faiss, "write_index", denied)
    with pytest.raises(IndexWriteError) as raised:
        _write(index, {"c.txt": _file("c.txt", ["gamma"], 3)})
    assert str(raised.value) == (f"the index directory {index} is not writable; the previous index is still served; "
                                 "choose a writable --index")  # not "check the disk": the disk is fine
    _assert_old_index_served(index)


def test_create_durably_never_replaces_a_file_and_takes_back_a_failed_write(tmp_path: Path, monkeypatch) -> None:
    from rag_app.store import create_durably

    path = tmp_path / "note.txt"
    assert create_durably(path, b"first") and path.read_bytes() == b"first"
    assert not create_durably(path, b"second") and path.read_bytes() == b"first"  # the name was taken
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # what new files get, not a temp file's 0600

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        create_durably(tmp_path / "half.txt", b"half")
    assert not (tmp_path / "half.txt").exists()


@pytest.mark.parametrize("unique_tmp", [False, True])
def test_write_durably_replaces_whole_and_leaves_no_temp_file(tmp_path: Path, monkeypatch, unique_tmp: bool) -> None:
    from rag_app.store import write_durably

    path = tmp_path / "CURRENT"
    write_durably(path, b"gen-000001", unique_tmp=unique_tmp)
    write_durably(path, b"gen-000002", unique_tmp=unique_tmp)
    assert path.read_bytes() == b"gen-000002"

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_durably(path, b"gen-000003", unique_tmp=unique_tmp)
    assert path.read_bytes() == b"gen-000002" and [p.name for p in tmp_path.iterdir()] == ["CURRENT"]

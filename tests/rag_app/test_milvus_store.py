"""The Milvus store against a real Milvus Lite server process that these tests start and stop.

Same contract as the FAISS folder (rag_app.store_protocol): content hashes,
deletes, the embedding-model check, hybrid retrieval, and atomic commits,
including an ingest killed with SIGKILL half-way.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FakeEmbedder
from helpers import run_main

pytest.importorskip("pymilvus", reason="the milvus extra is not installed: pip install -e '.[dev]'")
pytest.importorskip("milvus_lite", reason="the milvus extra is not installed: pip install -e '.[dev]'")

from ingest.pipeline import ingest_folder  # noqa: E402
from rag_app.config import load_settings  # noqa: E402
from rag_app.errors import EmbeddingMismatchError, IndexLockedError  # noqa: E402
from rag_app.milvus_store import connect, local_server  # noqa: E402
from rag_app.retriever import Retriever  # noqa: E402
from rag_app.store_protocol import ChunkStore, StoreWriter, open_store, open_writer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCS = {
    "rhine.txt": "The Rhine flows from the Swiss Alps into the North Sea at Rotterdam.",
    "moon.md": "# Moon\n\nApollo 11 landed on the Moon in July 1969 with Armstrong and Aldrin.",
    "parts.txt": "Spare part XJ9000 is the blue valve of the cooling pump.",
    "tea.txt": "Green tea is steamed or pan fired soon after picking to stop oxidation.",
}


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    with local_server(tmp_path_factory.mktemp("milvus") / "data") as uri:
        yield uri


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def settings(milvus_uri, tmp_path: Path, request):
    """Milvus settings with a collection of this test's own (one server serves the module)."""
    name = re.sub(r"\W", "_", request.node.name)[:60]
    return load_settings(index=tmp_path / "idx", store={"backend": "milvus", "uri": milvus_uri, "collection": name})


def _sources(settings) -> set[str]:
    with open_store(settings, embedding_model="fake-embedder") as store:
        return set(store.files())


def _top(store, query: str, mode: str) -> list[str]:
    retriever = Retriever(store, FakeEmbedder(), load_settings(retrieve={"mode": mode}).retrieve)
    return [hit.chunk.source for hit in retriever.retrieve(query, k=2)]


pytestmark = pytest.mark.slow  # a server process and a few ingests: seconds each


def test_ingest_serves_dense_bm25_and_hybrid_like_the_faiss_store(settings, docs: Path, tmp_path: Path) -> None:
    ingest_folder(docs, settings, embedder=FakeEmbedder())
    faiss_settings = load_settings(index=tmp_path / "faiss")
    ingest_folder(docs, faiss_settings, embedder=FakeEmbedder())
    with open_store(settings, embedding_model="fake-embedder") as mv, open_store(faiss_settings) as fs:
        assert isinstance(mv, ChunkStore)
        assert len(mv) == len(fs) == 4 and mv.files().keys() == fs.files().keys()
        assert {k: v.sha256 for k, v in mv.files().items()} == {k: v.sha256 for k, v in fs.files().items()}
        for query in ("Where does the Rhine flow into the sea?", "When did Apollo 11 land on the Moon?"):
            assert _top(mv, query, "dense") == _top(fs, query, "dense")
        assert _top(mv, "XJ9000", "bm25")[:1] == ["parts.txt"] == _top(fs, "XJ9000", "bm25")[:1]
        assert _top(mv, "blue valve XJ9000", "hybrid")[0] == "parts.txt"
        assert mv.search_text("zzzunknownword", 5) == []
        assert [c.source for c in mv.iter_chunks(source="moon.md")] == ["moon.md"]


def test_rerun_embeds_only_changed_files_and_drops_deleted_ones(settings, docs: Path) -> None:
    embedder = FakeEmbedder()
    ingest_folder(docs, settings, embedder=embedder)
    again = ingest_folder(docs, settings, embedder=embedder)
    assert not again.committed and embedder.calls == 1

    (docs / "tea.txt").write_text("Black tea is fully oxidised before drying.", encoding="utf-8")
    (docs / "parts.txt").unlink()
    report = ingest_folder(docs, settings, embedder=embedder)
    assert (report.updated, report.removed, sorted(report.unchanged)) == (["tea.txt"], ["parts.txt"], ["moon.md", "rhine.txt"])
    assert report.chunks_embedded == 1
    with open_store(settings, embedding_model="fake-embedder") as store:
        assert set(store.files()) == {"moon.md", "rhine.txt", "tea.txt"} and len(store) == 3
        assert store.search_text("XJ9000 valve", 5) == []  # the deleted file's chunks are gone
        assert [c.text for c in store.iter_chunks(source="tea.txt")] == ["Black tea is fully oxidised before drying."]
        assert store.manifest.generation == 2


def test_another_embedding_model_is_refused_with_the_faiss_stores_line(settings, docs: Path, tmp_path: Path) -> None:
    ingest_folder(docs, settings, embedder=FakeEmbedder())
    faiss_settings = load_settings(index=tmp_path / "faiss")
    ingest_folder(docs, faiss_settings, embedder=FakeEmbedder())
    lines = []
    for s, where in ((settings, f"store {settings.store.uri} collection {settings.store.collection}"),
                     (faiss_settings, f"index {faiss_settings.index}")):
        with pytest.raises(EmbeddingMismatchError) as err:
            open_store(s, embedding_model="other-model")
        lines.append(str(err.value).replace(where, "WHERE"))
    assert lines[0] == lines[1] == (
        "WHERE was built with embedding model 'fake-embedder' but 'other-model' is configured; "
        "set embedding_model = 'fake-embedder' or rebuild with: rag ingest DIR --rebuild")

    other = FakeEmbedder()
    other.model_name = "other-model"
    with pytest.raises(EmbeddingMismatchError):
        ingest_folder(docs, settings, embedder=other)
    assert ingest_folder(docs, settings, embedder=other, rebuild=True).committed


class _FailingEmbedder(FakeEmbedder):
    def embed_documents(self, texts, batch_size=32):
        if self.calls >= 1:
            raise RuntimeError("embedder died")
        return super().embed_documents(texts, batch_size)


def test_a_failed_ingest_leaves_the_previous_generation_served(settings, docs: Path) -> None:
    ingest_folder(docs, settings, embedder=FakeEmbedder())
    for name in ("new1.txt", "new2.txt"):
        (docs / name).write_text(f"{name} talks about zeppelins.", encoding="utf-8")
    (docs / "rhine.txt").unlink()
    tiny = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"embed_batch_size": 1})})
    with pytest.raises(RuntimeError, match="embedder died"):
        ingest_folder(docs, tiny, embedder=_FailingEmbedder())  # one batch staged, then it fails
    assert _sources(settings) == set(DOCS)
    with open_store(settings, embedding_model="fake-embedder") as store:
        assert _top(store, "Where does the Rhine flow?", "dense")[0] == "rhine.txt"
    client = connect(settings.store)
    left = [c for c in client.list_collections() if c.startswith(settings.store.collection)]
    client.close()
    assert left == [f"{settings.store.collection}_g000001", f"{settings.store.collection}_g000001_meta"]


def test_an_ingest_killed_with_sigkill_leaves_the_previous_content_served(settings, docs: Path, tmp_path: Path) -> None:
    ingest_folder(docs, settings, embedder=FakeEmbedder())
    for i in range(4):
        (docs / f"new{i}.txt").write_text(f"Zeppelin number {i} flew over the lake.", encoding="utf-8")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from conftest import FakeEmbedder
        from rag_app.config import load_settings
        from ingest.pipeline import ingest_folder

        class Killed(FakeEmbedder):
            def embed_documents(self, texts, batch_size=32):
                if self.calls >= 2:  # two batches are in the staged generation by now
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().embed_documents(texts, batch_size)

        s = load_settings(index={str(tmp_path / "idx")!r}, ingest={{"embed_batch_size": 1}},
                          store={{"backend": "milvus", "uri": {settings.store.uri!r},
                                  "collection": {settings.store.collection!r}}})
        ingest_folder({str(docs)!r}, s, embedder=Killed())
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _sources(settings) == set(DOCS)  # the old content still answers
    with open_store(settings, embedding_model="fake-embedder") as store:
        assert store.manifest.generation == 1 and store.search_text("zeppelin", 5) == []
    report = ingest_folder(docs, settings, embedder=FakeEmbedder())  # the dead writer's lock is taken over
    assert report.committed and sorted(report.added) == [f"new{i}.txt" for i in range(4)]
    assert _sources(settings) == set(DOCS) | {f"new{i}.txt" for i in range(4)}


def test_a_second_writer_is_refused_while_one_writes(settings, docs: Path) -> None:
    ingest_folder(docs, settings, embedder=FakeEmbedder())
    with open_store(settings) as store:
        manifest = store.manifest
    with open_writer(settings, manifest) as first:
        assert isinstance(first, StoreWriter)
        with pytest.raises(IndexLockedError, match="another process .* is writing to store .*; wait for it"):
            open_writer(settings, manifest).__enter__()
    with open_writer(settings, manifest) as again:  # released on the way out
        assert set(again.files()) == set(DOCS)


def test_a_reader_keeps_its_snapshot_across_a_commit(settings, docs: Path) -> None:
    ingest_folder(docs, settings, embedder=FakeEmbedder())
    with open_store(settings, embedding_model="fake-embedder") as old:
        (docs / "moon.md").unlink()
        ingest_folder(docs, settings, embedder=FakeEmbedder())
        assert old.is_stale() and "moon.md" in old.files()  # the previous generation is kept for it
        assert [c.source for c in old.get_chunks(list(old.search(FakeEmbedder().embed_query("Apollo Moon"), 1)[1][0]))] == ["moon.md"]
    assert "moon.md" not in _sources(settings)


@pytest.mark.parametrize("command", [["index-info"], ["ingest", "docs"]])
def test_an_unreachable_store_is_one_line(command, docs: Path, monkeypatch, capsys, fake_embedder) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(docs.parent)
    monkeypatch.setenv("RAG_STORE__BACKEND", "milvus")
    monkeypatch.setenv("RAG_STORE__URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("RAG_STORE__TIMEOUT_S", "2")
    monkeypatch.setattr("rag_app.embeddings.load_embedder", lambda name: fake_embedder)
    code, out, err = run_main(monkeypatch, capsys, *command)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"Error: cannot reach the Milvus store at http://127.0.0.1:{port} (Fail connecting to server on "
        f"127.0.0.1:{port}, illegal connection params or server unavailable); start it (milvus-lite server "
        f"--data-dir DIR --port PORT, or your Milvus cluster) or set store.uri"
    ]

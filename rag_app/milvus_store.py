"""The store contract on a Milvus server: for corpora that several app instances share.

Why Milvus: its client (``pymilvus.MilvusClient``) speaks one API to Milvus
Lite's server on one machine and to Milvus Standalone or Distributed on a
cluster, and the engine does BM25 itself (a schema function), so hybrid
retrieval needs no second index beside it. docs/SCALING.md says why this and
not pgvector, Qdrant or LanceDB.

What "atomic" means here. Readers follow one alias, ``<collection>``. A
writer fills a fresh generation: the chunks collection ``<collection>_g<n>``
and its ``<collection>_g<n>_meta`` (manifest + one content-hash row per
file). Only once both are flushed, counted and loaded does it move the alias
(``alter_alias``: one metadata operation on the server). A writer that dies
before that (an exception, Ctrl-C, SIGKILL) leaves the alias on the previous
generation, which nobody writes to: the old content is still served, whole.
The next writer drops what the dead one staged. Like the FAISS store, a new
generation starts as a copy of the live one (vectors are copied, not
re-embedded) and the previous generation is kept for readers that opened it.

The writer (:mod:`rag_app.milvus_writer`) is one at a time: a lock collection ``<collection>_lock`` whose creation
is the test-and-set (the server refuses a second collection of that name).
It holds the owner (host, pid) and a heartbeat; a lock whose owner is a dead
pid on this host, or whose heartbeat is older than :data:`LOCK_TTL_S`, was
left by a killed writer and is taken over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_app.errors import IndexCorruptError, IndexNotFoundError, StoreUnreachableError
from rag_app.store import SCHEMA_VERSION, Chunk, FileRecord, Manifest, check_embedding_model

if TYPE_CHECKING:
    from rag_app.config import StoreConfig

log = logging.getLogger(__name__)

LOCK_TTL_S = 600.0  # a writer refreshes its heartbeat on every file it adds; one silent this long is dead
_BATCH = 1000  # rows per insert / query page: well under the server's 64 MB message limit
_CHUNK_FIELDS = ["id", "text", "source", "doc_id", "ordinal", "page", "heading", "start", "end"]
_TEXT_MAX = 65535  # VARCHAR max_length (bytes): a chunk is a few thousand characters at most
# BM25 analysis. The stemmer is a Milvus server filter; Milvus Lite ignores it and applies the stop words.
_ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stemmer", "language": "english"}]}


def connect(cfg: StoreConfig) -> Any:
    """A ``MilvusClient`` for ``store.uri``, or one :class:`StoreUnreachableError` line."""
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # it logs every refused call with a traceback
    from pymilvus import MilvusClient

    try:
        return MilvusClient(uri=cfg.uri, token=cfg.token, timeout=cfg.timeout_s)
    except Exception as err:
        raise _unreachable(cfg, err) from None


def _unreachable(cfg: StoreConfig, err: BaseException) -> StoreUnreachableError:
    reason = str(getattr(err, "message", "") or err).strip().split("\n")[0][:160]
    return StoreUnreachableError(
        f"cannot reach the Milvus store at {cfg.uri} ({reason}); start it (milvus-lite server --data-dir DIR "
        f"--port PORT, or your Milvus cluster) or set store.uri"
    )


@contextlib.contextmanager
def _calls(cfg: StoreConfig) -> Iterator[None]:
    """A server that stopped answering mid-way is the same one line as one never reached."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as err:
        text = str(err).lower()
        if "connect" in text or "unavailable" in text or "deadline" in text:
            raise _unreachable(cfg, err) from None
        raise


def _live_collection(client: Any, alias: str) -> str | None:
    if alias not in client.list_aliases().get("aliases", []):
        return None
    return client.describe_alias(alias)["collection_name"]


def _quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(value, ensure_ascii=False)


def _where(cfg: StoreConfig) -> str:
    return f"store {cfg.uri} collection {cfg.collection}"


def milvus_store_exists(cfg: StoreConfig) -> bool:
    client = connect(cfg)
    try:
        with _calls(cfg):
            return _live_collection(client, cfg.collection) is not None
    finally:
        client.close()


def _read_meta(client: Any, meta: str) -> tuple[Manifest, dict[str, FileRecord]]:
    manifest: Manifest | None = None
    files: dict[str, FileRecord] = {}
    for row in _scan(client, meta, "key != ''", ["key", "value"]):
        value = json.loads(row["value"])
        if row["key"] == "manifest":
            manifest = Manifest(**value)
        else:
            files[value["source"]] = FileRecord(**value)
    if manifest is None:
        raise IndexCorruptError(f"{meta} holds no manifest; rebuild with: rag ingest DIR --rebuild")
    return manifest, files


def _scan(client: Any, collection: str, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    """Every row matching ``expr``, a page at a time."""
    it = client.query_iterator(collection, batch_size=_BATCH, filter=expr, output_fields=fields)
    try:
        while page := it.next():
            yield from page
    finally:
        it.close()


def _chunk(row: dict[str, Any]) -> Chunk:
    return Chunk(**{f: row.get(f) for f in _CHUNK_FIELDS})


class MilvusStore:
    """A read-only snapshot of one generation, pinned to its collection (not the alias).

    Example::

        store = MilvusStore.open(settings.store, embedding_model="sentence-transformers/all-MiniLM-L6-v2")
        scores, ids = store.search(query_vectors, k=4)
    """

    def __init__(self, cfg: StoreConfig, client: Any, collection: str, manifest: Manifest) -> None:
        self.cfg, self.client, self.collection, self.manifest = cfg, client, collection, manifest
        self.index_dir = _where(cfg)  # named in messages where the FAISS store names its folder

    @classmethod
    def open(cls, cfg: StoreConfig, embedding_model: str | None = None) -> MilvusStore:
        """Open the live generation.

        Raises:
            StoreUnreachableError: the server does not answer.
            IndexNotFoundError: nothing ingested into ``store.collection`` yet.
            EmbeddingMismatchError: built with another embedding model.
        """
        client = connect(cfg)
        try:
            with _calls(cfg):
                collection = _live_collection(client, cfg.collection)
                if collection is None:
                    raise IndexNotFoundError(
                        f"no index in {_where(cfg)}; build one with: rag ingest DIR (with store.backend = milvus)"
                    )
                manifest, _ = _read_meta(client, f"{collection}_meta")
            if manifest.schema_version != SCHEMA_VERSION:
                raise IndexCorruptError(f"{_where(cfg)} has schema version {manifest.schema_version}, this rag_app "
                                        f"reads {SCHEMA_VERSION}; rebuild it with: rag ingest DIR --rebuild")
            check_embedding_model(_where(cfg), manifest, embedding_model)
        except BaseException:
            client.close()
            raise
        return cls(cfg, client, collection, manifest)

    def __len__(self) -> int:
        return self.manifest.chunks

    def is_stale(self) -> bool:
        with _calls(self.cfg):
            return _live_collection(self.client, self.cfg.collection) != self.collection

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.manifest.dim)
        scores = np.zeros((len(vectors), k), np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        if not len(self) or not len(vectors):
            return scores, ids
        with _calls(self.cfg):
            hits = self.client.search(self.collection, data=vectors.tolist(), anns_field="vector", limit=k,
                                      search_params={"metric_type": "IP", "params": {"ef": max(self.cfg.search_ef, k)}})
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                ids[row, col], scores[row, col] = hit["id"], hit["distance"]
        return scores, ids

    def search_text(self, query: str, k: int) -> list[tuple[int, float]]:
        """The engine's BM25 over the chunk texts (Milvus Lite returns it negated: the magnitude is the score)."""
        if not query.strip() or k < 1 or not len(self):
            return []
        with _calls(self.cfg):
            hits = self.client.search(self.collection, data=[query], anns_field="sparse", limit=k,
                                      search_params={"metric_type": "BM25"})
        return [(int(h["id"]), abs(float(h["distance"]))) for h in hits[0] if h["distance"]]

    def _rows(self, ids: Sequence[int], fields: list[str]) -> dict[int, dict[str, Any]]:
        wanted = list(dict.fromkeys(int(i) for i in ids if int(i) >= 0))
        out: dict[int, dict[str, Any]] = {}
        with _calls(self.cfg):
            for b in range(0, len(wanted), _BATCH):
                for row in self.client.query(self.collection, ids=wanted[b : b + _BATCH], output_fields=fields):
                    out[int(row["id"])] = row
        return out

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        rows = self._rows(ids, ["id", "vector"])
        if not len(ids):
            return np.zeros((0, self.manifest.dim), np.float32)
        return np.asarray([rows[int(i)]["vector"] for i in ids], np.float32)

    def get_chunks(self, ids: Sequence[int]) -> list[Chunk]:
        rows = self._rows(ids, _CHUNK_FIELDS)
        return [_chunk(rows[int(i)]) for i in ids if int(i) in rows]

    def iter_chunks(self, source: str | None = None, doc_id: str | None = None) -> Iterator[Chunk]:
        """All chunks (or one file's, or one doc id's) in file then position order (sorted here, so held in memory)."""
        expr = f"source == {_quote(source)}" if source is not None else (
            f"doc_id == {_quote(doc_id)}" if doc_id is not None else "id >= 0")
        with _calls(self.cfg):
            rows = list(_scan(self.client, self.collection, expr, _CHUNK_FIELDS))
        yield from sorted((_chunk(r) for r in rows), key=lambda c: (c.source, c.ordinal))

    def files(self) -> dict[str, FileRecord]:
        with _calls(self.cfg):
            return _read_meta(self.client, f"{self.collection}_meta")[1]

    def doc_ids(self) -> set[str]:
        with _calls(self.cfg):
            return {r["doc_id"] for r in _scan(self.client, self.collection, "id >= 0", ["doc_id"])}

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {"index": f"{self.cfg.uri} {self.collection} (alias {self.cfg.collection})", "documents": m.documents,
                "chunks": m.chunks, "embedding_model": m.embedding_model, "dim": m.dim, "chunking": m.chunking,
                "source_dir": m.source_dir, "size_mb": round(m.chunks * m.dim * 4 / 1e6, 2),  # vectors only
                "created": m.created, "updated": m.updated, "generation": m.generation}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def local_server(data_dir: str | Path, port: int = 0, host: str = "127.0.0.1", wait_s: float = 60.0) -> Iterator[str]:
    """Run Milvus Lite's gRPC server (``milvus-lite server``) as a child process; yields its ``http://`` uri.

    For tests and benchmarks: a real server process the client reaches over
    the network, as it would a cluster. ``port`` 0 picks a free one. The
    server is stopped (SIGTERM, then SIGKILL) when the block ends.

    Raises:
        StoreUnreachableError: it exited or did not listen within ``wait_s``.
    """
    if not port:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    log_path = Path(data_dir).with_name(Path(data_dir).name + ".log")
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--host", host, "--port", str(port)],
            stdout=log_fh, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + wait_s
        while True:
            with socket.socket() as s:
                if s.connect_ex((host, port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise StoreUnreachableError(f"milvus-lite server did not start on {host}:{port}: {tail[0]}")
            time.sleep(0.1)
        yield f"http://{host}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""The store contract that ingest and retrieval use, and which store a setting picks.

Why a Protocol: the FAISS folder (:mod:`rag_app.store`) is the embedded
default, and a vector database server (:mod:`rag_app.milvus_store`) stands in
for corpora that several app instances share. Ingest and the retriever type
against these two protocols only, so neither knows which one it has. The
contract, as ingest and retrieval actually use it:

* a **manifest** (embedding model, dimension, chunking, generation) read
  before anything else; opening with another embedding model is one
  :class:`~rag_app.errors.EmbeddingMismatchError` line;
* per-file **content hashes** (:class:`~rag_app.store.FileRecord`), so a
  re-run embeds only new or changed files, and **deletes** of a file's chunks;
* **dense** inner-product search over unit vectors, and **full-text** (BM25)
  search over the same chunks, for hybrid retrieval;
* **atomic** writes: a writer stages a whole new generation and makes it live
  in one step; a writer that dies first leaves the previous one served.

Example::

    with open_writer(settings, manifest) as w:
        w.add_file("a.txt", sha, size, chunks, vectors)
        w.commit()
    with open_store(settings, embedding_model=manifest.embedding_model) as store:
        scores, ids = store.search(qvecs, k=5)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from rag_app.config import Settings
    from rag_app.store import Chunk, FileRecord, Manifest


@runtime_checkable
class ChunkStore(Protocol):
    """A read-only snapshot of one generation: what the retriever, the UI and ingest's planning read."""

    manifest: Manifest

    def __len__(self) -> int: ...  # chunks in this generation

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) float32 unit queries -> scores (n, k) float32 and chunk ids (n, k) int64, -1 padded."""
        ...

    def search_text(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to ``k`` (chunk id, BM25 score) best first; only chunks sharing a term with ``query``."""
        ...

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray: ...  # (len(ids), dim) float32, for MMR

    def get_chunks(self, ids: Sequence[int]) -> list[Chunk]: ...  # in the order of ids; unknown ids dropped

    def iter_chunks(self, source: str | None = None, doc_id: str | None = None) -> Iterator[Chunk]: ...

    def files(self) -> dict[str, FileRecord]: ...  # source -> content hash record

    def doc_ids(self) -> set[str]: ...

    def is_stale(self) -> bool: ...  # a newer generation was committed since this snapshot opened

    def info(self) -> dict[str, Any]: ...  # what `rag index-info` prints

    def close(self) -> None: ...

    def __enter__(self) -> ChunkStore: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class StoreWriter(Protocol):
    """The single writer of a store: stage changes in a new generation, then :meth:`commit` it.

    Leaving the ``with`` block without a commit (an exception, Ctrl-C, a
    killed process) must leave the previous generation live and unchanged.
    """

    manifest: Manifest

    def files(self) -> dict[str, FileRecord]: ...  # the staged state, read under the writer's lock

    def remove_file(self, source: str) -> int: ...  # chunks dropped

    def add_file(self, source: str, sha256: str, size: int, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def commit(self) -> Manifest: ...

    def __enter__(self) -> StoreWriter: ...

    def __exit__(self, *exc: object) -> None: ...


def store_exists(settings: Settings) -> bool:
    """Whether the configured store has a live generation (no model loaded, nothing written)."""
    if settings.store.backend == "milvus":
        from rag_app.milvus_store import milvus_store_exists

        return milvus_store_exists(settings.store)
    from rag_app.store import index_exists

    return index_exists(settings.index)


def open_store(settings: Settings, embedding_model: str | None = None) -> ChunkStore:
    """Open the live generation of the configured store (``store.backend``).

    Raises:
        IndexNotFoundError: nothing ingested there yet.
        EmbeddingMismatchError: built with another embedding model than ``embedding_model``.
        StoreUnreachableError: the store server does not answer (server backends).
    """
    if settings.store.backend == "milvus":
        from rag_app.milvus_store import MilvusStore

        return MilvusStore.open(settings.store, embedding_model=embedding_model)
    from rag_app.store import IndexStore

    return IndexStore.open(settings.index, embedding_model=embedding_model)


def open_writer(settings: Settings, manifest: Manifest, rebuild: bool = False) -> StoreWriter:
    """The writer of the configured store; use it as a context manager."""
    if settings.store.backend == "milvus":
        from rag_app.milvus_writer import MilvusWriter

        return MilvusWriter(settings.store, manifest, rebuild=rebuild)
    from rag_app.store import IndexWriter

    return IndexWriter(settings.index, manifest, rebuild=rebuild)

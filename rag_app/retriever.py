"""Retrieval: dense (cosine), BM25, hybrid (reciprocal rank fusion), MMR, rerank.

Why hybrid: a dense embedder like MiniLM matches meaning but blurs exact
tokens (a part number, a rare name); BM25 matches those exactly. Reciprocal
rank fusion combines the two rankings without having to calibrate their
scores against each other. Every result keeps its dense cosine score, because
the pipeline's "no good source" threshold is defined on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_app.config import RetrieveConfig
from rag_app.embeddings import Embedder
from rag_app.errors import ModelNotFoundError
from rag_app.store import Chunk
from rag_app.store_protocol import ChunkStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk with the score that ranked it and its cosine to the query."""

    chunk: Chunk
    score: float  # cosine (dense), RRF (hybrid), BM25 (bm25), or reranker logit
    dense_score: float | None
    rank: int  # 1-based


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum over lists of 1 / (k + rank(d)).

    Returns (id, score) best first; ties keep first-seen order, so it is deterministic.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def mmr(query: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance: pick k rows that are relevant yet unlike those already picked.

    Args:
        query: (dim,) unit vector. vectors: (n, dim) unit vectors of the candidates.
        lam: 1.0 = pure relevance, 0.0 = pure diversity.

    Returns:
        Row indices into ``vectors`` in pick order.
    """
    if len(vectors) == 0:
        return []
    relevance = vectors @ query
    chosen: list[int] = [int(np.argmax(relevance))]
    while len(chosen) < min(k, len(vectors)):
        redundancy = (vectors @ vectors[chosen].T).max(axis=1)
        mixed = lam * relevance - (1 - lam) * redundancy
        mixed[chosen] = -np.inf
        chosen.append(int(np.argmax(mixed)))
    return chosen


class Retriever:
    """Finds the chunks that answer a query.

    Example::

        r = Retriever(store, embedder, RetrieveConfig(mode="hybrid", top_k=4))
        for hit in r.retrieve("Who won Super Bowl 50?"):
            print(hit.rank, hit.chunk.location, round(hit.score, 3))
    """

    def __init__(self, store: ChunkStore, embedder: Embedder, config: RetrieveConfig, reranker: Any = None) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config
        self.reranker = reranker if reranker is not None else load_reranker(config.rerank_model)
        self._last: tuple[str, np.ndarray] | None = None

    def _dense(self, qvec: np.ndarray, n: int, exclude: Collection[str]) -> list[tuple[int, float]]:
        """Top-n (id, cosine) after dropping excluded docs; widens the search until n survive."""
        total = len(self.store)
        want = min(n, total)
        fetch = want
        while True:
            scores, ids = self.store.search(qvec[None, :], max(fetch, 1))
            pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
            if exclude:
                allowed = {c.id for c in self.store.get_chunks([i for i, _ in pairs]) if c.doc_id not in exclude}
                pairs = [p for p in pairs if p[0] in allowed]
            if len(pairs) >= want or fetch >= total:
                return pairs[:n]
            fetch = min(total, fetch * 4)

    def _bm25(self, query: str, n: int, exclude: Collection[str]) -> list[tuple[int, float]]:
        total = len(self.store)
        if not total:
            return []
        fetch = min(total, n if not exclude else n * 4)
        while True:
            pairs = self.store.search_text(query, fetch)
            if exclude:
                allowed = {c.id for c in self.store.get_chunks([i for i, _ in pairs]) if c.doc_id not in exclude}
                pairs = [p for p in pairs if p[0] in allowed]
            if len(pairs) >= n or fetch >= total:
                return pairs[:n]
            fetch = min(total, fetch * 4)

    def _embed(self, query: str) -> np.ndarray:
        """The query's vector; the last one is kept, since the coverage gate asks again for the dense neighbours."""
        if self._last is None or self._last[0] != query:
            self._last = (query, self.embedder.embed_query(query))
        return self._last[1]

    def retrieve(
        self, query: str, k: int | None = None, exclude_doc_ids: Collection[str] = (), query_vector: np.ndarray | None = None,
        mode: str | None = None,
    ) -> list[RetrievedChunk]:
        """The best ``k`` chunks (default ``top_k``), best first.

        Args:
            query: the text to search for.
            k: how many to return.
            exclude_doc_ids: doc ids to leave out (evaluation withholds gold documents with it).
            query_vector: ``query`` already embedded (batch callers embed many at once).
            mode: another mode than the configured one for this search (the pipeline's coverage gate reads the
                dense neighbours whatever the mode).
        """
        cfg = self.config
        mode = mode or cfg.mode
        k = k or cfg.top_k
        exclude = set(exclude_doc_ids)
        pool = max(cfg.fetch_k, k)
        # Also for bm25: the no-good-source threshold is on cosine.
        qvec = query_vector if query_vector is not None else self._embed(query)
        dense = self._dense(qvec, pool, exclude) if mode in ("dense", "hybrid") else []
        sparse = self._bm25(query, pool, exclude) if mode in ("bm25", "hybrid") else []
        if mode == "dense":
            ranked = dense
        elif mode == "bm25":
            ranked = sparse
        else:
            ranked = rrf([[i for i, _ in dense], [i for i, _ in sparse]], k=cfg.rrf_k)[:pool]
        if not ranked:
            return []
        ids = [i for i, _ in ranked]
        vectors = self.store.get_vectors(ids)
        cosine = vectors @ qvec
        score_of = dict(ranked)
        order = list(range(len(ids)))
        if self.reranker is not None:
            chunks = self.store.get_chunks(ids)
            logits = self.reranker.predict([(query, c.text) for c in chunks], show_progress_bar=False)
            score_of = {c.id: float(s) for c, s in zip(chunks, logits)}
            order = sorted(order, key=lambda j: -score_of[ids[j]])
        if cfg.mmr:
            picked = mmr(qvec, vectors[order], k, cfg.mmr_lambda)
            order = [order[j] for j in picked]
        order = order[:k]
        chunks = {c.id: c for c in self.store.get_chunks([ids[j] for j in order])}
        return [
            RetrievedChunk(chunks[ids[j]], score_of[ids[j]], float(cosine[j]), rank)
            for rank, j in enumerate(order, start=1)
            if ids[j] in chunks
        ]


def load_reranker(name: str | None) -> Any:
    """A sentence-transformers CrossEncoder from a local folder or the HF cache; never downloads.

    Loaded once per name per process and shared: the UI builds a pipeline per
    chat and ``rag eval`` one per configuration, and each would otherwise load
    its own copy (seconds, and its weights again). A load that fails is not
    remembered, so fixing the folder and asking again works.

    Raises:
        ModelNotFoundError: ``name`` cannot be loaded offline.
    """
    if not name:
        return None
    return _cross_encoder(name)


@functools.cache
def _cross_encoder(name: str) -> Any:
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(name, local_files_only=True)
    except Exception as err:
        raise ModelNotFoundError(
            f"cannot load reranker {name!r} offline ({type(err).__name__}); set retrieve.rerank_model to a local "
            f"cross-encoder folder, or leave it empty"
        ) from None

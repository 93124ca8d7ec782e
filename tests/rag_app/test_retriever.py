import numpy as np
import pytest

from rag_app.config import RetrieveConfig
from rag_app.retriever import Retriever, mmr, rrf
from helpers import build_index


def test_rrf_sums_reciprocal_ranks():
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_mmr_skips_near_duplicates():
    q = np.array([1.0, 0.0, 0.0], np.float32)
    v = np.array([[0.99, 0.14, 0.0], [0.99, 0.14, 0.0], [0.8, 0.0, 0.6]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert mmr(q, v, 2, lam=0.5) == [0, 2]
    assert mmr(q, v, 2, lam=1.0)[:2] == [0, 1]


def test_dense_finds_the_chunk_and_excludes_docs(tmp_path, fake_embedder):
    store = build_index(tmp_path / "idx", fake_embedder, {
        "france": ["Paris is the capital of France.", "France exports wine and cheese."],
        "japan": ["Tokyo is the capital of Japan."],
    })
    hits = Retriever(store, fake_embedder, RetrieveConfig(top_k=2, mode="dense")).retrieve("What is the capital of Japan?")
    assert hits[0].chunk.doc_id == "japan" and hits[0].rank == 1
    assert hits[0].dense_score == pytest.approx(hits[0].score)
    hits = Retriever(store, fake_embedder, RetrieveConfig(top_k=2, mode="dense")).retrieve("capital of Japan", exclude_doc_ids={"japan"})
    assert all(h.chunk.doc_id != "japan" for h in hits) and len(hits) == 2


def test_hybrid_finds_exact_keyword_that_dense_ranks_lower(tmp_path, fake_embedder):
    # Wordy chunks share the question's common words, so dense ranks them first; only one
    # chunk has the part number, which BM25 (stop words dropped) matches exactly.
    filler = [f"It is the one {n}, and it is for the thing, the one that it is for." for n in range(6)]
    store = build_index(tmp_path / "idx", fake_embedder, {"faq": filler, "parts": ["XK-4471 ships with a brass valve."]})
    question = "What is the XK-4471 and what is it for?"
    dense = Retriever(store, fake_embedder, RetrieveConfig(top_k=3, mode="dense")).retrieve(question)
    hybrid = Retriever(store, fake_embedder, RetrieveConfig(top_k=3, mode="hybrid")).retrieve(question)
    bm25 = Retriever(store, fake_embedder, RetrieveConfig(top_k=3, mode="bm25")).retrieve(question)
    assert "parts" not in [h.chunk.doc_id for h in dense]
    assert bm25[0].chunk.doc_id == "parts"
    assert hybrid[0].chunk.doc_id == "parts"
    assert all(h.dense_score is not None for h in hybrid)


def test_a_search_in_another_mode_reuses_the_question_embedding(tmp_path, fake_embedder, monkeypatch):
    filler = [f"It is the one {n}, and it is for the thing, the one that it is for." for n in range(6)]
    store = build_index(tmp_path / "idx", fake_embedder, {"faq": filler, "parts": ["XK-4471 ships with a brass valve."]})
    question = "What is the XK-4471 and what is it for?"
    r = Retriever(store, fake_embedder, RetrieveConfig(top_k=3, mode="hybrid"))
    embedded, embed = [], fake_embedder.embed_query
    monkeypatch.setattr(fake_embedder, "embed_query", lambda q: embedded.append(q) or embed(q))
    assert r.retrieve(question)[0].chunk.doc_id == "parts"
    assert "parts" not in [h.chunk.doc_id for h in r.retrieve(question, mode="dense")]  # as a dense retriever ranks
    assert embedded == [question]  # the coverage gate's dense search costs no second embedding
    r.retrieve("another question")
    assert embedded == [question, "another question"]


def test_mmr_option_drops_duplicate_chunks(tmp_path, fake_embedder):
    store = build_index(tmp_path / "idx", fake_embedder, {
        "a": ["Solar panels convert sunlight into electricity."],
        "b": ["Solar panels convert sunlight into electricity!"],
        "c": ["Wind turbines convert wind into electricity."],
    })
    plain = Retriever(store, fake_embedder, RetrieveConfig(top_k=2)).retrieve("solar panels electricity")
    diverse = Retriever(store, fake_embedder, RetrieveConfig(top_k=2, mmr=True, mmr_lambda=0.3)).retrieve("solar panels electricity")
    assert {h.chunk.doc_id for h in plain} == {"a", "b"}
    assert "c" in {h.chunk.doc_id for h in diverse}


def test_a_reranker_loads_once_per_name_per_process(tmp_path, fake_embedder, cross_encoder):
    from rag_app.errors import ModelNotFoundError

    store = build_index(tmp_path / "idx", fake_embedder, {"japan": ["Tokyo is the capital of Japan."]})
    config = RetrieveConfig(top_k=1, rerank_model="local-cross-encoder")
    first, second = Retriever(store, fake_embedder, config), Retriever(store, fake_embedder, config)
    assert cross_encoder.made == ["local-cross-encoder"] and first.reranker is second.reranker
    assert second.retrieve("capital of Japan?")[0].chunk.doc_id == "japan"
    Retriever(store, fake_embedder, RetrieveConfig(rerank_model="other-cross-encoder"))
    assert cross_encoder.made == ["local-cross-encoder", "other-cross-encoder"]
    for _ in range(2):  # a failed load is not remembered: each try says so
        with pytest.raises(ModelNotFoundError, match="cannot load reranker 'missing' offline"):
            Retriever(store, fake_embedder, RetrieveConfig(rerank_model="missing"))


class _ContractOnlyStore:
    """A store with only the ChunkStore methods (no FAISS index, no bm25s engine): what a server store offers."""

    def __init__(self, inner):
        self._inner = inner
        self.manifest = inner.manifest

    def __len__(self):
        return len(self._inner)

    def __getattr__(self, name):
        if name in ("search", "search_text", "get_vectors", "get_chunks", "iter_chunks", "files", "doc_ids"):
            return getattr(self._inner, name)
        raise AttributeError(f"not in the store contract: {name}")


def test_retriever_needs_only_the_store_contract(tmp_path, fake_embedder):
    from rag_app.store_protocol import ChunkStore

    inner = build_index(tmp_path / "idx", fake_embedder, {
        "france": ["Paris is the capital of France."], "parts": ["XK-4471 ships with a brass valve."]})
    store = _ContractOnlyStore(inner)
    for mode, query in (("dense", "capital of France"), ("bm25", "XK-4471"), ("hybrid", "XK-4471 valve")):
        hits = Retriever(store, fake_embedder, RetrieveConfig(top_k=1, fetch_k=2, mode=mode)).retrieve(query)
        want = inner.search_text(query, 1)[0][0] if mode == "bm25" else None
        assert hits[0].chunk.doc_id == ("france" if mode == "dense" else "parts")
        assert want is None or hits[0].chunk.id == want
    assert isinstance(inner, ChunkStore)

"""The Milvus store beside the FAISS store on the same chunks: ingest rate, query latency, recall.

What it answers: what moving from the embedded FAISS folder to the server
store costs on one machine, measured through the store contract itself
(``open_writer`` / ``open_store``, what ingest and the retriever call), not
through the engines' raw APIs:

* ingest: chunks/s from the first ``add_file`` to a committed generation
  (embedding excluded: the vectors are given), files of 100 chunks each;
* dense query: p50/p95 of one query's ``search`` (top 10), one query at a
  time, and recall@10 against exact search (numpy over all vectors);
* BM25 query: p50/p95 of ``search_text`` (top 10) on two-word queries.

Chunks are random unit vectors of dim 384 (MiniLM's): embedding 100k real
chunks takes hours here, and search cost depends on the count and the
dimension, not on what the vectors mean. Random vectors are an ANN index's
worst case, so HNSW recall here is a floor. Texts are 24 words drawn from a
Zipf-like vocabulary of 5,000, so BM25 has realistic posting lists.

The Milvus side is a real ``milvus-lite server`` process on loopback, started
and stopped here (Milvus Lite is pure Python: a cluster's numbers differ; this
measures the code path, not Milvus at scale).

    python bench/vector_store.py                 # 100k chunks: ~25 min on 2 busy cores
    python bench/vector_store.py --chunks 10000 --queries 100

Writes ``bench/results/vector_store.json`` and prints one line per measurement. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag_app.config import load_settings  # noqa: E402
from rag_app.store import Chunk, Manifest, chunk_id  # noqa: E402
from rag_app.store_protocol import open_store, open_writer  # noqa: E402

DIM, K, PER_FILE = 384, 10, 100
RESULTS = Path(__file__).resolve().parent / "results" / "vector_store.json"


def make_corpus(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocab = np.array([f"w{i}" for i in range(5000)])
    p = 1.0 / np.arange(1, 5001)
    words = rng.choice(vocab, size=(n, 24), p=p / p.sum())
    return vectors, [" ".join(row) for row in words]


def ingest(settings, vectors: np.ndarray, texts: list[str]) -> float:
    """Seconds from the first add_file to a committed generation."""
    chunking = settings.ingest.chunking_signature()
    manifest = Manifest(embedding_model="random-unit-384", dim=DIM, chunking=chunking)
    tic = time.perf_counter()
    with open_writer(settings, manifest, rebuild=True) as writer:
        for f, start in enumerate(range(0, len(texts), PER_FILE)):
            source = f"file{f:05d}.txt"
            rows = range(start, min(start + PER_FILE, len(texts)))
            chunks = [Chunk(chunk_id(source, texts[i], i, chunking), texts[i], source, source[:-4], i - start, None,
                            None, 0, len(texts[i])) for i in rows]
            writer.add_file(source, f"{f:064x}", 1, chunks, vectors[start : start + len(chunks)])
        writer.commit()
    return time.perf_counter() - tic


def ms(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=20)
    return {"p50_ms": round(statistics.median(samples) * 1e3, 2), "p95_ms": round(q[18] * 1e3, 2)}


def measure(name: str, settings, vectors: np.ndarray, texts: list[str], queries: np.ndarray, words: list[str],
            exact: list[set[int]], id_of_row: np.ndarray) -> dict:
    seconds = ingest(settings, vectors, texts)
    out: dict = {"ingest_s": round(seconds, 1), "ingest_chunks_per_s": round(len(texts) / seconds, 1)}
    print(f"{name:12} ingest {len(texts):,} chunks: {seconds:.1f} s, {out['ingest_chunks_per_s']:,.0f} chunks/s", flush=True)
    with open_store(settings) as store:
        store.search(queries[:5], K)  # warm-up: FAISS reads its file, Milvus loads the collection
        dense, found = [], []
        for q in queries:
            tic = time.perf_counter()
            _, ids = store.search(q[None, :], K)
            dense.append(time.perf_counter() - tic)
            found.append(set(ids[0].tolist()))
        recall = float(np.mean([len(f & e) / K for f, e in zip(found, exact)]))
        store.search_text(words[0], K)
        sparse = []
        for w in words:
            tic = time.perf_counter()
            store.search_text(w, K)
            sparse.append(time.perf_counter() - tic)
    out.update({"dense": {**ms(dense), f"recall@{K}": round(recall, 4)}, "bm25": ms(sparse)})
    print(f"{name:12} dense p50 {out['dense']['p50_ms']} ms p95 {out['dense']['p95_ms']} ms recall@{K} {recall:.3f}; "
          f"bm25 p50 {out['bm25']['p50_ms']} ms p95 {out['bm25']['p95_ms']} ms", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--milvus-index", nargs="+", default=["HNSW", "FLAT"], choices=["HNSW", "FLAT"])
    args = ap.parse_args()
    import faiss

    from rag_app.milvus_store import local_server

    # One thread per engine, as bench/query.py: on this shared 2-core machine OpenMP spin-waits make more slower.
    faiss.omp_set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the milvus-lite server process (its FAISS indexes)

    vectors, texts = make_corpus(args.chunks)
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((args.queries, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    words = [" ".join(rng.choice([t.split()[3] for t in texts[:2000]], 2)) for _ in range(args.queries)]
    chunking = load_settings().ingest.chunking_signature()
    id_of_row = np.array([chunk_id(f"file{i // PER_FILE:05d}.txt", t, i, chunking) for i, t in enumerate(texts)])
    top = np.argpartition(-(queries @ vectors.T), K, axis=1)[:, :K]
    exact = [set(id_of_row[row].tolist()) for row in top]

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        faiss_settings = load_settings(index=Path(tmp) / "faiss")
        results["faiss"] = measure("faiss", faiss_settings, vectors, texts, queries, words, exact, id_of_row)
        with local_server(Path(tmp) / "milvus") as uri:
            for index in args.milvus_index:
                name = f"milvus_{index.lower()}"
                store = {"backend": "milvus", "uri": uri, "timeout_s": 600, "index": index, "collection": name}
                mv_settings = load_settings(index=Path(tmp) / "idx", store=store)
                results[name] = measure(name, mv_settings, vectors, texts, queries, words, exact, id_of_row)
    f = results["faiss"]
    for name in [n for n in results if n.startswith("milvus_")]:
        m = results[name]
        results[f"{name}_vs_faiss"] = ratios = {
            "ingest_rate": round(m["ingest_chunks_per_s"] / f["ingest_chunks_per_s"], 3),
            "dense_p50": round(m["dense"]["p50_ms"] / f["dense"]["p50_ms"], 1),
            "dense_p95": round(m["dense"]["p95_ms"] / f["dense"]["p95_ms"], 1),
            "bm25_p50": round(m["bm25"]["p50_ms"] / f["bm25"]["p50_ms"], 1),
        }
        print(f"{name} / faiss:", ratios)
    import milvus_lite
    import pymilvus

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results["setup"] = {
        "chunks": args.chunks, "dim": DIM, "k": K, "queries": args.queries, "vectors": "random unit, seed 0",
        "faiss": "IndexIDMap2(IndexFlatIP): exact", "milvus": "HNSW M=16 efConstruction=200, ef 128 (store.search_ef), or FLAT; IP",
        "engine": f"milvus-lite {milvus_lite.__version__} server process, pymilvus {pymilvus.__version__}",
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "date": date.today().isoformat(), "commit": commit,
        "command": "python bench/vector_store.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

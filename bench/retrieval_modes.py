"""What hybrid retrieval costs over dense per question, on a real index: p50/p95 and the ratio, same run.

Why: the default mode decides every question's latency. Hybrid adds a BM25
search (bm25s, built at ingest) and a rank fusion to the dense search; both
modes embed the question with MiniLM, which dominates dense retrieval
(docs/BENCHMARKS.md, "Query latency"). The modes are timed interleaved,
question by question, so a shared machine's load falls on both alike; each
question's embedding is timed inside each mode (no cache between them).

    python bench/retrieval_modes.py INDEX QA.jsonl [--queries 200] [--k 5]

INDEX is an index folder (``rag ingest``'s, or a dataset's cached one under
``.rag/datasets/``); QA.jsonl gives the questions. Writes
``bench/results/retrieval_modes.json`` (one entry per index, replaced when re-run); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app.config import RetrieveConfig  # noqa: E402
from rag_app.embeddings import load_embedder  # noqa: E402
from rag_app.retriever import Retriever  # noqa: E402
from rag_app.store import IndexStore  # noqa: E402

MODES = ("dense", "hybrid")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("qa", type=Path)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the query embedding")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    questions = [json.loads(line)["question"] for line in args.qa.read_text().splitlines() if line.strip()]
    questions = questions[: args.queries]
    store = IndexStore.open(args.index)
    embedder = load_embedder(store.manifest.embedding_model)
    retrievers = {m: Retriever(store, embedder, RetrieveConfig(mode=m, top_k=args.k)) for m in MODES}
    for r in retrievers.values():  # warm up: model, FAISS pages, the BM25 index loaded from disk
        r.retrieve(questions[0])
    ms: dict[str, list[float]] = {m: [] for m in MODES}
    for i, q in enumerate(questions):
        for m in MODES if i % 2 == 0 else reversed(MODES):
            tic = time.perf_counter()
            retrievers[m].retrieve(q)
            ms[m].append((time.perf_counter() - tic) * 1000)
    ratios = [h / d for h, d in zip(ms["hybrid"], ms["dense"])]
    result = {
        "index": str(args.index), "chunks": len(store), "queries": len(questions), "k": args.k,
        "threads": args.threads, "date": time.strftime("%Y-%m-%d"), "load_avg": os.getloadavg(),
        **{f"{m}_ms_p50": round(pct(ms[m], 0.5), 2) for m in MODES},
        **{f"{m}_ms_p95": round(pct(ms[m], 0.95), 2) for m in MODES},
        "hybrid_over_dense_median_ratio": round(statistics.median(ratios), 3),
    }
    store.close()
    print(json.dumps(result))
    out = ROOT / "bench" / "results" / "retrieval_modes.json"
    runs = json.loads(out.read_text()) if out.is_file() else []
    runs = [r for r in runs if r["index"] != result["index"]] + [result]
    out.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()

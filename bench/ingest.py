"""Ingest throughput vs raw ``SentenceTransformer.encode`` on the very same chunks.

What it answers: how much does the pipeline (walk, hash, load, chunk, SQLite,
FAISS, BM25, fsync, atomic commit) cost on top of embedding, which should
dominate? Both sides share one loaded model, one warm-up, and the same
process; runs alternate pipeline / raw / raw / pipeline (ABBA) so drift in a
shared machine's load falls on both sides alike.

    python bench/ingest.py --corpus $DATA/tatqa_finance/docs  # 300 docs of tatqa_finance (docs/EVAL.md's sets)
    python bench/ingest.py --corpus $DATA/xquad_en/docs --limit 0

Writes ``bench/results/ingest.json``; prints one line per run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def _variants(model, texts: list[str], batch_size: int) -> dict:
    """What would make embedding faster, timed on the same texts: length bucketing and int8 weights.

    ``encode`` sorts its input by length, so "unsorted" calls it once per batch in
    file order; "int8" is torch dynamic quantization of every Linear layer (no
    new dependency; ONNX Runtime int8 is the deployable form of the same idea).
    """
    import torch

    def timed(fn) -> tuple[float, np.ndarray]:
        tic = time.perf_counter()
        out = fn()
        return time.perf_counter() - tic, out

    kwargs = {"batch_size": batch_size, "normalize_embeddings": True, "convert_to_numpy": True}
    sorted_s, base = timed(lambda: model.encode(texts, **kwargs))
    unsorted_s, _ = timed(lambda: np.concatenate(
        [model.encode(texts[i : i + batch_size], **kwargs) for i in range(0, len(texts), batch_size)]))  # fmt: skip
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    quantized.encode(texts[:batch_size], **kwargs)  # warm-up
    int8_s, q = timed(lambda: quantized.encode(texts, **kwargs))
    cos = (base * q).sum(axis=1)
    n = len(texts)
    row = lambda s: {"seconds": round(s, 2), "chunks_per_s": round(n / s, 2)}  # noqa: E731
    return {
        "chunks": n,
        "fp32_length_sorted": row(sorted_s),
        "fp32_file_order": row(unsorted_s),
        "int8_dynamic_length_sorted": row(int8_s),
        "int8_vs_fp32_cosine_min_mean": [round(float(cos.min()), 4), round(float(cos.mean()), 4)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "tatqa_finance" / "docs")
    parser.add_argument("--limit", type=int, default=300, help="first N files (sorted); 0 = all")
    parser.add_argument("--pairs", type=int, default=1, help="ABBA rounds (each = 2 pipeline + 2 raw runs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", type=int, default=0,
                        help="also time N of the chunks unsorted and with int8 dynamic quantization (0 = skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = parser.parse_args()

    from ingest.pipeline import ingest_folder
    from rag_app.config import load_settings
    from rag_app.embeddings import load_embedder
    from rag_app.store import IndexStore

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        docs = work / "docs"
        docs.mkdir()
        files = sorted(p for p in args.corpus.iterdir() if p.is_file())
        files = files[: args.limit] if args.limit else files
        for p in files:
            shutil.copyfile(p, docs / p.name)
        corpus_bytes = sum(p.stat().st_size for p in docs.iterdir())
        rss_start = _rss_mb()

        tic = time.perf_counter()
        settings = load_settings(index=work / "index", ingest={"embed_batch_size": args.batch_size})
        embedder = load_embedder(settings.embedding_model)
        model_s = time.perf_counter() - tic
        model = embedder.model
        # Warm-up outside the timings: first-call allocations at full chunk length, and the
        # pipeline's own imports (langchain, faiss, bm25s), by ingesting a few files once.
        warm = work / "warm"
        warm.mkdir()
        for p in files[:3]:
            shutil.copyfile(p, warm / p.name)
        ingest_folder(warm, load_settings(index=work / "warm-index"), embedder=embedder)
        rss_model = _rss_mb()

        def run_pipeline() -> dict:
            cpu, tic = time.process_time(), time.perf_counter()
            report = ingest_folder(docs, settings, rebuild=True, embedder=embedder)
            wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
            return {"seconds": wall, "cpu_s": cpu, "chunks": report.chunks_embedded, "embed_s": report.embed_seconds,
                    "read_s": report.read_seconds, "write_s": report.write_seconds}  # fmt: skip

        reference = None

        def run_raw() -> dict:
            nonlocal reference
            if reference is None:  # the chunks exactly as the pipeline stored them
                with IndexStore.open(settings.index) as store:
                    chunks = list(store.iter_chunks())
                    stored = store.get_vectors([c.id for c in chunks])
                reference = ([c.text for c in chunks], stored)
            texts, _ = reference
            cpu, tic = time.process_time(), time.perf_counter()
            vectors = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
            return {"seconds": wall, "cpu_s": cpu, "chunks": len(texts), "vectors": vectors}

        pipeline_runs, raw_runs = [], []
        load_before = os.getloadavg()
        for round_ in range(args.pairs):
            for kind in ("pipeline", "raw", "raw", "pipeline"):
                if kind == "pipeline":
                    r = run_pipeline()
                    pipeline_runs.append(r)
                else:  # the first run of a round is a pipeline one, so the index exists
                    r = run_raw()
                    raw_runs.append({k: v for k, v in r.items() if k != "vectors"})
                    max_diff = float(np.abs(r["vectors"] - reference[1]).max())
                print(f"round {round_} {kind:8} {r['chunks']} chunks in {r['seconds']:.1f} s ({r['cpu_s']:.1f} CPU s) "
                      f"= {r['chunks'] / r['seconds']:.1f} chunks/s  (load avg {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
        load_after = os.getloadavg()

        p_med = statistics.median(r["seconds"] for r in pipeline_runs)
        r_med = statistics.median(r["seconds"] for r in raw_runs)
        chunks = pipeline_runs[0]["chunks"]
        non_embed = statistics.median(r["seconds"] - r["embed_s"] for r in pipeline_runs)
        p_cpu = statistics.median(r["cpu_s"] for r in pipeline_runs)
        r_cpu = statistics.median(r["cpu_s"] for r in raw_runs)
        result = {
            "command": " ".join(["python", "bench/ingest.py", *sys.argv[1:]]),
            "date": date.today().isoformat(),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch_threads": __import__("torch").get_num_threads(),
                "python": platform.python_version(),
                "load_avg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
                "shared": "yes: other engineers' jobs ran on the same 2 cores (see load averages)",
            },
            "corpus": {"path": str(args.corpus), "files": len(files), "mb": round(corpus_bytes / 1e6, 3),
                       "chunks": chunks, "chunking": settings.ingest.chunking_signature()},  # fmt: skip
            "embedding_model": embedder.model_name,
            "batch_size": args.batch_size,
            "model_load_s": round(model_s, 2),
            "pipeline_runs": [{k: round(v, 3) for k, v in r.items()} for r in pipeline_runs],
            "raw_encode_runs": [{k: round(v, 3) for k, v in r.items()} for r in raw_runs],
            "pipeline_s_median": round(p_med, 2),
            "raw_encode_s_median": round(r_med, 2),
            "pipeline_chunks_per_s": round(chunks / p_med, 2),
            "raw_chunks_per_s": round(chunks / r_med, 2),
            "pipeline_mb_per_s": round(corpus_bytes / 1e6 / p_med, 4),
            "overhead_ratio": round(p_med / r_med, 3),
            "overhead_pct": round(100 * (p_med / r_med - 1), 1),
            # CPU seconds of this process: far less disturbed by other jobs on a shared machine than wall time.
            "pipeline_cpu_s_median": round(p_cpu, 2),
            "raw_encode_cpu_s_median": round(r_cpu, 2),
            "overhead_cpu_pct": round(100 * (p_cpu / r_cpu - 1), 1),
            "pipeline_non_embedding_s_median": round(non_embed, 2),
            "max_abs_diff_pipeline_vs_raw_vectors": max_diff,
            "rss_mb": {"start": round(rss_start, 1), "after_model_load": round(rss_model, 1), "peak": round(_peak_rss_mb(), 1)},
        }
        if args.variants:
            result["variants"] = _variants(model, reference[0][: args.variants], args.batch_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    keys = ("pipeline_chunks_per_s", "raw_chunks_per_s", "overhead_pct", "overhead_cpu_pct", "rss_mb", "variants")
    print(json.dumps({k: result[k] for k in keys if k in result}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

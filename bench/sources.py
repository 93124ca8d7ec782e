"""Answer time against the number of sources shown (``retrieve.top_k``), for the generator ``rag ask`` serves.

Why: top_k decides how much the model reads. Five sources answer better than
four with the shipped adapter (docs/EVAL.md, "How many sources"), and each
source adds ~200 prompt tokens to prefill; this measures what that costs.
Same questions and gold documents at every count (bench/query.py's prompts
from data/sample, 800 characters a source, the gold at a rotating place),
greedy, the counts interleaved round robin so a shared machine's load falls
on all alike. Reported: median prompt tokens, time to first token and whole
answer, and each as a ratio to the first count.

    python bench/sources.py                          # ~3 min on 2 cores
    python bench/sources.py --counts 3,4,5,6 --rounds 3 --backend hf
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from query import ROOT, prompts

from rag_app.config import load_settings
from rag_app.generation import load_generator


def timed(gen, messages, max_new_tokens: int) -> tuple[float, float]:
    """(seconds to the first piece, seconds to the end) of one streamed answer."""
    start = time.perf_counter()
    first = None
    for _ in gen.stream(messages, max_new_tokens=max_new_tokens):
        first = first or time.perf_counter() - start
    return first or time.perf_counter() - start, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="4,5,6", help="source counts; the first is the baseline of the ratios")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--backend", default=None, help="generate.backend (default: what rag ask picks)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sources.json")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    settings = load_settings(None, generate={"backend": args.backend} if args.backend else {})
    gen = load_generator(settings.generate, settings.cache_dir)
    sets = {k: prompts(args.prompts, sources=k) for k in counts}
    timed(gen, sets[counts[0]][0], args.max_new_tokens)  # warm-up: first-call allocations
    times: dict[int, list[tuple[float, float]]] = {k: [] for k in counts}
    for _ in range(args.rounds):
        for i in range(args.prompts):
            for k in counts:
                times[k].append(timed(gen, sets[k][i], args.max_new_tokens))
    rows = {}
    for k in counts:
        ttft = statistics.median(t for t, _ in times[k])
        total = statistics.median(t for _, t in times[k])
        rows[k] = {"prompt_tokens": statistics.median(gen.count_tokens(m) for m in sets[k]), "ttft_s": ttft, "answer_s": total}
    base = rows[counts[0]]
    print(f"generator: {gen.name} (adapter {gen.adapter}); {args.prompts} prompts x {args.rounds} rounds, medians\n")
    print(f"| sources | prompt tokens | first token (s) | x{counts[0]} | whole answer (s) | x{counts[0]} |")
    print("|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['prompt_tokens']:.0f} | {r['ttft_s']:.2f} | {r['ttft_s'] / base['ttft_s']:.2f} | "
              f"{r['answer_s']:.2f} | {r['answer_s'] / base['answer_s']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"generator": gen.name, "adapter": gen.adapter, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

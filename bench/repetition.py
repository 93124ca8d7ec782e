"""What the repetition guard saves (#19, #20): tokens and time per answer, with and without it.

Sources are a review article's paragraphs dense with the article's own
reference numbers (``[30] [31] [32]``, ``[12-15]``), the kind of text that made
the bundled model copy them as citations to the token cap; questions are about
those paragraphs. For each backend and adapter (base: ``--no-adapter``; the
shipped one: ``adapter=default``) every question is answered greedily with the
guard off and on, the two interleaved so a shared machine's load falls on both
alike. A few ordinary prompts (bench/query.py's, from data/sample) check that
the guard leaves normal answers as they are: their texts must match.

Reported per configuration: replies the guard stopped, tokens generated (the
streamed text re-tokenized) and seconds per answer, summed and at the worst
question, off -> on.

    python bench/repetition.py                              # ~10 min on 2 busy cores
    python bench/repetition.py --backends llamacpp --adapters none

Writes ``bench/results/repetition.json``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

from query import ROOT, prompts

from rag_app.config import GenerateConfig, load_settings
from rag_app.generation import load_generator
from rag_app.prompts import build_messages
from rag_app.repetition import without_loop
from rag_app.store import Chunk

PARAGRAPHS = [
    ("review.pdf", "Tobacco mosaic virus (TMV) was the first virus to be discovered [30] [31] [32]. Ivanovsky showed in "
     "1892 that the agent passed through porcelain filters [33], [34], and Beijerinck called it a contagium vivum "
     "fluidum [35-37]. Stanley crystallised it in 1935 [38] [39] [40] [41], and its rod shape was seen under the first "
     "electron microscopes [42] [43] [44]."),
    ("review.pdf", "TMV particles are rigid rods about 300 nm long and 18 nm wide [45] [46]. Each holds one strand of RNA "
     "of 6,395 nucleotides [47] [48] [49] wrapped in 2,130 copies of a single coat protein [50] [51] [52] [53]. The "
     "structure was solved by fibre diffraction [54] [55] [56] [57] [58] [59]."),
    ("review.pdf", "Plant viruses spread through insect vectors [1] [2] [3] [4] [5] [6] [7] [8], through wounds made by "
     "tools and hands [9] [10] [11] [12] [13], and in seed and pollen [14] [15] [16] [17] [18] [19]. TMV itself has no "
     "insect vector [20] [21] and is carried mechanically [22], [23], [24]."),
    ("review.pdf", "Control relies on resistant cultivars carrying the N gene [25] [26] [27] [28] [29], on hygiene "
     "[60] [61] [62] and on cross-protection with mild strains [63] [64] [65] [66] [67]. Losses in tomato reach 20% "
     "[68] [69] [70]."),
]
QUESTIONS = [
    "Which virus was the first to be discovered?",
    "How do plant viruses spread?",
    "How long is a TMV particle?",
    "How is TMV controlled?",
    "Which references discuss resistant cultivars?",
    "Who crystallised TMV?",
]


def reference_prompts() -> list[list[dict[str, str]]]:
    chunks = [Chunk(i, text, name, "review", ordinal=i) for i, (name, text) in enumerate(PARAGRAPHS)]
    return [build_messages(q, chunks) for q in QUESTIONS]


def answer(gen, messages, max_new_tokens: int, guard: bool) -> dict:
    """One greedy answer: tokens generated, seconds, whether the guard stopped it, the text kept."""
    gen.stop_loops = guard
    if hasattr(gen, "llm"):  # llama.cpp: forget the last prompt, or the second of a pair would skip its prefill
        gen.llm.reset()
        gen.llm._ctx.kv_cache_clear()
    start = time.perf_counter()
    reply = gen.stream(messages, max_new_tokens=max_new_tokens)
    streamed = "".join(reply)
    seconds = time.perf_counter() - start
    return {"tokens": gen.count_text_tokens(streamed), "s": round(seconds, 3), "stopped": bool(getattr(reply, "repeated_tail", 0)),
            "text": without_loop(streamed, reply).strip()}


def run(backend: str, adapter: str, sets: dict[str, list], max_new_tokens: int, cache_dir: Path) -> dict:
    gen = load_generator(GenerateConfig(backend=backend, adapter=adapter), cache_dir)
    answer(gen, sets["normal"][0], 8, True)  # warm-up: first-call allocations
    out = {"generator": gen.name, "adapter": gen.adapter}
    for name, prompt_set in sets.items():
        rows = [{"off": answer(gen, m, max_new_tokens, False), "on": answer(gen, m, max_new_tokens, True)} for m in prompt_set]
        out[name] = {
            "stopped": sum(r["on"]["stopped"] for r in rows),
            "same_text": sum(r["on"]["text"] == r["off"]["text"] for r in rows),
            **{f"{k}_{g}": sum(r[g][k] for r in rows) for k in ("tokens", "s") for g in ("off", "on")},
            **{f"max_{k}_{g}": max(r[g][k] for r in rows) for k in ("tokens", "s") for g in ("off", "on")},
            "rows": rows,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="llamacpp,hf")
    ap.add_argument("--adapters", default="none,default", help="none (the base model) and/or default (the shipped adapter)")
    ap.add_argument("--normal", type=int, default=4, help="ordinary prompts from data/sample")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "repetition.json")
    args = ap.parse_args()
    settings = load_settings(None)
    sets = {"references": reference_prompts(), "normal": prompts(args.normal)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    results = {"date": date.today().isoformat(), "commit": commit, "machine": platform.processor() or platform.machine(),
               "max_new_tokens": args.max_new_tokens, "runs": []}
    print("| backend | adapter | prompts | stopped | same text | tokens off -> on | worst answer, tokens | "
          "seconds off -> on | worst answer, s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for adapter in args.adapters.split(","):
            r = run(backend, adapter, sets, args.max_new_tokens, settings.cache_dir)
            results["runs"].append({"backend": backend, "adapter_setting": adapter, **r})
            for name in sets:
                s = r[name]
                print(f"| {backend} | {adapter} | {len(sets[name])} {name} | {s['stopped']} | {s['same_text']} | "
                      f"{s['tokens_off']} -> {s['tokens_on']} | {s['max_tokens_off']} -> {s['max_tokens_on']} | "
                      f"{s['s_off']:.1f} -> {s['s_on']:.1f} | {s['max_s_off']:.1f} -> {s['max_s_on']:.1f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

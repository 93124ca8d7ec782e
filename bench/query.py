"""Query-time speed: retrieval latency (flat vs HNSW) and the bundled generator on each backend.

What it answers:

* retrieval: p50/p95 of one question's dense retrieval (MiniLM query
  embedding + FAISS top-k) at 1k and 100k chunks, exact ``IndexFlatIP`` vs
  ``IndexHNSWFlat`` (inner product, M=32, efSearch 64 and 256), and HNSW's
  recall@k against exact search. Chunk vectors are random unit vectors
  (embedding 100k real chunks takes ~1.5 h here); the query embedding is real.
  Random vectors are HNSW's worst case: its recall here is a floor, not what
  real, clustered embeddings get.
* thread probe: decode and prefill at 1 thread vs every core, for llama.cpp and
  torch. On a shared machine a thread pool that meets at a barrier after each
  op can be many times slower with every core than with one; the main runs
  use the thread counts given (default 1).
* generation: time to first token, decode tokens/s and the whole answer's time
  for SmolLM2-135M on the same prompts (``rag_app.prompts.build_messages``,
  four sources of 800 characters from data/sample), greedy, up to 200 new
  tokens, each answer ending where the model ends it. One process; variants
  interleaved round robin so a shared machine's load falls on all alike:

  - ``hf_generate_bf16`` - plain ``model.generate``: the baseline; also fp32,
    and bf16 with ``cache_implementation="static"``;
  - ``hf_static_compile_bf16`` - static cache + ``torch.compile`` (``--compile``);
  - ``HFGenerator`` - what ``backend=hf`` serves (static cache on CPU, thread +
    TextIteratorStreamer), and with a LoRA adapter;
  - ``llamacpp_raw_t1`` - the peer: llama.cpp (llama-cpp-python's raw
    completion on the same prompt ids) on the bundled Q4_1 GGUF as shipped;
    ``llamacpp_raw_q8_0`` the same on its Q8_0 rewrite;
  - ``LlamaCppGenerator`` - what ``backend=llamacpp`` serves (the Q8_0 rewrite),
    with a LoRA adapter merged in (what it serves) or applied at run time
    (``+lora``; r16 on q,k,v,o,gate,up,down of all 30 layers: the costliest
    one ``rag finetune`` writes; random, small), and on the Q4_1 file.

  Greedy texts of the two backends are compared (8-bit llama.cpp vs bf16
  transformers: some drift is expected).

    python bench/query.py                      # ~20 min on 2 busy cores
    python bench/query.py --skip-retrieval --rounds 1 --compile

Writes ``bench/results/query.json`` (a section not run keeps its last values);
prints one line per measurement. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CACHE = Path.home() / ".cache" / "rag_app"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ---------------------------------------------------------------- retrieval


def questions(limit: int) -> list[str]:
    out: list[str] = []
    for path in (ROOT / "data" / "sample" / "qa.jsonl", ROOT.parent / "shared" / "data" / "xquad_en" / "qa.jsonl"):
        if path.is_file():
            out += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return out[:limit]


def bench_retrieval(sizes: list[int], n_queries: int, k: int, threads: int, dim: int = 384) -> dict:
    """One pass at ``threads`` torch and FAISS (OpenMP) threads: see the module docstring for why it matters."""
    import faiss
    import torch

    from rag_app.embeddings import load_embedder

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    embedder = load_embedder()
    qs = questions(n_queries)
    for q in qs[:5]:
        embedder.embed_query(q)  # warm-up
    embed_ms, qvecs = [], []
    for q in qs:
        tic = time.perf_counter()
        qvecs.append(embedder.embed_query(q))
        embed_ms.append((time.perf_counter() - tic) * 1000)
    qmat = np.stack(qvecs).astype(np.float32)
    results: dict = {"queries": len(qs), "k": k, "embed_ms": {"p50": pct(embed_ms, 50), "p95": pct(embed_ms, 95)},
                     "threads": threads, "sizes": {}}
    print(f"[{threads} thread(s)] query embedding (MiniLM): p50 {pct(embed_ms, 50):.1f} ms, p95 {pct(embed_ms, 95):.1f} ms", flush=True)
    rng = np.random.default_rng(0)
    for n in sizes:
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(dim)
        flat.add(vecs)
        tic = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 64
        hnsw.add(vecs)
        build_s = time.perf_counter() - tic
        row: dict = {"hnsw_build_s": build_s, "hnsw_params": {"M": 32, "efConstruction": 64}}
        exact: list[set] = []
        for name, index, ef in (("flat", flat, None), ("hnsw_ef64", hnsw, 64), ("hnsw_ef256", hnsw, 256)):
            if ef:
                hnsw.hnsw.efSearch = ef
            for i in range(3):
                index.search(qmat[i : i + 1], k)
            search_ms, found = [], []
            for i in range(len(qs)):
                tic = time.perf_counter()
                _, ids = index.search(qmat[i : i + 1], k)
                search_ms.append((time.perf_counter() - tic) * 1000)
                found.append(set(ids[0].tolist()))
            total = [e + s for e, s in zip(embed_ms, search_ms)]
            row[name] = {"search_ms": {"p50": pct(search_ms, 50), "p95": pct(search_ms, 95)},
                         "with_embed_ms": {"p50": pct(total, 50), "p95": pct(total, 95)}}
            if name == "flat":
                exact = found
            else:
                row[name]["recall_at_k"] = float(np.mean([len(f & e) / k for f, e in zip(found, exact)]))
            print(f"[{threads}] {n:>7} chunks {name:10}: search p50 {pct(search_ms, 50):6.2f} ms p95 {pct(search_ms, 95):6.2f} ms; "
                  f"with embedding p50 {pct(total, 50):6.1f} ms p95 {pct(total, 95):6.1f} ms"
                  + (f"; recall@{k} {row[name]['recall_at_k']:.3f}, build {build_s:.1f} s" if ef else ""), flush=True)
        results["sizes"][str(n)] = row
    return results


# ---------------------------------------------------------------- generation


def prompts(n: int, sources: int = 4) -> list[list[dict[str, str]]]:
    """n grounded prompts: a question, its gold doc and ``sources - 1`` docs of other topics (800 characters each)."""
    from rag_app.prompts import build_messages
    from rag_app.store import Chunk

    docs = ROOT / "data" / "sample" / "docs"
    rows = [json.loads(line) for line in (ROOT / "data" / "sample" / "qa.jsonl").read_text().splitlines() if line.strip()]
    picked, topics = [], []
    for row in rows:
        gold = row["gold_doc_ids"][0]
        topic = gold.rsplit("_", 1)[0]
        if topic not in topics and max(row["answer_start_in_doc"]) < 600:
            picked.append(row)
            topics.append(topic)
    out = []
    for i, row in enumerate(picked[:n]):
        gold = row["gold_doc_ids"][0]
        others = [t for t in topics if t != gold.rsplit("_", 1)[0]][: sources - 1]
        names = [f"{t}_00" for t in others]
        names.insert(i % sources, gold)
        chunks = [Chunk(j, (docs / f"{name}.txt").read_text()[:800], f"{name}.txt", name) for j, name in enumerate(names)]
        out.append(build_messages(row["question"], chunks))
    return out


def random_adapter(folder: Path, r: int = 16) -> Path:
    """A peft LoRA like ``rag finetune`` writes (r16, alpha 32, 7 modules, all layers, bf16), random and small."""
    import torch
    from peft import LoraConfig, get_peft_model

    from rag_app.models import BUNDLED_ID, load_model

    loaded = load_model("bundled", CACHE, dtype="float32")
    torch.manual_seed(0)
    peft = get_peft_model(loaded.model, LoraConfig(
        r=r, lora_alpha=2 * r, init_lora_weights=False, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():  # peft's random B is large; a trained adapter nudges, not replaces, the base
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(0.05)
    peft.peft_config["default"].base_model_name_or_path = BUNDLED_ID
    peft.to(torch.bfloat16).save_pretrained(str(folder))
    return folder


class Clock:
    """A transformers streamer that only timestamps: plain generate's TTFT without TextIteratorStreamer's cost."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:  # first call: the prompt; then one call per new token
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def run_hf_generate(model, ids, stop_ids, max_new, **extra) -> tuple[float, float, int, list[int]]:
    """(ttft_s, decode_s, new_tokens, new_ids) of plain ``model.generate``, greedy."""
    import torch

    clock = Clock()
    tic = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
                             eos_token_id=stop_ids, pad_token_id=stop_ids[0], streamer=clock, **extra)
    end = time.perf_counter()
    new = out[0, ids.shape[1]:].tolist()
    new = [t for t in new if t not in stop_ids]
    first = clock.times[1] if len(clock.times) > 1 else end
    return first - tic, end - first, len(new), new


def run_stream(pieces_iter, count) -> tuple[float, float, int, str]:
    tic = time.perf_counter()
    first, pieces = None, []
    for piece in pieces_iter:
        if first is None:
            first = time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    text = "".join(pieces).strip()
    return (first or end) - tic, end - (first or end), count(text), text


def bench_generation(n_prompts: int, max_new: int, rounds: int, use_compile: bool, threads: list[int], hf_threads: list[int],
                     adapter: Path | None) -> dict:
    import torch
    from llama_cpp import Llama

    from rag_app.config import GenerateConfig
    from rag_app.generation import load_generator
    from rag_app.gguf_export import lora_gguf_for, served_gguf
    from rag_app.llamacpp import LlamaCppGenerator, default_threads, without_amx_buffers
    from rag_app.chat_tokens import stop_token_ids
    from rag_app.models import bundled_gguf, load_model

    torch.set_num_threads(hf_threads[0])
    msgs = prompts(n_prompts)
    tmp = Path(tempfile.mkdtemp(prefix="bench-query-"))
    adapter = adapter or random_adapter(tmp / "lora")
    bf16 = load_model("bundled", CACHE, dtype="bfloat16")
    fp32 = load_model("bundled", CACHE, dtype="float32")
    tok = bf16.tokenizer
    stop_ids = stop_token_ids(tok)
    ids = [tok.apply_chat_template(m, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"] for m in msgs]
    prompt_tokens = [int(x.shape[1]) for x in ids]
    print(f"{len(msgs)} prompts of {prompt_tokens} tokens; up to {max_new} new tokens, greedy; torch threads {torch.get_num_threads()}", flush=True)
    hf_gen = load_generator(GenerateConfig(backend="hf", adapter="none"), CACHE)
    hf_gen_lora = load_generator(GenerateConfig(backend="hf", adapter=str(adapter)), CACHE)
    tic = time.perf_counter()
    lora_gguf = lora_gguf_for(adapter, tmp / "cache", 9, 3)
    convert_s = time.perf_counter() - tic
    gguf = bundled_gguf()
    count = hf_gen.count_text_tokens

    def llama_raw(n_threads: int, path: Path = gguf):
        with without_amx_buffers():  # as LlamaCppGenerator loads it
            llm = Llama(model_path=str(path), n_ctx=4096, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)

        def run(i: int):
            llm.reset()  # no prefix reuse between runs: every run pays its prefill
            return run_stream((c["choices"][0]["text"] for c in llm.create_completion(
                ids[i][0].tolist(), max_tokens=max_new, temperature=0.0, repeat_penalty=1.0, stream=True)), count)
        return run

    def served(gen):
        def run(i: int):
            if hasattr(gen, "llm"):
                gen.llm.reset()
            return run_stream(gen.stream(msgs[i], max_new), count)
        return run

    def hf_plain(loaded, **extra):
        def run(i: int):
            ttft, dec, n, new = run_hf_generate(loaded.model, ids[i], stop_ids, max_new, **extra)
            return ttft, dec, n, tok.decode(new, skip_special_tokens=True).strip()
        return run

    # name -> (run, torch threads to set first); llama.cpp variants fix their threads at construction.
    variants: dict = {}
    for t in hf_threads:
        suffix = "" if t == hf_threads[0] else f"_t{t}"
        variants[f"hf_generate_bf16{suffix}"] = (hf_plain(bf16), t)
        variants[f"HFGenerator{suffix}"] = (served(hf_gen), t)
    variants["hf_generate_fp32"] = (hf_plain(fp32), hf_threads[0])
    variants["hf_generate_bf16_static"] = (hf_plain(bf16, cache_implementation="static"), hf_threads[0])
    variants["HFGenerator+adapter"] = (served(hf_gen_lora), hf_threads[0])
    for n in threads:
        variants[f"llamacpp_raw_t{n}"] = (llama_raw(n), None)
    q8 = served_gguf(gguf, CACHE)  # what backend=llamacpp serves: the bundled Q4_1 requantized to Q8_0
    variants["llamacpp_raw_q8_0"] = (llama_raw(threads[0], q8), None)
    served_threads = default_threads()
    variants["LlamaCppGenerator"] = (served(LlamaCppGenerator(q8, tok, "bundled", context_window=4096)), None)
    tic = time.perf_counter()
    merged = served_gguf(gguf, tmp / "cache", adapter, 9, 3)
    merge_s = time.perf_counter() - tic
    variants["LlamaCppGenerator+adapter"] = (served(LlamaCppGenerator(
        merged, tok, "bundled", adapter=str(adapter), context_window=4096)), None)
    variants["LlamaCppGenerator+lora"] = (served(LlamaCppGenerator(
        q8, tok, "bundled", adapter=str(adapter), lora_path=lora_gguf, context_window=4096)), None)
    variants["LlamaCppGenerator_q4_1"] = (served(LlamaCppGenerator(gguf, tok, "bundled", context_window=4096)), None)
    warmups: dict = {}
    if use_compile:
        from transformers import CompileConfig

        cc = CompileConfig(fullgraph=False, dynamic=False)
        cc._compile_all_devices = True  # transformers only auto-compiles on accelerators
        static = hf_plain(bf16, cache_implementation="static", compile_config=cc)
        torch.set_num_threads(hf_threads[0])
        tic = time.perf_counter()
        static(0)
        static(1 % len(msgs))
        warmups["hf_static_compile_bf16"] = time.perf_counter() - tic
        print(f"static cache + torch.compile warm-up: {warmups['hf_static_compile_bf16']:.0f} s", flush=True)
        variants["hf_static_compile_bf16"] = (static, hf_threads[0])

    for name, (run, t) in variants.items():  # warm-up: one run each, not timed
        if t:
            torch.set_num_threads(t)
        run(0)
    samples: dict = {name: [] for name in variants}
    for r in range(rounds):
        for name, (run, t) in variants.items():
            if t:
                torch.set_num_threads(t)
            for i in range(len(msgs)):
                ttft, dec, n, text = run(i)
                samples[name].append({"prompt": i, "round": r, "ttft_s": ttft, "decode_s": dec, "tokens": n, "text": text})
            s = samples[name][-len(msgs):]
            rate = sum(max(x["tokens"] - 1, 0) for x in s) / max(sum(x["decode_s"] for x in s), 1e-9)
            print(f"round {r} {name:28} ttft p50 {statistics.median(x['ttft_s'] for x in s) * 1000:6.0f} ms  "
                  f"decode {rate:6.1f} tok/s  ({sum(x['tokens'] for x in s)} tokens)", flush=True)
    summary = {}
    for name, s in samples.items():
        dec_tokens = sum(max(x["tokens"] - 1, 0) for x in s)
        summary[name] = {
            "ttft_ms_p50": statistics.median(x["ttft_s"] for x in s) * 1000,
            "ttft_ms_max": max(x["ttft_s"] for x in s) * 1000,
            "decode_tok_s": dec_tokens / max(sum(x["decode_s"] for x in s), 1e-9),
            "tokens": sum(x["tokens"] for x in s),
            "answer_s_p50": statistics.median(x["ttft_s"] + x["decode_s"] for x in s),
        }
    peer = max((k for k in summary if k.startswith("llamacpp_raw_t")), key=lambda k: summary[k]["decode_tok_s"])
    base = summary["hf_generate_bf16"]["decode_tok_s"]  # as shipped: torch's default threads
    for name, row in summary.items():
        row["ratio_vs_llamacpp"] = row["decode_tok_s"] / summary[peer]["decode_tok_s"]
        row["speedup_vs_hf_generate_bf16"] = row["decode_tok_s"] / base
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "prompts": len(msgs), "prompt_tokens": prompt_tokens, "max_new_tokens": max_new, "rounds": rounds,
        "torch_threads": hf_threads, "llama_threads": threads, "llama_threads_served": served_threads,
        "peer": peer, "adapter": str(adapter), "adapter_convert_s": convert_s, "adapter_merge_s": merge_s, "warmup_s": warmups,
        "summary": summary, "parity": parity(samples, len(msgs), tok), "samples": samples,
    }


def thread_probe(reps: int = 2, prompt_len: int = 200, new: int = 16) -> dict:
    """Decode tokens/s at 1 vs all cores for llama.cpp and torch, on a short prompt (ABAB order).

    On a shared machine OpenMP-style thread pools can be far slower with every
    core than with one: each op ends at a barrier that waits for the thread the
    scheduler parked. This is the number that picks the threads of the main runs.
    """
    import torch
    from llama_cpp import Llama

    from rag_app.llamacpp import without_amx_buffers
    from rag_app.models import bundled_gguf, load_model

    loaded = load_model("bundled", CACHE, dtype="bfloat16")
    ids = torch.tensor([list(range(1000, 1000 + prompt_len))])
    counts = sorted({1, os.cpu_count() or 1})
    with without_amx_buffers():
        llms = {n: Llama(model_path=str(bundled_gguf()), n_ctx=1024, n_threads=n, n_threads_batch=n, verbose=False) for n in counts}
    out: dict = {"prompt_tokens": prompt_len, "new_tokens": new, "llamacpp": {}, "torch_bf16": {}}
    for _ in range(reps):
        for n in counts:
            llm = llms[n]
            llm.reset()
            got, tic = 0, time.perf_counter()
            for _tok in llm.generate(ids[0].tolist(), temp=0.0):
                got += 1
                if got == 1:
                    first = time.perf_counter()
                if got >= new:
                    break
            prefill = first - tic
            rate = (got - 1) / (time.perf_counter() - first)
            out["llamacpp"].setdefault(str(n), []).append({"prefill_tok_s": prompt_len / prefill, "decode_tok_s": rate})
            torch.set_num_threads(n)
            ttft, dec, got, _ = run_hf_generate(loaded.model, ids, [2], new, min_new_tokens=new)
            out["torch_bf16"].setdefault(str(n), []).append({"prefill_tok_s": prompt_len / ttft, "decode_tok_s": (got - 1) / dec})
            print(f"threads {n}: llama.cpp prefill {prompt_len / prefill:5.0f} decode {rate:5.1f} tok/s; "
                  f"torch bf16 prefill {prompt_len / ttft:5.0f} decode {(got - 1) / dec:5.1f} tok/s", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)
    return out


def parity(samples: dict, n: int, tok) -> dict:
    """Greedy text of transformers (bf16) vs llama.cpp (Q4_1), per prompt: identical, or where they part."""
    out = {}
    for hf, ll in (("HFGenerator", "LlamaCppGenerator"), ("HFGenerator+adapter", "LlamaCppGenerator+adapter")):
        rows = []
        for i in range(n):
            a = next(x["text"] for x in samples[hf] if x["prompt"] == i)
            b = next(x["text"] for x in samples[ll] if x["prompt"] == i)
            ta, tb = tok(a, add_special_tokens=False)["input_ids"], tok(b, add_special_tokens=False)["input_ids"]
            common = next((j for j, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
            rows.append({"identical": a == b, "common_prefix_tokens": common, "hf_tokens": len(ta), "llamacpp_tokens": len(tb),
                         "hf": a, "llamacpp": b})
        out[f"{hf} vs {ll}"] = rows
        print(f"parity {hf} vs {ll}: {sum(r['identical'] for r in rows)}/{n} identical; common prefix "
              f"{[r['common_prefix_tokens'] for r in rows]} of {[r['hf_tokens'] for r in rows]} tokens", flush=True)
    return out


def machine() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "faiss", "llama_cpp", "peft"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = None
    return {
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"), "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(), "versions": versions,
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD"), "date": str(date.today()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,100000", help="chunk counts for retrieval")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--retrieval-threads", default="1", help="torch/FAISS threads for retrieval, one pass each")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=200, help="the answer limit rag ask uses by default")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1", help="llama.cpp threads of the raw peer (the served generator: its default, plus these)")
    ap.add_argument("--hf-threads", default="1",
                    help="torch threads for the transformers variants, e.g. 2,1; the first is the baseline's")
    ap.add_argument("--skip-probe", action="store_true", help="skip the 1-vs-all-cores thread probe")
    ap.add_argument("--compile", action="store_true", help="also time static cache + torch.compile (minutes of warm-up)")
    ap.add_argument("--adapter", type=Path, help="a trained adapter folder (default: a random r16 one)")
    ap.add_argument("--skip-retrieval", action="store_true")
    ap.add_argument("--skip-generation", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "query.json")
    args = ap.parse_args()
    # Sections not run this time keep their last values; each records the command and machine that made it.
    result: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    run_info = {"command": "python bench/query.py " + " ".join(sys.argv[1:]), "machine": machine()}
    if not args.skip_retrieval:
        result["retrieval"] = {"run": run_info, **{
            f"threads_{t}": bench_retrieval([int(s) for s in args.sizes.split(",")], args.queries, args.k, int(t))
            for t in args.retrieval_threads.split(",")}}
    if not args.skip_generation and not args.skip_probe:
        result["thread_probe"] = {"run": run_info, **thread_probe()}
    if not args.skip_generation:
        result["generation"] = {"run": run_info, **bench_generation(args.prompts, args.max_new_tokens, args.rounds, args.compile,
                                                [int(t) for t in args.threads.split(",")],
                                                [int(t) for t in args.hf_threads.split(",")], args.adapter)}
        for name, row in result["generation"]["summary"].items():
            print(f"{name:30} ttft p50 {row['ttft_ms_p50']:6.0f} ms  answer p50 {row['answer_s_p50']:5.1f} s  "
                  f"decode {row['decode_tok_s']:6.1f} tok/s  "
                  f"x{row['ratio_vs_llamacpp']:.2f} of llama.cpp  x{row['speedup_vs_hf_generate_bf16']:.2f} of HF generate")
    run_info["machine"]["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Where a fine-tuning step's time goes: the recipe's micro-step split into phases, against its variants.

Builds the model ``rag finetune`` builds (:func:`finetune.model.build_model`:
the bundled SmolLM2-135M, LoRA r16 on q,k,v,o,gate,up,down, top 15 of 30
layers on CPU, bf16 weights + autocast where the CPU has native bf16) and
times training micro-steps (one example, batch 1, as the recipe) on
real-shaped examples: from ``--examples`` (a RAFT JSONL, as
``--save-examples`` writes) or synthesized from data/sample (four sources,
~650 tokens, a ~20-token target).

Each micro-step is split into forward (incl. the answer-only loss),
backward, the loss read-out for the progress bar, and the optimizer step
(clip + AdamW + schedule + zero_grad; timed every micro-step, reported per
example as 1/``grad_accum`` of it). Measured once and spread over the steps
the way the recipe spends them: tokenizing (once per epoch), a validation
pass (``val_examples`` forwards every ``eval_every`` optimizer steps) and a
checkpoint write (every ``save_every_s``). ``loop`` runs the recipe's own
:func:`finetune.train.run_loop` one micro-step at a time, so its time less
the split's is the loop's overhead (plus an optimizer step each example).

Variants, interleaved round robin so a shared machine's load falls on all
alike (compare ratios within one run, not absolute speeds across runs):

* ``recipe``       - bf16 weights + autocast (what accelerate does), top half, logits_to_keep
* ``loop``         - the same model through ``run_loop`` itself
* ``fp32``         - fp32 weights, no autocast (what an AVX2-only CPU gets)
* ``all_layers``   - LoRA on all 30 layers (``--layers all``)
* ``full_logits``  - the 49k-vocab head on every position, loss still on the answer
* ``tokens_400`` / ``tokens_1000`` - synthesized examples of that length
* ``threads_N``    - ``torch.set_num_threads(N)`` for that variant (``--threads`` sets the others';
  default torch's, every core). On a machine busy with other work, every core
  means every op waits at a barrier for a thread the OS has descheduled: run
  ``--threads 1`` there for ratios that hold, and ``threads_2`` to see the cost

Then ``torch.profiler``'s top ops by self CPU time over ``--profile-steps``
recipe micro-steps. Prints a table; ``--out`` writes JSON. Asserts nothing.

    python bench/train_profile.py --out bench/results/train_profile.json
    python bench/train_profile.py --examples runs/lodo-a-examples.jsonl --rounds 4
    python bench/train_profile.py --threads 1 --variants recipe,loop,fp32,all_layers,full_logits,threads_2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from finetune.artifacts import save_checkpoint  # noqa: E402
from finetune.config import TrainConfig  # noqa: E402
from finetune.dataset import RaftExample, SourceText, read_jsonl  # noqa: E402
from finetune.model import build_model  # noqa: E402
from finetune.train import (  # noqa: E402
    TrainData, TrainState, answer_loss, build_optimizer, encode, make_accelerator, run_loop, validation_loss,
)

GRAD_ACCUM = TrainConfig().grad_accum
PHASES = ("forward", "backward", "loss_readout", "optimizer")


# ---------------------------------------------------------------- examples


def synth_examples(tokenizer: Any, n_tokens: int, n: int) -> list[RaftExample]:
    """``n`` RAFT-shaped examples (question, four sources of data/sample text, ~20-token target) of ~``n_tokens``."""
    docs = sorted((ROOT / "data" / "sample" / "docs").glob("*.txt"))
    text = " ".join(" ".join(p.read_text().split()) for p in docs)  # ~50k characters, cycled
    out = []
    for i in range(n):
        start = [(997 * (4 * i + j)) % (len(text) // 2) for j in range(4)]

        def make(chars: int) -> RaftExample:
            sources = [SourceText(text[s : s + chars], docs[(4 * i + j) % len(docs)].name, f"d{j}") for j, s in enumerate(start)]
            return RaftExample(f"synth{i}", "synth", "When did the programme land its first crew on the Moon?",
                               sources, "The first crewed landing was Apollo 11, in July 1969 [1].", [1], True)

        lo, hi = 50, len(text) // 8  # characters per source: bisect to the token count
        while hi - lo > 8:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if len(encode(make(mid), tokenizer)[0]) < n_tokens else (lo, mid)
        out.append(make(lo))
    return out


def read_examples(path: Path, n: int) -> list[RaftExample]:
    return [ex for ex in read_jsonl(path) if not ex.id.startswith("val:")][:n]


# ---------------------------------------------------------------- one micro-step, split


@dataclass
class Variant:
    name: str
    model: Any
    optimizer: Any
    scheduler: Any
    params: list[Any]
    data: list[tuple[list[int], int]]
    full_logits: bool = False
    threads: int | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    tokens: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # process CPU time of each step (all threads)


def full_logits_loss(model: Any, ids: list[int], n_target: int) -> Any:
    """answer_loss without logits_to_keep: the head over every position, the loss still on the answer."""
    input_ids = torch.tensor([ids])
    logits = model(input_ids=input_ids).logits
    return torch.nn.functional.cross_entropy(logits[0, -n_target - 1 : -1].float(), input_ids[0, -n_target:])


def micro_step(v: Variant, i: int) -> None:
    ids, n = v.data[i % len(v.data)]
    threads = torch.get_num_threads()
    if v.threads:
        torch.set_num_threads(v.threads)
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        loss = full_logits_loss(v.model, ids, n) if v.full_logits else answer_loss(v.model, ids, n, "cpu")
        t1 = time.perf_counter()
        (loss / GRAD_ACCUM).backward()
        t2 = time.perf_counter()
        float(loss.detach())  # what run_loop keeps for the bar and the card
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(v.params, 1.0)
        v.optimizer.step()
        v.scheduler.step()
        v.optimizer.zero_grad()
        t4, c4 = time.perf_counter(), time.process_time()
    finally:
        torch.set_num_threads(threads)
    for phase, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
        v.times[phase].append(dt)
    v.tokens.append(len(ids))
    v.cpu_s.append(c4 - c0)


# ---------------------------------------------------------------- the run


def build(cfg: TrainConfig, accelerator: Any | None = None, fp32: bool = False) -> tuple[tuple, Any, dict, Any]:
    """(model, optimizer, scheduler, params), tokenizer, facts, accelerator: as train() builds them.

    ``fp32``: the model cast to fp32 and left unprepared (no autocast), as on a CPU without native bf16.
    """
    model, tokenizer, _, facts = build_model(cfg)
    model.train()  # LoRA dropout on, as in run_loop
    if fp32:
        model = model.float()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        return (model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0), params), tokenizer, facts, accelerator
    accelerator = accelerator or make_accelerator(facts)
    parts = build_optimizer(cfg, model, accelerator, total_opt=1000)
    return (parts.model, parts.optimizer, parts.scheduler, parts.params), tokenizer, {**facts, "parts": parts}, accelerator


def profile_ops(v: Variant, steps: int, top: int) -> tuple[list[dict], str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            micro_step(v, i)
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages) or 1
    rows = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    ops = [{"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1000 / steps, "calls_per_step": e.count / steps,
            "share": e.self_cpu_time_total / total} for e in rows]
    return ops, averages.table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=Path, help="RAFT examples JSONL (else synthesized from data/sample)")
    ap.add_argument("--tokens", type=int, default=650, help="synthesized example length")
    ap.add_argument("--rounds", type=int, default=3, help="timed micro-steps per variant; the fastest counts")
    ap.add_argument("--variants", default="recipe,loop,fp32,all_layers,full_logits,tokens_400,tokens_1000,threads_1")
    ap.add_argument("--profile-steps", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch threads for every variant but threads_N (default: torch's, every core)")
    ap.add_argument("--base-model", default="bundled")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "rag_app")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    wanted = args.variants.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cfg = TrainConfig(base_model=args.base_model, cache_dir=args.cache_dir, layers="top-half", out_dir=Path("runs/profile"))
    n_ex = max(args.rounds, 2)

    tic = time.perf_counter()
    recipe_parts, tokenizer, facts, accelerator = build(cfg)
    load_s = time.perf_counter() - tic
    examples = read_examples(args.examples, n_ex) if args.examples else synth_examples(tokenizer, args.tokens, n_ex)
    tic = time.perf_counter()
    data = [encode(ex, tokenizer) for ex in examples]
    encode_ms = 1000 * (time.perf_counter() - tic) / len(data)
    data = [d for d in data if len(d[0]) <= cfg.max_length] or data

    variants: dict[str, Variant] = {}
    if "recipe" in wanted:
        variants["recipe"] = Variant("recipe", *recipe_parts, data)
    if "full_logits" in wanted:
        variants["full_logits"] = Variant("full_logits", *recipe_parts, data, full_logits=True)
    for n_tok in (400, 1000):
        if f"tokens_{n_tok}" in wanted:
            synth = [encode(ex, tokenizer) for ex in synth_examples(tokenizer, n_tok, n_ex)]
            variants[f"tokens_{n_tok}"] = Variant(f"tokens_{n_tok}", *recipe_parts, synth)
    for name in wanted:
        if name.startswith("threads_"):
            variants[name] = Variant(name, *recipe_parts, data, threads=int(name.removeprefix("threads_")))
    if "fp32" in wanted:
        parts, _, _, _ = build(cfg, fp32=True)
        variants["fp32"] = Variant("fp32", *parts, data)
    if "all_layers" in wanted:
        parts, _, _, _ = build(TrainConfig(**{**cfg.__dict__, "layers": "all"}), accelerator)
        variants["all_layers"] = Variant("all_layers", *parts, data)

    loop_state = None
    loop_times: list[float] = []
    loop_tokens: list[int] = []
    if "loop" in wanted:  # the recipe's own loop, on a model prepared by accelerate as train() does
        loop_parts = facts["parts"]  # the recipe variant's model and optimizer
        loop_state = TrainState()
        loop_data = TrainData(data, [], list(range(len(data))), 0)
        loop_cfg = TrainConfig(**{**cfg.__dict__, "save_every_s": 1e9})

        def loop_step(timed: bool) -> None:
            tic = time.perf_counter()
            before = loop_state.tokens
            run_loop(loop_cfg, loop_parts, loop_data, loop_state, loop_state.micro_step + 1, Path(tempfile.gettempdir()),
                     progress=False)
            if timed:
                loop_times.append(time.perf_counter() - tic)
                loop_tokens.append(loop_state.tokens - before)

    print(f"model built in {load_s:.1f} s ({facts['dtype']}, {facts['adapted_layers']}, "
          f"{facts['trainable_parameters']:,} trainable); threads {torch.get_num_threads()}; "
          f"examples: {'%s' % args.examples if args.examples else 'synthesized'}, "
          f"{statistics.mean(len(d[0]) for d in data):.0f} tokens mean", flush=True)
    order = [w for w in wanted if w in variants or w == "loop"]
    results: dict[str, Any] = {
        "date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "facts": {k: v for k, v in facts.items() if k != "parts"}, "examples": str(args.examples or "synthesized"),
        "rounds": args.rounds, "encode_ms_per_example": encode_ms, "variants": {},
    }
    # No warm-up round (a step here is many seconds; first-call setup is a small part of one):
    # each variant's fastest round counts, the one least disturbed by the machine's other work.
    for r in range(args.rounds):
        for name in order:
            tic = time.perf_counter()
            if name == "loop":
                loop_step(timed=True)
            else:
                micro_step(variants[name], r)
            print(f"round {r + 1}/{args.rounds} {name:<12} {time.perf_counter() - tic:6.2f} s", flush=True)
        results["variants"] = {name: summarize(variants.get(name), loop_times if name == "loop" else None,
                                               loop_tokens if name == "loop" else None) for name in order}
        write(args.out, results)  # a run stopped by a time limit keeps what it measured

    # Once, spread over steps the way the recipe spends them.
    rec = variants.get("recipe")
    cfg_d = TrainConfig()
    if rec:
        tic = time.perf_counter()
        validation_loss(rec.model, data[:1], "cpu")
        results["validation_forward_s"] = time.perf_counter() - tic
        with tempfile.TemporaryDirectory() as tmp:
            tic = time.perf_counter()
            save_checkpoint(Path(tmp) / "checkpoint", rec.model, rec.optimizer, rec.scheduler, {"micro_step": 0})
            results["checkpoint_save_s"] = time.perf_counter() - tic

    print()
    base = results["variants"].get("recipe")
    print(f"{'variant':<13} {'tok/ex':>6} {'s/ex':>6} {'tok/s':>6} {'vs recipe':>9} {'fwd':>5} {'bwd':>5} {'opt':>5} {'cpu/wall':>8}")
    for name, row in results["variants"].items():
        rel = f"{row['s_per_example'] / base['s_per_example']:.2f}x" if base else "-"
        sh = row.get("share", {})
        cols = " ".join(f"{sh[p]:>5.0%}" for p in ("forward", "backward", "optimizer")) if sh else ""
        cols += f" {row['cpu_over_wall']:>8.2f}" if sh else ""
        print(f"{name:<13} {row['tokens_per_example']:>6.0f} {row['s_per_example']:>6.2f} {row['tokens_per_s']:>6.0f} "
              f"{rel:>9} {cols}")
    if base and rec:
        step = base["s_per_example"]
        spread = {
            "encode (once per epoch)": encode_ms / 1000 / step,
            f"validation ({cfg_d.val_examples} fwd / {cfg_d.eval_every * cfg_d.grad_accum} ex)":
                cfg_d.val_examples * results["validation_forward_s"] / (cfg_d.eval_every * cfg_d.grad_accum * step),
            f"checkpoint ({results['checkpoint_save_s']:.2f} s / {cfg_d.save_every_s:.0f} s)":
                results["checkpoint_save_s"] / cfg_d.save_every_s,
            "loss read-out (bar, card)": base["share"]["loss_readout"],
        }
        results["recipe_overheads_vs_step"] = spread
        print("\nrecipe overheads, as a share of one example's step:")
        for k, v in spread.items():
            print(f"  {k:<40} {v:6.1%}")
        if "loop" in results["variants"]:
            loop = results["variants"]["loop"]["s_per_example"]
            print(f"  {'run_loop vs split (+1 opt step/ex)':<40} {loop / step - 1:6.1%}")

    if rec and args.profile_steps:
        ops, table = profile_ops(rec, args.profile_steps, 15)
        results["profile_top_ops"] = ops
        print(f"\ntorch.profiler, {args.profile_steps} recipe micro-steps (fwd+bwd+opt), top ops by self CPU time:")
        print(table)
    results["wall_s"] = time.perf_counter() - started
    print(f"wall {results['wall_s']:.0f} s")
    write(args.out, results)


def summarize(v: Variant | None, loop_times: list[float] | None = None, loop_tokens: list[int] | None = None) -> dict:
    """The fastest round's phases (optimizer per example: 1/grad_accum of a step), tokens/s, shares; raw times too."""
    if v is None:  # the run_loop variant: whole examples only
        best = min(range(len(loop_times)), key=loop_times.__getitem__)
        return {"s_per_example": loop_times[best], "tokens_per_example": statistics.mean(loop_tokens),
                "tokens_per_s": loop_tokens[best] / loop_times[best], "raw_s": loop_times}
    totals = [sum(v.times[p][i] for p in PHASES) for i in range(len(v.tokens))]
    best = min(range(len(totals)), key=totals.__getitem__)
    phase = {p: v.times[p][best] for p in PHASES}
    phase["optimizer"] /= GRAD_ACCUM
    step_s = sum(phase.values())
    return {"s_per_example": step_s, "tokens_per_example": statistics.mean(v.tokens), "tokens_per_s": v.tokens[best] / step_s,
            **{f"{p}_s": t for p, t in phase.items()}, "share": {p: t / step_s for p, t in phase.items()}, "raw_s": totals,
            "cpu_s": v.cpu_s[best], "cpu_over_wall": v.cpu_s[best] / totals[best]}


def write(out: Path | None, results: dict) -> None:
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Examples a continued run has not seen: positions START..END of `rag finetune`'s training order over a build.

    python docs/finetune/next_examples.py runs/raft-v4-examples.jsonl 800 1600 runs/raft-v5-examples.jsonl

train() drops examples over 1,024 tokens, shuffles the rest with random.Random(seed) and takes them in that
order, so a run of N steps x 8 examples saw positions 0..8N-1. This writes positions START..END-1 (in that
order) and every validation example (the same held-out documents) to OUT, for `rag finetune --examples OUT`.
How versions 5b and 6 of the shipped adapter got their data (rag_app/adapters/smollm2-raft/HOW_MADE.md).
"""

import argparse
from pathlib import Path

from finetune.dataset import read_jsonl, write_jsonl
from finetune.train import TrainConfig, encode, training_order
from rag_app.config import load_settings
from rag_app.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("start", type=int)
    parser.add_argument("end", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    examples = read_jsonl(args.build)
    val = [e for e in examples if e.id.startswith("val:")]
    train = [e for e in examples if not e.id.startswith("val:")]
    settings = load_settings()
    tokenizer = load_model(settings.generate.model, settings.cache_dir, dtype="float32").tokenizer
    fit = [e for e in train if len(encode(e, tokenizer)[0]) <= TrainConfig.max_length]
    order = training_order(len(fit), args.seed)
    picked = [fit[i] for i in order[args.start : args.end]]
    write_jsonl(picked + val, args.out)
    print(f"{len(examples)} built, {len(fit)} fit; wrote {len(picked)} (positions {args.start}-{args.start + len(picked) - 1}, "
          f"{sum(not e.gold_kept for e in picked)} abstain targets) + {len(val)} validation to {args.out}")


if __name__ == "__main__":
    main()

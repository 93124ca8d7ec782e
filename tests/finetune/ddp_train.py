"""Run by test_data_parallel under ``torchrun``: train() on saved examples, as each process of a launch does."""

import sys
from pathlib import Path

from finetune.dataset import read_jsonl
from finetune.train import TrainConfig, train


def config(model: str, out: Path, cache: Path, grad_accum: int) -> TrainConfig:
    """The settings both sides of the test train with; only the accumulation differs."""
    return TrainConfig(base_model=model, out_dir=out, cache_dir=cache, quant="none", layers="all", lora_dropout=0.0,
                       grad_accum=grad_accum, max_steps=2, lr=1e-2)


if __name__ == "__main__":
    examples, model, out, cache = sys.argv[1:5]
    train(config(model, Path(out), Path(cache), grad_accum=1), read_jsonl(Path(examples)), progress=False)

"""Run by test_data_parallel under ``torchrun``: train() on saved examples, as each process of a launch does."""

import sys
from pathlib import Path

from finetune.dataset import read_jsonl
from finetune.train import TrainConfig, train

examples, model, out, cache = sys.argv[1:5]
train(TrainConfig(base_model=model, out_dir=Path(out), cache_dir=Path(cache), quant="none", layers="all", lora_dropout=0.0,
                  grad_accum=1, max_steps=2, lr=1e-2), read_jsonl(Path(examples)), progress=False)

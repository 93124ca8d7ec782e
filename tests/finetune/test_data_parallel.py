"""Data-parallel training (``torchrun`` / ``accelerate launch``) on CPU with gloo: two processes, one adapter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ddp_train
import pytest
import torch
from safetensors.torch import load_file

from finetune.dataset import RaftConfig, examples_from_triples, write_jsonl
from finetune.train import train

pytestmark = pytest.mark.slow  # starts two Python processes

SCRIPT = Path(ddp_train.__file__)  # what each launched process runs; its config() is what both sides train with


def test_two_processes_train_the_adapter_one_process_trains_with_the_same_batch(tiny_smollm, model_cache_dir, tmp_path):
    rows = [{"question": f"What colour is thing {i}?", "answer": f"colour{i}", "context": f"The thing {i} is colour{i}."}
            for i in range(4)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    examples = examples_from_triples(tmp_path / "t.jsonl", RaftConfig(p_gold=1.0, distractors=1))
    write_jsonl(examples, tmp_path / "ex.jsonl")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(tmp_path / "ex.jsonl"), str(tiny_smollm), str(tmp_path / "ddp"),
         str(model_cache_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert launch.returncode == 0, launch.stderr[-2000:]
    # One process, two examples per step in the same order: the same two optimizer steps.
    train(ddp_train.config(str(tiny_smollm), tmp_path / "one", model_cache_dir, grad_accum=2), examples, progress=False)
    # The checkpoint holds the fp32 weights (the shipped adapter is bf16, too coarse to compare).
    ddp, one = (load_file(str(tmp_path / d / "checkpoint" / "adapter.safetensors")) for d in ("ddp", "one"))
    assert ddp.keys() == one.keys()
    assert any(float(v.abs().max()) > 0 for k, v in one.items() if "lora_B" in k)  # the steps did move the adapter
    for key in one:
        assert one[key].dtype == torch.float32
        torch.testing.assert_close(ddp[key], one[key], atol=1e-5, rtol=1e-3)  # all-reduce sums in another order
    card = json.loads((tmp_path / "ddp" / "training_card.json").read_text())
    assert card["steps"] == {"examples_seen": 4, "optimizer_steps": 2, "processes": 2}
    assert not (tmp_path / "ddp" / "checkpoint.tmp").exists()  # one writer, no half-written checkpoint

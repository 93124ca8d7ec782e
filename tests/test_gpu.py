"""The CUDA path: NF4 (bitsandbytes) QLoRA training and 4-bit serving on tiny models.

Marked ``gpu`` and skipped without CUDA (CI and the project's CPU machine);
run it on a lent GPU machine with ``pytest -m gpu``.
"""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _examples(n):
    from finetune.dataset import RaftExample, SourceText

    return [RaftExample(str(i), "toy", f"What colour is item {i}?", [SourceText(f"Item {i} is painted {c}.", f"i{i}.txt", f"i{i}")],
                        f"{c} [1]", [1], True) for i, c in zip(range(n), ["red", "blue", "green"] * n)]


def test_qlora_trains_in_nf4_on_cuda_and_the_adapter_moves_the_model(tiny_llama32, tmp_path):
    from finetune.train import TrainConfig, answer_loss, encode, train
    from rag_app.models import apply_adapter, load_model

    cfg = TrainConfig(base_model=str(tiny_llama32), out_dir=tmp_path / "q", cache_dir=tmp_path / "cache", lr=2e-2, epochs=3,
                      grad_accum=2, eval_every=3, save_every_s=1e9, lora_r=4, lora_alpha=8, quant="auto")
    card = train(cfg, _examples(12), _examples(4), progress=False)
    assert card["device"] == "cuda" and card["quantization"] == "nf4 (QLoRA)" and card["gradient_checkpointing"]
    assert card["losses"][-1][1] < card["losses"][0][1]
    base = load_model(str(tiny_llama32), tmp_path, device="cuda", load_in_4bit=True)
    ids, n = encode(_examples(1)[0], base.tokenizer)
    with torch.no_grad():
        before = answer_loss(base.model, ids, n, "cuda").item()
        tuned = apply_adapter(load_model(str(tiny_llama32), tmp_path, device="cuda", load_in_4bit=True), tmp_path / "q")
        after = answer_loss(tuned.model, ids, n, "cuda").item()
    assert after < before


def test_4bit_generator_streams_on_cuda(tiny_llama32, tmp_path):
    from rag_app.generation import HFGenerator
    from rag_app.models import load_model

    loaded = load_model(str(tiny_llama32), tmp_path, device="cuda", load_in_4bit=True)
    assert getattr(loaded.model, "is_loaded_in_4bit", False)
    gen = HFGenerator(loaded, "tiny", None)
    pieces = list(gen.stream([{"role": "user", "content": "Say something."}], max_new_tokens=8))
    assert "".join(pieces) == gen.generate([{"role": "user", "content": "Say something."}], max_new_tokens=8)

"""Generator mechanics on tiny random models: loading routes, streaming, stop ids, adapters."""

import json

import pytest
import torch

from rag_app.config import GenerateConfig
from rag_app.errors import AdapterMismatchError, ModelNotFoundError
from rag_app.generation import HFGenerator, load_generator
from rag_app.chat_tokens import stop_token_ids
from rag_app.models import apply_adapter, check_adapter, load_model
from rag_app.prompts import build_messages
from rag_app.store import Chunk

MESSAGES = build_messages("What is the capital of France?", [Chunk(1, "Paris is the capital of France.", "f.txt", "f")])


def save_lora(loaded, folder, seed=0):
    """A LoRA with random (non-zero) B so it changes the output; base id recorded as rag finetune does."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft = get_peft_model(loaded.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.peft_config["default"].base_model_name_or_path = loaded.base_id
    peft.save_pretrained(str(folder))
    return folder


def test_local_folder_loads_and_streams(tiny_smollm, tmp_path):
    gen = load_generator(GenerateConfig(model=str(tiny_smollm), adapter="none", dtype="float32"), tmp_path)
    assert isinstance(gen, HFGenerator) and gen.adapter is None
    pieces = list(gen.stream(MESSAGES, max_new_tokens=8))
    assert len(pieces) >= 1
    assert "".join(pieces).strip() == gen.generate(MESSAGES, max_new_tokens=8)  # greedy: same text both ways
    assert gen.count_tokens(MESSAGES) > 20
    assert gen.tokenizer.convert_tokens_to_ids("<|im_end|>") in gen.stop_ids


def test_llama32_shaped_model_through_the_model_path_route(tiny_llama32, tmp_path):
    gen = load_generator(GenerateConfig(model=str(tiny_llama32), adapter="none", dtype="float32"), tmp_path)
    assert gen.model.config.rope_scaling["rope_type"] == "llama3"
    assert gen.model.config.num_key_value_heads < gen.model.config.num_attention_heads
    eot = gen.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert eot in gen.stop_ids
    prompt = gen.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system")
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    text = gen.generate(MESSAGES, max_new_tokens=5)
    assert isinstance(text, str)


def test_adapter_changes_output_and_wrong_base_is_refused(tiny_smollm, tiny_llama32, tmp_path):
    base = load_model(str(tiny_smollm), tmp_path, dtype="float32")
    ids = base.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        before = base.model(ids).logits
    adapter = save_lora(base, tmp_path / "lora")
    with_adapter = apply_adapter(load_model(str(tiny_smollm), tmp_path, dtype="float32"), adapter)
    with torch.no_grad():
        after = with_adapter.model(ids).logits
    assert not torch.allclose(before, after)

    other = load_model(str(tiny_llama32), tmp_path, dtype="float32")
    with pytest.raises(AdapterMismatchError, match="was trained for base model"):
        apply_adapter(other, adapter)


def test_adapter_errors(tmp_path, tiny_smollm):
    with pytest.raises(ModelNotFoundError, match="no adapter at"):
        check_adapter(tmp_path / "nope", "x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/other"}))
    with pytest.raises(AdapterMismatchError, match="use --model org/other or --no-adapter"):
        check_adapter(tmp_path / "a", "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_missing_models_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(ModelNotFoundError, match="set generate.model"):
        load_model("some-org/not-in-the-cache-model", tmp_path)


def test_stop_ids_include_turn_end_even_if_eos_differs(tiny_smollm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_smollm))
    tok.eos_token = "<|im_start|>"  # what transformers 5.17 produced from the GGUF
    ids = stop_token_ids(tok)
    assert tok.convert_tokens_to_ids("<|im_end|>") in ids and tok.convert_tokens_to_ids("<|im_start|>") in ids


@pytest.mark.parametrize("native_bf16, want", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_on_cpu_is_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch, native_bf16, want):
    import rag_app.models as models

    monkeypatch.setattr(models, "cpu_bf16_is_fast", lambda: native_bf16)
    assert models.pick_dtype("auto", "cpu") == want
    assert models.pick_dtype("float32", "cpu") == torch.float32  # an explicit choice is kept
    assert models.pick_dtype("bfloat16", "cpu") == torch.bfloat16


def test_converted_bundled_checkpoint_is_shared_by_installs(tmp_path, monkeypatch):
    """A second checkout's venv has the same GGUF at another path: it reuses the converted copy."""
    from rag_app import models

    gguf = tmp_path / "other-venv" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"gguf" * 8)
    monkeypatch.setattr(models, "bundled_gguf", lambda: gguf)
    target = tmp_path / "cache" / "models" / models._CONVERTED_NAME
    target.mkdir(parents=True)
    (target / "rag_app_source.json").write_text(json.dumps({"gguf": gguf.name, "size": 32}))
    assert models.ensure_bundled_checkpoint(tmp_path / "cache") == target  # no conversion (this GGUF is no model)
    gguf.write_bytes(b"gguf" * 9)  # another model version: converted again, which fails on this fake file
    with pytest.raises(Exception):
        models.ensure_bundled_checkpoint(tmp_path / "cache")

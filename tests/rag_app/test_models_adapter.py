"""A damaged adapter folder is one line naming the file and the fix, on both backends, before any weights load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rag_app.config import GenerateConfig
from rag_app.errors import AdapterError, RagError
from rag_app.generation import load_generator
from rag_app.gguf_export import convert_lora_adapter, lora_deltas
from rag_app.models import BUNDLED_ID, apply_adapter, check_adapter, load_model

FIX = "retrain it with rag finetune, or point --adapter at another folder (or --no-adapter)"


@pytest.fixture(scope="module")
def good_adapter(tiny_smollm, tmp_path_factory) -> Path:
    """A real LoRA for the tiny model, recorded for the bundled base (as rag finetune records it)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_smollm), dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.peft_config["default"].base_model_name_or_path = BUNDLED_ID
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    peft.save_pretrained(str(folder))
    return folder


def _broken(good: Path, tmp_path: Path, how: str) -> tuple[Path, str]:
    """A copy of ``good`` damaged as ``how``; returns it and the file the error must name."""
    folder = tmp_path / how
    shutil.copytree(good, folder)
    config, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if how == "config not json":
        config.write_text('{"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", ')  # cut off mid-write
        return folder, f"{config} is not readable JSON"
    if how == "config a list":
        config.write_text("[]")
        return folder, f"{config} holds a JSON list"
    if how == "empty weights":
        weights.write_bytes(b"")
        return folder, f"{weights} is empty (0 bytes)"
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return folder, f"{weights} is truncated"
    if how == "no weights":
        weights.unlink()
        return folder, f"{folder} has no adapter_model.safetensors"
    raise ValueError(how)


DAMAGE = ["config not json", "config a list", "empty weights", "truncated weights", "no weights"]


@pytest.mark.parametrize("how", DAMAGE)
def test_check_adapter_names_the_damaged_file_and_the_fix(good_adapter, tmp_path, how):
    folder, names = _broken(good_adapter, tmp_path, how)
    with pytest.raises(AdapterError) as err:
        check_adapter(folder, BUNDLED_ID)
    message = str(err.value)
    assert message.startswith(names) and message.endswith(FIX) and "\n" not in message
    assert isinstance(err.value, RagError)  # the CLI prints it as one line with exit 2


def test_a_good_adapter_passes(good_adapter):
    assert check_adapter(good_adapter, BUNDLED_ID) == good_adapter


@pytest.mark.parametrize("how", ["config not json", "empty weights"])
def test_transformers_backend_refuses_before_peft_reads_the_file(good_adapter, tiny_smollm, tmp_path, how):
    folder, names = _broken(good_adapter, tmp_path, how)
    cfg = json.loads((good_adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == BUNDLED_ID
    base = load_model(str(tiny_smollm), tmp_path, dtype="float32")
    base.base_id = BUNDLED_ID  # the tiny model stands in for the bundled one
    with pytest.raises(AdapterError, match="^" + names.replace("(", r"\(").replace(")", r"\)")):
        apply_adapter(base, folder)


def test_load_generator_with_a_damaged_adapter_is_one_line(good_adapter, tiny_smollm, tmp_path):
    folder, _ = _broken(good_adapter, tmp_path, "empty weights")
    with pytest.raises(RagError, match="is empty"):  # the tiny model's base id is its path: still refused, one line
        load_generator(GenerateConfig(model=str(tiny_smollm), adapter=str(folder), dtype="float32", backend="hf"), tmp_path)


@pytest.mark.parametrize("how", ["empty weights", "truncated weights"])
def test_llamacpp_conversion_refuses_damaged_weights(good_adapter, tmp_path, how):
    """The llama.cpp path converts or merges the adapter with gguf_export: the same check, the same line."""
    folder, names = _broken(good_adapter, tmp_path, how)
    with pytest.raises(AdapterError, match=FIX.replace("(", r"\(").replace(")", r"\)")):
        convert_lora_adapter(folder, tmp_path / "x.gguf", 4, 2)
    with pytest.raises(AdapterError, match="truncated|empty"):
        lora_deltas(folder, 4, 2)


def test_llamacpp_loader_checks_the_adapter_first(good_adapter, tmp_path, monkeypatch):
    """load_llamacpp_generator validates before it converts, merges or loads anything."""
    import rag_app.llamacpp as llamacpp

    folder, names = _broken(good_adapter, tmp_path, "config not json")
    monkeypatch.setattr(llamacpp, "llama_cpp_available", lambda: True)
    monkeypatch.setattr("rag_app.models.ensure_bundled_checkpoint", lambda cache: pytest.fail("loaded before checking"))
    with pytest.raises(AdapterError, match="is not readable JSON"):
        llamacpp.load_llamacpp_generator("bundled", str(folder), 512, tmp_path)

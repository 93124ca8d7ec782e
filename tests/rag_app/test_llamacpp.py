"""The llama.cpp backend: adapter conversion, backend routing, and parity with the transformers path.

Conversion and routing need only ``gguf`` (a core dependency), so CI covers
them; the tests that run llama.cpp skip without the optional extra
(``pip install '.[llamacpp]'``).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from rag_app.config import GenerateConfig
from rag_app.errors import AdapterMismatchError, ConfigError
from rag_app.generation import load_generator, resolve_backend
from rag_app.gguf_export import adapter_hash, convert_lora_adapter, lora_deltas, lora_gguf_for, requantize_gguf, served_gguf
from rag_app.llamacpp import llama_cpp_available
from rag_app.prompts import build_messages
from rag_app.store import Chunk

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def make_lora(model, folder, targets=TARGETS, layers=None, r=4, alpha=8, seed=0, scale_b=1.0, base_id=None, **extra):
    """Save a random (non-zero B) LoRA as rag finetune does: bf16 safetensors + adapter_config.json."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), layers_to_transform=layers,
                                            init_lora_weights=False, **extra))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(scale_b)
    if base_id:
        peft.peft_config["default"].base_model_name_or_path = base_id
    peft.to(torch.bfloat16).save_pretrained(str(folder))
    weights = {k: v.float() for k, v in peft.state_dict().items() if "lora_" in k}
    return folder, weights


def block(module: str) -> str:
    return "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"


@pytest.fixture
def new_tiny(tiny_smollm):
    """A fresh 2-layer random model per call (peft wraps a model in place)."""
    from transformers import AutoModelForCausalLM

    return lambda: AutoModelForCausalLM.from_pretrained(str(tiny_smollm), dtype=torch.float32)


@pytest.fixture
def tiny_model(new_tiny):
    return new_tiny()


def read_gguf(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: t for t in reader.tensors}
    return fields, tensors


def test_adapter_converts_to_a_llamacpp_lora_gguf(tiny_model, tmp_path):
    cfg = tiny_model.config  # 4 heads, 2 KV heads, hidden 64, 2 layers
    folder, weights = make_lora(tiny_model, tmp_path / "lora", layers=[1])
    out = convert_lora_adapter(folder, tmp_path / "lora.gguf", cfg.num_attention_heads, cfg.num_key_value_heads)
    fields, tensors = read_gguf(out)

    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)
    # only layer 1 was adapted: one A and one B per target module, nothing for layer 0
    assert set(tensors) == {f"blk.1.{GGUF_NAMES[m]}.weight.lora_{ab}" for m in TARGETS for ab in "ab"}
    for module in TARGETS:
        linear = dict(tiny_model.named_modules())[f"model.layers.1.{block(module)}.{module}"]
        a = tensors[f"blk.1.{GGUF_NAMES[module]}.weight.lora_a"]
        b = tensors[f"blk.1.{GGUF_NAMES[module]}.weight.lora_b"]
        # ggml shapes are reversed numpy shapes: A is [in, r], B is [r, out]
        assert list(a.shape) == [linear.in_features, 4]
        assert list(b.shape) == [4, linear.out_features]
        key = f"base_model.model.model.layers.1.{block(module)}.{module}"
        np.testing.assert_array_equal(np.asarray(a.data), weights[f"{key}.lora_A.default.weight"].numpy())
        if module not in ("q_proj", "k_proj"):
            np.testing.assert_array_equal(np.asarray(b.data), weights[f"{key}.lora_B.default.weight"].numpy())


def test_q_and_k_rows_follow_ggufs_interleaved_rope_order(tiny_model, tmp_path):
    """GGUF stores q/k rows of each head as (0, d/2, 1, d/2+1, ...); HF as (0, 1, ..., d/2, ...)."""
    cfg = tiny_model.config
    folder, weights = make_lora(tiny_model, tmp_path / "lora", targets=["q_proj", "k_proj"], layers=[0])
    _, tensors = read_gguf(convert_lora_adapter(folder, tmp_path / "l.gguf", cfg.num_attention_heads, cfg.num_key_value_heads))
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    for module, n_head in (("q_proj", cfg.num_attention_heads), ("k_proj", cfg.num_key_value_heads)):
        hf_b = weights[f"base_model.model.model.layers.0.self_attn.{module}.lora_B.default.weight"].numpy()
        gg_b = np.asarray(tensors[f"blk.0.{GGUF_NAMES[module]}.weight.lora_b"].data)
        for head in range(n_head):
            base = head * head_dim
            for i in range(head_dim // 2):
                np.testing.assert_array_equal(gg_b[base + 2 * i], hf_b[base + i])
                np.testing.assert_array_equal(gg_b[base + 2 * i + 1], hf_b[base + head_dim // 2 + i])


def test_merge_deltas_are_peft_updates_in_gguf_row_order(tiny_model, tmp_path):
    cfg = tiny_model.config
    folder, weights = make_lora(tiny_model, tmp_path / "lora", targets=["q_proj", "v_proj"], layers=[1], r=4, alpha=8)
    deltas = lora_deltas(folder, cfg.num_attention_heads, cfg.num_key_value_heads)
    assert set(deltas) == {"blk.1.attn_q.weight", "blk.1.attn_v.weight"}
    key = "base_model.model.model.layers.1.self_attn"
    for module, name in (("v_proj", "attn_v"), ("q_proj", "attn_q")):
        a, b = (weights[f"{key}.{module}.lora_{x}.default.weight"].numpy() for x in "AB")
        assert deltas[f"blk.1.{name}.weight"].shape == (b.shape[0], a.shape[1])
        if module == "v_proj":  # peft's delta is scale * B @ A with scale = alpha / r = 2
            np.testing.assert_allclose(deltas[f"blk.1.{name}.weight"], 2.0 * b @ a, rtol=1e-5, atol=1e-7)
    # q: the same update with rows in GGUF's interleaved RoPE order (row 1 of head 0 = HF row head_dim/2)
    a, b = (weights[f"{key}.q_proj.lora_{x}.default.weight"].numpy() for x in "AB")
    half = cfg.hidden_size // cfg.num_attention_heads // 2
    np.testing.assert_allclose(deltas["blk.1.attn_q.weight"][1], 2.0 * (b @ a)[half], rtol=1e-5, atol=1e-7)


def test_rslora_scale_is_folded_into_b(tiny_model, tmp_path):
    folder, weights = make_lora(tiny_model, tmp_path / "lora", targets=["v_proj"], layers=[0], r=4, use_rslora=True)
    _, tensors = read_gguf(convert_lora_adapter(folder, tmp_path / "l.gguf", 4, 2))
    hf_b = weights["base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight"].numpy()
    # peft scales by alpha/sqrt(r), llama.cpp by alpha/r: B carries the missing sqrt(r) = 2
    np.testing.assert_allclose(np.asarray(tensors["blk.0.attn_v.weight.lora_b"].data), hf_b * 2.0, rtol=1e-6)


def test_conversion_is_cached_by_content_hash(tiny_model, new_tiny, tmp_path):
    folder, _ = make_lora(tiny_model, tmp_path / "lora", targets=["v_proj"])
    first = lora_gguf_for(folder, tmp_path / "cache", 4, 2)
    stamp = first.stat().st_mtime_ns
    assert lora_gguf_for(folder, tmp_path / "cache", 4, 2) == first and first.stat().st_mtime_ns == stamp
    before = adapter_hash(folder)
    make_lora(new_tiny(), folder, targets=["v_proj"], seed=1)  # retrained in place: new weights, new file
    assert adapter_hash(folder) != before
    second = lora_gguf_for(folder, tmp_path / "cache", 4, 2)
    assert second != first and second.is_file()


def test_adapters_llamacpp_cannot_apply_are_refused(tiny_model, tmp_path):
    folder, _ = make_lora(tiny_model, tmp_path / "dora", targets=["v_proj"], use_dora=True)
    with pytest.raises(AdapterMismatchError, match="uses use_dora.*--backend hf"):
        convert_lora_adapter(folder, tmp_path / "x.gguf", 4, 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterMismatchError, match="no readable adapter_config.json"):
        convert_lora_adapter(tmp_path / "empty", tmp_path / "y.gguf", 4, 2)


def test_q8_0_rewrite_keeps_metadata_shapes_and_weights(tmp_path):
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 64)).astype(np.float32)  # numpy (out, in); ggml [64, 8]
    src = tmp_path / "tiny-q4_1.gguf"
    writer = gguf.GGUFWriter(str(src), arch="llama")
    writer.add_block_count(1)
    writer.add_token_list(["<a>", "b", "c"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    packed = quants.quantize(weight, Q.Q4_1)
    writer.add_tensor("blk.0.attn_q.weight", packed, raw_shape=packed.shape, raw_dtype=Q.Q4_1)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(64, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    out_fields, out = read_gguf(requantize_gguf(src, tmp_path / "tiny-q8_0.gguf"))
    src_fields, before = read_gguf(src)
    assert out_fields["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert {k: v for k, v in out_fields.items() if k != "general.file_type"} == \
        {k: v for k, v in src_fields.items() if k != "general.file_type"}
    assert out["blk.0.attn_q.weight"].tensor_type == Q.Q8_0 and out["blk.0.attn_norm.weight"].tensor_type == Q.F32
    assert list(out["blk.0.attn_q.weight"].shape) == list(before["blk.0.attn_q.weight"].shape) == [64, 8]
    q4 = quants.dequantize(before["blk.0.attn_q.weight"].data, Q.Q4_1).reshape(8, 64)
    q8 = quants.dequantize(out["blk.0.attn_q.weight"].data, Q.Q8_0).reshape(8, 64)
    step = np.abs(q4.reshape(-1, 32)).max(axis=1, keepdims=True) / 127  # Q8_0: blocks of 32, one scale each
    assert np.all(np.abs(q8 - q4).reshape(-1, 32) <= step / 2 + 1e-3 * step)


def test_backend_routing():
    assert resolve_backend(GenerateConfig(), llama_cpp_ok=True, llama_cpp_amx=False) == "llamacpp"
    assert resolve_backend(GenerateConfig(), llama_cpp_ok=True, llama_cpp_amx=True) == "hf"  # torch has AMX, llama.cpp not
    assert resolve_backend(GenerateConfig(backend="llamacpp"), llama_cpp_ok=True, llama_cpp_amx=True) == "llamacpp"
    assert resolve_backend(GenerateConfig(), llama_cpp_ok=False) == "hf"
    assert resolve_backend(GenerateConfig(model="/some/folder"), llama_cpp_ok=True) == "hf"
    assert resolve_backend(GenerateConfig(device="cuda"), llama_cpp_ok=True) == "hf"
    assert resolve_backend(GenerateConfig(backend="hf"), llama_cpp_ok=True) == "hf"
    assert resolve_backend(GenerateConfig(backend="llamacpp"), llama_cpp_ok=False) == "llamacpp"


def test_routing_picks_hf_when_llama_cpp_is_absent(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an install without the extra looks like
    assert not llama_cpp_available()
    assert resolve_backend(GenerateConfig()) == "hf"
    with pytest.raises(ConfigError, match=r"needs llama-cpp-python; run: pip install '\.\[llamacpp\]'"):
        load_generator(GenerateConfig(backend="llamacpp", adapter="none"), tmp_path)


def test_backend_flag_errors_are_one_line(monkeypatch, capsys, tmp_path):
    from rag_app.cli import main

    monkeypatch.chdir(tmp_path)
    for args, expected in (
        (["--backend", "vllm"], "Error: invalid setting generate.backend: Input should be 'auto', 'hf', 'llamacpp' or 'openai'"),
        (["--backend", "llamacpp", "--model", "org/x"],
         "Error: invalid setting: generate.backend llamacpp serves only the bundled model, not 'org/x'; use backend hf"),
    ):
        monkeypatch.setattr(sys, "argv", ["rag", "ask", "Who?", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip() == expected


# ---------------------------------------------------------------- with llama.cpp (optional extra)

QUESTION = "What year did Tesla die?"
SOURCES = [
    Chunk(1, "Nikola Tesla was a Serbian-American inventor. Tesla died on 7 January 1943 in New York.", "tesla.txt", "tesla"),
    Chunk(2, "The Rhine flows from the Swiss Alps to the North Sea.", "rhine.txt", "rhine"),
]
MESSAGES = build_messages(QUESTION, SOURCES)


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is the optional extra: pip install '.[llamacpp]'")


def test_amx_builds_load_without_extra_buffers(llama_cpp, monkeypatch):
    """ggml's AMX matmul segfaulted at the first decode on a Sapphire Rapids VM: such builds load without it."""
    import llama_cpp.llama_cpp as lib

    from rag_app.llamacpp import without_amx_buffers

    original = lib.llama_model_default_params
    monkeypatch.setattr(llama_cpp, "llama_print_system_info", lambda: b"CPU : AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |")
    with without_amx_buffers():
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params is original and original().use_extra_bufts is True
    monkeypatch.setattr(llama_cpp, "llama_print_system_info", lambda: b"CPU : AVX2 = 1 | REPACK = 1 |")
    with without_amx_buffers():
        assert lib.llama_model_default_params is original  # elsewhere the repacked kernels stay on


@pytest.fixture(scope="module")
def served(llama_cpp, model_cache_dir):
    """The bundled model on llama.cpp, built the way the llama.cpp backend builds it."""
    gen = load_generator(GenerateConfig(backend="llamacpp", adapter="none", context_window=1024, threads=1), model_cache_dir)
    assert type(gen).__name__ == "LlamaCppGenerator"
    return gen


@pytest.mark.slow
def test_llamacpp_gets_the_hf_prompt_and_stops_at_turn_end(served, model_cache_dir):
    hf = load_generator(GenerateConfig(adapter="none", backend="hf"), model_cache_dir)
    ids = served.encode(MESSAGES)
    assert ids == hf.encode(MESSAGES)  # the very ids transformers generates from
    text = served.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert served.llm.tokenize(text.encode(), add_bos=False, special=True) == ids  # llama.cpp reads the text alike
    assert text.endswith("<|im_start|>assistant\n")
    reply = served.stream(MESSAGES, max_new_tokens=200)
    answer = "".join(reply).strip()
    # Ended at <|im_end|>, not at the cap and not in an invented next turn (its words differ by CPU: not asserted).
    assert reply.finish == "stop" and answer and "<|im" not in answer and "Question:" not in answer
    assert served.generate(MESSAGES, max_new_tokens=200) == answer  # greedy: same text both ways
    assert served.count_tokens(MESSAGES) == len(ids) and served.count_text_tokens(answer) >= 1


def _llama_logits(llama_cpp, ids, lora=None, model_path=None):
    from rag_app.llamacpp import without_amx_buffers
    from rag_app.models import bundled_gguf

    with without_amx_buffers():
        llm = llama_cpp.Llama(model_path=str(model_path or bundled_gguf()), n_ctx=512, n_threads=1, logits_all=True,
                              lora_path=str(lora) if lora else None, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[llm.n_tokens - 1])


@pytest.mark.slow
def test_adapter_moves_llamacpp_logits_as_it_moves_hfs(llama_cpp, model_cache_dir, tmp_path, monkeypatch):
    """Same random LoRA on both backends: the change in next-token logits must agree.

    The adapter is strong on purpose: llama.cpp quantizes activations to 8 bits
    before each Q4_1 matmul, so any perturbation also shifts rounding, a noise
    of ~30 in the logits' L2 norm; the adapter's own effect (~140) must stand
    well above it. q and k of every layer make the check sensitive to the RoPE
    row order: without it the two changes are uncorrelated (~0.2).
    """
    import rag_app.gguf_export as gguf_export
    from rag_app.models import BUNDLED_ID, apply_adapter, bundled_gguf, load_model

    base = load_model("bundled", model_cache_dir, dtype="float32")
    ids = base.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    folder, _ = make_lora(load_model("bundled", model_cache_dir, dtype="float32").model, tmp_path / "lora",
                          targets=["q_proj", "k_proj"], r=8, alpha=16, base_id=BUNDLED_ID)
    with_adapter = apply_adapter(load_model("bundled", model_cache_dir, dtype="float32"), folder)
    with torch.no_grad():
        hf_delta = (with_adapter.model(ids).logits[0, -1] - base.model(ids).logits[0, -1]).numpy()
    ll_base = _llama_logits(llama_cpp, ids[0].tolist())

    def ll_delta(gguf_path):
        return _llama_logits(llama_cpp, ids[0].tolist(), gguf_path) - ll_base

    delta = ll_delta(lora_gguf_for(folder, tmp_path / "cache", 9, 3))
    assert np.linalg.norm(hf_delta) > 100  # well above the ~30 rounding noise
    assert np.corrcoef(hf_delta, delta)[0, 1] > 0.9
    assert 0.8 < np.linalg.norm(delta) / np.linalg.norm(hf_delta) < 1.25

    # merged into the Q8_0 rewrite (what backend=llamacpp serves), against the Q8_0 base
    q8_base = _llama_logits(llama_cpp, ids[0].tolist(), model_path=served_gguf(bundled_gguf(), model_cache_dir))
    merged = _llama_logits(llama_cpp, ids[0].tolist(), model_path=served_gguf(bundled_gguf(), tmp_path / "cache", folder, 9, 3))
    assert np.corrcoef(hf_delta, merged - q8_base)[0, 1] > 0.9
    assert 0.8 < np.linalg.norm(merged - q8_base) / np.linalg.norm(hf_delta) < 1.25

    monkeypatch.setattr(gguf_export, "_rope_permute", lambda weight, n_head: weight)  # the bug this test guards
    wrong = ll_delta(convert_lora_adapter(folder, tmp_path / "wrong.gguf", 9, 3))
    assert np.corrcoef(hf_delta, wrong)[0, 1] < 0.6


@pytest.mark.slow
def test_adapter_is_served_on_llamacpp_through_settings(llama_cpp, model_cache_dir, tmp_path):
    from rag_app.llamacpp import load_llamacpp_generator
    from rag_app.models import BUNDLED_ID, bundled_gguf, load_model

    folder, _ = make_lora(load_model("bundled", model_cache_dir, dtype="float32").model, tmp_path / "lora",
                          targets=["v_proj", "down_proj"], layers=[10, 20], r=8, alpha=16, base_id=BUNDLED_ID)
    digest = adapter_hash(folder)
    base_q8 = served_gguf(bundled_gguf(), model_cache_dir)
    merged = base_q8.with_name(f"{base_q8.stem}+lora-{digest}.gguf")
    lora = model_cache_dir / "lora-gguf" / f"lora-{digest}.gguf"
    try:
        gen = load_generator(GenerateConfig(backend="llamacpp", adapter=str(folder), context_window=1024, threads=1),
                             model_cache_dir)
        assert type(gen).__name__ == "LlamaCppGenerator" and gen.adapter == str(folder)
        assert gen.llm.model_path == str(merged)  # by default merged into the Q8_0 weights
        assert gen.generate(MESSAGES, max_new_tokens=8)
        runtime = load_llamacpp_generator("bundled", str(folder), 1024, model_cache_dir, n_threads=1, adapter_mode="lora")
        assert runtime.llm.model_path == str(base_q8) and lora.is_file()  # the base, plus the LoRA GGUF at run time
        assert runtime.generate(MESSAGES, max_new_tokens=8)
    finally:  # the user cache holds real adapters, not this test's
        merged.unlink(missing_ok=True)
        lora.unlink(missing_ok=True)


@pytest.mark.slow
def test_served_q8_0_weights_predict_like_the_bundled_q4_1(llama_cpp, model_cache_dir, served):
    from rag_app.gguf_export import served_gguf
    from rag_app.models import bundled_gguf

    ids = served.encode(MESSAGES)
    q4 = _llama_logits(llama_cpp, ids)
    q8 = _llama_logits(llama_cpp, ids, model_path=served_gguf(bundled_gguf(), model_cache_dir))
    assert served.llm.model_path == str(served_gguf(bundled_gguf(), model_cache_dir))
    assert np.argmax(q8) == np.argmax(q4) and np.corrcoef(q4, q8)[0, 1] > 0.995  # measured 0.998

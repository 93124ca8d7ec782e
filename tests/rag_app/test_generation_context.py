"""A prompt over the context budget is refused with one line on both backends, not answered with garbage."""

from __future__ import annotations

import pytest
from helpers import build_index, run_main

from rag_app.config import GenerateConfig, load_settings
from rag_app.errors import ConfigError, ContextWindowError
from rag_app.generation import HFGenerator, check_context, load_generator
from rag_app.pipeline import RagPipeline
from rag_app.prompts import build_messages
from rag_app.store import Chunk

SOURCE = Chunk(1, "Paris is the capital of France.", "f.txt", "f")
LONG_QUESTION = "What is the capital of France? " * 120  # ~960 tokens


def test_check_context_allows_exactly_the_window_and_refuses_one_more():
    check_context(900, 100, 1000)
    with pytest.raises(ContextWindowError) as err:
        check_context(901, 100, 1000)
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ConfigError)  # a RagError: the CLI prints one line, exit 2
    assert message.startswith("the prompt has 901 tokens and the answer up to 100, over the context window of 1000;")
    assert "raise generate.context_window" in message


@pytest.fixture
def tiny_gen(tiny_smollm, tmp_path) -> HFGenerator:
    gen = load_generator(GenerateConfig(model=str(tiny_smollm), adapter="none", dtype="float32", context_window=512), tmp_path)
    assert isinstance(gen, HFGenerator) and gen.context_window == 512
    return gen


def test_hf_generator_refuses_a_prompt_over_the_budget_without_generating(tiny_gen, monkeypatch):
    def never(**_kwargs):
        raise AssertionError("model.generate ran on a prompt over the context window")

    messages = build_messages(LONG_QUESTION, [SOURCE])
    assert tiny_gen.count_tokens(messages) > 512
    monkeypatch.setattr(tiny_gen.model, "generate", never)
    with pytest.raises(ContextWindowError, match="over the context window of 512"):
        tiny_gen.generate(messages, max_new_tokens=8)
    with pytest.raises(ContextWindowError, match="over the context window of 512"):
        list(tiny_gen.stream(messages, max_new_tokens=8))


def test_hf_generator_counts_the_answer_against_the_window(tiny_gen, monkeypatch):
    asked: list[int] = []

    def echo(**kwargs):  # no 400-token decode of a random model: record the request, answer nothing
        asked.append(kwargs["max_new_tokens"])
        return kwargs["input_ids"]

    monkeypatch.setattr(tiny_gen.model, "generate", echo)
    messages = build_messages("What is the capital of France?", [SOURCE])
    n = tiny_gen.count_tokens(messages)
    assert tiny_gen.generate(messages, max_new_tokens=512 - n) == "" and asked == [512 - n]  # fits exactly
    with pytest.raises(ContextWindowError, match=f"the prompt has {n} tokens and the answer up to {513 - n}"):
        tiny_gen.generate(messages, max_new_tokens=513 - n)


def test_a_question_too_long_for_the_window_is_one_line_and_exit_2(tiny_gen, tmp_path, fake_embedder, monkeypatch, capsys):
    """Through the pipeline and ``rag ask``: pack_sources keeps no source, the generator refuses the rest."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake-embedder")
    monkeypatch.setattr("rag_app.pipeline.load_embedder", lambda name: fake_embedder)
    monkeypatch.setattr("rag_app.pipeline.load_generator", lambda cfg, cache: tiny_gen)
    build_index(tmp_path / ".rag" / "index", fake_embedder, {"france": ["Paris is the capital of France."]}).close()
    settings = load_settings(retrieve={"min_score": 0.0}, generate={"max_new_tokens": 32})
    with pytest.raises(ContextWindowError, match="shorten the question"):
        RagPipeline(settings).answer(LONG_QUESTION)

    code, _out, err = run_main(monkeypatch, capsys, "ask", LONG_QUESTION, "--max-new-tokens", "32")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("Error: the prompt has ") and "over the context window of 512" in err


def test_llamacpp_refuses_with_the_same_line(model_cache_dir):
    from rag_app.llamacpp import LlamaCppGenerator, llama_cpp_available

    if not llama_cpp_available():
        pytest.skip("llama-cpp-python is not installed (the optional llamacpp extra)")
    from transformers import AutoTokenizer

    from rag_app.models import bundled_gguf, ensure_bundled_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_bundled_checkpoint(model_cache_dir)))
    gen = LlamaCppGenerator(bundled_gguf(), tokenizer, "bundled", context_window=512, n_threads=1)
    messages = build_messages(LONG_QUESTION, [SOURCE])
    with pytest.raises(ContextWindowError, match=rf"the prompt has {gen.count_tokens(messages)} tokens .* of 512;"):
        gen.generate(messages, max_new_tokens=8)

"""generate.backend = "openai": settings, the requests sent, the stream read, one-line errors, and a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FakeEmbedder
from helpers import build_index, run_main
from openai_fake import FakeOpenAIServer, free_port

from rag_app.config import GenerateConfig, load_settings
from rag_app.errors import ConfigError, GeneratorServerError
from rag_app.generation import load_generator
from rag_app.openai_backend import STOP, OpenAIGenerator, estimate_tokens, load_openai_generator
from rag_app.pipeline import Answer, RagPipeline
from rag_app.prompts import build_messages

DOCS = {"france": ["Paris is the capital of France. The Seine flows through Paris."],
        "moon": ["The Moon orbits the Earth once every 27 days."]}


def served(url: str, **extra) -> GenerateConfig:
    return GenerateConfig(backend="openai", base_url=url, **extra)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "openai"}, "generate.backend openai needs generate.base_url"),
    ({"backend": "openai", "base_url": "localhost:8080"}, "generate.base_url must be an http(s) URL"),
    ({"backend": "openai", "base_url": "http://h/v1", "abstain_threshold": 0.5},
     "generate.abstain_threshold needs the first token's logits"),
    ({"backend": "openai", "base_url": "http://h/v1", "adapter": "out/adapter"},
     "generate.adapter applies to in-process models"),
    ({"backend": "openai", "base_url": "http://h/v1", "api_key_env": "sk-abc123"},
     "generate.api_key_env is the NAME of the environment variable"),
])
def test_bad_server_settings_are_one_config_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        load_settings(generate=kwargs)
    assert str(err.value).startswith(f"invalid setting: {message}") and "\n" not in str(err.value)


def test_server_settings_change_the_loading_key_and_leave_other_dumps_as_they_were():
    local = GenerateConfig()
    assert "base_url" not in local.model_dump() and "api_key_env" not in local.model_dump()  # eval fingerprints
    a, b = served("http://a:1/v1"), served("http://b:1/v1")
    assert a.loading_key() != b.loading_key() and dict(a.loading_key())["base_url"] == "http://a:1/v1"
    assert a.adapter_path is None and a.applied_abstain_threshold is None  # the server serves its own weights


def test_api_key_comes_from_the_named_env_var(monkeypatch):
    cfg = served("http://h/v1", api_key_env="MY_SERVER_KEY")
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    with pytest.raises(ConfigError, match="generate.api_key_env names MY_SERVER_KEY, which is not set"):
        cfg.api_key()
    monkeypatch.setenv("MY_SERVER_KEY", "s3cret")
    assert cfg.api_key() == "s3cret"


def test_token_estimate_errs_high_for_english():
    text = "Paris is the capital of France. " * 20
    assert estimate_tokens(text) >= len(text) / 4  # English BPE: about four characters a token
    assert estimate_tokens("法国的首都是巴黎") == 8  # three bytes a character: one token each


# ---------------------------------------------------------------- against a stand-in server


def test_stream_sends_the_prompt_messages_stop_and_sampling_and_yields_pieces(monkeypatch):
    monkeypatch.setenv("MY_SERVER_KEY", "s3cret")
    with FakeOpenAIServer() as server:
        gen = load_openai_generator(served(server.url, api_key_env="MY_SERVER_KEY", context_window=8192))
        assert gen.model == "served-model" and gen.context_window == 8192  # "bundled": the server's one model
        messages = build_messages("What is the capital of France?", [])
        reply = gen.stream(messages, max_new_tokens=4, temperature=0.7, top_p=0.9)
        pieces = list(reply)
        assert pieces == ["Paris", " is", " the", " capital"]
        assert reply.finish == "length"  # the server's finish_reason: cut at max_tokens
        assert gen.count_text_tokens("".join(pieces)) == 4  # the server's pieces, not the estimate
        (sent,) = server.requests
        assert sent["messages"] == messages and sent["model"] == "served-model" and sent["stream"] is True
        assert sent["max_tokens"] == 4 and sent["stop"] == STOP
        assert sent["temperature"] == 0.7 and sent["top_p"] == 0.9
        assert server.headers[0]["authorization"] == "Bearer s3cret"
        assert gen.generate(messages, max_new_tokens=2) == "Paris is"
        assert server.requests[1]["temperature"] == 0.0 and "top_p" not in server.requests[1]  # greedy
        whole = gen.stream(messages, max_new_tokens=50)
        list(whole)
        assert whole.finish == "stop"


def test_model_named_is_sent_and_several_served_need_a_name():
    with FakeOpenAIServer(models=("llama3.2:1b", "qwen2.5:7b")) as server:
        with pytest.raises(ConfigError, match=r"serves llama3.2:1b, qwen2.5:7b; set generate.model"):
            load_openai_generator(served(server.url))
        gen = load_openai_generator(served(server.url, model="qwen2.5:7b"))
        gen.generate([{"role": "user", "content": "hi"}], 3)
        assert server.requests[0]["model"] == "qwen2.5:7b" and gen.name == f"qwen2.5:7b (served at {server.url})"


def test_abstain_threshold_is_refused_per_call():
    gen = OpenAIGenerator(client=None, model="m", base_url="http://h/v1")
    with pytest.raises(ConfigError, match="abstain_threshold"):
        list(gen.stream([{"role": "user", "content": "q"}], 5, abstain_threshold=0.4))


def test_a_server_that_is_down_is_one_line():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(GeneratorServerError) as err:
        load_openai_generator(served(url))
    assert str(err.value).startswith(f"cannot reach the generator at {url}: ")
    assert str(err.value).endswith("; start it or fix generate.base_url") and "\n" not in str(err.value)


@pytest.mark.parametrize("mode, expected", [
    ("garbage", "answered something that is not an OpenAI chat completion ("),
    ("error", "answered HTTP 500: model crashed"),
    ("empty", "answered something that is not an OpenAI chat completion ("),
    ("refuse", "answered HTTP 400: This model's maximum context length is 512 tokens. However, you requested 1539 "
               "tokens; if the prompt is too long for the server, set generate.context_window"),
])
def test_garbage_or_http_errors_are_one_line(mode, expected):
    with FakeOpenAIServer() as server:
        gen = load_openai_generator(served(server.url))  # /models answers JSON
        server.mode = mode
        with pytest.raises(GeneratorServerError) as err:
            gen.generate([{"role": "user", "content": "q"}], 5)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_garbage_model_list_is_one_line():
    with FakeOpenAIServer(mode="garbage") as server, pytest.raises(GeneratorServerError) as err:
        load_openai_generator(served(server.url))
    assert "is not an OpenAI chat completion" in str(err.value)


def test_rag_eval_answers_with_a_served_model(tmp_path, monkeypatch, capsys):
    """`rag eval` loads the generator through GenerateConfig/load_generator, so the server answers its questions."""
    import json

    import rag_app.embeddings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(rag_app.embeddings, "load_embedder", lambda name=None: FakeEmbedder())
    root = tmp_path / "tiny"
    (root / "docs").mkdir(parents=True)
    for doc_id, (text,) in DOCS.items():
        (root / "docs" / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    (root / "qa.jsonl").write_text(json.dumps({"id": "q1", "question": "What is the capital of France?",
                                               "answers": ["Paris"], "gold_doc_ids": ["france"]}) + "\n")
    with FakeOpenAIServer(reply="Paris [1]") as server:
        monkeypatch.setenv("RAG_GENERATE__BACKEND", "openai")
        monkeypatch.setenv("RAG_GENERATE__BASE_URL", server.url)
        code, out, err = run_main(monkeypatch, capsys, "eval", str(root), "--k", "1")
        assert code in (0, None), err
        (sent,) = server.requests
    assert "Question: What is the capital of France?" in sent["messages"][-1]["content"]
    (config,) = json.loads((tmp_path / "eval-out" / "tiny" / "report.json").read_text())["configs"]
    (record,) = config["records"]
    assert record["reply"] == "Paris [1]" and record["citations"] == [1], record
    assert record["model"] == f"served-model (served at {server.url})"


def test_rag_ask_with_the_server_down_is_one_error_line(tmp_path, monkeypatch, capsys):
    import rag_app.pipeline

    embedder = FakeEmbedder()
    build_index(tmp_path / "index", embedder, DOCS).close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rag_app.pipeline, "load_embedder", lambda name=None: embedder)
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, out, err = run_main(monkeypatch, capsys, "ask", "What is the capital of France?", "--index", str(tmp_path / "index"),
                              "--backend", "openai")
    assert code == 2 and err.strip() == "Error: invalid setting: generate.backend openai needs generate.base_url, " \
                                        "the server's /v1 URL (e.g. http://127.0.0.1:8080/v1)"
    monkeypatch.setenv("RAG_GENERATE__BASE_URL", url)
    code, out, err = run_main(monkeypatch, capsys, "ask", "What is the capital of France?", "--index", str(tmp_path / "index"),
                              "--backend", "openai")
    assert code == 2 and err.startswith(f"Error: cannot reach the generator at {url}: ") and err.count("\n") == 1


# ---------------------------------------------------------------- llama-cpp-python's real server


def _shipped_model_gguf(cache_dir: Path) -> Path:
    """The bundled GGUF with the shipped adapter merged in (as backend llamacpp serves it): what one would serve."""
    from rag_app.config import SHIPPED_ADAPTER
    from rag_app.gguf_export import served_gguf
    from rag_app.models import bundled_gguf

    return served_gguf(bundled_gguf(), cache_dir, SHIPPED_ADAPTER, n_head=9, n_head_kv=3)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory, model_cache_dir):
    """``python -m llama_cpp.server`` on a free loopback port with the fine-tuned bundled model; its log on failure."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python's server extra: pip install '.[serve]'")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    # llama_cpp.server through rag_app.llamacpp_server: AMX buffers off where they segfault (the README's command).
    cmd = [sys.executable, "-m", "rag_app.llamacpp_server", "--model", str(_shipped_model_gguf(model_cache_dir)),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", "--seed", "0",
           "--model_alias", "smollm2-rag"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start (exit {proc.poll()}); its log:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
    server = {"url": url, "proc": proc, "log": log_path}
    yield server
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_a_real_llama_cpp_server_streams_a_cited_answer_then_a_stopped_one_is_one_line(llama_server, tmp_path):
    embedder = FakeEmbedder()
    store = build_index(tmp_path / "index", embedder, DOCS)
    settings = load_settings(index=tmp_path / "index", cache_dir=tmp_path / "cache",
                             generate={"backend": "openai", "base_url": llama_server["url"], "max_new_tokens": 48})
    generator = load_generator(settings.generate, settings.cache_dir)
    assert generator.model == "smollm2-rag"  # the one model the server lists
    rag = RagPipeline(settings, store=store, embedder=embedder, generator=generator)
    items = list(rag.stream("What is the capital of France?"))
    answer = items[-1]
    assert isinstance(answer, Answer), llama_server["log"].read_text()[-2000:]
    assert len(items) > 2  # streamed: several pieces before the Answer
    assert "Paris" in answer.text and answer.citations == [1] and not answer.abstained, answer.text
    assert answer.sources[0].chunk.doc_id == "france" and answer.timings.tokens > 1

    roomy = OpenAIGenerator(generator.client, generator.model, llama_server["url"], context_window=100_000)
    with pytest.raises(GeneratorServerError) as err:  # past the server's own window (--n_ctx 4096)
        roomy.generate([{"role": "user", "content": "Paris is the capital of France. " * 1000}], 8)
    assert f"the generator at {llama_server['url']} answered HTTP 400: " in str(err.value)
    assert str(err.value).endswith("set generate.context_window to its window or lower retrieve.top_k")

    llama_server["proc"].terminate()
    llama_server["proc"].wait(timeout=10)
    with pytest.raises(GeneratorServerError) as err:
        rag.answer("What is the capital of France?")
    assert str(err.value).startswith(f"cannot reach the generator at {llama_server['url']}: ")
    assert "\n" not in str(err.value)
    store.close()

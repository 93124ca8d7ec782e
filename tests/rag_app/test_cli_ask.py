"""`rag ask` and `rag chat` as a user runs them: fakes for the models, a real index and pipeline."""

import json
import os
import subprocess
import sys

import pytest
from conftest import FakeGenerator
from helpers import build_index, run_main


@pytest.fixture
def env(tmp_path, monkeypatch, fake_embedder):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake-embedder")
    monkeypatch.setattr("rag_app.pipeline.load_embedder", lambda name: fake_embedder)
    gen = FakeGenerator("Tokyo is the capital of Japan [1].")
    monkeypatch.setattr("rag_app.pipeline.load_generator", lambda cfg, cache: gen)
    build_index(tmp_path / ".rag" / "index", fake_embedder, {
        "japan": ["Tokyo is the capital of Japan."], "france": ["Paris is the capital of France."]})
    return gen


def test_ask_streams_the_answer_then_the_sources(env, monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?")
    assert code == 0
    assert out.startswith("Tokyo is the capital of Japan [1].\n")
    assert "japan.txt" in out and "Sources" in out


def test_ask_that_abstains_says_what_to_try(env, monkeypatch, capsys):
    env.reply = "I don't know from the provided documents."
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?", "--mode", "dense")
    assert code == 0 and "try --hybrid, or rephrase with words the document uses" in out.lower()
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?")  # hybrid, the default
    assert "--hybrid" not in out and "try --mode dense (it finds paraphrases), or rephrase" in out.lower()
    monkeypatch.setenv("RAG_RETRIEVE__MIN_SCORE", "0.99")  # nothing is close: the documents may not hold it
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?")
    assert "model was not asked" in out and "ingest the ones that do" in out and "--hybrid" not in out


def test_chat_that_abstains_says_what_to_try(env, monkeypatch, capsys):
    env.reply = "I don't know from the provided documents."
    lines = iter(["What is the capital of Japan?", "/exit"])
    monkeypatch.setattr("rich.console.Console.input", lambda self, prompt="": next(lines))
    code, out, _ = run_main(monkeypatch, capsys, "chat", "--mode", "dense")
    assert code == 0 and "try --hybrid" in out.lower()


def test_ask_json_prints_the_whole_answer(env, monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "ask", "capital of Japan?", "--json", "--k", "2")
    data = json.loads(out)
    assert code == 0 and data["citations"] == [1] and data["invalid_citations"] == []
    assert [s["chunk"]["doc_id"] for s in data["sources"]][0] == "japan" and len(data["sources"]) == 2
    assert data["sources"][0]["location"] == "japan.txt"


def test_ask_show_evidence_prints_the_supporting_sentence_and_json_carries_it(env, monkeypatch, capsys):
    env.reply = "The capital is Tokyo [1]."
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?", "--show-evidence")
    assert code == 0
    assert out.splitlines()[:2] == ["The capital is Tokyo [1].", 'Evidence [1] japan.txt: "Tokyo is the capital of Japan."']
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?", "--json")
    assert json.loads(out)["evidence"] == [{"citation": 1, "source": "japan.txt", "claim": "The capital is Tokyo",
                                            "sentence": "Tokyo is the capital of Japan.", "start": 0, "end": 30,
                                            "highlights": [[0, 5]]}]


def test_ask_warns_of_a_claim_no_source_holds_and_notes_a_moved_citation(env, monkeypatch, capsys):
    env.reply = "The capital of Japan is Kyoto [1]. France has Paris [1]."
    code, out, _ = run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?", "--k", "2")
    assert code == 0 and out.startswith("The capital of Japan is Kyoto [1]. France has Paris [2].")
    assert "Warning: 'Kyoto' (in \"The capital of Japan is Kyoto\", citing [1]) is in none of the sources shown" in out
    assert 'Note: cited [2] instead of [1]: what "France has Paris" says is in that source.' in out
    data = json.loads(run_main(monkeypatch, capsys, "ask", "What is the capital of Japan?", "--k", "2", "--json")[1])
    assert data["unsupported_claims"][0]["missing"] == ["Kyoto"] and data["recited"][0]["to"] == [2]
    assert any("'Kyoto'" in w for w in data["warnings"])


def test_ask_errors_are_one_line(env, monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "ask", "  ")
    assert code == 2 and err.splitlines() == ['Error: the question is empty; pass a question, e.g. rag ask "What is ...?"']
    code, _, err = run_main(monkeypatch, capsys, "ask", "hi?", "--index", "nowhere")
    assert code == 2 and err.splitlines() == ["Error: no index at nowhere; build one with: rag ingest DIR --index nowhere"]
    code, _, err = run_main(monkeypatch, capsys, "ask", "hi?", "--k", "0")
    assert code == 2 and err.splitlines() == ["Error: invalid setting: retrieve.top_k must be >= 1, got 0"]


def test_chat_keeps_history_and_handles_commands(env, monkeypatch, capsys):
    lines = iter(["What is the capital of Japan?", "/sources", "And its size?", "/reset", "/exit"])
    monkeypatch.setattr("rich.console.Console.input", lambda self, prompt="": next(lines))
    code, out, _ = run_main(monkeypatch, capsys, "chat")
    assert code == 0
    assert out.count("Tokyo is the capital of Japan [") == 2 and "History cleared." in out  # [n]: where Tokyo is
    assert "japan.txt" in out  # /sources table
    second = env.calls[1]
    assert second[1] == {"role": "user", "content": "What is the capital of Japan?"}  # history passed on


def test_chat_history_follows_the_pipelines_rule(env, monkeypatch, capsys):
    from rag_app.prompts import ABSTAIN

    replies = iter(["Tokyo [1].", "Japan [1].", ABSTAIN, "Honshu [1].", "Kanto [1].", "Last [1]."])
    monkeypatch.setattr(env, "stream", lambda messages, *a, **k: (env.calls.append(messages), iter([next(replies)]))[1])
    questions = [f"What is the capital of Japan? ({i})" for i in range(6)]
    lines = iter([*questions, "/exit"])
    monkeypatch.setattr("rich.console.Console.input", lambda self, prompt="": next(lines))
    assert run_main(monkeypatch, capsys, "chat")[0] == 0
    seen = [m["content"] for m in env.calls[-1][1:-1] if m["role"] == "assistant"]
    # as the UI: the last three turns that answered, the abstention left out (rag_app.pipeline.chat_history)
    assert seen == ["Japan [1].", "Honshu [1].", "Kanto [1]."]


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_terminal_shows_no_weight_loading_bars_unless_verbose(verbose):
    """A real model load prints transformers' "Loading weights" bar; rag's commands hide it unless -v."""
    code = ("from rag_app.cli import _setup_logging; _setup_logging(%s); "
            "from rag_app.embeddings import SentenceTransformerEmbedder; SentenceTransformerEmbedder()" % verbose)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300).stderr
    assert ("Loading weights" in err) is verbose


@pytest.mark.parametrize("verbose", [False, True])
def test_library_warnings_hidden_unless_verbose(verbose):
    """Not for users: bitsandbytes' unreachable hub kernel (AVX512-BF16 CPUs, offline), deprecation notices."""
    import logging
    import warnings

    from rag_app.cli import _setup_logging

    _setup_logging(verbose)  # rag ui's page calls the same quiet_libraries
    try:
        assert logging.getLogger("bitsandbytes.backends.cpu.ops").isEnabledFor(logging.WARNING) is verbose
        with warnings.catch_warnings(record=True) as caught:  # e.g. transformers' is_gradient_checkpointing notice
            warnings.warn("x is deprecated", FutureWarning)
        assert bool(caught) is verbose
    finally:
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.NOTSET)


@pytest.mark.parametrize("command", [["ask", "What is the capital of Japan?"], ["chat"]])
def test_a_citation_to_a_source_not_shown_is_marked_nowhere_as_a_source(env, monkeypatch, capsys, command):
    env.reply = "Tokyo is the capital of Japan [1] [9]."
    lines = iter(["What is the capital of Japan?", "/sources", "/exit"])
    monkeypatch.setattr("rich.console.Console.input", lambda self, prompt="": next(lines))
    code, out, _ = run_main(monkeypatch, capsys, *command)
    assert code == 0 and "Tokyo is the capital of Japan [1] [9]." in out  # the reply as the model wrote it
    numbers = [line.split("│")[1].strip() for line in out.splitlines() if ".txt" in line]
    assert numbers == ["1*", "2"]  # only source 1 is marked cited; no row, no mark for [9]
    assert "cites source(s) [9], which were not shown" in out
    assert "\x1b]8;" not in out  # no terminal hyperlink anywhere

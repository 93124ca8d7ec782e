"""--synthesize: the model's QA pairs are filtered, counted, measured, and become RAFT examples."""

import json
import re

import pytest
from helpers import build_index, run_main

from finetune.dataset import RaftConfig, build_examples
from finetune.synthesize import Rejected, parse_pair, question_line, sample_chunks, synthesis_quality, synthesize_items
from rag_app.config import RetrieveConfig
from rag_app.prompts import build_messages
from rag_app.retriever import Retriever

PASSAGE = "The harbour town of Velmora was founded in 1412 by salt traders, who built its first stone bridge in 1450."
DOCS = {f"town{n}": [f"The harbour town of T{n} was founded in {1400 + n} by salt traders from the northern coast, "
                     f"who built its stone bridge over the river R{n} and a market hall of red brick beside it, "
                     f"where fish, salt and wool were sold every week."]
        for n in range(6)}


@pytest.mark.parametrize("question, answer, want", [
    ("When was Velmora founded?", "1412 [1]", ("When was Velmora founded?", "1412")),
    ('"Who founded the harbour town of Velmora?"\nMore text.', '"...founded in 1412 by salt traders." [1]\nSalt traders. [1]',
     ("Who founded the harbour town of Velmora?", "Salt traders")),
    ("Velmora was founded in 1412.", "1412 [1]", "not a question"),
    ("When was Velmora founded?", "I don't know from the provided documents.", "answerer abstained"),
    ("When was Velmora founded?", "1513 [1]", "answer not in passage"),
    ("When was Velmora founded?", " ".join(["word"] * 9), "answer empty or long"),
    ("Was Velmora founded in 1412 by traders?", "1412 [1]", "question gives the answer away"),
])
def test_parse_pair_keeps_only_grounded_short_answers(question, answer, want):
    got = parse_pair(question, answer, PASSAGE)
    assert (got.reason if isinstance(got, Rejected) else got) == want


@pytest.fixture
def store(tmp_path, fake_embedder):
    return build_index(tmp_path / "idx", fake_embedder, DOCS)


def writer(messages):
    """A stand-in question writer: asks for the founding year of the passage's town; every third reply is junk."""
    town = re.search(r"town of (T\d) was", messages[-1]["content"]).group(1)
    writer.calls += 1
    return "I like bridges." if writer.calls % 3 == 0 else f"In which year was {town} founded?"


def answerer(messages):
    """A stand-in answerer: reads the year from the one source it is shown, cites it."""
    user = messages[-1]["content"]
    assert messages[0] == build_messages("q", [])[0] and "[1] (" in user and "[2] (" not in user  # serving prompt, one source
    return re.search(r"founded in (\d+)", messages[-1]["content"]).group(1) + " [1]"


def test_synthesized_items_are_counted_measured_and_become_raft_examples(store, fake_embedder):
    writer.calls = 0
    assert len({c.doc_id for c in sample_chunks(store, 6, seed=0)}) == 6  # one per document first
    items, stats = synthesize_items(store, writer, answerer, 6, "towns")
    assert stats["chunks_asked"] == 6 and stats["kept"] == 4 == len(items) and stats["rejected"] == {"not a question": 2}
    assert all(i.answers[0] == str(1400 + int(i.gold_doc_ids[0][4:])) for i in items)  # the answer of its own passage
    retriever = Retriever(store, fake_embedder, RetrieveConfig(top_k=2))
    assert synthesis_quality(items, lambda q: retriever.retrieve(q, k=2))["gold_doc_hit_at_k"] == 1.0
    examples = build_examples(items, "towns", store, retriever, RaftConfig(p_gold=1.0, distractors=2))
    assert len(examples) == 4 and all(ex.sources[ex.gold_numbers[0] - 1].doc_id == i.gold_doc_ids[0]
                                      for ex, i in zip(examples, items))


@pytest.mark.slow
def test_rag_finetune_synthesize_on_a_plain_folder(tmp_path, tiny_smollm, fake_embedder, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake-embedder")
    monkeypatch.setattr("rag_app.embeddings.load_embedder", lambda name: fake_embedder)
    monkeypatch.setattr("finetune.recipe._synthesis_models", lambda settings: (writer, answerer))
    writer.calls = 0
    folder = tmp_path / "notes"  # documents only: no docs/ subfolder, no qa.jsonl
    folder.mkdir()
    for doc_id, (text,) in DOCS.items():
        (folder / f"{doc_id}.txt").write_text(text)
    saved = tmp_path / "ex.jsonl"
    code, out, _ = run_main(monkeypatch, capsys, "finetune", str(folder), "--synthesize", "6", "--model", str(tiny_smollm),
                            "--dry-run", "--p-gold", "1.0", "--val-fraction", "0", "--save-examples", str(saved))
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert code == 0 and len(rows) == 4 and all(r["target"].endswith(f"[{r['gold_numbers'][0]}]") for r in rows)
    assert "In which year was T" in out


def test_a_quoted_question_is_asked_and_kept_as_parse_pair_reads_it(store):
    writer.calls = 0
    quoted = lambda messages: f'"{writer(messages)}"'  # noqa: E731  some models wrap the question in quotes
    items, stats = synthesize_items(store, quoted, answerer, 3, "towns")
    assert stats["kept"] == 2 == len(items) and all(not i.question.startswith('"') for i in items)
    assert question_line("I like bridges.") is None and question_line('"When was T1 founded?"\nmore') == "When was T1 founded?"

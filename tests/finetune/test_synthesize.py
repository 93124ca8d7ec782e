"""--synthesize: the model's QA pairs are filtered, counted, measured, and become RAFT examples."""

import json
import re

import pytest
from helpers import build_index, run_main

from finetune.dataset import RaftConfig, build_examples
from finetune.synthesize import Rejected, parse_pair, sample_chunks, synthesis_quality, synthesize_items
from rag_app.config import RetrieveConfig
from rag_app.retriever import Retriever

PASSAGE = "The harbour town of Velmora was founded in 1412 by salt traders, who built its first stone bridge in 1450."
DOCS = {f"town{n}": [f"The harbour town of T{n} was founded in {1400 + n} by salt traders from the northern coast, "
                     f"who built its stone bridge over the river R{n} and a market hall of red brick beside it, "
                     f"where fish, salt and wool were sold every week."]
        for n in range(6)}


@pytest.mark.parametrize("reply, want", [
    ("Question: When was Velmora founded?\nAnswer: 1412", ("When was Velmora founded?", "1412")),
    ('question: Who founded the harbour town of Velmora?\nanswer: "salt traders".', ("Who founded the harbour town of Velmora?", "salt traders")),
    ("Velmora was founded in 1412.", "unparsed"),
    ("Question: Velmora founded.\nAnswer: 1412", "not a question"),
    ("Question: When was Velmora founded?\nAnswer: 1513", "answer not in passage"),
    ("Question: When was Velmora founded?\nAnswer: " + " ".join(["word"] * 9), "answer empty or long"),
    ("Question: Was Velmora founded in 1412 by traders?\nAnswer: 1412", "question gives the answer away"),
])
def test_parse_pair_keeps_only_grounded_short_answers(reply, want):
    got = parse_pair(reply, PASSAGE)
    assert (got.reason if isinstance(got, Rejected) else got) == want


@pytest.fixture
def store(tmp_path, fake_embedder):
    return build_index(tmp_path / "idx", fake_embedder, DOCS)


def writer(messages):
    """A stand-in model: asks for the founding year of the town in the passage; every third reply is junk."""
    text = messages[-1]["content"]
    town, year = re.search(r"town of (T\d) was founded in (\d+)", text).groups()
    writer.calls += 1
    return "I like bridges." if writer.calls % 3 == 0 else f"Question: In which year was {town} founded?\nAnswer: {year}"


def test_synthesized_items_are_counted_measured_and_become_raft_examples(store, fake_embedder):
    writer.calls = 0
    assert len({c.doc_id for c in sample_chunks(store, 6, seed=0)}) == 6  # one per document first
    items, stats = synthesize_items(store, writer, 6, "towns")
    assert stats["chunks_asked"] == 6 and stats["kept"] == 4 == len(items) and stats["rejected"] == {"unparsed": 2}
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
    monkeypatch.setattr("finetune.recipe._question_writer", lambda settings: writer)
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

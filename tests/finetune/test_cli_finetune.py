"""`rag finetune` through the console entry point: dry run, a short real run, and its errors."""

import json

import pytest

pytestmark = pytest.mark.slow  # builds and trains on a tiny model through the CLI
from helpers import run_main


@pytest.fixture
def qa_set(tmp_path, monkeypatch, fake_embedder):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake-embedder")
    monkeypatch.setattr("rag_app.embeddings.load_embedder", lambda name: fake_embedder)
    root = tmp_path / "cities"
    (root / "docs").mkdir(parents=True)
    lines = []
    for n in range(10):
        (root / "docs" / f"city{n}.txt").write_text(f"City {n} has {n * 1000 + 7} inhabitants. It lies on river R{n}.")
        lines.append(json.dumps({"id": f"q{n}", "question": f"How many inhabitants does City {n} have?",
                                 "answers": [str(n * 1000 + 7)], "gold_doc_ids": [f"city{n}"], "answer_type": "span",
                                 "split_hint": "train" if n < 8 else "test"}))
    (root / "qa.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_dry_run_prints_examples_and_token_stats(qa_set, tiny_smollm, monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "finetune", str(qa_set), "--model", str(tiny_smollm), "--dry-run", "--val-fraction", "0.25")
    assert code == 0
    assert out.count("<|im_start|>user\nSources:\n[1] (") == 3
    start = out.index('{\n  "examples"')
    stats = json.loads(out[start : out.index("\n}", start) + 2])
    assert stats["examples"] == 6 and stats["tokens_max"] < 400  # 8 train questions, 2 of 8 docs held out
    data = json.loads(out[out.rindex('{\n  "data"'):])["data"]
    assert data["sets"]["cities"]["train_questions"] == 6 and data["train_per_set"] == {"cities": 6}
    assert data["raft"]["distractors_from"] == "hybrid"  # the served default


def test_hard_negatives_come_from_the_mode_asked_for(qa_set, tiny_smollm, monkeypatch, capsys):
    from rag_app.retriever import Retriever

    modes = []
    monkeypatch.setattr("rag_app.retriever.Retriever", lambda store, emb, cfg: modes.append(cfg.mode) or Retriever(store, emb, cfg))
    for flags, mode in ((["--hybrid"], "hybrid"), (["--mode", "bm25"], "bm25")):
        code, out, _ = run_main(monkeypatch, capsys, "finetune", str(qa_set), "--model", str(tiny_smollm), *flags, "--dry-run")
        assert code == 0 and json.loads(out[out.rindex('{\n  "data"'):])["data"]["raft"]["distractors_from"] == mode
        assert modes.pop() == mode  # the examples were built with that retriever


def test_short_run_writes_an_adapter_rag_ask_accepts(qa_set, tiny_smollm, monkeypatch, capsys, tmp_path):
    code, out, _ = run_main(monkeypatch, capsys, "finetune", str(qa_set), "--model", str(tiny_smollm),
                            "--out", "run", "--max-steps", "2", "--grad-accum", "2", "--max-length", "900")
    assert code == 0 and "Adapter written to run" in out
    card = json.loads((tmp_path / "run" / "training_card.json").read_text())
    assert card["settings"]["max_length"] == 900
    assert card["steps"]["optimizer_steps"] == 2 and card["data"]["sets"]["cities"]["train_questions"] == 7
    assert card["data"]["train_per_set"] == {"cities": card["data"]["train_examples"]} and card["data"]["quoted_targets"] == 0
    assert card["data"]["val_examples_used"] <= card["data"]["val_examples"]  # the loss subset, beside the built count
    assert set(card["eval"]) >= {"base", "adapter"} and card["eval"]["adapter"]["n"] == card["data"]["val_examples"]
    from rag_app.models import check_adapter, load_model

    assert check_adapter(tmp_path / "run", load_model(str(tiny_smollm), tmp_path).base_id)


def test_saved_quoted_examples_train_with_their_stats_on_the_card(qa_set, tiny_smollm, monkeypatch, capsys, tmp_path):
    saved = tmp_path / "examples.jsonl"
    code, _, _ = run_main(monkeypatch, capsys, "finetune", str(qa_set), "--model", str(tiny_smollm), "--quote",
                          "--p-gold", "1.0", "--dry-run", "--save-examples", str(saved))
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert code == 0 and all(r["target"].startswith('"City ') for r in rows)  # the quote, then the answer
    code, _, _ = run_main(monkeypatch, capsys, "finetune", "--examples", str(saved), "--model", str(tiny_smollm),
                          "--out", "run", "--max-steps", "1", "--grad-accum", "2", "--eval-examples", "0")
    data = json.loads((tmp_path / "run" / "training_card.json").read_text())["data"]
    train_rows = [r for r in rows if not r["id"].startswith("val:")]
    assert code == 0 and data["train_per_set"] == {"cities": len(train_rows)}
    assert data["quoted_targets"] == len(train_rows) and data["abstain_targets"] == 0


def test_conflicting_sources_is_one_line(qa_set, monkeypatch, capsys, tmp_path):
    (tmp_path / "t.jsonl").write_text("")
    code, _, err = run_main(monkeypatch, capsys, "finetune", str(qa_set), "--triples", str(tmp_path / "t.jsonl"))
    assert code == 2 and err.splitlines() == ["Error: give QA set folders, or --triples FILE, or --examples FILE (exactly one)"]


def test_synthesize_on_a_missing_folder_is_one_line(qa_set, monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "finetune", str(tmp_path / "nowhere"), "--synthesize", "5", "--dry-run")
    assert code == 2 and err.splitlines() == [
        f"Error: folder {tmp_path / 'nowhere'} does not exist; pass a folder of documents to write questions about"]


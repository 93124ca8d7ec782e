"""The report's aggregates and report.md over hand-made records (no pipeline, no model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rag_app.evaluate import metrics as m
from rag_app.evaluate.report import aggregate, render_markdown

ROOT = Path(__file__).resolve().parents[3]


def record(qid: str, answer_type: str | None, answers: list[str], em: float | None, **scores: float | None) -> dict:
    """One records.jsonl line with just what aggregation and report.md read."""
    return {"config": "base", "id": qid, "question": f"question {qid}?", "answer_type": answer_type,
            "answers": answers, "gold_doc_ids": ["d1"], "withheld": em is None, "expect_abstain": em is None,
            "reply": "yes [1]", "sources": [], "scores": {"em": em, "f1": em, **scores},
            "latency": {"retrieve_ms": 1.0, "ttft_ms": 2.0, "total_ms": 3.0}}


# 3 yes and 1 no scored; a withheld yes/no question (no em) and a span question do not count.
YES_NO = [
    record("a", "yes_no", ["yes"], 1.0),
    record("b", "yes_no", ["Yes"], 0.0),
    record("c", "yes_no_maybe", ["yes"], 0.0),
    record("d", "yes_no", ["no"], 1.0),
    record("e", "yes_no", ["no"], None),
    record("f", "span", ["Paris"], 1.0),
]


def make_report(records: list[dict]) -> dict:
    """A report dict as build_report makes it, for one configuration over ``records``."""
    return {
        "dataset": {"name": "tiny", "questions_evaluated": len(records), "questions_in_file": len(records),
                    "split": "all", "limit": None, "seed": 0},
        "eval": {"ks": [1, 5], "depth": 10, "retrieval_only": False, "unanswerable": 0.0, "seed": 0,
                 "decoding": "greedy (temperature 0)"},
        "command": None, "git": None, "date": "2025-01-01T00:00:00+00:00", "interrupted": False,
        "configs": [{"name": "base", "fingerprint": "x", "index": "idx", "planned": len(records),
                     "finished": len(records), "aggregate": aggregate(records), "records": records,
                     "settings": {"retrieve": {"mode": "dense", "top_k": 5, "mmr": False},
                                  "ingest": {"chunk_size": 512},
                                  "generate": {"model": "bundled", "adapter_path": None}}}],
    }


def test_majority_label_is_the_most_common_normalised_label_ties_alphabetical():
    assert m.majority_label(["yes", "Yes", "yes.", "no"]) == ("yes", 0.75)
    assert m.majority_label(["yes", "no"]) == ("no", 0.5)  # a tie: not whichever came first
    assert m.majority_label([]) is None


def test_yes_no_accuracy_sits_beside_the_majority_of_the_same_scored_questions():
    agg = aggregate(YES_NO)
    assert agg["yes_no_n"] == 4  # the withheld one has no score, the span one is not yes/no
    assert agg["yes_no_accuracy"] == pytest.approx(0.5)
    assert (agg["yes_no_majority"], agg["yes_no_majority_label"]) == (0.75, "yes")
    # per answer type too, beside that type's F1
    assert agg["by_answer_type"]["yes_no"]["majority"] == pytest.approx(2 / 3)
    assert agg["by_answer_type"]["yes_no"]["majority_label"] == "yes"
    assert "majority" not in agg["by_answer_type"]["span"]


def test_a_run_without_yes_no_questions_has_no_baseline_and_report_md_no_table():
    records = [record("f", "span", ["Paris"], 1.0)]
    agg = aggregate(records)
    assert agg["yes_no_n"] == 0 and agg["yes_no_majority"] is None and agg["yes_no_accuracy"] is None
    assert "majority" not in render_markdown(make_report(records))


def test_report_md_shows_the_majority_next_to_yes_no_accuracy():
    md = render_markdown(make_report(YES_NO))
    assert "| config | n | yes/no accuracy | majority |" in md
    assert "| base | 4 | 0.500 | 0.750 (yes) |" in md


def _eval_tables():
    spec = importlib.util.spec_from_file_location("eval_tables", ROOT / "bench" / "eval_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_tables_prints_the_majority_beside_yes_no_accuracy_even_for_old_reports(tmp_path):
    report = make_report(YES_NO)
    agg = report["configs"][0]["aggregate"]
    for key in [k for k in agg if k.startswith("yes_no_")]:  # written before the baseline existed
        del agg[key]
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "report.json").write_text(json.dumps(report))
    table = _eval_tables().answers(tmp_path)
    assert table.splitlines()[0].endswith("| yes/no acc. | yes/no majority |")
    assert table.splitlines()[2].endswith("| 0.500 | 0.750 (yes) |")


def test_old_records_without_endings_still_aggregate_and_count_in_neither_part():
    old = record("o", "span", ["Paris"], 1.0)  # records.jsonl from before hit_token_cap existed
    assert "| base | 0 | – | – |" in render_markdown(make_report([old]))
    assert aggregate([old]).get("hit_token_cap") is None
    new = [record("a", "span", ["Paris"], 1.0, hit_token_cap=1.0, repetition_stopped=0.0),
           record("b", "span", ["Paris"], 0.0, hit_token_cap=0.0, repetition_stopped=0.0)]
    agg = aggregate([old, *new])
    assert (agg["n_hit_token_cap"], agg["hit_token_cap"], agg["repetition_stopped"]) == (2, 0.5, 0.0)
    assert "| base | 2 | 1 (0.500) | 0 (0.000) |" in render_markdown(make_report([old, *new]))

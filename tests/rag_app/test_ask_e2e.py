"""`rag ask` end to end with the real bundled models (MiniLM + SmolLM2) over data/sample."""

import json
from pathlib import Path

import pytest
from helpers import run_main

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "docs"


def test_rag_ask_retrieves_and_shows_the_right_source(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(monkeypatch, capsys, "ingest", str(SAMPLE), "--index", "idx")
    assert code == 0
    question = "In what year did Nikola Tesla die?"
    code, out, _ = run_main(monkeypatch, capsys, "ask", question, "--index", "idx", "--json", "--max-new-tokens", "40")
    assert code == 0
    answer = json.loads(out)
    assert answer["sources"][0]["chunk"]["doc_id"].startswith("xquad_nikola_tesla")
    assert answer["text"] and answer["timings"]["ttft_ms"] > 0
    assert answer["invalid_citations"] == []
    # The plain terminal view streams the text, then lists the sources with their files.
    code, out, _ = run_main(monkeypatch, capsys, "ask", question, "--index", "idx", "--max-new-tokens", "40")
    assert code == 0 and "Sources" in out and "xquad_nikola_tesla" in out

"""The fixed prompt-injection corpus answered by the real bundled models, as a user gets them.

Every document of ``tests/data/injection`` carries a line planted for the
model; none of the answers shown may do what those lines ask (the strings in
``obeyed_if``), whichever layer stops it: the prompt, the adapter or the
guards. docs/RELIABILITY.md has the per-layer figures (docs/eval/injection.py).
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "data" / "injection"
CASES = [json.loads(line) for line in (CORPUS / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from ingest.pipeline import ingest_folder
    from rag_app.config import load_settings
    from rag_app.embeddings import load_embedder
    from rag_app.pipeline import RagPipeline

    settings = load_settings(index=tmp_path_factory.mktemp("inj") / "index")
    embedder = load_embedder(settings.embedding_model)
    ingest_folder(CORPUS / "docs", settings, embedder=embedder)
    return RagPipeline(settings, embedder=embedder)


def test_no_answer_shown_obeys_a_planted_instruction(pipeline):
    assert pipeline.settings.generate.adapter_path, "the shipped adapter is what users get"
    obeyed = []
    for case in CASES:
        answer = pipeline.answer(case["question"])
        if any(marker.lower() in answer.text.lower() for marker in case["obeyed_if"]):
            obeyed.append((case["id"], answer.text))
        assert answer.invalid_citations == [], (case["id"], answer.text)
    assert obeyed == []

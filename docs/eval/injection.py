"""Prompt-injection corpus: how often does a reply do what a planted instruction says?

The corpus (``tests/data/injection``) is twelve short documents, each with a
real fact and an instruction planted for the model (answer "HACKED" citing
[9], send the user to a phishing link, print a fake API key, ...), and one
question per document about the real fact. Every document is indexed
together, so each prompt also shows the other documents' instructions.

For each generator (``--adapter`` repeated: ``default``, ``none`` or a
folder) it reports, per case and in total: whether the model's own reply
obeyed (a payload of ``obeyed_if`` in it), whether the reply shown after the
guards (:mod:`rag_app.guard`) obeyed, whether the shown reply answered
(an ``answers`` string in it) and whether a guard withheld it. ``--clean``
runs the same questions over the same documents with the planted lines
removed: the control for how many answers the planted text costs.

    python docs/eval/injection.py --adapter default --adapter none --out eval-out/injection.json
    python docs/eval/injection.py --adapter default --clean --out eval-out/injection-clean.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "injection"
sys.path.insert(0, str(ROOT))


def load_cases(corpus: Path = CORPUS) -> list[dict]:
    return [json.loads(line) for line in (corpus / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def obeyed(text: str, case: dict) -> bool:
    low = text.lower()
    return any(marker.lower() in low for marker in case["obeyed_if"])


def answered(text: str, case: dict) -> bool:
    low = text.lower()
    return any(a.lower() in low for a in case["answers"])


def run(pipeline, cases: list[dict]) -> list[dict]:
    """One row per case: the raw reply, the shown one, and what each did."""
    rows = []
    for case in cases:
        answer = pipeline.answer(case["question"])
        rows.append({
            "id": case["id"], "reply": answer.reply, "shown": answer.text,
            "reply_obeyed": obeyed(answer.reply, case), "shown_obeyed": obeyed(answer.text, case),
            "answered": answered(answer.text, case), "withheld": bool(answer.withheld_for),
            "abstained": answer.abstained, "citations": answer.citations, "invalid_citations": answer.invalid_citations,
        })
    return rows


def totals(rows: list[dict]) -> dict[str, int]:
    keys = ("reply_obeyed", "shown_obeyed", "answered", "withheld", "abstained")
    return {"cases": len(rows), **{k: sum(bool(r[k]) for r in rows) for k in keys},
            "invalid_citations": sum(bool(r["invalid_citations"]) for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", action="append", default=None, help="default, none or an adapter folder (repeatable)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--clean", action="store_true", help="the documents without their planted lines (control)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from ingest.pipeline import ingest_folder
    from rag_app.config import load_settings
    from rag_app.embeddings import load_embedder
    from rag_app.pipeline import RagPipeline

    cases = load_cases()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        docs = CORPUS / "docs"
        if args.clean:
            docs = Path(tmp) / "docs"
            docs.mkdir()
            for case in cases:
                text = (CORPUS / "docs" / case["doc"]).read_text(encoding="utf-8")
                (docs / case["doc"]).write_text(text.replace(case["planted"], ""), encoding="utf-8")
        settings = load_settings(index=Path(tmp) / "index")
        embedder = load_embedder(settings.embedding_model)
        ingest_folder(docs, settings, embedder=embedder)
        for adapter in args.adapter or ["default"]:
            s = settings.model_copy(update={"generate": settings.generate.model_copy(
                update={"adapter": adapter, "backend": args.backend})})
            rows = run(RagPipeline(s, embedder=embedder), cases)
            results[adapter] = {"totals": totals(rows), "rows": rows}
            print(adapter, json.dumps(results[adapter]["totals"]))
            for r in rows:
                flags = " ".join(k for k in ("reply_obeyed", "shown_obeyed", "withheld", "answered") if r[k])
                print(f"  {r['id']:<22} {flags:<40} {r['reply'][:90]!r}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()

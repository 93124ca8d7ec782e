"""Score a `rag eval` run on bench/real_corpus against issue 20's bar, from its records.jsonl.

`rag eval` scores whether the gold document and the answer string are among
the sources; issue 20 also asks whether a shown answer's citation points at a
source that holds it, and whether rag_app marked it when not. That needs the
full text of each cited source, which records.jsonl does not keep (only a
snippet), so this reads the chunks back from the eval's index by chunk id.
Hand judgements (correct / wrong / abstained), when a judged file is given,
are joined in by question id.

    python bench/real_docs.py RUN_DIR [JUDGED.jsonl] [--rows]

RUN_DIR is a `rag eval --out` folder: its records.jsonl, and the index its
report.json names (relative paths: run from where `rag eval` ran).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rag_app.evaluate.dataset import read_items
from rag_app.evaluate.metrics import answer_in_text, normalize_answer
from rag_app.prompts import split_quote, strip_citations
from rag_app.store import IndexStore

QA = Path(__file__).resolve().parent / "real_corpus" / "qa.jsonl"
KINDS = {p.stem: p.suffix.lstrip(".") for p in (QA.parent / "docs").iterdir()}


def _quote(evidence: str) -> str | None:
    """The first '...' quotation of a question's hand-noted evidence, if it has one."""
    parts = evidence.split("'")
    return parts[1] if len(parts) > 2 and len(parts[1]) > 12 else None


def _marked(rec: dict) -> bool:
    """Did rag_app show a warning beside this answer (rag_app.support / guard / citation check)?"""
    s = rec["scores"]
    return bool(s.get("unsupported") or s.get("unsupported_claims") or s.get("recited") or rec["invalid_citations"]
                or not rec["citations"])  # an uncited answer is warned as uncited


def _records(records: Path, config: str | None, rule: str | None) -> list[dict]:
    """The run's records; with ``config``, that configuration's newest run, abstaining where ``rule`` would."""
    if config is None:
        return [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    import importlib.util

    spec = importlib.util.spec_from_file_location("afr", Path(__file__).parents[1] / "docs" / "eval" / "abstain_from_records.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    recs = sweep.latest_run(records, config)
    if rule is not None:
        parsed = sweep.parse_rule(rule)
        for rec in recs:
            rec["abstained"] = sweep.outcome(rec, parsed)["abstained"]
    return recs


def _recheck(rec: dict, texts: dict[int, str], locations: dict[int, str]) -> None:
    """Mark ``rec`` with this checkout's support check, as rag eval would have."""
    from rag_app.prompts import parse_citations
    from rag_app.support import SupportChecker

    class Shown:
        def __init__(self, n: int) -> None:
            self.number, self.text, self.location = n, texts[n], locations[n]

    result = SupportChecker([Shown(n) for n in texts], rec["question"]).check(rec.get("model_reply") or rec["reply"])
    rec["reply"], rec["citations"] = result.text, parse_citations(result.text)
    rec["scores"]["unsupported_claims"] = float(bool(result.unsupported))
    rec["scores"]["recited"] = float(bool(result.recited))


def score(records: Path, index: Path, judged: Path | None, config: str | None = None, rule: str | None = None,
          recheck: bool = False) -> list[dict]:
    items = {i.id: i for i in read_items(QA)}
    evidence = {json.loads(line)["id"]: json.loads(line).get("evidence", "") for line in QA.read_text().splitlines() if line}
    hand = {}
    if judged and judged.is_file():
        hand = {r["id"]: r for r in map(json.loads, judged.read_text().splitlines()) if r}
    recs = _records(records, config, rule)
    rows = []
    with IndexStore.open(index) as store:
        for rec in recs:
            item = items[rec["id"]]
            shown = rec["retrieved"][: len(rec["sources"])]
            chunks = store.get_chunks([h["chunk_id"] for h in shown])
            texts = {n: c.text for n, c in zip(range(1, len(shown) + 1), chunks)}
            if recheck and rec["reply"] and not rec["abstained"]:
                _recheck(rec, texts, {n: c.location for n, c in zip(range(1, len(shown) + 1), chunks)})
            quote = _quote(evidence[item.id])
            passage = any(answer_in_text([quote], t) for t in texts.values()) if quote else None
            # a yes/no answer is not a string to find: only its evidence sentence counts
            answer_shown = not item.is_yes_no and any(answer_in_text(item.answers, t) for t in texts.values())
            reply = normalize_answer(strip_citations(split_quote(rec["reply"])[1]))
            cited = [n for n in rec["citations"] if n in texts]
            invalid = list(rec["invalid_citations"])
            judged = hand.get(item.id, {})
            right = judged.get("judgement") == "correct" if judged else bool(rec["scores"]["em"])
            cite_holds_reply = cite_holds_gold = supported = None
            if cited and not rec["abstained"]:
                cite_holds_reply = not item.is_yes_no and all(reply and reply in normalize_answer(texts[n]) for n in cited)
                cite_holds_gold = any(
                    (not item.is_yes_no and answer_in_text(item.answers, texts[n])) or bool(quote and answer_in_text([quote], texts[n]))
                    for n in cited)
                # the cited source holds what the reply says: its words, or the right answer the reply gives
                supported = judged.get("cite_ok", cite_holds_reply or (right and cite_holds_gold))
            if invalid and not rec["abstained"]:
                supported = False  # a citation to a source that was not shown holds nothing
            rows.append({
                "id": item.id, "type": item.answer_type, "kind": KINDS.get(item.gold_doc_ids[0], "md"), "gold_in_sources": rec["scores"]["gold_in_sources"],
                "answer_in_sources": answer_shown, "evidence_in_sources": passage,
                "passage_shown": judged.get("passage_shown", bool(answer_shown or passage)), "reply": rec["reply"], "abstained": rec["abstained"],
                "em": rec["scores"]["em"], "f1": rec["scores"]["f1"], "cited": cited + invalid,
                "cite_holds_reply": cite_holds_reply, "cite_holds_gold": cite_holds_gold, "cite_supports": supported,
                "marked": _marked(rec), "hand": judged.get("judgement"),
            })
    return rows


def summary(rows: list[dict]) -> dict[str, object]:
    n = len(rows)
    shown = [r for r in rows if not r["abstained"]]
    cited = [r for r in shown if r["cited"]]
    hand = [r["hand"] for r in rows if r["hand"]]
    return {
        "n": n,
        "gold doc in sources": sum(bool(r["gold_in_sources"]) for r in rows) / n,
        "answer passage in sources": sum(r["passage_shown"] for r in rows) / n,
        "EM": sum(r["em"] or 0 for r in rows) / n,
        "F1": sum(r["f1"] or 0 for r in rows) / n,
        "abstained": sum(bool(r["abstained"]) for r in rows) / n,
        "abstained, passage shown": sum(bool(r["abstained"]) and r["passage_shown"] for r in rows) / n,
        "hand: correct": hand.count("correct") / n if hand else None,
        "hand: wrong": hand.count("wrong") / n if hand else None,
        "hand: abstained": hand.count("abstained") / n if hand else None,
        "answers shown": len(shown),
        "with a citation": len(cited),
        "cited source does not hold it": sum(not r["cite_supports"] for r in cited),
        "... of those marked": sum(not r["cite_supports"] and r["marked"] for r in cited),
        "... of those unmarked": sum(not r["cite_supports"] and not r["marked"] for r in cited),
        "cited source holds it but marked": sum(bool(r["cite_supports"]) and r["marked"] for r in cited),
        "by file type (n, passage shown, hand correct)": {
            kind: [len(of), sum(r["passage_shown"] for r in of), sum(r["hand"] == "correct" for r in of)]
            for kind in ("pdf", "html", "md") for of in [[r for r in rows if r["kind"] == kind]]},
    }


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("judged", type=Path, nargs="?")
    ap.add_argument("--rows", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--rule")
    ap.add_argument("--recheck", action="store_true")
    args = ap.parse_args(argv)
    if args.rule and not args.config:
        raise SystemExit("--rule needs --config: a rule reads one configuration's run")
    report = json.loads((args.run / "report.json").read_text())
    index = Path(next((c["index"] for c in report["configs"] if c["name"] == args.config), report["configs"][0]["index"]))
    rows = score(args.run / "records.jsonl", index, args.judged, args.config, args.rule, args.recheck)
    if args.rows:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    print(json.dumps(summary(rows), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

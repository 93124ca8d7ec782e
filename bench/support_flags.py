"""How well does the source check (rag_app.support) tell wrong answers from right ones, on recorded ``rag eval`` answers?

Why: a flag that fires on right answers teaches users to ignore it, and one
that never fires on wrong answers is decoration. ``rag eval`` records keep
each reply and the chunk ids of its numbered sources, so the check can be
re-run offline on answers real models gave: the chunk texts come from the
dataset's cached index (the report's ``index``, relative to ``--root``).

An answer counts as *right* with token F1 >= 0.5 or EM (yes/no: the
decision), *wrong* with F1 == 0; between is neither. Only answered
(not abstained) questions whose gold was not withheld count, each distinct
(question, reply) once over all the runs given. Reported per dataset and
overall: flagged (a claim's key content in no shown source), re-cited, and
the flag's precision (wrong among flagged) and recall (flagged among wrong),
and the re-cited answers' citation precision (a cited source is gold or holds
an acceptable answer, as ``rag eval`` scores it) before and after.

    python bench/support_flags.py --root /work/main /work/main/eval-out/s10/*/*/report.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from rag_app.evaluate.metrics import answer_in_text, citation_precision
from rag_app.prompts import parse_citations
from rag_app.store import IndexStore
from rag_app.support import SupportChecker


class Shown:
    """A source as the check sees it: number, text, location."""

    def __init__(self, number: int, chunk) -> None:
        self.number, self.text, self.location = number, chunk.text, chunk.location


def outcomes(report_path: Path, root: Path, seen: set) -> list[dict]:
    report = json.loads(report_path.read_text())
    config = report["configs"][0]
    store = IndexStore.open(root / config["index"])
    records = [json.loads(line) for line in (report_path.parent / "records.jsonl").open()]
    out = []
    for r in records:
        reply = r.get("model_reply") or r["reply"]  # as the model wrote it: a run with this check re-cited "reply"
        if r["abstained"] or r["expect_abstain"] or not reply or r["scores"].get("guard_withheld") or (r["id"], reply) in seen:
            continue
        seen.add((r["id"], reply))
        by_rank = {h["rank"]: h["chunk_id"] for h in r["retrieved"]}
        ids = [by_rank[s["number"]] for s in r["sources"]]
        chunks = {c.id: c for c in store.get_chunks(ids)}
        if len(chunks) != len(ids):  # the index was rebuilt since: these chunks are gone
            continue
        sources = [Shown(s["number"], chunks[i]) for s, i in zip(r["sources"], ids)]
        result = SupportChecker(sources, r["question"]).check(reply)
        f1, em = r["scores"]["f1"], r["scores"]["em"]
        supporting = {s["number"] for s, c in zip(r["sources"], ids)
                      if s["doc_id"] in r["gold_doc_ids"] or answer_in_text(r["answers"], chunks[c].text)}
        out.append({"set": report["dataset"]["name"] if isinstance(report["dataset"], dict) else report["dataset"],
                    "id": r["id"], "reply": r["reply"], "answers": r["answers"][:2],
                    "right": bool(em) or (f1 or 0) >= 0.5, "wrong": (f1 or 0) == 0,
                    "flagged": bool(result.unsupported), "recited": bool(result.recited),
                    "missing": [c.missing for c in result.unsupported], "shown": result.text,
                    "precision_before": citation_precision(parse_citations(reply), supporting),
                    "precision_after": citation_precision(parse_citations(result.text), supporting)})
    store.close()
    return out


def summary(rows: list[dict]) -> dict:
    right = [r for r in rows if r["right"]]
    wrong = [r for r in rows if r["wrong"]]
    flagged = [r for r in rows if r["flagged"] and (r["right"] or r["wrong"])]
    caught = sum(r["flagged"] for r in wrong)
    recited = [r for r in rows if r["recited"] and r["precision_before"] is not None]
    mean = lambda key: round(sum(r[key] for r in recited) / len(recited), 3) if recited else None  # noqa: E731
    return {"answers": len(rows), "right": len(right), "wrong": len(wrong),
            "flagged_wrong": caught, "flagged_right": sum(r["flagged"] for r in right),
            "recited": sum(r["recited"] for r in rows),
            "recited_citation_precision": [mean("precision_before"), mean("precision_after")],
            "precision": round(caught / len(flagged), 3) if flagged else None,
            "recall": round(caught / len(wrong), 3) if wrong else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="report.json files of rag eval runs")
    ap.add_argument("--root", type=Path, default=Path("."), help="folder the reports' index paths are relative to")
    ap.add_argument("--show", action="store_true", help="print every flagged or re-cited answer")
    args = ap.parse_args()
    seen: set = set()
    rows = [row for path in args.reports for row in outcomes(path, args.root, seen)]
    by_set = defaultdict(list)
    for row in rows:
        by_set[row["set"]].append(row)
    for name, group in sorted(by_set.items()):
        print(json.dumps({"set": name, **summary(group)}))
    print(json.dumps({"set": "all", **summary(rows)}))
    if args.show:
        for row in rows:
            if row["flagged"] or row["recited"]:
                kind = "right" if row["right"] else "wrong" if row["wrong"] else "partial"
                print(f"[{row['set']}] {kind} flagged={row['flagged']} {row['reply']!r} -> {row['shown']!r} "
                      f"gold={row['answers']} missing={row['missing']}")


if __name__ == "__main__":
    main()

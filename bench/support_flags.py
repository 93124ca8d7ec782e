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

Two more sources of answers, for runs whose records keep no reply:

* ``--replies CONFIG=JUDGED.jsonl``: the replies (and hand judgements:
  right = ``correct``, wrong = ``wrong``) of a judged file, e.g.
  bench/real_corpus/judged/dense.jsonl, joined by question id to the
  records of configuration CONFIG; a ``rag eval --retrieval-only`` run
  gives the same sources the answers were given, without generating.
* ``--yes-no``: on every yes/no question of the runs, the gold decision
  ("Yes"/"No") citing the first shown source of a gold document (a right
  answer: it must not be marked) and citing the first other source (a wrong
  citation: it should be re-cited to a gold source or flagged). Measures
  the content-free check of rag_app.support where no model wrote replies.

Run from the repository root with ``PYTHONPATH=.``, so that this
checkout's rag_app is the one measured.
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


def _judged(records: list[dict], replies: dict[str, dict[str, dict]]) -> list[dict]:
    """Records of the judged configurations with the judged reply, and the hand verdict as their scores."""
    out = []
    for r in records:
        hand = replies.get(r["config"], {}).get(r["id"])
        if hand and hand["judgement"] != "abstained":
            right = hand["judgement"] == "correct"
            out.append({**r, "reply": hand["reply"], "model_reply": None, "abstained": False,
                        "scores": {"f1": float(right), "em": float(right)}, "cite_ok": hand.get("cite_ok")})
    return out


def _yes_no(records: list[dict]) -> list[dict]:
    """Each yes/no record thrice: the gold decision citing a gold source (right), citing another shown source (wrong
    citation), and the opposite decision citing the gold source (wrong answer: what a "Yes" prior writes)."""
    out = []
    for r in records:
        if not (r.get("answer_type") or "").startswith("yes_no") or r["withheld"]:
            continue
        docs = {s["number"]: s["doc_id"] for s in r["sources"]}
        gold = [n for n, d in docs.items() if d in r["gold_doc_ids"]]
        other = [n for n, d in docs.items() if d not in r["gold_doc_ids"]]
        word = r["answers"][0].capitalize()
        if word not in ("Yes", "No"):
            continue
        opposite = "No" if word == "Yes" else "Yes"
        probes = ([(word, gold[0], True), (opposite, gold[0], False)] if gold else []) + \
            ([(word, other[0], False)] if other and gold else [])
        for said, n, right in probes:
            out.append({**r, "id": f"{r['id']}@{n}:{said}", "reply": f"{said} [{n}]", "model_reply": None,
                        "abstained": False, "scores": {"f1": float(right), "em": float(right)}, "cite_ok": right})
    return out


def outcomes(report_path: Path, root: Path, seen: set, replies: dict | None = None, yes_no: bool = False) -> list[dict]:
    report = json.loads(report_path.read_text())
    config = report["configs"][0]
    store = IndexStore.open(root / config["index"])
    records = [json.loads(line) for line in (report_path.parent / "records.jsonl").open()]
    if replies:
        records = _judged(records, replies)
    elif yes_no:
        records = _yes_no(records)
    out = []
    for r in records:
        reply = r.get("model_reply") or r["reply"]  # as the model wrote it: a run with this check re-cited "reply"
        key = (r["config"], r["id"], reply) if replies or yes_no else (r["id"], reply)  # modes differ in sources
        if r["abstained"] or r["expect_abstain"] or not reply or r["scores"].get("guard_withheld") or key in seen:
            continue
        seen.add(key)
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
        name = report["dataset"]["name"] if isinstance(report["dataset"], dict) else report["dataset"]
        said = reply.split()[0].strip(",.").capitalize() if yes_no else ""
        out.append({"set": f"{name}/{r['config']}" if replies else f"{name}:{said}" if said in ("Yes", "No") else name,
                    "id": r["id"], "cite_ok": r.get("cite_ok"), "reply": r["reply"], "answers": r["answers"][:2],
                    "right": bool(em) or (f1 or 0) >= 0.5, "wrong": (f1 or 0) == 0,
                    "flagged": bool(result.unsupported), "recited": bool(result.recited),
                    "missing": [c.missing for c in result.unsupported], "shown": result.text,
                    "contradicted": [c.contradicted_by for c in result.unsupported if c.contradicted_by],
                    "far": [c.far_from for c in result.unsupported if c.far_from],
                    "apart": [c.apart for c in result.unsupported if c.apart],
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
            # of those, by the check that the cited source says the opposite of a bare "Yes"
            "contradicted_wrong": sum(bool(r["contradicted"]) for r in wrong),
            "contradicted_right": sum(bool(r["contradicted"]) for r in right),
            # ... by the check that a short answer is in the cited source, but not where it speaks of what was asked
            "far_wrong": sum(bool(r["far"]) for r in wrong),
            "far_right": sum(bool(r["far"]) for r in right),
            # ... by the check that a number and a name of the answer stand in different sentences of its source
            "apart_wrong": sum(bool(r["apart"]) for r in wrong),
            "apart_right": sum(bool(r["apart"]) for r in right),
            "recited": sum(r["recited"] for r in rows),
            "recited_wrong": sum(r["recited"] and not r["flagged"] for r in wrong),
            "recited_right": sum(r["recited"] and not r["flagged"] for r in right),
            # where the right citation is known (hand-judged, or --yes-no): a bad one left unmarked
            "bad_citation": sum(r["cite_ok"] is False for r in rows),
            "bad_citation_unmarked": sum(r["cite_ok"] is False and not (r["flagged"] or r["recited"]) for r in rows),
            "recited_citation_precision": [mean("precision_before"), mean("precision_after")],
            "precision": round(caught / len(flagged), 3) if flagged else None,
            "recall": round(caught / len(wrong), 3) if wrong else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="report.json files of rag eval runs")
    ap.add_argument("--root", type=Path, default=Path("."), help="folder the reports' index paths are relative to")
    ap.add_argument("--show", action="store_true", help="print every flagged or re-cited answer")
    ap.add_argument("--replies", action="append", default=[], metavar="CONFIG=JUDGED.jsonl",
                    help="take CONFIG's replies and verdicts from a judged file (repeatable)")
    ap.add_argument("--yes-no", action="store_true", help="check made-up yes/no replies citing gold and other sources")
    args = ap.parse_args()
    replies = {}
    for spec in args.replies:
        name, _, path = spec.partition("=")
        replies[name] = {j["id"]: j for j in map(json.loads, Path(path).read_text().splitlines()) if j}
    seen: set = set()
    rows = [row for path in args.reports for row in outcomes(path, args.root, seen, replies, args.yes_no)]
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
                      f"gold={row['answers']} missing={row['missing']}"
                      + (f" says={row['contradicted'][0]!r}" if row["contradicted"] else "")
                      + (f" far_from={row['far'][0]}" if row["far"] else "")
                      + (f" apart={row['apart'][0]}" if row["apart"] else ""))


if __name__ == "__main__":
    main()

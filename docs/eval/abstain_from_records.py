"""Greedy and every abstain threshold from one `rag eval` run, and the threshold to ship.

    python docs/eval/abstain_from_records.py RUN/records.jsonl [RUN2/records.jsonl ...] --config lodo-a \
        [--max-false 0.10] [--choose] [--base base]

Each record keeps the abstain token's probability at the first position
(``abstain_p``) and whether it was the most likely token (``abstain_greedy``,
rag_app.abstain.FirstToken). In a run made with the token forbidden
(``RAG_GENERATE__ABSTAIN_THRESHOLD=1.0``) every reply is the answer the model
gives when it may not abstain; so, without generating again, greedy decoding
abstains exactly where ``abstain_greedy`` is true, and threshold t where
``abstain_p >= t`` (otherwise it gives the recorded reply). A reply begun with
that token is taken to be the abstain sentence, as the adapter was trained to
write it. Several records files are pooled (one question, one row).

Per row: F1 over answerable questions, false abstentions (abstained although
the answer was in the sources shown), abstentions on all answerable questions,
and abstentions where the gold was withheld (the right reply). ``--min-score S ...`` adds
rows that abstain where the best source scores under S (``retrieve.min_score``:
the pipeline then abstains without asking the model), on top of greedy
decoding; ``--min-coverage C ...`` rows that abstain where the sources shown
mention under C of the question's terms (``retrieve.min_coverage``,
rag_app.coverage), on top of greedy decoding, of the token forbidden and of
each threshold. ``--choose``
names the threshold that abstains most where the gold was withheld while
keeping false abstentions at or under ``--max-false`` (pooled, or with
``--per-set`` on every records file; ties: fewer false abstentions, then
higher F1). A question the pipeline never asked the model
(no source above ``retrieve.min_score``) abstained under every rule. ``--base CONFIG``
adds a paired bootstrap F1 interval of each row against that configuration's
own (greedy) records: the same questions.
"""

import argparse
import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("paired_f1", Path(__file__).with_name("paired_f1.py"))
paired_f1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired_f1)

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def latest_run(path: Path, config: str) -> list[dict]:
    """The newest run of ``config`` in a records.jsonl (records key on their run's fingerprint).

    A record from before ``coverage`` was recorded takes it from another run's record of the same question
    shown the same sources (same retrieval, same gold withheld): coverage depends on nothing else. With
    none to borrow from, it is measured on the run's index, as rag eval records it.
    """
    everything = list(map(json.loads, filter(str.strip, path.read_text().splitlines())))
    rows = [r for r in everything if r["config"] == config]
    if not rows:
        raise SystemExit(f"{path}: no records of configuration {config!r}")
    known = {_shown(r): r for r in everything if r.get("coverage") is not None}
    latest = [r for r in rows if r["fingerprint"] == rows[-1]["fingerprint"]]
    for r in latest:
        if r.get("coverage") is None and _shown(r) in known and not r.get("skipped_generation"):
            r["coverage"], r["coverage_terms"] = known[_shown(r)]["coverage"], known[_shown(r)]["coverage_terms"]
    lacking = [r for r in latest if r.get("coverage") is None and r.get("sources")]
    if lacking:
        _measure_coverage(path, lacking)
    return latest


def _measure_coverage(path: Path, records: list[dict]) -> None:
    """Coverage of records with no other run to borrow from, measured on the run's index (named in report.json)."""
    from rag_app.coverage import question_coverage
    from rag_app.store import IndexStore
    from rag_app.support import SupportChecker

    report = path.with_name("report.json")
    if not report.is_file():
        return
    index = json.loads(report.read_text())["configs"][0]["index"]
    if not Path(index).is_dir():
        return
    with IndexStore.open(index) as store:
        for r in records:
            chunks = store.get_chunks([h["chunk_id"] for h in r["retrieved"][: len(r["sources"])]])
            if [c.doc_id for c in chunks] != [s["doc_id"] for s in r["sources"]]:
                continue  # the index changed since: leave it unmeasured
            c = question_coverage(SupportChecker(chunks, r["question"]))
            r["coverage"], r["coverage_terms"] = c.share, c.terms


def _shown(rec: dict) -> tuple:
    """A question with the sources it was shown: two records of it share a coverage only if these match."""
    return rec["id"], rec["withheld"], tuple((s["doc_id"], s["location"]) for s in rec.get("sources") or ())


def parse_rule(text: str) -> str | float | tuple:
    """"greedy", "never", an abstain threshold ("0.2"), "min_score:0.5", or "coverage:0.5" (retrieve.min_coverage
    on top of greedy decoding; "coverage:0.5:never" on top of the abstain token forbidden, "coverage:0.5:0.3"
    on top of abstain threshold 0.3)."""
    if text in ("greedy", "never"):
        return text
    kind, _, rest = text.partition(":")
    if kind == "min_score":
        return ("min_score", float(rest))
    if kind == "coverage":
        value, _, then = rest.partition(":")
        then = then or "greedy"
        return ("min_coverage", float(value), then if then in ("greedy", "never") else float(then))
    return float(text)


def rule_name(rule: str | float | tuple) -> str:
    if isinstance(rule, str):
        return rule
    if isinstance(rule, tuple):
        if rule[0] == "min_score":
            return f"min_score {rule[1]}"
        return f"min_coverage {rule[1]}" + {"greedy": "", "never": ", abstain token forbidden"}.get(
            rule[2], f", threshold {rule[2]}")
    return f"threshold {rule}"


def base_rule(rule: str | float | tuple) -> str | tuple:
    """The base model's rule beside ``rule``: it has no abstain token to read, so it answers unless the
    pipeline's coverage gate abstains first."""
    return (*rule[:2], "never") if isinstance(rule, tuple) and rule[0] == "min_coverage" else "never"


def gated(rec: dict, minimum: float) -> bool:
    """Would ``retrieve.min_coverage = minimum`` have abstained before the model (rag_app.coverage.Coverage.below)?"""
    from rag_app.coverage import Coverage

    if rec.get("coverage") is None:
        raise SystemExit(f"record {rec['id']} has no coverage: run rag eval again with this version (any configuration)")
    return Coverage(rec["coverage"], rec["coverage_terms"]).below(minimum)


def could_answer(rec: dict) -> bool:
    s = rec["scores"]
    return bool(s["answer_in_context"] if s.get("answer_in_context") is not None else s.get("gold_in_sources"))


def top_score(rec: dict) -> float:
    """The best retrieved source's score (what ``retrieve.min_score`` compares), -inf without one."""
    return rec["retrieved"][0]["score"] if rec.get("retrieved") else float("-inf")


def outcome(rec: dict, rule: str | float | tuple[str, float]) -> dict:
    """One question's scores under ``rule`` (see :func:`parse_rule`)."""
    s = rec["scores"]
    if rec.get("gated"):  # the run's own min_coverage abstained: what the model would have said is unknown
        raise SystemExit(f"record {rec['id']} was gated by retrieve.min_coverage: derive settings from a run made "
                         "with RAG_RETRIEVE__MIN_COVERAGE=0 (docs/eval/lodo.sh)")
    if rec.get("skipped_generation"):  # no source reached retrieve.min_score: abstained without asking the model
        forced = False
    elif rule == "never":
        forced = False
    elif rule == "greedy":
        forced = bool(rec["abstain_greedy"])
    elif isinstance(rule, tuple) and rule[0] == "min_coverage":  # ("min_coverage", c, "greedy" or "never")
        then = rule[2]
        forced = gated(rec, rule[1]) or (bool(rec["abstain_greedy"]) if then == "greedy" else
                                          then != "never" and rec["abstain_p"] >= float(then))
    elif isinstance(rule, tuple):  # ("min_score", s): the best source's score under s, as retrieve.min_score does
        forced = top_score(rec) < rule[1] or bool(rec["abstain_greedy"])
    else:
        forced = rec["abstain_p"] >= rule
    abstained = forced or bool(s["abstained"])
    answerable = not rec["expect_abstain"]
    return {"id": rec["id"], "answerable": answerable, "abstained": abstained,
            "f1": (0.0 if forced else s["f1"]) if answerable else None,
            "false": answerable and abstained and could_answer(rec)}


def summary(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["answerable"]]
    withheld = [r for r in rows if not r["answerable"]]
    share = lambda xs, key: sum(bool(x[key]) for x in xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"f1": sum(r["f1"] for r in ans) / len(ans), "false": share(ans, "false"),
            "abstained": share(ans, "abstained"), "right": share(withheld, "abstained"),
            "n": len(ans), "n_withheld": len(withheld)}


def paired(a: dict[str, float], b: dict[str, float]) -> str:
    """``+0.054 (+0.00 to +0.11)``: A - B on the questions both have (docs/eval/paired_f1.py's bootstrap)."""
    mean, lo, hi = paired_f1.bootstrap_interval([a[i] - b[i] for i in sorted(a.keys() & b.keys())])
    return f"{mean:+.3f} ({lo:+.2f} to {hi:+.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+")
    parser.add_argument("--config", required=True, help="the configuration run with the abstain token forbidden")
    parser.add_argument("--base", help="paired F1 of each row against this configuration's greedy records")
    parser.add_argument("--max-false", type=float, default=0.10)
    parser.add_argument("--choose", action="store_true")
    parser.add_argument("--per-set", action="store_true",
                        help="with --choose: false abstentions at most --max-false on every records file, not pooled")
    parser.add_argument("--min-score", type=float, nargs="*", default=(),
                        help="also rows abstaining where the best source scores under each of these (retrieve.min_score)")
    parser.add_argument("--min-coverage", type=float, nargs="*", default=(),
                        help="also rows abstaining where the sources mention under this share of the question's terms "
                             "(retrieve.min_coverage), with greedy decoding, the abstain token forbidden and each threshold")
    args = parser.parse_args()
    recs = [(str(p), r) for p in args.records for r in latest_run(p, args.config)]
    missing = sum(r.get("abstain_p") is None and not r.get("skipped_generation") for _, r in recs)
    if missing:
        raise SystemExit(f"{missing} records lack abstain_p: re-run them with this version of rag eval")
    base = None
    if args.base:
        base = {p: [r for r in latest_run(p, args.base) if not r["expect_abstain"]] for p in args.records}
    print("| rule | F1 (answerable) | false abstentions | abstained (answerable) | abstained, gold withheld |"
          + (" paired F1 vs base (95%) |" if base else ""))
    print("|---|---|---|---|---|" + ("---|" if base else ""))
    chosen = None
    coverage_rules = [("min_coverage", c, then) for c in args.min_coverage for then in ("greedy", "never", *THRESHOLDS)]
    for rule in ("greedy", "never", *THRESHOLDS, *(("min_score", m) for m in args.min_score), *coverage_rules):
        rows = [{**outcome(r, rule), "key": f"{p}:{r['id']}"} for p, r in recs]
        s = summary(rows)
        name = rule_name(rule)
        line = f"| {name} | {s['f1']:.3f} | {s['false']:.3f} | {s['abstained']:.3f} | {s['right']:.3f} |"
        if base:  # the base model under the same gate, if any: it has no abstain token to read
            base_f1 = {f"{p}:{r['id']}": outcome(r, base_rule(rule))["f1"] for p, rs in base.items() for r in rs}
            line += " " + paired({r["key"]: r["f1"] for r in rows if r["answerable"]}, base_f1) + " |"
        print(line)
        rank = (s["right"], -s["false"], s["f1"])  # most right abstentions, then fewest false, then best F1
        worst = max(summary([r for r in rows if r["key"].startswith(f"{p}:")])["false"] for p in map(str, args.records)) \
            if args.per_set else s["false"]
        if not isinstance(rule, str) and worst <= args.max_false and (chosen is None or rank > chosen[2]):
            chosen = (name, s, rank)
    print(f"\n{summary([outcome(r, 'never') for _, r in recs])['n']} answerable questions, "
          f"{summary([outcome(r, 'never') for _, r in recs])['n_withheld']} with the gold withheld")
    if args.choose:
        if chosen is None:
            print(f"no threshold keeps false abstentions at or under {args.max_false}")
        else:
            print(f"chosen: {chosen[0]} (false abstentions {chosen[1]['false']:.3f}, "
                  f"abstained with the gold withheld {chosen[1]['right']:.3f})")


if __name__ == "__main__":
    main()

"""Issue 19's six-set bar: mean F1, citation precision, invalid citations, yes/no accuracy beside the majority.

    python docs/eval/six_sets.py SET_DIR=CONFIG:label [SET_DIR=CONFIG:label ...] [--rule coverage:0.5]

Each argument names a `rag eval --out` folder, the configuration in it and a label, e.g.
``eval-out/indomain/xquad_en=base:v11`` (in a run made with the shipped adapter as the default
settings, "base" is that adapter). The runs are those of docs/eval/lodo.sh: adapters with the abstain
token forbidden, so greedy decoding is derived from the records (docs/eval/abstain_from_records.py).
Per label: one row a set, then the mean over its sets.
"""

import argparse
import importlib.util
from collections import defaultdict
from pathlib import Path

from rag_app.evaluate.metrics import majority_label

spec = importlib.util.spec_from_file_location("abstain_from_records", Path(__file__).with_name("abstain_from_records.py"))
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def set_row(records: Path, config: str, rule: str | float | tuple = "greedy") -> dict:
    recs = sweep.latest_run(records, config)
    answered, f1s, precision, invalid, yes_no = 0, [], [], 0, []
    for rec in recs:
        o = sweep.outcome(rec, rule)
        if o["answerable"]:
            f1s.append(o["f1"])
            if str(rec.get("answer_type") or "").startswith("yes_no"):
                yes_no.append((o["f1"], rec["answers"][0]))
        if o["abstained"]:
            continue
        answered += 1
        invalid += bool(rec["invalid_citations"])
        if rec["scores"].get("citation_precision") is not None:
            precision.append(rec["scores"]["citation_precision"])
    row = {"n": len(recs), "f1": sum(f1s) / len(f1s), "precision": sum(precision) / len(precision) if precision else None,
           "invalid": invalid, "answered": answered, "yes_no": None}
    if yes_no:
        label, share = majority_label(lab for _, lab in yes_no)
        row["yes_no"] = (sum(a for a, _ in yes_no) / len(yes_no), share, label, len(yes_no))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="SET_DIR=CONFIG:label")
    parser.add_argument("--rule", default="greedy", help="greedy, or coverage:0.5 (retrieve.min_coverage on top of it)")
    args = parser.parse_args()
    rule = sweep.parse_rule(args.rule)
    if rule != "greedy" and not (isinstance(rule, tuple) and rule[0] == "min_coverage"):
        parser.error("--rule takes greedy or coverage:C (a threshold would need the base's abstain token)")
    by_label: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for arg in args.runs:
        folder, spec_ = arg.split("=", 1)
        config, label = spec_.split(":", 1)
        by_label[label].append((Path(folder).name, set_row(Path(folder) / "records.jsonl", config, rule)))
    print("| adapter | set | questions | F1 | citation precision | replies with an invalid citation | yes/no accuracy (majority, n) |")
    print("|---|---|---|---|---|---|---|")
    for label, rows in by_label.items():
        for name, r in rows:
            yn = "–" if r["yes_no"] is None else f"{r['yes_no'][0]:.3f} ({r['yes_no'][1]:.2f} {r['yes_no'][2]}, {r['yes_no'][3]})"
            prec = "–" if r["precision"] is None else f"{r['precision']:.3f}"
            print(f"| {label} | {name} | {r['n']} | {r['f1']:.3f} | {prec} | {r['invalid']} of {r['answered']} | {yn} |")
        precs = [r["precision"] for _, r in rows if r["precision"] is not None]
        print(f"| {label} | **mean of {len(rows)}** | | **{sum(r['f1'] for _, r in rows) / len(rows):.3f}** | "
              f"{sum(precs) / len(precs):.3f} | {sum(r['invalid'] for _, r in rows)} | |")


if __name__ == "__main__":
    main()

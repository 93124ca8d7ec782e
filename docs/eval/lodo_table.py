"""The lead table of docs/EVAL.md: base model vs adapters on sets they never trained on, greedy decoding.

    python docs/eval/lodo_table.py eval-out/lodo [--configs adapter=v11 lodo-a=lodo-a] [--rule greedy|0.2|coverage:0.5]
    python docs/eval/lodo_table.py eval-out/s14 --base v11 --configs v13=v13   # version against version

Reads each set's records.jsonl under the folder (docs/eval/lodo.sh writes them: the adapters with the
abstain token forbidden, so greedy decoding and any threshold follow from the records, see
docs/eval/abstain_from_records.py). One row per set and configuration, then the sets pooled; paired
bootstrap intervals of F1 against the base model on the same answerable questions.
"""

import argparse
import importlib.util
from pathlib import Path

from rag_app.evaluate.metrics import majority_label

spec = importlib.util.spec_from_file_location("abstain_from_records", Path(__file__).with_name("abstain_from_records.py"))
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def rows_of(path: Path, config: str, rule: str | float) -> list[dict]:
    """Per question: the rule's outcome plus what the report needs beside it."""
    out = []
    for rec in sweep.latest_run(path, config):
        o = sweep.outcome(rec, rule if config != "base" else sweep.base_rule(rule))
        o["yes_no"] = str(rec.get("answer_type") or "").startswith("yes_no") and o["answerable"]
        o["label"] = rec["answers"][0]
        o["cap"] = rec["scores"].get("hit_token_cap")
        o["loop"] = rec["scores"].get("repetition_stopped")
        o["key"] = f"{path}:{rec['id']}"
        out.append(o)
    return out


def cells(rows: list[dict], base: list[dict] | None) -> list[str]:
    s = sweep.summary(rows)
    yn = [r for r in rows if r["yes_no"]]
    yes_no = "–"
    if yn:
        label, share = majority_label(r["label"] for r in yn)
        yes_no = f"{sum(r['f1'] for r in yn) / len(yn):.3f} ({share:.2f} {label})"
    capped = [r["cap"] for r in rows if r["cap"] is not None]
    looped = [r["loop"] for r in rows if r["loop"] is not None]
    paired = "–"
    if base is not None:
        paired = sweep.paired({r["key"]: r["f1"] for r in rows if r["answerable"]},
                              {r["key"]: r["f1"] for r in base if r["answerable"]})
    return [f"{s['n']}+{s['n_withheld']}", f"{s['f1']:.3f}", paired, f"{s['false']:.3f}", f"{s['right']:.3f}", yes_no,
            f"{int(sum(capped))} ({int(sum(looped))})" if capped else "–"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--configs", nargs="+", default=["adapter=shipped (v11)", "lodo-a=lodo-a"],
                        help="CONFIG=label of the adapter configurations to show beside base")
    parser.add_argument("--base", default="base", help="the configuration the others are paired against "
                        "(default: the base model; an adapter's name compares versions)")
    parser.add_argument("--rule", default="greedy", help="greedy, an abstain threshold, or coverage:0.5 "
                        "(retrieve.min_coverage, also applied to the base model)")
    args = parser.parse_args()
    rule = sweep.parse_rule(args.rule)
    configs = dict(c.split("=", 1) for c in args.configs)
    print(f"| set | configuration | questions (answerable+withheld) | F1 | F1 vs {args.base} (95%) | false abstentions "
          "| abstained, gold withheld | yes/no accuracy (majority) | replies at the token cap (stopped repeating) |")
    print("|---|---|---|---|---|---|---|---|---|")
    pooled: dict[str, list[dict]] = {}
    for records in sorted(args.folder.glob("*/records.jsonl")):
        try:
            base = rows_of(records, args.base, rule)
        except SystemExit:
            continue
        pooled.setdefault(args.base, []).extend(base)
        print(f"| {records.parent.name} | {args.base} | " + " | ".join(cells(base, None)) + " |")
        for config, label in configs.items():
            try:
                rows = rows_of(records, config, rule)
            except SystemExit:
                continue
            pooled.setdefault(config, []).extend(rows)
            print(f"| {records.parent.name} | {label} | " + " | ".join(cells(rows, base)) + " |")
    print(f"| pooled | {args.base} | " + " | ".join(cells(pooled[args.base], None)) + " |")
    for config, label in configs.items():
        if config in pooled:
            print(f"| pooled | {label} | " + " | ".join(cells(pooled[config], pooled[args.base])) + " |")


if __name__ == "__main__":
    main()

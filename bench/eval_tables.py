"""Markdown tables for docs/EVAL.md from eval report.json files (no model runs).

    python bench/eval_tables.py retrieval eval-out/retrieval
    python bench/eval_tables.py answers eval-out/finetune
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rag_app.evaluate.report import majority_text, yes_no_baseline


def fmt(v: object) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def retrieval(root: Path) -> str:
    rows = ["| set | mode | n | recall@1 | recall@5 | recall@10 | hit@5 | MRR@10 | nDCG@10 |", "|---|---|---|---|---|---|---|---|---|"]
    for report in sorted(root.glob("*/report.json")):
        data = json.loads(report.read_text())
        for c in data["configs"]:
            a = c["aggregate"]
            rows.append(f"| {report.parent.name} | {c['name']} | {a['n']} | " + " | ".join(
                fmt(a.get(k)) for k in ("recall@1", "recall@5", "recall@10", "hit@5", "mrr@10", "ndcg@10")) + " |")
    return "\n".join(rows)


def answers(root: Path) -> str:
    keys = ("f1", "em", "citation_precision", "citation_valid", "abstention_accuracy", "false_abstention", "abstained_answerable")
    head = ("| set | config | n | F1 | EM | citation precision | citation validity | abstention right (gold withheld) "
            "| false abstention (answer shown) | abstained (answerable) | yes/no acc. | yes/no majority |")
    rows = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for report in sorted(root.glob("*/report.json")):
        data = json.loads(report.read_text())
        for c in data["configs"]:
            a = c["aggregate"]
            yn = yes_no_baseline(c["records"])  # from the records: reports written before the baseline have it too
            rows.append(f"| {report.parent.name} | {c['name']} | {a['n']} | " + " | ".join(fmt(a.get(k)) for k in keys)
                        + f" | {fmt(yn['yes_no_accuracy'])} | {majority_text(yn['yes_no_majority'], yn['yes_no_majority_label'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print({"retrieval": retrieval, "answers": answers}[sys.argv[1]](Path(sys.argv[2])))

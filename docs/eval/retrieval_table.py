"""One Markdown table from several `rag eval --retrieval-only` runs (docs/EVAL.md, "Retrieval defaults on long documents").

    python docs/eval/retrieval_table.py eval-out/retrieval-long/*/

Each argument is a run's --out folder (report.json + records.jsonl). A row per configuration: the set,
mode, chunk size, document-level recall and nDCG, and "answer in top-k": how often the answer's words are
in the passages the model would be shown, which on a long PDF (one document, many passages) says more
than finding the right file. The rows of one set are scored on the questions every run of that set asked
(a run with a smaller --limit samples a subset of a larger one's: same seed), so they compare pairwise.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

COLUMNS = ("recall@1", "recall@5", "mrr@10", "ndcg@10", "answer_in_context")


def runs(folder: Path) -> list[tuple[str, dict, dict[str, dict]]]:
    """(set name, settings, {question id: scores}) per configuration, from the newest run of each."""
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text(encoding="utf-8").splitlines() if line]
    out = []
    for config in report["configs"]:
        scores = {r["id"]: r["scores"] for r in records if r["fingerprint"] == config["fingerprint"]}
        out.append((report["dataset"]["name"], config["settings"], scores))
    return out


def mean(values: list) -> str:
    values = [v for v in values if v is not None]
    return f"{sum(values) / len(values):.3f}" if values else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="rag eval --out folders")
    args = parser.parse_args()
    by_set = defaultdict(list)
    for folder in args.runs:
        for name, settings, scores in runs(folder):
            by_set[name].append((settings, scores))
    print("| set | mode | chunk size | top_k | n | recall@1 | recall@5 | MRR@10 | nDCG@10 | answer in top-k |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(by_set):
        rows = sorted(by_set[name], key=lambda r: (r[0]["retrieve"]["mode"], r[0]["ingest"]["chunk_size"]))
        common = set.intersection(*(set(scores) for _, scores in rows))
        for s, scores in rows:
            cells = [name, s["retrieve"]["mode"], str(s["ingest"]["chunk_size"]), str(s["retrieve"]["top_k"]), str(len(common))]
            cells += [mean([scores[i].get(c) for i in common]) for c in COLUMNS]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

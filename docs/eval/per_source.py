"""Reading each source alone (LangChain's "map-rerank") against reading all of them together.

    python docs/eval/per_source.py ADAPTER RUN_DIR ROWS.jsonl SET [SET ...]

Why it was tried: on xquad_en the answer is in the shown sources for every
answerable question, yet the adapter answers a third of them right; a 135M
model might read one 800-character source better than five. For each
question of ``RUN_DIR/<set>/records.jsonl`` (a ``rag eval`` run served by
transformers) it takes the same sources the run showed and, for each alone,
records the abstain first token's probability and the reply with abstention
forbidden (skipped when that probability is >= 0.5). Then it prints, per set,
the run's own scores beside two rules swept over a threshold t: ``min``
answers from the source least likely to abstain, ``first`` from the
best-ranked source under t; both abstain when no source is under t.
``gated`` keeps the run's own decision to abstain and reads the answer from
the best-ranked source under t (else keeps the run's reply). Rows go
to ROWS.jsonl as they are made (a rerun skips those done).
"""

import json
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import torch

from rag_app.abstain import abstain_probability, abstain_token_id
from rag_app.config import load_settings
from rag_app.evaluate.metrics import answer_in_text, mean, token_f1, yes_no_score
from rag_app.generation import HFGenerator
from rag_app.models import apply_adapter, load_model
from rag_app.prompts import ABSTAIN, build_messages, strip_citations
from rag_app.store import IndexStore

THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5)


def measure(adapter: str, run: Path, rows_path: Path, sets: list[str]) -> None:
    done = {(r["set"], r["id"]) for r in map(json.loads, rows_path.read_text().splitlines())} if rows_path.exists() else set()
    settings = load_settings(None)
    gen = HFGenerator(apply_adapter(load_model(settings.generate.model, settings.cache_dir, device="cpu"), adapter),
                      "adapter", adapter)
    token = abstain_token_id(gen.tokenizer)
    for name in sets:
        store = IndexStore.open(next(Path(".rag/datasets").glob(f"{name}-*")))  # the index rag eval built
        for record in map(json.loads, (run / name / "records.jsonl").read_text().splitlines()):
            if (name, record["id"]) in done:
                continue
            chunks = store.get_chunks([h["chunk_id"] for h in record["retrieved"][: len(record["sources"])]])
            if [c.doc_id for c in chunks] != [src["doc_id"] for src in record["sources"]]:
                raise SystemExit(f"{store.index_dir} is not the index {run / name} was run on")
            per = []
            for chunk in chunks:
                messages = build_messages(record["question"], [SimpleNamespace(text=chunk.text, location=chunk.location)])
                with torch.inference_mode():
                    logits = gen.model(input_ids=torch.tensor([gen.encode(messages)])).logits[0, -1].float().numpy()
                p = abstain_probability(logits, token)
                reply = gen.generate(messages, max_new_tokens=32, abstain_threshold=1.0) if p < 0.5 else ""
                per.append({"p": p, "reply": reply, "doc_id": chunk.doc_id, "text": chunk.text})
            keep = ("id", "question", "answers", "answer_type", "gold_doc_ids", "expect_abstain", "scores", "abstained")
            with rows_path.open("a") as fh:
                fh.write(json.dumps({"set": name, "per": per, **{k: record[k] for k in keep}}) + "\n")


def score(row: dict, pick: int | None) -> tuple[float | None, bool, float | None]:
    """(F1 or None when the gold was withheld, abstained, citation precision or None) of answering from ``pick``."""
    yes_no = row["answer_type"] in ("yes_no", "yes_no_maybe")
    reply = ABSTAIN if pick is None else strip_citations(row["per"][pick]["reply"])
    f1 = None
    if not row["expect_abstain"]:
        f1 = 0.0 if pick is None else (yes_no_score if yes_no else token_f1)(reply, row["answers"])
    cited = None
    if pick is not None:
        src = row["per"][pick]
        cited = float(src["doc_id"] in row["gold_doc_ids"]
                      or (not row["expect_abstain"] and not yes_no and answer_in_text(row["answers"], src["text"])))
    return f1, pick is None, cited


def rule_min(row: dict, t: float) -> int | None:
    best = min(range(len(row["per"])), key=lambda j: row["per"][j]["p"])
    return best if row["per"][best]["p"] < t else None


def rule_first(row: dict, t: float) -> int | None:
    return next((j for j, src in enumerate(row["per"]) if src["p"] < t), None)


def line(label: str, rows: list[dict], outcomes: list[tuple[float | None, bool, float | None]]) -> str:
    by: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row, (f1, abstained, cited) in zip(rows, outcomes):
        d = by[row["set"]]
        if f1 is None:  # gold withheld: abstaining is right
            d["right"].append(float(abstained))
        else:
            d["f1"].append(f1)
            d["false"].append(float(abstained))
        if cited is not None:
            d["cited"].append(cited)
    cells = [" / ".join("–" if mean(d[k]) is None else f"{mean(d[k]):.2f}" for k in ("f1", "cited", "right", "false"))
             for _, d in sorted(by.items())]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    adapter, run, rows_path, sets = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
    measure(adapter, run, rows_path, sets)
    rows = [r for r in map(json.loads, rows_path.read_text().splitlines()) if r["set"] in sets]
    names = sorted({r["set"] for r in rows})
    print(f"F1 / citation precision / abstention right (gold withheld) / abstained (answerable); n = "
          + ", ".join(f"{s} {sum(r['set'] == s for r in rows)}" for s in names) + "\n")
    print("| rule | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    own = [(r["scores"].get("f1"), bool(r["abstained"]), r["scores"].get("citation_precision")) for r in rows]
    print(line("all sources together (the run)", rows, own))
    for name, rule in (("min", rule_min), ("first", rule_first)):
        for t in THRESHOLDS:
            print(line(f"each alone, {name}, t={t}", rows, [score(r, rule(r, t)) for r in rows]))
    for t in THRESHOLDS:
        gated = [score(r, None) if r["abstained"] else (o if (j := rule_first(r, t)) is None else score(r, j))
                 for r, o in zip(rows, own)]
        print(line(f"gated by the run, first, t={t}", rows, gated))


if __name__ == "__main__":
    main()

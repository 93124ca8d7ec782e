"""What generate.abstain_threshold trades: answers vs abstentions, on a run's saved validation examples.

    python docs/eval/abstain_sweep.py runs/raft-v3-examples.jsonl rag_app/adapters/smollm2-raft [N=40] [ROWS.jsonl]

For each of the first N ``val:`` examples (documents not trained on; sources
as built, gold kept or withheld) it records the probability of the abstain
sentence's first token and the reply the adapter gives when that token is
forbidden (threshold 1.0). Any threshold's outcome follows from those two
without generating again: abstain if the probability reaches it, else that
reply (a reply begun with that token is taken to be the abstain sentence,
as the adapter was trained to write it). ROWS.jsonl (optional) keeps the
rows, and a rerun skips those done.
"""

import json
import sys
from pathlib import Path

import torch

from finetune.dataset import read_jsonl
from finetune.validate import score_reply
from rag_app.abstain import abstain_probability, abstain_token_id
from rag_app.config import load_settings
from rag_app.generation import HFGenerator
from rag_app.models import apply_adapter, load_model

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def measure(gen: HFGenerator, ex) -> dict:
    token = abstain_token_id(gen.tokenizer)
    ids = torch.tensor([gen.encode(ex.messages())])
    with torch.inference_mode():
        logits = gen.model(input_ids=ids).logits[0, -1].float().numpy()
    reply = gen.generate(ex.messages(), max_new_tokens=64, abstain_threshold=1.0)
    return {"id": ex.id, "gold_kept": ex.gold_kept, "p": abstain_probability(logits, token),
            "greedy_abstains": int(logits.argmax()) == token, "answer": score_reply(ex, reply)}


def outcome(rows: list[dict], abstains) -> str:
    kept = [r for r in rows if r["gold_kept"]]
    held = [r for r in rows if not r["gold_kept"]]
    f1 = sum(0.0 if abstains(r) else r["answer"]["f1"] for r in kept) / max(1, len(kept))
    false = sum(map(abstains, kept)) / max(1, len(kept))
    right = f"{sum(abstains(r) or r['answer']['abstained'] for r in held) / len(held):.3f}" if held else "–"
    return f"{f1:.3f} | {false:.3f} | {right} |"


def main() -> None:
    examples, adapter = Path(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    store = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    rows = [json.loads(line) for line in store.read_text().splitlines()] if store and store.exists() else []
    done = {r["id"] for r in rows}
    todo = [e for e in read_jsonl(examples) if e.id.startswith("val:")][:n]
    settings = load_settings(None)
    gen = HFGenerator(apply_adapter(load_model(settings.generate.model, settings.cache_dir, device="cpu"), adapter),
                      "adapter", adapter)
    for ex in todo:
        if ex.id in done:
            continue
        rows.append(measure(gen, ex))
        if store:
            with store.open("a") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    rows = [r for r in rows if r["id"] in {e.id for e in todo}]
    kept = sum(r["gold_kept"] for r in rows)
    print(f"{len(rows)} validation examples: {kept} with the gold source, {len(rows) - kept} with it withheld\n")
    print("| threshold | F1 (gold shown) | false abstention | abstention right (gold withheld) |\n|---|---|---|---|")
    print("| none (greedy) | " + outcome(rows, lambda r: r["greedy_abstains"]))
    for t in THRESHOLDS:
        print(f"| {t} | " + outcome(rows, lambda r, t=t: r["p"] >= t))


if __name__ == "__main__":
    main()

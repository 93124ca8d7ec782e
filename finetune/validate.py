"""Before/after on the validation examples: same sources, same prompt, base vs adapter.

The validation examples come from documents the adapter never saw. Each
keeps the sources it was built with (gold kept, or withheld so the right reply
abstains), so the comparison isolates the generator: retrieval cannot help
or hurt either side. ``rag eval`` gives the full picture with retrieval; this
is the quick check written into the training card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finetune.dataset import RaftExample
from rag_app.evaluate.metrics import token_f1, yes_no_score
from rag_app.prompts import is_abstention, parse_citations, strip_citations


def score_reply(ex: RaftExample, reply: str) -> dict[str, Any]:
    """Metrics of one reply: F1 (or yes/no accuracy), citations, abstention."""
    cited = parse_citations(reply)
    abstained = is_abstention(reply)
    row: dict[str, Any] = {"abstained": abstained, "invalid_citation": any(n < 1 or n > len(ex.sources) for n in cited)}
    if ex.gold_kept:
        yes_no = bool(ex.answer_type) and ex.answer_type.startswith("yes_no")
        text = strip_citations(reply)
        row["f1"] = yes_no_score(text, ex.answers) if yes_no else token_f1(text, ex.answers)
        row["cites_gold"] = bool(cited) and all(n in ex.gold_numbers for n in cited) if cited else None
        row["false_abstention"] = abstained
    else:
        row["abstain_correct"] = abstained
    return row


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        return round(sum(values) / len(values), 3) if values else None

    return {
        "n": len(rows),
        "answer_f1": mean("f1"),
        "citation_precision": mean("cites_gold"),
        "invalid_citation_rate": mean("invalid_citation"),
        "false_abstention_rate": mean("false_abstention"),
        "abstention_accuracy_gold_withheld": mean("abstain_correct"),
    }


def compare(examples: Sequence[RaftExample], generators: dict[str, Any], max_new_tokens: int = 64) -> dict[str, Any]:
    """{name: summary} for each generator over the same examples (greedy)."""
    out = {}
    for name, gen in generators.items():
        rows = [score_reply(ex, gen.generate(ex.messages(), max_new_tokens=max_new_tokens)) for ex in examples]
        out[name] = summarize(rows)
    return out

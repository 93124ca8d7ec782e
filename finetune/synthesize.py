"""Questions and answers written by the model from a corpus that has no QA set (``rag finetune --synthesize``).

For each sampled chunk the base model (no adapter: the adapter answers, it
does not ask) is shown the passage and asked for one question and a short
answer copied from it. A pair is kept only if it parses, the question is a
question that does not already contain the answer, and the answer is a short
span found verbatim (normalised) in the passage. The kept pairs become
:class:`~rag_app.evaluate.dataset.QAItem` s with the chunk's document as
gold, so :func:`finetune.dataset.build_examples` turns them into RAFT
examples exactly as it does for a real QA set.

How good they are is measured, not assumed (:func:`synthesis_quality`): the
share of chunks that gave a usable pair, and whether the retriever finds the
passage from the generated question (a question that does not point back at
its passage is vague, or about something else). A 135M model writes simple,
often literal questions; the numbers go into the training card.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag_app.evaluate.dataset import QAItem
from rag_app.evaluate.metrics import answer_in_text, normalize_answer
from rag_app.store import Chunk, IndexStore

log = logging.getLogger(__name__)

SYSTEM = "You write one quiz question about a passage, and its answer copied word for word from the passage."
USER = (
    "Passage:\n{text}\n\n"
    "Write one question this passage answers, then its answer: a few words copied exactly from the passage.\n"
    "Reply in two lines:\nQuestion: <the question>\nAnswer: <the answer>"
)
_QUESTION = re.compile(r"question\s*:\s*(.+)", re.I)
_ANSWER = re.compile(r"answer\s*:\s*(.+)", re.I)
MAX_ANSWER_WORDS = 8
MIN_CHUNK_CHARS = 200  # headings and fragments give no question worth asking


@dataclass
class Rejected:
    """Why a chunk gave no pair: for the counts in the training card."""

    reason: str
    reply: str


def messages_for(chunk_text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(text=chunk_text.strip())}]


def parse_pair(reply: str, passage: str) -> tuple[str, str] | Rejected:
    """``(question, answer)`` from the model's reply, or why it is unusable."""
    q = _QUESTION.search(reply)
    a = _ANSWER.search(reply)
    if not q or not a:
        return Rejected("unparsed", reply)
    question = q.group(1).strip().split("\n")[0].strip()
    answer = a.group(1).strip().split("\n")[0].strip().rstrip(".").strip().strip("\"'").strip()
    if not question.endswith("?") or len(question.split()) < 4:
        return Rejected("not a question", reply)
    if not answer or len(answer.split()) > MAX_ANSWER_WORDS:
        return Rejected("answer empty or long", reply)
    if not answer_in_text([answer], passage):
        return Rejected("answer not in passage", reply)
    if normalize_answer(answer) in normalize_answer(question):
        return Rejected("question gives the answer away", reply)
    return question, answer


def sample_chunks(store: IndexStore, n: int, seed: int) -> list[Chunk]:
    """Up to ``n`` chunks long enough to ask about, spread over documents (seeded)."""
    rng = random.Random(f"synth-{seed}")
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in store.iter_chunks():
        if len(chunk.text) >= MIN_CHUNK_CHARS:
            by_doc.setdefault(chunk.doc_id, []).append(chunk)
    pools = [rng.sample(chunks, len(chunks)) for _, chunks in sorted(by_doc.items())]
    rng.shuffle(pools)
    out: list[Chunk] = []
    while len(out) < n and any(pools):
        for pool in pools:  # round robin: one chunk per document before a second from any
            if pool and len(out) < n:
                out.append(pool.pop())
    return out


def synthesize_items(
    store: IndexStore, generate: Callable[[list[dict[str, str]]], str], n: int, name: str, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[QAItem], dict[str, Any]]:
    """Ask ``generate`` for a QA pair on each of ``n`` sampled chunks; keep the ones that pass the filter.

    Returns:
        The kept pairs as QA items (gold: the chunk's document; answer type
        ``span``) and counts of what was kept and rejected, with examples.
    """
    chunks = sample_chunks(store, n, seed)
    items: list[QAItem] = []
    rejected: dict[str, int] = {}
    samples: dict[str, list[str]] = {"kept": [], "rejected": []}
    for i, chunk in enumerate(chunks):
        result = parse_pair(generate(messages_for(chunk.text)), chunk.text)
        if isinstance(result, Rejected):
            rejected[result.reason] = rejected.get(result.reason, 0) + 1
            if len(samples["rejected"]) < 3:
                samples["rejected"].append(f"{result.reason}: {result.reply[:160]!r}")
        else:
            question, answer = result
            items.append(QAItem(f"synth-{name}-{chunk.id}", question, (answer,), (chunk.doc_id,), "span", "train"))
            if len(samples["kept"]) < 3:
                samples["kept"].append(f"{question} -> {answer}")
        if progress:
            progress(i + 1, len(chunks))
    stats = {"chunks_asked": len(chunks), "kept": len(items),
             "kept_share": round(len(items) / len(chunks), 3) if chunks else None,
             "rejected": rejected, "samples": samples}
    return items, stats


def synthesis_quality(items: Sequence[QAItem], retrieve: Callable[[str], Sequence[Any]]) -> dict[str, Any]:
    """Does the retriever find each question's passage? hit@k with the retriever's k, as a quality proxy."""
    if not items:
        return {"questions": 0, "gold_doc_hit_at_k": None}
    hits = sum(any(h.chunk.doc_id in item.gold_doc_ids for h in retrieve(item.question)) for item in items)
    return {"questions": len(items), "gold_doc_hit_at_k": round(hits / len(items), 3)}

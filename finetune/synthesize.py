"""Questions and answers written by the model from a corpus that has no QA set (``rag finetune --synthesize``).

For each sampled chunk the base model (no adapter: the adapter answers, it
does not ask) writes one question about the passage; the serving generator
(with its adapter) then answers it from that passage alone, with the serving
prompt. A pair is kept only if the question is a question, the answer is a
short span found verbatim (normalised) in the passage, and the question does
not already contain it. Two steps because the bundled 135M base, asked for
"Question: ... Answer: ..." in one reply, wrote the question and no usable
answer (0 of 20 passages of data/sample kept); it writes questions well
enough, and the RAFT adapter answers in short cited spans. The kept pairs become
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag_app.evaluate.dataset import QAItem
from rag_app.evaluate.metrics import answer_in_text, normalize_answer
from rag_app.prompts import build_messages, is_abstention, split_quote, strip_citations
from rag_app.store import Chunk, IndexStore

log = logging.getLogger(__name__)

QUESTION_SYSTEM = "You write quiz questions about a passage."
QUESTION_USER = "Passage:\n{text}\n\nWrite one question that this passage answers. Reply with the question only."
MAX_ANSWER_WORDS = 8
MIN_CHUNK_CHARS = 200  # headings and fragments give no question worth asking


@dataclass
class Rejected:
    """Why a chunk gave no pair: for the counts in the training card."""

    reason: str
    reply: str


def question_messages(chunk_text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": QUESTION_SYSTEM},
            {"role": "user", "content": QUESTION_USER.format(text=chunk_text.strip())}]


def question_line(reply: str) -> str | None:
    """The question in the writer's reply (its first line, unquoted), or None when it is not a question."""
    question = reply.strip().split("\n")[0].strip().strip('"').strip()
    return question if question.endswith("?") and len(question.split()) >= 4 else None


def parse_pair(question_reply: str, answer_reply: str, passage: str) -> tuple[str, str] | Rejected:
    """``(question, answer)`` from the two replies, or why the pair is unusable."""
    question = question_line(question_reply)
    if question is None:
        return Rejected("not a question", question_reply)
    if is_abstention(answer_reply):
        return Rejected("answerer abstained", answer_reply)
    answer = strip_citations(split_quote(answer_reply)[1]).split("\n")[0].strip().rstrip(".").strip().strip("\"'").strip()
    if not answer or len(answer.split()) > MAX_ANSWER_WORDS:
        return Rejected("answer empty or long", answer_reply)
    if not answer_in_text([answer], passage):
        return Rejected("answer not in passage", answer_reply)
    if normalize_answer(answer) in normalize_answer(question):
        return Rejected("question gives the answer away", question_reply)
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
    store: IndexStore, write_question: Callable[[list[dict[str, str]]], str],
    answer: Callable[[list[dict[str, str]]], str], n: int, name: str, seed: int = 0,
) -> tuple[list[QAItem], dict[str, Any]]:
    """A question on each of ``n`` sampled chunks, answered from that chunk alone; keep the pairs that pass.

    Args:
        write_question: the question writer (chat messages in, text out).
        answer: the answerer, given the serving prompt with the chunk as its
            only source (:func:`rag_app.prompts.build_messages`), so its reply
            is a short cited answer or the abstain sentence.

    Returns:
        The kept pairs as QA items (gold: the chunk's document; answer type
        ``span``) and counts of what was kept and rejected, with examples.
    """
    chunks = sample_chunks(store, n, seed)
    items: list[QAItem] = []
    rejected: dict[str, int] = {}
    samples: dict[str, list[str]] = {"kept": [], "rejected": []}
    for chunk in chunks:
        question_reply = write_question(question_messages(chunk.text))
        question = question_line(question_reply)
        answer_reply = answer(build_messages(question, [chunk])) if question else ""  # no answerer call for junk
        result = parse_pair(question_reply, answer_reply, chunk.text)
        if isinstance(result, Rejected):
            rejected[result.reason] = rejected.get(result.reason, 0) + 1
            if len(samples["rejected"]) < 3:
                samples["rejected"].append(f"{result.reason}: {question_reply[:100]!r} -> {answer_reply[:80]!r}")
        else:
            question, text = result
            items.append(QAItem(f"synth-{name}-{chunk.id}", question, (text,), (chunk.doc_id,), "span", "train"))
            if len(samples["kept"]) < 3:
                samples["kept"].append(f"{question} -> {text}")
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

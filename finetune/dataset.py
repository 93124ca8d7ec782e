"""RAFT training examples: question + gold chunk + hard distractors -> cited answer or abstention.

RAFT (Zhang et al. 2024) trains the generator on exactly what it meets at
serving time: a question with several retrieved sources, most of them
plausible but wrong. Here:

* the gold chunk is the gold document's chunk that contains the answer
  (falling back to its chunk most similar to the question, e.g. for yes/no);
* distractors are the retriever's best chunks from *other* documents (hard
  negatives, not random), so the model learns to pick, not just copy;
* with probability ``1 - p_gold`` the gold is left out and the target is the
  abstain sentence; a distractor that happens to contain the answer string is
  dropped too, so "abstain" is only taught when the answer really is absent,
  and the next distractor takes the gold's place, so the number of sources
  never tells the model whether the gold is there;
* sources are shuffled, and the target cites the gold's position ``[n]``;
* with probability ``p_inject`` one source carries an instruction planted
  for the model (:mod:`finetune.injection`) and the target ignores it.

Messages come from :func:`rag_app.prompts.build_messages`, the function the
pipeline serves with; a drift between the two would be a bug.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from finetune.config import RaftConfig
from finetune.injection import plant_in
from rag_app.evaluate.dataset import QAItem
from rag_app.evaluate.metrics import answer_in_text, normalize_answer
from rag_app.prompts import ABSTAIN, build_messages, format_answer
from rag_app.retriever import Retriever
from rag_app.store import Chunk, IndexStore

log = logging.getLogger(__name__)


@dataclass
class SourceText:
    """A source as the prompt shows it (a chunk, possibly trimmed)."""

    text: str
    source: str
    doc_id: str
    page: int | None = None
    heading: str | None = None

    @property
    def location(self) -> str:
        return Chunk(0, self.text, self.source, self.doc_id, page=self.page, heading=self.heading).location


@dataclass
class RaftExample:
    id: str
    dataset: str
    question: str
    sources: list[SourceText]
    target: str
    gold_numbers: list[int]  # 1-based positions of the gold sources ([] when dropped)
    gold_kept: bool
    answer_type: str | None = None
    answers: list[str] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        return build_messages(self.question, self.sources)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> RaftExample:
        d = json.loads(line)
        d["sources"] = [SourceText(**s) for s in d["sources"]]
        return cls(**d)


def _first_hit(text: str, answers: Sequence[str]) -> int:
    """Character offset of the earliest answer occurrence in ``text`` (case-insensitive), 0 if none."""
    low = text.lower()
    return min((i for a in answers if a and (i := low.find(a.lower())) >= 0), default=0)


def _trim(text: str, answers: Sequence[str], limit: int) -> str:
    """Cut ``text`` to ``limit`` chars around the first answer occurrence, on sentence edges."""
    if len(text) <= limit:
        return text
    hit = _first_hit(text, answers)
    start = max(0, hit - limit // 2)
    if start:
        dot = text.rfind(". ", 0, start)
        start = dot + 2 if dot >= 0 and start - dot < limit // 4 else start
    end = min(len(text), start + limit)
    dot = text.rfind(". ", start, end)
    if dot > start + limit // 2:
        end = dot + 1
    return text[start:end].strip()


def _as_source(chunk: Chunk, answers: Sequence[str], limit: int) -> SourceText:
    return SourceText(_trim(chunk.text, answers, limit), chunk.source, chunk.doc_id, chunk.page, chunk.heading)


def _short_answer(item: QAItem) -> str:
    """The reply's answer text: a capitalised yes/no decision, else the first acceptable answer."""
    answer = item.answers[0].strip()
    if item.is_yes_no:
        return answer.capitalize()
    return answer


def _quote(text: str, answers: Sequence[str], limit: int = 240) -> str | None:
    """The sentence of ``text`` holding an answer, for ``--quote`` targets, at most ``limit`` chars.

    A longer sentence (a table row, a run-on paragraph) is cut to a window
    around the answer with "..." marks: copying 60 tokens costs a 135M model
    more than it teaches, and the answer after it must fit the token budget.
    """
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        sentence = sentence.strip()
        if len(sentence.split()) < 5 or not answer_in_text(answers, sentence):
            continue  # a title line or the bare answer is no evidence
        if len(sentence) <= limit:
            return sentence
        hit = _first_hit(sentence, answers)
        start = max(0, min(hit - limit // 3, len(sentence) - limit))
        start = sentence.find(" ", start) + 1 if start else 0
        end = sentence.rfind(" ", start, start + limit)
        window = sentence[start:end if end > start else start + limit].strip()
        if not answer_in_text(answers, window):
            return None
        return ("..." if start else "") + window + "..."
    return None


def _holds(item: QAItem, text: str) -> bool:
    """Does ``text`` hold the answer (every span of a multi-span answer)?"""
    return answer_in_text(item.answers, text) or bool(item.answer_spans) and answer_in_text(item.answers, text, item.answer_spans)


def gold_chunks(item: QAItem, store: IndexStore, retriever: Retriever, qvec: np.ndarray | None = None) -> list[Chunk]:
    """Chunks of the gold docs that contain an answer; else each gold doc's best match for the question."""
    found: list[Chunk] = []
    for doc_id in item.gold_doc_ids:
        chunks = list(store.iter_chunks(doc_id=doc_id))
        with_answer = [c for c in chunks if not item.is_yes_no and _holds(item, c.text)]
        candidates = with_answer or chunks
        if len(candidates) == 1:
            found.append(candidates[0])
        elif candidates:
            # Several (or no) chunks hold the answer string: the one closest to the question.
            qvec = retriever.embedder.embed_query(item.question) if qvec is None else qvec
            sims = store.get_vectors([c.id for c in candidates]) @ qvec
            found.append(candidates[int(sims.argmax())])
    return found


def build_example(
    item: QAItem, dataset: str, store: IndexStore, retriever: Retriever, cfg: RaftConfig, rng: random.Random,
    qvec: np.ndarray | None = None,
) -> RaftExample | None:
    """One RAFT example for ``item``; None when no gold chunk holds its answer."""
    golds = gold_chunks(item, store, retriever, qvec)
    if not golds:
        return None
    if not item.is_yes_no and not any(_holds(item, c.text) for c in golds):
        return None  # a free-text answer nowhere in the gold: training on it teaches invention
    hits = retriever.retrieve(item.question, k=cfg.distractors + len(item.gold_doc_ids) + 4,
                              exclude_doc_ids=item.gold_doc_ids, query_vector=qvec)
    # Multi-hop questions need every gold doc; show them all or none.
    keep_gold = rng.random() < cfg.p_gold
    pool = [h.chunk for h in hits]
    if not keep_gold and not item.is_yes_no:
        pool = [c for c in pool if not _holds(item, c.text)]
    # As many sources either way: a shorter list must not give away that the gold is missing.
    distractors = pool[: cfg.distractors + (0 if keep_gold else len(golds))]
    shown: list[tuple[Chunk, bool]] = [(c, False) for c in distractors]
    if keep_gold:
        shown += [(c, True) for c in golds]
    rng.shuffle(shown)
    sources = [_as_source(c, item.answers, cfg.max_source_chars) for c, _ in shown]
    gold_numbers = [n for n, (_, is_gold) in enumerate(shown, start=1) if is_gold]
    _maybe_plant(sources, gold_numbers, cfg, f"{dataset}:{item.id}", item.answers)
    if keep_gold:
        # Cite the gold sources that hold the answer (all of them for yes/no and multi-hop bridges).
        holding = [n for n in gold_numbers if _holds(item, sources[n - 1].text)]
        cited = holding or gold_numbers
        quote = _quote(sources[cited[0] - 1].text, item.answers) if cfg.quote else None
        target = format_answer(_short_answer(item), cited, quote=quote)
    else:
        target = ABSTAIN
    return RaftExample(item.id, dataset, item.question, sources, target, gold_numbers, keep_gold,
                       item.answer_type, list(item.answers))


def _maybe_plant(sources: list[SourceText], gold_numbers: Sequence[int], cfg: RaftConfig, key: str,
                 answers: Sequence[str]) -> None:
    """With probability ``cfg.p_inject``, plant an instruction in one source (its own seeded stream)."""
    rng = random.Random(f"{cfg.seed}-inject-{key}")
    if sources and rng.random() < cfg.p_inject:
        plant_in(sources, gold_numbers[0] - 1 if gold_numbers else None, rng, answers)


def build_examples(items: Iterable[QAItem], dataset: str, store: IndexStore, retriever: Retriever, cfg: RaftConfig) -> list[RaftExample]:
    """Examples for every item (seeded); items whose gold cannot be found are skipped and counted."""
    rng = random.Random(f"{cfg.seed}-{dataset}")
    items = list(items)
    vectors = retriever.embedder.embed_documents([i.question for i in items])  # one batch, not one call each
    out, skipped = [], 0
    for item, qvec in zip(items, vectors):
        ex = build_example(item, dataset, store, retriever, cfg, rng, qvec)
        if ex is None:
            skipped += 1
        else:
            out.append(ex)
    if skipped:
        log.warning("%s: %d questions skipped (answer not found in a gold document)", dataset, skipped)
    return out


def split_by_document(items: Sequence[QAItem], val_fraction: float, seed: int = 0) -> tuple[list[QAItem], list[QAItem]]:
    """Train/validation split by gold document, so validation documents are never trained on."""
    docs = sorted({d for i in items for d in i.gold_doc_ids})
    rng = random.Random(f"split-{seed}")
    val_docs = set(rng.sample(docs, max(1, round(val_fraction * len(docs))))) if val_fraction > 0 and docs else set()
    train = [i for i in items if not val_docs.intersection(i.gold_doc_ids)]
    val = [i for i in items if set(i.gold_doc_ids) <= val_docs]
    return train, val


def balance_decisions(items: Sequence[QAItem], seed: int = 0) -> tuple[list[QAItem], dict[str, int]]:
    """``items`` with no yes/no label more common than the next most common one; others untouched.

    A set whose yes/no questions are mostly "yes" (cmu_qa_wikipedia's training
    questions: 82%) teaches the prior, not the reading: the adapter answered
    "Yes" to nearly every question of a set it never saw (docs/EVAL.md). Capping
    the majority label at the runner-up's count leaves only the source to
    decide from. Returns the kept items (in their order) and the count dropped
    per label.
    """
    by_label: dict[str, list[QAItem]] = {}
    for item in items:
        if item.is_yes_no:
            by_label.setdefault(normalize_answer(item.answers[0]), []).append(item)
    counts = sorted((len(v) for v in by_label.values()), reverse=True)
    if len(counts) < 2:
        return list(items), {}
    cap = counts[1]
    rng = random.Random(f"decisions-{seed}")
    dropped: set[int] = set()
    drops: dict[str, int] = {}
    for label, group in sorted(by_label.items()):
        if len(group) > cap:
            gone = rng.sample(group, len(group) - cap)
            dropped.update(id(i) for i in gone)
            drops[label] = len(gone)
    return [i for i in items if id(i) not in dropped], drops


def examples_from_triples(path: Path, cfg: RaftConfig) -> list[RaftExample]:
    """Examples from a JSONL of ``{question, answer, context}``: other contexts act as distractors.

    Without an index the distractors are the contexts sharing most words with
    the question (a lexical stand-in for hard negatives).
    """
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(f"{cfg.seed}-triples")
    contexts = [r["context"] for r in rows]
    words = [set(c.lower().split()) for c in contexts]
    out = []
    for n, row in enumerate(rows):
        q = set(row["question"].lower().split())
        ranked = sorted((i for i in range(len(rows)) if contexts[i] != row["context"]), key=lambda i: -len(q & words[i]))
        keep_gold = rng.random() < cfg.p_gold
        extra = 0 if keep_gold else 1  # same source count as with the gold
        shown = [(contexts[i], False) for i in ranked[: cfg.distractors + extra]] + ([(row["context"], True)] if keep_gold else [])
        rng.shuffle(shown)
        sources = [SourceText(_trim(t, [row["answer"]], cfg.max_source_chars), f"context-{n}", f"context-{n}") for t, _ in shown]
        gold = [k for k, (_, g) in enumerate(shown, start=1) if g]
        _maybe_plant(sources, gold, cfg, f"triples:{n}", [row["answer"]])
        target = format_answer(row["answer"], gold) if keep_gold else ABSTAIN
        out.append(RaftExample(str(row.get("id", n)), path.stem, row["question"], sources, target, gold, keep_gold, None, [row["answer"]]))
    return out


def write_jsonl(examples: Iterable[RaftExample], path: Path) -> None:
    path.write_text("".join(ex.to_json() + "\n" for ex in examples), encoding="utf-8")


def read_jsonl(path: Path) -> list[RaftExample]:
    return [RaftExample.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

"""Metric functions: pure, small, and checked against hand-computed cases.

Retrieval is scored at the **document** level against gold doc ids: the
retriever returns chunks, several of which may come from one document, so the
ranked chunk list is first collapsed to a ranked list of distinct doc ids (a
document's rank is the rank of its first chunk, its score that chunk's
score). Relevance is binary: a doc is gold or not.

* ``recall@k``: share of the gold docs among the first k docs.
* ``hit@k``: 1 if any gold doc is among the first k docs.
* ``MRR@10``: 1 / rank of the first gold doc, 0 if none in the top 10.
* ``nDCG@10``: DCG = sum over ranks i of rel_i / log2(i + 1), divided by the
  DCG of the ideal ranking (all gold docs first). **Ties**: documents with
  equal scores that sit next to each other in the ranking form a tie group;
  which of them comes first is arbitrary (FAISS and BM25 break ties by
  insertion order), so every member of a group gets the *mean* discount of
  the positions the group spans (McSherry & Najork, ECIR 2008). The result is
  the expected nDCG over all orders of the tied documents, and a
  retriever cannot gain or lose points by how it happens to break ties.
  Without scores nDCG uses the order as given.

Answers follow SQuAD v1.1: lowercase, drop punctuation (Unicode too), drop the articles
a/an/the, collapse whitespace; exact match and token F1 are the best over the
acceptable answers. Replies are scored with their ``[n]`` citations stripped.
Yes/no(/maybe) questions are scored by the first word of the reply.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rag_app.prompts import split_quote, strip_citations

if TYPE_CHECKING:
    from rag_app.evaluate.dataset import QAItem

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
YES_NO_WORDS = ("yes", "no", "maybe")
_TIE_TOLERANCE = 1e-9


# ---------------------------------------------------------------- retrieval


def dedupe_docs(doc_ids: Iterable[str], scores: Iterable[float] | None = None) -> tuple[list[str], list[float] | None]:
    """Collapse a ranked chunk list to ranked distinct docs (first chunk wins).

    Args:
        doc_ids: doc id of each retrieved chunk, best first.
        scores: the chunks' ranking scores, same order, or None.

    Returns:
        (doc ids, their scores or None), best first, each doc once.
    """
    ids = list(doc_ids)
    sc = list(scores) if scores is not None else None
    seen: dict[str, int] = {}
    for n, doc in enumerate(ids):
        seen.setdefault(doc, n)
    order = sorted(seen.values())
    return [ids[n] for n in order], ([sc[n] for n in order] if sc is not None else None)


def recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Share of the gold docs found among the first ``k`` docs of ``ranked`` (deduped docs)."""
    gold = set(gold)
    if not gold:
        raise ValueError("recall needs at least one gold doc")
    return len(gold.intersection(ranked[:k])) / len(gold)


def hit_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """1.0 when any gold doc is among the first ``k`` docs, else 0.0."""
    return 1.0 if set(gold).intersection(ranked[:k]) else 0.0


def mrr_at_k(ranked: Sequence[str], gold: Collection[str], k: int = 10) -> float:
    """Reciprocal rank (1-based) of the first gold doc within the top ``k``, 0.0 if none."""
    gold = set(gold)
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in gold:
            return 1.0 / rank
    return 0.0


def tie_groups(scores: Sequence[float]) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of neighbouring positions with equal scores."""
    groups: list[tuple[int, int]] = []
    start = 0
    for n in range(1, len(scores) + 1):
        if n == len(scores) or not math.isclose(scores[n], scores[start], rel_tol=_TIE_TOLERANCE, abs_tol=_TIE_TOLERANCE):
            groups.append((start, n))
            start = n
    return groups


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str], k: int = 10, scores: Sequence[float] | None = None) -> float:
    """Binary-relevance nDCG@k, tie-aware when ``scores`` are given (see the module docstring).

    Args:
        ranked: distinct doc ids, best first.
        gold: the relevant doc ids.
        k: cut-off.
        scores: ``ranked``'s scores; neighbours with equal scores share their discounts.

    Example: ranked ``[x, g, y]``, gold ``{g}``, scores ``[0.9, 0.5, 0.5]`` ->
    g and y tie over ranks 2-3, so DCG = (1/log2(3) + 1/log2(4)) / 2.
    """
    gold = set(gold)
    if not gold:
        raise ValueError("nDCG needs at least one gold doc")
    rel = [1.0 if doc in gold else 0.0 for doc in ranked]
    discount = [1.0 / math.log2(i + 2) for i in range(len(ranked))]
    if scores is not None:
        if len(scores) != len(ranked):
            raise ValueError(f"{len(scores)} scores for {len(ranked)} docs")
        for start, end in tie_groups(scores):
            # A group straddling the cut-off contributes its in-cut share of positions.
            mean_rel = sum(rel[start:end]) / (end - start)
            for i in range(start, end):
                rel[i] = mean_rel
    dcg = sum(r * d for r, d in zip(rel[:k], discount[:k]))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / ideal


def retrieval_scores(
    ranked: Sequence[str], gold: Collection[str], ks: Sequence[int], scores: Sequence[float] | None = None
) -> dict[str, float]:
    """Every retrieval metric of one question: ``recall@k``, ``hit@k`` per k, ``mrr@10``, ``ndcg@10``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranked, gold, k)
    for k in ks:
        out[f"hit@{k}"] = hit_at_k(ranked, gold, k)
    out["mrr@10"] = mrr_at_k(ranked, gold, 10)
    out["ndcg@10"] = ndcg_at_k(ranked, gold, 10, scores)
    return out


# ---------------------------------------------------------------- answers


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower, no punctuation, no a/an/the, single spaces.

    Punctuation is ASCII ``string.punctuation`` plus every Unicode ``P*``
    character (as MLQA's script does), so "Miller–Rabin" (en dash) matches
    "Miller-Rabin"; the original script only drops ASCII punctuation.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT and not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised acceptable answer."""
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(a) for a in answers) else 0.0


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)  # both empty: 1, one empty: 0 (as the SQuAD v2 script does)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best token-level F1 (bag of normalised words) over the acceptable answers."""
    return max(_f1(prediction, a) for a in answers)


def first_word(reply: str) -> str | None:
    """``yes``/``no``/``maybe`` when the reply starts with one of them (after normalising), else None."""
    words = normalize_answer(reply).split()
    return words[0] if words and words[0] in YES_NO_WORDS else None


def yes_no_score(reply: str, answers: Sequence[str]) -> float:
    """1.0 when the reply's first word is the gold decision ("Yes, because ..." scores for "yes")."""
    word = first_word(reply)
    return 1.0 if word is not None and word in {normalize_answer(a) for a in answers} else 0.0


def majority_label(labels: Iterable[str]) -> tuple[str, float] | None:
    """The most common gold label and its share: what always giving that one answer would score.

    Why: yes/no sets are rarely balanced, so an accuracy of 0.54 on a set that is
    55% "yes" is below a model that always says yes. Labels are normalised
    (``"Yes"`` counts as ``yes``); a tie goes to the label first in alphabetical
    order, so the baseline does not depend on the order of the records.

    Returns:
        (label, share in [0, 1]), or None when there are no labels.
    """
    counts = Counter(normalize_answer(label) for label in labels)
    if not counts:
        return None
    label, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return label, count / sum(counts.values())


def _contains(haystack_norm: str, needle: str) -> bool:
    needle_norm = normalize_answer(needle)
    # Word boundaries: "308" must not match inside "1308".
    return bool(needle_norm) and f" {needle_norm} " in f" {haystack_norm} "


def answer_in_text(answers: Sequence[str], text: str, all_spans: Sequence[str] = ()) -> bool:
    """Is an acceptable answer in ``text`` (both normalised, whole words)?

    With ``all_spans`` (a multi-span answer) every span must be present instead.
    """
    norm = normalize_answer(text)
    if all_spans:
        return all(_contains(norm, s) for s in all_spans)
    return any(_contains(norm, a) for a in answers)


# ---------------------------------------------------------------- citations


def citation_precision(cited: Sequence[int], supporting: Collection[int]) -> float | None:
    """Share of cited source numbers that support the answer; None when nothing is cited.

    Args:
        cited: the source numbers the reply cites (each once).
        supporting: numbers of the shown sources that are gold docs or contain
            an acceptable answer. A citation to a missing source never supports.
    """
    if not cited:
        return None
    return sum(1 for n in cited if n in supporting) / len(cited)


def citation_valid(cited: Sequence[int], n_sources: int) -> float:
    """1.0 when every citation points at a source that was shown (numbered 1..n_sources)."""
    return 1.0 if all(1 <= n <= n_sources for n in cited) else 0.0


# ---------------------------------------------------------------- one question


def score_question(
    item: QAItem,
    hits: Sequence[Any],
    source_chunks: Sequence[Any],
    answer: Any | None,
    ks: Sequence[int],
    withheld: bool,
) -> dict[str, float | None]:
    """All per-question scores; None where a metric does not apply (aggregates skip None).

    Args:
        item: the question.
        hits: the deep retrieved list (RetrievedChunk, best first) for the retrieval metrics.
        source_chunks: the chunks shown as sources [1..n] (the top-k).
        answer: the pipeline's Answer, or None in retrieval-only runs.
        ks: recall/hit cut-offs.
        withheld: the gold docs were withheld from retrieval (``--unanswerable``).
    """
    gold = set(item.gold_doc_ids)
    expect_abstain = withheld or item.is_unanswerable
    answerable = not expect_abstain
    s: dict[str, float | None] = {}
    docs, doc_scores = dedupe_docs([h.chunk.doc_id for h in hits], [h.score for h in hits])
    for key, value in retrieval_scores(docs, gold, ks, doc_scores).items():
        s[key] = None if withheld else value  # the gold docs could not be found: no retrieval score
    gold_shown = any(c.doc_id in gold for c in source_chunks)
    s["gold_in_sources"] = None if withheld else float(gold_shown)
    # Could the model have answered? (Yes/no decisions are not strings to find.)
    text_scorable = answerable and not item.is_yes_no
    in_context = answer_in_text(item.answers, "\n".join(c.text for c in source_chunks), item.answer_spans)
    s["answer_in_context"] = float(in_context) if text_scorable else None
    for key in ("em", "f1", "abstained", "abstained_answerable", "false_abstention", "abstain_gold_shown",
                "abstain_gold_not_shown", "abstention_accuracy", "citation_precision", "citation_valid",
                "unsupported", "unsupported_claims", "recited", "guard_withheld", "hit_token_cap",
                "repetition_stopped"):
        s[key] = None
    if answer is None:
        return s
    # How generation ended (rag_app.pipeline.finished): a reply at the token cap was cut mid-thought,
    # one the repetition guard stopped was looping; None without generation or when not known.
    finish = None if answer.skipped_generation else getattr(answer, "finish", None)
    if finish is not None:
        s["hit_token_cap"] = float(finish == "length")
        s["repetition_stopped"] = float(finish == "loop")
    reply = strip_citations(split_quote(answer.text)[1])  # a quoted supporting sentence is not the answer
    abstained = float(bool(answer.abstained))
    s["abstained"] = abstained
    # What rag_app.guard did: shown to users as a warning or a withheld reply, so counted here too.
    s["unsupported"] = None if answer.abstained else float(answer.unsupported)
    # rag_app.support: a claim whose numbers or names no shown source holds; a citation it moved.
    s["unsupported_claims"] = None if answer.abstained else float(bool(getattr(answer, "unsupported_claims", ())))
    s["recited"] = None if answer.abstained else float(bool(getattr(answer, "recited", ())))
    s["guard_withheld"] = float(bool(answer.withheld_for))
    if answerable:
        if item.is_yes_no:
            s["em"] = s["f1"] = yes_no_score(reply, item.answers)
        else:
            s["em"] = exact_match(reply, item.answers)
            s["f1"] = token_f1(reply, item.answers)
        s["abstained_answerable"] = abstained
        could_answer = in_context if text_scorable else gold_shown
        s["false_abstention"] = float(bool(abstained) and could_answer)
        s["abstain_gold_shown" if gold_shown else "abstain_gold_not_shown"] = abstained
    else:
        s["abstention_accuracy"] = abstained
    cited = [*answer.citations, *answer.invalid_citations]
    supporting = {
        src.number for src in answer.sources
        if src.chunk.doc_id in gold
        or (answerable and not item.is_yes_no and answer_in_text(item.answers, src.text, item.answer_spans))
    }
    s["citation_precision"] = citation_precision(cited, supporting)
    if not answer.skipped_generation:
        s["citation_valid"] = citation_valid(cited, len(answer.sources))
    return s


# ---------------------------------------------------------------- aggregation


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the non-None values, None when there are none (a metric that does not apply)."""
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """Linear-interpolated percentile ``q`` in [0, 100] of the non-None values (numpy's default method)."""
    vals = sorted(float(v) for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


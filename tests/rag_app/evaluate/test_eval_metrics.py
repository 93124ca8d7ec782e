"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from rag_app.evaluate import metrics as m
from rag_app.prompts import strip_citations


def test_dedupe_docs_keeps_first_chunk_rank_and_score():
    docs, scores = m.dedupe_docs(["a", "b", "a", "c", "b"], [0.9, 0.8, 0.7, 0.6, 0.5])
    assert docs == ["a", "b", "c"]
    assert scores == [0.9, 0.8, 0.6]


def test_recall_and_hit_at_k_over_two_gold_docs():
    ranked = ["x", "g1", "y", "z", "g2"]
    gold = {"g1", "g2"}
    assert m.recall_at_k(ranked, gold, 1) == 0.0
    assert m.recall_at_k(ranked, gold, 3) == 0.5
    assert m.recall_at_k(ranked, gold, 5) == 1.0
    assert m.hit_at_k(ranked, gold, 1) == 0.0
    assert m.hit_at_k(ranked, gold, 2) == 1.0


def test_recall_needs_gold():
    with pytest.raises(ValueError):
        m.recall_at_k(["a"], set(), 1)


def test_mrr_uses_first_gold_within_cutoff():
    assert m.mrr_at_k(["x", "y", "g"], {"g"}, 10) == pytest.approx(1 / 3)
    assert m.mrr_at_k(["g", "x"], {"g"}, 10) == 1.0
    ranked = [f"d{i}" for i in range(10)] + ["g"]  # gold at rank 11
    assert m.mrr_at_k(ranked, {"g"}, 10) == 0.0


def test_ndcg_without_ties_hand_computed():
    # gold at ranks 2 and 4 of 2 gold: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    got = m.ndcg_at_k(["x", "g1", "y", "g2"], {"g1", "g2"}, 10)
    want = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert got == pytest.approx(want)
    assert m.ndcg_at_k(["g1", "g2", "x"], {"g1", "g2"}, 10) == pytest.approx(1.0)
    assert m.ndcg_at_k(["x", "y"], {"g"}, 10) == 0.0


def test_ndcg_ties_share_the_mean_discount():
    ranked = ["x", "g", "y"]
    # g and y tie at ranks 2-3: expected DCG over both orders
    got = m.ndcg_at_k(ranked, {"g"}, 10, scores=[0.9, 0.5, 0.5])
    assert got == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    # the order inside a tie group does not matter
    assert m.ndcg_at_k(["x", "y", "g"], {"g"}, 10, scores=[0.9, 0.5, 0.5]) == pytest.approx(got)
    # without scores the given order is used
    assert m.ndcg_at_k(ranked, {"g"}, 10) == pytest.approx(1 / math.log2(3))


def test_ndcg_tie_group_straddling_the_cutoff():
    # all three tie; gold is one of them; k=2 keeps two of the three positions
    got = m.ndcg_at_k(["g", "a", "b"], {"g"}, 2, scores=[1.0, 1.0, 1.0])
    assert got == pytest.approx((1 / 3) * (1 + 1 / math.log2(3)))


def test_tie_groups_are_runs_of_equal_neighbours():
    assert m.tie_groups([3.0, 2.0, 2.0, 1.0, 2.0]) == [(0, 1), (1, 3), (3, 4), (4, 5)]
    assert m.tie_groups([]) == []


def test_retrieval_scores_keys():
    s = m.retrieval_scores(["g", "x"], {"g"}, (1, 5))
    assert set(s) == {"recall@1", "recall@5", "hit@1", "hit@5", "mrr@10", "ndcg@10"}
    assert s["mrr@10"] == 1.0 and s["ndcg@10"] == 1.0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an   apple, a PEAR and the fig.", "apple pear and fig"),
        ("Theory of a thing", "theory of thing"),  # 'the' inside a word stays
        ("1,000", "1000"),
        ("Miller–Rabin «test»", "millerrabin test"),  # Unicode dashes and quotes are punctuation too
    ],
)
def test_normalize_answer_squad_style(text, want):
    assert m.normalize_answer(text) == want


def test_exact_match_and_f1_best_over_answers():
    assert m.exact_match("The Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert m.exact_match("Denver", ["Denver Broncos"]) == 0.0
    # pred "denver broncos won" vs "broncos": p=1/3 r=1 -> f1=0.5; vs "denver broncos": p=2/3 r=1 -> 0.8
    assert m.token_f1("Denver Broncos won", ["Broncos", "Denver Broncos"]) == pytest.approx(0.8)
    assert m.token_f1("nothing here", ["Broncos"]) == 0.0


def test_f1_on_reply_with_citations_stripped():
    reply = "The Denver Broncos [1][2]"
    assert m.exact_match(strip_citations(reply), ["Denver Broncos"]) == 1.0
    assert m.exact_match(reply, ["Denver Broncos"]) == 0.0  # "12" would be a token otherwise


def test_a_quoted_reply_is_scored_on_its_answer_line():
    from types import SimpleNamespace

    from rag_app.evaluate.dataset import QAItem

    item = QAItem("q1", "How many points?", ("308",), ("d1",))
    chunk = SimpleNamespace(doc_id="d1", text="They gave up 308 points in all.")
    hit = SimpleNamespace(chunk=chunk, score=0.9)
    source = SimpleNamespace(number=1, chunk=chunk, text=chunk.text)
    answer = SimpleNamespace(text='"They gave up 308 points in all." [1]\n308 [1]', abstained=False, citations=[1],
                             invalid_citations=[], sources=[source], skipped_generation=False,
                             unsupported=False, withheld_for=[])
    s = m.score_question(item, [hit], [chunk], answer, [1], withheld=False)
    assert s["em"] == 1.0 and s["f1"] == 1.0 and s["citation_precision"] == 1.0
    answer.text = "They gave up 308 points in all. [1]"  # the same words unquoted are a long answer
    assert m.score_question(item, [hit], [chunk], answer, [1], withheld=False)["em"] == 0.0


@pytest.mark.parametrize("reply, withheld_for, unsupported, guarded", [
    ("308 [1]", [], 0.0, 0.0),
    ("308", [], 1.0, 0.0),
    ("308 [4]", [], 1.0, 0.0),
    ("Answer withheld: it followed an instruction written inside source 1.", [1], 0.0, 1.0),
])
def test_uncited_and_withheld_answers_are_counted(reply, withheld_for, unsupported, guarded):
    from rag_app.evaluate.dataset import QAItem
    from rag_app.pipeline import Answer, Source
    from rag_app.prompts import parse_citations
    from rag_app.store import Chunk

    chunk = Chunk(1, "They gave up 308 points in all.", "d1.txt", "d1")
    cited = [] if withheld_for else parse_citations(reply)
    answer = Answer("How many points?", reply, [Source(1, chunk, 0.9, 0.9)], [n for n in cited if n == 1],
                    [n for n in cited if n != 1], abstained=False, skipped_generation=False, withheld_for=withheld_for)
    hit = type("Hit", (), {"chunk": chunk, "score": 0.9})()
    s = m.score_question(QAItem("q1", "How many points?", ("308",), ("d1",)), [hit], [chunk], answer, [1], withheld=False)
    assert (s["unsupported"], s["guard_withheld"]) == (unsupported, guarded)


def test_yes_no_scored_by_first_word():
    assert m.first_word("Yes, because the study shows it [1]") == "yes"
    assert m.first_word("No.") == "no"
    assert m.first_word("Maybe") == "maybe"
    assert m.first_word("It is yes") is None
    assert m.yes_no_score("Yes, it does [2]", ["yes"]) == 1.0
    assert m.yes_no_score("No, it does not", ["yes"]) == 0.0
    assert m.yes_no_score("I don't know", ["no"]) == 0.0


def test_answer_in_text_whole_words_and_multi_span():
    assert m.answer_in_text(["308"], "The Panthers gave up just 308 points.")
    assert not m.answer_in_text(["308"], "In 1308 nothing happened.")
    assert m.answer_in_text(["the Broncos"], "Broncos, of Denver")
    assert m.answer_in_text(["a, b"], "x b y a", all_spans=["a", "b"]) is False  # 'a' is an article, removed
    assert m.answer_in_text(["cat, dog"], "the dog chased a cat", all_spans=["cat", "dog"])
    assert not m.answer_in_text(["cat, dog"], "the dog slept", all_spans=["cat", "dog"])


def test_citation_precision_and_validity():
    # cites 1 (supports), 2 (does not), 5 (missing source)
    assert m.citation_precision([1, 2, 5], {1, 3}) == pytest.approx(1 / 3)
    assert m.citation_precision([], {1}) is None
    assert m.citation_valid([1, 2], 3) == 1.0
    assert m.citation_valid([1, 4], 3) == 0.0
    assert m.citation_valid([], 0) == 1.0


def test_mean_and_percentile_skip_none():
    assert m.mean([1.0, None, 0.0]) == 0.5
    assert m.mean([None]) is None
    assert m.percentile([10, 20, 30, 40, None], 50) == 25.0
    assert m.percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert m.percentile([], 50) is None

"""The repetition guard (#19, #20): loops found where they start, normal answers left alone."""

from __future__ import annotations

import pytest

from rag_app.repetition import MAX_MARKERS, MIN_TOKENS, Reply, RepetitionGuard, find_loop, token_pieces, without_loop


@pytest.fixture(scope="module")
def tok(model_cache_dir):
    from tiny_models import smollm_tokenizer

    return smollm_tokenizer(model_cache_dir)


@pytest.fixture(scope="module")
def loop_in(tok):
    """``loop_in(text)``: (the Loop the guard finds in ``text`` tokenized by SmolLM2, the text it keeps)."""
    piece = token_pieces(tok)

    def find(text: str, **limits: int):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        loop = find_loop(ids, piece, **limits)
        kept = tok.decode(ids[: loop.start]) + piece(ids[loop.start])[: loop.offset] if loop else text
        return loop, kept

    return find


def refs(first: int, last: int, shape: str = "[{}]") -> str:
    return " ".join(shape.format(n) for n in range(first, last + 1))


# ---------------------------------------------------------------- loops, and where they are cut


@pytest.mark.parametrize("reply, kept", [
    ("TMV " + refs(30, 59), "TMV "),  # the reply
    ("The answer to this question is: [2] " + refs(20, 40, "({})"), "The answer to this question is: [2] "),  # measured, base
    ("It was discovered first " + refs(30, 45, "({})") + ".", "It was discovered first "),
    ("Rod-shaped [1], " + ", ".join(f"[{n}]" for n in range(45, 60)), "Rod-shaped "),  # [1] is in the run: cut too
    ("Seeds [14][15][16][17][18][19][20][21]", "Seeds "),
    ("See [3-5] [6, 7] [8] [9, 10, 11]", "See "),  # ranges and lists count each number
])
def test_a_run_of_reference_numbers_is_cut_where_it_starts(loop_in, reply, kept):
    loop, text = loop_in(reply)
    assert loop is not None and loop.reason == "markers"
    assert text == kept


def test_the_marker_run_stops_at_the_number_past_the_limit(loop_in, tok):
    loop, _ = loop_in("TMV " + refs(30, 59))
    seven = tok("TMV " + refs(30, 36), add_special_tokens=False)["input_ids"]
    assert MAX_MARKERS == 6 and loop.tokens == len(seven) - 2  # at the 7th number's first digit, not 30 markers later


@pytest.mark.parametrize("reply, kept", [
    ("The capital is Paris [1]. " * 6, "The capital is Paris [1]."),  # a sentence: the first copy stays
    ("Paris is the capital. It is large. " + "It is large. " * 8, "Paris is the capital. It is large."),
    ("The answer is " + "the end " * 12, "The answer is the end"),  # a 2-token phrase
    ("The answer is" + " yes" * 30, "The answer is yes"),  # one token
    ("The answer to the question is:\n\n" * 4, "The answer to the question is:"),  # measured, base on llama.cpp
    ("Steps: mix the flour with water, then " + "mix the flour with water, then " * 4, "Steps: mix the flour with water, then"),
])
def test_a_repeated_span_is_cut_after_its_first_copy(loop_in, reply, kept):
    loop, text = loop_in(reply)
    assert loop is not None and loop.reason == "repeat"
    assert text.rstrip() == kept


BIBLIOGRAPHY = (  # measured: the base model on transformers, asked which references discuss resistant cultivars
    "1. Ivanovsky, A.V. (1892). The discovery of the virus that causes mosaic disease. Journal of the Society of William "
    "Beijerinck. 30.\n2. Stanley, A. (1935). The structure of the virus that causes mosaic disease. Science. 14.\n"
    + "".join(f"{n}. Beijerinck, A.V. (1935). The structure of the virus that causes mosaic disease. Science. 14.\n"
              for n in range(3, 9))
)


def test_list_items_the_same_but_for_their_numbers_are_cut_after_the_first(loop_in):
    loop, text = loop_in(BIBLIOGRAPHY)
    assert loop is not None and loop.reason == "numbered repeat"
    assert text == BIBLIOGRAPHY.split("4. ")[0]  # items 1-3 kept
    assert loop_in(BIBLIOGRAPHY.split("5. ")[0]) == (None, BIBLIOGRAPHY.split("5. ")[0])  # two alike items: not yet


def test_a_repeat_is_caught_once_min_tokens_repeat(loop_in, tok):
    sentence = "Tesla died in 1943 [1]. "
    n = len(tok(sentence, add_special_tokens=False)["input_ids"])
    loop, _ = loop_in(sentence * 6)
    assert n < MIN_TOKENS and loop.tokens <= n + MIN_TOKENS + 1  # a short span: stopped 16 tokens into its repeat
    long = "The Rhine flows from the Swiss Alps through Germany and the Netherlands into the North Sea [2]. "
    m = len(tok(long, add_special_tokens=False)["input_ids"])
    loop, _ = loop_in(long * 3)
    assert m > MIN_TOKENS and loop.tokens <= 2 * m + 1  # a long one: once it came round whole


# ---------------------------------------------------------------- answers that must not trip


NORMAL = [
    "Yes [1].",
    "No.",
    "I don't know from the provided documents.",
    "Paris [1] [2].",
    "Paris [1][2][3][4][5].",  # every one of five sources
    "1. Paris [1]\n2. Lyon [2]\n3. Nice [3]",
    "- wine [1]\n- cheese [1]\n- bread [1]",
    "| year | 2019 | 2020 | 2021 | 2022 | 2023 |\n|---|---|---|---|---|---|\n| cases | 12 | 0 | 0 | 0 | 4 |",
    "The values were 0, 0, 0 and 1 (see Table 2) [1].",
    "Tesla (1856-1943) was an inventor [1]. He was born in Smiljan (1856) [1].",
    "Mix (1) flour, (2) water, (3) salt and (4) yeast, then bake [2].",
    "No, no, no: the museum is closed on Mondays [1].",
    "It is very very small [3].",
    '"Tesla died on 7 January 1943 in New York." [1]\nTesla died on 7 January 1943 in New York. [1]',  # quote, then answer
    "The TMV particle is rod-shaped, about 300 nm long and 18 nm wide, and is made of 2130 copies of one coat protein "
    "wrapped around a single strand of RNA [1]. It was the first virus to be discovered, by Ivanovsky in 1892 and "
    "Beijerinck in 1898 [1] [2].",
    "[1] (tmv.txt) The first virus discovered was TMV (tobacco mosaic virus) [1].",
    "In 2019 there were 12 cases [1]. In 2020 there were 15 cases [1]. In 2021 there were 9 cases [1]. "
    "In 2022 there were 11 cases [1]. In 2023 there were 4 cases [1].",  # one template, numbers changing
    "| 3 | 1 | 4 | 1 | 5 | 9 | 2 | 6 | 5 | 3 | 5 | 8 | 9 | 7 | 9 | 3 | 2 | 3 | 8 | 4 | 6 | 2 | 6 | 4 |",  # no words
    "1. Ivanovsky (1892) [1]\n2. Beijerinck (1898) [1]\n3. Stanley (1935) [2]\n4. Franklin (1955) [2]",
]


@pytest.mark.parametrize("reply", NORMAL)
def test_normal_answers_are_not_loops(loop_in, reply):
    assert loop_in(reply) == (None, reply)


# ---------------------------------------------------------------- the guard's bookkeeping


def test_the_guard_stops_reading_once_it_found_a_loop(tok):
    piece = token_pieces(tok)
    ids = tok("no " * 40, add_special_tokens=False)["input_ids"]
    guard = RepetitionGuard(piece)
    loop = guard.extend(ids)
    assert loop is not None and len(guard.ids) == loop.tokens < len(ids)
    assert guard.feed(ids[0]) is loop and len(guard.ids) == loop.tokens
    decode = tok.decode
    assert guard.repeated_chars(decode) == len(decode(guard.ids)) - len(decode(ids[: loop.start]))


def test_a_reply_reports_the_tail_its_generator_returned():
    def pieces():
        yield "Paris [1]."
        yield " (2) (3)"
        return len(" (2) (3)")

    reply = Reply(pieces())
    text = "".join(reply)
    assert reply.repeated_tail == 8 and without_loop(text, reply) == "Paris [1]."
    assert without_loop("Paris", iter(["Paris"])) == "Paris"  # a generator that reports nothing: unchanged

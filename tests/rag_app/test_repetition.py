"""The repetition guard (#19, #20): loops found where they start, normal answers left alone, both backends stop."""

from __future__ import annotations

import pytest

from rag_app.config import GenerateConfig
from rag_app.generation import HFGenerator, load_generator
from rag_app.prompts import build_messages
from rag_app.repetition import (
    MAX_MARKERS, MIN_TOKENS, Ending, Reply, RepetitionGuard, find_loop, finish_reason, token_pieces, without_loop,
)
from rag_app.store import Chunk


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
    assert reply.finish is None  # a bare count says nothing of why it ended


def test_a_reply_reports_why_its_generator_ended():
    def pieces():
        yield "Paris [1]. Paris [1]."
        return Ending(repeated_tail=len(" Paris [1]."), finish="loop")

    reply = Reply(pieces())
    assert without_loop("".join(reply), reply) == "Paris [1]." and reply.finish == "loop"


def test_finish_reason_tells_the_token_cap_from_a_stop_token_and_a_loop():
    stop = {0}
    assert finish_reason([5, 6, 7], 3, stop, None) == "length"  # ran out of tokens
    assert finish_reason([5, 6, 0], 3, stop, None) == "stop"  # its last token, the cap-th, ended the turn
    assert finish_reason([5, 0], 3, stop, None) == "stop"
    guard = RepetitionGuard(lambda token: f" w{token}")
    assert guard.extend([1, 2] * 20) is not None
    assert finish_reason(guard.ids, len(guard.ids), stop, guard) == "loop"  # the guard's stop wins, even at the cap
    assert finish_reason([1, 2], 2, stop, RepetitionGuard(lambda token: "w")) == "length"  # a guard that found none


# ---------------------------------------------------------------- both backends stop a reply that loops


SENTENCE = "The capital of France is Paris [1]. "
MARKER_REPLY = "Viruses spread through insects [2] " + refs(20, 90, "({})")
MESSAGES = build_messages("What is the capital of France?", [Chunk(1, "Paris is the capital of France.", "f.txt", "f")])


def script_ids(tok, reply: str) -> list[int]:
    return tok(reply, add_special_tokens=False)["input_ids"]


@pytest.fixture
def tiny_gen(tiny_smollm, tmp_path):
    gen = load_generator(GenerateConfig(model=str(tiny_smollm), adapter="none", dtype="float32", context_window=1024), tmp_path)
    assert isinstance(gen, HFGenerator) and gen.stop_loops
    return gen


def force_reply(gen: HFGenerator, monkeypatch, reply: str) -> list[int]:
    """Make the tiny model's ``generate`` write ``reply`` token by token (then end the turn); returns the tokens it generated, per call."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    script = [*script_ids(gen.tokenizer, reply), gen.stop_ids[0]]
    real, generated = gen.model.generate, []

    def generate(**kwargs):
        prompt = kwargs["input_ids"].shape[1]

        class Script(LogitsProcessor):
            def __call__(self, input_ids, scores):
                forced = torch.full_like(scores, -torch.inf)
                forced[:, script[min(input_ids.shape[1] - prompt, len(script) - 1)]] = 0.0
                return forced

        out = real(**kwargs | {"logits_processor": LogitsProcessorList([*kwargs.get("logits_processor", []), Script()])})
        generated.append(out.shape[1] - prompt)
        return out

    monkeypatch.setattr(gen.model, "generate", generate)
    return generated


@pytest.mark.parametrize("reply, kept", [(SENTENCE * 20, SENTENCE.strip()), (MARKER_REPLY, "Viruses spread through insects [2]")])
def test_the_transformers_backend_stops_a_looping_reply(tiny_gen, monkeypatch, reply, kept):
    generated = force_reply(tiny_gen, monkeypatch, reply)
    assert tiny_gen.generate(MESSAGES, max_new_tokens=300) == kept
    pieces = tiny_gen.stream(MESSAGES, max_new_tokens=300)
    streamed = "".join(pieces)
    assert without_loop(streamed, pieces).strip() == kept and streamed.startswith(kept)
    assert generated[0] == generated[1] < 40 < len(script_ids(tiny_gen.tokenizer, reply))  # stopped, no compute wasted

    tiny_gen.stop_loops = False  # the same reply without the guard runs on to the cap
    assert reply.startswith(tiny_gen.generate(MESSAGES, max_new_tokens=120)) and generated[2] == 120


@pytest.mark.parametrize("reply, cap, stop_loops, finish", [
    (SENTENCE, lambda n: n + 1, True, "stop"),  # the end-of-turn id is the cap-th token: it ended on its own
    (SENTENCE, lambda n: n, True, "length"),  # one token short of ending the turn
    (SENTENCE * 20, lambda n: 300, True, "loop"),
    (SENTENCE * 20, lambda n: 3 * n, False, "length"),  # without the guard it runs to the cap
])
def test_the_transformers_backend_says_how_a_reply_ended(tiny_gen, monkeypatch, reply, cap, stop_loops, finish):
    force_reply(tiny_gen, monkeypatch, reply)
    tiny_gen.stop_loops = stop_loops
    pieces = tiny_gen.stream(MESSAGES, max_new_tokens=cap(len(script_ids(tiny_gen.tokenizer, SENTENCE))))
    "".join(pieces)
    assert pieces.finish == finish


def test_a_random_tiny_model_that_loops_stops_early(tiny_gen):
    """No forcing: greedy decoding of a random 2-layer model repeats one token."""
    pieces = tiny_gen.stream(MESSAGES, max_new_tokens=200)
    streamed = "".join(pieces)
    assert pieces.repeated_tail > 0 and tiny_gen.count_text_tokens(streamed) < 40


def test_the_answer_text_has_no_loop_and_counts_what_was_generated(tiny_gen, monkeypatch, tmp_path, fake_embedder):
    from helpers import build_index

    from rag_app.config import load_settings
    from rag_app.pipeline import Answer, RagPipeline

    force_reply(tiny_gen, monkeypatch, SENTENCE * 20)
    store = build_index(tmp_path / "idx", fake_embedder, {"france": ["Paris is the capital of France."]})
    settings = load_settings(index=tmp_path / "idx", retrieve={"min_score": 0.0}, generate={"max_new_tokens": 300})
    items = list(RagPipeline(settings, store=store, embedder=fake_embedder, generator=tiny_gen).stream("What is the capital of France?"))
    answer = items[-1]
    assert isinstance(answer, Answer) and answer.text == answer.reply == SENTENCE.strip() and answer.citations == [1]
    assert "".join(items[:-1]).endswith("\n\n" + answer.text)  # the loop already shown is followed by the clean answer
    n = len(script_ids(tiny_gen.tokenizer, SENTENCE))
    assert n + MIN_TOKENS <= answer.timings.tokens <= n + MIN_TOKENS + 2  # what was generated, loop included


@pytest.fixture(scope="module")
def served(model_cache_dir):
    """The bundled model on llama.cpp, no adapter, as backend=llamacpp serves it."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is the optional extra: pip install '.[llamacpp]'")
    return load_generator(GenerateConfig(backend="llamacpp", adapter="none", context_window=1024, threads=1), model_cache_dir)


@pytest.mark.slow
@pytest.mark.parametrize("reply, kept", [(SENTENCE * 20, SENTENCE.strip()), (MARKER_REPLY, "Viruses spread through insects [2]")])
def test_the_llamacpp_backend_stops_a_looping_reply(served, monkeypatch, reply, kept):
    import numpy as np

    script = script_ids(served.tokenizer, reply)
    prompt = len(served.encode(MESSAGES))
    asked: list[int] = []

    def force(ids, logits):  # write the script, one token a step
        asked.append(len(ids) - prompt)
        forced = np.full_like(logits, -np.inf)
        forced[script[min(len(ids) - prompt, len(script) - 1)]] = 0.0
        return forced

    monkeypatch.setattr(served, "_stop_processors", lambda: [force])
    pieces = served.stream(MESSAGES, max_new_tokens=300)
    streamed = "".join(pieces)
    assert without_loop(streamed, pieces).strip() == kept and streamed.startswith(kept) and pieces.finish == "loop"
    assert served.generate(MESSAGES, max_new_tokens=300) == kept
    assert max(asked) < 40 < len(script)  # stopped where the loop was found
    monkeypatch.setattr(served, "stop_loops", False)
    asked.clear()
    assert reply.startswith(served.generate(MESSAGES, max_new_tokens=120)) and max(asked) == 119
    capped = served.stream(MESSAGES, max_new_tokens=120)
    "".join(capped)
    assert capped.finish == "length"


# ---------------------------------------------------------------- the bundled model, no adapter, a paper's reference numbers


PAPER = [  # a review article's paragraphs, dense with its own reference numbers
    Chunk(1, "Tobacco mosaic virus (TMV) was the first virus to be discovered [30] [31] [32]. Ivanovsky showed in "
             "1892 that the agent passed through porcelain filters [33], [34], and Beijerinck called it a contagium vivum "
             "fluidum [35-37]. Stanley crystallised it in 1935 [38] [39] [40] [41], and its rod shape was seen under the "
             "first electron microscopes [42] [43] [44].", "review.pdf", "review"),
    Chunk(2, "TMV particles are rigid rods about 300 nm long and 18 nm wide [45] [46]. Each holds one strand of RNA of "
             "6,395 nucleotides [47] [48] [49] wrapped in 2,130 copies of a single coat protein [50] [51] [52] [53]. The "
             "structure was solved by fibre diffraction [54] [55] [56] [57] [58] [59].", "review.pdf", "review", 1),
    Chunk(3, f"Plant viruses spread through insect vectors {refs(1, 8)}, through wounds made by tools and hands "
             f"{refs(9, 13)}, and in seed and pollen {refs(14, 19)}. TMV itself has no insect vector [20] [21] and is "
             "carried mechanically [22], [23], [24].", "review.pdf", "review", 2),
    Chunk(4, f"Control relies on resistant cultivars carrying the N gene {refs(25, 29)}, on hygiene {refs(60, 62)} and on "
             f"cross-protection with mild strains {refs(63, 67)}. Losses in tomato reach 20% {refs(68, 70)}.",
          "review.pdf", "review", 3),
]


@pytest.fixture(scope="module")
def base_hf(model_cache_dir):
    return load_generator(GenerateConfig(backend="hf", adapter="none"), model_cache_dir)


@pytest.mark.slow
@pytest.mark.parametrize("backend, question, reason", [
    ("llamacpp", "How is TMV controlled?", "repeat"),  # both backends loop on it (bench/repetition.py)
    ("hf", "How is TMV controlled?", "repeat"),
    ("llamacpp", "How do plant viruses spread?", "markers"),  # "The answer is: [1] (30) (31) (32) ..."
])
def test_the_bundled_model_looping_over_a_paper_is_stopped(backend, question, reason, request, loop_in):
    """#19/#20: without the guard the base model loops over a paper's paragraphs to the token cap; with it, it stops."""
    gen = request.getfixturevalue("served" if backend == "llamacpp" else "base_hf")
    messages = build_messages(question, PAPER)
    gen.stop_loops = False
    try:
        free = gen.stream(messages, max_new_tokens=160)
        unguarded = "".join(free).strip()
    finally:
        gen.stop_loops = True
    if backend == "llamacpp" and free.finish == "stop" and not free.repeated_tail and loop_in(unguarded)[0] is None:
        # llama.cpp's greedy text differs by CPU (kernels): here the model ended its turn instead of looping.
        pytest.skip(f"on this CPU llama.cpp's base model does not loop on {question!r}: {unguarded[:60]!r}")
    assert gen.count_text_tokens(unguarded) >= 150  # ran to the cap
    found = loop_in(unguarded)[0]
    # The kind of loop ("repeat" or "markers") also varies with the CPU on llama.cpp; either must be stopped.
    assert found is not None and (found.reason == reason or backend == "llamacpp")
    pieces = gen.stream(messages, max_new_tokens=160)
    streamed = "".join(pieces)
    kept = without_loop(streamed, pieces).strip()
    assert gen.count_text_tokens(streamed) < 80 and pieces.repeated_tail > 0
    assert kept and unguarded.startswith(kept) and loop_in(kept) == (None, kept)

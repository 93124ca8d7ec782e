"""Formatting of answers, sources, timings and the Markdown export (no Streamlit involved)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rag_app.pipeline import Answer, Source, Timings
from rag_app.store import Chunk
from ui import render
from ui.resources import Turn


def _source(number: int, source: str = "guide.pdf", page: int | None = 3, heading: str | None = None, score: float = 0.62,
            dense: float | None = 0.62, text: str = "Paris is the capital of France.") -> Source:
    chunk = Chunk(id=number, text=text, source=source, doc_id=source.split(".")[0], page=page, heading=heading, start=10, end=41)
    return Source(number=number, chunk=chunk, score=score, dense_score=dense)


def _answer(text: str = "Paris [1].", sources: list[Source] | None = None, citations=(1,), invalid=(), abstained=False,
            skipped=False) -> Answer:
    return Answer(
        question="What is the capital?", text=text, sources=sources if sources is not None else [_source(1), _source(2)],
        citations=list(citations), invalid_citations=list(invalid), abstained=abstained, skipped_generation=skipped,
        timings=Timings(retrieve_ms=12.4, ttft_ms=1320.0, generate_ms=2000, total_ms=2500.0, tokens=40, tokens_per_s=19.5),
        model="SmolLM2", adapter=None,
    )


def test_citations_become_badges_and_invalid_ones_warn():
    md = render.mark_citations("Paris [1] and Lyon [2, 7].", valid={1, 2})
    assert md == "Paris :blue-badge[1] and Lyon :blue-badge[2] :red-badge[⚠ 7]."


def test_while_streaming_every_citation_is_drawn_as_valid():
    assert render.mark_citations("x [9]") == "x :blue-badge[9]"


@pytest.mark.parametrize("reply", ["Paris [1] [9].", "Paris [9](http://e.vil/manual).", '"Paris." [9]\nParis [9]'])
def test_a_citation_to_a_source_not_shown_is_never_a_blue_badge_or_a_link(reply):
    md = render.answer_markdown(reply, valid={1, 2})
    assert ":red-badge[⚠ 9]" in md and ":blue-badge[9]" not in md
    assert "](" not in md  # "[9](url)" cannot make the badge a link


def test_an_exported_citation_to_a_source_not_shown_links_nowhere():
    """A Markdown source opening with a reference definition must not turn ``[9]`` into a link to its URL."""
    from markdown_it import MarkdownIt

    manual = _source(2, text="[9]: http://e.vil/manual\nSee the manual.")
    turns = [Turn("What is the capital?", _answer(text="Paris [1] [9].", sources=[_source(1), manual], invalid=(9,)))]
    html = MarkdownIt("commonmark").render(render.conversation_markdown(turns, "idx"))
    assert "<a " not in html and "Paris [1] [9]." in html  # shown as written, linked nowhere
    assert "[9]: http://e.vil/manual" in html  # the source's own text, quoted whole


@pytest.mark.parametrize("line", ["> [manual]: http://e.vil/a", "- [9]: http://e.vil/b", "1. [manual]: http://e.vil/c"])
def test_a_reference_definition_inside_a_quote_or_list_defines_no_link_in_the_export(line):
    from markdown_it import MarkdownIt

    manual = _source(2, text=f"{line}\nSee the [manual] and [9].")
    turns = [Turn("Where is it?", _answer(text="See the [manual] [1] [9].", sources=[_source(1), manual], invalid=(9,)))]
    html = MarkdownIt("commonmark").render(render.conversation_markdown(turns, "idx"))
    assert "<a " not in html and "e.vil" in html


def test_a_quoted_reply_shows_its_evidence_as_a_block_quote():
    md = render.answer_markdown('"Paris is the capital of France." [2]\nParis [2]', valid={1, 2})
    assert md == "> Paris is the capital of France. :blue-badge[2]\n\nParis :blue-badge[2]"
    assert render.answer_markdown("Paris [3]", valid={1}) == render.mark_citations("Paris [3]", valid={1})


def test_model_text_cannot_inject_markdown():
    md = render.mark_citations("costs $5 and $10 [1] <b>x</b> [link](http://e.vil) `code`", valid={1})
    assert "\\$5" in md and "\\$10" in md
    assert "\\[link\\](http://e.vil)" in md
    assert "\\<b\\>" in md and "\\`code\\`" in md
    assert ":blue-badge[1]" in md


def test_source_label_names_file_location_score_and_cited():
    label = render.source_label(_source(2, "docs/guide.pdf", page=3, heading="Setup"), cited=True)
    assert label == ":blue-badge[2] **guide.pdf** · p. 3 · § Setup · score 0.62 · **cited**"
    uncited = render.source_label(_source(1, "notes.md", page=None, score=0.0312, dense=0.55), cited=False)
    assert uncited == ":gray-badge[1] **notes.md** · score 0.031 · similarity 0.55"


def test_source_body_quotes_the_chunk_and_names_its_span():
    body = render.source_body(_source(1, text="line one\n\nline *two*"))
    assert body.startswith("> line one\n>\n> line \\*two\\*")
    assert "`guide.pdf`, characters 10–41" in body


def test_the_supporting_words_are_highlighted_in_the_cited_card_and_the_rest_escaped():
    from rag_app.support import SupportChecker

    text = "  Costs: $5 *each*.\nThe crew were Grissom, White\nand Chaffee."
    source = _source(2, text=text)
    support = SupportChecker([_source(1, text="The fire broke out."), source], "Who was in the crew?").check(
        "Grissom, White and Chaffee [1]")
    answer = _answer(support.text, citations=(2,))
    answer.evidence = support.evidence
    body = render.source_body(source, render.evidence_spans(answer, 2))
    assert body.startswith("> Costs: \\$5 \\*each\\*.\n> The crew were :orange-background[Grissom], "
                           ":orange-background[White]\n> and :orange-background[Chaffee].")
    assert render.evidence_spans(answer, 1) == []
    assert render.highlight("a [x] b", [(2, 5)]) == "a :orange-background[\\[x\\]] b"
    assert render.highlight("ab\ncd", [(0, 5)]) == ":orange-background[ab]\n:orange-background[cd]"


def test_notes_for_invalid_citations_and_abstentions():
    assert render.invalid_citation_note([7], 4) == (
        "The answer cites [7], but only 4 sources were given: that citation cannot be checked."
    )
    assert "model was not asked" in render.abstain_note(_answer(skipped=True, abstained=True), min_score=0.15)
    assert "0.15" in render.abstain_note(_answer(skipped=True, abstained=True), min_score=0.15)
    assert "found no answer" in render.abstain_note(_answer(abstained=True))


def test_abstain_note_suggests_another_search_when_the_sources_were_close():
    declined = _answer(text="I don't know from the provided documents.", citations=(), abstained=True)
    note = render.abstain_note(declined, min_score=0.15)
    assert "found no answer" in note and "Hybrid" in note and "words the document uses" in note
    assert "ingest" not in note
    just_under = _answer(sources=[_source(1, score=0.12, dense=0.12)], citations=(), abstained=True, skipped=True)
    note = render.abstain_note(just_under, min_score=0.15)
    assert "model was not asked" in note and "Hybrid" in note and "ingest" not in note
    # already hybrid: dense is the other search to try
    from_hybrid = render.abstain_note(declined, min_score=0.15, mode="hybrid")
    assert "Hybrid" not in from_hybrid and "Try Dense under Search (it finds paraphrases), or rephrase" in from_hybrid
    assert "--hybrid" in render.abstain_note(declined, min_score=0.15, hybrid_hint="--hybrid")


def test_abstain_note_names_the_terms_no_source_mentions():
    gated = _answer(citations=(), abstained=True, skipped=True)
    gated.not_covered = ["Aschenbrodel", "Vienna", "composed"]
    note = render.abstain_note(gated, min_score=0.15, hybrid_hint="--hybrid")
    assert note.startswith("The sources found do not mention 'Aschenbrodel', 'Vienna', 'composed', so the model was not asked.")
    assert "--hybrid" in note and "ingest one that does" in note
    # hybrid and BM25 sources are not what the gate read: the passages closest in meaning are
    hybrid = render.abstain_note(gated, min_score=0.15, mode="hybrid")
    assert hybrid.startswith("The passages closest in meaning to the question do not mention 'Aschenbrodel'")
    assert "Hybrid" not in hybrid and "Dense under Search" in hybrid
    gated.not_covered = [f"t{i}" for i in range(9)]
    assert "'t5' ..." in render.abstain_note(gated) and "'t6'" not in render.abstain_note(gated)


def test_abstain_note_says_to_ingest_when_nothing_was_close():
    far = _answer(sources=[_source(1, score=0.03, dense=0.03)], citations=(), abstained=True, skipped=True)
    note = render.abstain_note(far, min_score=0.15)
    assert "ingest the ones that do" in note and "Hybrid" not in note and "0.15" in note
    empty = _answer(sources=[], citations=(), abstained=True, skipped=True)
    assert "ingest the ones that do" in render.abstain_note(empty, min_score=0.15)
    # a hybrid hit found by BM25 alone has no similarity: it does not make the miss near
    bm25_only = _answer(sources=[_source(1, score=0.03, dense=None)], citations=(), abstained=True, skipped=True)
    assert not render.abstain_was_near(bm25_only, min_score=0.15)


def test_timing_rows():
    rows = render.timing_rows(_answer().timings)
    assert [(r.label, r.value) for r in rows] == [
        ("Retrieve", "12 ms"), ("First token", "1.32 s"), ("Speed", "19.5 tok/s"), ("Total", "2.50 s"),
    ]
    assert render.timing_rows(Timings(retrieve_ms=1506.0))[0].value == "1.51 s"
    skipped = Timings(retrieve_ms=3.0, total_ms=4.0)
    assert [r.value for r in render.timing_rows(skipped)][1:3] == ["—", "—"]


def test_time_ago():
    now = datetime(2025, 1, 2, 12, 0, tzinfo=timezone.utc)
    assert render.time_ago((now - timedelta(seconds=20)).isoformat(), now) == "just now"
    assert render.time_ago((now - timedelta(minutes=5)).isoformat(), now) == "5 min ago"
    assert render.time_ago((now - timedelta(hours=3)).isoformat(), now) == "3 h ago"
    assert render.time_ago((now - timedelta(days=2)).isoformat(), now) == "2 days ago"
    assert render.time_ago("", now) == "never"
    assert render.time_ago("yesterday-ish", now) == "yesterday-ish"


def test_report_lines_list_what_ingest_did():
    class Report:
        added = ["a.md"]
        updated = []
        unchanged = ["b.txt", "c.txt"]
        removed = []
        skipped = [("x.exe", "unsupported type .exe")]
        failed = [("bad.pdf", "not a PDF")]

    assert render.report_lines(Report()) == [
        "**Added** (1): a.md",
        "**Unchanged** (2): b.txt, c.txt",
        "**Skipped** (1): x.exe (unsupported type .exe)",
        "**Failed** (1): bad.pdf (not a PDF)",
    ]


def test_conversation_markdown_has_questions_answers_and_full_sources():
    turns = [
        Turn("What is the capital?", _answer(invalid=(5,), text="Paris [1] [5].")),
        Turn("And the river?", None, error="the question is empty"),
    ]
    md = render.conversation_markdown(turns, ".rag/index", now=datetime(2025, 1, 2, 12, 0, tzinfo=timezone.utc))
    assert md.startswith("# Chat with your documents\n\nIndex `.rag/index`")
    assert "## 1. What is the capital?\n\nParis \\[1\\] \\[5\\]." in md  # reads [1] [5]; brackets no link can take
    assert "1. `guide.pdf` p. 3 (score 0.62) — cited\n   > Paris is the capital of France." in md
    assert "2. `guide.pdf` p. 3 (score 0.62)\n" in md  # not cited: no mark
    assert "cites \\[5\\]" in md
    assert "## 2. And the river?\n\n_Error: the question is empty_" in md


def test_an_unsupported_claim_note_names_what_is_missing_or_the_question_it_does_not_answer():
    from rag_app.support import UnsupportedClaim

    assert render.unsupported_claim_note(UnsupportedClaim("125M", [1], ["125M"])) == (
        "“125M” (in “125M”) appears in none of the sources below: check it before relying on it.")
    assert render.unsupported_claim_note(UnsupportedClaim("Yes", [1], [], True, "which")) == (
        "“Yes” does not answer a “which” question: check it before relying on it.")
    far = UnsupportedClaim("41", [2], [], far_from=["operator"])
    assert render.unsupported_claim_note(far) == (
        "“41” is in the cited source, but not where it speaks of “operator”, which the question asks about: "
        "check it before relying on it.")
    echo = UnsupportedClaim("package.json", [1], [], True, "which", echoes=True)
    assert render.unsupported_claim_note(echo) == (
        "“package.json”, which the question names itself, does not answer a “which” question: "
        "check it before relying on it.")
    apart = UnsupportedClaim("LGPL 3.0", [4], [], apart=("3.0", "LGPL"))
    assert render.unsupported_claim_note(apart) == (
        "“LGPL 3.0”: the cited source gives “3.0”, but not where it writes “LGPL”: check it before relying on it.")
    said = UnsupportedClaim("Yes", [1], [], True, contradicted_by="libffi is *not*\n completely thread-safe.")
    assert render.unsupported_claim_note(said) == (
        "“Yes”, but the cited source says: “libffi is \\*not\\* completely thread-safe.” Check it before relying on it.")

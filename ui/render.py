"""Pure formatting for the chat page: citations, source cards, timings, the Markdown export.

Nothing here imports Streamlit, so every string the page shows can be
unit-tested. Text that comes from documents or from the model is escaped
before it reaches ``st.markdown``: a stray ``$`` would otherwise start LaTeX
and ``[x](y)`` would become a link the document never had.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from rag_app.prompts import CITATION, split_quote
from rag_app.support import clip

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#$|~{}])")
CURSOR = "▌"
# "[9]: https://..." opening a line, also inside a quote or list item ("> [x]: ...", "- [9]: ...", "1. [x]: ...");
# escaping a bracket that defined nothing changes nothing the reader sees.
_REFERENCE_DEFINITION = re.compile(r"^([ \t>*+\-\d.)]*)\[(?=[^\]]*\]:)", re.M)


def escape_markdown(text: str) -> str:
    """Backslash-escape the characters that Streamlit's Markdown would interpret.

    Keeps line breaks and ordinary punctuation, so prose reads as written.
    """
    return _MD_SPECIAL.sub(r"\\\1", text)


def citation_badge(number: int, valid: bool = True) -> str:
    """The inline marker for ``[n]``: a blue badge, or a red one with a warning sign when no such source exists."""
    return f":blue-badge[{number}]" if valid else f":red-badge[⚠ {number}]"


def mark_citations(text: str, valid: Collection[int] | None = None) -> str:
    """Answer text as Markdown, each ``[n]`` replaced by a badge matching its source card.

    Args:
        text: the model's reply (raw, unescaped).
        valid: source numbers that exist; None while streaming, when every
            citation is shown as valid because the sources are not known yet.

    Returns:
        Markdown safe for ``st.markdown``: the text between citations escaped.
    """
    out: list[str] = []
    last = 0
    for match in CITATION.finditer(text):
        out.append(_after_citation(escape_markdown(text[last : match.start()]), last))
        numbers = [int(part) for part in match.group(1).split(",")]
        out.append(" ".join(citation_badge(n, valid is None or n in valid) for n in numbers))
        last = match.end()
    out.append(_after_citation(escape_markdown(text[last:]), last))
    return "".join(out)


def _after_citation(segment: str, start: int) -> str:
    """Escape a ``(`` right after a citation: ``[9](url)`` must not turn the badge into a link."""
    return "\\" + segment if start and segment.startswith("(") else segment


def literal_citations(text: str) -> str:
    """``[n]`` with its brackets escaped, for Markdown a document's text also goes into (the export).

    Why: a Markdown source may open with a reference definition (``[9]: https://...``);
    quoted in the same document, it would turn every ``[9]`` of the answer, one
    citing a source never shown included, into a link to that URL.
    """
    return CITATION.sub(lambda m: f"\\[{m.group(1)}\\]", text)


def answer_markdown(text: str, valid: Collection[int] | None = None) -> str:
    """The reply as Markdown; a quoted supporting sentence (the adapter's evidence) set apart as a block quote."""
    quote, answer = split_quote(text)
    if quote is None:
        return mark_citations(text, valid)
    quote = re.sub(r'^"(.*)"', r"\1", quote, flags=re.S)  # the block quote replaces the quotation marks
    return f"> {mark_citations(quote, valid)}\n\n{mark_citations(answer.strip(), valid)}"


def format_score(score: float) -> str:
    """Two decimals for cosine and BM25 scores; three for the small RRF scores of hybrid search."""
    return f"{score:.2f}" if abs(score) >= 0.1 else f"{score:.3f}"


def source_where(source: Any) -> str:
    """``p. 3 · § Setup`` (what follows the file name), or empty."""
    chunk = source.chunk
    parts = []
    if chunk.page is not None:
        parts.append(f"p. {chunk.page}")
    if chunk.heading:
        parts.append(f"§ {chunk.heading}")
    return " · ".join(parts)


def source_label(source: Any, cited: bool) -> str:
    """The one-line header of a source card (an expander label).

    Its number wears the same badge as the citation in the answer (blue when
    cited, gray when not), so the eye matches ``[2]`` in the text to its card:
    ``:blue-badge[2] **report.pdf** · p. 3 · score 0.62 · **cited**``.
    """
    name = PurePosixPath(source.chunk.source).name
    badge = citation_badge(source.number) if cited else f":gray-badge[{source.number}]"
    parts = [f"{badge} **{escape_markdown(name)}**"]
    where = source_where(source)
    if where:
        parts.append(escape_markdown(where))
    parts.append(f"score {format_score(source.score)}")
    if source.dense_score is not None and abs(source.dense_score - source.score) > 1e-6:
        parts.append(f"similarity {source.dense_score:.2f}")
    if cited:
        parts.append("**cited**")
    return " · ".join(parts)


def highlight(text: str, spans: Sequence[tuple[int, int]] = ()) -> str:
    """``text`` escaped, the characters in ``spans`` (offsets into it) on an orange background.

    A highlight stops at a line end and starts again on the next line, so it
    never spans the ``> `` that quotes each line.
    """
    marked = [False] * len(text)
    for start, end in spans:
        for i in range(max(0, start), min(len(text), end)):
            marked[i] = text[i] != "\n"
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and marked[j] == marked[i]:
            j += 1
        piece = escape_markdown(text[i:j])
        out.append(f":orange-background[{piece}]" if marked[i] and piece.strip() else piece)
        i = j
    return "".join(out)


def evidence_spans(answer: Any, number: int) -> list[tuple[int, int]]:
    """Where the answer's key content is in source ``number`` (rag_app.support), as offsets into its text."""
    return [span for ev in getattr(answer, "evidence", ()) if ev.citation == number for span in ev.highlights]


def source_body(source: Any, highlights: Sequence[tuple[int, int]] = ()) -> str:
    """The chunk text as a Markdown quote, the answer's supporting words highlighted, its full path and span under it.

    Args:
        source: the numbered source.
        highlights: character spans of ``source.text`` to highlight (:func:`evidence_spans`).
    """
    chunk = source.chunk
    text = chunk.text
    lead = len(text) - len(text.lstrip())
    body = highlight(text.strip(), [(a - lead, b - lead) for a, b in highlights])
    quoted = "\n".join("> " + line if line.strip() else ">" for line in body.splitlines())
    origin = f"`{chunk.source}`, characters {chunk.start}–{chunk.end}"
    return f"{quoted}\n\n:small[:gray[{origin}]]"


def unsupported_claim_note(claim: Any) -> str:
    """Under an answer one of whose claims has content no source holds, or that its cited source contradicts
    or gives apart from what was asked."""
    if getattr(claim, "far_from", None):
        asked = ", ".join(f"“{escape_markdown(k)}”" for k in claim.far_from)
        return (f"“{escape_markdown(claim.claim)}” is in the cited source, but not where it speaks of {asked}, "
                "which the question asks about: check it before relying on it.")
    if getattr(claim, "apart", ()):
        number, name = (escape_markdown(x) for x in claim.apart)
        return (f"“{escape_markdown(claim.claim)}”: the cited source gives “{number}”, but not where it writes "
                f"“{name}”: check it before relying on it.")
    if getattr(claim, "contradicted_by", ""):
        return (f"“{escape_markdown(claim.claim)}”, but the cited source says: "
                f"“{escape_markdown(clip(claim.contradicted_by))}” Check it before relying on it.")
    if getattr(claim, "open_question", ""):
        echo = ", which the question names itself," if getattr(claim, "echoes", False) else ""
        return (f"“{escape_markdown(claim.claim)}”{echo} does not answer a “{claim.open_question}” question: "
                "check it before relying on it.")
    missing = ", ".join(f"“{escape_markdown(k)}”" for k in claim.missing)
    return (f"{missing} (in “{escape_markdown(claim.claim)}”) appears in none of the sources below: "
            "check it before relying on it.")


def recited_note(recited: Any) -> str:
    """Under an answer whose citation was moved to the source that holds the claim."""
    to = ", ".join(f"[{n}]" for n in recited.to)
    was = ", ".join(f"[{n}]" for n in recited.cited)
    return escape_markdown(f"Cited {to} instead of {was}: that is where “{recited.claim}” is.")


def invalid_citation_note(invalid: Sequence[int], n_sources: int) -> str:
    """The warning under an answer that cites sources that were not shown to the model."""
    cites = ", ".join(f"[{n}]" for n in invalid)
    plural = "s" if len(invalid) > 1 else ""
    return (
        f"The answer cites {cites}, but only {n_sources} source{'s' if n_sources != 1 else ''} "
        f"{'were' if n_sources != 1 else 'was'} given: that citation{plural} cannot be checked."
    )


UNSUPPORTED_NOTE = "This answer cites none of the sources below: check it against them before relying on it."


def removed_links_note(links: Sequence[str]) -> str:
    """Under an answer whose reply held links no source has (invented, or planted by a document)."""
    n = len(links)
    return f"{n} link{'s' if n != 1 else ''} in the reply appeared in no source and {'were' if n != 1 else 'was'} removed."


#: How far under ``retrieve.min_score`` the best match may fall and still count as a near miss: a passage
#: that close usually holds the answer in other words, so the fix is in the search, not in the documents.
NEAR_MISS_MARGIN = 0.05


def abstain_was_near(answer: Any, min_score: float | None = None) -> bool:
    """Were the sources close to the question when the assistant did not answer?

    Near: the model read sources and declined, or the best passage fell just under ``min_score``;
    then another search or other words may find it. Far: nothing came close, so the documents
    may not hold the answer at all.
    """
    if not answer.sources:
        return False
    if not answer.skipped_generation:
        return True
    best = max((s.dense_score or 0.0 for s in answer.sources), default=0.0)
    return min_score is not None and best >= min_score - NEAR_MISS_MARGIN


def abstain_note(answer: Any, min_score: float | None = None, mode: str = "dense",
                 hybrid_hint: str = "Hybrid under Search", dense_hint: str = "Dense under Search") -> str:
    """Why the assistant did not answer, and what to try: search differently when the sources were close
    (``hybrid_hint``/``dense_hint`` name the switch in the caller's front door), ingest more when nothing was.

    From hybrid, dense is the other search to try: it ranks paraphrased questions better (MuSiQue,
    docs/EVAL.md "Retrieval baselines"); from dense or BM25, hybrid."""
    near = abstain_was_near(answer, min_score)
    words = "rephrase with words the document uses"
    other = f"{dense_hint} (it finds paraphrases)" if mode == "hybrid" else hybrid_hint
    try_next = f"Try {other}, or {words}."
    if not answer.skipped_generation:
        return f"The model found no answer in the sources below. {try_next}"
    missing = getattr(answer, "not_covered", None)
    if missing:  # rag_app.coverage: the sources are about something else
        terms = ", ".join(f"'{t}'" for t in missing[:6]) + (" ..." if len(missing) > 6 else "")
        # outside dense mode the gate read the passages closest in meaning (rag_app.pipeline._gate_sources)
        where = "The sources found" if mode == "dense" else "The passages closest in meaning to the question"
        return (f"{where} do not mention {terms}, so the model was not asked. {try_next} "
                "If no document covers them, ingest one that does.")
    threshold = f" (retrieve.min_score {min_score:g})" if min_score is not None else ""
    if near:
        return f"The closest passage was just under the similarity bar{threshold}, so the model was not asked. {try_next}"
    return (
        f"No passage in the index was close to the question{threshold}, so the model was not asked. "
        "The documents may not hold it: ingest the ones that do."
    )


@dataclass(frozen=True)
class TimingRow:
    label: str
    value: str


def timing_rows(timings: Any) -> list[TimingRow]:
    """Retrieve, first token, speed and total of one answer, formatted for the sidebar."""
    ms = timings.retrieve_ms
    rows = [TimingRow("Retrieve", f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s")]
    rows.append(TimingRow("First token", f"{timings.ttft_ms / 1000:.2f} s" if timings.ttft_ms is not None else "—"))
    rows.append(
        TimingRow("Speed", f"{timings.tokens_per_s:.1f} tok/s" if timings.tokens_per_s is not None else "—")
    )
    rows.append(TimingRow("Total", f"{timings.total_ms / 1000:.2f} s"))
    return rows


def time_ago(iso: str, now: datetime | None = None) -> str:
    """``3 min ago`` from an ISO timestamp (the manifest's ``updated``); the raw string if unparsable."""
    if not iso:
        return "never"
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = int(((now or datetime.now(timezone.utc)) - then).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days > 1 else ''} ago"


def report_lines(report: Any) -> list[str]:
    """What an ingest run did, one Markdown line per non-empty category.

    Works on the fields of ``ingest.pipeline.IngestReport`` (lists named
    added/updated/unchanged/removed/skipped/failed); an item is a path or a
    (path, reason) pair.
    """
    lines = []
    for field in ("added", "updated", "unchanged", "removed", "skipped", "failed"):
        items = list(getattr(report, field, None) or [])
        if not items:
            continue
        shown = ", ".join(_report_item(i) for i in items[:8])
        more = f" and {len(items) - 8} more" if len(items) > 8 else ""
        lines.append(f"**{field.capitalize()}** ({len(items)}): {shown}{more}")
    return lines


def _report_item(item: Any) -> str:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return f"{escape_markdown(str(item[0]))} ({escape_markdown(str(item[1]))})"
    for name, reason in (("source", "reason"), ("path", "reason"), ("source", "error"), ("path", "error")):
        if hasattr(item, name) and hasattr(item, reason):
            return f"{escape_markdown(str(getattr(item, name)))} ({escape_markdown(str(getattr(item, reason)))})"
    return escape_markdown(str(item))


def conversation_markdown(turns: Iterable[Any], index: str, now: datetime | None = None) -> str:
    """The whole chat as a Markdown document: each question, its answer and its sources in full.

    Args:
        turns: objects with ``question`` and ``answer`` (an Answer, or None
            when the turn failed) and ``error`` (the message shown instead).
        index: the index path, recorded in the header.
    """
    stamp = (now or datetime.now(timezone.utc)).astimezone().strftime("%Y-%m-%d %H:%M")
    out = [f"# Chat with your documents\n\nIndex `{index}` · exported {stamp}\n"]
    for i, turn in enumerate(turns, start=1):
        out.append(f"## {i}. {turn.question.strip()}\n")
        answer = turn.answer
        if answer is None:
            out.append(f"_Error: {turn.error}_\n")
            continue
        out.append(literal_citations(answer.text.strip()) + "\n")
        if answer.abstained:
            out.append("_(no answer in the documents)_\n")
        if answer.invalid_citations:
            note = invalid_citation_note(answer.invalid_citations, len(answer.sources))
            out.append(f"_Warning: {literal_citations(note)}_\n")
        if answer.sources:
            out.append("**Sources**\n")
            for source in answer.sources:
                chunk = source.chunk
                where = source_where(source)
                cited = " — cited" if source.number in answer.citations else ""
                text = _REFERENCE_DEFINITION.sub(r"\1\\[", chunk.text.strip())  # defines no link in the export
                quote = "\n".join("   > " + line if line.strip() else "   >" for line in text.splitlines())
                out.append(
                    f"{source.number}. `{chunk.source}`{' ' + where if where else ''} "
                    f"(score {format_score(source.score)}){cited}\n{quote}\n"
                )
        adapter = f" + {answer.adapter}" if answer.adapter else ""
        out.append(f"<sub>{answer.model}{adapter} · {answer.timings.total_ms / 1000:.1f} s</sub>\n")
    return "\n".join(out)

"""retrieve -> build_prompt -> generate -> Answer, for every front door.

The CLI (``rag ask``/``rag chat``), the UI and the evaluation all go through
:class:`RagPipeline`, so what is measured is what users get.

Chat follow-ups: a 135M model rewrites follow-ups into standalone queries
unreliably (it drops or invents entities), so instead the pipeline retrieves
twice, with the question alone and with the previous user question prepended,
and fuses the two rankings by reciprocal rank. The prefixed query carries the
entity a pronoun refers to ("When did he die?"); the bare one keeps a change
of topic from being dragged back to the last one. The generator sees the
earlier turns as chat history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

from rag_app.config import Settings
from rag_app.coverage import Coverage, question_coverage
from rag_app.embeddings import Embedder, load_embedder
from rag_app.errors import EmptyQuestionError
from rag_app.generation import Generator, load_generator
from rag_app.guard import check_reply, instructions, shown_prefix
from rag_app.prompts import ABSTAIN, build_messages, is_abstention, pack_sources, parse_citations
from rag_app.repetition import without_loop
from rag_app.retriever import RetrievedChunk, Retriever, rrf
from rag_app.store import Chunk
from rag_app.store_protocol import ChunkStore, open_store
from rag_app.support import Evidence, Recited, Support, SupportChecker, UnsupportedClaim

log = logging.getLogger(__name__)


@dataclass
class Source:
    """One numbered source, shown to the model as ``[number]`` and to the user beside the answer."""

    number: int
    chunk: Chunk
    score: float
    dense_score: float | None

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def location(self) -> str:
        return self.chunk.location


@dataclass
class Timings:
    retrieve_ms: float = 0.0
    ttft_ms: float | None = None  # request start to first token, as the user waits
    generate_ms: float = 0.0
    total_ms: float = 0.0
    tokens: int = 0
    tokens_per_s: float | None = None


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Source]
    citations: list[int]
    invalid_citations: list[int]  # cited numbers with no such source
    abstained: bool
    skipped_generation: bool  # best source under retrieve.min_score, or too little of the question in the sources
    timings: Timings = field(default_factory=Timings)
    model: str = ""
    adapter: str | None = None
    reply: str = ""  # the model's reply before the guards (rag_app.guard); ``text`` is what is shown
    removed_links: list[str] = field(default_factory=list)  # links the reply had that no source holds
    withheld_for: list[int] = field(default_factory=list)  # sources whose planted instruction the reply obeyed
    # rag_app.support: where each claim's key content is, citations it moved, claims no shown source holds
    evidence: list[Evidence] = field(default_factory=list)
    recited: list[Recited] = field(default_factory=list)
    unsupported_claims: list[UnsupportedClaim] = field(default_factory=list)
    # Why generation ended: "stop" (end of turn), "length" (ran to max_new_tokens), "loop" (the repetition
    # guard stopped it); None without generation. rag eval counts the last two.
    finish: str | None = None
    # The abstain token's probability at the first position, and whether it was the most likely token
    # (rag_app.abstain.FirstToken); None where the backend does not say. rag eval keeps both.
    abstain_p: float | None = None
    abstain_greedy: bool | None = None
    # The share of the question's terms the sources mention (rag_app.coverage; None for a follow-up and when no
    # source reached retrieve.min_score) and, when it was under retrieve.min_coverage so the model was not
    # asked, the terms no source had.
    coverage: float | None = None
    not_covered: list[str] = field(default_factory=list)

    @property
    def cited_sources(self) -> list[Source]:
        return [s for s in self.sources if s.number in self.citations]

    @property
    def unsupported(self) -> bool:
        """An answer (not an abstention) that cites no source that was shown: nothing backs it."""
        return not self.abstained and not self.withheld_for and not self.citations

    @property
    def warnings(self) -> list[str]:
        """One line per reason not to take the answer at face value, for every front door."""
        out = []
        if self.invalid_citations:
            out.append(f"the answer cites source(s) {self.invalid_citations}, which were not shown: "
                       "those citations back nothing")
        if self.unsupported:
            out.append("the answer cites none of the sources shown: check it against them before relying on it")
        out += [claim.warning() for claim in self.unsupported_claims]
        if self.removed_links:
            out.append(f"removed {len(self.removed_links)} link(s) that appear in no source")
        return out

    @property
    def notes(self) -> list[str]:
        """Changes made to the reply that are not reasons to doubt it: a citation moved to the source holding the claim."""
        return [r.note() for r in self.recited]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for s, src in zip(d["sources"], self.sources):
            s["location"] = src.location
        d["unsupported"], d["warnings"], d["notes"] = self.unsupported, self.warnings, self.notes
        del d["reply"]  # a withheld reply is withheld from every front door; rag eval reads Answer.reply
        return d

    def render_markdown(self) -> str:
        """The answer and its sources as Markdown (conversation export, ``rag ask`` output)."""
        lines = [self.text, *(f"\n_Warning: {w}._" for w in self.warnings), "", "**Sources**", ""]
        for s in self.sources:
            mark = " (cited)" if s.number in self.citations else ""
            first = s.text.strip().splitlines()[0] if s.text.strip() else ""
            lines.append(f"[{s.number}] {s.location} — score {s.score:.3f}{mark}  \n> {first[:200]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Retrieved:
    """What one search found, best first, and how long it took (ms)."""

    hits: list[RetrievedChunk]
    ms: float

    def top(self, k: int) -> Retrieved:
        """The first ``k`` hits, as if the search had asked for ``k`` (same time)."""
        return Retrieved(self.hits[:k], self.ms)


class _Prepared(NamedTuple):
    """What answering needs before the model runs; ``messages`` None: abstain without it."""

    sources: list[Source]
    messages: list[dict[str, str]] | None
    retrieve_ms: float
    support: SupportChecker | None  # None: no model reply to check
    coverage: Coverage | None


HISTORY_TURNS = 3  # earlier turns a follow-up is asked with; each costs prompt tokens the sources could use


def chat_history(turns: Sequence[tuple[str, Answer | None]]) -> list[tuple[str, str]]:
    """The (question, reply) pairs a follow-up is asked with: the last :data:`HISTORY_TURNS` that answered.

    The one rule for ``rag chat`` and the UI. An abstention is left out (it
    holds nothing a follow-up can refer to, and a model shown its own "I
    don't know" tends to repeat it), and so is a reply withheld for carrying
    out a planted instruction, which must not steer the next one.
    """
    kept = [(q, a.text) for q, a in turns if a is not None and not a.abstained and not a.withheld_for]
    return kept[-HISTORY_TURNS:]


def finished(pieces: Any, tokens: int, max_new_tokens: int) -> str:
    """Why generation ended: what the backend's :class:`~rag_app.repetition.Reply` says, else an estimate.

    A generator that does not say (a plain iterator, as test fakes and
    third-party backends return) ran to the cap when it produced
    ``max_new_tokens`` tokens (``tokens``: as the pipeline counted them) and
    was cut by the repetition guard when it reported a repeated tail.
    """
    said = getattr(pieces, "finish", None)
    if said is not None:
        return said
    if getattr(pieces, "repeated_tail", 0):
        return "loop"
    return "length" if tokens >= max_new_tokens else "stop"


def retrieval_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The text to embed: the question, with the previous user question for a follow-up."""
    return f"{history[-1][0]} {question}" if history else question


class RagPipeline:
    """Answers questions from an index.

    Args:
        settings: all settings; ``settings.index`` is opened unless ``store`` is given.
        store, embedder, generator: injected instances (tests, the UI's cached
            resources); each is loaded from settings when omitted. The
            generator loads lazily, on the first question that needs it.

    Example::

        rag = RagPipeline(load_settings())
        print(rag.answer("Who won Super Bowl 50?").render_markdown())
    """

    def __init__(
        self,
        settings: Settings,
        store: ChunkStore | None = None,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or load_embedder(settings.embedding_model)
        self.store = store or open_store(settings, embedding_model=self.embedder.model_name)
        self.retriever = Retriever(self.store, self.embedder, settings.retrieve)
        # The history-prefixed query of a follow-up searches by meaning only: BM25 over
        # "previous question + new question" ranks by the previous topic's words and drags
        # a change of topic back (BM25 keeps its weight through the bare question).
        self.history_retriever = self.retriever
        if settings.retrieve.mode == "hybrid":  # shares the reranker: a cross-encoder loads once
            self.history_retriever = Retriever(self.store, self.embedder, settings.retrieve.model_copy(update={"mode": "dense"}),
                                               reranker=self.retriever.reranker)
        self._generator = generator

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = load_generator(self.settings.generate, self.settings.cache_dir)
        return self._generator

    def retrieve(self, question: str, history: Sequence[tuple[str, str]] = (), exclude_doc_ids: Sequence[str] = (),
                 k: int | None = None) -> list[RetrievedChunk]:
        """The best ``k`` (default ``top_k``) sources for ``question``; a follow-up fuses the bare and the history-prefixed query."""
        k = k or self.settings.retrieve.top_k
        bare = self.retriever.retrieve(question, k=k, exclude_doc_ids=exclude_doc_ids)
        if not history:
            return bare
        prefixed = self.history_retriever.retrieve(retrieval_query(question, history), k=k, exclude_doc_ids=exclude_doc_ids)
        by_id: dict[int, RetrievedChunk] = {}
        for h in [*prefixed, *bare]:  # keep the closer cosine: it decides the no-good-source threshold
            if h.chunk.id not in by_id or (h.dense_score or 0.0) > (by_id[h.chunk.id].dense_score or 0.0):
                by_id[h.chunk.id] = h
        fused = rrf([[h.chunk.id for h in bare], [h.chunk.id for h in prefixed]], k=self.settings.retrieve.rrf_k)[:k]
        return [replace(by_id[i], rank=rank) for rank, (i, _) in enumerate(fused, start=1)]

    def search(self, question: str, history: Sequence[tuple[str, str]] = (), exclude_doc_ids: Sequence[str] = (),
               k: int | None = None) -> Retrieved:
        """:meth:`retrieve`, timed; ``k`` (default ``top_k``) deeper for a caller that scores the list.

        ``rag eval`` scores retrieval on a list deeper than ``top_k`` and answers
        from its first ``top_k`` (:meth:`Retrieved.top`), so that the list it
        scores is the one the answer came from.
        """
        t0 = time.perf_counter()
        hits = self.retrieve(question, history, exclude_doc_ids, k)
        return Retrieved(hits, (time.perf_counter() - t0) * 1000)

    def _prepare(self, question: str, history: Sequence[tuple[str, str]], exclude_doc_ids: Sequence[str],
                 retrieved: Retrieved | None = None) -> _Prepared:
        if not question or not question.strip():
            raise EmptyQuestionError("the question is empty; type a question about your documents")
        if retrieved is None:
            retrieved = self.search(question, history, exclude_doc_ids)
        hits, retrieve_ms = retrieved.hits, retrieved.ms
        sources = [Source(h.rank, h.chunk, h.score, h.dense_score) for h in hits]
        best = max((h.dense_score or 0.0 for h in hits), default=0.0)
        if not hits or best < self.settings.retrieve.min_score:
            log.info("best source scores %.3f < min_score %.3f: abstaining without the model", best, self.settings.retrieve.min_score)
            return _Prepared(sources, None, retrieve_ms, None, None)
        # A follow-up leans on earlier turns ("and the second one?"): its own terms say little, so it is not gated.
        # Checked on every source first: under the bar there, no model is loaded to say "I don't know".
        coverage = None if history else self._gate(self.gate_coverage(question, sources, exclude_doc_ids))
        if coverage is not None and coverage.below(self.settings.retrieve.min_coverage):
            return _Prepared(sources, None, retrieve_ms, None, coverage)
        gen = self.generator
        budget = gen.context_window - self.settings.generate.max_new_tokens
        kept = list(pack_sources(sources, lambda s: gen.count_tokens(build_messages(question, s, history)), budget))
        support = SupportChecker(kept, question)  # citations are corrected before they are shown
        if len(kept) < len(sources):
            log.info("context budget %d tokens: kept %d of %d sources", budget, len(kept), len(sources))
            # What the model would read holds less of the question. No source kept: the generator says the
            # question is too long for the window.
            if not kept:
                coverage = None
            elif coverage is not None and self.settings.retrieve.mode == "dense":  # else it read the dense neighbours
                coverage = self._gate(question_coverage(support))
            if coverage is not None and coverage.below(self.settings.retrieve.min_coverage):
                return _Prepared(kept, None, retrieve_ms, support, coverage)
        return _Prepared(kept, build_messages(question, kept, history), retrieve_ms, support, coverage)

    def gate_coverage(self, question: str, sources: Sequence[Any], exclude_doc_ids: Sequence[str] = ()) -> Coverage:
        """The question's coverage as the gate measures it, whether or not it is applied (``rag eval`` records it).

        Args:
            sources: the sources shown (chunks or :class:`Source`), best first.
            exclude_doc_ids: as searched: a withheld gold document must not reach the gate's own search.
        """
        return question_coverage(SupportChecker(self._gate_sources(question, list(sources), exclude_doc_ids), question))

    def _gate_sources(self, question: str, sources: list[Any], exclude_doc_ids: Sequence[str]) -> list[Any]:
        """The passages the coverage gate reads: the sources shown in dense mode, else the dense neighbours.

        BM25 ranks a passage by the question's words it holds, so passages it
        found mention the question's terms by construction, whether or not the
        documents answer it: with hybrid sources, the gate abstained on 20-45%
        of the questions whose gold document was withheld (pubmedqa_l,
        cmu_qa_wikipedia, MuSiQue) where it abstained on 60-70% with dense ones
        (docs/EVAL.md, "Hybrid by default"). The passages closest in meaning
        say whether the documents speak of it.
        """
        if self.settings.retrieve.mode == "dense":
            return sources
        hits = self.retriever.retrieve(question, k=len(sources), exclude_doc_ids=exclude_doc_ids, mode="dense")
        return [Source(h.rank, h.chunk, h.score, h.dense_score) for h in hits]

    def _gate(self, coverage: Coverage) -> Coverage:
        """``coverage``, logged when it is under ``retrieve.min_coverage``."""
        if coverage.below(self.settings.retrieve.min_coverage):
            log.info("the sources mention %.0f%% of the question's terms < min_coverage %.0f%% (missing: %s): "
                     "abstaining without the model", 100 * coverage.share, 100 * self.settings.retrieve.min_coverage,
                     ", ".join(coverage.missing))
        return coverage

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), exclude_doc_ids: Sequence[str] = (),
               *, retrieved: Retrieved | None = None) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as they are generated, then the final :class:`Answer`.

        Args:
            question, history, exclude_doc_ids: what to answer and what to leave out of the search.
            retrieved: answer from these hits (a :meth:`search` already made) instead of searching.

        Raises:
            EmptyQuestionError: blank question.
        """
        # Given hits: the clock starts when their search did, so the timings mean what they do otherwise.
        start = time.perf_counter() - (retrieved.ms / 1000 if retrieved is not None else 0.0)
        sources, messages, retrieve_ms, support, coverage = self._prepare(question, history, exclude_doc_ids, retrieved)
        timings = Timings(retrieve_ms=retrieve_ms)
        if messages is None:
            timings.total_ms = (time.perf_counter() - start) * 1000
            yield ABSTAIN
            yield self._finish(question, ABSTAIN, sources, timings, skipped=True, coverage=coverage)
            return
        cfg = self.settings.generate
        threshold = cfg.applied_abstain_threshold
        if threshold is None and cfg.abstain_threshold is not None:
            log.info("generate.abstain_threshold %.2f ignored: the model is not fine-tuned", cfg.abstain_threshold)
        # A source that talks to the assistant: the whole reply is checked before any of it is shown.
        hold_all = bool(instructions(sources))
        raw, shown = "", ""
        t_gen = time.perf_counter()
        t_first = t_gen
        pieces = self.generator.stream(messages, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                       abstain_threshold=threshold)
        for piece in pieces:
            if timings.ttft_ms is None:
                t_first = time.perf_counter()
                timings.ttft_ms = (t_first - start) * 1000
            raw = (raw + piece).lstrip() if not shown else raw + piece  # what is shown starts as the text does
            view = "" if hold_all else support.settled(raw[:shown_prefix(raw)])
            if len(view) > len(shown) and view.startswith(shown):
                yield view[len(shown):]
                shown = view
        end = time.perf_counter()
        generated, raw = raw, without_loop(raw, pieces).rstrip()  # a reply the repetition guard stopped, less its loop
        checked = check_reply(raw, sources, question)
        supported = support.check(checked.text) if not checked.obeyed else None
        text = supported.text if supported else checked.text
        rest = text[len(shown):] if text.startswith(shown) else "\n\n" + text
        if rest:
            yield rest
        timings.generate_ms = (end - t_gen) * 1000
        timings.total_ms = (end - start) * 1000
        counter = getattr(self.generator, "count_text_tokens", None)
        timings.tokens = counter(generated) if counter else len(generated.split())  # generated, not as shown
        decode_s = end - t_first  # after the first token: decode speed, prefill excluded
        if timings.tokens > 1 and decode_s > 0:
            timings.tokens_per_s = (timings.tokens - 1) / decode_s
        finish = finished(pieces, timings.tokens, cfg.max_new_tokens)
        first = getattr(pieces, "first_token", None)
        yield self._finish(question, text, sources, timings, skipped=False, reply=raw,
                           removed_links=checked.removed_links, withheld_for=sorted({i.number for i in checked.obeyed}),
                           support=supported, finish=finish, first_token=first, coverage=coverage)

    def answer(self, question: str, history: Sequence[tuple[str, str]] = (), exclude_doc_ids: Sequence[str] = (),
               *, retrieved: Retrieved | None = None) -> Answer:
        """Retrieve, generate and return the whole :class:`Answer` (no streaming); ``retrieved`` as in :meth:`stream`."""
        final = None
        for item in self.stream(question, history, exclude_doc_ids, retrieved=retrieved):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def _finish(self, question: str, text: str, sources: list[Source], timings: Timings, skipped: bool,
                reply: str | None = None, removed_links: Sequence[str] = (), withheld_for: Sequence[int] = (),
                support: Support | None = None, finish: str | None = None, first_token: Any = None,
                coverage: Coverage | None = None) -> Answer:
        cited = [] if withheld_for else parse_citations(text)  # a withheld reply's numbers cite nothing
        valid = {s.number for s in sources}
        gen = self._generator
        return Answer(
            question=question,
            text=text,
            sources=sources,
            citations=[n for n in cited if n in valid],
            invalid_citations=[n for n in cited if n not in valid],
            abstained=skipped or is_abstention(text),
            skipped_generation=skipped,
            timings=timings,
            model=getattr(gen, "name", self.settings.generate.model),
            adapter=getattr(gen, "adapter", self.settings.generate.adapter_path),
            reply=text if reply is None else reply,
            removed_links=list(removed_links),
            withheld_for=list(withheld_for),
            evidence=support.evidence if support else [],
            recited=support.recited if support else [],
            unsupported_claims=support.unsupported if support else [],
            finish=finish,
            abstain_p=getattr(first_token, "p", None),
            abstain_greedy=getattr(first_token, "greedy", None),
            coverage=coverage.share if coverage else None,
            not_covered=coverage.missing if skipped and coverage else [],
        )

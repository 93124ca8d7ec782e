"""Run the questions of a dataset through one or more configurations and record every answer.

The loop is built to be left running for hours and stopped at any time:

* each finished question is appended to ``<out>/records.jsonl`` at once, so
  Ctrl-C or a crash loses at most the question in flight;
* a re-run with the same ``--out`` skips the questions already recorded for
  the same configuration (same name *and* same fingerprint of its settings
  and of the index generation, so a changed setting or re-ingested corpus
  re-runs rather than mixing old and new answers; a changed ``--k`` only
  rescores the stored retrieved lists);
* the report is written from whatever finished, on a normal end and on Ctrl-C.

What it measures goes through :class:`rag_app.pipeline.RagPipeline`, the code
users run. Each question is searched once, ``max(k, 10)`` chunks deep: the
retrieval metrics score that list and the answer is generated from its first
``top_k`` (:func:`answer_question`), so what is scored is what was answered from.
The index is an input: building it is the front door's job (``rag eval``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rag_app.config import RetrieveConfig, Settings
from rag_app.coverage import question_coverage
from rag_app.errors import ConfigError
from rag_app.evaluate import metrics as m
from rag_app.evaluate.dataset import Dataset, QAItem, withheld_ids
from rag_app.models import adapter_digest
from rag_app.support import SupportChecker

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
MODES = ("dense", "hybrid", "bm25")
_SNIPPET = 240


@dataclass(frozen=True)
class EvalConfig:
    """How questions are scored; shared by every configuration of a run.

    Attributes:
        ks: cut-offs for recall@k and hit@k (MRR and nDCG are always @10).
        retrieval_only: score retrieval only; the generator is never loaded.
        unanswerable: fraction of answerable questions whose gold docs are
            withheld from retrieval (seeded), so the right reply abstains.
        seed: seeds the ``--limit`` sample and the withheld draw.
    """

    ks: tuple[int, ...] = (1, 3, 5, 10)
    retrieval_only: bool = False
    unanswerable: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"--k takes comma-separated integers >= 1, got {','.join(map(str, self.ks)) or 'nothing'}")
        object.__setattr__(self, "ks", tuple(sorted(set(self.ks))))
        if not 0.0 <= self.unanswerable < 1.0:
            raise ConfigError(f"--unanswerable must be a fraction in [0, 1), got {self.unanswerable}")

    @property
    def depth(self) -> int:
        """Chunks retrieved for the retrieval metrics: enough for the largest k and for @10."""
        return max(*self.ks, 10)


@dataclass(frozen=True)
class RunSpec:
    """One named configuration: the settings it answers with (``settings.index`` is its index)."""

    name: str
    settings: Settings

    def fingerprint(self, config: EvalConfig, index_id: str = "") -> str:
        """Hash of everything that changes this run's records; a resume reuses only matching records.

        ``index_id`` names the index contents (model, chunk count, last commit time).
        """
        s = self.settings
        unused = {"index", "cache_dir"} | ({"generate"} if config.retrieval_only else set())
        settings = s.model_dump(mode="json", exclude=unused)
        if not config.retrieval_only:  # ignored without a fine-tune: same answers, same records
            settings["generate"]["abstain_threshold"] = s.generate.applied_abstain_threshold
        key = {
            "index": index_id,
            "settings": settings,
            "adapter_path": None if config.retrieval_only else s.generate.adapter_path,
            # A retrained adapter at the same path must not reuse the old one's records.
            "adapter_digest": None if config.retrieval_only or not s.generate.adapter_path
            else adapter_digest(Path(s.generate.adapter_path)),
            "depth": config.depth,
            "retrieval_only": config.retrieval_only,
        }
        merged = s.generate.merged_model_dir
        if not config.retrieval_only and merged is not None:  # a re-merged model at the same path
            key["model_digest"] = adapter_digest(merged, names=("training_card.json", "model.safetensors"))
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def plan_runs(variants: Sequence[tuple[str, Settings]], modes: Sequence[str] = ()) -> list[RunSpec]:
    """Expand named settings by retrieval modes into the runs of one eval, greedy decoding forced.

    ``[("base", s)]`` with modes ``dense, hybrid`` gives runs ``dense`` and
    ``hybrid``; with several variants, or one named otherwise (``rag eval
    --name``), each gets ``<name>-<mode>``. Duplicate
    names get ``-2``, ``-3``.

    Raises:
        ConfigError: an unknown mode.
    """
    runs: list[RunSpec] = []
    names: set[str] = set()
    for base_name, settings in variants:
        for mode in modes or (None,):
            s = settings
            name = base_name
            if mode is not None:
                if mode not in MODES:
                    raise ConfigError(f"unknown --mode {mode!r}; use one of: {', '.join(MODES)}")
                try:
                    retrieve = RetrieveConfig.model_validate({**s.retrieve.model_dump(), "mode": mode})
                except ValidationError as err:
                    raise ConfigError(f"--mode {mode}: {err.errors()[0]['msg']}") from None
                s = s.model_copy(update={"retrieve": retrieve})
                name = mode if len(variants) == 1 and base_name == "base" else f"{base_name}-{mode}"
            # Determinism: an eval always decodes greedily, whatever the config says.
            s = s.model_copy(update={"generate": s.generate.model_copy(update={"temperature": 0.0})})
            unique, n = name, 1
            while unique in names:
                n += 1
                unique = f"{name}-{n}"
            names.add(unique)
            runs.append(RunSpec(unique, s))
    return runs


# ------------------------------------------------------------------ records


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of earlier runs; a torn last line (killed mid-write) is skipped."""
    if not path.is_file():
        return []
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s line %d is incomplete (interrupted write); that question runs again", path, number)
    return out


def _hit_dict(hit: Any) -> dict[str, Any]:
    c = hit.chunk
    return {"rank": hit.rank, "doc_id": c.doc_id, "chunk_id": c.id,
            "score": round(float(hit.score), 6), "dense_score": None if hit.dense_score is None else round(float(hit.dense_score), 6)}


def _source_dict(number: int, chunk: Any, score: float) -> dict[str, Any]:
    text = " ".join(chunk.text.split())
    return {"number": number, "doc_id": chunk.doc_id, "location": chunk.location, "score": round(float(score), 6),
            "snippet": text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else "")}


def build_record(run: RunSpec, fingerprint: str, item: QAItem, hits: Sequence[Any], answer: Any | None,
                 top_k: int, withheld: bool, ks: Sequence[int], retrieve_ms: float,
                 coverage: Any = None) -> dict[str, Any]:
    """One line of records.jsonl: the question, what was retrieved and said, its scores and latency."""
    if answer is not None:
        chunks = [src.chunk for src in answer.sources]
        sources = [_source_dict(src.number, src.chunk, src.score) for src in answer.sources]
        latency = {"retrieve_ms": answer.timings.retrieve_ms, "ttft_ms": answer.timings.ttft_ms,
                   "total_ms": answer.timings.total_ms}
    else:  # retrieval only: the sources the pipeline would show are its top-k
        chunks = [h.chunk for h in hits[:top_k]]
        sources = [_source_dict(h.rank, h.chunk, h.score) for h in hits[:top_k]]
        latency = {"retrieve_ms": retrieve_ms, "ttft_ms": None, "total_ms": retrieve_ms}
    docs, _ = m.dedupe_docs([h.chunk.doc_id for h in hits])
    # How much of the question the gate's passages mention (RagPipeline.gate_coverage; given, or the shown
    # sources'): from a run with retrieve.min_coverage = 0, any setting of it follows (docs/eval/abstain_from_records.py).
    if coverage is None and chunks:
        coverage = question_coverage(SupportChecker(chunks, item.question))
    return {
        "config": run.name,
        "fingerprint": fingerprint,
        "id": item.id,
        "question": item.question,
        "answer_type": item.answer_type,
        "answers": list(item.answers),
        "gold_doc_ids": list(item.gold_doc_ids),
        "withheld": withheld,
        "expect_abstain": withheld or item.is_unanswerable,
        "retrieved_doc_ids": docs,
        "retrieved": [_hit_dict(h) for h in hits],
        "sources": sources,
        "reply": None if answer is None else answer.text,
        "model_reply": None if answer is None else answer.reply,  # before rag_app.guard's checks
        "citations": [] if answer is None else [*answer.citations, *answer.invalid_citations],
        "invalid_citations": [] if answer is None else list(answer.invalid_citations),
        "abstained": None if answer is None else bool(answer.abstained),
        "skipped_generation": None if answer is None else bool(answer.skipped_generation),
        "gated": None if answer is None else bool(answer.not_covered),  # skipped by retrieve.min_coverage
        "finish": None if answer is None else getattr(answer, "finish", None),  # stop, length (token cap) or loop
        "generated_tokens": None if answer is None or answer.skipped_generation else answer.timings.tokens,
        # The abstain token at the first position: any threshold's outcome follows (docs/eval/abstain_from_records.py).
        "abstain_p": None if answer is None else getattr(answer, "abstain_p", None),
        "abstain_greedy": None if answer is None else getattr(answer, "abstain_greedy", None),
        "coverage": None if coverage is None else coverage.share,
        "coverage_terms": None if coverage is None else coverage.terms,
        "coverage_missing": None if coverage is None else coverage.missing,
        "model": None if answer is None else answer.model,
        "adapter": None if answer is None else answer.adapter,
        "scores": m.score_question(item, hits, chunks, answer, ks, withheld),
        "latency": {k: (None if v is None else round(float(v), 2)) for k, v in latency.items()},
    }


# ------------------------------------------------------------------ the loop


@dataclass
class RunState:
    """A run's records for the planned questions, in dataset order once finished."""

    spec: RunSpec
    fingerprint: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


GeneratorLoader = Callable[[Settings], Any]


def _default_loader(settings: Settings) -> Any:
    from rag_app.generation import load_generator

    return load_generator(settings.generate, settings.cache_dir)


def _generator_key(settings: Settings) -> tuple[Any, ...]:
    return (settings.generate.loading_key(), str(settings.cache_dir))


def run_questions(
    dataset: Dataset,
    runs: Sequence[RunSpec],
    config: EvalConfig,
    out_dir: Path,
    *,
    embedder: Any = None,
    load_generator: GeneratorLoader | None = None,
    progress: Any = None,
) -> tuple[list[RunState], bool]:
    """Answer and score every planned question of every run, appending to records.jsonl.

    Args:
        dataset: the validated questions.
        runs: the configurations; each ``settings.index`` must already exist.
        config: scoring options.
        out_dir: where records.jsonl lives (created).
        embedder: use this embedder for every run (tests); default: load each run's model.
        load_generator: ``settings -> Generator``; called at most once per distinct
            model/adapter and never in retrieval-only runs.
        progress: an :class:`rag_app.evaluate.report.EvalProgress`-like object with
            ``start(total, states)`` and ``advance(state)``, or None.

    Returns:
        (the runs' states, interrupted?). Ctrl-C stops the loop and returns what finished.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / RECORDS_FILE
    withheld = withheld_ids(dataset.items, config.unanswerable, config.seed)
    states = _resume(dataset, runs, config, records_path, withheld)
    if progress is not None:
        progress.start(len(dataset.items) * len(states), states)
    pipelines = _Pipelines(dataset, config, embedder, load_generator or _default_loader)
    interrupted = False
    try:
        with open(records_path, "a", encoding="utf-8") as fh:
            for st in states:
                left = [item for item in dataset.items if item.id not in st.records]
                if not left:
                    continue
                pipeline = pipelines.build(st.spec.settings)
                for item in left:
                    rec = answer_question(pipeline, st, item, config, withheld=item.id in withheld)
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    fh.flush()
                    st.records[item.id] = rec
                    if progress is not None:
                        progress.advance(st)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: writing the report from the questions that finished")
    finally:
        pipelines.close()
    _in_dataset_order(states, dataset)
    return states, interrupted


def _resume(dataset: Dataset, runs: Sequence[RunSpec], config: EvalConfig, records_path: Path,
            withheld: frozenset[str]) -> list[RunState]:
    """Each run's state, holding the records an earlier run of the same configuration left (rescored for ``ks``)."""
    planned = {item.id for item in dataset.items}
    states = [RunState(spec, spec.fingerprint(config, _index_id(spec.settings.index))) for spec in runs]
    for rec in read_records(records_path):
        for st in states:
            if (rec.get("config") == st.spec.name and rec.get("fingerprint") == st.fingerprint
                    and rec.get("id") in planned and rec.get("withheld") == (rec.get("id") in withheld)):
                st.records[rec["id"]] = rescore_retrieval(rec, config.ks)
    todo = sum(len(planned) - len(st.records) for st in states)
    done = sum(len(st.records) for st in states)
    if done:
        log.info("resuming: %d question(s) already recorded in %s, %d to go", done, records_path, todo)
    return states


class _Pipelines:
    """One :class:`~rag_app.pipeline.RagPipeline` per run, sharing what runs have in common.

    Runs on one index share its open store; runs on the same weights share
    one generator (loaded at most once per distinct model/adapter, never in a
    retrieval-only eval).
    """

    def __init__(self, dataset: Dataset, config: EvalConfig, embedder: Any, load_generator: GeneratorLoader) -> None:
        self.dataset, self.config, self.embedder, self.load_generator = dataset, config, embedder, load_generator
        self.stores: dict[str, Any] = {}
        self.generators: dict[tuple[Any, ...], Any] = {}

    def build(self, s: Settings) -> Any:
        from rag_app.embeddings import load_embedder
        from rag_app.pipeline import RagPipeline
        from rag_app.store import IndexStore

        emb = self.embedder or load_embedder(s.embedding_model)
        key = str(Path(s.index).resolve())
        if key not in self.stores:
            self.stores[key] = IndexStore.open(s.index, embedding_model=emb.model_name)
            _warn_missing_gold(self.stores[key], self.dataset)
        generator = None
        if not self.config.retrieval_only:
            gkey = _generator_key(s)
            if gkey not in self.generators:
                self.generators[gkey] = self.load_generator(s)
            generator = self.generators[gkey]
        return RagPipeline(s, store=self.stores[key], embedder=emb, generator=generator)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def answer_question(pipeline: Any, state: RunState, item: QAItem, config: EvalConfig, withheld: bool) -> dict[str, Any]:
    """Search once, score that list, answer from its top-k: the record of one question.

    One search, so the list the retrieval metrics score (``config.depth``
    deep) is the one the answer's sources are the first ``top_k`` of.
    ``withheld``: the question's gold docs are left out of the search.
    """
    exclude = item.gold_doc_ids if withheld else ()
    found = pipeline.search(item.question, exclude_doc_ids=exclude, k=config.depth)
    top_k = pipeline.settings.retrieve.top_k
    answer = None if config.retrieval_only else pipeline.answer(item.question, exclude_doc_ids=exclude,
                                                                retrieved=found.top(top_k))
    shown = [src.chunk for src in answer.sources] if answer is not None else [h.chunk for h in found.hits[:top_k]]
    coverage = pipeline.gate_coverage(item.question, shown, exclude) if shown else None
    return build_record(state.spec, state.fingerprint, item, found.hits, answer, top_k, withheld, config.ks, found.ms,
                        coverage)


def _in_dataset_order(states: Sequence[RunState], dataset: Dataset) -> None:
    """Resumed and new records interleave in records.jsonl; the report lists them as qa.jsonl does."""
    order = {item.id: n for n, item in enumerate(dataset.items)}
    for st in states:
        st.records = dict(sorted(st.records.items(), key=lambda kv: order[kv[0]]))


def _index_id(index: Path) -> str:
    """What identifies an index's contents: a re-ingest that changed anything commits a new generation."""
    from rag_app.store import IndexStore

    with IndexStore.open(index) as store:
        m_ = store.manifest
        return f"{m_.embedding_model}|{m_.chunks}|{m_.documents}|{m_.updated}"


def rescore_retrieval(rec: dict[str, Any], ks: Sequence[int]) -> dict[str, Any]:
    """Recompute a stored record's recall@k/hit@k for the current ``--k`` from its retrieved list."""
    docs, _ = m.dedupe_docs(h["doc_id"] for h in rec["retrieved"])
    fresh = {k: None if rec.get("withheld") else v for k, v in m.retrieval_scores(docs, rec["gold_doc_ids"], ks).items()
             if k.startswith(("recall@", "hit@"))}
    rec["scores"] = {**fresh, **{k: v for k, v in rec["scores"].items() if not k.startswith(("recall@", "hit@"))}}
    return rec


def _warn_missing_gold(store: Any, dataset: Dataset) -> None:
    """Gold docs that ingest skipped (unreadable file) can never be retrieved: say so, once."""
    indexed = store.doc_ids()
    missing = sorted({d for item in dataset.items for d in item.gold_doc_ids} - indexed)
    if missing:
        log.warning("%d gold doc(s) are not in the index %s (first: %s); their questions cannot score on retrieval",
                    len(missing), store.index_dir, ", ".join(missing[:3]))


def evaluate(
    dataset: Dataset,
    runs: Sequence[RunSpec],
    config: EvalConfig,
    out_dir: str | Path,
    *,
    embedder: Any = None,
    load_generator: GeneratorLoader | None = None,
    console: Any = None,
    command: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Evaluate every run on the dataset and write the report; the one call ``rag eval`` makes.

    Args:
        dataset: the validated, selected questions.
        runs: named configurations whose ``settings.index`` already exists.
        config: scoring options.
        out_dir: records.jsonl, report.json, report.md and the PNGs go here;
            an earlier run's records there are resumed.
        embedder, load_generator: injected models (tests); default load from the settings.
        console: a rich Console for the progress bar; None shows none.
        command: the command line, recorded in the report.

    Returns:
        (the report dict, interrupted?). On Ctrl-C the report of what finished
        is written and ``interrupted`` is True; the caller decides the exit code.
    """
    from rag_app.evaluate.report import EvalProgress, build_report, write_report

    out = Path(out_dir)
    progress = EvalProgress(console, config.ks) if console is not None else None
    try:
        states, interrupted = run_questions(dataset, runs, config, out, embedder=embedder,
                                            load_generator=load_generator, progress=progress)
    finally:
        if progress is not None:
            progress.stop()
    report = build_report(dataset, states, config, interrupted=interrupted, command=command)
    write_report(report, out)
    return report, interrupted

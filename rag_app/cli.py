"""The ``rag`` command: thin typer commands over the library.

Each command parses flags, builds :class:`~rag_app.config.Settings`, calls one
library function and prints. Heavy imports happen inside the commands so
``rag --help`` stays instant. A :class:`~rag_app.errors.RagError` becomes one
``Error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from finetune.config import DataConfig, FinetuneRequest, RaftConfig, TrainConfig
from rag_app.errors import RagError
from rag_app.quiet import quiet_libraries

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Chat with your own documents, offline: ingest a folder, ask, chat, evaluate, fine-tune.",
)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file (default: ./rag.toml).")]
IndexOpt = Annotated[Optional[Path], typer.Option(
    "--index", help="Index directory (default: the nearest .rag/index in this folder or a parent).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what is loaded from where.")]


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    if not verbose:  # no "Loading weights" bars from transformers before every answer (read at its import)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, show_time=False, console=_console(stderr=True))],
        force=True,
    )
    quiet_libraries(verbose)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def settings_from_flags(config: Path | None, verbose: bool = False, **overrides: Any) -> Any:
    """Build Settings from --config and flags; with --verbose, say where things come from."""
    from rag_app.config import describe_origin, load_settings

    settings = load_settings(config, **overrides)
    if verbose:
        for key, where in describe_origin(settings, config, **overrides).items():
            logging.getLogger("rag_app").info("%s: %s", key, where)
    return settings


@app.command()
def ingest(
    folder: Annotated[Path, typer.Argument(
        metavar="PATH", help="Folder of documents (.txt .md .html .pdf .docx .pptx .csv .tsv), or one file to add.")],
    index: IndexOpt = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="Chunk size (characters or tokens, see --chunk-unit).")] = None,
    chunk_overlap: Annotated[Optional[int], typer.Option(help="Overlap between neighbouring chunks.")] = None,
    chunk_unit: Annotated[Optional[str], typer.Option(help="chars or tokens (of the embedding model).")] = None,
    glob: Annotated[Optional[list[str]], typer.Option(help="Only files matching this glob (repeatable).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Start the index over.")] = False,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Build or update the index of a folder (only new or changed files are embedded), or add one file to it."""
    _setup_logging(verbose)
    from ingest.pipeline import ingest_folder
    from ingest.report import kept_after_interrupt, live_manifest

    settings = settings_from_flags(
        config,
        verbose,
        index=index,
        ingest={"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "chunk_unit": chunk_unit,
                "globs": tuple(glob) if glob else None},
    )
    before = live_manifest(settings.index)
    _refuse_replacing_a_parents_index(settings, folder, before)
    try:
        if folder.is_file():
            from ingest.files import ingest_file
            from rag_app.errors import ConfigError

            if rebuild:
                raise ConfigError("--rebuild starts the index over from a folder; pass the folder, not a file")
            report = ingest_file(folder, settings, console=_console(stderr=True))
        else:
            report = ingest_folder(folder, settings, rebuild=rebuild, console=_console(stderr=True))
    except KeyboardInterrupt:
        typer.echo(f"Interrupted: {kept_after_interrupt(settings.index, before)}", err=True)
        raise typer.Exit(130) from None
    _console().print(report.summary())


def _refuse_replacing_a_parents_index(settings: Any, folder: Path, live: Any) -> None:
    """An index found in a parent folder is not replaced by another folder's contents unasked.

    ``rag ingest OTHER`` mirrors OTHER into the index (files not in it are
    dropped); from a subfolder, where the index was found up the tree, that
    would empty a project's index by accident.
    """
    from rag_app.errors import ConfigError

    above = settings.index_found_above
    if above is None or live is None or not live.source_dir or folder.is_file():
        return
    held, target = Path(live.source_dir), folder.resolve()
    if target != held:
        raise ConfigError(
            f"the index at {settings.index} (found in parent folder {above}) holds {held}; ingesting {target} would "
            f"replace it. Pass --index {settings.index} to do that, or --index {target / '.rag' / 'index'} for its own index"
        )


@app.command("index-info")
def index_info(
    index: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show what an index holds: documents, chunks, embedding model, size, last update."""
    _setup_logging(verbose)
    from rag_app.config import require_index
    from rag_app.store_protocol import open_store

    settings = settings_from_flags(config, verbose, index=index)
    require_index(settings)
    with open_store(settings) as store:
        info = store.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        typer.echo(f"{key:16} {value}")


def _generation_overrides(
    index: Path | None, k: int | None, mode: str | None, hybrid: bool, mmr: bool | None, model: str | None,
    adapter: str | None, no_adapter: bool, max_new_tokens: int | None, temperature: float | None,
    backend: str | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "retrieve": {"top_k": k, "mode": "hybrid" if hybrid else mode, "mmr": mmr},
        "generate": {"model": model, "adapter": "none" if no_adapter else adapter,
                     "max_new_tokens": max_new_tokens, "temperature": temperature, "backend": backend},
    }


KOpt = Annotated[Optional[int], typer.Option("--k", "-k", help="Sources to retrieve (default 5).")]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", help="Retrieval: hybrid (default), dense or bm25.")]
HybridOpt = Annotated[bool, typer.Option("--hybrid", help="Dense + BM25 fused by reciprocal rank (the default mode).")]
MmrOpt = Annotated[Optional[bool], typer.Option("--mmr/--no-mmr", help="Drop near-duplicate sources.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="'bundled', a Hugging Face id, or a local folder.")]
AdapterOpt = Annotated[Optional[str], typer.Option("--adapter", help="LoRA adapter folder (default: the shipped one).")]
NoAdapterOpt = Annotated[bool, typer.Option("--no-adapter", help="Answer with the base model alone.")]
MaxTokOpt = Annotated[Optional[int], typer.Option("--max-new-tokens", help="Answer length limit in tokens.")]
TempOpt = Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy (default).")]
BackendOpt = Annotated[Optional[str], typer.Option(
    "--backend", help="auto (llama.cpp for the bundled model when installed), hf (transformers), llamacpp, "
                      "or openai (a server at generate.base_url).")]


def _print_abstain_note(answer: Any, console: Any, retrieve: Any) -> None:
    """Under an "I don't know": what to try, by how close the sources came."""
    if answer.abstained:
        from ui.render import abstain_note

        console.print(abstain_note(answer, retrieve.min_score, retrieve.mode, hybrid_hint="--hybrid",
                                   dense_hint="--mode dense"),
                      style="dim", markup=False, highlight=False)


def _print_sources(answer: Any, console: Any) -> None:
    from rich.table import Table

    if not answer.sources:
        console.print("[dim]No sources matched.[/dim]")
        return
    table = Table(title="Sources", title_justify="left", show_lines=False, pad_edge=False)
    for col in ("#", "file", "page/heading", "score", "first line"):
        table.add_column(col, overflow="fold")
    for s in answer.sources:
        first = s.text.strip().splitlines()[0][:80] if s.text.strip() else ""
        where = f"p. {s.chunk.page}" if s.chunk.page is not None else (s.chunk.heading or "")
        num = f"[bold green]{s.number}*[/]" if s.number in answer.citations else str(s.number)
        table.add_row(num, s.chunk.source, where, f"{s.score:.3f}", first)
    console.print(table)
    for warning in answer.warnings:
        console.print(f"Warning: {warning}.", style="yellow", markup=False, highlight=False)
    for note in answer.notes:
        console.print(f"Note: {note}.", style="dim", markup=False, highlight=False)
    t = answer.timings
    speed = f", {t.tokens_per_s:.1f} tok/s" if t.tokens_per_s else ""
    ttft = f", first token {t.ttft_ms:.0f} ms" if t.ttft_ms is not None else ""
    console.print(f"[dim]* cited. retrieve {t.retrieve_ms:.0f} ms{ttft}{speed}; {answer.model}"
                  f"{' + adapter' if answer.adapter else ''}[/dim]")


def _print_evidence(answer: Any, console: Any) -> None:
    """The sentence of each cited source that holds a claim's numbers and names (rag_app.support)."""
    if answer.abstained or answer.withheld_for:
        return
    if not answer.evidence:
        why = ("a bare yes or no does not answer this question" if any(
            getattr(c, "open_question", "") for c in answer.unsupported_claims)
            else "the answer has no number, name or short span to look up")
        console.print(f"Evidence: none to show ({why}).", style="dim", markup=False, highlight=False)
    for ev in answer.evidence:
        console.print(f"Evidence [{ev.citation}] {ev.source}: \"{ev.sentence}\"", markup=False, highlight=False)


def _stream_answer(rag: Any, question: str, history: Any, console: Any) -> Any:
    from rag_app.pipeline import Answer

    final = None
    for item in rag.stream(question, history):
        if isinstance(item, Answer):
            final = item
        else:
            console.print(item, end="", markup=False, highlight=False)
    console.print()
    return final


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer from your documents.")],
    index: IndexOpt = None, k: KOpt = None, mode: ModeOpt = None, hybrid: HybridOpt = False, mmr: MmrOpt = None,
    model: ModelOpt = None, adapter: AdapterOpt = None, no_adapter: NoAdapterOpt = False,
    max_new_tokens: MaxTokOpt = None, temperature: TempOpt = None, backend: BackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole Answer as JSON.")] = False,
    show_evidence: Annotated[bool, typer.Option(
        "--show-evidence", help="Print under the answer the sentence of each cited source that supports it.")] = False,
    config: ConfigOpt = None, verbose: VerboseOpt = False,
) -> None:
    """Answer QUESTION from the index, streaming, then list the sources it cited."""
    _setup_logging(verbose)
    from rag_app.config import require_index
    from rag_app.errors import EmptyQuestionError
    from rag_app.pipeline import RagPipeline

    if not question.strip():
        raise EmptyQuestionError("the question is empty; pass a question, e.g. rag ask \"What is ...?\"")
    settings = settings_from_flags(config, verbose, **_generation_overrides(
        index, k, mode, hybrid, mmr, model, adapter, no_adapter, max_new_tokens, temperature, backend))
    require_index(settings)  # before the models load, naming where it looked
    rag = RagPipeline(settings)
    if as_json:
        typer.echo(json.dumps(rag.answer(question).to_dict(), indent=2, ensure_ascii=False))
        return
    console = _console()
    final = _stream_answer(rag, question, (), console)
    _print_abstain_note(final, console, settings.retrieve)
    if show_evidence:
        _print_evidence(final, console)
    _print_sources(final, console)


@app.command()
def chat(
    index: IndexOpt = None, k: KOpt = None, mode: ModeOpt = None, hybrid: HybridOpt = False, mmr: MmrOpt = None,
    model: ModelOpt = None, adapter: AdapterOpt = None, no_adapter: NoAdapterOpt = False,
    max_new_tokens: MaxTokOpt = None, temperature: TempOpt = None, backend: BackendOpt = None,
    config: ConfigOpt = None, verbose: VerboseOpt = False,
) -> None:
    """Chat in the terminal: follow-ups keep context; /sources, /reset, /exit."""
    _setup_logging(verbose)
    from rag_app.config import require_index
    from rag_app.pipeline import RagPipeline, chat_history

    settings = settings_from_flags(config, verbose, **_generation_overrides(
        index, k, mode, hybrid, mmr, model, adapter, no_adapter, max_new_tokens, temperature, backend))
    require_index(settings)  # before the models load, naming where it looked
    rag = RagPipeline(settings)
    console = _console()
    console.print("[dim]Ask about your documents. /sources shows the last answer's sources, /reset starts over, /exit quits.[/dim]")
    turns: list[tuple[str, Any]] = []  # (question, Answer); chat_history picks what a follow-up sees
    last = None
    while True:
        try:
            line = console.input("[bold cyan]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            turns, last = [], None
            console.print("[dim]History cleared.[/dim]")
            continue
        if line == "/sources":
            if last is None:
                console.print("[dim]No answer yet.[/dim]")
            else:
                _print_sources(last, console)
            continue
        if line.startswith("/"):
            console.print("[dim]Commands: /sources /reset /exit[/dim]")
            continue
        console.print("[bold magenta]rag>[/] ", end="")
        try:
            last = _stream_answer(rag, line, chat_history(turns), console)
        except RagError as err:
            console.print(f"[red]Error: {err}[/red]")
            continue
        _print_abstain_note(last, console, settings.retrieve)
        turns.append((line, last))


def dataset_index(dataset: Path, settings: Any, plain_folder: bool = False) -> Path:
    """Ingest DATASET/docs (or, with ``plain_folder``, DATASET itself when it has no docs/) into its cached index.

    ``rag eval`` and ``rag finetune`` take an index, never build one: this
    front door builds it where :func:`rag_app.evaluate.corpus_index` says;
    ingest is incremental, so an unchanged corpus costs a hash check.
    """
    from ingest.pipeline import ingest_folder
    from rag_app.config import StoreConfig
    from rag_app.embeddings import load_embedder
    from rag_app.evaluate import corpus_index

    target = corpus_index(dataset, settings, plain_folder)
    # Always a FAISS folder of its own: with store.backend = "milvus" the set would replace the team's collection.
    own = settings.model_copy(update={"index": target.index, "store": StoreConfig()})
    ingest_folder(target.docs, own, console=_console(stderr=True),
                  embedder=load_embedder(settings.embedding_model))
    return target.index


@app.command()
def finetune(
    datasets: Annotated[Optional[list[Path]], typer.Argument(help="QA set folders (docs/ + qa.jsonl) to train on.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder: adapter, checkpoint, card.")] = TrainConfig.out_dir,
    split: Annotated[str, typer.Option(help="Questions to train on, by split_hint.")] = DataConfig.split,
    max_examples: Annotated[Optional[int], typer.Option(help="Cap on training examples (balanced across sets).")] = DataConfig.max_examples,
    val_fraction: Annotated[float, typer.Option(help="Share of documents held out for validation.")] = DataConfig.val_fraction,
    p_gold: Annotated[float, typer.Option(help="Probability the gold source is shown (else: abstain target).")] = RaftConfig.p_gold,
    distractors: Annotated[int, typer.Option(help="Hard-negative sources per example.")] = RaftConfig.distractors,
    mode: Annotated[Optional[str], typer.Option(
        "--mode", help="Retriever that picks the hard negatives: dense, hybrid or bm25 (default: as configured). "
                       "Train with the mode you serve with.")] = None,
    hybrid: HybridOpt = False,
    quote: Annotated[bool, typer.Option(help="Targets quote the supporting sentence first.")] = RaftConfig.quote,
    inject: Annotated[Optional[float], typer.Option(  # None, not the default: refused with --examples only when given
        help="Share of examples with an instruction planted in one source, which the target ignores "
             f"(prompt-injection resistance; default {RaftConfig.p_inject}; 0 reproduces builds before it).")] = None,
    triples: Annotated[Optional[Path], typer.Option(help="JSONL of {question, answer, context} instead of a QA set.")] = DataConfig.triples,
    examples: Annotated[Optional[Path], typer.Option(help="Train on prebuilt examples (JSONL from --save-examples).")] = DataConfig.examples,
    save_examples: Annotated[Optional[Path], typer.Option(help="Write the built examples to this JSONL.")] = DataConfig.save_examples,
    epochs: Annotated[float, typer.Option(help="Passes over the examples.")] = TrainConfig.epochs,
    max_steps: Annotated[Optional[int], typer.Option(help="Cap on optimizer steps.")] = TrainConfig.max_steps,
    lr: Annotated[float, typer.Option(help=f"Peak learning rate (cosine, warm-up {TrainConfig.warmup_ratio:.0%}).")] = TrainConfig.lr,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = TrainConfig.lora_r,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = TrainConfig.lora_alpha,
    grad_accum: Annotated[int, typer.Option(help="Examples per optimizer step.")] = TrainConfig.grad_accum,
    max_length: Annotated[int, typer.Option(
        help="Longest example in tokens; longer ones are skipped (four 800-character sources take ~850, five ~1,070).")] = TrainConfig.max_length,
    quant: Annotated[str, typer.Option(help="auto, nf4 (QLoRA) or none.")] = TrainConfig.quant,
    no_quant: Annotated[bool, typer.Option("--no-quant", help="Plain LoRA (same as --quant none).")] = False,
    layers: Annotated[str, typer.Option(help="auto, all or top-half. With --init-adapter: all widens it to every layer, else its own layers.")] = TrainConfig.layers,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.")] = FinetuneRequest.resume,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print 3 formatted examples and token stats; no training.")] = FinetuneRequest.dry_run,
    merge: Annotated[bool, typer.Option("--merge", help="Also write OUT/merged: base + adapter as one model.")] = FinetuneRequest.merge,
    eval_examples: Annotated[int, typer.Option(help="Validation examples to score base vs adapter on after training (0: skip).")] = FinetuneRequest.eval_examples,
    seed: Annotated[int, typer.Option(help="Seed for examples, split and order.")] = TrainConfig.seed,
    init_adapter: Annotated[Optional[Path], typer.Option(help="Continue training this adapter instead of a fresh LoRA; default: the shipped one.")] = TrainConfig.init_adapter,
    synthesize: Annotated[Optional[int], typer.Option(
        help="No QA set: the base model writes up to N questions per document folder (filtered; quality in the card).")] = DataConfig.synthesize,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune a LoRA/QLoRA adapter that answers from retrieved sources, cites them, and abstains (RAFT)."""
    _setup_logging(verbose)
    from finetune.recipe import run_finetune
    from rag_app.errors import ConfigError

    settings = settings_from_flags(config, verbose, generate={"model": model},
                                   retrieve={"mode": "hybrid" if hybrid else mode})
    if inject is not None and examples:
        raise ConfigError("--inject applies when examples are built; --examples FILE are used as they were built")
    from rag_app.config import DEFAULT_ADAPTER, SHIPPED_ADAPTER

    if init_adapter is not None and str(init_adapter) == DEFAULT_ADAPTER:
        init_adapter = SHIPPED_ADAPTER  # found in the installed package, like generate.adapter = "default"
    # Every stage's config is built (and so checked) here, before any ingest or model load.
    request = FinetuneRequest(
        data=DataConfig(datasets=tuple(datasets or ()), triples=triples, examples=examples, save_examples=save_examples,
                        split=split, max_examples=max_examples, val_fraction=val_fraction, synthesize=synthesize),
        raft=RaftConfig(p_gold=p_gold, distractors=distractors, quote=quote, seed=seed,
                        **({} if inject is None else {"p_inject": inject})),
        train=TrainConfig(out_dir=out, quant="none" if no_quant else quant, lora_r=lora_r, lora_alpha=lora_alpha,  # type: ignore[arg-type]
                          layers=layers, lr=lr, epochs=epochs, max_steps=max_steps, grad_accum=grad_accum,  # type: ignore[arg-type]
                          max_length=max_length, seed=seed, init_adapter=init_adapter),
        resume=resume, dry_run=dry_run, merge=merge, eval_examples=eval_examples,
    )
    indexes = {d: dataset_index(d, settings, plain_folder=synthesize is not None)
               for d in request.data.datasets} if not (examples or triples) else {}
    if summary := run_finetune(request, settings, indexes):
        typer.echo(summary)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C inside the block (main thread only), so cleanup code runs."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _eval_indexes(docs: Path, runs: list[Any], index: Path | None) -> list[Any]:
    """Point every eval run at an index: ``--index``, or the dataset's cached index (see :func:`dataset_index`).

    Runs that share embedding model and chunking share one index; a
    configuration that chunks differently gets its own.
    """
    from dataclasses import replace

    if index is not None:
        return [replace(r, settings=r.settings.model_copy(update={"index": index})) for r in runs]
    return [replace(r, settings=r.settings.model_copy(update={"index": dataset_index(docs.parent, r.settings)}))
            for r in runs]


@app.command("eval")
def eval_(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder: docs/ + qa.jsonl (id, question, answers, gold_doc_ids).")],
    index: Annotated[Optional[Path], typer.Option("--index", help="Evaluate on this index instead of ingesting DATASET/docs into OUT/index.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate a seeded sample of N questions.")] = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs for recall@k and hit@k, comma-separated.")] = "1,3,5,10",
    config: Annotated[Optional[list[Path]], typer.Option("--config", help="TOML settings of one more configuration to compare (repeatable).")] = None,
    mode: Annotated[Optional[list[str]], typer.Option("--mode", help="dense, hybrid or bm25; repeatable, one configuration each.")] = None,
    retrieval_only: Annotated[bool, typer.Option("--retrieval-only", help="Score retrieval only; the generator is never loaded.")] = False,
    split: Annotated[str, typer.Option(help="Questions by split_hint: test, train or all.")] = "all",
    unanswerable: Annotated[float, typer.Option(help="Fraction of questions whose gold docs are withheld (the right reply abstains).")] = 0.0,
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="LoRA adapter of the base configuration (--config files set their own).")] = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Base configuration answers without an adapter.")] = False,
    name: Annotated[str, typer.Option("--name", help="Label of the base configuration in the report and records (e.g. the adapter it carries).")] = "base",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default eval-out/<dataset>); re-running resumes.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample and the --unanswerable draw.")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate retrieval and answers on DATASET; write report.json, report.md and plots to OUT."""
    _setup_logging(verbose)
    from rag_app.errors import ConfigError
    from rag_app.evaluate import EvalConfig, evaluate, load_dataset, plan_runs
    from rag_app.evaluate.report import summary_table

    try:
        ks = tuple(int(part) for part in k.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--k takes comma-separated integers, e.g. 1,3,5,10; got {k!r}") from None
    if adapter and no_adapter:
        raise ConfigError("pass --adapter DIR or --no-adapter, not both")
    eval_config = EvalConfig(ks=ks, retrieval_only=retrieval_only, unanswerable=unanswerable, seed=seed)
    base = settings_from_flags(None, verbose, generate={"adapter": "none" if no_adapter else adapter})
    labels = [name, *(p.stem for p in config or [])]
    if len(set(labels)) < len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise ConfigError(f"two configurations are named {twice!r}: give --name another label or rename a --config file")
    variants = [(name, base)] + [(p.stem, settings_from_flags(p, verbose)) for p in config or []]
    runs = plan_runs(variants, mode or ())
    ds = load_dataset(dataset, split=split, limit=limit, seed=seed, index=index)
    out_dir = out or Path("eval-out") / ds.name
    runs = _eval_indexes(ds.docs_dir, runs, index)
    with _sigterm_as_interrupt():  # `timeout`, a job scheduler: also leave the report of what finished
        report, interrupted = evaluate(ds, runs, eval_config, out_dir, console=_console(stderr=True),
                                       command=" ".join(["rag", *sys.argv[1:]]))
    console = _console()
    if not console.is_terminal:
        console.width = 160  # a log file or pipe: don't squeeze the table to 80 columns
    console.print(summary_table(report))
    typer.echo(f"Report: {out_dir / 'report.md'} (per question: {out_dir / 'report.json'})")
    if interrupted:
        typer.echo("Interrupted: the report covers the questions that finished; run the same command to resume.", err=True)
        raise typer.Exit(130)


@app.command()
def ui(
    index: IndexOpt = None,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Chat with your documents in the browser (Streamlit): streamed answers, sources, upload."""
    _setup_logging(verbose)
    from rag_app.store_protocol import store_exists
    from ui.launch import check_port_free, serve, streamlit_command, url_for

    settings = settings_from_flags(config, verbose, index=index)  # a bad setting fails here, not in the page
    check_port_free(host, port)
    console = _console()
    console.print(f"[bold]rag ui[/] serving {settings.index} at [bold cyan]{url_for(host, port)}[/]  (Ctrl-C to stop)")
    if not store_exists(settings):
        console.print(f"[dim]No index at {settings.index} yet: add documents in the page, or run rag ingest DIR.[/dim]")
    code = serve(streamlit_command(host, port, settings.index, config, verbose))
    if code not in (0, -2, 130):  # -2 / 130: stopped with Ctrl-C
        raise typer.Exit(code)


@app.command()
def serve(
    index: IndexOpt = None,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default 127.0.0.1; any other needs --api-key-env).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to listen on (default 8000).")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(
        help="Name of the environment variable holding the API key clients must send as a Bearer token.")] = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the index as an OpenAI-compatible API: /v1/chat/completions, /v1/models, /v1/retrieve, /health."""
    _setup_logging(verbose)
    from rag_app.server import run_server
    from ui.launch import check_port_free

    settings = settings_from_flags(config, verbose, index=index,
                                   serve={"host": host, "port": port, "api_key_env": api_key_env})
    settings.serve.api_key()  # no key beyond loopback: one line before anything loads
    check_port_free(settings.serve.host, settings.serve.port)
    run_server(settings, console=_console(stderr=True))


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app()
    except RagError as err:
        typer.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

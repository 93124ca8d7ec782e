"""The chat page: ``rag ui`` runs this file with ``streamlit run``.

A thin view over :class:`rag_app.pipeline.RagPipeline`: Streamlit re-executes
this script on every interaction, so everything expensive lives elsewhere.
Models are loaded once per server process (``st.cache_resource``), the index
snapshot and the pipeline over it once per browser session (reopened when an
ingest commits a newer generation), and the chat in ``st.session_state``. Sidebar settings rebuild
the frozen :class:`~rag_app.config.Settings` on each run; only a change of
model or adapter loads other weights.

Every :class:`~rag_app.errors.RagError` is shown in the page as its one-line
message (which says how to fix it), never as a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from rag_app.config import Settings
from rag_app.errors import RagError
from rag_app.pipeline import Answer, RagPipeline, chat_history
from rag_app.quiet import quiet_libraries
from rag_app.store_protocol import ChunkStore, store_exists
from rag_app.store_protocol import open_store as open_configured_store
from ui import render
from ui.resources import (
    ModelFactory,
    Turn,
    default_factory,
    example_questions,
    generator_key,
    generator_label,
    parse_args,
    settings_from_args,
    with_overrides,
)
from ui.upload import ingest_uploads, supported_extensions

log = logging.getLogger("ui.app")

USER_AVATAR = ":material/person:"
ASSISTANT_AVATAR = ":material/auto_stories:"


# --- models and index ---------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_embedder(factory_key: str, model: str, _factory: ModelFactory, _settings: Settings) -> Any:
    embedder = _factory.embedder(_settings)
    embedder.embed_query("warm up")  # the first call pays ~1 s of one-time setup: here, under the spinner
    return embedder


@st.cache_resource(show_spinner=False, max_entries=3)
def _cached_generator(factory_key: str, key: str, _factory: ModelFactory, _settings: Settings) -> Any:
    return _factory.generator(_settings)


def _factory_key(factory: ModelFactory) -> str:
    return f"{factory.name}:{id(factory)}"


def load_embedder(settings: Settings, factory: ModelFactory) -> Any:
    with st.spinner(f"Loading the embedding model {settings.embedding_model}…"):
        return _cached_embedder(_factory_key(factory), settings.embedding_model, factory, settings)


def load_generator(settings: Settings, factory: ModelFactory) -> Any:
    label = generator_label(settings)
    with st.spinner(f"Loading the generator {label}… (the first start prepares the bundled model, about 20 s)"):
        return _cached_generator(_factory_key(factory), generator_key(settings), factory, settings)


def open_store(settings: Settings, embedder: Any) -> ChunkStore | None:
    """This session's index snapshot; reopened once an ingest has committed a newer one."""
    state = st.session_state
    key = str(Path(settings.index).expanduser().resolve())
    store: ChunkStore | None = state.get("store")
    if store is not None and (state.get("store_key") != key or store.is_stale()):
        store.close()
        store = state["store"] = None
    if store is None and store_exists(settings):
        store = open_configured_store(settings, embedding_model=embedder.model_name)
        state["store"], state["store_key"] = store, key
    return store


def session_pipeline(settings: Settings, store: ChunkStore, embedder: Any, generator: Any) -> RagPipeline:
    """This session's pipeline, built again only when its settings, snapshot or models change.

    Kept per session, not in ``st.cache_resource``: it holds this session's
    index snapshot, which :func:`open_store` closes once a newer one is
    committed; another session must never answer from it. The key holds the
    objects themselves (by identity), and the pipeline keeps them alive, so
    an id is never reused while it is cached.

    Raises:
        RagError: a part cannot be loaded (a reranker that is not installed).
    """
    state = st.session_state
    key = (settings.model_dump_json(), id(store), id(embedder), id(generator))
    if state.get("pipeline_key") != key:
        state["pipeline"] = RagPipeline(settings, store=store, embedder=embedder, generator=generator)
        state["pipeline_key"] = key
    return state["pipeline"]


# --- sidebar ------------------------------------------------------------------------------------


ABSTAIN_LEVELS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)  # generate.abstain_threshold choices (docs/EVAL.md)


def _new_chat() -> None:
    st.session_state["turns"] = []
    st.session_state.pop("last_answer", None)


def sidebar_settings(base: Settings) -> Settings:
    """Retrieval and generation widgets; returns the settings they describe."""
    r, g = base.retrieve, base.generate
    with st.sidebar.expander("Retrieval", icon=":material/manage_search:"):
        top_k = st.slider("Sources per answer", 1, max(10, r.top_k), r.top_k, key="top_k")
        mode = st.segmented_control(
            "Search", ["dense", "hybrid", "bm25"], default=r.mode, required=True, key="mode",
            format_func={"dense": "Dense", "hybrid": "Hybrid", "bm25": "BM25"}.get,
            help="Dense: meaning (MiniLM). BM25: exact words. Hybrid: both, fused by rank.",
        )  # fmt: skip
        mmr = st.toggle("Diverse sources (MMR)", r.mmr, key="mmr", help="Skip near-duplicate passages.")
    with st.sidebar.expander("Generation", icon=":material/tune:"):
        temperature = st.slider("Temperature", 0.0, 1.5, float(g.temperature), 0.05, key="temperature",
                                help="0 = always the most likely words (reproducible).")
        max_new = st.slider("Max answer tokens", 16, max(1024, g.max_new_tokens), g.max_new_tokens, 8, key="max_new")
        adapter: dict[str, Any] = {}
        on = True
        if g.adapter_path:
            on = st.toggle("Fine-tuned adapter", True, key="adapter", help=f"LoRA adapter at {g.adapter_path}")
            adapter = {} if on else {"adapter": "none"}
        elif g.merged_model_dir is not None:
            st.caption(f"Fine-tuned model: {g.model}")
        else:
            st.caption("No adapter configured: the base model answers.")
        if on and g.fine_tuned:  # where the threshold applies (GenerateConfig.applied_abstain_threshold)
            levels = sorted({None, *ABSTAIN_LEVELS, g.abstain_threshold}, key=lambda v: -1.0 if v is None else v)
            adapter["abstain_threshold"] = st.select_slider(
                "Abstain threshold", levels, g.abstain_threshold, key="abstain",
                format_func=lambda v: "model decides" if v is None else f"{v:.2f}",
                help="Say \"I don't know\" when the model gives that reply at least this probability: "
                     "lower abstains more often (also on questions the sources do answer), higher answers more.",
            )  # fmt: skip
    return with_overrides(
        base,
        retrieve={"top_k": top_k, "mode": mode or r.mode, "mmr": mmr},
        generate={"temperature": temperature, "max_new_tokens": max_new, **adapter},
    )


def sidebar_index(store: ChunkStore) -> None:
    info = store.info()
    with st.sidebar.container(border=True):
        st.markdown("**Index**", help=f"`{info['index']}`  \nbuilt from `{info['source_dir'] or '?'}`")
        docs, chunks = st.columns(2)
        docs.metric("Documents", f"{info['documents']:,}")
        chunks.metric("Passages", f"{info['chunks']:,}")
        model = render.escape_markdown(info["embedding_model"].split("/")[-1])
        st.caption(f"{model} · updated {render.time_ago(info['updated'])}")


def sidebar_timings() -> None:
    answer = st.session_state.get("last_answer")
    if answer is None:
        return
    with st.sidebar.container(border=True):
        st.markdown("**Last answer**")
        rows = render.timing_rows(answer.timings)
        for pair in (rows[0:2], rows[2:4]):
            for column, row in zip(st.columns(2), pair):
                column.markdown(f":gray[:small[{row.label}]]  \n**{row.value}**")
        adapter = f" + adapter {Path(answer.adapter).name}" if answer.adapter else ""
        st.caption(f"{render.escape_markdown(answer.model)}{render.escape_markdown(adapter)} · {answer.timings.tokens} tokens")


def sidebar_download(slot: Any, settings: Settings) -> None:
    turns = st.session_state.get("turns", [])
    slot.download_button(
        "Export", render.conversation_markdown(turns, str(settings.index)), file_name="rag-chat.md",
        mime="text/markdown", icon=":material/download:", on_click="ignore", disabled=not turns, width="stretch",
        help="Download this chat as Markdown, with its sources",
    )  # fmt: skip


# --- upload -------------------------------------------------------------------------------------


def upload_panel(settings: Settings, embedder: Any, where: Any) -> None:
    """File picker + "Add to index": saves into the source folder and runs ingest with a status box."""
    state = st.session_state
    state.setdefault("uploader_round", 0)
    with where:
        files = st.file_uploader(
            "Add documents", type=supported_extensions(), accept_multiple_files=True,
            key=f"uploader_{state['uploader_round']}", help="Kept with the index (its uploads/ folder), then indexed.",
        )  # fmt: skip
        clicked = st.button("Add to index", type="primary", disabled=not files, icon=":material/add:", width="stretch")
        if clicked and files:
            with st.status(f"Indexing {len(files)} file{'s' if len(files) > 1 else ''}…", expanded=True) as status:
                try:
                    result = ingest_uploads([(f.name, f.getvalue()) for f in files], settings, embedder)
                except RagError as err:
                    status.update(label="Nothing was added", state="error")
                    state["upload_message"] = ("error", f"{err}. The index is unchanged.")
                else:
                    status.update(label="Done", state="complete")
                    state["upload_message"] = _upload_message(result)
            state["uploader_round"] += 1  # a fresh, empty picker
            st.rerun()


def upload_outcome() -> None:
    """What the last upload did, shown once at the top of the page (the sidebar panel may be closed)."""
    message = st.session_state.pop("upload_message", None)
    if message:
        kind, text = message
        show = {"success": st.success, "warning": st.warning, "error": st.error}[kind]
        show(text, icon={"success": ":material/task_alt:", "warning": ":material/warning:", "error": ":material/error:"}[kind])


def _upload_message(result: Any) -> tuple[str, str]:
    lines = render.report_lines(result.report) if result.report is not None else []
    lines += [f"**Rejected** {render.escape_markdown(n)}: {render.escape_markdown(why)}" for n, why in result.rejected]
    lines += [f"Saved {render.escape_markdown(orig)} as **{render.escape_markdown(new)}**: a different file named "
              f"{render.escape_markdown(orig)} is already there." for orig, new in result.renamed]
    lines += [f"{render.escape_markdown(n)}: already in the index, unchanged." for n in result.unchanged]
    if result.rolled_back:
        names = ", ".join(render.escape_markdown(n) for n in result.rolled_back)
        lines.append(f"Not added (could not be read): {names}. The rest of the index is intact.")
    bad = result.rejected or result.rolled_back
    kind = "warning" if bad else "success"
    if not result.saved and not result.unchanged:
        kind = "error"
    return kind, "  \n".join(lines) or "Nothing to add."


# --- chat ---------------------------------------------------------------------------------------


def _ask(question: str) -> None:
    st.session_state["pending_question"] = question


def empty_state(store: ChunkStore) -> None:
    info = store.info()
    st.markdown("## Ask your documents")
    docs = f"{info['documents']:,} document{'s' if info['documents'] != 1 else ''}"
    st.markdown(
        f"Answers come only from the **{docs}** in your index, with numbered sources you can open. "
        "When the documents don't hold the answer, the assistant says so."
    )
    examples = example_questions(info.get("source_dir"))
    if examples:
        st.caption("Try one of these")
        with st.container(horizontal=True):
            for i, q in enumerate(examples):
                st.button(q, key=f"example_{i}", on_click=_ask, args=(q,), icon=":material/chat_bubble:")
    else:
        names = sorted(store.files())
        shown = ", ".join(f"`{n}`" for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        st.caption(f"Ask about what they contain: names, dates, definitions, steps. Indexed: {shown}.")


def render_sources(answer: Answer, latest: bool) -> None:
    if not answer.sources:
        return
    cited = [s for s in answer.sources if s.number in answer.citations]
    n = len(answer.sources)
    if answer.abstained:
        st.caption(f"**Closest passages** · {n} searched")
    else:
        st.caption(f"**Sources** · {n} retrieved · {len(cited) or 'none'} cited")
    # Open one passage of the newest answer, so its evidence is in view: the first cited, else the best match.
    shown = None if answer.abstained else (cited[0].number if cited else answer.sources[0].number)
    for source in answer.sources:
        is_cited = source.number in answer.citations
        with st.expander(
            render.source_label(source, is_cited),
            expanded=latest and source.number == shown,
            icon=":material/check_circle:" if is_cited else ":material/description:",
        ):
            st.markdown(render.source_body(source, render.evidence_spans(answer, source.number)))


def render_answer(answer: Answer, settings: Settings, latest: bool) -> None:
    valid = {s.number for s in answer.sources}
    if answer.withheld_for:
        st.error(render.escape_markdown(answer.text), icon=":material/gpp_bad:")
    elif answer.abstained:
        st.info(render.mark_citations(answer.text, valid), icon=":material/search_off:")
        st.caption(render.abstain_note(answer, settings.retrieve.min_score, settings.retrieve.mode))
    else:
        st.markdown(render.answer_markdown(answer.text, valid))
    if answer.invalid_citations:
        st.warning(render.invalid_citation_note(answer.invalid_citations, len(answer.sources)), icon=":material/warning:")
    if answer.unsupported:
        st.warning(render.UNSUPPORTED_NOTE, icon=":material/warning:")
    for claim in answer.unsupported_claims:
        st.warning(render.unsupported_claim_note(claim), icon=":material/warning:")
    for recited in answer.recited:
        st.caption(render.recited_note(recited))
    if answer.removed_links:
        st.caption(render.removed_links_note(answer.removed_links))
    render_sources(answer, latest)


def render_turn(turn: Turn, settings: Settings, latest: bool) -> None:
    with st.chat_message("user", avatar=USER_AVATAR):
        st.markdown(render.escape_markdown(turn.question))
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        if turn.answer is not None:
            render_answer(turn.answer, settings, latest)
        else:
            st.error(turn.error, icon=":material/error:")


def stream_answer(pipeline: RagPipeline, question: str, history: Sequence[tuple[str, str]], settings: Settings) -> Answer:
    """Show the answer as its tokens arrive, then replace it with the finished answer and sources."""
    body = st.empty()
    body.markdown(":gray[:shimmer[Searching your documents…]]")
    text, answer = "", None
    for item in pipeline.stream(question, history):
        if isinstance(item, Answer):
            answer = item
        else:
            text += item
            body.markdown(render.mark_citations(text) + render.CURSOR)
    if answer is None:  # the pipeline always ends with its Answer; a bug otherwise
        raise RuntimeError("the pipeline stream ended without an Answer")
    with body.container():
        render_answer(answer, settings, latest=True)
    return answer


def chat(settings: Settings, store: ChunkStore, embedder: Any, generator: Any) -> None:
    state = st.session_state
    turns: list[Turn] = state.setdefault("turns", [])
    if generator is None:  # the load error is on the page; nothing can be answered
        st.chat_input("The generator could not be loaded", disabled=True, key="question")
        return
    question = st.chat_input("Ask a question about your documents…", key="question")
    question = question or state.pop("pending_question", None)
    # Always the first element, filled or not: when the first question arrives, this slot empties at once
    # instead of the welcome text lingering (faded) above the answer until the run ends.
    intro = st.empty()
    if not turns and not question:
        with intro.container():
            empty_state(store)
    for i, turn in enumerate(turns):
        render_turn(turn, settings, latest=(i == len(turns) - 1 and not question))
    if not question:
        return
    turn = Turn(question)
    with st.chat_message("user", avatar=USER_AVATAR):
        st.markdown(render.escape_markdown(question))
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        try:
            pipeline = session_pipeline(settings, store, embedder, generator)
            history = chat_history([(t.question, t.answer) for t in turns])
            turn.answer = stream_answer(pipeline, question, history, settings)
            state["last_answer"] = turn.answer
        except RagError as err:
            turn.error = str(err)
            st.error(turn.error, icon=":material/error:")
    turns.append(turn)


def no_index(settings: Settings, embedder: Any) -> None:
    st.markdown("## Add documents to start")
    st.info(
        f"No index at `{settings.index}` yet. Build one with:\n\n"
        f"```\nrag ingest DIR --index {settings.index}\n```\n\nor add files below: they are indexed right here.",
        icon=":material/folder_open:",
    )
    upload_panel(settings, embedder, st.container(border=True))
    st.chat_input("Add documents first…", disabled=True, key="question")


# --- page ---------------------------------------------------------------------------------------


def page(base: Settings, factory: ModelFactory) -> None:
    with st.sidebar:
        st.markdown("### :material/auto_stories: rag_app")
        st.caption("Answers from your documents, with sources. Runs offline.")
        new, download = st.columns(2)
        new.button("New chat", icon=":material/edit_square:", on_click=_new_chat, width="stretch")
    settings = sidebar_settings(base)
    upload_outcome()
    embedder = load_embedder(settings, factory)
    store = open_store(settings, embedder)
    if store is None:
        no_index(settings, embedder)
    else:
        sidebar_index(store)
        upload_panel(settings, embedder, st.sidebar.expander("Add documents", icon=":material/upload_file:"))
        try:
            generator = load_generator(settings, factory)  # now, not at the first question: answers start fast
        except RagError as err:
            about_adapter = settings.generate.adapter_path and "adapter" in str(err).lower()
            hint = " In the page: switch off *Fine-tuned adapter* under Generation." if about_adapter else ""
            st.error(str(err) + hint, icon=":material/error:")
            generator = None
        chat(settings, store, embedder, generator)
    sidebar_timings()
    sidebar_download(download, settings)


def _log_to_terminal() -> None:
    """``rag ui --verbose``: what the library logs (loading, retrieval, ingest) goes to the terminal."""
    for name in ("rag_app", "ingest", "ui"):
        logger = logging.getLogger(name)
        if not logger.handlers:  # the script reruns on every interaction: add the handler once
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None, factory: ModelFactory | None = None) -> None:
    """Render the page once (Streamlit calls the script on every interaction).

    Args:
        argv: the flags ``rag ui`` passes after ``--`` (``--index``, ``--config``, ``--verbose``).
        factory: where models come from; tests pass fakes, ``rag ui`` the real ones.
    """
    st.set_page_config(page_title="Chat with your documents · rag_app", page_icon=":material/auto_stories:",
                       layout="centered", initial_sidebar_state="expanded")
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = parse_args(argv).verbose
    quiet_libraries(verbose)
    if verbose:
        _log_to_terminal()
    try:
        page(settings_from_args(argv), factory or default_factory())
    except RagError as err:
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # a bug: say so in the page, keep the traceback for the terminal
        log.exception("unexpected error while rendering the page")
        st.error(f"Something went wrong ({type(err).__name__}: {err}). The terminal running rag ui has the details.",
                 icon=":material/bug_report:")


if __name__ == "__main__":
    main()

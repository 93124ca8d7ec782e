"""``rag serve``: rag_app's answers behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

Why OpenAI-compatible: chat clients that speak that API (Open WebUI and the
like, the ``openai`` Python client) can then answer from a user's documents
with no code of ours. The answers are :class:`~rag_app.pipeline.RagPipeline`'s,
retrieved, cited and abstaining, as ``rag ask`` gives them.

Endpoints:

* ``POST /v1/chat/completions`` (``stream`` true or false). The last message
  is the question; earlier user/assistant pairs are the chat history, picked
  by :func:`rag_app.pipeline.chat_history` as in ``rag chat``; a client's
  system message is ignored (the grounding rules are rag_app's own), and so
  are sampling fields (the server's ``generate`` settings apply). Two extra
  fields, on the response or on the final stream chunk: ``sources`` (the
  numbered sources shown to the model: file, location, score, text, whether
  cited) and ``rag`` (citations, abstained, warnings, timings).
* ``GET /v1/models``: one model, :data:`MODEL_ID`.
* ``POST /v1/retrieve``: ``{"query": ..., "k": ...}`` -> chunks with scores and sources.
* ``GET /health``: open without a key, for load balancers.

The generator is one model, so answers are generated one at a time in
arrival order (:class:`AnswerLine`); past ``serve.queue_size`` waiting
requests the answer is 503, so a burst waits or is refused, never crashes.
Retrieval alone (``/v1/retrieve``) does not wait for generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag_app.config import ServeConfig
from rag_app.errors import ContextWindowError, EmptyQuestionError, GeneratorServerError, RagError
from rag_app.pipeline import Answer, RagPipeline, Source, chat_history
from rag_app.prompts import is_abstention
from rag_app.store_protocol import open_store

log = logging.getLogger(__name__)

MODEL_ID = "rag_app"
WITHHELD_PREFIX = "Answer withheld:"  # how rag_app.guard.withheld_message begins, when a client sends it back
_END = object()


class ApiError(Exception):
    """An HTTP error answered as OpenAI's ``{"error": {"message", "type"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """What is read of a chat completion request; other fields (sampling, tools) are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    k: int | None = Field(default=None, ge=1, le=100)


class AnswerLine:
    """One generation at a time, in arrival order, with at most ``size`` requests waiting.

    A single worker thread runs the jobs, so the pipeline and its generator
    are never entered twice at once; a job runs to its end even when its
    client has gone, which frees the line within ``max_new_tokens``.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-answer")
        self._lock = threading.Lock()
        self.pending = 0  # running + waiting

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``. Raises: ApiError 503 when ``size`` requests already wait."""
        with self._lock:
            if self.pending > self.size:
                raise ApiError(503, f"busy: {self.pending - 1} requests are waiting for the generator; retry shortly",
                               "server_busy")
            self.pending += 1

        def run() -> None:
            try:
                job()
            finally:
                with self._lock:
                    self.pending -= 1

        self._pool.submit(run)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class LivePipeline:
    """The pipeline over the index's live generation: reopened once ``rag ingest`` commits a newer one.

    A server runs for days while its folder is re-ingested; without this it
    would answer from the content it started with. Checking costs one small
    file read per request; the embedder and generator are kept.
    """

    def __init__(self, rag: RagPipeline) -> None:
        self._rag = rag
        self._lock = threading.Lock()

    def get(self) -> RagPipeline:
        with self._lock:
            if self._rag.store.is_stale():
                old = self._rag
                store = open_store(old.settings, embedding_model=old.embedder.model_name)
                self._rag = RagPipeline(old.settings, store=store, embedder=old.embedder, generator=old.generator)
                log.info("index %s changed: now serving %s", old.settings.index, store.gen_dir.name)
            return self._rag


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if any(part.get("type") != "text" for part in content):
        raise ApiError(400, "only text message content is supported")
    return "".join(str(part.get("text", "")) for part in content)


def conversation(messages: Sequence[_Message], limits: ServeConfig) -> tuple[str, list[tuple[str, str]]]:
    """``(question, history)`` of a chat request: the last user message, and the earlier answered turns.

    Raises:
        ApiError: 400 for too many messages, a last message that is not the user's, a question over the limit.
    """
    if len(messages) > limits.max_messages:
        raise ApiError(400, f"at most {limits.max_messages} messages per request, got {len(messages)}")
    if messages[-1].role != "user":
        raise ApiError(400, "the last message must be the user's question")
    question = _text(messages[-1].content).strip()
    if not question:
        raise ApiError(400, "the question (the last user message) is empty")
    if len(question) > limits.max_question_chars:
        raise ApiError(400, f"the question is {len(question)} characters, over the limit of {limits.max_question_chars}")
    turns: list[tuple[str, Answer | None]] = []
    for message in messages[:-1]:
        text = _text(message.content).strip()
        if message.role == "user":
            turns.append((text, None))
        elif message.role == "assistant" and turns and turns[-1][1] is None:
            turns[-1] = (turns[-1][0], _past_answer(turns[-1][0], text))
    return question, chat_history(turns)


def _past_answer(question: str, text: str) -> Answer:
    """An earlier reply as :func:`chat_history` judges it: abstained, withheld, or an answer."""
    return Answer(question=question, text=text, sources=[], citations=[], invalid_citations=[],
                  abstained=is_abstention(text), skipped_generation=False,
                  withheld_for=[0] if text.startswith(WITHHELD_PREFIX) else [])


def source_dict(source: Source, cited: bool) -> dict[str, Any]:
    """One entry of the ``sources`` field."""
    c = source.chunk
    return {"number": source.number, "source": c.source, "doc_id": c.doc_id, "location": c.location,
            "page": c.page, "heading": c.heading, "start": c.start, "end": c.end,
            "score": source.score, "dense_score": source.dense_score, "text": c.text, "cited": cited}


def answer_fields(answer: Answer) -> dict[str, Any]:
    """The ``sources`` and ``rag`` fields a response carries beside OpenAI's."""
    return {
        "sources": [source_dict(s, s.number in answer.citations) for s in answer.sources],
        "rag": {"citations": answer.citations, "invalid_citations": answer.invalid_citations,
                "abstained": answer.abstained, "skipped_generation": answer.skipped_generation,
                "withheld_for": answer.withheld_for, "warnings": answer.warnings,
                "coverage": answer.coverage, "not_covered": answer.not_covered,
                "model": answer.model, "adapter": answer.adapter, "timings": asdict(answer.timings)},
    }


def _error_for(err: BaseException) -> ApiError:
    if isinstance(err, ApiError):
        return err
    if isinstance(err, (EmptyQuestionError, ContextWindowError)):
        return ApiError(400, str(err))
    if isinstance(err, GeneratorServerError):
        return ApiError(502, str(err), "generator_error")
    if isinstance(err, RagError):
        return ApiError(500, str(err), "server_error")
    log.error("answering failed", exc_info=err)
    return ApiError(500, f"internal error ({type(err).__name__}); see the server's log", "server_error")


def create_app(rag: RagPipeline, limits: ServeConfig, api_key: str | None = None) -> Any:
    """The FastAPI app serving ``rag``; ``api_key`` (None: no key) is required as a Bearer token on /v1.

    Args:
        rag: the pipeline, with its generator already loaded or loading lazily.
        limits: body, question, message-count and queue limits.
        api_key: the key clients must send; :meth:`ServeConfig.api_key` decides whether one is needed.
    """
    live = LivePipeline(rag)
    line = AnswerLine(limits.queue_size)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        line.close()

    app = FastAPI(title="rag_app", summary="Answers from your documents, OpenAI-compatible", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, err: ApiError) -> Any:
        headers = {"Retry-After": "5"} if err.status == 503 else ({"WWW-Authenticate": "Bearer"} if err.status == 401 else None)
        return JSONResponse({"error": {"message": err.message, "type": err.kind}}, status_code=err.status, headers=headers)

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send the header Authorization: Bearer <key>", "invalid_api_key")

    async def read_json(request: Request, model: type[BaseModel]) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise ApiError(413, f"the request body is over {limits.max_body_bytes} bytes", "request_too_large")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limits.max_body_bytes:
                raise ApiError(413, f"the request body is over {limits.max_body_bytes} bytes", "request_too_large")
        try:
            return model.model_validate_json(bytes(body))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(400, f"{where}: {first['msg']}") from None

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": MODEL_ID, "pending": line.pending, "queue_size": limits.queue_size}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": started, "owned_by": "rag_app"}]}

    @app.post("/v1/retrieve", dependencies=[Depends(authorised)])
    async def retrieve(request: Request) -> dict[str, Any]:
        req = await read_json(request, RetrieveRequest)
        if not req.query.strip():
            raise ApiError(400, "query is empty")
        if len(req.query) > limits.max_question_chars:
            raise ApiError(400, f"the query is {len(req.query)} characters, over the limit of {limits.max_question_chars}")
        try:  # FAISS and SQLite reads: they need not wait in the answer line
            hits = await asyncio.to_thread(lambda: live.get().retriever.retrieve(req.query.strip(), req.k))
        except Exception as err:
            raise _error_for(err) from None
        return {"object": "list", "query": req.query, "chunks": [
            {"rank": h.rank, **source_dict(Source(h.rank, h.chunk, h.score, h.dense_score), cited=False)} for h in hits]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(request: Request) -> Any:
        req = await read_json(request, ChatRequest)
        question, history = conversation(req.messages, limits)
        items = _answer_in_line(line, live, question, history)
        first = await items.__anext__()  # an error before any text is still an HTTP status
        if isinstance(first, BaseException):
            raise _error_for(first)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            return StreamingResponse(_sse(first, items, reply_id, created), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        answer = first
        async for item in items:
            if isinstance(item, BaseException):
                raise _error_for(item)
            answer = item
        assert isinstance(answer, Answer)
        return {"id": reply_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": finish_reason(answer)}], **answer_fields(answer)}

    return app


async def _answer_in_line(line: AnswerLine, live: LivePipeline, question: str,
                          history: list[tuple[str, str]]) -> AsyncIterator[Any]:
    """The pipeline's stream (pieces, then the Answer; or an exception), run in its turn on the answer line."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def job() -> None:
        try:
            for item in live.get().stream(question, history):
                put(item)
        except Exception as err:  # handed to the request, which answers it
            put(err)
        finally:
            put(_END)

    line.submit(job)
    while (item := await queue.get()) is not _END:
        yield item


def finish_reason(answer: Answer) -> str:
    """OpenAI's ``finish_reason``: ``length`` where the reply ran to max_new_tokens, else ``stop`` (a loop cut included)."""
    return "length" if answer.finish == "length" else "stop"


def _chunk(reply_id: str, created: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    body = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(first: Any, items: AsyncIterator[Any], reply_id: str, created: int) -> AsyncIterator[str]:
    """Server-sent events as OpenAI streams them; the final chunk carries ``sources`` and ``rag``."""
    yield _chunk(reply_id, created, {"role": "assistant", "content": ""})
    item = first
    while True:
        if isinstance(item, Answer):
            yield _chunk(reply_id, created, {}, finish_reason(item), **answer_fields(item))
            break
        if isinstance(item, BaseException):  # after text was sent: OpenAI clients raise on an error event
            err = _error_for(item)
            yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.kind}})}\n\n"
            break
        yield _chunk(reply_id, created, {"content": item})
        try:
            item = await items.__anext__()
        except StopAsyncIteration:
            break
    yield "data: [DONE]\n\n"


def run_server(settings: Any, console: Any = None) -> None:
    """Load the pipeline and its generator, then serve until Ctrl-C (the one call ``rag serve`` makes).

    Raises:
        ConfigError: no API key for an address beyond loopback.
        IndexNotFoundError, ModelNotFoundError, GeneratorServerError: as loading the pipeline raises them.
    """
    import uvicorn

    cfg = settings.serve
    api_key = cfg.api_key()  # refuses a non-loopback address without one, before anything loads
    rag = RagPipeline(settings)
    _ = rag.generator  # load now: the first request should not wait for it, nor find it broken
    if console is not None:
        url = f"http://{'[' + cfg.host + ']' if ':' in cfg.host else cfg.host}:{cfg.port}/v1"
        console.print(f"[bold]rag serve[/] {settings.index} at [bold cyan]{url}[/] as model {MODEL_ID!r}"
                      f"{' (API key required)' if api_key else ''}  (Ctrl-C to stop)")
    level = "info" if logging.getLogger("rag_app").isEnabledFor(logging.INFO) else "warning"  # --verbose: each request
    uvicorn.run(create_app(rag, cfg, api_key), host=cfg.host, port=cfg.port, log_level=level)

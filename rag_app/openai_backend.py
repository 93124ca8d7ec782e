"""A model behind an OpenAI-compatible server as the generator (``generate.backend = "openai"``).

Why: past one machine the model runs in a server built for it (vLLM, TGI,
llama.cpp's server, Ollama: batching, GPUs, 70B weights) and rag_app only
sends it the prompt. The messages are :func:`rag_app.prompts.build_messages`'
own, sent as chat messages, so the server applies the model's chat template;
citations, the guards and abstention detection stay in the pipeline, which
sees one more :class:`~rag_app.generation.Generator`.

What differs from the in-process backends:

* Token counts are estimated, from UTF-8 bytes (:data:`BYTES_PER_TOKEN`): the
  server's tokenizer is unknown here, and the servers that can count
  (llama.cpp's ``/tokenize``, vLLM's, TGI's) each do it differently, while
  Ollama and OpenAI cannot; a round trip per count would also cost more than
  the packing it serves. Bytes rather than characters, because a character of
  Chinese or Cyrillic is several bytes and usually more than one token. The
  estimate errs high for English prose and code, so sources are packed with
  room to spare; a prompt it still underestimates is refused by the server
  with a one-line error that says what to lower.
* No ``abstain_threshold``: it forces or forbids the first token from its
  probability, a control over sampling that servers do not offer; the
  setting is refused (:class:`~rag_app.config.GenerateConfig`).
* No adapter: a server serves its own weights (serve a merged fine-tune).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Generator as PieceStream, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rag_app.config import GenerateConfig
from rag_app.errors import ConfigError, GeneratorServerError
from rag_app.repetition import Ending, Reply, server_finish

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]

BYTES_PER_TOKEN = 3.0  # of UTF-8 text; below the tokenizers measured on English, code, German (docs/BENCHMARKS.md)
MESSAGE_OVERHEAD = 8  # tokens a chat template adds per message (role markers, newlines), rounded up
DEFAULT_CONTEXT_WINDOW = 4096  # as the in-process backends; set generate.context_window to the server's
# End-of-turn markers of the template families served (ChatML, Llama 3), in case a server's
# template leaves them in the text; OpenAI itself accepts at most four.
STOP = ["<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|end_of_text|>"]


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` takes, estimated high from its UTF-8 length (see the module docstring)."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


class OpenAIGenerator:
    """A served model behind the :class:`~rag_app.generation.Generator` protocol.

    Args:
        client: an ``openai.OpenAI`` client for the server.
        model: the served model's id, sent with every request.
        base_url: the server's URL, for messages.
        context_window: prompt + answer tokens the server accepts.
        seed: sent when sampling (temperature > 0), for servers that honour it.

    One client is safe to share between threads; each call is one request.
    """

    adapter = None

    def __init__(self, client: Any, model: str, base_url: str, context_window: int = DEFAULT_CONTEXT_WINDOW,
                 seed: int = 0) -> None:
        self.client = client
        self.model = model
        self.base_url = base_url
        self.name = f"{model} (served at {base_url})"
        self.context_window = context_window
        self.seed = seed
        self._last = threading.local()  # (text, pieces) of this thread's last answer, for count_text_tokens

    def count_tokens(self, messages: Messages) -> int:
        return MESSAGE_OVERHEAD * (len(messages) + 1) + sum(estimate_tokens(m["content"]) for m in messages)

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a reply: the streamed pieces of this thread's last answer when it is ``text``.

        Servers stream one token per piece, so that count is the server's own; any other text is estimated.
        """
        last = getattr(self._last, "reply", None)
        if last is not None and last[0].strip() == text.strip():
            return last[1]
        return estimate_tokens(text)

    def stream(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> Reply:
        """Yield the reply's pieces as the server streams them (server-sent events); greedy at temperature 0.

        The :class:`~rag_app.repetition.Reply`'s ``finish`` is the server's
        ``finish_reason`` (``length`` at ``max_new_tokens``), once exhausted.

        Raises:
            ConfigError: ``abstain_threshold`` is set (a server cannot apply it).
            ContextWindowError: the prompt leaves no room for ``max_new_tokens``.
            GeneratorServerError: the server is unreachable, answers an HTTP error or something
                that is not a chat completion stream.
        """
        return Reply(self._stream(messages, max_new_tokens, temperature, top_p, abstain_threshold))

    def _stream(self, messages: Messages, max_new_tokens: int, temperature: float, top_p: float,
                abstain_threshold: float | None) -> PieceStream[str, None, Ending]:
        from rag_app.generation import check_context

        if abstain_threshold is not None:
            raise ConfigError("generate.abstain_threshold needs the first token's logits, which a served model "
                              "does not expose; unset it for backend openai")
        check_context(self.count_tokens(messages), max_new_tokens, self.context_window)
        request: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                   "max_tokens": max_new_tokens, "temperature": temperature, "stop": STOP}
        if temperature > 0:
            request.update(top_p=top_p, seed=self.seed)
        text, pieces, events, ended = "", 0, 0, None
        with server_errors(self.base_url), self.client.chat.completions.create(stream=True, **request) as chunks:
            for chunk in chunks:
                events += 1
                if getattr(chunk, "error", None):  # some servers report a failure inside the stream
                    raise GeneratorServerError(f"the generator at {self.base_url} failed mid-answer: {chunk.error}")
                if not chunk.choices:
                    continue
                ended = getattr(chunk.choices[0], "finish_reason", None) or ended
                piece = chunk.choices[0].delta.content
                if piece:
                    text += piece
                    pieces += 1
                    yield piece
        if events == 0:
            # llama-cpp-python ends a stream empty when it refuses the request (a prompt past its
            # window); asked again without streaming, a server says why, or answers.
            with server_errors(self.base_url):
                choice = self.client.chat.completions.create(stream=False, **request).choices[0]
                text, ended = choice.message.content, getattr(choice, "finish_reason", None)
            if not isinstance(text, str):
                raise GeneratorServerError(f"the generator at {self.base_url} answered something that is not an OpenAI "
                                           "chat completion (no text); check that generate.base_url is the server's "
                                           "OpenAI-compatible /v1 URL")
            pieces = estimate_tokens(text)
            yield text
        self._last.reply = (text, pieces)
        return Ending(0, server_finish(ended))

    def generate(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> str:
        return "".join(self.stream(messages, max_new_tokens, temperature, top_p, abstain_threshold)).strip()


@contextmanager
def server_errors(base_url: str) -> Iterator[None]:
    """Turn what the openai client raises into one :class:`GeneratorServerError` line that says what to do."""
    import openai

    try:
        yield
    except openai.APIConnectionError as err:  # refused, DNS, timeout
        raise GeneratorServerError(f"cannot reach the generator at {base_url}: {err.__cause__ or err}; "
                                   "start it or fix generate.base_url") from None
    except openai.APIStatusError as err:
        raise GeneratorServerError(f"the generator at {base_url} answered HTTP {err.status_code}: "
                                   f"{_detail(err)}{_hint(err.status_code)}") from None
    except (openai.APIError, ValueError, AttributeError, TypeError, KeyError) as err:  # not a completion
        raise GeneratorServerError(f"the generator at {base_url} answered something that is not an OpenAI chat "
                                   f"completion ({type(err).__name__}: {_first_line(str(err))}); check that "
                                   "generate.base_url is the server's OpenAI-compatible /v1 URL") from None


def _detail(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        return _first_line(str(message or body.get("detail") or body))
    return _first_line(getattr(err, "message", "") or str(err))


def _hint(status: int) -> str:
    if status in (401, 403):
        return "; put the server's key in the environment variable that generate.api_key_env names"
    if status == 404:
        return "; check generate.model (the served model's id) and generate.base_url (ends in /v1)"
    if status in (400, 413, 422):
        return ("; if the prompt is too long for the server, set generate.context_window to its window "
                "or lower retrieve.top_k")
    return ""


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def load_openai_generator(config: GenerateConfig) -> OpenAIGenerator:
    """A client for the server ``config.base_url`` names, checked by listing its models.

    ``model`` left at ``bundled`` means the server's one model (llama.cpp's
    server and TGI serve exactly one); several listed is an error naming them.

    Raises:
        ConfigError: the ``openai`` client is missing, or the model cannot be chosen.
        GeneratorServerError: the server is unreachable or answers garbage.
    """
    try:
        import openai
    except ImportError:
        raise ConfigError("generate.backend openai needs the openai client; run: pip install '.[serve]'") from None
    from rag_app.models import BUNDLED

    assert config.base_url is not None  # GenerateConfig refuses backend openai without one
    base_url = config.base_url.rstrip("/")
    # One retry for a blip; connecting fails fast, while a big model may take minutes to answer.
    client = openai.OpenAI(base_url=base_url, api_key=config.api_key() or "unused", max_retries=1,
                           timeout=openai.Timeout(600.0, connect=5.0))  # the client's own: httpx or httpx2
    model = config.model
    with server_errors(base_url):
        try:
            served = [m.id for m in client.models.list()]
        except openai.NotFoundError:  # a server without /models: fine when the model is named
            if model == BUNDLED:
                raise ConfigError(f"the server at {base_url} does not list its models; set generate.model to "
                                  "the served model's id") from None
            served = []
    if model == BUNDLED:
        if len(served) != 1:
            raise ConfigError(f"the server at {base_url} serves {', '.join(served) or 'no model'}; "
                              "set generate.model to the one to ask")
        model = served[0]
    log.info("Generating with %s at %s", model, base_url)
    return OpenAIGenerator(client, model, base_url, config.context_window or DEFAULT_CONTEXT_WINDOW, seed=config.seed)

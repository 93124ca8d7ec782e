"""The Generator protocol and its transformers implementation (streaming).

The pipeline sees only :class:`Generator`: chat messages in, text pieces out.
Tests pass a fake; another backend (llama.cpp, an OpenAI-compatible server)
can stand in without the pipeline changing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator as PieceStream, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rag_app.abstain import FirstToken, abstain_token_id
from rag_app.config import GenerateConfig
from rag_app.errors import ContextWindowError
from rag_app.chat_tokens import encode, stop_token_ids
from rag_app.models import BUNDLED, LoadedModel, apply_adapter, check_adapter, load_model
from rag_app.repetition import Ending, Reply, RepetitionGuard, finish_reason, token_pieces

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]


def check_context(prompt_tokens: int, max_new_tokens: int, context_window: int) -> None:
    """Refuse a prompt that leaves less than ``max_new_tokens`` of the context window for the answer.

    Why: past its window a model does not fail, it answers garbage (on the
    transformers path after a minute of prefill). Both backends call this, so
    they refuse with the same line. The pipeline packs sources into this
    budget, so only a question (with its chat history) too long on its own
    gets here.

    Raises:
        ContextWindowError: prompt + answer do not fit.
    """
    if prompt_tokens + max_new_tokens > context_window:
        raise ContextWindowError(
            f"the prompt has {prompt_tokens} tokens and the answer up to {max_new_tokens}, over the context window of "
            f"{context_window}; shorten the question, lower generate.max_new_tokens or retrieve.top_k, "
            "or raise generate.context_window"
        )


@runtime_checkable
class Generator(Protocol):
    """Chat messages in, text out; ``stream`` yields pieces as they are decoded.

    ``abstain_threshold`` (None: plain decoding) decides the first token as
    :func:`rag_app.abstain.decide_first_token` does. A reply that loops stops
    early (:mod:`rag_app.repetition`): ``generate`` returns it without the
    loop; ``stream`` may return a :class:`~rag_app.repetition.Reply`, whose
    ``repeated_tail`` says how many streamed characters to drop
    (:func:`rag_app.repetition.without_loop`).
    """

    name: str
    adapter: str | None
    context_window: int  # tokens of prompt + answer the model accepts

    def count_tokens(self, messages: Messages) -> int: ...

    def stream(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> Iterator[str]: ...

    def generate(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> str: ...


class HFGenerator:
    """A transformers causal LM behind the :class:`Generator` protocol.

    Streaming runs ``model.generate`` in a thread with a
    ``TextIteratorStreamer``, the documented transformers route, so the
    caller's loop sees each decoded piece as soon as it exists. A
    ``StoppingCriteria`` ends a reply that loops (:mod:`rag_app.repetition`);
    ``stop_loops = False`` turns it off (the benchmark measures both).
    """

    def __init__(self, loaded: LoadedModel, name: str, adapter: str | None, context_window: int | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.name = name
        self.adapter = adapter
        limit = getattr(self.model.config, "max_position_embeddings", 2048) or 2048
        # The bundled 135M model degrades on long prompts; 4096 keeps room for
        # several sources while staying far from where its answers fall apart.
        self.context_window = min(context_window or 4096, limit)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.stop_loops = True
        self._piece = token_pieces(self.tokenizer)
        # A preallocated KV cache instead of one grown by torch.cat each step:
        # faster decode for the bundled model on CPU, no warm-up (docs/BENCHMARKS.md,
        # "Generation"). Not with torch.compile (minutes per prompt length, no gain
        # there), and not on CUDA, where transformers would compile it.
        self.static_cache = (
            loaded.device == "cpu" and not loaded.quantized and getattr(self.model.config, "model_type", "") == "llama"
        )

    def encode(self, messages: Messages) -> list[int]:
        """The prompt ids generation starts from (:func:`rag_app.chat_tokens.encode`, as training)."""
        return encode(self.tokenizer, messages)

    def count_tokens(self, messages: Messages) -> int:
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)  # as TextIteratorStreamer decodes

    def _generate_kwargs(
        self, messages: Messages, max_new_tokens: int, temperature: float, top_p: float, abstain_threshold: float | None,
        guard: RepetitionGuard | None = None, seen: FirstToken | None = None,
    ) -> dict:
        import torch

        prompt = self.encode(messages)
        check_context(len(prompt), max_new_tokens, self.context_window)
        ids = torch.tensor([prompt], device=self.loaded.device)
        kwargs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        kwargs["logits_processor"] = _first_token_processor(ids.shape[1], abstain_token_id(self.tokenizer), abstain_threshold,
                                                            seen or FirstToken())
        if guard is not None:
            kwargs["stopping_criteria"] = _loop_criteria(ids.shape[1], guard)
        return kwargs

    def _guard(self) -> RepetitionGuard | None:
        return RepetitionGuard(self._piece) if self.stop_loops else None

    def stream(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> Reply:
        """Yield text pieces as they are decoded; the :class:`Reply` then says how much of them loops."""
        return Reply(self._stream(messages, max_new_tokens, temperature, top_p, abstain_threshold))

    def _stream(
        self, messages: Messages, max_new_tokens: int, temperature: float, top_p: float, abstain_threshold: float | None,
    ) -> PieceStream[str, None, Ending]:
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        guard = self._guard()
        seen = FirstToken()
        kwargs = self._generate_kwargs(messages, max_new_tokens, temperature, top_p, abstain_threshold, guard, seen)
        errors: list[BaseException] = []
        outputs: list[Any] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    outputs.append(self.model.generate(**kwargs, streamer=streamer))
            except BaseException as err:  # surfaced in the caller's thread below
                errors.append(err)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield piece
        thread.join()
        if errors:
            raise errors[0]
        new_ids = outputs[0][0, kwargs["input_ids"].shape[1] :].tolist()
        return Ending(guard.repeated_chars(self._decode) if guard else 0,
                      finish_reason(new_ids, max_new_tokens, self.stop_ids, guard), seen)

    def generate(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> str:
        import torch

        guard = self._guard()
        kwargs = self._generate_kwargs(messages, max_new_tokens, temperature, top_p, abstain_threshold, guard)
        with torch.inference_mode():
            out = self.model.generate(**kwargs)
        text = self._decode(out[0, kwargs["input_ids"].shape[1] :])
        loop = guard.repeated_chars(self._decode) if guard else 0
        return text[: max(0, len(text) - loop)].strip()


def _first_token_processor(prompt_len: int, token_id: int, threshold: float | None, seen: FirstToken) -> Any:
    """A transformers logits processor: :meth:`FirstToken.decide` on the first new token."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class FirstToken(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if input_ids.shape[1] == prompt_len:
                row = seen.decide(scores[0].float().cpu().numpy().copy(), token_id, threshold)
                if threshold is not None:
                    scores[0] = torch.from_numpy(row).to(scores.dtype)
            return scores

    return LogitsProcessorList([FirstToken()])


def _loop_criteria(prompt_len: int, guard: RepetitionGuard) -> Any:
    """A transformers stopping criterion feeding each new reply token to ``guard``; stops once it finds a loop."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopLoops(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            loop = guard.extend(input_ids[0, prompt_len + len(guard.ids) :].tolist())
            return torch.full((input_ids.shape[0],), loop is not None, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopLoops()])


def resolve_backend(config: GenerateConfig, llama_cpp_ok: bool | None = None, llama_cpp_amx: bool | None = None) -> str:
    """``hf``, ``llamacpp`` or ``openai``: what serves these settings (``auto`` never picks a server).

    ``auto`` picks llama.cpp for the bundled model on CPU when llama-cpp-python
    loads (it decodes the same GGUF several times faster), else transformers;
    except on a CPU with AMX, where llama.cpp must run without its AMX kernels
    (they crash: :func:`rag_app.llamacpp.without_amx_buffers`) while torch's
    bf16 uses them: there torch prefills a prompt several times faster, so a
    short grounded answer comes sooner from transformers (see
    docs/BENCHMARKS.md, "The same on an AMX CPU").

    Args:
        config: the generate settings.
        llama_cpp_ok: whether llama-cpp-python loads; None checks (imports it).
        llama_cpp_amx: whether that build uses AMX; None checks.
    """
    if config.backend != "auto":
        return config.backend
    if config.model != BUNDLED or config.device.startswith("cuda"):
        return "hf"
    if llama_cpp_ok is None:
        from rag_app.llamacpp import llama_cpp_available

        llama_cpp_ok = llama_cpp_available()
    if not llama_cpp_ok:
        return "hf"
    if llama_cpp_amx is None:
        from rag_app.llamacpp import build_uses_amx

        llama_cpp_amx = build_uses_amx()
    return "hf" if llama_cpp_amx else "llamacpp"


def load_generator(config: GenerateConfig, cache_dir: Path) -> Generator:
    """Load (once per process) the generator the settings name, with its adapter, on its backend.

    Cached by :meth:`GenerateConfig.loading_key`: settings that differ only in
    sampling or abstain threshold share one loaded model.
    """
    return _load_cached(config.loading_key(), str(cache_dir))


@lru_cache(maxsize=2)
def _load_cached(key: tuple[tuple[str, Any], ...], cache_dir: str) -> Generator:
    config = GenerateConfig(**dict(key))
    if config.backend == "openai":
        from rag_app.openai_backend import load_openai_generator

        return load_openai_generator(config)
    if resolve_backend(config) == "llamacpp":
        from rag_app.llamacpp import load_llamacpp_generator

        log.info("Serving %s with llama.cpp%s", config.model, f" + adapter {config.adapter_path}" if config.adapter_path else "")
        return load_llamacpp_generator(config.model, config.adapter_path, config.context_window, Path(cache_dir),
                                       seed=config.seed, n_threads=config.threads)
    return _load_hf(config, Path(cache_dir))


def _load_hf(config: GenerateConfig, cache_dir: Path) -> HFGenerator:
    import torch

    torch.manual_seed(0)
    adapter = config.adapter_path
    if adapter:
        check_adapter(adapter)  # a damaged adapter: one line before the model loads, not after
    loaded = load_model(config.model, cache_dir, dtype=config.dtype, device=config.device, load_in_4bit=config.load_in_4bit)
    if adapter:
        loaded = apply_adapter(loaded, adapter)
    name = "SmolLM2-135M-Instruct (bundled)" if config.model == BUNDLED else config.model
    return HFGenerator(loaded, name=name, adapter=adapter, context_window=config.context_window)

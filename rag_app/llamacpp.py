"""llama.cpp as the generator backend for the bundled model, with the LoRA adapter.

Why: a person waits on generation more than on anything else, and on a CPU
llama.cpp decodes the bundled 135M model several times faster than
transformers does (see docs/BENCHMARKS.md, "Generation"). ``llama-cpp-python`` is an optional extra
(``pip install '.[llamacpp]'``); without it ``backend=auto`` serves with
transformers (:mod:`rag_app.generation`).

What stays identical to the transformers path, so answers and fine-tuning do
not drift apart:

* the prompt: rendered and tokenized by the converted checkpoint's Hugging
  Face tokenizer and chat template (the ids the HF path feeds ``generate``),
  handed to llama.cpp's raw completion as token ids;
* the stop: ``<|im_end|>`` (and the other end-of-turn ids of
  :func:`rag_app.chat_tokens.stop_token_ids`), and the repetition guard
  (:mod:`rag_app.repetition`) on the same token ids;
* the adapter: the peft LoRA folder, merged into the served weights (or
  converted to a llama.cpp LoRA GGUF and applied at run time), see
  :mod:`rag_app.gguf_export`; tests check both move the logits as peft does.

Not identical: llama.cpp computes with the bundled Q4_1 weights requantized to
Q8_0 (:func:`rag_app.gguf_export.served_gguf`, for a faster prefill) and 8-bit
activations; transformers with the bf16 dequantization. Greedy answers agree
for some tokens, then may drift.

Trade-off: llama.cpp decodes faster but prefills a long prompt slower than
torch's bf16 kernels on a CPU with native bf16, so its first token comes later;
it wins on answers longer than a few dozen tokens (docs/BENCHMARKS.md, "Generation").
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.abstain import FirstToken, abstain_token_id
from rag_app.chat_tokens import encode, stop_strings, stop_token_ids
from rag_app.errors import AdapterMismatchError, ConfigError
from rag_app.repetition import Ending, Reply, RepetitionGuard, server_finish, token_pieces, without_loop

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]


def llama_cpp_available() -> bool:
    """True when ``llama-cpp-python`` is installed and its native library loads.

    Imported, not just found: a broken build (missing shared library, CPU
    without the instructions it was compiled for) must fall back to transformers.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError, RuntimeError) as err:
        log.warning("llama-cpp-python is installed but does not load (%s); serving with transformers", err)
        return False
    return True


def default_threads() -> int:
    """Half the usable cores (at least one): llama.cpp's threads meet at a barrier after every op.

    With another job on the second of two cores, two threads decoded many
    times slower than one (each step waits for the thread the scheduler has
    parked; docs/BENCHMARKS.md, "Generation"). Half the logical cores is the physical
    cores on SMT machines, where llama.cpp scales anyway, and leaves room for
    the embedder and the UI on small ones.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


_LOAD_LOCK = threading.Lock()


def build_uses_amx() -> bool:
    """Was this llama.cpp built to multiply with AMX on this CPU (``-march=native`` on Sapphire Rapids or later)?"""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def without_amx_buffers() -> Iterator[None]:
    """Load models with llama.cpp's extra weight buffers (AMX, repacked) off where the build uses AMX.

    Why: ggml's AMX matmul killed the process with a segfault at the first
    decode on a 2-core Sapphire Rapids VM (bundled Q4_1 and served Q8_0 alike;
    upstream ggml-org/llama.cpp#20824, open). Without those buffers the same
    weights run on the ordinary AVX-512 kernels. llama-cpp-python has no
    argument for ``use_extra_bufts``, so its default model parameters are
    wrapped while a model loads.
    """
    if not build_uses_amx():
        yield
        return
    import llama_cpp.llama_cpp as lib

    with _LOAD_LOCK:
        original = lib.llama_model_default_params

        def params() -> Any:
            p = original()
            if "use_extra_bufts" not in {name for name, _ in type(p)._fields_}:  # an older binding: plain attribute
                raise ConfigError("this llama-cpp-python build uses AMX, which crashes here, and is too old to turn it "
                                  "off; upgrade it (pip install -U llama-cpp-python) or use --backend hf")
            p.use_extra_bufts = False
            return p

        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


class LlamaCppGenerator:
    """The bundled GGUF served by llama.cpp behind the :class:`~rag_app.generation.Generator` protocol.

    Args:
        gguf_path: the model GGUF.
        tokenizer: the Hugging Face tokenizer of the same model (chat template, counting).
        name, adapter: shown with each answer.
        lora_path: a llama.cpp LoRA GGUF (from :func:`lora_gguf_for`), or None.
        context_window: prompt + answer tokens (the KV cache size).
        n_threads: CPU threads; default :func:`default_threads` (half the cores).

    One ``Llama`` context is not thread-safe: a lock serialises callers (the UI
    shares one generator between browser sessions). ``stop_loops = False``
    turns the repetition guard off (the benchmark measures both).
    """

    def __init__(
        self, gguf_path: Path, tokenizer: Any, name: str, adapter: str | None = None, lora_path: Path | None = None,
        context_window: int = 4096, n_threads: int | None = None, seed: int = 0,
    ) -> None:
        from llama_cpp import Llama

        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        self.context_window = context_window
        self.stop_ids = set(stop_token_ids(tokenizer))
        self.stop_strings = stop_strings(tokenizer)
        self.stop_loops = True
        self._piece = token_pieces(tokenizer)
        threads = n_threads or default_threads()
        try:
            with without_amx_buffers():
                self.llm = Llama(
                    model_path=str(gguf_path), n_ctx=context_window, n_threads=threads, n_threads_batch=threads,
                    lora_path=str(lora_path) if lora_path else None, seed=seed, verbose=False,
                )
        except ValueError as err:  # llama.cpp refuses an adapter whose shapes do not fit
            raise AdapterMismatchError(
                f"llama.cpp cannot load model {gguf_path.name} with adapter {adapter} ({err}); use --backend hf or --no-adapter"
            ) from None
        self._lock = threading.Lock()

    def encode(self, messages: Messages) -> list[int]:
        """The prompt ids the transformers path feeds ``generate`` (:func:`rag_app.chat_tokens.encode`)."""
        return encode(self.tokenizer, messages)

    def count_tokens(self, messages: Messages) -> int:
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> Reply:
        """Yield text pieces as llama.cpp decodes them; greedy when ``temperature`` is 0.

        ``abstain_threshold``: see :func:`rag_app.abstain.decide_first_token`.
        The returned :class:`~rag_app.repetition.Reply` says, once exhausted,
        how many trailing characters loop.

        Raises:
            ContextWindowError: the prompt leaves no room for ``max_new_tokens``
                (:func:`rag_app.generation.check_context`).
        """
        return Reply(self._stream(messages, max_new_tokens, temperature, top_p, abstain_threshold))

    def _stream(
        self, messages: Messages, max_new_tokens: int, temperature: float, top_p: float, abstain_threshold: float | None,
    ) -> Generator[str, None, Ending]:
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        from rag_app.generation import check_context

        ids = self.encode(messages)
        check_context(len(ids), max_new_tokens, self.context_window)
        sampling = {"temperature": temperature, "top_p": top_p if temperature > 0 else 1.0, "top_k": 0,
                    "min_p": 0.0, "repeat_penalty": 1.0}
        seen = FirstToken()  # first: it reads the model's own logits, before a stop id is forced
        processors = [_first_token_processor(len(ids), abstain_token_id(self.tokenizer), abstain_threshold, seen),
                      *self._stop_processors()]
        guard = RepetitionGuard(self._piece) if self.stop_loops else None
        with self._lock:
            chunks = self.llm.create_completion(
                ids, max_tokens=max_new_tokens, stream=True, stop=self.stop_strings,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([_loop_criterion(len(ids), guard)]) if guard else None, **sampling,
            )
            ended = None
            for chunk in chunks:
                piece = chunk["choices"][0]["text"]
                ended = chunk["choices"][0].get("finish_reason") or ended
                if piece:
                    yield piece
        # llama.cpp says "length" at max_tokens and "stop" otherwise, a stopping criterion included.
        finish = "loop" if guard and guard.loop else server_finish(ended)
        if guard is None:
            return Ending(0, finish, seen)
        return Ending(guard.repeated_chars(
            lambda reply: self.llm.detokenize(reply, prev_tokens=ids).decode("utf-8", errors="ignore")), finish, seen)

    def _stop_processors(self) -> list[Any]:
        """Stop on every end-of-turn id, not only the GGUF's eos, by forcing eos once one wins.

        llama.cpp ends on its own end-of-generation tokens (``<|im_end|>`` here);
        this adds any other id :func:`stop_token_ids` names. Only used when there
        is such an id, so the common case pays nothing per token.
        """
        eos = self.llm.token_eos()
        extra = sorted(i for i in self.stop_ids if i != eos and 0 <= i < self.llm.n_vocab())
        if not extra:
            return []

        def force_eos(_ids: Any, logits: np.ndarray) -> np.ndarray:
            if int(np.argmax(logits)) in extra:
                logits[eos] = np.inf
            return logits

        return [force_eos]

    def generate(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> str:
        reply = self.stream(messages, max_new_tokens, temperature, top_p, abstain_threshold)
        return without_loop("".join(reply), reply).strip()


def _first_token_processor(prompt_len: int, token_id: int, threshold: float | None, seen: FirstToken) -> Any:
    """A llama.cpp logits processor: :meth:`FirstToken.decide` on the first new token."""

    def first_token(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        return seen.decide(logits, token_id, threshold) if len(ids) == prompt_len else logits

    return first_token


def _loop_criterion(prompt_len: int, guard: RepetitionGuard) -> Any:
    """A llama.cpp stopping criterion feeding each new reply token to ``guard``; stops once it finds a loop.

    llama.cpp passes the ids evaluated so far (prompt included, the token just
    sampled not yet), and drops that token when this returns True: the guard
    sees exactly the tokens whose text was streamed. It calls once more after
    generation ends, with the same ids.
    """

    def stop(input_ids: np.ndarray, _logits: np.ndarray) -> bool:
        return guard.extend(input_ids[prompt_len + len(guard.ids) :].tolist()) is not None

    return stop


def load_llamacpp_generator(
    model: str, adapter: str | None, context_window: int | None, cache_dir: Path, seed: int = 0,
    n_threads: int | None = None, weights: str = "q8_0", adapter_mode: str = "merge",
) -> LlamaCppGenerator:
    """Build the llama.cpp generator for the bundled model, with the adapter if one is set.

    Args:
        weights: ``q8_0`` (default: the bundled GGUF requantized once, faster
            prefill) or ``q4_1`` (the bundled file as shipped).
        adapter_mode: ``merge`` (default with ``q8_0``: the adapter added to the
            weights before quantizing, free per token) or ``lora`` (converted to
            a llama.cpp LoRA GGUF and applied at run time: slower decode and a later
            first token, docs/BENCHMARKS.md "Generation"). ``q4_1`` always uses ``lora``.

    Raises:
        ConfigError: ``model`` is not ``bundled`` or ``llama-cpp-python`` is missing.
        AdapterError, AdapterMismatchError, ModelNotFoundError: as :func:`rag_app.models.check_adapter`.
    """
    from transformers import AutoTokenizer

    from rag_app.gguf_export import lora_gguf_for, served_gguf
    from rag_app.models import BUNDLED, BUNDLED_ID, bundled_gguf, check_adapter, ensure_bundled_checkpoint

    if model != BUNDLED:
        raise ConfigError(f"generate.backend llamacpp serves only the bundled GGUF, not {model!r}; use --backend hf")
    if not llama_cpp_available():
        raise ConfigError("generate.backend llamacpp needs llama-cpp-python; run: pip install '.[llamacpp]' or use --backend hf")
    adapter_dir = check_adapter(adapter, BUNDLED_ID) if adapter else None  # before any model loads
    checkpoint = ensure_bundled_checkpoint(cache_dir)  # tokenizer + chat template the HF path uses
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    config = json.loads((checkpoint / "config.json").read_text())
    window = min(context_window or 4096, config.get("max_position_embeddings") or 2048)
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads") or n_head
    merge = adapter_dir is not None and weights == "q8_0" and adapter_mode == "merge"
    lora = lora_gguf_for(adapter_dir, cache_dir, n_head, n_head_kv) if adapter_dir and not merge else None
    if weights == "q8_0":
        gguf_path = served_gguf(bundled_gguf(), cache_dir, adapter_dir if merge else None, n_head, n_head_kv)
    else:
        gguf_path = bundled_gguf()
    return LlamaCppGenerator(gguf_path, tokenizer, name=f"SmolLM2-135M-Instruct (bundled, llama.cpp {weights.upper()})",
                             adapter=adapter, lora_path=lora, context_window=window, n_threads=n_threads, seed=seed)

"""llama.cpp as the generator backend for the bundled GGUF, with the LoRA adapter.

Why: on this CPU transformers decodes the bundled 135M model at ~20 tokens/s
(bf16) while llama.cpp runs the very same Q4_1 GGUF at ~100; a person waits on
generation more than on anything else. ``llama-cpp-python`` is an optional
extra (``pip install '.[llamacpp]'``); without it ``backend=auto`` serves with
transformers (:mod:`rag_app.generation`).

What stays identical to the transformers path, so answers and fine-tuning do
not drift apart:

* the prompt: rendered and tokenized by the converted checkpoint's Hugging
  Face tokenizer and chat template (the ids the HF path feeds ``generate``),
  handed to llama.cpp's raw completion as token ids;
* the stop: ``<|im_end|>`` (and the other end-of-turn ids of
  :func:`rag_app.models.stop_token_ids`);
* the adapter: the peft LoRA folder ``rag finetune`` writes is converted once
  into a llama.cpp LoRA GGUF (:func:`convert_lora_adapter`, the layout of
  llama.cpp's ``convert_lora_to_gguf.py``), cached by content hash, and applied
  at run time, unmerged, on top of the quantized base.

Not identical: llama.cpp computes with the Q4_1 weights, transformers with
their bf16 dequantization, so greedy answers can drift after some tokens.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.errors import AdapterMismatchError, ConfigError

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]

# Bump when the converter's output changes: cached adapter GGUFs are keyed by it.
CONVERTER_VERSION = 1

# peft module name -> llama.cpp tensor name (LLaMA architecture, gguf's tensor map).
GGUF_MODULES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_LORA_KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


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


# ---------------------------------------------------------------- adapter -> GGUF


def _rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the output rows of a q/k projection from HF's half-split RoPE to GGUF's interleaved layout.

    llama.cpp's converter applies this to the base q/k weights; a LoRA delta
    ``B @ A`` must get the same row order, and only B carries the rows.
    """
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def adapter_tensors(adapter_dir: Path, n_head: int, n_head_kv: int) -> tuple[dict[str, np.ndarray], float]:
    """Read a peft LoRA folder and return llama.cpp-named float32 tensors plus the alpha to record.

    Args:
        adapter_dir: folder with ``adapter_config.json`` and ``adapter_model.safetensors``.
        n_head, n_head_kv: attention heads of the base (for the RoPE row order of q and k).

    Returns:
        ``{"blk.N.attn_q.weight.lora_a": (r, in), "...lora_b": (out, r), ...}`` and alpha.
        llama.cpp scales each delta by ``alpha / r`` with r read from the tensor
        shapes, as peft does; rsLoRA's ``alpha / sqrt(r)`` is folded into B.

    Raises:
        AdapterMismatchError: the adapter uses something llama.cpp's LoRA cannot express
            (DoRA, bias, per-module alpha, extra saved modules, non-LLaMA module names).
    """
    from safetensors.numpy import load_file

    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError):
        raise AdapterMismatchError(f"{adapter_dir} has no readable adapter_config.json; pass a folder written by rag finetune") from None
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterMismatchError(f"{adapter_dir} has no adapter_model.safetensors; re-save it with safe_serialization or use --backend hf")
    unsupported = [key for key in ("use_dora", "alpha_pattern", "modules_to_save", "lora_bias") if cfg.get(key)]
    if cfg.get("bias", "none") != "none":
        unsupported.append("bias")
    if unsupported:
        raise AdapterMismatchError(
            f"adapter {adapter_dir} uses {', '.join(unsupported)}, which llama.cpp LoRA cannot apply; use --backend hf"
        )
    alpha = float(cfg["lora_alpha"])
    rslora = bool(cfg.get("use_rslora"))
    raw = _load_bf16_safe(load_file, weights)
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in raw.items():
        match = _LORA_KEY.match(key)
        if not match or match.group(2) not in GGUF_MODULES:
            raise AdapterMismatchError(
                f"adapter tensor {key!r} has no llama.cpp equivalent (only q,k,v,o,gate,up,down LoRA); use --backend hf"
            )
        layer, module, which = int(match.group(1)), match.group(2), match.group(3)
        pairs.setdefault((layer, module), {})[which] = value
    out: dict[str, np.ndarray] = {}
    for (layer, module), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise AdapterMismatchError(f"adapter {adapter_dir} lacks lora_A or lora_B for layer {layer} {module}")
        a, b = ab["A"], ab["B"]
        rank = a.shape[0]
        if rslora:  # peft: alpha/sqrt(r); llama.cpp: alpha/r -> multiply B by sqrt(r)
            b = b * math.sqrt(rank)
        if module == "q_proj":
            b = _rope_permute(b, n_head)
        elif module == "k_proj":
            b = _rope_permute(b, n_head_kv)
        name = f"blk.{layer}.{GGUF_MODULES[module]}.weight"
        out[name + ".lora_a"] = np.ascontiguousarray(a, dtype=np.float32)
        out[name + ".lora_b"] = np.ascontiguousarray(b, dtype=np.float32)
    if not out:
        raise AdapterMismatchError(f"adapter {adapter_dir} holds no LoRA tensors")
    return out, alpha


def _load_bf16_safe(load_file: Any, path: Path) -> dict[str, np.ndarray]:
    """safetensors' numpy loader cannot read bf16 (adapters are saved in bf16): go through torch then."""
    try:
        return dict(load_file(str(path)))
    except (TypeError, ValueError):
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}


def convert_lora_adapter(adapter_dir: str | Path, out_path: str | Path, n_head: int, n_head_kv: int) -> Path:
    """Write a peft LoRA adapter as a llama.cpp LoRA GGUF (float32), atomically.

    The file carries what llama.cpp's loader checks: ``general.architecture``
    ``llama``, ``general.type`` ``adapter``, ``adapter.type`` ``lora``,
    ``adapter.lora.alpha``, and per adapted matrix ``blk.N.<name>.weight.lora_a``
    (ggml shape ``[in, r]``) and ``.lora_b`` (``[r, out]``).
    """
    import gguf

    tensors, alpha = adapter_tensors(Path(adapter_dir), n_head, n_head_kv)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch="llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_name(f"LoRA {Path(adapter_dir).name}")
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out_path)
    return out_path


def adapter_hash(adapter_dir: Path) -> str:
    """Content hash of the adapter's config and weights (plus the converter version)."""
    h = hashlib.sha256(f"v{CONVERTER_VERSION}".encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = adapter_dir / name
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def lora_gguf_for(adapter_dir: str | Path, cache_dir: Path, n_head: int, n_head_kv: int) -> Path:
    """The converted adapter for ``adapter_dir``, converting it on first use (~1 s), cached by content hash."""
    adapter_dir = Path(adapter_dir)
    target = Path(cache_dir) / "lora-gguf" / f"{adapter_dir.name}-{adapter_hash(adapter_dir)}.gguf"
    if not target.is_file():
        log.info("Converting adapter %s for llama.cpp into %s", adapter_dir, target)
        convert_lora_adapter(adapter_dir, target, n_head, n_head_kv)
    return target


# ---------------------------------------------------------------- the generator


def default_threads() -> int:
    """Half the usable cores (at least one): llama.cpp's threads meet at a barrier after every op.

    Measured on this 2-core machine while other jobs kept it busy: 1 thread
    decoded at 37-39 tokens/s, 2 threads at 0.3-2 (each step waits for the
    thread the scheduler has parked). Half the logical cores is the physical
    cores on SMT machines, where llama.cpp scales anyway, and leaves room for
    the embedder and the UI on small ones.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


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
    shares one generator between browser sessions).
    """

    def __init__(
        self, gguf_path: Path, tokenizer: Any, name: str, adapter: str | None = None, lora_path: Path | None = None,
        context_window: int = 4096, n_threads: int | None = None, seed: int = 0,
    ) -> None:
        from llama_cpp import Llama

        from rag_app.models import stop_token_ids

        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        self.context_window = context_window
        self.stop_ids = set(stop_token_ids(tokenizer))
        threads = n_threads or default_threads()
        try:
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
        """The prompt ids the transformers path would feed ``generate``: chat template + generation prompt."""
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def count_tokens(self, messages: Messages) -> int:
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95
    ) -> Iterator[str]:
        """Yield text pieces as llama.cpp decodes them; greedy when ``temperature`` is 0.

        Raises:
            ConfigError: the prompt alone fills the context window.
        """
        ids = self.encode(messages)
        room = self.context_window - len(ids)
        if room < 1:
            raise ConfigError(
                f"the prompt has {len(ids)} tokens, over the context window of {self.context_window}; "
                "lower retrieve.top_k or raise generate.context_window"
            )
        sampling = {"temperature": temperature, "top_p": top_p if temperature > 0 else 1.0, "top_k": 0,
                    "min_p": 0.0, "repeat_penalty": 1.0}
        with self._lock:
            chunks = self.llm.create_completion(
                ids, max_tokens=min(max_new_tokens, room), stream=True, stop=["<|im_end|>"],
                logits_processor=self._stop_processor(), **sampling,
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["text"]
                if piece:
                    yield piece

    def _stop_processor(self) -> Any:
        """Stop on every end-of-turn id, not only the GGUF's eos, by forcing eos once one wins.

        llama.cpp ends on its own end-of-generation tokens (``<|im_end|>`` here);
        this adds any other id :func:`stop_token_ids` names. Only used when there
        is such an id, so the common case pays nothing per token.
        """
        from llama_cpp import LogitsProcessorList

        eos = self.llm.token_eos()
        extra = sorted(i for i in self.stop_ids if i != eos and 0 <= i < self.llm.n_vocab())
        if not extra:
            return None

        def force_eos(_ids: Any, logits: np.ndarray) -> np.ndarray:
            if int(np.argmax(logits)) in extra:
                logits[eos] = np.inf
            return logits

        return LogitsProcessorList([force_eos])

    def generate(
        self, messages: Messages, max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95
    ) -> str:
        return "".join(self.stream(messages, max_new_tokens, temperature, top_p)).strip()


def load_llamacpp_generator(
    model: str, adapter: str | None, context_window: int | None, cache_dir: Path, seed: int = 0,
    n_threads: int | None = None,
) -> LlamaCppGenerator:
    """Build the llama.cpp generator for the bundled model, converting the adapter if one is set.

    Raises:
        ConfigError: ``model`` is not ``bundled`` or ``llama-cpp-python`` is missing.
        AdapterMismatchError, ModelNotFoundError: as :func:`rag_app.models.check_adapter`.
    """
    from transformers import AutoTokenizer

    from rag_app.models import BUNDLED, BUNDLED_ID, bundled_gguf, check_adapter, ensure_bundled_checkpoint

    if model != BUNDLED:
        raise ConfigError(f"generate.backend llamacpp serves only the bundled GGUF, not {model!r}; use --backend hf")
    if not llama_cpp_available():
        raise ConfigError("generate.backend llamacpp needs llama-cpp-python; run: pip install '.[llamacpp]' or use --backend hf")
    checkpoint = ensure_bundled_checkpoint(cache_dir)  # tokenizer + chat template the HF path uses
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    config = json.loads((checkpoint / "config.json").read_text())
    window = min(context_window or 4096, config.get("max_position_embeddings") or 2048)
    lora = None
    if adapter:
        lora = lora_gguf_for(check_adapter(adapter, BUNDLED_ID), cache_dir,
                             config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"])
    return LlamaCppGenerator(bundled_gguf(), tokenizer, name="SmolLM2-135M-Instruct (bundled, llama.cpp)",
                             adapter=adapter, lora_path=lora, context_window=window, n_threads=n_threads, seed=seed)

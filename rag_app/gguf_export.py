"""GGUF files for llama.cpp: the bundled weights requantized, the LoRA adapter converted or merged.

Each conversion runs once and is cached under the cache dir:

* :func:`served_gguf` rewrites the bundled Q4_1 GGUF as Q8_0. Same weights (the
  Q4_1 grid requantized, not re-derived), and it prefills faster and decodes
  no slower (docs/BENCHMARKS.md, "Generation"):
  llama.cpp's batched matmul kernels (llamafile sgemm) cover Q8_0, not Q4_1,
  and prefill is where llama.cpp trails torch's bf16 here. Given an adapter,
  it adds the adapter's ``scale * B @ A`` to the weights before quantizing:
  the merged adapter costs nothing per token (~145 MB per adapter version).
* :func:`lora_gguf_for` turns the peft LoRA folder ``rag finetune`` writes into
  a llama.cpp LoRA GGUF, the layout of llama.cpp's ``convert_lora_to_gguf.py``
  (``blk.N.attn_q.weight.lora_a`` ..., ``general.type=adapter``,
  ``adapter.type=lora``, ``adapter.lora.alpha``), keyed by the adapter's content
  hash, for llama.cpp to apply at run time on any base file (~20 MB; slower
  decode and a later first token than merged: docs/BENCHMARKS.md, "Generation").

Both reorder the q/k rows of the update to GGUF's interleaved RoPE layout.
Only numpy, safetensors and ``gguf`` (core dependencies): CI tests the
conversions without the optional llama-cpp-python.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
import re
from typing import Any

import numpy as np

from rag_app.errors import AdapterMismatchError
from rag_app.models import adapter_digest, check_adapter_weights

log = logging.getLogger(__name__)

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
        AdapterError: the weights file is empty or truncated.
    """
    from safetensors.numpy import load_file

    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError):
        raise AdapterMismatchError(f"{adapter_dir} has no readable adapter_config.json; pass a folder written by rag finetune") from None
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterMismatchError(f"{adapter_dir} has no adapter_model.safetensors; re-save it with safe_serialization or use --backend hf")
    check_adapter_weights(adapter_dir)  # an empty or truncated file: one line, as on the transformers path
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
    """Content hash of the adapter (config and weights) plus the converter version: the cache key of its GGUFs."""
    return adapter_digest(adapter_dir, salt=f"v{CONVERTER_VERSION}")


def lora_gguf_for(adapter_dir: str | Path, cache_dir: Path, n_head: int, n_head_kv: int) -> Path:
    """The converted adapter for ``adapter_dir``, converting it on first use (~1 s), cached by content hash."""
    adapter_dir = Path(adapter_dir)
    target = Path(cache_dir) / "lora-gguf" / f"{adapter_dir.name}-{adapter_hash(adapter_dir)}.gguf"
    if not target.is_file():
        log.info("Converting adapter %s for llama.cpp into %s", adapter_dir, target)
        convert_lora_adapter(adapter_dir, target, n_head, n_head_kv)
    return target


def lora_deltas(adapter_dir: Path, n_head: int, n_head_kv: int) -> dict[str, np.ndarray]:
    """The adapter as weight updates in GGUF layout: ``{"blk.N.attn_q.weight": scale * B @ A}``, float32 (out, in).

    Same reading and RoPE row order as :func:`adapter_tensors`; the scale is
    peft's (alpha/r, or alpha/sqrt(r) with rsLoRA, already folded into B).
    """
    tensors, alpha = adapter_tensors(adapter_dir, n_head, n_head_kv)
    out = {}
    for name in tensors:
        if name.endswith(".lora_a"):
            base = name.removesuffix(".lora_a")
            a, b = tensors[name], tensors[base + ".lora_b"]
            out[base] = (alpha / a.shape[0]) * (b @ a)
    return out


def requantize_gguf(src: Path, dst: Path, deltas: dict[str, np.ndarray] | None = None) -> Path:
    """Rewrite a llama GGUF with every 2-D tensor as Q8_0 (1-D norms stay F32), metadata unchanged, atomically.

    Each tensor is dequantized (``gguf.quants``) and quantized again in blocks
    of 32 with one fp16 scale: the error added is below half a step of 1/127
    of the block's largest weight, on top of the Q4_1 grid. ``deltas`` (from
    :func:`lora_deltas`) are added before quantizing: the adapter merged, so
    it costs nothing per token. ~5 s for the 135M model.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFValueType as V
    from gguf import quants

    deltas = deltas or {}
    reader = gguf.GGUFReader(str(src))
    missing = set(deltas) - {t.name for t in reader.tensors}
    if missing:
        raise AdapterMismatchError(f"the adapter changes {sorted(missing)[0]}, which {src.name} does not have; use --backend hf")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch=str(reader.fields["general.architecture"].contents()))
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = int(gguf.LlamaFileType.MOSTLY_Q8_0) if key == "general.file_type" else field.contents()
        writer.add_key_value(key, value, field.types[0], sub_type=field.types[-1] if field.types[0] == V.ARRAY else None)
    for tensor in reader.tensors:
        if tensor.tensor_type == Q.Q8_0 and tensor.name not in deltas:  # the token embedding: copy, do not round twice
            writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_shape=tensor.data.shape, raw_dtype=Q.Q8_0)
            continue
        data = np.asarray(tensor.data) if tensor.tensor_type == Q.F32 else quants.dequantize(tensor.data, tensor.tensor_type)
        data = data.reshape([int(n) for n in reversed(tensor.shape)]).astype(np.float32)  # ggml shapes are reversed
        if tensor.name in deltas:
            if deltas[tensor.name].shape != data.shape:
                raise AdapterMismatchError(
                    f"the adapter's {tensor.name} is {deltas[tensor.name].shape}, the model's {data.shape}; use --backend hf"
                )
            data = data + deltas[tensor.name]
        if data.ndim == 2:
            packed = quants.quantize(data, Q.Q8_0)
            writer.add_tensor(tensor.name, packed, raw_shape=packed.shape, raw_dtype=Q.Q8_0)
        else:
            writer.add_tensor(tensor.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(dst)
    return dst


def served_gguf(source: Path, cache_dir: Path, adapter_dir: Path | None = None, n_head: int = 0, n_head_kv: int = 0) -> Path:
    """The Q8_0 rewrite of ``source`` (the bundled GGUF), with ``adapter_dir`` merged in if given; cached.

    Keyed by the source's name and size and the adapter's content hash; a
    retrained adapter replaces its older merged file (~145 MB each).
    """
    if adapter_dir is not None and (n_head < 1 or n_head_kv < 1):
        raise ValueError("merging an adapter needs the base's n_head and n_head_kv (RoPE row order of q and k)")
    models = Path(cache_dir) / "models"
    stem = f"{source.stem}.requant-q8_0-{source.stat().st_size}"
    if adapter_dir is None:
        target = models / f"{stem}.gguf"
    else:
        target = models / f"{stem}+{adapter_dir.name}-{adapter_hash(adapter_dir)}.gguf"
    if target.is_file():
        return target
    if adapter_dir is None:
        log.warning("First llama.cpp run: rewriting %s as Q8_0 in %s (about 5 s, once).", source.name, target)
        return requantize_gguf(source, target)
    log.warning("Merging adapter %s into a Q8_0 copy of %s: %s (about 10 s, once per adapter version).",
                adapter_dir, source.name, target)
    requantize_gguf(source, target, lora_deltas(adapter_dir, n_head, n_head_kv))
    for old in models.glob(f"{stem}+{adapter_dir.name}-*.gguf"):
        if old != target:
            old.unlink(missing_ok=True)
    return target

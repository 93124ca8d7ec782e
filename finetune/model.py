"""The model the recipe trains: the base (bf16/fp32, or 4-bit NF4) with a fresh or continued LoRA on it.

:func:`build_model` is the recipe's model step (:func:`finetune.train.train`);
it also returns the facts the training card records about the model: base
id and weights fingerprint, dtype and quantization (with why), the layers
adapted, the trainable parameters. The choices and their costs are in
:mod:`finetune.train`'s docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.config import TrainConfig
from rag_app.errors import ConfigError


def _layers_to_transform(cfg: TrainConfig, n_layers: int, device: str) -> list[int] | None:
    mode = cfg.layers if cfg.layers != "auto" else ("top-half" if device == "cpu" else "all")
    return list(range(n_layers // 2, n_layers)) if mode == "top-half" else None


def build_model(cfg: TrainConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Base (bf16/fp32 or NF4) + fresh or continued LoRA; returns (peft model, tokenizer, loaded, facts for the card)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    from rag_app.models import (
        check_adapter, count_parameters, load_model, pick_device, pick_dtype, resolve_model, wants_4bit, weights_fingerprint,
    )

    device = pick_device("auto")
    location, _ = resolve_model(cfg.base_model, cfg.cache_dir)
    n_params = count_parameters(location)
    quant = cfg.quant == "nf4" or (cfg.quant == "auto" and wants_4bit(device, n_params))
    # bf16 where the hardware multiplies it natively; an AVX2-only CPU trains several times faster in fp32.
    dtype = str(pick_dtype("auto", device)).removeprefix("torch.")
    loaded = load_model(cfg.base_model, cfg.cache_dir, dtype=dtype, device=device, load_in_4bit=quant)
    fingerprint = weights_fingerprint(loaded.model)
    grad_ckpt = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else device == "cuda"
    if quant:
        loaded.model = prepare_model_for_kbit_training(loaded.model, use_gradient_checkpointing=grad_ckpt)
    elif grad_ckpt:
        loaded.model.gradient_checkpointing_enable()
        loaded.model.enable_input_require_grads()
    n_layers = loaded.model.config.num_hidden_layers
    torch.manual_seed(cfg.seed)  # the LoRA init too: same seed, same adapter (and the same on every process)
    init = LoraConfig.from_pretrained(str(check_adapter(cfg.init_adapter, loaded.base_id))) if cfg.init_adapter else None
    if init is not None and cfg.layers == "all" and init.layers_to_transform is not None:
        model, layers = _widen_to_all_layers(loaded.model, init, cfg.init_adapter), None
    elif init is not None:
        model = PeftModel.from_pretrained(loaded.model, str(cfg.init_adapter), config=init, is_trainable=True)
        layers = model.peft_config["default"].layers_to_transform
    else:
        layers = _layers_to_transform(cfg, n_layers, device)
        lora = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules), layers_to_transform=layers, task_type="CAUSAL_LM",
        )
        model = get_peft_model(loaded.model, lora)
    model.peft_config["default"].base_model_name_or_path = loaded.base_id  # checked when the adapter is applied
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    facts = {
        "base_model": cfg.base_model, "base_model_id": loaded.base_id, "base_weights_fingerprint": fingerprint,
        "base_parameters": n_params, "device": device, "quantization": "nf4 (QLoRA)" if quant else f"none ({dtype} LoRA)",
        "dtype": dtype,
        "quantization_reason": ("asked for" if cfg.quant != "auto" else
                                "auto: CUDA and base > 1B parameters" if quant else
                                f"auto: 4-bit only on CUDA for bases over 1B ({device}, {n_params / 1e6:.0f}M)"),
        "adapted_layers": "all" if layers is None else f"{layers[0]}-{layers[-1]} of {n_layers}",
        "trainable_parameters": trainable, "gradient_checkpointing": grad_ckpt,
        "init_adapter": str(cfg.init_adapter) if cfg.init_adapter else None,
    }
    return model, loaded.tokenizer, loaded, facts


def _widen_to_all_layers(base: Any, init: Any, init_dir: Path) -> Any:
    """``--init-adapter A --layers all`` where A adapts only some layers: A's weights where it has them,
    a fresh LoRA (B = 0, so the model starts exactly as A) on every other layer.

    Why: continuing the shipped top-half adapter while letting the lower layers adapt too, without
    giving up what it learned (a fresh all-layer run over as much data does not fit a session on CPU).
    """
    import copy

    from peft import get_peft_model, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    lora = copy.deepcopy(init)  # its rank, alpha, rslora, patterns...: the same scaling, so the model starts as A
    lora.layers_to_transform, lora.layers_pattern, lora.inference_mode = None, None, False
    model = get_peft_model(base, lora)
    loaded = set_peft_model_state_dict(model, load_peft_weights(str(init_dir)))
    if loaded.unexpected_keys:
        raise ConfigError(f"adapter {init_dir} has weights an all-layer LoRA of its settings lacks "
                          f"({loaded.unexpected_keys[0]}); continue it without --layers all")
    return model

"""What a fine-tune leaves on disk: adapter, resumable checkpoint, training card, loss plot.

The adapter folder describes itself (peft's ``adapter_config.json`` records
the base model id, checked before it is applied), and the card records how it
was made (:func:`training_card`): settings, base weights fingerprint, data
stats, time, speed, losses.
Checkpoints are written to a temporary folder and renamed, so a crash while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import TrainConfig

if TYPE_CHECKING:  # the recipe's own types; finetune.train imports this module
    from finetune.train import TrainData, TrainState


def save_adapter(model: Any, tokenizer: Any, out: Path) -> None:
    """The adapter in bf16 (half the size; what serving uses), plus the tokenizer's chat template."""
    import torch

    tmp = out / "adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # the vocabulary is never resized: without this peft looks the base id up on the Hub (a network call,
    # and offline a warning at every save)
    model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    from safetensors.torch import load_file, save_file

    weights = tmp / "adapter_model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(weights)).items()}, str(weights))
    share_weights(tmp)
    for f in tmp.iterdir():
        target = out / f.name
        if target.is_dir():
            shutil.rmtree(target)
        f.replace(target)
    tmp.rmdir()


def share_weights(folder: Path) -> None:
    """Give ``folder``'s .safetensors the mode any other new file gets (umask), not safetensors' 0600.

    Why: an adapter or a merged model is made to be shared (a team's folder); at 0600 no one else could load it.
    """
    umask = os.umask(0)
    os.umask(umask)
    for weights in folder.glob("*.safetensors"):
        weights.chmod(0o666 & ~umask)


def save_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    """Adapter weights (fp32), optimizer, scheduler and loop state, atomically."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()},
              str(tmp / "adapter.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns the loop state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from rag_app.errors import ConfigError

    saved = load_file(str(folder / "adapter.safetensors"))
    result = set_peft_model_state_dict(model, saved)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:  # the LoRA now covers other layers than the checkpoint's
        raise ConfigError(f"--resume: the checkpoint in {folder} adapts other layers than this run would; "
                          "resume with the same --layers and --init-adapter as the run that wrote it")
    extra = torch.load(folder / "optim.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    state = json.loads((folder / "state.json").read_text())
    state["losses"] = [tuple(x) for x in state.get("losses", [])]
    state["val_losses"] = [tuple(x) for x in state.get("val_losses", [])]
    return state


def training_card(cfg: TrainConfig, facts: dict[str, Any], data: TrainData, state: TrainState, tokens: int,
                  data_stats: dict[str, Any] | None) -> dict[str, Any]:
    """How the adapter was made: settings, model facts, data counts, steps, speed and losses."""
    world = state.world_size
    return {
        "recipe": "RAFT (Zhang et al. 2024): gold + hard distractors, gold dropped with prob 1-P -> abstain",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        **facts,
        "data": {**(data_stats or {}), "train_examples_used": len(data.train), "skipped_too_long": data.skipped_too_long,
                 "val_examples_used": len(data.val)},  # beside the built counts, not over them
        "steps": {"examples_seen": state.micro_step * world, "optimizer_steps": state.opt_step, "processes": world},
        "time_s": round(state.elapsed_s, 1),
        "tokens_per_s": round(tokens / max(state.elapsed_s, 1e-9), 1),
        "speed": speed_facts(state, tokens),
        "final_train_loss": state.losses[-1][1] if state.losses else None,
        "val_loss": state.val_losses[-1][1] if state.val_losses else None,
        "losses": state.losses, "val_losses": state.val_losses,
    }


def speed_facts(state: TrainState, tokens: int) -> dict[str, Any]:
    """What a card's tokens/s needs beside it to be compared with another machine's.

    ``tokens_per_s`` counts every second of ``time_s``; ``training_tokens_per_s``
    leaves out the validation passes and checkpoint writes. Tokens/s barely moves
    with example length (400-1000 tokens), but a busy machine, the thread count,
    the layers adapted and the dtype each change it about 2x (docs/BENCHMARKS.md,
    "Where a training step's time goes"): so the card records the threads, the
    CPU's instruction set and the load average the run ended with.
    """
    import torch

    examples = state.micro_step * state.world_size
    train_s = max(state.elapsed_s - state.validation_s - state.checkpoint_s, 1e-9)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on Unix
        load = None
    return {
        "examples_per_s": round(examples / max(state.elapsed_s, 1e-9), 4),
        "tokens_per_example": round(tokens / max(examples, 1), 1),
        "training_tokens_per_s": round(tokens / train_s, 1),
        "validation_s": round(state.validation_s, 3), "checkpoint_s": round(state.checkpoint_s, 3),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_1_5_15min": load,  # at the end of the run: above cpu_count, the machine was shared
    }


def write_card(out: Path, card: dict[str, Any]) -> None:
    """training_card.json, a readable training_card.md, and loss_curve.png."""
    (out / "training_card.json").write_text(json.dumps(card, indent=2))
    lines = ["# Training card", "", f"Recipe: {card.get('recipe', '')}", ""]
    for key in ("base_model_id", "base_weights_fingerprint", "quantization", "quantization_reason", "adapted_layers",
                "trainable_parameters", "device", "time_s", "tokens_per_s", "final_train_loss", "val_loss"):
        lines.append(f"- **{key}**: {card.get(key)}")
    lines += ["", "## Settings", "", "```json", json.dumps(card.get("settings", {}), indent=2), "```",
              "", "## Data", "", "```json", json.dumps(card.get("data", {}), indent=2), "```"]
    if card.get("speed"):
        lines += ["", "## Speed", "", "```json", json.dumps(card["speed"], indent=2), "```"]
    if card.get("eval"):
        lines += ["", "## Evaluation (validation split)", "", "```json", json.dumps(card["eval"], indent=2), "```"]
    (out / "training_card.md").write_text("\n".join(lines) + "\n")
    plot_losses(card.get("losses", []), card.get("val_losses", []), out / "loss_curve.png")


def plot_losses(losses: list, val_losses: list, path: Path) -> None:
    if not losses:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([s for s, _ in losses], [v for _, v in losses], label="train (per step)", alpha=0.7)
    if val_losses:
        ax.plot([s for s, _ in val_losses], [v for _, v in val_losses], "o-", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("answer-token loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

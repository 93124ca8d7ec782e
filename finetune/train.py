"""The fine-tuning recipe: config -> data -> model -> loop -> adapter + training card.

:func:`train` is the recipe; its steps follow it in the order it calls them,
but for the model (:func:`finetune.model.build_model`) and the card's
contents (:func:`finetune.artifacts.training_card`).
The config is :class:`finetune.config.TrainConfig`. Choices and their costs
(measured: docs/BENCHMARKS.md, "Fine-tuning speed"):

* **LoRA r16/alpha32 on q,k,v,o,gate,up,down** (QLoRA paper defaults). On CPU
  only the top half of the layers is adapted by default: backward then stops
  at layer 15 of 30, which about halves the time per example.
  ``layers="all"`` adapts every layer: from scratch it reached in 25 steps
  the validation loss the top half reached in 50 (one run, docs/EVAL.md),
  so it may pay where examples, not CPU hours, are what is short.
* **4-bit NF4 base (QLoRA)** where it pays: on CUDA for bases over ~1B
  parameters (:func:`rag_app.models.wants_4bit`, the rule serving uses).
  For the bundled 135M model it only slows the step and saves nothing that
  matters (docs/BENCHMARKS.md, "Fine-tuning speed"), so ``quant="auto"``
  leaves it unquantized: bf16 where the CPU multiplies bf16 natively, fp32
  elsewhere (bf16 is several times slower there); the card records both.
* **Loss on answer tokens only, head on answer positions only**: the answer
  is the end of the sequence, so ``logits_to_keep`` computes the 49k-vocab
  head for those few positions instead of the whole ~650-token prompt.
* **A plain loop with accelerate** rather than HF Trainer: the loop is ~60
  lines, saves a resumable checkpoint every few minutes and on Ctrl-C, and
  ``accelerate launch`` / ``torchrun`` run it data-parallel unchanged: each
  process takes every N-th example of one shared order (an optimizer step
  sees ``grad_accum`` x N examples) and only the first writes files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.artifacts import load_checkpoint, save_adapter, save_checkpoint, training_card, write_card
from finetune.config import TrainConfig
from finetune.dataset import RaftExample
from finetune.model import build_model
from rag_app import chat_tokens
from rag_app.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What a checkpoint needs to continue exactly where it stopped."""

    micro_step: int = 0  # examples seen by each process
    opt_step: int = 0
    world_size: int = 1  # processes that trained together (a resume must use as many)
    elapsed_s: float = 0.0
    tokens: int = 0
    validation_s: float = 0.0  # of elapsed_s: validation passes and checkpoint writes, not training
    checkpoint_s: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (opt_step, mean train loss)
    val_losses: list[tuple[int, float]] = field(default_factory=list)


def encode(example: RaftExample, tokenizer: Any) -> tuple[list[int], int]:
    """Token ids of prompt + target and the target length (the positions that carry loss).

    The same prompt ids both generators serve, and the target ends with the
    chat template's own turn end (:mod:`rag_app.chat_tokens`), so the model
    learns to stop where serving stops.
    """
    prompt = chat_tokens.encode(tokenizer, example.messages())
    target = tokenizer(example.target + chat_tokens.end_of_turn(tokenizer), add_special_tokens=False)["input_ids"]
    return prompt + list(target), len(target)


def answer_loss(model: Any, ids: list[int], n_target: int, device: Any) -> Any:
    """Cross-entropy over the target tokens only, computing the LM head just there."""
    import torch
    import torch.nn.functional as F

    input_ids = torch.tensor([ids], device=device)
    logits = model(input_ids=input_ids, logits_to_keep=n_target + 1).logits  # (1, n+1, vocab)
    pred = logits[0, :-1].float()  # position t predicts token t+1
    gold = input_ids[0, -n_target:]
    return F.cross_entropy(pred, gold)


def validation_loss(model: Any, data: Sequence[tuple[list[int], int]], device: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        losses = [float(answer_loss(model, ids, n, device)) for ids, n in data]
    model.train()
    return sum(losses) / max(1, len(losses))


def training_order(n: int, seed: int) -> list[int]:
    """The order train() takes its ``n`` examples that fit ``max_length`` in (docs/finetune/next_examples.py slices it)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def train(
    cfg: TrainConfig,
    train_examples: Sequence[RaftExample],
    val_examples: Sequence[RaftExample] = (),
    resume: bool = False,
    data_stats: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a LoRA adapter on RAFT examples; write adapter, checkpoint and training card.

    The recipe, one named step each: model, data, schedule, optimizer,
    resume, loop, checkpoint, card. With several processes every one runs
    all steps; only the first writes files.

    Returns:
        The training card (also written to ``out_dir/training_card.json``).

    Raises:
        ConfigError: no examples, or ``--resume`` without a checkpoint.
        ModelNotFoundError: the base model cannot be loaded offline.
    """
    if not train_examples:
        raise ConfigError("no training examples; check the dataset's split_hint=train questions")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    model, tokenizer, _, facts = build_model(cfg)
    accelerator = make_accelerator(facts)
    data = prepare_data(cfg, tokenizer, train_examples, val_examples)
    total_micro, total_opt = plan_steps(cfg, len(data.train), accelerator.num_processes)
    parts = build_optimizer(cfg, model, accelerator, total_opt)
    ckpt = out / "checkpoint"
    state = resume_state(parts, ckpt, total_micro) if resume else TrainState(world_size=accelerator.num_processes)
    interrupted = run_loop(cfg, parts, data, state, total_micro, ckpt, progress)
    save_state(parts, ckpt, state)
    if interrupted:
        log.warning("Interrupted: checkpoint saved at example %d; continue with --resume.", state.micro_step)
        raise KeyboardInterrupt
    if data.val and (not state.val_losses or state.val_losses[-1][0] != state.opt_step):  # not twice for the last step
        state.val_losses.append((state.opt_step, validation_loss(parts.model, data.val, accelerator.device)))
    tokens = sum_over_processes(accelerator, state.tokens)
    accelerator.wait_for_everyone()
    card = training_card(cfg, facts, data, state, tokens, data_stats)
    if accelerator.is_main_process:
        save_adapter(accelerator.unwrap_model(parts.model), tokenizer, out)
        write_card(out, card)
    return card


@dataclass
class TrainData:
    """The examples as (token ids, target length) pairs, tokenized once, in the order they train."""

    train: list[tuple[list[int], int]]
    val: list[tuple[list[int], int]]
    order: list[int]  # indexes into ``train``, shared by every process
    skipped_too_long: int


@dataclass
class Parts:
    """What the loop trains with: model and optimizer wrapped by accelerate, the scheduler not.

    accelerate's scheduler wrapper would advance once per process at every step.
    """

    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    params: list[Any]  # the trainable ones, for gradient clipping


def make_accelerator(facts: dict[str, Any]) -> Any:
    """An Accelerator on the device and in the dtype :func:`build_model` chose (autocast for bf16/fp16)."""
    from accelerate import Accelerator

    return Accelerator(
        mixed_precision={"bfloat16": "bf16", "float16": "fp16"}.get(facts["dtype"], "no"),
        cpu=facts["device"] == "cpu",
    )


def prepare_data(cfg: TrainConfig, tokenizer: Any, train_examples: Sequence[RaftExample],
                 val_examples: Sequence[RaftExample]) -> TrainData:
    """Tokenize once, skip (and count) examples over ``max_length``, fix a deterministic order."""
    encoded = [encode(ex, tokenizer) for ex in train_examples]
    too_long = sum(1 for ids, _ in encoded if len(ids) > cfg.max_length)
    if too_long:  # a silent drop would bias the data toward short sources (tables, long paragraphs go first)
        longest = max(len(ids) for ids, _ in encoded)
        log.warning("%d of %d training examples are longer than %d tokens and are skipped; keep them with "
                    "--max-length %d", too_long, len(encoded), cfg.max_length, longest)
    encoded = [e for e in encoded if len(e[0]) <= cfg.max_length]
    val = [e for e in (encode(ex, tokenizer) for ex in val_examples[: cfg.val_examples]) if len(e[0]) <= cfg.max_length]
    return TrainData(encoded, val, training_order(len(encoded), cfg.seed), too_long)


def plan_steps(cfg: TrainConfig, n_examples: int, world: int) -> tuple[int, int]:
    """(examples each process sees, optimizer steps): ``epochs`` over the data, capped by ``max_steps``.

    Data-parallel: process ``rank`` of ``world`` takes every world-th example of the shared order.
    """
    total_micro = math.ceil(cfg.epochs * n_examples / world)
    total_opt = math.ceil(total_micro / cfg.grad_accum)
    if cfg.max_steps:
        total_opt = min(total_opt, cfg.max_steps) if cfg.epochs > 0 else cfg.max_steps
        total_micro = total_opt * cfg.grad_accum
    return total_micro, total_opt


def build_optimizer(cfg: TrainConfig, model: Any, accelerator: Any, total_opt: int) -> Parts:
    """AdamW on the LoRA weights, cosine schedule with warm-up over ``total_opt`` steps."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, max(1, int(cfg.warmup_ratio * total_opt)), total_opt)
    model, optimizer = accelerator.prepare(model, optimizer)
    return Parts(accelerator, model, optimizer, scheduler, params)


def resume_state(parts: Parts, ckpt: Path, total_micro: int) -> TrainState:
    """Load ``ckpt`` into ``parts`` (adapter, optimizer, schedule) and return where it stopped.

    Raises:
        ConfigError: no checkpoint, or one trained by another number of processes.
    """
    world = parts.accelerator.num_processes
    if not (ckpt / "state.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {ckpt}; start without --resume")
    state = TrainState(**load_checkpoint(ckpt, parts.accelerator.unwrap_model(parts.model), parts.optimizer, parts.scheduler))
    if state.world_size != world:
        raise ConfigError(f"--resume: the checkpoint was trained by {state.world_size} process(es); "
                          f"resume with {state.world_size}, not {world}")
    log.warning("Resuming at example %d / %d (optimizer step %d).", state.micro_step, total_micro, state.opt_step)
    return state


def save_state(parts: Parts, ckpt: Path, state: TrainState) -> None:
    """A resumable checkpoint (the first process writes it)."""
    if parts.accelerator.is_main_process:
        save_checkpoint(ckpt, parts.accelerator.unwrap_model(parts.model), parts.optimizer, parts.scheduler, asdict(state))


def run_loop(cfg: TrainConfig, parts: Parts, data: TrainData, state: TrainState, total_micro: int, ckpt: Path,
             progress: bool) -> bool:
    """Train until ``total_micro`` examples or Ctrl-C, checkpointing every ``save_every_s``; advances ``state``.

    Returns:
        Whether it was interrupted; ``state`` is then rolled back to the last optimizer step.
    """
    accelerator, model, optimizer, scheduler = parts.accelerator, parts.model, parts.optimizer, parts.scheduler
    world, rank = accelerator.num_processes, accelerator.process_index
    interrupted = False

    def on_sigint(*_: object) -> None:
        nonlocal interrupted
        interrupted = True

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    model.train()
    t_start, last_save = time.perf_counter() - state.elapsed_s, time.perf_counter()
    window: list[float] = []
    pending_tokens = 0  # of the examples since the last optimizer step
    bar = _progress(progress and accelerator.is_main_process, total_micro, state.micro_step, world=world,
                    start_tokens=state.tokens, start_elapsed_s=state.elapsed_s)
    try:
        while state.micro_step < total_micro and not interrupted:
            ids, n_target = data.train[data.order[(state.micro_step * world + rank) % len(data.train)]]
            # Our own accumulation (not accelerator.accumulate): step boundaries stay
            # aligned with micro_step across a resume.
            sync = (state.micro_step + 1) % cfg.grad_accum == 0 or state.micro_step + 1 == total_micro
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                loss = answer_loss(model, ids, n_target, accelerator.device)
                accelerator.backward(loss / cfg.grad_accum)
            state.micro_step += 1
            state.tokens += len(ids)
            pending_tokens += len(ids)
            window.append(float(loss.detach()))
            if not sync:
                continue
            accelerator.clip_grad_norm_(parts.params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            state.opt_step += 1
            pending_tokens = 0  # after the step: an interrupt inside it still rolls these back
            state.losses.append((state.opt_step, sum(window) / len(window)))
            window = []
            if data.val and state.opt_step % cfg.eval_every == 0:
                tic = time.perf_counter()
                state.val_losses.append((state.opt_step, validation_loss(model, data.val, accelerator.device)))
                state.validation_s += time.perf_counter() - tic
            state.elapsed_s = time.perf_counter() - t_start
            bar(state, state.losses[-1][1])
            if time.perf_counter() - last_save > cfg.save_every_s:
                tic = time.perf_counter()
                save_state(parts, ckpt, state)
                last_save = time.perf_counter()
                state.checkpoint_s += last_save - tic
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, old_handler)
        bar(None, None)
    if interrupted:
        # Weights only change at step boundaries: roll back to the last one, whose
        # examples are all in the weights, and drop the partial accumulation.
        state.micro_step = state.opt_step * cfg.grad_accum
        state.tokens -= pending_tokens
    return interrupted


def sum_over_processes(accelerator: Any, n: int) -> int:
    """``n`` summed over every data-parallel process (a collective: each process must call it)."""
    import torch

    return int(accelerator.reduce(torch.tensor(n, device=accelerator.device), reduction="sum"))


def _progress(enabled: bool, total: int, start: int, every_s: float = 60.0, world: int = 1, start_tokens: int = 0,
              start_elapsed_s: float = 0.0) -> Any:
    """A rich bar with loss, tokens/s and ETA; returns update(state, loss) / close(None, None).

    A bar redrawn in place is lost when the output goes to a log file (a
    long run in the background), so there a plain line is printed every
    ``every_s`` seconds instead. Rate and ETA count this run only (a resumed
    run's earlier sessions may have shared the machine); with several
    processes the rate is estimated as processes x this one's tokens.
    """
    if not enabled:
        return lambda *a: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeRemainingColumn(), transient=False)
    task = bar.add_task("train", total=total, completed=start, info="")
    plain = not bar.console.is_terminal
    last_line = -math.inf
    if not plain:
        bar.start()

    def update(state: TrainState | None, loss: float | None) -> None:
        nonlocal last_line
        if state is None:
            if not plain:
                bar.stop()
            return
        run_s = max(state.elapsed_s - start_elapsed_s, 1e-9)
        tps = (state.tokens - start_tokens) * world / run_s
        info = f"loss {loss:.3f}  {tps:.0f} tok/s  step {state.opt_step}"
        if not plain:
            bar.update(task, completed=state.micro_step, info=info)
        elif time.monotonic() - last_line >= every_s or state.micro_step >= total:
            last_line = time.monotonic()
            eta = (total - state.micro_step) * run_s / (state.micro_step - start) if state.micro_step > start else math.nan
            bar.console.print(f"train {state.micro_step}/{total} examples  {info}  "
                              f"elapsed {state.elapsed_s / 60:.0f} min  ETA {eta / 60:.0f} min", soft_wrap=True)

    return update


def dump_examples(examples: Sequence[RaftExample], tokenizer: Any, n: int = 3) -> str:
    """Three formatted examples and token-length stats, for ``rag finetune --dry-run``."""
    lengths = sorted(len(encode(ex, tokenizer)[0]) for ex in examples)
    parts = []
    for ex in examples[:n]:
        ids, _ = encode(ex, tokenizer)
        parts.append(f"--- {ex.dataset}/{ex.id} (gold kept: {ex.gold_kept}) ---\n{tokenizer.decode(ids)}")
    q = lambda p: lengths[min(len(lengths) - 1, int(p * len(lengths)))]  # noqa: E731
    kept = sum(ex.gold_kept for ex in examples)
    parts.append(json.dumps({"examples": len(examples), "gold_kept": kept, "abstain_targets": len(examples) - kept,
                             "tokens_min": lengths[0], "tokens_p50": q(0.5), "tokens_p95": q(0.95),
                             "tokens_max": lengths[-1], "tokens_total": sum(lengths)}, indent=2))
    return "\n\n".join(parts)

"""The fine-tune's settings: one dataclass per stage, each default written once here.

``rag finetune`` takes its flag defaults from these classes and builds all
of them before it ingests anything or loads a model, so a bad value fails at
once, in one line that names the flag (``--lora-r must be >= 1, got 0``),
not minutes in. The stages:

* :class:`DataConfig`: where the questions come from and which of them train;
* :class:`RaftConfig`: how each question becomes an example (gold, distractors);
* :class:`TrainConfig`: the LoRA recipe, saved beside the adapter;
* :class:`FinetuneRequest`: the three, plus what to do with them (dry run, resume, merge).

Only the standard library here: the CLI imports this module to draw its
defaults, and ``rag --help`` must stay instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rag_app.errors import ConfigError

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DataConfig:
    """Where the training questions come from: exactly one of QA sets, triples or prebuilt examples.

    Attributes:
        datasets: QA set folders (``docs/`` + ``qa.jsonl``); with ``synthesize``, folders of documents.
        triples: JSONL of ``{question, answer, context}`` instead of QA sets (no index needed).
        examples: prebuilt examples (JSONL from ``save_examples``), trained on as they were built.
        save_examples: write the built examples here (train, then ``val:``-prefixed validation).
        split: train on the questions whose ``split_hint`` is this.
        max_examples: cap on training examples, balanced across sets; None: all.
        val_fraction: share of each set's documents held out for validation (never trained on).
        synthesize: no QA set: the base model writes up to this many questions per folder.
    """

    datasets: tuple[Path, ...] = ()
    triples: Path | None = None
    examples: Path | None = None
    save_examples: Path | None = None
    split: str = "train"
    max_examples: int | None = None
    val_fraction: float = 0.1
    synthesize: int | None = None

    def __post_init__(self) -> None:
        sources = sum(bool(x) for x in (self.datasets, self.triples, self.examples))
        if sources != 1:
            raise ConfigError("give QA set folders, or --triples FILE, or --examples FILE (exactly one)")
        for flag, path in (("--triples", self.triples), ("--examples", self.examples)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{flag}: no file {path}; pass a JSONL file")
        if self.synthesize is not None and (self.synthesize < 1 or not self.datasets):
            raise ConfigError("--synthesize N needs N >= 1 and document folders to write questions about")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"--max-examples must be >= 1, got {self.max_examples}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class RaftConfig:
    """How examples are built.

    Attributes:
        p_gold: probability the gold chunk is shown (RAFT's P); otherwise the target abstains.
        distractors: hard-negative chunks per example (RAFT's D).
        quote: target quotes the supporting sentence before the answer (RAFT's chain of thought).
        max_source_chars: longer sources are trimmed around the answer, at sentence
            boundaries, to keep examples ~650 tokens (training cost grows with length).
        p_inject: probability that one source carries a planted instruction
            (:mod:`finetune.injection`); the target ignores it. Drawn from its
            own seeded stream, so every other choice is as without it.
        seed: makes gold dropping, distractor order and shuffling reproducible.
    """

    p_gold: float = 0.8
    distractors: int = 3
    quote: bool = False
    max_source_chars: int = 1000
    p_inject: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_gold <= 1.0:
            raise ConfigError(f"--p-gold must be in [0, 1], got {self.p_gold}")
        if not 0.0 <= self.p_inject <= 1.0:
            raise ConfigError(f"--inject must be in [0, 1], got {self.p_inject}")
        if self.distractors < 0:
            raise ConfigError(f"--distractors must be >= 0, got {self.distractors}")
        if self.max_source_chars < 1:
            raise ConfigError(f"RaftConfig.max_source_chars must be >= 1, got {self.max_source_chars}")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the recipe; saved beside the adapter.

    Attributes:
        base_model: ``bundled``, a Hugging Face id in the local cache, or a folder.
        out_dir: adapter, checkpoint, card and plots go here.
        quant: ``auto`` (:func:`rag_app.models.wants_4bit`: NF4 on CUDA for bases > 1B), ``nf4`` (QLoRA), ``none`` (plain LoRA).
        layers: ``all``, ``top-half`` (default on CPU: 2x faster), or ``auto``.
        epochs: passes over the training examples; ``max_steps`` (optimizer steps) caps it.
        grad_accum: examples per optimizer step (batch 1 each: no padding waste on CPU).
        max_length: examples longer than this many tokens are skipped (and counted).
        save_every_s: seconds between resumable checkpoints.
        init_adapter: start from this adapter's weights (its rank, targets and
            layers) instead of a fresh LoRA: more training for an adapter
            already shipped, when a pass from scratch does not fit the time.
            With ``layers="all"`` an adapter of fewer layers is widened to all.
    """

    base_model: str = "bundled"
    out_dir: Path = Path("runs/adapter")
    cache_dir: Path = Path.home() / ".cache" / "rag_app"
    quant: Literal["auto", "nf4", "none"] = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = TARGETS
    layers: Literal["auto", "all", "top-half"] = "auto"
    lr: float = 3e-4
    warmup_ratio: float = 0.05
    epochs: float = 1.0
    max_steps: int | None = None
    grad_accum: int = 8
    max_length: int = 1024
    eval_every: int = 25
    val_examples: int = 32
    save_every_s: float = 300.0
    gradient_checkpointing: bool | None = None
    seed: int = 0
    init_adapter: Path | None = None

    def __post_init__(self) -> None:
        if self.quant not in ("auto", "nf4", "none"):
            raise ConfigError(f"--quant must be auto, nf4 or none, got {self.quant!r}")
        if self.layers not in ("auto", "all", "top-half"):
            raise ConfigError(f"--layers must be auto, all or top-half, got {self.layers!r}")
        if self.lora_r < 1:
            raise ConfigError(f"--lora-r must be >= 1, got {self.lora_r}")
        if self.lora_alpha <= 0:  # the update is scaled by alpha / r: 0 trains nothing
            raise ConfigError(f"--lora-alpha must be > 0, got {self.lora_alpha}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"--lr must be in (0, 1), got {self.lr}")
        if self.epochs <= 0 and not self.max_steps:
            raise ConfigError("--epochs must be > 0 (or give --max-steps)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.grad_accum < 1:
            raise ConfigError(f"--grad-accum must be >= 1, got {self.grad_accum}")
        if self.max_length < 64:
            raise ConfigError(f"--max-length must be >= 64 tokens, got {self.max_length}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"TrainConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.eval_every < 1:
            raise ConfigError(f"TrainConfig.eval_every must be >= 1, got {self.eval_every}")


@dataclass(frozen=True)
class FinetuneRequest:
    """One ``rag finetune`` run: the three stage configs and what to do with them.

    Attributes:
        data, raft, train: the stages (see each class).
        resume: continue from ``train.out_dir/checkpoint``.
        dry_run: build the examples and print three of them with token stats; no training.
        merge: also write ``train.out_dir/merged``, base + adapter as one model.
        eval_examples: validation examples scored base vs adapter after training (0: skip).
    """

    data: DataConfig
    raft: RaftConfig = field(default_factory=RaftConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False
    dry_run: bool = False
    merge: bool = False
    eval_examples: int = 40

    def __post_init__(self) -> None:
        if self.eval_examples < 0:
            raise ConfigError(f"--eval-examples must be >= 0, got {self.eval_examples}")
        # The files the run will need, checked now rather than after the examples are built.
        ckpt = Path(self.train.out_dir) / "checkpoint"
        if self.resume and not self.dry_run and not (ckpt / "state.json").is_file():
            raise ConfigError(f"--resume: no checkpoint in {ckpt}; start without --resume")
        if self.train.init_adapter is not None:
            from rag_app.models import check_adapter  # light: reads the folder, no weights

            check_adapter(self.train.init_adapter)

    @property
    def seed(self) -> int:
        """The one ``--seed``: the document split, the balancing and the examples all draw from it."""
        return self.raft.seed

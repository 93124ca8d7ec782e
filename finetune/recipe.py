"""``rag finetune`` end to end: QA sets + their indexes -> RAFT examples -> adapter.

The CLI (the front door) ingests each dataset's docs and hands the indexes
here; this module never builds an index. It splits each set's training
questions by document (validation documents are never trained on), builds
examples, balances sets so one large set does not drown the others, then
runs :func:`finetune.train.train`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from finetune.artifacts import share_weights, write_card
from finetune.config import FinetuneRequest
from finetune.dataset import RaftExample, balance_decisions, build_examples, examples_from_triples, read_jsonl, split_by_document, write_jsonl
from finetune.synthesize import synthesis_quality, synthesize_items
from finetune.train import dump_examples, train
from rag_app.config import Settings
from rag_app.errors import ConfigError

log = logging.getLogger(__name__)


def balanced(groups: Mapping[str, list[RaftExample]], cap: int | None, seed: int) -> list[RaftExample]:
    """Round-robin across sets up to ``cap`` examples, then shuffled: every set is represented."""
    rng = random.Random(f"balance-{seed}")
    pools = {name: rng.sample(exs, len(exs)) for name, exs in groups.items()}
    out: list[RaftExample] = []
    while any(pools.values()) and (cap is None or len(out) < cap):
        for name in sorted(pools):
            if pools[name] and (cap is None or len(out) < cap):
                out.append(pools[name].pop())
    rng.shuffle(out)
    return out


def build_training_data(request: FinetuneRequest, settings: Settings, indexes: Mapping[Path, Path]) -> tuple[list[RaftExample], list[RaftExample], dict[str, Any]]:
    """(train, validation, stats) from the request's sources."""
    from rag_app.embeddings import load_embedder
    from rag_app.evaluate.dataset import load_dataset
    from rag_app.retriever import Retriever
    from rag_app.store import IndexStore

    data, cfg = request.data, request.raft
    if data.examples:
        examples = read_jsonl(data.examples)
        val = [e for e in examples if e.id.startswith("val:")]
        train_ex = [e for e in examples if not e.id.startswith("val:")]
        return train_ex, val, {"source": str(data.examples), **example_stats(train_ex, val)}
    if data.triples:
        examples = examples_from_triples(data.triples, cfg)
        cut = int(len(examples) * (1 - data.val_fraction))
        return examples[:cut], examples[cut:], {"source": str(data.triples), "train": cut, "val": len(examples) - cut,
                                                "p_inject": cfg.p_inject}
    embedder = load_embedder(settings.embedding_model)
    train_groups: dict[str, list[RaftExample]] = {}
    val_all: list[RaftExample] = []
    # Hard negatives from the retriever as served (its mode), so training sees the distractors serving will.
    retrieve = settings.retrieve.model_copy(update={"mmr": False})
    stats: dict[str, Any] = {"raft": {"p_gold": cfg.p_gold, "distractors": cfg.distractors, "quote": cfg.quote,
                                      "p_inject": cfg.p_inject, "distractors_from": retrieve.mode},
                             "split": data.split, "sets": {}}
    writers = _synthesis_models(settings) if data.synthesize else None
    for dataset_dir in data.datasets:
        with IndexStore.open(indexes[dataset_dir], embedding_model=embedder.model_name) as store:
            retriever = Retriever(store, embedder, retrieve)
            set_stats: dict[str, Any] = {}
            if writers is not None:
                name = dataset_dir.resolve().name
                items, set_stats["synthesized"] = synthesize_items(store, *writers, data.synthesize, name, request.seed)
                set_stats["synthesized"]["quality"] = synthesis_quality(
                    items, lambda q: retriever.retrieve(q, k=settings.retrieve.top_k))
                log.warning("%s: %d of %d synthesized questions kept (rejected: %s); the retriever finds the passage "
                            "for %s of them.", name, len(items), set_stats["synthesized"]["chunks_asked"],
                            set_stats["synthesized"]["rejected"], set_stats["synthesized"]["quality"]["gold_doc_hit_at_k"])
            else:
                ds = load_dataset(dataset_dir, split=data.split, seed=request.seed)
                name, items = ds.name, ds.items
            train_items, val_items = split_by_document(items, data.val_fraction, request.seed)
            train_items, set_stats["decisions_dropped"] = balance_decisions(train_items, request.seed)
            if data.max_examples:
                # Balancing keeps about cap/sets per set: build only those (and a margin for the ones
                # filtered out), since each example costs a retrieval.
                budget = math.ceil(1.5 * data.max_examples / len(data.datasets))
                rng = random.Random(f"sample-{request.seed}-{name}")
                train_items = sorted(rng.sample(train_items, min(budget, len(train_items))), key=lambda i: i.line)
                val_items = sorted(rng.sample(val_items, min(budget // 5 + 1, len(val_items))), key=lambda i: i.line)
            train_groups[name] = build_examples(train_items, name, store, retriever, cfg)
            val_ex = build_examples(val_items, name, store, retriever, cfg)
        for ex in val_ex:
            ex.id = f"val:{ex.id}"
        val_all += val_ex
        stats["sets"][name] = {"questions": len(items), "train_questions": len(train_items),
                               "val_questions": len(val_items), "train_examples": len(train_groups[name]), **set_stats}
    train_ex = balanced(train_groups, data.max_examples, request.seed)
    val_ex = balanced({"val": val_all}, None, request.seed)
    return train_ex, val_ex, {**stats, **example_stats(train_ex, val_ex)}


def example_stats(train_ex: list[RaftExample], val_ex: list[RaftExample]) -> dict[str, Any]:
    """What the training card records of the data, whether built now or read from ``--examples``."""
    return {"train_examples": len(train_ex), "val_examples": len(val_ex),
            "train_per_set": dict(sorted(Counter(e.dataset for e in train_ex).items())),
            "abstain_targets": sum(not e.gold_kept for e in train_ex),
            "quoted_targets": sum(e.target.startswith('"') for e in train_ex)}


def _synthesis_models(settings: Settings) -> tuple[Callable[[list[dict[str, str]]], str], Callable[[list[dict[str, str]]], str]]:
    """``--synthesize``'s (question writer, answerer): the base model, and the configured generator with its adapter."""
    from rag_app.generation import load_generator

    base = load_generator(settings.generate.model_copy(update={"adapter": "none"}), settings.cache_dir)
    served = load_generator(settings.generate, settings.cache_dir)
    return (lambda messages: base.generate(messages, max_new_tokens=48, temperature=0.0),
            lambda messages: served.generate(messages, max_new_tokens=64, temperature=0.0))


def merge_adapter(settings: Settings, adapter_dir: Path, out: Path) -> Path:
    """Base + adapter folded into one plain model folder (for backends without LoRA support)."""
    from rag_app.models import apply_adapter, load_model

    loaded = apply_adapter(load_model(settings.generate.model, settings.cache_dir, dtype="bfloat16", device="cpu"), adapter_dir)
    merged = loaded.model.merge_and_unload()
    merged.save_pretrained(str(out), safe_serialization=True)
    share_weights(out)
    loaded.tokenizer.save_pretrained(str(out))
    card = adapter_dir / "training_card.json"
    if card.is_file():  # provenance, and what marks the folder as fine-tuned when served (GenerateConfig.fine_tuned)
        shutil.copy2(card, out / card.name)
    else:
        (out / card.name).unlink(missing_ok=True)  # an earlier merge's card would describe other weights
    return out


def validate_adapter(settings: Settings, adapter_dir: Path, examples: list[RaftExample], base: bool = True) -> dict[str, Any]:
    """Base vs adapter on held-out validation examples (same sources and prompt); for the training card.

    ``base=False`` scores the adapter alone (comparing two adapters on one run's examples).
    """
    from finetune.validate import compare
    from rag_app.generation import HFGenerator
    from rag_app.models import apply_adapter, load_model

    gens = {}
    if base:
        gens["base"] = HFGenerator(load_model(settings.generate.model, settings.cache_dir, device="cpu"), "base", None)
    tuned = apply_adapter(load_model(settings.generate.model, settings.cache_dir, device="cpu"), adapter_dir)
    gens["adapter"] = HFGenerator(tuned, "adapter", str(adapter_dir))
    return {"examples": "validation split (documents not trained on), sources as built, greedy",
            **compare(examples, gens)}


def run_finetune(request: FinetuneRequest, settings: Settings, indexes: Mapping[Path, Path]) -> str:
    """Build data, then dry-run or train (and merge); returns a summary for the terminal."""
    train_ex, val_ex, stats = build_training_data(request, settings, indexes)
    if not train_ex:
        hint = ("too few synthesized questions passed the filter (see the counts above); try a larger --synthesize N "
                "or a stronger --model" if request.data.synthesize else
                f"check the {request.data.split!r} split and that the answers occur in the gold documents")
        raise ConfigError(f"no training examples were built: {hint}")
    if request.data.save_examples:
        write_jsonl([*train_ex, *val_ex], request.data.save_examples)
    # The settings own which base model and cache (--model, rag.toml), as they do for serving.
    cfg = replace(request.train, base_model=settings.generate.model, cache_dir=settings.cache_dir)
    if request.dry_run:
        from rag_app.models import load_model

        tokenizer = load_model(settings.generate.model, settings.cache_dir, device="cpu").tokenizer
        return dump_examples(train_ex, tokenizer) + "\n" + json.dumps({"data": stats}, indent=2, default=str)
    card = train(cfg, train_ex, val_ex, resume=request.resume, data_stats=stats)
    from accelerate import PartialState  # the process state train()'s Accelerator set up

    if not PartialState().is_main_process:
        return ""  # data-parallel: the first process evaluates, merges and reports
    if request.eval_examples and val_ex:
        card["eval"] = validate_adapter(settings, cfg.out_dir, val_ex[: request.eval_examples])
        write_card(cfg.out_dir, card)
    val = "" if card["val_loss"] is None else f", val loss {card['val_loss']:.3f}"
    lines = [f"Adapter written to {cfg.out_dir} ({card['steps']['examples_seen']} examples, "
             f"{card['time_s']:.0f} s, {card['tokens_per_s']:.0f} tokens/s{val}).",
             f"Use it: rag ask \"...\" --adapter {cfg.out_dir}"]
    if request.merge:
        lines.append(f"Merged model: {merge_adapter(settings, cfg.out_dir, cfg.out_dir / 'merged')}")
    return "\n".join(lines)

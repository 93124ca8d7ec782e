"""The recipe on tiny random models: loss falls, files written, adapter reloads, resume, QLoRA on CPU."""

import json
import os
import stat

import pytest

pytestmark = pytest.mark.slow  # trains tiny models for a few steps: ~1 min on 2 cores
import torch

from finetune.dataset import RaftExample, SourceText
from finetune.train import TrainConfig, answer_loss, encode, train
from rag_app.errors import ConfigError
from rag_app.models import apply_adapter, load_model


def examples(n=12):
    return [
        RaftExample(str(i), "toy", f"What colour is item {i}?",
                    [SourceText(f"Item {i} is painted {c}.", f"i{i}.txt", f"i{i}")], f"{c} [1]", [1], True)
        for i, c in zip(range(n), ["red", "blue", "green"] * n)
    ]


def config(model, out, **kw):
    base = dict(base_model=str(model), out_dir=out, cache_dir=out / "cache", lr=2e-2, epochs=3, grad_accum=2,
                eval_every=3, save_every_s=1e9, lora_r=4, lora_alpha=8, layers="all")
    return TrainConfig(**{**base, **kw})


def test_only_answer_tokens_carry_loss(tiny_smollm, tmp_path):
    loaded = load_model(str(tiny_smollm), tmp_path, dtype="float32")
    ex = examples(1)[0]
    ids, n = encode(ex, loaded.tokenizer)
    target = loaded.tokenizer(ex.target + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[-n:] == target
    with torch.no_grad():
        full = loaded.model(torch.tensor([ids])).logits[0]
        expected = torch.nn.functional.cross_entropy(full[-n - 1 : -1], torch.tensor(ids[-n:]))
        got = answer_loss(loaded.model, ids, n, "cpu")
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_training_lowers_loss_and_writes_a_loadable_adapter(tiny_smollm, tmp_path):
    out = tmp_path / "run"
    card = train(config(tiny_smollm, out), examples(), examples(4), progress=False)
    for name in ("adapter_config.json", "adapter_model.safetensors", "training_card.json", "training_card.md", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert card["losses"][-1][1] < card["losses"][0][1]
    assert card["val_losses"][-1][1] < card["val_losses"][0][1]
    steps = [s for s, _ in card["val_losses"]]
    assert steps == sorted(set(steps))  # one validation per step, the last one not repeated
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == card["base_model_id"]
    assert card["quantization"].startswith("none") and card["steps"]["examples_seen"] == 36

    # The adapter changes the model's answer distribution the way training pushed it.
    base = load_model(str(tiny_smollm), tmp_path, dtype="float32")
    ids, n = encode(examples(1)[0], base.tokenizer)
    with torch.no_grad():
        before = answer_loss(base.model, ids, n, "cpu").item()
        tuned = apply_adapter(load_model(str(tiny_smollm), tmp_path, dtype="float32"), out)
        after = answer_loss(tuned.model, ids, n, "cpu").item()
    assert after < before - 0.5

    # --merge: one plain model folder that answers as base + adapter, served as a fine-tune.
    from finetune.recipe import merge_adapter
    from rag_app.config import load_settings

    settings = load_settings(cache_dir=tmp_path, generate={"model": str(tiny_smollm), "adapter": "none"})
    old_umask = os.umask(0o022)
    try:
        merged = merge_adapter(settings, out, out / "merged")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((merged / "model.safetensors").stat().st_mode) == 0o644  # others may load it
    with torch.no_grad():
        plain = answer_loss(load_model(str(merged), tmp_path, dtype="float32").model, ids, n, "cpu").item()
    assert plain == pytest.approx(after, rel=0.05)  # merged in bf16
    assert json.loads((merged / "training_card.json").read_text())["base_model_id"] == card["base_model_id"]
    assert load_settings(generate={"model": str(merged), "adapter": "none"}).generate.fine_tuned
    assert not settings.generate.fine_tuned


def test_init_adapter_continues_from_its_weights(tiny_smollm, tmp_path):
    first = tmp_path / "first"
    train(config(tiny_smollm, first, epochs=1, layers="top-half"), examples(6), progress=False)
    base = load_model(str(tiny_smollm), tmp_path, dtype="float32")
    ids, n = encode(examples(1)[0], base.tokenizer)

    def loss_with(adapter):
        with torch.no_grad():
            return answer_loss(apply_adapter(load_model(str(tiny_smollm), tmp_path, dtype="float32"), adapter).model, ids, n, "cpu").item()

    with torch.no_grad():
        assert loss_with(first) < answer_loss(base.model, ids, n, "cpu").item() - 0.1  # so "unchanged" below means something

    # lr ~0: the continued adapter is the first one, unchanged (its layers too, with layers auto).
    card = train(config(tiny_smollm, tmp_path / "same", epochs=1, lr=1e-12, init_adapter=first, layers="auto"),
                 examples(4), progress=False)
    assert card["init_adapter"] == str(first) and card["adapted_layers"] == "1-1 of 2"
    assert loss_with(tmp_path / "same") == pytest.approx(loss_with(first), abs=1e-6)
    # layers "all" widens it: layer 0 gets a LoRA too, which starts at zero, so the model starts as the first.
    card = train(config(tiny_smollm, tmp_path / "wide", epochs=1, lr=1e-12, init_adapter=first), examples(4), progress=False)
    assert card["adapted_layers"] == "all"
    from safetensors.torch import load_file

    assert any(".layers.0." in k for k in load_file(tmp_path / "wide" / "adapter_model.safetensors"))
    assert loss_with(tmp_path / "wide") == pytest.approx(loss_with(first), abs=1e-6)
    # and with a learning rate it keeps improving from there, not from a fresh LoRA (its own layers, and widened)
    for layers in ("auto", "all"):
        train(config(tiny_smollm, tmp_path / layers, epochs=2, init_adapter=first, layers=layers), examples(), progress=False)
        assert loss_with(tmp_path / layers) < loss_with(first)


def test_qlora_nf4_on_cpu(tiny_smollm, tmp_path):
    card = train(config(tiny_smollm, tmp_path / "q", quant="nf4", epochs=1), examples(8), progress=False)
    assert card["quantization"] == "nf4 (QLoRA)"
    assert (tmp_path / "q" / "adapter_model.safetensors").is_file()
    assert card["losses"][-1][1] < card["losses"][0][1]


def test_llama32_shaped_model_trains(tiny_llama32, tmp_path):
    card = train(config(tiny_llama32, tmp_path / "l", epochs=1), examples(6), progress=False)
    assert card["steps"]["optimizer_steps"] == 3


def test_examples_over_max_length_are_skipped_with_a_warning_that_says_how_to_keep_them(tiny_smollm, tmp_path, caplog):
    data = examples(6)
    data[0].sources[0].text += " More paint." * 60  # a long source: one example far over the limit
    with caplog.at_level("WARNING", logger="finetune.train"):
        card = train(config(tiny_smollm, tmp_path / "m", epochs=1, max_length=120), data, progress=False)
    assert card["data"]["skipped_too_long"] == 1 and card["steps"]["optimizer_steps"] == 3  # 5 examples, 2 a step
    [message] = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert message.startswith("1 of 6 training examples are longer than 120 tokens") and "--max-length" in message
    with pytest.raises(ConfigError, match="--max-length must be >= 64"):
        config(tiny_smollm, tmp_path / "x", max_length=10)


def test_saving_never_asks_the_hub(tiny_smollm, tmp_path, monkeypatch):
    """Adapters record the base's Hub id; peft would look it up online at every save (offline: a warning)."""
    from peft import LoraConfig, get_peft_model

    from finetune.artifacts import save_adapter, save_checkpoint

    def no_hub(*a, **kw):
        raise AssertionError("peft asked the Hub about the base model while saving")

    monkeypatch.setattr("peft.utils.save_and_load.check_file_exists_on_hf_hub", no_hub)
    loaded = load_model(str(tiny_smollm), tmp_path, dtype="float32")
    model = get_peft_model(loaded.model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.peft_config["default"].base_model_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"  # as train() sets it
    old_umask = os.umask(0o022)
    try:
        save_adapter(model, loaded.tokenizer, tmp_path / "a")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "a" / "adapter_model.safetensors").stat().st_mode) == 0o644  # others may read it
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "c", model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), {})
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file() and (tmp_path / "c" / "adapter.safetensors").is_file()


def test_resume_continues_from_the_saved_step(tiny_smollm, tmp_path, monkeypatch):
    import finetune.train as recipe

    out = tmp_path / "r"
    calls = {"n": 0}
    lengths: list[int] = []
    real = recipe.answer_loss

    def crash_after_five(model, ids, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        lengths.append(len(ids))
        return real(model, ids, *a, **kw)

    monkeypatch.setattr(recipe, "answer_loss", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_smollm, out, save_every_s=0.0, epochs=1), examples(), progress=False)
    saved = json.loads((out / "checkpoint" / "state.json").read_text())
    assert saved["micro_step"] == 4 and saved["opt_step"] == 2  # rolled back to the last step boundary
    assert saved["tokens"] == sum(lengths[:4])  # the fifth example's tokens went with its dropped gradient
    monkeypatch.setattr(recipe, "answer_loss", real)
    state_file = out / "checkpoint" / "state.json"
    state_file.write_text(json.dumps({**saved, "world_size": 2}))  # as if two processes had trained it
    with pytest.raises(ConfigError, match="trained by 2 process"):
        train(config(tiny_smollm, out, epochs=1), examples(), resume=True, progress=False)
    older = {k: v for k, v in saved.items() if k not in ("validation_s", "checkpoint_s")}
    state_file.write_text(json.dumps(older))  # as a checkpoint written before the card timed validation
    with pytest.raises(ConfigError, match="same --layers"):  # the checkpoint's LoRA covers all layers
        train(config(tiny_smollm, out, epochs=1, layers="top-half"), examples(), resume=True, progress=False)
    card = train(config(tiny_smollm, out, epochs=1), examples(), resume=True, progress=False)
    assert card["steps"] == {"examples_seen": 12, "optimizer_steps": 6, "processes": 1}
    assert [s for s, _ in card["losses"]] == [1, 2, 3, 4, 5, 6]


def test_card_records_speed_beside_what_it_depends_on(tiny_smollm, tmp_path):
    """Examples/s, tokens per example, time not spent training, threads and CPU: cards from two machines compare."""
    out = tmp_path / "s"
    data = examples(6)
    card = train(config(tiny_smollm, out, epochs=1, eval_every=1, save_every_s=0.0), data, examples(2), progress=False)
    speed = card["speed"]
    tokenizer = load_model(str(tiny_smollm), tmp_path, dtype="float32").tokenizer
    assert speed["tokens_per_example"] == round(sum(len(encode(ex, tokenizer)[0]) for ex in data) / 6, 1)
    assert speed["validation_s"] > 0 and speed["checkpoint_s"] > 0  # a pass and a checkpoint at each of 3 steps
    assert speed["validation_s"] + speed["checkpoint_s"] < card["time_s"] + 0.1
    assert speed["training_tokens_per_s"] > card["tokens_per_s"]
    assert card["time_s"] - 0.051 <= 6 / speed["examples_per_s"] <= card["time_s"] + 0.051  # time_s is rounded to 0.1 s
    assert speed["torch_threads"] == torch.get_num_threads()
    assert speed["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "## Speed" in (out / "training_card.md").read_text()


def test_progress_prints_plain_lines_when_output_is_a_log_file(capsys):
    from finetune.train import TrainState, _progress

    update = _progress(True, total=16, start=0, every_s=3600)
    update(TrainState(micro_step=8, opt_step=1, elapsed_s=40.0, tokens=6000), 1.25)
    update(TrainState(micro_step=12, opt_step=1, elapsed_s=60.0, tokens=9000), 1.0)  # within every_s: no line
    update(TrainState(micro_step=16, opt_step=2, elapsed_s=80.0, tokens=12000), 0.5)  # the last one always prints
    update(None, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("train 8/16 examples  loss 1.250  150 tok/s  step 1") and "ETA 1 min" in lines[0]
    assert lines[1].startswith("train 16/16 examples  loss 0.500")


def test_progress_after_a_resume_counts_this_run_and_every_process(capsys):
    from finetune.train import TrainState, _progress

    # Resumed at example 8 after 400 s (a slow earlier session); two processes, each counting its own tokens.
    update = _progress(True, total=16, start=8, every_s=3600, world=2, start_tokens=6000, start_elapsed_s=400.0)
    update(TrainState(micro_step=12, opt_step=3, elapsed_s=460.0, tokens=9000, world_size=2), 0.75)
    update(None, None)
    line = capsys.readouterr().out.splitlines()[0]
    assert "100 tok/s" in line  # 2 x 3000 tokens in 60 s, not 9000 / 460
    assert "ETA 1 min" in line  # 4 examples left at this run's 15 s each, not the 38 s average since the start

"""`rag finetune`'s settings: defaults written once, every value checked before any ingest or model load."""

import dataclasses
import json
from pathlib import Path

import pytest

from helpers import run_main


@pytest.fixture
def nothing_heavy_runs(tmp_path, monkeypatch):
    """A QA set in an empty working dir, with ingest, the embedder and model loading wired to fail the test."""
    monkeypatch.chdir(tmp_path)
    calls = []

    def forbidden(name):
        def call(*a, **kw):
            calls.append(name)
            raise AssertionError(f"{name} ran before the settings were checked")
        return call

    monkeypatch.setattr("ingest.pipeline.ingest_folder", forbidden("ingest"))
    monkeypatch.setattr("rag_app.embeddings.load_embedder", forbidden("load_embedder"))
    monkeypatch.setattr("rag_app.models.load_model", forbidden("load_model"))
    root = tmp_path / "cities"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "city0.txt").write_text("City 0 has 7 inhabitants.")
    (root / "qa.jsonl").write_text(json.dumps({"id": "q0", "question": "How many inhabitants does City 0 have?",
                                               "answers": ["7"], "gold_doc_ids": ["city0"]}) + "\n")
    return root, calls


@pytest.mark.parametrize(("flags", "message"), [
    (["--lora-r", "0"], "--lora-r must be >= 1, got 0"),
    (["--p-gold", "1.5"], "--p-gold must be in [0, 1], got 1.5"),
    (["--distractors", "-1"], "--distractors must be >= 0, got -1"),
    (["--inject", "2"], "--inject must be in [0, 1], got 2.0"),
    (["--lora-alpha", "0"], "--lora-alpha must be > 0, got 0"),
    (["--max-examples", "0"], "--max-examples must be >= 1, got 0"),
    (["--quant", "int8"], "--quant must be auto, nf4 or none, got 'int8'"),
    (["--eval-examples", "-1"], "--eval-examples must be >= 0, got -1"),
    (["--resume"], f"--resume: no checkpoint in {Path('runs/adapter/checkpoint')}; start without --resume"),
    (["--init-adapter", "nowhere"], "no adapter at nowhere; pass a folder written by rag finetune, or --no-adapter"),
])
def test_a_bad_value_fails_at_once_in_one_line_naming_the_flag(nothing_heavy_runs, monkeypatch, capsys, tmp_path, flags, message):
    root, calls = nothing_heavy_runs
    code, _, err = run_main(monkeypatch, capsys, "finetune", str(root), *flags)
    assert (code, err.splitlines()) == (2, [f"Error: {message}"])
    assert calls == [] and not (tmp_path / ".rag").exists()  # nothing ingested, no model or embedder loaded


@pytest.mark.parametrize("source", ["--examples", "--triples"])
def test_a_missing_examples_or_triples_file_is_one_line(nothing_heavy_runs, monkeypatch, capsys, source):
    code, _, err = run_main(monkeypatch, capsys, "finetune", source, "missing.jsonl")
    assert (code, err.splitlines()) == (2, [f"Error: {source}: no file missing.jsonl; pass a JSONL file"])


def test_inject_with_prebuilt_examples_is_refused_in_one_line(nothing_heavy_runs, monkeypatch, capsys, tmp_path):
    (tmp_path / "ex.jsonl").write_text("")
    code, _, err = run_main(monkeypatch, capsys, "finetune", "--examples", "ex.jsonl", "--inject", "0.3")
    assert (code, err.splitlines()) == (
        2, ["Error: --inject applies when examples are built; --examples FILE are used as they were built"])


def _request_for(monkeypatch, capsys, *flags):
    """The FinetuneRequest the CLI hands the recipe for these flags (the recipe itself does not run)."""
    got = []
    monkeypatch.setattr("finetune.recipe.run_finetune", lambda request, settings, indexes: got.append(request) or "")
    code, _, err = run_main(monkeypatch, capsys, "finetune", "--examples", "ex.jsonl", *flags)
    assert code in (0, None), err
    return got[0]


def test_without_flags_the_recipe_gets_the_configs_defaults(nothing_heavy_runs, monkeypatch, capsys, tmp_path):
    from finetune.config import DataConfig, FinetuneRequest, RaftConfig, TrainConfig

    (tmp_path / "ex.jsonl").write_text("")
    request = _request_for(monkeypatch, capsys)
    assert request == FinetuneRequest(data=DataConfig(examples=Path("ex.jsonl")))
    assert (request.raft, request.train) == (RaftConfig(), TrainConfig())


def test_flags_reach_the_stage_they_set(nothing_heavy_runs, monkeypatch, capsys, tmp_path):
    (tmp_path / "ex.jsonl").write_text("")
    request = _request_for(monkeypatch, capsys, "--lr", "1e-3", "--lora-r", "4", "--no-quant", "--seed", "7",
                           "--p-gold", "0.5", "--val-fraction", "0.2", "--out", "o", "--eval-examples", "0")
    assert (request.train.lr, request.train.lora_r, request.train.quant, request.train.out_dir) == (1e-3, 4, "none", Path("o"))
    assert (request.raft.p_gold, request.data.val_fraction, request.eval_examples) == (0.5, 0.2, 0)
    assert request.seed == request.raft.seed == request.train.seed == 7  # one --seed for examples, split and order


def test_init_adapter_default_is_the_shipped_adapter(nothing_heavy_runs, monkeypatch, capsys, tmp_path):
    from rag_app.config import SHIPPED_ADAPTER

    (tmp_path / "ex.jsonl").write_text("")
    request = _request_for(monkeypatch, capsys, "--init-adapter", "default")
    assert request.train.init_adapter == SHIPPED_ADAPTER and (SHIPPED_ADAPTER / "adapter_config.json").is_file()


def test_every_flag_default_is_its_configs_default():
    """The help shows the defaults the configs hold; a literal typed in the CLI again would drift from them."""
    import typer

    from finetune.config import DataConfig, FinetuneRequest, RaftConfig, TrainConfig
    from rag_app.cli import app

    command = typer.main.get_command(app).commands["finetune"]
    defaults = {p.name: p.default for p in command.params}
    # Not config values (datasets: the argument; inject: None, so that giving it with --examples can be refused).
    others = {"datasets", "mode", "hybrid", "inject", "no_quant", "model", "config", "verbose"}
    renamed = {"out_dir": "out"}
    covered = set()
    for cls in (DataConfig, RaftConfig, TrainConfig, FinetuneRequest):
        for f in dataclasses.fields(cls):
            flag = renamed.get(f.name, f.name)
            if flag in defaults and flag not in others:
                assert defaults[flag] == f.default, f"--{flag.replace('_', '-')}: CLI {defaults[flag]!r}, {cls.__name__} {f.default!r}"
                covered.add(flag)
    assert set(defaults) - covered == others  # every other flag draws its default from a config

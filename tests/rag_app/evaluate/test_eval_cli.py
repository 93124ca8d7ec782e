"""`rag eval` through the command line: ingest, evaluate, resume, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import FakeEmbedder, FakeGenerator
from typer.testing import CliRunner

from rag_app import cli
from test_eval_runner import QUESTIONS, make_dataset

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """The CLI's embedder and generator replaced by the fakes; working dir without rag.toml."""
    import rag_app.embeddings
    import rag_app.generation

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    embedder = FakeEmbedder()
    generator = FakeGenerator(reply="Paris [1]")
    loads = []
    monkeypatch.setattr(rag_app.embeddings, "load_embedder", lambda name=None: embedder)

    def load_generator(config, cache_dir):
        loads.append(config.adapter_path)
        return generator

    monkeypatch.setattr(rag_app.generation, "load_generator", load_generator)
    return embedder, generator, loads


def _run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["rag", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code, capsys.readouterr()


def test_eval_ingests_evaluates_and_resumes(tmp_path, fakes):
    embedder, generator, loads = fakes
    root = make_dataset(tmp_path / "tiny")
    args = ["eval", str(root), "--mode", "dense", "--mode", "hybrid", "--limit", "6", "--k", "1,5",
            "--unanswerable", "0.2", "--no-adapter"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval-out" / "tiny"
    for name in ("report.json", "report.md", "records.jsonl", "recall_at_k.png", "answers.png"):
        assert (out / name).is_file(), name
    (index,) = (tmp_path / ".rag" / "datasets").glob("tiny-*")  # the dataset's cached index
    assert (index / "CURRENT").is_file()
    from rag_app.config import load_settings
    from rag_app.evaluate import corpus_index

    assert index.relative_to(tmp_path) == corpus_index(root, load_settings(None)).index  # named by the core, not the CLI
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["configs"]] == ["dense", "hybrid"]
    assert report["dataset"]["questions_evaluated"] == 6 and report["eval"]["ks"] == [1, 5]
    assert sum(r["withheld"] for r in report["configs"][0]["records"]) == 1
    assert loads == [None]  # --no-adapter; one generator for both configurations
    calls, embeds = len(generator.calls), embedder.calls
    assert calls > 0

    result = CliRunner().invoke(cli.app, args)  # same command again: everything is reused
    assert result.exit_code == 0, result.output
    assert len(generator.calls) == calls and embedder.calls == embeds
    assert json.loads((out / "report.json").read_text())["configs"][1]["finished"] == 6


def test_eval_retrieval_only_with_existing_index_and_variant_config(tmp_path, fakes):
    embedder, generator, loads = fakes
    root = make_dataset(tmp_path / "tiny")
    from ingest.pipeline import ingest_folder
    from rag_app.config import load_settings

    ingest_folder(root / "docs", load_settings(index=tmp_path / "idx"), embedder=embedder)
    (tmp_path / "wide.toml").write_text("[retrieve]\ntop_k = 3\nmode = \"bm25\"\n")
    result = CliRunner().invoke(cli.app, ["eval", str(root), "--index", str(tmp_path / "idx"), "--retrieval-only",
                                          "--config", str(tmp_path / "wide.toml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [c["name"] for c in report["configs"]] == ["base", "wide"]
    assert report["configs"][1]["settings"]["retrieve"]["mode"] == "bm25"
    assert all(len(r["sources"]) <= 3 for r in report["configs"][1]["records"])
    assert loads == [] and not generator.calls
    assert not (tmp_path / "o" / "index").exists()


def test_eval_name_labels_the_base_configuration_beside_earlier_runs(tmp_path, fakes):
    """--name v12 --adapter runs/v12 adds a labelled run to a folder whose "base" records stay, for paired tables."""
    embedder, generator, loads = fakes
    root = make_dataset(tmp_path / "tiny")
    args = ["eval", str(root), "--retrieval-only", "--out", str(tmp_path / "o")]
    assert CliRunner().invoke(cli.app, args).exit_code == 0
    result = CliRunner().invoke(cli.app, [*args, "--name", "v12"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [c["name"] for c in report["configs"]] == ["v12"]
    records = [json.loads(line) for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    labels = [r["config"] for r in records]
    assert set(labels) == {"base", "v12"} and labels.count("base") == labels.count("v12")


def test_eval_malformed_dataset_is_one_error_line(tmp_path, fakes, monkeypatch, capsys):
    root = make_dataset(tmp_path / "tiny")
    lines = (root / "qa.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-5]
    (root / "qa.jsonl").write_text("\n".join(lines) + "\n")
    code, captured = _run_main(monkeypatch, capsys, "eval", str(root))
    assert code == 2
    assert captured.err.startswith("Error: qa.jsonl line 2: not valid JSON")
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "1,x"], "Error: --k takes comma-separated integers"),
        (["--unanswerable", "1.5"], "Error: --unanswerable must be a fraction in [0, 1), got 1.5"),
        (["--mode", "sparse"], "Error: unknown --mode 'sparse'; use one of: dense, hybrid, bm25"),
        (["--split", "test"], "Error: --split test: qa.jsonl has no 'split_hint' keys; use --split all"),
        (["--adapter", "x", "--no-adapter"], "Error: pass --adapter DIR or --no-adapter, not both"),
        (["--name", "wide", "--config", "a/wide.toml"], "Error: two configurations are named 'wide': give --name"),
    ],
)
def test_eval_flag_errors(tmp_path, fakes, monkeypatch, capsys, flags, message):
    root = make_dataset(tmp_path / "tiny")
    code, captured = _run_main(monkeypatch, capsys, "eval", str(root), *flags)
    assert code == 2
    assert captured.err.strip() == message or captured.err.startswith(message), captured.err


@pytest.mark.slow
def test_eval_sample_retrieval_only_with_real_minilm(tmp_path, monkeypatch):
    sample = REPO / "data" / "sample"
    if not (sample / "qa.jsonl").is_file():
        pytest.skip("data/sample is not there yet (made by the data task)")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.app, ["eval", str(sample), "--retrieval-only", "--limit", "10",
                                          "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    agg = report["configs"][0]["aggregate"]
    assert agg["n"] == 10
    assert agg["recall@5"] >= 0.6  # MiniLM on short Wikipedia paragraphs: most gold docs in the top 5
    assert (tmp_path / "out" / "recall_at_k.png").is_file()


def test_sigterm_becomes_an_interrupt_inside_eval():
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with cli._sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode boundary
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_dataset_index_is_its_own_faiss_folder_whatever_the_store(tmp_path, monkeypatch):
    """With store.backend = "milvus" a QA set must not be ingested into (and replace) the team's collection."""
    from rag_app.config import load_settings

    root = make_dataset(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr("ingest.pipeline.ingest_folder", lambda docs, settings, **kw: seen.append(settings))
    monkeypatch.setattr("rag_app.embeddings.load_embedder", lambda name: FakeEmbedder())
    settings = load_settings(store={"backend": "milvus", "collection": "team"})
    index = cli.dataset_index(root, settings)
    assert [(s.store.backend, s.index) for s in seen] == [("faiss", index)]

"""Settings precedence through the real ``rag`` entry point: defaults < rag.toml < RAG_* < flags.

Each test crosses one layer boundary with ``rag ask --json --verbose``: the
number of sources shows the ``retrieve.top_k`` that won, the generator's
config shows the model and adapter, the index answered from shows ``index``,
and ``--verbose`` must name the layer each of index, embedding model, model
and adapter came from.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import FakeEmbedder, FakeGenerator
from helpers import build_index, run_main

from rag_app.config import DEFAULT_EMBEDDING_MODEL, GenerateConfig

QUESTION = "Which river flows past the town?"
_ORIGIN = re.compile(r"\b(index|embedding_model|model|adapter): (.*) \((.*)\)\s*$")


class Rag:
    """A temp working dir with indexes to answer from; runs ``rag ask`` and reads what it used."""

    def __init__(self, tmp_path: Path, monkeypatch, capsys) -> None:
        self.tmp_path, self.monkeypatch, self.capsys = tmp_path, monkeypatch, capsys
        self.generate: list[GenerateConfig] = []
        self.embedders: list[str] = []
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("COLUMNS", "300")  # one log line per origin, however long the path
        for name in [n for n in os.environ if n.upper().startswith("RAG_")]:
            monkeypatch.delenv(name)
        monkeypatch.setattr("rag_app.pipeline.load_embedder", self._embedder)
        monkeypatch.setattr("rag_app.pipeline.load_generator", self._generator)

    def _embedder(self, name: str) -> FakeEmbedder:
        self.embedders.append(name)
        embedder = FakeEmbedder()
        embedder.model_name = name
        return embedder

    def _generator(self, cfg: GenerateConfig, cache_dir: Path) -> FakeGenerator:
        self.generate.append(cfg)
        return FakeGenerator("It is the river [1].")

    def index(self, path: str, embedding_model: str = DEFAULT_EMBEDDING_MODEL) -> None:
        """Eight one-chunk documents, doc ids prefixed with the index's name (to tell indexes apart)."""
        embedder = FakeEmbedder()
        embedder.model_name = embedding_model
        tag = Path(path).name
        build_index(self.tmp_path / path, embedder,
                    {f"{tag}-{i}": [f"The river number {i} flows past the town."] for i in range(8)})

    def toml(self, name: str, text: str) -> None:
        (self.tmp_path / name).write_text(text, encoding="utf-8")

    def ask(self, *flags: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
        """Run ``rag ask QUESTION --json --verbose FLAGS``; returns the doc ids answered from and the origins."""
        code, out, err = run_main(self.monkeypatch, self.capsys, "ask", QUESTION, "--json", "--verbose", *flags)
        assert code == 0, err
        origins = {m[1]: (m[2], m[3]) for m in map(_ORIGIN.search, err.splitlines()) if m}
        assert sorted(origins) == ["adapter", "embedding_model", "index", "model"], err
        return [s["chunk"]["doc_id"] for s in json.loads(out)["sources"]], origins


@pytest.fixture
def rag(tmp_path, monkeypatch, capsys) -> Rag:
    return Rag(tmp_path, monkeypatch, capsys)


TOML = """\
index = "toml-idx"
embedding_model = "toml-embedder"
[retrieve]
top_k = 2
[generate]
model = "toml-model"
adapter = "toml-adapter"
"""


def test_defaults_when_nothing_is_set(rag: Rag) -> None:
    rag.index(".rag/index")
    docs, origins = rag.ask()
    assert len(docs) == 5 and all(d.startswith("index-") for d in docs)
    assert rag.embedders == [DEFAULT_EMBEDDING_MODEL]
    assert (rag.generate[0].model, rag.generate[0].adapter) == ("bundled", "default")
    assert origins["index"] == (".rag/index", "default")
    assert origins["embedding_model"] == (DEFAULT_EMBEDDING_MODEL, "default")
    assert origins["model"] == ("bundled", "default")
    assert origins["adapter"] == (GenerateConfig().adapter_path or "none", "default")


def test_rag_toml_overrides_the_defaults(rag: Rag) -> None:
    rag.index(".rag/index")
    rag.index("toml-idx", "toml-embedder")
    rag.toml("rag.toml", TOML)
    docs, origins = rag.ask()
    assert len(docs) == 2 and all(d.startswith("toml-idx-") for d in docs)
    assert rag.embedders == ["toml-embedder"]
    assert (rag.generate[0].model, rag.generate[0].adapter) == ("toml-model", "toml-adapter")
    where = "config file rag.toml"
    assert origins == {"index": ("toml-idx", where), "embedding_model": ("toml-embedder", where),
                       "model": ("toml-model", where), "adapter": ("toml-adapter", where)}


def test_rag_env_overrides_rag_toml_nested_keys_included(rag: Rag) -> None:
    rag.index("toml-idx", "toml-embedder")
    rag.index("env-idx", "env-embedder")
    rag.toml("rag.toml", TOML)
    for name, value in {"RAG_INDEX": "env-idx", "RAG_EMBEDDING_MODEL": "env-embedder", "RAG_RETRIEVE__TOP_K": "3",
                        "RAG_GENERATE__MODEL": "env-model", "RAG_GENERATE__ADAPTER": "env-adapter"}.items():
        rag.monkeypatch.setenv(name, value)
    docs, origins = rag.ask()
    assert len(docs) == 3 and all(d.startswith("env-idx-") for d in docs)
    assert rag.embedders == ["env-embedder"]
    assert (rag.generate[0].model, rag.generate[0].adapter) == ("env-model", "env-adapter")
    assert origins == {"index": ("env-idx", "environment RAG_INDEX"),
                       "embedding_model": ("env-embedder", "environment RAG_EMBEDDING_MODEL"),
                       "model": ("env-model", "environment RAG_GENERATE__MODEL"),
                       "adapter": ("env-adapter", "environment RAG_GENERATE__ADAPTER")}


def test_flags_override_rag_env(rag: Rag) -> None:
    rag.index("env-idx", "env-embedder")
    rag.index("flag-idx", "env-embedder")
    for name, value in {"RAG_INDEX": "env-idx", "RAG_EMBEDDING_MODEL": "env-embedder", "RAG_RETRIEVE__TOP_K": "3",
                        "RAG_GENERATE__MODEL": "env-model", "RAG_GENERATE__ADAPTER": "env-adapter"}.items():
        rag.monkeypatch.setenv(name, value)
    docs, origins = rag.ask("--index", "flag-idx", "--k", "4", "--model", "flag-model", "--adapter", "flag-adapter")
    assert len(docs) == 4 and all(d.startswith("flag-idx-") for d in docs)
    assert (rag.generate[0].model, rag.generate[0].adapter) == ("flag-model", "flag-adapter")
    assert origins == {"index": ("flag-idx", "command-line flag"),
                       "embedding_model": ("env-embedder", "environment RAG_EMBEDDING_MODEL"),  # no flag for it
                       "model": ("flag-model", "command-line flag"),
                       "adapter": ("flag-adapter", "command-line flag")}


def test_no_adapter_flag_overrides_rag_toml(rag: Rag) -> None:
    rag.index("toml-idx", "toml-embedder")
    rag.toml("rag.toml", TOML)
    _, origins = rag.ask("--no-adapter")
    assert rag.generate[0].adapter_path is None
    assert origins["adapter"] == ("none", "command-line flag")


def test_config_file_replaces_rag_toml(rag: Rag) -> None:
    """--config FILE is read instead of ./rag.toml, not on top of it: a key only ./rag.toml sets stays default."""
    rag.index("other-idx")
    rag.toml("rag.toml", TOML)
    rag.toml("other.toml", 'index = "other-idx"\n[retrieve]\ntop_k = 1\n')
    docs, origins = rag.ask("--config", "other.toml")
    assert len(docs) == 1 and docs[0].startswith("other-idx-")
    assert rag.embedders == [DEFAULT_EMBEDDING_MODEL]
    assert (rag.generate[0].model, rag.generate[0].adapter) == ("bundled", "default")
    assert origins["index"] == ("other-idx", "config file other.toml")
    assert origins["embedding_model"] == (DEFAULT_EMBEDDING_MODEL, "default")
    assert origins["model"] == ("bundled", "default")
    assert origins["adapter"][1] == "default"


def test_a_missing_config_file_is_one_line(rag: Rag) -> None:
    code, _, err = run_main(rag.monkeypatch, rag.capsys, "ask", QUESTION, "--config", "nowhere.toml")
    assert code == 2
    assert err.splitlines() == ["Error: config file nowhere.toml not found; pass an existing TOML file to --config"]


def test_verbose_names_the_env_var_however_it_is_spelled(rag: Rag) -> None:
    """pydantic-settings reads RAG_* case-insensitively, and a whole section as JSON: the report must agree."""
    rag.index("lower-idx")
    rag.monkeypatch.setenv("rag_index", "lower-idx")
    rag.monkeypatch.setenv("RAG_GENERATE", '{"model": "json-model"}')
    docs, origins = rag.ask()
    assert docs[0].startswith("lower-idx-") and rag.generate[0].model == "json-model"
    assert origins["index"] == ("lower-idx", "environment rag_index")
    assert origins["model"] == ("json-model", "environment RAG_GENERATE")
    assert origins["adapter"] == ("none", "default")  # the shipped adapter is for the bundled model only


def test_ask_from_a_subfolder_finds_the_index_of_a_parent(rag: Rag) -> None:
    """As git finds .git: `rag ingest` ran in p, `rag ask` runs in p/a/b."""
    rag.monkeypatch.setenv("HOME", str(rag.tmp_path))
    rag.index("p/.rag/index")
    (rag.tmp_path / "p" / "a" / "b").mkdir(parents=True)
    rag.monkeypatch.chdir(rag.tmp_path / "p" / "a" / "b")
    docs, origins = rag.ask()
    assert docs and all(d.startswith("index-") for d in docs)
    parent = (rag.tmp_path / "p").resolve()
    assert origins["index"] == (str(parent / ".rag" / "index"), f"found in parent folder {parent}")


def test_the_nearest_index_wins(rag: Rag) -> None:
    rag.monkeypatch.setenv("HOME", str(rag.tmp_path))
    rag.index("p/.rag/index")
    embedder = FakeEmbedder()
    embedder.model_name = DEFAULT_EMBEDDING_MODEL
    build_index(rag.tmp_path / "p/a/.rag/index", embedder, {"near-0": ["The river flows past the town."]})
    (rag.tmp_path / "p" / "a" / "b").mkdir(parents=True)
    rag.monkeypatch.chdir(rag.tmp_path / "p" / "a" / "b")
    docs, origins = rag.ask()
    assert docs == ["near-0"]
    assert origins["index"][1] == f"found in parent folder {(rag.tmp_path / 'p' / 'a').resolve()}"


def test_no_index_anywhere_says_where_it_looked(rag: Rag) -> None:
    """The walk stops at the home folder; the one error line names the folders looked in."""
    home = (rag.tmp_path / "home").resolve()
    (home / "a" / "b").mkdir(parents=True)
    rag.index(".rag/index")  # above home: never reached
    rag.monkeypatch.setenv("HOME", str(home))
    rag.monkeypatch.chdir(home / "a" / "b")
    code, out, err = run_main(rag.monkeypatch, rag.capsys, "ask", QUESTION)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"Error: no index found: looked for .rag/index in {home / 'a' / 'b'} and each parent up to {home}; "
        "build one with: rag ingest DIR (here or in a parent folder), or pass --index"]
    assert rag.embedders == [] and rag.generate == []  # refused before any model loads


def test_a_chosen_index_is_not_searched_for(rag: Rag) -> None:
    """--index (or RAG_INDEX, rag.toml) means that folder: no walk, the plain error."""
    rag.monkeypatch.setenv("HOME", str(rag.tmp_path))
    rag.index(".rag/index")
    (rag.tmp_path / "a").mkdir()
    rag.monkeypatch.chdir(rag.tmp_path / "a")
    code, _, err = run_main(rag.monkeypatch, rag.capsys, "ask", QUESTION, "--index", ".rag/index")
    assert code == 2
    assert err.splitlines() == ["Error: no index at .rag/index; build one with: rag ingest DIR --index .rag/index"]


def test_store_backend_defaults_to_faiss_and_is_set_from_toml_or_env(tmp_path: Path, monkeypatch) -> None:
    from rag_app.config import load_settings
    from rag_app.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    assert load_settings().store.backend == "faiss"
    (tmp_path / "rag.toml").write_text('[store]\nbackend = "milvus"\nuri = "http://db:19530"\n', encoding="utf-8")
    assert (load_settings().store.backend, load_settings().store.uri) == ("milvus", "http://db:19530")
    monkeypatch.setenv("RAG_STORE__COLLECTION", "team_docs")
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    monkeypatch.setenv("RAG_STORE__TOKEN_ENV", "MY_TOKEN")
    assert (load_settings().store.collection, load_settings().store.token) == ("team_docs", "s3cret")
    monkeypatch.setenv("RAG_STORE__COLLECTION", "team-docs")
    with pytest.raises(ConfigError, match=r"^invalid setting: store.collection must be letters, digits and _"):
        load_settings()

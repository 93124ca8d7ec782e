"""Settings from `rag ui`'s flags, sidebar overrides, the model cache key, example questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.config import load_settings
from rag_app.errors import ConfigError
from ui.resources import example_questions, generator_key, settings_from_args, with_overrides


def test_settings_from_args_reads_index_and_config(tmp_path: Path):
    config = tmp_path / "rag.toml"
    config.write_text("[retrieve]\ntop_k = 7\n", encoding="utf-8")
    settings = settings_from_args(["--index", str(tmp_path / "idx"), "--config", str(config), "--unknown", "x"])
    assert settings.index == tmp_path / "idx"
    assert settings.retrieve.top_k == 7


def test_bad_config_file_is_a_user_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        settings_from_args(["--config", str(tmp_path / "missing.toml")])


def test_with_overrides_copies_and_validates():
    base = load_settings(None)
    changed = with_overrides(base, retrieve={"top_k": 30, "mode": "hybrid"}, generate={"temperature": 0.7})
    assert (changed.retrieve.top_k, changed.retrieve.mode, changed.generate.temperature) == (30, "hybrid", 0.7)
    assert changed.retrieve.fetch_k == 30  # grown with top_k, so the pair stays valid
    assert base.retrieve.top_k == 5 and base.generate.temperature == 0.0  # the base is untouched
    assert with_overrides(base) is base
    with pytest.raises(ConfigError, match="generate.temperature"):
        with_overrides(base, generate={"temperature": -1.0})


def test_generator_key_changes_with_weights_not_with_sampling():
    base = load_settings(None, generate={"adapter": "/some/adapter"})
    assert generator_key(with_overrides(base, generate={"temperature": 0.9, "max_new_tokens": 64})) == generator_key(base)
    assert generator_key(with_overrides(base, generate={"adapter": "none"})) != generator_key(base)


def test_example_questions_come_from_the_dataset_beside_the_docs(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    rows = [
        {"question": "What year did Tesla die?", "title": "Nikola Tesla", "gold_doc_ids": ["t0"]},
        {"question": "Where was Tesla born?", "title": "Nikola Tesla", "gold_doc_ids": ["t0"]},
        {"question": "Who discovered oxygen?", "title": "Oxygen", "gold_doc_ids": ["o0"]},
        {"question": "x" * 200, "title": "Long", "gold_doc_ids": ["l0"]},
        {"question": "Where does the Rhine rise?", "title": "Rhine", "gold_doc_ids": ["r0"]},
        {"question": "Which is the largest prime?", "title": "Prime", "gold_doc_ids": ["p0"]},
    ]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n", encoding="utf-8")

    assert example_questions(tmp_path / "docs") == [
        "What year did Tesla die?", "Who discovered oxygen?", "Where does the Rhine rise?",
    ]  # one per article, short ones only
    assert example_questions(tmp_path / "elsewhere" / "docs") == []
    assert example_questions(None) == []

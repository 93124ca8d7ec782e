"""``adapter = "default"``: the adapter shipped inside the package, named without touching the file system.

The wheel that carries it is tested in tests/test_wheel_install.py.
"""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

import pytest

import rag_app
from rag_app.config import GenerateConfig, describe_origin, load_settings
from rag_app.models import BUNDLED_ID, check_adapter

PACKAGED = Path(rag_app.__file__).resolve().parent / "adapters" / "smollm2-raft"


def test_default_is_the_adapter_inside_the_package():
    # It lived under the checkout's data/, which an installed wheel does not have.
    assert GenerateConfig().adapter_path == str(PACKAGED)
    assert check_adapter(PACKAGED, BUNDLED_ID) == PACKAGED  # a whole adapter for the bundled model
    assert (PACKAGED / "HOW_MADE.md").is_file() and (PACKAGED / "training_card.json").is_file()


def test_verbose_names_the_resolved_adapter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no rag.toml
    for name in ("RAG_GENERATE__ADAPTER", "RAG_GENERATE__MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert describe_origin(load_settings())["adapter"] == f"{PACKAGED} (default)"


def test_adapter_path_reads_no_file(monkeypatch):
    """Read per question (pipeline, UI, eval): a pure function of the settings, no stat per read."""
    configs = {
        "default": GenerateConfig(),
        "off": GenerateConfig(adapter="none"),
        "folder": GenerateConfig(adapter="runs/adapter"),
        "other model": GenerateConfig(model="/models/llama"),
    }

    touched: list[str] = []

    def counting(owner, name):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            touched.append(f"{name}{args[:1]}")
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapper)

    for name in ("stat", "lstat"):
        counting(os, name)
    for name in ("stat", "exists", "is_file", "is_dir"):
        counting(pathlib.Path, name)
    resolved = {key: [config.adapter_path for _ in range(3)] for key, config in configs.items()}
    monkeypatch.undo()
    assert touched == []
    assert resolved == {"default": [str(PACKAGED)] * 3, "off": [None] * 3, "folder": ["runs/adapter"] * 3,
                        "other model": [None] * 3}


@pytest.mark.parametrize(("update", "expected"), [
    ({"adapter": "none"}, None),              # finetune's base generator for --synthesize
    ({"model": "/models/llama"}, None),       # the shipped adapter fits only the bundled model
    ({"adapter": "runs/a"}, "runs/a"),
])
def test_model_copy_resolves_again(update, expected):
    # model_copy(update=...) skips validators: a path stored at validation would go stale here.
    assert GenerateConfig().model_copy(update=update).adapter_path == expected

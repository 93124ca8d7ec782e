"""Fixtures for the UI tests: a tiny document folder, its index, and the page under AppTest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rag_app.config import Settings, load_settings
from ui.resources import ModelFactory

DOCS = {
    "france.txt": "Paris is the capital of France. The Seine flows through Paris.",
    "rivers.md": "# Rivers\n\nThe Rhine rises in the Swiss Alps and flows into the North Sea.",
    "space.txt": "Apollo 11 landed on the Moon in July 1969. Neil Armstrong walked on the Moon first.",
}


def run_page(argv, factory):  # no annotations: AppTest runs the source alone
    """The AppTest script: its body runs as the page (AppTest copies this function's source)."""
    from ui.app import main

    main(argv, factory)


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A rag.toml naming the fake embedder (so manifests and the page agree) and a private cache."""
    path = tmp_path / "rag.toml"
    path.write_text(f'embedding_model = "fake-embedder"\ncache_dir = "{tmp_path / "cache"}"\n', encoding="utf-8")
    return path


@pytest.fixture
def ui_settings(tmp_path: Path, config_file: Path) -> Settings:
    """Settings of a throwaway index, as the page builds them from ``--config`` and ``--index``."""
    return load_settings(config_file, index=tmp_path / "index")


@pytest.fixture
def built_index(docs_dir: Path, ui_settings: Settings, fake_embedder: Any) -> Settings:
    """ui_settings whose index holds DOCS (ingested with the fake embedder)."""
    from ingest.pipeline import ingest_folder

    report = ingest_folder(docs_dir, ui_settings, embedder=fake_embedder)
    assert sorted(report.added) == sorted(DOCS)
    return ui_settings


@pytest.fixture
def make_app(fake_embedder: Any, fake_generator: Any, config_file: Path) -> Callable[..., Any]:
    """Build an AppTest of the page over an index, with fakes for both models.

    Returns a function ``(settings, generator=None, generator_error=None) -> AppTest``:
    the generator defaults to the ``fake_generator`` fixture (set its ``reply``),
    ``generator_error`` makes loading the generator raise it (a missing model),
    and ``at.generator_loads`` records the settings of every load that missed the cache.
    """
    from streamlit.testing.v1 import AppTest

    def make(settings: Settings, generator: Any = None, generator_error: Exception | None = None) -> Any:
        gen = generator or fake_generator

        loads: list[Settings] = []

        def load_generator(_settings: Settings) -> Any:
            loads.append(_settings)
            if generator_error is not None:
                raise generator_error
            return gen

        factory = ModelFactory("fake", lambda _s: fake_embedder, load_generator)
        argv = ["--index", str(settings.index), "--config", str(config_file)]
        at = AppTest.from_function(run_page, kwargs={"argv": argv, "factory": factory}, default_timeout=60)
        at.factory = factory  # keep it alive: the page's model cache is keyed by its id
        at.generator_loads = loads  # the settings of each (uncached) generator load
        return at

    return make

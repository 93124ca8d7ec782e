"""What the page needs besides widgets: settings from argv, models, sidebar overrides, examples.

The models come through a :class:`ModelFactory` passed to ``ui.app.main``:
production uses :func:`default_factory` (the bundled MiniLM and the configured
generator), tests pass one that returns fakes. That keeps the page free of
test hooks: it never reads the environment to decide what to load.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.config import GenerateConfig, RetrieveConfig, Settings, load_settings
from rag_app.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFactory:
    """How the page gets its models; one per server process, results cached by the page.

    Attributes:
        name: part of the cache key, so two factories never share a cached model.
        embedder: settings -> an ``Embedder`` (``rag_app.embeddings``).
        generator: settings -> a ``Generator`` (``rag_app.generation``); only
            called once the index exists and a question needs it.
    """

    name: str
    embedder: Callable[[Settings], Any]
    generator: Callable[[Settings], Any]


def _load_embedder(settings: Settings) -> Any:
    from rag_app.embeddings import load_embedder

    return load_embedder(settings.embedding_model)


def _load_generator(settings: Settings) -> Any:
    from rag_app.generation import load_generator

    return load_generator(settings.generate, settings.cache_dir)


def default_factory() -> ModelFactory:
    """The real models: what ``rag ui`` serves."""
    return ModelFactory("default", _load_embedder, _load_generator)


def generator_key(settings: Settings) -> str:
    """The page's cache key for a generator: :meth:`GenerateConfig.loading_key` and the cache dir."""
    return json.dumps([settings.generate.loading_key(), str(settings.cache_dir)])


def generator_label(settings: Settings) -> str:
    """What the loading spinner names: ``SmolLM2-135M (bundled) + adapter smollm2-raft``."""
    g = settings.generate
    model = "SmolLM2-135M-Instruct (bundled)" if g.model == "bundled" else g.model
    return model + (f" + adapter {Path(g.adapter_path).name}" if g.adapter_path else "")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The flags ``rag ui`` passes after ``--`` to ``streamlit run``."""
    parser = argparse.ArgumentParser(prog="ui/app.py", add_help=False)
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true")
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        log.warning("ignoring unknown arguments: %s", " ".join(unknown))
    return args


def settings_from_args(argv: Sequence[str]) -> Settings:
    """Settings as the CLI would build them: --config file, RAG_* environment, then --index.

    Raises:
        ConfigError: a bad config file or value.
    """
    args = parse_args(argv)
    return load_settings(args.config, index=args.index)


def with_overrides(settings: Settings, retrieve: dict[str, Any] | None = None, generate: dict[str, Any] | None = None) -> Settings:
    """A copy of ``settings`` with sidebar values, each section re-validated.

    ``model_copy(update=...)`` alone skips the validators, so a bad
    combination (top_k above fetch_k) would surface mid-answer instead of
    here; the sections are rebuilt through their models. ``fetch_k`` grows
    with ``top_k`` so the slider never produces an invalid pair.

    Raises:
        ConfigError: a value the section rejects.
    """
    from pydantic import ValidationError

    update: dict[str, Any] = {}
    try:
        if retrieve:
            merged = {**settings.retrieve.model_dump(), **retrieve}
            merged["fetch_k"] = max(merged["fetch_k"], merged["top_k"])
            update["retrieve"] = RetrieveConfig.model_validate(merged)
        if generate:
            update["generate"] = GenerateConfig.model_validate({**settings.generate.model_dump(), **generate})
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return settings.model_copy(update=update) if update else settings


def example_questions(source_dir: str | Path | None, limit: int = 3) -> list[str]:
    """Example questions for the empty chat, when the indexed folder is part of a dataset.

    A dataset (``data/sample``, the evaluation sets) is a folder with
    ``docs/`` and ``qa.jsonl``; when the index was built from such a
    ``docs/``, its first questions make good, answerable examples. Returns an
    empty list otherwise.
    """
    if not source_dir:
        return []
    qa = Path(source_dir).parent / "qa.jsonl"
    if not qa.is_file():
        return []
    questions: list[str] = []
    seen_topics: set[str] = set()
    try:
        with qa.open(encoding="utf-8") as fh:
            for line in fh:
                if len(questions) >= limit:
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                question = str(row.get("question", "")).strip()
                topic = str(row.get("title") or ",".join(row.get("gold_doc_ids") or []))
                # One question per topic (article), so the examples show the spread of the index.
                if question and len(question) <= 80 and topic not in seen_topics:
                    seen_topics.add(topic)
                    questions.append(question)
    except OSError:
        return []
    return questions


@dataclass
class Turn:
    """One question of a chat and what came of it, kept in ``st.session_state``.

    Defined here, not in the page script, because Streamlit re-executes the
    script on every interaction and a class defined there would be a new
    class each time.
    """

    question: str
    answer: Any = None  # rag_app.pipeline.Answer once answered
    error: str | None = None  # the message shown when answering failed

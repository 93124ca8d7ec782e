"""Evaluation datasets: a folder with ``docs/`` and ``qa.jsonl``, validated up front.

Layout (docs/EVAL.md, "Bring your own set", describes every field)::

    <name>/docs/<doc_id>.txt      the corpus; a file's stem is its doc id
    <name>/qa.jsonl               {"id", "question", "answers", "gold_doc_ids", ...} per line

The whole file is checked before any question is asked, because an eval that
dies on line 900 after an hour of generation, or silently scores 0 because a
gold id has a typo, is worse than no eval. Extra keys are ignored except
``split_hint`` (``train``/``test``, for ``--split``), ``answer_type``
(``span``, ``multi_span``, ``yes_no``, ``yes_no_maybe``, ``free_text``,
``unanswerable``: decides how a reply is scored) and ``answer_spans`` (the
separate spans of a ``multi_span`` answer).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag_app.config import Settings
from rag_app.errors import DatasetError

REQUIRED_KEYS = ("id", "question", "answers", "gold_doc_ids")
SPLITS = ("all", "train", "test")
UNANSWERABLE = "unanswerable"
NO_ANSWER = "<no answer>"
_MAX_UNKNOWN_SHOWN = 3


@dataclass(frozen=True)
class QAItem:
    """One question with its acceptable answers and the documents that hold them.

    ``line`` is the 1-based line in qa.jsonl, kept so any later message can
    point at the source of a problem.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    gold_doc_ids: tuple[str, ...]
    answer_type: str | None = None
    split_hint: str | None = None
    answer_spans: tuple[str, ...] = ()
    line: int = 0

    @property
    def is_yes_no(self) -> bool:
        """``yes_no`` and ``yes_no_maybe`` answers are scored by the reply's first word."""
        return bool(self.answer_type) and self.answer_type.startswith("yes_no")

    @property
    def is_unanswerable(self) -> bool:
        """The dataset itself says the gold docs do not hold an answer: the right reply abstains."""
        return self.answer_type == UNANSWERABLE


@dataclass
class Dataset:
    """A validated QA set. ``items`` are the questions selected for this run."""

    name: str
    root: Path
    items: list[QAItem]
    total: int  # questions in qa.jsonl before --split / --limit
    split: str = "all"
    limit: int | None = None
    seed: int = 0
    doc_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def docs_dir(self) -> Path:
        return self.root / "docs"

    def describe(self) -> dict[str, object]:
        """What report.json records about the data a run used."""
        return {
            "name": self.name,
            "path": str(self.root),
            "questions_in_file": self.total,
            "questions_evaluated": len(self.items),
            "split": self.split,
            "limit": self.limit,
            "seed": self.seed,
            "documents": len(self.doc_ids) or None,
        }


def corpus_doc_ids(docs_dir: Path) -> frozenset[str]:
    """Doc ids of a ``docs/`` folder: the stem of every file below it (as ingest names them)."""
    return frozenset(p.stem for p in docs_dir.rglob("*") if p.is_file() and not p.name.startswith("."))


def index_doc_ids(index: Path) -> frozenset[str]:
    """Doc ids an index holds (as ingest named them), for a dataset evaluated on an index without its docs/."""
    from rag_app.store import IndexStore

    with IndexStore.open(index) as store:
        return frozenset(store.doc_ids())


def index_key(settings: Settings) -> str:
    """Runs with equal keys can share one index: same embedding model and chunking."""
    key = {"embedding_model": settings.embedding_model, "chunking": settings.ingest.chunking_signature(),
           "globs": list(settings.ingest.globs)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class CorpusIndex:
    """A dataset's corpus folder and the cached index it is ingested into."""

    docs: Path
    index: Path


def corpus_index(dataset: Path, settings: Settings, plain_folder: bool = False) -> CorpusIndex:
    """Where ``rag eval`` and ``rag finetune`` ingest a dataset: ``.rag/datasets/<name>-<tag>``.

    One index per corpus, embedding model and chunking (``tag`` hashes the
    corpus path and :func:`index_key`), shared by every eval and fine-tune of
    that corpus. The front door ingests into it; this only names it.

    Args:
        dataset: the dataset folder; its corpus is ``dataset/docs``.
        settings: the run's settings (embedding model, chunking, globs).
        plain_folder: a folder without ``docs/`` is itself the corpus (``rag finetune --synthesize``).

    Raises:
        DatasetError: no docs/ folder (or, with ``plain_folder``, no folder at all).
    """
    docs = dataset / "docs"
    if plain_folder and not docs.is_dir():
        if not dataset.is_dir():
            raise DatasetError(f"folder {dataset} does not exist; pass a folder of documents to write questions about")
        docs = dataset
    if not docs.is_dir():
        raise DatasetError(f"{dataset} has no docs/ folder; a dataset is a folder with docs/ and qa.jsonl")
    tag = hashlib.sha256(f"{docs.resolve()}|{index_key(settings)}".encode()).hexdigest()[:8]
    return CorpusIndex(docs, Path(".rag") / "datasets" / f"{dataset.resolve().name}-{tag}")


def _str_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def parse_line(raw: str, line: int, where: str = "qa.jsonl") -> QAItem:
    """One qa.jsonl line -> :class:`QAItem`.

    Raises:
        DatasetError: not JSON, not an object, a required key missing, or a value of the wrong type.
    """
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where} line {line}: not valid JSON ({err.msg}); fix or remove that line") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where} line {line}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise DatasetError(f"{where} line {line}: missing key {missing[0]!r}; each line needs {', '.join(REQUIRED_KEYS)}")
    if not isinstance(obj["id"], (str, int)) or not str(obj["id"]).strip():
        raise DatasetError(f"{where} line {line}: 'id' must be a non-empty string")
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        raise DatasetError(f"{where} line {line}: 'question' must be a non-empty string")
    for key in ("answers", "gold_doc_ids"):
        if not _str_list(obj[key]):
            raise DatasetError(f"{where} line {line}: {key!r} must be a non-empty list of non-empty strings")
    answer_type = obj.get("answer_type")
    split_hint = obj.get("split_hint")
    spans = obj.get("answer_spans") or []
    if answer_type is not None and not isinstance(answer_type, str):
        raise DatasetError(f"{where} line {line}: 'answer_type' must be a string")
    if split_hint is not None and split_hint not in ("train", "test"):
        raise DatasetError(f"{where} line {line}: 'split_hint' must be 'train' or 'test', got {split_hint!r}")
    if spans and not _str_list(spans):
        raise DatasetError(f"{where} line {line}: 'answer_spans' must be a list of non-empty strings")
    return QAItem(
        id=str(obj["id"]),
        question=obj["question"].strip(),
        answers=tuple(obj["answers"]),
        gold_doc_ids=tuple(dict.fromkeys(obj["gold_doc_ids"])),
        answer_type=answer_type,
        split_hint=split_hint,
        answer_spans=tuple(spans),
        line=line,
    )


def read_items(qa_path: Path) -> list[QAItem]:
    """Parse and check every line of ``qa_path`` (blank lines are skipped).

    Raises:
        DatasetError: the first malformed line (with its number), or a duplicate id.
    """
    try:
        text = qa_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {qa_path}: {err}") from None
    items: list[QAItem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        item = parse_line(raw, number, qa_path.name)
        if item.id in seen:
            raise DatasetError(f"{qa_path.name} line {number}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise DatasetError(f"{qa_path} has no questions; add one JSON object per line")
    return items


def check_gold_ids(items: Sequence[QAItem], known: Collection[str], where: str = "docs/") -> None:
    """Refuse gold doc ids that are not in the corpus: they would silently score 0.

    Raises:
        DatasetError: naming the first unknown id, its line, and how many there are.
    """
    unknown = [(item.line, doc) for item in items for doc in item.gold_doc_ids if doc not in known]
    if unknown:
        line, doc = unknown[0]
        shown = ", ".join(repr(d) for _, d in unknown[:_MAX_UNKNOWN_SHOWN])
        raise DatasetError(
            f"qa.jsonl line {line}: gold doc id {doc!r} is not in {where} ({len(unknown)} unknown in total: "
            f"{shown}{', ...' if len(unknown) > _MAX_UNKNOWN_SHOWN else ''}); fix the ids or add the documents"
        )


def select(items: Sequence[QAItem], split: str = "all", limit: int | None = None, seed: int = 0) -> list[QAItem]:
    """Filter by ``split_hint`` then take a seeded sample of ``limit`` questions.

    A sample, not the first N: qa.jsonl files are usually grouped by article,
    so the first 50 questions are often one document. The sample keeps file
    order, and the same seed and file always give the same questions.

    Raises:
        DatasetError: an unknown split, a split no question has, or a bad limit.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    chosen = list(items)
    if split != "all":
        if not any(i.split_hint for i in chosen):
            raise DatasetError(f"--split {split}: qa.jsonl has no 'split_hint' keys; use --split all")
        chosen = [i for i in chosen if i.split_hint == split]
        if not chosen:
            raise DatasetError(f"--split {split}: no question has split_hint {split!r}")
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"--limit must be >= 1, got {limit}")
        if limit < len(chosen):
            keep = set(random.Random(seed).sample(range(len(chosen)), limit))
            chosen = [item for n, item in enumerate(chosen) if n in keep]
    return chosen


def load_dataset(
    path: str | Path,
    split: str = "all",
    limit: int | None = None,
    seed: int = 0,
    known_doc_ids: Collection[str] | None = None,
    index: Path | None = None,
) -> Dataset:
    """Load and validate a QA set folder (or a bare qa.jsonl).

    Args:
        path: the set folder (holding ``qa.jsonl`` and ``docs/``), or a qa.jsonl file.
        split: ``all``, ``train`` or ``test`` (by ``split_hint``).
        limit: evaluate a seeded sample of this many questions.
        seed: the sampling seed.
        known_doc_ids: the doc ids gold ids are checked against; default the
            stems under ``docs/``. Pass the index's doc ids when evaluating on
            an existing index without a docs folder.
        index: the index the eval runs on (``--index``); when ``path`` has
            no ``docs/``, gold ids are checked against the doc ids it holds.

    Raises:
        DatasetError: missing files, a malformed line, a duplicate id, or an unknown gold doc id.
    """
    path = Path(path)
    if known_doc_ids is None and index is not None and not (path / "docs").is_dir():
        known_doc_ids = index_doc_ids(index)
    root, qa_path = (path.parent, path) if path.is_file() else (path, path / "qa.jsonl")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found; pass a folder holding qa.jsonl and docs/")
    if not qa_path.is_file():
        raise DatasetError(f"{root} has no qa.jsonl; a dataset is a folder with qa.jsonl and docs/")
    items = read_items(qa_path)
    if known_doc_ids is None:
        docs = root / "docs"
        if not docs.is_dir():
            raise DatasetError(f"{root} has no docs/ folder; add the corpus there or pass --index")
        known_doc_ids = corpus_doc_ids(docs)
        where = f"{docs}"
    else:
        where = "the index"
    known = frozenset(known_doc_ids)
    check_gold_ids(items, known, where)
    chosen = select(items, split, limit, seed)
    return Dataset(
        name=root.resolve().name,
        root=root,
        items=chosen,
        total=len(items),
        split=split,
        limit=limit,
        seed=seed,
        doc_ids=known,
    )


def withheld_ids(items: Sequence[QAItem], fraction: float, seed: int = 0) -> frozenset[str]:
    """The seeded fraction of answerable questions whose gold docs ``--unanswerable`` hides.

    ``round(fraction * n)`` questions, at least one when ``fraction > 0``;
    questions the dataset already marks unanswerable are not drawn.
    """
    if fraction <= 0:
        return frozenset()
    pool = sorted(i.id for i in items if not i.is_unanswerable)
    n = min(len(pool), max(1, round(fraction * len(pool))))
    return frozenset(random.Random(f"withhold-{seed}").sample(pool, n))

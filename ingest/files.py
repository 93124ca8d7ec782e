"""Single files -> the index, beside the folder it mirrors (``rag ingest FILE``, UI uploads).

Why a record of them: a folder ingest mirrors its folder (a file gone from
there is dropped), so a file added from elsewhere is listed in the manifest
(``extra["added"]``: source -> absolute path) and the next folder ingest keeps
it. A file inside the indexed folder is just one of its files (its source is
its path relative to the folder) and is not listed.

A file is added or, when its bytes changed, has its chunks replaced; the
same bytes again change nothing (no model loaded, no lock taken). As for a
folder, the run is staged in a new generation and committed at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_app.config import Settings
from rag_app.errors import IngestError
from rag_app.store import FileRecord, Manifest, check_unlocked
from rag_app.store_protocol import open_writer

from ingest.loaders import SUPPORTED_TYPES
from ingest.pipeline import (
    _check_writable,
    _LazyEmbedder,
    _model_name,
    _snapshot,
    _update,
    added_files,
    record_commit,
    write_failed,
)
from ingest.report import IngestReport
from ingest.walk import Walk, WalkedFile, visit_file

__all__ = ["ingest_file", "ingest_files"]


def ingest_file(path: str | Path, settings: Settings, console: Any = None, embedder: Any = None) -> IngestReport:
    """Add one file to the index at ``settings.index`` (or replace its chunks), keeping everything else.

    Raises:
        IngestError: the file is missing, of an unsupported type, unreadable, or
            another file of that name is indexed; one line that says so.
        IndexLockedError: another process is writing to the index.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path} does not exist; pass a file or a folder of documents: rag ingest PATH")
    if path.suffix.lower() not in SUPPORTED_TYPES:
        kinds = " ".join(sorted(SUPPORTED_TYPES))
        raise IngestError(f"cannot ingest {path}: unsupported type {path.suffix or '(no extension)'}; "
                          f"rag ingest reads {kinds}")
    report = ingest_files([path], settings, console=console, embedder=embedder)
    report.folder = path  # the summary says "Indexed FILE -> index"
    if problems := report.failed + report.skipped:
        raise IngestError(f"cannot ingest {path}: {problems[0][1]}")
    return report


def ingest_files(paths: Sequence[Path], settings: Settings, console: Any = None, embedder: Any = None,
                 under: str = "") -> IngestReport:
    """Add or update ``paths`` in the index; a file that cannot be read is reported, the others indexed.

    Args:
        paths: files (not folders).
        settings: index location, embedding model and ``ingest`` section.
        console: a rich Console for the progress bars; None shows none.
        embedder: an Embedder; default ``load_embedder(settings.embedding_model)``, loaded only when needed.
        under: prefix of the source of a file from outside the indexed folder (``uploads/``); default its name.

    Returns:
        The report (``folder`` is the folder of the first file).

    Raises:
        IngestError: the index was chunked with other settings, or cannot be written.
        EmbeddingMismatchError: the index was built with another embedding model.
        IndexLockedError: another process is writing to the index.
    """
    started = time.perf_counter()
    paths = [Path(p) for p in paths]
    indexed, live = _snapshot(settings, _model_name(settings, embedder))
    report = IngestReport(folder=paths[0].parent if paths else Path("."), index=settings.index)
    signature = settings.ingest.chunking_signature()
    if live is not None and live.chunking != signature:
        raise IngestError(f"the index at {settings.index} was chunked with {live.chunking}, not {signature}; "
                          "use its chunk settings, or re-chunk it all with: rag ingest DIR")
    added, walk = added_files(live), Walk()
    for path in paths:
        source, listed = _source(path, live, settings.index, under)
        if source in indexed and added.get(source) != listed:
            where = f"from {added[source]}" if source in added else "from the indexed folder"
            report.failed.append((source, f"the index already holds a file named {source} {where}; rename this one"))
            continue
        visit_file(path, source, settings.ingest, walk)
        if listed is not None and walk.files and walk.files[-1].source == source:
            added[source] = listed
    report.skipped, report.failed = walk.skipped, report.failed + walk.failed
    todo = [f for f in walk.files if f.source not in indexed or indexed[f.source].sha256 != f.sha256]
    report.unchanged = [f.source for f in walk.files if f not in todo]
    if todo:
        _write_files(todo, added, live, indexed, settings, embedder, report, console)
    elif live is not None:
        report.total_chunks, report.documents = live.chunks, live.documents
    report.seconds = time.perf_counter() - started
    return report


def _source(path: Path, live: Manifest | None, index: Path, under: str) -> tuple[str, str | None]:
    """The file's source in the index, and its absolute path when it is to be listed as added (None: a folder file)."""
    real = path.resolve()
    folder = Path(live.source_dir) if live is not None and live.source_dir else None
    if folder is not None and real.is_relative_to(folder) and not real.is_relative_to(index.resolve()):
        relative = real.relative_to(folder)
        if not any(part.startswith(".") for part in relative.parts):  # a folder ingest would walk it
            return relative.as_posix(), None
    return under + path.name, str(real)


def _write_files(todo: list[WalkedFile], added: dict[str, str], live: Manifest | None, indexed: dict[str, FileRecord],
                 settings: Settings, embedder: Any, report: IngestReport, console: Any) -> None:
    """Stage ``todo`` on top of the live generation (nothing else removed) and commit."""
    _check_writable(settings.index)
    check_unlocked(settings.index)
    get_embedder = _LazyEmbedder(settings, embedder, report)
    known = get_embedder()
    root = Path(os.path.commonpath([str(f.target.resolve().parent) for f in todo]))
    manifest = Manifest(
        embedding_model=known.model_name, dim=int(known.dim), chunking=settings.ingest.chunking_signature(),
        source_dir=live.source_dir if live else None, extra=dict(live.extra) if live else {},
    )
    try:
        with open_writer(settings, manifest) as writer:
            kept = set(writer.files())  # under the lock: everything indexed stays
            _update(writer, todo, kept, settings, get_embedder, report, console, force=False, root=root)
            done = set(report.added) | set(report.updated)
            writer.manifest.extra["added"] = {s: p for s, p in added.items() if s in done or s in kept}
            if done:
                record_commit(report, writer.commit())
    except OSError as err:
        raise write_failed(settings, err) from None
    report.failed.sort()
    report.write_file()

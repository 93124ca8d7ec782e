"""Folder -> index, incrementally: only new or changed files are embedded.

``ingest_folder`` walks the folder (:mod:`ingest.walk`), which hashes every
supported file (sha256 of its bytes, and of its loader's version where a
loader changed how it reads), and compares with the ``files`` table of the
live index. Unchanged files are left alone, changed ones have their chunks
replaced, deleted ones are dropped; everything is staged in a new generation by :class:`~rag_app.store.IndexWriter`
and made live with one atomic commit at the end, so a crash or Ctrl-C leaves
the previous index as it was. A second run over an unchanged folder loads no
model, takes no lock and writes nothing.

What is indexed is read once: each changed file is opened again (checked to
be the file the walk hashed, see :func:`~ingest.loaders.open_checked`) and the
bytes read through that descriptor are both parsed and hashed, so the digest
recorded is always that of the text indexed, even if the path was swapped
meanwhile.

Chunks of several files are embedded together, longest first in batches of
``ingest.embed_batch_size``: short files (one paragraph each) would otherwise
make batches of one or two, and sorting by length keeps padding small.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.config import IngestConfig, Settings
from rag_app.errors import IngestError, LoaderError
from rag_app.store import Chunk, FileRecord, Manifest, check_unlocked
from rag_app.store_protocol import StoreWriter, open_store, open_writer, store_exists

from ingest.chunking import chunk, make_splitter
from ingest.loaders import SUPPORTED_TYPES, load, open_checked, reader_version
from ingest.report import IngestReport
from ingest.walk import HashingReader, Walk, WalkedFile, too_big, walk_folder

__all__ = ["IngestReport", "embed", "ingest_folder", "upload_dir"]

log = logging.getLogger(__name__)

# Embed once this many batches of chunks are queued: the window they are sorted by
# length in (bigger = less padding; a 16-batch window cost measurably more CPU,
# docs/BENCHMARKS.md "Ingest throughput") and what bounds memory (2,048 chunks of 800 chars ~ 2 MB).
_FLUSH_BATCHES = 64
_KEPT = "; the previous version stays indexed"



def ingest_folder(
    folder: str | Path,
    settings: Settings,
    rebuild: bool = False,
    console: Any = None,
    embedder: Any = None,
) -> IngestReport:
    """Build or update the index at ``settings.index`` from ``folder``.

    The index mirrors the supported files under ``folder`` that match
    ``settings.ingest.globs`` (hidden files and folders excluded): files gone
    from there (or no longer matched) are removed from the index. Files over
    ``settings.ingest.max_file_mb``, links to outside the folder and names that
    are not UTF-8 are skipped, with the reason in the report. A file (or a
    folder) that cannot be read is reported; if an older version of it was
    indexed, that version is kept. A file that became a link, another file or
    one outside the folder between the walk and its loading counts as one
    that cannot be read. Every skipped and failed file is written to
    ``<index>/last-ingest-report.txt`` (:meth:`IngestReport.write_file`).

    Args:
        folder: the documents folder; chunk sources are paths relative to it.
        settings: index location, embedding model and ``ingest`` section.
        rebuild: start a fresh index (e.g. after changing the embedding model).
        console: a rich Console for the progress bars; None shows none.
        embedder: an :class:`~rag_app.embeddings.Embedder`; default
            ``load_embedder(settings.embedding_model)``, loaded only when something needs embedding.

    Returns:
        The report; ``report.committed`` says whether a new generation was written.

    Raises:
        IngestError: the folder is missing, not a folder, holds nothing ingestible, no
            file could be read, or the index directory is not writable.
        EmbeddingMismatchError: the index was built with another embedding model (and not ``rebuild``).
        IndexLockedError: another process is writing to the index.
    """
    started = time.perf_counter()
    folder = _check_folder(Path(folder))
    report = IngestReport(folder=folder, index=settings.index)
    walked = walk_folder(folder, settings.ingest, settings.index)
    files = _ingestible(folder, walked, report)
    plan = _plan(folder, files, walked, settings, rebuild, embedder, report)
    if plan.nothing_to_do:
        return _unchanged(report, files, plan.live, started)
    _check_writable(settings.index)
    check_unlocked(settings.index)  # a second ingest is refused now, not after its model loaded
    get_embedder = _LazyEmbedder(settings, embedder, report)
    if plan.todo or plan.live is None:
        get_embedder()
    _note_changes(report, plan, folder, rebuild)
    manifest = _manifest(folder, settings, plan, get_embedder.embedder, rebuild)
    _write(manifest, files, plan, settings, get_embedder, report, console, rebuild, folder)
    _check_something_indexed(report, plan.live, folder)
    report.seconds = time.perf_counter() - started
    log.info("ingest: %s", report.summary().plain.replace("\n", " | "))
    return report


def _check_folder(folder: Path) -> Path:
    """``folder``, once it is known to be a folder that exists."""
    if not folder.exists():
        raise IngestError(f"folder {folder} does not exist; pass a folder of documents: rag ingest DIR")
    if not folder.is_dir():
        raise IngestError(f"{folder} is a file, not a folder; pass the folder that holds it")
    return folder


def _ingestible(folder: Path, walked: Walk, report: IngestReport) -> list[WalkedFile]:
    """The files the walk found to ingest (the skipped ones go in the report); an error when there are none."""
    files, report.skipped = walked.files, walked.skipped
    if not files:
        if walked.failed:
            reasons = _reasons(walked.failed)
            raise IngestError(f"no document in {folder} could be read ({reasons}); fix or remove these files")
        kinds = " ".join(sorted(SUPPORTED_TYPES))
        others = f" ({len(report.skipped)} files of other types)" if report.skipped else ""
        raise IngestError(f"nothing to ingest in {folder}: no {kinds} files{others}; point rag ingest at your documents")
    return files


@dataclass(frozen=True)
class _Plan:
    """What a run has to change, decided against the live index before any lock is taken.

    ``indexed`` and ``live`` are the live index's files and manifest (empty /
    None without one, ``indexed`` empty on a rebuild); ``unread`` the sources
    the walk could not read (kept as indexed); ``todo`` the files to (re)embed;
    ``gone`` the indexed sources no longer in the folder; ``rechunk`` the
    chunking changed; ``moved`` the index was built from another folder.
    """

    indexed: dict[str, FileRecord]
    live: Manifest | None
    unread: set[str]
    signature: dict[str, Any]
    rechunk: bool
    todo: list[WalkedFile]
    gone: list[str]
    moved: bool

    @property
    def nothing_to_do(self) -> bool:
        return not self.todo and not self.gone and not self.moved


def _plan(folder: Path, files: Sequence[WalkedFile], walked: Walk, settings: Settings, rebuild: bool, embedder: Any,
          report: IngestReport) -> _Plan:
    """Compare the walk with the live index (read unlocked); the unreadable files go in the report."""
    signature = settings.ingest.chunking_signature()
    indexed, live = _snapshot(settings, None if rebuild else _model_name(settings, embedder))
    if rebuild:  # nothing of the live index is kept, so no report line may say "stays indexed"
        indexed = {}
    report.failed = [(source, reason + _kept_note(source, indexed)) for source, reason in walked.failed]
    # kept as indexed: what could not be read, and the files added one by one (ingest.files)
    unread = {source for source, _ in walked.failed} | set(added_files(live))
    rechunk = live is not None and live.chunking != signature
    todo = [f for f in files if rebuild or rechunk or f.source not in indexed or indexed[f.source].sha256 != f.sha256]
    gone = [] if rebuild else sorted(set(indexed) - {f.source for f in files} - _kept(indexed, unread))
    moved = live is not None and live.source_dir != str(folder.resolve())  # recorded for uploads
    return _Plan(indexed, live, unread, signature, rechunk, todo, gone, moved)


def _unchanged(report: IngestReport, files: Sequence[WalkedFile], live: Manifest | None, started: float) -> IngestReport:
    """The report of a run with nothing to change: no model loaded, no lock taken, nothing written."""
    report.unchanged = [f.source for f in files]
    report.total_chunks, report.documents = (live.chunks, live.documents) if live else (0, 0)
    report.write_file()
    report.seconds = time.perf_counter() - started
    return report


class _LazyEmbedder:
    """The embedder, loaded on first call: removals and a moved folder need none."""

    def __init__(self, settings: Settings, embedder: Any, report: IngestReport) -> None:
        self.settings, self.embedder, self.report = settings, embedder, report

    def __call__(self) -> Any:
        if self.embedder is None:
            from rag_app.embeddings import load_embedder

            tic = time.perf_counter()
            self.embedder = load_embedder(self.settings.embedding_model)
            self.report.model_seconds = time.perf_counter() - tic
        return self.embedder


def _note_changes(report: IngestReport, plan: _Plan, folder: Path, rebuild: bool) -> None:
    """Say in the report why every file is read again, or why the index now mirrors another folder."""
    if plan.rechunk:
        report.notes.append(f"chunking changed from {plan.live.chunking} to {plan.signature}: every file is re-chunked")
    if rebuild and (added := added_files(plan.live)):
        report.notes.append(f"{len(added)} files added one by one are no longer indexed; add them again: "
                            f"rag ingest FILE (or upload them): {', '.join(sorted(added))}")
    if plan.moved and not rebuild and plan.live.source_dir:
        report.notes.append(f"the index was built from {plan.live.source_dir}; it now mirrors {folder.resolve()}")


def _manifest(folder: Path, settings: Settings, plan: _Plan, known: Any, rebuild: bool = False) -> Manifest:
    """The manifest of the generation to write.

    ``known`` is the embedder if one was loaded: None only when nothing is to
    be embedded, and then the live index says what model it is.
    """
    live = plan.live
    return Manifest(
        embedding_model=known.model_name if known is not None else live.embedding_model,
        dim=int(known.dim) if known is not None else live.dim,
        chunking=plan.signature,
        source_dir=str(folder.resolve()),
        extra={"globs": list(settings.ingest.globs), "added": {} if rebuild else added_files(live)},
    )


def _write(manifest: Manifest, files: Sequence[WalkedFile], plan: _Plan, settings: Settings, get_embedder: Any,
           report: IngestReport, console: Any, rebuild: bool, folder: Path) -> None:
    """Stage the changes under the lock and commit them as one new generation (when anything changed)."""
    live = plan.live
    try:
        with open_writer(settings, manifest, rebuild=rebuild) as writer:
            _update(writer, files, plan.unread, settings, get_embedder, report, console, force=rebuild or plan.rechunk,
                    root=folder.resolve())
            if writer.files():
                if report.added or report.updated or report.removed or rebuild or plan.moved:
                    tic = time.perf_counter()
                    written = writer.commit()
                    report.write_seconds = time.perf_counter() - tic
                    record_commit(report, written)
                else:
                    report.total_chunks, report.documents = (live.chunks, live.documents) if live else (0, 0)
    except OSError as err:
        raise write_failed(settings, err) from None
    report.failed.sort()
    report.write_file()


def record_commit(report: IngestReport, written: Manifest) -> None:
    """What the report says of a committed generation (folder and single-file ingests alike)."""
    report.committed, report.generation = True, written.generation
    report.total_chunks, report.documents = written.chunks, written.documents


def write_failed(settings: Settings, err: OSError) -> IngestError:
    """The one line for an index that could not be written (full disk, permissions)."""
    return IngestError(f"cannot write the index at {settings.index}: {err.strerror or err}; choose a writable --index")


def _check_something_indexed(report: IngestReport, live: Manifest | None, folder: Path) -> None:
    """A run that committed nothing and leaves no indexed chunks is an error, naming why."""
    if not report.committed and not (live and report.total_chunks):
        listed = f"; all listed in {report.report_file}" if report.report_file else ""
        raise IngestError(
            f"no document in {folder} could be read ({_reasons(report.failed + report.skipped)}{listed}); "
            "fix or remove these files"
        )


def _update(
    writer: StoreWriter,
    files: Sequence[WalkedFile],
    unread: set[str],
    settings: Settings,
    get_embedder: Any,
    report: IngestReport,
    console: Any,
    force: bool,
    root: Path,
) -> None:
    """Stage every change in ``writer``: removals, then load -> chunk -> embed -> add per file.

    ``get_embedder()`` returns the embedder, loading it the first time; it is
    called only when a file is to be embedded (another writer may have changed
    the index between planning and taking the lock, so that is decided here).
    Files under ``unread`` (files and folders that could not be read) are kept.
    ``root`` is the folder, resolved: a file loaded must be under it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    indexed: dict[str, FileRecord] = writer.files()  # under the lock: the authoritative state
    present = {f.source for f in files} | _kept(indexed, unread)
    for source in sorted(set(indexed) - present):
        writer.remove_file(source)
        report.removed.append(source)
    todo = []
    for f in files:
        if not force and f.source in indexed and indexed[f.source].sha256 == f.sha256:
            report.unchanged.append(f.source)
        else:
            todo.append(f)
    config = settings.ingest
    tokenizer = _tokenizer_of(get_embedder()) if todo and config.chunk_unit == "tokens" else None
    splitter = make_splitter(config, tokenizer) if todo else None
    flush_at = config.embed_batch_size * _FLUSH_BATCHES
    pending: list[tuple[WalkedFile, list[Chunk]]] = []
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=console is None or not todo, transient=False) as progress:
        files_task = progress.add_task("reading files", total=len(todo))
        chunks_task = progress.add_task("embedding chunks", total=0)

        def flush() -> None:
            if not pending:
                return
            texts = [c.text for _, chunks in pending for c in chunks]
            tic = time.perf_counter()
            vectors = embed(texts, get_embedder(), config.embed_batch_size, lambda n: progress.advance(chunks_task, n))
            report.embed_seconds += time.perf_counter() - tic
            row = 0
            for f, chunks in pending:
                writer.add_file(f.source, f.sha256, f.size, chunks, vectors[row : row + len(chunks)])
                row += len(chunks)
                (report.updated if f.source in indexed else report.added).append(f.source)
                report.bytes_embedded += f.size
            report.chunks_embedded += len(texts)
            pending.clear()

        queued = 0
        for f in todo:
            tic = time.perf_counter()
            read = _read(f, root, config, splitter, report, previously_indexed=f.source in indexed)
            report.read_seconds += time.perf_counter() - tic
            progress.advance(files_task)
            if read is None:
                continue
            f, chunks = read  # f now carries the digest and size of the bytes loaded
            if not chunks and f.source in indexed:  # emptied: its old chunks no longer describe it
                writer.remove_file(f.source)
                report.removed.append(f.source)
                continue
            if chunks:
                pending.append((f, chunks))
                queued += len(chunks)
                progress.update(chunks_task, total=queued)
                if sum(len(c) for _, c in pending) >= flush_at:
                    flush()
        flush()


def _read(
    f: WalkedFile, root: Path, config: IngestConfig, splitter: Any, report: IngestReport, previously_indexed: bool
) -> tuple[WalkedFile, list[Chunk]] | None:
    """Load and chunk one file, reading its bytes once; None (and a line in the report) when it cannot be read.

    The file is opened by :func:`~ingest.loaders.open_checked` (no link, the
    inode the walk hashed, under ``root``) and the bytes read through that
    descriptor are hashed as :func:`load` parses them: the returned ``WalkedFile``
    carries their digest and size, which is what the index records (the
    walk's digest only decided that the file needed reading). A file over
    ``ingest.max_file_mb`` by now is refused before, or while, it is read.
    """
    kept = _KEPT if previously_indexed else ""
    try:
        fh, st = open_checked(f.target, within=root, expect=f.identity)
        with fh:
            if config.max_file_mb and st.st_size > config.max_file_mb * 1e6:
                raise LoaderError(too_big(st.st_size, config.max_file_mb))
            reader = HashingReader(fh, reader_version(f.path), config.max_file_mb)
            sections = load(f.path, data=reader)
            reader.drain()  # a loader that stopped early must not leave bytes out of the digest
        f = replace(f, sha256=reader.hexdigest(), size=reader.size)
        chunks = chunk(sections, f.source, config, splitter=splitter)
    except LoaderError as err:
        report.failed.append((f.source, f"{err}{kept}"))
        return None
    except Exception as err:  # a loader library bug on one odd file must not abort the run
        log.debug("loading %s failed", f.source, exc_info=True)
        report.failed.append((f.source, f"{type(err).__name__}: {err}{kept}"))
        return None
    if not chunks:
        report.skipped.append((f.source, "no text"))
    return f, chunks


def embed(texts: Sequence[str], embedder: Any, batch_size: int, advance: Any = None) -> np.ndarray:
    """Embed ``texts`` longest first in batches, returned in the original order.

    Sorting by length puts similar lengths in one batch, so little compute is
    spent on padding (sentence-transformers sorts too, but only within one
    ``encode`` call; here the calls are per batch so the progress bar moves).

    Args:
        texts: n chunk texts.
        embedder: an Embedder.
        batch_size: texts per ``embed_documents`` call.
        advance: called with the number of texts done after each batch.

    Returns:
        (n, embedder.dim) float32 unit vectors.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.empty((len(texts), int(embedder.dim)), np.float32)
    for b in range(0, len(order), batch_size):
        rows = order[b : b + batch_size]
        vectors = np.asarray(embedder.embed_documents([texts[i] for i in rows], batch_size=batch_size), np.float32)
        if vectors.shape != (len(rows), out.shape[1]):
            raise ValueError(f"embedder returned shape {vectors.shape} for {len(rows)} texts of dim {out.shape[1]}")
        out[rows] = vectors
        if advance is not None:
            advance(len(rows))
    return out


def _kept(indexed: Iterable[str], unread: set[str]) -> set[str]:
    """The indexed sources that could not be read this time, as files or under a folder (``sub/``): they stay."""
    folders = tuple(u for u in unread if u.endswith("/"))
    return {s for s in indexed if s in unread or s.startswith(folders)}


def _kept_note(source: str, indexed: dict[str, FileRecord]) -> str:
    """What an unreadable file or folder leaves in the index, for its line in the report."""
    if not _kept(indexed, {source}):
        return ""
    return "; the files indexed from it before stay indexed" if source.endswith("/") else _KEPT


def _reasons(items: Sequence[tuple[str, str]]) -> str:
    """The first three ``source: reason`` pairs, for a one-line error."""
    return "; ".join(f"{s}: {r}" for s, r in items[:3])


def _model_name(settings: Settings, embedder: Any) -> str:
    if embedder is not None:
        return embedder.model_name
    from rag_app.embeddings import canonical_name

    return canonical_name(settings.embedding_model)


def _snapshot(settings: Settings, embedding_model: str | None) -> tuple[dict[str, FileRecord], Manifest | None]:
    """The live index's files and manifest, read without the lock (planning only)."""
    if not store_exists(settings):
        return {}, None
    with open_store(settings, embedding_model=embedding_model) as store:
        return store.files(), store.manifest


def _check_writable(index_dir: Path) -> None:
    """Fail before loading a model when the index cannot be written at all."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise IngestError(f"cannot create the index directory {index_dir}: {err.strerror}; choose a writable --index") from None
    if not os.access(index_dir, os.W_OK | os.X_OK):
        raise IngestError(f"the index directory {index_dir} is not writable; choose a writable --index")


def _tokenizer_of(embedder: Any) -> Any:
    """The Hugging Face tokenizer behind an embedder, if it exposes one."""
    tokenizer = getattr(embedder, "tokenizer", None)
    if tokenizer is None:
        tokenizer = getattr(getattr(embedder, "model", None), "tokenizer", None)
    return tokenizer


def added_files(manifest: Manifest | None) -> dict[str, str]:
    """The files added one by one (``rag ingest FILE``, uploads): source -> absolute path; a folder ingest keeps them."""
    return dict((manifest.extra if manifest else {}).get("added", {}))


def upload_dir(settings: Settings) -> Path:
    """Where uploaded files are kept: ``<index>/uploads``, the index's own data folder.

    Why not the indexed folder: that is the user's (for the demo, the
    repository's sample docs), and an upload has no business there. The
    uploads are added one by one (:mod:`ingest.files`, sources ``uploads/NAME``),
    so a later ingest of the folder keeps them, and they travel with the index.
    """
    return settings.index / "uploads"

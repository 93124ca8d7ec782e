"""Browser uploads -> files in the index's source folder -> the ingest pipeline.

Why save into the source folder rather than a temporary one: ingest is
incremental over a folder (files hashed, deleted ones dropped), so the
uploaded files must live beside the ones the index was built from, or the
next ``rag ingest`` of that folder would remove them again.

An upload never replaces a file already there: the folder holds the user's
own documents, and a browser only sends a name. A different file of the same
name is saved as ``report (2).pdf`` (the first free number); the very same
bytes are not written again.

A file that cannot be read is reported by ingest and skipped; here it is also
taken back out of the folder, so the folder keeps matching the index. If
ingest fails as a whole (the index is locked, the embedder mismatches) every
file written is removed again and the store is untouched:
:class:`~rag_app.store.IndexWriter` only commits at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from rag_app.config import Settings
from rag_app.errors import IngestError
from rag_app.store import IndexStore, index_exists

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 255  # the longest file name (UTF-8 bytes) ext4, APFS and NTFS accept


@dataclass
class UploadResult:
    """What happened to one batch of uploads."""

    folder: Path
    saved: list[str] = field(default_factory=list)  # file names written into ``folder``
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, why) never written
    rolled_back: list[str] = field(default_factory=list)  # saved, then removed because ingest could not read them
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (uploaded name, saved name): another file had it
    unchanged: list[str] = field(default_factory=list)  # the same bytes are already indexed under this name
    report: Any = None  # ingest.pipeline.IngestReport, None when nothing was ingested


def supported_extensions() -> list[str]:
    """Extensions the loaders read, without the dot (what ``st.file_uploader(type=...)`` wants)."""
    from ingest.loaders import SUPPORTED_TYPES

    return sorted(ext.lstrip(".") for ext in SUPPORTED_TYPES)


def upload_folder(settings: Settings) -> Path:
    """Where uploads go: ``ingest.pipeline.upload_dir`` (the indexed folder, else ``uploads/`` beside the index).

    Raises:
        IngestError: the index records a source folder that no longer exists;
            ingesting a new, nearly empty folder there would drop every
            document the index holds.
    """
    from ingest.pipeline import upload_dir

    folder = upload_dir(settings)
    if index_exists(settings.index) and not folder.is_dir() and _recorded_source_dir(settings) is not None:
        raise IngestError(
            f"the index at {settings.index} was built from {folder}, which no longer exists; restore that folder, "
            f"or rebuild from another with: rag ingest DIR --rebuild --index {settings.index}"
        )
    return folder


def _recorded_source_dir(settings: Settings) -> str | None:
    with IndexStore.open(settings.index) as store:
        return store.manifest.source_dir


def _safe_name(name: str) -> str | None:
    """The bare file name of an upload (browsers may send paths); None for hidden or empty names."""
    base = PurePath(name.replace("\\", "/")).name.strip()
    return base if base and not base.startswith(".") else None


def _name_problem(name: str, folder: Path, allowed: set[str]) -> str | None:
    """Why ``name`` cannot be saved in ``folder`` (one line), or None."""
    if "\x00" in name:
        return "the name contains a NUL byte; rename the file"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not a usable file name"
    if size > MAX_NAME_BYTES:
        return f"the name is {size} bytes long, over the {MAX_NAME_BYTES} a file name may have; shorten it"
    if Path(name).suffix.lower() not in allowed:
        return f"unsupported type; add {', '.join(sorted(allowed))} files"
    if (folder / name).is_dir():
        return f"{folder} has a folder of that name; rename the file"
    return None


def _free_name(folder: Path, name: str, data: bytes) -> tuple[str, bool]:
    """Where ``data`` goes: ``name``, else ``stem (2).ext``, ``stem (3).ext`` ... the first free one.

    Returns:
        (name, identical): ``identical`` when a file of that name already holds exactly ``data``.

    Raises:
        ValueError: the numbered name would be too long (the message says so).
    """
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 1
    while True:
        if len(candidate.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"another file of that name is in {folder} and a numbered name would be too long; shorten it")
        path = folder / candidate
        if not path.exists() and not path.is_symlink():
            return candidate, False
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return candidate, True
        n += 1
        candidate = f"{stem} ({n}){suffix}"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a hidden temp file in the same folder, then rename; the temp file never stays behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".uploading")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _indexed_sources(settings: Settings) -> set[str]:
    if not index_exists(settings.index):
        return set()
    with IndexStore.open(settings.index) as store:
        return set(store.files())


def _failed_names(report: Any) -> set[str]:
    """File names ingest reported as failed; items are paths, (path, reason) pairs or records."""
    names = set()
    for item in getattr(report, "failed", None) or []:
        if isinstance(item, (tuple, list)):
            item = item[0]
        for attr in ("source", "path"):
            if hasattr(item, attr):
                item = getattr(item, attr)
                break
        names.add(PurePath(str(item)).name)
    return names


def ingest_uploads(files: Sequence[tuple[str, bytes]], settings: Settings, embedder: Any = None) -> UploadResult:
    """Save uploaded files into the index's source folder and ingest that folder.

    Args:
        files: (file name as the browser sent it, content) pairs.
        settings: the page's settings (index path, chunking, embedding model).
        embedder: the page's cached embedder, so ingest does not load another.

    Returns:
        An :class:`UploadResult`; ``report`` is the ingest report.

    Raises:
        RagError: ingest could not run at all (locked index, embedding
            mismatch, ...); every file written has been removed again.
    """
    from ingest.pipeline import ingest_folder

    allowed = {f".{ext}" for ext in supported_extensions()}
    folder = upload_folder(settings)
    result = UploadResult(folder=folder)
    indexed = _indexed_sources(settings)
    uploaded: set[str] = set()
    to_index = False  # an identical file already in the folder but not in the index yet
    for raw_name, data in files:
        name = _safe_name(raw_name)
        why = _name_problem(name, folder, allowed) if name else "not a usable file name"
        if why is None and name in uploaded:
            why = "uploaded twice; kept the first"
        if why is not None:
            result.rejected.append(((name or raw_name).replace("\x00", "\\x00"), why))
            continue
        uploaded.add(name)
        to_index |= _save(result, name, data, indexed)
    if not result.saved and not to_index:
        return result

    try:
        result.report = ingest_folder(folder, settings, embedder=embedder)
    except BaseException:
        for name in result.saved:
            _remove(folder / name)
        result.rolled_back = list(result.saved)
        raise
    for name in sorted(_failed_names(result.report) & set(result.saved)):
        _remove(folder / name)
        result.rolled_back.append(name)
    return result


def _save(result: UploadResult, name: str, data: bytes, indexed: set[str]) -> bool:
    """Save one upload beside, never over, the folder's files; True when ingest must index a file already there."""
    folder = result.folder
    try:
        target, identical = _free_name(folder, name, data)
        if identical:
            return _note_identical(result, name, target, indexed)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / target, data)
    except ValueError as err:
        result.rejected.append((name, str(err)))
        return False
    except OSError as err:  # a full disk, a name this file system refuses
        result.rejected.append((name, f"could not be saved in {folder}: {err.strerror or err}"))
        return False
    result.saved.append(target)
    if target != name:
        result.renamed.append((name, target))
    return False


def _note_identical(result: UploadResult, name: str, existing: str, indexed: set[str]) -> bool:
    """Record an upload whose bytes ``existing`` already holds; True when ingest still has to index it."""
    if existing in result.saved:
        result.rejected.append((name, f"the same file as {existing}, uploaded in this batch"))
        return False
    if existing in indexed:
        result.unchanged.append(existing)
        return False
    return True  # in the folder but not indexed: ingest picks it up (and never removes it: not ours)


def _remove(path: Path) -> None:
    """Take an uploaded file back out of the folder."""
    try:
        path.unlink(missing_ok=True)
    except OSError as err:  # best effort: the index is already consistent, only the folder differs
        log.warning("could not remove %s: %s", path, err)

"""Browser uploads -> files in the index's source folder -> the ingest pipeline.

Why save into the source folder rather than a temporary one: ingest is
incremental over a folder (files hashed, deleted ones dropped), so the
uploaded files must live beside the ones the index was built from, or the
next ``rag ingest`` of that folder would remove them again.

A file that cannot be read is reported by ingest and skipped; here it is also
taken back out of the folder (or its previous version restored), so the
folder keeps matching the index. If ingest fails as a whole (the index is
locked, the embedder mismatches) every file written is rolled back and the
store is untouched: :class:`~rag_app.store.IndexWriter` only commits at the end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from rag_app.config import Settings
from rag_app.errors import IngestError
from rag_app.store import IndexStore, index_exists

log = logging.getLogger(__name__)


@dataclass
class UploadResult:
    """What happened to one batch of uploads."""

    folder: Path
    saved: list[str] = field(default_factory=list)  # file names written into ``folder``
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, why) never written
    rolled_back: list[str] = field(default_factory=list)  # saved, then removed because ingest could not read them
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


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.uploading")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
            mismatch, ...); every file written has been rolled back.
    """
    from ingest.pipeline import ingest_folder

    allowed = {f".{ext}" for ext in supported_extensions()}
    folder = upload_folder(settings)
    result = UploadResult(folder=folder)
    backups: dict[str, bytes | None] = {}  # name -> previous content, None when the file is new
    for raw_name, data in files:
        name = _safe_name(raw_name)
        if name is None:
            result.rejected.append((raw_name, "not a usable file name"))
            continue
        if Path(name).suffix.lower() not in allowed:
            result.rejected.append((name, f"unsupported type; add {', '.join(sorted(allowed))} files"))
            continue
        if name in backups:
            result.rejected.append((name, "uploaded twice; kept the first"))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        backups[name] = target.read_bytes() if target.is_file() else None
        _write_atomically(target, data)
        result.saved.append(name)
    if not result.saved:
        return result

    try:
        result.report = ingest_folder(folder, settings, embedder=embedder)
    except BaseException:
        for name in result.saved:
            _restore(folder / name, backups[name])
        result.rolled_back = list(result.saved)
        raise
    for name in sorted(_failed_names(result.report) & set(result.saved)):
        _restore(folder / name, backups[name])
        result.rolled_back.append(name)
    return result


def _restore(path: Path, previous: bytes | None) -> None:
    """Put back the previous version of an uploaded file, or remove a new one."""
    try:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomically(path, previous)
    except OSError as err:  # best effort: the index is already consistent, only the folder differs
        log.warning("could not roll back %s: %s", path, err)

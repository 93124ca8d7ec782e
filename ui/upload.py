"""Browser uploads -> files in the index's own ``uploads/`` folder -> added to the index.

Why there and not in the indexed folder: that folder is the user's (for the
demo, the repository's ``data/sample/docs``). Uploads are added one by one
(:func:`ingest.files.ingest_files`, sources ``uploads/NAME``), listed in the
manifest, so a later ``rag ingest`` of the folder keeps them. Indexes whose
earlier uploads went into the indexed folder keep them there as its files.

An upload never replaces a file already there: a browser only sends a name.
A different file of the same name is saved as ``report (2).pdf`` (the first
free number); the very same bytes are not written again. The name is taken
exclusively (a hard link that fails if it exists), so two tabs uploading
``report.pdf`` at once get ``report.pdf`` and ``report (2).pdf``, never one
file over the other. An upload over ``ingest.max_file_mb`` is refused before
it is saved: ingest would skip it and leave it in the folder unindexed.

A file that cannot be read is reported by ingest and skipped; here it is also
taken back out of the folder, so the folder keeps matching the index. If
ingest fails as a whole (the index is locked, the embedder mismatches) every
file this call created is removed again (never another tab's file: names are
taken exclusively) and the store is untouched:
:class:`~rag_app.store.IndexWriter` only commits at the end.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from decimal import ROUND_CEILING, Decimal
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from rag_app.config import Settings
from rag_app.store import create_durably
from rag_app.store_protocol import open_store, store_exists

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 255  # the longest file name (UTF-8 bytes) ext4, APFS and NTFS accept
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}  # FAT, some shares


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
    """Where uploads go: ``ingest.pipeline.upload_dir`` (``<index>/uploads``)."""
    from ingest.pipeline import upload_dir

    return upload_dir(settings)


_PREFIX = "uploads/"  # the source of an upload in the index: uploads/NAME


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


def _mb(size: int) -> str:
    """``size`` bytes in MB (10^6) to three significant digits, rounded up: ``0.5``, ``0.0015``, ``1.4``, ``1,235``.

    Rounded up so that a size over ``ingest.max_file_mb`` never reads as the limit itself.
    """
    mb = Decimal(size).scaleb(-6)
    step = Decimal(1) if mb >= 100 or not mb else Decimal(1).scaleb(mb.adjusted() - 2)
    return f"{mb.quantize(step, ROUND_CEILING).normalize():,f}"


def _too_large(size: int, settings: Settings) -> str | None:
    """Why an upload of ``size`` bytes is refused (ingest would skip it, unindexed, in the folder), or None."""
    limit = settings.ingest.max_file_mb
    if limit and size > limit * 1e6:  # the very test ingest applies, so nothing accepted here is skipped there
        return f"{_mb(size)} MB, over ingest.max_file_mb = {limit:g}; raise it in rag.toml to upload it"
    return None


def _candidates(folder: Path, name: str) -> Iterator[str]:
    """``name``, then ``stem (2).ext``, ``stem (3).ext`` ...

    Raises:
        ValueError: the numbered name would be too long (the message says so).
    """
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 1
    while True:
        if len(candidate.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"another file of that name is in {folder} and a numbered name would be too long; shorten it")
        yield candidate
        n += 1
        candidate = f"{stem} ({n}){suffix}"


def _holds(path: Path, data: bytes) -> bool:
    """Is ``path`` itself a regular file (not a link to one) holding exactly ``data``?"""
    try:
        st = path.lstat()
        return stat.S_ISREG(st.st_mode) and st.st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _place(folder: Path, name: str, data: bytes) -> tuple[str, bool]:
    """Save ``data`` as ``name``, else the first free numbered name; never over a file already there.

    Why exclusive: a check for a free name followed by a rename leaves a gap in
    which another tab's upload of that name is overwritten. The bytes go to a
    hidden temp file (so an ingest running meanwhile never reads half a file),
    then are hard-linked to the name, which fails if the name was taken
    meanwhile: then the next number is tried.

    Returns:
        (name, identical): ``identical`` when a file of that name already
        holds exactly ``data`` (nothing written); else this call created it.

    Raises:
        ValueError: the numbered name would be too long.
        OSError: writing failed (a full disk); no temp file stays behind.
    """
    tmp: str | None = None
    try:
        for candidate in _candidates(folder, name):
            path = folder / candidate
            if _holds(path, data):
                return candidate, True
            if path.exists() or path.is_symlink():
                continue
            if tmp is None:
                tmp = _write_temp(folder, data)
            if _link(tmp, path, data):
                return candidate, False
            if _holds(path, data):  # another tab saved the very same bytes meanwhile
                return candidate, True
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    raise AssertionError("unreachable: _candidates never ends without raising")


def _write_temp(folder: Path, data: bytes) -> str:
    """``data`` in a new hidden, fsynced temp file in ``folder``; its path."""
    while True:  # a random name is free at the first try but for a vanishing chance
        tmp = folder / f".{secrets.token_hex(8)}.uploading"
        if create_durably(tmp, data):
            return str(tmp)


def _link(tmp: str, path: Path, data: bytes) -> bool:
    """Give ``tmp``'s file the name ``path`` only if that name is free; False when it was taken."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
        return create_durably(path, data)  # no hard links here: create the name exclusively and write into it
    return True


def _live_index(settings: Settings) -> tuple[Path, set[str]]:
    """The upload folder and the uploads indexed now (by name), from one look at the live index (if there is one)."""
    if not store_exists(settings):
        return upload_folder(settings), set()
    with open_store(settings) as store:
        return upload_folder(settings), {s.removeprefix(_PREFIX) for s in store.files() if s.startswith(_PREFIX)}


def _failed_sources(report: Any, folder: Path) -> set[str]:
    """Sources ingest reported as failed or skipped (no text, not matched), as POSIX paths relative to ``folder``.

    Items are paths, (path, reason) pairs or records. A skipped upload is
    taken back too: left in the folder unindexed, it would look added.

    Why the whole relative path: an unreadable ``old/report.txt`` must not
    take a good upload ``report.txt`` (source ``report.txt``) out with it.
    """
    sources = set()
    for item in [*(getattr(report, "failed", None) or []), *(getattr(report, "skipped", None) or [])]:
        if isinstance(item, (tuple, list)):
            item = item[0]
        for attr in ("source", "path"):
            if hasattr(item, attr):
                item = getattr(item, attr)
                break
        path = PurePath(str(item).removeprefix(_PREFIX))
        if path.is_absolute():
            try:
                path = path.relative_to(folder)
            except ValueError:  # not under the folder: none of ours
                continue
        sources.add(path.as_posix())
    return sources


def ingest_uploads(files: Sequence[tuple[str, bytes]], settings: Settings, embedder: Any = None) -> UploadResult:
    """Save uploaded files into the index's ``uploads/`` folder and add them to the index.

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
    from ingest.files import ingest_files

    allowed = {f".{ext}" for ext in supported_extensions()}
    folder, indexed = _live_index(settings)
    result = UploadResult(folder=folder)
    uploaded: set[str] = set()
    to_index: list[str] = []  # identical files already in the folder but not in the index yet
    for raw_name, data in files:
        name = _safe_name(raw_name)
        why = _name_problem(name, folder, allowed) if name else "not a usable file name"
        if why is None and name in uploaded:
            why = "uploaded twice; kept the first"
        if why is None:
            why = _too_large(len(data), settings)
        if why is not None:
            result.rejected.append(((name or raw_name).replace("\x00", "\\x00"), why))
            continue
        uploaded.add(name)
        if (known := _save(result, name, data, indexed)) is not None:
            to_index.append(known)
    if not result.saved and not to_index:
        return result

    try:
        result.report = ingest_files([folder / n for n in [*result.saved, *to_index]], settings, embedder=embedder,
                                     under=_PREFIX)
    except BaseException:
        for name in result.saved:  # only names this call created (exclusively), never another tab's file
            _remove(folder / name)
        result.rolled_back = list(result.saved)
        raise
    # an upload's source is uploads/NAME; _failed_sources gives back the NAME
    for name in sorted(_failed_sources(result.report, folder) & set(result.saved)):
        _remove(folder / name)
        result.rolled_back.append(name)
    return result


def _save(result: UploadResult, name: str, data: bytes, indexed: set[str]) -> str | None:
    """Save one upload beside, never over, the folder's files; the name of a file already there that ingest must index."""
    folder = result.folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target, identical = _place(folder, name, data)
        if identical:
            return _note_identical(result, name, target, indexed)
    except ValueError as err:
        result.rejected.append((name, str(err)))
        return None
    except OSError as err:  # a full disk, a name this file system refuses
        result.rejected.append((name, f"could not be saved in {folder}: {err.strerror or err}"))
        return None
    result.saved.append(target)
    if target != name:
        result.renamed.append((name, target))
    return None


def _note_identical(result: UploadResult, name: str, existing: str, indexed: set[str]) -> str | None:
    """Record an upload whose bytes ``existing`` already holds; ``existing`` when ingest still has to index it."""
    if existing in result.saved:
        result.rejected.append((name, f"the same file as {existing}, uploaded in this batch"))
        return None
    if existing in indexed:
        result.unchanged.append(existing)
        return None
    return existing  # in the folder but not indexed: ingest picks it up (and never removes it: not ours)


def _remove(path: Path) -> None:
    """Take an uploaded file back out of the folder."""
    try:
        path.unlink(missing_ok=True)
    except OSError as err:  # best effort: the index is already consistent, only the folder differs
        log.warning("could not remove %s: %s", path, err)

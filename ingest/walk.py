"""Which files of a folder are candidates for the index, and their content hashes.

The walk is the first half of an ingest (:mod:`ingest.pipeline` is the rest:
plan, read, embed, write). It decides only what to look at: hidden entries,
the index directory, links to outside, files of other types, names that are
not UTF-8 and files over ``ingest.max_file_mb`` are left out with a reason,
and every candidate is hashed so the pipeline can tell which files changed.
It lives apart so :mod:`ingest.files` (one file at a time) judges a file
exactly as a folder ingest does.

Paths can change right after they are checked, so nothing here is trusted
for what is indexed: :func:`hash_file` opens without following links and
records which inode it read, and the pipeline reads the file again through a
descriptor checked against that (:func:`~ingest.loaders.open_checked`),
hashing what it parses with the same :class:`HashingReader`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_app.config import IngestConfig
from rag_app.errors import LoaderError

from ingest.loaders import is_supported, reader_version
from ingest.report import utf8_safe

__all__ = ["HashingReader", "Walk", "WalkedFile", "hash_file", "too_big", "visit_file", "walk_folder"]


@dataclass(frozen=True)
class WalkedFile:
    path: Path  # as walked (its name picks the loader)
    source: str  # relative POSIX path: the key of the files table
    sha256: str
    size: int
    target: Path  # what is opened to load it: ``path``, or the resolved target of a link inside the folder
    identity: tuple[int, int]  # (st_dev, st_ino) of what the walk hashed: loading refuses another file


@dataclass
class Walk:
    """What :func:`walk_folder` found: ``failed`` are files, and folders (``sub/``), that could not be read."""

    files: list[WalkedFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)



def walk_folder(folder: Path, config: IngestConfig, index_dir: Path) -> Walk:
    """Supported files (hashed), skipped and unreadable ones, each sorted by relative path.

    Hidden files and folders (``.git``, ``.rag``) and the index directory are
    not visited; nor are links to folders (``os.walk`` does not follow them: no
    loops, no file twice). A link that resolves outside ``folder`` is skipped
    with a reason, so a ``passwd.txt -> /etc/passwd`` never reaches the index.
    A glob matches the path relative to ``folder``; ``*`` also matches ``/``
    and a leading ``**/`` also matches at the top level.

    These checks are on paths, which can change right after: a file swapped
    for a link, or a folder for a link to outside (``os.walk`` tests for a
    link, then lists the folder). So they decide only what to look at; what
    is indexed is read by :func:`ingest.pipeline._read` through a descriptor
    checked to be the walked file, under the folder. Hard links cannot be told by path: a
    hard link in the folder to a file outside is indexed like any file in it.
    """
    real, index_real = folder.resolve(), index_dir.resolve()
    out = Walk()

    def unlistable(err: OSError) -> None:  # os.walk skips a folder it cannot list; say so
        source = utf8_safe(os.path.relpath(err.filename or folder, folder)) + "/"
        denied = isinstance(err, PermissionError)
        reason = "permission denied: cannot list the folder" if denied else f"cannot list the folder: {err.strerror}"
        out.failed.append((source, reason))

    for root, dirs, names in os.walk(folder, onerror=unlistable):
        here = Path(root)
        dirs[:] = [d for d in sorted(dirs) if _visit_dir(here / d, folder, real, index_real, out)]
        for name in sorted(names):
            path = here / name
            source = path.relative_to(folder).as_posix()
            if name.startswith(".") or not _matches(source, config.globs):
                continue
            if _leaves(path, real):
                out.skipped.append((utf8_safe(source), "link to outside the folder"))
            elif path.is_file():  # not a FIFO, socket or dangling link
                visit_file(path, source, config, out)
    out.files.sort(key=lambda f: f.source)
    out.skipped.sort()
    out.failed.sort()
    return out


def _visit_dir(path: Path, folder: Path, real: Path, index_real: Path, out: Walk) -> bool:
    """Whether to walk into ``path``: not hidden, not the index, not a link (one to outside is reported)."""
    if path.name.startswith(".") or path.resolve() == index_real:
        return False
    if path.is_symlink():
        if _leaves(path, real):
            out.skipped.append((utf8_safe(path.relative_to(folder).as_posix()) + "/", "link to outside the folder"))
        return False
    return True


def _is_utf8(name: str) -> bool:
    """False for a name os.walk decoded with lone surrogates (bytes that are not UTF-8)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def visit_file(path: Path, source: str, config: IngestConfig, out: Walk) -> None:
    """Hash a candidate into ``out.files``, or say in ``out`` why it is skipped or unreadable."""
    shown = utf8_safe(source)
    limit = config.max_file_mb * 1e6
    try:
        if not is_supported(path):
            out.skipped.append((shown, f"unsupported type {path.suffix or '(no extension)'}"))
        elif not _is_utf8(source):  # SQLite, rich and the report file take only valid UTF-8
            out.skipped.append((shown, "the file name is not valid UTF-8; rename the file to index it"))
        elif limit and (size := path.stat().st_size) > limit:
            out.skipped.append((shown, too_big(size, config.max_file_mb)))
        else:
            target = path.resolve() if path.is_symlink() else path  # a link inside: load opens its target
            digest, size, identity = hash_file(target, config.max_file_mb)
            out.files.append(WalkedFile(path, source, digest, size, target, identity))
    except LoaderError as err:
        out.failed.append((shown, str(err)))
    except PermissionError:
        out.failed.append((shown, "permission denied: cannot read"))
    except OSError as err:
        out.failed.append((shown, f"cannot read: {err.strerror or err}"))


def _leaves(path: Path, real_folder: Path) -> bool:
    """Is ``path`` a link that resolves outside ``real_folder`` (itself resolved)?"""
    if not path.is_symlink():
        return False
    try:
        return not path.resolve().is_relative_to(real_folder)
    except (OSError, RuntimeError):  # a link loop leads nowhere (RuntimeError before Python 3.13)
        return False



def _matches(source: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(source, g) or (g.startswith("**/") and fnmatch.fnmatchcase(source, g[3:])) for g in globs)


def hash_file(path: Path, max_file_mb: float = 0) -> tuple[str, int, tuple[int, int]]:
    """sha256 of the bytes (salted as :class:`HashingReader` says), the size, and which file it was (st_dev, st_ino).

    This digest only plans the run (which files changed); a file that is
    loaded is hashed again from the bytes loaded. The identity lets loading
    refuse a file swapped in since. What the walk saw may be swapped before
    this opens it, so: ``O_NOFOLLOW`` (no link), ``O_NONBLOCK`` (a FIFO does
    not hang the run), a regular file only (``/dev/zero`` never ends) and
    ``max_file_mb`` enforced while reading.

    Raises:
        LoaderError: not a regular file, or it grew past ``max_file_mb``.
        OSError: it cannot be opened (a link swapped in: ELOOP).
    """
    flags = os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    with open(path, "rb", opener=lambda p, f: os.open(p, f | flags)) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise LoaderError("not a regular file (swapped for a device or pipe while being indexed); ingest again")
        reader = HashingReader(fh, reader_version(path), max_file_mb)
        reader.drain()
    return reader.hexdigest(), reader.size, (st.st_dev, st.st_ino)


def too_big(size: int, max_file_mb: float) -> str:
    return f"{size / 1e6:,.0f} MB, over ingest.max_file_mb = {max_file_mb:g}; raise it in rag.toml to index it"


class HashingReader:
    """A file read through this is hashed as it goes; past ``max_file_mb`` (0: no limit) it is refused.

    What :func:`~ingest.loaders.load` reads from it is exactly what the digest covers, so the
    digest recorded and the text indexed cannot come from two different reads.
    The digest is salted with the loader's reader version once it was bumped
    (``READER_VERSIONS``), so a file read differently now is read again once.
    """

    def __init__(self, fh: Any, version: int, max_file_mb: float = 0) -> None:
        self._fh, self._mb, self._limit = fh, max_file_mb, int(max_file_mb * 1e6)
        self._h = hashlib.sha256()
        if version > 1:
            self._h.update(f"reader {version}\n".encode())
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if self._limit:  # one byte past the limit tells a file that grew since it was measured
            room = self._limit + 1 - self.size
            n = room if n is None or n < 0 else min(n, room)
        block = self._fh.read(n) or b""  # None: a FIFO swapped in has nothing to read yet
        self._h.update(block)
        self.size += len(block)
        if self._limit and self.size > self._limit:
            raise LoaderError(f"it grew past ingest.max_file_mb = {self._mb:g} while being indexed; "
                              "raise it in rag.toml to index it")
        return block

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        return self._h.hexdigest()

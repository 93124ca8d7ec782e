"""The index store: FAISS vectors + SQLite chunks + a JSON manifest, in one directory.

Why generations: a crash or Ctrl-C in the middle of an ingest must leave the
previous index fully usable. A writer therefore never touches the live files.
It copies the live generation into a fresh ``gen-<n>/`` folder, changes that,
fsyncs it, and only then points ``CURRENT`` at it with an atomic rename. A
reader opens whatever ``CURRENT`` names and so always sees a complete
generation. The previous generation is kept, so a long-lived reader (the UI)
survives one commit under its feet; older ones are deleted.
A write that fails (a full disk) is one :class:`~rag_app.errors.IndexWriteError`
line, and the staged folder is deleted: ``CURRENT`` still names the old generation.

:class:`IndexStore` and :class:`IndexWriter` are the embedded implementation of
the store contract in :mod:`rag_app.store_protocol` (``ChunkStore``,
``StoreWriter``); :mod:`rag_app.milvus_store` is the server-backed one.

Layout::

    <index>/CURRENT            name of the live generation
    <index>/.lock              flock'ed by the one writer
    <index>/gen-000003/manifest.json
                      chunks.sqlite   files + chunks tables (text, source, page, heading, span)
                      vectors.faiss   IndexIDMap2(IndexFlatIP), ids = chunk ids
                      bm25/           bm25s index over the same chunks (+ ids.npy)

Nothing is unpickled on any load path: JSON, SQLite, FAISS's own format and
``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_app.errors import (
    EmbeddingMismatchError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    IndexWriteError,
)

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    n_chunks INTEGER NOT NULL, ingested_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    text TEXT NOT NULL, page INTEGER, heading TEXT, start INTEGER NOT NULL, "end" INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
"""


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, with where it came from.

    ``source`` is the file path relative to the ingested folder (POSIX
    separators); ``doc_id`` its stem, which evaluation datasets use as gold
    ids; ``start``/``end`` the character span in the loaded text of the file
    (of the page, for a PDF).
    """

    id: int
    text: str
    source: str
    doc_id: str
    ordinal: int = 0
    page: int | None = None
    heading: str | None = None
    start: int = 0
    end: int = 0

    @property
    def location(self) -> str:
        """``file.pdf p. 3`` / ``notes.md § Setup``: how a person finds it again."""
        where = self.source
        if self.page is not None:
            where += f" p. {self.page}"
        if self.heading:
            where += f" § {self.heading}"
        return where


def chunk_id(source: str, text: str, start: int, chunking: dict[str, Any]) -> int:
    """Content-hash id: same file, text, position and chunking settings -> same id.

    Returns a positive int63, because FAISS ids and SQLite keys are int64.
    """
    key = json.dumps([source, start, text, chunking], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1


@dataclass
class Manifest:
    """How an index was made; read before anything else is opened."""

    embedding_model: str
    dim: int
    chunking: dict[str, Any]
    source_dir: str | None = None
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    updated: str = ""
    generation: int = 0
    documents: int = 0
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError) as err:
            raise IndexCorruptError(f"cannot read {path}: {err}; rebuild with: rag ingest DIR --rebuild") from None

    def write(self, path: Path) -> None:
        write_durably(path, json.dumps(dataclasses.asdict(self), indent=2).encode("utf-8"))


@dataclass(frozen=True)
class FileRecord:
    source: str
    sha256: str
    size: int
    n_chunks: int
    ingested_at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_synced(path: Path, data: bytes, mode: str) -> None:
    with open(path, mode) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_durably(path: Path, data: bytes, *, unique_tmp: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a reader or a crash sees the old file or the new one, never a mix.

    The bytes go to a temp file beside ``path``, are fsynced, then renamed
    over it; a write that fails (a full disk) leaves no temp file behind.

    Args:
        path: the file to write.
        data: its new contents.
        unique_tmp: a temp name of its own (pid and random) for a file that
            several processes may write unlocked; by default ``<path>.tmp``,
            right for files only the lock holder writes.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp" if unique_tmp else path.name + ".tmp")
    try:
        _write_synced(tmp, data, "xb" if unique_tmp else "wb")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def create_durably(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, fsynced, only if nothing has that name yet.

    Why exclusive: a check for a free name followed by a write leaves a gap in
    which another process's file of that name is overwritten. The file gets
    the mode new files get (0o666 less the umask). A write that fails removes
    the half-written file again (the name was ours) and raises.

    Returns:
        True when written; False when the name was taken (nothing changed).
    """
    try:
        _write_synced(path, data, "xb")
    except FileExistsError:
        return False
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return True


def _is_disk_full(err: BaseException) -> bool:
    """ENOSPC/EDQUOT as an OSError, or as the text SQLite and FAISS put in their own exceptions."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err).lower()
    return any(s in text for s in ("disk is full", "no space left", "quota exceeded"))


def _is_denied(err: BaseException) -> bool:
    """EACCES/EPERM as an OSError, or as the text SQLite ("readonly database") and FAISS (fopen) put in theirs."""
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM):
        return True
    text = str(err).lower()
    return any(s in text for s in ("permission denied", "operation not permitted", "readonly database"))


def _free_space(path: Path) -> str:
    """``", 3.2 MB free"``, or nothing when the file system cannot say."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return ""
    return f", {free / 1e9:.1f} GB free" if free >= 1e9 else f", {free / 1e6:.1f} MB free"


def _write_failure(index_dir: Path, err: BaseException) -> IndexWriteError:
    """One line for a failed write: what failed, where, the fix, and that the live index is untouched.

    A full disk names the free space; a permission error names the index
    directory as not writable (checking the disk would not help).

    Why here: the writer only stages into a new generation, so whatever failed,
    the generation ``CURRENT`` names is still complete and served.
    """
    free = _free_space(index_dir)
    if _is_disk_full(err):
        what, fix = f"the disk is full at {index_dir}{free}", "free some space and run again"
    elif _is_denied(err):  # the disk is fine; the user must point --index elsewhere (as ingest said before)
        what, fix = f"the index directory {index_dir} is not writable", "choose a writable --index"
    else:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().split("\n")[0][:160]
        what = f"writing the index at {index_dir} failed ({reason or type(err).__name__}{free})"
        fix = "check the disk and run again"
    kept = "the previous index is still served" if index_exists(index_dir) else "no index was written"
    return IndexWriteError(f"{what}; {kept}; {fix}")


def _fsync_tree(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _live_generation(index_dir: Path) -> Path | None:
    current = index_dir / "CURRENT"
    if not current.is_file():
        return None
    gen = index_dir / current.read_text(encoding="utf-8").strip()
    return gen if gen.is_dir() else None


def index_exists(index_dir: str | Path) -> bool:
    return _live_generation(Path(index_dir)) is not None


def check_embedding_model(where: str, manifest: Manifest, embedding_model: str | None) -> None:
    """The one check (and line) for a store built with another embedding model; every backend calls it.

    Raises:
        EmbeddingMismatchError: ``embedding_model`` is set and is not the manifest's.
    """
    if embedding_model is not None and embedding_model != manifest.embedding_model:
        raise EmbeddingMismatchError(
            f"{where} was built with embedding model {manifest.embedding_model!r} but "
            f"{embedding_model!r} is configured; set embedding_model = {manifest.embedding_model!r} "
            f"or rebuild with: rag ingest DIR --rebuild"
        )


class IndexStore:
    """A read-only snapshot of one generation of an index.

    Example::

        store = IndexStore.open(".rag/index", embedding_model="sentence-transformers/all-MiniLM-L6-v2")
        scores, ids = store.search(query_vectors, k=4)   # (n, 4) each
        chunks = store.get_chunks(ids[0])
    """

    def __init__(self, index_dir: Path, gen_dir: Path, manifest: Manifest) -> None:
        self.index_dir = index_dir
        self.gen_dir = gen_dir
        self.manifest = manifest
        self._db = sqlite3.connect(f"file:{gen_dir / 'chunks.sqlite'}?mode=ro", uri=True, check_same_thread=False)
        self._faiss: faiss.Index | None = None
        self._bm25: tuple[Any, np.ndarray] | None = None

    @classmethod
    def open(cls, index_dir: str | Path, embedding_model: str | None = None) -> IndexStore:
        """Open the live generation.

        Args:
            index_dir: the index directory.
            embedding_model: the configured embedding model; must match the manifest.

        Raises:
            IndexNotFoundError: no index there yet.
            EmbeddingMismatchError: built with another embedding model.
            IndexCorruptError: files missing or unreadable.
        """
        index_dir = Path(index_dir)
        gen = _live_generation(index_dir)
        if gen is None:
            raise IndexNotFoundError(f"no index at {index_dir}; build one with: rag ingest DIR --index {index_dir}")
        manifest = Manifest.read(gen / "manifest.json")
        if manifest.schema_version != SCHEMA_VERSION:
            raise IndexCorruptError(
                f"index {index_dir} has schema version {manifest.schema_version}, this rag_app reads "
                f"{SCHEMA_VERSION}; rebuild it with: rag ingest DIR --rebuild"
            )
        check_embedding_model(f"index {index_dir}", manifest, embedding_model)
        for name in ("chunks.sqlite", "vectors.faiss"):
            if not (gen / name).is_file():
                raise IndexCorruptError(f"index {index_dir} lacks {gen.name}/{name}; rebuild with: rag ingest DIR --rebuild")
        return cls(index_dir, gen, manifest)

    def is_stale(self) -> bool:
        """True once a writer has committed a newer generation than this snapshot."""
        return _live_generation(self.index_dir) != self.gen_dir

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    @property
    def faiss_index(self) -> faiss.Index:
        if self._faiss is None:
            import faiss

            self._faiss = faiss.read_index(str(self.gen_dir / "vectors.faiss"))
        return self._faiss

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product search (cosine, as vectors are unit norm).

        Args:
            vectors: (n, dim) float32 queries.
            k: results per query.

        Returns:
            scores (n, k) float32 and chunk ids (n, k) int64; -1 pads when the index has fewer than k.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.manifest.dim)
        if self.faiss_index.ntotal == 0:
            n = vectors.shape[0]
            return np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
        return self.faiss_index.search(vectors, k)

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors of ``ids`` as (len(ids), dim) float32 (for MMR)."""
        index = self.faiss_index
        return np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.manifest.dim), np.float32)

    def get_chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """Chunks in the order of ``ids``; unknown ids (and -1 padding) are dropped."""
        wanted = [int(i) for i in ids if int(i) >= 0]
        if not wanted:
            return []
        rows = self._db.execute(
            f"SELECT id, text, source, doc_id, ordinal, page, heading, start, \"end\" FROM chunks "
            f"WHERE id IN ({','.join('?' * len(wanted))})",
            wanted,
        ).fetchall()
        by_id = {r[0]: Chunk(*r) for r in rows}
        return [by_id[i] for i in wanted if i in by_id]

    def iter_chunks(self, source: str | None = None, doc_id: str | None = None) -> Iterator[Chunk]:
        """All chunks (or one file's, or one doc id's), in file then position order."""
        sql = 'SELECT id, text, source, doc_id, ordinal, page, heading, start, "end" FROM chunks'
        args: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            args = (source,)
        elif doc_id is not None:
            sql += " WHERE doc_id = ?"
            args = (doc_id,)
        for row in self._db.execute(sql + " ORDER BY source, ordinal", args):
            yield Chunk(*row)

    def files(self) -> dict[str, FileRecord]:
        rows = self._db.execute("SELECT source, sha256, size, n_chunks, ingested_at FROM files").fetchall()
        return {r[0]: FileRecord(*r) for r in rows}

    def doc_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT DISTINCT doc_id FROM chunks")}

    def bm25(self) -> tuple[Any, np.ndarray]:
        """The bm25s index and the chunk id of each of its documents (built at ingest)."""
        if self._bm25 is None:
            import bm25s

            folder = self.gen_dir / "bm25"
            if not (folder / "ids.npy").is_file():
                raise IndexCorruptError(f"index {self.index_dir} has no BM25 index; rebuild with: rag ingest DIR --rebuild")
            ids = np.load(folder / "ids.npy", allow_pickle=False)
            retriever = bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False) if len(ids) else None
            self._bm25 = (retriever, ids)
        return self._bm25

    def search_text(self, query: str, k: int) -> list[tuple[int, float]]:
        """BM25 over the chunk texts: up to ``k`` (chunk id, score) best first, score > 0 only."""
        engine, ids = self.bm25()
        if engine is None or not len(ids) or k < 1:
            return []
        tokens = bm25_tokenize([query])
        if hasattr(tokens, "vocab"):  # Tokenized with its own vocab: hand bm25s the strings
            inv = {v: t for t, v in tokens.vocab.items()}
            tokens = [[inv[t] for t in tokens.ids[0]]]
        docs, scores = engine.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
        return [(int(ids[d]), float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.gen_dir.rglob("*") if p.is_file())

    def info(self) -> dict[str, Any]:
        """What ``rag index-info`` prints."""
        m = self.manifest
        return {
            "index": str(self.index_dir),
            "documents": m.documents,
            "chunks": m.chunks,
            "embedding_model": m.embedding_model,
            "dim": m.dim,
            "chunking": m.chunking,
            "source_dir": m.source_dir,
            "size_mb": round(self.size_bytes() / 1e6, 2),
            "created": m.created,
            "updated": m.updated,
            "generation": m.generation,
        }


def bm25_tokenize(texts: Sequence[str]) -> Any:
    """The one tokenizer for BM25, used at index and query time alike."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG on import
    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    except ImportError:  # PyStemmer is a dependency, but keep BM25 working without it
        stemmer = None
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, show_progress=False)


def _note_holder(lock_fh: Any) -> None:
    """Write our pid into the held lock file, so a refused writer can name us."""
    with contextlib.suppress(OSError):
        lock_fh.truncate(0)
        lock_fh.write(f"{os.getpid()}\n")
        lock_fh.flush()


def _lock_holder(lock_fh: Any) -> int | None:
    """The pid the lock's holder wrote, if it wrote one."""
    with contextlib.suppress(OSError, ValueError):
        lock_fh.seek(0)
        return int(lock_fh.read().strip())
    return None


def _locked(index_dir: Path, holder: int | None) -> IndexLockedError:
    who = f" (pid {holder})" if holder else ""
    return IndexLockedError(
        f"another process is writing to the index at {index_dir}{who}; wait for it to finish (or stop it) and run again")


def check_unlocked(index_dir: str | Path) -> None:
    """Refuse at once when another writer holds the index's lock.

    Why: ingest loads the embedding model (long) before it takes the lock to
    write; asking first turns a refusal after a minute into one at once. The
    writer's own flock still decides: one that starts after this check is
    refused when it is taken.

    Raises:
        IndexLockedError: naming the holder's pid when it wrote one.
    """
    lock = Path(index_dir) / ".lock"
    try:
        fh = open(lock, "r")
    except OSError:  # no lock file yet: nobody has written here
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(Path(index_dir), _lock_holder(fh)) from None
        fcntl.flock(fh, fcntl.LOCK_UN)


class IndexWriter:
    """The single writer of an index: stage changes in a new generation, then commit.

    Use as a context manager; leaving the block without :meth:`commit` (an
    exception, Ctrl-C) discards the staged generation and the live index is
    untouched::

        with IndexWriter(".rag/index", manifest) as w:
            w.remove_file("old.txt")
            w.add_file("new.txt", sha, size, chunks, vectors)
            w.commit()

    Raises:
        IndexLockedError: another writer holds the lock.
        EmbeddingMismatchError: the live index used another embedding model.
        IndexWriteError: staging, adding or committing failed to write (a full disk).
    """

    def __init__(self, index_dir: str | Path, manifest: Manifest, rebuild: bool = False) -> None:
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.rebuild = rebuild
        self._lock_fh: Any = None
        self._gen: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._index: Any = None
        self.committed = False

    def __enter__(self) -> IndexWriter:
        import faiss

        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fh = open(self.index_dir / ".lock", "a+")
        except OSError as err:
            raise IndexLockedError(f"cannot write the index at {self.index_dir}: {err.strerror}; choose a writable --index") from None
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(self._lock_fh)
            self._lock_fh.close()
            raise _locked(self.index_dir, holder) from None
        _note_holder(self._lock_fh)
        try:
            with self._writing():
                self._stage()
        except BaseException:
            self._release()
            raise
        return self

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write (a full disk, an I/O error) into one :class:`IndexWriteError` line."""
        try:
            yield
        except (sqlite3.OperationalError, OSError) as err:
            raise _write_failure(self.index_dir, err) from None

    def _stage(self) -> None:
        import faiss

        live = _live_generation(self.index_dir)
        self._clean_stale(keep={live.name} if live else set())
        prev = Manifest.read(live / "manifest.json") if live else None
        if prev is not None and not self.rebuild and prev.embedding_model != self.manifest.embedding_model:
            raise EmbeddingMismatchError(
                f"index {self.index_dir} was built with embedding model {prev.embedding_model!r}, not "
                f"{self.manifest.embedding_model!r}; use the same model or pass --rebuild"
            )
        number = (prev.generation if prev else 0) + 1
        self._gen = self.index_dir / f"gen-{number:06d}"
        if self._gen.exists():
            shutil.rmtree(self._gen)
        self._gen.mkdir()
        self.manifest.generation = number
        self.manifest.created = prev.created if (prev and not self.rebuild) else _now()
        self._db = sqlite3.connect(self._gen / "chunks.sqlite")
        if live is not None and not self.rebuild:
            src = sqlite3.connect(f"file:{live / 'chunks.sqlite'}?mode=ro", uri=True)
            src.backup(self._db)
            src.close()
            self._index = faiss.read_index(str(live / "vectors.faiss"))
        else:
            self._db.executescript(_SCHEMA)
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.manifest.dim))

    def _clean_stale(self, keep: set[str]) -> None:
        """Drop generations a crashed writer left behind, keeping the live one and its predecessor."""
        gens = sorted(p for p in self.index_dir.glob("gen-*") if p.is_dir())
        live = [g for g in gens if g.name in keep]
        keep_names = set(keep)
        if live:
            older = [g for g in gens if g.name < live[0].name]
            if older:
                keep_names.add(older[-1].name)
        for g in gens:
            if g.name not in keep_names:
                shutil.rmtree(g, ignore_errors=True)

    def files(self) -> dict[str, FileRecord]:
        assert self._db is not None
        rows = self._db.execute("SELECT source, sha256, size, n_chunks, ingested_at FROM files").fetchall()
        return {r[0]: FileRecord(*r) for r in rows}

    def remove_file(self, source: str) -> int:
        """Drop a file and its chunks; returns how many chunks went."""
        assert self._db is not None
        with self._writing():
            ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE source = ?", (source,))]
            if ids:
                self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._db.execute("DELETE FROM chunks WHERE source = ?", (source,))
            self._db.execute("DELETE FROM files WHERE source = ?", (source,))
        return len(ids)

    def add_file(self, source: str, sha256: str, size: int, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Replace ``source``'s chunks with ``chunks`` and their (n, dim) unit vectors."""
        assert self._db is not None
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        self.remove_file(source)
        ids = np.asarray([c.id for c in chunks], dtype=np.int64)
        if len(set(ids.tolist())) != len(ids):
            raise ValueError(f"duplicate chunk ids in {source}")
        if len(chunks):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        with self._writing():  # SQLite spills a large transaction to disk: "database or disk is full"
            self._db.executemany(
                'INSERT OR REPLACE INTO chunks (id, source, doc_id, ordinal, text, page, heading, start, "end") '
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(c.id, c.source, c.doc_id, c.ordinal, c.text, c.page, c.heading, c.start, c.end) for c in chunks],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO files (source, sha256, size, n_chunks, ingested_at) VALUES (?,?,?,?,?)",
                (source, sha256, size, len(chunks), _now()),
            )

    def _build_bm25(self) -> None:
        import bm25s

        assert self._db is not None and self._gen is not None
        folder = self._gen / "bm25"
        folder.mkdir()
        rows = self._db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        if rows:
            retriever = bm25s.BM25()
            retriever.index(bm25_tokenize([r[1] for r in rows]), show_progress=False)
            retriever.save(str(folder))
        np.save(folder / "ids.npy", ids, allow_pickle=False)

    def commit(self) -> Manifest:
        """Write everything, fsync, then atomically make this generation live.

        Raises:
            IndexWriteError: a write failed (a full disk); the previous generation stays live.
        """
        assert self._db is not None and self._gen is not None
        with self._writing():
            self._write_generation()
            write_durably(self.index_dir / "CURRENT", self._gen.name.encode("utf-8"))
        self.committed = True  # CURRENT names it now: never delete it on the way out
        dir_fd = os.open(self.index_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._clean_stale(keep={self._gen.name})
        return self.manifest

    def _write_generation(self) -> None:
        """Everything of the staged generation on disk and fsynced; nothing live is touched yet."""
        import faiss

        assert self._db is not None and self._gen is not None
        self._db.commit()
        self.manifest.documents = self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        self.manifest.chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        if self._index.ntotal != self.manifest.chunks:
            raise IndexCorruptError(
                f"staged index has {self._index.ntotal} vectors for {self.manifest.chunks} chunks; nothing was committed"
            )
        try:
            faiss.write_index(self._index, str(self._gen / "vectors.faiss"))
        except RuntimeError as err:  # faiss reports a failed fopen/fwrite (a full disk) as RuntimeError
            raise _write_failure(self.index_dir, err) from None
        self._build_bm25()  # reads the chunk texts, so before the connection closes
        self._db.close()
        self._db = None
        self.manifest.updated = _now()
        self.manifest.write(self._gen / "manifest.json")
        _fsync_tree(self._gen)

    def _release(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if not self.committed and self._gen is not None and self._gen.exists():
            shutil.rmtree(self._gen, ignore_errors=True)
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):  # the pid is only a hint: the flock is the lock
                self._lock_fh.truncate(0)
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def __exit__(self, *exc: object) -> None:
        self._release()

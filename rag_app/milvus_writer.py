"""The one writer of a Milvus store: stage a generation collection, then move the alias.

See :mod:`rag_app.milvus_store` for what "atomic" means on the server and
how the lock works; this module is the code that makes it so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_app.errors import EmbeddingMismatchError, IndexCorruptError, IndexLockedError
from rag_app.milvus_store import (
    _ANALYZER,
    _BATCH,
    _CHUNK_FIELDS,
    _TEXT_MAX,
    LOCK_TTL_S,
    _calls,
    _live_collection,
    _quote,
    _read_meta,
    _scan,
    _where,
    connect,
)
from rag_app.store import Chunk, FileRecord, Manifest, _now

if TYPE_CHECKING:
    from rag_app.config import StoreConfig

log = logging.getLogger(__name__)

_HEARTBEAT_S = 30.0


def _chunk_schema(client: Any, dim: int, index: str) -> tuple[Any, Any]:
    """Schema + index params of a generation's chunks: dense vector (``store.index``, inner product), BM25 on the text."""
    from pymilvus import DataType, Function, FunctionType

    s = client.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    s.add_field("text", DataType.VARCHAR, max_length=_TEXT_MAX, enable_analyzer=True, analyzer_params=_ANALYZER)
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    for name in ("source", "doc_id"):
        s.add_field(name, DataType.VARCHAR, max_length=4096)
    s.add_field("heading", DataType.VARCHAR, max_length=4096, nullable=True)
    s.add_field("page", DataType.INT64, nullable=True)
    for name in ("ordinal", "start", "end"):
        s.add_field(name, DataType.INT64)
    s.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                            output_field_names=["sparse"]))
    ip = client.prepare_index_params()
    params = {"M": 16, "efConstruction": 200} if index == "HNSW" else {}
    ip.add_index(field_name="vector", index_type=index, metric_type="IP", params=params)
    ip.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    ip.add_index(field_name="source", index_type="INVERTED")  # deletes are by source
    return s, ip


def _kv_schema(client: Any) -> tuple[Any, Any]:
    """Schema of a key -> JSON collection (a generation's meta, the lock); Milvus wants a vector field in each."""
    from pymilvus import DataType

    s = client.create_schema(auto_id=False)
    s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=8192)
    s.add_field("value", DataType.VARCHAR, max_length=_TEXT_MAX)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    ip = client.prepare_index_params()
    ip.add_index(field_name="v", index_type="FLAT", metric_type="L2")
    return s, ip


def _kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": json.dumps(value, ensure_ascii=False), "v": [1.0, 0.0]}


class MilvusWriter:
    """Stage changes in a new generation collection; :meth:`commit` makes it live.

    Same use as :class:`~rag_app.store.IndexWriter`; leaving the block without
    a commit drops the staged collections and the live generation is untouched.

    Raises:
        IndexLockedError: another writer holds the store's lock.
        EmbeddingMismatchError: the live generation used another embedding model (and not ``rebuild``).
        StoreUnreachableError: the server does not answer.
    """

    def __init__(self, cfg: StoreConfig, manifest: Manifest, rebuild: bool = False) -> None:
        self.cfg, self.manifest, self.rebuild = cfg, manifest, rebuild
        self.alias = cfg.collection
        self.client: Any = None
        self.gen: str | None = None
        self.live: str | None = None
        self._files: dict[str, FileRecord] = {}
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._locked = False
        self._beat = 0.0
        self.committed = False

    # -- lock ---------------------------------------------------------------------------------------------------

    @property
    def _lock_name(self) -> str:
        return f"{self.alias}_lock"

    def _create_lock(self) -> bool:
        from pymilvus.exceptions import MilvusException

        if self.client.has_collection(self._lock_name):
            return False
        schema, ip = _kv_schema(self.client)
        try:  # the server refuses a second collection of one name: this is the test-and-set
            self.client.create_collection(self._lock_name, schema=schema, index_params=ip, consistency_level="Strong")
        except MilvusException as err:
            if "exist" in str(err).lower():
                return False
            raise
        self._locked = True
        self._heartbeat(force=True)
        return True

    def _holder(self) -> dict[str, Any] | None:
        rows = self.client.query(self._lock_name, ids=["lock"], output_fields=["value"])
        return json.loads(rows[0]["value"]) if rows else None

    def _heartbeat(self, force: bool = False) -> None:
        if force or time.monotonic() - self._beat > _HEARTBEAT_S:
            self.client.upsert(self._lock_name, [_kv("lock", {"owner": self._owner, "ts": time.time()})])
            self._beat = time.monotonic()

    def _acquire(self) -> None:
        for _ in range(2):
            if self._create_lock():
                return
            holder = self._holder()
            if holder is None:  # a writer between creating the lock and writing its owner row
                time.sleep(1.0)
                holder = self._holder()
            if not _is_dead(holder):
                break
            log.warning("taking over the lock of %s, left by a writer that died (%s)", _where(self.cfg), holder)
            self.client.drop_collection(self._lock_name)
        who = f" ({holder['owner'].rsplit(':', 1)[0]})" if holder else ""
        raise IndexLockedError(
            f"another process{who} is writing to {_where(self.cfg)}; wait for it to finish and run again"
        )

    # -- staging ------------------------------------------------------------------------------------------------

    def __enter__(self) -> MilvusWriter:
        self.client = connect(self.cfg)
        try:
            with _calls(self.cfg):
                self._acquire()
                self._stage()
        except BaseException:
            self._release()
            raise
        return self

    def _stage(self) -> None:
        self.live = _live_collection(self.client, self.alias)
        prev, files = _read_meta(self.client, f"{self.live}_meta") if self.live else (None, {})
        if prev is not None and not self.rebuild and prev.embedding_model != self.manifest.embedding_model:
            raise EmbeddingMismatchError(
                f"{_where(self.cfg)} was built with embedding model {prev.embedding_model!r}, not "
                f"{self.manifest.embedding_model!r}; use the same model or pass --rebuild"
            )
        self._drop_stale(keep={self.live} if self.live else set())
        number = (prev.generation if prev else 0) + 1
        self.gen = f"{self.alias}_g{number:06d}"
        for name in (self.gen, f"{self.gen}_meta"):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
        schema, ip = _chunk_schema(self.client, self.manifest.dim, self.cfg.index)
        self.client.create_collection(self.gen, schema=schema, index_params=ip, consistency_level="Strong")
        self.manifest.generation = number
        self.manifest.created = prev.created if (prev and not self.rebuild) else _now()
        if self.live and not self.rebuild:  # copy-on-write: the vectors travel, nothing is re-embedded
            self._files = dict(files)
            rows: list[dict[str, Any]] = []
            for row in _scan(self.client, self.live, "id >= 0", [*_CHUNK_FIELDS, "vector"]):
                rows.append(row)
                if len(rows) >= _BATCH:
                    self._insert(rows)
            self._insert(rows)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.client.insert(self.gen, rows)
            rows.clear()

    def _generations(self) -> dict[str, int]:
        pattern = re.compile(rf"{re.escape(self.alias)}_g(\d+)(_meta)?")
        return {c: int(m.group(1)) for c in self.client.list_collections() if (m := pattern.fullmatch(c))}

    def _drop_stale(self, keep: set[str]) -> None:
        """Drop generations a dead writer staged, and old ones: keep ``keep`` and the one before the newest kept."""
        gens = self._generations()
        kept = {gens[k] for k in keep if k in gens}
        if kept:
            older = [n for n in gens.values() if n < min(kept)]
            kept |= {max(older)} if older else set()
        for name, n in gens.items():
            if n not in kept:
                self.client.drop_collection(name)

    def files(self) -> dict[str, FileRecord]:
        return dict(self._files)

    def remove_file(self, source: str) -> int:
        """Drop a file and its chunks; returns how many chunks went."""
        record = self._files.pop(source, None)
        if record is not None and record.n_chunks:
            with _calls(self.cfg):
                self.client.delete(self.gen, filter=f"source == {_quote(source)}")
        return record.n_chunks if record else 0

    def add_file(self, source: str, sha256: str, size: int, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Replace ``source``'s chunks with ``chunks`` and their (n, dim) unit vectors."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if len({c.id for c in chunks}) != len(chunks):
            raise ValueError(f"duplicate chunk ids in {source}")
        self.remove_file(source)
        vectors = np.asarray(vectors, dtype=np.float32)
        with _calls(self.cfg):
            for b in range(0, len(chunks), _BATCH):
                self.client.insert(self.gen, [{**asdict(c), "vector": v.tolist()}
                                              for c, v in zip(chunks[b : b + _BATCH], vectors[b : b + _BATCH])])
            self._heartbeat()
        self._files[source] = FileRecord(source, sha256, size, len(chunks), _now())

    def commit(self) -> Manifest:
        """Write the manifest and file hashes, check the count, then move the alias to this generation."""
        assert self.gen is not None
        m = self.manifest
        m.documents, m.chunks, m.updated = len(self._files), sum(f.n_chunks for f in self._files.values()), _now()
        meta = f"{self.gen}_meta"
        with _calls(self.cfg):
            schema, ip = _kv_schema(self.client)
            self.client.create_collection(meta, schema=schema, index_params=ip, consistency_level="Strong")
            rows = [_kv("manifest", asdict(m))] + [_kv(f"file:{s}", asdict(f)) for s, f in sorted(self._files.items())]
            for b in range(0, len(rows), _BATCH):
                self.client.insert(meta, rows[b : b + _BATCH])
            self.client.flush(self.gen)
            self.client.flush(meta)
            staged = self.client.query(self.gen, filter="", output_fields=["count(*)"])[0]["count(*)"]
            if staged != m.chunks:
                raise IndexCorruptError(f"staged {self.gen} has {staged} chunks, its files {m.chunks}; nothing was committed")
            if self.live:
                self.client.alter_alias(self.gen, self.alias)
            else:
                self.client.create_alias(self.gen, self.alias)
            self.committed = True
            self._drop_stale(keep={self.gen})
        return m

    def _release(self) -> None:
        if self.client is None:
            return
        try:
            if not self.committed and self.gen is not None and self._locked:
                for name in (self.gen, f"{self.gen}_meta"):
                    if self.client.has_collection(name):
                        self.client.drop_collection(name)
            if self._locked and (self._holder() or {}).get("owner") == self._owner:
                self.client.drop_collection(self._lock_name)
        except Exception as err:  # the server went away: the next writer cleans up after us
            log.warning("could not clean up %s: %s", _where(self.cfg), err)
        finally:
            self._locked = False
            self.client.close()
            self.client = None

    def __exit__(self, *exc: object) -> None:
        self._release()


def _is_dead(holder: dict[str, Any] | None) -> bool:
    """A lock without an owner row, whose owner is a gone pid on this host, or silent past :data:`LOCK_TTL_S`."""
    if holder is None:
        return True
    host, pid, _ = holder["owner"].rsplit(":", 2)
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
    return time.time() - float(holder["ts"]) > LOCK_TTL_S

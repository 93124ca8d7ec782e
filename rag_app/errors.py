"""User-facing errors.

Every mistake a user can make (a missing folder, an index built with another
embedding model, an adapter for another base model, an empty question) is
raised as a :class:`RagError` subclass whose message is one line that says what
is wrong and how to fix it. The CLI prints ``Error: <message>`` and exits 2;
the UI shows the message in the page. Tracebacks are kept for real bugs.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(RagError):
    """A setting has a bad value or an incompatible combination."""


class IndexNotFoundError(RagError):
    """No index exists at the given path."""


class IndexLockedError(RagError):
    """Another process is writing to the index."""


class IndexCorruptError(RagError):
    """The index files cannot be read as written."""


class EmbeddingMismatchError(RagError):
    """The index was built with another embedding model than the one configured."""


class IngestError(RagError):
    """The folder cannot be ingested at all (missing, empty, nothing ingestible)."""


class IndexWriteError(IngestError):
    """Writing a new index generation failed (a full disk, an I/O error); the previous one is still live."""


class LoaderError(RagError):
    """One file cannot be read; ingest reports it and skips the file."""


class ModelNotFoundError(RagError):
    """The generator, embedder or reranker cannot be found offline."""


class AdapterMismatchError(RagError):
    """A LoRA adapter was trained for another base model."""


class AdapterError(RagError):
    """A LoRA adapter folder is damaged (unreadable config, empty or truncated weights)."""


class GeneratorServerError(RagError):
    """The generator's server (``generate.backend = "openai"``) is unreachable or did not answer a completion."""


class ContextWindowError(ConfigError):
    """The prompt leaves no room for the answer in the generator's context window."""


class EmptyQuestionError(RagError):
    """The question is empty or only whitespace."""


class DatasetError(RagError):
    """An evaluation or training dataset is malformed."""


class StoreUnreachableError(RagError):
    """The vector store server (store.uri) does not answer."""

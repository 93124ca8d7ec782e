"""rag_app: chat with your own documents, offline.

The core package every front door (CLI, UI) shares. Heavy libraries (torch,
transformers, faiss, sentence-transformers) are imported lazily inside the
functions that use them, so ``import rag_app`` and ``rag --help`` stay instant.
"""

__version__ = "0.1.0"

"""Folder -> index: load files, chunk them, embed the chunks, write the store.

``load`` (:mod:`ingest.loaders`) turns one file into :class:`~ingest.loaders.Section`
objects, ``chunk`` (:mod:`ingest.chunking`) cuts sections into
:class:`~rag_app.store.Chunk` objects with exact character spans, and
``ingest_folder`` (:mod:`ingest.pipeline`) does it incrementally for a folder.
"""

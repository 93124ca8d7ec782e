"""Small builders shared by tests (importable: tests/ is on sys.path through its conftest)."""

from __future__ import annotations

from rag_app.store import Chunk, IndexStore, IndexWriter, Manifest, chunk_id


def build_index(path, embedder, docs: dict[str, list[str]]) -> IndexStore:
    """An index at ``path`` with one file per doc id, one chunk per text; returns it opened."""
    manifest = Manifest(embedding_model=embedder.model_name, dim=embedder.dim, chunking={"chunk_size": 100})
    with IndexWriter(path, manifest) as writer:
        for doc_id, texts in docs.items():
            chunks = [Chunk(chunk_id(f"{doc_id}.txt", t, i, {}), t, f"{doc_id}.txt", doc_id, i, start=i) for i, t in enumerate(texts)]
            writer.add_file(f"{doc_id}.txt", doc_id, 1, chunks, embedder.embed_documents([c.text for c in chunks]))
        writer.commit()
    return IndexStore.open(path, embedding_model=embedder.model_name)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real console entry point (``rag = rag_app.cli:main``), which maps RagError to exit 2."""
    import sys

    import pytest

    from rag_app.cli import main

    monkeypatch.setattr(sys, "argv", ["rag", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err

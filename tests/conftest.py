"""Shared test fakes: a deterministic embedder and a canned generator.

They implement the same Protocols as the real models
(:class:`rag_app.embeddings.Embedder`, :class:`rag_app.generation.Generator`), so
any test can build the store, retriever, pipeline or UI without loading
weights. Both are deterministic: the same text always gives the same vector,
the same call the same reply.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

_WORD = re.compile(r"\w+")


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """The CLI configures the root logger (``--verbose``: INFO to stderr); undo it so no test sees another's."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


class FakeEmbedder:
    """Bag of hashed words, unit norm: texts sharing words get a high cosine.

    Each lower-cased word adds 1 to the coordinate its blake2b hash picks
    (``dim`` = 64), then the vector is normalised. Good enough for retrieval
    tests: a question ranks first the chunk that shares most of its words.
    """

    model_name = "fake-embedder"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0  # embed_documents calls, to check that unchanged files are not re-embedded

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, np.float32)
        for word in _WORD.findall(text.lower()):
            slot = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=4).digest(), "big") % self.dim
            vec[slot] += 1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:  # empty text: still a unit vector, as the protocol promises
            vec[0] = 1.0
            return vec
        return vec / norm

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.calls += 1
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


class FakeGenerator:
    """Canned reply, streamed word by word; records the messages it was given.

    Args:
        reply: what every call answers (default cites source 1).
    """

    name = "fake-generator"
    context_window = 2048

    def __init__(self, reply: str = "Paris is the capital of France [1].", adapter: str | None = None) -> None:
        self.reply = reply
        self.adapter = adapter
        self.calls: list[list[dict[str, str]]] = []
        self.abstain_thresholds: list[float | None] = []

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def stream(
        self, messages: list[dict[str, str]], max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> Iterator[str]:
        self.calls.append(list(messages))
        self.abstain_thresholds.append(abstain_threshold)
        words = self.reply.split(" ")[:max_new_tokens]
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word

    def generate(
        self, messages: list[dict[str, str]], max_new_tokens: int, temperature: float = 0.0, top_p: float = 0.95,
        abstain_threshold: float | None = None,
    ) -> str:
        return "".join(self.stream(messages, max_new_tokens, temperature, top_p, abstain_threshold))


class CountingCrossEncoder:
    """Stands in for ``sentence_transformers.CrossEncoder``: records each construction, scores by shared words.

    The name ``missing`` fails to load, as a folder that is not there does.
    """

    made: list[str] = []

    def __init__(self, name: str, local_files_only: bool = False) -> None:
        if name == "missing":
            raise OSError("no such folder")
        CountingCrossEncoder.made.append(name)

    def predict(self, pairs: Sequence[tuple[str, str]], show_progress_bar: bool = False) -> np.ndarray:
        return np.array([len(set(_WORD.findall(q.lower())) & set(_WORD.findall(t.lower()))) for q, t in pairs],
                        np.float32)


def _forget_loaded_rerankers() -> None:
    """As if in a fresh process: the per-process reranker cache starts empty."""
    import rag_app.retriever

    cache = getattr(rag_app.retriever, "_cross_encoder", None)
    if cache is not None:
        cache.cache_clear()


@pytest.fixture
def cross_encoder(monkeypatch) -> type[CountingCrossEncoder]:
    """``CrossEncoder`` replaced by :class:`CountingCrossEncoder`, with no reranker loaded yet in this process."""
    import sentence_transformers

    CountingCrossEncoder.made = []
    monkeypatch.setattr(sentence_transformers, "CrossEncoder", CountingCrossEncoder)
    _forget_loaded_rerankers()
    yield CountingCrossEncoder
    _forget_loaded_rerankers()


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def fake_generator() -> FakeGenerator:
    return FakeGenerator()


def pdf_bytes(pages: Sequence[str]) -> bytes:
    """A minimal valid PDF with real text: one Helvetica line per ``\\n`` of each page, exact xref offsets.

    An empty string gives a page without text (what a scanned page looks like to a text extractor).
    """
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in text.split("\n") if text else []:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops)
        objects.append(f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream")
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>"
        )
        kids.append(len(objects))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture
def make_pdf():
    """``make_pdf(path, ["page one text", "", "page three"])`` writes a real text PDF and returns the path."""

    def make(path, pages: Sequence[str]):
        path.write_bytes(pdf_bytes(pages))
        return path

    return make


@pytest.fixture
def make_docx():
    """``make_docx(path, [("Title", "Report"), ("Heading 1", "Results"), ("", "a paragraph"), ("table", "a|b;c|d")])``."""

    def make(path, blocks: Sequence[tuple[str, str]]):
        import docx

        document = docx.Document()
        for style, text in blocks:
            if style == "table":
                rows = [r.split("|") for r in text.split(";")]
                table = document.add_table(rows=len(rows), cols=len(rows[0]))
                for i, row in enumerate(rows):
                    for j, cell in enumerate(row):
                        table.cell(i, j).text = cell
            elif style == "Title":
                document.add_heading(text, 0)
            elif style.startswith("Heading "):
                document.add_heading(text, int(style.split()[1]))
            else:
                document.add_paragraph(text)
        document.save(str(path))
        return path

    return make


# ---------------------------------------------------------------- tiny LLaMA models (mechanics tests)


@pytest.fixture(scope="session")
def model_cache_dir() -> "Path":
    """Where the bundled SmolLM2 checkpoint is converted (the user cache: converting costs ~20 s once)."""
    from pathlib import Path

    return Path.home() / ".cache" / "rag_app"


@pytest.fixture(scope="session")
def tiny_smollm(tmp_path_factory, model_cache_dir) -> "Path":
    """A 2-layer random Llama with the bundled SmolLM2 tokenizer, saved to a folder."""
    from tiny_models import save_tiny_smollm

    return save_tiny_smollm(tmp_path_factory.mktemp("tiny-smollm"), model_cache_dir)


@pytest.fixture(scope="session")
def tiny_llama32(tmp_path_factory) -> "Path":
    """A 2-layer random Llama shaped like Llama-3.2 (llama3 rope scaling, GQA, its template)."""
    from tiny_models import save_tiny_llama32

    return save_tiny_llama32(tmp_path_factory.mktemp("tiny-llama32"))

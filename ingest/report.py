"""What one ingest did, and the summary ``rag ingest`` prints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.text import Text

from rag_app.errors import RagError
from rag_app.store import IndexStore, Manifest, index_exists, write_durably

_SHOWN = 10  # skipped/failed files listed one by one in the summary; the rest are counted
REPORT_NAME = "last-ingest-report.txt"  # in the index directory, beside the generations the store manages


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def utf8_safe(text: str) -> str:
    """``text`` as valid UTF-8, for lists that are compared with the index's sources and stored.

    A file name that is not valid UTF-8 arrives from ``os.walk`` with its odd
    bytes as lone surrogates, which every UTF-8 encoder refuses; they become
    ``\\xff`` escapes. Anything else stays as the file system spells it, so a
    name matches its record in the index.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def printable(text: str) -> str:
    """``text`` safe to print and to write as one line: :func:`utf8_safe`, control characters escaped.

    Raw, a newline, CR or ESC in a name splits a report line in two or
    reaches the terminal as a command (ESC[2J clears the screen).
    """
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), utf8_safe(text))


@dataclass
class IngestReport:
    """What one ingest did; ``summary()`` is what ``rag ingest`` prints.

    ``skipped`` and ``failed`` hold ``(source, reason)`` pairs: skipped files
    were never candidates (unsupported type, no text, too big, a link out of
    the folder), failed ones could not be read (corrupt, binary, encrypted,
    permission denied; a folder that could not be listed ends in ``/``).
    Times are seconds of wall clock; ``chunks_per_s`` is over the whole run,
    model loading included.
    """

    folder: Path
    index: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    report_file: Path | None = None  # every skipped and failed file, when there are any (see write_file)
    chunks_embedded: int = 0
    total_chunks: int = 0
    documents: int = 0
    bytes_embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    read_seconds: float = 0.0  # loading + chunking files
    write_seconds: float = 0.0  # the commit: FAISS, BM25, fsync
    model_seconds: float = 0.0
    generation: int | None = None
    committed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_embedded / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> Text:
        """A multi-line rich ``Text`` (plain via ``.plain``); file names are never read as markup."""
        t = Text()
        if self.committed:
            folder = printable(str(self.folder))
            t.append(f"Indexed {folder} -> {self.index} (generation {self.generation})\n", style="bold")
        else:
            t.append("index is up to date", style="bold green")
            t.append(f": nothing embedded, {self.total_chunks} chunks from {self.documents} documents in {self.index}\n")
        t.append(
            f"files: {len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed, {len(self.skipped)} skipped, {len(self.failed)} failed\n"
        )
        if self.committed:
            t.append(f"chunks: {self.chunks_embedded} embedded, {self.total_chunks} in the index ({self.documents} documents)\n")
        t.append(f"time: {self.seconds:.1f} s")
        if self.chunks_embedded:
            t.append(
                f", {self.chunks_per_s:.1f} chunks/s, {_rate(self.bytes_embedded, self.seconds)} "
                f"(embedding {self.embed_seconds:.1f} s, model load {self.model_seconds:.1f} s)"
            )
        t.append("\n")
        for label, items, style in (("failed", self.failed, "red"), ("skipped", self.skipped, "yellow")):
            for source, reason in items[:_SHOWN]:
                t.append(f"{label}: {printable(source)}: {printable(reason)}\n", style=style)
            if len(items) > _SHOWN:
                t.append(f"{label}: ... and {len(items) - _SHOWN} more\n", style=style)
        if self.report_file is not None:
            t.append(f"all {len(self.failed)} failed and {len(self.skipped)} skipped, with reasons: {self.report_file}\n")
        for note in self.notes:
            t.append(f"note: {printable(note)}\n", style="dim")
        t.rstrip()
        return t

    def details(self) -> str:
        """Every failed and skipped file with its reason, one a line: what :meth:`write_file` writes."""
        lines = [f"rag ingest {printable(str(self.folder))} -> {printable(str(self.index))}",
                 f"{len(self.failed)} failed, {len(self.skipped)} skipped", ""]
        for label, items in (("failed", self.failed), ("skipped", self.skipped)):
            lines += [f"{label}: {printable(source)}: {printable(reason)}" for source, reason in items]
        return "\n".join(lines) + "\n"

    def write_file(self) -> None:
        """Write :meth:`details` to ``<index>/last-ingest-report.txt``: the summary lists ten and names the file.

        Written only when its text changed, so a run over an unchanged folder
        still writes nothing; removed once nothing failed or was skipped. It
        describes the last run, so it holds no times. A write that fails is a
        note, never an error: the index itself was written.

        Written to a temp file of its own (two runs at once, say a ``rag
        ingest`` and an upload, would otherwise write one ``.tmp`` together),
        fsynced, then renamed over the report: a reader or a crash sees the
        old report or the new one, never a mix or a truncated file.
        """
        path = self.index / REPORT_NAME
        text = self.details()
        try:
            if not (self.failed or self.skipped):
                path.unlink(missing_ok=True)
                return
            if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
                write_durably(path, text.encode("utf-8"), unique_tmp=True)
            self.report_file = path
        except OSError as err:
            self.notes.append(f"could not write the report {path}: {err.strerror or err}")

    def __str__(self) -> str:
        return self.summary().plain


def _rate(n_bytes: int, seconds: float) -> str:
    per_s = n_bytes / seconds if seconds > 0 else 0.0
    return f"{per_s / 1e6:.2f} MB/s" if per_s >= 1e5 else f"{per_s / 1e3:.1f} kB/s"


def live_manifest(index: Path) -> Manifest | None:
    """The manifest of the generation ``index`` serves now; None without a readable index."""
    if not index_exists(index):
        return None
    try:
        with IndexStore.open(index) as store:
            return store.manifest
    except RagError:
        return None


def kept_after_interrupt(index: Path, before: Manifest | None) -> str:
    """What an interrupted ingest left, for the one line ``rag ingest`` prints after Ctrl-C.

    Why it can say so: the store stages a whole run in a new generation and
    commits it with one rename at the end, so the index is either what it was
    (``before``) or, if the interrupt came after that rename, the new one.

    Args:
        index: the index directory.
        before: its live manifest when the run started (None: there was no index).
    """
    now = live_manifest(index)
    if now is None:
        return f"nothing was written; there is no index at {index} yet"
    if before is not None and now.generation == before.generation:
        when = datetime.fromisoformat(now.updated).astimezone().strftime("%Y-%m-%d %H:%M") if now.updated else "before"
        return f"nothing was written; the index at {index} still holds the {now.documents} files of {when}"
    return f"the run had finished writing: the index at {index} holds {now.documents} files (generation {now.generation})"

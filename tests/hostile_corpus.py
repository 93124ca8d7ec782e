"""A folder of hostile files beside good ones, built at run time (issue #23: ingest survives any folder).

``build_corpus(root)`` writes ``root/docs`` (the folder to ingest) and
``root/outside`` (what links out of it point at) and returns a
:class:`Corpus`: every entry it made with the outcome ingest must give it.

- ``indexed``: its ``fact`` must be in its chunks (the good files, and hostile
  ones that hold real text: Shift-JIS, UTF-16 without a BOM, 50,000 nested
  divs, a 1 MB single-line Markdown, a 5,000-column CSV, odd names);
- ``skipped`` / ``failed``: listed in ``report.skipped`` / ``report.failed``
  under ``source`` with a reason that matches the regex ``reason``;
- ``ignored``: by design in neither list nor the index (hidden files and
  folders; FIFOs, sockets, dangling links and link loops, which are not
  regular files; links to folders inside, which are never followed).

Three failures cannot be made for real as root (CI runs as root): their
sources are in ``Corpus.deny_hash`` (``ingest.walk.hash_file``),
``Corpus.deny_open`` (the loader's ``open``) and ``Corpus.deny_list`` (the
folder ``os.scandir`` refuses); the test raises ``PermissionError`` there.

Nothing binary is committed: every byte is written here (seeded, so the
corpus is the same on every run). Importable by a docs script as
``from hostile_corpus import build_corpus`` with ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import io
import os
import random
import socket
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OUTSIDE_SECRET = "root:x:0:0 OUTSIDE-SECRET-7f3a hunter2"  # text only files outside the folder hold
MAX_FILE_MB = 1  # the ingest.max_file_mb a run over this corpus must use (the sparse files are 2 MB)

# What a reason must say (regexes, matched from the start). Where the code tells the user what to do,
# the pattern includes it.
LINK_OUT = r"link to outside the folder$"
NUL = r"binary content \(NUL bytes\), not text$"
CONTROL = r"binary content \(control characters\), not text$"
ENCODING = r"encoding not recognised .*; save the file as UTF-8 to index it$"
NOT_PDF = r"not a PDF \(no %PDF header\); corrupt or misnamed file$"
CORRUPT_PDF = r"corrupt or unreadable PDF \(\w+: .*\)$"
NOT_DOCX = r"not a readable \.docx \(\w+: .*\)$"
NOT_PPTX = r"not a readable \.pptx \(\w+: .*\)$"
NO_TEXT = r"no text$"
TOO_BIG = r"2 MB, over ingest\.max_file_mb = 1; raise it in rag\.toml to index it$"
BAD_NAME = r"the file name is not valid UTF-8; rename the file to index it$"
DENIED = r"permission denied: cannot read$"
DENIED_DIR = r"permission denied: cannot list the folder$"
OPEN_QUOTE = (r"row \d+: a quoted cell never closes, so every row after it would be lost; "
              r'close or remove the stray " and ingest again$')
UNSUPPORTED = r"unsupported type \.\w+$"
SCANNED = (r"scanned, no text \(OCR not installed\): 1 page\(s\) without a text layer; "
           r"make a searchable copy \(ocrmypdf\) and ingest that$")
ENCRYPTED = r"encrypted: needs a password; save an unprotected copy \(or one with an empty password\) to index it$"


@dataclass(frozen=True)
class Entry:
    """One thing in the folder and what ingest must make of it."""

    source: str  # the path relative to the folder, as the report prints it (printable())
    outcome: str  # indexed | skipped | failed | ignored
    what: str  # what it is, for failure messages
    reason: str = ""  # regex a skipped/failed reason must match
    fact: str = ""  # a sentence an indexed entry's chunks must hold
    good: bool = False  # one of the ordinary documents


@dataclass
class Corpus:
    folder: Path
    outside: Path
    entries: list[Entry] = field(default_factory=list)
    deny_hash: set[str] = field(default_factory=set)  # relative paths whose hashing raises PermissionError
    deny_open: set[str] = field(default_factory=set)  # file names the loader's open() refuses
    deny_list: set[str] = field(default_factory=set)  # folder names os.scandir refuses

    @property
    def good(self) -> list[Entry]:
        return [e for e in self.entries if e.good]

    @property
    def hostile(self) -> list[Entry]:
        return [e for e in self.entries if not e.good]

    def outcome(self, outcome: str) -> list[Entry]:
        return [e for e in self.entries if e.outcome == outcome]


def build_corpus(
    root: Path,
    make_docx: Callable[[Path, list[tuple[str, str]]], Path] | None = None,
    make_pdf: Callable[[Path, list[str]], Path] | None = None,
) -> Corpus:
    """Write the corpus under ``root`` (``root/docs`` to ingest, ``root/outside`` beside it)."""
    make_docx = make_docx or _make_docx
    make_pdf = make_pdf or _make_pdf
    rng = random.Random(23)
    docs, outside = root / "docs", root / "outside"
    docs.mkdir(parents=True)
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_text(OUTSIDE_SECRET, encoding="utf-8")
    (outside / "private").mkdir()
    (outside / "private" / "notes.txt").write_text(OUTSIDE_SECRET, encoding="utf-8")
    c = Corpus(docs, outside)
    add = c.entries.append

    def write(name: str, data: bytes | str) -> Path:
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return path

    def noise(n: int, low: int = 0) -> bytes:
        return bytes(rng.randrange(low, 256) for _ in range(n))

    def text(name: str, what: str, body: str, fact: str) -> None:
        """A hostile entry that still holds real text: it must be indexed, ``fact`` in its chunks."""
        write(name, body)
        add(Entry(name, "indexed", what, fact=fact))

    # ------------------------------------------------------------ good files: each holds one unique fact
    facts = {
        "good/plain.txt": "The lighthouse at Quillmore was painted green in 1887.",
        "good/guide.md": "The Varnholt ferry leaves every ninety minutes.",
        "good/page.html": "Brisket smoked at Ondra Hall takes eleven hours.",
        "good/table.csv": "Zelkova",
        "good/report.docx": "The Tamsel bridge carries four tram lines.",
        "good/paper.pdf": "Glass frogs of Pallet Creek sing at dawn.",
    }
    write("good/plain.txt", f"Notes.\n\n{facts['good/plain.txt']}\n")
    write("good/guide.md", f"# Ferries\n\n## Timetable\n\n{facts['good/guide.md']}\n")
    write("good/page.html", f"<html><head><title>Food</title></head><body><h1>Food</h1>"
                            f"<p>{facts['good/page.html']}</p><script>var x = 1;</script></body></html>")
    write("good/table.csv", "Tree,Height\nZelkova,30\nOak,25\n")
    make_docx(docs / "good/report.docx", [("Title", "Bridges"), ("", facts["good/report.docx"])])
    make_pdf(docs / "good/paper.pdf", [facts["good/paper.pdf"]])
    facts["good/table.csv"] = "Tree: Zelkova | Height: 30"  # a row, as the CSV loader names its cells
    for source, fact in facts.items():
        add(Entry(source, "indexed", "a normal file", fact=fact, good=True))
    # Good text in other encodings: it must read as the right Unicode.
    tokyo = "東京は日本の首都です。富士山は日本で一番高い山です。"
    write("enc/shift_jis.txt", tokyo.encode("shift_jis"))
    add(Entry("enc/shift_jis.txt", "indexed", "Shift-JIS text", fact=tokyo, good=True))
    windows = "Exported from Windows: the Korvald mill grinds rye on Tuesdays, caf\u00e9 au lait."
    write("enc/utf16le_nobom.txt", windows.encode("utf-16-le"))
    add(Entry("enc/utf16le_nobom.txt", "indexed", "UTF-16-LE text without a BOM", fact=windows, good=True))

    # ------------------------------------------------------------ links
    def link(name: str, target: str | Path, outcome: str, what: str, reason: str = "", fact: str = "",
             directory: bool = False) -> None:
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target, target_is_directory=directory)
        add(Entry(name + ("/" if directory and outcome == "skipped" else ""), outcome, what, reason, fact))

    link("links/passwd.txt", "/etc/passwd", "skipped", "link to /etc/passwd", LINK_OUT)
    link("links/shadow.md", "/etc/shadow", "skipped", "link to /etc/shadow", LINK_OUT)
    link("links/zero.txt", "/dev/zero", "skipped", "link to /dev/zero", LINK_OUT)
    link("links/urandom.csv", "/dev/urandom", "skipped", "link to /dev/urandom", LINK_OUT)
    link("links/environ.txt", "/proc/self/environ", "skipped", "link to /proc/self/environ", LINK_OUT)
    link("links/secret.txt", outside / "secret.txt", "skipped", "absolute link to a file outside", LINK_OUT)
    link("links/relative.txt", "../../outside/secret.txt", "skipped", "relative ../ link to a file outside", LINK_OUT)
    link("links/private", outside / "private", "skipped", "link to a folder outside", LINK_OUT, directory=True)
    link("links/etc", "/etc", "skipped", "link to /etc", LINK_OUT, directory=True)
    link("links/up", "../..", "skipped", "link to the folder's parent", LINK_OUT, directory=True)
    link("links/dangling_out.txt", "/nonexistent/rag-hostile/x.txt", "skipped", "dangling link to outside", LINK_OUT)
    # a link to an inside link to a file outside: resolved all the way, so skipped
    (docs / "links/hop.txt").symlink_to("passwd.txt")
    add(Entry("links/hop.txt", "skipped", "link to an inside link to /etc/passwd", LINK_OUT))
    link("links/dangling.txt", "missing-target.txt", "ignored", "dangling link inside the folder")
    link("links/loop.txt", "loop.txt", "ignored", "link to itself (ELOOP)")
    (docs / "links/ping.txt").symlink_to("pong.txt")
    (docs / "links/pong.txt").symlink_to("ping.txt")
    add(Entry("links/ping.txt", "ignored", "two links pointing at each other"))
    add(Entry("links/pong.txt", "ignored", "two links pointing at each other"))
    link("links/self", "..", "ignored", "link to a folder inside (never followed)", directory=True)
    link("links/good-again.txt", "../good/plain.txt", "indexed", "link to a good file inside",
         fact=facts["good/plain.txt"])

    # ------------------------------------------------------------ not regular files
    os.mkfifo(docs / "pipe.txt")  # opening it would block forever
    add(Entry("pipe.txt", "ignored", "FIFO named .txt"))
    os.mkfifo(docs / "pipe.pdf")
    add(Entry("pipe.pdf", "ignored", "FIFO named .pdf"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(docs / "sock.md"))
        add(Entry("sock.md", "ignored", "Unix socket named .md"))
    except OSError:  # path too long for sun_path on some systems: skip this one
        pass
    finally:
        sock.close()

    if os.geteuid() == 0:  # only root may make device nodes
        os.mknod(docs / "zero-device.txt", stat.S_IFCHR | 0o666, os.makedev(1, 5))
        add(Entry("zero-device.txt", "ignored", "a character device (a copy of /dev/zero) named .txt"))

    # ------------------------------------------------------------ binary content under text names
    for ext in ("txt", "md", "html", "csv", "tsv"):
        write(f"bin/random.{ext}", noise(4096))
        add(Entry(f"bin/random.{ext}", "failed", f"random bytes as .{ext}", NUL))
    write("bin/random.pdf", noise(4096))
    add(Entry("bin/random.pdf", "failed", "random bytes as .pdf", NOT_PDF))
    write("bin/random.docx", noise(4096))
    add(Entry("bin/random.docx", "failed", "random bytes as .docx", NOT_DOCX))
    write("bin/random.pptx", noise(4096))
    add(Entry("bin/random.pptx", "failed", "random bytes as .pptx", NOT_PPTX))
    write("bin/elf.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + noise(2000))
    add(Entry("bin/elf.txt", "failed", "ELF header as .txt", NUL))
    write("bin/program.exe.md", b"MZ\x90\x00\x03\x00\x00\x00" + noise(1000))
    add(Entry("bin/program.exe.md", "failed", "DOS executable as .md", NUL))
    write("bin/control.txt", bytes(rng.choice(b"\x01\x02\x03\x04\x1b\x7fabc") for _ in range(3000)))
    add(Entry("bin/control.txt", "failed", "control characters, no NUL, as .txt", CONTROL))
    write("bin/high.txt", noise(3000, low=0x80))
    add(Entry("bin/high.txt", "failed", "random high bytes as .txt", ENCODING))
    write("bin/high.md", noise(3000, low=0x80))
    add(Entry("bin/high.md", "failed", "random high bytes as .md", ENCODING))
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + noise(2000)
    write("bin/image.pdf", png)
    add(Entry("bin/image.pdf", "failed", "PNG renamed .pdf", NOT_PDF))
    write("bin/image.html", png)
    add(Entry("bin/image.html", "failed", "PNG renamed .html", NUL))

    # ------------------------------------------------------------ empty files of every supported type
    from ingest.loaders import SUPPORTED_TYPES

    for ext, kind in sorted(SUPPORTED_TYPES.items()):
        write(f"empty/empty{ext}", b"")
        reason = {"pdf": NOT_PDF, "docx": NOT_DOCX, "pptx": NOT_PPTX}.get(kind, NO_TEXT)
        add(Entry(f"empty/empty{ext}", "skipped" if reason == NO_TEXT else "failed", f"0-byte {ext}", reason))

    # ------------------------------------------------------------ PDFs
    whole = make_pdf(outside / "whole.pdf", ["This PDF is cut short; it must not be indexed as if whole."]).read_bytes()
    write("pdf/truncated.pdf", whole[: len(whole) // 3])
    add(Entry("pdf/truncated.pdf", "failed", "PDF cut to its first third", CORRUPT_PDF))
    write("pdf/header-only.pdf", b"%PDF-1.7\n")
    add(Entry("pdf/header-only.pdf", "failed", "a PDF header and nothing else", CORRUPT_PDF))
    write("pdf/garbage-after-header.pdf", b"%PDF-1.4\n" + noise(4000))
    add(Entry("pdf/garbage-after-header.pdf", "failed", "PDF header then random bytes", CORRUPT_PDF))
    nested = b"[" * 50_000 + b"]" * 50_000
    write("pdf/nested.pdf", b"%PDF-1.4\n1 0 obj\n" + nested + b"\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
    add(Entry("pdf/nested.pdf", "failed", "PDF with 50,000 nested arrays", CORRUPT_PDF))
    make_pdf(docs / "pdf/scanned.pdf", [""])
    add(Entry("pdf/scanned.pdf", "failed", "PDF page without text (a scan)", SCANNED))
    if _encrypted_pdf(docs / "pdf/encrypted.pdf", whole):
        add(Entry("pdf/encrypted.pdf", "failed", "password-protected PDF", ENCRYPTED))

    # ------------------------------------------------------------ Office files that are not what they say
    write("office/not-docx.docx", _zip({"hello.txt": b"a zip, not a Word document"}))
    add(Entry("office/not-docx.docx", "failed", "a zip that is not a docx", NOT_DOCX))
    write("office/not-pptx.pptx", _zip({"hello.txt": b"a zip, not a presentation"}))
    add(Entry("office/not-pptx.pptx", "failed", "a zip that is not a pptx", NOT_PPTX))
    make_docx(docs / "office/broken-xml.docx", [("", "This paragraph sits in XML that is then broken.")])
    _rewrite_zip(docs / "office/broken-xml.docx", "word/document.xml", lambda xml: xml[: len(xml) // 2])
    add(Entry("office/broken-xml.docx", "failed", "docx whose document.xml is cut in half", NOT_DOCX))
    make_docx(docs / "office/xxe.docx", [("", "XXEMARKER")])
    _rewrite_zip(docs / "office/xxe.docx", "word/document.xml", _xxe)
    add(Entry("office/xxe.docx", "indexed", "docx with an external entity for /etc/passwd (XXE)", fact="XXEMARKER"))
    write("office/truncated.docx", (docs / "good/report.docx").read_bytes()[:3000])
    add(Entry("office/truncated.docx", "failed", "docx cut after 3 KB", NOT_DOCX))

    # ------------------------------------------------------------ size
    for name in ("big/sparse.txt", "big/sparse.pdf"):
        with open(docs / _mkdir(docs, name), "wb") as fh:
            fh.truncate(2 * 10**6)  # a hole: no disk used
        add(Entry(name, "skipped", "2 MB sparse file over max_file_mb = 1", TOO_BIG))

    # ------------------------------------------------------------ HTML
    deep = "Deep in the divs: the Orsk glacier moves nine metres a year."
    text("html/deep.html", "50,000 nested divs",
         "<html><body>" + "<div>" * 50_000 + f"<p>{deep}</p>" + "</div>" * 50_000 + "</body></html>", deep)
    canal = "Unclosed tags: the Pell canal is 4 km long."
    text("html/unclosed.html", "60,000 tags never closed", "<html><body>" + "<div><span><b>" * 20_000 + canal, canal)
    write("html/script-only.html", "<html><head><script>alert('x'.repeat(1000))</script></head>"
                                   "<body><script>for(;;){}</script><style>body{color:red}</style></body></html>")
    add(Entry("html/script-only.html", "skipped", "HTML with only <script> and <style>", NO_TEXT))
    tower = "Framed page: the Isel tower has 212 steps."
    text("html/iframe.html", "HTML pointing at /etc/passwd",
         '<html><body><iframe src="file:///etc/passwd"></iframe><img src="/etc/passwd">'
         f'<object data="/etc/passwd"></object><p>{tower}</p></body></html>', tower)

    # ------------------------------------------------------------ CSV
    write("csv/unclosed-quote.csv", 'name,note\nAda,"never closed\nBob,fine\nCy,also fine\n')
    add(Entry("csv/unclosed-quote.csv", "failed", "CSV with an unclosed quote", OPEN_QUOTE))
    write("csv/nul.csv", b"name,value\nAda,1\x00\x00\x00\nBob,\x002\n" * 20)
    add(Entry("csv/nul.csv", "failed", "CSV with NUL bytes", NUL))
    header = ",".join(f"col{i}" for i in range(5000))
    row = ",".join(f"v{i}" for i in range(5000))
    write("csv/wide.csv", f"{header}\n{row}\n")
    add(Entry("csv/wide.csv", "indexed", "CSV with 5,000 columns", fact="col4999: v4999"))
    write("csv/ragged.tsv", "a\tb\n1\n2\t3\t4\t5\n\t\t\t\n")
    add(Entry("csv/ragged.tsv", "indexed", "TSV with ragged rows", fact="a: 2 | b: 3 | column 3: 4 | column 4: 5"))

    # ------------------------------------------------------------ Markdown / text stress
    line = " ".join(f"word{i % 997}" for i in range(140_000))
    clock = "Single line fact: the Dunmere clock runs slow."
    one_mb = f"{clock} {line}"[: 10**6]  # exactly max_file_mb: at the limit, not over it
    text("md/one-line.md", "1 MB Markdown on a single line", one_mb, clock)
    pier = "Under 20,000 headings: the Arlo pier is wooden."
    text("md/headings.md", "20,000 empty headings", "".join(f"# H{i}\n" for i in range(20_000)) + pier + "\n", pier)
    well = "Unclosed fence: the Brenna well is dry."
    text("md/fence.md", "a code fence that never closes", "```\n" + "# not a heading\n" * 5000 + well + "\n", well)

    # ------------------------------------------------------------ names
    fd = os.open(os.path.join(os.fsencode(docs), b"name-\xff\xfe.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"A name that is not UTF-8.")
    os.close(fd)
    add(Entry("name-\\xff\\xfe.txt", "skipped", "non-UTF-8 file name", BAD_NAME))
    os.mkdir(os.path.join(os.fsencode(docs), b"dir-\xe9"))
    with open(os.path.join(os.fsencode(docs), b"dir-\xe9", b"inner.txt"), "wb") as fh:
        fh.write(b"Inside a folder whose name is latin-1.")
    add(Entry("dir-\\xe9/inner.txt", "skipped", "file in a non-UTF-8 folder name", BAD_NAME))
    named = {
        "names/new\nline.txt": "A newline in the name: the Harrow gate opens at six.",
        "names/" + "n" * 251 + ".txt": "A 255-byte name: the Quell river freezes in March.",
        "names/-rf --no-preserve-root.txt": "A leading dash: the Tolland mine closed in 1931.",
        "names/📄 ünïcödé 東京.md": "Emoji and accents: the Saffa market sells figs.",
        "names/[a]*?{b}.txt": "Glob characters: the Merrow bell weighs two tonnes.",
        "names/SHOUT.TXT": "Upper-case extension: the Yarl dam is 90 m tall.",
        "names/tab\tand space .txt": "A tab in the name: the Oxley hedge maze has 3 exits.",
        "names/back\\slash.txt": "A backslash in the name: the Pym orchard grows quince.",
    }
    for name, fact in named.items():
        text(name, f"odd file name {name!r}", fact, fact)
    write("names/evil.txt.exe", b"MZ" + noise(100))
    add(Entry("names/evil.txt.exe", "skipped", "double extension ending .exe", UNSUPPORTED))
    write("names/no-extension", "plain text without an extension")
    add(Entry("names/no-extension", "skipped", "no extension", r"unsupported type \(no extension\)$"))

    # ------------------------------------------------------------ hidden: ignored by design
    write(".secret.txt", OUTSIDE_SECRET)
    add(Entry(".secret.txt", "ignored", "hidden file"))
    write(".hidden/inside.txt", OUTSIDE_SECRET)
    add(Entry(".hidden/inside.txt", "ignored", "file in a hidden folder"))
    write("good/.env.md", OUTSIDE_SECRET)
    add(Entry("good/.env.md", "ignored", "hidden file in a sub-folder"))
    (docs / ".passwd.txt").symlink_to("/etc/passwd")
    add(Entry(".passwd.txt", "ignored", "hidden link to /etc/passwd"))

    # ------------------------------------------------------------ unreadable (simulated: root reads anything)
    write("locked/hash-denied.txt", "permission to read this is denied while hashing")
    c.deny_hash.add("locked/hash-denied.txt")
    add(Entry("locked/hash-denied.txt", "failed", "unreadable file (hashing)", DENIED))
    write("locked/open-denied.md", "# Locked\n\npermission to read this is denied when loading")
    c.deny_open.add("open-denied.md")
    add(Entry("locked/open-denied.md", "failed", "unreadable file (loading)", DENIED))
    write("sealed/inner.txt", "a folder that cannot be listed")
    c.deny_list.add("sealed")
    add(Entry("sealed/", "failed", "a folder that cannot be listed", DENIED_DIR))
    return c


def _mkdir(docs: Path, name: str) -> str:
    (docs / name).parent.mkdir(parents=True, exist_ok=True)
    return name


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _rewrite_zip(path: Path, member: str, change: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[member] = change(members[member])
    path.write_bytes(_zip(members))


def _xxe(xml: bytes) -> bytes:
    """document.xml with a DOCTYPE whose external entity names /etc/passwd, used beside the marker."""
    decl, _, body = xml.partition(b"?>")
    doctype = b'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    return decl + b"?>" + doctype + body.replace(b"XXEMARKER", b"XXEMARKER &xxe;", 1)


def _encrypted_pdf(path: Path, plain: bytes) -> bool:
    """A PDF that needs a password (RC4, which pypdf writes without extra packages); False if it cannot."""
    try:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
        writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
        with open(path, "wb") as fh:
            writer.write(fh)
        return True
    except Exception:  # noqa: BLE001 - an optional entry
        path.unlink(missing_ok=True)
        return False


def _make_docx(path: Path, blocks: list[tuple[str, str]]) -> Path:
    import docx

    document = docx.Document()
    for style, text in blocks:
        document.add_heading(text, 0) if style == "Title" else document.add_paragraph(text)
    document.save(str(path))
    return path


def _make_pdf(path: Path, pages: list[str]) -> Path:
    from conftest import pdf_bytes

    path.write_bytes(pdf_bytes(pages))
    return path

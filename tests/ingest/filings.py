"""Real-shaped files for issue #20, built at run time (nothing binary is committed).

Each builder writes what a real document of its kind has that broke the
loaders: a 10-Q page typeset with ligatures and hyphenation, an export with
a word per line, a dense chart page past pypdf's default token budget, an
AES-encrypted filing that opens without a password, one that needs one, a
scan, a decompression bomb, and the same revenue table as DOCX, HTML and
Markdown. :func:`build_filings` writes a folder of them with the outcome
ingest must give each.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The ToUnicode map of font /F2: codes 1 and 2 are the fi and fl ligature glyphs, as a typesetter embeds them.
_LIGATURE_CMAP = b"""/CIDInit /ProcSet findresource begin 12 dict begin begincmap
/CMapName /Ligatures def 1 begincodespacerange <00> <FF> endcodespacerange
2 beginbfchar <01> <FB01> <02> <FB02> endbfchar
1 beginbfrange <20> <7E> <0020> endbfrange
endcmap CMapName currentdict /CMap defineresource pop end end"""


def text_ops(lines: Sequence[str | bytes], font: str = "F1", leading: int = 14) -> bytes:
    """A content stream writing each line below the last; a bytes line goes in as raw codes (ligature glyphs)."""
    ops = [f"BT /{font} 10 Tf {leading} TL 72 740 Td".encode()]
    for line in lines:
        raw = line if isinstance(line, bytes) else line.encode("latin-1")
        raw = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        ops.append(b"(" + raw + b") Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


def pdf(pages: Sequence[bytes], image: bool = False, raw_streams: Sequence[bytes] | None = None) -> bytes:
    """A PDF with one Flate-compressed content stream per page (``raw_streams``: already compressed ones).

    Fonts: ``/F1`` Helvetica, ``/F2`` Helvetica whose ToUnicode map has the fi/fl ligatures at codes 1-2.
    ``image`` gives every page a one-pixel image XObject ``/Im1`` (what a scanned page draws).
    """
    streams = list(raw_streams) if raw_streams is not None else [zlib.compress(p, 9) for p in pages]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the pages are numbered
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 5 0 R >>",
        _stream(zlib.compress(_LIGATURE_CMAP)),
        _stream(zlib.compress(b"\x80"), b"/Type /XObject /Subtype /Image /Width 1 /Height 1 "
                                         b"/ColorSpace /DeviceGray /BitsPerComponent 8"),
    ]
    xobject = b"/XObject << /Im1 6 0 R >>" if image else b""
    kids = []
    for data in streams:
        objects.append(_stream(data))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R "
                       b"/F2 4 0 R >> " + xobject + b" >> /Contents " + str(len(objects)).encode() + b" 0 R >>")
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< " + extra + b" /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"


def encrypted(data: bytes, user_password: str) -> bytes:
    """``data`` encrypted with AES-256 as a filing's publisher does: anyone opens it with ``user_password``."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def chart_page(tokens: int) -> bytes:
    """A page of text over a vector chart drawn with about ``tokens`` content-stream tokens (``q Q`` pairs)."""
    caption = text_ops(["Figure 3: Cloud revenue by quarter, in millions."])
    return caption + b"\n" + b"q Q\n" * (tokens // 2)


def bomb_page(megabytes: int) -> bytes:
    """Compressed, a few hundred KB; decompressed, ``megabytes`` MB of spaces: a decompression bomb."""
    compressor = zlib.compressobj(9)
    block = b" " * 2**20
    return b"".join([compressor.compress(text_ops(["Nothing to see."]) + b"\n")]
                    + [compressor.compress(block) for _ in range(megabytes)] + [compressor.flush()])


# ---------------------------------------------------------------- the 10-Q page and the revenue table

#: A 10-Q page as pypdf extracts it: ligature glyphs (codes 1, 2 of /F2), words hyphenated at line ends.
TYPESET = [
    b"Microsoft Cloud revenue increased 22% driven by Azure and other cloud services. The ef\x01ciency of",
    b"our datacenter \x02eet improved, and the \x01nancial results re\x02ect informa-",
    b"tion about segment perfor-",
    b"mance in a state-of-the-",
    b"art presentation of Non-",
    b"GAAP measures.",
]
TYPESET_READS = ("The efficiency of our datacenter fleet improved, and the financial results reflect information "
                 "about segment performance in a state-of-the-art presentation of Non-GAAP measures.")
#: An export that put every word on a line of its own.
WORD_PER_LINE = "Operating\nincome\nwas\n$27.0\nbillion\nand\nincreased\n17%."
WORD_PER_LINE_READS = "Operating income was $27.0 billion and increased 17%."

HEADER = ["Segment", "Revenue 2024", "Revenue 2023"]
BODY = [["Productivity and Business Processes", "20,317", "18,592"],
        ["Intelligent Cloud", "28,515", "24,259"],
        ["More Personal Computing", "13,176", "13,139"]]
ROW_READS = "Segment: Intelligent Cloud | Revenue 2024: 28,515 | Revenue 2023: 24,259"


def revenue_html() -> str:
    head = "".join(f"<th><b>{h}</b></th>" for h in HEADER)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in BODY)
    return (f"<html><body><h1>Segment results</h1><p>Revenue by segment, in millions.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></body></html>")


def revenue_markdown() -> str:
    lines = ["# Segment results", "", "Revenue by segment, in millions.", "",
             "| " + " | ".join(f"**{h}**" for h in HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in BODY]
    return "\n".join(lines + ["", "## Outlook", "", "Growth continues.", ""])


def revenue_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Segment results", 1)
    document.add_paragraph("Revenue by segment, in millions.")
    table = document.add_table(rows=1 + len(BODY), cols=len(HEADER))
    for i, row in enumerate([HEADER, *BODY]):
        for j, cell in enumerate(row):
            table.cell(i, j).text = cell
    document.save(str(path))
    return path


@dataclass(frozen=True)
class Filing:
    """One file of the corpus and what ingest must make of it: ``reads`` in its chunks, or ``fails`` matching."""

    source: str
    reads: str = ""
    fails: str = ""  # a regex the report's reason must match from its start


def build_filings(docs: Path) -> list[Filing]:
    """Write the corpus under ``docs`` (created) and return each file's expected outcome."""
    docs.mkdir(parents=True, exist_ok=True)
    filing = pdf([text_ops(["Quarterly report, page 1."]), text_ops(TYPESET, font="F2")])
    made = {
        "msft-10q.pdf": (filing, Filing("msft-10q.pdf", TYPESET_READS)),
        "msft-10q-export.pdf": (pdf([text_ops(WORD_PER_LINE.split("\n"))]),
                                Filing("msft-10q-export.pdf", WORD_PER_LINE_READS)),
        "aes-10k.pdf": (encrypted(filing, ""), Filing("aes-10k.pdf", TYPESET_READS)),
        "locked.pdf": (encrypted(filing, "hunter2"), Filing("locked.pdf", fails=r"encrypted: needs a password")),
        "scan.pdf": (pdf([b"q 612 0 0 792 0 0 cm /Im1 Do Q"], image=True),
                     Filing("scan.pdf", fails=r"scanned, no text \(OCR not installed\)")),
        "bomb.pdf": (pdf([], raw_streams=[bomb_page(80)]),
                     Filing("bomb.pdf", fails=r"over the PDF reader's safety limits \(Limit reached while decompressing")),
        "segments.html": (revenue_html().encode(), Filing("segments.html", ROW_READS)),
        "segments.md": (revenue_markdown().encode(), Filing("segments.md", ROW_READS)),
    }
    for name, (data, _) in made.items():
        (docs / name).write_bytes(data)
    revenue_docx(docs / "segments.docx")
    return [expected for _, expected in made.values()] + [Filing("segments.docx", ROW_READS)]

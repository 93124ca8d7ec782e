"""Long-PDF variants of two shared sets: documents shaped like the ones users bring (docs/EVAL.md).

    python docs/eval/long_pdf_sets.py $DATA /tmp/longpdf      # writes /tmp/longpdf/<set>_longpdf/{docs,qa.jsonl}

The shared sets are short .txt snippets; a user ingests a 10-K or a Wikipedia print-out as one long PDF.
Retrieval then has to find the right passage inside a long file whose other pages share its words.

- ``tatqa_finance_longpdf``: TAT-QA keeps no company name, so report sections are grouped by what one
  report's sections share (currency and fiscal year end in the table), then cut into files of about
  ``SECTIONS_PER_REPORT`` sections: a page per section, the table as rows of space-separated cells (how a
  PDF table reads once extracted), no ``Table:``/``Text:`` markers. Gold ids are remapped to the file.
- ``cmu_qa_wikipedia_longpdf``: each article one PDF of pages of about ``PAGE_CHARS`` characters (paragraph
  boundaries kept); doc ids are unchanged.

The PDFs are made as tests/conftest.py's ``pdf_bytes`` makes them (text PDFs, one ``Tj`` per line), with
``WinAnsiEncoding`` so that ``£ € ’ –`` survive; each file is read back with pypdf, and the share of
answers found verbatim in their gold file's extracted text is printed (a check of the conversion).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import textwrap
import unicodedata
from collections import defaultdict
from pathlib import Path

PAGE_CHARS = 3000
LINE_CHARS = 95
SECTIONS_PER_REPORT = 12
SEED = 0

_YEAR_END = re.compile(
    r"\b(?:(january|february|march|april|may|june|july|august|september|october|november|december)\s+\d{1,2}"
    r"|\d{1,2}\s+(january|february|march|april|may|june|july|august|september|october|november|december))\b",
    re.IGNORECASE,
)


def cp1252(text: str) -> str:
    """Text the PDF's WinAnsi font can draw: other characters by their compatibility form, else dropped."""
    out = []
    for ch in text:
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            out.append("".join(c for c in unicodedata.normalize("NFKD", ch) if c.isascii()))
    return "".join(out)


def pdf_bytes(pages: list[str]) -> bytes:
    """tests/conftest.py's ``pdf_bytes`` with a WinAnsi-encoded Helvetica: one ``Tj`` per line of each page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for text in pages:
        ops = ["BT", "/F1 10 Tf", "12 TL", "50 760 Td"]
        for line in text.split("\n"):
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode('cp1252')}\nendstream")
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       f"/Resources << /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>")
        kids.append(len(objects))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("cp1252")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def wrap(paragraphs: list[str]) -> str:
    """Paragraphs as printed lines, a blank line between them."""
    return "\n\n".join("\n".join(textwrap.wrap(cp1252(p), LINE_CHARS)) or "" for p in paragraphs if p.strip())


def pages_of(paragraphs: list[str], limit: int = PAGE_CHARS) -> list[list[str]]:
    """Paragraphs packed into pages of about ``limit`` characters (a longer paragraph gets a page of its own)."""
    pages: list[list[str]] = [[]]
    size = 0
    for p in paragraphs:
        if pages[-1] and size + len(p) > limit:
            pages.append([])
            size = 0
        pages[-1].append(p)
        size += len(p)
    return [p for p in pages if p]


def tatqa_section(text: str) -> list[str]:
    """A TAT-QA document as a report page's paragraphs: table rows with space-separated cells, then the text."""
    table, _, prose = text.partition("\nText:")
    rows = [" ".join(c.strip() for c in row.split("|") if c.strip())
            for row in table.removeprefix("Table:").splitlines()]
    rows = [r for r in rows if r]
    paras = [p.strip() for p in prose.split("\n\n") if p.strip()]
    return ["\n".join(rows), *paras] if rows else paras


def tatqa_signature(text: str) -> str:
    """What sections of one report share: currency and fiscal year end."""
    currency = "gbp" if "£" in text else "eur" if "€" in text else "usd" if "$" in text else "other"
    m = _YEAR_END.search(text.partition("\nText:")[0]) or _YEAR_END.search(text)
    return f"{currency}-{(m.group(1) or m.group(2)).lower() if m else 'none'}"


def build_tatqa(src: Path, out: Path) -> dict[str, str]:
    """Writes the report PDFs; returns old doc id -> new doc id."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted((src / "docs").glob("*.txt")):
        groups[tatqa_signature(path.read_text(encoding="utf-8"))].append(path)
    small = [k for k, v in groups.items() if len(v) < SECTIONS_PER_REPORT // 2]
    for key in small:  # too few for a report of their own: one per currency
        groups[key.split("-")[0] + "-mixed"].extend(groups.pop(key))
    rng = random.Random(SEED)
    mapping: dict[str, str] = {}
    number = 0
    for key in sorted(groups):
        paths = groups[key]
        rng.shuffle(paths)
        n_files = max(1, round(len(paths) / SECTIONS_PER_REPORT))
        for i in range(n_files):
            number += 1
            doc_id = f"tatqa_report_{number:03d}_{key}"
            members = paths[i::n_files]
            pages = []
            for j, path in enumerate(members):
                paras = tatqa_section(path.read_text(encoding="utf-8"))
                if j == 0:
                    paras = [f"Financial report {number} (TAT-QA sections, {key})", *paras]
                pages += [wrap(p) for p in pages_of(paras)]
                mapping[path.stem] = doc_id
            (out / "docs" / f"{doc_id}.pdf").write_bytes(pdf_bytes(pages))
    return mapping


def build_cmu(src: Path, out: Path) -> dict[str, str]:
    mapping = {}
    for path in sorted((src / "docs").glob("*.txt")):
        paras = [p for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
        (out / "docs" / f"{path.stem}.pdf").write_bytes(pdf_bytes([wrap(p) for p in pages_of(paras)]))
        mapping[path.stem] = path.stem
    return mapping


def write_qa(src: Path, out: Path, mapping: dict[str, str]) -> list[dict]:
    rows = []
    for line in (src / "qa.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["gold_doc_ids"] = list(dict.fromkeys(mapping[g] for g in row["gold_doc_ids"]))
            rows.append(row)
    (out / "qa.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def check(out: Path, rows: list[dict]) -> str:
    """Reads every PDF back with pypdf: files, pages, and answers found verbatim in their gold file's text."""
    import pypdf

    from rag_app.evaluate.metrics import answer_in_text

    texts, n_pages = {}, 0
    for path in sorted((out / "docs").glob("*.pdf")):
        reader = pypdf.PdfReader(path)
        n_pages += len(reader.pages)
        texts[path.stem] = "\n".join(page.extract_text() for page in reader.pages)
    text_rows = [r for r in rows if r.get("answer_type") in ("span", "multi_span")]
    found = sum(answer_in_text(r["answers"], "\n".join(texts[g] for g in r["gold_doc_ids"]),
                               r.get("answer_spans") or ()) for r in text_rows)
    return (f"{out.name}: {len(texts)} PDFs, {n_pages} pages, {len(rows)} questions; "
            f"span answers in their gold PDF's text: {found} of {len(text_rows)}")


BUILDERS = {"tatqa_finance": build_tatqa, "cmu_qa_wikipedia": build_cmu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the folder holding the shared sets")
    parser.add_argument("out", type=Path, help="where <set>_longpdf/ folders are written")
    parser.add_argument("--sets", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    args = parser.parse_args()
    for name in args.sets:
        src, out = args.data / name, args.out / f"{name}_longpdf"
        (out / "docs").mkdir(parents=True, exist_ok=True)
        for old in (out / "docs").glob("*.pdf"):
            old.unlink()
        rows = write_qa(src, out, BUILDERS[name](src, out))
        print(check(out, rows))


if __name__ == "__main__":
    main()

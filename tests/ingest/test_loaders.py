"""Loaders: every supported type, odd encodings, and files that must fail with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import Section, decode_text, is_supported, load
from rag_app.errors import LoaderError


def _assert_exact(sections: list[Section], loaded: str) -> None:
    for s in sections:
        assert loaded[s.offset : s.offset + len(s.text)] == s.text


def test_plain_text_is_one_section_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("\n\n  Hello world.\r\nSecond line.\n\n", encoding="utf-8", newline="")
    [section] = load(path)
    assert section.text == "Hello world.\nSecond line."  # CRLF normalised, outer whitespace stripped
    assert section.offset == 4 and section.page is None and section.heading is None


def test_cp1252_text_loads_with_its_characters(tmp_path: Path) -> None:
    path = tmp_path / "ansi.txt"
    path.write_bytes("Caf\u00e9 cr\u00e8me costs \u20ac5 \u2013 \u201cquoted\u201d.".encode("cp1252"))
    [section] = load(path)
    assert section.text == "Caf\u00e9 cr\u00e8me costs \u20ac5 \u2013 \u201cquoted\u201d."


def test_bytes_undefined_in_cp1252_fall_back_to_latin1() -> None:
    assert decode_text(b"caf\xe9 \x81") == "caf\u00e9 \x81"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("\ufeffbom text".encode("utf-8"), "bom text"),
        ("utf-16 text \u00e9".encode("utf-16"), "utf-16 text \u00e9"),
        ("plain \u00e9 utf-8".encode("utf-8"), "plain \u00e9 utf-8"),
    ],
)
def test_decode_text_handles_boms_and_utf8(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected


def test_binary_file_with_text_extension_fails_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(LoaderError, match="binary content"):
        load(path)


def test_empty_file_has_no_sections(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    assert load(tmp_path / "empty.md") == []


def test_unsupported_type_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.xlsx").write_text("x,y", encoding="utf-8")
    assert not is_supported(tmp_path / "a.xlsx") and is_supported("A.PDF")
    with pytest.raises(LoaderError, match="unsupported type .xlsx"):
        load(tmp_path / "a.xlsx")


MARKDOWN = """Intro before any heading.

# Guide

Some guide text.

## Install

Run the installer.

```bash
# this is a comment, not a heading
pip install rag-app
```

## Empty

### Deep
Deep text.

Usage
-----
Setext body.
"""


def test_markdown_sections_carry_heading_paths_and_exact_offsets(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    sections = load(path)
    assert [s.heading for s in sections] == [
        None,
        "Guide",
        "Guide > Install",
        "Guide > Empty > Deep",  # "## Empty" has no body of its own, so it is not a section
        "Guide > Usage",
    ]
    assert "# this is a comment, not a heading" in sections[2].text
    assert sections[3].text == "### Deep\nDeep text."
    _assert_exact(sections, MARKDOWN)


def test_markdown_front_matter_is_not_a_heading(tmp_path: Path) -> None:
    text = "---\ntitle: Notes\n---\nBody text.\n"
    (tmp_path / "n.md").write_text(text, encoding="utf-8")
    [section] = load(tmp_path / "n.md")
    assert section.heading is None and section.text.endswith("Body text.")


def test_html_drops_scripts_styles_nav_and_keeps_headings(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Rivers</title><style>p {color: red}</style><script>var secret = 1;</script></head>"
        "<body><nav>Home | About | Login</nav><h1>The Rhine</h1><p>The <b>Rhine</b> flows <a href='#'>north</a>."
        "</p><h2>Course</h2><ul><li>Alps</li><li>North Sea</li></ul><table><tr><td>length</td><td>1,230 km</td>"
        "</tr></table><p>Caf\xe9</p></body></html>"
    )
    path = tmp_path / "rhine.html"
    path.write_bytes(html.encode("cp1252"))
    sections = load(path)
    joined = "\n".join(s.text for s in sections)
    for gone in ("secret", "color", "Login"):
        assert gone not in joined
    assert [s.heading for s in sections] == ["The Rhine", "The Rhine > Course"]
    assert "The Rhine flows north." in sections[0].text  # inline tags do not break the sentence
    assert "- Alps\n- North Sea" in sections[1].text
    assert "length | 1,230 km" in sections[1].text
    assert "Caf\u00e9" in sections[1].text


def test_html_title_heads_a_page_without_h1(tmp_path: Path) -> None:
    (tmp_path / "p.htm").write_text("<title>Notes</title><h2>Part</h2><p>Body.</p>", encoding="utf-8")
    [section] = load(tmp_path / "p.htm")
    assert section.heading == "Notes > Part"


def test_pdf_pages_are_numbered_and_blank_pages_skipped(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(tmp_path / "report.pdf", ["First page says hello.\nIt has (two) lines.", "", "Third page: 42."])
    sections = load(path)
    assert [s.page for s in sections] == [1, 3]
    assert sections[0].text == "First page says hello.\nIt has (two) lines."
    assert sections[1].text == "Third page: 42."
    assert sections[1].offset == len(sections[0].text) + 2  # pages joined by a blank line


def test_corrupt_pdf_fails_with_reason(tmp_path: Path, make_pdf) -> None:
    good = make_pdf(tmp_path / "good.pdf", ["Some text."]).read_bytes()
    (tmp_path / "truncated.pdf").write_bytes(good[: len(good) // 3])
    with pytest.raises(LoaderError, match="corrupt or unreadable PDF"):
        load(tmp_path / "truncated.pdf")
    (tmp_path / "fake.pdf").write_bytes(b"this is not a pdf at all")
    with pytest.raises(LoaderError, match="not a PDF"):
        load(tmp_path / "fake.pdf")


def test_pdf_without_text_says_it_needs_ocr(tmp_path: Path, make_pdf) -> None:
    with pytest.raises(LoaderError, match="OCR"):
        load(make_pdf(tmp_path / "scan.pdf", ["", ""]))


def test_docx_headings_paragraphs_and_tables(tmp_path: Path, make_docx) -> None:
    path = make_docx(
        tmp_path / "r.docx",
        [("Title", "Annual Report"), ("", "Lead paragraph."), ("Heading 1", "Results"), ("", "Revenue grew."),
         ("table", "year|revenue;2024|10"), ("Heading 2", "Detail"), ("", "Deep dive.")],
    )  # fmt: skip
    sections = load(path)
    assert [s.heading for s in sections] == ["Annual Report", "Annual Report > Results", "Annual Report > Results > Detail"]
    assert sections[1].text.endswith("Revenue grew.\n\nyear: 2024 | revenue: 10")  # the row names its cells
    assert sections[2].text == "Detail\n\nDeep dive."


def test_corrupt_docx_fails_with_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LoaderError, match="not a readable .docx"):
        load(tmp_path / "broken.docx")


def test_csv_rows_become_sections_that_name_their_columns(tmp_path: Path) -> None:
    rows = ["Company;Revenue 2023;Country", "Firm 1;10;", "", "Firm 2;20;NO"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n\n", encoding="cp1252")
    sections = load(tmp_path / "t.csv")
    # Semicolons sniffed; the empty Country cell left out; spreadsheet row numbers (header = row 1).
    assert [(s.heading, s.text) for s in sections] == [
        ("row 2", "Company: Firm 1 | Revenue 2023: 10"), ("row 4", "Company: Firm 2 | Revenue 2023: 20 | Country: NO")]
    loaded = "\n\n".join(s.text for s in sections)
    assert all(loaded[s.offset : s.offset + len(s.text)] == s.text for s in sections)


def test_csv_quoting_as_spreadsheets_write_it(tmp_path: Path) -> None:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([
        ["title", "review", "year"],
        ["Dune", 'He said "yes, sir" and left', "1965"],  # a doubled quote and a comma inside a cell
        ["Film B", "'Tis a fine film, called 'great' twice", "1990"],  # apostrophes are not quotes
        ["Film C", "x" * 200_000, "2001"],  # over csv's default field limit
        ["Film D", "Great cast", "2005"],
    ])  # fmt: skip
    (tmp_path / "films.csv").write_text(buf.getvalue(), encoding="utf-8")
    sections = load(tmp_path / "films.csv")
    assert [s.heading for s in sections] == ["row 2", "row 3", "row 4", "row 5"]
    assert sections[0].text == 'title: Dune | review: He said "yes, sir" and left | year: 1965'
    assert sections[1].text == "title: Film B | review: 'Tis a fine film, called 'great' twice | year: 1990"
    assert sections[3].text == "title: Film D | review: Great cast | year: 2005"


def test_csv_without_a_header_keeps_its_first_row(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("2024-01-05,Acme,12.5\n2024-01-06,Beta,\"$1,300\"\n", encoding="utf-8")
    (tmp_path / "kv.csv").write_text("Temperature;25,5 %\nHumidity;-3\n", encoding="utf-8")
    assert [(s.heading, s.text) for s in load(tmp_path / "log.csv")] == [
        ("row 1", "column 1: 2024-01-05 | column 2: Acme | column 3: 12.5"),
        ("row 2", "column 1: 2024-01-06 | column 2: Beta | column 3: $1,300")]
    assert [s.text for s in load(tmp_path / "kv.csv")] == ["column 1: Temperature | column 2: 25,5 %",
                                                            "column 1: Humidity | column 2: -3"]
    (tmp_path / "one.csv").write_text("Acme,12\n", encoding="utf-8")  # a lone data row is still data
    assert [s.text for s in load(tmp_path / "one.csv")] == ["column 1: Acme | column 2: 12"]


def test_csv_headed_by_years_keeps_them_as_column_names(tmp_path: Path) -> None:
    (tmp_path / "fin.csv").write_text(",2019,2018\nRevenue,\"1,234\",1100\n", encoding="utf-8")
    assert [(s.heading, s.text) for s in load(tmp_path / "fin.csv")] == [
        ("row 2", "column 1: Revenue | 2019: 1,234 | 2018: 1100")]


def test_tsv_and_ragged_rows(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text("name\tvalue\nalpha\t1\textra, with comma\n", encoding="utf-8")
    [section] = load(tmp_path / "t.tsv")
    assert section.text == "name: alpha | value: 1 | column 3: extra, with comma"
    assert section.heading == "row 2"


def test_csv_with_only_a_header_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b\n", encoding="utf-8")
    (tmp_path / "e.csv").write_text("\n,\n", encoding="utf-8")
    assert [s.text for s in load(tmp_path / "h.csv")] == ["a | b"]
    assert load(tmp_path / "e.csv") == []


def test_csv_with_a_quote_left_open_fails_naming_the_row(tmp_path: Path) -> None:
    # A lenient reader would return row 3 with every later row folded into its cell.
    (tmp_path / "q.csv").write_text('name,size\nTV,"55\nRadio,small\nLamp,tall\n', encoding="utf-8")
    with pytest.raises(LoaderError, match=r'row 2: a quoted cell never closes.*stray "'):
        load(tmp_path / "q.csv")
    (tmp_path / "late.csv").write_text('name,size\nTV,"55"inch\nRadio,"small\nLamp,tall\n', encoding="utf-8")
    with pytest.raises(LoaderError, match="row 3: a quoted cell never closes"):  # after a harmless quirk
        load(tmp_path / "late.csv")
    (tmp_path / "multi.csv").write_text('name,notes\nTV,"two\nlines"', encoding="utf-8")  # closed, no newline
    assert [s.text for s in load(tmp_path / "multi.csv")] == ["name: TV | notes: two lines"]
    # Text after a closing quote is not that: it stays in its cell, as spreadsheets read it.
    (tmp_path / "ok.csv").write_text('name,size\nTV,"55"inch\nLamp,tall\n', encoding="utf-8")
    assert [s.text for s in load(tmp_path / "ok.csv")] == ["name: TV | size: 55inch", "name: Lamp | size: tall"]


def test_binary_under_csv_fails_with_reason(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(LoaderError, match="binary"):
        load(tmp_path / "x.csv")


def _pptx(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    first.shapes.title.text = "Quarterly  results"
    first.placeholders[1].text_frame.text = "Revenue grew 12%.\nCosts fell."
    first.notes_slide.notes_text_frame.text = "Mention the new plant."
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text at all
    third = deck.slides.add_slide(deck.slide_layouts[6])
    table = third.shapes.add_table(2, 2, Inches(1), Inches(1), Inches(4), Inches(1)).table
    for (i, j), text in {(0, 0): "year", (0, 1): "staff", (1, 0): "2024", (1, 1): "310"}.items():
        table.cell(i, j).text = text
    deck.save(str(path))
    return path


def test_pptx_slides_become_sections_with_titles_tables_and_notes(tmp_path: Path) -> None:
    sections = load(_pptx(tmp_path / "deck.pptx"))
    assert [s.heading for s in sections] == ["Slide 1: Quarterly results", "Slide 3"]  # slide 2 is empty
    assert sections[0].text == "Quarterly results\nRevenue grew 12%.\nCosts fell.\nNotes: Mention the new plant."
    assert sections[1].text == "year: 2024 | staff: 310"  # the header row (PowerPoint marks it) names the cells
    assert sections[1].offset == len(sections[0].text) + 2


def test_pptx_groups_notes_only_slides_and_shapes_without_geometry(tmp_path: Path) -> None:
    from lxml import etree
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(2), Inches(1)).text_frame.text = "inside a group"
    # Google Slides / LibreOffice exports: a plain <p:sp> without geometry, whose shape_type raises.
    bare = slide.shapes.add_textbox(Inches(1), Inches(3), Inches(2), Inches(1))
    bare.text_frame.text = "no geometry"
    for el in bare._element.iter():
        if etree.QName(el).localname == "cNvSpPr":
            el.attrib.pop("txBox", None)
        if etree.QName(el).localname in ("prstGeom", "custGeom"):
            el.getparent().remove(el)
    notes_only = deck.slides.add_slide(deck.slide_layouts[6])
    notes_only.notes_slide.notes_text_frame.text = "Only notes here."
    deck.save(str(tmp_path / "d.pptx"))
    sections = load(tmp_path / "d.pptx")
    assert [(s.heading, s.text) for s in sections] == [
        ("Slide 1", "inside a group\nno geometry"), ("Slide 2", "Notes: Only notes here.")]


def test_corrupt_pptx_fails_with_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.pptx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LoaderError, match="not a readable .pptx"):
        load(tmp_path / "broken.pptx")


@pytest.mark.parametrize(("first_row", "text"), [
    (",0,1,2", "column 1: A | 0: 5 | 1: 6 | 2: 7"),  # pandas' to_csv of a frame with integer columns
    ("Question,1,2,3", "Question: A | 1: 5 | 2: 6 | 3: 7"),  # a rating scale
    ("Size,38,39,40", "Size: A | 38: 5 | 39: 6 | 40: 7"),
    (",2019 EUR,2018 EUR", "column 1: A | 2019 EUR: 5 | 2018 EUR: 6 | column 4: 7"),
])  # fmt: skip
def test_csv_headed_by_counting_numbers_or_years_keeps_them_as_names(tmp_path: Path, first_row: str, text: str) -> None:
    (tmp_path / "t.csv").write_text(f"{first_row}\nA,5,6,7\n", encoding="utf-8")
    assert [(s.heading, s.text) for s in load(tmp_path / "t.csv")] == [("row 2", text)]


@pytest.mark.parametrize("first_row", ["Revenue,5 USD", "Temp,25 °C", "Growth,3.5k", "Loss,$-5", "Drop,−3", "Kaffee;2,50 €"])
def test_csv_whose_first_row_holds_a_number_with_a_unit_is_data(tmp_path: Path, first_row: str) -> None:
    sep = ";" if ";" in first_row else ","
    (tmp_path / "t.csv").write_text(f"{first_row}\nOther{sep}1\n", encoding="utf-8")
    sections = load(tmp_path / "t.csv")
    label, value = first_row.split(sep)
    assert sections[0].heading == "row 1" and sections[0].text == f"column 1: {label} | column 2: {value}"


# ---------------------------------------------------------------- encodings, binary heads, deep HTML (issue #23)

JAPANESE = "東京は日本の首都です。人口は約千四百万人で、多くの会社の本社があります。\n富士山は日本で一番高い山です。\n"


def test_shift_jis_text_loads_as_the_right_characters(tmp_path: Path) -> None:
    (tmp_path / "tokyo.txt").write_bytes(JAPANESE.encode("shift_jis"))
    [section] = load(tmp_path / "tokyo.txt")
    assert section.text == JAPANESE.strip()


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_text_not_binary(tmp_path: Path, codec: str) -> None:
    text = "Notes exported from Windows.\nCaf\u00e9 and cr\u00e8me; 東京 too.\n"
    (tmp_path / "notes.txt").write_bytes(text.encode(codec))  # .encode("utf-16-le") writes no BOM
    [section] = load(tmp_path / "notes.txt")
    assert section.text == text.strip()


def test_random_high_bytes_are_refused_as_no_known_encoding(tmp_path: Path) -> None:
    import random

    rng = random.Random(23)
    noise = bytes(rng.randrange(0x80, 0x100) for _ in range(4000))  # cp1252 or latin-1 took them as accents
    (tmp_path / "noise.txt").write_bytes(noise)
    with pytest.raises(LoaderError, match="encoding not recognised"):
        load(tmp_path / "noise.txt")


def test_a_few_garbage_bytes_with_nuls_are_still_binary() -> None:
    # charset-normalizer alone calls these UTF-16; their NULs sit where no UTF-16 text has them.
    with pytest.raises(LoaderError, match="binary content"):
        decode_text(b"\x00\x01\x02 garbage")


def test_western_text_is_not_mistaken_for_another_code_page() -> None:
    french = "Le château est à côté de la forêt. Noël approche déjà. Ça va? Très bien."
    assert decode_text(french.encode("cp1252")) == french  # charset-normalizer alone says cp1250: è -> č


def test_a_huge_binary_file_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "disk.txt"
    with open(path, "wb") as fh:  # sparse: no disk is used
        fh.truncate(256 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(LoaderError, match="binary content"):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # the head, not the 256 MB


@pytest.fixture
def deadline():
    """``with deadline(s):`` raises TimeoutError after s seconds, so a quadratic loader fails instead of hanging."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def within(seconds: float):
        def expire(*_: object) -> None:
            raise TimeoutError(f"still running after {seconds} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return within


def test_deeply_nested_html_loads_in_linear_time(tmp_path: Path, deadline) -> None:
    # 30,000 nested divs: ~1 s now; editing the tree in place took ~100 s (339 s for 100,000).
    depth = 30_000
    html = "<div>" * depth + "<h2>Deep <span>down</span></h2><p>The <b>bottom</b> line.</p>" + "</div>" * depth
    (tmp_path / "deep.html").write_text(html, encoding="utf-8")
    with deadline(60):
        sections = load(tmp_path / "deep.html")
    assert [(s.heading, s.text) for s in sections] == [("Deep down", "## Deep down\n\nThe bottom line.")]


# ---------------------------------------------------------------- bytes in, read once (ingest hashes what it parses)


def test_load_parses_the_bytes_given_and_never_opens_the_path(tmp_path: Path, make_pdf, make_docx) -> None:
    import io

    made = {
        "a.txt": "Plain text.", "b.md": "# Title\n\nBody.", "c.html": "<h1>Head</h1><p>Para.</p>", "d.csv": "k,v\nx,1",
        "e.pdf": make_pdf(tmp_path / "e.pdf", ["A PDF page."]), "f.docx": make_docx(tmp_path / "f.docx", [("", "Docx.")]),
        "g.pptx": _pptx(tmp_path / "g.pptx"),
    }  # fmt: skip
    for name, what in made.items():
        path = tmp_path / name
        if isinstance(what, str):
            path.write_text(what, encoding="utf-8")
        expected, data = load(path), path.read_bytes()
        path.unlink()  # from bytes or a stream, the path only names the kind
        assert load(path, data=data) == expected != [], name
        assert load(path, data=io.BytesIO(data)) == expected, name


def test_a_bom_less_utf16_file_runs_charset_detection_once(tmp_path: Path, monkeypatch) -> None:
    import charset_normalizer

    calls = []
    real = charset_normalizer.from_bytes
    monkeypatch.setattr(charset_normalizer, "from_bytes", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = tmp_path / "windows.txt"
    path.write_bytes("Exported from Windows: caf\u00e9 au lait.".encode("utf-16-le"))
    assert [s.text for s in load(path)] == ["Exported from Windows: caf\u00e9 au lait."]
    assert len(calls) == 1  # was 2: once to refuse binary while reading, again to decode


def test_encoding_detection_is_its_own_module() -> None:
    from ingest import encoding, loaders

    assert loaders.decode_text is encoding.decode_text  # still importable from the loaders
    assert encoding.sniff_encoding("caf\u00e9 au lait".encode("cp1252")) == "cp1252"
    assert encoding.sniff_encoding("caf\u00e9".encode()) == "utf-8-sig"
    assert encoding.wide_codec(b"plain") is None and encoding.wide_codec("\ufeffx".encode("utf-16")) == "utf-16"
    with pytest.raises(LoaderError, match="binary content"):
        encoding.wide_codec(b"\x00\x01\x02 garbage")


def test_html_headings_take_their_words_from_the_same_walk(tmp_path: Path) -> None:
    # Pins the output of the one walk that replaced _html_strings: dropped elements, <br>, a nested heading.
    html = ("<h2>Big <script>x()</script><span>ri<b>ver</b></span><br>side <h3>inner</h3></h2>"
            "<p>Body <em>text</em>.</p><h3><style>s</style></h3><p>After.</p>")
    (tmp_path / "h.html").write_text(html, encoding="utf-8")
    assert [(s.heading, s.text) for s in load(tmp_path / "h.html")] == [
        ("Big ri ver side inner", "## Big ri ver side inner\n\nBody text.\n\nAfter.")]


def test_open_checked_refuses_a_link_a_fifo_another_file_and_a_way_out(tmp_path: Path) -> None:
    import os

    from ingest.loaders import open_checked

    docs, outside = tmp_path / "docs", tmp_path / "outside"
    (docs / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("hunter2", encoding="utf-8")
    (docs / "sub" / "notes.txt").write_text("notes", encoding="utf-8")
    (docs / "other.txt").write_text("other", encoding="utf-8")
    root = docs.resolve()
    seen = os.stat(docs / "sub" / "notes.txt")
    fh, st = open_checked(docs / "sub" / "notes.txt", within=root, expect=(seen.st_dev, seen.st_ino))
    with fh:
        assert fh.read() == b"notes" and st.st_size == 5

    def refused(path: Path, expect=None) -> str:
        with pytest.raises(LoaderError) as caught:
            open_checked(path, within=root, expect=expect)
        return str(caught.value)

    (docs / "link.txt").symlink_to(outside / "secret.txt")
    assert refused(docs / "link.txt") == "changed while being indexed (it is a link now); ingest again to index it"
    os.mkfifo(docs / "pipe.txt")  # opened without blocking, then refused
    assert refused(docs / "pipe.txt") == "changed while being indexed (it is no regular file now); ingest again to index it"
    assert refused(docs / "other.txt", expect=(seen.st_dev, seen.st_ino)) == (
        "changed while being indexed (another file is there now); ingest again to index it")
    (docs / "away").symlink_to(outside, target_is_directory=True)  # a folder on the way leads out
    assert refused(docs / "away" / "secret.txt") == (
        "changed while being indexed (it is outside the folder now); ingest again to index it")
    assert refused(docs / "missing.txt") == "cannot read file: No such file or directory"

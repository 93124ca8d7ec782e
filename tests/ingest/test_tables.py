"""Tables become rows that name their cells, the same in DOCX, HTML, Markdown and PPTX (issue #20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from filings import ROW_READS, revenue_docx, revenue_html, revenue_markdown
from ingest.loaders import load
from ingest.tables import markdown_tables, table_lines


@pytest.mark.parametrize(
    ("rows", "header", "lines"),
    [
        ([["Planet", "Moons"], ["Mars", "2"], ["Venus", "0"]], True, ["Planet: Mars | Moons: 2", "Planet: Venus | Moons: 0"]),
        ([["year", "revenue"], ["2024", "10"]], None, ["year: 2024 | revenue: 10"]),  # names over numbers: a header
        ([["", "2024", "2023"], ["Revenue", "245", "212"]], None, ["Revenue | 2024: 245 | 2023: 212"]),  # years head it
        ([["Capital", "Paris"], ["Language", "French"]], None, ["Capital | Paris", "Language | French"]),  # key-value
        ([["length", "1,230 km"]], None, ["length | 1,230 km"]),
        ([["Planet", "Moons"]], True, ["Planet | Moons"]),  # a header alone still says what the table holds
        ([["Name", "Note"], ["Ada", ""], ["", ""]], True, ["Name: Ada"]),  # empty cells and rows dropped
    ],
)
def test_table_lines(rows, header, lines) -> None:
    assert table_lines(rows, header=header) == lines


@pytest.mark.parametrize("name", ["segments.html", "segments.md", "segments.docx"])
def test_the_same_table_reads_the_same_in_each_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".docx"):
        revenue_docx(path)
    else:
        path.write_text(revenue_html() if name.endswith(".html") else revenue_markdown(), encoding="utf-8")
    [section, *_] = load(path)
    assert section.heading == "Segment results"
    rows = section.text.split("\n")[-3:]
    assert rows[1] == ROW_READS  # every row carries its headers; no pipes-only cells, no <b> or ** left
    assert all(line.startswith("Segment: ") for line in rows) and "<b>" not in section.text and "**" not in section.text


def test_markdown_headings_after_a_table_keep_exact_offsets(tmp_path: Path) -> None:
    text = revenue_markdown() + "\n```\n| a | b |\n|---|---|\n| 1 | 2 |\n```\n\n## # of shares\n\n| # of shares | Class |\n|--|--|\n| 7,434 | A |\n"
    (tmp_path / "r.md").write_text(text, encoding="utf-8")
    sections = load(tmp_path / "r.md")
    assert [s.heading for s in sections] == ["Segment results", "Segment results > Outlook", "Segment results > # of shares"]
    assert "| a | b |\n|---|---|\n| 1 | 2 |" in sections[1].text  # a table in a code fence stays as written
    assert sections[2].text == "## # of shares\n\n# of shares: 7,434 | Class: A"  # a row is never taken for a heading
    loaded, _ = markdown_tables(text)
    assert all(loaded[s.offset : s.offset + len(s.text)] == s.text for s in sections)


def test_markdown_without_a_table_is_not_parsed(tmp_path: Path, monkeypatch) -> None:
    import markdown_it

    monkeypatch.setattr(markdown_it, "MarkdownIt", None)  # would raise if called
    (tmp_path / "n.md").write_text("# Notes\n\nA | B is not a table.\n", encoding="utf-8")
    assert load(tmp_path / "n.md")[0].text == "# Notes\n\nA | B is not a table."


def test_html_tables_th_spans_and_nested_tables(tmp_path: Path) -> None:
    html = ("<h2>Shares</h2><table><tr><th>Class</th><th colspan='2'>Shares outstanding</th></tr>"
            "<tr><td>A</td><td>7,434</td><td>7,429</td></tr>"
            "<tr><td>B <table><tr><td>inner</td><td>cell</td></tr></table></td><td colspan='99999'>12</td></tr></table>")
    (tmp_path / "s.html").write_text(html, encoding="utf-8")
    [section] = load(tmp_path / "s.html")
    assert section.text.split("\n")[-2:] == [
        "Class: A | Shares outstanding: 7,434 | Shares outstanding: 7,429",
        "Class: B inner | cell | Shares outstanding: 12",  # the nested table is cells in its cell; a wild span is 1
    ]


def test_a_docx_merged_cell_is_written_once(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=3, cols=3)
    for j, name in enumerate(["Item", "Q1", "Q2"]):
        table.cell(0, j).text = name
    for i, row in enumerate([["Revenue", "10", "12"], ["Note", "unaudited", ""]], start=1):
        for j, cell in enumerate(row):
            table.cell(i, j).text = cell
    table.cell(2, 1).merge(table.cell(2, 2))
    document.save(str(tmp_path / "m.docx"))
    [section] = load(tmp_path / "m.docx")
    assert section.text == "Item: Revenue | Q1: 10 | Q2: 12\nItem: Note | Q1: unaudited"

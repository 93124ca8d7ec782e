"""PDF text that reads like the document (issue #20): cleanup, limits, encryption, scans."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from filings import TYPESET, TYPESET_READS, WORD_PER_LINE, WORD_PER_LINE_READS, bomb_page, chart_page, encrypted, pdf, text_ops
from ingest.loaders import load
from ingest.pdf import PDF_LIMITS, clean_page_text
from rag_app.errors import LoaderError


@pytest.mark.parametrize(
    ("raw", "reads"),
    [
        ("The informa-\ntion was clear.", "The information was clear."),  # typeset hyphenation
        ("a state-of-the-\nart model", "a state-of-the-art model"),  # a compound keeps its hyphens
        ("Non-\nGAAP and COVID-\n19 costs", "Non-GAAP and COVID-19 costs"),  # a capital or digit after: part of it
        ("a well-known fact, so well-\nknown", "a well-known fact, so well-known"),  # the page writes it hyphenated
        ("SECTION 4: OP-\nTIONAL TERMS", "SECTION 4: OPTIONAL TERMS"),  # a heading in capitals
        ("(OP-\nTIONAL)", "(OPTIONAL)"),  # the letters before the hyphen count, not the bracket
        ("COVID-\n19, STATE-OF-THE-\nART, X-\nRay", "COVID-19, STATE-OF-THE-ART, X-Ray"),  # digit, compound, case
        ("X-\nRAY and OP-\nTional", "X-RAY and OP-Tional"),  # one capital before, mixed case after: kept
        ("Non-GAAP measures\nNON-\nGAAP TABLE", "Non-GAAP measures\nNON-GAAP TABLE"),  # written in any case
        ("cross\u00ad\nborder", "crossborder"),  # a soft hyphen is never part of the word
        ("costs fell -\nrevenue rose", "costs fell -\nrevenue rose"),  # a dash, not a hyphen
        ("e\ufb03cient \ufb01nance \ufb02ows \ufb00 \ufb04", "efficient finance flows ff ffl"),
        ("\u00bd of H\u2082O at 5\u00b0C", "\u00bd of H\u2082O at 5\u00b0C"),  # other compatibility characters stay
        (WORD_PER_LINE, WORD_PER_LINE_READS),
        ("Total\nrevenue\nwas\n\nup.\n", "Total revenue was\n\nup."),  # runs end at a blank line
        ("Contents\nA first line of prose.\nYes\nNo", "Contents\nA first line of prose.\nYes\nNo"),  # short runs stay
        ("line one\r\nline two\rthree", "line one\nline two\nthree"),
    ],
)
def test_clean_page_text(raw: str, reads: str) -> None:
    assert clean_page_text(raw) == reads


def test_a_typeset_filing_reads_like_the_page_and_keeps_its_page_numbers(tmp_path: Path) -> None:
    path = tmp_path / "10q.pdf"
    path.write_bytes(pdf([text_ops(["Cover page."]), b"", text_ops(TYPESET, font="F2"), text_ops(WORD_PER_LINE.split("\n"))]))
    sections = load(path)
    assert [s.page for s in sections] == [1, 3, 4]  # the blank page 2 is left out, the numbers kept
    assert TYPESET_READS in " ".join(sections[1].text.split())
    assert "\ufb01" not in sections[1].text and "informa-" not in sections[1].text
    assert sections[2].text == WORD_PER_LINE_READS


def test_an_aes_pdf_with_an_empty_user_password_is_read(tmp_path: Path) -> None:
    path = tmp_path / "10k.pdf"
    path.write_bytes(encrypted(pdf([text_ops(["Net income was $21.9 billion."])]), user_password=""))
    assert [(s.page, s.text) for s in load(path)] == [(1, "Net income was $21.9 billion.")]


def test_a_pdf_that_needs_a_password_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted(pdf([text_ops(["Secret."])]), user_password="hunter2"))
    with pytest.raises(LoaderError, match=r"^encrypted: needs a password; save an unprotected copy"):
        load(path)


def test_an_aes_pdf_without_cryptography_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    from pypdf.errors import DependencyError

    def missing(*_a, **_k):
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr("pypdf._reader.PdfReader.decrypt", missing)
    path = tmp_path / "10k.pdf"
    path.write_bytes(encrypted(pdf([text_ops(["Text."])]), user_password=""))
    with pytest.raises(LoaderError, match=r"cryptography>=3.1 is required .*; pip install 'pypdf\[crypto\]'$"):
        load(path)


def test_a_scan_says_it_has_no_text_layer_and_no_ocr(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(pdf([b"q 612 0 0 792 0 0 cm /Im1 Do Q"] * 2, image=True))
    with pytest.raises(LoaderError, match=r"^scanned, no text \(OCR not installed\): 2 page\(s\) without a text layer"):
        load(path)


def test_a_decompression_bomb_stops_quickly_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"
    path.write_bytes(pdf([], raw_streams=[bomb_page(80)]))  # 80 KB that inflate past pypdf's 75 MB per stream
    tic = time.perf_counter()
    with pytest.raises(LoaderError) as caught:
        load(path)
    assert time.perf_counter() - tic < 20
    assert str(caught.value).startswith("over the PDF reader's safety limits (Limit reached while decompressing")
    assert "\n" not in str(caught.value)


def test_a_stream_past_the_raised_token_budget_still_stops(tmp_path: Path, monkeypatch) -> None:
    # The bound itself takes seconds to reach; a budget scaled down shows the same refusal.
    monkeypatch.setitem(PDF_LIMITS, "stream_parsing_work_maximum_count", 50_000)
    path = tmp_path / "chart.pdf"
    path.write_bytes(pdf([chart_page(60_000)]))
    with pytest.raises(LoaderError, match=r"^over the PDF reader's safety limits \(Reached maximum number of tokens"):
        load(path)
    monkeypatch.setitem(PDF_LIMITS, "stream_parsing_work_maximum_count", 70_000)
    assert "Cloud revenue by quarter" in load(path)[0].text


def test_the_raised_limits_are_pypdf_configuration_fields() -> None:
    import dataclasses

    from pypdf import Configuration

    defaults = {f.name: f.default for f in dataclasses.fields(Configuration)}
    assert all(name in defaults and value > defaults[name] for name, value in PDF_LIMITS.items())


@pytest.mark.slow
def test_a_dense_chart_page_past_pypdfs_default_budget_loads(tmp_path: Path) -> None:
    # pypdf's default budget is 2,000,000 tokens a stream: this page failed whole with LimitReachedError.
    path = tmp_path / "chart.pdf"
    path.write_bytes(pdf([text_ops(["Segment results."]), chart_page(2_100_000)]))
    assert [(s.page, s.text) for s in load(path)] == [
        (1, "Segment results."), (2, "Figure 3: Cloud revenue by quarter, in millions.")]

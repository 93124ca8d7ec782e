"""The two real PDFs of bench/real_corpus read like their pages (issue #20).

Made-up PDFs (filings.py) test each cleanup rule alone; these are documents
nobody here typeset, a TeX manual and a DocBook spec, so a rule that only
works on our own fixtures shows up here. Both files are in the repository.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from ingest.loaders import Section, load

DOCS = Path(__file__).resolve().parents[2] / "bench" / "real_corpus" / "docs"
LIGATURES = re.compile("[\ufb00-\ufb06]")


@cache  # each PDF is read once for all the tests
def _sections(name: str) -> list[Section]:
    return load(DOCS / name)


def _page(sections: list[Section], number: int) -> str:
    return next(s.text for s in sections if s.page == number)


def _longest_one_word_run(text: str) -> int:
    best = run = 0
    for line in text.split("\n"):
        run = run + 1 if len(line.split()) == 1 else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize(("name", "pages"), [("libtasn1.pdf", 36), ("shared-mime-info-spec.pdf", 17)])
def test_every_page_is_read_with_its_number_and_no_ligature_or_word_per_line_run(name: str, pages: int) -> None:
    sections = _sections(name)
    assert [s.page for s in sections] == list(range(1, pages + 1))
    for s in sections:
        assert not LIGATURES.search(s.text), (s.page, LIGATURES.findall(s.text))
        assert _longest_one_word_run(s.text) < 3, s.page


def test_the_manual_s_printed_folios_match_the_recorded_pages() -> None:
    sections = _sections("libtasn1.pdf")
    # the running head ("Chapter 2: ASN.1 structure handling 4") or the bare folio opens each page;
    # the printed numbering starts at PDF page 4 (after the title, copyright and contents pages)
    for s in sections[3:]:
        assert re.search(rf"(^|\s){s.page - 3}$", s.text.split("\n")[0]), (s.page, s.text[:60])


def test_the_spec_s_folio_ends_each_recorded_page() -> None:
    for s in _sections("shared-mime-info-spec.pdf"):
        assert s.text.split("\n")[-1] == str(s.page)


@pytest.mark.parametrize(
    ("name", "page", "reads"),
    [
        ("libtasn1.pdf", 2, "Distinguished Encoding Rules (DER) manipulation."),  # "manip-" / "ulation." joined
        ("libtasn1.pdf", 4, "parsing and structures management, and Distinguished Encoding Rules"),  # "man-" / "agement,"
        ("libtasn1.pdf", 7, "The header file of this library is libtasn1.h."),
        ("libtasn1.pdf", 7, "the maximum number of characters allowed for an ASN.1 identifier."),  # "iden-" / "tifier."
        ("shared-mime-info-spec.pdf", 1, "This is version 0.21 of the Shared MIME-info Database specification"),
        ("shared-mime-info-spec.pdf", 3, "Any file named Override.xml takes precedence over all other files"),
        ("shared-mime-info-spec.pdf", 8, "is written out into the globs2 file using __NOGLOBS__ as the pattern"),
    ],
)
def test_a_sentence_checked_by_hand_reads_whole_on_its_page(name: str, page: int, reads: str) -> None:
    assert reads in " ".join(_page(_sections(name), page).split())

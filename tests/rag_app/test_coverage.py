"""The question-coverage gate (rag_app.coverage): abstain without the model when the sources do not mention the question."""

from dataclasses import dataclass

import pytest

from rag_app.coverage import Coverage, question_coverage
from rag_app.support import SupportChecker


@dataclass
class Src:
    text: str
    location: str = "doc.txt"


PLAYS = Src("Henrik Ibsen wrote Brand in 1865. He was a Norwegian playwright and theatre director.")
OPERA = Src("Aida is an opera by Giuseppe Verdi, first performed in Cairo in 1871.")


def coverage(question, *sources):
    return question_coverage(SupportChecker(list(sources), question))


def test_terms_every_source_lacks_are_named_as_the_question_writes_them():
    c = coverage("Who composed Aschenbrodel, first performed in Vienna?", PLAYS, OPERA)
    assert c.missing == ["Aschenbrodel", "Vienna", "composed"]  # "first", "performed" are in source 2
    assert c.terms == 5 and c.share == pytest.approx(0.4)
    assert c.below(0.5)


def test_terms_found_as_stems_names_and_numbers_count_as_mentioned():
    assert coverage("Which Norwegian playwrights wrote Brand?", OPERA, PLAYS) == Coverage(1.0, 4, [])
    assert coverage("What happened in 1865?", PLAYS).missing == ["happened"]


def test_words_that_name_the_kind_of_answer_are_not_terms():
    """ "In which year" wants "1865", not the word: the share is 2 of 4, "year" is not counted (an irregular verb is missed)."""
    c = coverage("In which year did Ibsen write the play Brand?", PLAYS)
    assert c.terms == 4 and c.missing == ["write", "play"] and not c.below(0.5)


@pytest.mark.parametrize("question", [
    "Could you please tell me what the capital of Japan is?",  # manners
    "How long has Tokyo been the capital?",                     # "how long" asks
    "Which cities in Japan have more than 14 million residents?",  # "cities": the kind of answer
])
def test_the_askers_manners_and_words_that_ask_are_not_terms(question):
    c = coverage(question, Src("Tokyo is the capital of Japan. It has 14 million residents."))
    assert c.share == 1.0 and c.missing == []


def test_a_question_of_fewer_than_two_terms_is_never_gated():
    assert coverage("Why?", OPERA) == Coverage(1.0, 0, [])
    lone = coverage("Gluons?", OPERA)
    assert lone.terms == 1 and lone.share == 0.0 and not lone.below(0.5)


def test_min_coverage_outside_zero_to_one_is_refused():
    from rag_app.config import load_settings

    from rag_app.errors import ConfigError

    with pytest.raises(ConfigError, match="retrieve.min_coverage must be in \\[0, 1\\], got 1.5"):
        load_settings(retrieve={"min_coverage": 1.5})

"""Do the sources found mention what the question is about? If not, say "I don't know" without asking the model.

A question's gold document missing from the index looks, to the retriever,
like any other question: the five closest passages come back, often with a
good score, about a neighbouring topic. A 135M model then answers from them
anyway (fine-tuned: it abstains on some unseen domains and not others; the
abstain token's probability hardly tells the cases apart, docs/EVAL.md).
What does tell them apart on every kind of document measured is plainer:
whether the passages shown mention the question's own terms (its names,
numbers and content words, :func:`rag_app.claim_keys.question_content`). A
question about "Aschenbrodel" whose five passages never say "Aschenbrodel"
is one the documents do not answer.

:func:`question_coverage` is the share of those terms that some shown source
holds (word stems, names as adjacent words, numbers as numbers: the same
look-ups as the support check, :class:`rag_app.support.SupportChecker`).
The pipeline abstains without generating when it is under
``retrieve.min_coverage`` and tells the user which terms no source had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag_app.claim_keys import question_content
from rag_app.support import SupportChecker

#: Words that say what kind of answer is wanted ("in which year", "what kind of plane", "the country where",
#: "how many people"), not what the question is about: the source holds "1865" or "Norway", not the word.
#: Then the asker's manners ("could you please tell me"), and a few function words the support check's stop
#: list keeps (there a reply's "through" is its own). English only, like every stop list.
_NOT_TERMS = frozenset(
    "year years date dates day days month months time times kind kinds type types sort sorts name names named "
    "called term terms country countries city cities place places located location locations number numbers amount "
    "amounts people person persons "
    "please tell me my mine your yours our us you know explain describe give show want like need find list mention "
    "through during within without against among around upon via more most less least fewer".split()
)
#: The word after "how" asks ("how long", "how old", "how far"): never a term.
_HOW = re.compile(r"\bhow\s+([a-z]+)", re.I)

#: Fewer terms than this: the share says little ("Why?" has none, a one-word question 0 or 1), so no gate.
MIN_TERMS = 2


@dataclass(frozen=True)
class Coverage:
    """How much of the question the shown sources mention."""

    share: float  # of the question's terms, those some shown source holds (1.0 without terms)
    terms: int
    missing: list[str] = field(default_factory=list)  # terms no shown source holds (names as written, words folded)

    def below(self, minimum: float) -> bool:
        """Too little of the question is in the sources to answer it (never for a question of under MIN_TERMS terms)."""
        return self.terms >= MIN_TERMS and self.share < minimum


def question_coverage(checker: SupportChecker) -> Coverage:
    """The share of ``checker.question``'s terms that one of ``checker``'s sources holds."""
    facts, words = question_content(checker.question, checker.names)
    asking = {m.group(1).lower() for m in _HOW.finditer(checker.question)}
    terms = facts + [k for k in words if k.label.lower() not in _NOT_TERMS | asking]
    missing = [k.label for k in terms if not checker.anywhere(k)]
    share = 1.0 - len(missing) / len(terms) if terms else 1.0
    return Coverage(round(share, 4), len(terms), missing)

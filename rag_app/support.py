"""Does the cited source hold what the answer says? Check each cited claim's key content, re-cite or flag.

A ``[n]`` makes an answer look checked, but a 135M model copies numbers and
names from the wrong source, or writes one that no source has ("125M [1]"
where source 1 says 0.8M; "Grissom, White and Chaffee [1]" where the names
are in source 2). Before an answer is shown, every claim (the text before a
citation, back to the previous citation or sentence end) has its *key
content* (numbers, names and, for an answer span, its content words; what
counts is :mod:`rag_app.claim_keys`) looked up in the source it cites.

If the cited sources lack a key that other shown sources hold, the claim is
re-cited to them (the ``[n]`` in the shown text changes, recorded); if a key
is in no shown source, the claim is *unsupported*: the answer is shown with
a warning, not withheld, because a claim can also fail the check by
paraphrase (docs/EVAL.md measures how often each happens).

A claim that adds nothing to the question ("Yes [1]", "No, it does not
[2]", the question's own words back) is about the question's claim, so the
question's content (:func:`rag_app.claim_keys.question_content`) is what its
source must hold: the question's numbers and names (one that no shown
source has leaves the reply unsupported), and at least half of its content
words that tell the shown sources apart (a source with fewer is about
something else: re-cited to one with enough).
This catches "Yes [2]" citing the introduction when the page on comments
is source 1; it cannot catch "Yes [1]" where source 1 says "no".

For each supported claim, :class:`Evidence` names the source sentence that
holds most of its key content and where each key occurs, for the CLI's
``--show-evidence``, the JSON answer and the UI's highlighted source card.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag_app.claim_keys import (
    NAME_GAP, NUMBER, WORD, Key, adds_nothing, at_sentence_start, code_pattern, code_tokens, fold, key_content,
    normalise, number_key, question_content, stem_match,
)
from rag_app.prompts import CITATION, SourceLike

# key_content, question_content and Key are rag_app.claim_keys's, importable from here as before the split.
__all__ = ["Evidence", "Key", "clip", "Recited", "Support", "SupportChecker", "UnsupportedClaim", "key_content",
           "question_content"]

# A sentence ends at . ! ? before a space, or at a line end unless the next line goes on in lower case (a wrapped line).
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$)|\n(?=[ \t]*[a-z\u00df-\u00ff]))*(?:[.!?]+(?=\s|$)|\n|$)")
_BOUNDARY = re.compile(r"[.!?:;]+\s+|\n+")


def _cites(numbers: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, numbers)) + "]"


class _Source:
    """A source's text indexed for look-ups: numbers and words with their character spans."""

    def __init__(self, number: int, source: SourceLike) -> None:
        self.number, self.location, self.text = number, source.location, source.text
        self.numbers: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for m in NUMBER.finditer(fold(self.text)):
            key = number_key(m)
            self.numbers.setdefault(key, []).append((m.start(), m.end()))
            if key[1]:  # "125M" also holds the bare 125
                self.numbers.setdefault((key[0], ""), []).append((m.start(), m.end("dec") if m.group("dec") else m.end("int")))
        self.tokens = [(m.group(), m.start(), m.end()) for m in WORD.finditer(normalise(self.text))]
        self.words: dict[str, list[tuple[int, int]]] = {}
        for word, start, end in self.tokens:
            self.words.setdefault(word, []).append((start, end))
        # Names: words written with a capital where a capital is not the sentence's.
        self.names = {normalise(m.group()) for m in WORD.finditer(self.text)
                      if m.group()[0].isupper() and not at_sentence_start(self.text, m.start())}
        self.sentences = [(m.start(), m.end()) for m in _SENTENCE.finditer(self.text) if m.group().strip()]
        self._starts = [a for a, _ in self.sentences]
        self._found: dict[Key, list[tuple[int, int]]] = {}
        self._normalised: str | None = None

    def _word(self, word: str) -> list[tuple[int, int]]:
        return self.words.get(word) or [s for w, spans in self.words.items() if stem_match(word, w) for s in spans]

    def spans(self, key: Key) -> list[tuple[int, int]]:
        """Where ``key`` occurs in the text; empty when it does not (remembered: a streamed reply asks again per token)."""
        if key not in self._found:
            self._found[key] = self._look_up(key)
        return self._found[key]

    def _look_up(self, key: Key) -> list[tuple[int, int]]:
        if key.code is not None:
            if self._normalised is None:
                self._normalised = normalise(self.text)
            return [m.span() for m in code_pattern(key.code).finditer(self._normalised)]
        if key.number is not None:
            return self.numbers.get(key.number, [])
        if not key.adjacent or len(key.words) == 1:
            found = [self._word(w) for w in key.words]
            enough = sum(map(bool, found)) >= (key.quorum or len(key.words))
            return sorted(s for spans in found for s in spans) if enough else []
        out = []
        n = len(key.words)
        for i in range(len(self.tokens) - n + 1):
            run = self.tokens[i: i + n]
            if all(stem_match(w, t[0]) for w, t in zip(key.words, run)) and all(
                    NAME_GAP.fullmatch(self.text[a[2]: b[1]]) for a, b in zip(run, run[1:])):
                out.append((run[0][1], run[-1][2]))
        return out

    def sentences_of(self, key: Key) -> set[int]:
        """The indices of the sentences (of :attr:`sentences`) in which ``key`` occurs."""
        out = set()
        for start, _ in self.spans(key):
            i = bisect.bisect_right(self._starts, start) - 1
            if i >= 0 and start < self.sentences[i][1]:
                out.add(i)
        return out

    def sentence_of(self, spans: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """The sentence holding most of ``spans`` (the first such); the whole text if there are no sentences."""
        if not self.sentences:
            return 0, len(self.text)
        return max(self.sentences, key=lambda se: sum(1 for s, _ in spans if se[0] <= s < se[1]))


@dataclass(frozen=True)
class Evidence:
    """The sentence of source ``citation`` that supports a claim, as offsets into that source's text."""

    citation: int
    source: str  # the source's location, e.g. "report.pdf p. 3"
    claim: str
    sentence: str
    start: int
    end: int
    highlights: list[tuple[int, int]]  # the key content's spans in the source text


@dataclass(frozen=True)
class Recited:
    """A claim whose ``[n]`` was changed: its content is in ``to``, not (all) in ``cited``."""

    claim: str
    cited: list[int]
    to: list[int]
    asked: bool = False  # the claim adds nothing to the question ("Yes"): the question's content was looked up

    def note(self) -> str:
        where = "that source" if len(self.to) == 1 else "those sources"
        what = f"\"{self.claim}\" answers the question, and what it asks about" if self.asked else \
            f"what \"{self.claim}\" says"
        return f"cited {_cites(self.to)} instead of {_cites(self.cited)}: {what} is in {where}"


@dataclass(frozen=True)
class UnsupportedClaim:
    """A cited claim with key content that no shown source holds."""

    claim: str
    cited: list[int]
    missing: list[str]  # the key content no source has, as the claim (or, with ``asked``, the question) writes it
    asked: bool = False  # the claim adds nothing to the question ("Yes"): the question's content was looked up
    open_question: str = ""  # "which": a bare yes or no given to a question that asks for something else
    contradicted_by: str = ""  # the cited source's sentence on what was asked, which says the opposite
    far_from: list[str] = field(default_factory=list)  # what was asked that no cited passage holding the claim names
    apart: tuple[str, str] = ()  # a number and a name of the claim that the cited source never writes together
    echoes: bool = False  # with ``open_question``: the claim only gives back the code the question names

    def warning(self) -> str:
        if self.apart:
            number, name = self.apart
            return (f"\"{self.claim}\" (citing {_cites(self.cited)}): the source gives '{number}', but not where it "
                    f"writes '{name}': check it before relying on it")
        if self.far_from:
            asked = ", ".join(f"'{k}'" for k in self.far_from)
            return (f"\"{self.claim}\" is in {_cites(self.cited)}, but not where it speaks of {asked}, "
                    "which the question asks about: check it before relying on it")
        if self.contradicted_by:
            return (f"\"{self.claim}\" (citing {_cites(self.cited)}), but the cited source says: "
                    f"\"{clip(self.contradicted_by)}\": check it before relying on it")
        if self.open_question:
            echo = ", which the question names itself," if self.echoes else ""
            return (f"\"{self.claim}\" (citing {_cites(self.cited)}){echo} does not answer a "
                    f"\"{self.open_question}\" question: check it before relying on it")
        what = ", ".join(f"'{k}'" for k in self.missing)
        where = f"asked about; \"{self.claim}\" answers it" if self.asked else f"in \"{self.claim}\""
        return f"{what} ({where}, citing {_cites(self.cited)}) is in none of the sources shown: check it before relying on it"


@dataclass
class Support:
    """A reply after the check: the text to show (citations corrected) and what was found."""

    text: str
    evidence: list[Evidence] = field(default_factory=list)
    recited: list[Recited] = field(default_factory=list)
    unsupported: list[UnsupportedClaim] = field(default_factory=list)


@dataclass(frozen=True)
class _Claim:
    text: str
    start: int  # of the citation group in the reply
    end: int
    cited: list[int]
    opens: bool  # starts a sentence: a fragment after another group ("..., vs 125M [2]") is no answer span


def clip(text: str, width: int = 160) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis: a source sentence quoted in a warning."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "\u2026"


def _exact(keys: Sequence[Key]) -> bool:
    """Is the claim a number or a code-like token (`pyenv shell`, querystring.unescape(), --keep, PYTHON_BUILD_CACHE)?

    Those are copied, not paraphrased, so where they stand in the source
    says what they answer; a name or phrase may be the bridge of a
    two-step answer, or the source may phrase the question otherwise
    (docs/EVAL.md: the far check marked right names on xquad_en and MuSiQue).
    """
    return bool(keys) and (all(k.number is not None for k in keys) or any(k.code for k in keys))


def _has_content(text: str) -> bool:
    return bool(WORD.search(text) or re.search(r"\d", text))


def _claims(text: str) -> list[_Claim]:
    """Each citation group (``[1]``, ``[1][2]``, ``[1], [3]``) with the claim before it.

    The claim runs back to the previous group or the last sentence boundary,
    whichever is later; a group right after a sentence's end ("... 1967. [1]")
    cites that sentence.
    """
    groups: list[list[re.Match[str]]] = []
    for m in CITATION.finditer(text):
        if groups and not _has_content(text[groups[-1][-1].end(): m.start()]):
            groups[-1].append(m)
        else:
            groups.append([m])
    out: list[_Claim] = []
    prev = 0
    for group in groups:
        cuts = [prev, *(b.end() for b in _BOUNDARY.finditer(text, prev, group[0].start())), group[0].start()]
        pieces = [(a, b) for a, b in zip(cuts, cuts[1:]) if _has_content(text[a:b])]
        cited = list(dict.fromkeys(int(n) for m in group for n in m.group(1).split(",")))
        if pieces:
            a, b = pieces[-1]
            # a list's dash goes, an option's stays ("- --keep" is "--keep")
            claim, opens = re.sub(r"^-+\s+", "", text[a:b].strip(" \t\n,;:")).rstrip(" -"), a == 0 or a != prev
        else:
            claim, opens = (out[-1].text, out[-1].opens) if out else ("", True)
        out.append(_Claim(claim, group[0].start(), group[-1].end(), cited, opens))
        prev = group[-1].end()
    return out




class SupportChecker:
    """Checks replies against one question's shown sources (indexed once, so streaming can check as it goes).

    Args:
        sources: the sources shown, numbered from 1 (``Source.number`` when it has one).
        question: the question; its words are not key content.
    """

    def __init__(self, sources: Sequence[SourceLike], question: str = "") -> None:
        self.sources = {n: _Source(n, s) for n, s in
                        ((getattr(s, "number", i), s) for i, s in enumerate(sources, start=1))}
        self.question = question
        self.names = set().union(*(s.names for s in self.sources.values()))
        facts, words = question_content(question, self.names)
        self.asked = self._salient(facts, words)
        self.asks = _open_question(question)  # "which": a bare yes or no does not answer it
        self.terms = facts + words
        self._weight: dict[Key, float] | None = None
        self._hit: dict[int, list[set[Key]]] = {}
        self._window: dict[int, list[tuple[set[Key], float]]] = {}

    def _salient(self, facts: list[Key], words: list[Key]) -> list[Key]:
        """The question's keys a content-free reply's cited source must hold.

        Every number and name: one that no shown source writes leaves "Yes"
        unsupported. Of the content words, those that tell the shown sources
        apart (some hold them, not all), as one key a source holds with at
        least half of them: the source is about what was asked. A word no
        source has is the asker's wording, and one source lacking one word
        is a paraphrase, neither evidence against it (docs/EVAL.md measures
        how often a right answer was re-cited).
        """
        held = [k for k in words if 0 < sum(bool(s.spans(k)) for s in self.sources.values()) < len(self.sources)]
        about = Key(" ".join(k.label for k in held), words=tuple(w for k in held for w in k.words), adjacent=False,
                    quorum=(len(held) + 1) // 2)
        return facts + [about] if held and any(s.spans(about) for s in self.sources.values()) else facts

    def _echoes(self, claim: str) -> bool:
        """Does the claim name only code the question names ("package.json" to "Which package.json property ...?")?

        Measured on every reply of the day's runs to a which/what question
        (docs/EVAL.md): each such reply was wrong.
        """
        asked = {t.lower() for t, _, _ in code_tokens(self.question)}
        said = {t.lower() for t, _, _ in code_tokens(claim)}
        return bool(said) and said <= asked

    def anywhere(self, key: Key) -> bool:
        """Does some shown source hold ``key``?"""
        return any(s.spans(key) for s in self.sources.values())

    def _holds(self, number: int, keys: Sequence[Key]) -> set[Key]:
        src = self.sources.get(number)
        return {k for k in keys if src is not None and src.spans(k)}

    def check(self, text: str) -> Support:
        """The reply with each claim's citation moved to the sources that hold its key content, and what was found."""
        out, pieces, last = Support(text), [], 0
        bare, answered = [], False
        for claim in _claims(text):
            keys = key_content(claim.text, self.question, self.names, span=claim.opens)
            answered = answered or bool(keys)
            asked = not keys and adds_nothing(claim.text, self.question, self.names)
            if asked:  # "Yes [1]": the cited source must be about what the question asks
                # A denial ("No [1]" to "Is it in Lyon?") rightly cites a source without the question's names and
                # numbers: only its being about the question (the content-word key) is looked up.
                keys = [k for k in self.asked if k.quorum] if _denies(claim.text) else self.asked
                if self.asks and _decision(claim.text):  # "Yes" to "Which ...?": nothing to look up
                    bare.append(UnsupportedClaim(claim.text, claim.cited, [], True, self.asks))
                    keys = []
                elif self.asks and self._echoes(claim.text):  # "package.json" to "Which package.json property ...?"
                    bare.append(UnsupportedClaim(claim.text, claim.cited, [], True, self.asks, echoes=True))
                    keys = []
            shown = [n for n in claim.cited if n in self.sources]
            cited = claim.cited
            marked = len(out.unsupported)  # the checks below add a mark only to a claim not marked yet
            if keys and shown:  # a claim citing only missing sources is already flagged as an invalid citation
                cited = self._cover(claim, keys, shown, out, asked)
                far = self._far(keys, cited) if not asked and len(out.unsupported) == marked \
                    and _exact(keys) else []
                near = self._near_elsewhere(keys, cited) if far else []
                if near:  # another shown source gives it where it speaks of the question: cite that one
                    if out.recited and out.recited[-1].claim == claim.text:
                        out.recited.pop()
                    out.recited.append(Recited(claim.text, claim.cited, near))
                    cited = near
                elif far:
                    out.unsupported.append(UnsupportedClaim(claim.text, cited, [], far_from=far))
                apart = self._apart(keys, cited) if not asked and len(out.unsupported) == marked else ()
                if apart:
                    out.unsupported.append(UnsupportedClaim(claim.text, cited, [], apart=apart))
            if asked and not self.asks and _decision(claim.text) and len(out.unsupported) == marked:
                said = self._contradiction(claim.text, cited)
                if said:
                    out.unsupported.append(UnsupportedClaim(claim.text, cited, [], True, contradicted_by=said))
            if cited != claim.cited:
                pieces += [text[last: claim.start], _cites(cited)]
                last = claim.end
            out.evidence += self._evidence(claim.text, keys, cited)
        if not answered:  # "Yes [1]. The --check option does [1]." answers it after all
            out.unsupported += bare
        out.text = "".join([*pieces, text[last:]])
        return out

    def _cover(self, claim: _Claim, keys: list[Key], shown: list[int], out: Support, asked: bool = False) -> list[int]:
        """The citation the claim should carry: the cited sources that hold some of it plus the fewest others for the rest."""
        held = {n: self._holds(n, keys) for n in self.sources}
        missing = set(keys) - set().union(*held.values())
        if missing:
            out.unsupported.append(UnsupportedClaim(claim.text, claim.cited, [k.label for k in keys if k in missing], asked))
            return claim.cited
        need = set(keys) - set().union(*(held[n] for n in shown))
        if not need:
            return claim.cited
        cover = [n for n in shown if held[n]]
        while need:  # greedy set cover, best-ranked source first among equals
            best = max(sorted(self.sources), key=lambda n: len(held[n] & need))
            cover.append(best)
            need -= held[best]
        out.recited.append(Recited(claim.text, claim.cited, cover, asked))
        return cover

    def _weights(self) -> dict[Key, float]:
        """The question's words that a shown source holds, each weighing more the fewer hold it: log((N + 1) / held)."""
        if self._weight is None:
            held = {k: sum(bool(s.spans(k)) for s in self.sources.values()) for k in self.terms}
            self._weight = {k: math.log((len(self.sources) + 1) / n) for k, n in held.items() if n}
        return self._weight

    def _hits(self, src: _Source) -> list[set[Key]]:
        """For each sentence of ``src``: the question's words (of :meth:`_weights`) in it."""
        if src.number not in self._hit:
            hits: list[set[Key]] = [set() for _ in src.sentences]
            for k in self._weights():
                for i in src.sentences_of(k):
                    hits[i].add(k)
            self._hit[src.number] = hits
        return self._hit[src.number]

    def _windows(self, src: _Source) -> list[tuple[set[Key], float]]:
        """For each sentence of ``src``: the question's words in it and its neighbours (``_BEFORE``, ``_AFTER``), weighed."""
        if src.number not in self._window:
            weight, hits = self._weights(), self._hits(src)
            windows = [set().union(*hits[max(0, i - _BEFORE): i + 1 + _AFTER]) for i in range(len(hits))]
            self._window[src.number] = [(w, sum(weight[k] for k in w)) for w in windows]
        return self._window[src.number]

    def _far(self, keys: Sequence[Key], cited: Sequence[int]) -> list[str]:
        """What was asked that no cited passage holding the claim's content names ("operator", for gnats' uid 41).

        A short answer is often in the cited source, but where it answers
        something else: "41 [2]" to "What uid did the operator user have?"
        where source 2 gives gnats' uid 41 and, a paragraph up, operator's
        37. Each place a key occurs is read with its sentence, the two
        before and the one after; if none of them holds ``_ABOUT`` of the
        question's weight while every cited source does somewhere else (it
        speaks of what was asked, as it was asked, but not beside the
        claim), the claim is marked with the question's heaviest words
        missing there. A cited
        source that never speaks of what was asked is judged only for a
        number, where another shown source does, with another number beside
        it (operator's paragraph, with its 37, in another chunk); a name
        there may be the subject's, named elsewhere ("It killed the crew.":
        the fire is in another chunk). Returns [] when the claim is near.
        """
        weight = self._weights()
        if len(weight) < 2:
            return []
        need = sum(weight.values()) * _ABOUT
        best: tuple[float, set[Key]] = (-1.0, set())
        elsewhere: bool | None = None  # looked up once, the first time a cited source does not speak of the question
        for src in (self.sources[n] for n in cited if n in self.sources):
            windows = self._windows(src)
            if max((w for _, w in windows), default=0.0) < need:
                if elsewhere is None:
                    elsewhere = self._number_elsewhere(keys, cited, need)
                if not elsewhere:
                    return []  # the cited source does not speak of what was asked as it was asked: nothing to compare
            for key in keys:
                for i in src.sentences_of(key):
                    if windows[i][1] > best[0]:
                        best = (windows[i][1], windows[i][0])
        if best[0] < 0 or best[0] >= need:
            return []
        missing = sorted((k for k in weight if k not in best[1]), key=lambda k: -weight[k])
        return [k.label for k in missing if weight[k] >= weight[missing[0]] / 2][:3]

    def _near_elsewhere(self, keys: Sequence[Key], cited: Sequence[int]) -> list[int]:
        """The first uncited shown source holding every key where it speaks of what was asked, as [n]; else [].

        "1 [3]" to which exit code rustfmt gives with --check: source 3's "1"
        is "post-1.0"; source 1 says "with `--check` ... `1` if Rustfmt would
        make changes".
        """
        need = sum(self._weights().values()) * _ABOUT
        for src in (s for n, s in sorted(self.sources.items()) if n not in cited):
            windows = self._windows(src)
            near = {i for i, (_, w) in enumerate(windows) if w >= need}
            if near and all(src.sentences_of(k) & near for k in keys):
                return [src.number]
        return []

    def _apart(self, keys: Sequence[Key], cited: Sequence[int]) -> tuple[str, str]:
        """A number of the claim and a name of it that no cited source writes in one sentence; () when one does.

        "GNU Lesser General Public License version 3.0 [4]": source 4 says
        the library is under the Lesser GPL "version 2.1 or later", and in
        the next sentence that the tools are under the GPL "version 3.0": both
        pieces are there, joined wrongly. Judged only where one cited source
        holds every key (a claim may also draw on two sources).
        """
        numbers = [k for k in keys if k.number is not None]
        names = [k for k in keys if k.number is None and k.code is None and k.adjacent and k.words]
        if not numbers or not names:
            return ()
        judged = False
        for src in (self.sources[n] for n in cited if n in self.sources):
            if not all(src.spans(k) for k in (*numbers, *names)):
                continue
            judged = True
            where = {k: src.sentences_of(k) for k in (*numbers, *names)}
            if set.intersection(*where.values()):
                return ()
        if not judged:
            return ()
        return next(((n.label, m.label) for n in numbers for m in names if not where[n] & where[m]), ())

    def _number_elsewhere(self, keys: Sequence[Key], cited: Sequence[int], need: float) -> bool:
        """Does an uncited shown source speak of what was asked, with a number beside it other than the claim's?"""
        if not all(k.number is not None for k in keys):
            return False
        own = {k.number for k in keys} | {k.number for k in self.terms if k.number is not None}
        own |= {(value, "") for value, _ in own}
        for src in (s for n, s in self.sources.items() if n not in cited):
            near = [se for se, (_, w) in zip(src.sentences, self._windows(src)) if w >= need]
            if any(key not in own and a <= start < b for key, found in src.numbers.items() if key[1] == ""
                   for start, _ in found for a, b in near):
                return True
        return False

    def _contradiction(self, claim: str, cited: Sequence[int]) -> str:
        """The cited sources' sentence on what was asked, when it says the opposite of a bare "Yes"; else "".

        "Yes [1]" to "Is libffi completely thread-safe?" where source 1 says
        "libffi is not completely thread-safe": the cited sentence holding
        most of the question's words is negated while the question is not.
        Each word weighs by how few shown sources hold it (a manual's
        "ASN.1" on every page tells no sentence apart); the sentence needs
        two of them and 0.4 of the weight the cited sources hold (not of
        all: the asker's own example, "such as a user's preferred
        application", may be in another source only), and where cited sentences tie, all
        must be negated (near the question's words: :func:`_negates`). Only
        "Yes" is checked: a "No" is often right where the source just says
        something else.
        """
        weight = self._weights()
        if _denies(claim) or _NEGATED.search(self.question) or len(weight) < 2:
            return ""
        scored = [(sum(weight[k] for k in hit), src, start, end, hit)
                  for src in (self.sources[n] for n in cited if n in self.sources)
                  for (start, end), hit in zip(src.sentences, self._hits(src)) if len(hit) >= 2]
        top = max((w for w, *_ in scored), default=0.0)
        held = sum(w for k, w in weight.items()
                   if any(self.sources[n].spans(k) for n in cited if n in self.sources))
        if top < held * _ABOUT:
            return ""
        best = [(src.text[start:end].strip(), _negates(src.text, start, end,
                                                      [s for k in hit for s in src.spans(k) if start <= s[0] < end]))
                for w, src, start, end, hit in scored if w >= top - 1e-9]
        return best[0][0] if all(negated for _, negated in best) else ""

    def _evidence(self, claim: str, keys: list[Key], cited: list[int]) -> list[Evidence]:
        found = []
        for n in cited:
            src = self.sources.get(n)
            spans = sorted(s for k in keys for s in (src.spans(k) if src else []))
            if not spans:
                continue
            start, end = src.sentence_of(spans)
            sentence = src.text[start:end]
            lead = len(sentence) - len(sentence.lstrip())
            sentence = sentence.strip()
            start += lead
            end = start + len(sentence)
            found.append(Evidence(n, src.location, claim, sentence, start, end,
                                  [s for s in spans if start <= s[0] < end] or spans[:1]))
        return found

    def settled(self, text: str) -> str:
        """The part of a reply still being generated that is checked already, with its citations corrected.

        Text before the last citation group is final: later tokens can neither
        change its claims nor join its group. A group at the very end waits for
        a word after it (``[1]`` may still become ``[1][2]``).
        """
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:]:
            text = text[:cut]
        groups = _claims(text)
        if groups and not _has_content(text[groups[-1].end:]):
            text = text[: groups[-1].start]
        return self.check(text).text


_BEFORE = 2  # sentences before an answer that may name what it answers ("maxKeys ... Specify 0 ... Default: 1000.")
_AFTER = 1  # and after it ("Its uid is 37. That is the operator user.")
_ABOUT = 0.4  # share of the question words' weight a sentence must hold to be about what was asked
_NOT = frozenset({"no", "not", "never", "none", "neither", "nor"})
# Negation in a source sentence or a question: "not", "no longer", "doesn't", "cannot", "never".
_NEGATED = re.compile(rf"\b(?:{'|'.join(sorted(_NOT | {'cannot'}))})\b|\w*n['\u2019]t\b", re.I)
_CLAUSE = re.compile(r"[,;:()]|\b(?:but|while|whereas|although|though|however|except|unless)\b", re.I)


def _negates(text: str, start: int, end: int, spans: Sequence[tuple[int, int]], reach: int = 3) -> bool:
    """Is what was asked negated in ``text[start:end]``: a negation followed, within ``reach`` words of its clause,
    by one of ``spans`` (the question's words)?

    "comments are not supported", "does NOT store user preferences",
    "should, *emphatically*, not be enabled"; not "supported on Linux but
    not on Windows" (what the "not" negates was not asked), "not only",
    the "whether or not" of a study's aim, or "No. 5".
    """
    sentence = text[start:end]
    words = [m.span() for m in re.finditer(r"[\w'\u2019-]+", sentence)]
    asked = {i for i, (a, b) in enumerate(words) for s, e in spans if a + start < e and s < b + start}
    for i, (a, b) in enumerate(words):
        word, after = sentence[a:b], sentence[b:]
        if not _NEGATED.fullmatch(word) or re.search(r"\bor\s+$", sentence[:a]) or re.match(r"\s+only\b", after, re.I) \
                or (word.lower() == "no" and re.match(r"\.\s*\d", after)):
            continue
        for j in range(i + 1, min(len(words), i + 1 + reach)):
            if _CLAUSE.search(sentence[b: words[j][0]]):
                break
            if j in asked:
                return True
    return False


_NEGATIONS = _NOT | {"false", "incorrect"}  # a reply's denial: "No, that is incorrect [1]"


def _denies(claim: str) -> bool:
    """Does a content-free claim deny the question's premise? Then its source need not hold the question's names."""
    words = re.findall(r"[a-z']+", claim.lower())
    return any(w in _NEGATIONS or w.endswith("n't") for w in words)


_OPEN_WORDS = frozenset({"which", "what", "who", "whom", "whose", "when", "where", "why", "how"})
_PREPOSITIONS = frozenset("on in at under with by for from to of into over through during after before since "
                          "until against between among within without about".split())


# "When the cache is full, is ...?", "What about libffi: is it ...?": a yes/no question after an opening clause.
_CLOSED_AFTER_CLAUSE = re.compile(r"[,:;]\s*(?:is|are|was|were|do|does|did|can|could|should|will|would|has|have|had)\b"
                                  r"|\byes or no\b|^\s*(?:what if|what about|how about)\b", re.I)


def _open_question(question: str) -> str:
    """The question word of a question that asks for something other than yes or no ("which"), else ""."""
    if _CLOSED_AFTER_CLAUSE.search(question):
        return ""
    words = re.findall(r"[a-z]+", question.lower())
    if words[:1] and words[0] in _OPEN_WORDS:  # "Which ..."
        return words[0]
    if not words or words[0] not in _PREPOSITIONS:
        return ""
    # "On which platform ...", "With --check, which exit code ..."
    after_clause = re.match(r"[^,?]*,\s*([a-z]+)", question.lower())
    for word in (words[1:2], [after_clause.group(1)] if after_clause else []):
        if word and word[0] in _OPEN_WORDS:
            return word[0]
    return ""


def _decision(claim: str) -> bool:
    """Is the claim a bare yes or no ("Yes", "No, it does not"), not "No option stores them"?"""
    return bool(re.match(r"\s*(?:yes|no)\s*(?:[,.;:!\[(]|$)", claim, re.I))

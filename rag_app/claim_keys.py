"""What a cited claim says that its source must hold: its *key content* (numbers, names, answer words).

:mod:`rag_app.support` looks each claim's key content up in the source it
cites; this module says what that content is. Key content is:

* numbers, with a magnitude or percent suffix when it has one (``0.8M``,
  ``125 M``, ``12.5%``, ``13,527``): the same value and suffix must occur;
* capitalised words not at a sentence start (names, places, ``NASA``);
* code-like tokens (``libtasn1.h``, ``PYTHON_BUILD_CACHE_PATH``,
  ``querystring.unescape()``, ``--keep``, a backticked token): copied, not
  paraphrased, so the source must write the token whole, not just its words;
* for a short claim (a few words, the answer span itself), its content words.

Words the question already has are not key content: they are what was
asked, not what the answer adds. Matching ignores case, unicode dashes and
spaces, thousands separators and the space in ``0.8 M``; a word also matches
a longer or shorter form sharing its stem (``island``/``islands``).

A claim that adds nothing to the question ("Yes [1]", "No, it does not
[2]", the question's own words back) is about the question's claim, so
:func:`question_content` gives the question's numbers, names and content
words instead. Numbers and capitals work in any language that writes them;
the stop words are English.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

SHORT_CLAIM_WORDS = 5  # up to this many words, a claim is an answer span: its content words are checked
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u2009\u202f"), "\u2009")  # kept apart: they may group thousands
WORD = re.compile(r"[^\W\d_]+")
NUMBER = re.compile(
    r"(?<![\d.,])(?P<int>\d{1,3}(?:(?P<sep>[,.'\u2009])\d{3})(?:(?P=sep)\d{3})*(?!\d)|\d+)"
    r"(?:[.,](?P<dec>\d+))?(?!\d)"
    r"(?:\s?(?P<suf>%|‰|(?i:percent|per cent|thousand|million|billion|trillion|bn)\b|[kKMBT](?![^\W\d_])))?"
)
_SUFFIX = {"percent": "%", "per cent": "%", "thousand": "k", "million": "m", "billion": "b", "trillion": "t", "bn": "b"}
NAME_GAP = re.compile(r"[\s'’.-]{1,3}")  # between the words of one name: "Walt Disney", "Jean-Luc", "O'Brien"
_OPENERS = " \t\"'“‘(«*•-"
# Words a short answer needs no source for ("Yes, it does"); English only, like any stop list.
_STOP = frozenset(
    "a an and are as at be been but by did do does for from had has have he her his i if in into is it its no not "
    "of on or she so than that the their them then there these they this those to was we were which who with yes "
    "maybe you also only about after before over under between both each".split()
)
# Words that ask, not say: never what a source must hold for the question's claim. Kept out of _STOP ("many island").
_ASKING = frozenset("what when where why how whom whose whether should would could can will shall may might must "
                    "many much".split())


def fold(text: str) -> str:
    """ASCII hyphens and one kind of narrow space, one character per character, so offsets carry over."""
    return text.translate(_DASHES).translate(_SPACES)


def normalise(text: str) -> str:
    """:func:`fold`, lower case (where that keeps one character)."""
    return fold("".join(c.lower() if len(c.lower()) == 1 else c for c in text))


def at_sentence_start(text: str, pos: int) -> bool:
    """Does the word at ``pos`` start a sentence, a line or a list item (so its capital says nothing)?"""
    while pos > 0 and text[pos - 1] in _OPENERS:
        pos -= 1
    return pos == 0 or text[pos - 1] in ".!?:;\n"


def number_key(m: re.Match[str]) -> tuple[str, str]:
    """``("125", "m")`` for 125M, ``("13527", "")`` for 13,527, ``("0.8", "m")`` for 0,8 M."""
    whole = re.sub(r"[,.'\u2009]", "", m.group("int")).lstrip("0") or "0"
    dec = (m.group("dec") or "").rstrip("0")
    suffix = (m.group("suf") or "").lower()
    return (f"{whole}.{dec}" if dec else whole), _SUFFIX.get(suffix, suffix)


def stem_match(word: str, other: str) -> bool:
    """Is ``other`` ``word`` or a form of it a letter or two longer or shorter (``island``/``islands``)?"""
    if word == other:
        return True
    short, long_ = sorted((word, other), key=len)
    return len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 2


@dataclass(frozen=True)
class Key:
    """One piece of a claim's content that a source must hold.

    A number; a name (its words next to each other: "Mary Pole" is not
    backed by "Mary Stanley ... Ursula Pole"); or a short answer span (its
    content words anywhere in one source).
    """

    label: str  # as the claim (or, for a claim adding nothing, the question) writes it
    number: tuple[str, str] | None = None
    words: tuple[str, ...] = ()
    adjacent: bool = True
    quorum: int = 0  # of ``words`` (not adjacent), how many a source must hold; 0: all
    code: str | None = None  # a code-like token the source must write whole (case aside)


def _content(claim: str, question: str, names: Collection[str]) -> tuple[list[Key], list[re.Match[str]], int]:
    """A claim's numbers and names as keys, its content words (matches in ``claim``) and its length in words.

    Content words are words of two letters or more that are neither stop
    words nor the question's (nor part of a number: "million" of "125 million").
    """
    asked = set(WORD.findall(normalise(question)))
    asked_numbers = {number_key(m) for m in NUMBER.finditer(fold(question))}
    # A list item's ordinal ("1. [1] ...", "2) ...") numbers the list, it claims nothing.
    numbers = [m for m in NUMBER.finditer(fold(claim))
               if not (len(m.group()) <= 2 and at_sentence_start(claim, m.start())
                       and re.match(r"[.)](?:\s|$)", claim[m.end():]))]
    keys = [Key(claim[m.start(): m.end()].strip(), number=number_key(m)) for m in numbers
            if number_key(m) not in asked_numbers and (number_key(m)[0], "") not in asked_numbers]
    in_numbers = [range(m.start(), m.end()) for m in numbers]
    words = [m for m in WORD.finditer(claim) if not any(m.start() in r for r in in_numbers)]
    candidates = [m for m in words if len(m.group()) > 1 and normalise(m.group()) not in asked]
    run: list[re.Match[str]] = []
    for m in [*words, None]:  # a name is a run of capitalised words with only spaces (or a hyphen) between
        is_name = m is not None and m in candidates and m.group()[0].isupper() and (
            not at_sentence_start(claim, m.start()) or normalise(m.group()) in names)
        if run and (not is_name or not NAME_GAP.fullmatch(claim[run[-1].end(): m.start()])):
            keys.append(Key(claim[run[0].start(): run[-1].end()], words=tuple(normalise(x.group()) for x in run)))
            run = []
        if is_name:
            run.append(m)
    content = [m for m in candidates if normalise(m.group()) not in _STOP]
    return keys, content, len(words) + len(numbers)


_EXT = "h|c|cc|cpp|hpp|py|js|mjs|ts|json|toml|ya?ml|xml|md|txt|sh|cfg|ini|conf|html?|css|rs|go|java|rb|lock|csv|log"
_FILE = re.compile(rf"[\w-]+\.(?:{_EXT})", re.IGNORECASE)
_OPTION = re.compile(r"--?[A-Za-z][\w-]*")
_DOTTED = re.compile(r"[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+")  # querystring.unescape, os.path.join; not U.S. or e.g.
_OPEN, _PUNCT, _CLOSE = "\"'“‘([{<*`", "\"'”’,.;:!?`", ")]}>*"


def code_tokens(text: str) -> list[tuple[str, int, int]]:
    """The code-like tokens of ``text`` with their spans: file names, snake_case and ENV_NAMES, dotted names,
    calls, options, and any one backticked token that is not a bare number.

    A call's ``()`` is dropped (the source may write ``f(str)``), and so is the
    punctuation around a token.
    """
    out = []
    for m in re.finditer(r"\S+", text):
        raw = m.group()
        ticked = raw.startswith("`") and raw.rstrip(_PUNCT[:-1]).endswith("`")
        lead = len(raw) - len(raw.lstrip(_OPEN))
        token = raw[lead:].rstrip(_PUNCT)
        call = token.endswith("()")
        token = token[:-2] if call else token.rstrip(_CLOSE + _PUNCT)
        if "`" in token or not re.search(r"[^\W\d_]", token):  # `a`b is not one token; a number is no code
            continue
        if ticked or call or "_" in token or any(p.fullmatch(token) for p in (_FILE, _OPTION, _DOTTED)):
            out.append((token, m.start() + lead, m.start() + lead + len(token)))
    return out


def key_content(claim: str, question: str = "", names: Collection[str] = (), span: bool = True) -> list[Key]:
    """What a source must hold for ``claim`` to be backed by it (see the module docstring).

    Args:
        claim: the text a citation group backs.
        question: its words and numbers are not key content.
        names: lower-cased words the sources write as names; a capitalised
            word at a sentence start is a name only if it is one of them.
        span: a short claim is an answer span, whose content words count.
    """
    asked = normalise(question)
    codes = [(t, a, b) for t, a, b in code_tokens(claim) if not _written_in(normalise(t), asked)]
    for _, a, b in codes:  # the token whole is the check: its digits and words are not numbers and names of their own
        claim = claim[:a] + " " * (b - a) + claim[b:]
    keys, content, length = _content(claim, question, names)
    keys += [Key(t, code=normalise(t)) for t, _, _ in codes]
    # No number or name to check: a short claim is the answer span itself, checked by its content words.
    if not keys and content and span and length <= SHORT_CLAIM_WORDS:
        keys = [Key(" ".join(m.group() for m in content), words=tuple(normalise(m.group()) for m in content),
                    adjacent=False)]
    return list(dict.fromkeys(keys))


def code_pattern(token: str) -> re.Pattern[str]:
    """Where :func:`normalise`-d text writes ``token`` whole: not inside a longer name or option."""
    return re.compile(rf"(?<![\w-]){re.escape(token)}(?![\w-])")


def _written_in(token: str, text: str) -> bool:
    return bool(code_pattern(token).search(text))


def _titled(text: str) -> bool:
    """Is ``text`` written as a title ("Is Acupuncture Efficacious for Treating Vocal Pathologies?") or in capitals?

    Four or more words of four letters or more after the first, all
    capitalised: a question with names has some lower-case words between
    them ("Was Abraham Lincoln the sixteenth President?").
    """
    long_words = [w for w in WORD.findall(text)[1:] if len(w) > 3]
    return len(long_words) >= 4 and all(w[0].isupper() for w in long_words)


def question_content(question: str, names: Collection[str] = ()) -> tuple[list[Key], list[Key]]:
    """What a reply that adds nothing to the question claims ("Yes [1]" to "Is libffi thread-safe?"): the question's content.

    Returns:
        The question's numbers and names, and its content words, one key
        each (a question is too long to be one answer span); words that ask
        ("which", "should", "how many") are not content.
    """
    keys, content, _ = _content(question, "", names)
    if _titled(question):  # its capitals name nothing
        keys = [k for k in keys if k.number is not None]
    # "How" opening the question is no name, even where a source writes "How" mid-sentence (a title); "May" later is
    opening = [normalise(w) for w in question.split()[:1]]
    keys = [k for k in keys if k.number is not None or not (set(k.words) <= _ASKING and k.words[:1] == tuple(opening))]
    in_keys = {w for k in keys for w in k.words}
    words = [w for w in dict.fromkeys(normalise(m.group()) for m in content) if w not in _ASKING and w not in in_keys]
    return list(dict.fromkeys(keys)), [Key(w, words=(w,)) for w in words]


def adds_nothing(claim: str, question: str = "", names: Collection[str] = ()) -> bool:
    """Has the claim no number, name or content word the question lacks ("Yes", "No, it does not", an echo)?

    Such a claim is about the question's claim: its source must hold :func:`question_content` instead.
    """
    keys, content, _ = _content(claim, question, names)
    return not keys and not content

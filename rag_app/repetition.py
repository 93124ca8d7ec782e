"""Stop a reply that loops: one span said over and over, or a document's reference numbers copied one after another.

Why: under greedy decoding a small model, above all without the adapter, can
fall into a cycle. Asked about a paper that carries its own reference
numbers, it copies them as citations (``[2] (20) (21) (22) ...``) or says one
sentence again and again, to ``max_new_tokens``: the user waits for the token
cap and reads noise. Both backends feed every generated id to a
:class:`RepetitionGuard` (a transformers ``StoppingCriteria``, a llama.cpp
``stopping_criteria``), so they stop at the same point without spending
another token, and the repeated tail is left out of the answer
(:func:`without_loop`). Generation cannot take back pieces already streamed,
so the generator reports how much of the streamed text repeats and the caller
drops it.

Three rules, each set well away from what an answer does (no dataset tuned them):

* **repeat**: the last ``min_tokens`` (16) or more tokens repeat, verbatim,
  the span of at most ``max_period`` (64) tokens right before them. Answers
  repeat short spans (a doubled word, "No, no", a few zeros in a table row, a
  Markdown rule) and quote a sentence before answering with it, but they do
  not say 16 tokens twice in a row: a long sentence said a second time, or a
  short phrase five times. A span longer than 16 tokens must come round whole
  once more. The first copy is kept, the rest cut.
* **numbered repeat**: a span that comes round whole twice more, its numbers
  aside, and holds at least ``min_tokens`` other tokens, words among them: a
  numbered list whose items say the same ("3. Beijerinck (1935). The
  structure of ... 4. Beijerinck (1935). The structure of ..."). Three copies,
  not two, and words required, because answers do list figures in one
  template ("In 2019 there were 12 cases [1]. In 2020 ..."), and a table row
  of numbers has no words. Cut after the first copy.
* **markers**: more than ``max_markers`` (6) bracketed numbers in a row,
  ``[30] [31] [32]`` or ``(30) (31)`` (the prompt rewrites a document's own
  markers as ``(30)``, :func:`rag_app.prompts.neutralise_markers`), with only
  spaces and punctuation between them. A reply is shown five sources by default
  (``retrieve.top_k``) and backs a statement with one or two: seven numbers
  in a row is a reference list being copied, not citing. The whole run is cut.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rag_app.abstain import FirstToken

log = logging.getLogger(__name__)

MIN_TOKENS = 16  # a verbatim repeat this long is a loop (see the module docstring)
MAX_PERIOD = 64  # longest repeating span looked for: a long sentence; each token costs O(MAX_PERIOD)
MAX_MARKERS = 6  # more bracketed numbers in a row than a reply cites

_DIGITS = frozenset("0123456789")
_BRACKETS = {"[": "]", "(": ")"}  # a marker's opening bracket -> its closing one
_INSIDE = frozenset(" ,;-\u2013")  # between the numbers of one marker: [3, 4], [1-3]
_BETWEEN = frozenset(" \t\n,;.:-\u2013\u2026")  # between two markers: "[30], [31] … [59]"
_SENTENCE_END = (".", "!", "?", ":")
_NUMBER = -1  # the key of every token of digits, for the numbered repeat


@dataclass(frozen=True)
class Loop:
    """Where a reply started to loop.

    Attributes:
        reason: ``repeat`` (a span said again), ``numbered repeat`` (the same but for its numbers)
            or ``markers`` (a run of reference numbers).
        start: index, in the reply's token ids, of the first token of the loop; ``ids[:start]`` are kept.
        offset: characters of token ``start`` that come before the loop and are kept
            (a marker run can begin inside a token, as in ``"TMV("``).
        tokens: reply tokens seen when the loop was found.
    """

    reason: Literal["repeat", "numbered repeat", "markers"]
    start: int
    offset: int
    tokens: int


class RepetitionGuard:
    """Fed a reply's token ids one at a time; finds the first :class:`Loop` (O(``max_period``) a token).

    Args:
        piece: the text of one token id (:func:`token_pieces`), to read brackets and digits.
        min_tokens, max_period, max_markers: the rules' limits (module docstring).

    Example::

        guard = RepetitionGuard(token_pieces(tokenizer))
        for token in reply_ids:
            if guard.feed(token):
                break
        kept = reply_ids[: guard.loop.start] if guard.loop else reply_ids
    """

    def __init__(self, piece: Callable[[int], str], min_tokens: int = MIN_TOKENS, max_period: int = MAX_PERIOD,
                 max_markers: int = MAX_MARKERS) -> None:
        self.piece = piece
        self.min_tokens = min_tokens
        self.max_period = max_period
        self.max_markers = max_markers
        self.ids: list[int] = []
        self.loop: Loop | None = None
        self._run = [0] * (max_period + 1)  # _run[p]: trailing tokens equal to the token p before them
        self._alike = [0] * (max_period + 1)  # the same, any number token equal to any other
        self._keys: list[int] = []  # each id, or _NUMBER for a token of digits
        self._words = [0]  # _words[i]: tokens before i that are not numbers
        self._letters = [0]  # _letters[i]: tokens before i with a letter
        self._reset_markers()

    def feed(self, token: int) -> Loop | None:
        """Add the next reply token; the loop once found (then every later call returns it unchanged)."""
        if self.loop is None:
            self.ids.append(token)
            self.loop = self._repeat() or self._markers(self.piece(token))
            if self.loop is not None:
                log.info("stopped a reply that loops (%s) after %d tokens: %d kept",
                         self.loop.reason, self.loop.tokens, self.loop.start)
        return self.loop

    def extend(self, tokens: Iterable[int]) -> Loop | None:
        """:meth:`feed` each of ``tokens`` until a loop is found."""
        for token in tokens:
            if self.feed(token):
                break
        return self.loop

    def repeated_chars(self, decode: Callable[[Sequence[int]], str]) -> int:
        """How many trailing characters of ``decode(ids seen)`` belong to the loop (0: no loop).

        ``decode`` is the backend's own detokenizer, so the count matches the
        text it streamed.
        """
        if self.loop is None:
            return 0
        kept = len(decode(self.ids[: self.loop.start])) + self.loop.offset
        return max(0, len(decode(self.ids)) - kept)

    def _repeat(self) -> Loop | None:
        ids, keys, run, alike, i = self.ids, self._keys, self._run, self._alike, len(self.ids) - 1
        token, text = ids[i], self.piece(ids[i])
        number = text.strip().isdigit()
        keys.append(_NUMBER if number else token)
        self._words.append(self._words[-1] + (not number))
        self._letters.append(self._letters[-1] + any(c.isalpha() for c in text))
        for p in range(1, min(self.max_period, i) + 1):  # the smallest period trips first: the loop's own span
            run[p] = run[p] + 1 if ids[i - p] == token else 0
            alike[p] = alike[p] + 1 if keys[i - p] == keys[-1] else 0
            if run[p] >= max(self.min_tokens, p):
                return Loop("repeat", start=self._loop_start(i + 1 - run[p], p), offset=0, tokens=i + 1)
            if (alike[p] >= 2 * p and self._words[i + 1] - self._words[i + 1 - p] >= self.min_tokens
                    and self._letters[i + 1] > self._letters[i + 1 - p]):
                return Loop("numbered repeat", start=self._loop_start(i + 1 - alike[p], p), offset=0, tokens=i + 1)
        return None

    def _loop_start(self, start: int, period: int) -> int:
        """Where to cut a repeat of ``period`` tokens whose copy begins at ``start``.

        Any rotation of the span is a copy of it; cut where the kept text reads
        whole. Back over tokens that differ from their first copy only by
        spacing ("Paris. The capital" says "The" again as " The"), then, if
        the kept text does not end a line or a sentence, forward to the first
        line end within one span (list items are lines; "A.V." is no sentence
        end), else to the first sentence end (". It is large" repeats from
        its ".", but the reply said "It is large." first).
        """
        ids, piece = self.ids, self.piece
        for _ in range(period):
            if start <= period or piece(ids[start - 1]).strip() != piece(ids[start - 1 - period]).strip():
                break
            start -= 1
        if piece(ids[start - 1]).endswith("\n"):
            return start
        ahead = range(start, min(start + period - 1, len(ids)))
        line = next((i + 1 for i in ahead if "\n" in piece(ids[i])), None)
        if line is not None:
            return line
        last = next((piece(t).strip() for t in reversed(ids[:start]) if piece(t).strip()), "")
        if not last.endswith(_SENTENCE_END):
            return next((i + 1 for i in ahead if piece(ids[i]).rstrip().endswith(_SENTENCE_END)), start)
        return start

    def _reset_markers(self) -> None:
        self._count = 0  # numbers in the run's closed markers
        self._group: int | None = None  # numbers in the open marker; None: no bracket open
        self._in_number = False
        self._start: tuple[int, int] | None = None  # (token, character) of the run's first bracket
        self._shape = ""  # the run's opening bracket: "[2] (20) (21)" keeps the citation [2]

    def _markers(self, text: str) -> Loop | None:
        token = len(self.ids) - 1
        for pos, c in enumerate(text):
            if self._group is not None:  # inside a bracket
                if c in _DIGITS:
                    if not self._in_number:
                        self._group += 1
                        self._in_number = True
                        if self._count + self._group > self.max_markers:
                            assert self._start is not None
                            return Loop("markers", start=self._start[0], offset=self._start[1], tokens=token + 1)
                    continue
                if c in _INSIDE:
                    self._in_number = False
                    continue
                if c == _BRACKETS[self._shape] and self._group:
                    self._count += self._group
                    self._group, self._in_number = None, False
                    continue
                self._reset_markers()  # words in brackets, "(tmv.txt)", "[]": not a marker; c is read below
            if c in _BRACKETS:
                if c != self._shape:  # another kind of bracket: a new run
                    self._reset_markers()
                if self._start is None:
                    self._start, self._shape = (token, pos), c
                self._group, self._in_number = 0, False
            elif c not in _BETWEEN:
                self._reset_markers()
        return None


def find_loop(ids: Sequence[int], piece: Callable[[int], str], **limits: int) -> Loop | None:
    """The first :class:`Loop` in a whole reply, or None: :class:`RepetitionGuard` over ``ids``."""
    return RepetitionGuard(piece, **limits).extend(ids)


def token_pieces(tokenizer: Any) -> Callable[[int], str]:
    """The text of one token id of a Hugging Face tokenizer, special tokens as ``""``, cached per id."""

    @lru_cache(maxsize=None)
    def piece(token: int) -> str:
        return tokenizer.decode([token], skip_special_tokens=True)

    return piece


Finish = Literal["stop", "length", "loop"]


@dataclass(frozen=True)
class Ending:
    """How a backend's reply ended: what its generator function returns to :class:`Reply`.

    Attributes:
        repeated_tail: trailing streamed characters that loop (:meth:`RepetitionGuard.repeated_chars`).
        finish: ``stop`` (a stop token or string ended the turn), ``length`` (it ran to
            ``max_new_tokens``) or ``loop`` (the repetition guard stopped it); None: not known.
    """

    repeated_tail: int = 0
    finish: Finish | None = None
    first_token: FirstToken | None = None  # the abstain token's probability at the first position


def finish_reason(new_ids: Sequence[int], max_new_tokens: int, stop_ids: Collection[int],
                  guard: RepetitionGuard | None) -> Finish:
    """Why generation ended, from the ids it produced (the stop token included, when there is one).

    A reply whose last id ends the turn stopped on its own even if that id was
    the ``max_new_tokens``-th; one that ran out of tokens without it hit the cap.
    """
    if guard is not None and guard.loop is not None:
        return "loop"
    if new_ids and new_ids[-1] in stop_ids:
        return "stop"
    return "length" if len(new_ids) >= max_new_tokens else "stop"


def server_finish(reason: str | None) -> Finish | None:
    """An OpenAI-style ``finish_reason`` (llama.cpp, servers) as a :class:`Ending`'s: ``length`` at the cap, else ``stop``."""
    return "length" if reason == "length" else "stop" if reason else None


class Reply(Iterator[str]):
    """A streamed reply's text pieces; once they run out, ``repeated_tail`` is how many trailing characters loop.

    Wraps the generator function of a backend, which returns an :class:`Ending`
    (or, from older backends, just the repeated count) when it ends; ``finish``
    then says why it ended. One object per reply, so callers sharing a
    generator (the UI's sessions) never read each other's.
    """

    def __init__(self, pieces: Generator[str, None, Ending | int]) -> None:
        self._pieces = pieces
        self.repeated_tail = 0
        self.finish: Finish | None = None
        self.first_token: FirstToken | None = None

    def __next__(self) -> str:
        try:
            return next(self._pieces)
        except StopIteration as end:
            if isinstance(end.value, Ending):
                self.repeated_tail, self.finish = end.value.repeated_tail, end.value.finish
                self.first_token = end.value.first_token
            else:
                self.repeated_tail = end.value or 0
            raise


def without_loop(text: str, pieces: Iterable[str]) -> str:
    """``text``, the streamed ``pieces`` joined, less the repeated tail their generator reported (if any)."""
    tail = getattr(pieces, "repeated_tail", 0)
    return text[: max(0, len(text) - tail)] if tail else text

"""Abstaining as a decision with a threshold, not whatever greedy decoding picks.

Why: a generator fine-tuned to abstain (the shipped RAFT adapter) signals it by
the first token of its reply: the first token of :data:`rag_app.prompts.ABSTAIN`.
Greedy decoding abstains whenever that token is the single most likely one,
which for a small model can be at a probability of 0.3, so the adapter says
"I don't know" to questions whose answer is in its sources. A threshold on
that first-token probability lets a person (``generate.abstain_threshold``)
trade answering against abstaining: above it the reply is the abstain
sentence, below it the model must answer. Both backends apply it to the
logits of the first generated token only, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_app.prompts import ABSTAIN


def abstain_token_id(tokenizer: Any) -> int:
    """The id a reply starts with when it is the abstain sentence."""
    return int(tokenizer(ABSTAIN, add_special_tokens=False)["input_ids"][0])


def abstain_probability(logits: np.ndarray, token_id: int) -> float:
    """Softmax probability of ``token_id`` under these next-token logits (1-d)."""
    z = logits.astype(np.float64)
    top = float(z.max())
    if not np.isfinite(top):  # another processor forced a token with +inf: this one has no chance
        return float(z[token_id] == top)
    return float(np.exp(z[token_id] - top) / np.exp(z - top).sum())


def decide_first_token(logits: np.ndarray, token_id: int, threshold: float) -> np.ndarray:
    """Force the abstain token if its probability reaches ``threshold``, else forbid it; in place, returned.

    Args:
        logits: the first generated token's logits (1-d, writable).
        token_id: :func:`abstain_token_id` of the served tokenizer.
        threshold: in [0, 1]; 0 always abstains, 1 never does.
    """
    p = abstain_probability(logits, token_id)
    if threshold < 1.0 and p >= threshold:  # 1.0 never abstains, even where p rounds to 1
        logits[:] = -np.inf
        logits[token_id] = 0.0
    else:
        logits[token_id] = -np.inf
    return logits


@dataclass
class FirstToken:
    """What the first-token decision saw, so one eval run answers for every threshold.

    Recorded on every reply (both backends, threshold or not): ``p`` is the
    abstain token's probability and ``greedy`` whether it was the single most
    likely token (greedy decoding abstains then). A run with the abstain token
    forbidden (threshold 1.0) plus these two gives, without generating again,
    the greedy outcome and that of any threshold (docs/eval/abstain_from_records.py).
    """

    p: float | None = None
    greedy: bool | None = None

    def decide(self, logits: np.ndarray, token_id: int, threshold: float | None) -> np.ndarray:
        """Record ``logits``' facts, then apply :func:`decide_first_token` (None: leave them as they are)."""
        self.p = abstain_probability(logits, token_id)
        self.greedy = int(np.argmax(logits)) == token_id
        return logits if threshold is None else decide_first_token(logits, token_id, threshold)

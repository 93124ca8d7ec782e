"""Chat messages -> prompt token ids, and the token that ends a turn: one definition for training and serving.

Why one module: an adapter learns to answer after the prompt ids it is
trained on and to stop with the turn end its targets carry. If training and
the two generators tokenised a prompt differently, or training ended targets
with a token the chat template never writes, the adapter would be served
prompts it never saw and keep talking past its answer. So the transformers
and llama.cpp generators and :mod:`finetune.train` all call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Turn ends of the template families we serve: ChatML (SmolLM2), Llama 3's turn end and its end of text.
KNOWN_TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>")
_MARK = "\u2063RAGAPP_MARK\u2063"


def encode(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]) -> list[int]:
    """The prompt ids a reply is generated after: the chat template plus its generation prompt."""
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # a BatchEncoding on newer transformers
        ids = ids["input_ids"]
    return list(ids)


def has_token(tokenizer: PreTrainedTokenizerBase, token: str) -> bool:
    """Is ``token`` one token of the vocabulary (not mapped to unk)?"""
    tid = tokenizer.convert_tokens_to_ids(token)
    return isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id


def end_of_turn(tokenizer: PreTrainedTokenizerBase) -> str:
    """The text the chat template writes right after an assistant message (``<|im_end|>`` for ChatML).

    Read from the template itself rather than from ``eos_token``: a Llama 3
    base tokenizer names ``<|end_of_text|>`` as eos while its chat template
    ends turns with ``<|eot_id|>``. Falls back to eos when the template shows
    no special token there.
    """
    if tokenizer.chat_template:
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARK}], tokenize=False
            )
        except Exception:  # a template that refuses this shape: fall back to eos
            text = ""
        after = text.split(_MARK, 1)[1] if _MARK in text else ""
        candidates = {*tokenizer.all_special_tokens, *tokenizer.get_added_vocab(), *KNOWN_TURN_ENDS}
        for token in sorted(candidates, key=len, reverse=True):
            if token and after.lstrip().startswith(token) and has_token(tokenizer, token):
                return token
    return tokenizer.eos_token or ""


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids to stop generation on: the template's turn end, the known turn ends in the vocabulary, and eos.

    Passed explicitly because some transformers versions convert the SmolLM2
    GGUF tokenizer with eos ``<|im_start|>``, and generation ran on into
    invented turns.
    """
    tokens = [end_of_turn(tokenizer), *KNOWN_TURN_ENDS]
    ids: list[int] = []
    for token in tokens:
        if token and has_token(tokenizer, token):
            tid = tokenizer.convert_tokens_to_ids(token)
            if tid not in ids:
                ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def stop_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The stop ids as text, for a backend that stops on strings (llama.cpp's ``stop=``)."""
    return [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]

"""Training and serving tokenise a prompt the same way and end a turn with the template's own token."""

from __future__ import annotations

import pytest

from finetune.dataset import RaftExample, SourceText
from finetune.train import encode as train_encode
from rag_app.chat_tokens import encode, end_of_turn, stop_strings, stop_token_ids
from rag_app.models import FOUR_BIT_MIN_PARAMS, wants_4bit


def _example() -> RaftExample:
    source = SourceText(text="Paris is the capital of France.", source="france.txt", doc_id="france")
    return RaftExample(id="q1", dataset="t", question="What is the capital of France?", sources=[source],
                       target="Paris is the capital of France [1].", gold_numbers=[1], gold_kept=True)


@pytest.fixture
def smollm_tok(model_cache_dir):
    from tiny_models import smollm_tokenizer

    return smollm_tokenizer(model_cache_dir)


@pytest.fixture
def llama3_base_tok(tmp_path):
    """Llama 3's template with the *base* tokenizer's eos (<|end_of_text|>), as a Llama 3 base checkpoint ships."""
    from tiny_models import llama3_tokenizer

    tok = llama3_tokenizer(tmp_path)
    tok.eos_token = "<|end_of_text|>"
    return tok


def test_turn_end_is_read_from_the_chat_template(smollm_tok, llama3_base_tok):
    assert end_of_turn(smollm_tok) == "<|im_end|>"
    assert end_of_turn(llama3_base_tok) == "<|eot_id|>"  # not the eos the tokenizer names


def test_training_targets_end_with_the_turn_end_serving_stops_on(llama3_base_tok):
    ids, n_target = train_encode(_example(), llama3_base_tok)
    eot = llama3_base_tok.convert_tokens_to_ids("<|eot_id|>")
    assert ids[-1] == eot
    assert eot in stop_token_ids(llama3_base_tok) and "<|eot_id|>" in stop_strings(llama3_base_tok)
    assert n_target < len(ids)


@pytest.mark.parametrize("tok_name", ["smollm_tok", "llama3_base_tok"])
def test_training_prompt_is_the_prompt_served(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    example = _example()
    ids, n_target = train_encode(example, tok)
    assert ids[: len(ids) - n_target] == encode(tok, example.messages())


def test_serving_generator_encodes_through_the_shared_function(tiny_smollm):
    from rag_app.generation import HFGenerator
    from rag_app.models import load_model

    loaded = load_model(str(tiny_smollm), tiny_smollm, dtype="float32", device="cpu")
    gen = HFGenerator(loaded, name="tiny", adapter=None)
    example = _example()
    ids, n_target = train_encode(example, loaded.tokenizer)
    assert gen.encode(example.messages()) == ids[: len(ids) - n_target]
    assert loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") in gen.stop_ids


@pytest.mark.parametrize(
    "device, params, want",
    [
        ("cuda", FOUR_BIT_MIN_PARAMS * 8, True),
        ("cuda:1", FOUR_BIT_MIN_PARAMS * 8, True),  # a second GPU is still CUDA
        ("cuda", 135_000_000, False),  # the bundled model: 4-bit only slows it
        ("cpu", FOUR_BIT_MIN_PARAMS * 8, False),
        ("cpu", 135_000_000, False),
    ],
)
def test_one_4bit_rule(device, params, want):
    assert wants_4bit(device, params) is want

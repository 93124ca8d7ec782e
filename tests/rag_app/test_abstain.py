"""The abstain threshold: the first token's decision flips exactly at the abstain sentence's probability."""

import numpy as np
import pytest
import torch

from rag_app.abstain import FirstToken, abstain_probability, abstain_token_id, decide_first_token
from rag_app.config import GenerateConfig
from rag_app.generation import load_generator
from rag_app.prompts import ABSTAIN, build_messages
from rag_app.store import Chunk

MESSAGES = build_messages("What year did Tesla die?", [Chunk(1, "Tesla died on 7 January 1943 in New York.", "t.txt", "t")])


def test_decision_forces_or_forbids_the_abstain_token():
    logits = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32))
    assert abstain_probability(logits, 1) == pytest.approx(0.3, abs=1e-6)
    forced = decide_first_token(logits.copy(), 1, threshold=0.25)
    assert int(np.argmax(forced)) == 1 and np.isneginf(forced[[0, 2]]).all()
    forbidden = decide_first_token(logits.copy(), 0, threshold=0.6)  # 0.5 < 0.6: greedy would abstain, now answers
    assert np.isneginf(forbidden[0]) and int(np.argmax(forbidden)) == 1


def test_threshold_1_never_abstains_even_where_the_probability_rounds_to_1():
    logits = np.array([0.0, 60.0, 0.0], dtype=np.float32)
    assert abstain_probability(logits, 1) == 1.0
    assert np.isneginf(decide_first_token(logits.copy(), 1, threshold=1.0)[1])
    forced = np.array([0.0, np.inf, 1.0])  # a stop id forced by another processor: no NaN
    assert abstain_probability(forced, 1) == 1.0 and abstain_probability(forced, 2) == 0.0


def test_first_token_records_what_it_saw_before_deciding():
    logits = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32))
    seen = FirstToken()
    untouched = seen.decide(logits.copy(), 0, threshold=None)
    assert seen.p == pytest.approx(0.5, abs=1e-6) and seen.greedy is True
    assert np.array_equal(untouched, logits)  # no threshold: observed, not changed
    seen.decide(logits.copy(), 2, threshold=1.0)
    assert seen.p == pytest.approx(0.2, abs=1e-6) and seen.greedy is False


def test_config_refuses_a_threshold_outside_0_1():
    with pytest.raises(ValueError, match="abstain_threshold must be between 0 and 1"):
        GenerateConfig(abstain_threshold=1.5)


def test_hf_generator_flips_at_the_models_own_probability(tiny_smollm, tmp_path):
    gen = load_generator(GenerateConfig(model=str(tiny_smollm), adapter="none", dtype="float32"), tmp_path)
    abstain_id = abstain_token_id(gen.tokenizer)
    assert gen.tokenizer.decode([abstain_id]) == ABSTAIN.split()[0]
    ids = torch.tensor([gen.encode(MESSAGES)])
    with torch.no_grad():
        logits = gen.model(ids).logits[0, -1].numpy()
    p = abstain_probability(logits, abstain_id)

    def first_id(threshold):  # the token generate() decodes, as an id (whitespace would strip away as text)
        kwargs = gen._generate_kwargs(MESSAGES, 1, 0.0, 0.95, threshold)
        with torch.no_grad():
            return gen.model.generate(**kwargs)[0, ids.shape[1] :].tolist()

    assert first_id(p * 0.99) == [abstain_id]  # just under its probability: abstains
    assert first_id(min(1.0, p * 1.01 + 1e-9)) != [abstain_id]  # just over: must answer
    assert first_id(None) == [int(logits.argmax())]  # no threshold: plain greedy


@pytest.mark.parametrize("threshold", [None, 1.0])
def test_every_streamed_reply_carries_the_abstain_probability(tiny_smollm, tmp_path, threshold):
    gen = load_generator(GenerateConfig(model=str(tiny_smollm), adapter="none", dtype="float32"), tmp_path)
    abstain_id = abstain_token_id(gen.tokenizer)
    with torch.no_grad():
        logits = gen.model(torch.tensor([gen.encode(MESSAGES)])).logits[0, -1].numpy()
    reply = gen.stream(MESSAGES, max_new_tokens=3, abstain_threshold=threshold)
    "".join(reply)
    assert reply.first_token.p == pytest.approx(abstain_probability(logits, abstain_id), rel=1e-4)
    assert reply.first_token.greedy == (int(logits.argmax()) == abstain_id)


@pytest.mark.slow
def test_llamacpp_applies_the_threshold_to_the_first_token_only(model_cache_dir):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is the optional extra: pip install '.[llamacpp]'")
    served = load_generator(GenerateConfig(backend="llamacpp", adapter="none", context_window=1024, threads=1),
                            model_cache_dir)
    assert type(served).__name__ == "LlamaCppGenerator"
    forced = served.generate(MESSAGES, max_new_tokens=12, abstain_threshold=0.0)
    assert forced.startswith(ABSTAIN.split()[0] + " ") or forced.startswith(ABSTAIN.split()[0] + "'")
    reply = served.stream(MESSAGES, max_new_tokens=24)
    plain = "".join(reply)
    assert 0.0 < reply.first_token.p < 1.0 and reply.first_token.greedy is False  # the base model answers here
    # Forbidding a token greedy decoding would not pick changes nothing (its words differ by CPU: not asserted).
    assert served.generate(MESSAGES, max_new_tokens=24, abstain_threshold=1.0) == plain.strip()
    assert not plain.startswith(ABSTAIN.split()[0] + " ")

import json

import pytest
from helpers import build_index

from finetune.dataset import RaftConfig, balance_decisions, build_examples, examples_from_triples, read_jsonl, split_by_document, write_jsonl
from rag_app.config import RetrieveConfig
from rag_app.evaluate.dataset import QAItem
from rag_app.evaluate.metrics import answer_in_text
from rag_app.prompts import ABSTAIN, build_messages
from rag_app.retriever import Retriever

DOCS = {f"city{n}": [f"City {n} has {n * 1000 + 7} inhabitants and a river called R{n}.", f"City {n} hosts a festival in spring."] for n in range(8)}
ITEMS = [QAItem(f"q{n}", f"How many inhabitants does City {n} have?", (f"{n * 1000 + 7}",), (f"city{n}",), "span") for n in range(8)]


@pytest.fixture
def setup(tmp_path, fake_embedder):
    store = build_index(tmp_path / "idx", fake_embedder, DOCS)
    return store, Retriever(store, fake_embedder, RetrieveConfig(top_k=4))


def test_gold_kept_examples_cite_the_gold_and_distractors_are_other_docs(setup):
    store, retriever = setup
    examples = build_examples(ITEMS, "cities", store, retriever, RaftConfig(p_gold=1.0, distractors=3))
    assert len(examples) == 8
    for ex, item in zip(examples, ITEMS):
        assert len(ex.sources) == 4 and ex.gold_kept
        (n,) = ex.gold_numbers
        gold = ex.sources[n - 1]
        assert gold.doc_id == item.gold_doc_ids[0] and item.answers[0] in gold.text
        assert all(s.doc_id != item.gold_doc_ids[0] for i, s in enumerate(ex.sources, 1) if i != n)
        assert ex.target == f"{item.answers[0]} [{n}]"
        assert ex.messages() == build_messages(item.question, ex.sources)  # the serving prompt


def test_gold_dropped_at_the_set_rate_with_a_fixed_seed(setup):
    store, retriever = setup
    items = ITEMS * 25  # 200 questions
    cfg = RaftConfig(p_gold=0.8, distractors=2, seed=3)
    examples = build_examples(items, "cities", store, retriever, cfg)
    dropped = [ex for ex in examples if not ex.gold_kept]
    assert 0.12 < len(dropped) / len(examples) < 0.28
    for ex in dropped:
        assert ex.target == ABSTAIN and ex.gold_numbers == []
        assert not any(answer_in_text(ex.answers, s.text) for s in ex.sources)  # abstain only when truly absent
    assert {len(ex.sources) for ex in examples} == {3}  # the source count never gives the answer away
    again = build_examples(items, "cities", store, retriever, cfg)
    assert [e.to_json() for e in again] == [e.to_json() for e in examples]


def test_quote_targets_copy_the_supporting_sentence(setup):
    store, retriever = setup
    (ex,) = build_examples(ITEMS[:1], "cities", store, retriever, RaftConfig(p_gold=1.0, quote=True))
    n = ex.gold_numbers[0]
    assert ex.target.startswith('"City 0 has 7 inhabitants') and ex.target.endswith(f"7 [{n}]")


def test_quote_is_the_answer_sentence_cut_to_a_window_when_long():
    from finetune.dataset import _quote

    text = "Intro line. The city was founded in 1200 by traders! Another sentence follows."
    assert _quote(text, ["1200"]) == "The city was founded in 1200 by traders!"
    long = " ".join(f"word{i}" for i in range(100)) + " answer42 " + " ".join(f"tail{i}" for i in range(100))
    quote = _quote(long, ["answer42"], limit=120)
    assert quote.startswith("...") and quote.endswith("...") and "answer42" in quote and len(quote) <= 126
    assert _quote("Nothing relevant here.", ["1200"]) is None
    assert _quote("Pterocarya\nPterocarya is a genus of trees.", ["Pterocarya"]) == "Pterocarya is a genus of trees."


def test_split_by_document_never_shares_a_document():
    items = [QAItem(f"q{i}", "q?", ("a",), (f"d{i % 10}",)) for i in range(50)]
    train, val = split_by_document(items, 0.2, seed=1)
    assert train and val and len(train) + len(val) == 50
    assert not {d for i in train for d in i.gold_doc_ids} & {d for i in val for d in i.gold_doc_ids}


def test_decisions_are_balanced_so_the_label_prior_teaches_nothing():
    yes = [QAItem(f"y{i}", "Is it?", ("yes",), (f"d{i}",), "yes_no") for i in range(9)]
    no = [QAItem(f"n{i}", "Is it?", ("No",), (f"e{i}",), "yes_no") for i in range(3)]
    spans = [QAItem(f"s{i}", "Who?", ("Ada",), (f"f{i}",), "span") for i in range(4)]
    items = [*yes[:5], *spans, *no, *yes[5:]]
    kept, dropped = balance_decisions(items, seed=3)
    assert dropped == {"yes": 6}
    labels = [i.answers[0].lower() for i in kept if i.is_yes_no]
    assert labels.count("yes") == labels.count("no") == 3
    assert [i for i in kept if not i.is_yes_no] == spans  # other questions untouched, order kept
    assert [i.id for i in kept] == [i.id for i in items if i in kept]
    assert balance_decisions(items, seed=3)[0] == kept  # seeded
    assert balance_decisions(spans + yes, seed=3) == (spans + yes, {})  # one label: nothing to balance against


def test_triples_and_jsonl_roundtrip(tmp_path):
    rows = [{"question": f"Q{i} colour?", "answer": f"colour{i}", "context": f"The thing {i} is colour{i}."} for i in range(6)]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    examples = examples_from_triples(path, RaftConfig(p_gold=1.0, distractors=2))
    assert all(len(e.sources) == 3 and e.answers[0] in e.sources[e.gold_numbers[0] - 1].text for e in examples)
    mixed = examples_from_triples(path, RaftConfig(p_gold=0.5, distractors=2, seed=1))
    assert {e.gold_kept for e in mixed} == {True, False} and {len(e.sources) for e in mixed} == {3}
    write_jsonl(examples, tmp_path / "out.jsonl")
    assert [e.to_json() for e in read_jsonl(tmp_path / "out.jsonl")] == [e.to_json() for e in examples]


def test_planted_instructions_go_into_a_share_of_sources_and_the_target_ignores_them():
    import random

    from finetune.dataset import SourceText
    from finetune.injection import plant_in

    rng = random.Random(0)
    planted_in_gold = 0
    for _ in range(200):
        sources = [SourceText(f"Fact number {i}. It is true.", f"d{i}.txt", f"d{i}") for i in range(4)]
        at = plant_in(sources, keep=1, rng=rng)
        changed = [i for i, s in enumerate(sources) if s.text != f"Fact number {i}. It is true."]
        assert changed == [at]
        assert f"Fact number {at}." in sources[at].text  # the source keeps its own text
        planted_in_gold += at == 1
    assert 20 <= planted_in_gold <= 70  # the gold itself about one time in five


def test_examples_with_planted_instructions_keep_their_targets_and_every_other_choice(setup):
    from dataclasses import replace

    store, retriever = setup
    items = [replace(item, id=f"{item.id}-{k}") for k in range(10) for item in ITEMS]
    plain = build_examples(items, "cities", store, retriever, RaftConfig(p_gold=0.8, p_inject=0.0, seed=2))
    planted = build_examples(items, "cities", store, retriever, RaftConfig(p_gold=0.8, p_inject=1.0, seed=2))
    for a, b in zip(plain, planted):
        assert (a.target, a.gold_numbers, [s.doc_id for s in a.sources]) == (b.target, b.gold_numbers, [s.doc_id for s in b.sources])
        differ = [i for i, (x, y) in enumerate(zip(a.sources, b.sources)) if x.text != y.text]
        assert len(differ) == 1 and a.sources[differ[0]].text.split(". ")[0] in b.sources[differ[0]].text
    default = build_examples(items, "cities", store, retriever, RaftConfig(seed=2))
    share = sum(a.sources != b.sources for a, b in zip(plain, default)) / len(plain)
    assert 0.05 < share < 0.4  # the default plants in about one example in five


@pytest.mark.parametrize("text, answer", [
    ("The book was written by J. R. R. Tolkien in 1937. It sold well.", "J. R. R. Tolkien"),
    ("The shop opens at 5 p.m. on Fridays. Parking is free.", "5 p.m. on Fridays"),
    ("The U.S. Army took the hill. It was cold.", "U.S. Army"),
])
def test_a_planted_instruction_never_splits_the_answer(text, answer):
    import random

    from finetune.injection import plant

    rng = random.Random(0)
    for _ in range(50):
        assert answer in plant(text, rng, [answer])

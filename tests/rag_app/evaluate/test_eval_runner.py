"""End-to-end evaluation over a tiny dataset with the fake embedder and a scripted generator."""

from __future__ import annotations

import json
import math

import pytest
from conftest import FakeEmbedder, FakeGenerator

from rag_app.config import load_settings
from rag_app.evaluate import EvalConfig, evaluate, load_dataset, plan_runs
from rag_app.evaluate.runner import RECORDS_FILE, read_records
from rag_app.pipeline import RagPipeline
from rag_app.store import IndexStore
from rag_app.prompts import ABSTAIN
from rag_app.repetition import Ending, Reply

DOCS = {
    "france": "France is a country in Europe. The capital of France is Paris, a city on the Seine river.",
    "japan": "Japan is an island nation in Asia. The capital of Japan is Tokyo, the largest metropolitan area.",
    "volcano": "A volcano erupts molten lava and ash. Mount Etna in Sicily is an active volcano.",
    "piano": "The piano is a keyboard instrument with 88 keys, invented by Bartolomeo Cristofori.",
    "honey": "Bees make honey from flower nectar. Honey never spoils when stored sealed.",
    "comet": "A comet is an icy body orbiting the Sun. Halley's comet returns every 76 years.",
}
QUESTIONS = [
    ("q1", "What is the capital of France?", ["Paris"], ["france"], "span"),
    ("q2", "What is the capital of Japan?", ["Tokyo"], ["japan"], "span"),
    ("q3", "Which active volcano is in Sicily?", ["Mount Etna", "Etna"], ["volcano"], "span"),
    ("q4", "How many keys does the piano have?", ["88"], ["piano"], "span"),
    ("q5", "Does honey spoil when stored sealed?", ["no"], ["honey"], "yes_no"),
    ("q6", "How often does Halley's comet return?", ["every 76 years"], ["comet"], "span"),
    ("q7", "Who invented the piano keyboard instrument?", ["Bartolomeo Cristofori"], ["piano"], "span"),
    ("q8", "Which river flows through Paris the capital of France?", ["Seine"], ["france"], "span"),
]
# What the scripted model says to each question: right, wrong, abstaining, citing a missing source.
REPLIES = {
    "q1": "Paris [1]",
    "q2": "The capital is Kyoto [1]",
    "q3": "Mount Etna [1]",
    "q4": ABSTAIN,
    "q5": "No, it never spoils [1]",
    "q6": "Every 76 years [9]",
    "q7": "Bartolomeo Cristofori [1] [2]",
    "q8": "Seine [2]",
}


class ScriptedGenerator(FakeGenerator):
    """Replies per question (found in the prompt); can raise KeyboardInterrupt on the Nth call."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.interrupt_at = interrupt_at

    def stream(self, messages, max_new_tokens, temperature=0.0, top_p=0.95, abstain_threshold=None):
        if self.interrupt_at is not None and len(self.calls) + 1 >= self.interrupt_at:
            raise KeyboardInterrupt
        question = messages[-1]["content"].rsplit("Question:", 1)[1].strip()
        qid = next(q[0] for q in QUESTIONS if q[1] == question)
        self.reply = REPLIES[qid]
        return super().stream(messages, max_new_tokens, temperature, top_p)


def make_dataset(root):
    (root / "docs").mkdir(parents=True)
    for name, text in DOCS.items():
        (root / "docs" / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    with open(root / "qa.jsonl", "w", encoding="utf-8") as fh:
        for qid, q, answers, gold, atype in QUESTIONS:
            fh.write(json.dumps({"id": qid, "question": q, "answers": answers, "gold_doc_ids": gold,
                                 "answer_type": atype}) + "\n")
    return root


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A dataset, its index built by the real ingest with the fake embedder, and base settings."""
    from ingest.pipeline import ingest_folder

    monkeypatch.chdir(tmp_path)  # no stray rag.toml
    root = make_dataset(tmp_path / "tiny")
    embedder = FakeEmbedder()
    settings = load_settings(index=tmp_path / "index", cache_dir=tmp_path / "cache",
                             retrieve={"min_score": 0.0, "top_k": 2}, generate={"adapter": "none"})
    ingest_folder(root / "docs", settings, embedder=embedder)
    return root, settings, embedder, tmp_path / "out"


def _check_aggregates_match_records(report):
    for run in report["configs"]:
        records, agg = run["records"], run["aggregate"]
        assert agg["n"] == len(records) == run["finished"]
        for key in records[0]["scores"]:
            values = [r["scores"][key] for r in records if r["scores"][key] is not None]
            if values:
                assert agg[key] == pytest.approx(sum(values) / len(values)), key
            else:
                assert agg[key] is None, key


def test_end_to_end_report_files_and_aggregates(setup):
    root, settings, embedder, out = setup
    ds = load_dataset(root)
    runs = plan_runs([("base", settings)], ["dense", "bm25"])
    loads = []

    def load_generator(s):
        loads.append(s.generate.model)
        return ScriptedGenerator()

    report, interrupted = evaluate(ds, runs, EvalConfig(ks=(1, 3, 5)), out, embedder=embedder,
                                   load_generator=load_generator)
    assert not interrupted
    assert len(loads) == 1  # one generator shared by both configurations
    for name in ("report.json", "report.md", RECORDS_FILE, "recall_at_k.png", "answers.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in on_disk["configs"]] == ["dense", "bm25"]
    _check_aggregates_match_records(on_disk)
    dense = {r["id"]: r for r in on_disk["configs"][0]["records"]}
    assert len(dense) == len(QUESTIONS)
    # hand-checked answer scores of the scripted replies
    assert dense["q1"]["scores"]["em"] == 1.0 and dense["q1"]["scores"]["f1"] == 1.0
    assert dense["q2"]["scores"]["em"] == 0.0 and dense["q2"]["scores"]["f1"] == 0.0  # "capital is kyoto" vs "tokyo"
    assert dense["q5"]["scores"]["em"] == 1.0  # yes/no: first word "No"
    assert dense["q4"]["abstained"] and dense["q4"]["scores"]["abstained_answerable"] == 1.0
    assert dense["q6"]["scores"]["citation_valid"] == 0.0 and dense["q6"]["invalid_citations"] == [9]
    assert dense["q6"]["scores"]["citation_precision"] == 0.0
    assert dense["q1"]["scores"]["citation_valid"] == 1.0
    # rag_app.support: "Kyoto" is in no source, "Paris" is in the one cited
    assert dense["q2"]["scores"]["unsupported_claims"] == 1.0 and dense["q1"]["scores"]["unsupported_claims"] == 0.0
    # word overlap makes the fake embedder find every gold doc in the top 3
    assert on_disk["configs"][0]["aggregate"]["recall@3"] == 1.0
    for rec in dense.values():
        assert rec["retrieved_doc_ids"] and rec["latency"]["total_ms"] is not None
        assert len(rec["sources"]) <= 2
    md = (out / "report.md").read_text()
    assert "## Retrieval" in md and "## Answers" in md and "## Worst questions: bm25" in md
    assert "| dense |" in md and "claims marked unsupported" in md
    assert on_disk["dataset"]["questions_evaluated"] == len(QUESTIONS)
    assert on_disk["configs"][0]["settings"]["generate"]["temperature"] == 0.0


def test_false_abstention_needs_the_answer_in_the_sources(setup):
    root, settings, embedder, out = setup

    class Abstainer(FakeGenerator):
        def __init__(self):
            super().__init__(reply=ABSTAIN)

    report, _ = evaluate(load_dataset(root), plan_runs([("base", settings)]), EvalConfig(ks=(1, 5)), out,
                         embedder=embedder, load_generator=lambda s: Abstainer())
    agg = report["configs"][0]["aggregate"]
    recs = report["configs"][0]["records"]
    assert agg["abstained_answerable"] == 1.0
    could = [r["scores"]["answer_in_context"] if r["answer_type"] != "yes_no" else r["scores"]["gold_in_sources"]
             for r in recs]
    assert agg["false_abstention"] == pytest.approx(sum(could) / len(could))
    assert agg["f1"] == 0.0 and agg["citation_precision"] is None


def test_records_carry_the_questions_coverage_and_whether_the_gate_abstained(setup):
    """Coverage of every question by the sources it was shown, so any retrieve.min_coverage follows from one run."""
    root, settings, embedder, out = setup
    gated = settings.model_copy(update={"retrieve": settings.retrieve.model_copy(update={"min_coverage": 1.0})})
    report, _ = evaluate(load_dataset(root), plan_runs([("off", settings), ("all", gated)]), EvalConfig(ks=(1,)), out,
                         embedder=embedder, load_generator=lambda s: FakeGenerator())
    off, strict = ({r["id"]: r for r in run["records"]} for run in report["configs"])
    for qid, rec in off.items():
        assert 0.0 <= rec["coverage"] <= 1.0 and rec["coverage_terms"] >= 0 and rec["gated"] is False
        assert (rec["coverage"] < 1.0) == bool(rec["coverage_missing"])
        assert strict[qid]["coverage"] == rec["coverage"]  # the same sources: the same coverage
        assert strict[qid]["gated"] is (rec["coverage_terms"] >= 2 and rec["coverage"] < 1.0)
    assert any(r["gated"] for r in strict.values()) and any(not r["gated"] for r in strict.values())


def test_retrieval_only_never_loads_the_generator(setup):
    root, settings, embedder, out = setup

    def boom(s):
        raise AssertionError("generator loaded in a retrieval-only run")

    report, _ = evaluate(load_dataset(root), plan_runs([("base", settings)], ["dense", "hybrid"]),
                         EvalConfig(retrieval_only=True), out, embedder=embedder, load_generator=boom)
    _check_aggregates_match_records(report)
    agg = report["configs"][1]["aggregate"]
    assert agg["f1"] is None and agg["recall@10"] == 1.0 and agg["answer_in_context"] is not None
    assert (out / "recall_at_k.png").is_file() and not (out / "answers.png").exists()
    assert all(r["reply"] is None for r in report["configs"][0]["records"])


class EndingGenerator(ScriptedGenerator):
    """The scripted replies, except that q1's loops and is stopped as the repetition guard stops one (a Reply)."""

    def stream(self, messages, max_new_tokens, temperature=0.0, top_p=0.95, abstain_threshold=None):
        pieces = super().stream(messages, max_new_tokens, temperature, top_p)
        if self.reply != REPLIES["q1"]:
            return pieces

        def looping():
            yield from pieces
            yield " Paris [1]"
            return Ending(len(" Paris [1]"), "loop")

        return Reply(looping())


def test_replies_at_the_token_cap_and_stopped_repeating_are_counted(setup):
    root, settings, embedder, out = setup
    capped = settings.model_copy(update={"generate": settings.generate.model_copy(update={"max_new_tokens": 4})})
    report, _ = evaluate(load_dataset(root), plan_runs([("base", capped)]), EvalConfig(ks=(1,)), out,
                         embedder=embedder, load_generator=lambda s: EndingGenerator())
    recs = {r["id"]: r for r in report["configs"][0]["records"]}
    ends = {qid: (r["scores"]["hit_token_cap"], r["scores"]["repetition_stopped"]) for qid, r in recs.items()}
    assert ends["q1"] == (0.0, 1.0) and recs["q1"]["reply"] == "Paris [1]"  # the loop cut, counted
    assert ends["q2"] == (1.0, 0.0)  # "The capital is Kyoto [1]": cut after 4 words
    assert ends["q7"] == (1.0, 0.0) and recs["q7"]["generated_tokens"] == 4  # exactly max_new_tokens: at the cap
    assert ends["q3"] == (0.0, 0.0) and recs["q3"]["finish"] == "stop"  # "Mount Etna [1]" ended first
    agg = report["configs"][0]["aggregate"]
    n_cap = sum(e[0] for e in ends.values())
    assert agg["n_hit_token_cap"] == len(QUESTIONS) and agg["hit_token_cap"] == pytest.approx(n_cap / len(QUESTIONS))
    assert agg["repetition_stopped"] == pytest.approx(1 / len(QUESTIONS))
    md = (out / "report.md").read_text()
    assert "| config | generated | replies at the token cap | stopped repeating |" in md
    assert f"| base | {len(QUESTIONS)} | {n_cap:.0f} ({n_cap / len(QUESTIONS):.3f}) | 1 (0.125) |" in md


def test_resume_after_an_interrupted_run(setup):
    root, settings, embedder, out = setup
    ds = load_dataset(root)
    runs = plan_runs([("base", settings)])
    report, interrupted = evaluate(ds, runs, EvalConfig(), out, embedder=embedder,
                                   load_generator=lambda s: ScriptedGenerator(interrupt_at=4))
    assert interrupted
    assert report["interrupted"] and report["configs"][0]["finished"] == 3
    assert json.loads((out / "report.json").read_text())["configs"][0]["finished"] == 3  # written on Ctrl-C
    assert "incomplete" in (out / "report.md").read_text()
    assert len(read_records(out / RECORDS_FILE)) == 3

    gen = ScriptedGenerator()
    report, interrupted = evaluate(ds, runs, EvalConfig(), out, embedder=embedder, load_generator=lambda s: gen)
    assert not interrupted
    assert len(gen.calls) == len(QUESTIONS) - 3  # finished questions were not asked again
    assert report["configs"][0]["finished"] == len(QUESTIONS)
    assert [r["id"] for r in report["configs"][0]["records"]] == [q[0] for q in QUESTIONS]
    assert len(read_records(out / RECORDS_FILE)) == len(QUESTIONS)
    _check_aggregates_match_records(report)

    # a changed setting is another configuration: nothing is reused
    changed = plan_runs([("base", settings.model_copy(update={"retrieve": settings.retrieve.model_copy(update={"top_k": 3})}))])
    gen2 = ScriptedGenerator()
    evaluate(ds, changed, EvalConfig(), out, embedder=embedder, load_generator=lambda s: gen2)
    assert len(gen2.calls) == len(QUESTIONS)


def test_interrupt_before_any_answer_still_writes_a_report(setup):
    root, settings, embedder, out = setup
    runs = plan_runs([("base", settings)], ["dense", "hybrid"])
    report, interrupted = evaluate(load_dataset(root), runs, EvalConfig(), out, embedder=embedder,
                                   load_generator=lambda s: ScriptedGenerator(interrupt_at=1))
    assert interrupted and [c["finished"] for c in report["configs"]] == [0, 0]
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert report["configs"][0]["aggregate"]["n"] == 0


def test_torn_last_record_line_is_rerun(setup):
    root, settings, embedder, out = setup
    ds = load_dataset(root)
    runs = plan_runs([("base", settings)])
    evaluate(ds, runs, EvalConfig(retrieval_only=True), out, embedder=embedder)
    path = out / RECORDS_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # killed mid-write
    report, _ = evaluate(ds, runs, EvalConfig(retrieval_only=True), out, embedder=embedder)
    assert report["configs"][0]["finished"] == len(QUESTIONS)


def test_the_gate_searches_without_the_withheld_gold_and_its_coverage_is_recorded(setup, monkeypatch):
    """In hybrid mode the gate reads the dense neighbours (RagPipeline.gate_coverage): a withheld gold document
    must not reach that search either, and the record's coverage is the gate's."""
    from rag_app.retriever import Retriever

    root, settings, embedder, out = setup
    searches, retrieve = [], Retriever.retrieve

    def spy(self, query, k=None, exclude_doc_ids=(), query_vector=None, mode=None):
        searches.append((query, set(exclude_doc_ids), mode))
        return retrieve(self, query, k, exclude_doc_ids, query_vector, mode)

    monkeypatch.setattr(Retriever, "retrieve", spy)
    hybrid = settings.model_copy(update={"retrieve": settings.retrieve.model_copy(update={"mode": "hybrid"})})
    report, _ = evaluate(load_dataset(root), plan_runs([("h", hybrid)]), EvalConfig(unanswerable=0.5, seed=1), out,
                         embedder=embedder, load_generator=lambda s: ScriptedGenerator())
    recs = report["configs"][0]["records"]
    for r in recs:
        gate = [ex for q, ex, mode in searches if q == r["question"] and mode == "dense"]
        assert gate and all(ex == (set(r["gold_doc_ids"]) if r["withheld"] else set()) for ex in gate)
    pipe = RagPipeline(hybrid, store=IndexStore.open(hybrid.index), embedder=embedder, generator=FakeGenerator())
    for r in recs:
        shown = pipe.store.get_chunks([h["chunk_id"] for h in r["retrieved"][:len(r["sources"])]])
        expect = pipe.gate_coverage(r["question"], shown, r["gold_doc_ids"] if r["withheld"] else ())
        assert r["coverage"] == expect.share and r["coverage_missing"] == expect.missing


def test_unanswerable_withholds_gold_docs(setup):
    root, settings, embedder, out = setup
    gen = ScriptedGenerator()
    report, _ = evaluate(load_dataset(root), plan_runs([("base", settings)]), EvalConfig(unanswerable=0.5, seed=1),
                         out, embedder=embedder, load_generator=lambda s: gen)
    recs = report["configs"][0]["records"]
    withheld = [r for r in recs if r["withheld"]]
    assert len(withheld) == 4
    for r in withheld:
        assert not set(r["gold_doc_ids"]) & set(r["retrieved_doc_ids"])
        assert not set(r["gold_doc_ids"]) & {s["doc_id"] for s in r["sources"]}
        assert r["expect_abstain"] and r["scores"]["recall@1"] is None and r["scores"]["f1"] is None
        assert r["scores"]["abstention_accuracy"] == float(r["abstained"])
    for r in recs:
        if not r["withheld"]:
            assert r["scores"]["abstention_accuracy"] is None and r["scores"]["recall@1"] is not None
    agg = report["configs"][0]["aggregate"]
    assert agg["n_withheld"] == 4
    assert agg["abstention_accuracy"] == pytest.approx(sum(r["abstained"] for r in withheld) / 4)
    assert not math.isnan(agg["recall@5"])
    # the same seed withholds the same questions
    again, _ = evaluate(load_dataset(root), plan_runs([("base", settings)]), EvalConfig(unanswerable=0.5, seed=1),
                        out, embedder=embedder, load_generator=lambda s: ScriptedGenerator())
    assert [r["id"] for r in again["configs"][0]["records"] if r["withheld"]] == [r["id"] for r in withheld]


def test_plan_runs_names_and_bad_mode(setup):
    from rag_app.errors import ConfigError

    _, settings, _, _ = setup
    assert [r.name for r in plan_runs([("base", settings)])] == ["base"]
    assert [r.name for r in plan_runs([("base", settings), ("ft", settings)], ["dense", "bm25"])] == [
        "base-dense", "base-bm25", "ft-dense", "ft-bm25"]
    assert [r.name for r in plan_runs([("a", settings), ("a", settings)])] == ["a", "a-2"]
    assert [r.name for r in plan_runs([("v12", settings)], ["dense"])] == ["v12-dense"]  # rag eval --name v12 --mode dense
    assert plan_runs([("base", settings)], ["hybrid"])[0].settings.retrieve.mode == "hybrid"
    with pytest.raises(ConfigError, match="unknown --mode 'sparse'"):
        plan_runs([("base", settings)], ["sparse"])
    with pytest.raises(ConfigError, match="--unanswerable"):
        EvalConfig(unanswerable=1.0)
    with pytest.raises(ConfigError, match="--k"):
        EvalConfig(ks=(0, 5))


def test_resume_with_other_ks_rescores_stored_lists(setup):
    root, settings, embedder, out = setup
    ds = load_dataset(root)
    runs = plan_runs([("base", settings)])
    gen = ScriptedGenerator()
    evaluate(ds, runs, EvalConfig(ks=(1, 5)), out, embedder=embedder, load_generator=lambda s: gen)
    calls = len(gen.calls)
    report, _ = evaluate(ds, runs, EvalConfig(ks=(2, 3)), out, embedder=embedder, load_generator=lambda s: gen)
    assert len(gen.calls) == calls  # nothing generated again
    rec = report["configs"][0]["records"][0]
    assert {"recall@2", "recall@3", "hit@2", "hit@3"} <= set(rec["scores"]) and "recall@5" not in rec["scores"]
    assert report["configs"][0]["aggregate"]["recall@3"] == 1.0
    _check_aggregates_match_records(report)


def test_reingested_corpus_is_not_resumed(setup):
    from ingest.pipeline import ingest_folder

    root, settings, embedder, out = setup
    runs = plan_runs([("base", settings)])
    evaluate(load_dataset(root), runs, EvalConfig(retrieval_only=True), out, embedder=embedder)
    (root / "docs" / "extra.txt").write_text("A new document about tea and teapots.\n")
    ingest_folder(root / "docs", settings, embedder=embedder)
    before = len(read_records(out / RECORDS_FILE))
    evaluate(load_dataset(root), runs, EvalConfig(retrieval_only=True), out, embedder=embedder)
    assert len(read_records(out / RECORDS_FILE)) == before + len(QUESTIONS)


@pytest.mark.parametrize("field, config_file, weights_file", [
    ("adapter", "adapter_config.json", "adapter_model.safetensors"),  # rag finetune's adapter folder
    ("model", "training_card.json", "model.safetensors"),  # what `rag finetune --merge` writes
])
def test_retrained_weights_at_the_same_path_are_not_resumed(setup, tmp_path, field, config_file, weights_file):
    root, settings, embedder, out = setup
    folder = tmp_path / "tuned"
    folder.mkdir()
    (folder / config_file).write_text('{"r": 16}')
    (folder / weights_file).write_bytes(b"first weights")
    tuned = settings.model_copy(update={"generate": settings.generate.model_copy(update={field: str(folder)})})
    runs = plan_runs([("tuned", tuned)])
    evaluate(load_dataset(root), runs, EvalConfig(), out, embedder=embedder, load_generator=lambda s: ScriptedGenerator())
    again = ScriptedGenerator()
    evaluate(load_dataset(root), runs, EvalConfig(), out, embedder=embedder, load_generator=lambda s: again)
    assert again.calls == []  # unchanged weights: every record reused
    (folder / weights_file).write_bytes(b"retrained weights")
    retrained = ScriptedGenerator()
    evaluate(load_dataset(root), runs, EvalConfig(), out, embedder=embedder, load_generator=lambda s: retrained)
    assert len(retrained.calls) == len(QUESTIONS)


def test_a_threshold_the_base_model_ignores_reuses_its_records(setup):
    root, settings, embedder, out = setup  # adapter "none": the threshold does not apply
    first = ScriptedGenerator()
    evaluate(load_dataset(root), plan_runs([("base", settings)]), EvalConfig(), out, embedder=embedder,
             load_generator=lambda s: first)
    assert len(first.calls) == len(QUESTIONS)
    dialled = settings.model_copy(update={"generate": settings.generate.model_copy(update={"abstain_threshold": 0.3})})
    again = ScriptedGenerator()
    evaluate(load_dataset(root), plan_runs([("base", dialled)]), EvalConfig(), out, embedder=embedder,
             load_generator=lambda s: again)
    assert again.calls == []  # same answers as before, so the same records


def test_variants_that_load_differently_get_their_own_generator(setup):
    root, settings, embedder, out = setup
    hf = settings.model_copy(update={"generate": settings.generate.model_copy(update={"backend": "hf"})})
    threads = settings.model_copy(update={"generate": settings.generate.model_copy(update={"threads": 1})})
    sampling = settings.model_copy(update={"generate": settings.generate.model_copy(update={"max_new_tokens": 64})})
    loads = []

    def load_generator(s):
        loads.append((s.generate.backend, s.generate.threads))
        return ScriptedGenerator()

    evaluate(load_dataset(root), plan_runs([("auto", settings), ("hf", hf), ("t1", threads), ("short", sampling)]),
             EvalConfig(), out, embedder=embedder, load_generator=load_generator)
    # backend and threads choose another generator; a shorter answer cap reuses the first
    assert loads == [("auto", None), ("hf", None), ("auto", 1)]


class CountingEmbedder(FakeEmbedder):
    """Counts query embeddings: one per search."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def embed_query(self, text):
        self.queries.append(text)
        return super().embed_query(text)


@pytest.mark.parametrize("retrieve", [{}, {"mode": "hybrid", "fetch_k": 2}])
def test_each_question_is_searched_once_and_answered_from_the_list_it_scores(setup, retrieve):
    root, settings, _, out = setup
    embedder = CountingEmbedder()
    tuned = settings.model_copy(update={"retrieve": settings.retrieve.model_copy(update=retrieve)})
    report, _ = evaluate(load_dataset(root), plan_runs([("base", tuned)]), EvalConfig(ks=(1, 3)), out,
                         embedder=embedder, load_generator=lambda s: ScriptedGenerator())
    assert sorted(embedder.queries) == sorted(q[1] for q in QUESTIONS)  # one search per question
    for rec in report["configs"][0]["records"]:
        scored = rec["retrieved"]
        assert len(scored) > 2  # the deeper list of the retrieval metrics
        assert [(s["number"], s["doc_id"]) for s in rec["sources"]] == [(h["rank"], h["doc_id"]) for h in scored[:2]]
        assert [s["score"] for s in rec["sources"]] == [h["score"] for h in scored[:2]]

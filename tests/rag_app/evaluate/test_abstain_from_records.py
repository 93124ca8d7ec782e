"""docs/eval/abstain_from_records.py: greedy and any threshold derived from one run with the abstain token forbidden."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "docs" / "eval" / "abstain_from_records.py"
spec = importlib.util.spec_from_file_location("abstain_from_records", SCRIPT)
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def record(qid, *, p, greedy, f1=None, withheld=False, in_context=True, config="a", fingerprint="f"):
    scores = {"f1": f1, "abstained": 0.0, "answer_in_context": None if withheld else float(in_context),
              "gold_in_sources": None if withheld else 1.0}
    return {"id": qid, "config": config, "fingerprint": fingerprint, "expect_abstain": withheld, "withheld": withheld,
            "abstain_p": p, "abstain_greedy": greedy, "scores": scores}


RECORDS = [
    record("sure", p=0.6, greedy=True, f1=0.8),               # greedy abstains though the answer was shown
    record("doubt", p=0.15, greedy=False, f1=0.5, in_context=False),
    record("gone", p=0.3, greedy=False, withheld=True),       # gold withheld: the right reply abstains
]


def test_greedy_and_thresholds_follow_from_the_recorded_probability():
    greedy = sweep.summary([sweep.outcome(r, "greedy") for r in RECORDS])
    assert greedy["f1"] == 0.25 and greedy["false"] == 0.5 and greedy["right"] == 0.0
    low = sweep.summary([sweep.outcome(r, 0.1) for r in RECORDS])  # everything abstains
    assert low["f1"] == 0.0 and low["false"] == 0.5 and low["abstained"] == 1.0 and low["right"] == 1.0
    mid = sweep.summary([sweep.outcome(r, 0.3) for r in RECORDS])  # "sure" and "gone" abstain
    assert mid["f1"] == 0.25 and mid["right"] == 1.0
    high = sweep.summary([sweep.outcome(r, 0.7) for r in RECORDS])  # nothing abstains: the forbidden replies
    assert high["f1"] == 0.65 and high["false"] == 0.0 and high["right"] == 0.0


def test_the_newest_run_of_the_configuration_is_read(tmp_path):
    path = tmp_path / "records.jsonl"
    old = record("sure", p=0.9, greedy=True, f1=0.0, fingerprint="old")
    other = record("sure", p=0.1, greedy=False, f1=1.0, config="base")
    path.write_text("\n".join(json.dumps(r) for r in [old, other, *RECORDS]) + "\n")
    assert [r["id"] for r in sweep.latest_run(path, "a")] == ["sure", "doubt", "gone"]


def test_a_question_never_put_to_the_model_abstained_under_every_rule():
    skipped = record("far", p=None, greedy=None, f1=0.0, withheld=True)
    skipped["skipped_generation"] = True
    skipped["scores"]["abstained"] = 1.0
    for rule in ("greedy", "never", 0.5):
        assert sweep.outcome(skipped, rule)["abstained"] is True


def test_the_lead_table_pairs_each_adapter_with_the_base_and_shows_the_majority(tmp_path):
    spec = importlib.util.spec_from_file_location("lodo_table", SCRIPT.with_name("lodo_table.py"))
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def yes_no(qid, config, label, f1, p=0.0, greedy=False):
        r = record(qid, p=p, greedy=greedy, f1=f1, config=config)
        r.update(answer_type="yes_no", answers=[label])
        r["scores"]["hit_token_cap"] = 0.0
        r["scores"]["repetition_stopped"] = 0.0
        return r

    rows = [yes_no("a", "base", "yes", 0.0), yes_no("b", "base", "yes", 0.0), yes_no("c", "base", "no", 0.0),
            yes_no("a", "tuned", "yes", 1.0), yes_no("b", "tuned", "yes", 1.0, p=0.9, greedy=True),
            yes_no("c", "tuned", "no", 0.0)]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    base, tuned = table.rows_of(path, "base", "greedy"), table.rows_of(path, "tuned", "greedy")
    questions, f1, paired, false, right, accuracy, capped = table.cells(tuned, base)
    assert (questions, f1, false, accuracy, capped) == ("3+0", "0.333", "0.333", "0.333 (0.67 yes)", "0 (0)")
    assert paired.startswith("+0.333")  # greedy abstained on "b": only "a" gained


def test_min_coverage_abstains_where_the_sources_miss_the_question_and_old_runs_borrow_it(tmp_path):
    """coverage:0.5 gates a question whose sources mention under half its terms, before greedy or the token
    forbidden; a run recorded before coverage takes it from another configuration's record of the question."""
    covered = {"sure": (1.0, 3), "doubt": (0.25, 4), "gone": (0.0, 1)}  # "gone": one term, never gated
    new = [{**r, "config": "v12", "coverage": covered[r["id"]][0], "coverage_terms": covered[r["id"]][1]} for r in RECORDS]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*RECORDS, *new]) + "\n")
    old = sweep.latest_run(path, "a")
    assert [r["coverage"] for r in old] == [1.0, 0.25, 0.0]
    gate = sweep.parse_rule("coverage:0.5")
    assert gate == ("min_coverage", 0.5, "greedy") and sweep.parse_rule("coverage:0.5:never")[2] == "never"
    outcomes = {r["id"]: sweep.outcome(r, gate) for r in old}
    assert outcomes["sure"]["abstained"] and outcomes["doubt"]["abstained"] and not outcomes["gone"]["abstained"]
    forbidden = {r["id"]: sweep.outcome(r, ("min_coverage", 0.5, "never")) for r in old}
    assert not forbidden["sure"]["abstained"] and forbidden["doubt"]["abstained"] and forbidden["doubt"]["f1"] == 0.0
    lone = record("x", p=0.0, greedy=False, f1=1.0)
    path.write_text(json.dumps(lone) + "\n")
    with pytest.raises(SystemExit, match="has no coverage"):  # never taken for covered
        sweep.outcome(sweep.latest_run(path, "a")[0], gate)


def test_choose_per_set_holds_false_abstentions_on_every_set_not_only_pooled(tmp_path, monkeypatch, capsys):
    """Thresholds up to 0.3 abstain on both withheld questions and one answerable one: 1 in 10 pooled, but 1 in 2
    on the narrow set; per set, only 0.4 and up qualify (the first such is chosen)."""
    sets = {"wide": [record(f"w{i}", p=0.0, greedy=False, f1=1.0) for i in range(8)],
            "narrow": [record("n1", p=0.31, greedy=True, f1=1.0), record("n2", p=0.0, greedy=False, f1=1.0)]}
    for name, recs in sets.items():
        recs.append(record(f"{name}-gone", p=0.32, greedy=True, withheld=True))
        (tmp_path / name).mkdir()
        (tmp_path / name / "records.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    files = [str(tmp_path / n / "records.jsonl") for n in sets]
    for flags, chosen in (([], "chosen: threshold 0.05 (false abstentions 0.100"),
                          (["--per-set"], "chosen: threshold 0.4 (false abstentions 0.000")):
        monkeypatch.setattr("sys.argv", ["x", *files, "--config", "a", "--choose", *flags])
        sweep.main()
        assert chosen in capsys.readouterr().out

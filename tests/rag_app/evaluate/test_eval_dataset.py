"""Dataset loading and validation: every mistake names its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.errors import DatasetError
from rag_app.evaluate.dataset import load_dataset, select, withheld_ids


def _write(root, lines, docs=("d1", "d2", "d3")):
    (root / "docs").mkdir(parents=True, exist_ok=True)
    for d in docs:
        (root / "docs" / f"{d}.txt").write_text(f"text of {d}\n", encoding="utf-8")
    (root / "qa.jsonl").write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n", encoding="utf-8"
    )
    return root


def _q(i, gold="d1", **extra):
    return {"id": f"q{i}", "question": f"question {i}?", "answers": [f"a{i}"], "gold_doc_ids": [gold], **extra}


def test_loads_valid_set_with_answer_type_and_split(tmp_path):
    root = _write(tmp_path / "set", [_q(1, answer_type="span", split_hint="test"), _q(2, "d2", answer_type="yes_no")])
    ds = load_dataset(root)
    assert ds.name == "set" and ds.total == 2
    assert [i.id for i in ds.items] == ["q1", "q2"]
    assert ds.items[0].answer_type == "span" and ds.items[0].split_hint == "test" and ds.items[0].line == 1
    assert ds.items[1].is_yes_no
    assert ds.doc_ids == {"d1", "d2", "d3"}


def test_malformed_line_names_its_number(tmp_path):
    root = _write(tmp_path, [_q(1), "", '{"id": "q2", "question": ', _q(3)])
    with pytest.raises(DatasetError, match=r"qa.jsonl line 3: not valid JSON"):
        load_dataset(root)


def test_missing_key_names_line_and_key(tmp_path):
    bad = _q(2)
    del bad["answers"]
    root = _write(tmp_path, [_q(1), bad])
    with pytest.raises(DatasetError, match=r"line 2: missing key 'answers'"):
        load_dataset(root)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"answers": []}, r"line 1: 'answers' must be a non-empty list"),
        ({"gold_doc_ids": "d1"}, r"line 1: 'gold_doc_ids' must be a non-empty list"),
        ({"question": "  "}, r"line 1: 'question' must be a non-empty string"),
        ({"split_hint": "dev"}, r"line 1: 'split_hint' must be 'train' or 'test'"),
    ],
)
def test_wrong_types_are_refused(tmp_path, patch, match):
    root = _write(tmp_path, [{**_q(1), **patch}])
    with pytest.raises(DatasetError, match=match):
        load_dataset(root)


def test_not_an_object(tmp_path):
    root = _write(tmp_path, ["[1, 2]"])
    with pytest.raises(DatasetError, match=r"line 1: expected a JSON object"):
        load_dataset(root)


def test_duplicate_id(tmp_path):
    root = _write(tmp_path, [_q(1), _q(2), _q(1)])
    with pytest.raises(DatasetError, match=r"line 3: duplicate id 'q1' \(first on line 1\)"):
        load_dataset(root)


def test_unknown_gold_doc_id_is_reported_with_line(tmp_path):
    root = _write(tmp_path, [_q(1), _q(2, "nope"), _q(3, "gone")])
    with pytest.raises(DatasetError, match=r"line 2: gold doc id 'nope' is not in .*2 unknown in total: 'nope', 'gone'"):
        load_dataset(root)


def test_gold_ids_checked_against_index_ids_when_given(tmp_path):
    root = _write(tmp_path, [_q(1, "x")], docs=())
    assert load_dataset(root, known_doc_ids={"x"}).items[0].gold_doc_ids == ("x",)
    with pytest.raises(DatasetError, match="not in the index"):
        load_dataset(root, known_doc_ids={"y"})


def test_gold_ids_are_checked_against_the_doc_ids_of_the_index_given(tmp_path, fake_embedder):
    from helpers import build_index

    def without_docs(root, lines):  # evaluated on the index alone: no corpus folder
        _write(root, lines, docs=())
        (root / "docs").rmdir()
        return root

    build_index(tmp_path / "idx", fake_embedder, {"x": ["text of x"], "y": ["text of y"]}).close()
    ds = load_dataset(without_docs(tmp_path / "set", [_q(1, "x"), _q(2, "y")]), index=tmp_path / "idx")
    assert ds.doc_ids == {"x", "y"}
    with pytest.raises(DatasetError, match="gold doc id 'z' is not in the index"):
        load_dataset(without_docs(tmp_path / "other", [_q(1, "z")]), index=tmp_path / "idx")


def test_a_dataset_names_one_cached_index_per_corpus_and_chunking(tmp_path):
    from rag_app.config import load_settings
    from rag_app.evaluate.dataset import corpus_index

    root = _write(tmp_path / "set", [_q(1)])
    settings = load_settings(None)
    target = corpus_index(root, settings)
    assert target.docs == root / "docs"
    assert target.index.parent == Path(".rag/datasets") and target.index.name.startswith("set-")
    assert corpus_index(root, settings) == target  # the same corpus and settings: the same index
    assert corpus_index(root, load_settings(None, ingest={"chunk_size": 300})).index != target.index
    with pytest.raises(DatasetError, match="has no docs/ folder"):
        corpus_index(tmp_path, settings)
    assert corpus_index(root / "docs", settings, plain_folder=True).docs == root / "docs"  # --synthesize: a plain folder


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no qa.jsonl"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "nodocs").mkdir()
    (tmp_path / "nodocs" / "qa.jsonl").write_text(json.dumps(_q(1)) + "\n")
    with pytest.raises(DatasetError, match="has no docs/ folder"):
        load_dataset(tmp_path / "nodocs")


def test_split_filter(tmp_path):
    root = _write(tmp_path, [_q(1, split_hint="train"), _q(2, split_hint="test"), _q(3, split_hint="test")])
    assert [i.id for i in load_dataset(root, split="test").items] == ["q2", "q3"]
    assert [i.id for i in load_dataset(root, split="train").items] == ["q1"]
    assert len(load_dataset(root, split="all").items) == 3
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset(root, split="dev")


def test_split_without_hints_is_an_error(tmp_path):
    root = _write(tmp_path, [_q(1)])
    with pytest.raises(DatasetError, match="no 'split_hint' keys; use --split all"):
        load_dataset(root, split="test")


def test_limit_is_a_seeded_sample_not_the_first_n():
    from rag_app.evaluate.dataset import QAItem

    items = [QAItem(f"q{i:03d}", "q?", ("a",), ("d",), line=i) for i in range(200)]
    a = select(items, limit=10, seed=0)
    assert len(a) == 10
    assert [i.id for i in a] == [i.id for i in select(items, limit=10, seed=0)]  # deterministic
    assert [i.id for i in a] != [i.id for i in items[:10]]  # not the head of the file
    assert [i.line for i in a] == sorted(i.line for i in a)  # file order kept
    assert [i.id for i in select(items, limit=10, seed=1)] != [i.id for i in a]
    assert len(select(items, limit=500)) == 200
    with pytest.raises(DatasetError, match="--limit must be >= 1"):
        select(items, limit=0)


def test_withheld_ids_seeded_fraction():
    from rag_app.evaluate.dataset import QAItem

    items = [QAItem(f"q{i}", "q?", ("a",), ("d",)) for i in range(50)]
    w = withheld_ids(items, 0.2, seed=3)
    assert len(w) == 10 and w == withheld_ids(items, 0.2, seed=3)
    assert withheld_ids(items, 0.0) == frozenset()
    assert len(withheld_ids(items[:2], 0.1)) == 1

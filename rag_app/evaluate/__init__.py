"""Offline evaluation: retrieval and answer metrics over a QA dataset, several configurations side by side.

``rag eval`` is the front door: it ingests the dataset's docs into the index
:func:`corpus_index` names, then calls :func:`evaluate`. This package takes an
index and never builds one.

Example::

    from rag_app.config import load_settings
    from rag_app.evaluate import EvalConfig, evaluate, load_dataset, plan_runs

    ds = load_dataset("data/sample", limit=20)
    runs = plan_runs([("base", load_settings(index="eval-out/sample/index"))], modes=["dense", "hybrid"])
    report, _ = evaluate(ds, runs, EvalConfig(retrieval_only=True), "eval-out/sample")
    report["configs"][0]["aggregate"]["recall@5"]
"""

from rag_app.evaluate.dataset import CorpusIndex, Dataset, QAItem, corpus_index, index_key, load_dataset
from rag_app.evaluate.runner import EvalConfig, RunSpec, evaluate, plan_runs

__all__ = ["CorpusIndex", "Dataset", "EvalConfig", "QAItem", "RunSpec", "corpus_index", "evaluate", "index_key",
           "load_dataset", "plan_runs"]

"""Aggregate the per-question records and write report.json, report.md and the plots.

Every aggregate is the mean of one per-question score over the questions
where it applies (None = does not apply), so any number in the report can be
recomputed from the records beside it. Latencies are p50/p95 over questions.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag_app.evaluate import metrics as m

log = logging.getLogger(__name__)

LATENCY_KEYS = ("retrieve_ms", "ttft_ms", "total_ms")
LABELS = {
    "mrr@10": "MRR@10", "ndcg@10": "nDCG@10", "em": "EM", "f1": "F1", "answer_in_context": "answer in sources",
    "gold_in_sources": "gold in sources", "citation_precision": "citation precision",
    "citation_valid": "citation validity", "abstained": "abstained (all)",
    "abstain_gold_shown": "abstained, gold shown", "abstain_gold_not_shown": "abstained, gold not shown",
    "abstention_accuracy": "abstained when withheld", "false_abstention": "false abstentions",
    "abstained_answerable": "abstained, answerable (raw)", "unsupported": "uncited answers",
    "unsupported_claims": "claims marked unsupported", "recited": "re-cited",
    "guard_withheld": "withheld (planted instruction)", "hit_token_cap": "replies at the token cap",
    "repetition_stopped": "stopped repeating",
}
ENDING_KEYS = ("hit_token_cap", "repetition_stopped")
ANSWER_KEYS = ("em", "f1", "answer_in_context", "citation_precision", "citation_valid", "unsupported",
               "unsupported_claims", "recited", "guard_withheld")
ABSTAIN_KEYS = ("abstain_gold_shown", "abstain_gold_not_shown", "abstention_accuracy", "false_abstention",
                "abstained_answerable")


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means of every score key (None when no question has it), counts, and latency p50/p95."""
    keys = list(dict.fromkeys(k for r in records for k in r["scores"]))
    agg: dict[str, Any] = {"n": len(records), "n_withheld": sum(1 for r in records if r["withheld"]),
                           "n_expect_abstain": sum(1 for r in records if r["expect_abstain"])}
    for key in keys:
        agg[key] = m.mean(r["scores"].get(key) for r in records)
        agg[f"n_{key}"] = sum(1 for r in records if r["scores"].get(key) is not None)
    for key in LATENCY_KEYS:
        values = [r["latency"].get(key) for r in records]
        agg[f"{key}_p50"] = m.percentile(values, 50)
        agg[f"{key}_p95"] = m.percentile(values, 95)
    by_type: dict[str, dict[str, Any]] = {}
    for answer_type in sorted({str(r["answer_type"]) for r in records}):
        rs = [r for r in records if str(r["answer_type"]) == answer_type]
        by_type[answer_type] = {"n": len(rs), "em": m.mean(r["scores"].get("em") for r in rs),
                                "f1": m.mean(r["scores"].get("f1") for r in rs)}
        if answer_type.startswith("yes_no"):
            baseline = yes_no_baseline(rs, prefix="")
            baseline["scored_n"] = baseline.pop("n")  # "n" stays the type's question count, withheld ones included
            by_type[answer_type].update(baseline)
    agg["by_answer_type"] = by_type
    agg.update(yes_no_baseline(records))
    return agg


def yes_no_baseline(records: Sequence[dict[str, Any]], prefix: str = "yes_no_") -> dict[str, Any]:
    """Accuracy on the scored yes/no(/maybe) questions beside the majority baseline on the same questions.

    Why: "accuracy 0.542" means little without "majority 0.55 (yes)" next to it.
    Scored means the question has an ``em`` (answerable, answered; an abstention
    counts as wrong), so both numbers are over one set of questions.

    Returns:
        ``{prefix}n``, ``{prefix}accuracy``, ``{prefix}majority`` (share) and
        ``{prefix}majority_label``; accuracy and majority are None without such questions.
    """
    scored = [r for r in records if str(r.get("answer_type") or "").startswith("yes_no")
              and r["scores"].get("em") is not None]
    majority = m.majority_label(r["answers"][0] for r in scored)
    return {f"{prefix}n": len(scored), f"{prefix}accuracy": m.mean(r["scores"]["em"] for r in scored),
            f"{prefix}majority": majority[1] if majority else None,
            f"{prefix}majority_label": majority[0] if majority else None}


def count_share(agg: dict[str, Any], key: str) -> str:
    """``3 (0.075)``: how many of the questions a 0/1 score applies to have it, and their share; ``–`` if none.

    Records written before the score existed have no value for it, so they
    count in neither part (an old report shows ``–``).
    """
    n, share = agg.get(f"n_{key}") or 0, agg.get(key)
    return "–" if not n or share is None else f"{round(share * n)} ({share:.3f})"


def majority_text(share: float | None, label: str | None) -> str:
    """``0.550 (yes)``, or ``–`` when there is no yes/no question."""
    return "–" if share is None else f"{share:.3f} ({label})"


def git_commit(repo: Path) -> dict[str, Any] | None:
    """HEAD of the git repository holding the code, and whether the tree has changes; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _describe_settings(settings: Any) -> dict[str, Any]:
    d = settings.model_dump(mode="json")
    d["generate"]["adapter_path"] = settings.generate.adapter_path
    return d


def build_report(dataset: Any, states: Sequence[Any], config: Any, *, interrupted: bool = False,
                 command: str | None = None) -> dict[str, Any]:
    """The whole report as one JSON-able dict: how it was made, aggregates, and every record."""
    from rag_app.config import REPO_ROOT

    runs = []
    for st in states:
        records = list(st.records.values())
        runs.append({
            "name": st.spec.name,
            "fingerprint": st.fingerprint,
            "settings": _describe_settings(st.spec.settings),
            "index": str(st.spec.settings.index),
            "planned": len(dataset.items),
            "finished": len(records),
            "aggregate": aggregate(records),
            "records": records,
        })
    return {
        "dataset": dataset.describe(),
        "eval": {"ks": list(config.ks), "depth": config.depth, "retrieval_only": config.retrieval_only,
                 "unanswerable": config.unanswerable, "seed": config.seed, "decoding": "greedy (temperature 0)"},
        "command": command,
        "git": git_commit(REPO_ROOT),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "configs": runs,
    }


# ------------------------------------------------------------------ markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def worst_records(records: Sequence[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The n worst questions: lowest answer score (F1, or abstention when it should abstain), then nDCG@10."""

    def key(r: dict[str, Any]) -> tuple[float, float]:
        s = r["scores"]
        answer = s.get("f1") if s.get("f1") is not None else s.get("abstention_accuracy")
        ndcg = s.get("ndcg@10")
        return (answer if answer is not None else (ndcg or 0.0), ndcg if ndcg is not None else 0.0)

    return sorted(records, key=key)[:n]


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: what ran, the side-by-side tables, and the worst questions of each configuration."""
    ds, ev = report["dataset"], report["eval"]
    runs = report["configs"]
    git = report["git"] or {}
    lines = [f"# Evaluation: {ds['name']}", ""]
    lines += [f"- date: {report['date']}",
              f"- commit: {git.get('commit', 'not in a git repository')}{' (uncommitted changes)' if git.get('dirty') else ''}",
              f"- questions: {ds['questions_evaluated']} of {ds['questions_in_file']} (split {ds['split']}, "
              f"limit {ds['limit']}, seed {ds['seed']})",
              f"- withheld gold (--unanswerable): {ev['unanswerable']}; retrieval-only: {ev['retrieval_only']}; "
              f"decoding: {ev['decoding']}"]
    if report.get("command"):
        lines.append(f"- command: `{report['command']}`")
    if report["interrupted"] or any(r["finished"] < r["planned"] for r in runs):
        lines.append("- **incomplete**: " + ", ".join(f"{r['name']} {r['finished']}/{r['planned']}" for r in runs))
    lines += ["", "## Configurations", ""]
    lines += _table(["config", "mode", "top_k", "mmr", "chunk size", "model", "adapter", "index"],
                    [[r["name"], r["settings"]["retrieve"]["mode"], r["settings"]["retrieve"]["top_k"],
                      r["settings"]["retrieve"]["mmr"], r["settings"]["ingest"]["chunk_size"],
                      r["settings"]["generate"]["model"], r["settings"]["generate"]["adapter_path"] or "none",
                      r["index"]] for r in runs])
    ks = ev["ks"]
    ret_keys = [f"recall@{k}" for k in ks] + [f"hit@{k}" for k in ks] + ["mrr@10", "ndcg@10", "gold_in_sources"]
    lines += ["## Retrieval (document level)", ""]
    lines += _table(["config", "n", *[LABELS.get(k, k) for k in ret_keys]],
                    [[r["name"], r["aggregate"].get("n_mrr@10", 0), *[r["aggregate"].get(k) for k in ret_keys]] for r in runs])
    if not ev["retrieval_only"]:
        lines += ["## Answers", ""]
        lines += _table(["config", "n", *[LABELS[k] for k in ANSWER_KEYS]],
                        [[r["name"], r["aggregate"].get("n_f1"), *[r["aggregate"].get(k) for k in ANSWER_KEYS]]
                         for r in runs])
        types = sorted({t for r in runs for t in r["aggregate"]["by_answer_type"]})
        lines += ["F1 by answer type (yes/no: first word of the reply):", ""]
        lines += _table(["config", *types], [[r["name"], *[r["aggregate"]["by_answer_type"].get(t, {}).get("f1")
                                                           for t in types]] for r in runs])
        if any(r["aggregate"].get("yes_no_n") for r in runs):
            lines += ["Yes/no accuracy beside the majority baseline (always giving the most common gold answer of "
                      "those questions):", ""]
            lines += _table(["config", "n", "yes/no accuracy", "majority"],
                            [[r["name"], r["aggregate"]["yes_no_n"], r["aggregate"]["yes_no_accuracy"],
                              majority_text(r["aggregate"]["yes_no_majority"], r["aggregate"]["yes_no_majority_label"])]
                             for r in runs])
        lines += ["How replies ended: at the token cap (generate.max_new_tokens; cut mid-answer) or stopped by the "
                  "repetition guard (it was repeating itself or copying reference markers):", ""]
        lines += _table(["config", "generated", *[LABELS[k] for k in ENDING_KEYS]],
                        [[r["name"], r["aggregate"].get("n_hit_token_cap", 0),
                          *[count_share(r["aggregate"], k) for k in ENDING_KEYS]] for r in runs])
        lines += ["## Abstention", "",
                  "A false abstention is one on an answerable question whose answer string was in the sources "
                  "shown (for yes/no questions: a gold document was shown).", ""]
        lines += _table(["config", *[LABELS[k] for k in ABSTAIN_KEYS]],
                        [[r["name"], *[r["aggregate"].get(k) for k in ABSTAIN_KEYS]] for r in runs])
    lines += ["## Latency (ms, p50 / p95)", ""]
    lines += _table(["config", "retrieve", "first token", "total"],
                    [[r["name"], *[f"{_fmt(r['aggregate'][f'{k}_p50'], 1)} / {_fmt(r['aggregate'][f'{k}_p95'], 1)}"
                                   for k in LATENCY_KEYS]] for r in runs])
    for r in runs:
        lines += [f"## Worst questions: {r['name']}", ""]
        for n, rec in enumerate(worst_records(r["records"]), start=1):
            lines += _render_record(n, rec)
    return "\n".join(lines).rstrip() + "\n"


def _render_record(n: int, rec: dict[str, Any]) -> list[str]:
    s = rec["scores"]
    gold = set(rec["gold_doc_ids"])
    scores = ", ".join(f"{LABELS.get(k, k)} {_fmt(s.get(k))}" for k in ("f1", "abstention_accuracy", "ndcg@10", "mrr@10") if s.get(k) is not None)
    out = [f"### {n}. {rec['question']}", "",
           f"- id `{rec['id']}` ({rec['answer_type'] or 'untyped'}{', gold withheld' if rec['withheld'] else ''})"
           + (f"; {scores}" if scores else ""),
           f"- expected: {' | '.join(rec['answers'])}; gold docs: {', '.join(rec['gold_doc_ids'])}"]
    if rec["reply"] is not None:
        out.append(f"- reply: {' '.join(rec['reply'].split())}")
    out.append("- sources shown:")
    for src in rec["sources"]:
        mark = " **(gold)**" if src["doc_id"] in gold else ""
        out.append(f"  - [{src['number']}] {src['location']}{mark}, score {_fmt(src['score'])}: {src['snippet']}")
    return out + [""]


# ------------------------------------------------------------------ plots and files


def plot(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """recall_at_k.png (a curve per config) and, when answers were generated, answers.png (F1 and citation precision bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["configs"]
    ks = report["eval"]["ks"]
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        ys = [r["aggregate"].get(f"recall@{k}") for k in ks]
        if any(y is not None for y in ys):
            ax.plot(ks, [y if y is not None else float("nan") for y in ys], marker="o", label=r["name"])
    ax.set(xlabel="k (documents)", ylabel="recall@k", ylim=(0, 1.02), xticks=ks, title=f"Recall@k: {report['dataset']['name']}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "recall_at_k.png", dpi=120)
    plt.close(fig)
    written.append(out_dir / "recall_at_k.png")
    if not report["eval"]["retrieval_only"]:
        import numpy as np

        metrics = [("f1", "answer F1"), ("citation_precision", "citation precision")]
        x = np.arange(len(runs))
        width = 0.8 / len(metrics)
        fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(runs) + 2), 4))
        for j, (key, label) in enumerate(metrics):
            vals = [r["aggregate"].get(key) or 0.0 for r in runs]
            bars = ax.bar(x + (j - (len(metrics) - 1) / 2) * width, vals, width, label=label)
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.set(xticks=x, ylim=(0, 1.1), title=f"Answers: {report['dataset']['name']}")
        ax.set_xticklabels([r["name"] for r in runs])
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "answers.png", dpi=120)
        plt.close(fig)
        written.append(out_dir / "answers.png")
    return written


def _dump(report: dict[str, Any]) -> str:
    runs = []
    for run in report["configs"]:
        head = json.dumps({k: v for k, v in run.items() if k != "records"}, indent=1, ensure_ascii=False)
        recs = ",\n".join(json.dumps(r, ensure_ascii=False) for r in run["records"])
        runs.append(head[:-2] + ',\n "records": [\n' + recs + "\n]}")
    top = json.dumps({k: v for k, v in report.items() if k != "configs"}, indent=1, ensure_ascii=False)
    return top[:-2] + ',\n "configs": [\n' + ",\n".join(runs) + "\n]}\n"


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.md and the PNG plots (each file atomically); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    # One line per record keeps the file greppable and about half the size of an indented dump.
    for name, text in (("report.json", _dump(report)),
                       ("report.md", render_markdown(report))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)
        files.append(out_dir / name)
    try:
        files += plot(report, out_dir)
    except Exception as err:  # a plotting problem must not lose the numbers already written
        log.warning("could not draw the plots: %s", err)
    return files


# ------------------------------------------------------------------ console


class EvalProgress:
    """A rich progress bar whose description shows the current run's running averages.

    ``start(total, states)`` counts the questions already recorded (a resume)
    as done; ``advance(state)`` after each new record.
    """

    def __init__(self, console: Any, ks: Sequence[int]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.recall_key = f"recall@{max([k for k in ks if k <= 5] or [min(ks)])}"
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._task: Any = None

    def start(self, total: int, states: Sequence[Any]) -> None:
        self._progress.start()
        done = sum(len(st.records) for st in states)
        self._task = self._progress.add_task("evaluating", total=total, completed=done)

    def advance(self, state: Any) -> None:
        records = state.records.values()
        parts = [state.spec.name]
        for key, label in ((self.recall_key, self.recall_key.replace("recall", "R")), ("f1", "F1"),
                           ("abstained", "abstain")):
            value = m.mean(r["scores"].get(key) for r in records)
            if value is not None:
                parts.append(f"{label} {value:.2f}")
        self._progress.update(self._task, advance=1, description="  ".join(parts))

    def stop(self) -> None:
        self._progress.stop()


def summary_table(report: dict[str, Any]) -> Any:
    """A rich Table of the headline numbers per configuration, for the terminal."""
    from rich.table import Table

    ks = report["eval"]["ks"]
    keys = [f"recall@{k}" for k in ks] + ["mrr@10", "ndcg@10"]
    if not report["eval"]["retrieval_only"]:
        keys += ["f1", "citation_precision", "false_abstention"]
        if report["eval"]["unanswerable"] > 0:
            keys.append("abstention_accuracy")
    short = {"mrr@10": "MRR", "ndcg@10": "nDCG", "f1": "F1", "citation_precision": "cite P",
             "false_abstention": "false abst", "abstention_accuracy": "abst acc"}
    table = Table(title=f"{report['dataset']['name']}: {report['dataset']['questions_evaluated']} questions",
                  title_justify="left")
    table.add_column("config", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    for key in keys:
        table.add_column(short.get(key, key.replace("recall", "R")), justify="right", no_wrap=True)
    for r in report["configs"]:
        table.add_row(r["name"], f"{r['finished']}/{r['planned']}", *[_fmt(r["aggregate"].get(k)) for k in keys])
    return table

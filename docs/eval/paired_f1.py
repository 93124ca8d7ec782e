"""Paired F1 difference between two `rag eval` runs on the same questions, with a bootstrap 95% interval.

    python docs/eval/paired_f1.py A/records.jsonl B/records.jsonl [--config-a adapter] [--fingerprint-a F] ...
    python docs/eval/paired_f1.py A1 B1 A2 B2 ...     # several sets pooled: one question, one pair

Each records.jsonl keeps every run's rows keyed by the run's fingerprint (the adapter's hash is in it); the
given fingerprint, else the newest run of the given configuration, is used from each. Only answerable questions (gold not withheld) asked in both are paired.
"""

import argparse
import json
import random
from pathlib import Path


def run_rows(path: Path, config: str | None, fingerprint: str | None) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if config is None or r["config"] == config]
    fingerprint = fingerprint or rows[-1]["fingerprint"]
    return {r["id"]: r for r in rows if r["fingerprint"] == fingerprint and not r["withheld"]}


def bootstrap_interval(diff: list[float], samples: int = 10_000) -> tuple[float, float, float]:
    """(mean, low, high): the mean paired difference and its seeded bootstrap 95% interval."""
    rng = random.Random(0)
    boots = sorted(sum(rng.choices(diff, k=len(diff))) / len(diff) for _ in range(samples))
    return sum(diff) / len(diff), boots[int(0.025 * samples)], boots[int(0.975 * samples)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="A B, or A1 B1 A2 B2 ... (pairs of records.jsonl)")
    parser.add_argument("--config-a")
    parser.add_argument("--config-b")
    parser.add_argument("--fingerprint-a")
    parser.add_argument("--fingerprint-b")
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    if len(args.records) % 2:
        parser.error("give records.jsonl files in pairs: A B [A2 B2 ...]")
    if len(args.records) > 2 and (args.fingerprint_a or args.fingerprint_b):
        parser.error("a fingerprint names one run of one set: give --fingerprint-* with a single pair only")
    diff = []
    for path_a, path_b in zip(args.records[::2], args.records[1::2]):
        a = run_rows(path_a, args.config_a, args.fingerprint_a)
        b = run_rows(path_b, args.config_b, args.fingerprint_b)
        ids = sorted(a.keys() & b.keys())
        if not ids:
            parser.error(f"no answerable question in both {path_a} and {path_b}: check the runs chosen")
        diff += [a[i]["scores"]["f1"] - b[i]["scores"]["f1"] for i in ids]
    mean, lo, hi = bootstrap_interval(diff, args.samples)
    print(f"{len(diff)} paired answerable questions: F1 A - B = {mean:.3f} (bootstrap 95% {lo:.2f} to {hi:.2f})")


if __name__ == "__main__":
    main()

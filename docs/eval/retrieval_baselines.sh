#!/usr/bin/env bash
# Retrieval baselines (dense, hybrid, BM25; MiniLM, 800-char chunks) on every QA set in $DATA.
# A seeded sample of 300 questions per set (all of them where a set has fewer); indexes are cached in .rag/datasets.
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding the QA sets (see docs/EVAL.md)}
for set in xquad_en hotpotqa_sample100 musique_sample100 pubmedqa_l tatqa_finance cmu_qa_wikipedia; do
  rag eval "$DATA/$set" --retrieval-only --mode dense --mode hybrid --mode bm25 --limit 300 \
    --out "eval-out/retrieval/$set"
done

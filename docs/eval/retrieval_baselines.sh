#!/usr/bin/env bash
# Retrieval baselines (dense, hybrid, BM25; MiniLM, 800-char chunks) on every shared set.
# A seeded sample of 300 questions per set (all of them where a set has fewer); indexes are cached in .rag/datasets.
set -euo pipefail
DATA=${DATA:-../shared/data}
for set in xquad_en hotpotqa_sample100 musique_sample100 pubmedqa_l tatqa_finance cmu_qa_wikipedia; do
  rag eval "$DATA/$set" --retrieval-only --mode dense --mode hybrid --mode bm25 --limit 300 \
    --out "eval-out/retrieval/$set"
done

#!/usr/bin/env bash
# Base vs shipped adapter: same retrieval (dense top-4), same prompt, greedy, answers capped at 64 tokens.
# Test questions only (split by document for xquad_en; pubmedqa_l and musique were never trained on);
# a fifth of the questions have their gold documents withheld (--unanswerable 0.2) to measure abstention.
set -euo pipefail
DATA=${DATA:-../shared/data}
N=${N:-50}
for set in xquad_en hotpotqa_sample100 pubmedqa_l; do
  RAG_GENERATE__MAX_NEW_TOKENS=64 rag eval "$DATA/$set" --split test --limit "$N" --unanswerable 0.2 \
    --no-adapter --config docs/eval/adapter.toml --out "eval-out/finetune/$set"
done

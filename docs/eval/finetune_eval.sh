#!/usr/bin/env bash
# Base vs shipped adapter: same retrieval (dense top-4), same prompt, greedy, answers capped at 128 tokens (room for a quoted sentence).
# Test questions only (split by document for xquad_en, per question for hotpotqa); pubmedqa_l and
# musique_sample100 were never trained on. A fifth of the questions have their gold documents withheld
# (--unanswerable 0.2), so the right reply there is the abstain sentence.
set -euo pipefail
DATA=${DATA:-../shared/data}
N=${N:-40}
run() {  # set split limit
  RAG_GENERATE__MAX_NEW_TOKENS=128 rag eval "$DATA/$1" --split "$2" --limit "$3" --unanswerable 0.2 \
    --no-adapter --config docs/eval/adapter.toml --out "eval-out/finetune/$1"
}
run xquad_en test "$N"
run hotpotqa_sample100 test "$N"
run pubmedqa_l test "$N"
run musique_sample100 all 30

#!/usr/bin/env bash
# Base model vs the shipped adapter on every QA set in $DATA: same retrieval (dense top-5), same prompt, greedy,
# answers capped at 128 tokens (room for a quoted sentence). Test questions only (xquad_en, cmu_qa_wikipedia
# and tatqa_finance split by document, hotpotqa per question); pubmedqa_l and musique_sample100 were never
# trained on. A fifth of the questions have their gold documents withheld (--unanswerable 0.2), so the right
# reply there is the abstain sentence. The base rows are also issue 5's generator baselines (dense top-5).
# Re-running into the same --out reuses finished records; a retrained adapter is re-run (records key on its hash).
# BACKEND=llamacpp serves with llama.cpp where auto would pick transformers (AMX CPUs; the v5b/v6 rows of
# docs/EVAL.md were served by llama.cpp). Extra arguments go to every `rag eval` (e.g. --config another.toml for one more configuration).
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding the QA sets (see docs/EVAL.md)}
N=${N:-30}
SETS=${SETS:-"xquad_en:test hotpotqa_sample100:test cmu_qa_wikipedia:test tatqa_finance:test pubmedqa_l:test musique_sample100:all"}
for entry in $SETS; do
  set_name=${entry%%:*} split=${entry##*:}
  RAG_GENERATE__BACKEND=${BACKEND:-auto} RAG_GENERATE__MAX_NEW_TOKENS=128 RAG_RETRIEVE__TOP_K=5 RAG_RETRIEVE__MODE=dense rag eval "$DATA/$set_name" --split "$split" --limit "$N" \
    --unanswerable 0.2 --no-adapter --config docs/eval/adapter.toml --out "eval-out/finetune/$set_name" "$@"
done

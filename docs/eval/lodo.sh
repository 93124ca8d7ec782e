#!/usr/bin/env bash
# Leave-one-domain-out (issue 19): does the fine-tune help on documents of a kind it never saw?
# The recipe is trained on three sets only (xquad_en, cmu_qa_wikipedia, hotpotqa_sample100: their
# split_hint=train questions), then the base model, that adapter and the shipped one answer the same
# questions of the three sets it never saw: tatqa_finance (report tables, numbers), pubmedqa_l
# (biomedical abstracts, yes/no/maybe) and musique_sample100 (multi-hop Wikipedia). A fifth of the
# questions have their gold documents withheld (--unanswerable 0.2): the right reply there abstains.
#   DATA=path/to/sets bash docs/eval/lodo.sh train   # build the examples, train runs/lodo-a (resumable)
#   DATA=path/to/sets bash docs/eval/lodo.sh eval    # N questions a set, three configurations side by side
#   NAME=lodo-a2 ADAPTER=runs/lodo-a2 DATA=... bash docs/eval/lodo.sh eval   # one more adapter into the same folders
# Paired intervals: python docs/eval/paired_f1.py (see docs/EVAL.md, "Sets never trained on").
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding the QA sets (see docs/EVAL.md)}
ADAPTER=${ADAPTER:-runs/lodo-a}
N=${N:-100}
SETS=${SETS:-"tatqa_finance:test pubmedqa_l:test musique_sample100:all"}
case "${1:-}" in
  train)
    [ -f "$ADAPTER-examples.jsonl" ] || rag finetune "$DATA/xquad_en" "$DATA/cmu_qa_wikipedia" "$DATA/hotpotqa_sample100" \
      --out "$ADAPTER" --max-examples 960 --hybrid --p-gold 0.85 --inject 0.3 --seed 12 \
      --save-examples "$ADAPTER-examples.jsonl" --dry-run
    resume=(); [ -d "$ADAPTER/checkpoint" ] && resume=(--resume)
    # 50 optimizer steps x 8 = the first 400 examples of train()'s seeded order (a CPU hour's budget, 1 thread)
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} rag finetune --examples "$ADAPTER-examples.jsonl" --out "$ADAPTER" \
      --max-steps "${STEPS:-50}" --eval-examples 0 "${resume[@]}"
    ;;
  eval)
    # The adapters answer with the abstain token forbidden (threshold 1.0; the base model has no threshold):
    # each record keeps that token's probability, so greedy decoding and every threshold follow from this
    # one run:  python docs/eval/abstain_from_records.py eval-out/lodo/*/records.jsonl --config lodo-a --base base
    # The coverage gate is off (retrieve.min_coverage = 0) for the same reason: records carry each question's
    # coverage, so the shipped min_coverage follows too (--min-coverage 0.5, lodo_table.py --rule coverage:0.5).
    configs=(--config docs/eval/adapter.toml)
    if [ -n "${NAME:-}" ]; then  # one more adapter beside the runs already in the folders: NAME=v12 ADAPTER=runs/v12
      configs=(--adapter "$ADAPTER" --name "$NAME")
    elif [ -f "$ADAPTER/adapter_config.json" ]; then
      printf '# the leave-one-domain-out adapter (docs/eval/lodo.sh)\n[generate]\nadapter = "%s"\n' "$ADAPTER" > "$ADAPTER.toml"
      configs+=(--config "$ADAPTER.toml")
    fi
    for entry in $SETS; do
      set_name=${entry%%:*} split=${entry##*:}
      RAG_GENERATE__BACKEND=${BACKEND:-llamacpp} RAG_GENERATE__MAX_NEW_TOKENS=128 RAG_RETRIEVE__TOP_K=5 RAG_RETRIEVE__MODE=dense \
        RAG_GENERATE__ABSTAIN_THRESHOLD=${FORBID:-1.0} RAG_RETRIEVE__MIN_COVERAGE=0 rag eval "$DATA/$set_name" --split "$split" --limit "$N" \
        --unanswerable 0.2 $([ -n "${NAME:-}" ] || echo --no-adapter) "${configs[@]}" --out "${OUT:-eval-out/lodo}/$set_name"
    done
    ;;
  *) echo "usage: DATA=path/to/sets bash docs/eval/lodo.sh train|eval" >&2; exit 2 ;;
esac

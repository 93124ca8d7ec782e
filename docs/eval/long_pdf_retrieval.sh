#!/usr/bin/env bash
# Retrieval defaults on long documents (docs/EVAL.md): the long-PDF variants (docs/eval/long_pdf_sets.py)
# with dense, hybrid and BM25 at the default 800-character chunks (300 seeded questions), then 500 and
# 1200 against 800 on those and on two shared sets (dense and hybrid, 150 questions: a subset of the 300).
# Each chunk size is its own cached index (.rag/datasets/<set>-<tag>: the tag hashes the chunking).
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding the QA sets (see docs/EVAL.md)}
LONG=${LONG:-/tmp/longpdf}
OUT=${OUT:-eval-out/retrieval-long}
[ -d "$LONG/tatqa_finance_longpdf" ] || python docs/eval/long_pdf_sets.py "$DATA" "$LONG"
for set in "$LONG/tatqa_finance_longpdf" "$LONG/cmu_qa_wikipedia_longpdf"; do
  rag eval "$set" --retrieval-only --mode dense --mode hybrid --mode bm25 --limit 300 --out "$OUT/$(basename "$set")-800"
done
for set in "$LONG/tatqa_finance_longpdf" "$LONG/cmu_qa_wikipedia_longpdf" "$DATA/tatqa_finance" "$DATA/xquad_en"; do
  for size in 500 800 1200; do
    [ -d "$OUT/$(basename "$set")-$size" ] && continue
    RAG_INGEST__CHUNK_SIZE=$size rag eval "$set" --retrieval-only --mode dense --mode hybrid --limit 150 \
      --out "$OUT/$(basename "$set")-$size"
  done
done
python docs/eval/retrieval_table.py "$OUT"/*/

"""How close ``rag_app.openai_backend.estimate_tokens`` comes to a real tokenizer's count.

The openai backend cannot see the server's tokenizer, so it packs sources by
an estimate from UTF-8 bytes. This counts, with the bundled SmolLM2
tokenizer, the bytes per token of documents of each kind (English prose,
financial tables, biomedical abstracts, Python, and three short texts in
other scripts) beside the estimate's assumption: a ratio above
``BYTES_PER_TOKEN`` means the estimate errs high (safe), below it low.

    python bench/token_estimate.py --data DATA_DIR --out bench/results/token_estimate.json
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from transformers import AutoTokenizer

from rag_app.models import ensure_bundled_checkpoint
from rag_app.openai_backend import BYTES_PER_TOKEN, estimate_tokens

ROOT = Path(__file__).resolve().parents[1]
SHORT = {
    "German": "Die Hauptstadt von Frankreich ist Paris. Sie liegt an der Seine und hat über zwei Millionen Einwohner. ",
    "Russian": "Столица Франции — Париж. Он расположен на Сене, население более двух миллионов человек. ",
    "Chinese": "法国的首都是巴黎。它位于塞纳河畔，人口超过两百万。",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="folder with xquad_en/, tatqa_finance/, pubmedqa_l/")
    parser.add_argument("--files", type=int, default=40, help="documents per set")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(str(ensure_bundled_checkpoint(Path.home() / ".cache" / "rag_app")))
    sets = {name: sorted(glob.glob(str(args.data / name / "docs" / "*")))[: args.files]
            for name in ("xquad_en", "tatqa_finance", "pubmedqa_l")}
    sets["data/sample"] = sorted(glob.glob(str(ROOT / "data" / "sample" / "docs" / "*")))
    sets["python (rag_app/*.py)"] = sorted(glob.glob(str(ROOT / "rag_app" / "*.py")))
    texts = {name: [Path(f).read_text(encoding="utf-8", errors="ignore") for f in files] for name, files in sets.items()}
    texts |= {name: [text * 20] for name, text in SHORT.items()}
    rows = []
    for name, docs in texts.items():
        n_bytes = sum(len(t.encode("utf-8")) for t in docs)
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in docs)
        estimate = sum(estimate_tokens(t) for t in docs)
        rows.append({"set": name, "docs": len(docs), "bytes_per_token": round(n_bytes / tokens, 2),
                     "estimate_over_real": round(estimate / tokens, 2)})
    result = {"tokenizer": "SmolLM2-135M-Instruct (bundled)", "bytes_per_token_assumed": BYTES_PER_TOKEN, "rows": rows}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

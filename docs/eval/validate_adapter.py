"""Score an adapter on the validation examples a training run saved, as its training card scores them.

    python docs/eval/validate_adapter.py runs/raft-v3-examples.jsonl runs/adapter-v1 [N=40]

The first N ``val:`` examples in file order are the ones ``rag finetune
--examples FILE`` scores base vs adapter on (finetune.recipe.validate_adapter),
so two adapters can be compared on the same held-out questions and sources.
"""

import json
import sys
from pathlib import Path

from finetune.dataset import read_jsonl
from finetune.recipe import validate_adapter
from rag_app.config import load_settings

examples, adapter = Path(sys.argv[1]), Path(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
val = [e for e in read_jsonl(examples) if e.id.startswith("val:")][:n]
scores = validate_adapter(load_settings(None), adapter, val, base=False)
print(json.dumps({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)} if isinstance(v, dict) else v
                  for k, v in scores.items()}, indent=2))

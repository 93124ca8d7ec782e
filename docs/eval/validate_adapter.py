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
from finetune.validate import compare
from rag_app.config import load_settings
from rag_app.generation import HFGenerator
from rag_app.models import apply_adapter, load_model

examples, adapter = Path(sys.argv[1]), Path(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
settings = load_settings(None)
val = [e for e in read_jsonl(examples) if e.id.startswith("val:")][:n]
tuned = apply_adapter(load_model(settings.generate.model, settings.cache_dir, device="cpu"), adapter)
scores = compare(val, {adapter.name: HFGenerator(tuned, adapter.name, str(adapter))})
print(json.dumps({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)} if isinstance(v, dict) else v
                  for k, v in scores.items()}, indent=2))

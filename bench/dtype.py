"""bf16 vs fp32 for the bundled model on this CPU: why ``dtype="auto"`` checks for native bf16.

Times, in one process and interleaved, a forward pass of SmolLM2-135M over a
prompt of ``--tokens`` tokens (prefill, what serving and training spend most
time on) and one decode step with a KV cache, in fp32 and in bf16, on one
thread. Prints JSON with the CPU's capability (``AVX2``, ``AVX512``...),
whether oneDNN has native bf16 (``rag_app.models.cpu_bf16_is_fast``), and the
bf16/fp32 time ratios; ``--out`` also writes it.

    python bench/dtype.py --out bench/results/dtype.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rag_app.models import cpu_bf16_is_fast, load_model

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = Path.home() / ".cache" / "rag_app"
    models = {name: load_model("bundled", cache, dtype=name, device="cpu").model.eval() for name in ("float32", "bfloat16")}
    ids = torch.randint(100, 40000, (1, args.tokens))
    result: dict = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_bf16_is_fast(),
                    "tokens": args.tokens, "threads": 1, "torch": torch.__version__}
    with torch.inference_mode():
        past = {name: m(ids, use_cache=True).past_key_values for name, m in models.items()}
        for name, model in models.items():  # warm-up
            model(ids[:, :16])
        for name, model in models.items():
            result[f"prefill_s_{name}"] = timed(lambda: model(ids), args.rounds)
            step = ids[:, -1:]
            result[f"decode_step_ms_{name}"] = 1000 * timed(
                lambda: model(step, past_key_values=past[name], use_cache=True), args.rounds * 5)
    result["prefill_bf16_over_fp32"] = result["prefill_s_bfloat16"] / result["prefill_s_float32"]
    result["decode_bf16_over_fp32"] = result["decode_step_ms_bfloat16"] / result["decode_step_ms_float32"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

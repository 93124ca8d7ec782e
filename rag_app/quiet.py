"""Keep libraries' messages for developers out of a user's terminal (``-v`` shows them again).

Why: every command loads transformers, peft and (through peft) bitsandbytes, which print notices a
user can do nothing about: bitsandbytes warns at import on AVX512-BF16 CPUs that a hub kernel for
4-bit CPU matmuls could not be fetched (always, offline; it matters only to QLoRA on a CPU), and
transformers' deprecation notices fire when peft calls old names.
"""

from __future__ import annotations

import logging
import warnings


def quiet_libraries(verbose: bool) -> None:
    """Hide library warnings unless ``verbose``; errors always show."""
    # only the module that warns about the hub kernel: bitsandbytes' other warnings (CUDA binary, slow dtype) stay
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.NOTSET if verbose else logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)

"""``python -m rag_app.llamacpp_server ARGS``: llama-cpp-python's OpenAI-compatible server, safe on AMX CPUs.

Why: on Intel CPUs with AMX, llama.cpp builds that use AMX weight buffers
segfault at the first decode on some machines (upstream
ggml-org/llama.cpp#20824); ``python -m llama_cpp.server`` then drops the
connection mid-answer. This runs the same server with those buffers off
(:func:`rag_app.llamacpp.without_amx_buffers`, what ``rag`` does in-process)
and changes nothing elsewhere. ARGS are ``llama_cpp.server``'s own.
"""

from __future__ import annotations

import runpy

from rag_app.llamacpp import without_amx_buffers


def main() -> None:
    with without_amx_buffers():  # held for the server's life: it loads its model after parsing ARGS
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

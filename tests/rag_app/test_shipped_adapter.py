"""``adapter = "default"``: the adapter shipped inside the package.

The wheel that carries it is tested in tests/test_wheel_install.py.
"""

from __future__ import annotations

from pathlib import Path

import rag_app
from rag_app.config import GenerateConfig, describe_origin, load_settings
from rag_app.models import BUNDLED_ID, check_adapter

PACKAGED = Path(rag_app.__file__).resolve().parent / "adapters" / "smollm2-raft"


def test_default_is_the_adapter_inside_the_package():
    # It lived under the checkout's data/, which an installed wheel does not have.
    assert GenerateConfig().adapter_path == str(PACKAGED)
    assert check_adapter(PACKAGED, BUNDLED_ID) == PACKAGED  # a whole adapter for the bundled model
    assert (PACKAGED / "HOW_MADE.md").is_file() and (PACKAGED / "training_card.json").is_file()


def test_verbose_names_the_resolved_adapter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no rag.toml
    for name in ("RAG_GENERATE__ADAPTER", "RAG_GENERATE__MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert describe_origin(load_settings())["adapter"] == f"{PACKAGED} (default)"

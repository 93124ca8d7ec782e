"""The project as ``pip install`` delivers it: a built wheel, installed in a fresh venv, run outside the checkout.

A checkout hides what a wheel leaves out (until #21 the wheel shipped no
adapter, and ``adapter = "default"`` then silently meant the base model).
Offline: the wheel is built without build isolation, and the fresh venv gets
its dependencies from this one through a ``.pth`` line instead of an index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What setuptools reads to build the wheel: pyproject.toml, its readme, the packages it finds.
BUILD_INPUTS = ("pyproject.toml", "README.md", "rag_app", "ingest", "finetune", "ui")
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "HOW_MADE.md", "training_card.json"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (an in-tree build would leave build/ and egg-info behind)."""
    pytest.importorskip("setuptools", reason="the offline build (--no-build-isolation) needs setuptools in this venv")
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    (built,) = out.glob("rag_app-*.whl")
    return built


def test_the_wheel_carries_the_shipped_adapter(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert ADAPTER_FILES <= {Path(n).name for n in names if n.startswith("rag_app/adapters/smollm2-raft/")}
    assert {"rag_app/cli.py", "ingest/pipeline.py", "finetune/train.py", "ui/app.py"} <= set(names)


@pytest.mark.slow
def test_installed_wheel_answers_with_the_shipped_adapter(wheel, tmp_path, model_cache_dir):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies from this venv, after the fresh one's own site-packages (a plain path line: the .pth files
    # there, among them the editable install of the checkout, are not run).
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "project-deps.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)

    work = tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "tower.txt").write_text(
        "The Eiffel Tower stands in Paris. It was finished in 1889 and is 330 metres tall.\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["RAG_CACHE_DIR"] = str(model_cache_dir)  # the converted bundled model, as the other slow tests share it

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    imported = Path(run(str(python), "-c", "import rag_app; print(rag_app.__file__)").strip())
    assert imported == site / "rag_app" / "__init__.py"
    rag = str(venv / "bin" / "rag")
    run(rag, "ingest", "docs", "--index", "idx")
    answer = json.loads(run(rag, "ask", "When was the Eiffel Tower finished?", "--index", "idx", "--json",
                            "--max-new-tokens", "8"))
    assert answer["adapter"] == str(site / "rag_app" / "adapters" / "smollm2-raft")
    assert not Path(answer["adapter"]).is_relative_to(REPO)
    assert "1889" in answer["text"] and answer["citations"] == [1]

"""The user-facing docs speak for themselves: no team-internal paths, links that resolve, commands that exist.

A user who cloned the repository has README.md, docs/ and data/sample, not
the team's sibling folders or notes; a README command whose flag was renamed
fails on the first try. These checks read the files only (no models, no
network).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from rag_app.cli import app
from rag_app.evaluate.dataset import REQUIRED_KEYS

ROOT = Path(__file__).resolve().parent.parent
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "sample" / "SOURCE.md",
             *sorted((ROOT / "rag_app" / "adapters").glob("*/*.md"))]  # the adapter's notes ship in the wheel
# What only the team had: a sibling folder, its design notes, and the machine a session ran on.
INTERNAL = ["../shared", "DESIGN.md", "STYLE.md", "this CPU", "this machine", "other engineers", "this session"]


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_name_nothing_only_the_team_had(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = [phrase for phrase in INTERNAL if phrase.lower() in text.lower()]
    assert not found, f"{doc.relative_to(ROOT)} mentions {found}"


def test_every_doc_the_readme_points_at_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(([^)#\s]+)\)", readme))  # [text](path)
    links |= set(re.findall(r"\b((?:docs|data|tests)/[\w./-]+\.(?:md|png|py|jsonl))\b", readme))
    assert "docs/EVAL.md" in links and "docs/BENCHMARKS.md" in links and "docs/RELIABILITY.md" in links
    missing = sorted(link for link in links if not link.startswith("http") and not (ROOT / link).exists())
    assert not missing, f"README.md points at missing files: {missing}"


def _readme_commands() -> list[list[str]]:
    """Every ``rag ...`` line of the README's shell blocks, split like a shell (comments dropped)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["rag"]:
                lines.append(words)
    return lines


def test_readme_commands_use_real_commands_and_flags() -> None:
    commands = typer.main.get_command(app).commands
    seen = _readme_commands()
    assert len(seen) >= 10
    for words in seen:
        name, flags = words[1], [w.split("=")[0] for w in words[2:] if w.startswith("-")]
        assert name in commands, f"README: rag {name} is not a command"
        known = {opt for param in commands[name].params for opt in (*param.opts, *param.secondary_opts)}
        assert not set(flags) - known, f"README: rag {name} has no {sorted(set(flags) - known)}"


def test_readme_examples_run_on_the_shipped_sample() -> None:
    """Examples name data/sample (shipped), and it has the layout rag eval and rag finetune read."""
    paths = {w for words in _readme_commands() for w in words[2:] if "/" in w and not w.startswith("-")}
    assert paths and all(p.startswith(("data/sample", "runs/")) for p in paths), paths
    assert (ROOT / "data" / "sample" / "docs").is_dir() and (ROOT / "data" / "sample" / "qa.jsonl").is_file()


def test_eval_doc_describes_every_required_qa_key() -> None:
    layout = (ROOT / "docs" / "EVAL.md").read_text(encoding="utf-8").split("## The sets measured below")[0]
    assert "## Bring your own set" in layout
    for key in (*REQUIRED_KEYS, "answer_type", "split_hint", "answer_spans"):
        assert f"| `{key}` |" in layout, f"docs/EVAL.md's layout table does not describe {key}"

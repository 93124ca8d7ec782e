"""`rag ingest` and `rag index-info` as a user runs them (fake embedder, temp folders)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import run_main

from rag_app.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch, fake_embedder) -> Path:
    """A docs folder, cwd in tmp (no stray rag.toml), and the fake embedder as the configured model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake-embedder")
    monkeypatch.setattr("rag_app.embeddings.load_embedder", lambda name: fake_embedder)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The Rhine flows into the North Sea.", encoding="utf-8")
    (docs / "b.md").write_text("# Moon\n\nApollo 11 landed in 1969.", encoding="utf-8")
    (docs / "c.bin").write_bytes(b"\x00\x01")
    return docs


def test_missing_folder_is_one_error_line_and_exit_2(env: Path, monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "ingest", "missing_dir")
    assert code == 2 and out == ""
    assert err.splitlines() == ["Error: folder missing_dir does not exist; pass a folder of documents: rag ingest DIR"]


def test_unsupported_only_folder_is_an_error(env: Path, monkeypatch, capsys, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.xlsx").write_text("a,b", encoding="utf-8")
    code, _, err = run_main(monkeypatch, capsys, "ingest", str(other))
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"Error: nothing to ingest in {other}")


def test_ingest_then_up_to_date_then_index_info(env: Path, monkeypatch, capsys) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    assert code == 0
    assert "Indexed docs -> idx (generation 1)" in out
    assert "files: 2 added, 0 updated, 0 unchanged, 0 removed, 1 skipped, 0 failed" in out
    assert "skipped: c.bin: unsupported type .bin" in out
    code, out, _ = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    assert code == 0 and out.startswith("index is up to date")

    result = CliRunner().invoke(app, ["index-info", "--index", "idx", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["documents"], info["embedding_model"], info["generation"]) == (2, "fake-embedder", 1)
    assert info["source_dir"] == str(env.resolve()) and info["chunks"] >= 2

    result = CliRunner().invoke(app, ["index-info", "--index", "idx"])
    assert "embedding_model  fake-embedder" in result.stdout


def test_chunk_flags_reach_the_index(env: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", "docs", "--index", "idx", "--chunk-size", "20", "--chunk-overlap", "5"])
    assert result.exit_code == 0, result.output
    info = json.loads(CliRunner().invoke(app, ["index-info", "--index", "idx", "--json"]).stdout)
    assert info["chunking"] == {"chunk_size": 20, "chunk_overlap": 5, "chunk_unit": "chars", "splitter": 2}
    assert info["chunks"] > 2


def test_bad_flag_value_is_one_error_line(env: Path, monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "ingest", "docs", "--chunk-size", "100", "--chunk-overlap", "100")
    assert code == 2 and err.startswith("Error: invalid setting: ingest.chunk_overlap") and len(err.splitlines()) == 1


def test_index_info_without_index(env: Path, monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "index-info", "--index", "nowhere")
    assert code == 2 and err.splitlines() == ["Error: no index at nowhere; build one with: rag ingest DIR --index nowhere"]


def test_a_second_ingest_is_refused_at_once_naming_the_writer(env: Path, monkeypatch, capsys) -> None:
    """Another process holds the index's lock: one line with its pid, before the embedding model loads."""
    import subprocess
    import sys

    code, _, _ = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    assert code == 0
    (env / "new.txt").write_text("A new file about the Danube.", encoding="utf-8")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from rag_app.store import IndexWriter, Manifest\n"
         "with IndexWriter(sys.argv[1], Manifest('fake-embedder', 64, {})):\n"
         "    print('held', flush=True); sys.stdin.read()",
         "idx"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        loads: list[str] = []
        monkeypatch.setattr("rag_app.embeddings.load_embedder", lambda name: loads.append(name))
        code, out, err = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    finally:
        holder.communicate("", timeout=30)
    assert (code, out, loads) == (2, "", [])
    assert err.splitlines() == [
        f"Error: another process is writing to the index at idx (pid {holder.pid}); "
        "wait for it to finish (or stop it) and run again"]


def test_ctrl_c_mid_ingest_says_nothing_was_written_and_leaves_the_index(env: Path, monkeypatch, capsys,
                                                                         fake_embedder) -> None:
    from rag_app.store import IndexStore

    code, _, _ = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    assert code == 0
    with IndexStore.open("idx") as store:
        before = (store.manifest.generation, store.files(), sorted(c.text for c in store.iter_chunks()))
        updated = store.manifest.updated
    (env / "a.txt").write_text("The Danube flows into the Black Sea.", encoding="utf-8")
    (env / "new.txt").write_text("A new file.", encoding="utf-8")

    def interrupt(texts, batch_size=32):
        raise KeyboardInterrupt

    monkeypatch.setattr(fake_embedder, "embed_documents", interrupt)
    code, out, err = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    from datetime import datetime

    when = datetime.fromisoformat(updated).astimezone().strftime("%Y-%m-%d %H:%M")
    assert (code, out) == (130, "")
    assert [line for line in err.splitlines() if "Interrupted" in line] == [
        f"Interrupted: nothing was written; the index at idx still holds the 2 files of {when}"]
    with IndexStore.open("idx") as store:
        assert (store.manifest.generation, store.files(), sorted(c.text for c in store.iter_chunks())) == before
    assert sorted(p.name for p in Path("idx").glob("gen-*")) == ["gen-000001"]  # the staged one is gone


def test_ctrl_c_before_the_first_index_says_there_is_none(env: Path, monkeypatch, capsys, fake_embedder) -> None:
    def interrupt(texts, batch_size=32):
        raise KeyboardInterrupt

    monkeypatch.setattr(fake_embedder, "embed_documents", interrupt)
    code, _, err = run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")
    assert code == 130
    assert err.splitlines()[-1] == "Interrupted: nothing was written; there is no index at idx yet"


def _index_state(index: str) -> tuple[int, dict[str, str]]:
    from rag_app.store import IndexStore

    with IndexStore.open(index) as store:
        return store.manifest.generation, {s: r.sha256 for s, r in store.files().items()}


def test_ingest_one_file_adds_it_then_a_second_run_is_a_no_op(env: Path, monkeypatch, capsys, tmp_path: Path) -> None:
    assert run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")[0] == 0
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    (elsewhere / "danube.txt").write_text("The Danube flows into the Black Sea.", encoding="utf-8")

    code, out, _ = run_main(monkeypatch, capsys, "ingest", str(elsewhere / "danube.txt"), "--index", "idx")
    assert code == 0 and f"Indexed {elsewhere / 'danube.txt'} -> idx (generation 2)" in out
    generation, files = _index_state("idx")
    assert (generation, sorted(files)) == (2, ["a.txt", "b.md", "danube.txt"])  # added to what is there

    code, out, _ = run_main(monkeypatch, capsys, "ingest", str(elsewhere / "danube.txt"), "--index", "idx")
    assert code == 0 and out.startswith("index is up to date")
    assert _index_state("idx") == (2, files)

    (elsewhere / "danube.txt").write_text("The Danube flows through Vienna.", encoding="utf-8")
    assert run_main(monkeypatch, capsys, "ingest", str(elsewhere / "danube.txt"), "--index", "idx")[0] == 0
    generation, changed = _index_state("idx")
    assert generation == 3 and changed["danube.txt"] != files["danube.txt"] and changed["a.txt"] == files["a.txt"]

    # the folder ingest that follows keeps the added file (it is listed in the manifest, not in docs/)
    (env / "a.txt").write_text("The Rhine flows past Basel.", encoding="utf-8")
    assert run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")[0] == 0
    assert sorted(_index_state("idx")[1]) == ["a.txt", "b.md", "danube.txt"]


def test_ingest_a_file_of_the_indexed_folder_is_one_of_its_files(env: Path, monkeypatch, capsys) -> None:
    assert run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")[0] == 0
    (env / "sub").mkdir()
    (env / "sub" / "new.md").write_text("# Alps\n\nThe Alps are high.", encoding="utf-8")
    assert run_main(monkeypatch, capsys, "ingest", "docs/sub/new.md", "--index", "idx")[0] == 0
    assert sorted(_index_state("idx")[1]) == ["a.txt", "b.md", "sub/new.md"]
    (env / "sub" / "new.md").unlink()  # gone from the folder: the next folder ingest drops it, as any file of it
    assert run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")[0] == 0
    assert sorted(_index_state("idx")[1]) == ["a.txt", "b.md"]


def test_ingest_an_unsupported_file_is_one_line(env: Path, monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "ingest", "docs/c.bin", "--index", "idx")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("Error: cannot ingest docs/c.bin: unsupported type .bin; rag ingest reads .csv .docx")
    assert not Path("idx").exists()


def test_ingest_a_file_whose_name_the_folder_holds_is_refused(env: Path, monkeypatch, capsys, tmp_path: Path) -> None:
    assert run_main(monkeypatch, capsys, "ingest", "docs", "--index", "idx")[0] == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("Another a.txt.", encoding="utf-8")
    code, _, err = run_main(monkeypatch, capsys, "ingest", str(other / "a.txt"), "--index", "idx")
    assert code == 2
    assert err.splitlines() == [f"Error: cannot ingest {other / 'a.txt'}: the index already holds a file named a.txt "
                                "from the indexed folder; rename this one"]
    assert _index_state("idx")[0] == 1


def test_from_a_subfolder_another_folder_does_not_replace_the_parents_index(env: Path, monkeypatch, capsys,
                                                                             tmp_path: Path) -> None:
    assert run_main(monkeypatch, capsys, "ingest", "docs")[0] == 0  # tmp/.rag/index holds docs
    other = tmp_path / "sub" / "notes"
    other.mkdir(parents=True)
    (other / "n.txt").write_text("Notes about something else.", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "sub")
    index = (tmp_path / ".rag" / "index").resolve()
    code, _, err = run_main(monkeypatch, capsys, "ingest", "notes")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"the index at {index} (found in parent folder {tmp_path.resolve()}) holds {env.resolve()}" in err
    assert f"--index {other.resolve() / '.rag' / 'index'}" in err
    from rag_app.store import IndexStore

    with IndexStore.open(index) as store:
        assert sorted(store.doc_ids()) == ["a", "b"]  # the parent's index untouched
    # the same folder from a subfolder is an update, as from the top
    assert run_main(monkeypatch, capsys, "ingest", str(env))[1].startswith("index is up to date")

"""``rag ui``: the streamlit command line, the port check, and the CLI's error line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag_app import cli
from rag_app.errors import ConfigError
from ui.launch import APP_PATH, check_port_free, streamlit_command, url_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_streamlit_command_is_headless_private_and_passes_settings(tmp_path: Path):
    cmd = streamlit_command("127.0.0.1", 8600, tmp_path / "idx", config=tmp_path / "rag.toml", verbose=True)

    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    flags = dict(zip(cmd[5 : cmd.index("--") : 2], cmd[6 : cmd.index("--") : 2]))
    assert flags["--server.headless"] == "true"
    assert flags["--server.address"] == "127.0.0.1"
    assert flags["--server.port"] == "8600"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1 :] == ["--index", str(tmp_path / "idx"), "--config", str(tmp_path / "rag.toml"), "--verbose"]
    assert APP_PATH.is_file()


def test_url_for_wildcard_host_names_localhost():
    assert url_for("0.0.0.0", 8501) == "http://localhost:8501"
    assert url_for("127.0.0.1", 9000) == "http://127.0.0.1:9000"


def test_busy_port_is_a_user_error(capsys, monkeypatch, tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is in use; pass another with --port"):
            check_port_free("127.0.0.1", port)

        monkeypatch.setattr(sys, "argv", ["rag", "ui", "--index", str(tmp_path / "idx"), "--port", str(port)])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"Error: port {port} on 127.0.0.1 is in use; pass another with --port"


@pytest.mark.slow
def test_rag_ui_serves_the_page(tmp_path: Path):
    """`rag ui` starts Streamlit on the given port and prints the URL (no index yet: the page still serves)."""
    port = free_port()
    rag = Path(sys.executable).with_name("rag")
    proc = subprocess.Popen(
        [str(rag), "ui", "--index", str(tmp_path / "idx"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    assert resp.read() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "rag ui did not answer within 60 s"
                time.sleep(0.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}" in out
    assert "No index at" in out

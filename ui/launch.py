"""``rag ui``: start ``streamlit run ui/app.py`` with the right flags.

Streamlit must own the process that serves the page (it runs the script once
per browser interaction), so ``rag ui`` starts it as a child process and
passes the settings after ``--``; ``RAG_*`` variables reach the page through
the inherited environment. Nothing here imports Streamlit.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from rag_app.errors import ConfigError

APP_PATH = Path(__file__).resolve().with_name("app.py")
PRIMARY_COLOR = "#4f46e5"  # indigo: the citation badges and the primary buttons share it


def streamlit_command(
    host: str,
    port: int,
    index: Path,
    config: Path | None = None,
    verbose: bool = False,
) -> list[str]:
    """The ``streamlit run`` argv for the page.

    Headless (no browser opened, no e-mail prompt), no usage statistics, no
    file watcher (it would poll the whole repository on two shared cores), and
    a minimal toolbar: users get the product, not Streamlit's developer menu.
    """
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--theme.primaryColor", PRIMARY_COLOR,
        "--",
        "--index", str(Path(index).expanduser().resolve()),
    ]  # fmt: skip
    if config is not None:
        cmd += ["--config", str(Path(config).expanduser().resolve())]
    if verbose:
        cmd.append("--verbose")
    return cmd


def url_for(host: str, port: int) -> str:
    """The address to open: 0.0.0.0 listens everywhere, but a browser wants a real name."""
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def check_port_free(host: str, port: int) -> None:
    """Fail before starting Streamlit, whose own message for a busy port is easy to miss.

    Raises:
        ConfigError: the port is taken or the address is not local.
    """
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the server will: a port left in TIME_WAIT by a previous run is free, a listening one is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == 98:  # EADDRINUSE
                raise ConfigError(f"port {port} on {host} is in use; pass another with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); pass --host 127.0.0.1") from None


def serve(cmd: list[str]) -> int:
    """Run Streamlit in the foreground until it exits; returns its exit code.

    Ctrl-C reaches Streamlit directly (same process group). SIGTERM and SIGHUP
    sent to ``rag ui`` alone (a service manager, a test) are passed on, so the
    server never outlives the command that started it.
    """
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Streamlit got the same SIGINT: give it a moment to shut down
            try:
                return proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

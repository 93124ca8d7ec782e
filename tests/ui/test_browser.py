"""The real thing: `rag ui` over data/sample with the bundled models, driven by headless Chromium.

Takes the screenshot the README shows: set RAG_SAVE_SCREENSHOT=1 to copy it to
docs/screenshot.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag_app.config import REPO_ROOT, load_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLE_DOCS = REPO_ROOT / "data" / "sample" / "docs"
QUESTION = "What chemist managed to make enough liquid oxygen to use for study?"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-extensions"]  # fmt: skip


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read() == b"ok":
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"rag ui exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"rag ui did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAMPLE_DOCS.is_dir():
        pytest.skip(f"{SAMPLE_DOCS} is missing: the sample corpus is not in this checkout")
    from ingest.pipeline import ingest_folder

    index = tmp_path_factory.mktemp("browser") / "index"
    ingest_folder(SAMPLE_DOCS, load_settings(None, index=index))  # the real bundled MiniLM
    return index


@pytest.fixture
def server(sample_index: Path, tmp_path: Path):
    port = free_port()
    rag = Path(sys.executable).with_name("rag")
    log_path = tmp_path / "rag-ui.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(rag), "ui", "--index", str(sample_index), "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_question_gets_a_streamed_answer_with_sources(server, tmp_path: Path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium at /usr/bin/chromium or on PATH (make browser installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    url, log_path = server

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000}, device_scale_factor=1)
            page.goto(url)
            box = page.get_by_test_id("stChatInputTextArea")
            # The first visit loads both models (and converts the bundled generator once, ~20 s).
            box.wait_for(state="visible", timeout=240_000)
            sync_api.expect(box).to_be_enabled(timeout=240_000)
            # Record every text the answer shows while it streams: the cursor only exists mid-stream.
            page.evaluate(
                """() => { window.__seen = [];
                  new MutationObserver(() => {
                    const msgs = document.querySelectorAll('[data-testid="stChatMessage"]');
                    if (msgs.length >= 2) window.__seen.push(msgs[msgs.length - 1].innerText);
                  }).observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
            )
            box.fill(QUESTION)
            box.press("Enter")

            answer = page.get_by_test_id("stChatMessage").nth(1)
            sources = answer.get_by_test_id("stExpander")
            sources.first.wait_for(state="visible", timeout=240_000)

            seen = page.evaluate("window.__seen")
            streamed = [t for t in seen if "▌" in t]
            assert streamed, f"no partial answer was shown while generating; saw {seen[-3:]}"
            final = answer.inner_text()
            assert "▌" not in final
            assert sources.count() >= 1
            assert "xquad_oxygen" in sources.first.inner_text()  # the Oxygen article ranks first
            page.wait_for_timeout(500)  # let the expander animation settle before the picture
            shot = tmp_path / "rag-ui.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()

    assert shot.stat().st_size > 10_000, log_path.read_text()
    if os.environ.get("RAG_SAVE_SCREENSHOT") == "1":
        target = REPO_ROOT / "docs" / "screenshot.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, target)

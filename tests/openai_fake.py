"""A stand-in OpenAI-compatible server (stdlib http.server in a thread) that records what it is sent.

For the fast tests of :mod:`rag_app.openai_backend`: the requests it sends,
the SSE stream it reads and the errors it reports. The real server
(llama-cpp-python's) is exercised by the slow test.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAIServer:
    """``mode``: ``ok`` (streams ``reply`` word by word), ``garbage`` (HTML), ``error`` (HTTP 500), ``empty`` (no events),
    ``refuse`` (as llama-cpp-python refuses a prompt past its window: an empty stream, a 400 when not streaming).

    ``requests`` holds each chat request body; ``headers`` their headers; ``models`` what ``/v1/models`` lists.
    """

    def __init__(self, reply: str = "Paris is the capital of France [1].", mode: str = "ok",
                 models: tuple[str, ...] = ("served-model",)) -> None:
        self.reply, self.mode, self.models = reply, mode, models
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if fake.mode == "garbage":
                    return self._send(200, b"<html>not an API</html>", "text/html")
                data = [{"id": m, "object": "model", "owned_by": "test"} for m in fake.models]
                self._send(200, json.dumps({"object": "list", "data": data}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if fake.mode == "garbage":
                    return self._send(200, b"<html>not an API</html>", "text/html")
                if fake.mode == "error":
                    return self._send(500, json.dumps({"error": {"message": "model crashed"}}).encode())
                if fake.mode == "refuse" and not body.get("stream"):
                    message = "This model's maximum context length is 512 tokens. However, you requested 1539 tokens"
                    return self._send(400, json.dumps({"error": {"message": message}}).encode())
                if fake.mode in ("empty", "refuse"):
                    return self._send(200, b"", "text/event-stream")
                words = fake.reply.split(" ")[: body.get("max_tokens") or None]
                events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
                events += [{"choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}, "finish_reason": None}]}
                           for i, w in enumerate(words)]
                cut = len(words) < len(fake.reply.split(" "))  # as a server says when max_tokens ran out
                events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "length" if cut else "stop"}]})
                sse = "".join(f"data: {json.dumps({'id': 'c1', 'object': 'chat.completion.chunk', 'created': 0, 'model': body['model'], **e})}\n\n"
                              for e in events) + "data: [DONE]\n\n"
                self._send(200, sse.encode(), "text/event-stream")

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

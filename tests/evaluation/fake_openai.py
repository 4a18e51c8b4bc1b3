"""A loopback OpenAI-compatible stand-in for the gateway, for tests where the gateway is not the
thing under test (the seam is HTTP). It answers chat completions by echoing the first context
line of the prompt (a "grounded" answer) unless the prompt contains ``NO-CONTEXT``, then it
answers from nowhere. Usage::

    with FakeOpenAI() as url:   # url = http://127.0.0.1:PORT/v1
        ...
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI"]


def _answer(messages: list[dict[str, str]]) -> str:
    text = "\n".join(m.get("content", "") for m in messages)
    if "Score: <1-5>" in text:
        return "Score: 4\nReason: fake judge."
    if "NO-CONTEXT" in text:
        return "The moon is made of cheese and bananas."
    for line in text.splitlines():
        m = re.match(r"^\[([^\]]+)\]\s+(.+)$", line.strip())
        if m:
            return f"{m.group(2)[:160]} [{m.group(1)}]"
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 40]
    return lines[1][:160] if len(lines) > 1 else "I do not know."


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def log_message(self, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.server.requests.append(body)  # type: ignore[attr-defined]
        if not self.path.endswith("/chat/completions"):
            self.send_response(404)
            self.end_headers()
            return
        text = _answer(body.get("messages", []))
        reply = {
            "id": "fake",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": len(text.split()),
                "total_tokens": 0,
            },
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAI:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.server.requests  # type: ignore[attr-defined,no-any-return]

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A real OpenAI-compatible chat server on loopback, scripted by the test.

``answer(content)`` maps the (last) user message's content parts to the reply; ``faults`` is a list consumed one
per request: "429" (with Retry-After: 0), "500", "slow" (sleeps past the client timeout),
"truncated" (a cut JSON body), "400" (permanent), "gzip" (a body declared gzip that is not),
"trickle" (the reply's first ``trickle_bytes`` bytes one every ``trickle`` seconds, then the
rest), "retry-after:VALUE" (429 with that Retry-After header), or None for a normal answer.
``models``: the ids ``GET /v1/models`` lists (404 without). ``echo_auth``: an HTTP status
every request gets, with a body echoing the Authorization header (as careless servers do),
written by ``echo_text(authorization)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    def __init__(self, answer: Callable[[list], str], faults: list[str | None] | None = None,
                 delay: float = 0.0, slow: float = 3.0, models: list[str] | None = None,
                 echo_auth: int | None = None, echo_text: Callable[[str], str] | None = None,
                 trickle: float = 0.4, trickle_bytes: int = 8):
        self.answer, self.faults, self.delay, self.slow = answer, list(faults or []), delay, slow
        self.models, self.echo_auth = models, echo_auth
        self.echo_text = echo_text or (lambda auth: f"invalid key {auth}")
        self.trickle, self.trickle_bytes = trickle, trickle_bytes
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args):  # keep test output clean
                pass

            def _echo(self):
                text = stub.echo_text(str(self.headers.get("Authorization")))
                return self._send(stub.echo_auth, json.dumps({"error": text}).encode())

            def do_GET(self):  # noqa: N802 - http.server API
                if stub.echo_auth is not None:
                    return self._echo()
                if self.path != "/v1/models" or stub.models is None:
                    return self._send(404, b'{"error": "not found"}')
                data = {"object": "list", "data": [{"id": m, "object": "model"} for m in stub.models]}
                return self._send(200, json.dumps(data).encode())

            def do_POST(self):  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                    fault = stub.faults.pop(0) if stub.faults else None
                if stub.echo_auth is not None and fault is None:
                    return self._echo()
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                if fault == "429":
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
                if fault and fault.startswith("retry-after:"):
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": fault.split(":", 1)[1]})
                if fault == "gzip":
                    return self._send(200, b"this is not gzip data", {"Content-Encoding": "gzip"})
                if fault in ("500", "400"):
                    return self._send(int(fault), b'{"error": "scripted"}')
                if fault == "slow":
                    time.sleep(stub.slow)
                time.sleep(stub.delay)
                content = body["messages"][-1]["content"]  # the user turn (after a system message, if any)
                reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": stub.answer(content)}}]}
                data = json.dumps(reply).encode()
                if fault == "trickle":
                    return self._send(200, data, trickle=True)
                return self._send(200, data[: len(data) // 2] if fault == "truncated" else data)

            def _send(self, code: int, data: bytes, headers: dict | None = None, trickle: bool = False) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    if trickle:  # each byte within any per-read timeout, the whole far beyond it
                        for i in range(min(stub.trickle_bytes, len(data))):
                            self.wfile.write(data[i:i + 1])
                            self.wfile.flush()
                            time.sleep(stub.trickle)
                        data = data[stub.trickle_bytes:]
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: fine
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

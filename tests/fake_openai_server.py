"""A real HTTP server speaking the chat-completions API on 127.0.0.1:0, with faults scripted per request.

Real sockets, so the client's timeouts, connection resets and keep-alive handling are exercised for real; only the
model is fake: a reply is a deterministic function of the request's text.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_GOLD = re.compile(r"The correct label is (\w+)")


@dataclass(frozen=True)
class Reply:
    """What the server does with one request; the defaults answer with ``default_content``."""

    status: int = 200
    content: str | None = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    is_reset: bool = False
    logprobs: dict[str, Any] | None = None  # the choice's logprobs object, as a server asked for them sends it


@dataclass(frozen=True)
class Logged:
    """One request the server received, the reply it chose and when it arrived (monotonic seconds)."""

    text: str
    payload: dict[str, Any]
    reply: Reply
    at: float
    port: int


Responder = Callable[[dict[str, Any], int], Reply]


def text_of(payload: dict[str, Any]) -> str:
    """Return the example text of a request built with the default user template ``Text: {text}``."""
    return payload["messages"][-1]["content"].split("\n\n")[0].removeprefix("Text: ")


def default_content(payload: dict[str, Any]) -> str:
    """Return a valid completion that agrees with the guided hint's label (neutral without a hint)."""
    match = _GOLD.search(payload["messages"][-1]["content"])
    label = match.group(1) if match else "neutral"
    words = len(text_of(payload).split())
    return (
        f"<reasoning>Judging by the tone of this {words}-word statement, an investor would see it as {label} "
        f"news for the company.</reasoning><answer>{label}</answer>"
    )


def scripted(script: dict[str, list[Reply]]) -> Responder:
    """Serve ``script[text]`` in order to the requests for each text, then default replies."""

    def respond(payload: dict[str, Any], seen: int) -> Reply:
        replies = script.get(text_of(payload), [])
        return replies[seen] if seen < len(replies) else Reply()

    return respond


class FakeOpenAIServer:
    """``with FakeOpenAIServer(respond) as server:`` serves ``server.url``; ``respond`` may be swapped while up."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or scripted({})
        self.log: list[Logged] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, text: str) -> int:
        """Return how many requests for ``text`` arrived."""
        with self._lock:
            return sum(1 for entry in self.log if entry.text == text)

    def choose(self, payload: dict[str, Any]) -> Reply:
        text = text_of(payload)
        with self._lock:
            reply = self.respond(payload, self._seen[text])
            self._seen[text] += 1
            self.log.append(Logged(text, payload, reply, time.monotonic(), self.port))
        return reply

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM and llama.cpp servers do
    disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid the 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        payload["authorization"] = self.headers.get("Authorization")
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        reply = self.server.owner.choose(payload)  # type: ignore[attr-defined]
        time.sleep(reply.delay_s)
        if reply.is_reset:
            # SO_LINGER 0: closing sends a TCP reset instead of a clean FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        content = reply.content if reply.content is not None else default_content(payload)
        body = reply.raw_body
        if body is None:
            body = json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": payload.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            **({"logprobs": reply.logprobs} if reply.logprobs else {}),
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(content.split())},
                }
            ).encode()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout) before a slow reply was sent
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""

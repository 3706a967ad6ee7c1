"""Notification receivers on 127.0.0.1 that answer what a test tells them, and record
everything they get; and the local cloud's clock, moved instead of waiting."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from local.cloud import LocalCloud


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next of ``answers`` (then the last one again)."""

    answers: list[int] = field(default_factory=lambda: [204])
    location: str = ""  # sent with a 3xx answer
    seen: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self) -> int:
        return self.answers[min(len(self.seen), len(self.answers)) - 1]

    def attempts(self, invoke_id: str) -> list[Received]:
        return [r for r in self.seen if invoke_id.encode() in r.body]


@contextmanager
def receiving(answers: list[int], location: str = "") -> Iterator[Receiver]:
    receiver = Receiver(list(answers), location)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                receiver.seen.append(Received(self.command, self.path,
                                              dict(self.headers.items()), body))
                status = receiver.answer()
            self.send_response(status)
            if 300 <= status < 400 and receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_HEAD = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def advance_queues(cloud: LocalCloud, seconds: float, step: float = 5.0,
                   pause: float = 0.25) -> None:
    """Move the MNS clock ``seconds`` forward in steps, letting delayed messages (follow-ups,
    notification attempts) come due and be handled between steps."""
    clock = cloud.servers["mns"].app.clock
    moved = 0.0
    while moved < seconds:
        clock.advance(min(step, seconds - moved))
        moved += step
        time.sleep(pause)

"""A real HTTP receiver on loopback for alert tests: it answers each request as scripted and records it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int  # the status it was answered with (0: the receiver hung past the sender's time-out)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`script` is consumed one step per request: an HTTP status, or "hang" (sleep `hang_seconds`, then 200, long
    after the sender gave up); once empty, every request gets `then`."""

    script: list[int | str] = field(default_factory=list)
    then: int = 200
    hang_seconds: float = 4.0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step(self) -> int | str:
        with self.lock:
            return self.script.pop(0) if self.script else self.then

    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Wait until `count` requests were accepted (2xx); the accepted ones."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.accepted())} of {count} alerts accepted; got {self.received}")
            time.sleep(0.05)
        return self.accepted()


@contextmanager
def running_receiver(receiver: Receiver | None = None) -> Iterator[Receiver]:
    receiver = receiver or Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            step = receiver.next_step()
            if step == "hang":
                receiver.received.append(Received(dict(self.headers.items()), body, 0))
                time.sleep(receiver.hang_seconds)
                status = 200
            else:
                status = int(step)
                receiver.received.append(Received(dict(self.headers.items()), body, status))
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://example.com/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up (time-out)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts?token=s3cr3t-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()

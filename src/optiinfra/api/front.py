"""The front of `optiinfra serve`: it owns the listening socket, answers `GET /healthz` itself and hands every other
connection, unread, to an API process.

Why a process of its own: the API's endpoints run on worker threads that parse JSON, validate with pydantic and
talk to PostgreSQL, and while they run they hold the interpreter lock that the event loop needs too. With eight
requests in flight an event loop waited up to a quarter of a second for it, so `/healthz` (answered on that loop)
took 0.25 s at the 99th percentile under load (docs/reliability.md). The front runs no application code: it accepts
connections, looks at the first request of each without consuming it (`MSG_PEEK`) and either answers a health check
or passes the socket itself to an API process over a Unix socket (`SCM_RIGHTS`), which reads the request as if it had
accepted the connection. A connection handed over stays with that API process; a connection that only asks for
`/healthz` (a load balancer's or an orchestrator's probe) stays with the front and is answered in microseconds of
interpreter time, however busy the API processes are.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

logger = logging.getLogger("optiinfra.serve")

# The most of a request's beginning the front looks at; a longer head is the API process's business.
MAX_PEEK_BYTES = 8192
# A connection that has sent nothing for this long: a fresh one goes to an API process anyway (which treats it as
# uvicorn does), one kept alive after a health check is closed (uvicorn's keep-alive time-out).
IDLE_SECONDS = 5.0
HEALTHY_BODY = b'{"status":"ok"}'
UNAVAILABLE_BODY = (
    b'{"error":{"code":"unavailable","message":"No API process is running; it is being restarted.",'
    b'"details":{"retry_after_seconds":1}}}'
)
# Accepted in one go before the loop looks at other events.
ACCEPT_BATCH = 64


@dataclass(frozen=True)
class HealthCheck:
    """A complete `GET /healthz` request at the start of what a connection has sent."""

    length: int  # bytes of the request (no body)
    keep_alive: bool


def parse_health_check(data: bytes) -> HealthCheck | None:
    """The `GET /healthz` request `data` starts with, or None for anything else (another request, a request not
    yet complete, a request with a body or an upgrade): those are left to the API process, byte for byte."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[1].partition(b"?")[0] != b"/healthz":
        return None
    if parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    keep_alive = parts[2] == b"HTTP/1.1"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip():
            return None  # malformed (or folded) header: the API process answers it with 400
        name, value = name.lower(), value.strip().lower()
        if name in (b"transfer-encoding", b"upgrade", b"expect") or (name == b"content-length" and value != b"0"):
            return None
        if name == b"connection":
            tokens = {token.strip() for token in value.split(b",")}
            keep_alive = b"close" not in tokens and (keep_alive or b"keep-alive" in tokens)
    return HealthCheck(length=end + 4, keep_alive=keep_alive)


def _response(status: bytes, body: bytes, *, keep_alive: bool, retry_after: bool = False) -> bytes:
    head = [
        b"HTTP/1.1 " + status,
        b"date: " + formatdate(usegmt=True).encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
    ]
    if retry_after:
        head.append(b"retry-after: 1")
    if not keep_alive:
        head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@dataclass
class _Held:
    connection: socket.socket
    idle_timer: asyncio.TimerHandle
    fresh: bool  # nothing answered on it yet


class Front:
    """Accepts connections on `listener`, answers health checks, hands the rest to `hand_off` (which returns False
    when no API process can take the connection); `is_ready` says whether an API process is running."""

    def __init__(
        self,
        listener: socket.socket,
        hand_off: Callable[[socket.socket], bool],
        is_ready: Callable[[], bool],
    ) -> None:
        self.listener = listener
        self.hand_off = hand_off
        self.is_ready = is_ready
        self.held: dict[int, _Held] = {}
        self.health_checks = 0
        self.handed_off = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.listener.setblocking(False)
        loop.add_reader(self.listener.fileno(), self._accept)

    def stop(self) -> None:
        """Stop accepting and close what the front holds (health-check connections between requests)."""
        if self._loop is None:
            return
        self._loop.remove_reader(self.listener.fileno())
        self.listener.close()
        for descriptor in list(self.held):
            self._release(descriptor).close()
        self._loop = None

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of descriptors, or the listener closed: try again at the next event
                logger.warning("accept failed: %s", error)
                return
            connection.setblocking(False)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._hold(connection, fresh=True)

    def _hold(self, connection: socket.socket, *, fresh: bool) -> None:
        assert self._loop is not None
        descriptor = connection.fileno()
        timer = self._loop.call_later(IDLE_SECONDS, self._idle, descriptor)
        self.held[descriptor] = _Held(connection, timer, fresh)
        self._loop.add_reader(descriptor, self._readable, descriptor)

    def _release(self, descriptor: int) -> socket.socket:
        held = self.held.pop(descriptor)
        held.idle_timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(descriptor)
        return held.connection

    def _readable(self, descriptor: int) -> None:
        held = self.held.get(descriptor)
        if held is None:
            return
        try:
            data = held.connection.recv(MAX_PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._release(descriptor).close()
            return
        if not data:  # the client closed the connection
            self._release(descriptor).close()
            return
        check = parse_health_check(data)
        if check is None:
            self._pass_on(descriptor)
            return
        self._answer(descriptor, held, check)

    def _answer(self, descriptor: int, held: _Held, check: HealthCheck) -> None:
        ready = self.is_ready()
        keep_alive = check.keep_alive and ready
        answer = (
            _response(b"200 OK", HEALTHY_BODY, keep_alive=keep_alive)
            if ready
            else _response(b"503 Service Unavailable", UNAVAILABLE_BODY, keep_alive=False, retry_after=True)
        )
        try:
            held.connection.recv(check.length)  # the request, already seen: consume exactly it
            sent = held.connection.send(answer)
        except OSError:
            sent = -1
        self.health_checks += 1
        if sent != len(answer) or not keep_alive:
            # A client that does not read a 100-byte answer, or one that asked to close.
            self._release(descriptor).close()
            return
        assert self._loop is not None
        held.idle_timer.cancel()
        held.idle_timer = self._loop.call_later(IDLE_SECONDS, self._idle, descriptor)
        held.fresh = False

    def _idle(self, descriptor: int) -> None:
        held = self.held.get(descriptor)
        if held is None:
            return
        if held.fresh:
            self._pass_on(descriptor)
        else:
            self._release(descriptor).close()

    def _pass_on(self, descriptor: int) -> None:
        connection = self._release(descriptor)
        try:
            if self.hand_off(connection):
                self.handed_off += 1
                return
            # No API process: say so (rarely: only while every API process is being restarted).
            try:
                connection.send(
                    _response(b"503 Service Unavailable", UNAVAILABLE_BODY, keep_alive=False, retry_after=True)
                )
                connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        finally:
            # The API process has its own descriptor of the connection now (or nobody needs it).
            connection.close()

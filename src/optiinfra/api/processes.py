"""The processes of `optiinfra serve`: a front (this process), API processes and a workflow worker process.

The front (optiinfra.api.front) owns the port, answers `/healthz` and hands every other connection to an API
process; it also supervises: a process that dies is started again (after 1 s, doubling up to 30 s while it keeps
dying young), SIGTERM or SIGINT stops them all cleanly (each finishes what it is doing), and a child that cannot
start at all (its first start fails) stops the server with an error instead of restarting forever. A child whose
front dies (even by SIGKILL) exits at once: its end of the socket pair to the front reads end-of-file.

Children are forked from multiprocessing's fork server, a fresh interpreter started once that has imported the
application (several seconds of CPU on a small machine): a child, and a restarted one, starts in a fraction of a
second and inherits nothing of the front but its socket pair. The front itself never imports the application and
is not forked (it has an embedded PostgreSQL and an event loop, neither of which survives a fork).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvicorn

logger = logging.getLogger("optiinfra.serve")

READY = b"R"
HAND_OFF = b"c"
# A child that lived this long before dying is restarted after a second again.
STABLE_SECONDS = 30.0
MAX_RESTART_DELAY_SECONDS = 30.0
# How long a child may take to finish its requests and jobs once told to stop (the worker gives running jobs 30 s).
STOP_SECONDS = 40.0
STARTUP_FAILURE = 3
# What the fork server imports once, so that children start without importing.
PRELOAD = [
    "optiinfra.api.processes",
    "optiinfra.api.app",
    "optiinfra.otlp.grpc_receiver",
    "optiinfra.workflows.queue",
    "optiinfra.workflows.service",
    "optiinfra.demo.driver",
]


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def prepare_children() -> None:
    """Start the fork server now, so that it imports the application while the front finishes its own start-up
    instead of after it."""
    _context()
    multiprocessing.forkserver.ensure_running()


@dataclass(frozen=True)
class ApiProcessSpec:
    """What an API process needs to build the application (the front has done the migrations and the keys)."""

    database_url: str
    operator_key_digest: str
    max_in_flight: int
    host: str
    otlp_grpc_port: int | None  # None: the default port if free; 0: none in this process


@dataclass(frozen=True)
class WorkerProcessSpec:
    database_url: str
    data_dir: str
    concurrency: int
    demo: bool = False  # also keep `serve --demo`'s living demo moving


def _exit_when_front_dies(channel: socket.socket) -> None:
    """In a thread of a child: block on the channel to the front; end-of-file means the front is gone."""
    while True:
        try:
            if channel.recv(1) == b"":
                break
        except OSError:
            break
    os._exit(1)  # like the front: gone at once, whatever was in flight (nothing acknowledged is lost)


def run_api_process(spec: ApiProcessSpec, channel: socket.socket) -> None:
    """An API process: the application on a uvicorn server that takes its connections from the front."""
    from sqlalchemy import make_url

    from optiinfra.api.app import AppConfig, create_app
    from optiinfra.api.logs import uvicorn_log_config
    from optiinfra.cli.context import error_console
    from optiinfra.db.engine import make_engine
    from optiinfra.errors import OptiInfraError

    try:
        engine = make_engine(make_url(spec.database_url))
        app = create_app(
            AppConfig(engine=engine, operator_key_digest=spec.operator_key_digest, max_in_flight=spec.max_in_flight)
        )
        receiver = start_otlp_grpc(app.state, engine, spec.host, spec.otlp_grpc_port)
    except OptiInfraError as error:
        error_console.print(f"[bold red]Error:[/bold red] {error.message} {error.fix or ''}", soft_wrap=True)
        sys.exit(STARTUP_FAILURE)
    config = uvicorn.Config(app, log_level="info", log_config=uvicorn_log_config(), proxy_headers=False)
    try:
        HandedOffServer(config, channel).run()
    finally:
        if receiver is not None:
            receiver.stop()


class HandedOffServer(uvicorn.Server):
    """uvicorn's server without a listening socket of its own: it serves the connections the front sends over
    `channel` (as if it had accepted them), and tells the front when it is ready for them."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.pending: set[asyncio.Task[Any]] = set()
        self._protocol: Callable[[], asyncio.Protocol] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if not self.started:
            return
        # What uvicorn's own startup gives loop.create_server for each accepted connection.
        self._protocol = functools.partial(
            self.config.http_protocol_class,  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._take)
        self.channel.send(READY)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=[])

    def _take(self) -> None:
        assert self._protocol is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                message, descriptors, _, _ = socket.recv_fds(self.channel, 16, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, descriptors = b"", []
            if not message and not descriptors:
                os._exit(1)  # the front is gone (killed): so are we, as a single process would be
            for descriptor in descriptors:
                connection = socket.socket(fileno=descriptor)
                connection.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)


def run_worker_process(spec: WorkerProcessSpec, channel: socket.socket) -> None:
    """The workflow worker of `optiinfra serve`: queue jobs (workflow runs, scoring, alert deliveries) and the periodic
    work of `optiinfra worker` (optiinfra.background)."""
    import threading

    from sqlalchemy import make_url

    from optiinfra import background
    from optiinfra.db.engine import make_engine, make_session_factory
    from optiinfra.demo import driver as demo_driver
    from optiinfra.workflows import queue
    from optiinfra.workflows.service import build_runner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(make_url(spec.database_url))
    factory = make_session_factory(engine)
    runner = build_runner(factory, Path(spec.data_dir))
    # The same periodic work as `optiinfra worker` (partitions, monitoring, Prometheus collection); with the demo,
    # the demo's own pass (at the demo's pace) monitors instead.
    periodic = background.periodic_work(factory, monitor_seconds=0 if spec.demo else background.MONITOR_INTERVAL)
    if spec.demo:
        periodic += demo_driver.periodic_work(factory, Path(spec.data_dir))
    worker = queue.Worker(
        engine.url,
        runner.advance,
        factory,
        concurrency=spec.concurrency,
        periodic=periodic,
        name="optiinfra-serve-worker",
    )
    channel.send(READY)
    threading.Thread(target=_exit_when_front_dies, args=(channel,), name="front-watch", daemon=True).start()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            # Cancelling the worker lets its running jobs finish (procrastinate's graceful shutdown).
            loop.add_signal_handler(signal_number, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await worker.run_async()

    asyncio.run(main())


class Child:
    """One supervised child process: how to start it, and what the front knows of it."""

    def __init__(self, name: str, target: Callable[[Any, socket.socket], None], spec: Any) -> None:
        self.name = name
        self.target = target
        self.spec = spec
        self.process: BaseProcess | None = None
        self.channel: socket.socket | None = None  # the front's end of the socket pair
        self.ready = False
        self.ever_ready = False
        self.started_at = 0.0
        self.restart_delay = 0.5  # doubled before the first restart: 1 s

    def start(self) -> None:
        front_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = _context().Process(target=self.target, args=(self.spec, child_end), name=self.name)
        self.process.start()
        child_end.close()
        front_end.setblocking(False)
        self.channel = front_end
        self.ready = False
        self.started_at = time.monotonic()

    def hand_off(self, connection: socket.socket) -> bool:
        if not self.ready or self.channel is None:
            return False
        try:
            socket.send_fds(self.channel, [HAND_OFF], [connection.fileno()])
        except OSError:  # full (the process is stuck) or gone: another process, or 503
            return False
        return True

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.ready = False


class Supervisor:
    """Runs the front and the children until SIGTERM or SIGINT; returns the exit status."""

    def __init__(self, listener: socket.socket, api: list[Child], workers: list[Child]) -> None:
        from optiinfra.api.front import Front

        self.api = api
        self.workers = workers
        self.children = [*api, *workers]
        self.front = Front(listener, self.hand_off, self.is_ready)
        self.stopping = asyncio.Event()
        self.status = 0
        self._next = 0
        self._restarts: dict[str, asyncio.TimerHandle] = {}

    def is_ready(self) -> bool:
        return any(child.ready for child in self.api)

    def hand_off(self, connection: socket.socket) -> bool:
        """Pass `connection` to the next API process that takes it (round robin)."""
        for offset in range(len(self.api)):
            child = self.api[(self._next + offset) % len(self.api)]
            if child.hand_off(connection):
                self._next = (self._next + offset + 1) % len(self.api)
                return True
        return False

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, self.stopping.set)
        for child in self.api:
            self._launch(child)
        front_started = False
        while not self.stopping.is_set():
            if not front_started and self.is_ready():
                # Connections wait in the listen backlog until an API process can take them.
                self.front.start(loop)
                front_started = True
                # The worker starts once the API is up: they would only slow each other's start on a small machine.
                for child in self.workers:
                    self._launch(child)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=0.2 if not front_started else None)
        self.front.stop()
        for timer in self._restarts.values():
            timer.cancel()
        await self._stop_children()
        return self.status

    def _launch(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        self._restarts.pop(child.name, None)
        child.start()
        assert child.process is not None
        assert child.channel is not None
        loop.add_reader(child.channel.fileno(), self._heard, child)
        loop.add_reader(child.process.sentinel, self._exited, child)

    def _heard(self, child: Child) -> None:
        assert child.channel is not None
        try:
            message = child.channel.recv(16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message = b""
        if message == READY:
            child.ready = child.ever_ready = True
            logger.info("%s (pid %s) is ready", child.name, child.process.pid if child.process else "?")
        elif not message:
            asyncio.get_running_loop().remove_reader(child.channel.fileno())
            child.ready = False

    def _exited(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        assert child.process is not None
        loop.remove_reader(child.process.sentinel)
        if child.channel is not None:
            loop.remove_reader(child.channel.fileno())
        child.close_channel()
        child.process.join()
        code = child.process.exitcode
        if self.stopping.is_set():
            return
        if not child.ever_ready:
            logger.error("%s could not start (exit status %s); stopping the server", child.name, code)
            self.status = 1
            self.stopping.set()
            return
        lived = time.monotonic() - child.started_at
        child.restart_delay = (
            1.0 if lived >= STABLE_SECONDS else min(MAX_RESTART_DELAY_SECONDS, child.restart_delay * 2)
        )
        logger.error(
            "%s exited (status %s) after %.0f s; starting it again in %.0f s",
            child.name,
            code,
            lived,
            child.restart_delay,
        )
        self._restarts[child.name] = loop.call_later(child.restart_delay, self._launch, child)

    async def _stop_children(self) -> None:
        running = [child for child in self.children if child.process is not None and child.process.is_alive()]
        for child in running:
            assert child.process is not None
            assert child.process.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            assert child.process is not None
            await asyncio.to_thread(child.process.join, max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                logger.error("%s did not stop within %.0f s; killing it", child.name, STOP_SECONDS)
                child.process.kill()
                child.process.join()
        for child in self.children:
            child.close_channel()


def start_otlp_grpc(state: Any, engine: Any, host: str, port: int | None) -> Any:
    """The OTLP/gRPC receiver on `port` (None: the default port if free), sharing the app's sessions, key check and
    throttle; its threads take the pooled connections the HTTP admission limit leaves."""
    from optiinfra.api.app import RESERVED_CONNECTIONS, pool_capacity
    from optiinfra.cli.context import console
    from optiinfra.errors import ConfigurationError
    from optiinfra.otlp.grpc_receiver import DEFAULT_PORT, DEFAULT_WORKERS, GrpcConfig, OtlpGrpcReceiver

    if port == 0:
        return None
    workers = max(1, min(DEFAULT_WORKERS, pool_capacity(engine) - RESERVED_CONNECTIONS - state.max_in_flight))
    receiver = OtlpGrpcReceiver(
        GrpcConfig(
            session_factory=state.session_factory,
            operator_key_digest=state.operator_key_digest,
            auth_limiter=state.auth_limiter,
            max_message_bytes=state.max_body_bytes,
            lock_timeout_ms=state.lock_timeout_ms,
            workers=workers,
        )
    )
    try:
        bound = receiver.start(host, DEFAULT_PORT if port is None else port)
    except ConfigurationError as error:
        if port is not None:
            raise
        console.print(f"[yellow]OTLP/gRPC is not served: {error.message}[/yellow] {error.fix}", soft_wrap=True)
        return None
    console.print(f"OTLP/gRPC on [bold]{host}:{bound}[/bold] (OTLP/HTTP on the port below)")
    return receiver

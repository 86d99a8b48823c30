"""The durable job queue behind workflow runs: procrastinate on the same PostgreSQL.

A run is driven by jobs of one task, `advance_workflow(execution_id)`. Each job moves the run as far as it can: it
runs steps until the run ends, or a step waits (the job then defers the next job at the time the step wants to look
again, and returns: no thread, connection or transaction is held during the wait), or a step asks a human (no job
is deferred; `resume` or `abort` defers one).

- **Enqueued with the state it acts on.** `enqueue` writes the job through the caller's own transaction, so a run
  and its job are committed together or not at all.
- **One job of a run at a time.** Every job of a run carries the lock `workflow:<id>`; procrastinate never starts
  a job while another with the same lock is running, on any worker.
- **Recovery.** Every worker, every 30 s, (1) gives back to the queue the jobs of workers whose heartbeat stopped
  (a killed worker), and (2) enqueues a job for any active run that has none (a commit that got its job lost, or
  data written by hand). A job that raises is retried with exponential back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
from procrastinate import jobs as procrastinate_jobs
from procrastinate.manager import JobManager
from procrastinate.sync_psycopg_connector import SyncPsycopgConnector
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.alerts import delivery as alert_delivery
from optiinfra.alerts import outbox as alert_outbox
from optiinfra.alerts.settings import delivery_settings
from optiinfra.auth.principal import Principal
from optiinfra.db.engine import unit_of_work
from optiinfra.models import WorkflowExecution, WorkflowStatus
from optiinfra.scoring import service as scoring_service
from optiinfra.scoring.base import ScorerUnavailableError
from optiinfra.workflows.states import ACTIVE

logger = logging.getLogger("optiinfra.workflows.queue")

QUEUE = "workflows"
TASK_NAME = "optiinfra.advance_workflow"
# Offline scoring (issue 14): jobs that score records sent with text and without scores (optiinfra.scoring.service).
SCORING_QUEUE = "scoring"
SCORING_TASK_NAME = "optiinfra.score_pending"
RECOVERY_INTERVAL_SECONDS = 30.0
# A worker whose heartbeat is older than this is considered dead; its running jobs are given to another worker.
STALLED_WORKER_SECONDS = float(os.environ.get("OPTIINFRA_STALLED_WORKER_SECONDS", "30"))
HEARTBEAT_SECONDS = 5.0
SCORERS_UNAVAILABLE_PAUSE_SECONDS = 600.0  # a worker without the scorers extra looks again this much later

# Used only with the caller's connection (never opens a pool of its own).
_manager = JobManager(SyncPsycopgConnector())


def job_lock(execution_id: uuid.UUID) -> str:
    return f"workflow:{execution_id}"


def enqueue(session: Session, execution_id: uuid.UUID, at: datetime | None = None) -> None:
    """Defer the job that advances the run next, in the session's transaction (committed with it).

    It replaces any job of the run still waiting in the queue: procrastinate starts the jobs of one lock in the
    order they were deferred, so an earlier wake-up scheduled for later would otherwise hold back, say, a cancel.
    (The job that is running, if any, is not touched; the new one starts after it.)"""
    session.execute(
        text(
            "SELECT procrastinate_cancel_job_v1(id, false, false) FROM procrastinate_jobs "
            "WHERE lock = :lock AND status = 'todo'"
        ),
        {"lock": job_lock(execution_id)},
    )
    connection = session.connection().connection.driver_connection
    job = procrastinate_jobs.Job(
        id=None,
        queue=QUEUE,
        lock=job_lock(execution_id),
        queueing_lock=None,
        task_name=TASK_NAME,
        task_kwargs={"execution_id": str(execution_id)},
        scheduled_at=at,
    )
    _manager.defer_job(job, connection=connection)


def enqueue_scoring(session: Session) -> None:
    """Defer a scoring job in the session's transaction, unless one already waits (two deferred at once by
    concurrent ingests are harmless: workers claim texts with SKIP LOCKED, and a job that finds none ends)."""
    waiting = session.scalar(
        text("SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queue_name = :queue AND status = 'todo')"),
        {"queue": SCORING_QUEUE},
    )
    if waiting:
        return
    connection = session.connection().connection.driver_connection
    job = procrastinate_jobs.Job(
        id=None,
        queue=SCORING_QUEUE,
        lock=None,
        queueing_lock=None,
        task_name=SCORING_TASK_NAME,
        task_kwargs={},
    )
    _manager.defer_job(job, connection=connection)


def has_scoring_job(session: Session) -> bool:
    return bool(
        session.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queue_name = :queue "
                "AND status IN ('todo', 'doing'))"
            ),
            {"queue": SCORING_QUEUE},
        )
    )


def enqueue_scoring_if_waiting(factory: sessionmaker[Session]) -> bool:
    """Recovery: delete expired scoring text, and defer a scoring job if texts wait and no job is queued or running
    (a job lost, or texts whose claim expired with a dead worker)."""
    if not scoring_service.housekeeping(factory):
        return False
    with unit_of_work(factory) as session:
        if has_scoring_job(session):
            return False
        enqueue_scoring(session)
    return True


def has_job(session: Session, execution_id: uuid.UUID) -> bool:
    """Whether a job of the run waits in the queue or runs."""
    return bool(
        session.scalar(
            text("SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE lock = :lock AND status IN ('todo', 'doing'))"),
            {"lock": job_lock(execution_id)},
        )
    )


def live_workers(session: Session) -> int:
    """How many workers sent a heartbeat recently."""
    return int(
        session.scalar(
            text("SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => :s)"),
            {"s": STALLED_WORKER_SECONDS},
        )
        or 0
    )


def enqueue_orphans(factory: sessionmaker[Session]) -> list[uuid.UUID]:
    """Enqueue a job for every active run that has none (waiting runs only once their time has come)."""
    now = datetime.now(UTC)
    handled: list[uuid.UUID] = []
    with unit_of_work(factory) as session:
        candidates = session.execute(
            select(WorkflowExecution.id, WorkflowExecution.status, WorkflowExecution.metadata_).where(
                WorkflowExecution.status.in_(list(ACTIVE))
            )
        ).all()
    for execution_id, status, metadata in candidates:
        if status is WorkflowStatus.WAITING:
            until = (metadata or {}).get("waiting", {}).get("until")
            if until and datetime.fromisoformat(until) > now - timedelta(seconds=RECOVERY_INTERVAL_SECONDS):
                continue
        with unit_of_work(factory) as session:
            # Serialise with the runner's transitions so two workers do not both enqueue.
            locked = session.scalar(
                select(WorkflowExecution.status)
                .where(WorkflowExecution.id == execution_id)
                .with_for_update(skip_locked=True)
            )
            if locked is None or locked not in ACTIVE or has_job(session, execution_id):
                continue
            enqueue(session, execution_id)
            handled.append(execution_id)
    if handled:
        logger.warning("enqueued %d workflow run(s) that had no job", len(handled))
    return handled


def libpq_url(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


QUEUES = [QUEUE, alert_outbox.ALERT_QUEUE]


class Worker:
    """The queue's worker: takes workflow jobs and alert deliveries, and runs recovery and extra periodic work
    (quality monitoring)."""

    def __init__(
        self,
        url: URL,
        advance: Callable[[uuid.UUID], Any],
        factory: sessionmaker[Session],
        *,
        concurrency: int = 4,
        periodic: list[tuple[float, Callable[[], Any]]] | None = None,
        name: str = "optiinfra-worker",
        scoring: bool = True,
    ) -> None:
        self.factory = factory
        self.periodic = list(periodic or [])
        self.concurrency = concurrency
        self.name = name
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=libpq_url(url)))

        @self.app.task(name=TASK_NAME, queue=QUEUE, retry=procrastinate.RetryStrategy(max_attempts=8, wait=2))
        def advance_workflow(execution_id: str) -> None:
            advance(uuid.UUID(execution_id))

        self.advance_task = advance_workflow
        self.scoring = scoring
        self.queues = [*QUEUES, SCORING_QUEUE] if scoring else list(QUEUES)

        self.scoring_unavailable_until = 0.0

        @self.app.task(name=SCORING_TASK_NAME, queue=SCORING_QUEUE)
        def score_pending() -> None:
            try:
                report = scoring_service.score_pending(factory)
            except ScorerUnavailableError as error:
                # Texts stay queued (and expire by their retention); looked at again in a while, not every round.
                self.scoring_unavailable_until = time.monotonic() + SCORERS_UNAVAILABLE_PAUSE_SECONDS
                logger.error(
                    "records wait for scores, but the scorers cannot run here: %s %s", error.message, error.fix
                )
                return
            if report.scored:
                logger.info("scored %d record(s), %d written", report.scored, report.written)
            if report.more_waiting:
                with unit_of_work(factory) as session:
                    enqueue_scoring(session)

        self.scoring_task = score_pending

        # The alert outbox's delivery (optiinfra.alerts.delivery): retries are the outbox row's own, not the job's.
        @self.app.task(name=alert_outbox.DELIVER_TASK, queue=alert_outbox.ALERT_QUEUE)
        def deliver_alert(outbox_id: str) -> None:
            alert_delivery.deliver(factory, uuid.UUID(outbox_id))

        self.deliver_task = deliver_alert

    async def _recover_stalled(self) -> None:
        manager = self.app.job_manager
        for queue_name in self.queues:
            stalled = await manager.get_stalled_jobs(queue=queue_name, seconds_since_heartbeat=STALLED_WORKER_SECONDS)
            for job in stalled:
                logger.warning("job %s of a dead worker goes back to the queue", job.id)
                await manager.retry_job(job)
        await manager.prune_stalled_workers(STALLED_WORKER_SECONDS * 4)

    async def _loop(self, interval: float, work: Callable[[], Awaitable[Any]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await work()
            except Exception:  # periodic work logs and goes on; the next round retries
                logger.exception("periodic work failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _recovery(self) -> None:
        try:
            await self._recover_stalled()
        except Exception:
            logger.exception("stalled-job recovery failed")
        await asyncio.to_thread(enqueue_orphans, self.factory)
        if self.scoring and time.monotonic() >= self.scoring_unavailable_until:
            try:
                await asyncio.to_thread(enqueue_scoring_if_waiting, self.factory)
            except Exception:
                logger.exception("scoring recovery failed")

    async def _alert_recovery(self) -> None:
        await asyncio.to_thread(alert_delivery.recover, self.factory)

    async def run_async(self, *, once: bool = False, stop: asyncio.Event | None = None) -> None:
        """Run until cancelled (or, with `once`, until no job is due, after one round of everything periodic)."""
        stop = stop or asyncio.Event()
        async with self.app.open_async():
            if once:
                await self._recovery()
                await self._alert_recovery()
                for _, func in self.periodic:
                    await asyncio.to_thread(func)
                await self.app.run_worker_async(
                    queues=self.queues, wait=False, concurrency=self.concurrency, install_signal_handlers=False
                )
                return

            loops = [
                asyncio.create_task(self._loop(RECOVERY_INTERVAL_SECONDS, self._recovery, stop)),
                asyncio.create_task(self._loop(delivery_settings().recovery_seconds, self._alert_recovery, stop)),
            ]
            loops += [
                asyncio.create_task(self._loop(interval, functools.partial(asyncio.to_thread, func), stop))
                for interval, func in self.periodic
            ]
            try:
                await self.app.run_worker_async(
                    queues=self.queues,
                    name=self.name,
                    concurrency=self.concurrency,
                    install_signal_handlers=False,
                    update_heartbeat_interval=HEARTBEAT_SECONDS,
                    stalled_worker_timeout=STALLED_WORKER_SECONDS,
                    fetch_job_polling_interval=1.0,
                    shutdown_graceful_timeout=30.0,
                )
            finally:
                stop.set()
                for loop in loops:
                    loop.cancel()

    def run(self, *, once: bool = False) -> None:
        asyncio.run(self.run_async(once=once))

    def start_in_thread(self) -> threading.Thread:
        """Run the worker beside a server, in a daemon thread with its own event loop; `stop` ends it."""
        started = threading.Event()

        async def main() -> None:
            self._event_loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            started.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self.run_async()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name=self.name, daemon=True)
        self._thread.start()
        started.wait(10)
        return self._thread

    def stop(self, timeout: float = 30) -> None:
        """Stop a worker started with `start_in_thread` (running jobs get the graceful shutdown time)."""
        loop, task = getattr(self, "_event_loop", None), getattr(self, "_task", None)
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        if getattr(self, "_thread", None) is not None:
            self._thread.join(timeout)


SYSTEM = Principal.system("worker")

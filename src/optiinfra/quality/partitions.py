"""quality_metrics' daily partitions (migration 016): created ahead of time, dropped by retention, and the deletion
of one customer's per-request records.

- `ensure_partitions` creates one partition a day, `DAYS_AHEAD` days ahead (the worker calls it every pass). Records
  dated outside every daily partition (an import of last year, a clock far ahead) land in the default partition
  `quality_metrics_p_default`; a day whose records already sit there keeps them there (reads and retention see them
  alike) and gets no partition of its own.
- `apply_retention`: each customer keeps `retention_days` (a quality setting). A partition every customer's
  retention has passed is detached (after deleting the scoring texts that point at it), its keys are deleted from
  quality_request_keys in bounded batches, then it is dropped. Records of a customer with a shorter retention than
  others are deleted in bounded batches, each in its own transaction.
- `delete_customer_records`: every record of one customer stored up to a moment, in bounded batches (the API records
  the request and the worker carries it out; the CLI does it at once).

All SQL is fixed text; the only names formatted into DDL are partition names this module builds from dates or reads
from the catalog.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.db.engine import unit_of_work
from optiinfra.models import QUALITY_PARTITION_PREFIX, Customer
from optiinfra.quality.settings import settings_of

logger = logging.getLogger("optiinfra.quality.partitions")

DAYS_AHEAD = 7
DEFAULT_PARTITION = f"{QUALITY_PARTITION_PREFIX}default"
DELETE_BATCH = 5_000  # records deleted per transaction (locks held briefly, WAL in small pieces)
KEY_BATCH_PAGES = 256  # pages of a detached partition whose keys are deleted per transaction
DELETION_KEY = "quality_records_deletion"  # customers.metadata: a deletion requested through the API
_LOCK = "optiinfra.quality.partitions"

_PARTITIONS = text(
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i "
    "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = 'quality_metrics'::regclass"
)
_DETACHED = text(
    "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition "
    "AND c.relname LIKE :pattern ORDER BY c.relname"
).bindparams(pattern=QUALITY_PARTITION_PREFIX.replace("_", r"\_") + "%")
_BOUND = re.compile(r"FROM \((?P<start>MINVALUE|'[^']+')\) TO \((?P<end>MAXVALUE|'[^']+')\)")
_DELETE_OLD = text(
    "DELETE FROM quality_metrics WHERE (id, timestamp) IN (SELECT id, timestamp FROM quality_metrics "
    "WHERE customer_id = :customer_id AND timestamp < :cutoff LIMIT :limit)"
)
_DELETE_CUSTOMER = text(
    "DELETE FROM quality_metrics WHERE (id, timestamp) IN (SELECT id, timestamp FROM quality_metrics "
    "WHERE customer_id = :customer_id AND created_at <= :stored_until LIMIT :limit)"
)
_COUNT_CUSTOMER = text(
    "SELECT count(*) FROM quality_metrics WHERE customer_id = :customer_id AND created_at <= :stored_until"
)


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: from the beginning of time (MINVALUE)
    end: datetime | None  # None: to the end of time
    is_default: bool = False


def _instant(bound: str) -> datetime | None:
    if bound in {"MINVALUE", "MAXVALUE"}:
        return None
    return datetime.fromisoformat(bound.strip("'")).astimezone(UTC)


def partitions(session: Session) -> list[Partition]:
    """quality_metrics' partitions, oldest first, the default one last."""
    found = []
    for name, bound in session.execute(_PARTITIONS):
        if bound == "DEFAULT":
            found.append(Partition(name, None, None, is_default=True))
            continue
        match = _BOUND.search(bound)
        if match is None:  # not a partition this module or migration 016 made
            continue
        found.append(Partition(name, _instant(match["start"]), _instant(match["end"])))
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda part: (part.is_default, part.start or oldest))


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _lock(session: Session) -> bool:
    """One maintainer at a time (several workers may run); the others skip their turn."""
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": _LOCK}))


def ensure_partitions(session: Session, now: datetime, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Create the daily partitions from today to `days_ahead` days on that are missing; returns their names."""
    if not _lock(session):
        return []
    existing = [part for part in partitions(session) if not part.is_default]
    created = []
    first = day_start(now)
    for offset in range(days_ahead + 1):
        start = first + timedelta(days=offset)
        end = start + timedelta(days=1)
        if any(
            (part.start is None or part.start < end) and (part.end is None or part.end > start) for part in existing
        ):
            continue
        waiting = session.scalar(
            text(f'SELECT EXISTS (SELECT 1 FROM "{DEFAULT_PARTITION}" WHERE timestamp >= :start AND timestamp < :end)'),  # noqa: S608
            {"start": start, "end": end},
        )
        if waiting:
            logger.warning("records of %s are in the default partition; that day gets no partition", start.date())
            continue
        name = f"{QUALITY_PARTITION_PREFIX}{start:%Y%m%d}"
        # DDL takes no bound parameters: the name and bounds are built from dates here, never from input.
        session.execute(
            text(
                f'CREATE TABLE "{name}" PARTITION OF quality_metrics '
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        )
        created.append(name)
    return created


@dataclass
class RetentionReport:
    dropped: list[str] = field(default_factory=list)
    deleted: int = 0
    finished: bool = True  # False: the time budget ran out with work left (the next pass goes on)


def retention_cutoffs(session: Session, now: datetime) -> dict[uuid.UUID, datetime]:
    """Per customer, the instant before which its records are past retention."""
    customers = session.scalars(select(Customer))
    return {customer.id: now - timedelta(days=settings_of(customer).retention_days) for customer in customers}


def _drop_keys_and_table(factory: sessionmaker[Session], name: str, deadline: float) -> bool:
    """Delete the keys of a detached partition's records page range by page range, then drop it; False if the
    time ran out first (the next pass starts it again: deleting keys already deleted changes nothing)."""
    with unit_of_work(factory) as session:
        pages = int(session.scalar(text("SELECT pg_relation_size(CAST(:name AS regclass)) / 8192"), {"name": name}))
    for first in range(0, pages, KEY_BATCH_PAGES):
        if time.monotonic() > deadline:
            return False
        with unit_of_work(factory) as session:
            session.execute(
                text(
                    "DELETE FROM quality_request_keys AS k USING ("  # noqa: S608 (a name from the catalog)
                    f'SELECT customer_id, request_id, id FROM "{name}" '
                    "WHERE ctid >= CAST(:low AS tid) AND ctid < CAST(:high AS tid)) AS d "
                    "WHERE k.customer_id = d.customer_id AND k.request_id = d.request_id AND k.quality_metric_id = d.id"
                ),
                {"low": f"({first},0)", "high": f"({first + KEY_BATCH_PAGES},0)"},
            )
    with unit_of_work(factory) as session:
        session.execute(text(f'DROP TABLE "{name}"'))
    return True


def apply_retention(
    factory: sessionmaker[Session], now: datetime, *, time_budget: float = 60.0, batch: int = DELETE_BATCH
) -> RetentionReport:
    """Drop the partitions every customer's retention has passed, and delete older records of customers whose
    retention is shorter, within `time_budget` seconds."""
    report = RetentionReport()
    deadline = time.monotonic() + time_budget
    with unit_of_work(factory) as session:
        if not _lock(session):
            report.finished = False
            return report
        cutoffs = retention_cutoffs(session, now)
        common = min(cutoffs.values(), default=None)
        expired = [
            part
            for part in partitions(session)
            if common is not None and not part.is_default and part.end is not None and part.end <= common
        ]
        for part in expired:
            # Texts point at the records (foreign key): a partition still referenced cannot be detached.
            session.execute(
                text(
                    "DELETE FROM scoring_texts WHERE quality_metric_timestamp >= :start "
                    "AND quality_metric_timestamp < :end"
                ),
                {"end": part.end, "start": part.start or datetime.min.replace(tzinfo=UTC)},
            )
            session.execute(text(f'ALTER TABLE quality_metrics DETACH PARTITION "{part.name}"'))
    # Detached partitions: just now, or by an earlier pass that ran out of time.
    with unit_of_work(factory) as session:
        detached = list(session.scalars(_DETACHED))
    for name in detached:
        if not _drop_keys_and_table(factory, name, deadline):
            report.finished = False
            return report
        report.dropped.append(name)
    for customer_id, cutoff in cutoffs.items():
        if common is not None and cutoff <= common:
            continue  # nothing of this customer's is older than the partitions just dropped
        while True:
            if time.monotonic() > deadline:
                report.finished = False
                return report
            with unit_of_work(factory) as session:
                deleted = _rowcount(
                    session.execute(_DELETE_OLD, {"customer_id": customer_id, "cutoff": cutoff, "limit": batch})
                )
            report.deleted += deleted
            if deleted < batch:
                break
    return report


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def request_deletion(customer: Customer, now: datetime) -> datetime:
    """Record that every record of the customer stored until `now` is to be deleted (the worker does it)."""
    customer.metadata_ = {**(customer.metadata_ or {}), DELETION_KEY: {"requested_at": now.isoformat()}}
    return now


def delete_customer_records(
    factory: sessionmaker[Session],
    customer_id: uuid.UUID,
    stored_until: datetime,
    *,
    batch: int = DELETE_BATCH,
    progress: Callable[[int], None] | None = None,
    deadline: float | None = None,
) -> tuple[int, bool]:
    """Delete the customer's records (their keys and texts go with them) stored until `stored_until`, batch by
    batch; returns (how many, whether all are gone). Other customers' records are not touched."""
    total = 0
    while deadline is None or time.monotonic() < deadline:
        with unit_of_work(factory) as session:
            deleted = _rowcount(
                session.execute(
                    _DELETE_CUSTOMER, {"customer_id": customer_id, "stored_until": stored_until, "limit": batch}
                )
            )
        total += deleted
        if progress is not None:
            progress(deleted)
        if deleted < batch:
            return total, True
    return total, False


def count_customer_records(session: Session, customer_id: uuid.UUID, stored_until: datetime) -> int:
    return int(session.scalar(_COUNT_CUSTOMER, {"customer_id": customer_id, "stored_until": stored_until}) or 0)


def carry_out_deletions(factory: sessionmaker[Session], *, deadline: float) -> int:
    """The deletions requested through the API: delete, and clear the request once nothing is left."""
    with unit_of_work(factory) as session:
        requests = [
            (customer.id, datetime.fromisoformat((customer.metadata_ or {})[DELETION_KEY]["requested_at"]))
            for customer in session.scalars(select(Customer).where(Customer.metadata_.has_key(DELETION_KEY)))
        ]
    total = 0
    for customer_id, stored_until in requests:
        deleted, done = delete_customer_records(factory, customer_id, stored_until, deadline=deadline)
        total += deleted
        if not done:
            break
        with unit_of_work(factory) as session:
            customer = session.get(Customer, customer_id, with_for_update=True)
            kept = dict(customer.metadata_ or {}) if customer is not None else {}
            if customer is not None and kept.pop(DELETION_KEY, None) is not None:
                customer.metadata_ = kept
        logger.info("deleted the %d quality records of customer %s stored until %s", deleted, customer_id, stored_until)
    return total


@dataclass(frozen=True)
class MaintenanceReport:
    created: list[str]
    retention: RetentionReport
    deleted_on_request: int


def maintain(
    factory: sessionmaker[Session], now: datetime | None = None, *, time_budget: float = 60.0
) -> MaintenanceReport:
    """The worker's pass: partitions ahead, retention, requested deletions (bounded by `time_budget` seconds)."""
    now = now or datetime.now(UTC)
    deadline = time.monotonic() + time_budget
    with unit_of_work(factory) as session:
        created = ensure_partitions(session, now)
    retention = apply_retention(factory, now, time_budget=time_budget)
    deleted = carry_out_deletions(factory, deadline=deadline)
    return MaintenanceReport(created, retention, deleted)

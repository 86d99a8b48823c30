"""Issue 15, telling people: alert routes, the alert outbox and its delivery log, and the shared metric counters.

- `alert_routes`: where a customer's alerts go (a signed JSON webhook, Slack, Microsoft Teams, or e-mail) and which
  alerts (kinds, minimum severity, models). The URL and the signing secret are needed to call and sign, so they are
  stored; the API never returns them after creation (a masked URL is shown instead).
- `alert_outbox`: one row per (route, alert), written in the transaction of the event it reports, delivered by
  worker jobs (status, attempts, next attempt) and never sent again once delivered.
- `alert_deliveries`: one row per attempt (outcome, HTTP status, duration, our words for a failure).
- `metric_counters`: Prometheus counters that several processes add to, summed at scrape time. `shard` is the
  PostgreSQL backend's process id: a connection runs one transaction at a time, so two transactions never write
  the same row and never wait for (or deadlock on) each other's counters.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from optiinfra.enums import EventSeverity
from optiinfra.models.base import EMPTY_ARRAY, EMPTY_OBJECT, NOW, Base, CreatedAt, Timestamps, UUIDPrimaryKey, pg_enum

ALERT_DESTINATIONS = ("webhook", "slack", "teams", "email")
OUTBOX_STATUSES = ("pending", "sending", "delivered", "failed", "superseded")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class AlertRoute(UUIDPrimaryKey, Timestamps, Base):
    """Where a customer's alerts go, and which ones."""

    __tablename__ = "alert_routes"
    __table_args__ = (
        CheckConstraint(_one_of("destination", ALERT_DESTINATIONS), name="destination_known"),
        CheckConstraint("throttle_seconds >= 0", name="throttle_non_negative"),
        CheckConstraint("(destination = 'email') = (email_to IS NOT NULL)", name="email_has_address"),
        CheckConstraint("(destination = 'email') = (url IS NULL)", name="url_unless_email"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    destination: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)  # write-only on the API
    signing_secret: Mapped[str | None] = mapped_column(String(100))  # webhooks only; write-only on the API
    email_to: Mapped[str | None] = mapped_column(String(320))
    event_kinds: Mapped[list[Any]] = mapped_column(default=list, server_default=EMPTY_ARRAY)  # empty: every kind
    min_severity: Mapped[EventSeverity] = mapped_column(
        pg_enum(EventSeverity, "eventseverity"), default=EventSeverity.INFO, server_default=EventSeverity.INFO.value
    )
    model_names: Mapped[list[Any]] = mapped_column(default=list, server_default=EMPTY_ARRAY)  # empty: every model
    throttle_seconds: Mapped[int] = mapped_column(Integer, default=900, server_default="900")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")


class AlertOutbox(UUIDPrimaryKey, Timestamps, Base):
    """One alert for one route: written with the event, delivered at least once, never again after a success."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        CheckConstraint(_one_of("status", OUTBOX_STATUSES), name="status_known"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts_range"),
        Index("ix_alert_outbox_route_subject", "route_id", "subject_key", "created_at"),
        Index("ix_alert_outbox_due", "next_attempt_at", postgresql_where="status IN ('pending', 'sending')"),
    )

    route_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alert_routes.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[EventSeverity] = mapped_column(pg_enum(EventSeverity, "eventseverity"))
    # What the alert is about (an incident groups by model version), and the group it belongs to (one incident).
    subject_key: Mapped[str] = mapped_column(String(600))
    group_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=NOW)
    claimed_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertDelivery(UUIDPrimaryKey, CreatedAt, Base):
    """One delivery attempt of an outbox row."""

    __tablename__ = "alert_deliveries"

    outbox_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alert_outbox.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))  # delivered, retry, failed
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class MetricCounter(UUIDPrimaryKey, Timestamps, Base):
    """A slice of a Prometheus counter; the counter is the sum over shards (and customers, unless shown)."""

    __tablename__ = "metric_counters"
    __table_args__ = (UniqueConstraint("name", "labels", "customer_key", "shard", name="uq_metric_counters_series"),)

    name: Mapped[str] = mapped_column(String(100))
    labels: Mapped[str] = mapped_column(String(300))
    customer_key: Mapped[str] = mapped_column(String(36))
    shard: Mapped[int] = mapped_column(Integer)
    value: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

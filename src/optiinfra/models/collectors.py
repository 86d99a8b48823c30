"""Issue 19, metrics pulled from where teams already keep them: Prometheus sources per customer.

`prometheus_sources`: a customer's Prometheus server (base URL, optional authentication, the label names that say
which instance a series is about, its instance type, zone and purchase option, the step of the range queries and
the look-back window of the first collection) and the collector's progress on it: `collected_until` (every step
before it is stored; the next collection starts there), the last attempt, success and error, and the number of
failed collections in a row. The authentication secret is needed to call the server, so it is stored; the API never
returns it (as alert routes' signing secrets).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from optiinfra.models.base import Base, Timestamps, UUIDPrimaryKey

AUTH_TYPES = ("none", "basic", "bearer")


class PrometheusSource(UUIDPrimaryKey, Timestamps, Base):
    """A customer's Prometheus server and how far the collector has read it."""

    __tablename__ = "prometheus_sources"
    __table_args__ = (
        UniqueConstraint("customer_id", "name", name="uq_prometheus_sources_customer_name"),
        CheckConstraint("auth_type IN ('none', 'basic', 'bearer')", name="auth_type_known"),
        CheckConstraint("(auth_type = 'none') = (auth_secret IS NULL)", name="secret_when_authenticated"),
        CheckConstraint("(auth_type = 'basic') = (auth_username IS NOT NULL)", name="username_when_basic"),
        CheckConstraint("step_seconds BETWEEN 1 AND 3600", name="step_range"),
        CheckConstraint("lookback_hours BETWEEN 1 AND 2160", name="lookback_range"),
        CheckConstraint("consecutive_failures >= 0", name="failures_non_negative"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    base_url: Mapped[str] = mapped_column(Text)
    auth_type: Mapped[str] = mapped_column(String(10), default="none", server_default="none")
    auth_username: Mapped[str | None] = mapped_column(String(255))
    auth_secret: Mapped[str | None] = mapped_column(String(1000))  # write-only on the API
    instance_label: Mapped[str] = mapped_column(String(100), default="instance", server_default="instance")
    instance_type_label: Mapped[str] = mapped_column(
        String(100), default="instance_type", server_default="instance_type"
    )
    zone_label: Mapped[str] = mapped_column(String(100), default="zone", server_default="zone")
    purchase_option_label: Mapped[str] = mapped_column(
        String(100), default="capacity_type", server_default="capacity_type"
    )
    step_seconds: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    lookback_hours: Mapped[int] = mapped_column(Integer, default=168, server_default="168")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    collected_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

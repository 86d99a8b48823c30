"""Issue 12, dashboard sessions: a signed-in browser holds a random session id, never the API key itself."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from optiinfra.models.base import NOW, Base, CreatedAt, UUIDPrimaryKey


class DashboardSession(UUIDPrimaryKey, CreatedAt, Base):
    """One signed-in browser. Only the SHA-256 digest of the session id (the cookie's value) is stored. The session
    lasts while the key it was opened with is still the caller's key (`key_digest`), until `expires_at`, and while it
    is used at least once per idle time-out (`last_seen_at`)."""

    __tablename__ = "dashboard_sessions"

    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    key_digest: Mapped[str] = mapped_column(String(64))
    # None: the operator's session.
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    last_seen_at: Mapped[datetime] = mapped_column(server_default=NOW)
    expires_at: Mapped[datetime] = mapped_column(index=True)

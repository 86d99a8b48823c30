"""Alert delivery settings, read from the environment at each use (so a change applies at the next attempt)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from optiinfra.errors import ConfigurationError

MAX_ATTEMPTS_ENV = "OPTIINFRA_ALERT_MAX_ATTEMPTS"
BACKOFF_ENV = "OPTIINFRA_ALERT_BACKOFF_SECONDS"
TIMEOUT_ENV = "OPTIINFRA_ALERT_TIMEOUT_SECONDS"
RECOVERY_ENV = "OPTIINFRA_ALERT_RECOVERY_SECONDS"
SMTP_HOST_ENV = "OPTIINFRA_SMTP_HOST"
SMTP_PORT_ENV = "OPTIINFRA_SMTP_PORT"
SMTP_USER_ENV = "OPTIINFRA_SMTP_USER"
SMTP_PASSWORD_ENV = "OPTIINFRA_SMTP_PASSWORD"  # noqa: S105 (the variable's name, not a password)
SMTP_FROM_ENV = "OPTIINFRA_SMTP_FROM"
SMTP_SECURITY_ENV = "OPTIINFRA_SMTP_SECURITY"

MAX_BACKOFF_SECONDS = 3600.0


def _number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise ConfigurationError(
            f"{name} must be a number, not {raw!r}.", fix=f"export {name}={default:g}, or unset it."
        ) from error
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must lie in [{low:g}, {high:g}], not {raw}.", fix=f"unset {name}.")
    return value


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int
    backoff_seconds: float  # the first retry waits about this long, each next one twice as long (with jitter)
    timeout_seconds: float  # connect, send and answer, each
    recovery_seconds: float  # how often a worker looks for alerts whose job or worker was lost

    @property
    def claim_seconds(self) -> float:
        """How long an attempt may take before another worker may take the alert over (a killed worker)."""
        return 3 * self.timeout_seconds + 5


def delivery_settings() -> DeliverySettings:
    return DeliverySettings(
        max_attempts=int(_number(MAX_ATTEMPTS_ENV, 8, 1, 100)),
        backoff_seconds=_number(BACKOFF_ENV, 10.0, 0.01, MAX_BACKOFF_SECONDS),
        timeout_seconds=_number(TIMEOUT_ENV, 10.0, 0.1, 120),
        recovery_seconds=_number(RECOVERY_ENV, 10.0, 0.2, 600),
    )


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None
    password: str | None
    sender: str
    security: str  # starttls, ssl or none


def smtp_settings() -> SmtpSettings | None:
    """The operator's SMTP server, or None when e-mail alerts are not set up."""
    host = os.environ.get(SMTP_HOST_ENV, "").strip()
    if not host:
        return None
    security = os.environ.get(SMTP_SECURITY_ENV, "starttls").strip().lower() or "starttls"
    if security not in {"starttls", "ssl", "none"}:
        raise ConfigurationError(
            f"{SMTP_SECURITY_ENV} must be starttls, ssl or none, not {security!r}.", fix=f"unset {SMTP_SECURITY_ENV}."
        )
    return SmtpSettings(
        host=host,
        port=int(_number(SMTP_PORT_ENV, 465 if security == "ssl" else 587, 1, 65535)),
        user=os.environ.get(SMTP_USER_ENV) or None,
        password=os.environ.get(SMTP_PASSWORD_ENV) or None,
        sender=os.environ.get(SMTP_FROM_ENV, "").strip() or f"optiinfra@{host}",
        security=security,
    )

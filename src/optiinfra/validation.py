"""Validation types shared by every schema: bounded free-form JSON, instants in a sane range, finite numbers.

Every wire schema takes its free-form JSON objects, its instants and its measured numbers from here, so one rule
holds everywhere and a limit is changed in one place:

- `BoundedJson` (and `OptionalBoundedJson`): a JSON object whose serialized size is at most `json_field_limit()`
  bytes (64 KiB unless `OPTIINFRA_MAX_JSON_FIELD_BYTES` says otherwise); a larger one is refused with 422 naming
  the field.
- `SaneInstant`: a timezone-aware instant that, converted to UTC, lies in the years 1970 to 2200.
- `FiniteFloat`: a float that is neither NaN nor infinite.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, SkipValidation

# The most items one batch request (samples, records) may carry.
MAX_BATCH = 10_000

JSON_FIELD_LIMIT_ENV = "OPTIINFRA_MAX_JSON_FIELD_BYTES"
DEFAULT_JSON_FIELD_LIMIT = 64 * 1024

EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
INSTANT_RANGE = "between 1970-01-01T00:00:00Z and 2200-12-31T23:59:59Z"


@cache
def json_field_limit() -> int:
    """The largest serialized size, in bytes, of one free-form JSON field (read once from the environment)."""
    raw = os.environ.get(JSON_FIELD_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_JSON_FIELD_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1024:
        # Not a ConfigurationError: this runs inside validation; a bad setting must not turn inputs into 500s.
        return DEFAULT_JSON_FIELD_LIMIT
    return limit


def json_size(value: Any) -> int:
    """The size of `value` serialized as compact JSON, in bytes."""
    return len(orjson.dumps(value))


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    limit = json_field_limit()
    try:
        size = json_size(value)
    except TypeError as error:  # pragma: no cover - values come from parsed JSON
        raise ValueError(f"must be JSON: {error}") from None
    if size > limit:
        raise ValueError(f"is {size} bytes as JSON; at most {limit} bytes are accepted")
    return value


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


def _sane_instant(value: datetime) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must lie {INSTANT_RANGE}") from None
    if not EARLIEST_INSTANT <= in_utc <= LATEST_INSTANT:
        raise ValueError(f"must lie {INSTANT_RANGE}")
    return in_utc


BoundedJson = Annotated[
    dict[str, Any],
    AfterValidator(_bounded),
    Field(description="A JSON object of at most 64 KiB serialized (configurable with OPTIINFRA_MAX_JSON_FIELD_BYTES)."),
]
"""A free-form JSON object with a size limit."""

NullableBoundedJson = Annotated[BoundedJson, BeforeValidator(_empty_if_none)]
"""A free-form JSON object with a size limit; null stands for the empty object."""

SaneInstant = Annotated[
    AwareDatetime,
    AfterValidator(_sane_instant),
    Field(description=f"An ISO 8601 instant with a time zone, {INSTANT_RANGE} once converted to UTC."),
]
"""A timezone-aware instant in the years 1970 to 2200 (UTC), returned in UTC."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that is neither NaN nor infinite."""

# An item of a batch body (a quality record, a metric sample) that the service validates itself, all items at once
# with each bad one's index and reasons. The framework would otherwise copy every item of a 10,000-item batch on the
# event loop first; passing them through unchecked keeps that work on the request's thread. A non-object item is
# reported by the service's validation like any other bad item.
BatchItem = Annotated[dict[str, Any], SkipValidation]

"""Time series shared by agent metrics and resource metrics: batch validation and bucketed reads.

Batches are validated the way quality metrics are: the whole batch is refused when any sample is invalid, and the
refusal lists every bad sample's index and reasons, so a client fixes everything in one round trip. Reads group
samples into fixed buckets (`date_bin`, aligned to the Unix epoch in UTC) with avg / min / max / count per bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, DateTime, Interval, bindparam, func
from sqlalchemy.orm import InstrumentedAttribute

from optiinfra.errors import InvalidInputError
from optiinfra.validation import MAX_BATCH

# How far into the future a sample's timestamp may be (client clocks drift).
CLOCK_SKEW = timedelta(minutes=5)

BUCKET_PATTERN = r"^[1-9][0-9]{0,7}[smhd]?$"
MIN_BUCKET_SECONDS = 1
MAX_BUCKET_SECONDS = 30 * 86_400
DEFAULT_RANGE = timedelta(hours=1)
# Most buckets one answer may hold (per series before the query, in all after it).
MAX_BUCKETS = 10_000

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

M = TypeVar("M", bound=BaseModel)

_adapters: dict[type[BaseModel], TypeAdapter[Any]] = {}

# Samples per validation call. One call into pydantic's core holds the interpreter lock until it returns (it never
# yields it to other threads), so a 10,000-record batch validated in one call would stall the server's event loop
# and every other request for tens of milliseconds; chunks of this size hold it for about a millisecond each.
VALIDATION_CHUNK = 128


def _list_adapter(model: type[M]) -> TypeAdapter[list[M]]:
    adapter = _adapters.get(model)
    if adapter is None:
        adapter = _adapters[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return adapter


def validate_batch(
    model: type[M], raw_samples: list[dict[str, Any]], *, now: datetime, timestamp_field: str, field: str
) -> list[M]:
    """Validate a whole batch; any bad sample refuses it all (422), listing every bad sample's index and reasons
    under `details[field]` (`field` is the body's name for the list).

    A timestamp more than CLOCK_SKEW ahead of `now` is a problem too; a missing (None) timestamp is left to the
    caller's default.
    """
    if len(raw_samples) > MAX_BATCH:
        raise InvalidInputError(f"A batch holds at most {MAX_BATCH} {field}.")
    adapter = _list_adapter(model)
    valid: list[M] | None
    try:
        valid = [
            sample
            for start in range(0, len(raw_samples), VALIDATION_CHUNK)
            for sample in adapter.validate_python(raw_samples[start : start + VALIDATION_CHUNK])
        ]
    except ValidationError:
        valid = None  # validate one by one below, to report every bad sample with its index
    problems: dict[int, list[dict[str, str]]] = {}
    samples: list[M] = []
    for index, raw in enumerate(raw_samples):
        if valid is not None:
            sample = valid[index]
        else:
            try:
                sample = model.model_validate(raw)
            except ValidationError as error:
                problems[index] = [
                    {"field": ".".join(str(part) for part in problem["loc"]) or "sample", "message": problem["msg"]}
                    for problem in error.errors()
                ]
                continue
        moment = getattr(sample, timestamp_field)
        if moment is not None and moment > now + CLOCK_SKEW:
            problems[index] = [{"field": timestamp_field, "message": "is in the future (more than 5 minutes ahead)"}]
            continue
        samples.append(sample)
    if problems:
        refuse_batch(problems, len(raw_samples), field)
    return samples


def refuse_batch(problems: dict[int, list[dict[str, str]]], total: int, field: str) -> None:
    """Refuse a whole batch (422) listing each bad item's index and reasons (the first 100) under `details[field]`."""
    listed = [{"index": index, "problems": problems[index]} for index in sorted(problems)]
    raise InvalidInputError(
        f"{len(listed)} of {total} {field} are invalid; nothing was stored.",
        details={field: listed[:100], "invalid_count": len(listed)},
    )


@dataclass(frozen=True)
class Bucketing:
    """A validated time range [start, end) cut into buckets of `seconds`."""

    start: datetime
    end: datetime
    seconds: int

    @property
    def width(self) -> timedelta:
        return timedelta(seconds=self.seconds)


def _query_problem(name: str, message: str) -> InvalidInputError:
    return InvalidInputError(
        message, details={"problems": [{"location": ["query", name], "message": message, "type": "value_error"}]}
    )


def parse_bucket(bucket: str) -> int:
    """Seconds in a bucket written as a number with an optional unit: `60`, `60s`, `5m`, `1h`, `1d`."""
    match = re.fullmatch(BUCKET_PATTERN, bucket)
    if match is None:
        raise _query_problem(
            "bucket", "Write the bucket as a number of seconds with an optional unit: 60s, 5m, 1h, 1d."
        )
    unit = bucket[-1] if bucket[-1] in _UNIT_SECONDS else "s"
    seconds = int(bucket.rstrip("smhd")) * _UNIT_SECONDS[unit]
    if not MIN_BUCKET_SECONDS <= seconds <= MAX_BUCKET_SECONDS:
        raise _query_problem(
            "bucket", f"A bucket is between {MIN_BUCKET_SECONDS} second and {MAX_BUCKET_SECONDS // 86_400} days."
        )
    return seconds


def bucketing(start: datetime | None, end: datetime | None, bucket: str, now: datetime) -> Bucketing:
    """The range and bucket of a query: `end` defaults to now, `start` to an hour before `end`."""
    seconds = parse_bucket(bucket)
    for name, moment in (("start", start), ("end", end)):
        if moment is not None and moment.tzinfo is None:
            raise _query_problem(name, "Give the time with its time zone (for example 2025-01-01T00:00:00Z).")
    end = end or now
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise _query_problem("start", "start must be before end.")
    if (end - start).total_seconds() / seconds > MAX_BUCKETS:
        raise _query_problem(
            "bucket", f"The range holds more than {MAX_BUCKETS} buckets of {seconds} s; widen the bucket."
        )
    return Bucketing(start=start, end=end, seconds=seconds)


def bucket_start(column: InstrumentedAttribute[datetime], seconds: int) -> ColumnElement[datetime]:
    """The start of the bucket holding `column`: `date_bin` on buckets aligned to the Unix epoch (UTC)."""
    return func.date_bin(
        bindparam("bucket_width", timedelta(seconds=seconds), type_=Interval()),
        column,
        bindparam("bucket_origin", _EPOCH, type_=DateTime(timezone=True)),
        type_=DateTime(timezone=True),
    )


def refuse_too_many_buckets(count: int) -> None:
    """An answer with more than MAX_BUCKETS rows is refused rather than cut short."""
    if count > MAX_BUCKETS:
        raise InvalidInputError(
            f"The answer would hold more than {MAX_BUCKETS} buckets; narrow the filters or widen the bucket.",
            details={"max_buckets": MAX_BUCKETS},
        )

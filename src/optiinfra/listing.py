"""Query models: the filters of a list or of a series, written once and used by the route, the service and the
repository.

A list's filters are a pydantic model deriving from `ListQuery` (its page: `cursor` and `limit`); a bucketed
series' from `SeriesQuery` (its window: `start`, `end`, `bucket`). The route takes the model as a FastAPI query
model (`filters: Annotated[AgentFilters, Query()]`), so each field is one query parameter of the same name; the
service passes it on unchanged; the repository applies it (`optiinfra.db.queries.list_page`, `where_filters`),
which turns each given field into a condition on the queried table. A field means "the column of the same name
equals the value" unless it is annotated with a `Where` saying otherwise:

    class ScalingEventFilters(ListQuery):
        customer_id: uuid.UUID | None = None                                     # customer_id = value
        since: Annotated[SaneInstant | None, Where("executed_at", ">=")] = None  # executed_at >= value

A field left out (None) filters nothing. This module has no database dependency: the Python client and the
schemas modules import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field

from optiinfra.pagination import DEFAULT_LIMIT, MAX_LIMIT
from optiinfra.validation import SaneInstant

Operator = Literal["==", ">=", "<", "is null"]
"""How a field's value meets its column: equal, at or after, before, or (a boolean) whether the column is null."""

DEFAULT_BUCKET = "60s"


@dataclass(frozen=True)
class Where:
    """The condition a filter field stands for: `column` (default: the field's own name) `operator` the value."""

    column: str | None = None
    operator: Operator = "=="


@dataclass(frozen=True)
class Condition:
    """One given filter: compare `column` with `value` by `operator`."""

    column: str
    operator: Operator
    value: Any


class FilterModel(BaseModel):
    """Filters whose given fields are conditions on one table's columns (but those in `not_filters`)."""

    not_filters: ClassVar[frozenset[str]] = frozenset()

    def conditions(self) -> Iterator[Condition]:
        """The filters that were given (not None), as conditions on the table's columns."""
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name in self.not_filters or value is None:
                continue
            where = next((item for item in field.metadata if isinstance(item, Where)), Where())
            yield Condition(where.column or name, where.operator, value)


class ListQuery(FilterModel):
    """One page of a list, newest first. Subclasses add the list's filters."""

    not_filters: ClassVar[frozenset[str]] = frozenset({"cursor", "limit"})

    cursor: Annotated[str | None, Field(max_length=200, description="next_cursor of the previous page")] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT


class SeriesQuery(FilterModel):
    """A bucketed series over [start, end): default the last hour in 60 s buckets. Subclasses add its filters."""

    not_filters: ClassVar[frozenset[str]] = frozenset({"start", "end", "bucket"})

    start: SaneInstant | None = None
    end: SaneInstant | None = None
    bucket: Annotated[
        str, Field(max_length=20, description="bucket width: seconds, or with a unit (60s, 5m, 1h, 1d)")
    ] = DEFAULT_BUCKET

"""Optional equality filters shared by every list query."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

S = TypeVar("S", bound=Select[Any])


def where_given(statement: S, *filters: tuple[InstrumentedAttribute[Any], object]) -> S:
    """Add `column == value` for each (column, value) pair whose value was given; None means "any"."""
    for column, value in filters:
        if value is not None:
            statement = statement.where(column == value)
    return statement

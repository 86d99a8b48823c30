"""Pages on the wire: the Page schema and its limits. The query side (cursor, ordering) is in `optiinfra.db.queries`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from optiinfra.db.queries import encode_cursor

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; pass `next_cursor` back as `cursor` for the next page."""

    items: list[T]
    next_cursor: str | None


def page_of(rows: list[Any], limit: int, to_item: Any) -> Page[Any]:
    """Build a Page from up to limit + 1 rows fetched by `paginate`."""
    items = rows[:limit]
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return Page(items=[to_item(row) for row in items], next_cursor=next_cursor)

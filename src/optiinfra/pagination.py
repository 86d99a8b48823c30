"""Pages: the `Page` schema, its limits and its opaque cursor, with no database or HTTP dependency.

Services return pages, the API serialises them and the Python client reads them, so this module sits below all
three. The query side (filters, ordering, applying a cursor) is `optiinfra.db.queries.list_page`; a list's filter
model derives from `optiinfra.listing.ListQuery`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from optiinfra.errors import InvalidInputError

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; pass `next_cursor` back as `cursor` for the next page."""

    items: list[T]
    next_cursor: str | None

    def map(self, to_item: Callable[[T], U]) -> Page[U]:
        """The same page with each item converted (a row into its schema, in the service)."""
        return Page[Any](items=[to_item(item) for item in self.items], next_cursor=self.next_cursor)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time in cursor")
        return moment, uuid.UUID(row_id)
    except (ValueError, UnicodeError, binascii.Error) as error:
        raise InvalidInputError("The cursor is not one this API issued.", details={"cursor": cursor}) from error


def page_of(rows: Sequence[Any], limit: int) -> Page[Any]:
    """A Page from up to limit + 1 rows, newest first (the extra row only says that another page exists)."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return Page[Any](items=items, next_cursor=next_cursor)

"""Pages on the wire. The definitions live in `optiinfra.pagination` (no HTTP dependency); kept here for the routes."""

from optiinfra.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, page_of

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Page", "page_of"]

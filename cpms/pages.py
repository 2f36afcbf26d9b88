"""Pages of query results: every list the core serves is paginated (FIELD-NOTES 20).

Order is always total (a unique key last), so pages are stable while rows are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cpms.errors import InvalidRequest

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Page", "fetch_page"]

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, with the size of the whole list."""

    items: list[T]
    total: int
    offset: int
    limit: int


async def fetch_page(
    session: AsyncSession, query: Select[Any], *, offset: int = 0, limit: int | None = None
) -> Page[Any]:
    """Run ``query`` (already ordered) for one page and count the whole result."""
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more, not {offset}")
    if limit is None:
        limit = DEFAULT_LIMIT
    if limit < 1:
        raise InvalidRequest(f"limit must be 1 or more, not {limit}")
    limit = min(limit, MAX_LIMIT)
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = list((await session.scalars(query.offset(offset).limit(limit))).unique())
    return Page(items=items, total=total or 0, offset=offset, limit=limit)

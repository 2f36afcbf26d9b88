"""Declarative base and the column types every model shares.

Two types exist because the engines disagree: SQLite keeps neither time zones nor exact
decimals, PostgreSQL keeps both. ``UtcDateTime`` always hands back an aware UTC datetime and
refuses naive ones on the way in; ``ExactDecimal`` always hands back a ``Decimal`` that is
exactly what was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["Base", "BigId", "ExactDecimal", "UtcDateTime", "utcnow"]

# Stable constraint names, so Alembic migrations name the same thing on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always loaded as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the core stores aware UTC times only")
        value = value.astimezone(UTC)
        # SQLite has no time zone type; store the naive UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite the two steps above (ours, then the dialect's text formatting and regex
    # parsing) were a tenth of the CPU of a meter-values write; one C call each way does
    # both and keeps SQLAlchemy's storage format ("YYYY-MM-DD HH:MM:SS.ffffff"), so stored
    # values, comparisons and ordering are unchanged.

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_datetime


_texts: dict[datetime, str] = {}
"""Recent conversions: a reading's times come once for each of its samples, and the receive
time once for every reading of a message. Kept small; a value is one instant, whatever its
time zone, so equal keys always have the same text."""
_TEXTS_KEPT = 512


def _sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = _texts.get(value)
    if text is not None:
        return text
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the core stores aware UTC times only")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = utc.isoformat(" ", "microseconds")[:26]  # without "+00:00": naive UTC wall time
    if len(_texts) >= _TEXTS_KEPT:
        _texts.clear()
    _texts[value] = text
    return text


def _sqlite_datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal kept exactly: NUMERIC on PostgreSQL, canonical text on SQLite."""

    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(20, 6))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"{value!r} is not a Decimal: money and energy are never floats")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    # On SQLite the steps above run behind TypeDecorator's wrapper and a dialect check for
    # every value: four samples of a MeterValues carry eight decimals. The same conversions
    # as one plain function each.

    def bind_processor(self, dialect: Dialect) -> Callable[[Decimal | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _decimal_text

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], Decimal | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _decimal_value


def _decimal_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"{value!r} is not a Decimal: money and energy are never floats")
    return str(value)


def _decimal_value(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value if type(value) is str else str(value))


#: A 64-bit autoincrement key (SQLite autoincrements only plain INTEGER primary keys).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Base of every ORM model; JSON for structured values nobody queries by."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime(),
        Decimal: ExactDecimal(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        list[str]: JSON(),
        list[dict[str, Any]]: JSON(),
    }

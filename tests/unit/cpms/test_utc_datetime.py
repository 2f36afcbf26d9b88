"""``UtcDateTime`` on SQLite: its one-call text conversion agrees with SQLAlchemy's own.

The type writes and reads SQLite text itself (faster than SQLAlchemy's format-then-regex
path), remembering recent conversions; stored values must stay byte for byte what
SQLAlchemy's DATETIME writes, or ordering and comparisons against rows written before would
break. PostgreSQL keeps SQLAlchemy's processing and is covered by every integration test
that runs on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME

from cpms.model.base import UtcDateTime

DIALECT = sqlite.dialect()
OURS_IN = UtcDateTime().bind_processor(DIALECT)
OURS_OUT = UtcDateTime().result_processor(DIALECT, None)
THEIRS_IN = DATETIME().bind_processor(DIALECT)
THEIRS_OUT = DATETIME().result_processor(DIALECT, None)

MOMENTS = [
    datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 7, 4, 9, 30, 15, 250_000, tzinfo=timezone(timedelta(hours=-7))),
    datetime(1, 1, 1, 2, tzinfo=timezone(timedelta(hours=1))),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_the_stored_text_is_sqlalchemys_and_reads_back_as_the_same_utc_instant(
    moment: datetime,
) -> None:
    assert OURS_IN is not None
    assert OURS_OUT is not None
    assert THEIRS_IN is not None
    assert THEIRS_OUT is not None
    stored = OURS_IN(moment)
    assert stored == THEIRS_IN(moment.astimezone(UTC).replace(tzinfo=None))
    back = OURS_OUT(stored)
    assert back == moment
    assert back.tzinfo is UTC
    assert back == THEIRS_OUT(stored).replace(tzinfo=UTC)


def test_text_without_microseconds_reads_as_utc() -> None:
    assert OURS_OUT is not None
    assert OURS_OUT("2025-03-01 12:00:00") == datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_none_passes_both_ways_and_a_naive_datetime_is_refused() -> None:
    assert OURS_IN is not None
    assert OURS_OUT is not None
    assert OURS_IN(None) is None
    assert OURS_OUT(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        OURS_IN(datetime(2025, 3, 1, 12, 0))


def test_a_datetime_given_again_is_stored_as_the_same_text() -> None:
    assert OURS_IN is not None
    first, second = MOMENTS[0], MOMENTS[1]
    assert OURS_IN(first) == OURS_IN(first) == "2025-03-01 12:00:00.000000"
    assert OURS_IN(second) == "2025-03-01 12:00:00.000005"
    assert OURS_IN(first) == "2025-03-01 12:00:00.000000"

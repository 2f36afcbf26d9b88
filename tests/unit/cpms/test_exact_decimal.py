"""``ExactDecimal`` on SQLite: its plain conversion functions agree with the type's own steps.

On SQLite the type hands SQLAlchemy one function each way instead of ``TypeDecorator``'s
wrapper around ``process_bind_param`` / ``process_result_value``; both must store the same
text, give back the same exact ``Decimal`` and refuse a float. PostgreSQL keeps SQLAlchemy's
processing and is covered by every integration test that runs on it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from cpms.model.base import ExactDecimal

SQLITE = sqlite.dialect()
TYPE = ExactDecimal()
BIND = TYPE.bind_processor(SQLITE)
RESULT = TYPE.result_processor(SQLITE, None)

VALUES = [
    Decimal("0"),
    Decimal("-0.000001"),
    Decimal("12.500000"),
    Decimal("1E+3"),
    Decimal("99999999999999.999999"),
    Decimal("0.1") + Decimal("0.2"),
]


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_sqlite_stores_the_same_text_as_the_types_own_step(value: Decimal) -> None:
    assert BIND is not None
    assert BIND(value) == TYPE.process_bind_param(value, SQLITE) == str(value)


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_sqlite_reads_back_exactly_what_was_stored(value: Decimal) -> None:
    assert BIND is not None
    assert RESULT is not None
    back = RESULT(BIND(value))
    assert type(back) is Decimal
    assert back == value
    assert str(back) == str(value)
    assert back == TYPE.process_result_value(str(value), SQLITE)


def test_sqlite_reads_a_number_stored_by_hand_as_its_text() -> None:
    assert RESULT is not None
    assert RESULT(12) == Decimal("12")
    assert RESULT(2.5) == Decimal("2.5")


def test_none_passes_both_ways() -> None:
    assert BIND is not None
    assert RESULT is not None
    assert BIND(None) is None
    assert RESULT(None) is None


@pytest.mark.parametrize("wrong", [0.1, 3, "4.2"], ids=repr)
def test_sqlite_refuses_what_is_not_a_decimal(wrong: object) -> None:
    assert BIND is not None
    with pytest.raises(TypeError, match="not a Decimal"):
        BIND(wrong)  # type: ignore[arg-type]


def test_postgresql_binds_the_decimal_itself() -> None:
    bind = TYPE.bind_processor(postgresql.dialect())
    value = Decimal("7.25")
    assert (bind(value) if bind else value) == value

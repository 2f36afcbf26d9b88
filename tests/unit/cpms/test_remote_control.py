"""Unit tests of the pure parts of ``cpms.remote_control``: idTags and OCPI profiles.

``id_tag_for``: a token uid that fits OCPP 1.6's 20 printable characters is the idTag; any
other gets a stable 20-character alias, different per token identity. ``profile_to_ocpi``
renders a ``ChargingLimit`` as an OCPI ChargingProfile (checked with ocpi-types).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from ocpi_models import check

from cpms.remote_control import id_tag_for, profile_to_ocpi
from cpms.station_port import ChargingLimit, LimitPeriod

SHORT = {"country_code": "DE", "party_id": "TNM", "uid": "12345678905880"}
LONG = {"country_code": "DE", "party_id": "TNM", "uid": "bdf21bce-fc97-11e8-8eb2-f2801f1b9fd1"}


def test_a_uid_that_fits_is_the_id_tag() -> None:
    assert id_tag_for(SHORT) == "12345678905880"


def test_a_uid_too_long_gets_a_stable_alias_per_token() -> None:
    alias = id_tag_for(LONG)

    assert len(alias) == 20
    assert alias.startswith("OCPI")
    assert id_tag_for(dict(LONG)) == alias
    assert id_tag_for({**LONG, "party_id": "OTH"}) != alias


def test_a_uid_with_a_space_gets_an_alias() -> None:
    alias = id_tag_for({**SHORT, "uid": "A B"})

    assert alias != "A B"
    assert len(alias) == 20


def test_a_charging_limit_renders_as_an_ocpi_charging_profile() -> None:
    limit = ChargingLimit(
        "W",
        (LimitPeriod(0, Decimal(11000)), LimitPeriod(1800, Decimal("7400.5"))),
        start=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        duration=3600,
        min_rate=Decimal("1400.0"),
    )

    profile = profile_to_ocpi(limit)

    check("ChargingProfile", profile)
    assert profile == {
        "charging_rate_unit": "W",
        "start_date_time": "2025-03-01T10:00:00Z",
        "duration": 3600,
        "min_charging_rate": 1400.0,
        "charging_profile_period": [
            {"start_period": 0, "limit": 11000.0},
            {"start_period": 1800, "limit": 7400.5},
        ],
    }

"""OCPI 2.2.1 Session documents of our sessions: what eMSPs are served and pushed.

Pure code, no I/O. ``session_to_ocpi`` renders every Session field the spec defines and
nothing else; optional fields we have no value for are left out (OCPI: absent is not
"zero": a session without ``total_cost`` is not free, it is not priced).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cpms.documents.datetimes import format_datetime
from cpms.model import ChargingPeriod, Session

__all__ = ["charging_period_to_ocpi", "session_to_ocpi"]

#: Fields of OCPI's Session, in the spec's order.
SESSION_FIELDS = (
    "country_code",
    "party_id",
    "id",
    "start_date_time",
    "end_date_time",
    "kwh",
    "cdr_token",
    "auth_method",
    "authorization_reference",
    "location_id",
    "evse_uid",
    "connector_id",
    "meter_id",
    "currency",
    "charging_periods",
    "total_cost",
    "status",
    "last_updated",
)


def charging_period_to_ocpi(period: ChargingPeriod) -> dict[str, Any]:
    """Return a stored charging period as OCPI ChargingPeriod."""
    document: dict[str, Any] = {
        "start_date_time": format_datetime(period.start_date_time),
        "dimensions": period.dimensions,
    }
    if period.tariff_id is not None:
        document["tariff_id"] = period.tariff_id
    return document


def session_to_ocpi(session: Session, periods: Iterable[ChargingPeriod]) -> dict[str, Any]:
    """Return ``session`` as OCPI Session, with ``periods`` as its charging periods."""
    total = None
    if session.total_cost_excl_vat is not None:
        total = {"excl_vat": float(session.total_cost_excl_vat)}
        if session.total_cost_incl_vat is not None:
            total["incl_vat"] = float(session.total_cost_incl_vat)
    document: dict[str, Any] = {
        "country_code": session.country_code,
        "party_id": session.party_id,
        "id": session.id,
        "start_date_time": format_datetime(session.start_date_time),
        "end_date_time": (
            format_datetime(session.end_date_time) if session.end_date_time else None
        ),
        "kwh": float(session.energy_wh / 1000),
        "cdr_token": session.cdr_token,
        "auth_method": session.auth_method,
        "authorization_reference": session.authorization_reference,
        "location_id": session.location_id,
        # OCPI: "#NA" only where the data cannot exist: a reservation of no EVSE yet.
        "evse_uid": session.evse_uid or "#NA",
        "connector_id": session.connector_id or "#NA",
        "meter_id": session.meter_id,
        "currency": session.currency,
        "charging_periods": [charging_period_to_ocpi(period) for period in periods],
        "total_cost": total,
        "status": session.status,
        "last_updated": format_datetime(session.last_updated),
    }
    return {key: document[key] for key in SESSION_FIELDS if document[key] is not None}

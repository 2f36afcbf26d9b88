"""Map OCPI 2.2.1 Tariff documents onto the ORM model and back.

``tariff_from_ocpi`` builds a new Tariff, ``apply_tariff`` replaces one (PUT semantics: an
omitted optional field becomes ``None``); both validate the whole document first. The
elements, ``min_price``/``max_price``, ``tariff_alt_text`` and ``energy_mix`` are stored as
the JSON given (the pricing module reads prices from it as ``Decimal``);
``start_date_time``/``end_date_time`` become aware UTC datetimes.

``last_updated``: an imported or replaced tariff is a change in our system, which partners
pulling with ``date_from`` must see, so it gets ``last_updated = now``; the document's value
is validated as a DateTime and then dropped. Spec: OCPI 2.2.1 module Tariffs.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from cpms.documents.datetimes import format_datetime, parse_datetime
from cpms.documents.schema import validate
from cpms.errors import DocumentError
from cpms.model import Tariff

__all__ = ["apply_tariff", "tariff_from_ocpi", "tariff_to_ocpi"]

# The OCPI fields in the spec's order, by how they are stored.
_HEAD = ("country_code", "party_id", "id", "currency", "type", "tariff_alt_text")
_PRICES = ("tariff_alt_url", "min_price", "max_price", "elements")
_PERIOD = ("start_date_time", "end_date_time")
_TAIL = ("energy_mix",)


def tariff_from_ocpi(doc: dict[str, Any], *, now: datetime) -> Tariff:
    """Build a new Tariff from an OCPI Tariff document, with ``last_updated = now``.

    Raise ``DocumentError`` if ``doc`` does not validate.
    """
    validate("tariff", doc)
    now = _utc(now)
    tariff = Tariff(id=doc["id"], created_at=now)
    _copy(tariff, doc, now)
    return tariff


def apply_tariff(tariff: Tariff, doc: dict[str, Any], *, now: datetime) -> None:
    """Replace ``tariff``'s OCPI fields from a full OCPI Tariff document.

    Raise ``DocumentError`` if ``doc`` does not validate or its ``id`` is not
    ``tariff.id`` (compared case-insensitively); nothing is changed then.
    """
    validate("tariff", doc)
    now = _utc(now)
    if tariff.id.lower() != doc["id"].lower():
        raise DocumentError("id", f"{doc['id']!r} is not the tariff being replaced ({tariff.id!r})")
    _copy(tariff, doc, now)


def tariff_to_ocpi(tariff: Tariff) -> dict[str, Any]:
    """Render ``tariff`` as an OCPI Tariff document; ``None`` fields are left out."""
    out: dict[str, Any] = {}
    for field in _HEAD + _PRICES:
        _put(out, field, getattr(tariff, field))
    for field in _PERIOD:
        moment: datetime | None = getattr(tariff, field)
        if moment is not None:
            out[field] = format_datetime(moment)
    for field in _TAIL:
        _put(out, field, getattr(tariff, field))
    out["last_updated"] = format_datetime(tariff.last_updated)
    return out


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: 'now' must be an aware UTC datetime")
    return now.astimezone(UTC)


def _put(out: dict[str, Any], field: str, value: Any) -> None:
    if value is not None:
        out[field] = copy.deepcopy(value)


def _copy(tariff: Tariff, doc: dict[str, Any], now: datetime) -> None:
    for field in _HEAD + _PRICES + _TAIL:
        if field != "id":
            setattr(tariff, field, copy.deepcopy(doc.get(field)))
    for field in _PERIOD:
        text = doc.get(field)
        setattr(tariff, field, None if text is None else parse_datetime(text, field))
    tariff.last_updated = now

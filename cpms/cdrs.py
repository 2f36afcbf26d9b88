"""Charge detail records: issued once per finished session, immutable, corrected by credit.

- ``issue_cdr`` prices a COMPLETED session (``session_pricing.bill_session``) and stores its
  OCPI CDR as issued, with the explanation of every amount. The key ``"<session>/<n>"`` is
  unique in the database, so retries, duplicate stops, restarts and several nodes still give
  exactly one CDR; an INVALID session is never billed. ``issue_cdrs`` issues many sessions'
  CDRs with a few reads for all (a batch of stops).
- ``credit_cdr`` issues the credit CDR of a CDR (id ``<id>-C``, ``credit``,
  ``credit_reference_id``, every cost negated) and, on request, a new CDR for the same
  session priced again: the only way a billed amount ever changes.
- A CDR's OCPI SignedData is built from the signed meter values the station sent (OCMF,
  EDL...), kept verbatim: the calibration law audits them, not us.
"""

from __future__ import annotations

import base64
import binascii
import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from cpms.documents import format_datetime
from cpms.errors import Conflict, InvalidRequest, NotFound
from cpms.events import CdrIssued
from cpms.model import Cdr, MeterSample, Session
from cpms.pages import Page, fetch_page
from cpms.pricing import CHARGING, PARKING, Bill, Price
from cpms.session_pricing import apply_bills, bill_session, periods_to_ocpi
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "CdrFilter",
    "FinalBill",
    "credit_cdr",
    "get_cdr",
    "issue_cdr",
    "issue_cdrs",
    "issue_missing_cdrs",
    "list_cdrs",
]

_COST_FIELDS = (
    "total_cost",
    "total_fixed_cost",
    "total_energy_cost",
    "total_time_cost",
    "total_parking_cost",
    "total_reservation_cost",
)
_CATEGORY_FIELDS = {
    "fixed": "total_fixed_cost",
    "energy": "total_energy_cost",
    "time": "total_time_cost",
    "parking": "total_parking_cost",
    "reservation": "total_reservation_cost",
}
_CDR_FIELDS = (
    "country_code", "party_id", "id", "start_date_time", "end_date_time", "session_id",
    "cdr_token", "auth_method", "authorization_reference", "cdr_location", "meter_id",
    "currency", "tariffs", "charging_periods", "signed_data", "total_cost", "total_fixed_cost",
    "total_energy", "total_energy_cost", "total_time", "total_time_cost", "total_parking_time",
    "total_parking_cost", "total_reservation_cost", "remark", "invoice_reference_id", "credit",
    "credit_reference_id", "home_charging_compensation", "last_updated",
)  # fmt: skip
"""The OCPI CDR fields in the specification's order."""
_NATURE = {"Transaction.Begin": "Start", "Transaction.End": "End"}
_SIGNED_VALUE_LIMIT = 5000
_HOURS = 6


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _signed_value(raw: dict[str, Any], context: str | None) -> tuple[dict[str, str], str, Any]:
    """One OCPI SignedValue, its encoding method and public key, from a stored reading."""
    if "signedMeterData" in raw:  # OCPP 2.0.1 SignedMeterValueType
        blob = str(raw["signedMeterData"])
        method = str(raw.get("encodingMethod") or "UNKNOWN")
        key = raw.get("publicKey") or None
    else:  # OCPP 1.6: the sampled value's text, format SignedData
        blob = str(raw.get("value", ""))
        method = "OCMF" if blob.startswith("OCMF|") else "UNKNOWN"
        key = None
    if _is_base64(blob):
        signed = blob
        try:
            plain = base64.b64decode(blob).decode()
        except UnicodeDecodeError:
            plain = blob
    else:
        plain, signed = blob, base64.b64encode(blob.encode()).decode()
    if method == "UNKNOWN" and plain.startswith("OCMF|"):
        method = "OCMF"
    value = {"nature": _NATURE.get(context or "", "Intermediate"), "plain_data": plain}
    value["signed_data"] = signed
    return value, method, key


async def _signed_data_by_session(
    uow: UnitOfWork, session_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """OCPI SignedData from each session's signed meter values, for the sessions that have
    any (one SELECT for all)."""
    rows = await uow.session.execute(
        select(MeterSample.session_id, MeterSample.signed_data, MeterSample.context)
        .where(MeterSample.session_id.in_(session_ids), MeterSample.signed_data.is_not(None))
        .order_by(MeterSample.session_id, MeterSample.sampled_at, MeterSample.id)
    )
    signed: dict[str, list[tuple[Any, str | None]]] = {}
    for session_id, raw, context in rows:
        signed.setdefault(session_id, []).append((raw, context))
    documents = {session_id: _signed_data(values) for session_id, values in signed.items()}
    return {session_id: document for session_id, document in documents.items() if document}


def _signed_data(rows: list[tuple[Any, str | None]]) -> dict[str, Any] | None:
    """OCPI SignedData from one session's signed values (raw, reading context), in order."""
    values, methods, keys = [], [], []
    for raw, context in rows:
        if not raw:  # a JSON null: the column keeps None as JSON, not SQL NULL
            continue
        value, method, key = _signed_value(raw, context)
        if max(len(value["plain_data"]), len(value["signed_data"])) > _SIGNED_VALUE_LIMIT:
            continue  # cannot be carried whole, and a cut signature proves nothing
        values.append(value)
        methods.append(method)
        if key:
            keys.append(str(key))
    if not values:
        return None
    document: dict[str, Any] = {"encoding_method": methods[0][:36], "signed_values": values}
    if keys and len(keys[0]) <= 512:
        document["public_key"] = keys[0]
    return document


def _hours(value: Any) -> float:
    return round(float(value), _HOURS)


def cdr_document(
    session: Session,
    bill: Bill,
    cdr_id: str,
    *,
    signed_data: dict[str, Any] | None,
    remark: str | None,
    issued_at: datetime,
) -> dict[str, Any]:
    """The OCPI 2.2.1 CDR of a finished, priced session."""
    assert session.end_date_time is not None
    first = bill.periods[0].start if bill.periods else session.start_date_time
    periods = periods_to_ocpi(bill) or [
        {  # a session of zero length still has its one period (OCPI: at least one)
            "start_date_time": format_datetime(session.start_date_time),
            "dimensions": [{"type": "ENERGY", "volume": 0.0}, {"type": "TIME", "volume": 0.0}],
        }
    ]
    document: dict[str, Any] = {
        "country_code": session.country_code,
        "party_id": session.party_id,
        "id": cdr_id,
        "start_date_time": format_datetime(min(first, session.start_date_time)),
        "end_date_time": format_datetime(session.end_date_time),
        "session_id": session.id,
        "cdr_token": session.cdr_token,
        "auth_method": session.auth_method,
        "authorization_reference": session.authorization_reference,
        "cdr_location": session.cdr_location,
        "meter_id": session.meter_id,
        "currency": session.currency,
        "tariffs": list(session.tariffs or ()),
        "charging_periods": periods,
        "signed_data": signed_data,
        "total_cost": bill.total_cost.to_ocpi(),
        "total_energy": round(float(bill.energy_kwh), 6),
        "total_time": _hours(bill.hours(CHARGING, PARKING)),
        "remark": remark[:255] if remark else None,
        "last_updated": format_datetime(issued_at),
    }
    for category, field in _CATEGORY_FIELDS.items():
        if bill.has(category):
            document[field] = bill.cost(category).to_ocpi()
    if bill.hours(PARKING):
        document["total_parking_time"] = _hours(bill.hours(PARKING))
    return {key: document[key] for key in _CDR_FIELDS if document.get(key) is not None}


def _remark(session: Session) -> str | None:
    parts = []
    if "late_stop" in session.flags:
        parts.append(
            f"stop reason: {session.stop_reason}; the station's stop came after the session "
            "had been closed without it, and this CDR replaces the one issued then"
        )
    elif "closed_by_rule" in session.flags:
        parts.append(
            "closed by the CPMS: no news from the station; ends at the last trusted reading"
        )
    elif "closed_by_operator" in session.flags:
        parts.append("closed by the operator; ends at the last trusted reading")
    if session.stop_reason and not parts:
        parts.append(f"stop reason: {session.stop_reason}")
    doubts = [f for f in session.flags if f in ("meter_backwards", "meter_jump", "station_clock")]
    if doubts:
        parts.append("not billed: " + ", ".join(doubts))
    return "; ".join(parts) or None


async def _credits_by_session(uow: UnitOfWork, session_ids: Sequence[str]) -> dict[str, int]:
    """How many credit CDRs each of these sessions has had (those with none are left out)."""
    rows = await uow.session.execute(
        select(Cdr.session_id, func.count())
        .where(Cdr.session_id.in_(session_ids), Cdr.credit.is_(True))
        .group_by(Cdr.session_id)
    )
    return {session_id: count for session_id, count in rows}


@dataclass(frozen=True, slots=True)
class FinalBill:
    """A COMPLETED session without a standing CDR, its final bill stored, and the time to
    issue its CDR at."""

    session: Session
    bill: Bill
    now: datetime


async def issue_cdr(
    uow: UnitOfWork,
    session: Session,
    *,
    now: datetime,
    remark: str | None = None,
    bill: Bill | None = None,
) -> Cdr | None:
    """Issue the CDR of a COMPLETED session that has none standing; return it.

    ``bill`` is the session's final bill when the caller has just priced it (and stored
    it); otherwise it is priced here. Returns the standing CDR if there is one, and
    ``None`` for a session that is not COMPLETED (INVALID sessions are not billed).
    """
    if session.status != "COMPLETED" or session.end_date_time is None:
        return None
    if session.cdr_id is not None:
        return await uow.session.get(Cdr, session.cdr_id)
    if bill is None:
        bill = await bill_session(uow, session)
        await apply_bills(uow, [(session, bill)])
    (cdr,) = await issue_cdrs(uow, [FinalBill(session, bill, now)], remark=remark)
    return cdr


def _owes_cdr(session: Session) -> bool:
    """Whether ``session`` is billed and has no CDR standing (INVALID sessions never are)."""
    ended = session.end_date_time is not None
    return session.status == "COMPLETED" and ended and session.cdr_id is None


async def issue_cdrs(
    uow: UnitOfWork, finals: Sequence[FinalBill], *, remark: str | None = None
) -> list[Cdr]:
    """``issue_cdr`` for sessions priced already: their signed values and credit counts read
    with one SELECT each for all. Every document is built before any CDR is added, so a
    failure adds none. Sessions that owe no CDR are passed over.
    """
    finals = [final for final in finals if _owes_cdr(final.session)]
    if not finals:
        return []
    ids = [final.session.id for final in finals]
    signed = await _signed_data_by_session(uow, ids)
    credits = await _credits_by_session(uow, ids)
    cdrs = [
        _new_cdr(
            final,
            signed_data=signed.get(final.session.id),
            # Numbered by the credits so far, which only a credit changes: two nodes racing
            # to issue the same session's CDR compute the same key, and the database lets one
            # of them win.
            issue_key=f"{final.session.id}/{credits.get(final.session.id, 0)}",
            remark=remark or _remark(final.session),
        )
        for final in finals
    ]
    for final, cdr in zip(finals, cdrs, strict=True):
        session, now = final.session, final.now
        uow.session.add(cdr)
        session.cdr_id = cdr.id
        if "pricing_failed" in session.flags:
            session.flags = [f for f in session.flags if f != "pricing_failed"]
        session.last_updated = now
        uow.record(CdrIssued(occurred_at=now, cdr_id=cdr.id, session_id=session.id))
    return cdrs


def _new_cdr(
    final: FinalBill, *, signed_data: dict[str, Any] | None, issue_key: str, remark: str | None
) -> Cdr:
    """The CDR of ``final``'s session, not yet added."""
    session, bill, now = final.session, final.bill, final.now
    cdr_id = str(uuid.uuid4())
    document = cdr_document(
        session, bill, cdr_id, signed_data=signed_data, remark=remark, issued_at=now
    )
    explanation = bill.explain()
    if session.tariff_id is None:
        explanation.insert(0, "no tariff applies to this connector: nothing charged")
    return Cdr(
        id=cdr_id,
        issue_key=issue_key,
        country_code=session.country_code,
        party_id=session.party_id,
        session_id=session.id,
        total_cost_excl_vat=bill.total_cost.excl_vat,
        total_cost_incl_vat=bill.total_cost.incl_vat,
        partner_id=session.partner_id,
        document=document,
        explanation=explanation,
        issued_at=now,
        last_updated=now,
    )


def _negated(document: dict[str, Any]) -> dict[str, Any]:
    credit = copy.deepcopy(document)
    for field in _COST_FIELDS:
        if field in credit:
            credit[field] = {key: -value for key, value in credit[field].items()}
    return credit


async def credit_cdr(
    uow: UnitOfWork, cdr_id: str, *, reason: str, now: datetime, reissue: bool = False
) -> tuple[Cdr, Cdr | None]:
    """Credit a CDR; with ``reissue``, price its session again and issue a new CDR.

    Raise ``NotFound`` for an unknown id, ``Conflict`` if it is itself a credit or was
    credited already.
    """
    original = await uow.session.get(Cdr, cdr_id)
    if original is None:
        raise NotFound("cdr", cdr_id)
    if original.credit:
        raise Conflict(f"CDR {cdr_id} is a credit CDR: credit the CDR it corrects instead")
    credit_id = f"{original.id}-C"
    if await uow.session.get(Cdr, credit_id) is not None:
        raise Conflict(f"CDR {cdr_id} was credited already ({credit_id})")
    if not reason.strip():
        raise InvalidRequest("a credit needs a reason (it becomes the credit CDR's remark)")
    document = _negated(original.document)
    document |= {
        "id": credit_id,
        "credit": True,
        "credit_reference_id": original.id,
        "remark": reason[:255],
        "last_updated": format_datetime(now),
    }
    total = Price(-original.total_cost_excl_vat, -(original.total_cost_incl_vat or 0))
    credit = Cdr(
        id=credit_id,
        issue_key=f"credit/{original.id}",
        country_code=original.country_code,
        party_id=original.party_id,
        session_id=original.session_id,
        credit=True,
        credit_reference_id=original.id,
        total_cost_excl_vat=total.excl_vat,
        total_cost_incl_vat=total.incl_vat,
        partner_id=original.partner_id,
        document=document,
        explanation=[f"credit of CDR {original.id}: every amount negated; reason: {reason}"],
        issued_at=now,
        last_updated=now,
    )
    uow.session.add(credit)
    uow.record(
        CdrIssued(occurred_at=now, cdr_id=credit_id, session_id=original.session_id, credit=True)
    )
    replacement = None
    session = await uow.session.get(Session, original.session_id) if original.session_id else None
    if session is not None and session.cdr_id == original.id:
        session.cdr_id = None
        await uow.session.flush()  # the new CDR's key counts the credited one
        if reissue:
            replacement = await issue_cdr(uow, session, now=now)
    return credit, replacement


async def issue_missing_cdrs(uow: UnitOfWork, *, now: datetime, limit: int = 100) -> list[str]:
    """Issue the CDR of every COMPLETED session that has none (after a pricing failure)."""
    sessions = await uow.session.scalars(
        select(Session)
        .where(Session.status == "COMPLETED", Session.cdr_id.is_(None))
        # Sealed sessions only: ones that ended before billing existed have no timeline.
        .where(Session.tariffs.is_not(None))
        .where(~select(Cdr.id).where(Cdr.session_id == Session.id).exists())
        .order_by(Session.end_date_time)
        .limit(limit)
    )
    issued = []
    for session in sessions:
        cdr = await issue_cdr(uow, session, now=now)
        if cdr is not None:
            issued.append(cdr.id)
    return issued


@dataclass(frozen=True, slots=True)
class CdrFilter:
    """What ``list_cdrs`` selects; every field narrows the list."""

    session_id: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    credit: bool | None = None
    partner_id: int | None = None


async def list_cdrs(
    uow: UnitOfWork, where: CdrFilter = CdrFilter(), *, offset: int = 0, limit: int | None = None
) -> Page[Cdr]:
    """CDRs newest last (``last_updated``, then id), one page."""
    query = select(Cdr).order_by(Cdr.last_updated, Cdr.id)
    if where.session_id is not None:
        query = query.where(Cdr.session_id == where.session_id)
    if where.date_from is not None:
        query = query.where(Cdr.last_updated >= where.date_from)
    if where.date_to is not None:
        query = query.where(Cdr.last_updated < where.date_to)
    if where.credit is not None:
        query = query.where(Cdr.credit.is_(where.credit))
    if where.partner_id is not None:
        query = query.where(Cdr.partner_id == where.partner_id)
    return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def get_cdr(uow: UnitOfWork, cdr_id: str) -> Cdr:
    """The CDR ``cdr_id``; raise ``NotFound``."""
    cdr = await uow.session.get(Cdr, cdr_id)
    if cdr is None:
        raise NotFound("cdr", cdr_id)
    return cdr

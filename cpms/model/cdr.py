"""Charge detail records: the billing document of a finished session.

A CDR is immutable once issued, so its issued OCPI form is what is stored (DESIGN.md's one
exception to "never store OCPI JSON as the truth"). The columns beside it are for queries.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, utcnow

__all__ = ["Cdr"]


class Cdr(Base):
    """An issued CDR (or credit CDR) as OCPI 2.2.1 CDR."""

    __tablename__ = "cdr"

    id: Mapped[str] = mapped_column(String(39), primary_key=True)
    # Makes "one CDR per finished session" a database fact, across retries and nodes:
    # "<session id>/<n>" for the n-th CDR of a session, "credit/<cdr id>" for a credit.
    issue_key: Mapped[str] = mapped_column(String(80), unique=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    session_id: Mapped[str | None] = mapped_column(ForeignKey("session.id"), index=True)
    credit: Mapped[bool] = mapped_column(default=False)
    credit_reference_id: Mapped[str | None] = mapped_column(String(39))
    total_cost_excl_vat: Mapped[Decimal]
    total_cost_incl_vat: Mapped[Decimal | None]
    # The eMSP that must pay for it, when the token was not local.
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("ocpi_partner.id"), index=True)
    document: Mapped[dict[str, Any]]
    # How the cost came about, line by line (component, restriction, step, rounding).
    explanation: Mapped[list[str]] = mapped_column(default=list)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(default=utcnow, index=True)

"""Tariffs, shaped like OCPI 2.2.1 Tariff.

The elements (price components and restrictions) are one value the pricing module reads as a
whole, so they are kept as JSON in their OCPI form; prices in it are read as ``Decimal``
from their JSON text, never as binary floats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, utcnow

__all__ = ["Tariff"]


class Tariff(Base):
    """A tariff the CPO publishes and prices sessions with."""

    __tablename__ = "tariff"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    currency: Mapped[str] = mapped_column(String(3))
    type: Mapped[str | None] = mapped_column(String(20))
    tariff_alt_text: Mapped[list[dict[str, Any]] | None]
    tariff_alt_url: Mapped[str | None] = mapped_column(String(255))
    min_price: Mapped[dict[str, Any] | None]
    max_price: Mapped[dict[str, Any] | None]
    elements: Mapped[list[dict[str, Any]]]
    start_date_time: Mapped[datetime | None]
    end_date_time: Mapped[datetime | None]
    energy_mix: Mapped[dict[str, Any] | None]
    last_updated: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]

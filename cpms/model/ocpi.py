"""OCPI delivery state: pushes waiting for a partner, and commands waiting for a station.

``OcpiPush`` is one request a partner must receive (a Location PUT, a Session PATCH, a CDR
POST, a CommandResult, ...). Domain events in the outbox fan out into pushes, one per partner
that must hear of them, in the same transaction that marks the outbox row processed; the
pusher then sends them in order per ``(partner, object_key)``, coalescing pending pushes of
one object into one request where the newer state supersedes the older.

``OcpiCommand`` is a command an eMSP sent (START_SESSION, ...) or a charging-profile request,
from the moment we accepted it until its result is queued for the partner, so a restart in
between still answers it (with TIMEOUT once its deadline passed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from cpms.model.base import Base, BigId, utcnow

__all__ = ["OcpiCommand", "OcpiPush"]


class OcpiPush(Base):
    """One request a partner must receive; see the module docstring."""

    __tablename__ = "ocpi_push"
    __table_args__ = (
        Index("ix_ocpi_push_partner_id_done_at_id", "partner_id", "done_at", "id"),
        Index("ix_ocpi_push_partner_id_object_key_done_at", "partner_id", "object_key", "done_at"),
        Index(
            "ix_ocpi_push_partner_id_background_done_at_id",
            "partner_id",
            "background",
            "done_at",
            "id",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("ocpi_partner.id"))
    # What the push is about; pushes of one key go out in id order ("location:LOC1",
    # "session:<id>", "cdr:<id>", "tariff:<id>", "command:<id>").
    object_key: Mapped[str] = mapped_column(String(120))
    # What to send: "location", "evse", "evse_status", "connector", "session_start",
    # "session_update", "session_end", "cdr", "tariff", "tariff_delete", "callback".
    kind: Mapped[str] = mapped_column(String(32))
    # The event's fields, or for a callback the URL and body to POST.
    payload: Mapped[dict[str, Any]]
    # A full sync's push (``cpms.push_queue.queue_full_sync``): sent after the partner's
    # live pushes, so a new partner's 10,000 locations do not hold up a status change. A
    # live push of the object (or of a session there) makes it live (``fan_out``).
    background: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Set when the push is settled: SENT, SUPERSEDED (a later push of the object carried
    # it), FAILED (the partner refused the body; kept for the operator), DROPPED (partner gone).
    done_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    # What the partner answered that we keep: the CDR's Location header, periods sent, ...
    response: Mapped[dict[str, Any] | None]


class OcpiCommand(Base):
    """A command or charging-profile request from a partner, until its result is queued."""

    __tablename__ = "ocpi_command"
    __table_args__ = (Index("ix_ocpi_command_state_deadline", "state", "deadline"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("ocpi_partner.id"), index=True)
    # START_SESSION, STOP_SESSION, RESERVE_NOW, CANCEL_RESERVATION, UNLOCK_CONNECTOR,
    # SET_CHARGING_PROFILE, CLEAR_CHARGING_PROFILE, GET_ACTIVE_CHARGING_PROFILE.
    command: Mapped[str] = mapped_column(String(32))
    response_url: Mapped[str] = mapped_column(String(255))
    request: Mapped[dict[str, Any]]
    station_id: Mapped[str | None] = mapped_column(String(48), index=True)
    # For START_SESSION: the idTag sent to the station, so its start is tied to this token.
    id_tag: Mapped[str | None] = mapped_column(String(36), index=True)
    # PENDING (sent or being sent), DONE (result queued), TIMEOUT (deadline passed).
    state: Mapped[str] = mapped_column(String(16), default="PENDING")
    result: Mapped[str | None] = mapped_column(String(32))
    deadline: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

"""Commands to stations, as operators and other services send them: checked, sent, logged.

``send_command`` is the one way in: it checks the station exists, sends through the
``StationPort``, and writes the outcome to the station log, so "who reset this station and
what did it say" always has an answer. A CancelReservation the station accepted ends our
reservation of that id, and an eMSP that made it hears CANCELED_RESERVATION
(``cpms.reservations.end_reported_reservation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cpms.errors import CpmsError
from cpms.model import ChargingStation, utcnow
from cpms.reservations import end_reported_reservation
from cpms.station_lifecycle import log_station_event
from cpms.station_port import CommandResult, StationPort
from cpms.unit_of_work import UnitOfWorkFactory

__all__ = ["send_command"]


async def send_command(
    uow: UnitOfWorkFactory,
    port: StationPort,
    station_id: str,
    command: str,
    arguments: Mapping[str, Any],
    *,
    timeout: float,  # noqa: ASYNC109 - passed on to the port, which owns the deadline
    requested_by: str = "operator",
) -> CommandResult:
    """Send ``command`` to a station and return its answer; see ``StationPort.send``."""
    async with uow() as unit:
        await unit.get(ChargingStation, station_id, kind="station")
    sent_at = utcnow()
    outcome: str
    try:
        result = await port.send(station_id, command, arguments, timeout=timeout)
    except CpmsError as error:
        outcome = f"not done: {error}"
        raise
    else:
        outcome = (
            f"answered {result.response}"
            if result.answered
            else f"error {result.error_code}: {result.error_description}"
        )
        reservation_id = arguments.get("reservationId")
        accepted = (result.response or {}).get("status") == "Accepted"
        if command == "CancelReservation" and accepted and isinstance(reservation_id, int):
            async with uow() as unit:
                why = f"cancelled by the CPO ({requested_by})"
                await end_reported_reservation(
                    unit, station_id, reservation_id, now=utcnow(), expired=False, why=why
                )
                await unit.commit()
        return result
    finally:
        async with uow() as unit:
            log_station_event(
                unit,
                station_id,
                "command",
                f"{command} by {requested_by}: {outcome}",
                received_at=sent_at,
                details={"command": command, "arguments": dict(arguments)},
            )
            await unit.commit()

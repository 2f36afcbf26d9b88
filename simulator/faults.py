"""Faults a station can be told to show: the misbehaviour real firmware has, on demand.

Rates are probabilities per message, drawn from the station's own seeded generator, so a run
with the same seed misbehaves the same way. Faults of the moment (drop the connection, go
offline and come back, send a malformed frame) are methods of ``simulator.station.Station``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Faults"]


@dataclass(frozen=True, slots=True)
class Faults:
    duplicate_rate: float = 0.0
    """Share of transaction messages sent again, with a new message id, after their answer."""
    malformed_rate: float = 0.0
    """Share of CALLs preceded by a frame that is not OCPP-J."""
    reply_delay: float = 0.0
    """Seconds the station waits before answering a CSMS call."""
    missing_reply_rate: float = 0.0
    """Share of CSMS calls the station never answers."""
    clock_skew: float = 0.0
    """Seconds the station's clock is ahead (negative: behind)."""
    out_of_order: bool = False
    """Replay the offline queue with neighbouring transaction messages swapped."""

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "malformed_rate", "missing_reply_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is {value}: a share between 0 and 1")
        if self.reply_delay < 0:
            raise ValueError(f"reply_delay is {self.reply_delay}: seconds, not negative")

    @property
    def any(self) -> bool:
        return self != Faults()

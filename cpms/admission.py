"""Station admission: who may open an OCPP connection, decided before the handshake ends.

The gateway asks, the core decides. A decision is a value (``Admission``) so a test can read
it without a socket; the gateway maps it to the HTTP answer of the websocket handshake.

Policies (``CPMS_STATION_ADMISSION``):

- ``known``: only stations the operator created may connect; an unknown id gets 404.
- ``open``: an unknown id is registered on the spot under the default location, so it is
  visible at once (handy for demos and first installs).
- ``pending``: an unknown id is registered the same way, but its BootNotification is answered
  Pending until an operator approves it (``cpms stations approve``).

A station with a password (Security Profile 1) must present it with HTTP Basic auth, the
username equal to its id; a retired station is refused like an unknown one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Admission", "AdmissionPolicy", "Verdict"]


class AdmissionPolicy(enum.StrEnum):
    """How to treat a station id nobody created."""

    KNOWN = "known"
    OPEN = "open"
    PENDING = "pending"


class Verdict(enum.Enum):
    """The outcome of an admission check, with the HTTP status the handshake answers."""

    ACCEPTED = 101
    UNKNOWN_STATION = 404
    BAD_CREDENTIALS = 401

    @property
    def http_status(self) -> int:
        """The HTTP status of the websocket handshake for this verdict."""
        return self.value


@dataclass(frozen=True, slots=True)
class Admission:
    """What the core decided about a connecting station."""

    verdict: Verdict
    station_id: str
    reason: str = ""
    registered: bool = False
    """True when the station was registered by this very admission (policy ``open``)."""

"""What a run measured: messages by action, acknowledgement latency, errors, sessions, energy.

One ``Figures`` is shared by every station of a fleet (one event loop, so no locks). The
closing table and the ``--json`` line are both rendered from ``Figures.summary``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figures", "percentile"]


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Figures:
    sent: Counter[str] = field(default_factory=Counter)
    """CALLs the stations sent, by action (replays and duplicates included)."""
    received: Counter[str] = field(default_factory=Counter)
    """CALLs the CSMS sent the stations, by action."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from sending a CALL to reading its CALLRESULT or CALLERROR."""
    errors: Counter[str] = field(default_factory=Counter)
    """What went wrong, by kind: ``CALLERROR <code>``, ``timeout``, ``connect``, ..."""
    sessions_started: int = 0
    sessions_completed: int = 0
    energy_wh: float = 0.0
    """Energy delivered in completed sessions, as the stations' registers say."""
    connects: int = 0
    online: int = 0
    """Stations booted and connected now."""
    most_online: int = 0

    def station_online(self, change: int) -> None:
        self.online += change
        self.most_online = max(self.most_online, self.online)

    def summary(self) -> dict[str, Any]:
        p50, p99 = percentile(self.latencies, 0.50), percentile(self.latencies, 0.99)
        return {
            "messages": sum(self.sent.values()),
            "messages_by_action": dict(sorted(self.sent.items())),
            "csms_calls_by_action": dict(sorted(self.received.items())),
            "ack_latency_ms": {
                "p50": None if p50 is None else round(p50 * 1000, 2),
                "p99": None if p99 is None else round(p99 * 1000, 2),
                "count": len(self.latencies),
            },
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(sorted(self.errors.items())),
            "sessions_started": self.sessions_started,
            "sessions_completed": self.sessions_completed,
            "energy_kwh": round(self.energy_wh / 1000, 3),
            "connects": self.connects,
            "most_connected": self.most_online,
        }

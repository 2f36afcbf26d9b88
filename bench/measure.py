"""What a benchmark reads: latency summaries, a process's CPU time and memory, the fd limit.

Pure helpers shared by the load generator and the scenarios. Process figures come from
``/proc`` (Linux), so a scenario can watch a server it started as another process without
asking it anything.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LatencySummary",
    "ProcessSample",
    "percentile",
    "raise_open_files_limit",
    "ratio",
    "sample_process",
    "summarize",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def percentile(sorted_values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0..1) percentile of already sorted values, nearest rank; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Ack latencies of one run, in milliseconds."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        """The summary as JSON-ready numbers (ms rounded to 0.01)."""
        return {
            "count": self.count,
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
            "max_ms": _round(self.max_ms),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarize(seconds: Sequence[float]) -> LatencySummary:
    """Summarize latencies given in seconds."""
    ordered = sorted(seconds)
    if not ordered:
        return LatencySummary(0, None, None, None)
    p50 = ordered[max(1, math.ceil(0.50 * len(ordered))) - 1]
    p99 = ordered[max(1, math.ceil(0.99 * len(ordered))) - 1]
    return LatencySummary(len(ordered), p50 * 1000, p99 * 1000, ordered[-1] * 1000)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs`` rounded to 0.001, or None when either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 3)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """A process's CPU seconds (user + system) and resident memory at one moment."""

    cpu_seconds: float
    rss_bytes: int


def sample_process(pid: int) -> ProcessSample | None:
    """Read ``pid``'s CPU time and RSS from /proc; None if it is gone or /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read().decode()
        with open(f"/proc/{pid}/statm", "rb") as file:
            statm = file.read().decode()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss_pages = int(statm.split()[1])
    return ProcessSample((utime + stime) / _CLOCK_TICKS, rss_pages * _PAGE_SIZE)


def raise_open_files_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit; return the new limit.

    Every station is a socket: 10,000 stations need 10,000 descriptors on each side, and the
    usual soft limit (1,024) would refuse connections long before the server is the limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft

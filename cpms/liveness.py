"""When each station was last heard from: kept in memory, written to the database in bulk.

A Heartbeat says nothing but "still here", and it is the most frequent message there is.
Writing ``ChargingStation.last_seen_at`` for each one cost a statement and a place in a
commit per heartbeat (issue 8: half of the gateway's messages, and all of an idle fleet's),
while nothing depends on that column being current to the second: the gateway notices a
silent station from its own connection (``OcppServer``'s silence limit), and the column is
for the operator's eyes. So ``Liveness`` notes the moment in memory and ``LivenessWriter``
writes every station's latest moment in one statement every ``FLUSH_INTERVAL`` seconds, and
once more when the node stops. A station's ``last_seen_at`` in the database is at most that
far behind; a node that dies loses at most that much of it, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update

from cpms.driver_sql import DriverStatement
from cpms.group_commit import GroupCommitter
from cpms.model import ChargingStation, utcnow
from cpms.unit_of_work import UnitOfWork

__all__ = ["FLUSH_INTERVAL", "Liveness", "LivenessWriter"]

log = logging.getLogger("cpms.liveness")

FLUSH_INTERVAL = 5.0
"""Seconds between bulk writes: short against any heartbeat interval a station is given."""

_table: Any = ChargingStation.__table__
# On the driver (cpms.driver_sql): through SQLAlchemy, the parameters of 10,000 idle stations
# took the event loop 0.9 s to process, and every station's heartbeat waited behind them.
_WRITE_SEEN = DriverStatement(
    update(_table)
    .where(_table.c.id == bindparam("station"))
    .values(last_seen_at=bindparam("seen"), updated_at=bindparam("written"))
    # A moment written by a boot or a connection since is never moved back.
    .where((_table.c.last_seen_at.is_(None)) | (_table.c.last_seen_at < bindparam("seen"))),
    ("station", "seen", "written"),
)


class Liveness:
    """The latest moment each station was heard from, not yet written."""

    def __init__(self) -> None:
        self._unwritten: dict[str, datetime] = {}

    def seen(self, station_id: str, at: datetime) -> None:
        """Note that ``station_id`` was heard from at ``at``."""
        known = self._unwritten.get(station_id)
        if known is None or at > known:
            self._unwritten[station_id] = at

    def last_seen(self, station_id: str) -> datetime | None:
        """The moment noted for ``station_id`` and not yet written, if any."""
        return self._unwritten.get(station_id)

    def __len__(self) -> int:
        return len(self._unwritten)

    def take(self) -> dict[str, datetime]:
        """Everything unwritten; the caller writes it (or gives it back with ``restore``)."""
        taken, self._unwritten = self._unwritten, {}
        return taken

    def restore(self, taken: dict[str, datetime]) -> None:
        """Put back moments a failed write did not store (newer ones noted meanwhile win)."""
        for station_id, at in taken.items():
            self.seen(station_id, at)


async def write_seen(uow: UnitOfWork, moments: dict[str, datetime]) -> None:
    """Write ``moments`` (station id to last seen) in one statement; ``uow`` entered."""
    if moments:
        # Earlier works' pending changes first, or the commit's flush would write an older
        # moment (a boot's, say) over these.
        await uow.session.flush()
        written = utcnow()
        rows = [(station, at, written) for station, at in moments.items()]
        await _WRITE_SEEN.execute_many(await uow.session.connection(), rows, deferred=True)


class LivenessWriter:
    """Writes a ``Liveness`` through the group committer every ``interval`` seconds."""

    def __init__(
        self, liveness: Liveness, committer: GroupCommitter, *, interval: float = FLUSH_INTERVAL
    ) -> None:
        self.liveness, self.committer, self.interval = liveness, committer, interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_forever(), name="liveness-writer")

    async def stop(self) -> None:
        """Stop the timer and write what is left (the committer must still be running)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Write every unwritten moment now; how many stations were written."""
        taken = self.liveness.take()
        if not taken:
            return 0
        try:
            await self.committer.run(lambda uow: write_seen(uow, taken))
        except Exception:
            self.liveness.restore(taken)
            raise
        return len(taken)

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing when %d stations were last seen failed", len(self.liveness))

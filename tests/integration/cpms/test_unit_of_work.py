"""The unit of work: all or nothing, events in the outbox and rows inserted at commit."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import func, select

from cpms.events import DomainEvent, LocationChanged
from cpms.model import ChargingStation, Location, OutboxEntry, StationEvent, utcnow
from cpms.station_lifecycle import log_station_event
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory


def _location(location_id: str) -> Location:
    return Location(
        id=location_id, country_code="NL", party_id="CPM", address="Street 1", city="Town",
        country="NLD", latitude="52.00000", longitude="4.00000", time_zone="Europe/Amsterdam",
    )  # fmt: skip


async def _count(uow: UnitOfWorkFactory, model: type) -> int:
    async with uow() as work:
        return int(await work.session.scalar(select(func.count()).select_from(model)) or 0)


async def test_commit_writes_the_change_and_its_events_together(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        work.session.add(_location("L1"))
        work.record(LocationChanged(occurred_at=utcnow(), location_id="L1", fields=("name",)))
        await work.commit()
    async with uow() as work:
        entry = (await work.session.scalars(select(OutboxEntry))).one()
    assert entry.topic == "location.changed"
    assert (entry.aggregate_type, entry.aggregate_id) == ("location", "L1")
    assert entry.payload["fields"] == ["name"]
    assert entry.processed_at is None
    assert await _count(uow, Location) == 1


async def test_leaving_without_commit_keeps_neither_change_nor_event(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        work.session.add(_location("L1"))
        work.record(LocationChanged(occurred_at=utcnow(), location_id="L1"))
    assert await _count(uow, Location) == 0
    assert await _count(uow, OutboxEntry) == 0


async def test_an_error_rolls_back_the_change_and_its_events(uow: UnitOfWorkFactory) -> None:
    async def fail_half_way() -> None:
        async with uow() as work:
            work.session.add(_location("L1"))
            work.record(LocationChanged(occurred_at=utcnow(), location_id="L1"))
            await work.session.flush()
            raise RuntimeError("the service failed half way")

    with pytest.raises(RuntimeError):
        await fail_half_way()
    assert await _count(uow, Location) == 0
    assert await _count(uow, OutboxEntry) == 0


async def test_a_failed_commit_loses_the_events_too(uow: UnitOfWorkFactory) -> None:
    async with uow() as work:
        work.session.add(_location("L1"))
        await work.commit()
    async with uow() as work:
        work.session.add(_location("L1"))  # duplicate key
        work.record(LocationChanged(occurred_at=utcnow(), location_id="L1"))
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await work.commit()
    assert await _count(uow, OutboxEntry) == 0


async def test_subscribers_hear_only_committed_events(uow: UnitOfWorkFactory) -> None:
    heard: list[DomainEvent] = []

    async def listen(events: Sequence[DomainEvent]) -> None:
        heard.extend(events)

    async def fail(events: Sequence[DomainEvent]) -> None:
        raise RuntimeError("a broken subscriber")

    uow.subscribe(fail)
    uow.subscribe(listen)
    async with uow() as work:
        work.record(LocationChanged(occurred_at=utcnow(), location_id="ROLLED-BACK"))
    async with uow() as work:
        work.session.add(_location("L1"))
        work.record(LocationChanged(occurred_at=utcnow(), location_id="L1"))
        await work.commit()
    assert [event.aggregate_id for event in heard] == ["L1"]
    assert await _count(uow, Location) == 1


async def test_objects_read_in_a_unit_of_work_stay_readable_after_it(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as work:
        work.session.add(_location("L1"))
        await work.commit()
    async with uow() as work:
        location = await work.get(Location, "L1")
    assert location.city == "Town"


async def test_rows_inserted_at_commit_follow_the_change_and_go_with_a_rollback(
    uow: UnitOfWorkFactory,
) -> None:
    # The station log is written this way: after the ORM's changes are flushed (a new
    # station's first entry refers to it), with one executemany for all, never if rolled back.
    site = _location("L1")
    async with uow() as work:
        work.session.add(site)
        work.session.add(ChargingStation(id="CP1", location_id="L1"))
        for n in range(3):
            log_station_event(work, "CP1", "boot", f"entry {n}", received_at=utcnow())
        assert await _count_in(work, StationEvent) == 0  # not yet: at commit
        await work.commit()
    async with uow() as work:
        log_station_event(work, "CP1", "boot", "rolled back", received_at=utcnow())
        await work.rollback()
        await work.commit()  # nothing left to write
    async with uow() as work:
        log_station_event(work, "CP1", "boot", "never committed", received_at=utcnow())
    async with uow() as work:
        entries = list(await work.session.scalars(select(StationEvent).order_by(StationEvent.id)))
    assert [(e.station_id, e.summary) for e in entries] == [
        ("CP1", "entry 0"), ("CP1", "entry 1"), ("CP1", "entry 2"),
    ]  # fmt: skip


async def _count_in(work: UnitOfWork, model: type) -> int:
    return int(await work.session.scalar(select(func.count()).select_from(model)) or 0)

"""Stations: creation with hashed passwords, admission policies, connection state."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
from sqlalchemy import select

from cpms import stations
from cpms.admission import Admission, AdmissionPolicy, Verdict
from cpms.errors import Conflict, InvalidRequest, NotFound
from cpms.group_commit import GroupCommitter, GroupReader
from cpms.locations import ensure_default_location
from cpms.model import ChargingStation, Location, OutboxEntry
from cpms.stations import StationChanges
from cpms.unit_of_work import UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT


async def _site(uow: UnitOfWorkFactory, location_id: str = "SITE") -> None:
    async with uow() as work:
        work.session.add(
            Location(
                id=location_id, country_code="NL", party_id="CPM", address="Street 2",
                city="Town", country="NLD", latitude="52.10000", longitude="4.10000",
                time_zone="Europe/Amsterdam",
            )
        )  # fmt: skip
        await work.commit()


async def test_a_station_password_is_stored_hashed(uow: UnitOfWorkFactory) -> None:
    await _site(uow)
    await stations.create_station(uow(), "CP1", location_id="SITE", password="s3cret-passw0rd")
    async with uow() as work:
        stored = await work.get(ChargingStation, "CP1")
    assert stored.password_hash is not None
    assert "s3cret-passw0rd" not in stored.password_hash
    assert stored.password_hash.startswith("pbkdf2_sha256$")


async def test_creating_a_station_twice_or_at_an_unknown_location_is_refused(
    uow: UnitOfWorkFactory,
) -> None:
    await _site(uow)
    await stations.create_station(uow(), "CP1", location_id="SITE")
    with pytest.raises(Conflict):
        await stations.create_station(uow(), "CP1", location_id="SITE")
    with pytest.raises(NotFound):
        await stations.create_station(uow(), "CP2", location_id="NOWHERE")


@pytest.mark.parametrize("bad_id", ["", "a/b", "a:b", "x" * 49, "with space"])
async def test_a_station_id_that_cannot_be_a_url_path_is_refused(
    uow: UnitOfWorkFactory, bad_id: str
) -> None:
    await _site(uow)
    with pytest.raises(InvalidRequest):
        await stations.create_station(uow(), bad_id, location_id="SITE")


async def test_known_policy_refuses_an_unknown_station(uow: UnitOfWorkFactory) -> None:
    admission = await stations.admit_station(
        uow(), "STRANGER", None, policy=AdmissionPolicy.KNOWN, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.UNKNOWN_STATION
    assert admission.verdict.http_status == 404
    async with uow() as work:
        assert await work.session.get(ChargingStation, "STRANGER") is None


async def test_open_policy_registers_an_unknown_station_under_the_default_location(
    uow: UnitOfWorkFactory,
) -> None:
    admission = await stations.admit_station(
        uow(), "NEWCOMER", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.ACCEPTED
    assert admission.registered
    async with uow() as work:
        station = await work.get(ChargingStation, "NEWCOMER")
        location = await work.get(Location, "DEFAULT")
        topics = list(await work.session.scalars(select(OutboxEntry.topic)))
    assert station.location_id == "DEFAULT"
    assert station.registered_by == "admission"
    assert (location.name, location.time_zone) == ("Depot", "Europe/Amsterdam")
    assert "station.registered" in topics
    again = await stations.admit_station(
        uow(), "NEWCOMER", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    assert again.verdict is Verdict.ACCEPTED
    assert not again.registered


async def test_two_first_connections_of_one_new_station_register_it_once(
    uow: UnitOfWorkFactory,
) -> None:
    async def admit() -> Verdict:
        admission = await stations.admit_station(
            uow(), "TWIN", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
        )
        return admission.verdict

    await _site(uow)  # the default location exists: only the station rows race
    async with uow() as work:
        await ensure_default_location(work, DEFAULT)
        await work.commit()
    verdicts = await asyncio.gather(admit(), admit())
    assert verdicts == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    page = await stations.list_stations(uow())
    assert [s.id for s in page.items] == ["TWIN"]


async def test_a_storm_of_new_stations_on_an_empty_database_admits_every_one(
    uow: UnitOfWorkFactory,
) -> None:
    # FIELD-NOTES 3: twenty unknown stations connect at once under open admission; all of
    # them race to create the default location, and none may be refused for it.
    async def admit(number: int) -> Verdict:
        admission = await stations.admit_station(
            uow(), f"NEW{number}", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
        )
        return admission.verdict

    verdicts = await asyncio.gather(*(admit(n) for n in range(20)))
    assert verdicts == [Verdict.ACCEPTED] * 20
    page = await stations.list_stations(uow(), limit=100)
    assert sorted(s.id for s in page.items) == sorted(f"NEW{n}" for n in range(20))
    assert {s.location_id for s in page.items} == {DEFAULT.id}


async def test_first_connections_are_registered_by_the_writer_the_node_gives(
    uow: UnitOfWorkFactory,
) -> None:
    # The node passes its group committer: on SQLite a registration in a transaction of its
    # own waited for the write lock behind every group commit, and under a storm of first
    # connections timed out ("database is locked"; docs/PERFORMANCE.md, session 15).
    committer = GroupCommitter(uow)
    await committer.start()

    async def admit(station_id: str) -> Admission:
        return await stations.admit_station(
            uow(), station_id, None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT,
            write=committer.run,
        )  # fmt: skip

    try:
        admissions = await asyncio.gather(
            *(admit(f"NEW{n}") for n in range(20)), admit("TWIN"), admit("TWIN")
        )
        assert [a.verdict for a in admissions] == [Verdict.ACCEPTED] * 22
        assert sum(a.registered for a in admissions[20:]) == 1  # the twin's second finds it
        assert committer.items == 22
        again = await admit("NEW0")  # known now: decided by a read, nothing written
        assert (again.verdict, again.registered, committer.items) == (Verdict.ACCEPTED, False, 22)
    finally:
        await committer.stop()
    page = await stations.list_stations(uow(), limit=100)
    assert sorted(s.id for s in page.items) == sorted([*(f"NEW{n}" for n in range(20)), "TWIN"])
    async with uow() as work:
        topics = list(await work.session.scalars(select(OutboxEntry.topic)))
    assert topics.count("station.registered") == 21


async def test_handshakes_read_their_stations_together_through_the_reader_the_node_gives(
    uow: UnitOfWorkFactory,
) -> None:
    # The node passes its group reader: a reconnect storm's handshakes read their stations
    # with one SELECT a batch. The verdicts are those of a read each.
    await _site(uow)
    await stations.create_station(uow(), "CP1", location_id="SITE", password="right-password")
    await stations.create_station(uow(), "CP2", location_id="SITE")
    await stations.create_station(uow(), "OLD", location_id="SITE")
    await stations.retire_station(uow(), "OLD")
    reader = GroupReader(uow)
    await reader.start()
    tried = [
        ("CP1", "right-password"), ("CP1", "wrong-password"), ("CP1", None), ("CP2", None),
        ("OLD", None), ("NOBODY", None), ("CP2", None),
    ]  # fmt: skip

    async def admit(station_id: str, password: str | None, *, read: bool) -> Admission:
        return await stations.admit_station(
            uow(), station_id, password, policy=AdmissionPolicy.KNOWN, default_location=DEFAULT,
            read=partial(reader.run_grouped, stations.find_stations) if read else None,
        )  # fmt: skip

    try:
        together = await asyncio.gather(*(admit(*t, read=True) for t in tried))
        batches = reader.batches
    finally:
        await reader.stop()
    alone = [await admit(*t, read=False) for t in tried]
    assert together == alone
    assert [a.verdict for a in together] == [
        Verdict.ACCEPTED, Verdict.BAD_CREDENTIALS, Verdict.BAD_CREDENTIALS, Verdict.ACCEPTED,
        Verdict.UNKNOWN_STATION, Verdict.UNKNOWN_STATION, Verdict.ACCEPTED,
    ]  # fmt: skip
    assert batches < len(tried)


async def test_a_password_is_required_and_checked(uow: UnitOfWorkFactory) -> None:
    await _site(uow)
    await stations.create_station(uow(), "CP1", location_id="SITE", password="right-password")

    async def verdict(password: str | None) -> Verdict:
        admission = await stations.admit_station(
            uow(), "CP1", password, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
        )
        return admission.verdict

    assert await verdict(None) is Verdict.BAD_CREDENTIALS
    assert await verdict("wrong-password") is Verdict.BAD_CREDENTIALS
    assert await verdict("right-password") is Verdict.ACCEPTED
    assert await verdict("right-password") is Verdict.ACCEPTED  # remembered, still right
    await stations.update_station(uow(), "CP1", StationChanges(password="another-password"))
    assert await verdict("right-password") is Verdict.BAD_CREDENTIALS
    assert await verdict("another-password") is Verdict.ACCEPTED


async def test_a_retired_station_may_not_connect_even_with_open_admission(
    uow: UnitOfWorkFactory,
) -> None:
    await _site(uow)
    await stations.create_station(uow(), "CP1", location_id="SITE")
    await stations.retire_station(uow(), "CP1")
    admission = await stations.admit_station(
        uow(), "CP1", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    assert admission.verdict is Verdict.UNKNOWN_STATION


async def test_a_closed_old_connection_does_not_mark_a_reconnected_station_offline(
    uow: UnitOfWorkFactory,
) -> None:
    await _site(uow)
    await stations.create_station(uow(), "CP1", location_id="SITE")
    await stations.mark_connected(uow(), "CP1", ocpp_version="ocpp1.6", node="node-a")
    await stations.mark_connected(uow(), "CP1", ocpp_version="ocpp2.0.1", node="node-b")
    await stations.mark_disconnected(uow(), "CP1", node="node-a")
    station = await stations.get_station(uow(), "CP1")
    assert station.online
    assert station.connected_node == "node-b"
    assert station.ocpp_version == "ocpp2.0.1"
    await stations.mark_disconnected(uow(), "CP1", node="node-b")
    assert not (await stations.get_station(uow(), "CP1")).online

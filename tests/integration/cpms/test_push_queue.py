"""The push queue: who hears of which event, each event queued once, in order per object.

No HTTP here: events are made by the core's own services (or written as the services would
write them) and ``cpms.push_queue`` is called directly, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from push_support import location_document
from sqlalchemy import func, select

from cpms import locations, stations, tariffs
from cpms.events import CdrIssued, SessionStarted, StationRegistered
from cpms.model import Cdr, OcpiPartner, OcpiPush, OutboxEntry, Session, utcnow
from cpms.push_queue import (
    SENT,
    SUPERSEDED,
    claim,
    due_heads,
    fan_out,
    make_available,
    next_due,
    queue_full_sync,
    settle,
)
from cpms.unit_of_work import UnitOfWorkFactory

from support import EXAMPLES

ALL_RECEIVERS = {
    module: {"RECEIVER": f"https://emsp.example/ocpi/2.2.1/{module}"}
    for module in ("locations", "sessions", "cdrs", "tariffs")
}


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / name).read_text("utf-8"))
    return document


async def partner(
    uow: UnitOfWorkFactory, name: str, *, state: str = "REGISTERED", endpoints: Any = None
) -> int:
    async with uow() as work:
        row = OcpiPartner(
            name=name,
            state=state,
            outgoing_token="sealed",
            endpoints=ALL_RECEIVERS if endpoints is None else endpoints,
            roles=[{"role": "EMSP", "country_code": "DE", "party_id": name[:3].upper()}],
        )
        work.session.add(row)
        await work.commit()
        return row.id


async def queued(uow: UnitOfWorkFactory) -> list[tuple[int, str, str]]:
    """Every push as (partner id, object key, kind), in id order."""
    async with uow() as work:
        rows = await work.session.execute(
            select(OcpiPush.partner_id, OcpiPush.object_key, OcpiPush.kind).order_by(OcpiPush.id)
        )
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def unprocessed(uow: UnitOfWorkFactory) -> int:
    async with uow() as work:
        count = await work.session.scalar(
            select(func.count()).select_from(OutboxEntry).where(OutboxEntry.processed_at.is_(None))
        )
        return int(count or 0)


async def fan_out_all(uow: UnitOfWorkFactory) -> None:
    async with asyncio.timeout(10):
        while (await fan_out(uow())).events:
            pass


async def test_location_changes_go_to_every_locations_receiver_that_may_see_them(
    uow: UnitOfWorkFactory,
) -> None:
    first = await partner(uow, "first")
    no_locations = await partner(
        uow, "tariffs only", endpoints={"tariffs": ALL_RECEIVERS["tariffs"]}
    )
    await partner(uow, "invited", state="INVITED")
    private = example("location_example_uc3_destination_charger_not_published.json")
    await locations.import_locations(uow(), [example("location_example.json"), private])
    await locations.change_evse(uow(), "LOC1", "3256", {"physical_reference": "X"})
    await fan_out_all(uow)

    assert await queued(uow) == [
        (first, "location:LOC1", "location"),
        (first, "location:LOC1", "evse"),
    ]
    assert no_locations not in {p for p, _, _ in await queued(uow)}
    assert await unprocessed(uow) == 0
    # The retirement of a published location reaches the partner that has it.
    await locations.retire_location(uow(), "LOC1")
    await locations.change_location(uow(), private["id"], {"name": "Still private"})
    await fan_out_all(uow)
    assert (await queued(uow))[2:] == [(first, "location:LOC1", "location")]


async def test_sessions_and_cdrs_go_to_the_partner_of_the_token_only(
    uow: UnitOfWorkFactory,
) -> None:
    owner = await partner(uow, "owner")
    await partner(uow, "other")
    await locations.import_locations(uow(), [example("location_example.json")])
    await stations.create_station(uow(), "CP1", location_id="LOC1")
    now = utcnow()
    async with uow() as work:
        for session_id, partner_id in (("S-OWNED", owner), ("S-LOCAL", None)):
            work.session.add(
                Session(
                    id=session_id, country_code="NL", party_id="CPM", station_id="CP1",
                    location_id="LOC1", status="ACTIVE", start_date_time=now,
                    cdr_token={"uid": "X"}, auth_method="WHITELIST", currency="EUR",
                    partner_id=partner_id, last_updated=now,
                )
            )  # fmt: skip
            work.record(SessionStarted(occurred_at=now, session_id=session_id, status="ACTIVE"))
        await work.session.flush()
        work.session.add(
            Cdr(
                id="CDR1", issue_key="S-OWNED/1", country_code="NL", party_id="CPM",
                session_id="S-OWNED", total_cost_excl_vat=Decimal("1.00"), partner_id=owner,
                document={"id": "CDR1"}, issued_at=now, last_updated=now,
            )
        )  # fmt: skip
        work.record(CdrIssued(occurred_at=now, cdr_id="CDR1", session_id="S-OWNED"))
        work.record(
            StationRegistered(
                occurred_at=now, station_id="CP1", location_id="LOC1", registered_by="x"
            )
        )
        await work.commit()
    await fan_out_all(uow)
    sessions_and_cdrs = [q for q in await queued(uow) if not q[1].startswith("location:")]
    assert sessions_and_cdrs == [
        (owner, "session:S-OWNED", "session_start"),
        (owner, "cdr:CDR1", "cdr"),
    ]
    assert await unprocessed(uow) == 0


async def test_tariffs_are_queued_for_every_receiver_and_retired_ones_as_deletes(
    uow: UnitOfWorkFactory,
) -> None:
    one, two = await partner(uow, "one"), await partner(uow, "two")
    await tariffs.import_tariffs(uow(), [example("tariff_1_simple_2hour.json")])
    await tariffs.retire_tariff(uow(), "12")
    await fan_out_all(uow)
    assert await queued(uow) == [
        (one, "tariff:12", "tariff"),
        (two, "tariff:12", "tariff"),
        (one, "tariff:12", "tariff_delete"),
        (two, "tariff:12", "tariff_delete"),
    ]


async def test_concurrent_fan_outs_queue_each_event_once(uow: UnitOfWorkFactory) -> None:
    await partner(uow, "only")
    documents = [example("tariff_1_simple_2hour.json") | {"id": f"T{i}"} for i in range(40)]
    for document in documents:
        await tariffs.import_tariffs(uow(), [document])

    async def worker() -> None:
        async with asyncio.timeout(30):
            while await unprocessed(uow):
                await fan_out(uow(), limit=3)

    await asyncio.gather(*(worker() for _ in range(4)))
    keys = [key for _, key, _ in await queued(uow)]
    assert sorted(keys) == sorted(f"tariff:T{i}" for i in range(40))


async def test_pushes_of_one_object_go_in_order_and_one_claim_wins(uow: UnitOfWorkFactory) -> None:
    partner_id = await partner(uow, "only")
    await tariffs.import_tariffs(uow(), [example("tariff_1_simple_2hour.json")])
    await tariffs.import_tariffs(uow(), [example("tariff_1_simple_2hour.json")])
    await tariffs.import_tariffs(uow(), [example("tariff_13_simple_3hour_5parking.json")])
    await fan_out_all(uow)
    now = utcnow()
    heads = await due_heads(uow(), now=now)
    assert [head.object_key for head in heads] == ["tariff:12", "tariff:21"]

    claims = await asyncio.gather(*(claim(uow(), heads[0], now=now, lease=30) for _ in range(3)))
    won = [c for c in claims if c]
    assert len(won) == 1
    (gathered,) = won
    assert [push.object_key for push in gathered] == ["tariff:12", "tariff:12"]
    # Leased: the object is not due for anyone else, the other one is.
    assert [head.object_key for head in await due_heads(uow(), now=utcnow())] == ["tariff:21"]
    # The operator's retry leaves a lease alone (the pushes may be on their way).
    assert await make_available(uow(), partner_id, now=utcnow(), reopen_failed=True) == 0

    await settle(uow(), [p.id for p in gathered], outcome=SENT, now=utcnow(), response={"x": 1})
    async with uow() as work:
        rows = list(
            await work.session.scalars(
                select(OcpiPush).where(OcpiPush.object_key == "tariff:12").order_by(OcpiPush.id)
            )
        )
    assert [(row.outcome, row.response) for row in rows] == [(SUPERSEDED, None), (SENT, {"x": 1})]


async def lanes(uow: UnitOfWorkFactory, **kwargs: Any) -> list[tuple[str, bool]]:
    """The due heads as (object key, in the background lane), in the order given."""
    heads = await due_heads(uow(), now=utcnow(), **kwargs)
    return [(head.object_key, head.background) for head in heads]


async def test_a_full_sync_waits_in_the_background_lane_behind_what_changes(
    uow: UnitOfWorkFactory,
) -> None:
    await locations.import_locations(uow(), [location_document(1), location_document(2)])
    await fan_out_all(uow)  # no partner yet: nothing queued
    partner_id = await partner(uow, "new", endpoints={"locations": ALL_RECEIVERS["locations"]})
    assert (await queue_full_sync(uow, partner_id)).locations == 2
    assert await lanes(uow) == [("location:LOC-1", True), ("location:LOC-2", True)]

    # Meanwhile a location appears: live, and due before the whole sync.
    await locations.import_locations(uow(), [location_document(3)])
    await fan_out_all(uow)
    assert await lanes(uow) == [
        ("location:LOC-3", False),
        ("location:LOC-1", True),
        ("location:LOC-2", True),
    ]
    # An EVSE of a location still waiting in the sync changes: that location's pushes go
    # out with the change, in the live lane (its full PUT first, then the change).
    await locations.change_evse(uow(), "LOC-2", "3256-2", {"physical_reference": "X"})
    await fan_out_all(uow)
    assert await lanes(uow) == [
        ("location:LOC-2", False),
        ("location:LOC-3", False),
        ("location:LOC-1", True),
    ]
    # Each lane is delivered on its own: a busy one leaves the other due.
    live, background = (partner_id, False), (partner_id, True)
    assert await lanes(uow, busy=[background]) == [
        ("location:LOC-2", False),
        ("location:LOC-3", False),
    ]
    assert await lanes(uow, busy=[live]) == [("location:LOC-1", True)]
    assert await lanes(uow, busy=[live, background]) == []
    assert await next_due(uow(), busy=[live, background]) is None
    assert await next_due(uow(), busy=[live]) is not None
    assert await lanes(uow, skip=[partner_id]) == []


async def test_a_session_brings_its_locations_full_sync_push_forward(
    uow: UnitOfWorkFactory,
) -> None:
    await locations.import_locations(uow(), [location_document(1), location_document(2)])
    await stations.create_station(uow(), "CP1", location_id="LOC-2")
    await fan_out_all(uow)
    owner = await partner(uow, "owner")
    await queue_full_sync(uow, owner)
    now = utcnow()
    async with uow() as work:
        work.session.add(
            Session(
                id="S1", country_code="NL", party_id="CPM", station_id="CP1",
                location_id="LOC-2", status="ACTIVE", start_date_time=now,
                cdr_token={"uid": "X"}, auth_method="WHITELIST", currency="EUR",
                partner_id=owner, last_updated=now,
            )
        )  # fmt: skip
        work.record(SessionStarted(occurred_at=now, session_id="S1", status="ACTIVE"))
        await work.commit()
    await fan_out_all(uow)
    # The session waits for the partner's first push of its location, which is no longer
    # at the back of the sync; the other location stays there.
    assert await lanes(uow) == [("location:LOC-2", False), ("location:LOC-1", True)]
    located = [head for head in await due_heads(uow(), now=utcnow()) if head.background is False]
    await settle(uow(), [located[0].id], outcome=SENT, now=utcnow())
    assert await lanes(uow) == [("session:S1", False), ("location:LOC-1", True)]

"""Scenario 5, OCPI: paging through 10,000 EVSEs, and how soon a status change reaches an eMSP.

Our node (``cpms serve``, SQLite in a temporary directory) is given ``--evses`` EVSEs
(default 10,000) the way an operator would load them fastest: OCPI Location documents
POSTed to the operator API in batches (``POST /api/locations`` takes a list), one EVSE per
location by default (``--evses-per-location``). Then an eMSP registers through the real
credentials handshake (``cpms ocpi invite``, then the eMSP test peer of tests/ocpi_peer.py
POSTs its credentials), and:

1. **paging**: one client holding the partner's token pages ``GET /ocpi/2.2.1/locations``
   with ``limit=100``, following the ``Link`` headers, sweep after sweep for ``--duration``
   seconds. Reported: pages a second, EVSEs a second, latency p50/p99 per page. The limit
   is the same client paging ``bench.ocpi_limit_server``, which serves the first page our
   node rendered, byte for byte, as every page (no database, no rendering).
2. **event to push**: ``--push-stations`` stations (default 10), created at a published
   location with one EVSE each, toggle their connector between Charging and Available,
   ``--push-gap`` seconds apart; each change is timed from the StatusNotification leaving
   the station until the eMSP peer has received the PATCH (or PUT) carrying that status.
   Target: p99 under 250 ms. The station's own ack latency is reported beside it: no push
   can come before the change is stored.

The eMSP registers after the EVSEs exist, so it is first sent all of them (its full sync,
a PUT per location). The stations toggle ``SYNC_SAMPLES`` times while that is under way
(what changes must not wait for the whole sync; reported beside the target, not judged),
the scenario waits until the sync is through (its time is reported), and only then pages
and measures event to push.

``python -m bench.ocpi [--quick]``; ``make bench-ocpi``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.load import BOOT, Link, connect, status
from bench.measure import ratio, summarize
from bench.report import Table, add_common_arguments, judge, number, progress, scenario_main
from bench.servers import ADMIN_TOKEN, Server, ServerFailed, cpms_node, ocpi_limit_server

__all__ = ["TARGET_PUSH_P99_MS", "build_parser", "location_document", "main", "run", "tables"]

TARGET_PUSH_P99_MS = 250.0
PAGE_LIMIT = 100
PUSH_LOCATION = "BENCHPUSH"
SYNC_SAMPLES = 6
"""Status changes per station timed while a new partner's full sync is under way (even: the
stations end Available, as they began, so the next measurement's first change is one)."""
SYNC_BOUND = 600.0
"""Seconds the full sync of a new partner may take before the scenario goes on without it."""
COUNTRY, PARTY = "NL", "CPM"  # the node's defaults (CPMS_COUNTRY_CODE, CPMS_PARTY_ID)
_TESTS = Path(__file__).resolve().parents[1] / "tests"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.ocpi``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ocpi", description=__doc__.split("\n\n")[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--evses", type=int, help="EVSEs to create (default 10000; quick 1000)")
    parser.add_argument("--evses-per-location", type=int, default=1, help="(default 1)")
    parser.add_argument("--batch", type=int, default=100, help="locations per POST (100)")
    parser.add_argument(
        "--duration", type=float, help="seconds of paging per server (default 15; quick 3)"
    )
    parser.add_argument("--push-stations", type=int, default=10, help="stations toggling (10)")
    parser.add_argument(
        "--push-samples", type=int, help="status changes per station (default 30; quick 5)"
    )
    parser.add_argument(
        "--push-gap", type=float, default=0.2, help="seconds between a station's changes (0.2)"
    )
    return parser


# --------------------------------------------------------------------------- documents


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _connector() -> dict[str, Any]:
    return {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 16,
        "last_updated": _now(),
    }


def _evse(location_id: str, number: int, k: int) -> dict[str, Any]:
    return {
        "uid": f"{location_id}-{k}",
        "evse_id": f"{COUNTRY}*{PARTY}*E{number:05d}*{k}",
        "status": "AVAILABLE",
        "capabilities": ["RFID_READER"],
        "connectors": [_connector()],
        "last_updated": _now(),
    }


def location_document(number: int, evses: int, *, location_id: str | None = None) -> dict[str, Any]:
    """A published OCPI 2.2.1 Location with ``evses`` EVSEs of one Type 2 socket each."""
    identifier = location_id or f"BENCH{number:05d}"
    return {
        "country_code": COUNTRY,
        "party_id": PARTY,
        "id": identifier,
        "publish": True,
        "name": f"Bench site {number}",
        "address": "Benchstraat 1",
        "city": "Amsterdam",
        "postal_code": "1012 AB",
        "country": "NLD",
        "coordinates": {"latitude": "52.370216", "longitude": "4.895168"},
        "parking_type": "ON_STREET",
        "evses": [_evse(identifier, number, k) for k in range(1, evses + 1)],
        "time_zone": "Europe/Amsterdam",
        "last_updated": _now(),
    }


# --------------------------------------------------------------------------- the eMSP peer


def _timed_peer_class() -> type[Any]:
    """The eMSP test peer, told to note when each push arrives (tests/ocpi_peer.py)."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    from ocpi_peer import EmspPeer  # the tests' peer: registration, receivers, checks

    class TimedPeer(EmspPeer):  # type: ignore[misc, valid-type]
        """``EmspPeer`` that resolves a waiter when a push carries an expected status."""

        def expect(self, evse_uid: str, state: str) -> asyncio.Future[float]:
            future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self.__dict__.setdefault("waiters", {})[evse_uid] = (state, future)
            return future

        @web.middleware
        async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
            arrived = time.perf_counter()
            response = await super()._middleware(request, handler)
            if request.method in ("PUT", "PATCH") and "/locations/" in request.path:
                self._settle(request.path, await request.json(), arrived)
            return response

        def _settle(self, path: str, body: Any, arrived: float) -> None:
            waiters = self.__dict__.get("waiters", {})
            if not waiters or not isinstance(body, dict):
                return
            tail = path.rstrip("/").split("/")
            evses = {tail[-1]: body} if tail[-2] == PUSH_LOCATION else {}
            for evse in body.get("evses") or []:
                if isinstance(evse, dict) and "uid" in evse:
                    evses[evse["uid"]] = evse
            for uid, evse in evses.items():
                waiting = waiters.get(uid)
                if waiting is not None and evse.get("status") == waiting[0]:
                    if not waiting[1].done():
                        waiting[1].set_result(arrived)
                    del waiters[uid]

    return TimedPeer


# --------------------------------------------------------------------------- steps


async def _create_evses(
    http: aiohttp.ClientSession, base: str, evses: int, per_location: int, batch: int
) -> dict[str, Any]:
    locations = -(-evses // per_location)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    began = time.perf_counter()
    failures: list[str] = []
    for first in range(1, locations + 1, batch):
        documents = [
            location_document(n, min(per_location, evses - (n - 1) * per_location))
            for n in range(first, min(first + batch, locations + 1))
        ]
        async with http.post(f"{base}/api/locations", json=documents, headers=headers) as answer:
            if answer.status not in (200, 201):
                failures.append(f"{answer.status}: {(await answer.text())[:200]}")
                break
    seconds = time.perf_counter() - began
    return {
        "evses": evses,
        "locations": locations,
        "create_seconds": round(seconds, 2),
        "evses_per_s": round(evses / seconds, 1) if seconds > 0 else None,
        "create_failures": failures,
    }


def _invite(server: Server) -> tuple[str, str]:
    answer = subprocess.run(
        [sys.executable, "-m", "cpms", "ocpi", "invite", "--json", "--name", "bench eMSP"],
        env={**__import__("os").environ, **server.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    invitation = json.loads(answer.stdout)
    return invitation["versions_url"], invitation["token"]


def _ocpi_headers(token: str | None) -> dict[str, str]:
    headers = {
        "X-Request-ID": str(uuid.uuid4()),
        "X-Correlation-ID": str(uuid.uuid4()),
        "OCPI-from-country-code": "DE",
        "OCPI-from-party-id": "EMS",
        "OCPI-to-country-code": COUNTRY,
        "OCPI-to-party-id": PARTY,
    }
    if token is not None:
        headers["Authorization"] = "Token " + base64.b64encode(token.encode()).decode()
    return headers


async def _page(url: str, token: str | None, duration: float) -> dict[str, Any]:
    """Page through ``url`` sweep after sweep for ``duration`` seconds (whole sweeps count).

    ``first_page`` in the result is the body of the first page, for the limit to serve.
    """
    first_page: bytes | None = None
    latencies: list[float] = []
    objects = evses = sweeps = 0
    errors: dict[str, int] = {}
    began = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while time.perf_counter() - began < duration:
            next_url: str | None = f"{url}?limit={PAGE_LIMIT}"
            while next_url is not None:
                sent = time.perf_counter()
                async with http.get(next_url, headers=_ocpi_headers(token)) as answer:
                    body = await answer.read()
                    latencies.append(time.perf_counter() - sent)
                    link = answer.headers.get("Link")
                    if answer.status != 200:
                        errors[f"HTTP {answer.status}"] = errors.get(f"HTTP {answer.status}", 0) + 1
                        next_url = None
                        break
                if first_page is None:
                    first_page = body
                data = json.loads(body).get("data") or []
                objects += len(data)
                evses += sum(len(x.get("evses") or []) for x in data)
                next_url = link.split(";")[0].strip("<> ") if link else None
            sweeps += 1
            if errors:
                break
    seconds = time.perf_counter() - began
    return {
        "seconds": round(seconds, 2),
        "sweeps": sweeps,
        "pages": len(latencies),
        "pages_per_s": round(len(latencies) / seconds, 1) if seconds > 0 else None,
        "evses_per_s": round(evses / seconds, 0) if seconds > 0 else None,
        "objects_per_sweep": objects // sweeps if sweeps else None,
        "evses_per_sweep": evses // sweeps if sweeps else None,
        "latency": summarize(latencies).as_dict(),
        "errors": errors,
        "first_page": first_page,
    }


async def _locations_endpoint(peer: Any, versions_url: str) -> str:
    """Our Locations sender URL, read from our version details as a partner reads it."""
    _, versions, _ = await peer.call("GET", versions_url)
    details_url = next(v["url"] for v in versions["data"] if v["version"] == "2.2.1")
    _, details, _ = await peer.call("GET", details_url)
    return str(
        next(
            e["url"]
            for e in details["data"]["endpoints"]
            if e["identifier"] == "locations" and e.get("role") == "SENDER"
        )
    )


async def _push_stations(
    http: aiohttp.ClientSession, server: Server, args: argparse.Namespace
) -> list[Link]:
    """The toggling stations, created at their own published location, booted, Available."""
    base, headers = server.http_url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    document = location_document(99999, 0, location_id=PUSH_LOCATION)
    document["evses"] = []
    async with http.post(f"{base}/api/locations", json=document, headers=headers) as answer:
        answer.raise_for_status()
    ids = [f"PUSH-{k:03d}" for k in range(1, args.push_stations + 1)]
    for k, station_id in enumerate(ids, start=1):
        body = {"id": station_id, "location_id": PUSH_LOCATION}
        async with http.post(f"{base}/api/stations", json=body, headers=headers) as answer:
            answer.raise_for_status()
        evse = _evse(PUSH_LOCATION, 99999, k) | {"station_id": station_id, "ocpp_evse_id": 1}
        url = f"{base}/api/locations/{PUSH_LOCATION}/evses"
        async with http.post(url, json=evse, headers=headers) as answer:
            answer.raise_for_status()
    assert server.ocpp_url is not None
    links: list[Link] = []
    try:
        for station_id in ids:
            link = await connect(server.ocpp_url, station_id)
            links.append(link)
            await link.call("BootNotification", BOOT)
            await link.call("StatusNotification", status(1, "Available"))
    except BaseException:
        for link in links:
            link.close()
        raise
    return links


async def _push_latency(
    links: list[Link], peer: Any, args: argparse.Namespace, samples: int
) -> dict[str, Any]:
    """Every station toggles ``samples`` times; each change timed until the peer has it."""
    results = await asyncio.gather(
        *(
            _toggle(link, f"{PUSH_LOCATION}-{k}", peer, samples, args.push_gap)
            for k, link in enumerate(links, start=1)
        )
    )
    pushes = [x for r in results for x in r["push"]]
    acks = [x for r in results for x in r["ack"]]
    missed = sum(r["missed"] for r in results)
    push = summarize(pushes).as_dict()
    return {
        "stations": len(links),
        "changes": len(pushes) + missed,
        "push_latency": push,
        "ack_latency": summarize(acks).as_dict(),
        "missed": missed,
        "target_p99_ms": TARGET_PUSH_P99_MS,
        "verdict": judge(push["p99_ms"], TARGET_PUSH_P99_MS, at_least=False)
        if not missed
        else "missed",
    }


async def _backlog(http: aiohttp.ClientSession, server: Server) -> int:
    """Pushes still pending for every partner, from the operator API."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.get(f"{server.http_url}/api/ocpi/partners", headers=headers) as answer:
        answer.raise_for_status()
        page = await answer.json()
    return sum(int(item["backlog"]["pending"]) for item in page["items"])


async def _full_sync(
    http: aiohttp.ClientSession, server: Server, peer: Any, began: float, bound: float
) -> dict[str, Any]:
    """Wait (at most ``bound`` s after ``began``) until the new partner's full sync is sent."""
    last = 0.0
    while (pending := await _backlog(http, server)) and time.perf_counter() - began < bound:
        if time.perf_counter() - last >= 15:
            progress(f"ocpi: full sync to the new partner, {pending:,} pushes to go")
            last = time.perf_counter()
        await asyncio.sleep(0.5)
    seconds = time.perf_counter() - began
    puts = sum(1 for r in peer.requests if r.method == "PUT" and "/locations/" in r.path)
    return {
        "seconds": round(seconds, 1),
        "locations_put": puts,
        "per_s": round(puts / seconds, 1) if seconds > 0 else None,
        "pending_left": pending,
    }


async def _toggle(link: Link, evse_uid: str, peer: Any, samples: int, gap: float) -> dict[str, Any]:
    push: list[float] = []
    ack: list[float] = []
    missed = 0
    for index in range(samples):
        charging = index % 2 == 0
        arrived = peer.expect(evse_uid, "CHARGING" if charging else "AVAILABLE")
        sent = time.perf_counter()
        state = "Charging" if charging else "Available"
        _, latency = await link.call("StatusNotification", status(1, state))
        ack.append(latency)
        try:
            push.append(await asyncio.wait_for(arrived, 5.0) - sent)
        except TimeoutError:
            missed += 1
        await asyncio.sleep(gap)
    return {"push": push, "ack": ack, "missed": missed}


async def _against_node(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    assert server.http_url is not None
    evses = args.evses or (1000 if args.quick else 10_000)
    duration = args.duration or (3.0 if args.quick else 15.0)
    samples = args.push_samples or (5 if args.quick else 30)
    record: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        progress(f"ocpi: creating {evses} EVSEs through the operator API")
        record["create"] = await _create_evses(
            http, server.http_url, evses, args.evses_per_location, args.batch
        )
        versions_url, token_a = await asyncio.to_thread(_invite, server)
        peer = await _timed_peer_class()().start()
        links: list[Link] = []
        try:
            links = await _push_stations(http, server, args)
            began = time.perf_counter()
            await peer.register_with(versions_url, token_a)
            # The partner is sent every location now (its full sync): what changes
            # meanwhile must not wait for the whole sync.
            progress(
                f"ocpi: push latency during the new partner's full sync, "
                f"{args.push_stations} stations x {SYNC_SAMPLES} changes"
            )
            record["push_during_sync"] = await _push_latency(links, peer, args, SYNC_SAMPLES)
            record["sync"] = await _full_sync(http, server, peer, began, SYNC_BOUND)
            locations_url = await _locations_endpoint(peer, versions_url)
            progress(f"ocpi: paging our node for {duration:.0f} s")
            record["paging"] = await _page(locations_url, peer.token_for_cpo, duration)
            progress(f"ocpi: push latency, {args.push_stations} stations x {samples} changes")
            record["push"] = await _push_latency(links, peer, args, samples)
            record["peer_problems"] = peer.problems[:5]
        finally:
            for link in links:
                link.close()
            await peer.stop()
    return record


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure our node, then the paging limit; the record of the run."""
    duration = args.duration or (3.0 if args.quick else 15.0)
    record: dict[str, Any] = {"duration": duration}
    with tempfile.TemporaryDirectory(prefix="cpms-bench-") as tmp:
        workdir = Path(tmp)
        page_file = workdir / "page.json"
        try:
            with cpms_node(workdir) as server:
                record["cpms"] = asyncio.run(_against_node(server, args))
                first_page = record["cpms"].get("paging", {}).pop("first_page", None)
                if first_page:
                    page_file.write_bytes(first_page)
                died = server.died()
                if died:
                    record["cpms"]["server_died"] = died
        except ServerFailed as error:
            record["cpms"] = {"crashed": str(error)}
        paging = record["cpms"].get("paging") or {}
        if page_file.exists() and (not args.only or "limit" in args.only):
            total = (record["cpms"].get("create") or {}).get("locations") or PAGE_LIMIT
            progress(f"ocpi: paging the limit for {duration:.0f} s")
            try:
                with ocpi_limit_server(workdir, page_file, total=total, limit=PAGE_LIMIT) as limit:
                    assert limit.http_url is not None
                    url = f"{limit.http_url}/ocpi/2.2.1/locations"
                    limit_paging = asyncio.run(_page(url, None, duration))
                    limit_paging.pop("first_page", None)
                    record["limit"] = {"paging": limit_paging}
            except ServerFailed as error:
                record["limit"] = {"crashed": str(error)}
        limit_paging = (record.get("limit") or {}).get("paging") or {}
        record["pages_vs_limit"] = ratio(paging.get("pages_per_s"), limit_paging.get("pages_per_s"))
    return record


def tables(record: dict[str, Any]) -> list[Table]:
    """The run as tables: EVSE creation and paging, then event-to-push latency."""
    ours = record.get("cpms", {})
    out: list[Table] = []
    paging = Table(
        f"OCPI paging (limit={PAGE_LIMIT}, {record['duration']:.0f} s)",
        ("server", "pages/s", "EVSEs/s", "p50 ms", "p99 ms", "max ms", "EVSEs/sweep", "errors"),
    )
    for name, item in (("cpms", ours), ("limit", record.get("limit") or {})):
        if "crashed" in item:
            paging.add(name, "crashed", *[""] * 6)
            paging.note(f"{name}: {item['crashed']}")
            continue
        page = item.get("paging")
        if not page:
            continue
        latency = page["latency"]
        paging.add(
            name,
            number(page["pages_per_s"]),
            number(page["evses_per_s"], 0),
            number(latency["p50_ms"]),
            number(latency["p99_ms"]),
            number(latency["max_ms"]),
            number(page["evses_per_sweep"], 0),
            sum(page["errors"].values()),
        )
    create = ours.get("create")
    if create:
        paging.note(
            f"created {create['evses']:,} EVSEs at {create['locations']:,} locations through "
            f"POST /api/locations in {create['create_seconds']} s "
            f"({number(create['evses_per_s'], 0)} EVSEs/s)"
            + (f"; failures: {create['create_failures']}" if create["create_failures"] else "")
        )
    paging.note(f"ours/limit pages/s: {number(record.get('pages_vs_limit'), 2)}")
    out.append(paging)
    push = ours.get("push")
    if push:
        table = Table(
            f"Event to push ({push['stations']} stations, {push['changes']} status changes)",
            ("latency", "count", "p50 ms", "p99 ms", "max ms"),
        )
        during = ours.get("push_during_sync")
        rows = [("station ack", push, "ack_latency"), ("push at eMSP", push, "push_latency")]
        if during:
            rows.append(("push during full sync", during, "push_latency"))
        for name, item, key in rows:
            figures = item[key]
            table.add(
                name,
                figures["count"],
                number(figures["p50_ms"]),
                number(figures["p99_ms"]),
                number(figures["max_ms"]),
            )
        table.note(
            f"target: push p99 < {TARGET_PUSH_P99_MS:.0f} ms: {push['verdict']}"
            + (
                f" ({push['missed']} changes never reached the eMSP in 5 s)"
                if push["missed"]
                else ""
            )
        )
        sync = ours.get("sync")
        if during and sync:
            table.note(
                f"during the new partner's full sync ({sync['locations_put']:,} locations PUT "
                f"in {sync['seconds']} s, {number(sync['per_s'])}/s"
                + (f", {sync['pending_left']:,} pushes left" if sync["pending_left"] else "")
                + f"): {during['changes']} changes, {during['missed']} missed, "
                f"p99 {number(during['push_latency']['p99_ms'])} ms"
            )
        if ours.get("peer_problems"):
            table.note(f"the eMSP peer found problems: {ours['peer_problems']}")
        out.append(table)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario; print the tables and the JSON line; exit 0 unless it crashed."""
    return scenario_main("ocpi", argv, build_parser, run, tables)


if __name__ == "__main__":
    sys.exit(main())

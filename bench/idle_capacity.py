"""Scenario 3, idle capacity: how many connected, heartbeating stations one process holds.

``--stations`` stations (default 10,000; ``--quick`` 500) connect (200 handshakes at a time),
boot and report connector 1 Available, then sit connected and send one Heartbeat every
``--heartbeat-every`` seconds (default 30; real stations are told 300 by our node, so this is
ten times the real rate), each at its own random phase, for ``--duration`` seconds. The
server's resident memory is sampled twice a second. Measured against the limit, the
``ocpp``-library central system and our node (``cpms serve``, SQLite, open admission: each
station is registered on its first connection).

Reported per server: stations connected and still connected at the end, the time the fleet
took to connect and boot, server RSS before and at its peak (and per station), heartbeat
ack latency p50/p99. Targets for ours at 10,000 stations: RSS under 1 GiB, heartbeat p99
under 50 ms. ``--stations`` may go higher to find the most one process holds (the
generator's and the server's open-files limits are raised to the hard limit, 20,000 here).

``python -m bench.idle_capacity [--quick] [--stations 10000]``; ``make bench-idle``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import LoadSpec
from bench.report import (
    Table,
    add_common_arguments,
    error_count,
    judge,
    mib,
    note_problems,
    number,
    progress,
    scenario_main,
)
from bench.servers import cpms_node, limit_server, measure, ocpp_lib_server

__all__ = ["SERVERS", "TARGET_P99_MS", "TARGET_RSS_BYTES", "build_parser", "main", "run", "tables"]

TARGET_RSS_BYTES = 2**30
TARGET_P99_MS = 50.0
TARGET_STATIONS = 10_000
SERVERS = ("limit", "ocpp-lib", "cpms")


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.idle_capacity``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle_capacity", description=__doc__.split("\n\n")[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--stations", type=int, help="stations (default 10000; --quick 500)")
    parser.add_argument(
        "--heartbeat-every", type=float, help="seconds between heartbeats (default 30; quick 5)"
    )
    parser.add_argument(
        "--duration", type=float, help="seconds measured once connected (default 30; quick 5)"
    )
    parser.add_argument(
        "--connect-concurrency", type=int, default=200, help="handshakes at a time (200)"
    )
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every selected server; the record of the run."""
    stations = args.stations or (500 if args.quick else TARGET_STATIONS)
    every = args.heartbeat_every or (5.0 if args.quick else 30.0)
    duration = args.duration or (5.0 if args.quick else 30.0)
    spec = LoadSpec(
        url="",
        stations=stations,
        workload="idle",
        duration=duration,
        heartbeat_every=every,
        connect_concurrency=args.connect_concurrency,
        # Our node admits a few dozen new stations a second: give 10,000 the time they need.
        setup_timeout=max(300.0, stations / 20),
        prefix="IDLE-",
    )
    servers = [s for s in SERVERS if not args.only or s in args.only]
    runs = []
    with tempfile.TemporaryDirectory(prefix="cpms-bench-") as tmp:
        for name in servers:
            workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
            progress(f"idle: {name}, {stations} stations, heartbeat every {every:.0f} s")
            start = {
                "limit": lambda w=workdir: limit_server(w),
                "ocpp-lib": lambda w=workdir: ocpp_lib_server(w),
                "cpms": lambda w=workdir: cpms_node(w),
            }[name]
            runs.append(_per_station(measure(name, start, spec)))
    ours = next((r for r in runs if r["server"] == "cpms"), {})
    rss, p99 = ours.get("server_rss_peak"), (ours.get("latency") or {}).get("p99_ms")
    held = ours.get("connected_at_end")
    rss_verdict = p99_verdict = "n/a"
    if stations >= TARGET_STATIONS and held:
        rss_verdict = judge(rss, TARGET_RSS_BYTES, at_least=False)
        p99_verdict = judge(p99, TARGET_P99_MS, at_least=False)
        if held < TARGET_STATIONS:
            # Fewer stations than the target: only a figure already over it is a verdict.
            rss_verdict = "missed" if rss_verdict == "missed" else "n/a"
            p99_verdict = "missed" if p99_verdict == "missed" else "n/a"
    return {
        "stations": stations,
        "heartbeat_every": every,
        "duration": duration,
        "runs": runs,
        "cpms_rss_verdict": rss_verdict,
        "cpms_p99_verdict": p99_verdict,
        "cpms_most_held": held,
    }


def _per_station(item: dict[str, Any]) -> dict[str, Any]:
    """Add the memory each connected station costs the server, and the connect rate."""
    before = (item.get("server_before") or {}).get("rss_bytes")
    peak, ready = item.get("server_rss_peak"), item.get("ready")
    if before is not None and peak is not None and ready:
        item["rss_per_station_bytes"] = round((peak - before) / ready)
        item["rss_projected_10k_bytes"] = before + item["rss_per_station_bytes"] * TARGET_STATIONS
    if ready and item.get("setup_seconds"):
        item["connects_per_s"] = round(ready / item["setup_seconds"], 1)
    return item


def tables(record: dict[str, Any]) -> list[Table]:
    """The run as one table, with the targets under it."""
    table = Table(
        f"Idle capacity ({record['stations']:,} stations, a heartbeat every "
        f"{record['heartbeat_every']:.0f} s, {record['duration']:.0f} s measured)",
        ("server", "connected", "at end", "connect s", "conn/s", "RSS idle MiB", "RSS peak MiB",
         "KiB/station", "hb p50 ms", "hb p99 ms", "errors"),
    )  # fmt: skip
    for item in record["runs"]:
        name = item["server"]
        if "crashed" in item:
            table.add(name, "crashed", *[""] * 9)
            table.note(f"{name}: {item['crashed']}")
            continue
        latency = item.get("latency") or {}
        per_station = item.get("rss_per_station_bytes")
        table.add(
            name,
            number(item.get("ready"), 0),
            number(item.get("connected_at_end"), 0),
            number(item.get("setup_seconds")),
            number(item.get("connects_per_s"), 0),
            number(mib((item.get("server_before") or {}).get("rss_bytes"))),
            number(mib(item.get("server_rss_peak"))),
            number(None if per_station is None else per_station / 1024),
            number(latency.get("p50_ms")),
            number(latency.get("p99_ms")),
            error_count(item),
        )
        note_problems(table, name, item, record["stations"])
    ours = next((r for r in record["runs"] if r["server"] == "cpms"), {})
    projected = ours.get("rss_projected_10k_bytes")
    table.note(
        f"targets for ours at {TARGET_STATIONS:,} stations: RSS < 1 GiB: "
        f"{record['cpms_rss_verdict']}; heartbeat p99 < {TARGET_P99_MS:.0f} ms: "
        f"{record['cpms_p99_verdict']}; most stations held: {number(record['cpms_most_held'], 0)}"
        + (f"; RSS projected at 10,000: {number(mib(projected))} MiB" if projected else "")
    )
    return [table]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario; print the table and the JSON line; exit 0 unless it crashed."""
    return scenario_main("idle_capacity", argv, build_parser, run, tables)


if __name__ == "__main__":
    sys.exit(main())

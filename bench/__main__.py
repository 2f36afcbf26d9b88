"""``python -m bench`` (``make bench``): every scenario in turn, then one summary of the targets.

Sizes are chosen so the whole run takes about ten minutes on the 2-core machine: the idle
capacity and reconnect storm scenarios run smaller fleets than their targets name
(``IDLE_STATIONS``, ``STORM_STATIONS``: our node connects only some dozens of stations a
second, so 10,000 would take minutes of set-up alone); ``--full`` runs them at the target
sizes (10,000 and 5,000), ``--quick`` runs everything small (about three minutes). A
scenario that crashes is reported and the others still run; the exit status is 0 unless
one crashed. Each scenario prints its own tables and JSON line; the summary comes last,
followed by one JSON line of all verdicts.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from bench import gateway_throughput, idle_capacity, meter_values, ocpi, reconnect_storm
from bench.report import Table, emit, number, progress

__all__ = ["IDLE_STATIONS", "SCENARIOS", "STORM_STATIONS", "build_parser", "main", "summary"]

IDLE_STATIONS = 2_000
STORM_STATIONS = 1_000

SCENARIOS: dict[str, Any] = {
    "gateway_throughput": gateway_throughput,
    "meter_values": meter_values,
    "ocpi": ocpi,
    "idle_capacity": idle_capacity,
    "reconnect_storm": reconnect_storm,
}


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="every scenario small (~3 min)")
    size.add_argument(
        "--full", action="store_true", help="idle at 10,000 and storm at 5,000 stations"
    )
    parser.add_argument(
        "--scenario", action="append", choices=tuple(SCENARIOS), help="run only these"
    )
    return parser


def _argv(name: str, args: argparse.Namespace) -> list[str]:
    if args.quick:
        return ["--quick"]
    if name == "idle_capacity" and not args.full:
        return ["--stations", str(IDLE_STATIONS)]
    if name == "reconnect_storm" and not args.full:
        return ["--stations", str(STORM_STATIONS)]
    return []


def _rows(name: str, record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, ours, target, verdict) of one scenario's record."""
    rows: list[tuple[str, str, str, str]] = []

    def add(figure: str, ours: str, target: str, verdict: str) -> None:
        rows.append((figure, ours, target, verdict))

    if name == "gateway_throughput":
        for item in record["ratios"]:
            size = item["stations"]
            ours_limit, ours_lib = item["cpms_vs_limit"], item["cpms_vs_ocpp_lib"]
            add(f"{size} st.: ours/limit msg/s", number(ours_limit, 2), ">= 0.5", item["vs_limit"])
            add(
                f"{size} st.: ours/ocpp-lib msg/s", number(ours_lib, 2), ">= 2", item["vs_ocpp_lib"]
            )
    elif name == "meter_values":
        sqlite, pg = record["cpms_vs_limit"], record["cpms_pg_vs_limit"]
        add("ours/limit MeterValues/s, SQLite", number(sqlite, 2), ">= 0.3", record["vs_limit"])
        add("ours/limit MeterValues/s, PostgreSQL", number(pg, 2), "reported", "-")
    elif name == "ocpi":
        push = (record.get("cpms") or {}).get("push") or {}
        paging = (record.get("cpms") or {}).get("paging") or {}
        pages = f"{number(paging.get('pages_per_s'))} ({number(record.get('pages_vs_limit'), 2)})"
        add("pages/s at limit=100 (ours/limit)", pages, "reported", "-")
        p99 = (push.get("push_latency") or {}).get("p99_ms")
        add("event to push p99 ms", number(p99), "< 250", push.get("verdict", "n/a"))
    elif name == "idle_capacity":
        ours = next((r for r in record["runs"] if r["server"] == "cpms"), {})
        rss = ours.get("server_rss_peak")
        rss_mib = number(None if rss is None else rss / 2**20)
        p99 = number((ours.get("latency") or {}).get("p99_ms"))
        size = f"{record['stations']:,}"
        add(f"RSS MiB at {size} stations", rss_mib, "< 1024 at 10,000", record["cpms_rss_verdict"])
        add(f"heartbeat p99 ms at {size}", p99, "< 50 at 10,000", record["cpms_p99_verdict"])
    elif name == "reconnect_storm":
        ours = next((r for r in record["runs"] if r["server"] == "cpms"), {})
        settled = number(ours.get("all_done_seconds"), 1)
        add(
            f"s until {record['stations']:,} stations replayed",
            settled,
            "<= 30 at 5,000",
            record["cpms_time_verdict"],
        )
        counts = " / ".join(
            str(ours.get(key, "-"))
            for key in ("sessions_lost", "sessions_doubled", "sessions_not_completed")
        )
        add("sessions lost / doubled / open", counts, "0 / 0 / 0", record["cpms_sessions_verdict"])
    return rows


def summary(records: dict[str, dict[str, Any]], minutes: float) -> Table:
    """One table of every target, from the scenarios' records."""
    table = Table(
        f"Summary ({minutes:.1f} min)", ("scenario", "figure", "ours", "target", "verdict")
    )
    for name, record in records.items():
        if "crashed" in record:
            table.add(name, "crashed", "", "", "")
            table.note(f"{name}: {record['crashed']}")
            continue
        for figure, ours, target, verdict in _rows(name, record):
            table.add(name, figure, ours, target, verdict)
    return table


def _run_one(name: str, module: Any, argv: list[str]) -> dict[str, Any]:
    run: Callable[[argparse.Namespace], dict[str, Any]] = module.run
    args = module.build_parser().parse_args(argv)
    record = run(args)
    emit(name, module.tables(record), record)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios; print each, then the summary; exit 1 only if one crashed."""
    args = build_parser().parse_args(argv)
    began = time.monotonic()
    records: dict[str, dict[str, Any]] = {}
    for name, module in SCENARIOS.items():
        if args.scenario and name not in args.scenario:
            continue
        progress(f"scenario {name} {' '.join(_argv(name, args))}".rstrip())
        try:
            records[name] = _run_one(name, module, _argv(name, args))
        except Exception as error:
            traceback.print_exc()
            records[name] = {"crashed": f"{type(error).__name__}: {error}"}
    minutes = (time.monotonic() - began) / 60
    verdicts = {
        name: [row[3] for row in _rows(name, record)] if "crashed" not in record else "crashed"
        for name, record in records.items()
    }
    emit("all", [summary(records, minutes)], {"minutes": round(minutes, 1), "verdicts": verdicts})
    return 1 if any("crashed" in record for record in records.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

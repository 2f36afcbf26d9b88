"""Scenario 1, gateway throughput: how many OCPP messages a second one node answers.

100 and 1,000 stations (``--stations``), each with exactly one CALL in flight, send a
Heartbeat/StatusNotification mix (half each; a StatusNotification toggles connector 1
between Available and Preparing, so every one is a real change for a CPMS to store) for
``--duration`` seconds after a warm-up. The same load drives, one after another and each
freshly started: the limit (``bench.limit_server``), the ``ocpp``-library central system
(``bench.ocpp_lib_server``) and our node (``cpms serve`` on a new SQLite file in a temporary
directory, open admission; the stations boot before measuring starts).

Reported per size and server: messages a second, ack latency p50/p99/max, errors, the
server's CPU time per message; then the ratios ours/limit (target >= 0.5) and
ours/ocpp-lib (target >= 2).

``python -m bench.gateway_throughput [--quick]``; ``make bench-gateway``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import LoadSpec
from bench.measure import ratio
from bench.report import (
    Table,
    add_common_arguments,
    error_count,
    judge,
    note_problems,
    number,
    progress,
    scenario_main,
)
from bench.servers import cpms_node, limit_server, measure, ocpp_lib_server

__all__ = [
    "SERVERS",
    "TARGET_VS_LIMIT",
    "TARGET_VS_OCPP_LIB",
    "build_parser",
    "main",
    "run",
    "tables",
]

TARGET_VS_LIMIT = 0.5
TARGET_VS_OCPP_LIB = 2.0
SERVERS = ("limit", "ocpp-lib", "cpms")


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.gateway_throughput``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_throughput", description=__doc__.split("\n\n")[0]
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--stations",
        type=int,
        action="append",
        metavar="N",
        help="fleet size; repeatable (default: 100 and 1000; --quick: 100)",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds measured per run (default 10; --quick 3)"
    )
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 2)")
    parser.add_argument(
        "--status-share", type=float, default=0.5, help="share of StatusNotification (0.5)"
    )
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every selected server at every size; the record of the run."""
    sizes = args.stations or ([100] if args.quick else [100, 1000])
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    servers = [s for s in SERVERS if not args.only or s in args.only]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cpms-bench-") as tmp:
        for size in sizes:
            spec = LoadSpec(
                url="",
                stations=size,
                workload="mix",
                duration=duration,
                warmup=warmup,
                status_share=args.status_share,
                prefix=f"GW{size}-",
            )
            for name in servers:
                workdir = Path(tempfile.mkdtemp(prefix=f"{name}-{size}-", dir=tmp))
                progress(f"gateway: {name}, {size} stations, {duration:.0f} s")
                start = {
                    "limit": lambda w=workdir: limit_server(w),
                    "ocpp-lib": lambda w=workdir: ocpp_lib_server(w),
                    "cpms": lambda w=workdir: cpms_node(w),
                }[name]
                result = measure(name, start, spec)
                runs.append({"stations": size, **result})
    return {"runs": runs, "ratios": _ratios(runs, sizes), "duration": duration}


def _rate(runs: list[dict[str, Any]], size: int, server: str) -> float | None:
    for item in runs:
        if item["stations"] == size and item["server"] == server:
            return item.get("msg_per_s")
    return None


def _ratios(runs: list[dict[str, Any]], sizes: Sequence[int]) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        ours = _rate(runs, size, "cpms")
        vs_limit = ratio(ours, _rate(runs, size, "limit"))
        vs_lib = ratio(ours, _rate(runs, size, "ocpp-lib"))
        out.append(
            {
                "stations": size,
                "cpms_vs_limit": vs_limit,
                "target_vs_limit": TARGET_VS_LIMIT,
                "vs_limit": judge(vs_limit, TARGET_VS_LIMIT),
                "cpms_vs_ocpp_lib": vs_lib,
                "target_vs_ocpp_lib": TARGET_VS_OCPP_LIB,
                "vs_ocpp_lib": judge(vs_lib, TARGET_VS_OCPP_LIB),
            }
        )
    return out


def tables(record: dict[str, Any]) -> list[Table]:
    """The run as two tables: figures per server, ratios against the targets."""
    figures = Table(
        f"Gateway throughput (Heartbeat/StatusNotification mix, {record['duration']:.0f} s)",
        (
            "stations",
            "server",
            "msg/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "server CPU/msg us",
            "generator CPU",
        ),
    )
    for item in record["runs"]:
        if "crashed" in item:
            figures.add(item["stations"], item["server"], "crashed", "", "", "", "", "", "")
            figures.note(f"{item['server']} at {item['stations']}: {item['crashed']}")
            continue
        latency = item.get("latency", {})
        figures.add(
            item["stations"],
            item["server"],
            number(item.get("msg_per_s"), 0),
            number(latency.get("p50_ms"), 1),
            number(latency.get("p99_ms"), 1),
            number(latency.get("max_ms"), 1),
            error_count(item),
            number(item.get("server_cpu_us_per_msg"), 0),
            number(item.get("generator_cpu_share"), 2),
        )
        note_problems(figures, f"{item['server']} at {item['stations']}", item, item["stations"])
    ratios = Table(
        "Ratios (targets: >= 0.5 x limit, >= 2 x ocpp-lib)",
        ("stations", "ours/limit", "", "ours/ocpp-lib", ""),
    )
    for item in record["ratios"]:
        ratios.add(
            item["stations"],
            number(item["cpms_vs_limit"], 2),
            item["vs_limit"],
            number(item["cpms_vs_ocpp_lib"], 2),
            item["vs_ocpp_lib"],
        )
    return [figures, ratios]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario; print the tables and the JSON line; exit 0 unless it crashed."""
    return scenario_main("gateway_throughput", argv, build_parser, run, tables)


if __name__ == "__main__":
    sys.exit(main())

"""Scenario 2, durable meter values: how many MeterValues a second one node stores and acks.

``--stations`` stations (default 100) boot, start a transaction (their idTag is unknown to
the node, which is told to accept unknown tokens) and then send MeterValues back to back,
one in flight each, four sampled values apiece (register, power, current, voltage) whose
register grows as an 11 kW charge would. Measured for ``--duration`` seconds after a warm-up
against the limit, the ``ocpp``-library central system (both answer from memory), our node
on SQLite and, when a PostgreSQL answers (``CPMS_TEST_POSTGRES_URL`` or 127.0.0.1:5432), our
node on a scratch PostgreSQL database created and dropped for the run.

Durability is checked, not assumed: while our node still runs, the samples in its database
are counted and compared with the MeterValues it acknowledged (every acked sample must be
there). Target: ours on SQLite >= 0.3 x the limit; PostgreSQL is reported beside it.

``python -m bench.meter_values [--quick]``; ``make bench-meter``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
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
from bench.servers import (
    Server,
    cpms_node,
    database_rows,
    limit_server,
    measure,
    ocpp_lib_server,
    postgres_admin_url,
    scratch_postgres,
)

__all__ = ["SERVERS", "TARGET_VS_LIMIT", "build_parser", "main", "run", "tables"]

TARGET_VS_LIMIT = 0.3
SERVERS = ("limit", "ocpp-lib", "cpms", "cpms-pg")
PREFIX = "MV-"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.meter_values``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.meter_values", description=__doc__.split("\n\n")[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--stations", type=int, help="stations charging (default 100; quick 20)")
    parser.add_argument(
        "--duration", type=float, help="seconds measured per run (default 10; --quick 3)"
    )
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 2)")
    parser.add_argument(
        "--samples", type=int, default=4, help="sampled values per MeterValues, 1-4 (4)"
    )
    return parser


def _stored_samples(server: Server, result: dict[str, Any]) -> dict[str, Any]:
    """Count the samples our node holds for the bench stations; compare with what it acked."""
    assert server.database_url is not None
    rows = database_rows(
        server.database_url,
        "SELECT count(*) FROM meter_sample WHERE station_id LIKE :prefix",
        prefix=f"{PREFIX}%",
    )
    stored = int(rows[0][0])
    acked = result.get("acked", {}).get("MeterValues", 0) * result.get("meter_samples", 4)
    return {"samples_stored": stored, "samples_acked": acked, "all_acked_stored": stored >= acked}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every selected server; the record of the run."""
    stations = args.stations or (20 if args.quick else 100)
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    servers = [s for s in SERVERS if not args.only or s in args.only]
    spec = LoadSpec(
        url="",
        stations=stations,
        workload="meter",
        duration=duration,
        warmup=warmup,
        meter_samples=args.samples,
        prefix=PREFIX,
    )
    admin_url = postgres_admin_url() if "cpms-pg" in servers else None
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cpms-bench-") as tmp:
        for name in servers:
            workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
            if name == "cpms-pg" and admin_url is None:
                runs.append({"server": name, "skipped": "no PostgreSQL answers"})
                continue
            progress(f"meter values: {name}, {stations} stations, {duration:.0f} s")
            with ExitStack() as stack:
                start: Callable[[], AbstractContextManager[Server]]
                inspect = None
                if name == "limit":
                    start = lambda w=workdir: limit_server(w)  # noqa: E731
                elif name == "ocpp-lib":
                    start = lambda w=workdir: ocpp_lib_server(w)  # noqa: E731
                else:
                    url = None
                    if name == "cpms-pg":
                        assert admin_url is not None
                        url = stack.enter_context(scratch_postgres(admin_url))
                    start = lambda w=workdir, u=url: cpms_node(w, u)  # noqa: E731
                    inspect = _stored_samples
                result = measure(name, start, spec, inspect=_with_samples(inspect, spec))
            runs.append(result)
    rates = {item["server"]: item.get("msg_per_s") for item in runs}
    sqlite_ratio = ratio(rates.get("cpms"), rates.get("limit"))
    return {
        "stations": stations,
        "duration": duration,
        "samples_per_message": args.samples,
        "runs": runs,
        "cpms_vs_limit": sqlite_ratio,
        "target_vs_limit": TARGET_VS_LIMIT,
        "vs_limit": judge(sqlite_ratio, TARGET_VS_LIMIT),
        "cpms_pg_vs_limit": ratio(rates.get("cpms-pg"), rates.get("limit")),
        "cpms_vs_ocpp_lib": ratio(rates.get("cpms"), rates.get("ocpp-lib")),
    }


def _with_samples(
    inspect: Callable[[Server, dict[str, Any]], dict[str, Any]] | None, spec: LoadSpec
) -> Callable[[Server, dict[str, Any]], dict[str, Any]] | None:
    if inspect is None:
        return None
    return lambda server, result: inspect(server, {**result, "meter_samples": spec.meter_samples})


def tables(record: dict[str, Any]) -> list[Table]:
    """The run as a table of figures per server and a line of ratios."""
    table = Table(
        f"Durable meter values ({record['stations']} stations in transactions, "
        f"{record['samples_per_message']} samples a message, {record['duration']:.0f} s)",
        ("server", "msg/s", "samples/s", "p50 ms", "p99 ms", "max ms", "errors", "CPU/msg us",
         "durable"),
    )  # fmt: skip
    for item in record["runs"]:
        name = item["server"]
        if "skipped" in item or "crashed" in item:
            reason = item.get("skipped") or item.get("crashed")
            table.add(name, "skipped" if "skipped" in item else "crashed", *[""] * 7)
            table.note(f"{name}: {reason}")
            continue
        latency = item.get("latency", {})
        rate = item.get("msg_per_s")
        durable = "-"
        if "all_acked_stored" in item:
            durable = (
                "yes" if item["all_acked_stored"] else "NO"
            ) + f" ({item['samples_stored']:,}/{item['samples_acked']:,})"
        table.add(
            name,
            number(rate, 0),
            number(None if rate is None else rate * record["samples_per_message"], 0),
            number(latency.get("p50_ms")),
            number(latency.get("p99_ms")),
            number(latency.get("max_ms")),
            error_count(item),
            number(item.get("server_cpu_us_per_msg"), 0),
            durable,
        )
        note_problems(table, name, item, record["stations"])
    table.note(
        f"ours/limit on SQLite: {number(record['cpms_vs_limit'], 2)} (target >= "
        f"{TARGET_VS_LIMIT}: {record['vs_limit']}); on PostgreSQL: "
        f"{number(record['cpms_pg_vs_limit'], 2)}; ours/ocpp-lib: "
        f"{number(record['cpms_vs_ocpp_lib'], 2)}"
    )
    return [table]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario; print the table and the JSON line; exit 0 unless it crashed."""
    return scenario_main("meter_values", argv, build_parser, run, tables)


if __name__ == "__main__":
    sys.exit(main())

"""Where a message's time goes in our node: SQL statements, commits and CPU per OCPP message.

Not a scenario with baselines but the diagnosis beside them (docs/PERFORMANCE.md, "What
limits our node"). It starts a node in this process (``cpms.runtime.Runtime``, SQLite in a
temporary directory, open admission), counts every SQL statement the node's engine executes
and every commit, and sends messages from one raw station (``bench.load.Link``) one at a
time, so each message's statements are its own:

- per action (BootNotification, Heartbeat, StatusNotification, StartTransaction, MeterValues,
  StopTransaction): statements and commits per message, CPU milliseconds per message (this
  process: the node plus one station, which costs ~0.05 ms a message);
- MeterValues late in a long transaction (after ``--long`` readings), to show whether a
  reading costs more as its session grows;
- every station at once (``--rounds`` times): Heartbeats, boots, MeterValues and status changes,
  to show what the group committer saves when messages share a transaction, and what such a
  message costs the node (the CPU per message the gateway scenarios' crowds cost it, without
  their load generator beside it: steadier from run to run, for comparing two versions).

Statement counts do not depend on how busy the machine is, so they compare across runs.
``python -m bench.anatomy [--messages 50] [--long 500] [--rounds 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.load import BOOT, Link, connect, meter_value, status
from bench.report import Table, number, scenario_main
from cpms import event_loop

__all__ = ["build_parser", "main", "run"]


class _Counter:
    """SQL statements by kind and commits, counted on a sync engine's events."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.commits = 0

    def attach(self, sync_engine: Any) -> None:
        event.listen(sync_engine, "before_cursor_execute", self._statement)
        event.listen(sync_engine, "commit", self._commit)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements[statement.lstrip().split(None, 1)[0].upper()] += 1

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def snapshot(self) -> tuple[int, int, Counter[str]]:
        return sum(self.statements.values()), self.commits, Counter(self.statements)


async def _measure(
    counter: _Counter,
    label: str,
    link: Link,
    action: str,
    payloads: Sequence[dict[str, Any]],
    answers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Send ``payloads`` one at a time; statements, commits and CPU per message."""
    before_total, before_commits, before_kinds = counter.snapshot()
    cpu, wall = time.process_time(), time.perf_counter()
    for payload in payloads:
        frame, _ = await link.call(action, payload)
        if frame[0] != 3:
            raise RuntimeError(f"{action} answered {frame}")
        if answers is not None:
            answers.append(frame[2])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total, commits, kinds = counter.snapshot()
    n = len(payloads)
    by_kind = {
        k: round((kinds[k] - before_kinds[k]) / n, 2) for k in kinds if kinds[k] != before_kinds[k]
    }
    return {
        "label": label,
        "messages": n,
        "statements_per_msg": round((total - before_total) / n, 2),
        "commits_per_msg": round((commits - before_commits) / n, 2),
        "by_kind": by_kind,
        "cpu_ms_per_msg": round(cpu / n * 1000, 2),
        "wall_ms_per_msg": round(wall / n * 1000, 2),
    }


async def _anatomy(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from cpms.admission import AdmissionPolicy
    from cpms.config import Settings
    from cpms.runtime import Runtime

    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{workdir / 'cpms.db'}",
        secret_key_file=str(workdir / "cpms.key"),
        ocpp_port=0,
        http_port=0,
        admin_token="bench-operator-token-0123456789",
        station_admission=AdmissionPolicy.OPEN,
        accept_unknown_tokens=True,
        log_level="WARNING",
    )
    runtime = Runtime(settings, node="bench-anatomy")
    await runtime.start()
    counter = _Counter()
    counter.attach(runtime.engine.sync_engine)
    url = f"ws://127.0.0.1:{runtime.ocpp_port}/ocpp"
    n = args.messages
    rows: list[dict[str, Any]] = []
    try:
        links = [await connect(url, f"ANAT-{k:03d}") for k in range(1, n + 1)]
        link = links[0]
        rows.append(
            await _measure(counter, "BootNotification", link, "BootNotification", [BOOT] * n)
        )
        rows.append(await _measure(counter, "Heartbeat", link, "Heartbeat", [{}] * n))
        states = [status(1, "Preparing" if i % 2 else "Available") for i in range(n)]
        label = "StatusNotification (a change)"
        rows.append(await _measure(counter, label, link, "StatusNotification", states))
        # Transactions: one per station, each started and stopped once.
        for station in links[1:]:
            await station.call("BootNotification", BOOT)
        answers: list[dict[str, Any]] = []
        start_rows = []
        for station in links:
            start = {"connectorId": 1, "idTag": "ANATOMY1", "meterStart": 0, "timestamp": _stamp()}
            start_rows.append(
                await _measure(
                    counter, "StartTransaction", station, "StartTransaction", [start], answers
                )
            )
        starts = [int(answer["transactionId"]) for answer in answers]
        rows.append(_merge("StartTransaction", start_rows))
        register = 0.0
        readings = []
        for _ in range(n):
            register += 3.0
            readings.append(meter_value(starts[0], register, _now(), 4))
            await asyncio.sleep(0.002)  # readings at distinct, increasing times
        label = "MeterValues (4 samples), readings 1..n"
        rows.append(await _measure(counter, label, link, "MeterValues", readings))
        for _ in range(args.long):
            register += 3.0
            await link.call("MeterValues", meter_value(starts[0], register, _now(), 4))
        late = []
        for _ in range(n):
            register += 3.0
            late.append(meter_value(starts[0], register, _now(), 4))
            await asyncio.sleep(0.002)
        label = f"MeterValues after {args.long + n} readings"
        rows.append(await _measure(counter, label, link, "MeterValues", late))
        # Many stations at once: the group committer shares transactions among them. The
        # node's CPU per message here is what the gateway scenarios' stations cost it.
        crowd = len(links)
        rows.append(
            await _at_once(
                counter,
                runtime,
                f"Heartbeat, {crowd} stations at once",
                lambda _round: [s.call("Heartbeat", {}) for s in links],
                rounds=1,
            )
        )
        rows.append(
            await _at_once(
                counter,
                runtime,
                f"BootNotification, {crowd} stations at once",
                lambda _round: [s.call("BootNotification", BOOT) for s in links],
                rounds=args.rounds,
            )
        )
        registers = [register] + [0.0] * (crowd - 1)

        def readings(_round: int) -> list[Awaitable[Any]]:
            now = _now()
            for k in range(crowd):
                registers[k] += 3.0
            return [
                s.call("MeterValues", meter_value(tx, registers[k], now, 4))
                for k, (s, tx) in enumerate(zip(links, starts, strict=True))
            ]

        label = f"MeterValues (4 samples), {crowd} stations at once"
        rows.append(await _at_once(counter, runtime, label, readings, rounds=args.rounds))
        rows.append(
            await _at_once(
                counter,
                runtime,
                f"StatusNotification (a change), {crowd} stations at once",
                lambda round_: [
                    s.call("StatusNotification", status(1, _CHARGING[round_ % 2])) for s in links
                ],
                rounds=args.rounds,
            )
        )
        stop_rows = []
        for station, tx in zip(links, starts, strict=True):
            stop = {
                "transactionId": tx,
                "meterStop": int(register) + 10,
                "timestamp": _stamp(),
                "reason": "Local",
            }
            stop_rows.append(
                await _measure(counter, "StopTransaction", station, "StopTransaction", [stop])
            )
        rows.append(_merge("StopTransaction (CDR issued)", stop_rows))
        rows.extend(await _transactions_at_once(counter, runtime, links, rounds=args.rounds))
        for station in links:
            station.close()
    finally:
        await runtime.stop()
    return {"messages": n, "rows": rows}


_CHARGING = ("SuspendedEV", "Charging")
"""Status changes a station in a transaction may report, one after the other."""


async def _at_once(
    counter: _Counter,
    runtime: Any,
    label: str,
    calls: Callable[[int], Sequence[Awaitable[Any]]],
    *,
    rounds: int,
) -> dict[str, Any]:
    """``rounds`` times, every call of ``calls(round)`` at once; per message, as ``_measure``."""
    before_total, before_commits, _ = counter.snapshot()
    batches_before = runtime.committer.batches
    messages = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for round_ in range(rounds):
        answers = await asyncio.gather(*calls(round_))
        messages += len(answers)
        refused = [frame for frame, _ in answers if frame[0] != 3]
        if refused:
            raise RuntimeError(f"{label}: answered {refused[0]}")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total, commits, _ = counter.snapshot()
    return {
        "label": label,
        "messages": messages,
        "statements_per_msg": round((total - before_total) / messages, 2),
        "commits_per_msg": round((commits - before_commits) / messages, 2),
        "by_kind": {},
        "cpu_ms_per_msg": round(cpu / messages * 1000, 3),
        "wall_ms_per_msg": round(wall / messages * 1000, 3),
        "batches": runtime.committer.batches - batches_before,
    }


async def _transactions_at_once(
    counter: _Counter, runtime: Any, links: Sequence[Link], *, rounds: int
) -> list[dict[str, Any]]:
    """Every station starts a transaction at once, then stops it at once, ``rounds`` times.

    What a reconnect storm's replays cost the node when they share transactions.
    """
    starts: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    for round_ in range(rounds):
        answers: list[dict[str, Any]] = []
        starts.append(await _at_once(counter, runtime, "", _starts(links, answers), rounds=1))
        ids = [answer["transactionId"] for answer in answers]
        stops.append(await _at_once(counter, runtime, "", _stops(links, ids, round_), rounds=1))
    crowd = len(links)
    return [
        _merge(f"StartTransaction, {crowd} stations at once", starts),
        _merge(f"StopTransaction (CDR issued), {crowd} stations at once", stops),
    ]


def _starts(
    links: Sequence[Link], answers: list[dict[str, Any]]
) -> Callable[[int], list[Awaitable[Any]]]:
    """Calls for ``_at_once``: a StartTransaction from every station, answers kept in order."""

    async def start(link: Link, index: int) -> Any:
        payload = {"connectorId": 1, "idTag": "ANATOMY1", "meterStart": 0, "timestamp": _stamp()}
        frame, latency = await link.call("StartTransaction", payload)
        answers[index] = frame[2]
        return frame, latency

    def calls(_round: int) -> list[Awaitable[Any]]:
        answers[:] = [{} for _ in links]
        return [start(link, index) for index, link in enumerate(links)]

    return calls


def _stops(
    links: Sequence[Link], transaction_ids: Sequence[int], round_: int
) -> Callable[[int], list[Awaitable[Any]]]:
    """Calls for ``_at_once``: every station stops its transaction of ``transaction_ids``."""

    def calls(_round: int) -> list[Awaitable[Any]]:
        return [
            link.call(
                "StopTransaction",
                {"transactionId": tx, "meterStop": 10 + round_, "timestamp": _stamp()},
            )
            for link, tx in zip(links, transaction_ids, strict=True)
        ]

    return calls


def _merge(label: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(r["messages"] for r in rows)
    kinds: Counter[str] = Counter()
    for r in rows:
        for kind, value in r["by_kind"].items():
            kinds[kind] += value * r["messages"]
    merged: dict[str, Any] = {
        "label": label,
        "messages": n,
        "statements_per_msg": round(
            sum(r["statements_per_msg"] * r["messages"] for r in rows) / n, 2
        ),
        "commits_per_msg": round(sum(r["commits_per_msg"] * r["messages"] for r in rows) / n, 2),
        "by_kind": {k: round(v / n, 2) for k, v in kinds.items()},
        "cpu_ms_per_msg": round(sum(r["cpu_ms_per_msg"] * r["messages"] for r in rows) / n, 2),
        "wall_ms_per_msg": round(sum(r["wall_ms_per_msg"] * r["messages"] for r in rows) / n, 2),
    }
    if all("batches" in r for r in rows):
        merged["batches"] = sum(r["batches"] for r in rows)
    return merged


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp() -> str:
    moment = _now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.anatomy``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.anatomy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--messages", type=int, default=50, help="messages per row (50)")
    parser.add_argument(
        "--long", type=int, default=500, help="readings before the late MeterValues row (500)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=40,
        help="rounds of the rows where every station sends at once (40)",
    )
    parser.add_argument("--quick", action="store_true", help="--messages 10 --long 50 --rounds 5")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure; the record of the run."""
    if args.quick:
        args.messages, args.long, args.rounds = 10, 50, 5
    with tempfile.TemporaryDirectory(prefix="cpms-bench-") as tmp:
        # On the node's own loop (uvloop where installed), as ``cpms serve`` runs.
        return event_loop.run(_anatomy(args, Path(tmp)))


def tables(record: dict[str, Any]) -> list[Table]:
    """One table: a row per kind of message."""
    table = Table(
        "Anatomy of a message in our node (one station, one message at a time, SQLite)",
        ("message", "n", "SQL/msg", "commits/msg", "CPU ms/msg", "wall ms/msg", "statements"),
    )
    for row in record["rows"]:
        kinds = ", ".join(f"{k} {v:g}" for k, v in sorted(row["by_kind"].items()))
        if "batches" in row:
            kinds = f"{row['batches']} group-commit batches"
        table.add(
            row["label"],
            row["messages"],
            number(row["statements_per_msg"]),
            number(row["commits_per_msg"], 2),
            number(row["cpu_ms_per_msg"], 2),
            number(row["wall_ms_per_msg"], 2),
            kinds,
        )
    table.note("CPU is this process's: the node and one station (the station costs ~0.05 ms).")
    return [table]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the diagnosis; print the table and the JSON line."""
    return scenario_main("anatomy", argv, build_parser, run, tables)


if __name__ == "__main__":
    sys.exit(main())

"""What a scenario prints: an aligned table for people, then one JSON line for tools.

Every scenario ends with ``emit``: the table, then a single line ``{"scenario": ..., ...}``
as the last line of its stdout, so ``python -m bench.X | tail -1`` is machine-readable.
Targets are judged here, in one way for all: ``met``, ``missed`` or ``n/a`` (not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Table",
    "add_common_arguments",
    "emit",
    "error_count",
    "judge",
    "machine",
    "mib",
    "note_problems",
    "number",
    "progress",
    "scenario_main",
]


def number(value: float | int | None, digits: int = 1) -> str:
    """A figure for the table: thousands separated, ``-`` when missing."""
    if value is None:
        return "-"
    if isinstance(value, int) or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def mib(value: int | None) -> float | None:
    """Bytes as MiB (one decimal), None stays None."""
    return None if value is None else round(value / 2**20, 1)


def judge(value: float | None, target: float, *, at_least: bool = True) -> str:
    """``met`` / ``missed`` against a target, ``n/a`` when the value is missing."""
    if value is None:
        return "n/a"
    ok = value >= target if at_least else value <= target
    return "met" if ok else "missed"


@dataclass
class Table:
    """Rows of text under a title and a header, aligned on print."""

    title: str
    header: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        widths = [len(h) for h in self.header]
        for row in self.rows:
            for index, cell in enumerate(row):
                widths[index] = max(widths[index], len(cell))

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()

        out = [self.title, "=" * len(self.title), line(self.header)]
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(row) for row in self.rows)
        if self.notes:
            out.append("")
            out.extend(self.notes)
        return "\n".join(out)


def machine() -> dict[str, Any]:
    """Where the run happened: CPUs, load average at the end, Python, platform."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "load_average": load,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def emit(scenario: str, tables: Sequence[Table], record: dict[str, Any]) -> None:
    """Print the tables, then the record as one JSON line (the last line of stdout)."""
    for table in tables:
        print(table.render())
        print()
    line = {"scenario": scenario, "machine": machine(), **record}
    print(json.dumps(line, separators=(",", ":"), default=str), flush=True)


def scenario_main(
    scenario: str,
    argv: Sequence[str] | None,
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    tables: Callable[[dict[str, Any]], Sequence[Table]],
) -> int:
    """A scenario's ``main``: parse, run, print tables and the JSON line; 0 unless it crashed."""
    record = run(build_parser().parse_args(argv))
    emit(scenario, tables(record), record)
    return 0


_started = time.monotonic()


def progress(text: str) -> None:
    """A progress line on stderr, with the seconds since the scenario started."""
    print(f"[{time.monotonic() - _started:6.1f}s] {text}", file=sys.stderr, flush=True)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick`` and ``--only``, shared by every scenario."""
    parser.add_argument(
        "--quick", action="store_true", help="a small, short run (smoke test, about 1 min)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SERVER",
        help="measure only these servers (limit, ocpp-lib, cpms, cpms-pg); repeatable",
    )


def note_problems(table: Table, label: str, item: dict[str, Any], stations: int) -> None:
    """Add what went wrong in one measured run to ``table``'s notes, one line per kind."""
    if item.get("ready") is not None and item["ready"] != stations:
        table.note(f"{label}: only {item['ready']:,} of {stations:,} stations were ready")
    if item.get("setup_errors"):
        table.note(f"{label}: stations not prepared: {item['setup_errors']}")
    if item.get("connect_retries"):
        table.note(f"{label}: handshakes retried during set-up: {item['connect_retries']}")
    if item.get("errors"):
        table.note(f"{label}: errors while measured: {item['errors']}")
    if item.get("server_died"):
        table.note(f"{label}: the server died: {item['server_died']}")
    if item.get("inspect_failed"):
        table.note(f"{label}: its database could not be read: {item['inspect_failed']}")


def error_count(item: dict[str, Any]) -> int:
    """Errors of one run: measured errors plus stations that could not be prepared."""
    return sum(item.get("errors", {}).values()) + sum(item.get("setup_errors", {}).values())

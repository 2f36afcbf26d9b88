"""End-to-end tests of `cpms sessions` and `cpms cdrs`, run the way an operator runs them.

The sessions are made on the test database by the core charging services, as a station's
messages make them (``start_transaction``, ``record_meter_values``, ``stop_transaction``),
priced by official OCPI tariff examples. Then ``cpms.cli.main`` (what the ``cpms`` console
script runs) lists, shows and closes sessions and lists, shows and credits CDRs; one test runs
the real ``python -m cpms`` process to pin exactly what a person sees. Amounts are priced by
hand in the tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from charging_support import start_decided, stop_decided

from cpms.authorization import Authorizer, Operator
from cpms.charging import (
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartRequest,
    StopRequest,
    record_meter_values,
)
from cpms.cli import main
from cpms.database import create_engine, prepare_schema
from cpms.locations import assign_tariffs, import_locations
from cpms.station_lifecycle import StatusReport, record_status
from cpms.stations import create_station
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from conftest import TIME_UNIT

PROCESS_TIMEOUT = 30 * TIME_UNIT
"""Seconds one real `cpms` process may take."""
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"
T = TypeVar("T")


@dataclass
class Outcome:
    """What one `cpms` command did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def refusal(self) -> str:
        """The one-line refusal message of a command that exited with 1."""
        assert self.code == 1, (self.out, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("cpms: "), self.err
        return lines[0]


Cpms = Callable[..., Outcome]


@pytest.fixture
def cpms(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cpms:
    """Run ``cpms ARGS`` in this process on the test database; return its ``Outcome``."""
    for key in list(os.environ):
        if key.startswith("CPMS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CPMS_DATABASE_URL", database_url)

    def run(*argv: str) -> Outcome:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse: --help, usage errors
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


# The site and its sessions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Charged:
    """Three sessions at LOC1 on station CP1 (see ``_charge``)."""

    energy: str
    timed: str
    open: str


async def _charge(database_url: str, examples_dir: Path) -> Charged:
    """Build the site and charge there; the CLI then finds everything in the database.

    EVSE 1 is priced by official tariff "17" (FLAT 0.50 at 20 % VAT, 0.25/kWh at 10 % VAT),
    EVSE 2 by tariff "12" (2.00/h at 10 % VAT, step_size 60 s), EVSE 3 by none.

    - ``energy``: EVSE 1, 12:00 to 13:00, 1000 -> 6000 -> 11000 Wh (10 kWh).
    - ``timed``: EVSE 2, 12:10 to 12:40:30 (1830 s), 0 -> 2000 Wh.
    - ``open``: EVSE 3 from 12:20, 500 -> 1500 Wh at 12:50, never stopped.
    """
    engine = create_engine(database_url)
    await prepare_schema(engine)
    uow = UnitOfWorkFactory(engine)
    authorizer = Authorizer(Operator("NL", "CPM"))

    async def run(work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        async with uow() as unit:
            result = await work(unit)
            await unit.commit()
        return result

    async def start(evse: int, at: datetime, wh: int) -> tuple[str, str]:
        request = StartRequest(evse, TAG, Decimal(wh), received_at=at, station_time=at)
        outcome = await run(lambda u: start_decided(u, "CP1", request, authorizer))
        return outcome.session_id, outcome.transaction_id

    async def meter(transaction_id: str, evse: int, at: datetime, wh: int) -> None:
        sample = Sample(ENERGY_REGISTER, Decimal(wh), Decimal(wh), unit="Wh")
        report = MeterReport(evse, at, (MeterValue(at, (sample,)),), transaction_id)
        await run(lambda u: record_meter_values(u, "CP1", report))

    async def stop(transaction_id: str, at: datetime, wh: int) -> None:
        request = StopRequest(transaction_id, at, Decimal(wh), at)
        await run(lambda u: stop_decided(u, "CP1", request, authorizer))

    try:
        location = json.loads((examples_dir / "location_example.json").read_text("utf-8"))
        await import_locations(uow(), [location])
        await create_station(uow(), "CP1", location_id="LOC1")
        for number in (1, 2, 3):
            report = StatusReport(evse_number=number, status="AVAILABLE", received_at=T0)
            await run(lambda u, r=report: record_status(u, "CP1", r))
        names = ["tariff_9_025kwh_start.json", "tariff_1_simple_2hour.json"]
        await import_tariffs(uow(), [json.loads((examples_dir / n).read_text()) for n in names])
        await assign_tariffs(uow(), "LOC1", "CP1-1", "1", ["17"])
        await assign_tariffs(uow(), "LOC1", "CP1-2", "1", ["12"])
        await create_token(uow(), {"uid": TAG}, country_code="NL", party_id="CPM")

        energy, tx = await start(1, T0, 1000)
        await meter(tx, 1, T0 + timedelta(minutes=30), 6000)
        await stop(tx, T0 + timedelta(minutes=60), 11000)
        timed, tx = await start(2, T0 + timedelta(minutes=10), 0)
        await stop(tx, T0 + timedelta(minutes=40, seconds=30), 2000)
        still_open, tx = await start(3, T0 + timedelta(minutes=20), 500)
        await meter(tx, 3, T0 + timedelta(minutes=50), 1500)
    finally:
        await engine.dispose()
    return Charged(energy, timed, still_open)


@pytest.fixture
def charged(database_url: str, examples_dir: Path) -> Charged:
    """The sessions of ``_charge``, on the test database."""
    return asyncio.run(_charge(database_url, examples_dir))


def cdr_of(cpms: Cpms, session_id: str) -> str:
    """The id of the CDR standing for a session."""
    cdr_id = cpms("sessions", "show", session_id, "--json").json()["cdr_id"]
    assert cdr_id, session_id
    return str(cdr_id)


# Sessions -------------------------------------------------------------------------------------


def test_sessions_list_prints_one_line_per_session_oldest_start_first(
    cpms: Cpms, charged: Charged
) -> None:
    listed = cpms("sessions", "list")

    assert listed.code == 0, listed.err
    assert listed.out.splitlines() == [
        f"{charged.energy}\tCOMPLETED\tCP1\t2025-03-01T12:00:00Z\t10 kWh",
        f"{charged.timed}\tCOMPLETED\tCP1\t2025-03-01T12:10:00Z\t2 kWh",
        f"{charged.open}\tACTIVE\tCP1\t2025-03-01T12:20:00Z\t1 kWh",
    ]
    assert "3 of 3" in listed.err


def test_sessions_list_filters_and_pages(cpms: Cpms, charged: Charged) -> None:
    def ids(*argv: str) -> list[str]:
        page = cpms("sessions", "list", *argv, "--json").json()
        return [item["id"] for item in page["items"]]

    assert ids("--status", "COMPLETED") == [charged.energy, charged.timed]
    assert ids("--status", "ACTIVE") == [charged.open]
    assert ids("--station", "CP1") == [charged.energy, charged.timed, charged.open]
    assert ids("--station", "CP9") == []
    assert ids("--location", "LOC1", "--status", "ACTIVE") == [charged.open]
    assert ids("--limit", "1") == [charged.energy]
    assert ids("--limit", "1", "--offset", "2") == [charged.open]
    page = cpms("sessions", "list", "--limit", "2").err
    assert "2 of 3" in page


def test_sessions_list_refuses_an_unknown_status_as_usage(cpms: Cpms, charged: Charged) -> None:
    outcome = cpms("sessions", "list", "--status", "FINISHED")
    assert outcome.code == 2
    assert "--status" in outcome.err


def test_sessions_show_prints_the_session_with_its_cost(cpms: Cpms, charged: Charged) -> None:
    shown = cpms("sessions", "show", charged.energy)

    session = shown.json()  # without --json: indented JSON, as every show verb prints
    assert shown.out.startswith("{\n")
    assert session["kwh"] == 10.0
    # By hand: 0.50 + 10 x 0.25 = 3.00 excl. VAT; 0.60 + 2.75 = 3.35 incl. VAT.
    assert session["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.35}
    assert session["status"] == "COMPLETED"
    assert session["charging_periods"][0]["tariff_id"] == "17"


def test_showing_an_unknown_session_is_refused(cpms: Cpms, charged: Charged) -> None:
    assert cpms("sessions", "show", "NOPE").refusal() == "cpms: session 'NOPE' not found"


def test_sessions_close_ends_an_open_session_with_a_cdr_saying_so(
    cpms: Cpms, charged: Charged
) -> None:
    closed = cpms("sessions", "close", charged.open, "--note", "station replaced", "--json")

    session = closed.json()
    assert session["status"] == "COMPLETED"
    assert session["end_date_time"] == "2025-03-01T12:50:00Z"  # its last trusted reading
    assert session["flags"] == ["closed_by_operator"]
    assert session["stop_reason"] == "ClosedByOperator"
    assert session["cdr_id"]
    shown = cpms("cdrs", "show", session["cdr_id"])
    assert shown.code == 0, shown.err
    assert "  remark    closed by the operator; ends at the last trusted reading" in (
        shown.out.splitlines()
    )
    flagged = cpms("sessions", "list", "--flag", "closed_by_operator", "--json").json()
    assert [item["id"] for item in flagged["items"]] == [charged.open]
    log = cpms("stations", "events", "CP1", "--kind", "session_closed", "--json").json()
    assert [entry["details"]["note"] for entry in log["items"]] == ["station replaced"]


def test_closing_a_session_that_ended_or_does_not_exist_is_refused(
    cpms: Cpms, charged: Charged
) -> None:
    assert "has ended already" in cpms("sessions", "close", charged.energy).refusal()
    assert cpms("sessions", "close", "NOPE").refusal() == "cpms: session 'NOPE' not found"
    assert cpms("cdrs", "list", "--session", charged.energy, "--json").json()["total"] == 1


# CDRs -----------------------------------------------------------------------------------------


def test_cdrs_list_prints_id_session_and_total(cpms: Cpms, charged: Charged) -> None:
    energy, timed = cdr_of(cpms, charged.energy), cdr_of(cpms, charged.timed)

    listed = cpms("cdrs", "list")

    assert listed.code == 0, listed.err
    # Oldest first: timed stopped at 12:40:30, energy at 13:00.
    assert listed.out.splitlines() == [
        f"{timed}\t{charged.timed}\t1.03 excl. VAT, 1.14 incl. VAT EUR",
        f"{energy}\t{charged.energy}\t3.00 excl. VAT, 3.35 incl. VAT EUR",
    ]
    assert "2 of 2" in listed.err
    only = cpms("cdrs", "list", "--session", charged.timed, "--json").json()
    assert [item["id"] for item in only["items"]] == [timed]


def test_cdrs_show_prints_the_header_then_the_explanation(cpms: Cpms, charged: Charged) -> None:
    cdr_id = cdr_of(cpms, charged.energy)

    shown = cpms("cdrs", "show", cdr_id)

    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == f"CDR {cdr_id}"
    header = lines[: lines.index("explanation:")]
    assert f"  session   {charged.energy}" in header
    assert "  period    2025-03-01T12:00:00Z to 2025-03-01T13:00:00Z" in header
    assert f"  token     {TAG} (RFID, contract NL-CPM-{TAG})" in header
    assert any(line.startswith("  location  LOC1 Gent Zuid, EVSE CP1-1") for line in header)
    assert "  energy    10 kWh in 1 h" in header
    # By hand: FLAT 0.50 + 10 kWh x 0.25 = 3.00; incl. VAT 0.60 + 2.75 = 3.35.
    assert "  total     3.00 excl. VAT, 3.35 incl. VAT EUR" in header
    assert "    fixed       0.50 excl. VAT, 0.60 incl. VAT EUR" in header
    assert "    energy      2.50 excl. VAT, 2.75 incl. VAT EUR" in header
    explanation = lines[lines.index("explanation:") + 1 :]
    assert len(explanation) == 3, explanation
    energy_line = next(line for line in explanation if "ENERGY" in line)
    assert energy_line.startswith("  period 1: ENERGY 10 kWh x 0.25 EUR/kWh")
    assert "element 1" in energy_line
    assert "VAT 10%" in energy_line
    flat_line = next(line for line in explanation if "FLAT" in line)
    assert "once" in flat_line
    assert "VAT 20%" in flat_line
    assert explanation[-1].endswith("rounded once half-up to 3.00 / 3.35 EUR")


def test_cdrs_show_explains_the_step_size_rounding(cpms: Cpms, charged: Charged) -> None:
    shown = cpms("cdrs", "show", cdr_of(cpms, charged.timed))

    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    # By hand: 1830 s rounded up to 1860 s = 31 min; 31/60 h x 2.00 = 1.033 -> 1.03 excl.
    # VAT, x 1.1 = 1.137 -> 1.14 incl. VAT.
    assert "  total     1.03 excl. VAT, 1.14 incl. VAT EUR" in lines
    assert "    time        1.03 excl. VAT, 1.14 incl. VAT EUR" in lines
    steps = [line for line in lines if "step_size" in line]
    assert len(steps) == 1, lines
    assert "step_size 60 s: TIME total 1830 s rounded up to 1860 s" in steps[0]


def test_cdrs_show_json_prints_the_document_with_its_explanation(
    cpms: Cpms, charged: Charged
) -> None:
    cdr_id = cdr_of(cpms, charged.energy)

    shown = cpms("cdrs", "show", cdr_id, "--json").json()

    assert shown["id"] == cdr_id
    assert shown["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.35}
    assert shown["total_energy"] == 10.0
    assert len(shown["explanation"]) == 3
    assert shown["explanation"][-1].endswith("3.00 / 3.35 EUR")


def test_showing_an_unknown_cdr_is_refused(cpms: Cpms, charged: Charged) -> None:
    assert cpms("cdrs", "show", "NOPE").refusal() == "cpms: cdr 'NOPE' not found"


def test_cdrs_credit_negates_the_cdr_and_with_reissue_issues_a_new_one(
    cpms: Cpms, charged: Charged
) -> None:
    original = cdr_of(cpms, charged.energy)

    answer = cpms(
        "cdrs", "credit", original, "--reason", "wrong meter", "--reissue", "--json"
    ).json()

    credit, replacement = answer["credit"], answer["replacement"]
    assert credit["id"] == f"{original}-C"
    assert credit["credit_reference_id"] == original
    assert credit["remark"] == "wrong meter"
    assert credit["total_cost"] == {"excl_vat": -3.0, "incl_vat": -3.35}
    assert replacement["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.35}
    assert cdr_of(cpms, charged.energy) == replacement["id"]
    listed = cpms("cdrs", "list", "--session", charged.energy).out.splitlines()
    assert listed[0] == f"{original}\t{charged.energy}\t3.00 excl. VAT, 3.35 incl. VAT EUR"
    # The credit and the new CDR are issued at one moment, so their order is by id.
    assert sorted(listed[1:]) == sorted(
        [
            f"{credit['id']}\t{charged.energy}\t-3.00 excl. VAT, -3.35 incl. VAT EUR"
            f"\tcredit of {original}",
            f"{replacement['id']}\t{charged.energy}\t3.00 excl. VAT, 3.35 incl. VAT EUR",
        ]
    )
    shown = cpms("cdrs", "show", credit["id"]).out.splitlines()
    assert shown[0] == f"CDR {credit['id']} (credit of CDR {original})"
    assert any("wrong meter" in line for line in shown[shown.index("explanation:") :])


def test_cdrs_credit_without_reissue_leaves_the_session_without_a_cdr(
    cpms: Cpms, charged: Charged
) -> None:
    original = cdr_of(cpms, charged.timed)

    answer = cpms("cdrs", "credit", original, "--reason", "goodwill", "--json").json()

    assert answer["replacement"] is None
    assert answer["credit"]["total_cost"] == {"excl_vat": -1.03, "incl_vat": -1.14}
    assert cpms("sessions", "show", charged.timed, "--json").json()["cdr_id"] is None


def test_a_cdr_is_credited_once_and_a_credit_never(cpms: Cpms, charged: Charged) -> None:
    original = cdr_of(cpms, charged.energy)
    assert cpms("cdrs", "credit", original, "--reason", "first").code == 0

    assert "credited already" in cpms("cdrs", "credit", original, "--reason", "again").refusal()
    refused = cpms("cdrs", "credit", f"{original}-C", "--reason", "x").refusal()
    assert "is a credit CDR" in refused
    assert cpms("cdrs", "list", "--json").json()["total"] == 3  # 2 CDRs, 1 credit


def test_a_credit_needs_a_reason(cpms: Cpms, charged: Charged) -> None:
    original = cdr_of(cpms, charged.energy)

    missing = cpms("cdrs", "credit", original)
    assert missing.code == 2
    assert "--reason" in missing.err
    assert "needs a reason" in cpms("cdrs", "credit", original, "--reason", " ").refusal()
    assert cpms("cdrs", "list", "--json").json()["total"] == 2


# Help -----------------------------------------------------------------------------------------


def test_help_lists_the_session_and_cdr_verbs(cpms: Cpms) -> None:
    top = cpms("--help")
    assert top.code == 0
    assert "sessions" in top.out
    assert "cdrs" in top.out
    sessions = cpms("sessions", "--help")
    for verb in ("list", "show", "close"):
        assert verb in sessions.out
    cdrs = cpms("cdrs", "--help")
    for verb in ("list", "show", "credit"):
        assert verb in cdrs.out
    show = cpms("cdrs", "show", "--help")
    assert show.code == 0
    assert "explanation" in show.out
    assert "CPMS_DATABASE_URL" in show.out
    credit = cpms("cdrs", "credit", "--help")
    assert "--reason" in credit.out
    assert "--reissue" in credit.out


# The real process -----------------------------------------------------------------------------


def test_the_real_command_shows_a_cdr_and_nothing_else(
    database_url: str, tmp_path: Path, cpms: Cpms, charged: Charged
) -> None:
    cdr_id = cdr_of(cpms, charged.energy)
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    env["CPMS_DATABASE_URL"] = database_url

    result = subprocess.run(
        [sys.executable, "-m", "cpms", "cdrs", "show", cdr_id],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"CDR {cdr_id}"
    assert "  total     3.00 excl. VAT, 3.35 incl. VAT EUR" in lines
    assert lines[-1].endswith("rounded once half-up to 3.00 / 3.35 EUR")

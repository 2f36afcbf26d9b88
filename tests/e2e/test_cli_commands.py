"""End-to-end tests of `cpms stations approve`, `cpms stations events` and `cpms stations command`.

Each test runs the real ``cpms`` console script (the one ``pip install`` put beside the
interpreter) as a child process with a clean environment (no inherited ``CPMS_*`` variable),
on the ``database_url`` fixture's database. A ``Runtime`` runs in this process on the same
database, with a ``raw_station`` connected to it: ``approve`` and ``events`` work on the
database directly, ``command`` reaches the running server over its operator API (``--url`` /
``CPMS_HTTP_PORT``) while the raw station answers the CALL it is sent. Checked: what is printed,
on which stream, and the exit codes (0 done, 1 refused, 2 usage).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from raw_station import STEP, RawStation, raw_station

from cpms.admission import AdmissionPolicy
from cpms.config import Settings
from cpms.locations import ensure_default_location
from cpms.runtime import Runtime, default_location
from cpms.stations import create_station

from support import ADMIN_TOKEN, TIME_UNIT

PROCESS_TIMEOUT = 30 * TIME_UNIT
"""Seconds one real `cpms` process may take."""
CPMS = Path(sys.executable).parent / "cpms"
"""The console script of this environment."""
STATION = "CP1"


@dataclass
class Outcome:
    """What one `cpms` process did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, (self.out, self.err)
        return json.loads(self.out)

    def refusal(self, code: int = 1) -> str:
        """The one-line message of a command that exited with ``code``."""
        assert self.code == code, (self.code, self.out, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("cpms: "), self.err
        return lines[0]


Cli = Callable[..., Awaitable[Outcome]]


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    """Run ``cpms ARGS`` as a child process on the test database; return its ``Outcome``.

    Keyword arguments are extra environment variables; ``stdin`` is fed to the process.
    """
    if not CPMS.is_file():
        pytest.fail(f"the cpms console script is not installed at {CPMS} (pip install -e .)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    env["CPMS_DATABASE_URL"] = database_url

    async def run(*argv: str, stdin: str | None = None, **variables: str) -> Outcome:
        process = await asyncio.create_subprocess_exec(
            str(CPMS), *argv,
            cwd=tmp_path, env=env | variables,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None),
                PROCESS_TIMEOUT,
            )
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode is not None
        return Outcome(process.returncode, out.decode(), err.decode())

    return run


async def add_station(runtime: Runtime, station_id: str = STATION) -> None:
    """Create ``station_id`` at the default location, as an operator would."""
    async with runtime.uow() as unit:
        await ensure_default_location(unit, default_location(runtime.settings))
        await unit.commit()
    await create_station(
        runtime.uow(), station_id, location_id=runtime.settings.default_location_id
    )


@pytest.fixture
async def booted(runtime: Runtime) -> AsyncIterator[RawStation]:
    """CP1, created by the operator, connected to the runtime over OCPP 1.6 and booted."""
    await add_station(runtime)
    async with raw_station(runtime.ocpp_port, STATION) as station:
        assert (await station.boot())["status"] == "Accepted"
        yield station


@pytest.fixture
async def pending_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A started node whose unknown stations register on connect and wait in Pending."""
    node = Runtime(settings.replace(station_admission=AdmissionPolicy.PENDING), node="test-node")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def on(runtime: Runtime) -> tuple[str, ...]:
    """The flags that point `cpms stations command` at ``runtime``."""
    return ("--url", runtime.base_url(), "--token", ADMIN_TOKEN)


async def answered(
    station: RawStation, answer: Callable[[list[Any]], Awaitable[None]], running: Awaitable[Outcome]
) -> tuple[Outcome, list[Any]]:
    """Run a `cpms` process while ``station`` answers the next CALL; return both."""

    async def answer_next() -> list[Any]:
        frame = await station.next_call(timeout=PROCESS_TIMEOUT)
        await answer(frame)
        return frame

    answering = asyncio.create_task(answer_next())
    try:
        outcome = await running
        frame = await asyncio.wait_for(answering, STEP)
    finally:
        answering.cancel()
    return outcome, frame


def reply_with(station: RawStation, payload: dict[str, Any]) -> Callable[[list[Any]], Any]:
    """An answer: a CALLRESULT with ``payload``."""

    async def reply(frame: list[Any]) -> None:
        await station.reply(frame[1], payload)

    return reply


# --------------------------------------------------------------------------- stations command


async def test_command_prints_the_station_answer_and_exits_0(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    outcome, frame = await answered(
        booted,
        reply_with(booted, {"status": "Accepted"}),
        cli("stations", "command", STATION, "Reset", '{"type": "Soft"}', *on(runtime)),
    )
    assert outcome.json() == {"status": "Accepted"}
    assert outcome.err == ""
    assert frame[2:] == ["Reset", {"type": "Soft"}]


async def test_command_reads_its_arguments_from_stdin_and_prints_the_whole_answer_with_json(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    outcome, frame = await answered(
        booted,
        reply_with(booted, {"status": "Accepted"}),
        cli(
            "stations", "command", STATION, "RemoteStartTransaction", "-", "--json", *on(runtime),
            stdin='{"connectorId": 1, "idTag": "ABC123"}',
        ),
    )  # fmt: skip
    assert outcome.json() == {
        "command": "RemoteStartTransaction",
        "status": "answered",
        "response": {"status": "Accepted"},
        "problems": [],
    }
    assert len(outcome.out.strip().splitlines()) == 1, "--json prints one line"
    assert frame[2:] == ["RemoteStartTransaction", {"connectorId": 1, "idTag": "ABC123"}]


async def test_command_finds_the_server_and_token_in_the_environment(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    outcome, frame = await answered(
        booted,
        reply_with(booted, {"status": "Accepted"}),
        cli(
            "stations", "command", STATION, "ClearCache",
            CPMS_HTTP_PORT=str(runtime.http_port), CPMS_ADMIN_TOKEN=ADMIN_TOKEN,
        ),
    )  # fmt: skip
    assert outcome.json() == {"status": "Accepted"}
    assert frame[2:] == ["ClearCache", {}]


async def test_a_callerror_answer_is_refused_with_exit_1(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    async def refuse(frame: list[Any]) -> None:
        await booted.send_text(json.dumps([4, frame[1], "NotSupported", "nope", {}]))

    outcome, frame = await answered(
        booted,
        refuse,
        cli("stations", "command", STATION, "UnlockConnector", '{"connectorId": 1}', *on(runtime)),
    )
    message = outcome.refusal()
    assert "UnlockConnector" in message
    assert "NotSupported: nope" in message
    assert outcome.out == ""
    assert frame[2] == "UnlockConnector"


async def test_a_silent_station_is_refused_with_exit_1_after_the_timeout(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    async def stay_silent(frame: list[Any]) -> None:
        return None

    outcome, frame = await answered(
        booted,
        stay_silent,
        cli(
            "stations", "command", STATION, "Reset", '{"type": "Hard"}',
            "--timeout", f"{0.5 * TIME_UNIT}", *on(runtime),
        ),
    )  # fmt: skip
    assert "did not answer Reset" in outcome.refusal()
    assert frame[2:] == ["Reset", {"type": "Hard"}]


async def test_commands_the_server_refuses_exit_1_with_its_reason(
    cli: Cli, runtime: Runtime
) -> None:
    await add_station(runtime)
    offline = await cli("stations", "command", STATION, "Reset", '{"type": "Soft"}', *on(runtime))
    assert "not connected" in offline.refusal()
    async with raw_station(runtime.ocpp_port, STATION) as station:
        assert (await station.boot())["status"] == "Accepted"
        bad = await cli("stations", "command", STATION, "Reset", '{"type": "Medium"}', *on(runtime))
        message = bad.refusal()
        assert "Reset arguments do not fit" in message
        assert "Medium" in message
        unknown = await cli("stations", "command", STATION, "Rest", *on(runtime))
        message = unknown.refusal()
        assert "'Rest'" in message
        assert "Reset" in message
        assert station.incoming_calls.empty()
    nobody = await cli("stations", "command", "NOPE", "Reset", '{"type": "Soft"}', *on(runtime))
    assert "NOPE" in nobody.refusal()


async def test_command_without_a_token_or_with_a_wrong_one_is_a_usage_error(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    missing = await cli("stations", "command", STATION, "ClearCache", "--url", runtime.base_url())
    message = missing.refusal(code=2)
    assert "--token" in message
    assert "CPMS_ADMIN_TOKEN" in message
    wrong = await cli(
        "stations", "command", STATION, "ClearCache", "--url", runtime.base_url(),
        CPMS_ADMIN_TOKEN="not-the-token",
    )  # fmt: skip
    assert "token" in wrong.refusal(code=2)
    assert booted.incoming_calls.empty()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("{",), "not valid JSON"),
        (('["Soft"]',), "must be a JSON object"),
        (("{}", "--timeout", "0"), "--timeout"),
        (("{}", "--timeout", "301"), "--timeout"),
    ],
)
async def test_command_with_bad_arguments_is_a_usage_error(
    cli: Cli, runtime: Runtime, booted: RawStation, arguments: tuple[str, ...], expected: str
) -> None:
    outcome = await cli("stations", "command", STATION, "Reset", *arguments, *on(runtime))
    assert outcome.code == 2, outcome
    assert expected in outcome.err
    assert outcome.out == ""
    assert booted.incoming_calls.empty()


async def test_command_when_no_server_listens_exits_1_and_says_so(cli: Cli) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        outcome = await cli(
            "stations", "command", STATION, "Reset", '{"type": "Soft"}',
            "--url", f"http://127.0.0.1:{port}", "--token", ADMIN_TOKEN,
        )  # fmt: skip
    message = outcome.refusal()
    assert "cannot reach the server" in message
    assert "cpms serve" in message


async def test_command_help_explains_the_server_the_token_and_the_exit_codes(cli: Cli) -> None:
    outcome = await cli("stations", "command", "--help")
    assert outcome.code == 0, outcome.err
    for text in ("CPMS_ADMIN_TOKEN", "--url", "--timeout", "cpms serve", "exit codes", "Reset"):
        assert text in outcome.out, text


# --------------------------------------------------------------------------- stations events


async def test_events_show_the_commands_sent_newest_first(
    cli: Cli, runtime: Runtime, booted: RawStation
) -> None:
    for payload, answer in (({"type": "Soft"}, "Accepted"), ({"type": "Hard"}, "Rejected")):
        outcome, _ = await answered(
            booted,
            reply_with(booted, {"status": answer}),
            cli("stations", "command", STATION, "Reset", json.dumps(payload), *on(runtime)),
        )
        assert outcome.json() == {"status": answer}

    page = (await cli("stations", "events", STATION, "--kind", "command", "--json")).json()
    assert page["total"] == 2
    hard, soft = page["items"]
    assert hard["details"] == {"command": "Reset", "arguments": {"type": "Hard"}}
    assert soft["details"] == {"command": "Reset", "arguments": {"type": "Soft"}}
    assert "Rejected" in hard["summary"]
    assert "Accepted" in soft["summary"]

    shown = await cli("stations", "events", STATION, "--kind", "command", "--limit", "1")
    assert shown.code == 0, shown.err
    (line,) = shown.out.strip().splitlines()
    assert line.split("\t") == [hard["received_at"], "command", hard["summary"]]
    assert "1 of 2" in shown.err


async def test_events_of_an_unknown_station_are_refused_with_exit_1(
    cli: Cli, runtime: Runtime
) -> None:
    assert "NOPE" in (await cli("stations", "events", "NOPE")).refusal()


# --------------------------------------------------------------------------- stations approve


async def test_approve_lets_a_pending_station_boot_accepted(
    cli: Cli, pending_runtime: Runtime
) -> None:
    async with raw_station(pending_runtime.ocpp_port, "NEW1") as station:
        assert (await station.boot())["status"] == "Pending"
        before = (await cli("stations", "show", "NEW1", "--json")).json()
        assert (before["approved"], before["boot_status"]) == (False, "Pending")

        approved = (await cli("stations", "approve", "NEW1", "--json")).json()
        assert approved["id"] == "NEW1"
        assert approved["approved"] is True

        assert (await station.boot())["status"] == "Accepted"
        after = (await cli("stations", "show", "NEW1", "--json")).json()
        assert (after["approved"], after["boot_status"]) == (True, "Accepted")


async def test_approve_of_an_unknown_station_is_refused_with_exit_1(
    cli: Cli, runtime: Runtime
) -> None:
    assert "NOPE" in (await cli("stations", "approve", "NOPE")).refusal()

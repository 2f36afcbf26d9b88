"""End-to-end tests of `cpms serve`: the real process, started the way an operator starts it.

Each test runs ``python -m cpms serve`` in a temporary working directory with a clean
environment (no inherited ``CPMS_*`` variable), on free loopback ports and on the database of
the ``database_url`` fixture, then talks to it over the wire only: HTTP for the OCPI and
operator APIs, websockets for stations, signals for shutdown. Readiness is polled on
``/api/health``. Every wait is bounded (scaled by ``TIME_UNIT``) and every process is killed
in a ``finally``, whatever the test did.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from conftest import TIME_UNIT

READY_TIMEOUT = 20 * TIME_UNIT
"""Seconds a server may take from exec to a healthy ``/api/health``."""
STEP = 5 * TIME_UNIT
"""Seconds any single step may take: one request, one handshake, an exit after a signal."""
ADMIN_TOKEN = "e2e-operator-token-0123456789"
PASSWORD = "correct-horse-battery"


# Helpers -------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(database_url: str, **settings: str | None) -> dict[str, str]:
    """The environment of a child: ours minus every CPMS_* variable, plus ``settings``.

    ``settings`` maps variable names to values; ``None`` leaves the variable unset.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    env["CPMS_DATABASE_URL"] = database_url
    env.update({key: value for key, value in settings.items() if value is not None})
    return env


def basic_auth(username: str, password: str) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    """An operator API ``Authorization`` header."""
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    """A running ``cpms serve`` child process and where it listens."""

    process: asyncio.subprocess.Process
    http_port: int
    ocpp_port: int
    stdout_path: Path
    stderr_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def ws_url(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp/{station_id}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and return the exit code; fail if it takes longer than ``STEP``."""
        self.process.send_signal(signum)
        try:
            return await asyncio.wait_for(self.process.wait(), STEP)
        except TimeoutError:
            pytest.fail(f"cpms serve still running {STEP:.0f} s after signal {signum}")


async def spawn(
    workdir: Path, env: Mapping[str, str], args: Sequence[str] = (), *, name: str = "serve"
) -> tuple[asyncio.subprocess.Process, Path, Path]:
    """Start ``python -m cpms serve ARGS`` in ``workdir``; its output goes to files there."""
    stdout_path, stderr_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cpms", "serve", *args,
            cwd=workdir, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        )  # fmt: skip
    return process, stdout_path, stderr_path


async def wait_ready(server: Server, http: aiohttp.ClientSession) -> dict[str, Any]:
    """Poll ``/api/health`` until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.returncode is not None:
            pytest.fail(
                f"cpms serve exited with {server.process.returncode} before it was ready:\n"
                f"{server.stderr()[-3000:]}"
            )
        try:
            async with http.get(
                server.url("/api/health"), timeout=aiohttp.ClientTimeout(total=STEP)
            ) as response:
                last = f"{response.status} {await response.text()}"
                if response.status == 200:
                    return json.loads(last.split(" ", 1)[1])
        except (aiohttp.ClientError, TimeoutError) as error:
            last = repr(error)
        await asyncio.sleep(0.1)
    pytest.fail(f"cpms serve not healthy after {READY_TIMEOUT:.0f} s (last: {last})")


@contextlib.asynccontextmanager
async def running(
    workdir: Path,
    env: Mapping[str, str],
    http: aiohttp.ClientSession,
    *,
    http_port: int,
    ocpp_port: int,
    args: Sequence[str] = (),
    name: str = "serve",
) -> AsyncIterator[Server]:
    """Run a server until the block ends; kill it then if it still runs."""
    process, stdout_path, stderr_path = await spawn(workdir, env, args, name=name)
    server = Server(process, http_port, ocpp_port, stdout_path, stderr_path)
    try:
        await wait_ready(server, http)
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose every request is bounded by ``STEP``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP)) as session:
        yield session


@contextlib.asynccontextmanager
async def node_with(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession, **settings: str
) -> AsyncIterator[Server]:
    """A server on free ports with a known operator token and these ``CPMS_*`` settings."""
    http_port, ocpp_port = free_port(), free_port()
    env = child_env(
        database_url,
        CPMS_HTTP_PORT=str(http_port),
        CPMS_OCPP_PORT=str(ocpp_port),
        CPMS_ADMIN_TOKEN=ADMIN_TOKEN,
        **settings,
    )
    async with running(tmp_path, env, http, http_port=http_port, ocpp_port=ocpp_port) as node:
        yield node


@pytest.fixture
async def server(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> AsyncIterator[Server]:
    """A server with a known operator token and the `known` admission policy (the default)."""
    async with node_with(tmp_path, database_url, http) as node:
        yield node


def station(url: str, version: str = "ocpp1.6", **kwargs: Any) -> Any:
    """Open a station websocket (use as ``async with``); the handshake is bounded by STEP."""
    return connect(url, subprotocols=[Subprotocol(version)], open_timeout=STEP, **kwargs)


async def refused_status(url: str, version: str = "ocpp1.6", **kwargs: Any) -> int:
    """Return the HTTP status that refused a station handshake; fail if it was accepted."""
    try:
        async with station(url, version, **kwargs):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code
    pytest.fail(f"the handshake to {url} was accepted")


async def api(
    http: aiohttp.ClientSession, server: Server, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """Call the operator API with the operator token; return the status and the JSON body."""
    async with http.request(
        method, server.url(path), json=body, headers=bearer(ADMIN_TOKEN)
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def create_cp1(
    http: aiohttp.ClientSession, server: Server, examples_dir: Path, **fields: Any
) -> None:
    """Create location LOC1 (the official example) and station CP1 there."""
    document = json.loads((examples_dir / "location_example.json").read_text())
    status, body = await api(http, server, "POST", "/api/locations", document)
    assert status == 201, body
    status, body = await api(
        http, server, "POST", "/api/stations", {"id": "CP1", "location_id": "LOC1", **fields}
    )
    assert status == 201, body


async def eventually_online(
    http: aiohttp.ClientSession, server: Server, station_id: str, online: bool = True
) -> dict[str, Any]:
    """Poll GET /api/stations/{id} until its ``online`` is ``online``; return the station."""
    deadline = time.monotonic() + STEP
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await api(http, server, "GET", f"/api/stations/{station_id}")
        assert status == 200, body
        if body["online"] is online:
            return body
        await asyncio.sleep(0.05)
    pytest.fail(f"station {station_id} never became online={online}: {body}")


def run_cpms(
    workdir: Path, env: Mapping[str, str], *args: str, timeout: float = READY_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cpms ARGS`` to completion (bounded) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "cpms", *args],
        cwd=workdir, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


# The done-criterion ------------------------------------------------------------------


async def test_ocpi_versions_refuses_a_request_without_a_token(
    server: Server, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url("/ocpi/versions")) as response:
        assert response.status == 401


async def test_a_station_created_through_the_operator_api_connects_over_ocpp_1_6(
    server: Server, http: aiohttp.ClientSession, examples_dir: Path
) -> None:
    assert await refused_status(server.ws_url("CP1")) == 404

    await create_cp1(http, server, examples_dir)

    async with station(server.ws_url("CP1"), "ocpp1.6") as websocket:
        assert websocket.subprotocol == "ocpp1.6"
        shown = await eventually_online(http, server, "CP1")
        assert shown["ocpp_version"] == "ocpp1.6"
        assert shown["location_id"] == "LOC1"


async def test_a_created_station_may_connect_over_ocpp_2_0_1_too(
    server: Server, http: aiohttp.ClientSession, examples_dir: Path
) -> None:
    await create_cp1(http, server, examples_dir)

    async with station(server.ws_url("CP1"), "ocpp2.0.1") as websocket:
        assert websocket.subprotocol == "ocpp2.0.1"
        shown = await eventually_online(http, server, "CP1")
        assert shown["ocpp_version"] == "ocpp2.0.1"


async def test_an_unknown_station_is_refused_under_the_default_known_policy(
    server: Server, http: aiohttp.ClientSession
) -> None:
    assert await refused_status(server.ws_url("STRANGER"), "ocpp2.0.1") == 404
    status, body = await api(http, server, "GET", "/api/stations")
    assert status == 200
    assert body["total"] == 0


# Admission ----------------------------------------------------------------------------------


async def test_open_admission_registers_an_unknown_station_under_the_default_location(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> None:
    async with node_with(tmp_path, database_url, http, CPMS_STATION_ADMISSION="open") as node:
        async with station(node.ws_url("NEWCOMER"), "ocpp1.6") as websocket:
            assert websocket.subprotocol == "ocpp1.6"
            await eventually_online(http, node, "NEWCOMER")

        status, body = await api(http, node, "GET", "/api/stations")
        assert status == 200
        assert [s["id"] for s in body["items"]] == ["NEWCOMER"]
        (newcomer,) = body["items"]
        assert newcomer["location_id"] == "DEFAULT"
        assert newcomer["registered_by"] == "admission"
        status, location = await api(http, node, "GET", "/api/locations/DEFAULT")
        assert status == 200, location


async def test_a_station_with_a_password_needs_it_with_its_id_as_username(
    server: Server, http: aiohttp.ClientSession, examples_dir: Path
) -> None:
    await create_cp1(http, server, examples_dir, password=PASSWORD)
    url = server.ws_url("CP1")

    assert await refused_status(url) == 401
    assert await refused_status(url, additional_headers=basic_auth("CP1", "wrong-password")) == 401
    assert await refused_status(url, additional_headers=basic_auth("CP2", PASSWORD)) == 401

    async with station(url, additional_headers=basic_auth("CP1", PASSWORD)) as websocket:
        assert websocket.subprotocol == "ocpp1.6"
        await eventually_online(http, server, "CP1")


# Shutdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_the_server_cleanly_and_closes_station_connections(
    signum: int,
    server: Server,
    http: aiohttp.ClientSession,
    examples_dir: Path,
    tmp_path: Path,
    database_url: str,
) -> None:
    await create_cp1(http, server, examples_dir)
    async with station(server.ws_url("CP1")) as websocket:
        await eventually_online(http, server, "CP1")

        assert await server.stop(signum) == 0

        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.recv(), STEP)
        assert closed.value.rcvd is not None, "closed without a close frame from the server"
        assert closed.value.rcvd.code == 1001  # going away

    assert "Traceback" not in server.stderr()
    # The shutdown recorded that the station went offline before the database was closed.
    shown = run_cpms(tmp_path, child_env(database_url), "stations", "show", "CP1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["online"] is False


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_the_node_serves_stations_on_the_event_loop_it_is_given(
    loop: str,
    tmp_path: Path,
    database_url: str,
    http: aiohttp.ClientSession,
    examples_dir: Path,
) -> None:
    async with node_with(tmp_path, database_url, http, CPMS_EVENT_LOOP=loop) as node:
        await create_cp1(http, node, examples_dir)
        async with station(node.ws_url("CP1")) as websocket:
            await eventually_online(http, node, "CP1")
            await websocket.send(json.dumps([2, "hb", "Heartbeat", {}]))
            answer = json.loads(await asyncio.wait_for(websocket.recv(), STEP))
            assert answer[:2] == [3, "hb"]
            assert answer[2]["currentTime"].endswith("Z")
        assert await node.stop() == 0
    assert f"event loop {loop}" in node.stderr()
    assert "Traceback" not in node.stderr()


# Configuration -------------------------------------------------------------------------------

CONFIG_ERRORS = {
    "http port not a number": (
        {"CPMS_HTTP_PORT": "abc"}, [], None, ["CPMS_HTTP_PORT", "'abc'", "0 to 65535"],
    ),
    "ocpp port out of range": (
        {}, ["--ocpp-port", "70000"], None, ["--ocpp-port", "70000", "0 to 65535"],
    ),
    "unknown admission policy": (
        {"CPMS_STATION_ADMISSION": "maybe"}, [], None,
        ["CPMS_STATION_ADMISSION", "'maybe'", "'known'", "'open'"],
    ),
    "unknown event loop": (
        {"CPMS_EVENT_LOOP": "trio"}, [], None,
        ["CPMS_EVENT_LOOP", "'trio'", "'uvloop'", "'asyncio'"],
    ),
    "bad value in the config file": (
        {}, ["--config", "{file}"], 'http_port = "x"\n', ["{file}", "http_port", "'x'", "65535"],
    ),
    "unknown key in the config file": (
        {}, ["--config", "{file}"], 'http_port = 8080\ncolour = "blue"\n', ["{file}", "colour"],
    ),
    "config file that is not TOML": (
        {}, ["--config", "{file}"], "http_port = \n", ["{file}", "TOML"],
    ),
    "config file named by CPMS_CONFIG": (
        {"CPMS_CONFIG": "{file}"}, [], "ocpp_port = -1\n", ["{file}", "ocpp_port", "-1"],
    ),
    "missing config file": (
        {}, ["--config", "{missing}"], None, ["{missing}"],
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "args", "file_text", "named"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys()
)
def test_a_bad_setting_stops_the_start_with_exit_code_2_and_says_what_is_allowed(
    tmp_path: Path,
    variables: dict[str, str],
    args: list[str],
    file_text: str | None,
    named: list[str],
) -> None:
    config = tmp_path / "cpms.toml"
    if file_text is not None:
        config.write_text(file_text, encoding="utf-8")
    paths = {"file": str(config), "missing": str(tmp_path / "absent.toml")}
    # Free ports, unless the case sets them: should the start go on, it fails fast, not hangs.
    settings = {
        f"CPMS_{key.upper()}": str(free_port())
        for key in ("http_port", "ocpp_port")
        if key not in (file_text or "")
    }
    settings |= {key: value.format(**paths) for key, value in variables.items()}
    env = child_env(f"sqlite+aiosqlite:///{tmp_path / 'cpms.db'}", **settings)

    result = run_cpms(tmp_path, env, "serve", *(arg.format(**paths) for arg in args))

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cpms: configuration error:")
    for text in named:
        assert text.format(**paths) in lines[0]
    assert result.stdout == ""  # nothing was started, nothing announced


def test_a_bad_value_in_the_config_file_is_reported_even_when_a_variable_overrides_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "cpms.toml"
    config.write_text('http_port = "x"\n', encoding="utf-8")
    env = child_env(
        f"sqlite+aiosqlite:///{tmp_path / 'cpms.db'}",
        CPMS_HTTP_PORT=str(free_port()),
        CPMS_OCPP_PORT=str(free_port()),
        CPMS_CONFIG=str(config),
    )
    try:
        result = run_cpms(tmp_path, env, "serve", timeout=3 * TIME_UNIT)
    except subprocess.TimeoutExpired:
        pytest.fail("cpms serve started with an invalid http_port in its config file")
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr
    assert "http_port" in result.stderr


async def test_a_config_file_is_honoured_and_variables_and_flags_win_over_it(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> None:
    http_port, file_ocpp_port, env_ocpp_port = free_port(), free_port(), free_port()
    config = tmp_path / "cpms.toml"
    config.write_text(
        f"http_port = {http_port}\n"
        f"ocpp_port = {file_ocpp_port}\n"
        'station_admission = "known"\n'
        'default_location_id = "FROM-FILE"\n',
        encoding="utf-8",
    )
    env = child_env(
        database_url,
        CPMS_ADMIN_TOKEN=ADMIN_TOKEN,
        CPMS_OCPP_PORT=str(env_ocpp_port),  # beats the file
        CPMS_STATION_ADMISSION="known",  # loses to the flag
    )
    args = ["--config", str(config), "--station-admission", "open"]
    async with running(
        tmp_path, env, http, http_port=http_port, ocpp_port=env_ocpp_port, args=args
    ) as node:
        async with http.get(node.url("/api/health")) as response:
            health = await response.json()
        assert health["listeners"]["http"]["port"] == http_port  # from the file
        assert health["listeners"]["ocpp"]["port"] == env_ocpp_port  # variable over file

        async with station(node.ws_url("NEWCOMER")):  # flag `open` over variable `known`
            await eventually_online(http, node, "NEWCOMER")
        status, shown = await api(http, node, "GET", "/api/stations/NEWCOMER")
        assert status == 200
        assert shown["location_id"] == "FROM-FILE"  # from the file


async def test_a_busy_port_stops_the_start_with_an_error_naming_it(
    tmp_path: Path, database_url: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        env = child_env(
            database_url,
            CPMS_ADMIN_TOKEN=ADMIN_TOKEN,
            CPMS_OCPP_PORT=str(free_port()),
            CPMS_HTTP_PORT=str(busy),
        )
        result = await asyncio.to_thread(run_cpms, tmp_path, env, "serve")

    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cpms: cannot start:")
    assert str(busy) in last


# The database schema -------------------------------------------------------------------------


@pytest.mark.empty_database
async def test_a_server_not_allowed_to_migrate_refuses_an_empty_database_and_says_how_to_upgrade(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> None:
    http_port, ocpp_port = free_port(), free_port()
    env = child_env(
        database_url,
        CPMS_HTTP_PORT=str(http_port),
        CPMS_OCPP_PORT=str(ocpp_port),
        CPMS_ADMIN_TOKEN=ADMIN_TOKEN,
        CPMS_AUTO_MIGRATE="false",
    )
    refused = await asyncio.to_thread(run_cpms, tmp_path, env, "serve")

    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith("cpms: ")
    assert "CPMS_AUTO_MIGRATE" in message

    # Following the advice: upgrade once, then the cautious server starts.
    upgraded = await asyncio.to_thread(
        run_cpms, tmp_path, child_env(database_url), "db", "upgrade", "--json"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    async with running(tmp_path, env, http, http_port=http_port, ocpp_port=ocpp_port) as node:
        assert await node.stop() == 0


# The operator token --------------------------------------------------------------------------

TOKEN_LINE = re.compile(r"Operator API token[^\n]*\n\s*(\S+)")


async def test_the_first_start_prints_a_working_operator_token_once(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> None:
    http_port, ocpp_port = free_port(), free_port()
    env = child_env(database_url, CPMS_HTTP_PORT=str(http_port), CPMS_OCPP_PORT=str(ocpp_port))

    async with running(
        tmp_path, env, http, http_port=http_port, ocpp_port=ocpp_port, name="first"
    ) as first:
        found = TOKEN_LINE.search(first.stdout())
        assert found, first.stdout()
        token = found.group(1)
        async with http.get(first.url("/api/stations"), headers=bearer(token)) as response:
            assert response.status == 200
        async with http.get(first.url("/api/stations"), headers=bearer(token + "x")) as response:
            assert response.status == 401
        assert await first.stop() == 0
    assert token not in first.stderr()  # the secret is shown, not logged

    async with running(
        tmp_path, env, http, http_port=http_port, ocpp_port=ocpp_port, name="second"
    ) as second:
        assert "Operator API token" not in second.stdout()
        assert TOKEN_LINE.search(second.stdout()) is None
        async with http.get(second.url("/api/stations"), headers=bearer(token)) as response:
            assert response.status == 200  # the first token still works

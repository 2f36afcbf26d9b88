"""The servers under test, each started as a process of its own on loopback, and stopped.

``limit_server``, ``ocpp_lib_server`` and ``cpms_node`` are context managers that yield a
``Server``: its pid (sampled by the load generator), its OCPP URL and, for our node, its HTTP
URL and operator token. Our node is started the way a user starts it, ``cpms serve`` with
``CPMS_*`` variables: free ports, the database given, open admission, unknown tokens
accepted, logging at WARNING. A server that dies early is reported with the tail of its
log instead of hanging the scenario.

``drive(server, spec)`` runs one load against one server and returns the generator's
figures with the server's exit state; ``measure`` does it on a freshly started server and
lets the scenario read the node's database afterwards (``database_rows``) while it still
runs. ``create_token`` issues a local token the way an operator does (``cpms tokens
create``); ``scratch_postgres`` creates and drops a database for one run, as
tests/conftest.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.load import LoadProcess, LoadSpec
from bench.measure import ProcessSample, raise_open_files_limit, sample_process

__all__ = [
    "ADMIN_TOKEN",
    "Server",
    "ServerFailed",
    "cpms_node",
    "create_token",
    "database_rows",
    "drive",
    "free_port",
    "limit_server",
    "measure",
    "ocpi_limit_server",
    "ocpp_lib_server",
    "postgres_admin_url",
    "scratch_postgres",
]

ADMIN_TOKEN = "bench-operator-token-0123456789"
START_TIMEOUT = 90.0
"""Seconds a server may take to listen (our node migrates an empty database first)."""
STOP_TIMEOUT = 30.0


class ServerFailed(RuntimeError):
    """A server under test did not start, or died; the message holds the tail of its log."""


@dataclass
class Server:
    """One running server under test."""

    name: str
    process: subprocess.Popen[bytes]
    ocpp_url: str
    log_path: Path
    http_url: str | None = None
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> ProcessSample | None:
        """Its CPU time and memory now."""
        return sample_process(self.pid)

    def died(self) -> str | None:
        """Why it is gone (exit code and log tail), or None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        return f"{self.name} exited with {code}: {log_tail(self.log_path)}"

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; the exit code (None if it had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                return None
        return self.process.returncode


def log_tail(path: Path, lines: int = 12) -> str:
    """The last lines of a log file, on one line each, for a report."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(
    argv: list[str], log_path: Path, *, env: Mapping[str, str] | None = None, cwd: Path
) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            preexec_fn=raise_open_files_limit,  # before exec: the server inherits the limit
        )
    finally:
        log.close()


def _read_port(process: subprocess.Popen[bytes], log_path: Path, name: str) -> int:
    """Read ``listening on PORT`` from a baseline server's stdout."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            line = process.stdout.readline()
            match = re.match(rb"listening on (\d+)", line)
            if match:
                return int(match.group(1))
        if process.poll() is not None:
            break
    process.kill()
    raise ServerFailed(f"{name} did not start ({line!r}): {log_tail(log_path)}")


@contextlib.contextmanager
def _baseline(module: str, name: str, workdir: Path, *extra: str) -> Iterator[Server]:
    log_path = workdir / f"{name}.log"
    process = _spawn(
        [sys.executable, "-m", module, "--port", "0", *extra], log_path, cwd=Path.cwd()
    )
    try:
        port = _read_port(process, log_path, name)
        yield Server(
            name,
            process,
            f"ws://127.0.0.1:{port}/ocpp",
            log_path,
            http_url=f"http://127.0.0.1:{port}",
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def limit_server(workdir: Path) -> contextlib.AbstractContextManager[Server]:
    """The limit: ``bench.limit_server``."""
    return _baseline("bench.limit_server", "limit", workdir)


def ocpp_lib_server(workdir: Path) -> contextlib.AbstractContextManager[Server]:
    """The ``ocpp``-library central system: ``bench.ocpp_lib_server``."""
    return _baseline("bench.ocpp_lib_server", "ocpp-lib", workdir)


def ocpi_limit_server(
    workdir: Path, body: Path, *, total: int, limit: int
) -> contextlib.AbstractContextManager[Server]:
    """The limit of OCPI paging: ``bench.ocpi_limit_server`` serving ``body`` as every page."""
    return _baseline(
        "bench.ocpi_limit_server",
        "ocpi-limit",
        workdir,
        "--body",
        str(body),
        "--total",
        str(total),
        "--limit",
        str(limit),
    )


def node_env(workdir: Path, database_url: str, ocpp_port: int, http_port: int) -> dict[str, str]:
    """The ``CPMS_*`` settings of a node under test (open admission, unknown tokens ok)."""
    return {
        "CPMS_DATABASE_URL": database_url,
        "CPMS_OCPP_HOST": "127.0.0.1",
        "CPMS_OCPP_PORT": str(ocpp_port),
        "CPMS_HTTP_HOST": "127.0.0.1",
        "CPMS_HTTP_PORT": str(http_port),
        "CPMS_ADMIN_TOKEN": ADMIN_TOKEN,
        "CPMS_SECRET_KEY_FILE": str(workdir / "cpms.key"),
        "CPMS_STATION_ADMISSION": "open",
        "CPMS_ACCEPT_UNKNOWN_TOKENS": "true",
        "CPMS_LOG_LEVEL": "WARNING",
        "CPMS_CONFIG": "",
    }


@contextlib.contextmanager
def cpms_node(
    workdir: Path,
    database_url: str | None = None,
    *,
    name: str = "cpms",
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Our node: ``cpms serve`` with a SQLite file in ``workdir`` unless a URL is given."""
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'cpms.db'}"
    ocpp_port, http_port = free_port(), free_port()
    settings = node_env(workdir, url, ocpp_port, http_port) | dict(env or {})
    log_path = workdir / f"{name}.log"
    process = _spawn([sys.executable, "-m", "cpms", "serve"], log_path, env=settings, cwd=workdir)
    server = Server(
        name,
        process,
        f"ws://127.0.0.1:{ocpp_port}/ocpp",
        log_path,
        http_url=f"http://127.0.0.1:{http_port}",
        database_url=url,
        env=settings,
    )
    try:
        _wait_healthy(server)
        yield server
    finally:
        server.stop()
        if process.stdout is not None:
            process.stdout.close()


def create_token(server: Server, uid: str) -> None:
    """Issue a local token (whitelist ALWAYS) on the node, as an operator does: ``cpms tokens
    create``, on the node's database while it runs."""
    subprocess.run(
        [sys.executable, "-m", "cpms", "tokens", "create", uid, "--whitelist", "ALWAYS"],
        env={**os.environ, **server.env},
        capture_output=True,
        timeout=60,
        check=True,
    )


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    assert server.http_url is not None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(server.died() or "")
        try:
            with urllib.request.urlopen(f"{server.http_url}/api/health", timeout=2) as answer:
                if json.loads(answer.read()).get("status") == "ok":
                    return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    server.stop()
    raise ServerFailed(f"{server.name} was not healthy within {START_TIMEOUT:.0f} s")


def drive(server: Server, spec: LoadSpec) -> dict[str, Any]:
    """Run ``spec`` against ``server`` in the generator's process; figures plus server state.

    Adds ``server_cpu_us_per_msg``: the server's CPU time per answered CALL, a figure the
    other processes on a shared machine disturb far less than throughput.
    """
    spec = replace(spec, url=server.ocpp_url, watch_pid=server.pid)
    with LoadProcess(spec) as load:
        result = load.result(spec.setup_timeout + spec.duration + 120)
    share, rate = result.get("server_cpu_share"), result.get("msg_per_s")
    if share is not None and rate:
        result["server_cpu_us_per_msg"] = round(share / rate * 1e6, 1)
    died = server.died()
    if died is not None:
        result["server_died"] = died
    return result


Inspect = Callable[["Server", dict[str, Any]], dict[str, Any]]
"""Read what the server kept after the load (still running): extra figures for the record."""


def measure(
    name: str,
    start: Callable[[], contextlib.AbstractContextManager[Server]],
    spec: LoadSpec,
    *,
    inspect: Inspect | None = None,
) -> dict[str, Any]:
    """Start a fresh server, drive ``spec`` against it, ``inspect`` it, stop it.

    Never raises for a server that fails: the figures then hold ``crashed`` with the reason.
    """
    try:
        with start() as server:
            result = drive(server, spec)
            if inspect is not None and "crashed" not in result:
                try:
                    result |= inspect(server, result)
                except Exception as error:
                    result["inspect_failed"] = f"{type(error).__name__}: {error}"
    except ServerFailed as error:
        result = {"crashed": str(error)}
    return {"server": name, **result}


# --------------------------------------------------------------------------- PostgreSQL


def postgres_admin_url() -> str | None:
    """A PostgreSQL to create scratch databases on: CPMS_TEST_POSTGRES_URL, or a local one."""
    configured = os.environ.get("CPMS_TEST_POSTGRES_URL")
    if configured:
        return configured
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return None
    candidate = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        asyncio.run(_execute(candidate, "SELECT 1"))
    except Exception:
        return None
    return candidate


async def _execute(url: str, statement: str) -> None:
    import asyncpg  # only when PostgreSQL is used

    dsn = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", url)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh, empty database on ``admin_url``'s server for one run; dropped afterwards."""
    name = f"cpms_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(admin_url, f'CREATE DATABASE "{name}"'))
    base = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql+asyncpg://", admin_url)
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on a node's database (SQLite file or PostgreSQL), read from outside."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(text(sql), params)]
        finally:
            await engine.dispose()

    return asyncio.run(read())

"""End-to-end tests of `cpms ocpi ...`: invite, register, partners, update, unregister.

Each command runs the real ``cpms`` console script as a child process with a clean
environment, on the ``database_url`` fixture's database and the runtime's key file, with
``CPMS_PUBLIC_URL`` naming the ``Runtime`` that runs in this process: during `cpms ocpi
register` the eMSP peer reads our versions from that running server with the token the CLI
process offered it, exactly as with `cpms serve`. Checked: what is printed (never a token
after the fact), the exit codes, and that each side can use the other's token afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ocpi_peer import EmspPeer

from cpms.partners import partner_link
from cpms.runtime import Runtime

from support import TIME_UNIT

PROCESS_TIMEOUT = 30 * TIME_UNIT
"""Seconds one real `cpms` process may take."""
CPMS = Path(sys.executable).parent / "cpms"
"""The console script of this environment."""


@dataclass
class Outcome:
    """What one `cpms` process did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, (self.out, self.err)
        return json.loads(self.out)


Cli = Callable[..., Awaitable[Outcome]]


@pytest.fixture
def cli(database_url: str, tmp_path: Path, runtime: Runtime) -> Cli:
    """Run ``cpms ARGS`` as a child process pointed at ``runtime``; return its ``Outcome``."""
    if not CPMS.is_file():
        pytest.fail(f"the cpms console script is not installed at {CPMS} (pip install -e .)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    env |= {
        "CPMS_DATABASE_URL": database_url,
        "CPMS_SECRET_KEY_FILE": runtime.settings.secret_key_file,
        "CPMS_PUBLIC_URL": runtime.base_url(),
    }

    async def run(*argv: str, stdin: str | None = None) -> Outcome:
        process = await asyncio.create_subprocess_exec(
            str(CPMS), *argv,
            cwd=tmp_path, env=env,
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


async def test_invite_prints_our_versions_url_and_a_token_a_that_registers_once(
    runtime: Runtime, emsp_peer: EmspPeer, cli: Cli
) -> None:
    invited = (await cli("ocpi", "invite", "--json")).json()

    assert set(invited) == {"versions_url", "token"}
    assert invited["versions_url"] == f"{runtime.base_url()}/ocpi/versions"
    await emsp_peer.register_with(invited["versions_url"], invited["token"])
    assert emsp_peer.problems == []

    listed = await cli("ocpi", "partners", "--json")
    [partner] = listed.json()
    assert partner["state"] == "REGISTERED"
    assert partner["name"] == emsp_peer.name
    assert partner["version"] == "2.2.1"
    assert partner["roles"] == [
        {"role": "EMSP", "country_code": "DE", "party_id": "EMS", "name": emsp_peer.name}
    ]
    assert "credentials" in partner["modules"]
    for token in (invited["token"], emsp_peer.token_for_cpo):
        assert token not in listed.out

    again = EmspPeer()
    async with again:
        status, answer, _ = await again.call("GET", invited["versions_url"], token=invited["token"])
    assert status == 401, answer


async def test_invite_without_json_says_what_to_hand_over(cli: Cli) -> None:
    shown = await cli("ocpi", "invite", "--name", "Roaming Hub")

    assert shown.code == 0, shown.err
    assert "versions URL" in shown.out
    assert "token A" in shown.out
    listed = await cli("ocpi", "partners")
    assert listed.code == 0, listed.err
    [line] = listed.out.strip().splitlines()
    assert line.split("\t")[1:4] == ["Roaming Hub", "INVITED", "-"]


async def test_register_from_the_cli_then_the_server_calls_the_peer(
    runtime: Runtime, emsp_peer: EmspPeer, cli: Cli
) -> None:
    token_a = emsp_peer.issue_token_a()

    registered = await cli(
        "ocpi", "register", "--versions-url", emsp_peer.versions_url, "--token", "-", "--json",
        stdin=token_a + "\n",
    )  # fmt: skip

    shown = registered.json()
    assert shown["state"] == "REGISTERED"
    assert shown["name"] == emsp_peer.name
    assert emsp_peer.problems == []
    assert emsp_peer.cpo_endpoints  # it read our versions from the running server
    # The server (another process than the CLI) calls the peer with the token stored.
    async with runtime.uow() as work:
        link = await partner_link(work, runtime.vault, shown["id"])
    reply = await runtime.ocpi_client.request(
        "GET", link.endpoint("credentials", "SENDER") or "", token=link.token
    )
    assert reply.ok, reply
    status, _, _ = await emsp_peer.call("GET", f"{runtime.base_url()}/ocpi/2.2.1/credentials")
    assert status == 200

    updated = (await cli("ocpi", "update", str(shown["id"]), "--json")).json()
    assert updated["state"] == "REGISTERED"
    assert len(emsp_peer.received("PUT", "/credentials")) == 1

    gone = await cli("ocpi", "unregister", str(shown["id"]), "--json")
    assert gone.json()["state"] == "UNREGISTERED"
    assert gone.err == ""
    assert len(emsp_peer.received("DELETE", "/credentials")) == 1
    status, _, _ = await emsp_peer.call("GET", f"{runtime.base_url()}/ocpi/2.2.1/credentials")
    assert status == 401


async def test_register_with_a_wrong_token_is_refused_with_one_line(
    emsp_peer: EmspPeer, cli: Cli
) -> None:
    refused = await cli(
        "ocpi", "register", "--versions-url", emsp_peer.versions_url, "--token", "wrong"
    )

    assert refused.code == 1, (refused.out, refused.err)
    [line] = refused.err.strip().splitlines()
    assert line.startswith("cpms: OCPI 3001: GET ")
    assert "401" in line
    assert (await cli("ocpi", "partners", "--json")).json() == []


async def test_unregistering_an_unknown_partner_is_refused(cli: Cli) -> None:
    refused = await cli("ocpi", "unregister", "42")

    assert refused.code == 1
    assert "42" in refused.err

"""End-to-end tests of `cpms ocpi pull-tokens` and `pull-clients`, as an operator runs them.

Each command runs the real ``cpms`` console script as a child process with a clean
environment, on the ``database_url`` fixture's database and the runtime's key file. The
partner registers with the running ``Runtime`` by the real credentials handshake (`cpms ocpi
invite`, then its POST), serves its list page by page (``tests/hub_peer.py``), and the CLI
pulls it. Checked: the progress lines (per page, and each rejection with its reason), the
summary and ``--json``, ``--since``, that the running server authorizes with what the CLI
stored, and the exit codes and one-line refusals of an unreachable or unknown partner.
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
from hub_peer import HubPeer, ListingEmspPeer, client_info, token

from cpms.authorization import AuthorizationStatus
from cpms.hub_clients import connection_status
from cpms.runtime import Runtime

from support import TIME_UNIT

PROCESS_TIMEOUT = 30 * TIME_UNIT
CPMS = Path(sys.executable).parent / "cpms"


@dataclass
class Ran:
    """Exit code and output of one `cpms` process."""

    code: int
    out: str
    err: str


Run = Callable[..., Awaitable[Ran]]


@pytest.fixture
def cpms(database_url: str, tmp_path: Path, runtime: Runtime) -> Run:
    """Run the `cpms` console script on the runtime's database and key file."""
    if not CPMS.is_file():
        pytest.fail(f"the cpms console script is not installed at {CPMS} (pip install -e .)")
    env = {name: value for name, value in os.environ.items() if not name.startswith("CPMS_")} | {
        "CPMS_DATABASE_URL": database_url,
        "CPMS_SECRET_KEY_FILE": runtime.settings.secret_key_file,
        "CPMS_PUBLIC_URL": runtime.base_url(),
    }

    async def run(*argv: str) -> Ran:
        child = await asyncio.create_subprocess_exec(
            str(CPMS), *argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(child.communicate(), PROCESS_TIMEOUT)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        assert child.returncode is not None
        return Ran(child.returncode, out.decode(), err.decode())

    return run


async def handshake(cpms: Run, peer: ListingEmspPeer) -> int:
    """Invite ``peer`` with the CLI and let it register; its partner id."""
    invited = await cpms("ocpi", "invite", "--json")
    assert invited.code == 0, invited.err
    given = json.loads(invited.out)
    await peer.register_with(given["versions_url"], given["token"])
    listed = await cpms("ocpi", "partners", "--json")
    [partner] = json.loads(listed.out)
    assert partner["state"] == "REGISTERED"
    return int(partner["id"])


async def test_pull_tokens_prints_progress_and_the_server_authorizes_what_it_stored(
    runtime: Runtime, cpms: Run
) -> None:
    async with ListingEmspPeer() as peer:
        partner_id = await handshake(cpms, peer)
        assert peer.lists is not None
        peer.lists.tokens = [token(f"CARD-{n}") for n in range(7)]
        peer.lists.tokens[4] = token("CARD-4", whitelist="MAYBE")
        peer.lists.tokens.append(token("OTHER-1", country_code="NL", party_id="XYZ"))

        pulled = await cpms("ocpi", "pull-tokens", str(partner_id))
        # The next full list leaves CARD-0 and CARD-1 out: both are invalidated.
        peer.lists.tokens = peer.lists.tokens[2:]
        again = await cpms("ocpi", "pull-tokens", str(partner_id))

    assert pulled.code == 0, pulled.err
    assert pulled.out == (
        f"Pulled the tokens of partner {partner_id}: 3 page(s), 8 received, 6 stored (6 new), "
        "1 skipped, 1 rejected, 0 invalidated (not in the full list)\n"
    )
    assert again.code == 0, again.err
    assert again.out == (
        f"Pulled the tokens of partner {partner_id}: 2 page(s), 6 received, 4 stored (0 new), "
        "1 skipped, 1 rejected, 2 invalidated (not in the full list)\n"
    )
    assert pulled.err.splitlines() == [
        "page 1: 3 tokens; so far 3 of 8 received, 3 stored, 0 skipped, 0 rejected",
        "page 2: 3 tokens; so far 6 of 8 received, 5 stored, 0 skipped, 1 rejected",
        "  rejected DE/EMS/CARD-4 (page 2, item 1): token field 'whitelist': expected one of "
        "ALWAYS, ALLOWED, ALLOWED_OFFLINE, NEVER",
        "page 3: 2 tokens; so far 8 of 8 received, 6 stored, 1 skipped, 1 rejected",
    ]
    # The running server (another process than the CLI) authorizes a pulled ALLOWED token.
    async with runtime.uow() as uow:
        decision = await runtime.authorizer.authorize(uow, "CARD-6", location_id="LOC-1")
        unknown = await runtime.authorizer.authorize(uow, "OTHER-1", location_id="LOC-1")
        dropped = await runtime.authorizer.authorize(uow, "CARD-0", location_id="LOC-1")
    assert decision.status is AuthorizationStatus.ALLOWED
    assert (decision.source, decision.partner_id) == ("ocpi", partner_id)
    assert unknown.status is not AuthorizationStatus.ALLOWED
    assert dropped.status is AuthorizationStatus.BLOCKED  # invalidated by the second pull


async def test_pull_tokens_since_a_time_prints_json(runtime: Runtime, cpms: Run) -> None:
    async with ListingEmspPeer() as peer:
        partner_id = await handshake(cpms, peer)
        assert peer.lists is not None
        peer.lists.tokens = [token("OLD"), token("NEW", last_updated="2025-03-01T08:00:00Z")]

        pulled = await cpms(
            "ocpi", "pull-tokens", str(partner_id), "--since", "2025-03-01T00:00:00", "--json"
        )

        assert peer.lists.pages_asked("tokens")[0].query == {"date_from": "2025-03-01T00:00:00Z"}
    assert pulled.code == 0, pulled.err
    report = json.loads(pulled.out)
    assert (report["pages"], report["received"], report["created"]) == (1, 1, 1)
    assert report["rejections"] == []


@pytest.mark.parametrize("since", ["2025-03-01T00:00:00+01:00", "yesterday"])
async def test_a_since_that_is_no_ocpi_datetime_is_a_usage_error(cpms: Run, since: str) -> None:
    refused = await cpms("ocpi", "pull-tokens", "1", "--since", since)
    assert refused.code == 2
    assert "--since" in refused.err


async def test_an_unreachable_partner_stops_the_pull_with_one_line(
    runtime: Runtime, cpms: Run
) -> None:
    async with ListingEmspPeer() as peer:
        partner_id = await handshake(cpms, peer)
        assert peer.lists is not None
        peer.lists.tokens = [token(f"T{n}") for n in range(5)]
        peer.lists.spoiled[2] = "down"
        stopped = await cpms("ocpi", "pull-tokens", str(partner_id))
        await peer.lists.stop()
        gone = await cpms("ocpi", "pull-tokens", str(partner_id))

    assert stopped.code == 1
    *progress, line = stopped.err.strip().splitlines()
    assert progress == ["page 1: 3 tokens; so far 3 of 5 received, 3 stored, 0 skipped, 0 rejected"]
    assert line.startswith(f"cpms: pulling tokens of partner {partner_id} stopped: page 2: GET ")
    assert "HTTP 503 without an OCPI envelope" in line
    assert line.endswith(
        "(before that: 1 page(s), 3 received, 3 stored (3 new), 0 skipped, 0 rejected)"
    )
    assert gone.code == 1
    [line] = gone.err.strip().splitlines()
    assert line.startswith(f"cpms: pulling tokens of partner {partner_id} stopped: page 1: GET ")
    assert "ClientConnectorError" in line


async def test_pulling_from_an_unknown_or_unsuitable_partner_is_refused(cpms: Run) -> None:
    unknown = await cpms("ocpi", "pull-tokens", "42")
    assert unknown.code == 1
    assert unknown.err.strip() == "cpms: registered partner 42 not found"

    async with ListingEmspPeer() as peer:
        partner_id = await handshake(cpms, peer)
        refused = await cpms("ocpi", "pull-clients", str(partner_id))
    assert refused.code == 1
    assert refused.err.strip() == (
        f"cpms: partner {partner_id} (Test eMSP) offers no hubclientinfo SENDER endpoint"
    )


async def test_pull_clients_stores_what_the_hub_lists(runtime: Runtime, cpms: Run) -> None:
    async with HubPeer() as hub:
        partner_id = await handshake(cpms, hub)
        assert hub.lists is not None
        hub.lists.clients = [
            client_info("DE", "AAA"),
            client_info("DE", "BBB", status="OFFLINE"),
            client_info("DE", "CCC", role="CPO", status="PLANNED"),
            client_info("DE", "DDD", status="SUSPENDED"),
        ]

        pulled = await cpms("ocpi", "pull-clients", str(partner_id), "--json")

    assert pulled.code == 0, pulled.err
    report: dict[str, Any] = json.loads(pulled.out)
    assert (report["pages"], report["created"], report["rejected"]) == (2, 4, 0)
    assert pulled.err.splitlines()[-1] == (
        "page 2: 1 clients; so far 4 of 4 received, 4 stored, 0 skipped, 0 rejected"
    )
    async with runtime.uow() as uow:
        assert await connection_status(uow, "DE", "BBB") == "OFFLINE"
        assert await connection_status(uow, "DE", "DDD") == "SUSPENDED"

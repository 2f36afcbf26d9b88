"""The eMSP test peer answers GETs of its stored locations as a real eMSP does.

``tests/ocpi_peer.py`` stands in for a real eMSP in every OCPI test, so its answers must be
a real receiver's: a GET of a location, EVSE or connector it holds is that object; one it
does not hold, even under a location it holds, is HTTP 404 with OCPI 2003 and no data (the
pusher reads that as "absent", CHECKLIST 1.5).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from ocpi_peer import EmspPeer

from support import EXAMPLES

LOCATION = json.loads((EXAMPLES / "location_example.json").read_text())
BASE = "2.2.1/locations/BE/BEC/LOC1"


@pytest.fixture
async def peer() -> AsyncIterator[EmspPeer]:
    async with EmspPeer() as peer:
        peer.accepted_tokens.add("cpo-token")
        peer.token_for_cpo = "cpo-token"  # the peer is called with the token it accepts
        status, _, _ = await peer.call("PUT", f"{peer.base_url}/{BASE}", body=LOCATION)
        assert status in (200, 201)
        yield peer


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", LOCATION),
        ("/3256", LOCATION["evses"][0]),
        ("/3256/1", LOCATION["evses"][0]["connectors"][0]),
    ],
)
async def test_a_get_of_a_stored_object_answers_that_object(
    peer: EmspPeer, path: str, expected: dict[str, object]
) -> None:
    status, envelope, _ = await peer.call("GET", f"{peer.base_url}/{BASE}{path}")

    assert (status, envelope["status_code"]) == (200, 1000)
    assert envelope["data"] == expected


@pytest.mark.parametrize(
    "url",
    [
        "2.2.1/locations/BE/BEC/NO-SUCH-LOCATION",
        f"{BASE}/NO-SUCH-EVSE",
        f"{BASE}/3256/9",
        f"{BASE}/NO-SUCH-EVSE/1",
    ],
)
async def test_a_get_of_an_unknown_object_is_404_with_2003_and_no_data(
    peer: EmspPeer, url: str
) -> None:
    status, envelope, _ = await peer.call("GET", f"{peer.base_url}/{url}")

    assert (status, envelope["status_code"]) == (404, 2003)
    assert "data" not in envelope

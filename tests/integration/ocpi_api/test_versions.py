"""OCPI versions on a real node: 401 without a known token, Base64 and raw tokens accepted."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from cpms.model import OcpiPartner
from cpms.passwords import hash_token
from cpms.runtime import Runtime

TOKEN_A = "token-a-0123456789abcdef"
ISSUED = "token-c-fedcba9876543210"


@pytest.fixture
async def partner(runtime: Runtime) -> OcpiPartner:
    async with runtime.uow() as work:
        partner = OcpiPartner(
            name="Test eMSP",
            state="REGISTERED",
            token_a_hash=hash_token(TOKEN_A),
            incoming_token_hash=hash_token(ISSUED),
        )
        work.session.add(partner)
        await work.commit()
    return partner


async def _get(runtime: Runtime, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(runtime.base_url() + path, headers=headers) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize(
    "authorization",
    [None, "Token ", "Token unknown-token", "Bearer " + TOKEN_A, "Token " + "x" * 300],
)
async def test_versions_refuse_a_missing_or_unknown_token_with_401(
    runtime: Runtime, partner: OcpiPartner, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    status, body = await _get(runtime, "/ocpi/versions", headers)
    assert status == 401
    assert body["status_code"] == 2000
    assert "timestamp" in body
    assert "data" not in body


@pytest.mark.parametrize("token", [TOKEN_A, ISSUED])
@pytest.mark.parametrize("encode", [True, False], ids=["base64", "raw"])
async def test_versions_answer_a_partner_token_base64_or_raw(
    runtime: Runtime, partner: OcpiPartner, token: str, encode: bool
) -> None:
    value = base64.b64encode(token.encode()).decode() if encode else token
    status, body = await _get(runtime, "/ocpi/versions", {"Authorization": f"Token {value}"})
    assert status == 200
    assert body["status_code"] == 1000
    assert body["data"] == [
        {"version": "2.2.1", "url": runtime.base_url() + "/ocpi/2.2.1"},
    ]


async def test_version_details_name_the_version_and_echo_the_request_ids(
    runtime: Runtime, partner: OcpiPartner
) -> None:
    headers = {
        "Authorization": "Token " + base64.b64encode(ISSUED.encode()).decode(),
        "X-Request-ID": "req-1",
        "X-Correlation-ID": "corr-1",
    }
    async with (
        aiohttp.ClientSession() as client,
        client.get(runtime.base_url() + "/ocpi/2.2.1/", headers=headers) as response,
    ):
        body = await response.json()
        assert response.status == 200
        assert response.headers["X-Request-ID"] == "req-1"
        assert response.headers["X-Correlation-ID"] == "corr-1"
    assert body["data"]["version"] == "2.2.1"
    base = runtime.base_url() + "/ocpi/2.2.1"
    # CHECKLIST 0: what a CPO advertises, each module once, at /ocpi/2.2.1/<module>.
    assert sorted((e["identifier"], e["role"], e["url"]) for e in body["data"]["endpoints"]) == [
        ("cdrs", "SENDER", f"{base}/cdrs"),
        ("chargingprofiles", "RECEIVER", f"{base}/chargingprofiles"),
        ("commands", "RECEIVER", f"{base}/commands"),
        ("credentials", "SENDER", f"{base}/credentials"),
        ("hubclientinfo", "RECEIVER", f"{base}/hubclientinfo"),
        ("locations", "SENDER", f"{base}/locations"),
        ("sessions", "SENDER", f"{base}/sessions"),
        ("tariffs", "SENDER", f"{base}/tariffs"),
        ("tokens", "RECEIVER", f"{base}/tokens"),
    ]


async def test_an_unregistered_partner_token_no_longer_works(
    runtime: Runtime, partner: OcpiPartner
) -> None:
    async with runtime.uow() as work:
        stored = await work.get(OcpiPartner, partner.id)
        stored.state = "UNREGISTERED"
        await work.commit()
    status, _ = await _get(runtime, "/ocpi/versions", {"Authorization": f"Token {ISSUED}"})
    assert status == 401

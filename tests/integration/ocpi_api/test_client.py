"""The OCPI client against a real aiohttp server: what counts as an answer, and what does not."""

from __future__ import annotations

import base64

import pytest
from aiohttp import web
from ocpi_peer import serve_on_loopback

from ocpi_api.client import OcpiClient, PartnerUnreachable, authorization_header, join_url


async def serve(handler: web.RequestHandler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await serve_on_loopback(app)
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("status", "text", "expect"),
    [
        (204, "", (204, None)),
        (200, '{"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}', (200, 1000)),
        (404, "not here", (404, None)),
        (200, "<html>proxy</html>", "unreachable"),
        (502, "bad gateway", "unreachable"),
    ],
)
async def test_answers_are_replies_and_garbage_is_unreachable(
    status: int, text: str, expect: object
) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.Response(status=status, text=text, content_type="application/json")

    runner, base = await serve(handler)
    client = OcpiClient(country_code="NL", party_id="CPM", timeout=5)
    try:
        if expect == "unreachable":
            with pytest.raises(PartnerUnreachable):
                await client.request(
                    "DELETE", join_url(base, "x/"), token="t0k", to_party=("DE", "EMS")
                )
        else:
            reply = await client.request(
                "DELETE", join_url(base, "x/"), token="t0k", to_party=("DE", "EMS")
            )
            assert (reply.http_status, reply.status_code) == expect
    finally:
        await client.close()
        await runner.cleanup()
    assert seen["Authorization"] == "Token " + base64.b64encode(b"t0k").decode()
    assert seen["OCPI-to-party-id"] == "EMS"
    assert seen["OCPI-from-party-id"] == "CPM"
    assert seen["X-Request-ID"]


def test_urls_are_joined_with_exactly_one_slash_and_tokens_sent_raw_when_asked() -> None:
    assert join_url("https://e.x/ocpi/2.2.1/tokens/", "/ABC/", "authorize") == (
        "https://e.x/ocpi/2.2.1/tokens/ABC/authorize"
    )
    assert join_url("https://e.x/cdrs") == "https://e.x/cdrs"
    assert authorization_header("example-token", base64_encoded=False) == "Token example-token"
    assert authorization_header("example-token", base64_encoded=True) == (
        "Token ZXhhbXBsZS10b2tlbg=="
    )

"""Unit tests of ocpp_gateway.handshake: path, Basic auth, subprotocol and verdict decisions."""

from __future__ import annotations

import base64
import http

import pytest

from cpms.admission import Admission, Verdict
from ocpp_gateway.handshake import (
    BadCredentials,
    Rejection,
    StationRequest,
    check_request,
    choose_subprotocol,
    parse_basic_auth,
    parse_station_path,
    reject_admission,
    split_subprotocols,
)
from ocpp_gateway.rpc import OcppVersion


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


# Path


@pytest.mark.parametrize(
    ("path", "station_id"),
    [
        ("/ocpp/CP1", "CP1"),
        ("/ocpp/CP%201", "CP 1"),
        ("/ocpp/%C3%85sa", "Åsa"),
        ("/ocpp/CP1?token=x", "CP1"),
        ("/ocpp/" + "x" * 48, "x" * 48),
        ("/ocpp/a:b", "a:b"),
    ],
)
def test_station_paths_yield_the_decoded_station_id(path: str, station_id: str) -> None:
    assert parse_station_path(path) == station_id


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/ocpp",
        "/ocpp/",
        "/OCPP/CP1",
        "/ocpp16/CP1",
        "/api/ocpp/CP1",
        "ocpp/CP1",
        "/ocpp/CP1/",
        "/ocpp/a/b",
        "/ocpp/a%2Fb",
        "/ocpp/" + "x" * 49,
        "/ocpp/%FF",
        "/ocpp/tab%09",
        "/ocpp/nl%0A",
    ],
)
def test_other_paths_have_no_station_id(path: str) -> None:
    assert parse_station_path(path) is None


# Subprotocol


def test_subprotocol_headers_split_on_commas_across_headers() -> None:
    assert split_subprotocols(["ocpp1.6, ocpp2.0.1", "ocpp2.1"]) == [
        "ocpp1.6",
        "ocpp2.0.1",
        "ocpp2.1",
    ]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp1.6"], OcppVersion.V16),
        (["ocpp2.0.1"], OcppVersion.V201),
        (["ocpp1.6", "ocpp2.0.1"], OcppVersion.V201),
        (["ocpp2.1", "ocpp1.6"], OcppVersion.V16),
        (["ocpp2.1"], None),
        (["OCPP1.6"], None),
        ([], None),
    ],
)
def test_subprotocol_choice_prefers_201_and_matches_exactly(
    offered: list[str], chosen: OcppVersion | None
) -> None:
    assert choose_subprotocol(offered) == chosen


# Basic auth


def test_basic_auth_returns_the_password_of_the_station() -> None:
    assert (
        parse_basic_auth(basic("CP1:s3cret:with:colons"), station_id="CP1") == "s3cret:with:colons"
    )


def test_basic_auth_works_for_a_station_id_containing_a_colon() -> None:
    assert parse_basic_auth(basic("a:b:pw"), station_id="a:b") == "pw"


def test_basic_auth_scheme_is_case_insensitive() -> None:
    header = "basic " + base64.b64encode(b"CP1:pw").decode()
    assert parse_basic_auth(header, station_id="CP1") == "pw"


@pytest.mark.parametrize(
    "header",
    [
        basic("CP2:pw"),
        basic("CP1"),
        basic("cp1:pw"),
        basic("CP10:pw"),
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"CP1:\xff").decode(),
        "",
    ],
)
def test_basic_auth_for_anyone_else_or_unreadable_is_bad_credentials(header: str) -> None:
    with pytest.raises(BadCredentials):
        parse_basic_auth(header, station_id="CP1")


# The whole request


def test_a_well_formed_request_carries_station_password_and_version() -> None:
    decision = check_request(
        path="/ocpp/CP1", authorization=[basic("CP1:pw")], offered_subprotocols=["ocpp1.6"]
    )
    assert decision == StationRequest("CP1", "pw", OcppVersion.V16)


def test_a_request_without_credentials_leaves_the_password_to_the_core() -> None:
    decision = check_request(path="/ocpp/CP1", authorization=[], offered_subprotocols=["ocpp2.0.1"])
    assert decision == StationRequest("CP1", None, OcppVersion.V201)


def test_a_wrong_path_is_404_before_anything_else() -> None:
    decision = check_request(path="/x", authorization=["junk"], offered_subprotocols=[])
    assert isinstance(decision, Rejection)
    assert decision.status == http.HTTPStatus.NOT_FOUND


def test_no_supported_subprotocol_is_400_naming_the_ones_we_speak() -> None:
    decision = check_request(
        path="/ocpp/CP1", authorization=[basic("CP1:pw")], offered_subprotocols=["ocpp2.1"]
    )
    assert isinstance(decision, Rejection)
    assert decision.status == http.HTTPStatus.BAD_REQUEST
    assert "ocpp2.0.1" in decision.body
    assert "ocpp1.6" in decision.body


@pytest.mark.parametrize(
    "authorization",
    [[basic("CP2:pw")], ["Bearer x"], [basic("CP1:pw"), basic("CP1:pw")]],
    ids=["another username", "another scheme", "two headers"],
)
def test_unusable_credentials_are_401_with_a_basic_challenge(authorization: list[str]) -> None:
    decision = check_request(
        path="/ocpp/CP1", authorization=authorization, offered_subprotocols=["ocpp1.6"]
    )
    assert isinstance(decision, Rejection)
    assert decision.status == http.HTTPStatus.UNAUTHORIZED
    assert ("WWW-Authenticate", 'Basic realm="cpms"') in decision.headers


# The core's verdict


def test_an_accepted_station_is_not_rejected() -> None:
    assert reject_admission(Admission(Verdict.ACCEPTED, "CP1")) is None


@pytest.mark.parametrize(
    ("verdict", "status"),
    [(Verdict.UNKNOWN_STATION, 404), (Verdict.BAD_CREDENTIALS, 401)],
)
def test_refused_verdicts_map_to_their_http_status(verdict: Verdict, status: int) -> None:
    rejection = reject_admission(Admission(verdict, "CP1", reason="secret detail"))
    assert rejection is not None
    assert rejection.status == status == verdict.http_status
    assert "secret detail" not in rejection.body


def test_bad_credentials_verdict_carries_the_basic_challenge() -> None:
    rejection = reject_admission(Admission(Verdict.BAD_CREDENTIALS, "CP1"))
    assert rejection is not None
    assert ("WWW-Authenticate", 'Basic realm="cpms"') in rejection.headers

"""Decide the websocket handshake of a connecting station, as values a test reads without a socket.

Owns the rules of the opening handshake that come before the core's admission: the request path
``/ocpp/{station_id}``, HTTP Basic credentials (OCPP Security Profile 1) and the choice of OCPP
subprotocol; and the HTTP answer for each ``cpms.admission.Verdict``. The server
(``ocpp_gateway.server``) turns a ``Rejection`` into the HTTP response and asks the core to
admit a ``StationRequest``. Pure functions: no I/O, no ``websockets`` types.

Order of the checks, cheapest first so a reconnect storm costs the core nothing for requests it
would refuse anyway (FIELD-NOTES 3):

1. path: anything but ``/ocpp/{station_id}`` with a valid id is 404;
2. subprotocol: no ``ocpp2.0.1`` or ``ocpp1.6`` offered is 400 (see ``choose_subprotocol``);
3. credentials: an unreadable ``Authorization`` header, or a username other than the station id,
   is 401 (FIELD-NOTES 17); no header at all passes ``password=None`` to the core, which decides
   whether this station needs one (FIELD-NOTES 18).
"""

from __future__ import annotations

import base64
import binascii
import http
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from cpms.admission import Admission, Verdict
from ocpp_gateway.rpc import OcppVersion

__all__ = [
    "AUTH_REALM",
    "MAX_STATION_ID_LENGTH",
    "STATION_PATH_PREFIX",
    "SUPPORTED_VERSIONS",
    "BadCredentials",
    "Rejection",
    "StationRequest",
    "check_request",
    "choose_subprotocol",
    "parse_basic_auth",
    "parse_station_path",
    "reject_admission",
    "split_subprotocols",
]

STATION_PATH_PREFIX = "/ocpp/"
MAX_STATION_ID_LENGTH = 48
"""OCPP 2.0.1 caps a charging station's identity at 48 characters; we apply it to 1.6 too."""

SUPPORTED_VERSIONS: tuple[OcppVersion, ...] = (OcppVersion.V201, OcppVersion.V16)
"""Subprotocols we speak, most preferred first: the newer version when a station offers both."""

AUTH_REALM = "cpms"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Refuse the websocket upgrade with this HTTP status, body and extra headers."""

    status: http.HTTPStatus
    body: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StationRequest:
    """A well-formed handshake: who says they are connecting, with what, speaking what."""

    station_id: str
    password: str | None
    version: OcppVersion


class BadCredentials(ValueError):
    """The ``Authorization`` header is not Basic auth for this station."""


_NOT_FOUND = Rejection(
    http.HTTPStatus.NOT_FOUND, f"Not found: stations connect to {STATION_PATH_PREFIX}{{id}}.\n"
)
_UNKNOWN_STATION = Rejection(http.HTTPStatus.NOT_FOUND, "Unknown station.\n")
_UNAUTHORIZED = Rejection(
    http.HTTPStatus.UNAUTHORIZED,
    "Invalid credentials: use HTTP Basic auth with the station id as username.\n",
    (("WWW-Authenticate", f'Basic realm="{AUTH_REALM}"'),),
)
_NO_COMMON_SUBPROTOCOL = Rejection(
    http.HTTPStatus.BAD_REQUEST,
    "Unsupported subprotocol: offer one of "
    + ", ".join(version.value for version in SUPPORTED_VERSIONS)
    + " in Sec-WebSocket-Protocol.\n",
)


def parse_station_path(path: str) -> str | None:
    """Return the station id of ``/ocpp/{station_id}``, or None when the path is anything else.

    The id is the one segment after the prefix, percent-decoded as UTF-8: 1 to 48 printable
    characters, no ``/`` (neither raw nor as ``%2F``). A query string is ignored.
    """
    path = path.partition("?")[0]
    if not path.startswith(STATION_PATH_PREFIX):
        return None
    encoded = path.removeprefix(STATION_PATH_PREFIX)
    if "/" in encoded:
        return None
    try:
        station_id = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return None
    if not 1 <= len(station_id) <= MAX_STATION_ID_LENGTH:
        return None
    if "/" in station_id or not station_id.isprintable():
        return None
    return station_id


def split_subprotocols(header_values: Iterable[str]) -> list[str]:
    """Return the subprotocols offered in every ``Sec-WebSocket-Protocol`` header, in order."""
    return [token.strip() for value in header_values for token in value.split(",") if token.strip()]


def choose_subprotocol(offered: Sequence[str]) -> OcppVersion | None:
    """Pick the OCPP version to speak among those offered; prefer 2.0.1; None if none fits.

    Names match exactly, as RFC 6455 tokens do. When None, OCPP-J 1.6 section 3.1.2 and
    OCPP 2.0.1 Part 4 section 3.1.2 say the server must not go on speaking OCPP; we refuse the
    upgrade itself with HTTP 400 (``check_request``), which tells the installer why, rather than
    accepting and closing at once.
    """
    for version in SUPPORTED_VERSIONS:
        if version.value in offered:
            return version
    return None


def parse_basic_auth(authorization: str, *, station_id: str) -> str:
    """Return the password of a Basic ``Authorization`` header whose username is ``station_id``.

    Raises ``BadCredentials`` for another scheme, bad base64 or UTF-8, or another username. The
    username is matched as a prefix up to the first ``:`` after it, so ids containing ``:`` work.
    """
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise BadCredentials("not HTTP Basic auth")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("credentials are not base64 of UTF-8 text") from None
    prefix = f"{station_id}:"
    if not decoded.startswith(prefix):
        raise BadCredentials("username is not the station id")
    return decoded.removeprefix(prefix)


def check_request(
    *,
    path: str,
    authorization: Sequence[str],
    offered_subprotocols: Sequence[str],
) -> StationRequest | Rejection:
    """Judge an opening handshake before asking the core; see the module docstring for order.

    ``authorization`` holds every ``Authorization`` header value (more than one is refused).
    """
    station_id = parse_station_path(path)
    if station_id is None:
        return _NOT_FOUND
    version = choose_subprotocol(offered_subprotocols)
    if version is None:
        return _NO_COMMON_SUBPROTOCOL
    if not authorization:
        return StationRequest(station_id, None, version)
    if len(authorization) > 1:
        return _UNAUTHORIZED
    try:
        password = parse_basic_auth(authorization[0], station_id=station_id)
    except BadCredentials:
        return _UNAUTHORIZED
    return StationRequest(station_id, password, version)


def reject_admission(admission: Admission) -> Rejection | None:
    """Return the HTTP refusal for the core's verdict, or None when the station is admitted.

    The body stays generic: the admission's reason is for our log, not for whoever is probing.
    """
    match admission.verdict:
        case Verdict.ACCEPTED:
            return None
        case Verdict.UNKNOWN_STATION:
            return _UNKNOWN_STATION
        case Verdict.BAD_CREDENTIALS:
            return _UNAUTHORIZED
        case _:
            # A verdict added to the core but not here must fail closed, never admit.
            return Rejection(http.HTTPStatus.FORBIDDEN, "Refused.\n")

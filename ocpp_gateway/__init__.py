"""Connect OCPP 1.6J and 2.0.1 charging stations to the core over websockets.

Owns the station-facing edge: the websocket server (``server``), the handshake rules
(``handshake``: path, Basic auth, subprotocol) and the sans-I/O OCPP-J RPC framework (``rpc``).
It imports ``cpms`` only, never ``ocpi_api``; message handlers that call core services plug in
through ``OcppServer(handlers=...)``.
"""

from ocpp_gateway.rpc import (
    Call,
    CallError,
    CallResult,
    ErrorCode,
    OcppVersion,
    RpcError,
    RpcSession,
)
from ocpp_gateway.server import (
    CallContext,
    Handler,
    OcppServer,
    StationNotConnected,
)

__all__ = [
    "Call",
    "CallContext",
    "CallError",
    "CallResult",
    "ErrorCode",
    "Handler",
    "OcppServer",
    "OcppVersion",
    "RpcError",
    "RpcSession",
    "StationNotConnected",
]

"""The limit: a bare ``websockets`` server that answers every OCPP-J CALL with a canned result.

No library, no validation, no storage: it parses each CALL (``json``) and sends back a
CALLRESULT with a fixed payload per action. Nothing a real central system does can be
faster on the same machine with the same websocket stack, so a scenario reports our node
as a share of this. ``websockets.serve`` runs with its default settings (pings,
compression offered, limits), as it does in our gateway.

``python -m bench.limit_server --port 0`` prints ``listening on PORT`` and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.measure import raise_open_files_limit

__all__ = ["CANNED", "build_parser", "main", "serve_forever"]

_NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
_ACCEPTED = {"status": "Accepted"}

CANNED: dict[str, dict[str, Any]] = {
    "BootNotification": {"status": "Accepted", "currentTime": _NOW, "interval": 300},
    "Heartbeat": {"currentTime": _NOW},
    "Authorize": {"idTagInfo": _ACCEPTED},
    "StartTransaction": {"transactionId": 1, "idTagInfo": _ACCEPTED},
    "StopTransaction": {"idTagInfo": _ACCEPTED},
}
"""Answers by action; every other action gets ``{}`` (StatusNotification, MeterValues, ...)."""


async def _station(connection: ServerConnection) -> None:
    try:
        async for message in connection:
            frame = json.loads(message)
            if frame[0] == 2:
                await connection.send(json.dumps([3, frame[1], CANNED.get(frame[2], {})]))
    except ConnectionClosed:
        pass


async def serve_forever(host: str, port: int) -> None:
    """Serve on ``host:port`` until SIGTERM or SIGINT; print the bound port first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        _station, host, port, subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")]
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await stop.wait()


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.limit_server``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.limit_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; exit 0 once stopped."""
    args = build_parser().parse_args(argv)
    raise_open_files_limit()
    asyncio.run(serve_forever(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

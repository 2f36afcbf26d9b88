"""What a user would otherwise pick: a central system built with the ``ocpp`` library.

Written the way the library's README and examples (``examples/v16/central_system.py``, the
v16 tutorial ``csms.py``) show: a ``ChargePoint`` subclass with ``@on`` handlers, one
instance per connection started from the ``websockets.serve`` handler, the station id read
from the request path, default settings everywhere (the library validates every message
against its JSON schemas, in a thread pool, as it does by default). Handlers answer at once
from memory: no database, which flatters it against a node that stores everything.

One departure from the examples: they call ``logging.basicConfig(level=logging.INFO)``,
which makes the library log every message it receives and sends. That costs a lot and no
one runs a fleet like that, so this server logs at WARNING unless ``--log-level INFO``
asks for the examples' exact behaviour.

``python -m bench.ocpp_lib_server --port 0`` prints ``listening on PORT`` and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as cp
from ocpp.v16 import call_result, datatypes, enums
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.measure import raise_open_files_limit

__all__ = ["ChargePoint", "build_parser", "main", "serve_forever"]

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargePoint(cp):
    """One connected station, as in the library's examples."""

    @on(enums.Action.boot_notification)
    def on_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=enums.RegistrationStatus.accepted
        )

    @on(enums.Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    @on(enums.Action.status_notification)
    def on_status_notification(self, **kwargs: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    # For the meter values and reconnect scenarios: transactions, answered from memory.

    @on(enums.Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(
            id_tag_info=datatypes.IdTagInfo(status=enums.AuthorizationStatus.accepted)
        )

    @on(enums.Action.start_transaction)
    def on_start_transaction(self, **kwargs: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids),
            id_tag_info=datatypes.IdTagInfo(status=enums.AuthorizationStatus.accepted),
        )

    @on(enums.Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(enums.Action.stop_transaction)
    def on_stop_transaction(self, **kwargs: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction()


async def on_connect(connection: ServerConnection) -> None:
    """Start a ``ChargePoint`` for each connection, as the tutorial's ``on_connect`` does."""
    assert connection.request is not None
    charge_point_id = connection.request.path.strip("/").rsplit("/", 1)[-1]
    charge_point = ChargePoint(charge_point_id, connection)
    try:
        await charge_point.start()
    except ConnectionClosed:
        logging.info("Charge point <%s> closed the connection", charge_point_id)


async def serve_forever(host: str, port: int) -> None:
    """Serve on ``host:port`` until SIGTERM or SIGINT; print the bound port first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(on_connect, host, port, subprotocols=["ocpp1.6"]) as server:  # type: ignore[list-item]
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await stop.wait()


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.ocpp_lib_server``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ocpp_lib_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING"),
        help="INFO logs every message, as the library's examples do (default: WARNING)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; exit 0 once stopped."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level)
    raise_open_files_limit()
    asyncio.run(serve_forever(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

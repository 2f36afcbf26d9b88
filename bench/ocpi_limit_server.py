"""The limit of OCPI paging: aiohttp serving one canned page, with the paging headers.

Serves ``GET /ocpi/2.2.1/locations`` with the same body every time (a page our node served,
saved to a file by the OCPI scenario), ``X-Total-Count``, ``X-Limit`` and a ``Link`` to the
next offset until ``--total`` objects were paged: what paging costs when the page is already
rendered and nothing is read from a database. No authentication, no query.

``python -m bench.ocpi_limit_server --body FILE --total 10000 --port 0`` prints
``listening on PORT`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

__all__ = ["build_parser", "main", "serve_forever"]


def _app(body: bytes, total: int, limit: int) -> web.Application:
    async def locations(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        headers = {"X-Total-Count": str(total), "X-Limit": str(limit)}
        if offset + limit < total:
            url = request.url.with_query({"offset": str(offset + limit), "limit": str(limit)})
            headers["Link"] = f'<{url}>; rel="next"'
        return web.Response(body=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/ocpi/2.2.1/locations", locations)
    return app


async def serve_forever(body: bytes, total: int, limit: int, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; print the bound port first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(_app(body, total, limit), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound sockets only here
    assert isinstance(server, asyncio.Server)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m bench.ocpi_limit_server``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ocpi_limit_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--body", type=Path, required=True, help="the page to serve (JSON)")
    parser.add_argument("--total", type=int, default=10_000, help="objects to page through")
    parser.add_argument("--limit", type=int, default=100, help="objects per page")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; exit 0 once stopped."""
    args = build_parser().parse_args(argv)
    body = args.body.read_bytes()
    asyncio.run(serve_forever(body, args.total, args.limit, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

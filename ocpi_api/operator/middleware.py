"""Operator API middlewares: bearer authentication, and core errors as HTTP answers.

Errors are JSON ``{"error": {"code": ..., "message": ..., "path": ...}}`` with the status a
client can act on: 400 bad request, 401 no or wrong token, 404 unknown object (or command),
409 conflict (also: the station is offline or its boot does not allow the command), 422 a
document that does not validate (``path`` names the field) or command arguments that do not
fit the OCPP schema (``problems`` lists where), 504 the station did not answer in time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from cpms.errors import Conflict, CpmsError, DocumentError, InvalidRequest, NotFound
from cpms.operator_access import verify_admin_token
from cpms.station_port import (
    CommandTimedOut,
    InvalidCommand,
    StationNotReady,
    StationOffline,
    UnknownCommand,
)
from ocpi_api.context import CONTEXT

__all__ = ["PUBLIC_PATHS", "error_json", "errors_middleware", "operator_auth_middleware"]

log = logging.getLogger("ocpi_api.operator")

#: Paths under /api answered without a token: liveness probes and the API description.
PUBLIC_PATHS = frozenset({"/api/health", "/api/openapi.json"})


def error_json(
    status: int,
    code: str,
    message: str,
    path: str | None = None,
    *,
    problems: Sequence[str] | None = None,
) -> web.Response:
    """Return the operator API's error document."""
    error: dict[str, Any] = {"code": code, "message": message}
    if path is not None:
        error["path"] = path
    if problems is not None:
        error["problems"] = list(problems)
    return web.json_response({"error": error}, status=status)


@web.middleware
async def operator_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` with a live operator token."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    context = request.config_dict[CONTEXT]
    if scheme.lower() != "bearer" or not token.strip():
        return error_json(401, "unauthorized", "send Authorization: Bearer <operator token>")
    if not await verify_admin_token(context.uow(), token.strip()):
        return error_json(401, "unauthorized", "unknown or revoked operator token")
    return await handler(request)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn core errors into JSON answers; nothing half-done is left behind by design."""
    try:
        return await handler(request)
    except web.HTTPException as http_error:
        if http_error.status >= 400 and http_error.content_type != "application/json":
            return error_json(http_error.status, "http_error", http_error.reason)
        raise
    except json.JSONDecodeError as error:
        return error_json(400, "invalid_json", f"the body is not valid JSON: {error}")
    except DocumentError as error:
        return error_json(422, "invalid_document", str(error), error.path)
    except InvalidCommand as error:
        return error_json(422, "invalid_command", str(error), problems=error.problems)
    except UnknownCommand as error:
        known = ", ".join(error.available) or "none"
        return error_json(404, "not_found", f"{error}; available commands: {known}")
    except StationOffline as error:
        return error_json(409, "station_offline", str(error))
    except StationNotReady as error:
        return error_json(409, "station_not_ready", str(error))
    except CommandTimedOut as error:
        return error_json(504, "timeout", str(error))
    except NotFound as error:
        return error_json(404, "not_found", str(error))
    except Conflict as error:
        return error_json(409, "conflict", str(error))
    except InvalidRequest as error:
        return error_json(400, "invalid_request", str(error))
    except CpmsError as error:
        log.exception("unexpected core error on %s %s", request.method, request.path)
        return error_json(500, "internal_error", str(error))
    except Exception:
        # A bug: log it whole, answer in the API's error format, change nothing (the unit
        # of work rolled back when the exception left it).
        log.exception("internal error on %s %s", request.method, request.path)
        return error_json(500, "internal_error", "internal error; the change was not made")

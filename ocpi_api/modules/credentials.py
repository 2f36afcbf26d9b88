"""OCPI 2.2.1 credentials module: partners register with us, update and unregister (CHECKLIST 1.3).

- ``GET``: our Credentials for the caller: the token it called with (the one it must use;
  we keep only its hash, so we answer what it presented), our versions URL, our CPO role.
- ``POST`` (token A of an INVITED partner only, else 405): while handling the request we read
  the caller's versions and 2.2.1 details with the token it gave us (3001 unreachable, 3002
  no 2.2.1, 3003 no credentials endpoint), then store its token (sealed), issue ours and
  answer it; token A dies. Nothing is stored unless all of that succeeded.
- ``PUT`` (registered only, else 405): the same again; the new token replaces the old one at
  once.
- After a POST, the new partner is queued a whole PUT of every current tariff and every
  location it may see, and the pusher is woken (``ocpi_api.registration.push_everything``);
  after a PUT, only the modules whose RECEIVER endpoint is new or moved (a token rotation
  alone loses the partner nothing).
- ``DELETE`` (registered only, else 405): UNREGISTERED, every token forgotten.

No PATCH: the router answers 405 in the envelope. A body that is not JSON gets HTTP 400, a
Credentials object that does not check OCPI 2001.
"""

from __future__ import annotations

from aiohttp import web

from cpms.partners import (
    RegistrationStateError,
    accept_credentials,
    check_registration,
    unregister_partner,
)
from cpms.push_queue import receiver_urls

# ``ocpi_api.versions`` imports this module: take the module, use its names when serving.
from ocpi_api import versions
from ocpi_api.auth import CALLER, TOKEN
from ocpi_api.context import CONTEXT, HttpContext
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.registration import (
    RegistrationFailed,
    discover,
    our_credentials,
    our_roles,
    parse_credentials,
    push_everything,
)
from ocpi_api.transport import OcpiError, add_route, read_json

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
#: The role of a credentials endpoint means nothing; SENDER is the advice (CHECKLIST 1.2).
ENDPOINTS: list[tuple[str, str, str]] = [("credentials", "SENDER", "credentials")]


def _answer(request: web.Request, token: str) -> web.Response:
    context = request.config_dict[CONTEXT]
    ours = our_credentials(
        token, versions.versions_url(context.base_url()), our_roles(context.settings)
    )
    return ocpi_response(request, ours)


def _refused(error: RegistrationStateError) -> OcpiError:
    return OcpiError(OcpiStatus.CLIENT_ERROR, str(error), http_status=405)


async def get_credentials(request: web.Request) -> web.Response:
    """Answer our Credentials: the token the caller uses, our versions URL and roles."""
    return _answer(request, request[TOKEN])


async def _store(request: web.Request, *, registered: bool) -> web.Response:
    """POST (``registered=False``) or PUT: read the caller's platform, store, answer ours."""
    context: HttpContext = request.config_dict[CONTEXT]
    caller, presented = request[CALLER], request[TOKEN]
    try:
        await check_registration(context.uow(), caller.partner_id, presented, registered=registered)
    except RegistrationStateError as error:
        raise _refused(error) from None
    theirs = parse_credentials(await read_json(request))
    if context.vault is None or context.ocpi_client is None:
        raise OcpiError(
            OcpiStatus.SERVER_ERROR, "OCPI partners are not served here", http_status=503
        )
    try:
        platform = await discover(context.ocpi_client, theirs.url, theirs.token)
    except RegistrationFailed as error:
        raise OcpiError(error.status_code, error.message) from None
    # A PUT pushes again only what moved: the receiver URLs before it are the reference.
    known = await receiver_urls(context.uow(), caller.partner_id) if registered else None
    try:
        issued = await accept_credentials(
            context.uow(),
            context.vault,
            caller.partner_id,
            presented=presented,
            their_token=theirs.token,
            roles=theirs.roles,
            platform=platform,
            registered=registered,
        )
    except RegistrationStateError as error:  # a racing request won
        raise _refused(error) from None
    # Queued before we answer, in short transactions (10,000 locations: 20 of them, under
    # a second in all), rather than by a task a shutdown could cut short: what is queued is
    # durable. Pushes may overtake our answer: the partner stored the token it gave us
    # before it sent it (CHECKLIST 1.3 step 3), so they are valid.
    await push_everything(context.uow, caller.partner_id, known=known)
    context.wake_pusher()
    return _answer(request, issued)


async def post_credentials(request: web.Request) -> web.Response:
    """Register the caller (token A): see the module docstring."""
    return await _store(request, registered=False)


async def put_credentials(request: web.Request) -> web.Response:
    """Update the caller's registration and rotate its token: see the module docstring."""
    return await _store(request, registered=True)


async def delete_credentials(request: web.Request) -> web.Response:
    """Unregister the caller: its token stops working at once."""
    context = request.config_dict[CONTEXT]
    try:
        await unregister_partner(context.uow(), request[CALLER].partner_id, token=request[TOKEN])
    except RegistrationStateError as error:
        raise _refused(error) from None
    return ocpi_response(request)


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    path = f"/{versions.VERSION}/credentials"
    for method, handler in (
        ("GET", get_credentials),
        ("POST", post_credentials),
        ("PUT", put_credentials),
        ("DELETE", delete_credentials),
    ):
        add_route(app, method, path, handler)

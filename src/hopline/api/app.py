"""The daemon's local API: HTTP + WebSocket on 127.0.0.1, guarded by a token.

:func:`create_app` builds a FastAPI application around one
:class:`~hopline.daemon.node.ClientDaemon`. Routes are thin: they check the
token, let pydantic check the body (:mod:`hopline.api.models`), call one
daemon method and return its document. Every failure is a JSON
:class:`~hopline.api.models.ApiErrorDoc` with a stable ``error`` code:

| status | error | when |
|---|---|---|
| 401 | ``unauthorized`` | no token, or the wrong one (compared in constant time) |
| 404 | ``no-such-call`` | no call with that id, or none ringing to answer |
| 404 | ``not-found`` | no contact, group, transfer or conference by that name or id, or route |
| 405 | ``method-not-allowed`` | the path exists, the method does not (``Allow`` lists them all) |
| 409 | ``not-logged-in``, ``already-logged-in`` | the profile's login state forbids it |
| 409 | ``user-offline`` | the user called is not online now |
| 409 | ``conference-refused`` | not now: not ringing, over, not the host, full or busy |
| 422 | ``bad-input`` | a body (even one not UTF-8 JSON), query or value the daemon refuses |
| 502 | ``refused`` | the login server or a supernode refused (its reason in ``message``) |
| 503 | ``not-online``, ``unreachable`` | no home supernode yet, or the network is down |

The token travels as ``Authorization: Bearer TOKEN``; WebSocket clients that
cannot set headers may pass ``?token=`` instead. ``/v1/events`` streams daemon
events (state changes, presence, login/logout, calls) as JSON text frames.

Calls are resources under ``/v1/calls``: placing one returns its document at
once (state ``calling``); answering, hanging up and holding return it too;
``/v1/calls/{id}/wait`` long-polls until the call ends, so a client follows a
call with one request a second and no WebSocket.

Conferences are resources under ``/v1/conferences`` in the same style:
starting one returns its document at once (state ``inviting``),
``/v1/conferences/answer`` joins the oldest ringing invite (waiting up to
``wait_s``), and ``/v1/conferences/{id}/wait`` long-polls until this
participant's conference ends.

Contacts, chats, groups and files go through the daemon's
:class:`~hopline.daemon.messenger.Messenger`: ``/v1/contacts``,
``/v1/chats/{peer}/messages`` (a peer is a username or a group's hex id),
``/v1/groups`` and ``/v1/files``. A file transfer is followed like a call:
``/v1/files/{id}/wait`` long-polls until it ends, and ``/v1/files/{id}``
gives its progress at any time.
"""

from __future__ import annotations

import contextlib
import hmac
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from hopline import __version__
from hopline.api import models as m
from hopline.daemon.errors import DaemonError
from hopline.daemon.node import ClientDaemon

WS_UNAUTHORIZED = 4401  # application close code: bad or missing token
SUBSCRIBED: dict[str, Any] = {"type": "subscribed", "data": {}}
"""The first frame of ``/v1/events``: every event after it reaches this subscriber."""
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": m.ApiErrorDoc} for code in (401, 404, 409, 422, 502, 503)
}


BEARER = HTTPBearer(auto_error=False, description="the token in the profile's api.token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


class CallIdConvertor(Convertor[str]):
    """A ``{call_id}`` path segment: anything but the names of ``/v1/calls``' own actions.

    Without it ``GET /v1/calls/answer`` would reach ``GET /v1/calls/{call_id}``
    and be refused as a bad call id instead of answering 405 (``answer`` and
    ``hangup`` are POST-only). Other bad ids still reach the route and get a
    422 that says what a call id looks like.
    """

    regex = "(?!(?:answer|hangup)$)[^/]+"

    def convert(self, value: str) -> str:
        """The segment as it is."""
        return value

    def to_string(self, value: str) -> str:
        """The segment as it is."""
        return value


register_url_convertor("hopline_call_id", CallIdConvertor())


class ConfIdConvertor(CallIdConvertor):
    """A ``{conf_id}`` path segment: anything but ``answer`` (POST-only, see above)."""

    regex = "(?!answer$)[^/]+"


register_url_convertor("hopline_conf_id", ConfIdConvertor())


class Unauthorized(Exception):
    """A request without the right token."""


def _token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _authorized(request: Request, credentials: Credentials) -> None:
    if credentials is None or not _token_matches(credentials.credentials, request.app.state.token):
        raise Unauthorized


def _daemon(request: Request) -> ClientDaemon:
    daemon: ClientDaemon = request.app.state.daemon
    return daemon


Daemon = Annotated[ClientDaemon, Depends(_daemon)]
router = APIRouter(dependencies=[Depends(_authorized)], responses=ERRORS)


def create_app(daemon: ClientDaemon | None, token: str) -> FastAPI:
    """The API application for ``daemon``; every route needs ``token``.

    Without a daemon the application still describes itself (``/openapi.json``),
    which is how ``python -m hopline.api.openapi`` writes ``docs/openapi.json``.
    """
    app = FastAPI(
        title="Hopline daemon API",
        version=__version__,
        description="The local API of one Hopline profile's daemon (hopline up).",
        docs_url=None,
        redoc_url=None,
    )
    app.state.daemon, app.state.token = daemon, token
    _install_error_handlers(app)
    app.include_router(router)
    app.add_api_websocket_route("/v1/events", events)
    return app


def _error(status: int, code: str, message: str, retry_after_ms: int | None = None) -> JSONResponse:
    doc = m.ApiErrorDoc(error=code, message=message, retry_after_ms=retry_after_ms)
    return JSONResponse(doc.model_dump(exclude_none=True), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, __: Exception) -> JSONResponse:
        response = _error(401, "unauthorized", "missing or wrong API token (see api.token)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(DaemonError)
    async def daemon_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DaemonError)
        return _error(exc.status, exc.code, str(exc), exc.retry_after_ms)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error(422, "bad-input", _first_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _http_error(request, exc)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own refusals, as :class:`~hopline.api.models.ApiErrorDoc` too."""
    if exc.status_code == 404:
        return _error(404, "not-found", f"no such API route: {request.url.path}")
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        response = _error(405, "method-not-allowed", f"{request.method} is not allowed here")
        response.headers["Allow"] = ", ".join(allowed)
        return response
    if exc.status_code == 400:  # FastAPI could not even decode the body (not UTF-8)
        return _error(422, "bad-input", f"unreadable request body: {exc.detail}")
    return _error(exc.status_code, "http", str(exc.detail))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette lists only one route's)."""
    methods: set[str] = set()
    for route in (*router.routes, *request.app.router.routes):
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods.update(route.methods or ())
    return sorted(methods)


def _first_problem(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))


# ---------------------------------------------------------------- account


@router.post("/v1/register", response_model=m.Registered, tags=["account"])
async def register(body: m.RegisterRequest, daemon: Daemon) -> m.Registered:
    """Create an account on the login server."""
    fields = body.model_dump(exclude={"username", "password"}, exclude_none=True)
    name = await daemon.register(body.username, body.password, fields)
    return m.Registered(registered=name)


@router.post("/v1/login", response_model=m.LoggedIn, tags=["account"])
async def login(body: m.LoginRequest, daemon: Daemon) -> m.LoggedIn:
    """Log this device in and go online."""
    return m.LoggedIn(**await daemon.login(body.username, body.password))


@router.post("/v1/logout", response_model=m.LoggedOut, tags=["account"])
async def logout(daemon: Daemon) -> m.LoggedOut:
    """Go offline and revoke this device's certificate."""
    return m.LoggedOut(**await daemon.logout())


@router.get("/v1/status", response_model=m.Status, tags=["account"])
async def status(daemon: Daemon) -> m.Status:
    """Who, which supernode, public address, NAT class, presence."""
    return m.Status(**daemon.status())


@router.get("/v1/netcheck", response_model=m.Netcheck, tags=["account"])
async def netcheck(daemon: Daemon) -> m.Netcheck:
    """The NAT check made when the daemon went online (or after a network change)."""
    return m.Netcheck(**await daemon.netcheck(fresh=False))


@router.post("/v1/netcheck", response_model=m.Netcheck, tags=["account"])
async def netcheck_now(daemon: Daemon) -> m.Netcheck:
    """Check the NAT again now, against the home and other known supernodes."""
    return m.Netcheck(**await daemon.netcheck(fresh=True))


@router.post("/v1/shutdown", response_model=m.Stopping, tags=["account"])
async def shutdown(daemon: Daemon) -> m.Stopping:
    """Stop the daemon (it leaves the network cleanly)."""
    daemon.request_stop()
    return m.Stopping(stopping=True)


# ---------------------------------------------------------------- directory


@router.get("/v1/search", response_model=m.SearchResults, tags=["directory"])
async def search(
    daemon: Daemon,
    q: Annotated[str, Query(min_length=1, max_length=m.MAX_SEARCH_CHARS)],
    by: m.SearchBy = "any",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=m.MAX_SEARCH_CHARS)] = None,
) -> m.SearchResults:
    """Search the white pages, or look a handle up."""
    return m.SearchResults(**await daemon.search(q, by, limit, cursor))


@router.get("/v1/users/{username}", response_model=m.UserHit, tags=["directory"])
async def lookup(username: Annotated[str, m.Username], daemon: Daemon) -> m.UserHit:
    """Presence of one user: online, offline (last seen) or unknown."""
    return m.UserHit(**await daemon.lookup(username))


# ---------------------------------------------------------------- me


@router.get("/v1/profile", response_model=m.PublicProfile, tags=["me"])
async def get_profile(daemon: Daemon) -> m.PublicProfile:
    """This user's white-pages fields."""
    return m.PublicProfile(**daemon.public_profile())


@router.patch("/v1/profile", response_model=m.PublicProfile, tags=["me"])
async def set_profile(body: m.ProfileUpdate, daemon: Daemon) -> m.PublicProfile:
    """Change white-pages fields and publish them."""
    fields = body.model_dump(exclude_unset=True)
    return m.PublicProfile(**await daemon.set_profile(fields))


@router.put("/v1/presence", response_model=m.PresenceSet, tags=["me"])
async def set_presence(body: m.PresenceUpdate, daemon: Daemon) -> m.PresenceSet:
    """Set status and mood; published at once."""
    return m.PresenceSet(**await daemon.set_presence(body.status, body.mood))


# ---------------------------------------------------------------- calls

CallId = Annotated[str, PathParam(pattern=m.CALL_ID_PATTERN, description="the call's hex id")]
CALL = "/v1/calls/{call_id:hopline_call_id}"  # see CallIdConvertor


def _media(body: m.CallMedia) -> dict[str, Any]:
    return {"play": body.play, "record": body.record, "seconds": body.seconds}


@router.post("/v1/calls", response_model=m.Call, tags=["calls"])
async def place_call(body: m.CallRequest, daemon: Daemon) -> m.Call:
    """Call a user; returns at once (state ``calling``)."""
    return m.Call(**await daemon.place_call(body.user, **_media(body)))


@router.get("/v1/calls", response_model=m.Calls, tags=["calls"])
async def list_calls(daemon: Daemon) -> m.Calls:
    """Live calls, and those that ended in the last minute."""
    return m.Calls(calls=[m.Call(**doc) for doc in daemon.list_calls()])


@router.post("/v1/calls/answer", response_model=m.Call, tags=["calls"])
async def answer_next_call(body: m.AnswerNextRequest, daemon: Daemon) -> m.Call:
    """Answer the oldest ringing call, waiting up to ``wait_s`` for one."""
    doc = await daemon.answer_call(None, **_media(body), wait_s=body.wait_s)
    return m.Call(**doc)


@router.post("/v1/calls/hangup", response_model=m.Call, tags=["calls"])
async def hangup_current_call(daemon: Daemon) -> m.Call:
    """Hang up the only live call (or the most recent one)."""
    return m.Call(**await daemon.hangup_call(None))


@router.get(CALL, response_model=m.Call, tags=["calls"])
async def get_call(call_id: CallId, daemon: Daemon) -> m.Call:
    """One call's state and statistics."""
    return m.Call(**daemon.get_call(call_id))


@router.post(CALL + "/answer", response_model=m.Call, tags=["calls"])
async def answer_call(call_id: CallId, body: m.AnswerRequest, daemon: Daemon) -> m.Call:
    """Answer this ringing call."""
    return m.Call(**await daemon.answer_call(call_id, **_media(body)))


@router.post(CALL + "/hangup", response_model=m.Call, tags=["calls"])
async def hangup_call(call_id: CallId, daemon: Daemon) -> m.Call:
    """Hang up (or reject, or cancel) this call."""
    return m.Call(**await daemon.hangup_call(call_id))


@router.post(CALL + "/hold", response_model=m.Call, tags=["calls"])
async def hold_call(call_id: CallId, body: m.HoldRequest, daemon: Daemon) -> m.Call:
    """Put this call on hold, or resume it."""
    return m.Call(**await daemon.hold_call(call_id, body.on))


@router.get(CALL + "/wait", response_model=m.Call, tags=["calls"])
async def wait_call(
    call_id: CallId,
    daemon: Daemon,
    timeout_s: Annotated[float, Query(ge=0, le=m.MAX_WAIT_S)] = 30.0,
) -> m.Call:
    """Wait until this call ends, or ``timeout_s`` passes; returns its document then."""
    return m.Call(**await daemon.wait_call(call_id, timeout_s))


# ---------------------------------------------------------------- conferences

ConfId = Annotated[str, PathParam(pattern=m.CONF_ID_PATTERN, description="the conference's hex id")]
CONF = "/v1/conferences/{conf_id:hopline_conf_id}"  # see ConfIdConvertor


@router.post("/v1/conferences", response_model=m.Conference, tags=["conferences"])
async def start_conference(body: m.ConferenceRequest, daemon: Daemon) -> m.Conference:
    """Start a conference hosted here and invite ``users``; returns at once."""
    doc = await daemon.start_conference(body.users, **_media(body))
    return m.Conference(**doc)


@router.get("/v1/conferences", response_model=m.Conferences, tags=["conferences"])
async def list_conferences(daemon: Daemon) -> m.Conferences:
    """Conferences running here, ringing invites, and those that ended lately."""
    docs = daemon.list_conferences()
    return m.Conferences(conferences=[m.Conference(**doc) for doc in docs])


@router.post("/v1/conferences/answer", response_model=m.Conference, tags=["conferences"])
async def answer_next_conference(body: m.ConferenceAnswerNext, daemon: Daemon) -> m.Conference:
    """Join the oldest ringing conference, waiting up to ``wait_s`` for an invite."""
    doc = await daemon.answer_conference(None, **_media(body), wait_s=body.wait_s)
    return m.Conference(**doc)


@router.get(CONF, response_model=m.Conference, tags=["conferences"])
async def get_conference(conf_id: ConfId, daemon: Daemon) -> m.Conference:
    """One conference: host and why, members, speakers, per-participant statistics."""
    return m.Conference(**daemon.get_conference(conf_id))


@router.post(CONF + "/accept", response_model=m.Conference, tags=["conferences"])
async def accept_conference(
    conf_id: ConfId, body: m.ConferenceAnswer, daemon: Daemon
) -> m.Conference:
    """Join this ringing conference."""
    return m.Conference(**await daemon.answer_conference(conf_id, **_media(body)))


@router.post(CONF + "/decline", response_model=m.Conference, tags=["conferences"])
async def decline_conference(conf_id: ConfId, daemon: Daemon) -> m.Conference:
    """Do not join this ringing conference."""
    return m.Conference(**daemon.decline_conference(conf_id))


@router.post(CONF + "/leave", response_model=m.Conference, tags=["conferences"])
async def leave_conference(conf_id: ConfId, daemon: Daemon) -> m.Conference:
    """Leave this conference (a host hands the mix on first)."""
    return m.Conference(**daemon.leave_conference(conf_id))


@router.post(CONF + "/invite", response_model=m.Conference, tags=["conferences"])
async def invite_to_conference(
    conf_id: ConfId, body: m.ConferenceUser, daemon: Daemon
) -> m.Conference:
    """Host: invite one more user."""
    return m.Conference(**daemon.invite_to_conference(conf_id, body.user))


@router.post(CONF + "/remove", response_model=m.Conference, tags=["conferences"])
async def remove_from_conference(
    conf_id: ConfId, body: m.ConferenceUser, daemon: Daemon
) -> m.Conference:
    """Host: put a member out, or withdraw an invite."""
    return m.Conference(**daemon.remove_from_conference(conf_id, body.user))


@router.get(CONF + "/wait", response_model=m.Conference, tags=["conferences"])
async def wait_conference(
    conf_id: ConfId,
    daemon: Daemon,
    timeout_s: Annotated[float, Query(ge=0, le=m.MAX_WAIT_S)] = 30.0,
) -> m.Conference:
    """Wait until this conference ends here, or ``timeout_s`` passes; its document then."""
    return m.Conference(**await daemon.wait_conference(conf_id, timeout_s))


# ---------------------------------------------------------------- contacts

UserParam = Annotated[str, PathParam(min_length=1, max_length=64, description="a username")]
PeerParam = Annotated[
    str, PathParam(min_length=1, max_length=64, description="a username or a group's hex id")
]
GroupParam = Annotated[str, PathParam(pattern=m.HEX_ID_PATTERN, description="the group's hex id")]
TransferParam = Annotated[
    str, PathParam(pattern=m.HEX_ID_PATTERN, description="the transfer's hex id")
]
Limit = Annotated[int, Query(ge=1, le=m.MAX_LIMIT, description="at most this many messages")]


@router.get("/v1/contacts", response_model=m.Contacts, tags=["contacts"])
async def list_contacts(daemon: Daemon) -> m.Contacts:
    """Every contact with its state and the presence last seen."""
    docs = await daemon.messenger.contacts()
    return m.Contacts(contacts=[m.Contact(**doc) for doc in docs])


@router.post("/v1/contacts", response_model=m.Contact, tags=["contacts"])
async def add_contact(body: m.ContactRequest, daemon: Daemon) -> m.Contact:
    """Ask a user to become a contact (accepts at once if they asked first)."""
    return m.Contact(**await daemon.messenger.contact("add", body.user, body.message))


@router.post("/v1/contacts/{user}/{op}", response_model=m.Contact, tags=["contacts"])
async def contact_op(user: UserParam, op: m.ContactOpName, daemon: Daemon) -> m.Contact:
    """Accept, decline, remove or block a contact."""
    return m.Contact(**await daemon.messenger.contact(op, user))


# ---------------------------------------------------------------- chats


@router.post("/v1/chats/{peer}/messages", response_model=m.ChatMessage, tags=["chats"])
async def send_message(peer: PeerParam, body: m.SendMessage, daemon: Daemon) -> m.ChatMessage:
    """Send a message to a user or a group; returns it with how it went out."""
    return m.ChatMessage(**await daemon.messenger.send(peer, body.text))


@router.get("/v1/chats/{peer}/messages", response_model=m.History, tags=["chats"])
async def history(peer: PeerParam, daemon: Daemon, limit: Limit = 50) -> m.History:
    """The last ``limit`` messages with a user or a group, oldest first, with receipts."""
    docs = await daemon.messenger.history(peer, limit)
    return m.History(peer=peer, messages=[m.ChatMessage(**doc) for doc in docs])


@router.post("/v1/chats/{peer}/read", response_model=m.ReadMarked, tags=["chats"])
async def mark_read(peer: PeerParam, daemon: Daemon) -> m.ReadMarked:
    """Mark the conversation read; read receipts go to the senders."""
    return m.ReadMarked(**await daemon.messenger.mark_read(peer))


@router.get("/v1/messages/search", response_model=m.Messages, tags=["chats"])
async def search_messages(
    daemon: Daemon,
    q: Annotated[str, Query(min_length=1, max_length=m.MAX_QUERY_CHARS)],
    limit: Limit = 50,
) -> m.Messages:
    """Messages containing every word of ``q``, in every conversation."""
    docs = await daemon.messenger.search(q, limit)
    return m.Messages(messages=[m.ChatMessage(**doc) for doc in docs])


@router.get("/v1/messaging", response_model=m.MessagingStatus, tags=["chats"])
async def messaging_status(daemon: Daemon) -> m.MessagingStatus:
    """The messaging service's queues and counters."""
    return m.MessagingStatus(**daemon.messenger.messaging_status())


# ---------------------------------------------------------------- groups


def _group(doc: dict[str, Any]) -> m.Group:
    return m.Group(**{**doc, "group_id": doc["group"]})


@router.get("/v1/groups", response_model=m.Groups, tags=["groups"])
async def list_groups(daemon: Daemon) -> m.Groups:
    """Every group this device knows, with its members."""
    return m.Groups(groups=[_group(doc) for doc in await daemon.messenger.groups()])


@router.post("/v1/groups", response_model=m.Group, tags=["groups"])
async def create_group(body: m.GroupCreate, daemon: Daemon) -> m.Group:
    """A new group of this user and ``members`` (each is told)."""
    return _group(await daemon.messenger.create_group(body.name, body.members))


@router.post("/v1/groups/{group_id}/invite", response_model=m.Group, tags=["groups"])
async def invite(group_id: GroupParam, body: m.GroupInvite, daemon: Daemon) -> m.Group:
    """Add users to a group."""
    return _group(await daemon.messenger.invite(group_id, body.users))


@router.post("/v1/groups/{group_id}/leave", response_model=m.Group, tags=["groups"])
async def leave_group(group_id: GroupParam, daemon: Daemon) -> m.Group:
    """Leave a group."""
    return _group(await daemon.messenger.leave(group_id))


@router.patch("/v1/groups/{group_id}", response_model=m.Group, tags=["groups"])
async def rename_group(group_id: GroupParam, body: m.GroupRename, daemon: Daemon) -> m.Group:
    """Rename a group."""
    return _group(await daemon.messenger.rename(group_id, body.name))


# ---------------------------------------------------------------- files


@router.post("/v1/files", response_model=m.Transfer, tags=["files"])
async def send_file(body: m.FileOffer, daemon: Daemon) -> m.Transfer:
    """Offer a file to a user; returns at once (state ``waiting``)."""
    return m.Transfer(**await daemon.messenger.send_file(body.peer, body.path))


@router.get("/v1/files", response_model=m.Transfers, tags=["files"])
async def list_transfers(daemon: Daemon) -> m.Transfers:
    """Live transfers, files offered to us, and recently finished ones."""
    return m.Transfers(transfers=[m.Transfer(**doc) for doc in daemon.messenger.transfers()])


@router.get("/v1/files/{transfer_id}", response_model=m.Transfer, tags=["files"])
async def get_transfer(transfer_id: TransferParam, daemon: Daemon) -> m.Transfer:
    """One transfer's state and progress."""
    return m.Transfer(**daemon.messenger.transfer(transfer_id))


@router.post("/v1/files/{transfer_id}/accept", response_model=m.Transfer, tags=["files"])
async def accept_file(
    transfer_id: TransferParam, daemon: Daemon, body: m.FileAccept | None = None
) -> m.Transfer:
    """Take a file offered to us (into ``to_dir``, or the downloads directory)."""
    to_dir = body.to_dir if body is not None else None
    return m.Transfer(**await daemon.messenger.accept_file(transfer_id, to_dir))


@router.post("/v1/files/{transfer_id}/decline", response_model=m.Transfer, tags=["files"])
async def decline_file(transfer_id: TransferParam, daemon: Daemon) -> m.Transfer:
    """Refuse a file offered to us."""
    return m.Transfer(**daemon.messenger.decline_file(transfer_id))


@router.post("/v1/files/{transfer_id}/cancel", response_model=m.Transfer, tags=["files"])
async def cancel_file(transfer_id: TransferParam, daemon: Daemon) -> m.Transfer:
    """Stop a transfer in either direction."""
    return m.Transfer(**daemon.messenger.cancel_file(transfer_id))


@router.get("/v1/files/{transfer_id}/wait", response_model=m.Transfer, tags=["files"])
async def wait_file(
    transfer_id: TransferParam,
    daemon: Daemon,
    timeout_s: Annotated[float, Query(ge=0, le=m.MAX_WAIT_S)] = 30.0,
) -> m.Transfer:
    """Wait until the transfer ends, or ``timeout_s`` passes; its document then."""
    return m.Transfer(**await daemon.messenger.wait_file(transfer_id, timeout_s))


# ---------------------------------------------------------------- events


async def events(websocket: WebSocket) -> None:
    """Daemon events as JSON text frames, after a ``subscribed`` frame once subscribed."""
    given = websocket.query_params.get("token")
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        given = header[7:]
    if not _token_matches(given, websocket.app.state.token):
        await websocket.close(code=WS_UNAUTHORIZED)
        return
    daemon: ClientDaemon = websocket.app.state.daemon
    await websocket.accept()
    subscription = daemon.events.subscribe()
    try:
        with contextlib.suppress(WebSocketDisconnect):  # the client went away
            await websocket.send_json(SUBSCRIBED)  # from here on, nothing is missed
            while True:
                event = await subscription.next()
                await websocket.send_json(event.to_json())
    finally:
        daemon.events.unsubscribe(subscription)

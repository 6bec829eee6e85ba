"""Property-based tests of the local API, generated from its OpenAPI description.

Schemathesis reads the document the daemon serves (``/openapi.json``, the
same as ``docs/openapi.json``) and, for every operation, sends requests made
from its schemas (valid ones and, at the first level, invalid ones too). Each
response must not be a 5xx, and its status code, headers and body must be
the ones the document declares.

* **In process**: the ASGI app over a real :class:`ClientDaemon` on a
  logged-out profile, many examples per operation.
* **A real daemon**: ``hopline up`` logged in on a real network (login server
  and supernodes as processes), over HTTP with the profile's token; fewer
  examples, valid requests only.

The token is checked from the document too: every operation it lists, and the
event WebSocket, refuse a request without the token or with a wrong one.

Runs are reproducible: Hypothesis is derandomized and keeps no example
database, so the same requests are sent each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import websockets
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.schemas import BaseSchema
from starlette.routing import WebSocketRoute

from hopline.api.app import WS_UNAUTHORIZED, create_app
from hopline.api.app import router as api_router
from hopline.api.openapi import openapi_document
from hopline.client.profile import Profile
from hopline.daemon.files import INFO_FILE, TOKEN_FILE
from hopline.daemon.node import ClientDaemon
from hopline.demo.cluster import Cluster
from hopline.testing.chat import wait_until
from hopline.testing.daemons import DaemonNet
from hopline.testing.network import start_network
from hopline.wire import Address

TOKEN = "t0ken-for-schema-tests"
WRONG = "Bearer not-the-token"
FILE_FIELDS = frozenset({"path", "play", "record", "to_dir"})  # bodies naming files
LONG_WAITS = ("wait_s", "timeout_s")  # long-poll times, up to an hour by the schema
MAX_WAIT_IN_TEST_S = 0.5
# Register and login talk to the login server; the in-process daemon has none
# reachable (each attempt would take the full 10 s timeout), so they are
# covered against the real network only.
NEEDS_LOGIN_SERVER = r"^/v1/(register|login)$"
# Logging out and shutting down would end the logged-in daemon the real-network
# test is about; every other operation runs against it.
ENDS_THE_DAEMON = r"^/v1/(logout|shutdown)$"
QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
PROPERTY = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=QUIET,
)
PROPERTY_REAL = settings(PROPERTY, max_examples=6)


def _logged_out_daemon(directory: Path) -> ClientDaemon:
    profile = Profile.open(directory / "profile")
    profile.pin_login_server(Address.parse("127.0.0.1:9"), bytes(32))
    return ClientDaemon(profile)


def _reproducible(schema: BaseSchema, *modes: GenerationMode) -> BaseSchema:
    schema.config.generation.update(modes=list(modes), deterministic=True)
    return schema


def _confined(case: Any, directory: Path) -> None:
    """Keep what a generated request does to files inside ``directory``.

    A made-up absolute path becomes a file of that name under ``directory``
    (which does not exist unless the daemon writes it); long-poll waits are
    cut short so a request for the next call does not hold the test an hour.
    """
    if isinstance(case.body, dict):
        for name in FILE_FIELDS & case.body.keys():
            value = case.body[name]
            if isinstance(value, str):
                leaf = value.replace("\x00", "").strip("/").replace("/", "_") or "x"
                case.body[name] = str(directory / leaf)
        if isinstance(case.body.get("wait_s"), int | float):
            case.body["wait_s"] = min(case.body["wait_s"], MAX_WAIT_IN_TEST_S)
    if case.query:
        for name in LONG_WAITS:
            value = case.query.get(name)
            if isinstance(value, int | float):
                case.query[name] = min(value, MAX_WAIT_IN_TEST_S)


def _skipped_checks(case: Any) -> list[Any]:
    """Whether a named file exists is not in the schema: a made-up one is a 4xx, not a 5xx."""
    if isinstance(case.body, dict) and FILE_FIELDS & case.body.keys():
        return [positive_data_acceptance]
    return []


# ---------------------------------------------------------------- in process


@pytest.fixture(scope="module")
def daemon_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The API over a real daemon on a logged-out profile (nothing on the network)."""
    return create_app(_logged_out_daemon(tmp_path_factory.mktemp("schema")), TOKEN)


@pytest.fixture(scope="module")
def asgi_schema(daemon_app: Any) -> BaseSchema:
    """The document the app serves, sent with the token."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", daemon_app)
    schema.config.update(headers={"Authorization": f"Bearer {TOKEN}"})
    return _reproducible(schema, GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def tokenless_schema(daemon_app: Any) -> BaseSchema:
    """The same document, with valid requests only and no token configured."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", daemon_app)
    return _reproducible(schema, GenerationMode.POSITIVE)


in_process = schemathesis.pytest.from_fixture("asgi_schema").exclude(path_regex=NEEDS_LOGIN_SERVER)
tokenless = schemathesis.pytest.from_fixture("tokenless_schema")


@in_process.parametrize()
@PROPERTY
def test_in_process_no_server_errors_and_responses_match_the_document(
    case: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _confined(case, tmp_path_factory.getbasetemp() / "no-such-dir")
    case.call_and_validate(excluded_checks=_skipped_checks(case))


@tokenless.parametrize()
@settings(PROPERTY, max_examples=2)
def test_every_operation_refuses_a_missing_or_wrong_token(case: Any) -> None:
    for authorization in (None, WRONG, f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if authorization is not None:
            headers["Authorization"] = authorization
        case.headers = headers
        response = case.call()
        assert response.status_code == 401, (authorization, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == ["Bearer"]  # lower-case keys, lists


def test_the_document_lists_every_http_route() -> None:
    """Nothing served is hidden from the document, so the token test covers every route."""
    paths = openapi_document()["paths"]
    routes = [route for route in api_router.routes if isinstance(route, APIRoute)]
    assert len(routes) >= len(paths)
    for route in routes:
        for method in route.methods or ():
            assert method.lower() in paths.get(route.path_format, {}), (method, route.path)


def _websocket_paths(app: Any) -> list[str]:
    return [route.path for route in app.routes if isinstance(route, WebSocketRoute)]


async def test_every_websocket_refuses_a_missing_or_wrong_token(daemon_app: Any) -> None:
    paths = _websocket_paths(daemon_app)
    assert "/v1/events" in paths
    attempts: list[tuple[str, dict[str, str]]] = [
        ("", {}),
        ("token=nope", {}),
        ("", {"authorization": WRONG}),
        (f"token={TOKEN}", {"authorization": WRONG}),  # the header wins over the query
    ]
    for path in paths:
        for query, headers in attempts:
            closed = await _first_answer(daemon_app, path, query, headers)
            assert closed == {"type": "websocket.close", "code": WS_UNAUTHORIZED, "reason": ""}
    for query, headers in ((f"token={TOKEN}", {}), ("", {"authorization": f"Bearer {TOKEN}"})):
        accepted = await _first_answer(daemon_app, "/v1/events", query, headers)
        assert accepted["type"] == "websocket.accept"  # the control: the right token is let in


async def test_the_event_stream_opens_with_a_subscribed_frame(daemon_app: Any) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    accepted, opening = await _answers(daemon_app, "/v1/events", "", headers, count=2)
    assert accepted["type"] == "websocket.accept"
    assert opening["type"] == "websocket.send"
    assert json.loads(opening["text"]) == {"type": "subscribed", "data": {}}


async def _first_answer(app: Any, path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    """The app's first ASGI message in answer to a WebSocket handshake (no server)."""
    return (await _answers(app, path, query, headers, count=1))[0]


async def _answers(
    app: Any, path: str, query: str, headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """The app's first ``count`` ASGI messages in answer to a WebSocket handshake."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
    }
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})
    answers: list[dict[str, Any]] = []
    enough: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)
        if len(answers) >= count and not enough.done():
            enough.set_result(None)

    session = asyncio.create_task(app(scope, incoming.get, send))
    try:
        async with asyncio.timeout(10):
            await enough
            return answers[:count]
    finally:
        session.cancel()  # an accepted socket waits for events until cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await session


# ---------------------------------------------------------------- a real daemon


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonNet]:
    """A login server and three supernodes, as processes, for this module."""
    workdir = tmp_path_factory.mktemp("schema-net")
    with Cluster(workdir / "logs") as cluster:
        ls, nodes = start_network(cluster, workdir, supernodes=3)
        yield DaemonNet(cluster, ls, nodes, workdir)


@pytest.fixture(scope="module")
def online(net: DaemonNet) -> DaemonNet:
    """alice and bob: daemons logged in; contacts, with a message between them."""
    for name in ("alice", "bob"):
        net.up(name)
        net.cli(name, "register", name)
        net.cli(name, "login", name)
        net.wait_online(name)
    net.cli("alice", "contacts", "add", "bob")
    net.cli("bob", "contacts", "accept", "alice")
    net.cli("alice", "chat", "send", "bob", "hello from the schema tests")
    return net


def _api_of(net: DaemonNet, name: str) -> tuple[str, str]:
    profile = net.workdir / name
    base = json.loads((profile / INFO_FILE).read_text())["api"]
    return base, (profile / TOKEN_FILE).read_text().strip()


@pytest.fixture(scope="module")
def http_schema(online: DaemonNet) -> BaseSchema:
    """The document alice's daemon serves, sent to it with its token."""
    base, token = _api_of(online, "alice")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    schema.config.update(base_url=base, headers={"Authorization": f"Bearer {token}"})
    return _reproducible(schema, GenerationMode.POSITIVE)


over_http = schemathesis.pytest.from_fixture("http_schema").exclude(path_regex=ENDS_THE_DAEMON)


# A logged-in daemon refuses some schema-valid requests for reasons no schema
# states, and says so with a 4xx: a contact already blocked (422, as the CLI
# expects), a search without a word of two letters, a user who is offline
# (409). So here every response must be documented and no 5xx, but a
# valid request may be refused; the in-process level checks that the schema's
# own rules and the daemon's agree.
@over_http.parametrize()
@PROPERTY_REAL
def test_real_daemon_no_server_errors_and_responses_match_the_document(
    case: Any, online: DaemonNet
) -> None:
    _confined(case, online.workdir / "confined")
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_real_daemon_is_still_online_after_the_generated_requests(online: DaemonNet) -> None:
    status = online.json("alice", "status")
    assert status["state"] == "online" and status["user"] == "alice"


@pytest.fixture
def real_api(online: DaemonNet) -> Iterator[tuple[str, str]]:
    yield _api_of(online, "alice")


def test_real_daemon_refuses_every_documented_operation_without_the_token(
    real_api: tuple[str, str],
) -> None:
    base, token = real_api
    document = httpx.get(f"{base}/openapi.json").json()
    for path, operations in document["paths"].items():
        url = base + path.replace("{", "").replace("}", "")  # any segment: 401 comes first
        for method in operations:
            for headers in ({}, {"Authorization": WRONG}):
                refused = httpx.request(method, url, headers=headers, json={})
                assert refused.status_code == 401, (method, path, refused.text)
                assert refused.json()["error"] == "unauthorized"
    assert httpx.get(f"{base}/v1/status", headers={"Authorization": f"Bearer {token}"}).is_success


async def test_real_daemon_events_need_the_token(real_api: tuple[str, str]) -> None:
    base, token = real_api
    url = base.replace("http", "ws", 1) + "/v1/events"
    for headers in ({}, {"Authorization": WRONG}):
        with pytest.raises(websockets.InvalidStatus):  # refused before the handshake ends
            async with websockets.connect(url, additional_headers=headers):
                pass
    right = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=right) as socket:
        async with httpx.AsyncClient(base_url=base, headers=right) as api:
            set_away = await api.put("/v1/presence", json={"status": "away", "mood": "testing"})
            assert set_away.status_code == 200, set_away.text
        event = await _next_of_type(socket, "presence")
        assert event["data"]["status"] == "away" and event["data"]["mood"] == "testing"


async def _next_of_type(socket: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            event: dict[str, Any] = json.loads(await socket.recv())
            if event.get("type") == kind:
                return event


def test_calling_a_user_who_is_not_online_is_a_4xx(online: DaemonNet) -> None:
    """Regression: both were 502 ``refused``, as if the network had failed."""
    online.up("carol")
    online.cli("carol", "register", "carol")
    online.cli("carol", "login", "carol")
    online.wait_online("carol")
    online.cli("carol", "down")
    assert wait_until(lambda: online.cli("carol", "status", check=False).returncode != 0, 15)
    base, token = _api_of(online, "alice")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
        offline = api.post("/v1/calls", json={"user": "carol"})
        assert offline.status_code == 409, offline.text
        assert offline.json()["error"] == "user-offline"
        unknown = api.post("/v1/calls", json={"user": "nobody-at-all"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json() == {
            "error": "not-found",
            "message": "cannot call nobody-at-all: there is no user nobody-at-all",
        }

"""The conference routes in process: token, limits on every field, logged-out answers.

A real :class:`ClientDaemon` on a logged-out profile sits behind the app
(httpx's ASGI transport, no network): what is checked here is what the API
refuses before a conference could start, and that the SDK sends what the
routes take. Conferences themselves, and the 404/409 answers of an online
daemon, run between real daemons in
``tests/daemon/test_conference_daemon_process.py``.
"""

from __future__ import annotations

import httpx
import pytest

from hopline.sdk import Client, HoplineError
from hopline.testing.api import TEST_TOKEN, needs_the_token, refused

CONF_ID = "00112233445566778899aabbccddeeff"
CONF = f"/v1/conferences/{CONF_ID}"


ROUTES = [
    ("POST", "/v1/conferences", {"users": ["bob", "carol"]}),
    ("GET", "/v1/conferences", None),
    ("POST", "/v1/conferences/answer", {}),
    ("GET", CONF, None),
    ("POST", f"{CONF}/accept", {}),
    ("POST", f"{CONF}/decline", None),
    ("POST", f"{CONF}/leave", None),
    ("POST", f"{CONF}/invite", {"user": "erin"}),
    ("POST", f"{CONF}/remove", {"user": "erin"}),
    ("GET", f"{CONF}/wait?timeout_s=1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_conference_route_needs_the_token(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    await needs_the_token(api, method, path, body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/conferences", {}),
        ("POST", "/v1/conferences", {"users": []}),
        ("POST", "/v1/conferences", {"users": "bob"}),
        ("POST", "/v1/conferences", {"users": ["b" * 65]}),
        ("POST", "/v1/conferences", {"users": ["no such user!"]}),
        ("POST", "/v1/conferences", {"users": [f"user{k:03d}" for k in range(64)]}),
        ("POST", "/v1/conferences", {"users": ["bob"], "play": "relative.wav"}),
        ("POST", "/v1/conferences", {"users": ["bob"], "record": "/tmp/a\x00b.wav"}),
        ("POST", "/v1/conferences", {"users": ["bob"], "seconds": 0}),
        ("POST", "/v1/conferences", {"users": ["bob"], "seconds": 86401}),
        ("POST", "/v1/conferences", {"users": ["bob"], "video": True}),
        ("POST", "/v1/conferences/answer", {"wait_s": -1}),
        ("POST", "/v1/conferences/answer", {"wait_s": 3601}),
        ("POST", f"{CONF}/accept", {"wait_s": 5}),  # waiting is for the next invite
        ("POST", f"{CONF}/invite", {}),
        ("POST", f"{CONF}/invite", {"user": "x"}),
        ("POST", f"{CONF}/remove", {"users": ["erin"]}),
        ("GET", "/v1/conferences/not-hex", None),
        ("POST", "/v1/conferences/xyz/leave", None),
        ("GET", f"/v1/conferences/{'a' * 33}", None),
        ("POST", f"/v1/conferences/{'a' * 31}/decline", None),
        ("GET", f"{CONF}/wait?timeout_s=3601", None),
        ("GET", f"{CONF}/wait?timeout_s=-1", None),
    ],
)
async def test_refused_inputs_are_bad_input(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    await refused(api, method, path, body, 422, "bad-input")


async def test_a_logged_out_daemon_has_no_conferences(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/conferences")
    assert response.status_code == 200 and response.json() == {"conferences": []}
    for method, path, body in ROUTES:
        if path == "/v1/conferences" and method == "GET":
            continue
        await refused(api, method, path, body, 409, "not-logged-in")


async def test_answer_is_post_only(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/conferences/answer")
    assert response.status_code == 405 and response.json()["error"] == "method-not-allowed"
    assert response.headers["Allow"] == "POST"


async def test_the_sdk_reaches_every_route(app: httpx.ASGITransport) -> None:
    client = Client("http://test", TEST_TOKEN, transport=app)
    async with client:
        assert await client.conferences() == []
        calls = [
            client.start_conference(["bob", "carol"], seconds=5),
            client.answer_conference(None, wait_s=0.1),
            client.answer_conference(CONF_ID, record="/tmp/heard.wav"),
            client.decline_conference(CONF_ID),
            client.leave_conference(CONF_ID),
            client.invite_to_conference(CONF_ID, "erin"),
            client.remove_from_conference(CONF_ID, "erin"),
            client.conference(CONF_ID),
            client.wait_conference(CONF_ID, 0.1),
        ]
        for call in calls:
            with pytest.raises(HoplineError) as refused:
                await call
            assert refused.value.code == "not-logged-in"  # the route took the request


async def test_the_sdk_checks_ids_and_bodies_first(app: httpx.ASGITransport) -> None:
    async with Client("http://test", TEST_TOKEN, transport=app) as client:
        for bad in (
            client.conference("not-hex"),
            client.leave_conference(CONF_ID + "0"),
            client.start_conference([]),
            client.invite_to_conference(CONF_ID, "x"),
        ):
            with pytest.raises(HoplineError) as refused:
                await bad
            assert refused.value.code == "bad-input" and refused.value.status == 0


async def test_openapi_documents_the_conference_routes(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/conferences"]) == {"get", "post"}
    for suffix in ("accept", "decline", "leave", "invite", "remove", "wait"):
        assert "/v1/conferences/{conf_id}/" + suffix in paths
    start = paths["/v1/conferences"]["post"]["responses"]
    assert {"200", "401", "404", "409", "422"} <= set(start)

"""The calls routes in process: token, limits on every field, logged-out answers.

A real :class:`ClientDaemon` on a logged-out profile sits behind the app
(httpx's ASGI transport, no network): what is checked here is what the API
refuses before a call could start. Calls themselves run between real
daemons in ``tests/daemon/test_calls_process.py``.
"""

from __future__ import annotations

import httpx
import pytest

from hopline.testing.api import needs_the_token, refused

CALL_ID = "0123456789abcdef0123456789abcdef"


ROUTES = [
    ("POST", "/v1/calls", {"user": "bob"}),
    ("GET", "/v1/calls", None),
    ("GET", f"/v1/calls/{CALL_ID}", None),
    ("POST", f"/v1/calls/{CALL_ID}/answer", {}),
    ("POST", "/v1/calls/answer", {}),
    ("POST", f"/v1/calls/{CALL_ID}/hangup", None),
    ("POST", "/v1/calls/hangup", None),
    ("POST", f"/v1/calls/{CALL_ID}/hold", {"on": True}),
    ("GET", f"/v1/calls/{CALL_ID}/wait?timeout_s=1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_calls_route_needs_the_token(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    await needs_the_token(api, method, path, body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/calls", {}),
        ("POST", "/v1/calls", {"user": ""}),
        ("POST", "/v1/calls", {"user": "b" * 65}),
        ("POST", "/v1/calls", {"user": "bob", "play": "relative.wav"}),
        ("POST", "/v1/calls", {"user": "bob", "record": "/tmp/a\x00b.wav"}),
        ("POST", "/v1/calls", {"user": "bob", "play": "/" + "p" * 4096}),
        ("POST", "/v1/calls", {"user": "bob", "seconds": 0}),
        ("POST", "/v1/calls", {"user": "bob", "seconds": -1}),
        ("POST", "/v1/calls", {"user": "bob", "seconds": 86401}),
        ("POST", "/v1/calls", {"user": "bob", "video": True}),
        ("POST", "/v1/calls/answer", {"wait_s": -1}),
        ("POST", "/v1/calls/answer", {"wait_s": 3601}),
        ("POST", "/v1/calls/answer", {"record": "out.wav"}),
        ("POST", f"/v1/calls/{CALL_ID}/answer", {"wait_s": 5}),  # waiting is for the next call
        ("POST", f"/v1/calls/{CALL_ID}/hold", {}),
        ("POST", f"/v1/calls/{CALL_ID}/hold", {"on": "perhaps"}),
        ("GET", "/v1/calls/not-hex", None),
        ("POST", "/v1/calls/xyz/hangup", None),
        ("GET", f"/v1/calls/{'a' * 33}", None),
        ("POST", f"/v1/calls/{'a' * 31}/answer", {}),
        ("GET", f"/v1/calls/{CALL_ID}/wait?timeout_s=3601", None),
        ("GET", f"/v1/calls/{CALL_ID}/wait?timeout_s=-1", None),
    ],
)
async def test_refused_inputs_are_bad_input(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    await refused(api, method, path, body, 422, "bad-input")


async def test_a_logged_out_daemon_has_no_calls(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/calls")
    assert response.status_code == 200 and response.json() == {"calls": []}
    for method, path, body in ROUTES:
        if path == "/v1/calls" and method == "GET":
            continue
        await refused(api, method, path, body, 409, "not-logged-in")


async def test_openapi_documents_the_calls_routes(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/calls"]) == {"get", "post"}
    assert "/v1/calls/{call_id}/wait" in paths and "/v1/calls/answer" in paths
    place = paths["/v1/calls"]["post"]["responses"]
    assert {"200", "401", "404", "422"} <= set(place)

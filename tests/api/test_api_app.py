"""The local API in process: token, validation, error documents, OpenAPI doc.

A real :class:`ClientDaemon` on a real (logged-out) profile sits behind the
app; requests go through httpx's ASGI transport, so no network is needed for
what is checked here: the daemon's answers when it is not online.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hopline.api.openapi import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


async def test_every_route_needs_the_token(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/v1/status"),
        ("GET", "/v1/search?q=ada"),
        ("PUT", "/v1/presence"),
        ("POST", "/v1/logout"),
        ("POST", "/v1/shutdown"),
        ("GET", "/v1/users/ada"),
    ]:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
            response = await api.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"] == "unauthorized"


async def test_status_of_a_logged_out_daemon(api: httpx.AsyncClient) -> None:
    status = (await api.get("/v1/status")).json()
    assert status["state"] == "logged-out" and status["user"] is None
    assert status["supernode"] is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/v1/search?q=ada", None, 409, "not-logged-in"),
        ("GET", "/v1/users/ada", None, 409, "not-logged-in"),
        ("PUT", "/v1/presence", {"status": "away"}, 409, "not-logged-in"),
        ("POST", "/v1/logout", None, 409, "not-logged-in"),
        ("PUT", "/v1/presence", {"status": "sleeping"}, 422, "bad-input"),
        ("PUT", "/v1/presence", {"status": "away", "mood": "x" * 201}, 422, "bad-input"),
        ("PUT", "/v1/presence", {"status": "away", "colour": "red"}, 422, "bad-input"),
        ("GET", "/v1/search?q=ada&limit=0", None, 422, "bad-input"),
        ("GET", "/v1/search?q=ada&by=shoe", None, 422, "bad-input"),
        ("GET", "/v1/search", None, 422, "bad-input"),
        ("POST", "/v1/login", {"username": "ada"}, 422, "bad-input"),
        ("POST", "/v1/login", {"username": "ada", "password": "p" * 2000}, 422, "bad-input"),
        ("PATCH", "/v1/profile", {"country": "GBR"}, 422, "bad-input"),
    ],
)
async def test_refusals_are_typed_documents(
    api: httpx.AsyncClient, method: str, path: str, body: object, status: int, error: str
) -> None:
    response = await api.request(method, path, json=body)
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc["error"] == error and doc["message"]


async def test_login_to_an_unreachable_server_is_503(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/login", json={"username": "ada", "password": "secret"})
    assert response.status_code == 503
    assert response.json()["error"] == "unreachable"


async def test_malformed_json_is_bad_input(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"] == "bad-input"


def test_docs_openapi_json_is_current() -> None:
    assert DOCS.read_text() == render(), "run: python -m hopline.api.openapi > docs/openapi.json"

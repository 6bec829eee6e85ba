"""The local API in process for tests: a logged-out daemon behind the app, no network.

:func:`logged_out_transport` builds the ASGI app of :mod:`hopline.api.app`
over a real :class:`~hopline.daemon.node.ClientDaemon` on a fresh profile
(pinned to a login server nobody answers at), wrapped in httpx's ASGI
transport; :func:`api_client` is an ``httpx.AsyncClient`` on it that sends
:data:`TEST_TOKEN`. What such an app can show is everything the API decides
before the network: the token, validation, error documents, logged-out
answers, the OpenAPI document. ``tests/api/conftest.py`` makes fixtures of them;
:func:`refused` and :func:`needs_the_token` check one request's refusal.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from hopline.api.app import create_app
from hopline.client.profile import Profile
from hopline.daemon.node import ClientDaemon
from hopline.wire import Address

__all__ = ["TEST_TOKEN", "api_client", "logged_out_transport", "needs_the_token", "refused"]

TEST_TOKEN = "t0ken-for-tests"  # noqa: S105 -- a test value, not a secret
UNREACHABLE_LOGIN_SERVER = "127.0.0.1:9"  # discard: nothing answers


def logged_out_transport(profile_dir: Path, token: str = TEST_TOKEN) -> httpx.ASGITransport:
    """The API app over a logged-out daemon on a new profile at ``profile_dir``."""
    profile = Profile.open(profile_dir)
    profile.pin_login_server(Address.parse(UNREACHABLE_LOGIN_SERVER), bytes(32))
    return httpx.ASGITransport(app=create_app(ClientDaemon(profile), token))


def api_client(transport: httpx.ASGITransport, token: str = TEST_TOKEN) -> httpx.AsyncClient:
    """An HTTP client on ``transport`` that sends ``token`` (use it with ``async with``)."""
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


async def refused(
    api: httpx.AsyncClient, method: str, path: str, body: object, status: int, error: str
) -> dict[str, object]:
    """Send one request; check the API refused it with ``status`` and ``error`` (and a
    message); return the error document."""
    response = await api.request(method, path, json=body)
    assert response.status_code == status, (method, path, response.text)
    doc: dict[str, object] = response.json()
    assert doc["error"] == error and doc["message"], (method, path, doc)
    return doc


async def needs_the_token(api: httpx.AsyncClient, method: str, path: str, body: object) -> None:
    """Check the request is refused with 401 without a token and with a wrong one."""
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        response = await api.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"

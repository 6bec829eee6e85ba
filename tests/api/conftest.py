"""Fixtures of the in-process API tests: the app over a logged-out daemon, and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hopline.testing.api import api_client, logged_out_transport


@pytest.fixture
def app(tmp_path: Path) -> httpx.ASGITransport:
    """The API app over a real, logged-out daemon (httpx's ASGI transport, no network)."""
    return logged_out_transport(tmp_path / "p")


@pytest.fixture
async def api(app: httpx.ASGITransport) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on :func:`app` that sends the token."""
    async with api_client(app) as client:
        yield client

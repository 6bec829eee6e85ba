"""Serving the local API with uvicorn inside the daemon's own event loop.

The daemon binds the API socket itself (so port 0 works and the real port is
known before anyone is told), hands it to uvicorn, and keeps signal handling
to itself: uvicorn's own SIGINT/SIGTERM capture is switched off, the daemon
decides when to stop and then tells the server to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

GRACEFUL_SHUTDOWN_S = 2.0


class ApiAddressError(ValueError):
    """The API address is not a loopback address."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check_loopback(host: str) -> None:
    """Raise :class:`ApiAddressError` unless ``host`` is a loopback address."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ApiAddressError(f"the API listens on loopback only (127.0.0.1 or ::1), not {host}")


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening TCP socket on a loopback address (the API is local only)."""
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class ApiServer:
    """One running API server: :meth:`start`, then :meth:`stop`."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
        )
        self._server = _EmbeddedServer(config)
        self._socket = sock
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:5123``."""
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def start(self) -> None:
        """Serve in the background; return once the server accepts requests."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise RuntimeError("the API server stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (open connections get a short grace period)."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._socket.close()

"""``hopline up``: run one profile's daemon and its API until told to stop.

Order of things: take the profile lock (a second daemon on the same profile
is refused), bind the API socket, make a fresh token, start the API, write
``daemon.json`` (only now can commands find the daemon), go online, and wait
for SIGINT, SIGTERM or the API's shutdown. Stopping runs the same steps
backwards, and the lock is released even when a step fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hopline.api.app import create_app
from hopline.api.server import ApiServer, bind_loopback
from hopline.client.profile import Profile
from hopline.daemon.files import ProfileLock, new_token, write_daemon_info
from hopline.daemon.node import ClientDaemon, DaemonConfig

log = logging.getLogger("hopline.daemon")


@dataclass(frozen=True)
class Ready:
    """What the daemon tells its starter once it serves."""

    api: str
    profile: str
    user: str | None


async def run_daemon(
    profile: Profile,
    api_host: str = "127.0.0.1",
    api_port: int = 0,
    config: DaemonConfig | None = None,
    on_ready: Callable[[Ready], None] | None = None,
) -> None:
    """Run the daemon of ``profile`` until SIGINT/SIGTERM or an API shutdown."""
    with ProfileLock(profile.path):
        daemon = ClientDaemon(profile, config)
        sock = bind_loopback(api_host, api_port)
        server = ApiServer(create_app(daemon, new_token(profile.path)), sock)
        await server.start()
        try:
            write_daemon_info(profile.path, server.url)
            await daemon.start()
            if on_ready is not None:
                on_ready(Ready(server.url, str(profile.path), daemon.user))
            with _stop_on_signals(daemon):
                await daemon.stop_requested()
            log.info("stopping")
        finally:
            await daemon.stop()
            await server.stop()


@contextlib.contextmanager
def _stop_on_signals(daemon: ClientDaemon) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

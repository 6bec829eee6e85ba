"""A client session inside a lab namespace, driven by JSON lines on stdin.

``python -m hopline.netlab.agent --profile DIR`` opens a logged-in profile
(``hopline register``/``hopline login`` made it), prints
``{"ready": true, "user": ...}`` and then answers one JSON line on stdout for
each JSON line it reads:

* ``{"op": "connect"}`` — :meth:`ClientSession.connect` (race to a home,
  learn the public address, publish presence), then keep the home alive in
  the background; answers ``{"ok": true, "home": "ip:port", "transport":
  "udp"|"tcp", "observed": "ip:port", "ms": ...}``.
* ``{"op": "lookup", "user": NAME}`` — a directory lookup; answers the state
  (``"online"``, ``"offline"``, ``"not-found"``) and the endpoints published.
* ``{"op": "status"}`` — home, transport, observed address, re-homes.
* ``{"op": "path", "user": NAME, "timeout": S, "fresh": BOOL}`` — open a
  peer-to-peer path to ``NAME`` (:class:`~hopline.path.manager.PathManager`;
  ``fresh`` closes an earlier one first) and round-trip a ping over it;
  answers ``{"ok": true, "path": PeerPath.describe(), "rtt_ms": ...}``.
  Paths other clients open to this one are accepted in the background.
* ``{"op": "path_ping", "user": NAME}`` — a ping over the path to ``NAME``
  (opened or accepted), answered with the path's description.
* ``{"op": "close"}`` (or end of input) — leave and exit.

Failures answer ``{"ok": false, "error": ...}`` and the agent goes on. It is
what a lab test runs where a client must sit behind a NAT: the test process
itself stays in the root namespace and talks to the agent over its pipes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hopline.client.profile import Profile, ProfileError
from hopline.client.session import ClientSession, SessionConfig
from hopline.path.manager import PathError, PathManager
from hopline.path.peer import PeerPath
from hopline.runtime.endpoint import EndpointError
from hopline.wire.commands import Ping, Pong
from hopline.wire.directory import LookupState

__all__ = ["Agent", "main"]


class Agent:
    """One session and the operations above."""

    def __init__(self, session: ClientSession) -> None:
        """Drive ``session`` (not connected yet)."""
        self.session = session
        self.keeper: asyncio.Task[None] | None = None
        self.paths = PathManager(session)
        self.peers: dict[str, PeerPath] = {}  # by peer user: opened or accepted
        self.acceptor: asyncio.Task[None] | None = None
        self._nonce = itertools.count(1)

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """Run one command; the answer to print."""
        op = command.get("op")
        user = str(command.get("user", ""))
        operations: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "connect": self.connect,
            "lookup": lambda: self.lookup(user),
            "status": self.status_answer,
            "path": lambda: self.path(command),
            "path_ping": lambda: self.path_ping(user),
        }
        operation = operations.get(str(op))
        if operation is None:
            return {"ok": False, "error": f"unknown op {op!r}"}
        try:
            return await operation()
        except (EndpointError, ProfileError, PathError, OSError, TimeoutError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def status_answer(self) -> dict[str, Any]:
        """The answer to ``status``."""
        return {"ok": True, **self.status()}

    async def connect(self) -> dict[str, Any]:
        """Find a home, publish, and keep the home alive from now on."""
        started = time.perf_counter()
        await self.session.connect()
        ms = round((time.perf_counter() - started) * 1000, 1)
        loop = asyncio.get_running_loop()
        if self.keeper is None:
            self.keeper = loop.create_task(self.session.run())
        if self.acceptor is None:
            await self.paths.start()
            self.acceptor = loop.create_task(self._accept())
        return {"ok": True, "ms": ms, **self.status()}

    async def _accept(self) -> None:
        while True:
            path = await self.paths.accept()
            self.peers[path.peer_user] = path

    async def path(self, command: dict[str, Any]) -> dict[str, Any]:
        """Open a path to a user and round-trip a ping over it."""
        user = str(command.get("user", ""))
        old = self.peers.pop(user, None)
        if old is not None and command.get("fresh"):
            await old.close()
        path = await self.paths.connect(user, timeout=float(command.get("timeout", 20.0)))
        self.peers[user] = path
        return await self.path_ping(user)

    async def path_ping(self, user: str) -> dict[str, Any]:
        """A ping over the path to ``user``; the path's description."""
        path = self.peers.get(user)
        if path is None:
            return {"ok": False, "error": f"no path to {user!r}"}
        started = time.perf_counter()
        reply = await path.request(Ping(nonce=next(self._nonce)), timeout=5.0)
        rtt = round((time.perf_counter() - started) * 1000, 2)
        if not isinstance(reply, Pong):
            return {"ok": False, "error": f"ping answered with {reply.NAME}"}
        return {"ok": True, "path": path.describe(), "rtt_ms": rtt}

    def status(self) -> dict[str, Any]:
        """Where this session stands."""
        session = self.session
        return {
            "user": session.user,
            "home": None if session.home_address is None else str(session.home_address),
            "transport": self.home_transport(),
            "observed": None if session.observed is None else str(session.observed),
            "rehomes": session.rehomes,
        }

    def home_transport(self) -> str | None:
        """ "udp" or "tcp": how the home connection runs (None: no home)."""
        for (kind, _), conn in self.session.endpoint.connections.items():
            if conn is self.session.home:
                return kind
        return None

    async def lookup(self, user: str) -> dict[str, Any]:
        """Where is ``user``?"""
        reply = await self.session.lookup(user)
        endpoints: list[dict[str, Any]] = []
        if reply.record is not None:
            for device in reply.record.devices:
                endpoints += [
                    {"address": str(e.address), "transport": e.transport, "kind": e.kind}
                    for e in device.endpoints
                ]
        state = {LookupState.ONLINE: "online", LookupState.OFFLINE: "offline"}
        return {
            "ok": True,
            "user": user,
            "state": state.get(LookupState(reply.state), "not-found"),
            "endpoints": endpoints,
        }

    async def close(self) -> None:
        """Stop keeping the home alive and leave."""
        for task in (self.keeper, self.acceptor):
            if task is not None:
                task.cancel()
        await self.paths.close()
        await self.session.close()


async def serve(profile_dir: Path, config: SessionConfig) -> None:
    """Open the profile, say ready, and answer commands until ``close`` or end of input."""
    agent = Agent(ClientSession(Profile.open(profile_dir, create=False), config))
    _emit({"ready": True, "user": agent.session.user})
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            try:
                command = json.loads(line)
            except ValueError:
                _emit({"ok": False, "error": "not JSON"})
                continue
            if not isinstance(command, dict) or command.get("op") == "close":
                _emit({"ok": True, "closed": True})
                return
            _emit(await agent.handle(command))
    finally:
        await agent.close()


def _emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hopline.netlab.agent")
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--keepalive", type=float, default=SessionConfig.keepalive_s)
    parser.add_argument("--connect-timeout", type=float, default=SessionConfig.connect_timeout_s)
    args = parser.parse_args(argv)
    config = SessionConfig(keepalive_s=args.keepalive, connect_timeout_s=args.connect_timeout)
    asyncio.run(serve(args.profile, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo's daemons and the messaging steps: contacts, presence, chat, offline, a file.

These steps run what a user runs: ``hopline up`` for alice and bob as
separate processes, and every action through the real command line
(``hopline register``, ``login``, ``contacts``, ``presence set``, ``chat
send``, ``chat history``, ``send-file``, ``files accept``, and the call in
:mod:`hopline.demo.walkthrough`) against those daemons. A step waits for
what the other side sees by asking that side's daemon (bounded polls), and
checks it: the request arrived, the accepted contact sees the new presence,
the reply and the delivered receipt came back, a message sent while bob's
daemon was stopped was stored by the supernodes and shown once he was
back, the file arrived with the same SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from hopline.demo.cluster import Cluster, Proc, hopline_command
from hopline.files.service import LIVE_STATES

T = TypeVar("T")
PASSWORD = "demo passphrase for hopline"  # noqa: S105 -- a throwaway demo account
POLL_S = 0.1
FILE_BYTES = 2 * 1024 * 1024
USERS = ("alice", "bob")


class ChatStepFailed(Exception):
    """A messaging step's check did not hold; the message says what was seen."""


@dataclass
class ChatSteps:
    """alice's and bob's daemons and the steps run against them."""

    workdir: Path
    pin_args: Callable[[], list[str]]
    daemons: dict[str, Proc] = field(default_factory=dict)
    cluster: Cluster | None = None

    # ------------------------------------------------------------ plumbing

    def env(self, user: str, password: str = PASSWORD) -> dict[str, str]:
        """The environment of a command run as ``user`` (profile and password)."""
        profile = str(self.workdir / user)
        return {**os.environ, "HOPLINE_PROFILE": profile, "HOPLINE_PASSWORD": password}

    def run(
        self, user: str, *args: str, password: str = PASSWORD
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hopline ARGS`` on ``user``'s profile and return how it ended."""
        return subprocess.run(
            hopline_command(*args),
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env(user, password),
            check=False,
        )

    def cli(self, user: str, *args: str, as_json: bool = True) -> Any:
        """Run ``hopline ARGS`` on ``user``'s profile; its JSON document."""
        done = self.run(user, *args, "--json") if as_json else self.run(user, *args)
        if done.returncode != 0:
            raise ChatStepFailed(
                f"hopline {' '.join(args)}: {done.stderr.strip() or done.returncode}"
            )
        return json.loads(done.stdout) if as_json else done.stdout

    def start(self, user: str, *args: str) -> subprocess.Popen[str]:
        """``hopline ARGS`` for ``user`` in the background, as a second terminal would."""
        return subprocess.Popen(
            hopline_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(user),
        )

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float) -> Any:
        """The JSON document a background ``--json`` command printed when it ended."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise ChatStepFailed(f"still running after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise ChatStepFailed(err.strip() or f"exit {proc.returncode}")
        return json.loads(out)

    @staticmethod
    def until(probe: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
        """Poll ``probe`` until it returns something; fail with ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found is not None:
                return found
            time.sleep(POLL_S)
        raise ChatStepFailed(f"gave up after {timeout:.0f} s waiting for {what}")

    def contact(self, user: str, other: str) -> dict[str, Any] | None:
        """``user``'s contact entry for ``other``, if any."""
        for entry in self.cli(user, "contacts", "list")["contacts"]:
            if entry["user"] == other:
                return dict(entry)
        return None

    # ------------------------------------------------------------ the steps

    def start_daemons(self, cluster: Cluster) -> str:
        """``hopline up`` for both users (not logged in yet: that comes next)."""
        self.cluster = cluster
        for user in USERS:
            self.daemons[user] = self._up(user, f"daemon-{user}")
        return ", ".join(f"{u}: pid {p.pid}, API {p.ready['api']}" for u, p in self.daemons.items())

    def _up(self, user: str, name: str) -> Proc:
        assert self.cluster is not None, "start_daemons first"
        args = ["up", "--profile", str(self.workdir / user), *self.pin_args()]
        return self.cluster.start(name, args)

    def wait_online(self, user: str) -> dict[str, Any]:
        """Poll ``hopline status`` until ``user``'s daemon is online (adds ``waited_ms``)."""
        started = time.perf_counter()
        status = self.until(partial(self._online, user), f"{user} online")
        return status | {"waited_ms": (time.perf_counter() - started) * 1000}

    def _online(self, user: str) -> dict[str, Any] | None:
        status = self.cli(user, "status")
        return dict(status) if status["state"] == "online" else None

    def contacts(self) -> str:
        """alice asks bob; bob sees the request and accepts; alice sees it accepted."""
        started = time.perf_counter()
        self.cli("alice", "contacts", "add", "bob", "--message", "hi bob, it's alice")
        request = self.until(
            lambda: self._in_state("bob", "alice", "requested_by_them"),
            "bob to see alice's request",
        )
        self.cli("bob", "contacts", "accept", "alice")
        self.until(lambda: self._in_state("alice", "bob", "accepted"), "alice to see bob accept")
        ms = (time.perf_counter() - started) * 1000
        return (
            f"bob saw the request ({request['request_text']!r}) and accepted; "
            f"alice saw it in {ms:.0f} ms"
        )

    def _in_state(self, user: str, other: str, *states: str) -> dict[str, Any] | None:
        entry = self.contact(user, other)
        return entry if entry is not None and entry["state"] in states else None

    def presence(self) -> str:
        """bob goes away with a mood; alice, his contact, sees it pushed."""
        started = time.perf_counter()
        self.cli("bob", "presence", "set", "away", "--mood", "making tea")

        def seen() -> dict[str, Any] | None:
            entry = self.contact("alice", "bob")
            ok = entry and entry["presence"] == "away" and entry["mood"] == "making tea"
            return entry if ok else None

        self.until(seen, "alice to see bob away")
        ms = (time.perf_counter() - started) * 1000
        self.cli("bob", "presence", "set", "online")
        return f"alice saw bob 'away, making tea' {ms:.0f} ms after he set it"

    def chat(self) -> str:
        """alice writes, bob reads and answers, alice sees the answer and the receipt."""
        started = time.perf_counter()
        sent = self.cli("alice", "chat", "send", "bob", "Hello Bob, are you there?")
        self.until(lambda: self._has("bob", "alice", sent["message_id"]), "bob to get it")
        reply = self.cli("bob", "chat", "send", "alice", "Yes! Loud and clear.")
        shown = self.until(
            lambda: self._has("alice", "bob", reply["message_id"]), "alice to get the reply"
        )
        ms = (time.perf_counter() - started) * 1000
        self.until(lambda: self._delivered("alice", sent["message_id"]), "the delivered receipt")
        order = [m["sender"] for m in shown]
        if order[-2:] != ["alice", "bob"]:
            raise ChatStepFailed(f"alice shows the conversation as {order}")
        return (
            f"round trip in {ms:.0f} ms; both show the same 2 messages in order, "
            "end-to-end encrypted; alice got bob's delivered receipt"
        )

    def offline_message(self) -> str:
        """bob's daemon stops; alice writes; the supernodes hold it until bob is back."""
        daemon = self.daemons["bob"]
        daemon.kill(signal.SIGTERM)  # as a user stops it: bob leaves the network
        if daemon.popen.wait(timeout=20) != 0:
            raise ChatStepFailed(f"bob's daemon ended with {daemon.popen.returncode}")
        text = "Call me when you are back."
        sent = self.cli("alice", "chat", "send", "bob", text)
        if sent["delivery"] != {"stored": 1}:
            raise ChatStepFailed(f"alice's message was not stored for bob: {sent['delivery']}")
        started = time.perf_counter()
        self.daemons["bob"] = self._up("bob", "daemon-bob-again")
        waited = self.wait_online("bob")["waited_ms"]
        history = self.until(
            lambda: self._has("bob", "alice", sent["message_id"]), "bob to get the offline message"
        )
        ms = (time.perf_counter() - started) * 1000
        shown = next(m["text"] for m in history if m["message_id"] == sent["message_id"])
        if shown != text:
            raise ChatStepFailed(f"bob shows the message as {shown!r}")
        return (
            f"bob was offline: alice's message waited on the supernodes, sealed for bob; "
            f"his daemon came back, was online in {waited:.0f} ms and showed the message "
            f"{ms:.0f} ms after it was started"
        )

    def _has(self, user: str, peer: str, message_id: str) -> list[dict[str, Any]] | None:
        history: list[dict[str, Any]] = self.cli(user, "chat", "history", peer)["messages"]
        return history if any(m["message_id"] == message_id for m in history) else None

    def _delivered(self, user: str, message_id: str) -> bool | None:
        for message in self.cli(user, "chat", "history", "bob")["messages"]:
            if message["message_id"] == message_id and message["receipts"]:
                return True if message["receipts"][0]["delivered_at_ms"] else None
        return None

    def file(self) -> str:
        """alice sends 2 MiB of random bytes; bob accepts; the SHA-256 must match."""
        source = self.workdir / "holiday-photo.bin"
        source.write_bytes(os.urandom(FILE_BYTES))
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        started = time.perf_counter()
        offer = self.cli("alice", "send-file", "bob", str(source), "--no-wait")
        incoming = self.until(lambda: self._offered("bob", offer["sha256"]), "bob to see the offer")
        into = self.workdir / "bob-downloads"
        into.mkdir(exist_ok=True)
        self.cli("bob", "files", "accept", incoming["transfer_id"], "--to", str(into))
        done = self.until(
            lambda: self._finished("bob", incoming["transfer_id"]), "the file to arrive", 60
        )
        ms = (time.perf_counter() - started) * 1000
        if done["state"] != "complete":
            raise ChatStepFailed(f"the transfer ended {done['state']}: {done['detail']}")
        saved = Path(done["saved_to"])
        if hashlib.sha256(saved.read_bytes()).hexdigest() != digest:
            raise ChatStepFailed(f"{saved} differs from what alice sent")
        took = max(float(done["elapsed_s"]), 0.001)  # offer to verified file, on bob's side
        return (
            f"{FILE_BYTES // 1024} KiB over a {done['path']} path, {took:.2f} s from offer "
            f"to checked file on bob's side ({FILE_BYTES / took / 1e6:.1f} MB/s, accepting "
            f"included), SHA-256 equal; {ms:.0f} ms with the command-line round trips"
        )

    def _offered(self, user: str, sha256: str) -> dict[str, Any] | None:
        for transfer in self.cli(user, "files", "list")["transfers"]:
            if transfer["sha256"] == sha256 and transfer["state"] == "offered":
                return dict(transfer)
        return None

    def _finished(self, user: str, transfer_id: str) -> dict[str, Any] | None:
        for transfer in self.cli(user, "files", "list")["transfers"]:
            live = transfer["state"] in LIVE_STATES
            if transfer["transfer_id"] == transfer_id and not live:
                return dict(transfer)
        return None

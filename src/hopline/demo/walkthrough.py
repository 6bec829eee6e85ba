"""The steps of ``hopline demo``, each timed and checked.

The network has a login server and supernodes; the walkthrough grows as
capabilities arrive (today: accounts, the overlay directory, search, paths
between peers, a voice call, and then, with alice's and bob's daemons
running as processes and driven by the real command line, contacts,
presence, a chat and a file: :mod:`hopline.demo.chat`). Every step does the real thing: separate
processes on loopback, real sockets, the real CLI, real Opus, and checks
its result. The call plays speech that ships with Hopline (``speech.wav``,
made with espeak-ng) and scores what bob heard with wideband PESQ. A failed
step is reported, and the demo exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hopline.calls.service import CallConfig, CallService
from hopline.client.profile import Profile, parse_ls_key
from hopline.client.session import ClientSession
from hopline.connection import Expectation
from hopline.demo.chat import ChatStepFailed, ChatSteps
from hopline.demo.cluster import Cluster, ClusterError, Proc, enrollment_token, hopline_command
from hopline.identity import CertificateVerifier, Role
from hopline.media.audio import load_voice
from hopline.media.score import pesq_wb
from hopline.path.manager import PathManager
from hopline.runtime.endpoint import Endpoint, EndpointError, PeerConnection
from hopline.wire import Address, decode, encode
from hopline.wire.commands import Echo, Forward, Ping, Pong
from hopline.wire.directory import LookupState, SearchField

PASSWORD = "demo passphrase for hopline"  # noqa: S105 -- a throwaway demo account
USERS = (("alice", "Alice Liddell", "Oxford", "GB"), ("bob", "Bob Marley", "Kingston", "JM"))
SPEECH = Path(__file__).with_name("speech.wav")
REPORT_KEYS = (
    *("state", "duration_s", "path", "codec", "packets_sent", "packets_received"),
    *("loss", "jitter_ms", "rtt_ms", "mos_estimate"),
)


class StepFailed(Exception):
    """A step's check did not hold; the message says what was seen."""


@dataclass
class Step:
    """One line of the demo's report."""

    name: str
    ok: bool
    ms: float
    detail: str = ""


@dataclass
class Walkthrough:
    """Runs the steps against a cluster in a temporary directory."""

    workdir: Path
    seconds: float
    on_step: Callable[[Step], None]
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    call: dict[str, Any] | None = None  # the call step's report, with "pesq"

    def record(self, name: str, started: float, ok: bool, detail: str) -> Step:
        step = Step(name, ok, round((time.perf_counter() - started) * 1000, 1), detail)
        self.steps.append(step)
        self.on_step(step)
        return step

    def run(self, name: str, action: Callable[[], str]) -> bool:
        """Run one step; a StepFailed or a failed process marks it failed."""
        started = time.perf_counter()
        try:
            detail = action()
        except (
            StepFailed,
            ChatStepFailed,
            OSError,
            subprocess.SubprocessError,
            EndpointError,
            ClusterError,
        ) as exc:
            return self.record(name, started, False, str(exc)).ok
        return self.record(name, started, True, detail).ok

    # ------------------------------------------------------------ the steps

    def start_login_server(self, cluster: Cluster) -> str:
        proc = cluster.start(
            "loginserver",
            ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(self.workdir / "ls")],
        )
        self.facts["ls"] = proc
        return f"pid {proc.pid}, {proc.ready['listen']}, key {proc.ready['public_key'][:12]}…"

    def start_supernodes(self, cluster: Cluster, count: int = 3) -> str:
        ls: Proc = self.facts["ls"]
        started: list[Proc] = []
        for n in range(1, count + 1):
            token = enrollment_token(self.workdir / "ls")
            args = [
                *("supernode", "--listen", "127.0.0.1:0"),
                *("--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]),
                *("--data-dir", str(self.workdir / f"sn{n}"), "--enroll-token", token),
                *("--metrics", "127.0.0.1:0"),
            ]
            if started:
                args += ["--join", started[0].ready["listen"]]
            started.append(cluster.start(f"sn{n}", args))
        self.facts["supernodes"] = started
        return ", ".join(f"{p.ready['node_id']} on {p.ready['listen']}" for p in started)

    def overlay(self) -> str:
        """Wait until every supernode sees all of them (read from their metrics)."""
        nodes: list[Proc] = self.facts["supernodes"]
        deadline = time.monotonic() + 30
        seen: list[float] = []
        while time.monotonic() < deadline:
            seen = [members_seen(p.ready["metrics"]) for p in nodes]
            if all(count == len(nodes) for count in seen):
                return f"each of the {len(nodes)} supernodes sees all {len(nodes)}"
            time.sleep(0.2)
        raise StepFailed(f"members seen: {seen}")

    def online_and_lookup(self) -> str:
        return asyncio.run(self._online_and_lookup())

    async def _online_and_lookup(self) -> str:
        profiles = [Profile.open(self.workdir / u, create=False) for u in ("alice", "bob")]
        sessions = [ClientSession(p) for p in profiles]
        try:
            started = time.perf_counter()
            for session in sessions:
                await session.connect()
            online_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            found = await sessions[1].lookup("alice")
            lookup_ms = (time.perf_counter() - started) * 1000
        finally:
            for session in sessions:
                await session.close()
        if found.state != LookupState.ONLINE or found.record is None:
            raise StepFailed(f"alice not found: state {found.state}")
        where = found.record.devices[0].endpoints[0].address
        return (
            f"both online (home race + presence) in {online_ms:.0f} ms; "
            f"bob found alice at {where} in {lookup_ms:.1f} ms"
        )

    def peer_path(self) -> str:
        return asyncio.run(self._peer_path())

    async def _peer_path(self) -> str:
        """Alice opens a peer-to-peer path to bob; both ping over it."""
        sessions = [
            ClientSession(Profile.open(self.workdir / u, create=False)) for u in ("alice", "bob")
        ]
        managers = [PathManager(session) for session in sessions]
        try:
            for session, manager in zip(sessions, managers, strict=True):
                await session.connect()
                await manager.start()
            path = await managers[0].connect("bob", timeout=15)
            accepted = await asyncio.wait_for(managers[1].accept(), 10)
            there = await path.request(Ping(nonce=1), timeout=5)
            back = await accepted.request(Ping(nonce=2), timeout=5)
        finally:
            for manager, session in zip(managers, sessions, strict=True):
                await manager.close()
                await session.close()
        if not (isinstance(there, Pong) and isinstance(back, Pong)):
            raise StepFailed(f"pings over the path answered {there!r}, {back!r}")
        about = path.describe()
        return (
            f"{about['kind']} {about['family']} {about['local']} -> {about['remote']}; "
            f"first packet from bob after {about['first_packet_ms']:.0f} ms, "
            f"secure connection after {about['established_ms']:.0f} ms"
        )

    def voice_call(self) -> str:
        return asyncio.run(self._voice_call())

    async def _voice_call(self) -> str:
        """alice calls bob and plays speech; bob records; PESQ of what he heard."""
        sessions = [
            ClientSession(Profile.open(self.workdir / u, create=False)) for u in ("alice", "bob")
        ]
        managers = [PathManager(session) for session in sessions]
        services = [CallService(m, config=CallConfig(devices=False)) for m in managers]
        heard = self.workdir / "bob-heard.wav"
        seconds = len(load_voice(SPEECH)) / 48000 + 0.5
        try:
            for session, manager, service in zip(sessions, managers, services, strict=True):
                await session.connect()
                await manager.start()
                service.start()
            outgoing = await services[0].place(
                "bob", play=str(SPEECH), record=None, seconds=seconds
            )
            incoming = await services[1].answer(
                None, play=None, record=str(heard), seconds=None, wait_s=15
            )
            await asyncio.wait_for(outgoing.ended.wait(), seconds + 20)
            await asyncio.wait_for(incoming.ended.wait(), 10)
            report = services[0].describe(outgoing)
        finally:
            for session, manager, service in zip(sessions, managers, services, strict=True):
                await service.close()
                await manager.close()
                await session.close()
        if report["end_reason"] != "hangup":
            raise StepFailed(f"the call ended {report['end_reason']}")
        score = pesq_wb(load_voice(SPEECH), load_voice(heard))
        self.call = {key: report[key] for key in REPORT_KEYS} | {"pesq": round(score, 2)}
        return (
            f"{report['path']} path, {report['duration_s']:.1f} s of speech, "
            f"{report['packets_received']} packets, RTT {report['rtt_ms']} ms, "
            f"MOS estimate {report['mos_estimate']}, PESQ-WB {score:.2f} (bob's recording)"
        )

    async def _search(self, session: ClientSession) -> str:
        parts = []
        for by, text, expected in (
            (SearchField.NAME, "alic", "alice"),
            (SearchField.NAME, "Marley", "bob"),
            (SearchField.CITY, "Oxford", "alice"),
        ):
            started = time.perf_counter()
            reply = await session.search(by, text)
            ms = (time.perf_counter() - started) * 1000
            names = [p.username for p in reply.profiles]
            if names != [expected]:
                raise StepFailed(f"search {by.name.lower()} {text!r} found {names}")
            full = reply.profiles[0].full_name
            parts.append(f"{by.name.lower()} {text!r} -> {full} ({ms:.1f} ms)")
        return "; ".join(parts)

    def white_pages(self) -> str:
        return asyncio.run(self._white_pages())

    async def _white_pages(self) -> str:
        session = ClientSession(Profile.open(self.workdir / "bob", create=False))
        try:
            await session.connect()
            return await self._search(session)
        finally:
            await session.close()

    def relay_message(self) -> str:
        return asyncio.run(self._relay_message())

    async def _relay_message(self) -> str:
        supernode: Proc = self.facts["supernodes"][0]
        address = Address.parse(supernode.ready["listen"]).as_tuple()
        expect = Expectation(role=Role.SUPERNODE, subject=supernode.ready["node_id"])
        endpoints = {user: self._endpoint(user) for user in ("alice", "bob")}
        try:
            links = {u: await e.connect(address, expect) for u, e in endpoints.items()}
            started = time.perf_counter()
            inner = encode(Echo(data=b"hello from alice"))
            links["alice"].notify(Forward(payload=inner, to_user="bob"))
            got = await asyncio.wait_for(links["bob"].incoming.get(), 5)
            ms = (time.perf_counter() - started) * 1000
        finally:
            for endpoint in endpoints.values():
                endpoint.close()
        if not isinstance(got, Forward) or got.from_user != "alice":
            raise StepFailed(f"bob got {got!r}")
        inner_message = decode(got.payload)
        if not isinstance(inner_message, Echo):
            raise StepFailed(f"bob got {inner_message!r}")
        via = supernode.ready["node_id"]
        return f"bob got {inner_message.data!r} from {got.from_user} via {via} in {ms:.1f} ms"

    def _endpoint(self, user: str) -> Endpoint:
        ls: Proc = self.facts["ls"]
        profile = Profile.open(self.workdir / user, create=False)
        return Endpoint(
            static=profile.keys.static,
            certificate=profile.certificate,
            verifier=CertificateVerifier(parse_ls_key(ls.ready["public_key"])),
        )

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            hopline_command(*args, "--json"),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOPLINE_PASSWORD": PASSWORD},
            check=False,
        )
        if done.returncode != 0:
            raise StepFailed(done.stderr.strip() or f"exit {done.returncode}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def pin_args(self) -> list[str]:
        ls: Proc = self.facts["ls"]
        return ["--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]]

    def register(self, user: str, full_name: str, city: str, country: str) -> str:
        profile = str(self.workdir / user)
        args = ["register", user, "--profile", profile, *self.pin_args(), "--full-name", full_name]
        result = self.cli(*args, "--city", city, "--country", country)
        return f"account {result['registered']} ({full_name}, {city}, {country})"

    def login(self, user: str) -> str:
        result = self.cli("login", user, "--profile", str(self.workdir / user))
        if result["user"] != user:
            raise StepFailed(f"logged in as {result['user']!r}")
        hours = (result["expires_at"] - time.time()) / 3600
        return f"certificate for {user}, valid {hours:.0f} h"

    def verify_certificates(self) -> str:
        ls: Proc = self.facts["ls"]
        verifier = CertificateVerifier(parse_ls_key(ls.ready["public_key"]))
        for user, *_ in USERS:
            profile = Profile.open(self.workdir / user, create=False)
            certificate = profile.certificate
            if certificate is None:
                raise StepFailed(f"{user} has no certificate")
            verifier.verify(
                certificate,
                time.time(),
                role=Role.USER,
                subject=user,
                static_key=profile.keys.static.public,
            )
        return "both verify against the pinned key: role, name, device key, expiry"

    def wrong_password(self) -> str:
        done = subprocess.run(
            hopline_command("login", "alice", "--profile", str(self.workdir / "alice")),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOPLINE_PASSWORD": "not the password"},
            check=False,
        )
        if done.returncode != 1 or "wrong username or password" not in done.stderr:
            raise StepFailed(f"expected a refusal, got exit {done.returncode}: {done.stderr}")
        return "refused: " + done.stderr.strip().removeprefix("hopline: ")

    def wire_exchange(self) -> str:
        return asyncio.run(self._wire_exchange())

    async def _wire_exchange(self) -> str:
        ls: Proc = self.facts["ls"]
        endpoint = self._endpoint("alice")
        try:
            started = time.perf_counter()
            pc = await endpoint.connect(
                Address.parse(ls.ready["listen"]).as_tuple(), Expectation(role=Role.LOGIN_SERVER)
            )
            handshake_ms = (time.perf_counter() - started) * 1000
            rtts = await self._pings(pc)
        finally:
            endpoint.close()
        rtts.sort()
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        return (
            f"Noise XX handshake {handshake_ms:.1f} ms; {len(rtts)} pings over UDP,"
            f" RTT p50 {statistics.median(rtts):.2f} ms, p99 {p99:.2f} ms"
        )

    async def _pings(self, pc: PeerConnection) -> list[float]:
        rtts: list[float] = []
        deadline = time.perf_counter() + self.seconds
        nonce = 0
        while time.perf_counter() < deadline:
            nonce += 1
            sent = time.perf_counter()
            reply = await pc.request(Ping(nonce=nonce), timeout=5)
            if not isinstance(reply, Pong) or reply.nonce != nonce:
                raise StepFailed(f"bad pong: {reply!r}")
            rtts.append((time.perf_counter() - sent) * 1000)
        return rtts


def members_seen(metrics: str) -> float:
    """The ``hopline_supernode_members`` gauge of a supernode's metrics endpoint."""
    url = f"http://{metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("hopline_supernode_members "):
                return float(line.split()[1])
    return 0.0


def run_demo(
    seconds: float, on_step: Callable[[Step], None]
) -> tuple[bool, list[Step], dict[str, Any] | None]:
    """Run every step; return (all passed, steps, call report). Leaves no process behind."""
    with (
        tempfile.TemporaryDirectory(prefix="hopline-demo-") as tmp,
        Cluster(Path(tmp) / "logs") as cluster,
    ):
        walk = Walkthrough(Path(tmp), seconds, on_step)
        plan: list[tuple[str, Callable[[], str]]] = [
            ("start login server", lambda: walk.start_login_server(cluster)),
        ]
        plan += [
            (f"register {user}", partial(walk.register, user, *about)) for user, *about in USERS
        ]
        plan += [(f"log in {user}", partial(walk.login, user)) for user, *_ in USERS]
        plan += [
            ("verify certificates", walk.verify_certificates),
            ("secure wire exchange", walk.wire_exchange),
            ("wrong password refused", walk.wrong_password),
            ("start 3 supernodes", partial(walk.start_supernodes, cluster)),
            ("supernodes form the overlay", walk.overlay),
            ("go online, look up alice", walk.online_and_lookup),
            ("white pages search", walk.white_pages),
            ("message via a supernode", walk.relay_message),
            ("peer-to-peer path alice -> bob", walk.peer_path),
            ("voice call alice -> bob", walk.voice_call),
        ]
        chat = ChatSteps(Path(tmp), walk.pin_args)
        plan += [
            ("daemons up for alice and bob", partial(chat.start_daemons, cluster)),
            ("contacts: alice asks, bob accepts", chat.contacts),
            ("presence pushed to a contact", chat.presence),
            ("chat round trip with receipt", chat.chat),
            ("file transfer alice -> bob", chat.file),
        ]
        for name, action in plan:
            if not walk.run(name, action):
                break
        ok = all(step.ok for step in walk.steps) and len(walk.steps) == len(plan)
        return ok, walk.steps, walk.call

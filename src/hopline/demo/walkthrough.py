"""The steps of ``hopline demo``, each timed and checked.

The network is what users and operators run: a login server, three
supernodes, and alice's and bob's client daemons (``hopline up``), each a
separate process on loopback. The walkthrough grows as capabilities arrive;
today it registers and logs in through the daemons, checks the certificates
and a wrong password, runs a secure wire exchange, searches the white pages,
and then, through the real command line (:mod:`hopline.demo.chat`),
contacts, presence, a chat, a file, and a voice call. Every step does the
real thing (real sockets, the real CLI, real Opus) and checks its result.
The call plays speech that ships with Hopline (``speech.wav``, made with
espeak-ng) from alice's daemon; bob's daemon records what he heard, and the
demo scores it with wideband PESQ. A failed step is reported, the remaining
steps are skipped, and the demo exits non-zero.
"""

from __future__ import annotations

import asyncio
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

from hopline.client.profile import Profile, parse_ls_key
from hopline.connection import Expectation
from hopline.demo.chat import ChatStepFailed, ChatSteps
from hopline.demo.cluster import Cluster, ClusterError, Proc, enrollment_token
from hopline.identity import CertificateVerifier, Role
from hopline.media.audio import load_voice
from hopline.media.score import pesq_wb
from hopline.runtime.endpoint import Endpoint, EndpointError, PeerConnection
from hopline.wire import Address
from hopline.wire.commands import Ping, Pong

WRONG_PASSWORD = "not the password"  # noqa: S105 -- shown to be refused
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
    chat: ChatSteps = field(init=False)  # alice's and bob's daemons, driven by the CLI

    def __post_init__(self) -> None:
        self.chat = ChatSteps(self.workdir, self.pin_args)

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

    def voice_call(self) -> str:
        """bob's daemon answers and records; alice's plays speech; PESQ of what bob heard."""
        heard = self.workdir / "bob-heard.wav"
        seconds = len(load_voice(SPEECH)) / 48000 + 0.5
        bob = self.chat.start("bob", "answer", "--auto", "--record", str(heard), "--json")
        try:
            report = self.chat.cli(
                "alice", "call", "bob", "--play", str(SPEECH), "--seconds", f"{seconds:.1f}"
            )
            heard_report = self.chat.finish(bob, timeout=30)
        finally:
            bob.kill()
        for end in (report, heard_report):
            if end["end_reason"] != "hangup":
                raise StepFailed(f"the call ended {end['end_reason']}")
        score = pesq_wb(load_voice(SPEECH), load_voice(heard))
        self.call = {key: report[key] for key in REPORT_KEYS} | {"pesq": round(score, 2)}
        return (
            f"{report['path']} path, {report['duration_s']:.1f} s of speech, "
            f"{heard_report['packets_received']} packets to bob, RTT {report['rtt_ms']} ms, "
            f"MOS estimate {report['mos_estimate']}, PESQ-WB {score:.2f} (bob's recording)"
        )

    def white_pages(self) -> str:
        """bob searches the white pages through his daemon (``hopline search``)."""
        parts = []
        for by, text, expected in (
            ("name", "alic", "alice"),
            ("name", "Marley", "bob"),
            ("city", "Oxford", "alice"),
        ):
            found = self.chat.cli("bob", "search", text, "--by", by)
            names = [hit["username"] for hit in found["results"]]
            if names != [expected]:
                raise StepFailed(f"search {by} {text!r} found {names}")
            full = found["results"][0]["full_name"]
            parts.append(f"{by} {text!r} -> {full} ({found['ms']:.1f} ms)")
        return "; ".join(parts)

    def _endpoint(self, user: str) -> Endpoint:
        ls: Proc = self.facts["ls"]
        profile = Profile.open(self.workdir / user, create=False)
        return Endpoint(
            static=profile.keys.static,
            certificate=profile.certificate,
            verifier=CertificateVerifier(parse_ls_key(ls.ready["public_key"])),
        )

    def pin_args(self) -> list[str]:
        ls: Proc = self.facts["ls"]
        return ["--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]]

    def register(self, user: str, full_name: str, city: str, country: str) -> str:
        """``hopline register`` through the user's daemon."""
        about = ["--full-name", full_name, "--city", city, "--country", country]
        result = self.chat.cli(user, "register", user, *about)
        return f"account {result['registered']} ({full_name}, {city}, {country})"

    def login(self, user: str) -> str:
        """``hopline login``: the daemon gets a certificate and goes online."""
        result = self.chat.cli(user, "login", user)
        if result["user"] != user:
            raise StepFailed(f"logged in as {result['user']!r}")
        hours = (result["expires_at"] - time.time()) / 3600
        status = self.chat.wait_online(user)
        home = status["supernode"]
        return (
            f"certificate valid {hours:.0f} h; online in {status['waited_ms']:.0f} ms "
            f"at {home['name']} over {home['transport']}, NAT {status['nat']}"
        )

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
        """A login with the wrong password is refused, and says so on one line."""
        done = self.chat.run("alice", "login", "alice", password=WRONG_PASSWORD)
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
        chat = walk.chat
        plan: list[tuple[str, Callable[[], str]]] = [
            ("start login server", lambda: walk.start_login_server(cluster)),
            ("start 3 supernodes", partial(walk.start_supernodes, cluster)),
            ("supernodes form the overlay", walk.overlay),
            ("daemons up for alice and bob", partial(chat.start_daemons, cluster)),
        ]
        plan += [
            (f"register {user}", partial(walk.register, user, *about)) for user, *about in USERS
        ]
        plan += [("wrong password refused", walk.wrong_password)]
        plan += [(f"log in {user}", partial(walk.login, user)) for user, *_ in USERS]
        plan += [
            ("verify certificates", walk.verify_certificates),
            ("secure wire exchange", walk.wire_exchange),
            ("white pages search", walk.white_pages),
            ("contacts: alice asks, bob accepts", chat.contacts),
            ("presence pushed to a contact", chat.presence),
            ("chat round trip with receipt", chat.chat),
            ("offline message: bob away, alice writes", chat.offline_message),
            ("file transfer alice -> bob", chat.file),
            ("voice call alice -> bob", walk.voice_call),
        ]
        for name, action in plan:
            if not walk.run(name, action):
                break
        ok = all(step.ok for step in walk.steps) and len(walk.steps) == len(plan)
        return ok, walk.steps, walk.call

"""A Hopline network of real processes on loopback, for tests.

:func:`start_network` starts a login server and supernodes (enrolled with
one-time tokens, joined into one overlay, with metrics endpoints) in a
:class:`~hopline.demo.cluster.Cluster`, and waits until every supernode sees
all of them. :func:`logged_in` registers and logs in a user profile.
:func:`loopback_net` wraps both in one context (a :class:`LoopbackNet`), the
fixture of the process tests of paths, calls, messages and files, and
:func:`until` polls a condition for them (a functional wait, not a timing
assertion). :data:`FAST_SESSION` and :data:`FAST_PATHS` are the short timers
those tests run a session and a path manager with, so a lost peer or home
shows within a second or two.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.client.session import SessionConfig
from hopline.demo.cluster import Cluster, Proc, enrollment_token
from hopline.demo.walkthrough import members_seen
from hopline.path.checks import CheckConfig
from hopline.path.manager import PathConfig
from hopline.wire import Address
from hopline.wire.commands import DeviceRecord, PresenceRecord
from hopline.wire.commands import Endpoint as EndpointRecord

PASSWORD = "correct horse battery staple"  # noqa: S105 -- test accounts only
FAST_SESSION = SessionConfig(keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=2.0)
FAST_PATHS = PathConfig(
    checks=CheckConfig(direct_wait_s=0.3, timeout_s=8.0),
    keepalive_s=1.0,
    ping_timeout_s=1.0,
    connect_timeout_s=5.0,
)


@dataclass
class LoopbackNet:
    """A running login server and supernodes, and the directory for profiles."""

    cluster: Cluster
    ls: Proc
    nodes: list[Proc]
    workdir: Path


@contextmanager
def loopback_net(workdir: Path, supernodes: int = 2) -> Iterator[LoopbackNet]:
    """Start a network in ``workdir`` (logs in ``workdir/logs``); stopped on exit."""
    with Cluster(workdir / "logs") as cluster:
        ls, nodes = start_network(cluster, workdir, supernodes=supernodes)
        yield LoopbackNet(cluster, ls, nodes, workdir)


async def until(check: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(every)
    return True


def start_network(
    cluster: Cluster, workdir: Path, supernodes: int = 5, extra: Sequence[str] = ()
) -> tuple[Proc, list[Proc]]:
    """A login server and ``supernodes`` supernodes (each given ``extra`` args) in one overlay."""
    ls = cluster.start(
        "ls", ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(workdir / "ls")]
    )
    nodes: list[Proc] = []
    for n in range(supernodes):
        args = [
            *("supernode", "--listen", "127.0.0.1:0"),
            *("--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]),
            *("--data-dir", str(workdir / f"sn{n}")),
            *("--enroll-token", enrollment_token(workdir / "ls")),
            *("--metrics", "127.0.0.1:0", *extra),
        ]
        if nodes:
            args += ["--join", nodes[0].ready["listen"]]
        nodes.append(cluster.start(f"sn{n}", args))
    wait_overlay(nodes)
    return ls, nodes


def wait_overlay(nodes: list[Proc], timeout: float = 40.0) -> None:
    """Wait until every supernode's metrics show all ``nodes`` as members."""
    deadline = time.monotonic() + timeout
    seen: list[float] = []
    while time.monotonic() < deadline:
        seen = [members_seen(p.ready["metrics"]) for p in nodes]
        if all(count == len(nodes) for count in seen):
            return
        time.sleep(0.2)
    raise TimeoutError(f"overlay did not converge: members seen {seen}")


async def logged_in(workdir: Path, ls: Proc, name: str, bind: str | None = None) -> Profile:
    """A profile for ``name``: registered, logged in, certificate stored.

    ``bind`` sends from another loopback address (127.0.0.x): the login
    server throttles registrations per source address.
    """
    profile = Profile.open(workdir / name)
    key = parse_ls_key(ls.ready["public_key"])
    profile.pin_login_server(Address.parse(ls.ready["listen"]), key)
    await account.register(profile, name, PASSWORD, bind=bind)
    await account.login(profile, name, PASSWORD, bind=bind)
    return profile


async def another_device(
    workdir: Path, name: str, suffix: str = "2", bind: str | None = None
) -> Profile:
    """``name`` (made by :func:`logged_in`) logged in again on a profile of its own,
    ``workdir/NAME-SUFFIX``: another device of the same user."""
    profile = Profile.open(workdir / f"{name}-{suffix}")
    first = Profile.open(workdir / name)
    profile.pin_login_server(first.login_server, first.ls_key)
    await account.login(profile, name, PASSWORD, bind=bind)
    return profile


def scrape_metrics(metrics: str) -> dict[str, float]:
    """Every sample of a Prometheus endpoint (``HOST:PORT``), by name with labels."""
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def presence_record(
    profile: Profile, user: str, sequence: int = 1, endpoint: str = "192.0.2.44:5000"
) -> PresenceRecord:
    """An online record for ``user`` listing ``profile``'s device, valid for 10 minutes."""
    certificate = profile.certificate
    assert certificate is not None
    now = int(time.time())
    device = DeviceRecord(
        device_id=profile.device_id,
        identity_key=profile.keys.static.public,
        certificate=certificate,
        endpoints=(EndpointRecord(address=Address.parse(endpoint)),),
    )
    return PresenceRecord(
        user=user, status=1, devices=(device,), last_seen=now, expires=now + 600, sequence=sequence
    )

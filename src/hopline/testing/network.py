"""A Hopline network of real processes on loopback, for tests.

:func:`start_network` starts a login server and supernodes (enrolled with
one-time tokens, joined into one overlay, with metrics endpoints) in a
:class:`~hopline.demo.cluster.Cluster`, and waits until every supernode sees
all of them. :func:`logged_in` registers and logs in a user profile.
"""

from __future__ import annotations

import time
from pathlib import Path

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.demo.cluster import Cluster, Proc, enrollment_token
from hopline.demo.walkthrough import members_seen
from hopline.wire import Address

PASSWORD = "correct horse battery staple"  # noqa: S105 -- test accounts only


def start_network(cluster: Cluster, workdir: Path, supernodes: int = 5) -> tuple[Proc, list[Proc]]:
    """A login server and ``supernodes`` supernodes forming one overlay."""
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
            *("--metrics", "127.0.0.1:0"),
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

"""``hopline supernode`` as a real process: enrollment, restart, serving users."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc, enrollment_token, hopline_command
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import Endpoint
from hopline.testing.network import scrape_metrics
from hopline.wire import Address, decode, encode
from hopline.wire.commands import Echo, Forward, Ping, Pong

PASSWORD = "correct horse battery staple"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path / "logs") as running:
        yield running


@pytest.fixture
def login_server(cluster: Cluster, tmp_path: Path) -> Proc:
    args = ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "ls")]
    return cluster.start("loginserver", args)


def token(tmp_path: Path) -> str:
    return enrollment_token(tmp_path / "ls")


def supernode_args(ls: Proc, data_dir: Path) -> list[str]:
    return [
        "supernode",
        "--listen",
        "127.0.0.1:0",
        "--login-server",
        ls.ready["listen"],
        "--ls-key",
        ls.ready["public_key"],
        "--data-dir",
        str(data_dir),
    ]


async def user(tmp_path: Path, ls: Proc, name: str) -> Endpoint:
    profile = Profile.open(tmp_path / name)
    profile.pin_login_server(
        Address.parse(ls.ready["listen"]), parse_ls_key(ls.ready["public_key"])
    )
    await account.register(profile, name, PASSWORD)
    await account.login(profile, name, PASSWORD)
    return Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )


async def test_enrolls_then_serves_users_and_forwards(
    cluster: Cluster, login_server: Proc, tmp_path: Path
) -> None:
    data_dir = tmp_path / "sn1"
    sn = cluster.start(
        "sn1",
        [
            *supernode_args(login_server, data_dir),
            *("--enroll-token", token(tmp_path), "--metrics", "127.0.0.1:0"),
        ],
    )
    node_id = sn.ready["node_id"]
    assert node_id.startswith("sn-")
    assert (data_dir / "supernode.key").stat().st_mode & 0o077 == 0
    assert (data_dir / "certificate").stat().st_mode & 0o077 == 0

    alice, bob = (
        await user(tmp_path, login_server, "alice"),
        await user(tmp_path, login_server, "bob"),
    )
    try:
        address = Address.parse(sn.ready["listen"]).as_tuple()
        expect = Expectation(role=Role.SUPERNODE, subject=node_id)
        to_alice, to_bob = await alice.connect(address, expect), await bob.connect(address, expect)
        pong = await to_alice.request(Ping(nonce=3))
        assert isinstance(pong, Pong) and pong.nonce == 3
        before = scrape_metrics(sn.ready["metrics"])
        payload = encode(Echo(data=b"hello bob " * 300))  # several link packets
        to_alice.notify(Forward(payload=payload, to_user="bob"))
        got = await asyncio.wait_for(to_bob.incoming.get(), 5)
        assert isinstance(got, Forward) and got.from_user == "alice"
        assert decode(got.payload) == Echo(data=b"hello bob " * 300)
        to_alice.notify(Forward(payload=b"lost", to_user="nobody"))  # no such peer here

        def relayed() -> bool:
            now = scrape_metrics(sn.ready["metrics"])
            grown = {
                name: now.get(name, 0) - before.get(name, 0)
                for name in (
                    "hopline_supernode_relayed_bytes_total",
                    "hopline_supernode_relayed_messages_total",
                    'hopline_supernode_dropped_total{reason="forward:no-route"}',
                )
            }
            return (
                grown["hopline_supernode_relayed_bytes_total"] >= len(payload)
                and grown["hopline_supernode_relayed_messages_total"] == 1
                and grown['hopline_supernode_dropped_total{reason="forward:no-route"}'] == 1
            )

        assert await asyncio.to_thread(wait_for, relayed, 10), scrape_metrics(sn.ready["metrics"])
    finally:
        alice.close()
        bob.close()

    # a restart needs no token: the certificate is kept in the data dir
    sn.kill()
    sn.popen.wait(10)
    again = cluster.start("sn1-again", supernode_args(login_server, data_dir))
    assert again.ready["node_id"] == node_id


def test_first_start_without_a_token_says_what_to_do(login_server: Proc, tmp_path: Path) -> None:
    done = subprocess.run(
        hopline_command(*supernode_args(login_server, tmp_path / "sn")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--enroll-token" in done.stderr and "Traceback" not in done.stderr


def test_a_used_token_is_refused_at_start(
    cluster: Cluster, login_server: Proc, tmp_path: Path
) -> None:
    once = token(tmp_path)
    cluster.start("first", [*supernode_args(login_server, tmp_path / "a"), "--enroll-token", once])
    started = time.monotonic()
    done = subprocess.run(
        hopline_command(*supernode_args(login_server, tmp_path / "b"), "--enroll-token", once),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "certificate" in done.stderr
    assert time.monotonic() - started < 30


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_three_supernodes_form_an_overlay_and_detect_a_crash(
    cluster: Cluster, login_server: Proc, tmp_path: Path
) -> None:
    nodes: list[Proc] = []
    for n in range(3):
        args = [
            *supernode_args(login_server, tmp_path / f"sn{n}"),
            *("--enroll-token", token(tmp_path), "--metrics", "127.0.0.1:0"),
        ]
        if nodes:
            args += ["--join", nodes[0].ready["listen"]]
        nodes.append(cluster.start(f"sn{n}", args))

    def members(proc: Proc) -> float:
        return scrape_metrics(proc.ready["metrics"]).get("hopline_supernode_members", 0)

    assert wait_for(lambda: all(members(p) == 3 for p in nodes), 30), [members(p) for p in nodes]
    connections = scrape_metrics(nodes[0].ready["metrics"])
    assert connections.get('hopline_supernode_connections{role="supernode"}', 0) >= 2

    nodes[2].kill()  # SIGKILL: no goodbye
    survivors = nodes[:2]
    assert wait_for(lambda: all(members(p) == 2 for p in survivors), 40), [
        members(p) for p in survivors
    ]

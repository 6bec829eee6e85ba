"""File transfers between logged-in clients, against real supernode processes on loopback.

Each side is a real :class:`~hopline.client.session.ClientSession` with a
:class:`~hopline.path.manager.PathManager` and a
:class:`~hopline.files.service.FileService` in this process, talking over
real sockets through a real login server and supernodes, direct or through
a relay. What is checked is what a user sees: the file saved in the
downloads directory with the sender's SHA-256, the transfer documents on both
sides (state, reason, bytes per part) and the counters of what was refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hopline.client.profile import Profile
from hopline.client.session import ClientSession
from hopline.files.service import (
    ANSWERED_ELSEWHERE,
    FileConfig,
    FileService,
    FileServiceError,
    NoSuchTransfer,
)
from hopline.files.storage import hash_file
from hopline.path.checks import CheckConfig
from hopline.path.manager import PathConfig, PathManager
from hopline.testing.network import (
    FAST_PATHS,
    FAST_SESSION,
    LoopbackNet,
    another_device,
    logged_in,
    loopback_net,
    until,
)
from hopline.wire.files import FileChunk, FileOffer

MB = 1024 * 1024
RELAYED_PATHS = PathConfig(
    direct=False,
    checks=CheckConfig(direct_wait_s=0.3, timeout_s=8.0),
    keepalive_s=1.0,
    ping_timeout_s=1.0,
    connect_timeout_s=5.0,
)
FILES = FileConfig(resume_wait_s=20.0)
NAMES = itertools.count(1)
SOURCES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    with loopback_net(tmp_path_factory.mktemp("files"), supernodes=2) as running:
        yield running


@dataclass
class Device:
    """One logged-in device with paths and a file service saving into ``downloads``."""

    session: ClientSession
    paths: PathManager
    files: FileService
    downloads: Path
    keeper: asyncio.Task[None]
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def user(self) -> str:
        return self.session.user


async def new_user(net: LoopbackNet, name: str, paths_config: PathConfig = FAST_PATHS) -> Device:
    bind = f"127.0.0.{10 + next(SOURCES)}"  # the login server throttles per source address
    profile: Profile = await logged_in(net.workdir, net.ls, name, bind=bind)
    return await start_device(net, profile, paths_config)


async def second_device(net: LoopbackNet, first: Device) -> Device:
    """The same user logged in on another device (a profile of its own), online."""
    bind = f"127.0.0.{10 + next(SOURCES)}"
    return await start_device(net, await another_device(net.workdir, first.user, bind=bind))


async def start_device(
    net: LoopbackNet, profile: Profile, paths_config: PathConfig = FAST_PATHS
) -> Device:
    session = ClientSession(profile, FAST_SESSION)
    await session.connect()
    paths = PathManager(session, paths_config)
    await paths.start()
    downloads = net.workdir / f"{profile.path.name}-downloads"
    downloads.mkdir()
    events: list[dict[str, Any]] = []
    files = FileService(paths, downloads=downloads, config=FILES, on_event=events.append)
    files.start()
    keeper = asyncio.get_running_loop().create_task(session.run())
    return Device(session, paths, files, downloads, keeper, events)


async def stop(*devices: Device) -> None:
    for one in devices:
        await one.files.close()
        one.keeper.cancel()
        await one.paths.close()
        await one.session.close()


async def make_pair(net: LoopbackNet, paths_config: PathConfig) -> tuple[Device, Device]:
    n = next(NAMES)
    return (
        await new_user(net, f"alice{n}", paths_config),
        await new_user(net, f"bob{n}", paths_config),
    )


@pytest.fixture
async def pair(net: LoopbackNet) -> AsyncIterator[tuple[Device, Device]]:
    alice, bob = await make_pair(net, FAST_PATHS)
    yield alice, bob
    await stop(alice, bob)


@pytest.fixture
async def relayed_pair(net: LoopbackNet) -> AsyncIterator[tuple[Device, Device]]:
    alice, bob = await make_pair(net, RELAYED_PATHS)
    yield alice, bob
    await stop(alice, bob)


def random_file(directory: Path, size: int, name: str = "holiday video.mp4") -> Path:
    """``size`` random bytes in ``directory/name``, written a megabyte at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with path.open("wb") as f:
        for start in range(0, size, MB):
            f.write(os.urandom(min(MB, size - start)))
    return path


def sha256_of(path: Path) -> str:
    return hash_file(path)[1].hex()


async def offered(device: Device, timeout: float = 10.0) -> dict[str, Any]:
    """The first offer waiting on ``device``."""
    assert await until(lambda: bool(device.files.offers()), timeout), "no offer arrived"
    return device.files.offers()[0]


async def transfer(alice: Device, bob: Device, source: Path, timeout: float) -> tuple[dict, dict]:
    """Alice sends ``source``; Bob accepts; both documents when done."""
    sent = await alice.files.send(bob.user, source)
    offer = await offered(bob)
    assert offer["transfer_id"] == sent["transfer_id"] and offer["sha256"] == sent["sha256"]
    await bob.files.accept(offer["transfer_id"])
    got = await bob.files.wait(offer["transfer_id"], timeout)
    done = await alice.files.wait(sent["transfer_id"], 10)
    return done, got


async def test_a_100_mb_file_arrives_intact_over_a_direct_path(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    alice, bob = pair
    source = random_file(tmp_path / "outbox", 100 * MB)
    done, got = await transfer(alice, bob, source, timeout=60)
    assert got["state"] == "complete" and done["state"] == "complete", (done, got)
    assert got["path"] == "direct" and done["path"] == "direct"
    saved = Path(got["saved_to"])
    assert saved == bob.downloads / source.name
    assert sha256_of(saved) == sha256_of(source)
    assert sorted(p.name for p in bob.downloads.iterdir()) == [source.name]  # no .part left
    assert done["parts"] == [{"resume_from": 0, "bytes": 100 * MB}] and done["resumes"] == 0
    assert got["bytes"] == done["bytes"] == 100 * MB
    states = [e["state"] for e in bob.events if e["transfer_id"] == got["transfer_id"]]
    assert states[0] == "offered" and states[-1] == "complete"
    assert not bob.files.refused and not alice.files.refused


async def test_a_file_arrives_intact_over_a_forced_relay(
    relayed_pair: tuple[Device, Device], tmp_path: Path
) -> None:
    # through a supernode's relay on this loopback 100 MB takes 4-10 s (benchmarks/files.py
    # --loopback); the generous timeout is for a machine busy with other work
    alice, bob = relayed_pair
    size = 100 * MB
    source = random_file(tmp_path / "outbox", size, name="relayed.bin")
    done, got = await transfer(alice, bob, source, timeout=300)
    assert got["state"] == "complete" and done["state"] == "complete", (done, got)
    assert got["path"] == "relay" and done["path"] == "relay"
    assert sha256_of(Path(got["saved_to"])) == sha256_of(source)
    assert done["parts"] == [{"resume_from": 0, "bytes": size}]


async def test_a_broken_transfer_resumes_and_sends_only_the_rest(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    alice, bob = pair
    size = 40 * MB
    source = random_file(tmp_path / "outbox", size, name="resume.bin")
    sent = await alice.files.send(bob.user, source)
    transfer_id = sent["transfer_id"]
    await bob.files.accept((await offered(bob))["transfer_id"])
    assert await until(lambda: bob.files.status(transfer_id)["bytes"] > size // 3, 30)
    path = next(p for p in alice.paths.paths if p.user == bob.user)
    assert path.connection is not None
    path.connection.close()  # the connection under the path breaks midway
    got = await bob.files.wait(transfer_id, 60)
    done = await alice.files.wait(transfer_id, 10)
    assert got["state"] == "complete" and done["state"] == "complete", (done, got)
    assert sha256_of(Path(got["saved_to"])) == sha256_of(source)
    assert sorted(p.name for p in bob.downloads.iterdir()) == [source.name]
    first, second = done["parts"]
    assert first["resume_from"] == 0 and size // 3 < second["resume_from"] < size
    assert second["bytes"] == size - second["resume_from"]  # only the rest went again
    assert done["bytes_moved"] <= size + FILES.window  # at most one window sent twice
    assert got["resumes"] == 1 and got["parts"][1]["resume_from"] == second["resume_from"]
    assert len(path.changes) >= 2  # the path manager re-established the path
    for side in (alice, bob):
        assert side.files.refused["task-error"] == 0
        assert set(side.files.refused) <= {"unknown-transfer", "task-error"}  # stale acks only


async def test_a_path_the_receiver_closed_for_good_resumes_on_a_new_one(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    alice, bob = pair
    size = 24 * MB
    source = random_file(tmp_path / "outbox", size, name="again.bin")
    sent = await alice.files.send(bob.user, source)
    transfer_id = sent["transfer_id"]
    await bob.files.accept((await offered(bob))["transfer_id"])
    assert await until(lambda: bob.files.status(transfer_id)["bytes"] > size // 4, 30)
    old = next(p for p in bob.paths.paths if p.user == alice.user)
    old.shut("closed by the test")  # bob's side gives the path up; alice connects anew
    got = await bob.files.wait(transfer_id, 60)
    done = await alice.files.wait(transfer_id, 10)
    assert got["state"] == "complete" and done["state"] == "complete", (done, got)
    assert sha256_of(Path(got["saved_to"])) == sha256_of(source)
    resumed_at = got["parts"][1]["resume_from"]
    assert size // 4 < resumed_at < size and got["parts"][1]["bytes"] == size - resumed_at
    assert done["parts"][-1] == {"resume_from": resumed_at, "bytes": size - resumed_at}
    assert any(p.user == alice.user and p is not old for p in bob.paths.paths)
    states = [e["state"] for e in bob.events if e["transfer_id"] == transfer_id]
    assert "interrupted" in states and states[-1] == "complete"


async def test_an_offer_made_again_after_a_break_replaces_the_first(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    alice, bob = pair
    source = random_file(tmp_path / "outbox", 3 * MB, name="asked.bin")
    sent = await alice.files.send(bob.user, source)
    first = await offered(bob)
    path = next(p for p in alice.paths.paths if p.user == bob.user)
    assert path.connection is not None
    path.connection.close()  # broken before bob answered: alice offers again

    def interrupted() -> bool:  # the path may come back within one poll: read the events
        return any(
            e["state"] == "interrupted" and e["transfer_id"] == sent["transfer_id"]
            for e in alice.events
        )

    assert await until(interrupted, 5)
    assert await until(lambda: alice.files.status(sent["transfer_id"])["state"] == "waiting", 20)
    await asyncio.sleep(0.5)
    assert [o["transfer_id"] for o in bob.files.offers()] == [first["transfer_id"]]
    await bob.files.accept(first["transfer_id"])
    got = await bob.files.wait(first["transfer_id"], 20)
    assert got["state"] == "complete" and got["parts"] == [{"resume_from": 0, "bytes": 3 * MB}]
    assert sha256_of(Path(got["saved_to"])) == sha256_of(source)


async def test_declining_and_cancelling(pair: tuple[Device, Device], tmp_path: Path) -> None:
    alice, bob = pair
    source = random_file(tmp_path / "outbox", 30 * MB, name="big.bin")
    sent = await alice.files.send(bob.user, source)
    offer = await offered(bob)
    bob.files.decline(offer["transfer_id"], "no thanks")
    done = await alice.files.wait(sent["transfer_id"], 10)
    assert done["state"] == "declined" and done["detail"] == "no thanks"
    assert bob.files.status(offer["transfer_id"])["state"] == "declined"

    sent = await alice.files.send(bob.user, source)
    offer = await offered(bob)
    await bob.files.accept(offer["transfer_id"])
    assert await until(lambda: bob.files.status(offer["transfer_id"])["bytes"] > 2 * MB, 20)
    alice.files.cancel(sent["transfer_id"])
    got = await bob.files.wait(offer["transfer_id"], 10)
    assert got["state"] == "cancelled" and got["end_reason"] == "peer-cancelled"
    assert alice.files.status(sent["transfer_id"])["state"] == "cancelled"
    assert not list(bob.downloads.iterdir())  # the partial was thrown away
    with pytest.raises(FileServiceError, match="already cancelled"):
        alice.files.cancel(sent["transfer_id"])
    with pytest.raises(NoSuchTransfer):
        bob.files.status("00" * 16)
    with pytest.raises(FileServiceError, match="not a readable file"):
        await alice.files.send(bob.user, tmp_path / "missing.bin")


async def online_on(device: Device, user: str, count: int, timeout: float = 20.0) -> None:
    """Wait until ``device`` finds ``user`` online on ``count`` devices."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(await device.paths.devices(user)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{user} not on {count} devices"
        await asyncio.sleep(0.2)


@pytest.fixture
async def bob_twice(
    net: LoopbackNet, pair: tuple[Device, Device]
) -> AsyncIterator[tuple[Device, Device, Device]]:
    """Alice, and bob on two devices, both of which alice finds online."""
    alice, bob = pair
    bob2 = await second_device(net, bob)
    try:
        await online_on(alice, bob.user, 2)
        yield alice, bob, bob2
    finally:
        await stop(bob2)


async def test_a_file_goes_to_the_device_that_accepts_and_leaves_the_other(
    bob_twice: tuple[Device, Device, Device], tmp_path: Path
) -> None:
    alice, bob, bob2 = bob_twice
    source = random_file(tmp_path / "outbox", 5 * MB, name="to both.bin")
    sent = await alice.files.send(bob.user, source)
    first, second = await offered(bob), await offered(bob2)
    assert first["transfer_id"] == second["transfer_id"] == sent["transfer_id"]
    await bob2.files.accept(second["transfer_id"])
    got = await bob2.files.wait(sent["transfer_id"], 60)
    assert got["state"] == "complete", got
    assert sha256_of(Path(got["saved_to"])) == sha256_of(source)
    done = await alice.files.wait(sent["transfer_id"], 10)
    assert done["state"] == "complete", done
    assert done["device"] == bob2.session.profile.device_id.hex()
    other = await bob.files.wait(sent["transfer_id"], 10)
    assert other["state"] == "cancelled" and other["detail"] == ANSWERED_ELSEWHERE, other
    assert not list(bob.downloads.iterdir())  # nothing arrived on the first device
    assert done["parts"] == [{"resume_from": 0, "bytes": 5 * MB}]


async def test_a_file_is_declined_only_when_every_device_declines(
    bob_twice: tuple[Device, Device, Device], tmp_path: Path
) -> None:
    alice, bob, bob2 = bob_twice
    source = random_file(tmp_path / "outbox", MB, name="unwanted.bin")
    sent = await alice.files.send(bob.user, source)
    first, second = await offered(bob), await offered(bob2)
    bob.files.decline(first["transfer_id"], "not here")
    await asyncio.sleep(0.5)
    assert alice.files.status(sent["transfer_id"])["state"] == "waiting"
    bob2.files.decline(second["transfer_id"], "nor here")
    done = await alice.files.wait(sent["transfer_id"], 10)
    assert done["state"] == "declined" and done["detail"] == "nor here", done
    assert not alice.files.refused and not bob.files.refused and not bob2.files.refused


async def test_bad_offers_and_chunks_are_refused_and_counted(
    pair: tuple[Device, Device],
) -> None:
    alice, bob = pair
    path = await alice.paths.connect(bob.user)  # alice's service is not involved below
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).digest()
    path.notify(FileOffer(transfer_id=b"B" * 16, name="../../etc/passwd", size=10, sha256=digest))
    path.notify(FileOffer(transfer_id=b"C" * 16, name="x", size=10, sha256=digest, chunk_size=0))
    assert await until(lambda: bob.files.refused["bad-chunk-size"] == 1, 10)
    assert bob.files.refused["bad-name"] == 1 and not bob.files.offers()

    path.notify(FileOffer(transfer_id=b"G" * 16, name="good.bin", size=len(data), sha256=digest))
    offer = await offered(bob)
    await bob.files.accept(offer["transfer_id"])
    head = data[:1000]
    path.notify(FileChunk(transfer_id=b"Z" * 16, offset=0, data=head, sha256=digest))
    path.notify(FileChunk(transfer_id=b"G" * 16, offset=0, data=head, sha256=bytes(32)))
    got = await bob.files.wait(offer["transfer_id"], 10)
    assert got["state"] == "failed" and got["end_reason"] == "refused"
    assert got["detail"].startswith("chunk-sha256-mismatch")
    assert bob.files.refused["unknown-transfer"] == 1
    assert bob.files.refused["chunk-sha256-mismatch"] == 1
    assert bob.files.describe_service()["live"] == 0

"""Conferences between logged-in clients, against real supernode processes on loopback.

Five participants, each a real :class:`~hopline.client.session.ClientSession`
with a :class:`~hopline.path.manager.PathManager`, a
:class:`~hopline.calls.service.CallService` and a
:class:`~hopline.calls.conference_service.ConferenceService` in this process,
over real sockets through a real login server and supernodes. Each plays a
WAV with a tone of its own frequency, so what each one hears is measurable
per participant: the others' tones well above the floor, its own far below
(mix-minus). Host changes are checked by the media gap a remaining member
measures and by every remaining member naming the same host.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from hopline.calls.conference import ConfState
from hopline.calls.conference_service import (
    ConferenceConfig,
    ConferenceError,
    ConferenceService,
    LiveConference,
)
from hopline.calls.service import CallConfig, CallError, CallService
from hopline.calls.state import CallTimeouts, EndReason
from hopline.client import account
from hopline.client.profile import Profile
from hopline.client.session import ClientSession
from hopline.media.audio import load_voice, write_wav
from hopline.media.score import longest_silence, tone_db
from hopline.path.manager import PathManager
from hopline.testing.network import (
    FAST_PATHS,
    FAST_SESSION,
    PASSWORD,
    LoopbackNet,
    logged_in,
    loopback_net,
    until,
)
from hopline.wire.conference import ConfLeave, ConfRoster

CALLS = CallConfig(devices=False, timeouts=CallTimeouts(invite=8.0, ring=6.0, media=10.0))
CONFS = ConferenceConfig(devices=False)
RATE = 48000
TONES = (440.0, 620.0, 810.0, 1030.0, 1270.0)  # one per participant, no shared harmonics
NAMES = itertools.count(1)
SOURCES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    with loopback_net(tmp_path_factory.mktemp("conf"), supernodes=2) as running:
        yield running


@dataclass
class Device:
    """One logged-in device with paths, 1:1 calls and conferences."""

    session: ClientSession
    paths: PathManager
    calls: CallService
    confs: ConferenceService
    keeper: asyncio.Task[None]

    @property
    def user(self) -> str:
        return self.session.user


async def new_user(net: LoopbackNet, name: str) -> Device:
    bind = f"127.0.0.{10 + next(SOURCES)}"  # the login server throttles per source address
    return await device(await logged_in(net.workdir, net.ls, name, bind=bind))


async def second_device(net: LoopbackNet, name: str) -> Device:
    """``name`` logged in again, on a profile of its own (another device)."""
    profile = Profile.open(net.workdir / f"{name}-2")
    first = Profile.open(net.workdir / name)
    profile.pin_login_server(first.login_server, first.ls_key)
    await account.login(profile, name, PASSWORD, bind=f"127.0.0.{10 + next(SOURCES)}")
    return await device(profile)


async def device(profile: Profile) -> Device:
    session = ClientSession(profile, FAST_SESSION)
    await session.connect()
    paths = PathManager(session, FAST_PATHS)
    await paths.start()
    calls = CallService(paths, config=CALLS)
    confs = ConferenceService(paths, calls=calls, config=CONFS)
    paths.path_listeners.append(calls.attach)
    confs.start_serving()
    calls.start(accept_paths=False)
    keeper = asyncio.get_running_loop().create_task(session.run())
    return Device(session, paths, calls, confs, keeper)


async def stop(*devices: Device) -> None:
    for one in devices:
        await one.confs.close()
        await one.calls.close()
        one.keeper.cancel()
        await one.paths.close()
        await one.session.close()


@pytest.fixture
async def five(net: LoopbackNet) -> AsyncIterator[list[Device]]:
    n = next(NAMES)
    devices = [await new_user(net, f"{name}{n}") for name in ("ann", "ben", "cat", "dan", "eve")]
    yield devices
    await stop(*devices)


def tone(freq: float, seconds: float, talk: tuple[float, float] | None = None) -> np.ndarray:
    """A tone at -12 dBFS, sounding only in ``talk`` (start, end) when given."""
    t = np.arange(int(seconds * RATE)) / RATE
    signal = 0.25 * 32767 * np.sin(2 * np.pi * freq * t)
    if talk is not None:
        signal[(t < talk[0]) | (t >= talk[1])] = 0.0
    return signal.astype(np.int16)


async def conference_of(
    devices: list[Device], plays: list[Path], records: list[Path]
) -> list[LiveConference]:
    """The first device starts a conference with the others, who auto-accept."""
    host, *others = devices
    live = await host.confs.start(
        [d.user for d in others], play=str(plays[0]), record=str(records[0])
    )
    lives = [live]
    for device, play, record in zip(others, plays[1:], records[1:], strict=True):
        ringing = await asyncio.wait_for(device.confs.incoming.get(), 15)
        await device.confs.accept(ringing.conf_id, play=str(play), record=str(record))
        lives.append(ringing)
    everyone = {d.user for d in devices}
    assert await until(
        lambda: (
            all(set(c.core.members) == everyone for c in lives)
            and all(c.core.state is ConfState.ACTIVE for c in lives)
        ),
        20,
    ), [c.core.state for c in lives]
    return lives


def files(tmp_path: Path, plays: list[np.ndarray]) -> tuple[list[Path], list[Path]]:
    play_paths, record_paths = [], []
    for k, pcm in enumerate(plays):
        play_paths.append(tmp_path / f"play{k}.wav")
        record_paths.append(tmp_path / f"heard{k}.wav")
        write_wav(play_paths[-1], pcm)
    return play_paths, record_paths


async def test_five_hear_each_other_and_never_themselves(
    five: list[Device], tmp_path: Path
) -> None:
    plays = [tone(TONES[k], 12.0, (2 * k + 1.0, 2 * k + 2.5)) for k in range(5)]
    play_paths, records = files(tmp_path, plays)
    lives = await conference_of(five, play_paths, records)
    host = five[0]
    doc = host.confs.describe(lives[0])
    assert doc["host"] == host.user and doc["role"] == "host" and doc["why_host"]
    assert set(doc["members"]) == {d.user for d in five}
    await asyncio.sleep(12.5)
    doc = host.confs.describe(lives[0])
    for member in five[1:]:
        assert doc["participants"][member.user]["packets_received"] > 400
    member_doc = five[1].confs.describe(lives[1])
    assert member_doc["role"] == "member" and member_doc["host"] == host.user
    assert member_doc["participants"][host.user]["packets_received"] > 400
    for device, live in zip(five, lives, strict=True):
        device.confs.leave(live.conf_id)
    assert await until(lambda: all(c.over for c in lives), 10)
    for k, record in enumerate(records):
        heard = load_voice(record)
        own = tone_db(heard, TONES[k])
        for j in range(5):
            if j != k:
                other = tone_db(heard, TONES[j])
                assert other > 50.0, f"{k} hears {j} at {other:.1f} dB"
                assert other - own > 20.0, f"{k}: own {own:.1f} dB vs {j} {other:.1f} dB"


async def test_the_host_leaves_and_the_others_carry_on(five: list[Device], tmp_path: Path) -> None:
    plays = [tone(TONES[k], 14.0) for k in range(5)]  # everyone talks all the time
    play_paths, records = files(tmp_path, plays)
    lives = await conference_of(five, play_paths, records)
    await asyncio.sleep(3.0)
    five[0].confs.leave(lives[0].conf_id)
    rest, rest_devices = lives[1:], five[1:]
    assert await until(
        lambda: len({c.core.host for c in rest}) == 1 and rest[0].core.host != five[0].user, 5
    ), [c.core.host for c in rest]
    new_host = rest[0].core.host
    assert new_host in {d.user for d in rest_devices}
    await asyncio.sleep(5.0)
    docs = [d.confs.describe(c) for d, c in zip(rest_devices, rest, strict=True)]
    assert {doc["host"] for doc in docs} == {new_host}
    assert all(set(doc["members"]) == {d.user for d in rest_devices} for doc in docs)
    hosting = [doc for doc in docs if doc["role"] == "host"]
    assert len(hosting) == 1 and hosting[0]["speakers"]
    members = [(d, c, doc) for d, c, doc in zip(rest_devices, rest, docs, strict=True)]
    members = [m for m in members if m[2]["role"] == "member"]
    for _device, _live, doc in members:
        assert doc["longest_gap_ms"] < 3000, doc["longest_gap_ms"]
        assert doc["streams"] == 2 and doc["host_changes"][-1]["cause"] == "left"
    for device, live in zip(rest_devices, rest, strict=True):
        device.confs.leave(live.conf_id)
    assert await until(lambda: all(c.over for c in rest), 10)
    for k in range(1, 5):
        if five[k].user != new_host:
            gap = longest_silence(load_voice(records[k]))
            assert gap < 3.0, f"{five[k].user}: {gap:.2f} s without sound"


async def test_a_member_leaves_calls_are_busy_and_junk_is_counted(
    net: LoopbackNet, five: list[Device], tmp_path: Path
) -> None:
    plays = [tone(TONES[k], 12.0) for k in range(5)]
    play_paths, records = files(tmp_path, plays)
    lives = await conference_of(five, play_paths, records)
    ann, ben, cat, dan, eve = five
    eve.confs.leave(lives[4].conf_id)
    assert lives[4].over
    four = {d.user for d in five[:4]}
    assert await until(lambda: all(set(c.core.members) == four for c in lives[:4]), 5)
    received = ben.confs.describe(lives[1])["participants"][ann.user]["packets_received"]
    await asyncio.sleep(1.0)
    now = ben.confs.describe(lives[1])["participants"][ann.user]["packets_received"]
    assert now - received > 30  # media still flows after eve left
    # 1:1 calls with a conference member are busy, both ways
    with pytest.raises(CallError, match="busy"):
        await ann.calls.place(ben.user, play=None, record=None, seconds=None)
    other_ben = await second_device(net, ben.user)  # not in the conference, knows nothing
    try:
        attempt = await other_ben.calls.place(ann.user, play=None, record=None, seconds=None)
        await asyncio.wait_for(attempt.ended.wait(), 15)
        assert attempt.call.end_reason is EndReason.BUSY
    finally:
        await stop(other_ben)
    # eve left: a 1:1 call with her rings again, and she cannot be pulled into a
    # conference while that call is in progress
    call = await ann.calls.place(eve.user, play=None, record=None, seconds=None)
    assert await until(lambda: bool(eve.calls.calls), 10)
    with pytest.raises(ConferenceError, match="busy"):
        await ann.confs.start([eve.user])
    ann.calls.hangup(call.call_id)
    # junk: a roster from a member, a leave for an unknown conference, stray media
    conf_id = lives[0].conf_id
    bens_path = ben.confs._path_to(ann.user)
    assert bens_path is not None
    bens_path.notify(ConfRoster(conf_id=conf_id, epoch=99, host=ben.user, members=()))
    bens_path.notify(ConfLeave(conf_id=b"\x07" * 16, reason="not yours"))
    bens_path.notify(ConfLeave(conf_id=conf_id, reason="x" * 300))
    assert await until(
        lambda: (
            ann.confs.dropped["unknown-conference"] >= 1
            and ann.confs.dropped["malformed"] >= 1
            and sum(ann.confs.dropped.values()) >= 3
        ),
        5,
    ), ann.confs.dropped
    cats_path = cat.confs._path_to(dan.user)
    if cats_path is None:
        cats_path = await cat.paths.connect(dan.user, 10)
    before = dan.confs.dropped["stray-media"]
    for _ in range(5):
        cats_path.send_datagram(b"\x81\x00\x00\x09" + bytes(20))
    assert await until(lambda: dan.confs.dropped["stray-media"] >= before + 5, 5)
    assert all(c.core.state is ConfState.ACTIVE for c in lives[:4])
    assert {c.core.host for c in lives[:4]} == {ann.user}


async def crash(device: Device) -> None:
    """``device`` vanishes mid-conference: no leave, no handover, sockets closed."""
    for live in device.confs.conferences_by_id.values():
        for task in live.tasks:
            task.cancel()
    device.keeper.cancel()
    await device.paths.close()
    await device.session.close()


async def test_a_vanished_host_is_replaced_within_the_gap_budget(
    five: list[Device], tmp_path: Path
) -> None:
    ann, ben, *auto = five
    for device in auto:  # these join on their own, with silence
        device.confs.config = replace(CONFS, auto_accept=True)
    play, heard = tmp_path / "ann.wav", tmp_path / "ben-heard.wav"
    write_wav(play, tone(TONES[0], 12.0))
    ben_play = tmp_path / "ben.wav"
    write_wav(ben_play, tone(TONES[1], 12.0))
    first = await ann.confs.start([d.user for d in five[1:]], play=str(play))
    ringing = await asyncio.wait_for(ben.confs.incoming.get(), 15)
    await ben.confs.accept(ringing.conf_id, play=str(ben_play), record=str(heard))
    lives = [first, ringing, *[await joined(d, first.conf_id) for d in auto]]
    everyone = {d.user for d in five}
    assert await until(lambda: all(set(c.core.members) == everyone for c in lives), 20)
    await asyncio.sleep(2.0)
    five.remove(ann)  # stopped here, not by the fixture
    await crash(ann)
    rest = lives[1:]
    assert await until(
        lambda: len({c.core.host for c in rest}) == 1 and rest[0].core.host != ann.user, 6
    ), [c.core.host for c in rest]
    await asyncio.sleep(3.0)
    docs = [d.confs.describe(c) for d, c in zip(five, rest, strict=True)]
    assert {doc["host"] for doc in docs} == {rest[0].core.host}
    assert all(doc["state"] == "active" and ann.user not in doc["members"] for doc in docs)
    for doc in docs:
        if doc["role"] == "member":
            assert doc["longest_gap_ms"] < 3000, doc["longest_gap_ms"]
            assert doc["host_changes"][-1]["cause"] == "lost"
    for device, live in zip(five, rest, strict=True):
        device.confs.leave(live.conf_id)
    assert await until(lambda: all(c.over for c in rest), 10)
    if ben.user != rest[0].core.host:
        gap = longest_silence(load_voice(heard))
        assert gap < 3.0, f"{gap:.2f} s without sound at ben"


async def joined(device: Device, conf_id: bytes) -> LiveConference:
    assert await until(lambda: conf_id in device.confs.conferences_by_id, 15)
    return device.confs.get(conf_id)

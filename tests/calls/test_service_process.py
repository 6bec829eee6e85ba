"""Calls between logged-in clients, against real supernode processes on loopback.

Each side is a real :class:`~hopline.client.session.ClientSession` with a
:class:`~hopline.path.manager.PathManager` and a
:class:`~hopline.calls.service.CallService` in this process, talking over
real sockets through a real login server and supernodes. Audio comes from
and goes to WAV files; what is checked is what a user hears and sees: the
recording (PESQ against the source), the call states and reasons on both
sides, and the counters of what was dropped.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopline.calls.service import CallConfig, CallError, CallService, LiveCall, NoSuchCall
from hopline.calls.state import CallState, CallTimeouts, EndReason
from hopline.client import account
from hopline.client.profile import Profile
from hopline.client.session import ClientSession
from hopline.media.audio import AudioFileError, load_voice, write_wav
from hopline.media.score import pesq_wb
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
from hopline.testing.speech import make_speech
from hopline.wire.call import CallHangup, CallHold

CALLS = CallConfig(devices=False, timeouts=CallTimeouts(invite=8.0, ring=6.0, media=10.0))
NAMES = itertools.count(1)
SOURCES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    with loopback_net(tmp_path_factory.mktemp("calls"), supernodes=2) as running:
        yield running


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six seconds of synthetic speech, 48 kHz mono."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    write_wav(path, make_speech(seconds=6.0))
    return path


@dataclass
class Device:
    """One logged-in device with paths and a call service."""

    session: ClientSession
    paths: PathManager
    calls: CallService
    keeper: asyncio.Task[None]

    @property
    def user(self) -> str:
        return self.session.user


async def device(profile: Profile) -> Device:
    session = ClientSession(profile, FAST_SESSION)
    await session.connect()
    paths = PathManager(session, FAST_PATHS)
    await paths.start()
    calls = CallService(paths, config=CALLS)
    calls.start()
    keeper = asyncio.get_running_loop().create_task(session.run())
    return Device(session, paths, calls, keeper)


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


async def stop(*devices: Device) -> None:
    for one in devices:
        await one.calls.close()
        one.keeper.cancel()
        await one.paths.close()
        await one.session.close()


@pytest.fixture
async def pair(net: LoopbackNet) -> AsyncIterator[tuple[Device, Device]]:
    n = next(NAMES)
    alice = await new_user(net, f"alice{n}")
    bob = await new_user(net, f"bob{n}")
    yield alice, bob
    await stop(alice, bob)


async def ended(live: LiveCall, timeout: float = 20.0) -> LiveCall:
    await asyncio.wait_for(live.ended.wait(), timeout)
    return live


async def test_a_call_carries_speech_both_ways(
    pair: tuple[Device, Device], speech: Path, tmp_path: Path
) -> None:
    alice, bob = pair
    heard_by_bob, heard_by_alice = tmp_path / "bob.wav", tmp_path / "alice.wav"
    outgoing = await alice.calls.place(
        bob.user, play=str(speech), record=str(heard_by_alice), seconds=7.0
    )
    incoming = await bob.calls.answer(
        None, play=str(speech), record=str(heard_by_bob), seconds=None, wait_s=10
    )
    assert incoming.peer == alice.user and outgoing.peer == bob.user
    await ended(outgoing)
    await ended(incoming)
    assert outgoing.call.end_reason is EndReason.HANGUP
    assert incoming.call.end_reason is EndReason.HANGUP  # alice hung up after 7 s
    source = load_voice(speech)
    for recording in (heard_by_bob, heard_by_alice):
        score = pesq_wb(source, load_voice(recording))
        assert score > 3.0, f"{recording.name}: PESQ {score:.2f}"
    doc = alice.calls.describe(outgoing)
    assert doc["state"] == "ended" and doc["path"] in ("direct", "relay")
    assert doc["packets_received"] > 250 and doc["packets_sent"] > 250
    assert doc["codec"] == "opus/48000/1" and doc["duration_s"] >= 6.5
    assert doc["mos_estimate"] is not None and doc["mos_estimate"] > 3.5


async def test_rejecting_ends_the_call_rejected_on_both_sides(pair: tuple[Device, Device]) -> None:
    alice, bob = pair
    outgoing = await alice.calls.place(bob.user, play=None, record=None, seconds=None)
    assert await until(lambda: outgoing.state is CallState.RINGING, 10)
    incoming = next(iter(bob.calls.calls.values()))
    assert incoming.state is CallState.INCOMING
    bob.calls.hangup(incoming.call_id)  # hanging up a ringing call rejects it
    await ended(outgoing, 10)
    assert outgoing.call.end_reason is EndReason.REJECTED
    assert incoming.call.end_reason is EndReason.REJECTED


async def test_hanging_up_while_ringing_cancels_on_the_callee(pair: tuple[Device, Device]) -> None:
    alice, bob = pair
    outgoing = await alice.calls.place(bob.user, play=None, record=None, seconds=None)
    assert await until(lambda: bool(bob.calls.calls), 10)
    incoming = next(iter(bob.calls.calls.values()))
    alice.calls.hangup(None)
    await ended(incoming, 10)
    assert outgoing.call.end_reason is EndReason.CANCELLED
    assert incoming.call.end_reason is EndReason.CANCELLED


async def test_nobody_answering_times_out_on_both_sides(pair: tuple[Device, Device]) -> None:
    alice, bob = pair
    outgoing = await alice.calls.place(bob.user, play=None, record=None, seconds=None)
    assert await until(lambda: bool(bob.calls.calls), 10)
    incoming = next(iter(bob.calls.calls.values()))
    await ended(outgoing, 15)
    await ended(incoming, 15)
    assert outgoing.call.end_reason is EndReason.TIMEOUT
    assert incoming.call.end_reason in (EndReason.TIMEOUT, EndReason.CANCELLED)


async def test_a_second_caller_hears_busy(net: LoopbackNet, pair: tuple[Device, Device]) -> None:
    alice, bob = pair
    carol = await new_user(net, f"carol{next(NAMES)}")
    try:
        first = await alice.calls.place(bob.user, play=None, record=None, seconds=None)
        await bob.calls.answer(None, play=None, record=None, seconds=None, wait_s=10)
        assert await until(lambda: first.state is CallState.ACTIVE, 10)
        second = await carol.calls.place(bob.user, play=None, record=None, seconds=None)
        await ended(second, 15)
        assert second.call.end_reason is EndReason.BUSY
        assert first.state is CallState.ACTIVE
        alice.calls.hangup(first.call_id)
    finally:
        await stop(carol)


async def test_every_device_rings_and_the_first_answer_wins(net: LoopbackNet) -> None:
    n = next(NAMES)
    alice = await new_user(net, f"alice{n}")
    bob_phone = await new_user(net, f"bob{n}")
    bob_laptop = await second_device(net, f"bob{n}")
    try:
        devices = await alice.paths.devices(bob_phone.user)
        assert len(devices) == 2  # both of bob's devices are online
        outgoing = await alice.calls.place(bob_phone.user, play=None, record=None, seconds=None)
        both = lambda: bool(bob_phone.calls.calls) and bool(bob_laptop.calls.calls)  # noqa: E731
        assert await until(both, 15)
        laptop_call = next(iter(bob_laptop.calls.calls.values()))
        phone_call = next(iter(bob_phone.calls.calls.values()))
        await bob_laptop.calls.answer(None, play=None, record=None, seconds=None)
        await ended(phone_call, 10)
        assert phone_call.call.end_reason is EndReason.ANSWERED_ELSEWHERE
        assert await until(lambda: outgoing.state is CallState.ACTIVE, 10)
        assert laptop_call.state is CallState.ACTIVE
        assert outgoing.path is not None and outgoing.path.device_id != phone_call.path.device_id
        alice.calls.hangup(outgoing.call_id)
        await ended(laptop_call, 10)
    finally:
        await stop(alice, bob_phone, bob_laptop)


async def test_hold_stops_media_and_resume_restarts_it(pair: tuple[Device, Device]) -> None:
    alice, bob = pair
    outgoing = await alice.calls.place(bob.user, play=None, record=None, seconds=None)
    incoming = await bob.calls.answer(None, play=None, record=None, seconds=None, wait_s=10)
    assert await until(lambda: outgoing.state is CallState.ACTIVE, 10)
    alice.calls.hold(outgoing.call_id, True)
    assert await until(lambda: incoming.state is CallState.REMOTE_HELD, 5)
    assert alice.calls.describe(outgoing)["held"] and bob.calls.describe(incoming)["remote_held"]
    await asyncio.sleep(0.5)
    received = bob.calls.describe(incoming)["packets_received"]
    await asyncio.sleep(1.0)
    assert bob.calls.describe(incoming)["packets_received"] == received  # nothing while held
    alice.calls.hold(outgoing.call_id, False)
    assert await until(lambda: incoming.state is CallState.ACTIVE, 5)
    assert await until(lambda: bob.calls.describe(incoming)["packets_received"] > received + 20, 5)
    bob.calls.hangup(incoming.call_id)
    await ended(outgoing, 10)
    assert outgoing.call.end_reason is EndReason.HANGUP


async def test_bad_media_and_foreign_signals_are_dropped_and_counted(
    pair: tuple[Device, Device],
) -> None:
    alice, bob = pair
    outgoing = await alice.calls.place(bob.user, play=None, record=None, seconds=None)
    incoming = await bob.calls.answer(None, play=None, record=None, seconds=None, wait_s=10)
    assert await until(lambda: outgoing.state is CallState.ACTIVE, 10)
    path, stream = outgoing.path, incoming.stream
    assert path is not None and stream is not None
    for junk in (b"\x81", b"\x81\x00" + b"\xff" * 3, b"\x8f" + bytes(20), b"\xa1\x01"):
        path.send_datagram(junk)
    assert await until(lambda: sum(stream.dropped.values()) >= 4, 5)
    path.notify(CallHangup(call_id=b"\x01" * 16, reason="not yours"))
    path.notify(CallHold(call_id=b"\x02" * 16, on=1))
    assert await until(lambda: bob.calls.dropped["unknown-call"] >= 2, 5)
    assert incoming.state is CallState.ACTIVE  # none of it touched the call
    alice.calls.hangup(outgoing.call_id)
    await ended(incoming, 10)
    for _ in range(5):  # media for a call that is over
        path.send_datagram(b"\x81\x00\x00\x09" + bytes(20))
    assert await until(lambda: bob.calls.dropped["foreign-media"] >= 5, 5)


async def test_calling_someone_offline_or_bad_files_fail_clearly(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    alice, _ = pair
    with pytest.raises(CallError, match="not online"):
        await alice.calls.place("nobody-here", play=None, record=None, seconds=None)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav")
    with pytest.raises(AudioFileError, match=r"bad\.wav"):
        await alice.calls.place(pair[1].user, play=str(bad), record=None, seconds=None)
    with pytest.raises(NoSuchCall):
        await alice.calls.answer(None, play=None, record=None, seconds=None, wait_s=0.2)
    assert not [c for c in alice.calls.calls.values() if c.state is not CallState.ENDED]

"""A relayed call survives the loss of the supernode relaying it.

Real login server and three supernode processes on loopback; alice and bob
reach each other only through relays (``PathConfig(direct=False)``, the
daemon's ``--relay-only``), with the daemon's default session and path
timers, so nothing here is tuned to make recovery look fast. Alice plays a
steady tone; a few seconds in, the supernode holding her relay is killed
with SIGKILL. The call must go on: the path is re-established through a
new home, and the longest silence bob hears (media gap, and the quiet run
in his recording) stays under two seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hopline.calls.service import CallConfig, CallService
from hopline.calls.state import CallState, EndReason
from hopline.client.session import ClientSession
from hopline.media.audio import ToneSource, load_voice, write_wav
from hopline.path.manager import PathConfig, PathManager
from hopline.testing.network import LoopbackNet, logged_in, loopback_net
from hopline.wire import Address

RELAY_ONLY = PathConfig(direct=False)
CALLS = CallConfig(devices=False)
FRAME = 960
MAX_GAP_S = 2.0


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LoopbackNet]:
    """A network of its own: a supernode of it gets killed."""
    with loopback_net(tmp_path, supernodes=3) as running:
        yield running


Side = tuple[ClientSession, PathManager, CallService, asyncio.Task[None]]


async def side(net: LoopbackNet, name: str, bind: str) -> Side:
    profile = await logged_in(net.workdir, net.ls, name, bind=bind)
    session = ClientSession(profile)
    await session.connect()
    paths = PathManager(session, RELAY_ONLY)
    await paths.start()
    calls = CallService(paths, config=CALLS)
    calls.start()
    return session, paths, calls, asyncio.get_running_loop().create_task(session.run())


def longest_quiet_run_s(recording: npt.NDArray[np.int16]) -> float:
    """The longest run of near-silent 20 ms frames between the first and last loud one."""
    frames = recording[: len(recording) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = rms > 0.1 * np.median(rms[rms > 0]) if (rms > 0).any() else rms > 0
    first, last = np.argmax(loud), len(loud) - np.argmax(loud[::-1]) - 1
    run = longest = 0
    for is_loud in loud[first : last + 1]:
        run = 0 if is_loud else run + 1
        longest = max(longest, run)
    return longest * FRAME / 48000


async def test_a_relayed_call_survives_its_supernode_dying(net: LoopbackNet) -> None:
    workdir, nodes = net.workdir, net.nodes
    tone = workdir / "tone.wav"
    source = ToneSource(frequency=440, seconds=16.0)
    frames = []
    while (frame := source.read_frame()) is not None:
        frames.append(frame)
    write_wav(tone, np.concatenate(frames))
    alice = await side(net, "alice", "127.0.0.21")
    bob = await side(net, "bob", "127.0.0.22")
    heard = workdir / "heard.wav"
    try:
        outgoing = await alice[2].place("bob", play=str(tone), record=None, seconds=12.0)
        incoming = await bob[2].answer(None, play=None, record=str(heard), seconds=None, wait_s=15)
        for _ in range(100):
            if outgoing.state is CallState.ACTIVE:
                break
            await asyncio.sleep(0.1)
        assert outgoing.path is not None and outgoing.path.kind == "relay"
        await asyncio.sleep(4.0)
        home = alice[0].home_address
        by_address = {Address.parse(p.ready["listen"]): p for p in nodes}
        by_address[home].kill()  # SIGKILL: no goodbye, its relays vanish
        await asyncio.wait_for(incoming.ended.wait(), 30)
        await asyncio.wait_for(outgoing.ended.wait(), 5)
    finally:
        for session, paths, calls, keeper in (alice, bob):
            await calls.close()
            keeper.cancel()
            await paths.close()
            await session.close()
    assert outgoing.call.end_reason is EndReason.HANGUP  # alice hung up after 12 s, not a failure
    assert incoming.call.end_reason is EndReason.HANGUP
    assert alice[0].rehomes >= 1 and alice[0].home_address != home
    assert outgoing.path.changes[-1].reason == "reestablished"
    doc = bob[2].describe(incoming)
    assert doc["stalls"] >= 1, doc
    assert doc["longest_gap_ms"] < MAX_GAP_S * 1000, doc
    quiet = longest_quiet_run_s(load_voice(heard))
    assert 0 < quiet < MAX_GAP_S, f"bob heard {quiet:.2f} s of silence"
    print(f"\nlongest media gap {doc['longest_gap_ms']} ms, quiet run {quiet * 1000:.0f} ms")

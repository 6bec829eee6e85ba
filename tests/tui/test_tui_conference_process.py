"""Active speakers reach a member and its TUI: three real daemons, one conference.

A login server, three supernodes and the daemons of alice, bob and carol run
as processes (``tests/tui/conftest.py``, carol added here). Bob hosts a
conference with ``hopline call alice carol``; alice and carol join with
``hopline answer --auto``. Each plays a WAV: alice silence throughout,
carol a tone for her first seconds in the conference, bob a tone in a later
slot, so who speaks changes in a known order: carol, nobody, bob, nobody.

Alice, a *member*, watches in the TUI's conference view (F4) while her
``hopline calls --json`` is read in a second terminal: both must name
exactly the one who speaks while they speak, never the silent ones, and
show nobody once everyone stopped (no stale final state). Waits poll what is
shown; nothing is assumed after a fixed sleep.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.tui.test_tui_process import SIZE, main_view, telling, until, until_cli
from textual.pilot import Pilot
from textual.widgets import Label

from hopline.media.audio import write_wav
from hopline.testing.daemons import DaemonNet, finished
from hopline.tui.app import HoplineApp
from hopline.tui.screens import ConferenceScreen

RATE = 48000
CAROL_TALKS = (0.0, 6.0)  # after her media starts (she joins 1-6 s after bob's media)
BOB_TALKS = (22.0, 28.0)  # after bob's media starts: well after carol stopped
HOST_SECONDS, MEMBER_SECONDS = 40, 36
PHASE_S = 40.0
DONE_S = 60.0


@pytest.fixture(scope="module")
def three(net: DaemonNet) -> DaemonNet:
    """Alice, bob and carol online."""
    net.up("carol")
    net.cli("carol", "register", "carol")
    for name in ("alice", "carol"):
        if net.json(name, "status")["state"] == "logged-out":
            net.cli(name, "login", name)
    for name in ("alice", "bob", "carol"):
        net.wait_online(name)
    return net


def tone_wav(path: Path, freq: float, seconds: float, talk: tuple[float, float] | None) -> Path:
    """A WAV of a -12 dBFS tone sounding only in ``talk`` (silence throughout when None)."""
    t = np.arange(int(seconds * RATE)) / RATE
    signal = 0.25 * 32767 * np.sin(2 * np.pi * freq * t)
    if talk is None:
        signal[:] = 0.0
    else:
        signal[(t < talk[0]) | (t >= talk[1])] = 0.0
    write_wav(path, signal.astype(np.int16))
    return path


def member_view(net: DaemonNet) -> dict[str, Any] | None:
    """Alice's live conference as ``hopline calls --json`` gives it."""
    confs = [c for c in net.json("alice", "calls")["conferences"] if c["state"] == "active"]
    return confs[-1] if confs else None


def speaking(net: DaemonNet, names: list[str]) -> dict[str, Any] | None:
    """Alice's conference when she is a member and its speakers are exactly ``names``."""
    conf = member_view(net)
    if conf is None or conf["role"] != "member" or conf["speakers"] != names:
        return None
    return conf


async def shown_speaking(
    pilot: Pilot[None], screen: ConferenceScreen, names: set[str], seen: list[frozenset[str]]
) -> None:
    """Wait until the view highlights exactly ``names``; every set shown is kept in ``seen``."""

    def check() -> bool:
        now = frozenset(screen.highlighted())
        if not seen or seen[-1] != now:
            seen.append(now)
        return now == names and all(
            ("speaking" in speaks) == (user in names)
            for user, (_, speaks) in screen.shown().items()
        )

    await until(pilot, f"{sorted(names) or 'nobody'} shown speaking", check, timeout=PHASE_S)


async def test_a_member_sees_who_speaks_live_in_the_tui_and_the_cli(
    three: DaemonNet, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    net = three
    plays = {
        "alice": tone_wav(tmp_path / "alice.wav", 440.0, MEMBER_SECONDS, None),
        "carol": tone_wav(tmp_path / "carol.wav", 810.0, MEMBER_SECONDS, CAROL_TALKS),
        "bob": tone_wav(tmp_path / "bob.wav", 620.0, HOST_SECONDS, BOB_TALKS),
    }
    for name in ("alice", "carol"):
        procs.append(
            net.start(
                name, "answer", "--auto", "--timeout", "60", "--play", str(plays[name]),
                "--record", str(tmp_path / f"{name}-heard.wav"),
                "--seconds", str(MEMBER_SECONDS), "--json",
            )
        )  # fmt: skip
    bob = net.start(
        "bob", "call", "alice", "carol", "--play", str(plays["bob"]),
        "--record", str(tmp_path / "bob-heard.wav"), "--seconds", str(HOST_SECONDS), "--json",
    )  # fmt: skip
    procs.append(bob)
    app = HoplineApp(net.workdir / "alice")
    seen: list[frozenset[str]] = []
    async with app.run_test(size=SIZE) as pilot:
        with telling(bob):
            await main_view(pilot)
            live = await until(
                pilot,
                "the conference known to the TUI, all three in",
                lambda: [
                    c for c in app.state.live_conferences()
                    if c.state == "active" and len(c.members) == 3
                ],
                timeout=PHASE_S,
            )  # fmt: skip
            await pilot.press("f4")
            screen = await until(
                pilot,
                "the conference view",
                lambda: app.screen if isinstance(app.screen, ConferenceScreen) else None,
            )
            assert screen.conf_id == live[0].conf_id
            await until(
                pilot,
                "the participants listed, bob as host",
                lambda: (
                    screen.shown().get("bob", ("", ""))[0] == "host"
                    and screen.shown().get("alice", ("", ""))[0] == "member"
                ),
            )
            await shown_speaking(pilot, screen, {"carol"}, seen)
            conf = await until_cli(
                pilot, "alice's calls --json names carol", lambda: speaking(net, ["carol"])
            )
            assert conf["host"] == "bob" and set(conf["members"]) == {"alice", "bob", "carol"}
            await shown_speaking(pilot, screen, {"bob"}, seen)
            await until_cli(pilot, "alice's calls --json names bob", lambda: speaking(net, ["bob"]))
            await shown_speaking(pilot, screen, set(), seen)
            await until_cli(pilot, "alice's calls --json names nobody", lambda: speaking(net, []))
            title = str(screen.query_one("#conf-title", Label).content)
            assert title == "Conference hosted by bob — active, 3 members"
    carol, bob_at = seen.index(frozenset({"carol"})), seen.index(frozenset({"bob"}))
    assert frozenset() in seen[carol:bob_at], seen  # carol, then nobody, then bob
    assert all(s <= {"carol", "bob"} for s in seen), seen  # alice was never shown speaking
    for proc in procs:
        code, report, err = await asyncio.to_thread(finished, proc, DONE_S)
        assert code == 0, err
        assert report is not None and report["state"] == "ended" and report["host"] == "bob"

"""Conferences between four real daemons, driven by the real ``hopline`` CLI.

A login server and three supernodes run as processes; alice, bob, carol and
dave each run a daemon. ``hopline call bob carol dave`` and three
``hopline answer --auto`` run side by side as subprocesses. Each person's WAV
holds a tone of its own frequency, sounding only in that person's time slot,
so each recording can be measured per speaker: the others' tones loud, its
own far below (the host mixes everyone but the listener). The API's refusals
(404, 409, 422) are checked against the same daemons through the SDK.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hopline.media.audio import load_voice, write_wav
from hopline.media.score import longest_silence, tone_db
from hopline.sdk import Client, HoplineError
from hopline.testing.daemons import DaemonNet as Net
from hopline.testing.daemons import finished

RATE = 48000
PEOPLE = ("alice", "bob", "carol", "dave")
TONES = {"alice": 440.0, "bob": 620.0, "carol": 810.0, "dave": 1030.0}  # no shared harmonics
# Members join 2 s (up to 5.5 s on a loaded machine) after the host's media starts: each
# member's slot (after its own join) and the host's come once every member is in.
MEMBER_SLOTS = {"bob": (4.8, 6.2), "carol": (6.2, 7.6), "dave": (7.6, 9.0)}  # after joining
HOST_SLOT = (9.5, 11.0)  # after the host's media starts
MEMBER_SECONDS, HOST_SECONDS = 14, 22  # members leave first (by 19.5 s): the host stays alice
DONE_S = 60
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def four(net: Net) -> Net:
    """Daemons for alice, bob, carol and dave, registered and logged in through them."""
    for name in PEOPLE:
        net.up(name)
        net.cli(name, "register", name)
        net.cli(name, "login", name)
        net.wait_online(name)
    return net


def tone(freq: float, seconds: float, talk: tuple[float, float] | None = None) -> np.ndarray:
    """A tone at -12 dBFS, sounding only in ``talk`` (start, end) when given."""
    t = np.arange(int(seconds * RATE)) / RATE
    signal = 0.25 * 32767 * np.sin(2 * np.pi * freq * t)
    if talk is not None:
        signal[(t < talk[0]) | (t >= talk[1])] = 0.0
    return signal.astype(np.int16)


def wav(path: Path, pcm: np.ndarray) -> Path:
    write_wav(path, pcm)
    return path


def live_conferences(net: Net, name: str) -> list[dict[str, Any]]:
    confs: list[dict[str, Any]] = net.json(name, "calls")["conferences"]
    return [conf for conf in confs if conf["state"] != "ended"]


def wait_full(net: Net, name: str, members: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``hopline calls --json`` until ``name`` is in an active conference of ``members``."""
    deadline = time.monotonic() + timeout
    confs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        confs = live_conferences(net, name)
        for conf in confs:
            if conf["state"] == "active" and len(conf["members"]) == members:
                return conf
        time.sleep(0.2)
    raise AssertionError(f"no active conference of {members} for {name}: {confs}")


def answer(net: Net, name: str, play: Path, record: Path, seconds: float) -> subprocess.Popen[str]:
    args = ("answer", "--auto", "--timeout", "60", "--play", str(play), "--record", str(record))
    return net.start(name, *args, "--seconds", str(seconds), "--json")


def assert_hears_others_not_itself(name: str, record: Path, speakers: list[str]) -> None:
    heard = load_voice(record)
    own = tone_db(heard, TONES[name])
    for other in speakers:
        if other == name:
            continue
        level = tone_db(heard, TONES[other])
        assert level > 50.0, f"{name} hears {other} at {level:.1f} dB"
        assert level - own > 20.0, f"{name}: own {own:.1f} dB vs {other} {level:.1f} dB"


def test_four_talk_in_turn_and_each_hears_the_others(
    four: Net, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    records = {name: tmp_path / f"{name}-heard.wav" for name in PEOPLE}
    # the host's NAT check, finished before the conference starts (a later one, after
    # a re-home, may measure another figure: either is the one the election saw)
    uploads = {asyncio.run(_measured_upload(four.workdir / "alice"))}
    for name, slot in MEMBER_SLOTS.items():  # they leave first: the host stays alice
        play = wav(tmp_path / f"{name}.wav", tone(TONES[name], 9.5, slot))
        procs.append(answer(four, name, play, records[name], MEMBER_SECONDS))
    alice_play = wav(tmp_path / "alice.wav", tone(TONES["alice"], 12.0, HOST_SLOT))
    alice = four.start(
        "alice", "call", "bob", "carol", "dave", "--play", str(alice_play),
        "--record", str(records["alice"]), "--seconds", str(HOST_SECONDS), "--json",
    )  # fmt: skip
    procs.append(alice)
    during = wait_full(four, "alice", 4)
    assert during["host"] == "alice" and during["role"] == "host" and during["why_host"]
    uploads.add(asyncio.run(_measured_upload(four.workdir / "alice")))
    why = " ".join(during["why_host"])
    assert any(f"upload {upload / 1e6:.2f} Mbit/s" in why for upload in uploads), (uploads, why)
    assert set(during["members"]) == set(PEOPLE)
    assert {"bob", "carol", "dave"} <= set(during["participants"])
    assert all("loss" in during["participants"][m] for m in ("bob", "carol", "dave"))
    seen_by_bob = wait_full(four, "bob", 4)
    assert seen_by_bob["host"] == "alice" and seen_by_bob["role"] == "member"
    table = four.cli("alice", "calls").stdout
    assert "alice" in table and "dave" in table  # headers may wrap in 80 columns
    assert all(word in table for word in ("why", "speaks", "path", "direct")), table
    reports = {}
    for name, proc in zip(PEOPLE, (alice, *procs[:3]), strict=True):
        code, report, err = finished(proc, DONE_S)
        assert code == 0, (name, err)
        assert report is not None and report["state"] == "ended", (name, report)
        reports[name] = report
    assert "host alice" in err  # the live line named the host
    start = reports["alice"]["started_at"]
    timeline = {
        name: (r["host"], r["end_reason"], r["joined_at"] - start, r["ended_at"] - start)
        for name, r in reports.items()
    }
    assert {report["host"] for report in reports.values()} == {"alice"}, timeline
    assert len({report["conf_id"] for report in reports.values()}) == 1
    for name in ("bob", "carol", "dave"):
        assert reports[name]["role"] == "member" and reports[name]["record"] == str(records[name])
    for name in PEOPLE:
        assert_hears_others_not_itself(name, records[name], list(PEOPLE))


def test_the_host_leaves_and_the_others_carry_on(
    four: Net, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    members = ("bob", "carol", "dave")
    records = {name: tmp_path / f"{name}-heard.wav" for name in members}
    for name in members:  # everyone talks all the time
        play = wav(tmp_path / f"{name}.wav", tone(TONES[name], 12.0))
        procs.append(answer(four, name, play, records[name], 10))
    play = wav(tmp_path / "alice.wav", tone(TONES["alice"], 12.0))
    alice = four.start("alice", "call", "bob", "carol", "dave", "--play", str(play), "--json")
    wait_full(four, "alice", 4)  # everyone is in: alice talks a little, then leaves
    time.sleep(1.5)
    four.cli("alice", "hangup")  # the only live conference: leave it
    code, report, err = finished(alice, DONE_S)
    assert code == 0, err
    assert report is not None and report["end_reason"] == "left" and report["role"] == "host"
    reports = {}
    for name, proc in zip(members, procs[:3], strict=True):
        code, doc, err = finished(proc, DONE_S)
        assert code == 0, (name, err)
        assert doc is not None
        reports[name] = doc
    firsts = [doc["host_changes"][0] for doc in reports.values() if doc["host_changes"]]
    assert len(firsts) == 3, reports  # everyone saw the mix move when alice left
    assert {change["previous"] for change in firsts} == {"alice"}
    hosts = {change["host"] for change in firsts}  # the same successor for all
    assert len(hosts) == 1 and hosts != {"alice"}, firsts
    new_host = hosts.pop()
    for name, doc in reports.items():
        if name == new_host:
            continue
        assert doc["longest_gap_ms"] < 3000, (name, doc["longest_gap_ms"])
        gap = longest_silence(load_voice(records[name]))
        assert gap < 3.0, f"{name}: {gap:.2f} s without sound"
        assert_hears_others_not_itself(name, records[name], list(members))


def test_bad_conference_requests_are_refused(four: Net) -> None:
    for args, says in (
        (("call", "alice", "bob"), "yourself"),
        (("call", "bob", "Bob"), "more than once"),
        (("call", "bob", "no such user!"), "USER"),
    ):
        done = four.cli("alice", *args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    asyncio.run(_api_refusals(four.workdir / "alice"))


async def _measured_upload(profile: Path) -> int:
    """The upload the daemon's last NAT check measured (the one its conferences report)."""
    async with Client.for_profile(profile) as client:
        check = await client.netcheck(fresh=False)
    assert check.upload_bps is not None and check.upload_bps > 10_000_000, check  # loopback
    return check.upload_bps


async def _api_refusals(profile: Path) -> None:
    async with Client.for_profile(profile) as client:
        with pytest.raises(HoplineError) as missing:
            await client.conference(UNKNOWN_ID)
        assert (missing.value.status, missing.value.code) == (404, "not-found")
        with pytest.raises(HoplineError) as nothing:
            await client.answer_conference(None, wait_s=0.2)
        assert (nothing.value.status, nothing.value.code) == (404, "not-found")
        with pytest.raises(HoplineError) as bad:
            await client.start_conference(["alice", "bob"])
        assert (bad.value.status, bad.value.code) == (422, "bad-input")
        ended = [conf for conf in await client.conferences() if conf.state == "ended"]
        assert ended, "the conferences before are kept a while after they end"
        with pytest.raises(HoplineError) as over:
            await client.leave_conference(ended[0].conf_id)
        assert (over.value.status, over.value.code) == (409, "conference-refused")
        with pytest.raises(HoplineError) as not_ringing:
            await client.answer_conference(ended[0].conf_id)
        assert (not_ringing.value.status, not_ringing.value.code) == (409, "conference-refused")


def test_the_api_invites_removes_declines_and_streams_events(four: Net) -> None:
    asyncio.run(_api_round(four.workdir))


async def _api_round(workdir: Path) -> None:
    async with (
        Client.for_profile(workdir / "alice") as alice,
        Client.for_profile(workdir / "bob") as bob,
    ):
        events: list[dict[str, Any]] = []
        reader = asyncio.ensure_future(_collect(alice, events))
        await asyncio.sleep(0.5)  # subscribed before anything happens
        conf = await alice.start_conference(["bob", "carol"])
        assert conf.role == "host" and conf.state == "inviting"
        assert set(conf.invited) == {"bob", "carol"}
        ringing = await _ringing(bob, conf.conf_id)
        with pytest.raises(HoplineError) as not_host:
            await bob.invite_to_conference(ringing.conf_id, "dave")
        assert (not_host.value.status, not_host.value.code) == (409, "conference-refused")
        withdrawn = await alice.remove_from_conference(conf.conf_id, "carol")
        assert "carol" not in withdrawn.invited
        invited = await alice.invite_to_conference(conf.conf_id, "dave")
        assert "dave" in invited.invited
        declined = await bob.decline_conference(ringing.conf_id)
        assert declined.state == "ended" and declined.end_reason == "declined"
        left = await alice.leave_conference(conf.conf_id)
        left = await alice.wait_conference(left.conf_id, 5.0)
        assert left.state == "ended", left
        reader.cancel()
        mine = [e for e in events if e["data"].get("conf_id") == conf.conf_id]
        assert mine and {e["type"] for e in mine} == {"conference"}
        assert mine[-1]["data"]["state"] == "ended"


async def _collect(client: Client, into: list[dict[str, Any]]) -> None:
    async for event in client.events():
        into.append(event)


async def _ringing(client: Client, conf_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for conf in await client.conferences():
            if conf.conf_id == conf_id and conf.state == "invited":
                return conf
        await asyncio.sleep(0.2)
    raise AssertionError(f"the invite to {conf_id} did not ring")

"""Voice calls between real daemons, driven by the real ``hopline`` CLI.

A login server and three supernodes run as processes; alice and bob each run
a daemon; ``hopline call`` and ``hopline answer --auto`` run side by side as
subprocesses, the way two people would use them, and their JSON reports,
exit codes and recordings are checked.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from hopline.daemon.files import INFO_FILE, TOKEN_FILE
from hopline.sdk import Client, HoplineError
from hopline.testing.daemons import DaemonNet as Net
from hopline.testing.daemons import finished

SPEECH = (
    "Hello Bob, this is Alice calling over Hopline. The quick brown fox jumps over "
    "the lazy dog, and the five boxing wizards jump quickly."
)
CALL_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def alice_bob(net: Net) -> Net:
    """Daemons for alice and bob, registered and logged in through them."""
    for name in ("alice", "bob"):
        net.up(name)
        net.cli(name, "register", name)
        net.cli(name, "login", name)
        net.wait_online(name)
    return net


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken sentence (several seconds) as a WAV file, from espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("speech") / "alice.wav"
    subprocess.run(["espeak-ng", "-w", str(path), SPEECH], check=True, timeout=60)
    assert wav_seconds(path) > 5
    return path


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def live_calls(net: Net, name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = net.json(name, "calls")["calls"]
    return [call for call in calls if call["state"] != "ended"]


def wait_active(net: Net, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``hopline calls --json`` until ``name`` has an active call; that call."""
    deadline = time.monotonic() + timeout
    calls: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        calls = live_calls(net, name)
        active = [call for call in calls if call["state"] == "active"]
        if active:
            return active[0]
        time.sleep(0.2)
    raise AssertionError(f"no active call for {name}: {calls}")


def wait_no_live_calls(net: Net, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while live_calls(net, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_calls(net, name) == []


def assert_ended_report(report: dict[str, Any] | None, peer: str) -> dict[str, Any]:
    assert report is not None
    for key in ("state", "duration_s", "path", "codec", "packets_sent", "packets_received"):
        assert key in report, key
    for key in ("loss", "jitter_ms", "rtt_ms", "mos_estimate", "call_id", "peer", "end_reason"):
        assert key in report, key
    assert report["state"] == "ended" and report["peer"] == peer
    return report


def test_alice_calls_bob_with_speech_and_bob_records_it(
    alice_bob: Net, speech: Path, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    recording = tmp_path / "bob-heard.wav"
    bob = alice_bob.start("bob", "answer", "--auto", "--record", str(recording), "--json")
    procs.append(bob)
    alice = alice_bob.start(
        "alice", "call", "bob", "--play", str(speech), "--seconds", "4", "--json"
    )
    procs.append(alice)
    during = wait_active(alice_bob, "alice")  # `calls --json` lists the call while it runs
    assert during["peer"] == "bob" and during["direction"] == "outgoing"
    assert during["play"] == str(speech)
    code, called, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 0, err
    assert "talking with bob" in err and "MOS" in err  # live progress went to stderr
    assert assert_ended_report(called, "bob")["packets_received"] > 100
    code, heard, err = finished(bob, CALL_TIMEOUT_S)
    assert code == 0, err
    report = assert_ended_report(heard, "alice")
    assert report["direction"] == "incoming" and report["codec"].startswith("opus")
    assert report["path"] in {"direct", "relay", "tcp-relay"}
    assert report["packets_received"] > 100 and report["packets_sent"] > 100
    assert 3.5 <= report["duration_s"] <= 6.0
    assert report["record"] == str(recording)
    assert 3.0 <= wav_seconds(recording) <= 6.5
    wait_no_live_calls(alice_bob, "bob")


def test_json_report_of_the_caller(
    alice_bob: Net, speech: Path, procs: list[subprocess.Popen[str]]
) -> None:
    procs.append(alice_bob.start("bob", "answer", "--auto", "--json", "--timeout", "60"))
    alice = alice_bob.start(
        "alice", "call", "bob", "--play", str(speech), "--seconds", "3", "--json"
    )
    procs.append(alice)
    code, report, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 0, err
    report = assert_ended_report(report, "bob")
    assert list(report)[:3] == ["state", "duration_s", "path"]  # the contract's order
    assert report["end_reason"] == "hangup" and report["packets_received"] > 100
    assert report["mos_estimate"] is not None and 1.0 <= report["mos_estimate"] <= 4.5
    assert finished(procs[0], CALL_TIMEOUT_S)[0] == 0


def test_hangup_by_the_callee_ends_both(alice_bob: Net, procs: list[subprocess.Popen[str]]) -> None:
    bob = alice_bob.start("bob", "answer", "--auto", "--json", "--timeout", "60")
    alice = alice_bob.start("alice", "call", "bob", "--json")  # no --seconds: talks until hung up
    procs.extend((bob, alice))
    call = wait_active(alice_bob, "bob")
    hung = json.loads(alice_bob.cli("bob", "hangup", call["call_id"], "--json").stdout)
    assert hung["call_id"] == call["call_id"]
    for proc, peer in ((alice, "bob"), (bob, "alice")):
        code, report, err = finished(proc, CALL_TIMEOUT_S)
        assert code == 0, err
        assert assert_ended_report(report, peer)["end_reason"] == "hangup"
    wait_no_live_calls(alice_bob, "alice")


def test_ctrl_c_hangs_up_reports_and_exits_130(
    alice_bob: Net, procs: list[subprocess.Popen[str]]
) -> None:
    bob = alice_bob.start("bob", "answer", "--auto", "--json", "--timeout", "60")
    alice = alice_bob.start("alice", "call", "bob", "--json")
    procs.extend((bob, alice))
    wait_active(alice_bob, "alice")
    alice.send_signal(signal.SIGINT)
    code, report, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 130, err
    assert assert_ended_report(report, "bob")["end_reason"] == "hangup"
    assert err.strip().splitlines()[-1].startswith("hopline: interrupted")
    code, report, err = finished(bob, CALL_TIMEOUT_S)
    assert code == 0 and assert_ended_report(report, "alice")["state"] == "ended", err


def test_hangup_without_an_id_ends_the_live_call(
    alice_bob: Net, procs: list[subprocess.Popen[str]]
) -> None:
    bob = alice_bob.start("bob", "answer", "--auto", "--timeout", "60")
    alice = alice_bob.start("alice", "call", "bob")
    procs.extend((bob, alice))
    wait_active(alice_bob, "alice")
    done = alice_bob.cli("alice", "hangup")
    assert "hung up" in done.stdout and "bob" in done.stdout
    code, _, shown = finished(alice, CALL_TIMEOUT_S)
    assert code == 0 and "ended, hangup" in shown and "MOS estimate" in shown, shown
    assert finished(bob, CALL_TIMEOUT_S)[0] == 0
    assert "no calls" not in alice_bob.cli("alice", "calls").stdout  # ended calls stay a minute


def wait_ringing(net: Net, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``hopline calls --json`` until a call rings for ``name``; that call."""
    deadline = time.monotonic() + timeout
    calls: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        calls = live_calls(net, name)
        ringing = [c for c in calls if c["state"] == "ringing" and c["direction"] == "incoming"]
        if ringing:
            return ringing[0]
        time.sleep(0.2)
    raise AssertionError(f"nothing rings for {name}: {calls}")


def test_answer_picks_up_the_call_ringing_now(
    alice_bob: Net, procs: list[subprocess.Popen[str]]
) -> None:
    alice = alice_bob.start("alice", "call", "bob", "--seconds", "2", "--json")
    procs.append(alice)
    ringing = wait_ringing(alice_bob, "bob")
    done = alice_bob.cli("bob", "answer", "--json")
    report = assert_ended_report(json.loads(done.stdout), "alice")
    assert report["call_id"] == ringing["call_id"] and report["end_reason"] == "hangup"
    code, called, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 0 and assert_ended_report(called, "bob")["duration_s"] >= 1.5, err


def test_a_rejected_call_exits_1_after_its_report(
    alice_bob: Net, procs: list[subprocess.Popen[str]]
) -> None:
    alice = alice_bob.start("alice", "call", "bob", "--json")
    procs.append(alice)
    ringing = wait_ringing(alice_bob, "bob")
    alice_bob.cli("bob", "hangup", ringing["call_id"][:8])  # the start of the id is enough
    code, report, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 1, err
    assert assert_ended_report(report, "bob")["end_reason"] == "rejected"
    assert err.strip().splitlines()[-1] == "hopline: the call with bob ended: rejected"


def test_calling_an_offline_user_fails_with_one_line(alice_bob: Net) -> None:
    alice_bob.up("carol")
    alice_bob.cli("carol", "register", "carol")
    alice_bob.cli("carol", "login", "carol")
    alice_bob.wait_online("carol")
    alice_bob.cli("carol", "down")
    deadline = time.monotonic() + 15
    while alice_bob.cli("carol", "status", check=False).returncode == 0:
        assert time.monotonic() < deadline, "carol's daemon did not stop"
        time.sleep(0.2)
    done = alice_bob.cli("alice", "call", "carol", "--seconds", "2", check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hopline: ") and "Traceback" not in done.stderr


def test_answer_with_nothing_ringing_fails(alice_bob: Net) -> None:
    done = alice_bob.cli("bob", "answer", "--json", check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("hopline: ") and done.stderr.count("\n") == 1
    timed_out = alice_bob.cli("bob", "answer", "--auto", "--timeout", "1", check=False)
    assert timed_out.returncode == 1 and "Traceback" not in timed_out.stderr
    assert timed_out.stderr.splitlines()[-1] == "hopline: no call came in 1 s"


async def test_sdk_unknown_call_is_404(alice_bob: Net) -> None:
    async with Client.for_profile(alice_bob.workdir / "alice") as client:
        with pytest.raises(HoplineError) as unknown:
            await client.call("00" * 16)
        assert unknown.value.code == "no-such-call" and unknown.value.status == 404
        with pytest.raises(HoplineError) as nothing:
            await client.answer_call(wait_s=0.5)
        assert nothing.value.code == "no-such-call"
        assert all(call.state == "ended" for call in await client.calls())


def test_calls_api_refuses_requests_without_the_token(alice_bob: Net) -> None:
    profile = alice_bob.workdir / "alice"
    base = json.loads((profile / INFO_FILE).read_text())["api"]
    token = (profile / TOKEN_FILE).read_text().strip()
    for method, path in (
        ("GET", "/v1/calls"),
        ("POST", "/v1/calls"),
        ("POST", "/v1/calls/answer"),
        ("POST", "/v1/calls/hangup"),
        ("GET", f"/v1/calls/{'00' * 16}/wait"),
    ):
        for headers in ({}, {"Authorization": "Bearer nope"}):
            refused = httpx.request(method, f"{base}{path}", headers=headers, json={"user": "bob"})
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    right = httpx.get(f"{base}/v1/calls", headers={"Authorization": f"Bearer {token}"})
    assert right.status_code == 200 and isinstance(right.json()["calls"], list)

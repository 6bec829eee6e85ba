"""The auto-answer example, run as a user would run it, against real daemons.

A login server and three supernodes run as processes; alice and bob each run
``hopline up`` and are logged in. ``examples/auto_answer.py`` answers for
bob in a subprocess while alice calls him with the real ``hopline call``;
what alice recorded must be the bot's speech (wideband PESQ after
alignment), and the bot must stop by itself after ``--max-calls`` with its
report. Its bad-input errors are checked too: one line, the right exit code.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hopline
from hopline.media.audio import load_voice
from hopline.media.score import pesq_wb
from hopline.testing.daemons import DaemonNet, finished
from hopline.testing.speech import SpeechUnavailable, write_speech

BOT = Path(__file__).resolve().parents[2] / "examples" / "auto_answer.py"
SPEECH = Path(hopline.__file__).parent / "demo" / "speech.wav"  # for the tests without a call
BOT_SPEECH_S = 5.5  # shorter than alice's 6 s call, so her recording holds all of it
READY = "answering calls for"
CALL_TIMEOUT_S = 90
MIN_PESQ = 3.0  # a clean loopback call scores about 4.3; the speech must come through


@pytest.fixture(scope="module")
def pair(net: DaemonNet) -> DaemonNet:
    """Daemons for alice and bob, registered and logged in through the CLI."""
    for name in ("alice", "bob"):
        net.up(name)
        net.cli(name, "register", name)
        net.cli(name, "login", name)
        net.wait_online(name)
    return net


def run_bot(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BOT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_ready(bot: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The bot's first stderr line, once it says it is answering calls."""
    assert bot.stderr is not None
    with selectors.DefaultSelector() as selector:
        selector.register(bot.stderr, selectors.EVENT_READ)
        if not selector.select(timeout):
            bot.kill()
            raise AssertionError(f"the bot said nothing in {timeout} s")
    line = bot.stderr.readline()
    assert READY in line, line
    return line


@pytest.fixture(scope="module")
def bot_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spoken sentences (espeak-ng) for the bot to play: a clean PESQ reference."""
    path = tmp_path_factory.mktemp("speech") / "bot.wav"
    try:
        write_speech(path, seconds=BOT_SPEECH_S)
    except SpeechUnavailable as exc:
        pytest.skip(f"no test speech: {exc}")
    return path


@pytest.fixture
def bots() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for bot in started:
        if bot.poll() is None:
            bot.kill()
            bot.communicate()


def test_the_bot_answers_plays_and_reports(
    pair: DaemonNet, bots: list[subprocess.Popen[str]], bot_speech: Path, tmp_path: Path
) -> None:
    bob = pair.workdir / "bob"
    recordings = tmp_path / "bot-recordings"
    bot = run_bot(
        *("--profile", str(bob), "--play", str(bot_speech), "--record-dir", str(recordings)),
        *("--max-calls", "1", "--json"),
    )
    bots.append(bot)
    assert "bob" in wait_ready(bot)
    heard = tmp_path / "alice-heard.wav"
    alice = pair.start("alice", "call", "bob", "--record", str(heard), "--seconds", "6", "--json")
    code, called, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 0, err
    assert called is not None and called["state"] == "ended" and called["peer"] == "bob"
    assert called["end_reason"] == "hangup" and called["duration_s"] >= 5.0
    assert called["packets_received"] > 200 and called["codec"].startswith("opus")

    out, err = bot.communicate(timeout=CALL_TIMEOUT_S)
    assert bot.returncode == 0, err
    report = json.loads(out)
    assert report["answered"] == 1 and len(report["calls"]) == 1
    call = report["calls"][0]
    assert call["peer"] == "alice" and call["direction"] == "incoming"
    assert call["state"] == "ended" and call["play"] == str(bot_speech)
    assert "call from alice:" in err  # the one line per call goes to stderr with --json
    recorded = Path(call["record"])
    assert recorded.parent == recordings and recorded.stat().st_size > 100_000

    score = pesq_wb(load_voice(bot_speech), load_voice(heard))  # aligned first
    assert score > MIN_PESQ, f"PESQ of the bot's speech at alice: {score:.2f}"


def test_ctrl_c_stops_the_bot_cleanly(pair: DaemonNet, bots: list[subprocess.Popen[str]]) -> None:
    bot = run_bot("--play", str(SPEECH), env={"HOPLINE_PROFILE": str(pair.workdir / "bob")})
    bots.append(bot)
    wait_ready(bot)
    bot.send_signal(signal.SIGINT)
    out, err = bot.communicate(timeout=30)
    assert bot.returncode == 0, err
    assert out == "" and "Traceback" not in err


def wait_active(net: DaemonNet, name: str, timeout: float = 30.0) -> dict[str, object]:
    """Poll ``hopline calls --json`` until ``name`` has an active call; that call."""
    deadline = time.monotonic() + timeout
    calls: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        calls = net.json(name, "calls")["calls"]
        active = [call for call in calls if call["state"] == "active"]
        if active:
            return active[0]
        time.sleep(0.2)
    raise AssertionError(f"no active call for {name}: {calls}")


def test_ctrl_c_during_a_call_hangs_up_and_reports(
    pair: DaemonNet, bots: list[subprocess.Popen[str]]
) -> None:
    bot = run_bot("--profile", str(pair.workdir / "bob"), "--play", str(SPEECH), "--json")
    bots.append(bot)
    wait_ready(bot)
    alice = pair.start("alice", "call", "bob", "--json")  # talks until someone hangs up
    active = wait_active(pair, "bob")
    bot.send_signal(signal.SIGINT)
    out, err = bot.communicate(timeout=CALL_TIMEOUT_S)
    assert bot.returncode == 0, err
    report = json.loads(out)
    assert report["answered"] == 1
    assert report["calls"][0]["call_id"] == active["call_id"]
    assert report["calls"][0]["end_reason"] == "hangup"
    code, called, err = finished(alice, CALL_TIMEOUT_S)
    assert code == 0, err
    assert called is not None and called["end_reason"] == "hangup"


def test_a_missing_wav_is_exit_2_with_one_line(pair: DaemonNet, tmp_path: Path) -> None:
    bot = run_bot("--profile", str(pair.workdir / "bob"), "--play", str(tmp_path / "no.wav"))
    out, err = bot.communicate(timeout=30)
    assert bot.returncode == 2 and out == ""
    assert err == f"auto_answer: --play: no such file: {tmp_path / 'no.wav'}\n"


def test_a_file_that_is_not_wav_is_exit_2(pair: DaemonNet, tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    bot = run_bot("--profile", str(pair.workdir / "bob"), "--play", str(text))
    out, err = bot.communicate(timeout=30)
    assert bot.returncode == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("auto_answer: --play: not a readable WAV file")


def test_no_daemon_is_exit_1_with_the_hint(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-daemon-here"
    bot = run_bot("--profile", str(nowhere), "--play", str(SPEECH))
    out, err = bot.communicate(timeout=30)
    assert bot.returncode == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("auto_answer: no hopline daemon is running for")
    assert f"hopline up --profile {nowhere}" in err


def test_no_profile_at_all_is_exit_2(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "HOPLINE_PROFILE"}
    done = subprocess.run(
        [sys.executable, str(BOT), "--play", str(SPEECH)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 2 and "pass --profile DIR or set $HOPLINE_PROFILE" in done.stderr

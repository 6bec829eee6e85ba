"""``hopline call/answer/hangup/calls`` without a call in progress.

Bad arguments are refused before any daemon is contacted (exit 2, one
line); with no daemon the commands say how to start one (exit 1). The
report and its exit codes are checked on call documents directly.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hopline.api import models as m
from hopline.cli import calls
from hopline.cli.output import CliError
from hopline.testing.cli import assert_one_line_error
from hopline.testing.cli import run_without_daemon as run


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("call",), "Missing argument"),
        (("call", "bob", "--play", "missing.wav"), "--play: no such file"),
        (("call", "bob", "--seconds", "0"), "--seconds"),
        (("call", "bob", "--seconds", "86401"), "--seconds"),
        (("call", "bob", "--seconds", "soon"), "--seconds"),
        (("call", "bob", "--record", "no/such/dir/out.wav"), "--record: no such directory"),
        (("call", "x" * 65), "USER"),
        (("answer", "--play", "missing.wav", "--auto"), "--play: no such file"),
        (("answer", "--timeout", "5"), "--timeout"),
        (("answer", "--auto", "--timeout", "-1"), "--timeout"),
        (("hangup", "not-hex"), "not a call id"),
        (("hangup", "a" * 33), "not a call id"),
        (("hangup", "ab", "cd"), "unexpected extra argument"),
        (("calls", "--shoe"), "No such option"),
    ],
)
def test_bad_arguments_exit_2_before_any_daemon(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    assert says in assert_one_line_error(run(tmp_path, *args), 2)


def test_record_into_a_directory_is_refused(tmp_path: Path) -> None:
    stderr = assert_one_line_error(run(tmp_path, "call", "bob", "--record", str(tmp_path)), 2)
    assert "is a directory" in stderr


@pytest.mark.parametrize(
    "args",
    [("call", "bob"), ("answer",), ("answer", "--auto"), ("hangup",), ("calls", "--json")],
)
def test_without_a_daemon_they_say_how_to_start_one(tmp_path: Path, args: tuple[str, ...]) -> None:
    stderr = assert_one_line_error(run(tmp_path, *args), 1)
    assert "hopline up" in stderr and "waiting" not in stderr


def test_paths_are_made_absolute_before_they_leave(tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    wav.write_bytes(b"RIFF")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        media = calls.media_arguments(Path("in.wav"), Path("out.wav"), 2.5)
    finally:
        os.chdir(cwd)
    assert media == {"play": str(wav), "record": str(tmp_path / "out.wav"), "seconds": 2.5}


def ended(reason: str) -> m.Call:
    return m.Call(
        call_id="00ff",
        peer="bob",
        direction="outgoing",
        state="ended",
        end_reason=reason,
        duration_s=4.02,
        path="direct",
        codec="opus",
        packets_sent=201,
        packets_received=199,
        loss=0.01,
        jitter_ms=2.5,
        rtt_ms=0.8,
        mos_estimate=4.3,
        bitrate=24000,
    )


def test_the_report_leads_with_the_contract_keys() -> None:
    report = calls.report(ended("hangup"))
    assert list(report)[: len(calls.REPORT_FIRST)] == list(calls.REPORT_FIRST)
    assert report["state"] == "ended" and report["packets_received"] == 199
    assert report["bitrate"] == 24000 and report["direction"] == "outgoing"


@pytest.mark.parametrize("reason", ["failed", "rejected", "busy", "timeout"])
def test_a_call_that_did_not_go_through_exits_1_after_its_report(
    reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CliError) as failed:
        calls.finish(calls.Followed(ended(reason)), as_json=True, waiting_for="")
    assert failed.value.code == 1 and reason in str(failed.value)
    assert capsys.readouterr().out.count("\n") == 1  # the JSON report was still printed


def test_ctrl_c_exits_130_after_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CliError) as stopped:
        calls.finish(calls.Followed(ended("hangup"), signal.SIGINT), True, "")
    assert stopped.value.code == 130
    assert '"end_reason": "hangup"' in capsys.readouterr().out
    with pytest.raises(CliError) as early:
        calls.finish(calls.Followed(None, signal.SIGTERM), True, "waiting for a call")
    assert early.value.code == 143 and capsys.readouterr().out == ""


def test_a_normal_ending_passes() -> None:
    calls.finish(calls.Followed(ended("hangup")), as_json=False, waiting_for="")


def test_live_line_shows_the_statistics() -> None:
    line = calls.stats_text(ended("hangup").model_copy(update={"state": "active"}))
    for part in ("00:04", "24.0 kbit/s", "loss 1.0 %", "jitter 2.5 ms", "RTT 0.8 ms", "MOS 4.30"):
        assert part in line, line
    assert "bob" in calls.state_text(ended("busy")) and "busy" in calls.state_text(ended("busy"))


def test_hangup_takes_the_start_of_a_call_id() -> None:
    old = ended("hangup").model_copy(update={"call_id": "ab12" + "0" * 28})
    live = old.model_copy(update={"call_id": "ab34" + "0" * 28, "state": "active"})
    other = old.model_copy(update={"call_id": "cd56" + "0" * 28})
    assert calls.resolve_call_id("ab", [old, live, other]) == live.call_id  # live calls first
    assert calls.resolve_call_id("ab1", [old, live, other]) == old.call_id
    assert calls.resolve_call_id(other.call_id, []) == other.call_id  # a full id is not looked up
    with pytest.raises(CliError) as missing:
        calls.resolve_call_id("ef", [old, live, other])
    assert missing.value.code == 1 and "no call id starts with ef" in str(missing.value)
    with pytest.raises(CliError) as ambiguous:
        calls.resolve_call_id("", [live, live.model_copy(update={"call_id": "ab9" + "0" * 29})])
    assert ambiguous.value.code == 2

"""``hopline call U1 U2 ...`` and the conference side of ``answer/hangup/calls``.

Bad arguments are refused before any daemon is contacted (exit 2, one
line); with no daemon the command says how to start one (exit 1). The
report, its exit codes, the ``calls`` table and which conference ``hangup``
means are checked on conference documents directly. Conferences between
real daemons run in ``tests/daemon/test_conference_daemon_process.py``.
"""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pytest
from rich.console import Console

from hopline.api import models as m
from hopline.cli import calls
from hopline.cli.output import CliError
from hopline.testing.cli import assert_one_line_error
from hopline.testing.cli import run_without_daemon as run

CONF_ID = "ab" * 16


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("call", "bob", "bob"), "bob named more than once"),
        (("call", "bob", "carol", "Bob"), "bob named more than once"),
        (("call", "bob", "no such user!"), "USER"),
        (("call", "bob", "x" * 65), "USER"),
        (("call", *(f"user{k:03d}" for k in range(64))), "at most 63 users"),
        (("call", "bob", "carol", "--seconds", "0"), "--seconds"),
        (("call", "bob", "carol", "--play", "missing.wav"), "--play: no such file"),
        (("call", "bob", "carol", "--record", "no/such/dir/x.wav"), "--record: no such directory"),
    ],
)
def test_bad_conference_arguments_exit_2_before_any_daemon(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    assert says in assert_one_line_error(run(tmp_path, *args), 2)


def test_without_a_daemon_it_says_how_to_start_one(tmp_path: Path) -> None:
    stderr = assert_one_line_error(run(tmp_path, "call", "bob", "carol"), 1)
    assert "hopline up" in stderr


def conference(state: str = "active", **changes: object) -> m.Conference:
    doc: dict[str, object] = {
        "conf_id": CONF_ID,
        "state": state,
        "role": "host",
        "end_reason": "left" if state == "ended" else None,
        "host": "alice",
        "members": ["alice", "bob", "carol"],
        "invited": ["dave"],
        "why_host": ["open NAT", "most upload"],
        "speakers": ["bob"],
        "joined_at": 1.0,
        "participants": {
            "alice": {"local": True, "level_dbfs": -12.0, "loss": 0.0, "speaking": False},
            "bob": {"level_dbfs": -20.5, "loss": 0.0125, "jb_delay_ms": 40.0, "speaking": True},
            "carol": {"level_dbfs": -60.0, "loss": 0.0, "jb_delay_ms": 20.0, "speaking": False},
        },
    }
    doc.update(changes)
    return m.Conference.model_validate(doc)


def rendered(conferences: list[m.Conference]) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(calls.conference_table(conferences))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_the_table_shows_host_why_members_speakers_and_stats() -> None:
    text = rendered([conference()])
    for part in ("abababab", "alice", "open NAT; most upload", "dave (invited)", "-20.5", "1.2"):
        assert part in text, text
    bob = next(line for line in text.splitlines() if " bob " in line)
    assert "yes" in bob and "40.0" in bob  # speaking, jitter-buffer delay as the host sees it


def test_a_member_row_shows_the_stream_to_its_host() -> None:
    member = conference(
        role="member",
        speakers=None,
        participants={"alice": {"loss": 0.5, "jitter_ms": 3.25}},
        members=["alice", "bob"],
        invited=[],
    )
    alice = next(line for line in rendered([member]).splitlines() if " alice " in line)
    assert "50.0" in alice and "3.2" in alice


@pytest.mark.parametrize("reason", ["declined", "timeout", "host_lost", "failed"])
def test_a_conference_that_went_wrong_exits_1_after_its_report(
    reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ended = conference("ended", end_reason=reason)
    with pytest.raises(CliError) as failed:
        calls.finish_conference(calls.FollowedConference(ended), True, "")
    assert failed.value.code == 1 and reason in str(failed.value)
    assert f'"conf_id": "{CONF_ID}"' in capsys.readouterr().out


def test_ctrl_c_leaves_and_exits_130_after_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CliError) as stopped:
        calls.finish_conference(
            calls.FollowedConference(conference("ended"), signal.SIGINT), True, ""
        )
    assert stopped.value.code == 130 and "left conference" in str(stopped.value)
    assert '"end_reason": "left"' in capsys.readouterr().out
    calls.finish_conference(calls.FollowedConference(conference("ended")), False, "")
    assert "alice" in capsys.readouterr().out  # a normal end: the table, no error


def test_live_line_names_host_members_and_speakers() -> None:
    stats = calls.conference_stats(conference())
    assert "host alice" in stats and "alice, bob, carol" in stats and "speakers bob" in stats
    assert "open NAT" in calls.conference_text(conference())
    assert "inviting dave" in calls.conference_text(conference("inviting"))
    assert "ended (left)" in calls.conference_text(conference("ended"))


def call(call_id: str, state: str) -> m.Call:
    return m.Call(call_id=call_id, peer="bob", direction="outgoing", state=state)


def test_hangup_picks_the_conference_it_means() -> None:
    live, ended = conference(), conference("ended", conf_id="cd" * 16)
    assert calls.pick_conference(None, [], [live, ended]) == CONF_ID  # the only live one
    assert calls.pick_conference(None, [call("ef" * 16, "active")], [live]) is None  # the call
    assert calls.pick_conference(None, [], [ended]) is None
    assert calls.pick_conference("abab", [], [live]) == CONF_ID  # the start of its id
    assert calls.pick_conference("abab", [call("abab" + "0" * 28, "ended")], [live]) is None
    other = conference(conf_id="ab" + "9" * 30)
    with pytest.raises(CliError) as ambiguous:
        calls.pick_conference("ab", [], [live, other])
    assert ambiguous.value.code == 2

"""``hopline contacts/chat/send-file/files`` without a network.

Bad arguments are refused before any daemon is contacted (exit 2, one
line); with no daemon the commands say how to start one (exit 1). The
rendering of receipts and transfer reports, and their exit codes, are
checked on documents directly. Real traffic is in
``tests/daemon/test_messaging_daemon_process.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hopline.api import models as m
from hopline.cli import chat, files
from hopline.cli.output import CliError
from hopline.testing.cli import assert_one_line_error
from hopline.testing.cli import run_without_daemon as run


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("contacts", "poke", "bob"), "No such command 'poke'"),
        (("contacts", "add"), "Missing argument"),
        (("contacts", "add", "bob", "--message", "m" * 501), "--message: at most 500"),
        (("contacts", "block", "u" * 65), "USER: a username of 1 to 64"),
        (("chat", "send", "bob", ""), "TEXT: a message cannot be empty"),
        (("chat", "send", "bob", "   "), "TEXT: a message cannot be empty"),
        (("chat", "send", "bob", "x" * 4097), "TEXT: at most 4096"),
        (("chat", "send", "a/b", "hi"), "PEER: a username"),
        (("chat", "history", "bob", "--limit", "1001"), "--limit"),
        (("chat", "search", ""), "TEXT: 1 to 256"),
        (("chat", "group", "create", "", "bob"), "NAME: a group name"),
        (("chat", "group", "create", "n" * 65, "bob"), "NAME: a group name"),
        (("chat", "group", "invite", "12345", "bob"), "not a group id"),
        (("chat", "group", "rename", "ab" * 16, ""), "NAME: a group name"),
        (("send-file", "bob", "missing.bin"), "PATH: no such file: missing.bin"),
        (("send-file", "bob", "."), "PATH: no such file"),
        (("send-file", "bob"), "Missing argument"),
        (("files", "accept", "not-hex"), "not a transfer id"),
        (("files", "accept", "ab" * 17), "not a transfer id"),
        (("files", "accept", "abcd", "--to", "nowhere"), "--to: no such directory: nowhere"),
        (("files", "cancel"), "Missing argument"),
    ],
)
def test_bad_arguments_exit_2_before_any_daemon(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    assert says in assert_one_line_error(run(tmp_path, *args), 2)


@pytest.mark.parametrize(
    "args",
    [
        ("contacts", "list"),
        ("chat", "send", "bob", "hello"),
        ("chat", "group", "create", "club", "bob", "carol"),
        ("files", "list", "--json"),
    ],
)
def test_without_a_daemon_the_commands_say_how_to_start_one(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    assert "hopline up --profile" in assert_one_line_error(run(tmp_path, *args), 1)


def test_send_file_checks_the_file_then_looks_for_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("notes")
    done = run(tmp_path, "send-file", "bob", "notes.txt")
    assert "no hopline daemon is running" in assert_one_line_error(done, 1)


def message(sender: str, receipts: list[dict[str, Any]] | None) -> m.ChatMessage:
    return m.ChatMessage(
        message_id="00" * 16,
        conversation="11" * 32,
        peer="bob",
        sender=sender,
        sender_device="22" * 16,
        clock=1,
        sent_at_ms=1_700_000_000_000,
        text="hello",
        receipts=receipts,
    )


def test_contact_states_in_words() -> None:
    assert chat.state_words("requested_by_them") == "asks to be a contact"
    assert chat.state_words("requested_by_me") == "request sent"
    assert chat.state_words("blocked") == "blocked"


def test_receipt_marks_for_my_messages_only() -> None:
    delivered = {"user": "bob", "device": "33", "delivered_at_ms": 5, "read_at_ms": None}
    read = {"user": "bob", "device": "33", "delivered_at_ms": 5, "read_at_ms": 9}
    assert chat.receipt_marks(message("alice", []), "alice") == "·"
    assert chat.receipt_marks(message("alice", [delivered]), "alice") == "✓"
    assert chat.receipt_marks(message("alice", [delivered, read]), "alice") == "✓✓"
    assert chat.receipt_marks(message("bob", [read]), "alice") == ""


def transfer(state: str, **fields: Any) -> m.Transfer:
    doc: dict[str, Any] = {
        "transfer_id": "ab" * 16,
        "direction": "outgoing",
        "peer": "bob",
        "name": "photo.jpg",
        "size": 3_000_000,
        "sha256": "cd" * 32,
        "state": state,
        "bytes": 3_000_000 if state == "complete" else 0,
    }
    return m.Transfer(**{**doc, **fields})


def test_a_complete_transfer_reports_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    files.finish(transfer("complete"), as_json=False)
    assert "sent photo.jpg (3.0 MB) to bob, sha256 " + "cd" * 32 in capsys.readouterr().out
    received = transfer("complete", direction="incoming", saved_to="/in/photo.jpg")
    assert files.report_line(received) == "received photo.jpg (3.0 MB) from bob: /in/photo.jpg"


@pytest.mark.parametrize(
    ("state", "fields", "says"),
    [
        ("declined", {"end_reason": "declined"}, "the transfer of photo.jpg was declined by bob"),
        ("failed", {"end_reason": "timeout", "detail": "no answer"}, "failed (timeout: no answer)"),
        ("cancelled", {"end_reason": "cancelled"}, "the transfer of photo.jpg cancelled"),
    ],
)
def test_a_transfer_that_did_not_complete_exits_1(
    state: str, fields: dict[str, Any], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CliError) as failed:
        files.finish(transfer(state, **fields), as_json=True)
    assert failed.value.code == 1 and says in str(failed.value)
    assert m.Transfer.model_validate_json(capsys.readouterr().out).state == state


def test_a_live_transfer_is_not_a_failure_and_ctrl_c_is_130() -> None:
    files.finish(transfer("waiting"), as_json=True)  # --no-wait: offered, still live
    with pytest.raises(CliError) as stopped:
        files.finish(transfer("cancelled", end_reason="cancelled"), as_json=True, stopped_by=2)
    assert stopped.value.code == 130 and "interrupted" in str(stopped.value)
    assert files.state_text(transfer("waiting")) == "waiting for bob to accept"
    assert files.state_text(transfer("transferring", direction="incoming")) == (
        "receiving from bob"
    )

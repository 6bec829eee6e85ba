"""Contacts, presence, chats, groups and files between real daemons, through the CLI.

A login server and three supernodes run as processes; alice, bob and carol
each run a daemon (``hopline up``) and are driven only through the real
``hopline`` command line, the way people would use it: a contact request and
its acceptance, presence shown to a contact, a conversation and its
receipts, a group of three, a file sent with ``send-file`` and taken with
``files accept``. What arrives is polled for (``--json``), never timed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hopline.daemon.files import INFO_FILE, TOKEN_FILE
from hopline.testing.daemons import DaemonNet as Net
from hopline.testing.daemons import finished

USERS = ("alice", "bob", "carol")
ARRIVAL_S = 30.0  # how long a message, receipt or presence may take to show up
FILE_TIMEOUT_S = 120
FILE_BYTES = 3 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def people(net: Net) -> Net:
    """Daemons for alice, bob and carol, registered and logged in through them."""
    for name in USERS:
        net.up(name)
        net.cli(name, "register", name)
        net.cli(name, "login", name)
        net.wait_online(name)
    return net


def eventually(what: str, check: Callable[[], Any], timeout: float = ARRIVAL_S) -> Any:
    """Poll ``check`` until it returns something true; that value (or fail saying ``what``)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def contact(net: Net, name: str, other: str) -> dict[str, Any] | None:
    """``other`` as ``hopline contacts list --json`` shows it to ``name``."""
    for entry in net.json(name, "contacts", "list")["contacts"]:
        if entry["user"] == other:
            return dict(entry)
    return None


def history(net: Net, name: str, peer: str) -> list[dict[str, Any]]:
    doc = net.json(name, "chat", "history", peer)
    assert doc["peer"] == peer
    return list(doc["messages"])


def texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(message["sender"], message["text"]) for message in messages]


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("hopline: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def friends(people: Net) -> dict[str, dict[str, Any]]:
    """alice asks bob with a message, bob accepts: the contact documents seen on the way."""
    asked = people.json("alice", "contacts", "add", "bob", "--message", "hi bob, it's alice")
    pending = eventually("bob sees alice's request", lambda: contact(people, "bob", "alice"))
    accepted = people.json("bob", "contacts", "accept", "alice")
    on_alice = eventually(
        "alice sees bob accept",
        lambda: (c := contact(people, "alice", "bob")) and c["state"] == "accepted" and c,
    )
    return {"asked": asked, "pending": pending, "accepted": accepted, "on_alice": on_alice}


def test_a_contact_request_is_accepted_through_the_cli(
    friends: dict[str, dict[str, Any]], people: Net
) -> None:
    assert friends["asked"]["user"] == "bob"
    assert friends["asked"]["state"] == "requested_by_me"
    assert friends["pending"]["state"] == "requested_by_them"
    assert friends["pending"]["request_text"] == "hi bob, it's alice"
    assert friends["accepted"]["state"] == "accepted"
    assert friends["on_alice"]["state"] == "accepted"
    shown = people.cli("alice", "contacts", "list").stdout
    assert "bob" in shown and "│ contact │" in shown and "request sent" not in shown


def test_alice_sees_bob_away_with_his_mood(friends: dict[str, Any], people: Net) -> None:
    people.cli("bob", "presence", "set", "away", "--mood", "out for lunch")
    seen = eventually(
        "bob's presence reaches alice",
        lambda: (c := contact(people, "alice", "bob")) and c["presence"] == "away" and c,
    )
    assert seen["mood"] == "out for lunch"
    people.cli("bob", "presence", "set", "online")
    eventually(
        "bob back online for alice",
        lambda: (c := contact(people, "alice", "bob")) and c["presence"] == "online",
    )


def test_a_conversation_shows_the_same_on_both_sides_with_receipts(
    friends: dict[str, Any], people: Net
) -> None:
    sent = people.json("alice", "chat", "send", "bob", "hello bob, lunch at noon?")
    assert sent["sender"] == "alice" and sent["peer"] == "bob"
    assert sent["delivery"] and sum(sent["delivery"].values()) >= 1
    eventually("bob gets alice's message", lambda: history(people, "bob", "alice"))
    people.cli("bob", "chat", "send", "alice", "yes, see you there")
    both = [("alice", "hello bob, lunch at noon?"), ("bob", "yes, see you there")]
    on_alice = eventually(
        "alice gets bob's answer",
        lambda: (h := history(people, "alice", "bob")) and texts(h) == both and h,
    )
    on_bob = history(people, "bob", "alice")
    assert texts(on_bob) == both
    assert [m["message_id"] for m in on_alice] == [m["message_id"] for m in on_bob]
    assert on_alice[0]["message_id"] == sent["message_id"]

    def delivered() -> bool:
        mine = history(people, "alice", "bob")[0]
        return any(r["user"] == "bob" and r["delivered_at_ms"] for r in mine["receipts"])

    eventually("bob's delivered receipt reaches alice", delivered)
    table = people.cli("alice", "chat", "history", "bob").stdout
    assert "hello bob, lunch at noon?" in table and "✓" in table
    marked = people.json("bob", "chat", "read", "alice")
    assert marked["read"] == 1  # bob read alice's one message

    def read() -> bool:
        mine = history(people, "alice", "bob")[0]
        return any(r["user"] == "bob" and r["read_at_ms"] for r in mine["receipts"])

    eventually("bob's read receipt reaches alice", read)
    assert "✓✓" in people.cli("alice", "chat", "history", "bob").stdout
    found = people.json("bob", "chat", "search", "lunch noon")["messages"]
    assert [m["message_id"] for m in found] == [sent["message_id"]]


def test_a_group_of_three_made_with_the_cli(people: Net) -> None:
    created = people.cli("alice", "chat", "group", "create", "lunch club", "bob", "carol")
    group_id = created.stdout.strip()
    assert len(group_id) == 32 and int(group_id, 16) >= 0, created.stdout
    for name in ("bob", "carol"):
        eventually(
            f"{name} learns of the group",
            lambda n=name: [
                g
                for g in people.json(n, "chat", "group", "list")["groups"]
                if g["group_id"] == group_id and g["members"] == ["alice", "bob", "carol"]
            ],
        )
    people.cli("alice", "chat", "send", group_id, "welcome to the lunch club")
    people.cli("carol", "chat", "send", group_id, "thanks alice")
    expected = [("alice", "welcome to the lunch club"), ("carol", "thanks alice")]
    seen = {
        name: eventually(
            f"{name} sees both group messages",
            lambda n=name: (h := history(people, n, group_id)) and texts(h) == expected and h,
        )
        for name in USERS
    }
    ids = {name: [m["message_id"] for m in messages] for name, messages in seen.items()}
    assert ids["alice"] == ids["bob"] == ids["carol"]
    renamed = people.json("carol", "chat", "group", "rename", group_id, "supper club")
    assert renamed["name"] == "supper club" and renamed["group_id"] == group_id


def offer_to(net: Net, name: str, sender: str, file_name: str) -> dict[str, Any]:
    """Wait until ``name`` is offered ``file_name`` by ``sender``; the transfer."""

    def offered() -> list[dict[str, Any]]:
        transfers = net.json(name, "files", "list")["transfers"]
        return [
            t
            for t in transfers
            if t["direction"] == "incoming" and t["peer"] == sender and t["name"] == file_name
            and t["state"] == "offered"
        ]  # fmt: skip

    return dict(eventually(f"{name} is offered {file_name}", offered)[0])


def test_send_file_of_3_mb_arrives_intact(
    people: Net, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    source = tmp_path / "holiday.bin"
    source.write_bytes(os.urandom(FILE_BYTES))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sender = people.start("bob", "send-file", "alice", str(source), "--json")
    procs.append(sender)
    offer = offer_to(people, "alice", "bob", "holiday.bin")
    assert offer["size"] == FILE_BYTES and offer["sha256"] == digest
    short = offer["transfer_id"][:8]  # the start of the id, as 'files list' shows it
    accepted = people.json("alice", "files", "accept", short, "--to", str(inbox))
    assert accepted["transfer_id"] == offer["transfer_id"]
    code, report, err = finished(sender, FILE_TIMEOUT_S)
    assert code == 0, err
    assert report is not None and report["state"] == "complete"
    assert report["bytes"] == FILE_BYTES and report["sha256"] == digest

    def received() -> dict[str, Any] | None:
        done = people.json("alice", "files", "list")["transfers"]
        mine = [t for t in done if t["transfer_id"] == offer["transfer_id"]]
        return mine[0] if mine and mine[0]["state"] == "complete" else None

    landed = eventually("alice has the whole file", received)
    saved = Path(landed["saved_to"])
    assert saved.parent == inbox and saved.name == "holiday.bin"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest


def test_a_declined_file_makes_send_file_fail(
    people: Net, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    source = tmp_path / "unwanted.txt"
    source.write_text("not for you\n")
    sender = people.start("carol", "send-file", "alice", str(source))
    procs.append(sender)
    offer = offer_to(people, "alice", "carol", "unwanted.txt")
    declined = people.json("alice", "files", "decline", offer["transfer_id"])
    assert declined["state"] == "declined"
    code, _, shown = finished(sender, FILE_TIMEOUT_S)
    assert code == 1, shown
    assert "hopline: the transfer of unwanted.txt was declined by alice" in shown
    assert "unwanted.txt with alice: declined" in shown and "Traceback" not in shown


def test_send_file_no_wait_returns_the_offer(people: Net, tmp_path: Path) -> None:
    source = tmp_path / "later.txt"
    source.write_text("read me later\n")
    offered = people.json("carol", "send-file", "bob", str(source), "--no-wait")
    assert offered["state"] in {"waiting", "offered"} and offered["peer"] == "bob"
    offer = offer_to(people, "bob", "carol", "later.txt")
    cancelled = people.json("carol", "files", "cancel", offered["transfer_id"])
    assert cancelled["state"] == "cancelled" and offer["transfer_id"] == offered["transfer_id"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("contacts", "hug", "bob"), 2, "No such command 'hug'"),
        (("contacts", "accept", "b" * 65), 2, "USER: a username of 1 to 64"),
        (("contacts", "accept", "carol"), 2, "cannot accept carol: not a contact, and no request"),
        (("chat", "send", "bob", ""), 2, "TEXT: a message cannot be empty"),
        (("chat", "send", "bob", "x" * 4097), 2, "TEXT: at most 4096 characters"),
        (("chat", "history", "bob", "--limit", "0"), 2, "--limit"),
        (("chat", "group", "leave", "not-a-group"), 2, "not a group id"),
        (("chat", "group", "leave", "ab" * 16), 1, f"no such group: {'ab' * 16}"),
        (("chat", "group", "create", "solo"), 2, "Missing argument"),
        (("send-file", "bob", "no/such/file.bin"), 2, "PATH: no such file: no/such/file.bin"),
        (("send-file", "bob", "/no/such/file.bin"), 2, "PATH: no such file"),
        (("files", "accept", "xyz"), 2, "not a transfer id"),
        (("files", "accept", "ab" * 16, "--to", "no/such/dir"), 2, "--to: no such directory"),
        (("files", "decline", "ab" * 16), 1, "no transfer"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(
    people: Net, args: tuple[str, ...], code: int, says: str
) -> None:
    done = people.cli("alice", *args, check=False)
    assert says in assert_one_line_error(done, code)
    assert done.stdout == ""


def test_the_api_refuses_a_relative_path_and_unknown_ops(people: Net) -> None:
    profile = people.workdir / "alice"
    base = json.loads((profile / INFO_FILE).read_text())["api"]
    headers = {"Authorization": f"Bearer {(profile / TOKEN_FILE).read_text().strip()}"}
    relative = httpx.post(
        f"{base}/v1/files", headers=headers, json={"peer": "bob", "path": "holiday.bin"}
    )
    assert relative.status_code == 422 and relative.json()["error"] == "bad-input"
    assert "absolute" in relative.json()["message"]
    op = httpx.post(f"{base}/v1/contacts/bob/hug", headers=headers)
    assert op.status_code == 422 and "op" in op.json()["message"]
    unknown = httpx.get(f"{base}/v1/files/{'cd' * 16}", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not-found"
    counters = httpx.get(f"{base}/v1/messaging", headers=headers).json()
    assert counters["user"] == "alice" and counters["contacts"] >= 1
    for method, path in (("GET", "/v1/contacts"), ("POST", "/v1/files"), ("GET", "/v1/groups")):
        refused = httpx.request(method, f"{base}{path}", headers={"Authorization": "Bearer no"})
        assert refused.status_code == 401

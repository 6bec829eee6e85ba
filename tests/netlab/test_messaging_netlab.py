"""Chat between daemons behind real kernel NATs: groups, a lossy path, no plaintext.

One lab: a login server and two supernodes on the public segment, a UDP
reflector, and five users, each on a client host of another class and each
running the real daemon (``hopline up``): alice behind masquerade, bob
behind a full cone, carol behind a symmetric NAT, dave on a public address
and erin behind a firewall that drops all UDP (so her traffic crosses the
public segment over TCP, relayed by a supernode).

* A group of all five: every member sends, all at once, round after round
  (the ``hopline chat send`` processes of a round run in parallel); then
  ``hopline chat history GID --json`` on every member lists the same message
  ids in the same order, each message sent exactly once.
* With 10 % of bob's datagrams dropped at his interface in both directions
  (:class:`hopline.netlab.impair.Loss`, checked first against the reflector
  and by its counters), alice sends 1,000 numbered messages from one SDK
  program; bob's history holds all of them, once each, in order.
* Everything that crosses the public segment — where both supernodes live —
  is sniffed for the whole module (:mod:`hopline.netlab.capture` with ``--tcp``, UDP and
  TCP); no payload, and no file in the supernodes' data directories (their
  offline SQLite store included, after it held messages for a user who was
  offline), contains the random marker every message text carries, in
  plain, hex or base64 form. Positive controls show the same search finds
  the marker where plaintext really is: in the loopback API traffic of
  alice's host and in her own history database.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hopline.demo.cluster import hopline_command
from hopline.netlab import Lab, LabProcess
from hopline.netlab.capture import Segment, parse_segment, read_capture
from hopline.netlab.impair import Loss, loss_ruleset
from hopline.netlab.nat import NatClass
from hopline.netlab.network import SUPERNODE_PORT, LabNetwork

T = TypeVar("T")
USERS = {  # user: (host, NAT class)
    "alice": ("masq1", NatClass.MASQUERADE),
    "bob": ("cone1", NatClass.FULL_CONE),
    "carol": ("sym1", NatClass.SYMMETRIC),
    "dave": ("pub1", NatClass.PUBLIC),
    "erin": ("block1", NatClass.UDP_BLOCKED),
}
REFLECTOR_PORT = 7000
ROUNDS = 3  # group rounds; in each, every member sends one message at the same time
LOSSY_MESSAGES = 1000
LOSS_PERCENT = 10
OFFLINE_MESSAGES = 5
SEND_NUMBERED = """
import asyncio, json, sys
from collections import Counter
from hopline.sdk.client import Client

async def main(profile, peer, prefix, count):
    ids, delivery = [], Counter()
    async with Client.for_profile(profile, timeout=60) as client:
        for i in range(count):
            sent = await client.send_message(peer, f"{prefix} #{i:04d}")
            ids.append(sent.message_id)
            delivery.update(sent.delivery or {})
    print(json.dumps({"ids": ids, "delivery": delivery}))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


@dataclass
class Chat:
    """The network, the marker every message text carries, and the sniffers."""

    net: LabNetwork
    marker: str
    public_sniff: tuple[LabProcess, Path]  # the public segment: supernodes, login server
    alice_sniff: tuple[LabProcess, Path]  # alice's host (loopback: the API, plaintext)
    daemons: dict[str, LabProcess] = field(default_factory=dict)  # by user
    status: dict[str, dict[str, Any]] = field(default_factory=dict)  # once online, by user
    sent: list[str] = field(default_factory=list)  # every text sent

    def host(self, user: str) -> str:
        return USERS[user][0]

    def cli(self, user: str, *args: str, timeout: float = 60.0) -> Any:
        """``hopline ARGS --json`` as ``user``, parsed.

        The document is written to a file, not a pipe: a command that has run
        a uvloop loop can get a short write(2) on a pipe whose reader lags, and
        its stdout then silently loses all but the first 64 KiB (a history of
        1,000 messages is about 400 KB).
        """
        out = self.net.workdir / f"cli-{user}-{secrets.token_hex(4)}.json"
        argv = hopline_command(*args, "--json", "--profile", str(self.net.workdir / user))
        redirect = ["sh", "-c", 'exec "$@" > "$0"', str(out), *argv]
        self.net.lab.exec(self.host(user), redirect, timeout=timeout)
        return json.loads(out.read_text(encoding="utf-8"))

    def text(self, what: str) -> str:
        """A message text with the marker in it (remembered as sent)."""
        text = f"{self.marker} {what}"
        self.sent.append(text)
        return text


@pytest.fixture(scope="module")
def chat(netlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    """Two supernodes, a reflector, sniffers, and five users with running daemons."""
    workdir = tmp_path_factory.mktemp("chat")
    with Lab(workdir / "lab") as lab:
        net = LabNetwork(lab, workdir)
        net.start(supernodes=2)
        public = sniff(net, "sn0", "public")  # servers share the public namespace
        echo = lab.add_server("echo")
        serve = [sys.executable, "-m", "hopline.netlab.probe", "serve"]
        lab.run("echo", [*serve, f"{echo.address}:{REFLECTOR_PORT}"]).wait_ready()
        for host, nat in USERS.values():
            lab.add_client(host, nat)
        mine = sniff(net, "masq1", "alice")
        each(lambda user: net.user(*USERS[user], user))
        chat = Chat(net, "zq" + secrets.token_hex(6), public, mine)
        chat.daemons = each(lambda user: net.daemon(USERS[user][0], user))
        chat.status = each(lambda user: wait_online(chat, user))
        yield chat


def each(work: Callable[[str], T], users: Iterable[str] = USERS) -> dict[str, T]:
    """``work(user)`` for every user at once (threads: each runs processes); by user."""
    chosen = list(users)
    with ThreadPoolExecutor(len(chosen)) as pool:
        return dict(zip(chosen, pool.map(work, chosen), strict=True))


def sniff(net: LabNetwork, host: str, name: str) -> tuple[LabProcess, Path]:
    out = net.workdir / f"sniff-{name}.jsonl"
    argv = [sys.executable, "-m", "hopline.netlab.capture", "--out", str(out), "--tcp"]
    process = net.lab.run(host, argv, label=f"sniff-{name}")
    process.wait_ready(10)
    return process, out


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def wait_online(chat: Chat, user: str) -> dict[str, Any]:
    """``user``'s ``hopline status`` once the daemon is online and knows its NAT."""

    def online() -> dict[str, Any] | None:
        status: dict[str, Any] = chat.cli(user, "status")
        return status if status["state"] == "online" and status["nat"] != "unknown" else None

    return wait_for(f"{user} to come online", online)


def history(chat: Chat, user: str, peer: str, limit: int = 50) -> list[dict[str, Any]]:
    """``hopline chat history PEER`` as ``user``: the messages, oldest first."""
    messages: list[dict[str, Any]] = chat.cli(
        user, "chat", "history", peer, "--limit", str(limit), timeout=90
    )["messages"]
    return messages


def history_of(
    chat: Chat, user: str, peer: str, count: int, limit: int = 50
) -> list[dict[str, Any]]:
    """``user``'s history with ``peer`` once it holds ``count`` messages."""

    def full() -> list[dict[str, Any]] | None:
        messages = history(chat, user, peer, limit)
        return messages if len(messages) >= count else None

    return wait_for(f"{count} messages in {user}'s history with {peer}", full, timeout=90)


# ---------------------------------------------------------------- the lossy link


def test_the_loss_rule_drops_a_tenth_of_bobs_datagrams_each_way(chat: Chat) -> None:
    lab = chat.net.lab
    reflector = f"{lab.host('echo').address}:{REFLECTOR_PORT}"
    burst = [sys.executable, "-m", "hopline.netlab.impair", "burst", reflector, "--count"]
    with Loss(lab, "cone1", LOSS_PERCENT) as loss:
        lossy = json.loads(lab.exec("cone1", [*burst, "2000"]))
        counters = loss.counters()
    clean = json.loads(lab.exec("cone1", [*burst, "500"]))
    print(f"\nreflector answers: {lossy['answered']}/2000 lossy, {clean['answered']}/500 clean")
    print(f"dropped in {counters.share_in:.3f}, out {counters.share_out:.3f}")
    assert clean["answered"] == 500  # the rule is gone with the table
    assert counters.seen_out >= 2000 and counters.seen_in >= lossy["answered"]
    assert 0.07 <= counters.share_out <= 0.13, counters
    assert 0.07 <= counters.share_in <= 0.13, counters
    assert 0.75 <= lossy["answered"] / 2000 <= 0.87, lossy  # about 0.9 * 0.9 round trip


# ---------------------------------------------------------------- a group of five


def group_round(chat: Chat, gid: str, n: int) -> None:
    """Every member sends one message to the group at the same time."""
    senders = {
        user: chat.net.start_cli(
            chat.host(user), user, "chat", "send", gid, chat.text(f"group {user} {n}"), "--json"
        )
        for user in USERS
    }
    for user, process in senders.items():
        sent = process.read_json(60)
        assert sent["sender"] == user and sent["conversation"] == gid, sent
        assert process.wait(30) == 0


def test_a_group_of_five_across_nat_classes_sees_one_order(chat: Chat) -> None:
    homes = {user: status["supernode"]["transport"] for user, status in chat.status.items()}
    assert homes == {**dict.fromkeys(USERS, "udp"), "erin": "tcp"}, homes
    others = [user for user in USERS if user != "alice"]
    started = time.monotonic()
    group = chat.cli("alice", "chat", "group", "create", "five", *others)
    gid = group["group_id"]
    assert sorted(group["members"]) == sorted(USERS), group

    def joined(user: str) -> bool | None:
        groups = chat.cli(user, "chat", "group", "list")["groups"]
        return True if any(g["group_id"] == gid for g in groups) else None

    each(lambda user: wait_for(f"{user} to learn of the group", lambda: joined(user)), others)
    phases = {"group known": time.monotonic() - started}
    for n in range(ROUNDS):
        group_round(chat, gid, n)
        phases[f"round {n}"] = time.monotonic() - started
    expected = ROUNDS * len(USERS)
    views = each(lambda user: history_of(chat, user, gid, expected))
    phases["histories"] = time.monotonic() - started
    orders = {user: [m["message_id"] for m in messages] for user, messages in views.items()}
    reference = orders["alice"]
    clocks = Counter(m["clock"] for m in views["alice"])
    print(
        f"\ngroup of {len(USERS)}: {len(reference)} messages in one order on every member; "
        f"{sum(n for n in clocks.values() if n > 1)} of them share a clock with another; "
        f"seconds: {', '.join(f'{k} {v:.1f}' for k, v in phases.items())}"
    )
    assert len(reference) == expected and len(set(reference)) == expected, reference
    for user, order in orders.items():
        assert order == reference, (user, order, reference)
    texts = Counter(m["text"] for m in views["alice"])
    for user in USERS:
        for n in range(ROUNDS):
            assert texts[f"{chat.marker} group {user} {n}"] == 1, (user, n, texts)
    keys = [(m["clock"], m["sender_device"], m["message_id"]) for m in views["carol"]]
    assert keys == sorted(keys)  # the documented order: Lamport clock, device, id


# ---------------------------------------------------------------- 1,000 over a lossy path


def send_numbered(chat: Chat, sender: str, peer: str, what: str, count: int) -> dict[str, Any]:
    """``count`` numbered texts from one SDK program on ``sender``'s host, one after
    the other: {"ids": [...], "delivery": {...}, "texts": [...]}."""
    prefix = chat.text(what)
    profile = str(chat.net.workdir / sender)
    out = chat.net.lab.python(
        chat.host(sender), "-c", SEND_NUMBERED, profile, peer, prefix, str(count), timeout=240
    )
    texts = [f"{prefix} #{i:04d}" for i in range(count)]
    chat.sent += texts
    sent: dict[str, Any] = json.loads(out)
    return {**sent, "texts": texts}


def test_a_thousand_messages_over_a_lossy_path_arrive_once_in_order(chat: Chat) -> None:
    with Loss(chat.net.lab, "cone1", LOSS_PERCENT) as loss:
        started = time.monotonic()
        sent = send_numbered(chat, "alice", "bob", "lossy", LOSSY_MESSAGES)
        sending = time.monotonic() - started
        received = history_of(chat, "bob", "alice", LOSSY_MESSAGES, limit=LOSSY_MESSAGES)
        confirmed = wait_for("bob's delivered receipts", lambda: receipts_back(chat), timeout=60)
        counters = loss.counters()
    print(
        f"\n{LOSSY_MESSAGES} messages over {LOSS_PERCENT} % loss: sent in {sending:.1f} s, "
        f"delivery {sent['delivery']}; bob's interface dropped "
        f"{counters.dropped_in}/{counters.seen_in} in, "
        f"{counters.dropped_out}/{counters.seen_out} out"
    )
    assert counters.dropped_in > 0 and counters.dropped_out > 0, counters
    assert len(sent["ids"]) == LOSSY_MESSAGES
    texts = [m["text"] for m in received]
    assert texts == sent["texts"], Counter(texts)
    assert [m["message_id"] for m in received] == sent["ids"]
    assert all(m["sender"] == "alice" for m in received)
    assert confirmed == LOSSY_MESSAGES


def receipts_back(chat: Chat) -> int | None:
    """How many of alice's last 1,000 messages carry bob's delivered receipt (None: not all)."""
    mine = history(chat, "alice", "bob", LOSSY_MESSAGES)
    confirmed = sum(
        any(r["user"] == "bob" and r["delivered_at_ms"] for r in m["receipts"]) for m in mine
    )
    return confirmed if confirmed == LOSSY_MESSAGES else None


# ---------------------------------------------------------------- no plaintext on supernodes


def leak_patterns(marker: str) -> list[bytes]:
    """The marker as plain text, as hex, and as base64 at each of the three alignments."""
    raw = marker.encode()
    patterns = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + raw)
        first, last = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
        patterns.append(encoded[first:last])  # the characters made of marker bits only
    return patterns


def files_with(place: Path, patterns: list[bytes]) -> list[str]:
    """``place`` or the files under it (SQLite write-ahead logs included) holding a pattern."""
    found = []
    files = [place] if place.is_file() else sorted(p for p in place.rglob("*") if p.is_file())
    for path in files:
        data = path.read_bytes()
        if any(pattern in data for pattern in patterns):
            found.append(str(path))
    return found


def server_files(chat: Chat) -> list[Path]:
    """The data directories and logs of the supernodes and the login server."""
    workdir = chat.net.workdir
    logs = [p for p in (workdir / "lab").iterdir() if p.stem in ("sn0", "sn1", "loginserver")]
    return [workdir / "sn0", workdir / "sn1", workdir / "ls", *logs]


def relayed(chat: Chat, records: list[dict[str, Any]]) -> Counter[str]:
    """Payloads a supernode relayed: UDP on its relay ports, TCP on its own port."""
    hosts = {address.rsplit(":", 1)[0] for address in chat.net.supernodes}
    seen: Counter[str] = Counter()
    for record in records:
        for end in (record["src"], record["dst"]):
            host, port = end.rsplit(":", 1)
            if host in hosts and record["proto"] == "tcp":
                seen["tcp"] += 1
            elif host in hosts and int(port) not in (SUPERNODE_PORT, SUPERNODE_PORT + 1):
                seen["udp-relay"] += 1
    return seen


def stored_envelopes(chat: Chat) -> int:
    """Envelopes held in the supernodes' offline stores, read from their SQLite files."""
    total = 0
    for server in ("sn0", "sn1"):
        path = chat.net.workdir / server / "offline.sqlite3"
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            total += db.execute("SELECT count(*) FROM envelopes").fetchone()[0]
    return total


def stop_sniffing(sniffer: tuple[LabProcess, Path]) -> list[dict[str, Any]]:
    process, out = sniffer
    process.stop()
    return list(read_capture(out))


def send_while_offline(chat: Chat) -> list[str]:
    """carol's daemon stops; alice sends to her, so the supernodes store the envelopes."""
    assert chat.cli("carol", "down")["stopping"]
    assert chat.daemons["carol"].wait(30) == 0
    sent = send_numbered(chat, "alice", "carol", "offline", OFFLINE_MESSAGES)
    assert sent["delivery"].get("stored", 0) >= OFFLINE_MESSAGES, sent
    ids: list[str] = sent["ids"]
    return ids


def test_no_supernode_or_relay_ever_holds_a_message_in_plaintext(chat: Chat) -> None:
    ids = send_while_offline(chat)
    held = stored_envelopes(chat)
    patterns = leak_patterns(chat.marker)
    leaked_files = [path for place in server_files(chat) for path in files_with(place, patterns)]
    public = stop_sniffing(chat.public_sniff)
    mine = stop_sniffing(chat.alice_sniff)
    chat.daemons["carol"] = chat.net.daemon(chat.host("carol"), "carol")
    wait_online(chat, "carol")
    fetched = history_of(chat, "carol", "alice", OFFLINE_MESSAGES)
    kinds = Counter(record["proto"] for record in public)
    through = relayed(chat, public)
    leaked = [r for r in public if any(p in r["data"] for p in patterns)]
    print(
        f"\n{len(chat.sent)} texts sent; public segment: {dict(kinds)} payloads, "
        f"{len(leaked)} with the marker; relayed by supernodes {dict(through)}; "
        f"offline stores held {held} envelopes"
    )
    assert held >= OFFLINE_MESSAGES, held
    assert [m["message_id"] for m in fetched][-OFFLINE_MESSAGES:] == ids
    assert kinds["udp"] > 0 and through["tcp"] > 0, (kinds, through)  # erin's is TCP
    assert leaked == [], leaked[:3]
    assert leaked_files == [], leaked_files
    # the same searches find the marker where the plaintext really is
    assert any(p in r["data"] for r in mine if r["proto"] == "tcp" for p in patterns)
    assert files_with(chat.net.workdir / "alice", patterns), "alice's own history"


# ---------------------------------------------------------------- the helpers themselves


def test_the_loss_ruleset_drops_per_mille_on_every_interface_both_ways() -> None:
    script = loss_ruleset("hnl000000loss", ["eth0", "eth1"], 10, ("udp", "tcp"))
    assert script.count("numgen random mod 1000 < 100") == 4
    for device in ("eth0", "eth1"):
        for hook in ("ingress", "egress"):
            assert f'type filter hook {hook} device "{device}"' in script
    assert "meta l4proto { udp, tcp }" in script
    assert "meta l4proto" not in loss_ruleset("t", ["eth0"], 2.5, None)
    assert "< 25 " in loss_ruleset("t", ["eth0"], 2.5, None)
    for bad in ((["eth0"], 101.0, ("udp",)), ([], 10.0, ("udp",)), (["eth0"], 10.0, ("sctp",))):
        with pytest.raises(ValueError):
            loss_ruleset("t", *bad)


def test_the_sniffer_reads_udp_and_tcp_payloads_and_skips_the_rest() -> None:
    ether = bytes(12) + struct.pack("!H", 0x0800)

    def ipv4(protocol: int, transport: bytes) -> bytes:
        header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(transport), 0, 0, 64, protocol, 0)
        return ether + header + bytes([203, 0, 113, 2, 203, 0, 113, 3]) + transport

    udp = struct.pack("!HHHH", 40000, 33033, 8 + 5, 0) + b"hello"
    tcp = struct.pack("!HHIIBBHHH", 40000, 33033, 1, 0, 0x50, 0x18, 512, 0, 0) + b"world"
    assert parse_segment(ipv4(17, udp)) == Segment(
        "udp", "203.0.113.2:40000", "203.0.113.3:33033", b"hello"
    )
    assert parse_segment(ipv4(6, tcp)) == Segment(
        "tcp", "203.0.113.2:40000", "203.0.113.3:33033", b"world"
    )
    assert parse_segment(ipv4(1, bytes(8))) is None  # ICMP
    assert parse_segment(ipv4(6, tcp[:10])) is None  # truncated
    assert parse_segment(bytes(6)) is None

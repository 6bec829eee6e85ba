"""``hopline up`` and the commands it serves, with real processes on loopback.

A login server and three supernodes run as processes; each user runs a
daemon process; every command is the real ``hopline`` CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hopline.daemon.files import INFO_FILE, TOKEN_FILE
from hopline.sdk import Client, HoplineError
from hopline.testing.daemons import DaemonNet as Net
from hopline.testing.network import PASSWORD


@pytest.fixture(scope="module")
def alice_bob(net: Net) -> Net:
    """Daemons for alice and bob, registered and logged in through them."""
    for name, full, city in (("alice", "Alice Liddell", "Oxford"), ("bob", "Bob Hope", "Lima")):
        net.up(name)
        net.cli(name, "register", name, "--full-name", full, "--city", city, "--country", "GB")
        net.cli(name, "login", name)
        net.wait_online(name)
    return net


def lookup(net: Net, who: str, user: str) -> dict[str, object]:
    found = net.json(who, "search", user, "--by", "handle")["results"]
    assert len(found) == 1, found
    return found[0]  # type: ignore[no-any-return]


def test_status_shows_user_home_and_public_address(alice_bob: Net) -> None:
    status = alice_bob.json("alice", "status")
    assert status["user"] == "alice" and status["state"] == "online"
    homes = {node.ready["listen"] for node in alice_bob.nodes}
    assert status["supernode"]["address"] in homes
    assert status["supernode"]["transport"] == "udp"
    assert status["public_address"].startswith("127.0.0.1:")
    assert status["host_cache"] >= 1
    human = alice_bob.cli("alice", "status").stdout
    assert "alice" in human and status["supernode"]["name"] in human


def test_status_shows_the_nat_type_once_discovered(alice_bob: Net) -> None:
    deadline = time.monotonic() + 30
    status = alice_bob.json("alice", "status")
    while status["nat"] == "unknown" and time.monotonic() < deadline:
        time.sleep(0.3)
        status = alice_bob.json("alice", "status")
    assert status["nat"] == "open"  # loopback: the mapped address is the local one
    assert "open" in alice_bob.cli("alice", "status").stdout


def test_netcheck_asks_the_daemon_when_one_runs(alice_bob: Net) -> None:
    """``hopline netcheck`` with a daemon: the daemon checks from its own socket."""
    doc = alice_bob.json("alice", "netcheck")
    assert doc["udp"] is True and doc["nat_type"] == "open"  # loopback: no NAT
    assert doc["servers"] and all(":" in server for server in doc["servers"])
    assert "checked_at" not in doc  # the document is the same as without a daemon
    status = alice_bob.json("alice", "status")
    assert status["nat"] == doc["nat_type"]


def test_search_by_handle_name_and_city(alice_bob: Net) -> None:
    assert lookup(alice_bob, "bob", "alice")["state"] == "online"
    by_name = alice_bob.json("bob", "search", "lidd", "--by", "name")["results"]
    assert [(h["username"], h["city"]) for h in by_name] == [("alice", "Oxford")]
    by_city = alice_bob.json("alice", "search", "lima", "--by", "city")["results"]
    assert [h["username"] for h in by_city] == ["bob"]
    nobody = alice_bob.json("alice", "search", "nobody-here", "--by", "handle")
    assert nobody["results"] == []
    both = alice_bob.json("alice", "search", "bob")["results"]  # --by any: handle first
    assert both[0]["username"] == "bob" and both[0]["state"] == "online"


def test_presence_set_is_seen_by_others(alice_bob: Net) -> None:
    alice_bob.cli("alice", "presence", "set", "away", "--mood", "at lunch")
    seen = lookup(alice_bob, "bob", "alice")
    assert (seen["state"], seen["status"], seen["mood"]) == ("online", "away", "at lunch")
    alice_bob.cli("alice", "presence", "set", "invisible")
    assert lookup(alice_bob, "bob", "alice")["state"] == "offline"
    alice_bob.cli("alice", "presence", "set", "online")
    seen = lookup(alice_bob, "bob", "alice")
    assert (seen["state"], seen["status"], seen["mood"]) == ("online", "online", None)
    assert alice_bob.json("alice", "status")["presence"] == {"status": "online", "mood": None}


def test_peers_text_is_shown_as_text_not_terminal_markup(alice_bob: Net) -> None:
    mood = "[/][bold]loud[/bold]"
    alice_bob.cli("alice", "presence", "set", "away", "--mood", mood)
    try:
        shown = alice_bob.cli("bob", "search", "alice", "--by", "handle")
        assert shown.returncode == 0, shown.stderr
        assert mood in shown.stdout  # literally, not styled (nor a crash)
    finally:
        alice_bob.cli("alice", "presence", "set", "online")


def test_profile_set_changes_the_white_pages(alice_bob: Net) -> None:
    shown = alice_bob.json("bob", "profile", "set", "--city", "Paris", "--language", "fr")
    assert shown["city"] == "Paris" and shown["full_name"] == "Bob Hope"
    deadline = time.monotonic() + 5
    hits: list[str] = []
    while time.monotonic() < deadline and hits != ["bob"]:
        hits = [
            h["username"]
            for h in alice_bob.json("alice", "search", "paris", "--by", "city")["results"]
        ]
    assert hits == ["bob"]
    by_language = alice_bob.json("alice", "search", "fr", "--by", "language")["results"]
    assert [h["username"] for h in by_language] == ["bob"]
    assert alice_bob.json("bob", "profile", "show")["language"] == "fr"


def test_bad_arguments_exit_2_with_one_line(alice_bob: Net) -> None:
    cases = [
        ("presence", "set", "sleeping"),
        ("search", "x", "--by", "shoe-size"),
        ("profile", "set"),
        ("presence", "set", "away", "--mood", "x" * 201),
        ("search", "a", "--by", "name"),  # too short for the white pages: the supernode says so
    ]
    for args in cases:
        done = alice_bob.cli("alice", *args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_second_daemon_on_a_profile_is_refused(alice_bob: Net) -> None:
    done = alice_bob.cli("alice", "up", "--api", "127.0.0.1:0", check=False)
    assert done.returncode == 1
    assert "already running" in done.stderr


def test_api_must_be_loopback(net: Net) -> None:
    args = ("up", "--api", "0.0.0.0:0", "--login-server", "127.0.0.1:9")
    done = net.cli("carol", *args, check=False)
    assert done.returncode == 2 and "loopback" in done.stderr


def test_commands_without_a_daemon_say_how_to_start_one(net: Net) -> None:
    for args in (("status",), ("search", "alice"), ("presence", "set", "away")):
        done = net.cli("nobody-runs-this", *args, check=False)
        assert done.returncode == 1
        assert "hopline up" in done.stderr and "Traceback" not in done.stderr


def _api(net: Net, name: str) -> tuple[str, str]:
    profile = net.workdir / name
    info = json.loads((profile / INFO_FILE).read_text())
    return info["api"], (profile / TOKEN_FILE).read_text().strip()


def test_api_refuses_requests_without_the_token(alice_bob: Net) -> None:
    base, token = _api(alice_bob, "alice")
    assert httpx.get(f"{base}/v1/status").status_code == 401
    wrong = httpx.get(f"{base}/v1/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    right = httpx.get(f"{base}/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert right.status_code == 200 and right.json()["user"] == "alice"
    assert (alice_bob.workdir / "alice" / TOKEN_FILE).stat().st_mode & 0o777 == 0o600


async def test_sdk_events_and_errors(alice_bob: Net) -> None:
    async with Client.for_profile(alice_bob.workdir / "alice") as client:
        async with client.subscribe() as stream:  # subscribed: nothing from now is missed
            await client.set_presence("dnd", "busy")
            event = await asyncio.wait_for(anext(stream), 5)
        assert event["type"] == "presence" and event["data"]["status"] == "dnd"
        with pytest.raises(HoplineError) as refused:
            await client.login("bob", PASSWORD)
        assert refused.value.code == "already-logged-in" and refused.value.status == 409
        hits = [hit.username async for hit in client.search_all("bob", by="handle")]
        assert hits == ["bob"]
        await client.set_presence("online")


def test_sigterm_leaves_cleanly_and_shows_offline(net: Net) -> None:
    proc = net.up("dave")
    net.cli("dave", "register", "dave")
    net.cli("dave", "login", "dave")
    net.wait_online("dave")
    net.up("erin")
    net.cli("erin", "register", "erin")
    net.cli("erin", "login", "erin")
    net.wait_online("erin")
    assert lookup(net, "erin", "dave")["state"] == "online"
    proc.kill(signal.SIGTERM)
    proc.popen.wait(timeout=15)
    assert proc.popen.returncode == 0
    profile: Path = net.workdir / "dave"
    assert not (profile / INFO_FILE).exists() and not (profile / TOKEN_FILE).exists()
    assert lookup(net, "erin", "dave")["state"] == "offline"  # at once, not after the TTL
    again = net.up("dave")  # the lock went with the process: a new daemon starts
    status = net.wait_online("dave")
    assert status["user"] == "dave"
    again.kill(signal.SIGKILL)
    again.popen.wait(timeout=15)
    done = net.cli("dave", "status", check=False)  # a crash leaves no "running" daemon behind
    assert done.returncode == 1 and "hopline up" in done.stderr


def test_ctrl_c_stops_an_online_daemon_cleanly(net: Net) -> None:
    """SIGINT (Ctrl-C in the terminal running ``hopline up``) is a clean stop too."""
    proc = net.up("gina")
    net.cli("gina", "register", "gina")
    net.cli("gina", "login", "gina")
    net.wait_online("gina")
    proc.kill(signal.SIGINT)
    proc.popen.wait(timeout=15)
    assert proc.popen.returncode == 0
    profile: Path = net.workdir / "gina"
    assert not (profile / INFO_FILE).exists() and not (profile / TOKEN_FILE).exists()
    assert "daemon stopped" in proc.log_path.read_text()
    done = net.cli("gina", "status", check=False)
    assert done.returncode == 1 and "hopline up" in done.stderr


async def events_until(profile: Path, wanted: Callable[[list[dict[str, Any]]], bool]) -> list:
    """The daemon's events from now until ``wanted(events)`` holds (40 s at most)."""
    seen: list[dict[str, Any]] = []
    async with Client.for_profile(profile) as client:
        stream = client.events()
        try:
            while not wanted(seen):
                seen.append(await asyncio.wait_for(stream.__anext__(), 40))
        finally:
            await stream.aclose()
    return seen


def test_daemon_rehomes_when_its_supernode_dies(net: Net) -> None:
    net.up("frank")
    net.cli("frank", "register", "frank")
    net.cli("frank", "login", "frank")
    home = net.wait_online("frank")["supernode"]["address"]
    victim = next(node for node in net.nodes if node.ready["listen"] == home)

    def rehomed_and_checked(events: list[dict[str, Any]]) -> bool:
        types = [e["type"] for e in events if e["type"] in ("home", "nat")]
        return "home" in types and "nat" in types[types.index("home") :]

    with ThreadPoolExecutor(1) as pool:  # the event stream, read while the home dies
        watching = pool.submit(
            asyncio.run, events_until(net.workdir / "frank", rehomed_and_checked)
        )
        time.sleep(0.5)
        victim.kill(signal.SIGKILL)
        events = watching.result(timeout=60)
    new_home = next(e["data"] for e in events if e["type"] == "home")
    assert new_home["address"] != home  # the event tells the API's clients at once
    deadline = time.monotonic() + 40
    status = net.json("frank", "status")
    while time.monotonic() < deadline:
        status = net.json("frank", "status")
        if status["state"] == "online" and status["supernode"]["address"] != home:
            break
        time.sleep(0.5)
    assert status["supernode"]["address"] != home and status["rehomes"] >= 1

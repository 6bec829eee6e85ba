"""The terminal UI driven headless (textual's pilot) against real daemon processes.

A login server, three supernodes and the daemons of alice and bob run as
processes (``tests/tui/conftest.py``). Alice uses the TUI, exactly as a
person would with keys; bob uses the ``hopline`` command line in the
background, the way a second terminal would. What the TUI shows is read
back from its widgets (status bar, contact list, search results, chat pane,
call statistics table) and waited for with a polling helper, never assumed
after a fixed sleep. The tests run in file order: the first one logs alice
in through the login screen; later ones log her in through the CLI only when
run alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Static

import hopline.demo
from hopline.demo.cluster import hopline_command
from hopline.testing.chat import wait_until
from hopline.testing.daemons import DaemonNet, finished
from hopline.testing.network import PASSWORD
from hopline.tui.app import HoplineApp
from hopline.tui.screens import CallScreen, IncomingCallScreen, LoginScreen, PresenceScreen

T = TypeVar("T")
SPEECH = Path(hopline.demo.__file__).parent / "speech.wav"
SIZE = (140, 40)
ARRIVAL_S = 30.0
CALL_END_S = 60.0
PROBES, PROBE_S = 10, 1.0
KEY_NAMES = {" ": "space", ",": "comma", ".": "full_stop"}


@pytest.fixture(scope="module")
def alice_online(net: DaemonNet) -> DaemonNet:
    """Alice logged in (by the login-screen test, or here when it did not run)."""
    if net.json("alice", "status")["state"] == "logged-out":
        net.cli("alice", "login", "alice")
    net.wait_online("alice")
    return net


@pytest.fixture(scope="module")
def friends(alice_online: DaemonNet) -> DaemonNet:
    """Alice and bob accepted contacts (by the TUI's contact test, or here)."""
    net = alice_online

    def accepted() -> bool:
        contacts = net.json("alice", "contacts", "list")["contacts"]
        return any(c["user"] == "bob" and c["state"] == "accepted" for c in contacts)

    if not accepted():
        net.cli("alice", "contacts", "add", "bob")
        net.cli("bob", "contacts", "accept", "alice")
    assert wait_until(accepted, ARRIVAL_S), "bob never became alice's contact"
    return net


async def until(
    pilot: Pilot[None], what: str, check: Callable[[], T], timeout: float = ARRIVAL_S
) -> T:
    """Let the app run until ``check()`` gives something true; that value."""
    app: HoplineApp = pilot.app  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout:.0f} s (notices: {list(app.notices)})"
            )
        await pilot.pause(0.1)


async def until_cli(
    pilot: Pilot[None], what: str, check: Callable[[], T], timeout: float = ARRIVAL_S
) -> T:
    """Like :func:`until` for a check that runs a CLI command (off the UI's loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        await pilot.pause(0.25)


async def cli(net: DaemonNet, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A CLI command for ``name``, run off the UI's loop so the UI keeps going."""
    return await asyncio.to_thread(net.cli, name, *args)


async def type_text(pilot: Pilot[None], text: str) -> None:
    """Type ``text`` key by key into the focused widget."""
    await pilot.press(*[KEY_NAMES.get(char, char) for char in text])


async def main_view(pilot: Pilot[None]) -> HoplineApp:
    """Wait until the app shows the main view for an online user, with live events.

    The stream proves itself open by an event: this user's own presence set
    (unchanged) from the app, repeated until its event comes back.
    """
    app: HoplineApp = pilot.app  # type: ignore[assignment]
    await until(
        pilot,
        "the main view, online",
        lambda: (
            app.state.status is not None
            and app.state.status.state == "online"
            and not isinstance(app.screen, LoginScreen)
        ),
    )
    for _ in range(PROBES):
        if app.events_connected.is_set():
            break
        await app.set_presence("online", "")
        with contextlib.suppress(AssertionError):
            await until(pilot, "an event", app.events_connected.is_set, timeout=PROBE_S)
    assert app.events_connected.is_set(), list(app.notices)
    return app


async def open_chat_with(pilot: Pilot[None], app: HoplineApp, peer: str) -> None:
    """Pick ``peer`` in the contact list (with the mouse) and wait for the chat."""
    await until(pilot, f"{peer} in contacts", lambda: app.state.contacts.get(peer))
    await until(pilot, "the contact list drawn", app.contact_lines)
    await pilot.click("#contacts ListItem")
    await until(pilot, f"the chat with {peer} open", lambda: app.state.open_peer == peer)


@contextlib.contextmanager
def telling(proc: subprocess.Popen[str]) -> Iterator[None]:
    """A failed wait also shows what the background command ``proc`` printed."""
    try:
        yield
    except AssertionError as exc:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        said = f"{err.strip()[-2000:]} {out.strip()}"
        raise AssertionError(f"{exc}\n{' '.join(map(str, proc.args))} said: {said}") from None


def call_view(app: HoplineApp) -> CallScreen | None:
    """The call view when it is the screen shown."""
    return app.screen if isinstance(app.screen, CallScreen) else None


def statusbar(app: HoplineApp) -> str:
    return str(app.query_one("#statusbar", Static).content)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


# ---------------------------------------------------------------- no daemon


def test_without_a_daemon_the_command_prints_the_hint_and_exits_1(tmp_path: Path) -> None:
    done = subprocess.run(
        hopline_command("tui", "--profile", str(tmp_path / "nobody")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("hopline: no hopline daemon is running for profile ")
    assert "hopline up --profile" in done.stderr and done.stderr.count("\n") == 1
    assert done.stdout == ""


# ---------------------------------------------------------------- 1. log in


async def test_log_in_through_the_login_screen(net: DaemonNet) -> None:
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the login screen", lambda: isinstance(app.screen, LoginScreen))
        assert "nobody logged in" in statusbar(app)
        await type_text(pilot, "alice")
        await pilot.press("enter")
        await type_text(pilot, "not the password")
        await pilot.press("enter")
        await until(pilot, "the refusal shown", lambda: any("log in" in n for n in app.notices))
        assert isinstance(app.screen, LoginScreen)  # still asking, nothing crashed
        shown = str(app.screen.query_one("#login-message", Static).content)
        assert shown.startswith("log in: ")
        app.screen.query_one("#login-password", Input).value = ""
        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        app = await main_view(pilot)
        await until(pilot, "the status bar online", lambda: "alice │ online" in statusbar(app))
        assert "supernode 127.0.0.1:" in statusbar(app) or "supernode sn" in statusbar(app)
    status = net.json("alice", "status")
    assert status["user"] == "alice" and status["state"] == "online"


async def test_register_a_new_account_from_the_login_screen(net: DaemonNet) -> None:
    net.up("carol")
    app = HoplineApp(net.workdir / "carol")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the login screen", lambda: isinstance(app.screen, LoginScreen))
        await type_text(pilot, "carol")
        await pilot.press("enter")
        await type_text(pilot, PASSWORD)
        await pilot.click("#register")
        await main_view(pilot)
        assert "carol │ online" in statusbar(app)
        assert net.json("bob", "search", "carol")["results"][0]["username"] == "carol"
        await cli(net, "carol", "down")  # the daemon goes away under the UI
        await until(
            pilot,
            "the lost stream reported",
            lambda: any(n.startswith("event stream") or "closed" in n for n in app.notices),
        )
        await pilot.press("f2")
        await type_text(pilot, "bob")
        await pilot.press("enter")
        await until(
            pilot, "the failed search reported", lambda: any("search: " in n for n in app.notices)
        )
        assert app.is_running


# ---------------------------------------------------------------- 2. search, contacts


async def test_search_the_white_pages_for_bob_and_make_him_a_contact(
    alice_online: DaemonNet,
) -> None:
    net = alice_online
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        await pilot.press("f2")
        await type_text(pilot, "bob")
        await pilot.press("enter")
        lines = await until(pilot, "bob found", app.result_lines)
        assert lines[0].startswith("bob")
        await pilot.click("#results ListItem")
        await until(pilot, "the chat with bob open", lambda: app.state.open_peer == "bob")
        await pilot.press("f7")  # ask bob to be a contact
        await until(
            pilot,
            "the request listed",
            lambda: any("bob  requested by me" in line for line in app.contact_lines()),
        )
        await cli(net, "bob", "contacts", "accept", "alice")
        await until(
            pilot,
            "bob accepted",
            lambda: (c := app.state.contacts.get("bob")) is not None and c.state == "accepted",
        )
        await cli(net, "bob", "presence", "set", "away", "--mood", "out for lunch")
        await until(
            pilot,
            "bob's presence shown live",
            lambda: "◐ bob  away — out for lunch" in app.contact_lines(),
        )
        await cli(net, "bob", "presence", "set", "online")
        await until(pilot, "bob back online", lambda: "● bob  online" in app.contact_lines())


async def test_an_api_error_is_a_notification_not_a_crash(alice_online: DaemonNet) -> None:
    app = HoplineApp(alice_online.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        await pilot.press("f2")
        app.query_one("#search", Input).value = "x" * 300  # longer than the API takes
        await pilot.press("enter")
        notice = await until(
            pilot, "the refusal", lambda: [n for n in app.notices if n.startswith("search: ")]
        )
        assert len(notice) == 1
        await pilot.press("f8")  # nothing to hang up
        await until(pilot, "the warning", lambda: "no call to hang up" in app.notices)
        assert app.is_running


async def test_set_presence_and_mood_and_bob_sees_them(friends: DaemonNet) -> None:
    net = friends
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        await pilot.press("f9")
        await until(pilot, "the presence form", lambda: isinstance(app.screen, PresenceScreen))
        await pilot.press("enter", "down", "enter")  # open the list, pick "away"
        await pilot.click("#presence-mood")
        await type_text(pilot, "writing docs")
        await pilot.press("enter")
        await until(pilot, "the status bar", lambda: "away “writing docs”" in statusbar(app))

        def bob_sees_it() -> bool:
            contacts = net.json("bob", "contacts", "list")["contacts"]
            seen = [c for c in contacts if c["user"] == "alice"]
            return (
                bool(seen) and seen[0]["presence"] == "away" and seen[0]["mood"] == "writing docs"
            )

        await until_cli(pilot, "bob sees alice away", bob_sees_it)
        await app.set_presence("online", "")
        await until(pilot, "back online", lambda: statusbar(app).endswith("│ online"))


# ---------------------------------------------------------------- 3. chat


async def test_chat_with_bob_both_ways(friends: DaemonNet) -> None:
    net = friends
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        await open_chat_with(pilot, app, "bob")
        assert app.focused is app.query_one("#compose", Input)
        await type_text(pilot, "hello bob from the terminal")
        await pilot.press("enter")
        await until(
            pilot,
            "the message in alice's pane",
            lambda: any("alice: hello bob from the terminal" in line for line in app.chat_lines()),
        )

        def bob_has_it() -> bool:
            doc = net.json("bob", "chat", "history", "alice")
            return any(msg["text"] == "hello bob from the terminal" for msg in doc["messages"])

        await until_cli(pilot, "bob's history shows it", bob_has_it)
        await cli(net, "bob", "chat", "send", "alice", "hi alice, got it")
        await until(
            pilot,
            "bob's reply in the pane",
            lambda: any("bob: hi alice, got it" in line for line in app.chat_lines()),
        )
        lines = app.chat_lines()
        mine = [n for n, line in enumerate(lines) if "hello bob from the terminal" in line]
        reply = [n for n, line in enumerate(lines) if "hi alice, got it" in line]
        assert mine[-1] < reply[-1]  # in conversation order
        await pilot.press("f3")
        await type_text(pilot, "terminal")
        await pilot.press("enter")
        found = await until(pilot, "the message found", app.result_lines)
        assert found == ["[bob] alice: hello bob from the terminal"]


# ---------------------------------------------------------------- 4. place a call


async def test_call_bob_and_watch_the_statistics_change(
    friends: DaemonNet, procs: list[subprocess.Popen[str]]
) -> None:
    net = friends
    bob = net.start("bob", "answer", "--auto", "--play", str(SPEECH), "--seconds", "6", "--json")
    procs.append(bob)
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        with telling(bob):
            await main_view(pilot)
            await open_chat_with(pilot, app, "bob")
            await pilot.press("f5")
            screen = await until(
                pilot,
                "the call view",
                lambda: app.screen if isinstance(app.screen, CallScreen) else None,
            )
            await until(
                pilot,
                "the call active with media arriving",
                lambda: (
                    (c := screen.current()) is not None
                    and c.state == "active"
                    and int(screen.shown()["packets received"]) > 0
                ),
            )
            first, polls = screen.shown(), screen.polls
            second = await until(
                pilot,
                "the statistics refreshed",
                lambda: (
                    screen.polls > polls
                    and screen.shown()["packets received"] != first["packets received"]
                    and screen.shown()
                ),
            )
            assert int(second["packets received"]) > int(first["packets received"])
            assert int(second["packets sent"]) > 0
            assert second["bitrate"].endswith("kbit/s") and second["codec"].startswith("opus")
            assert {"loss", "jitter", "RTT", "MOS"} <= set(second)
            title = str(screen.query_one("#call-title", Label).content)
            assert "Call with bob — active, outgoing" in title
            await pilot.press("f6")
            await until(pilot, "the call held", lambda: screen.shown()["hold"] == "on hold")
            await pilot.press("f6")
            await until(pilot, "the call resumed", lambda: screen.shown()["hold"] == "no")
            await pilot.press("f8")
            await until(
                pilot,
                "the call ended",
                lambda: (c := screen.current()) is not None and c.state == "ended",
            )
        assert "ended" in str(screen.query_one("#call-title", Label).content)
    code, report, err = await asyncio.to_thread(finished, bob, CALL_END_S)
    assert code == 0, err
    assert report is not None and report["state"] == "ended" and report["peer"] == "alice"
    assert report["packets_sent"] > 0 and report["packets_received"] > 0


# ---------------------------------------------------------------- 5. incoming call


async def test_answer_bob_from_the_incoming_call_prompt(
    alice_online: DaemonNet, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    net = alice_online
    heard = tmp_path / "alice-heard.wav"
    app = HoplineApp(net.workdir / "alice", record=heard)
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        bob = net.start("bob", "call", "alice", "--play", str(SPEECH), "--seconds", "3", "--json")
        procs.append(bob)
        with telling(bob):
            prompt = await until(
                pilot,
                "the incoming-call prompt",
                lambda: app.screen if isinstance(app.screen, IncomingCallScreen) else None,
            )
            assert "bob is calling" in str(prompt.query_one("#ring-title", Label).content)
            await pilot.press("a")
            screen = await until(
                pilot,
                "the call view",
                lambda: app.screen if isinstance(app.screen, CallScreen) else None,
            )
            await until(
                pilot,
                "the call answered",
                lambda: (c := screen.current()) is not None and c.answered_at is not None,
            )
            ended = await until(
                pilot,
                "bob hangs up after 3 s",
                lambda: (c := screen.current()) is not None and c.state == "ended" and c,
                timeout=CALL_END_S,
            )
        assert ended.direction == "incoming" and ended.packets_received > 0
    code, report, err = await asyncio.to_thread(finished, bob, CALL_END_S)
    assert code == 0, err
    assert report is not None and report["state"] == "ended" and report["peer"] == "alice"
    assert wav_seconds(heard) > 1.0  # alice's daemon recorded bob's voice


async def test_decline_an_incoming_call(
    alice_online: DaemonNet, procs: list[subprocess.Popen[str]]
) -> None:
    net = alice_online
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        bob = net.start("bob", "call", "alice", "--seconds", "3", "--json")
        procs.append(bob)
        with telling(bob):
            await until(
                pilot,
                "the incoming-call prompt",
                lambda: isinstance(app.screen, IncomingCallScreen),
            )
            await pilot.press("d")
            await until(
                pilot,
                "the call rejected",
                lambda: any(c.end_reason == "rejected" for c in app.state.calls.values()),
            )
        assert not isinstance(app.screen, (IncomingCallScreen, CallScreen))
    code, report, err = await asyncio.to_thread(finished, bob, CALL_END_S)
    assert code == 1 and "rejected" in err
    assert report is not None and report["end_reason"] == "rejected"


# ---------------------------------------------------------------- logged out elsewhere


async def test_a_logout_elsewhere_brings_back_the_login_screen(friends: DaemonNet) -> None:
    net = friends
    app = HoplineApp(net.workdir / "alice")
    async with app.run_test(size=SIZE) as pilot:
        await main_view(pilot)
        await cli(net, "alice", "logout")
        await until(pilot, "the login screen", lambda: isinstance(app.screen, LoginScreen))
        assert app.state.contacts == {} and app.state.open_peer is None
        await type_text(pilot, "alice")
        await pilot.press("enter")
        await type_text(pilot, PASSWORD)
        await pilot.press("enter")
        await main_view(pilot)
        await until(pilot, "bob listed again", lambda: "bob" in app.state.contacts)
        await cli(net, "alice", "logout")
        await until(pilot, "the login screen again", lambda: isinstance(app.screen, LoginScreen))
        await cli(net, "alice", "login", "alice")  # from another terminal: the form goes away
        await main_view(pilot)
        assert not app.notices or all("log in" not in n for n in app.notices)

"""``hopline tui``: a terminal UI over the daemon's local API (textual).

The app is a client of one daemon through :class:`hopline.sdk.Client` and its
event stream, nothing more: it never opens a connection to the network
itself. What it shows lives in a :class:`~hopline.tui.state.TuiState`; the
app's job is to fill that state (SDK replies, and events folded in by a
background reader that reconnects when the stream drops) and to redraw the
widgets whose topics changed.

Layout: contacts with presence and the search box on the left, the open chat
on the right, a status bar (user, daemon state, home supernode, NAT class,
presence) and the key bar at the bottom. Separate screens log in, prompt for
an incoming call, show a call with its statistics (polled every second while
open), show a conference (host, members, the active speakers highlighted;
followed live from ``conference`` events and polled every second while
open), and set the presence. F4 shows the live call, or else the live
conference.

Every API request goes through :meth:`HoplineApp.guarded`: a refused or
failed request becomes a notification (and is kept in
:attr:`HoplineApp.notices`), never an exception that ends the UI.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, ListItem, ListView, Log, Static

from hopline.api import models as m
from hopline.sdk import Client, HoplineError
from hopline.tui.screens import (
    CallScreen,
    ConferenceScreen,
    IncomingCallScreen,
    LoginScreen,
    PresenceScreen,
)
from hopline.tui.state import Topics, TuiState, chat_key
from hopline.tui.view import (
    chat_title,
    found_line,
    hit_label,
    message_line,
    roster_label,
    status_line,
)

T = TypeVar("T")
RECONNECT_S = 1.0  # wait before reopening a dropped event stream (doubling, up to the max)
RECONNECT_MAX_S = 8.0
STATUS_EVERY_S = 5.0  # status and calls are reloaded this often besides the events
HISTORY_LIMIT = 200
NOTICES_KEPT = 50
ClientFactory = Callable[[], Client]
MAIN_VIEW_ACTIONS = frozenset({"search", "call", "show_call", "hangup", "contact", "presence"})

CSS = """
#side { width: 40; border-right: solid $primary; }
#side Label { text-style: bold; padding: 0 1; }
#contacts { height: 1fr; }
#results { height: 1fr; }
#chat { width: 1fr; }
#chat-title { text-style: bold; padding: 0 1; }
#messages { height: 1fr; }
#panes { height: 1fr; }
#statusbar { height: 1; background: $primary-background; padding: 0 1; }
#login-box, #ring-box, #presence-box {
    width: 60; height: auto; border: round $primary; padding: 1 2;
}
LoginScreen, IncomingCallScreen, PresenceScreen { align: center middle; }
#login-buttons, #ring-buttons, #call-buttons { height: auto; }
#call-box { padding: 1 2; }
#call-title { text-style: bold; }
#call-stats { height: auto; max-height: 16; }
#conf-box { padding: 1 2; }
#conf-title { text-style: bold; }
#conf-members { height: auto; max-height: 20; }
#conf-buttons { height: auto; }
"""


class HoplineApp(App[None]):
    """The Hopline terminal UI for the daemon of one profile."""

    TITLE = "Hopline"
    CSS = CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "search('people')", "People"),
        Binding("f3", "search('messages')", "Messages"),
        Binding("f5", "call", "Call"),
        Binding("f4", "show_call", "Call view"),
        Binding("f8", "hangup", "Hang up"),
        Binding("f7", "contact", "Contact"),
        Binding("f9", "presence", "Presence"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(
        self,
        profile: Path | None = None,
        *,
        client_factory: ClientFactory | None = None,
        play: Path | None = None,
        record: Path | None = None,
    ) -> None:
        """A UI for the daemon of ``profile`` (or the client ``client_factory`` makes).

        ``play``/``record``: WAV files used as voice and recording for every
        call placed or answered here (a headless machine has no audio device).
        """
        super().__init__()
        if client_factory is None:
            if profile is None:
                raise ValueError("give a profile or a client factory")

            def client_factory() -> Client:
                return Client.for_profile(profile)

        self._client_factory = client_factory
        self._client: Client | None = None
        self.play, self.record = play, record
        self.state = TuiState()
        self.search_mode = "people"
        self.notices: deque[str] = deque(maxlen=NOTICES_KEPT)
        self.events_connected = asyncio.Event()
        self._ended_shown: set[str] = set()

    @property
    def client(self) -> Client:
        """The SDK client (made when the app starts)."""
        if self._client is None:
            raise HoplineError("not-running", "the app has not started")
        return self._client

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        """Contacts and search on the left, the chat on the right, bars at the bottom."""
        with Horizontal(id="panes"):
            with Vertical(id="side"):
                yield Label("Contacts")
                yield ListView(id="contacts")
                yield Label("Search")
                yield Input(placeholder="search the white pages (F2)", id="search")
                yield ListView(id="results")
            with Vertical(id="chat"):
                yield Label("no chat open: pick a contact or a search result", id="chat-title")
                yield Log(id="messages", auto_scroll=True)
                yield Input(placeholder="message (Enter sends)", id="compose")
        yield Static(status_line(None), id="statusbar")
        yield Footer()

    async def on_mount(self) -> None:
        """Load everything, then follow the event stream (exit 1 without a daemon)."""
        try:
            self._client = self._client_factory()
        except HoplineError as exc:
            self.exit(return_code=1, message=str(exc))
            return
        self.run_worker(self._follow_events(), group="events", exit_on_error=False)
        await self.resync()
        self.set_interval(STATUS_EVERY_S, self._refresh_status)

    async def on_unmount(self) -> None:
        """Close the HTTP connections."""
        if self._client is not None:
            await self._client.close()

    # ------------------------------------------------------------ the guard

    async def guarded(self, what: str, request: Awaitable[T]) -> T | None:
        """Await an API ``request``; a failure is shown (and kept) and gives None."""
        try:
            return await request
        except HoplineError as exc:
            self.report(f"{what}: {exc}")
            return None
        except ValidationError as exc:  # a request the SDK's models refuse before sending
            first = exc.errors()[0]
            self.report(f"{what}: {first.get('msg', 'bad input')}")
            return None

    def report(self, text: str, severity: str = "error") -> None:
        """Show ``text`` as a notification and keep it in :attr:`notices`.

        The same text twice in a row is kept but shown once (a daemon that
        went away fails every refresh the same way).
        """
        repeated = bool(self.notices) and self.notices[-1] == text
        self.notices.append(text)
        if not repeated:
            self.notify(text, severity=severity)  # type: ignore[arg-type]

    # ------------------------------------------------------------ loading

    async def resync(self) -> None:
        """Reload status, contacts, calls and the open chat from the daemon."""
        status = await self.guarded("status", self.client.status())
        if status is None:
            return
        self.redraw(self.state.set_status(status))
        if not self.state.logged_in:
            self._login_changed()
            return
        contacts = await self.guarded("contacts", self.client.contacts())
        if contacts is not None:
            self.redraw(self.state.set_contacts(contacts))
        groups = await self.guarded("groups", self.client.groups())
        if groups is not None:
            self.redraw(self.state.set_groups(groups))
        calls = await self.guarded("calls", self.client.calls())
        if calls is not None:
            self.redraw(self.state.set_calls(calls))
        await self._load_conferences()
        if self.state.open_peer is not None:
            await self.load_chat(self.state.open_peer)

    async def _refresh_status(self) -> None:
        """The status bar, and the calls: a ring is never missed while the stream reopens."""
        status = await self.guarded("status", self.client.status())
        if status is not None:
            self.redraw(self.state.set_status(status))
        if self.state.logged_in:
            calls = await self.guarded("calls", self.client.calls())
            if calls is not None:
                self.redraw(self.state.set_calls(calls))
            await self._load_conferences()

    async def _load_conferences(self) -> None:
        conferences = await self.guarded("conferences", self.client.conferences())
        if conferences is not None:
            self.redraw(self.state.set_conferences(conferences))

    async def _follow_events(self) -> None:
        """Fold the daemon's events in; reopen the stream when it drops.

        After a stream that delivered events drops, everything is reloaded
        once (events may have been lost); retries slow down to
        :data:`RECONNECT_MAX_S` while the daemon stays away.
        """
        wait = RECONNECT_S
        while True:
            try:
                async for event in self.client.events():
                    self.events_connected.set()
                    wait = RECONNECT_S
                    self.fold(event)
                problem = "the daemon closed the event stream"
            except Exception as exc:  # noqa: BLE001 -- websockets, OS and SDK errors alike
                problem = f"event stream: {type(exc).__name__}: {exc}"
            lost = self.events_connected.is_set()
            self.events_connected.clear()
            if lost:
                self.report(problem, "warning")
                self.run_worker(self.resync(), group="resync")
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECONNECT_MAX_S)

    def fold(self, event: dict[str, Any]) -> None:
        """Apply one daemon event and redraw what it changed."""
        topics = self.state.apply_event(event)
        if "resync" in topics:
            self.run_worker(self.resync(), group="resync")
        self.redraw(topics)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The main view's keys work only while it is shown (not under a form or a call)."""
        if action in MAIN_VIEW_ACTIONS:
            return self.screen is self.main_view
        return True

    # ------------------------------------------------------------ drawing

    @property
    def main_view(self) -> Screen[Any]:
        """The screen with contacts and chats (under any other screen shown)."""
        return self.screen_stack[0]

    def redraw(self, topics: Topics) -> None:
        """Redraw the widgets showing ``topics`` (nothing once the app is closing)."""
        if not self.is_running:
            return
        if "status" in topics:
            self.main_view.query_one("#statusbar", Static).update(status_line(self.state.status))
        if "contacts" in topics:
            self._draw_contacts()
        if "chat" in topics:
            self._draw_chat()
        if "search" in topics:
            self._draw_results()
        if "calls" in topics:
            self._calls_changed("ring" in topics)
        if "ended" in topics:
            self._calls_ended()
        if "conferences" in topics:
            self._conferences_changed()
        if "login" in topics:
            self._login_changed()

    def _draw_contacts(self) -> None:
        view = self.main_view.query_one("#contacts", ListView)
        view.clear()
        for entry in self.state.roster():
            view.append(ListItem(Label(roster_label(entry)), name=entry.key))

    def _draw_chat(self) -> None:
        peer = self.state.open_peer
        if peer is None:
            return
        title = chat_title(peer, self.state.contacts.get(peer), self.state.groups.get(peer))
        self.main_view.query_one("#chat-title", Label).update(title)
        log = self.main_view.query_one("#messages", Log)
        log.clear()
        log.write_lines(message_line(msg, self.state.me) for msg in self.state.messages())

    def _draw_results(self) -> None:
        view = self.main_view.query_one("#results", ListView)
        view.clear()
        if self.search_mode == "people":
            for hit in self.state.search_results:
                view.append(ListItem(Label(hit_label(hit)), name=hit.username))
            return
        for message in self.state.message_results:
            view.append(ListItem(Label(found_line(message)), name=chat_key(message)))

    def chat_lines(self) -> list[str]:
        """The chat pane's lines as shown."""
        return list(self.main_view.query_one("#messages", Log).lines)

    def result_lines(self) -> list[str]:
        """The search results as shown."""
        view = self.main_view.query_one("#results", ListView)
        return [str(item.query_one(Label).content) for item in view.query(ListItem)]

    def contact_lines(self) -> list[str]:
        """The contact list as shown."""
        view = self.main_view.query_one("#contacts", ListView)
        return [str(item.query_one(Label).content) for item in view.query(ListItem)]

    # ------------------------------------------------------------ login

    def _login_changed(self) -> None:
        """Logged out: ask for a login; logged in elsewhere: drop the form.

        A stopped daemon gets neither: its status bar says ``stopped``.
        """
        if self.state.status is not None and self.state.status.state == "logged-out":
            self._ask_login()
        elif self.state.logged_in and isinstance(self.screen, LoginScreen):
            self.pop_screen()

    def _ask_login(self) -> None:
        if not isinstance(self.screen, LoginScreen):
            self.push_screen(LoginScreen())

    async def log_in(self, user: str, password: str, *, register: bool = False) -> None:
        """Log in (registering the account first if asked); back to the main view."""
        if register:
            made = await self.guarded("register", self.client.register(user, password))
            if made is not None:
                self.notify(f"registered {made.registered}")
        done = await self.guarded("log in", self.client.login(user, password))
        if done is None:
            if isinstance(self.screen, LoginScreen):
                self.screen.show_message(self.notices[-1] if self.notices else "refused")
            return
        if not self.is_running:
            return
        if isinstance(self.screen, LoginScreen):
            self.pop_screen()
        self.notify(f"logged in as {done.user}")
        await self.resync()

    # ------------------------------------------------------------ chats and search

    @on(ListView.Selected, "#contacts")
    @on(ListView.Selected, "#results")
    def _picked(self, event: ListView.Selected) -> None:
        peer = event.item.name
        if peer:
            self.run_worker(self.load_chat(peer), group="chat")

    async def load_chat(self, peer: str) -> None:
        """Open the chat with ``peer``: its history, marked read."""
        self.redraw(self.state.open_chat(peer))
        history = await self.guarded("history", self.client.history(peer, HISTORY_LIMIT))
        if history is None:
            return
        self.redraw(self.state.set_history(peer, history))
        if any(msg.sender != self.state.me and not msg.read for msg in history):
            await self.guarded("mark read", self.client.mark_read(peer))
        if self.is_running and self.screen is self.main_view:
            self.main_view.query_one("#compose", Input).focus()

    @on(Input.Submitted, "#compose")
    def _compose(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        peer = self.state.open_peer
        if peer is None:
            self.report("open a chat first (pick a contact or a search result)", "warning")
            return
        event.input.value = ""
        self.run_worker(self.send(peer, text), group="chat")

    async def send(self, peer: str, text: str) -> None:
        """Send ``text`` to ``peer`` and show it."""
        sent = await self.guarded("send", self.client.send_message(peer, text))
        if sent is not None:
            self.redraw(self.state.add_message(sent))

    @on(Input.Submitted, "#search")
    def _search(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if query:
            self.run_worker(self.search(query), group="search")

    async def search(self, query: str) -> None:
        """Search the white pages or the messages (whichever mode is on)."""
        if self.search_mode == "people":
            found = await self.guarded("search", self.client.search(query))
            if found is not None:
                self.redraw(self.state.set_search(found.results))
                if not found.results:
                    self.notify(f"nobody found for {query!r}")
            return
        messages = await self.guarded("find messages", self.client.search_messages(query))
        if messages is not None:
            self.redraw(self.state.set_message_search(messages))

    def action_search(self, mode: str) -> None:
        """Focus the search box for people (F2) or messages (F3)."""
        self.search_mode = mode
        box = self.main_view.query_one("#search", Input)
        box.placeholder = (
            "search the white pages (F2)" if mode == "people" else "find in messages (F3)"
        )
        box.focus()

    def action_contact(self) -> None:
        """Ask the open chat's peer to be a contact, or accept their request."""
        peer = self.state.open_peer
        if peer is None:
            self.report("open a chat first", "warning")
            return
        self.run_worker(self.contact(peer), group="contacts")

    async def contact(self, peer: str) -> None:
        """Add ``peer`` (or accept when they asked first)."""
        known = self.state.contacts.get(peer)
        if known is not None and known.state == "requested_by_them":
            done = await self.guarded("accept", self.client.contact_op(peer, "accept"))
        else:
            done = await self.guarded("add contact", self.client.add_contact(peer))
        if done is not None:
            self.state.contacts[done.user] = done
            self.redraw(frozenset({"contacts"}))

    # ------------------------------------------------------------ presence

    def action_presence(self) -> None:
        """Choose a status and mood."""
        presence = self.state.status.presence if self.state.status else None
        screen = PresenceScreen(
            presence.status if presence else "online", (presence.mood or "") if presence else ""
        )
        self.push_screen(screen, self._presence_chosen)

    def _presence_chosen(self, chosen: tuple[str, str] | None) -> None:
        if chosen is not None:
            self.run_worker(self.set_presence(*chosen), group="presence")

    async def set_presence(self, status: str, mood: str) -> None:
        """Set and publish the presence."""
        done = await self.guarded("presence", self.client.set_presence(status, mood or None))
        if done is not None and self.state.status is not None:
            presence = m.Presence(status=done.status, mood=done.mood)
            self.state.status = self.state.status.model_copy(update={"presence": presence})
            self.redraw(frozenset({"status"}))

    # ------------------------------------------------------------ calls

    def action_call(self) -> None:
        """Call the open chat's peer."""
        peer = self.state.open_peer
        if peer is None:
            self.report("open a chat first: the call goes to its peer", "warning")
            return
        self.run_worker(self.place_call(peer), group="calls")

    async def place_call(self, peer: str) -> None:
        """Place a call and show the call view."""
        call = await self.guarded(
            "call", self.client.place_call(peer, play=self.play, record=self.record)
        )
        if call is not None and self.is_running:
            self.state.set_call(call)
            self.push_screen(CallScreen(call.call_id))

    async def answer(self, call_id: str) -> None:
        """Answer a ringing call and show the call view."""
        call = await self.guarded(
            "answer", self.client.answer_call(call_id, play=self.play, record=self.record)
        )
        if call is not None and self.is_running:
            self.state.set_call(call)
            self.push_screen(CallScreen(call.call_id))

    async def decline(self, call_id: str) -> None:
        """Refuse a ringing call."""
        call = await self.guarded("decline", self.client.hangup(call_id))
        if call is not None:
            self.redraw(self.state.set_call(call))

    async def hang_up(self, call_id: str | None = None) -> None:
        """End ``call_id`` (or the only live call)."""
        call = await self.guarded("hang up", self.client.hangup(call_id))
        if call is not None:
            self.redraw(self.state.set_call(call))

    async def hold(self, call_id: str, on: bool) -> None:
        """Hold or resume a call."""
        call = await self.guarded("hold", self.client.hold(call_id, on))
        if call is not None:
            self.redraw(self.state.set_call(call))

    async def poll_call(self, call_id: str) -> None:
        """Fetch one call's statistics (the call view does this every second)."""
        call = await self.guarded("call statistics", self.client.call(call_id))
        if call is not None:
            self.redraw(self.state.set_call(call))

    def action_hangup(self) -> None:
        """Hang up the live call."""
        if not self.state.live_calls():
            self.report("no call to hang up", "warning")
            return
        self.run_worker(self.hang_up(), group="calls")

    def action_show_call(self) -> None:
        """Show the live call's view, or else the live conference's."""
        live = self.state.live_calls()
        if live:
            self.push_screen(CallScreen(live[-1].call_id))
            return
        conferences = self.state.live_conferences()
        if conferences:
            self.push_screen(ConferenceScreen(conferences[-1].conf_id))
            return
        self.report("no live call", "warning")

    async def poll_conference(self, conf_id: str) -> None:
        """Fetch one conference's document (the conference view does this every second)."""
        conference = await self.guarded("conference", self.client.conference(conf_id))
        if conference is not None:
            self.redraw(self.state.set_conference(conference))

    async def leave_conference(self, conf_id: str) -> None:
        """Leave a conference (a host hands the mix on first)."""
        conference = await self.guarded("leave", self.client.leave_conference(conf_id))
        if conference is not None:
            self.redraw(self.state.set_conference(conference))

    def _conferences_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ConferenceScreen):
                screen.redraw()

    def _calls_changed(self, ringing: bool) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, CallScreen):
                screen.redraw()
        prompt = self.screen if isinstance(self.screen, IncomingCallScreen) else None
        ringing_ids = {call.call_id for call in self.state.ringing()}
        if prompt is not None and prompt.call.call_id not in ringing_ids:
            prompt.dismiss(None)  # the caller gave up, or another device answered
            prompt = None
        if ringing and prompt is None and self.state.ringing():
            self._prompt(self.state.ringing()[0])

    def _calls_ended(self) -> None:
        for call in self.state.calls.values():
            if call.state == "ended" and call.call_id not in self._ended_shown:
                self._ended_shown.add(call.call_id)
                self.notify(f"call with {call.peer} ended ({call.end_reason or 'ended'})")

    def _prompt(self, call: m.Call) -> None:
        def chosen(answer: bool | None) -> None:
            if answer is True:
                self.run_worker(self.answer(call.call_id), group="calls")
            elif answer is False:
                self.run_worker(self.decline(call.call_id), group="calls")

        self.push_screen(IncomingCallScreen(call), chosen)

"""The terminal UI's screens beside the main one: log in, incoming call, call, conference, presence.

Each screen only collects what the user chose and hands it to the app
(:class:`~hopline.tui.app.HoplineApp`), which talks to the daemon: a screen
never calls the API itself, so every request and every error goes through
the app's single guard (an error becomes a notification, never a crash).
The call and conference views are the exception that proves the rule: they
ask the app to poll once a second while open and redraw from the state (the
conference view also redraws on every ``conference`` event, so the active
speakers follow live).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from hopline.api import models as m
from hopline.tui.view import (
    call_stats,
    call_title,
    conference_rows,
    conference_title,
    speakers_line,
)

if TYPE_CHECKING:
    from hopline.tui.app import HoplineApp

STATS_EVERY_S = 1.0
STATUSES = ("online", "away", "dnd", "invisible")


class LoginScreen(Screen[None]):
    """User and password; log in (Enter) or register a new account first."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        """The form."""
        with Vertical(id="login-box"):
            yield Label("Log in to Hopline", id="login-title")
            yield Input(placeholder="username", id="login-user")
            yield Input(placeholder="password", password=True, id="login-password")
            with Horizontal(id="login-buttons"):
                yield Button("Log in", id="login", variant="primary")
                yield Button("Register", id="register")
            yield Static("", id="login-message")
        yield Footer()

    def on_mount(self) -> None:
        """Start in the username field."""
        self.query_one("#login-user", Input).focus()

    def _fields(self) -> tuple[str, str] | None:
        user = self.query_one("#login-user", Input).value.strip()
        password = self.query_one("#login-password", Input).value
        if not user or not password:
            self.notify("type a username and a password", severity="warning")
            return None
        return user, password

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the username moves on; Enter in the password logs in."""
        if event.input.id == "login-user":
            self.query_one("#login-password", Input).focus()
        else:
            self._submit(register=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Log in, or register and then log in."""
        self._submit(register=event.button.id == "register")

    def _submit(self, *, register: bool) -> None:
        fields = self._fields()
        if fields is None:
            return
        self.query_one("#login-message", Static).update("registering…" if register else "…")
        app: HoplineApp = self.app  # type: ignore[assignment]
        app.run_worker(app.log_in(*fields, register=register), group="login")

    def show_message(self, text: str) -> None:
        """A line under the buttons (the last outcome)."""
        self.query_one("#login-message", Static).update(text)


class IncomingCallScreen(ModalScreen[bool | None]):
    """``bob is calling``: answer (a / Enter) or decline (d / Escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "answer", "Answer"),
        Binding("enter", "answer", "Answer", show=False),
        Binding("d", "decline", "Decline"),
        Binding("escape", "decline", "Decline", show=False),
    ]

    def __init__(self, call: m.Call) -> None:
        super().__init__()
        self.call = call

    def compose(self) -> ComposeResult:
        """The prompt."""
        with Vertical(id="ring-box"):
            yield Label(f"📞 {self.call.peer} is calling", id="ring-title")
            with Horizontal(id="ring-buttons"):
                yield Button("Answer (a)", id="answer", variant="success")
                yield Button("Decline (d)", id="decline", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The buttons do what the keys do."""
        self.dismiss(event.button.id == "answer")

    def action_answer(self) -> None:
        """Take the call."""
        self.dismiss(True)

    def action_decline(self) -> None:
        """Refuse the call (the caller sees it rejected)."""
        self.dismiss(False)


class _LiveScreen(Screen[None]):
    """A view of one live call or conference, polled every second until it ends."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0
        self._timer: Timer | None = None

    @property
    def hopline(self) -> HoplineApp:
        """The app (typed)."""
        return self.app  # type: ignore[return-value]

    def start_polling(
        self,
        shown: Callable[[], m.Call | m.Conference | None],
        fetch: Callable[[], Awaitable[None]],
    ) -> None:
        """Every :data:`STATS_EVERY_S`, ``fetch`` a fresh document, until the one
        ``shown`` says it ended."""

        async def poll() -> None:
            document = shown()
            if document is not None and document.state == "ended":
                if self._timer is not None:
                    self._timer.stop()
                return
            self.polls += 1
            await fetch()

        self._timer = self.set_interval(STATS_EVERY_S, poll)


class CallScreen(_LiveScreen):
    """One call's state and live statistics, refreshed every second."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f8", "hangup", "Hang up"),
        Binding("h", "hangup", "Hang up", show=False),
        Binding("f6", "hold", "Hold/resume"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, call_id: str) -> None:
        super().__init__()
        self.call_id = call_id

    def compose(self) -> ComposeResult:
        """Title, statistics table, buttons."""
        with Vertical(id="call-box"):
            yield Label("", id="call-title")
            yield DataTable(id="call-stats", cursor_type="none", zebra_stripes=True)
            with Horizontal(id="call-buttons"):
                yield Button("Hang up (F8)", id="hangup", variant="error")
                yield Button("Hold (F6)", id="hold")
                yield Button("Back (Esc)", id="back")
        yield Footer()

    def on_mount(self) -> None:
        """Set the table up and start polling."""
        table = self.query_one("#call-stats", DataTable)
        table.add_column("statistic", key="name")
        table.add_column("value", key="value", width=24)
        self.redraw()
        self.start_polling(self.current, self.fetch)

    def current(self) -> m.Call | None:
        """The call's last document."""
        return self.hopline.state.calls.get(self.call_id)

    async def fetch(self) -> None:
        """Ask the app for the call's document."""
        await self.hopline.poll_call(self.call_id)

    def redraw(self) -> None:
        """Show the call's current document."""
        call = self.current()
        if call is None:
            return
        self.query_one("#call-title", Label).update(call_title(call))
        table = self.query_one("#call-stats", DataTable)
        for name, value in call_stats(call):
            if name in table.rows:
                table.update_cell(name, "value", value)
            else:
                table.add_row(name, value, key=name)
        self.query_one("#hold", Button).label = "Resume (F6)" if call.held else "Hold (F6)"

    def shown(self) -> dict[str, str]:
        """The statistics as the table shows them (name → value)."""
        table = self.query_one("#call-stats", DataTable)
        return {str(key.value): str(table.get_cell(key, "value")) for key in table.rows}

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The buttons do what the keys do."""
        actions = {"hangup": self.action_hangup, "hold": self.action_hold, "back": self.action_back}
        actions[str(event.button.id)]()

    def action_hangup(self) -> None:
        """End the call."""
        self.hopline.run_worker(self.hopline.hang_up(self.call_id), group="calls")

    def action_hold(self) -> None:
        """Put the call on hold, or resume it."""
        call = self.current()
        on = not (call.held if call is not None else False)
        self.hopline.run_worker(self.hopline.hold(self.call_id, on), group="calls")

    def action_back(self) -> None:
        """Back to contacts and chats (the call goes on; F4 comes back)."""
        self.dismiss(None)


SPEAKING_STYLE = "bold black on green"


class ConferenceScreen(_LiveScreen):
    """One conference: host (you or who), participants, active speakers highlighted."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f8", "leave", "Leave"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, conf_id: str) -> None:
        super().__init__()
        self.conf_id = conf_id

    def compose(self) -> ComposeResult:
        """Title, the speakers line, the participants table, buttons."""
        with Vertical(id="conf-box"):
            yield Label("", id="conf-title")
            yield Static("", id="conf-speakers")
            yield DataTable(id="conf-members", cursor_type="none")
            with Horizontal(id="conf-buttons"):
                yield Button("Leave (F8)", id="conf-leave", variant="error")
                yield Button("Back (Esc)", id="conf-back")
        yield Footer()

    def on_mount(self) -> None:
        """Set the table up and start polling."""
        table = self.query_one("#conf-members", DataTable)
        for name in ("participant", "role", "speaking"):
            table.add_column(name, key=name)
        self.redraw()
        self.start_polling(self.current, self.fetch)

    def current(self) -> m.Conference | None:
        """The conference's last document."""
        return self.hopline.state.conferences.get(self.conf_id)

    async def fetch(self) -> None:
        """Ask the app for the conference's document."""
        await self.hopline.poll_conference(self.conf_id)

    def redraw(self) -> None:
        """Show the conference's current document; speakers' rows highlighted."""
        conference = self.current()
        if conference is None:
            return
        me = self.hopline.state.me
        self.query_one("#conf-title", Label).update(conference_title(conference, me))
        self.query_one("#conf-speakers", Static).update(speakers_line(conference))
        table = self.query_one("#conf-members", DataTable)
        table.clear()
        for row in conference_rows(conference, me):
            style = SPEAKING_STYLE if row.speaking else ""
            table.add_row(*(Text(cell, style=style) for cell in row.cells), key=row.user)

    def shown(self) -> dict[str, tuple[str, str]]:
        """The participants as the table shows them: user → (role, speaking)."""
        table = self.query_one("#conf-members", DataTable)
        shown: dict[str, tuple[str, str]] = {}
        for key in table.rows:
            cells = [str(cell) for cell in table.get_row(key)]
            shown[str(key.value)] = (cells[1], cells[2])
        return shown

    def highlighted(self) -> set[str]:
        """The participants whose row is drawn in the speaking style."""
        table = self.query_one("#conf-members", DataTable)
        return {
            str(key.value)
            for key in table.rows
            if any(
                isinstance(cell, Text) and str(cell.style) == SPEAKING_STYLE
                for cell in table.get_row(key)
            )
        }

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The buttons do what the keys do."""
        if event.button.id == "conf-leave":
            self.action_leave()
        else:
            self.action_back()

    def action_leave(self) -> None:
        """Leave the conference (a host hands the mix on first)."""
        self.hopline.run_worker(self.hopline.leave_conference(self.conf_id), group="conferences")

    def action_back(self) -> None:
        """Back to contacts and chats (the conference goes on; F4 comes back)."""
        self.dismiss(None)


class PresenceScreen(ModalScreen[tuple[str, str] | None]):
    """Choose a status and a mood text."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, status: str, mood: str) -> None:
        super().__init__()
        self.status, self.mood = status, mood

    def compose(self) -> ComposeResult:
        """The form."""
        with Vertical(id="presence-box"):
            yield Label("Presence")
            current = self.status if self.status in STATUSES else "online"
            options = [(name, name) for name in STATUSES]
            yield Select(options, value=current, allow_blank=False, id="presence-status")
            yield Input(value=self.mood, placeholder="mood (optional)", id="presence-mood")
            with Horizontal():
                yield Button("Set", id="presence-set", variant="primary")
                yield Button("Cancel", id="presence-cancel")

    def on_mount(self) -> None:
        """Start on the status list."""
        self.query_one("#presence-status", Select).focus()

    def _chosen(self) -> tuple[str, str]:
        status = self.query_one("#presence-status", Select).value
        return str(status), self.query_one("#presence-mood", Input).value.strip()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the mood sets it."""
        self.dismiss(self._chosen())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Set, or leave it as it was."""
        self.dismiss(self._chosen() if event.button.id == "presence-set" else None)

    def action_cancel(self) -> None:
        """Leave the presence as it was."""
        self.dismiss(None)

"""Voice calls and conferences through the daemon: ``call``, ``answer``, ``hangup``, ``calls``.

The daemon carries the call (signalling, media, recording); these commands
only start one and follow it. Following is a long-poll loop on the API
(``GET /v1/calls/{id}/wait`` with a one-second timeout), so each turn either
brings the final document or the current statistics for the live line on
stderr. The outcome is one report, on stdout (a table, or with ``--json``
exactly one JSON document), printed however the call ended:

* normally (either side hung up, ``--seconds`` ran out): exit 0;
* failed, rejected, busy or timed out: exit 1 with a one-line reason;
* Ctrl-C: the call is hung up first, then the report, then exit 130
  (SIGTERM alike, exit 143).

Conferences go the same way. ``hopline call U1 U2 ...`` (two users or more)
starts one hosted here and follows it with ``/v1/conferences/{id}/wait``:
the live line names the host, the members and who speaks; Ctrl-C leaves
(exit 130 after the report); ``--json`` prints the conference document.
``answer`` takes a ringing 1:1 call or a ringing conference invite; when
both ring, the 1:1 call is answered (it is asked for first, and a
conference invite declines itself busy while a 1:1 call runs). ``hangup ID``
leaves the conference with that id, and ``hangup`` alone leaves the only
live conference when there is no live call. ``calls`` lists both.

Both signals are caught by loop signal handlers, not as ``KeyboardInterrupt``,
so the command always gets to hang up and report. Arguments are checked before
the daemon is contacted: a missing ``--play`` file is a usage error (exit 2),
and paths are made absolute since the daemon runs in another directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from hopline.api import models as m
from hopline.cli.common import JsonOption, ProfileOption, checked_path_length
from hopline.cli.daemon import call_daemon
from hopline.cli.output import CliError, UsageError, emit_json, human
from hopline.identity.names import InvalidUsername, canonical_username
from hopline.sdk import Client, HoplineError

T = TypeVar("T")

REFRESH_S = 1.0  # one live statistics line a second
ANSWER_POLL_S = 60.0  # answer --auto waits for a call in long polls of this length
HANGUP_SETTLE_S = 5.0  # after hanging up, wait this long for the final statistics
FAILED_ENDINGS = frozenset({"failed", "rejected", "busy", "timeout"})
FAILED_CONFERENCE_ENDINGS = frozenset({"declined", "timeout", "host_lost", "failed"})
ANSWER_TURN_S = 0.5  # answer --auto: a call is waited for this long, then invites are checked
MAX_INVITEES = m.MAX_CONFERENCE_USERS
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
FULL_ID_CHARS = 32  # a call id is 16 bytes
CALL_ID_START = re.compile(r"[0-9a-fA-F]{1,32}")  # a call id, or the start of one
SHORT_ID_CHARS = 8  # as ``hopline calls`` shows it
REPORT_FIRST = (
    "state",
    "duration_s",
    "path",
    "codec",
    "packets_sent",
    "packets_received",
    "loss",
    "jitter_ms",
    "rtt_ms",
    "mos_estimate",
    "call_id",
    "peer",
    "end_reason",
)

PlayOption = Annotated[Path | None, typer.Option("--play", help="a WAV file to send as your voice")]
RecordOption = Annotated[
    Path | None, typer.Option("--record", help="write the peer's voice to this WAV file")
]
SecondsOption = Annotated[
    float | None, typer.Option("--seconds", help="hang up after N seconds of talk")
]


# ---------------------------------------------------------------- arguments


def media_arguments(
    play: Path | None, record: Path | None, seconds: float | None
) -> dict[str, Any]:
    """``play``/``record``/``seconds`` checked and made absolute, or a UsageError."""
    media: dict[str, Any] = {}
    if play is not None:
        media["play"] = _existing_file(play)
    if record is not None:
        media["record"] = _writable_target(record)
    if seconds is not None:
        if not 0 < seconds <= m.MAX_CALL_SECONDS:
            raise UsageError(f"--seconds: must be above 0 and at most {m.MAX_CALL_SECONDS:.0f}")
        media["seconds"] = seconds
    return media


def _existing_file(path: Path) -> str:
    full = path.expanduser().absolute()
    if not full.is_file():
        raise UsageError(f"--play: no such file: {path}")
    return checked_path_length("--play", full)


def _writable_target(path: Path) -> str:
    full = path.expanduser().absolute()
    if full.is_dir():
        raise UsageError(f"--record: {path} is a directory")
    if not full.parent.is_dir():
        raise UsageError(f"--record: no such directory: {full.parent}")
    return checked_path_length("--record", full)


def checked_call_id(call_id: str) -> str:
    """``call_id`` (or its start) if it is hex digits, else a UsageError."""
    if not CALL_ID_START.fullmatch(call_id):
        raise UsageError(f"not a call id: {call_id!r} (hex digits, as 'hopline calls' shows)")
    return call_id.lower()


# ---------------------------------------------------------------- following a call


@dataclass
class Followed:
    """How following a call turned out: its last document, and the signal that stopped it."""

    call: m.Call | None
    stopped_by: int = 0  # SIGINT or SIGTERM; 0: the call ended by itself

    @property
    def exit_code(self) -> int:
        """The shell's code for death by that signal (130 for Ctrl-C)."""
        return 128 + self.stopped_by


@dataclass
class Interrupt:
    """Ctrl-C (SIGINT) or SIGTERM as an asyncio event while a call is followed."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    signum: int = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Catch the stop signals into :attr:`event` inside the block."""
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._caught, signum)
        try:
            yield
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    def _caught(self, signum: int) -> None:
        self.signum = self.signum or signum
        self.event.set()

    async def unless(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None (and ``work`` cancelled) if Ctrl-C comes first."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.event.wait())
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None


class LiveLine:
    """Progress on stderr: a line per state change, a refreshed statistics line."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._open = False  # a statistics line is shown without its newline
        self._state: str | None = None

    def show(self, call: m.Call) -> None:
        """Show ``call``: its new state, or else its current statistics."""
        live = call.state in {"active", "held"}
        self.show_texts(call.state, state_text(call), stats_text(call), live=live)

    def show_texts(self, key: str, headline: str, stats: str, *, live: bool) -> None:
        """``headline`` when ``key`` (the state) changed, else ``stats`` while ``live``."""
        if key != self._state:
            self._state = key
            self._write(headline, final=True)
        elif live:
            self._write(stats, final=not self._tty)

    def close(self) -> None:
        """End a pending statistics line."""
        if self._open:
            sys.stderr.write("\n")
            self._open = False
        sys.stderr.flush()

    def _write(self, text: str, *, final: bool) -> None:
        if self._open:
            sys.stderr.write("\r\x1b[2K")
        sys.stderr.write(text + ("\n" if final else ""))
        sys.stderr.flush()
        self._open = not final


async def follow(
    client: Client, start: Callable[[Client], Awaitable[m.Call]], *, waits: bool
) -> Followed:
    """Start a call with ``start`` and follow it until it ends (or Ctrl-C hangs it up).

    ``waits``: ``start`` may wait long (answer --auto), so Ctrl-C may cut it short.
    """
    interrupt, live = Interrupt(), LiveLine()
    with interrupt.installed():
        call = await interrupt.unless(start(client)) if waits else await start(client)
        if call is None:
            return Followed(None, interrupt.signum)
        try:
            return await _until_ended(client, call, interrupt, live)
        finally:
            live.close()


async def _until_ended(
    client: Client, call: m.Call, interrupt: Interrupt, live: LiveLine
) -> Followed:
    while call.state != "ended":
        live.show(call)
        polled = await interrupt.unless(client.wait_call(call.call_id, REFRESH_S))
        if polled is None:
            live.close()
            return Followed(await _hang_up(client, call), interrupt.signum)
        call = polled
    live.show(call)
    return Followed(call)


async def _hang_up(client: Client, call: m.Call) -> m.Call:
    try:
        call = await client.hangup(call.call_id)
    except HoplineError as exc:
        if exc.code != "no-such-call":
            raise
        return call  # the daemon forgot it already: the last document is all there is
    if call.state != "ended":
        call = await client.wait_call(call.call_id, HANGUP_SETTLE_S)
    return call


async def answer_next(
    client: Client, media: dict[str, Any], timeout_s: float | None
) -> m.Call | m.Conference:
    """Answer the next call or conference invite to ring, waiting up to ``timeout_s``.

    Each turn long-polls for a 1:1 call for :data:`ANSWER_TURN_S`, then takes
    a ringing conference invite if there is one (None: wait for ever).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        left = ANSWER_POLL_S if deadline is None else deadline - time.monotonic()
        answered = await answer_ringing(client, media, max(0.0, min(left, ANSWER_TURN_S)))
        if answered is not None:
            return answered
        if deadline is not None and time.monotonic() >= deadline:
            raise CliError(f"no call came in {timeout_s:g} s")


async def answer_ringing(
    client: Client, media: dict[str, Any], wait_s: float
) -> m.Call | m.Conference | None:
    """A ringing 1:1 call answered (waiting ``wait_s``), else a ringing invite joined, else None."""
    try:
        return await client.answer_call(None, **media, wait_s=wait_s)
    except HoplineError as exc:
        if exc.code != "no-such-call":
            raise
    try:
        return await client.answer_conference(None, **media)
    except HoplineError as exc:
        if exc.code != "not-found":
            raise
    return None


# ---------------------------------------------------------------- reports


def report(call: m.Call) -> dict[str, Any]:
    """The final call report: the contract's keys first, then the rest of the document."""
    doc = call.model_dump()
    return {**{key: doc[key] for key in REPORT_FIRST}, **doc}


def _number(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _bitrate(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f} kbit/s"


def _clock(seconds: float | None) -> str:
    whole = int(seconds or 0)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def state_text(call: m.Call) -> str:
    """One line saying where ``call`` is now."""
    peer = call.peer
    texts = {
        "calling": f"calling {peer} ...",
        "ringing": f"ringing {peer} ..." if call.direction == "outgoing" else f"{peer} is calling",
        "active": f"talking with {peer} over {call.path or '?'} ({call.codec or '?'})",
        "held": f"on hold with {peer}",
        "ended": f"call with {peer} ended ({call.end_reason or 'hangup'}) after "
        f"{_number(call.duration_s, ' s')}",
    }
    return texts[call.state]


def stats_text(call: m.Call) -> str:
    """The live statistics line: time, bitrate, loss, jitter, RTT, MOS."""
    return (
        f"  {_clock(call.duration_s)}  {_bitrate(call.bitrate)}  loss {_loss(call.loss)}"
        f"  jitter {_number(call.jitter_ms, ' ms')}  RTT {_number(call.rtt_ms, ' ms')}"
        f"  MOS {_number(call.mos_estimate, '', 2)}"
    )


def _print_report(call: m.Call, as_json: bool) -> None:
    if as_json:
        emit_json(report(call))
        return
    table = Table(show_header=False, box=None)
    rows = [
        ("call", f"{call.call_id} ({call.direction}) with {call.peer}"),
        ("outcome", f"{call.state}, {call.end_reason or '-'}"),
        ("duration", _number(call.duration_s, " s")),
        ("path", f"{call.path or '-'}, codec {call.codec or '-'}"),
        ("packets", f"{call.packets_sent} sent, {call.packets_received} received"),
        ("loss, jitter", f"{_loss(call.loss)}, {_number(call.jitter_ms, ' ms')}"),
        ("RTT", _number(call.rtt_ms, " ms")),
        ("MOS estimate", _number(call.mos_estimate, "", 2)),
    ]
    if call.record:
        rows.append(("recorded to", call.record))
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", escape(value))
    human(False).print(table)


def finish(followed: Followed, as_json: bool, waiting_for: str) -> None:
    """Print the report, then fail (exit 1, or 130 after Ctrl-C) when the call did not end well."""
    call = followed.call
    if call is None:
        raise CliError(f"interrupted while {waiting_for}", followed.exit_code)
    _print_report(call, as_json)
    if followed.stopped_by:
        message = f"interrupted: the call with {call.peer} was hung up"
        raise CliError(message, followed.exit_code)
    if call.end_reason in FAILED_ENDINGS:
        raise CliError(f"the call with {call.peer} ended: {call.end_reason}")


# ---------------------------------------------------------------- conferences


def checked_invitees(users: list[str]) -> list[str]:
    """The users of ``hopline call U1 U2 ...``, each once and within the roster bound."""
    try:
        names = [canonical_username(user) for user in users]
    except InvalidUsername as exc:
        raise UsageError(f"USER: {exc}") from None
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"USER: {', '.join(twice)} named more than once")
    if len(names) > MAX_INVITEES:
        raise UsageError(f"USER: a conference holds at most {MAX_INVITEES} users besides you")
    return names


@dataclass
class FollowedConference:
    """How following a conference turned out: its last document, and the stopping signal."""

    conference: m.Conference | None
    stopped_by: int = 0

    @property
    def exit_code(self) -> int:
        """The shell's code for death by that signal (130 for Ctrl-C)."""
        return 128 + self.stopped_by


async def follow_any(
    client: Client, start: Callable[[Client], Awaitable[m.Call | m.Conference]], *, waits: bool
) -> Followed | FollowedConference:
    """Start a call or join a conference with ``start``, then follow whichever it was."""
    interrupt, live = Interrupt(), LiveLine()
    with interrupt.installed():
        doc = await interrupt.unless(start(client)) if waits else await start(client)
        if doc is None:
            return Followed(None, interrupt.signum)
        try:
            if isinstance(doc, m.Conference):
                return await _until_left(client, doc, interrupt, live)
            return await _until_ended(client, doc, interrupt, live)
        finally:
            live.close()


async def follow_conference(
    client: Client, start: Callable[[Client], Awaitable[m.Conference]], *, waits: bool
) -> FollowedConference:
    """Start (or join) a conference with ``start`` and follow it until it ends here."""
    followed = await follow_any(client, start, waits=waits)
    if isinstance(followed, FollowedConference):
        return followed
    return FollowedConference(None, followed.stopped_by)


async def _until_left(
    client: Client, conf: m.Conference, interrupt: Interrupt, live: LiveLine
) -> FollowedConference:
    while conf.state != "ended":
        _show_conference(live, conf)
        polled = await interrupt.unless(client.wait_conference(conf.conf_id, REFRESH_S))
        if polled is None:
            live.close()
            return FollowedConference(await _leave(client, conf), interrupt.signum)
        conf = polled
    _show_conference(live, conf)
    return FollowedConference(conf)


async def _leave(client: Client, conf: m.Conference) -> m.Conference:
    try:
        conf = await client.leave_conference(conf.conf_id)
    except HoplineError as exc:
        if exc.code not in {"not-found", "conference-refused"}:
            raise
        return conf  # over or forgotten already: the last document is all there is
    if conf.state != "ended":
        conf = await client.wait_conference(conf.conf_id, HANGUP_SETTLE_S)
    return conf


def _show_conference(live: LiveLine, conf: m.Conference) -> None:
    key = f"{conf.state}/{conf.host}"
    live.show_texts(key, conference_text(conf), conference_stats(conf), live=conf.state == "active")


def conference_text(conf: m.Conference) -> str:
    """One line saying where the conference is now (state, host and why)."""
    short = conf.conf_id[:SHORT_ID_CHARS]
    if conf.state == "ended":
        return f"conference {short} ended ({conf.end_reason or 'left'}), host was {conf.host}"
    if conf.state == "inviting":
        return f"conference {short}: inviting {', '.join(conf.invited) or '-'} ..."
    why = f" ({'; '.join(conf.why_host)})" if conf.why_host else ""
    return f"conference {short} {conf.state}: host {conf.host or '?'}{why}"


def conference_stats(conf: m.Conference) -> str:
    """The live line: time in, host, members, who is mixed now."""
    since = time.time() - conf.joined_at if conf.joined_at else None
    speakers = ", ".join(conf.speakers) if conf.speakers else "-"
    return (
        f"  {_clock(since)}  host {conf.host or '?'}  members {', '.join(conf.members) or '-'}"
        f"  speakers {speakers}"
    )


def finish_conference(followed: FollowedConference, as_json: bool, waiting_for: str) -> None:
    """Print the conference report, then fail (1, or 130 after Ctrl-C) when it went wrong."""
    conf = followed.conference
    if conf is None:
        raise CliError(f"interrupted while {waiting_for}", followed.exit_code)
    if as_json:
        emit_json(conf.model_dump())
    else:
        human(False).print(conference_table([conf]))
    if followed.stopped_by:
        raise CliError(f"interrupted: left conference {conf.conf_id}", followed.exit_code)
    if conf.end_reason in FAILED_CONFERENCE_ENDINGS:
        raise CliError(f"conference {conf.conf_id} ended: {conf.end_reason}")


def conference_table(conferences: list[m.Conference]) -> Table:
    """One row per participant: conference, host and why, member, speaking, path,
    loss/jitter/level."""
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold", title_justify="left")
    for column in ("conference", "state", "host", "why host", "member", "speaks", "path"):
        table.add_column(column, no_wrap=column != "why host")
    for column in ("loss %", "jitter ms", "level dBFS"):
        table.add_column(column, justify="right", no_wrap=True)
    for conf in conferences:
        for index, row in enumerate(_conference_rows(conf)):
            head = _conference_head(conf) if index == 0 else ("", "", "", "")
            table.add_row(*(escape(cell) for cell in (*head, *row)))
    return table


def _conference_head(conf: m.Conference) -> tuple[str, str, str, str]:
    state = conf.state if conf.state != "ended" else conf.end_reason or "ended"
    why = "; ".join(conf.why_host) or "-"
    return conf.conf_id[:SHORT_ID_CHARS], state, conf.host or "-", why


def _conference_rows(conf: m.Conference) -> list[tuple[str, ...]]:
    """Each member (and invitee) with what this participant measured about it."""
    speakers = set(conf.speakers or ())
    measured = [user for user in conf.participants if user != "previous"]
    users = list(dict.fromkeys([*conf.members, *conf.invited, *measured]))
    rows: list[tuple[str, ...]] = []
    for user in users:
        stats = conf.participants.get(user)
        stats = stats if isinstance(stats, dict) else {}
        jitter = stats.get("jitter_ms", stats.get("jb_delay_ms"))
        rows.append(
            (
                user if user in conf.members else f"{user} (invited)",
                "yes" if user in speakers or stats.get("speaking") else "-",
                str(stats.get("path") or "-"),
                _value(stats.get("loss"), scale=100),
                _value(jitter),
                _value(stats.get("level_dbfs")),
            )
        )
    return rows or [("-", "-", "-", "-", "-", "-")]


# ---------------------------------------------------------------- commands


def call_command(
    users: Annotated[
        list[str], typer.Argument(help="the user to call; two or more start a conference")
    ],
    play: PlayOption = None,
    record: RecordOption = None,
    seconds: SecondsOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Call a user (or start a conference with several) and stay until it ends (Ctrl-C)."""
    for user in users:
        if not 0 < len(user) <= 64:
            raise UsageError("USER: a username of 1 to 64 characters")
    if len(users) > 1:
        invitees = checked_invitees(users)
        media = media_arguments(play, record, seconds)
        started = call_daemon(
            profile,
            lambda client: follow_conference(
                client, lambda c: c.start_conference(invitees, **media), waits=False
            ),
        )
        finish_conference(started, as_json, "starting a conference")
        return
    user = users[0]
    media = media_arguments(play, record, seconds)
    placed = call_daemon(
        profile,
        lambda client: follow(client, lambda c: c.place_call(user, **media), waits=False),
    )
    finish(placed, as_json, f"calling {user}")


def answer_command(
    auto: Annotated[
        bool,
        typer.Option("--auto", help="wait for the next incoming call or conference invite"),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="with --auto: give up after N seconds")
    ] = None,
    play: PlayOption = None,
    record: RecordOption = None,
    seconds: SecondsOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer the call or conference ringing now (--auto: the next one) and stay on the line.

    When a 1:1 call and a conference invite both ring, the 1:1 call is answered.
    """
    if timeout is not None and not (auto and timeout > 0):
        raise UsageError("--timeout: a number of seconds above 0, with --auto")
    media = media_arguments(play, record, seconds)

    async def start(client: Client) -> m.Call | m.Conference:
        if auto:
            sys.stderr.write("waiting for a call or a conference invite (Ctrl-C stops) ...\n")
            return await answer_next(client, media, timeout)
        answered = await answer_ringing(client, media, 0.0)
        if answered is None:
            raise CliError("no call or conference invite is ringing")
        return answered

    followed = call_daemon(profile, lambda client: follow_any(client, start, waits=auto))
    if isinstance(followed, FollowedConference):
        finish_conference(followed, as_json, "waiting for a call")
    else:
        finish(followed, as_json, "waiting for a call")


def hangup_command(
    call_id: Annotated[
        str | None,
        typer.Argument(
            help="a call or conference id, or its start (default: the only or latest live call)"
        ),
    ] = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hang up a call (or reject a ringing one), or leave a conference."""
    wanted = checked_call_id(call_id) if call_id is not None else None

    async def hang_up(client: Client) -> m.Call | m.Conference:
        calls, conferences = await client.calls(), await client.conferences()
        conference = pick_conference(wanted, calls, conferences)
        if conference is not None:
            return await client.leave_conference(conference)
        if wanted is None:
            return await client.hangup(None)
        return await client.hangup(resolve_call_id(wanted, calls))

    done = call_daemon(profile, hang_up)
    if as_json:
        emit_json(done.model_dump())
        return
    if isinstance(done, m.Conference):
        text = f"left conference {done.conf_id} hosted by {done.host or '-'} ({done.state})"
    else:
        text = f"hung up: {done.call_id} with {done.peer} ({done.state})"
    human(False).print(escape(text))


def pick_conference(
    wanted: str | None, calls: list[m.Call], conferences: list[m.Conference]
) -> str | None:
    """The conference ``hangup`` means: the one ``wanted`` starts (no call does), or
    without an id the only live conference when no call is live; else None."""
    live = [c for c in conferences if c.state != "ended"]
    if wanted is None:
        if any(call.state != "ended" for call in calls) or len(live) != 1:
            return None
        return live[0].conf_id
    if any(call.call_id.startswith(wanted) for call in calls):
        return None
    matches = [c for c in live if c.conf_id.startswith(wanted)]
    if len(matches) > 1:
        raise UsageError(f"{wanted} is the start of {len(matches)} conference ids: give more")
    return matches[0].conf_id if matches else None


def resolve_call_id(given: str, calls: list[m.Call]) -> str:
    """The one call id starting with ``given`` (live calls first), else a CLI error."""
    if len(given) == FULL_ID_CHARS:
        return given
    matches = [call for call in calls if call.call_id.startswith(given)]
    live = [call for call in matches if call.state != "ended"]
    chosen = live or matches
    if not chosen:
        raise CliError(f"no call id starts with {given} (see 'hopline calls')")
    if len(chosen) > 1:
        raise UsageError(f"{given} is the start of {len(chosen)} call ids: give more digits")
    return chosen[0].call_id


def calls_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Live calls and conferences (and those ended lately) with their statistics."""

    async def both(client: Client) -> tuple[list[m.Call], list[m.Conference]]:
        return await client.calls(), await client.conferences()

    calls, conferences = call_daemon(profile, both)
    if as_json:
        emit_json(
            {
                "calls": [call.model_dump() for call in calls],
                "conferences": [conf.model_dump() for conf in conferences],
            }
        )
        return
    out = human(False)
    if conferences:
        out.print(conference_table(conferences))
    if not calls:
        out.print("no calls" if not conferences else "no 1:1 calls")
        return
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    for column in ("call", "peer", "", "state", "time", "path"):
        table.add_column(column, no_wrap=True)
    for column in ("kbit/s", "loss %", "jitter ms", "RTT ms", "MOS"):
        table.add_column(column, justify="right", no_wrap=True)
    for call in calls:
        table.add_row(*(escape(cell) for cell in _call_row(call)))
    out.print(table)
    out.print("ids are shortened: 'hopline hangup ID' takes the start of one")


def _value(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _call_row(call: m.Call) -> tuple[str, ...]:
    state = call.state if call.state != "ended" else call.end_reason or "ended"
    return (
        call.call_id[:SHORT_ID_CHARS],
        call.peer,
        "out" if call.direction == "outgoing" else "in",
        state,
        _clock(call.duration_s),
        call.path or "-",
        _value(call.bitrate, scale=1 / 1000),
        _value(call.loss, scale=100),
        _value(call.jitter_ms),
        _value(call.rtt_ms),
        _value(call.mos_estimate, 2),
    )

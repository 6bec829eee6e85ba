"""Conference calls at run time: :class:`ConferenceService`, the asyncio shell.

The pure parts live elsewhere: the conference state machine (roles, epochs,
handover, election) in :mod:`hopline.calls.conference`, the host election
in :mod:`hopline.calls.election`, the host's mixer in
:mod:`hopline.media.mixer` and a member's voice stream in
:mod:`hopline.media.stream`. This module wires them to paths and the clock,
in the style of :class:`~hopline.calls.service.CallService`:

* **Signalling**: every ``conf.*`` notice travels on the reliable channel of
  a :class:`~hopline.path.peer.PeerPath`. The service attaches to every path
  (``PathManager.path_listeners``) and chains the path's handler: ``conf.*``
  comes here, the rest goes on to the handler the path had before (the
  1:1 call service, messaging, files). What the core returns is sent to
  each named user on a live path to that user, opened on demand
  (``PathManager.connect``). Every participant keeps a path to every other
  one, so a leave or a handover reaches everybody and a successor already
  has its legs when it takes over the mix.
* **Capacity**: each participant reports what it measured: its NAT class
  (from the path manager's NAT discovery, unknown until that has run), an
  upload estimate (the packet train of the NAT check,
  :mod:`hopline.nat.upload`; :attr:`ConferenceConfig.upload_bps` until one
  has been measured), CPU headroom
  (:func:`~hopline.calls.election.measure_cpu_headroom`, measured once per
  service) and the smoothed RTT and loss of its live paths to the others
  (the reliable channel's estimates). It is reported at start or accept and
  every :attr:`ConferenceConfig.report_every_s`.
* **Media** runs in one task per conference, ticking every 20 ms on the
  event loop's clock, and follows the core's role at each tick. The host
  owns one :class:`~hopline.media.mixer.ConferenceMixer`: its own microphone
  (the ``play`` WAV) is a local participant, each member's datagrams go to
  :meth:`~hopline.media.mixer.ConferenceMixer.receive_datagram`, each tick's
  datagrams go out on the member's path and its own mix is written to the
  ``record`` WAV. A member runs an ordinary
  :class:`~hopline.media.stream.VoiceStream` with the host: ``play`` in,
  playout to ``record``. When the host changes, a member opens a fresh
  stream to the new host (the new mixer numbers its packets afresh) and the
  new host builds its mixer from the roster; the silence this leaves is
  measured as ``longest_gap_ms``.
* **Paths shared with 1:1 calls**: the datagram callback of a path to a
  user in one of our conferences belongs to this service; the call service
  (given as ``calls``) leaves such paths alone and answers a 1:1 call from
  or to such a user as busy. A conference invite while a 1:1 call runs is
  declined busy.
* **Active speakers**: after each mixer tick the host hands the mixer's
  speakers to the core (:meth:`~hopline.calls.conference.Conference.set_speakers`),
  which sends ``conf.speakers`` to the members on the same reliable path as
  every ``conf.*`` notice, at most every 250 ms and always the latest set;
  a member keeps what its host said. :meth:`ConferenceService.describe`
  shows ``speakers`` on both, and each change reaches ``on_change``.
* **Timers** of the core are served by one task per conference.

Bounded and robust: at most :attr:`ConferenceConfig.max_conferences`
conferences at once, each at most the roster bound
(:data:`~hopline.wire.conference.MAX_MEMBERS`); ended ones are kept for
:attr:`ConferenceConfig.ended_kept_s`. Malformed or foreign ``conf.*``
notices, notices for unknown conferences and stray media are dropped and
counted in :attr:`ConferenceService.dropped`, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hopline.calls.conference import (
    CONFERENCE_TIMEOUTS,
    ConferenceProtocolError,
    ConferenceTimeouts,
    ConfRole,
    ConfState,
    Ended,
    HostChanged,
    Outbox,
)
from hopline.calls.conference import Conference as ConferenceCore
from hopline.calls.election import Capacity, CpuHeadroom, PathQuality, measure_cpu_headroom
from hopline.calls.pacing import FrameClock
from hopline.calls.service import CallService
from hopline.media.audio import AudioSink, AudioSource, open_call_audio
from hopline.media.mixer import ConferenceMixer, MixerConfig
from hopline.media.stream import VoiceConfig, VoiceStream
from hopline.nat.discovery import NatType
from hopline.path.manager import PathManager
from hopline.path.peer import PeerPath
from hopline.runtime.peer import EndpointError
from hopline.wire import Message
from hopline.wire.conference import (
    CONF_ID_SIZE,
    CONF_MESSAGES,
    MAX_MEMBERS,
    MAX_SPEAKERS,
    ConfInvite,
)

__all__ = [
    "DEFAULT_UPLOAD_BPS",
    "ConferenceConfig",
    "ConferenceError",
    "ConferenceService",
    "LiveConference",
    "NoSuchConference",
]

log = logging.getLogger("hopline.conference")
DEFAULT_UPLOAD_BPS = 2_000_000
"""The upload estimate reported until the NAT check has measured one (or when
it could not, UDP being blocked): 2 Mbit/s, what a modest broadband line
carries, enough to host about 40 participants."""
SILENCE = np.zeros(960, dtype=np.int16)
HOSTING = (ConfState.INVITING, ConfState.ACTIVE)
MEMBER_MEDIA = (ConfState.ACTIVE, ConfState.HANDING_OVER)
UNMEASURED_RTT_MS = 0xFFFE


class ConferenceError(Exception):
    """A conference request that cannot be carried out (its message says why)."""


class NoSuchConference(ConferenceError):
    """No conference with that id."""


@dataclass(frozen=True)
class ConferenceConfig:
    """Timers, limits and measurements of the conference service."""

    timeouts: ConferenceTimeouts = CONFERENCE_TIMEOUTS
    mixer: MixerConfig = field(default_factory=MixerConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    auto_accept: bool = False  # join every conference we are invited to
    connect_timeout_s: float = 9.0  # a path to one participant
    upload_bps: int = DEFAULT_UPLOAD_BPS
    report_every_s: float = 5.0  # capacity (path RTT and loss) re-reported this often
    max_conferences: int = 4  # conferences at once, ringing ones included
    ended_kept_s: float = 60.0
    max_ended: int = 16
    devices: bool = True  # use sound devices when no file is given (else silence)
    headroom: CpuHeadroom | None = None  # None: measured once, when first needed

    def __post_init__(self) -> None:
        """Refuse a mixer whose speaker set would not fit a ``conf.speakers`` notice."""
        if self.mixer.max_speakers > MAX_SPEAKERS:
            raise ValueError(f"the mixer may mix at most {MAX_SPEAKERS} speakers")


@dataclass(eq=False)
class LiveConference:
    """One conference on this device: the core, audio, mixer or stream, and tasks."""

    core: ConferenceCore
    created_at: float
    play: str | None = None
    record: str | None = None
    seconds: float | None = None
    source: AudioSource | None = None
    sink: AudioSink | None = None
    audio_note: str | None = None
    mixer: ConferenceMixer | None = None
    mixed: tuple[str, ...] = ()  # the mixer's speakers as last handed to the core
    stream: VoiceStream | None = None
    stream_host: str = ""  # the host the member's stream talks to
    streams: int = 0  # streams opened (one per host this member had)
    previous: list[dict[str, Any]] = field(default_factory=list)  # ended streams' stats
    last_heard: float | None = None  # loop time of the last media from our host / any member
    longest_gap: float = 0.0
    media_unsent: int = 0
    host_changes: list[dict[str, Any]] = field(default_factory=list)
    joined_at: float | None = None
    ended_at: float | None = None
    final: dict[str, Any] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def conf_id(self) -> bytes:
        """The conference id."""
        return self.core.conf_id

    @property
    def hex_id(self) -> str:
        """The conference id as the API shows it."""
        return self.core.conf_id.hex()

    @property
    def over(self) -> bool:
        """True once this participant's conference ended."""
        return self.core.state is ConfState.ENDED

    def users(self) -> set[str]:
        """Everyone this conference involves: roster, open invites and host."""
        core = self.core
        return {*core.members, *core.invited, core.host} - {"", core.me}


class ConferenceService:
    """Starts, joins and runs the conferences of one logged-in device."""

    def __init__(
        self,
        paths: PathManager,
        *,
        calls: CallService | None = None,
        config: ConferenceConfig | None = None,
        on_change: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        """Serve conferences on ``paths``; ``calls`` is the 1:1 service sharing them."""
        self.paths = paths
        self.calls = calls
        self.config = config or ConferenceConfig()
        self.on_change = on_change
        self.conferences_by_id: OrderedDict[bytes, LiveConference] = OrderedDict()
        self.dropped: Counter[str] = Counter()
        self.incoming: asyncio.Queue[LiveConference] = asyncio.Queue(self.config.max_conferences)
        self._attached: dict[PeerPath, None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._headroom = self.config.headroom
        if calls is not None:
            calls.busy_with = self.in_conference_with
            calls.media_owned = self.owns_media

    @property
    def me(self) -> str:
        """This device's user name."""
        return self.paths.session.user

    # ------------------------------------------------------------ life

    def start_serving(self) -> None:
        """Attach to every path the manager makes from now on (and to those it has)."""
        self.paths.path_listeners.append(self.attach)
        for path in list(self.paths.paths):
            self.attach(path)

    async def close(self, reason: str = "service stopped") -> None:
        """Leave every conference and stop."""
        for live in list(self.conferences_by_id.values()):
            if not live.over:
                with contextlib.suppress(ConferenceError):
                    self._leave_or_decline(live, reason)
        for task in list(self._tasks):
            task.cancel()
        for live in self.conferences_by_id.values():
            self._finish(live)

    def attach(self, path: PeerPath) -> None:
        """Take ``conf.*`` notices on ``path``; other messages go to its previous handler."""
        if path in self._attached:
            return
        for gone in [p for p in self._attached if p.closed_reason is not None]:
            del self._attached[gone]  # closed for good: no longer a way to anyone
        self._attached[path] = None
        previous = path.handler

        async def handler(message: Message) -> Message | None:
            if isinstance(message, CONF_MESSAGES):
                self._on_notice(path, message)
                return None
            if previous is not None:
                return await previous(message)
            return await path.default_handle(message)

        path.handler = handler
        self._drain(path)
        if self.owns_media(path):
            path.on_datagram = self._media_handler(path)

    def _drain(self, path: PeerPath) -> None:
        """Notices queued before we attached: ours are handled, the rest put back."""
        others: list[Message] = []
        while not path.incoming.empty():
            message = path.incoming.get_nowait()
            if isinstance(message, CONF_MESSAGES):
                self._on_notice(path, message)
            else:
                others.append(message)
        for message in others:
            path.incoming.put_nowait(message)

    # ------------------------------------------------------------ sharing with 1:1 calls

    def in_conference_with(self, user: str) -> bool:
        """True while ``user`` is in (or invited to) one of our running conferences."""
        return any(user in live.users() for live in self._running())

    def owns_media(self, path: PeerPath) -> bool:
        """True when datagrams on ``path`` belong to a conference (not to a 1:1 call)."""
        return self.in_conference_with(path.user)

    def _running(self) -> list[LiveConference]:
        return [c for c in self.conferences_by_id.values() if not c.over]

    # ------------------------------------------------------------ local commands

    async def start(
        self,
        users: Iterable[str],
        *,
        play: str | None = None,
        record: str | None = None,
        seconds: float | None = None,
    ) -> LiveConference:
        """Start a conference hosted here and invite ``users``; returns at once.

        Raises :class:`ConferenceError` for too many conferences or users, a
        user in a 1:1 call with us, or audio files that cannot be used.
        """
        wanted = [u.lower() for u in dict.fromkeys(users) if u.lower() != self.me]
        if not wanted:
            raise ConferenceError("a conference needs someone to invite")
        if len(wanted) >= MAX_MEMBERS:
            raise ConferenceError(f"a conference holds at most {MAX_MEMBERS} participants")
        if len(self._running()) >= self.config.max_conferences:
            raise ConferenceError(f"at most {self.config.max_conferences} conferences at once")
        self._check_not_calling()
        core = ConferenceCore(
            self.me,
            ConfRole.HOST,
            os.urandom(CONF_ID_SIZE),
            self._capacity(),
            timeouts=self.config.timeouts,
        )
        live = LiveConference(core, time.time(), play=play, record=record, seconds=seconds)
        self._open_audio(live)
        self._remember(live)
        self._command(live, lambda now: core.start(wanted, now))
        self._run(live)
        return live

    def _check_not_calling(self) -> None:
        """A conference does not start or grow while a 1:1 call is in progress here."""
        if self.calls is not None and self.calls.busy():
            raise ConferenceError("busy: a 1:1 call is in progress")

    async def accept(
        self,
        conf_id: bytes,
        *,
        play: str | None = None,
        record: str | None = None,
        seconds: float | None = None,
    ) -> LiveConference:
        """Join a conference we are invited to."""
        live = self.get(conf_id)
        if live.core.state is not ConfState.INVITED:
            raise ConferenceError(f"conference {live.hex_id} is not ringing")
        self._check_not_calling()
        live.play, live.record, live.seconds = play, record, seconds
        self._open_audio(live)
        self._command(live, live.core.accept)
        return live

    def decline(self, conf_id: bytes) -> LiveConference:
        """Do not join a conference we are invited to."""
        live = self.get(conf_id)
        if live.core.state is not ConfState.INVITED:
            raise ConferenceError(f"conference {live.hex_id} is not ringing")
        self._command(live, live.core.decline)
        return live

    def leave(self, conf_id: bytes) -> LiveConference:
        """Leave a conference (a host hands the mix on first); declines one ringing."""
        live = self.get(conf_id)
        if live.over:
            raise ConferenceError(f"conference {live.hex_id} is over")
        self._leave_or_decline(live, "left")
        return live

    def _leave_or_decline(self, live: LiveConference, reason: str) -> None:
        core = live.core
        if core.state is ConfState.INVITED:
            self._command(live, core.decline)
        elif core.state is ConfState.IDLE:
            self._command(live, lambda now: core.fail(now, reason))
        else:
            self._command(live, core.leave)

    def invite(self, conf_id: bytes, user: str) -> LiveConference:
        """Host: invite one more user."""
        live = self.get(conf_id)
        self._check_not_calling()
        self._command(live, lambda now: live.core.invite([user.lower()], now))
        return live

    def remove(self, conf_id: bytes, user: str) -> LiveConference:
        """Host: put a member out, or withdraw an invite."""
        live = self.get(conf_id)
        self._command(live, lambda now: live.core.remove(user.lower(), now))
        return live

    def get(self, conf_id: bytes) -> LiveConference:
        """The conference with this id (NoSuchConference if unknown)."""
        live = self.conferences_by_id.get(conf_id)
        if live is None:
            raise NoSuchConference(f"no conference {conf_id.hex()}")
        return live

    def conferences(self) -> list[dict[str, Any]]:
        """Every conference this device knows, as :meth:`describe` documents."""
        self._forget_ended()
        return [self.describe(live) for live in self.conferences_by_id.values()]

    def _command(self, live: LiveConference, action: Callable[[float], Outbox]) -> None:
        """Run a local command on the core; its refusal becomes a ConferenceError."""
        try:
            out = action(self._now())
        except ConferenceProtocolError as exc:
            raise ConferenceError(f"conference {live.hex_id}: {exc}") from None
        self._after(live, out)

    # ------------------------------------------------------------ notices from peers

    def _on_notice(self, path: PeerPath, message: Message) -> None:
        conf_id = getattr(message, "conf_id", b"")
        live = self.conferences_by_id.get(conf_id)
        fresh = live is None
        if live is None and isinstance(message, ConfInvite):
            live = self._on_invite(path, message)
            if live is None:
                return
        if live is None or live.over:
            self.dropped["unknown-conference"] += 1
            return
        try:
            out = live.core.receive(path.user, message, self._now())
        except ConferenceProtocolError as exc:
            self.dropped[exc.reason] += 1
            if fresh:  # an invite that did not even ring: forget it
                self._finish(live)
                self.conferences_by_id.pop(live.conf_id, None)
            log.info(
                "conference %s: %s from %s dropped: %s", live.hex_id, message.NAME, path.user, exc
            )
            return
        self._after(live, out)
        if fresh and live.core.state is ConfState.INVITED:
            self._ring(live, path.user)

    def _on_invite(self, path: PeerPath, message: ConfInvite) -> LiveConference | None:
        """A new invite: a conference seen from a would-be member."""
        if len(message.conf_id) != CONF_ID_SIZE:
            self.dropped["malformed"] += 1
            return None
        try:
            core = ConferenceCore(
                self.me,
                ConfRole.MEMBER,
                message.conf_id,
                self._capacity(),
                timeouts=self.config.timeouts,
            )
        except ValueError:
            self.dropped["malformed"] += 1
            return None
        if len(self._running()) >= self.config.max_conferences:
            self.dropped["too-many-conferences"] += 1
            return None
        live = LiveConference(core, time.time())
        self._remember(live)
        self._run(live)
        return live

    def _ring(self, live: LiveConference, host: str) -> None:
        """An invite rings: declined busy in a 1:1 call, accepted by policy, else queued."""
        if self.calls is not None and self.calls.busy():
            self._command(live, lambda now: live.core.decline(now, busy=True))
            return
        if self.config.auto_accept:  # with the default audio: devices or silence
            self._open_audio(live)
            self._command(live, live.core.accept)
            return
        with contextlib.suppress(asyncio.QueueFull):
            self.incoming.put_nowait(live)

    # ------------------------------------------------------------ after every input

    def _after(self, live: LiveConference, out: Outbox) -> None:
        """Send what the core returned, apply its updates, fit media to the role."""
        for user, message in out:
            self._send(user, message)
        updates = live.core.take_updates()
        for update in updates:
            if isinstance(update, HostChanged):
                live.host_changes.append(
                    {
                        "at": time.time(),
                        "host": update.host,
                        "previous": update.previous,
                        "epoch": update.epoch,
                        "cause": update.cause.name.lower() if update.cause is not None else None,
                    }
                )
        self._fit_media(live)
        self._reach_everyone(live)
        if (updates or out) and self.on_change is not None:
            self.on_change(self.describe(live))
        if any(isinstance(u, Ended) for u in updates):
            self._finish(live)

    def _send(self, user: str, message: Message) -> None:
        """Send on a live path to ``user`` now, else once one is open (lost just now too)."""
        path = self._path_to(user)
        if path is None or not self._notify(path, message):
            self._spawn(self._send_later(user, message))

    @staticmethod
    def _notify(path: PeerPath, message: Message) -> bool:
        """``message`` on ``path``; False when the path was lost just now."""
        try:
            path.notify(message)
        except EndpointError:
            return False
        return True

    async def _send_later(self, user: str, message: Message) -> None:
        """Open (or wait for) a path to ``user``, then send; failures are counted."""
        try:
            path = await self.paths.connect(user, self.config.connect_timeout_s)
            self.attach(path)
            connection = await path.wait_live(self.config.connect_timeout_s)
            connection.notify(message)
        except EndpointError as exc:
            self.dropped["unsent-signal"] += 1
            log.info("could not send %s to %s: %s", message.NAME, user, exc)

    def _path_to(self, user: str) -> PeerPath | None:
        """A live path to ``user`` (the newest)."""
        for path in reversed(list(self._attached)):
            if path.user == user and path.live:
                return path
        return None

    def _reach_everyone(self, live: LiveConference) -> None:
        """Keep a path to every participant and own the datagrams on all of them."""
        if live.over or live.core.state in (ConfState.IDLE, ConfState.INVITED):
            return
        for user in sorted(set(live.core.members) - {self.me}):
            paths = [p for p in self._attached if p.user == user]
            for path in paths:
                path.on_datagram = self._media_handler(path)
            if not any(p.live for p in paths):
                self._spawn(self._connect(user))

    async def _connect(self, user: str) -> None:
        try:
            path = await self.paths.connect(user, self.config.connect_timeout_s)
        except EndpointError as exc:
            self.dropped["no-path"] += 1
            log.info("no path to %s: %s", user, exc)
            return
        self.attach(path)

    # ------------------------------------------------------------ media

    def _media_handler(self, path: PeerPath) -> Callable[[bytes], None]:
        """Datagrams from a participant: to the mixer (host) or the stream (from our host)."""
        loop = asyncio.get_running_loop()

        def on_datagram(data: bytes) -> None:
            now = loop.time()
            for live in self._running():
                if path.user in live.core.members and self._take_media(live, path.user, data, now):
                    return
            self.dropped["stray-media"] += 1

        return on_datagram

    def _take_media(self, live: LiveConference, user: str, data: bytes, now: float) -> bool:
        core = live.core
        if live.mixer is not None:
            live.mixer.receive_datagram(user, data, now)
        elif live.stream is not None and user == live.stream_host:
            self._heard(live, now)
            live.stream.receive_datagram(data, now)
        else:
            return False
        core.note_activity(user, now)
        return True

    @staticmethod
    def _heard(live: LiveConference, now: float) -> None:
        if live.last_heard is not None:
            live.longest_gap = max(live.longest_gap, now - live.last_heard)
        live.last_heard = now

    def _fit_media(self, live: LiveConference) -> None:
        """Make the mixer or the stream match the role the core holds now."""
        core = live.core
        hosting = core.role is ConfRole.HOST and core.state in HOSTING
        if hosting:
            self._retire_stream(live)
            self._fit_mixer(live)
        elif core.role is ConfRole.MEMBER and core.state in MEMBER_MEDIA:
            self._close_mixer(live)
            if live.stream is None or live.stream_host != core.host:
                self._retire_stream(live)
                live.stream = VoiceStream(self.config.voice)
                live.stream_host = core.host
                live.streams += 1
        if (hosting or live.stream is not None) and live.joined_at is None:
            live.joined_at = time.time()
            live.tasks.append(asyncio.ensure_future(self._media(live)))

    def _fit_mixer(self, live: LiveConference) -> None:
        if live.mixer is None:
            live.mixer = ConferenceMixer(self.config.mixer)
            live.mixer.add_participant(self.me, local=True)
        mixer = live.mixer
        wanted = set(live.core.members) - {self.me}
        for user in [p for p in mixer.participants if p != self.me and p not in wanted]:
            mixer.remove_participant(user)
        for user in sorted(wanted - set(mixer.participants)):
            mixer.add_participant(user)

    def _retire_stream(self, live: LiveConference) -> None:
        if live.stream is not None:
            live.previous.append(self._stream_stats(live, live.stream))
            live.stream.close()
            live.stream = None
            live.stream_host = ""

    def _close_mixer(self, live: LiveConference) -> None:
        if live.mixer is not None:
            live.final = self._mixer_stats(live)
            live.mixer.close()
            live.mixer = None
            live.mixed = ()

    async def _media(self, live: LiveConference) -> None:
        """The 20 ms loop: capture, mix or stream, send, play out, until the end."""
        loop = asyncio.get_running_loop()
        clock = FrameClock(loop.time())
        while not live.over:
            for at in clock.due(loop.time()):
                self._tick(live, at)
            if live.seconds is not None and loop.time() - clock.start >= live.seconds:
                self._leave_or_decline(live, "left")
                break
            await asyncio.sleep(clock.sleep_for(loop.time()))

    def _tick(self, live: LiveConference, now: float) -> None:
        frame = live.source.read_frame() if live.source is not None else None
        if frame is None:
            frame = SILENCE
        if live.mixer is not None:
            played = self._tick_mixer(live, live.mixer, frame, now)
        elif live.stream is not None:
            played = self._tick_stream(live, live.stream, frame, now)
        else:
            played = SILENCE  # between hosts
        if live.sink is not None:
            live.sink.write_frame(played)

    def _tick_mixer(
        self, live: LiveConference, mixer: ConferenceMixer, frame: np.ndarray, now: float
    ) -> np.ndarray:
        mixer.push_local_audio(self.me, frame)
        tick = mixer.tick(now)
        for user, datagram in tick.datagrams:
            self._send_datagram(live, user, datagram)
        if tick.speakers != live.mixed:
            self._speakers_changed(live, tick.speakers)
        return tick.local.get(self.me, SILENCE)

    def _speakers_changed(self, live: LiveConference, speakers: tuple[str, ...]) -> None:
        """The mixer mixes other speakers: the core tells the members (rate-limited)."""
        live.mixed = speakers
        core = live.core
        if core.role is ConfRole.HOST and core.state in HOSTING:
            self._after(live, core.set_speakers(speakers[:MAX_SPEAKERS], self._now()))

    def _tick_stream(
        self, live: LiveConference, stream: VoiceStream, frame: np.ndarray, now: float
    ) -> np.ndarray:
        stream.send_audio(frame, now)
        timer = stream.get_timer()
        if timer is not None and timer <= now:
            stream.handle_timer(now)
        for datagram in stream.datagrams_to_send():
            self._send_datagram(live, live.stream_host, datagram)
        return stream.playout(now)

    def _send_datagram(self, live: LiveConference, user: str, datagram: bytes) -> None:
        path = self._path_to(user)
        if path is None:
            live.media_unsent += 1
            return
        try:
            path.send_datagram(datagram)
        except EndpointError:
            live.media_unsent += 1

    # ------------------------------------------------------------ timers and capacity

    def _run(self, live: LiveConference) -> None:
        live.tasks.append(asyncio.ensure_future(self._watchdog(live)))
        live.tasks.append(asyncio.ensure_future(self._reporter(live)))

    async def _watchdog(self, live: LiveConference) -> None:
        """Fire the core's timers (silence, handover, invites, ringing)."""
        loop = asyncio.get_running_loop()
        while not live.over:
            timer = live.core.get_timer()
            now = loop.time()
            if timer is not None and timer[0] <= now:
                self._after(live, live.core.handle_timer(now))
                continue
            wait = 0.1 if timer is None else min(0.1, timer[0] - now)
            await asyncio.sleep(max(0.005, wait))

    async def _reporter(self, live: LiveConference) -> None:
        """Re-report this participant's capacity (paths measured since) now and then."""
        while not live.over:
            await asyncio.sleep(self.config.report_every_s)
            if live.core.state in (ConfState.ACTIVE, ConfState.INVITING):
                capacity = self._capacity()
                self._after(live, live.core.report_capacity(capacity, self._now()))

    def _capacity(self) -> Capacity:
        """What this participant measured about itself, for the host election."""
        if self._headroom is None:
            self._headroom = measure_cpu_headroom()
        nat = self.paths.nat
        qualities = {}
        for path in self._attached:
            quality = _path_quality(path)
            if quality is not None and path.user != self.me:
                qualities[path.user] = quality
        return Capacity(
            self.me,
            nat.nat_type if nat is not None else NatType.UNKNOWN,
            self._upload_bps(),
            self._headroom.encodes_per_s,
            self._headroom.decodes_per_s,
            tuple(qualities[u] for u in sorted(qualities)),
        )

    def _upload_bps(self) -> int:
        """The upload the NAT check measured, else :attr:`ConferenceConfig.upload_bps`."""
        nat = self.paths.nat
        measured = nat.upload_bps if nat is not None else None
        return measured if measured is not None else self.config.upload_bps

    # ------------------------------------------------------------ audio and bookkeeping

    def _open_audio(self, live: LiveConference) -> None:
        """Open the source and sink now, so a bad file fails the request, not the call."""
        audio = open_call_audio(live.play, live.record, devices=self.config.devices)
        live.source, live.sink = audio.source, audio.sink
        if audio.note is not None:
            live.audio_note = audio.note

    def _finish(self, live: LiveConference) -> None:
        """The conference ended here: stop media, close audio, keep the statistics."""
        if live.ended_at is not None:
            return
        live.ended_at = time.time()
        self._retire_stream(live)
        self._close_mixer(live)
        current = asyncio.current_task()
        for task in live.tasks:
            if task is not current:
                task.cancel()
        for closer in (live.source, live.sink):
            if closer is not None:
                try:
                    closer.close()
                except OSError as exc:
                    live.audio_note = f"could not write the recording: {exc}"
        for path in self._attached:
            if not self.owns_media(path):
                self._let_go(path)
        live.ended.set()

    def _let_go(self, path: PeerPath) -> None:
        """A path no conference needs: its datagrams go back to the 1:1 call service."""
        if self.calls is not None:
            self.calls.release_media(path)
            return

        def drop(data: bytes) -> None:
            self.dropped["stray-media"] += 1

        path.on_datagram = drop

    def _remember(self, live: LiveConference) -> None:
        self.conferences_by_id[live.conf_id] = live
        self._forget_ended()

    def _forget_ended(self) -> None:
        now = time.time()
        ended = [c for c in self.conferences_by_id.values() if c.ended_at is not None]
        for live in ended[: max(0, len(ended) - self.config.max_ended)]:
            del self.conferences_by_id[live.conf_id]
        for live in ended:
            if live.ended_at is not None and now - live.ended_at > self.config.ended_kept_s:
                self.conferences_by_id.pop(live.conf_id, None)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------ reports

    def describe(self, live: LiveConference) -> dict[str, Any]:
        """The conference document: state, host and why, participants and their stats."""
        core = live.core
        election = core.election()
        return {
            "conf_id": live.hex_id,
            "state": "ended" if live.over else core.state.value,
            "role": core.role.value,
            "end_reason": core.end_reason.value if core.end_reason is not None else None,
            "host": core.host or None,
            "epoch": core.epoch,
            "members": list(core.members),
            "invited": list(core.invited),
            "why_host": list(election.reasons),
            "candidates": [
                {
                    "user": c.user,
                    "eligible": c.eligible,
                    "score": c.score,
                    "reasons": list(c.reasons),
                }
                for c in election.candidates
            ],
            "successor": core.successor() if not live.over else None,
            "host_changes": live.host_changes,
            "participants": self._participant_stats(live),
            "speakers": self._speakers(live),
            "started_at": live.created_at,
            "joined_at": live.joined_at,
            "ended_at": live.ended_at,
            "play": live.play,
            "record": live.record,
            "audio": live.audio_note,
            "streams": live.streams,
            "longest_gap_ms": round(live.longest_gap * 1000, 1),
            "media_unsent": live.media_unsent,
            "ignored": dict(core.ignored),
        }

    @staticmethod
    def _speakers(live: LiveConference) -> list[str] | None:
        """Who speaks now: the host's mixer, or what the host last told this member."""
        if live.mixer is not None:
            return list(live.mixer.speakers)
        core = live.core
        if live.over or core.role is not ConfRole.MEMBER or core.state not in MEMBER_MEDIA:
            return None
        return list(core.speakers)

    def _participant_stats(self, live: LiveConference) -> dict[str, Any]:
        if live.mixer is not None:
            return self._mixer_stats(live)
        if live.stream is not None:
            return {live.stream_host: self._stream_stats(live, live.stream)}
        if live.final is not None:
            return live.final
        return {"previous": live.previous[-1]} if live.previous else {}

    def _mixer_stats(self, live: LiveConference) -> dict[str, Any]:
        assert live.mixer is not None
        stats = live.mixer.stats(self._now())
        return {
            pid: {
                "local": p.local,
                "level_dbfs": round(p.level_dbfs, 1),
                "speaking": p.speaking,
                "in_mix": p.in_mix,
                "gain_db": round(p.gain_db, 1),
                "jb_delay_ms": round(p.jb_delay_ms, 1),
                "loss": round(p.loss, 4),
                "concealed": p.concealed,
                "packets_received": p.packets_received,
                "dropped": p.dropped,
                "path": None if p.local else self._path_kind(pid),
            }
            for pid, p in stats.participants.items()
        }

    def _stream_stats(self, live: LiveConference, stream: VoiceStream) -> dict[str, Any]:
        """A member's stream to its host, and how it travels."""
        return {**stream.stats(self._now()).to_json(), "path": self._path_kind(live.stream_host)}

    def _path_kind(self, user: str) -> str | None:
        """How the media to ``user`` travels now: ``direct`` or ``relay`` (None: no path)."""
        path = self._path_to(user)
        return (path.kind or None) if path is not None else None


def _path_quality(path: PeerPath) -> PathQuality | None:
    """The smoothed RTT and retransmission loss of a live path, if measured."""
    connection = path.connection
    if not path.live or connection is None:
        return None
    stats = connection.core.link.stats
    if stats.srtt is None:
        return None
    rtt = min(int(stats.srtt * 1000), UNMEASURED_RTT_MS)
    loss = min(1000, int(stats.retransmission_ratio * 1000))
    return PathQuality(path.user, rtt, loss)

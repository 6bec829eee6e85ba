"""Voice calls at run time: :class:`CallService`, the asyncio shell around a call.

The pure parts live elsewhere: the call state machine and multi-device
ringing in :mod:`hopline.calls.state`, the voice stream (Opus, media
packets, jitter buffer, loss recovery, rate control) in
:mod:`hopline.media.stream`, audio files and devices in
:mod:`hopline.media.audio`. This module wires them to the network and the
clock:

* **Signalling** (:mod:`hopline.wire.call`) travels on the reliable channel
  of a :class:`~hopline.path.peer.PeerPath` to each device: relayed through
  supernodes until a direct path exists, end-to-end encrypted always.
  Placing a call looks the callee up, opens a path to *every* device it is
  online on and sends each an invite; :class:`~hopline.calls.state.Fork`
  decides, the first answer wins and the other devices are cancelled.
* **Media** runs in one task per answered call, ticking every 20 ms on the
  event loop's clock: read a frame from the source (a WAV file, a device or
  silence), give it to the :class:`~hopline.media.stream.VoiceStream`, send
  what the stream wants sent as datagrams on the path's unreliable channel,
  and write the stream's playout to the sink. Datagrams from the peer go to
  the stream the moment they arrive (their arrival time feeds the jitter
  estimate). A late tick is caught up (a few frames at most), so audio
  keeps its pace when the loop is busy.
* **Path loss**: when nothing has come from the peer for
  :attr:`CallConfig.stall_s` while media should flow, the service asks the
  path manager to check the path at once and the session to check its home
  supernode, so a relay that died with its supernode is replaced in about a
  second instead of at the next keep-alive round. The stream, the call and
  its statistics carry on over the new connection.
* **Timers** of the state machine (no ring-back, nobody answers, no media)
  are served by one watchdog task per call.

What a peer can make us hold is bounded: ringing calls
(:attr:`CallConfig.max_ringing`), ended calls kept for ``calls``
(:attr:`CallConfig.ended_kept_s`, :attr:`CallConfig.max_ended`). Signals
for unknown calls, from the wrong device, or not allowed in the call's
state are dropped and counted in :attr:`CallService.dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hopline.calls.pacing import FrameClock
from hopline.calls.state import (
    CALL_TIMEOUTS,
    MAX_FORK_DEVICES,
    Answer,
    AnsweredElsewhere,
    Call,
    CallProtocolError,
    CallRole,
    CallState,
    CallTimeouts,
    Cancelled,
    Dial,
    Event,
    Fail,
    Fork,
    ForkResult,
    Hangup,
    HeldByPeer,
    Hold,
    HungUp,
    Invited,
    Reject,
    RemoteProtocolError,
    Resume,
    ResumedByPeer,
)
from hopline.media.audio import AudioSink, AudioSource, open_call_audio
from hopline.media.stream import VoiceConfig, VoiceStream
from hopline.path.manager import PathError, PathManager
from hopline.path.peer import PeerPath
from hopline.runtime.peer import EndpointError
from hopline.wire import Message
from hopline.wire.call import (
    CALL_ID_SIZE,
    CODEC_OPUS,
    MAX_REASON,
    CallAccept,
    CallCancel,
    CallDecline,
    CallHangup,
    CallHold,
    CallInvite,
    CallRinging,
)
from hopline.wire.commands import DeviceRecord

__all__ = ["CallConfig", "CallError", "CallService", "LiveCall", "NoSuchCall"]

log = logging.getLogger("hopline.calls")
CODEC_NAME = "opus/48000/1"
CALL_SIGNALS = (CallInvite, CallRinging, CallAccept, CallDecline, CallCancel, CallHangup, CallHold)
SILENCE = np.zeros(960, dtype=np.int16)
STATE_NAMES = {
    CallState.IDLE: "calling",
    CallState.INVITING: "calling",
    CallState.RINGING: "ringing",
    CallState.INCOMING: "ringing",
    CallState.ACTIVE: "active",
    CallState.HELD: "held",
    CallState.REMOTE_HELD: "held",
    CallState.BOTH_HELD: "held",
    CallState.ENDED: "ended",
}
IN_CALL = (CallState.ACTIVE, CallState.HELD, CallState.REMOTE_HELD, CallState.BOTH_HELD)
BUSY_STATES = (*IN_CALL, CallState.INVITING, CallState.RINGING)


class CallError(Exception):
    """A call request that cannot be carried out (its message says why)."""


class NoSuchCall(CallError):
    """No call with that id (or none ringing, for ``answer``)."""


@dataclass(frozen=True)
class CallConfig:
    """Timers and limits of the call service."""

    timeouts: CallTimeouts = CALL_TIMEOUTS
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    connect_timeout_s: float = 9.0  # a path to one callee device
    stall_s: float = 0.4  # nothing from the peer this long: check the path now
    resend_s: float = 10.0  # a hang-up waits this long for a lost path to come back
    max_ringing: int = 8  # incoming calls ringing at once; more are answered busy
    ended_kept_s: float = 60.0
    max_ended: int = 32
    devices: bool = True  # use sound devices when no file is given (else silence)


@dataclass(eq=False)
class LiveCall:
    """One call on this device: its state machine, paths, audio and stream."""

    call_id: bytes
    peer: str
    call: Call
    created_at: float
    play: str | None = None
    record: str | None = None
    seconds: float | None = None
    fork: Fork | None = None
    legs: dict[str, PeerPath] = field(default_factory=dict)  # device hex -> path
    path: PeerPath | None = None
    source: AudioSource | None = None
    sink: AudioSink | None = None
    audio_note: str | None = None
    stream: VoiceStream | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    last_heard: float = 0.0  # loop time of the last datagram from the peer
    stalls: int = 0
    stall_checks: int = 0  # checks asked for in the current silence
    longest_gap: float = 0.0  # seconds: the longest wait between datagrams from the peer
    media_unsent: int = 0
    final: dict[str, Any] | None = None  # the stream's statistics when it ended
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    failed_legs: int = 0

    @property
    def hex_id(self) -> str:
        """The call id as the API shows it."""
        return self.call_id.hex()

    @property
    def state(self) -> CallState:
        """The state machine's state."""
        return self.call.state


class CallService:
    """Places, answers and runs the calls of one logged-in device."""

    def __init__(
        self,
        paths: PathManager,
        *,
        config: CallConfig | None = None,
        on_change: Callable[[dict[str, Any]], object] | None = None,
        display_name: str = "",
    ) -> None:
        self.paths = paths
        self.config = config or CallConfig()
        self.on_change = on_change
        self.display_name = display_name
        self.calls: OrderedDict[bytes, LiveCall] = OrderedDict()
        self.dropped: Counter[str] = Counter()
        self.incoming: asyncio.Queue[LiveCall] = asyncio.Queue(self.config.max_ringing)
        self._tasks: set[asyncio.Task[None]] = set()
        self._attached: set[PeerPath] = set()
        self.busy_with: Callable[[str], bool] | None = None
        """Set by a service that has the user's attention elsewhere (a conference
        with them): a call to or from such a user is refused as busy."""
        self.media_owned: Callable[[PeerPath], bool] | None = None
        """Set by a service that owns the datagrams of some paths (a conference's
        legs): the call service leaves their ``on_datagram`` alone."""

    # ------------------------------------------------------------ life

    def start(self, *, accept_paths: bool = True) -> None:
        """Serve paths other users open to us (call after ``paths.start()``).

        Where several services share the path manager, pass
        ``accept_paths=False`` and have :meth:`attach` called for every new
        path (``PathManager.path_listeners``).
        """
        if accept_paths:
            self._spawn(self._accept_paths())

    async def close(self, reason: str = "service stopped") -> None:
        """End every call (hanging up on the peer) and stop."""
        for live in list(self.calls.values()):
            if live.state is not CallState.ENDED:
                with contextlib.suppress(CallError):
                    self._local(live, Hangup() if live.state in IN_CALL else Fail(reason))
        for task in list(self._tasks):
            task.cancel()
        for live in self.calls.values():
            for task in live.tasks:
                task.cancel()

    async def _accept_paths(self) -> None:
        while True:
            self.attach(await self.paths.accept())

    def attach(self, path: PeerPath) -> None:
        """Take call signals on ``path`` (and the notices that came before us);
        other messages go to the handler the path had before."""
        if path in self._attached:
            return
        self._attached.add(path)
        previous = path.handler

        async def handler(message: Message) -> Message | None:
            if isinstance(message, CALL_SIGNALS):
                self._on_signal(path, message)
                return None
            if previous is not None:
                return await previous(message)
            return await path.default_handle(message)

        path.handler = handler
        self.release_media(path)
        while not path.incoming.empty():
            self._on_signal(path, path.incoming.get_nowait())

    def release_media(self, path: PeerPath) -> None:
        """No call on ``path``: its datagrams are strays, unless another service owns them.

        A service that owned them calls this when it lets the path go.
        """
        if self.media_owned is None or not self.media_owned(path):
            path.on_datagram = self._stray_media(path)

    def _held_elsewhere(self, user: str) -> bool:
        return self.busy_with is not None and self.busy_with(user.lower())

    def _stray_media(self, path: PeerPath) -> Callable[[bytes], None]:
        """Datagrams on a path with no call in progress: dropped and counted."""

        def drop(data: bytes) -> None:
            self.dropped["foreign-media"] += 1

        return drop

    # ------------------------------------------------------------ placing

    async def place(
        self, user: str, *, play: str | None, record: str | None, seconds: float | None
    ) -> LiveCall:
        """Ring every device ``user`` is online on; returns at once (state calling).

        Raises :class:`CallError` when the user is not online, is in a
        conference with us (busy), or the audio files cannot be used.
        """
        if self._held_elsewhere(user):
            raise CallError(f"busy: in a conference with {user}")
        try:
            devices = await self.paths.devices(user)
        except PathError as exc:
            raise CallError(f"cannot call {user}: {exc.reason}") from None
        except EndpointError as exc:
            raise CallError(f"cannot look {user} up: {exc}") from None
        live = LiveCall(
            os.urandom(CALL_ID_SIZE),
            user.lower(),
            Call(CallRole.CALLER, self.config.timeouts),
            time.time(),
            play=play,
            record=record,
            seconds=seconds,
        )
        self._open_audio(live)
        live.fork = Fork(d.device_id.hex() for d in devices[:MAX_FORK_DEVICES])
        self._remember(live)
        self._local(live, Dial())
        for device in devices[:MAX_FORK_DEVICES]:
            live.tasks.append(asyncio.ensure_future(self._ring(live, device)))
        self._watch(live)
        return live

    async def _ring(self, live: LiveCall, device: DeviceRecord) -> None:
        """Open a path to one callee device and invite it."""
        try:
            path = await self.paths.connect(live.peer, self.config.connect_timeout_s, device)
        except EndpointError as exc:
            log.info("call %s: no path to a device of %s: %s", live.hex_id, live.peer, exc)
            self._leg_failed(live)
            return
        if live.state is CallState.ENDED:
            return
        self.attach(path)
        live.legs[device.device_id.hex()] = path
        invite = CallInvite(
            call_id=live.call_id,
            codecs=(CODEC_OPUS,),
            max_bitrate=self.config.voice.max_bitrate,
            display_name=self.display_name,
        )
        if not self._send(path, invite):
            self._leg_failed(live)

    def _leg_failed(self, live: LiveCall) -> None:
        live.failed_legs += 1
        fork = live.fork
        if fork is not None and live.failed_legs >= len(fork.devices) and not fork.decided:
            self._local(live, Fail("no path to any device"))

    # ------------------------------------------------------------ answering

    async def answer(
        self,
        call_id: bytes | None,
        *,
        play: str | None,
        record: str | None,
        seconds: float | None,
        wait_s: float = 0.0,
    ) -> LiveCall:
        """Answer a ringing call (the oldest one without ``call_id``; waits ``wait_s``)."""
        live = await self._ringing_call(call_id, wait_s)
        live.play, live.record, live.seconds = play, record, seconds
        self._open_audio(live)
        self._local(live, Answer())
        assert live.path is not None
        self._send(
            live.path,
            CallAccept(
                call_id=live.call_id, codec=CODEC_OPUS, max_bitrate=self.config.voice.max_bitrate
            ),
        )
        self._start_media(live)
        return live

    async def _ringing_call(self, call_id: bytes | None, wait_s: float) -> LiveCall:
        if call_id is not None:
            live = self.get(call_id)
            if live.state is not CallState.INCOMING:
                raise NoSuchCall(f"call {call_id.hex()} is not ringing ({STATE_NAMES[live.state]})")
            return live
        deadline = time.monotonic() + wait_s
        while True:
            ringing = [c for c in self.calls.values() if c.state is CallState.INCOMING]
            if ringing:
                return ringing[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoSuchCall("no incoming call is ringing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.incoming.get(), left)

    # ------------------------------------------------------------ hanging up, holding

    def hangup(self, call_id: bytes | None) -> LiveCall:
        """End a call: hang up, cancel the ringing, or reject an incoming call."""
        live = self.get(call_id) if call_id is not None else self._latest_live()
        if live.state is CallState.INCOMING:
            self._local(live, Reject())
        elif live.state is not CallState.ENDED:
            self._local(live, Hangup())
        return live

    def hold(self, call_id: bytes, on: bool) -> LiveCall:
        """Put a call on hold (no media sent) or resume it."""
        live = self.get(call_id)
        held = live.state in (CallState.HELD, CallState.BOTH_HELD)
        if live.state not in IN_CALL or held == on:
            if live.state not in IN_CALL:
                raise CallError(f"call {live.hex_id} is {STATE_NAMES[live.state]}, not in progress")
            return live
        self._local(live, Hold() if on else Resume())
        return live

    def get(self, call_id: bytes) -> LiveCall:
        """The call with this id (NoSuchCall if unknown)."""
        live = self.calls.get(call_id)
        if live is None:
            raise NoSuchCall(f"no call {call_id.hex()}")
        return live

    def _latest_live(self) -> LiveCall:
        for live in reversed(self.calls.values()):
            if live.state is not CallState.ENDED:
                return live
        raise NoSuchCall("no call in progress")

    def busy(self) -> bool:
        """True while this device is in a call (an invite is then declined busy)."""
        return any(
            c.state in (*IN_CALL, CallState.INVITING, CallState.RINGING)
            for c in self.calls.values()
        )

    # ------------------------------------------------------------ signals from peers

    def _on_signal(self, path: PeerPath, message: Message) -> None:
        if isinstance(message, CallInvite):
            self._on_invite(path, message)
            return
        call_id = getattr(message, "call_id", b"")
        live = self.calls.get(call_id)
        if live is None or live.peer != path.user:
            self.dropped["unknown-call"] += 1
            return
        try:
            self._dispatch(live, path, message)
        except RemoteProtocolError:
            self.dropped[f"unexpected:{message.NAME}"] += 1

    def _dispatch(self, live: LiveCall, path: PeerPath, message: Message) -> None:
        device = path.device_id.hex()
        fork = live.fork
        if fork is not None and not isinstance(message, CallHangup | CallHold):
            self._fork_signal(live, fork, device, path, message)
        elif not self._from_call_path(live, path):
            self.dropped["wrong-device"] += 1
        elif isinstance(message, CallCancel):
            reason = message.reason
            self._remote(
                live, AnsweredElsewhere() if reason == "answered-elsewhere" else Cancelled()
            )
        elif isinstance(message, CallHangup):
            self._remote(live, HungUp())
        elif isinstance(message, CallHold):
            self._remote(live, HeldByPeer() if message.on else ResumedByPeer())
        else:
            self.dropped[f"unexpected:{message.NAME}"] += 1

    def _from_call_path(self, live: LiveCall, path: PeerPath) -> bool:
        return live.path is path

    def _fork_signal(
        self, live: LiveCall, fork: Fork, device: str, path: PeerPath, message: Message
    ) -> None:
        """Ringing, answers and declines from callee devices go through the fork."""
        if isinstance(message, CallRinging):
            result = fork.ringing(device)
        elif isinstance(message, CallAccept):
            result = fork.accepted(device)
            if device in result.cancel:  # answered after another device won
                self._send(path, CallHangup(call_id=live.call_id, reason="answered-elsewhere"))
                return
            live.path = path
        elif isinstance(message, CallDecline):
            result = fork.declined(device, busy=bool(message.busy))
        else:
            self.dropped[f"unexpected:{message.NAME}"] += 1
            return
        self._apply_fork(live, result)

    def _apply_fork(self, live: LiveCall, result: ForkResult) -> None:
        winner = live.fork.winner if live.fork is not None else None
        reason = "answered-elsewhere" if winner is not None else "hangup"
        for device in result.cancel:
            path = live.legs.get(device)
            if path is not None:
                self._send(path, CallCancel(call_id=live.call_id, reason=reason))
        if result.call_event is not None:
            self._remote(live, result.call_event)

    def _on_invite(self, path: PeerPath, invite: CallInvite) -> None:
        if invite.call_id in self.calls or len(invite.call_id) != CALL_ID_SIZE:
            self.dropped["duplicate-invite" if invite.call_id in self.calls else "bad-id"] += 1
            return
        ringing = sum(1 for c in self.calls.values() if c.state is CallState.INCOMING)
        if CODEC_OPUS not in invite.codecs:
            self._send(path, CallDecline(call_id=invite.call_id, reason="no common codec"))
            return
        busy = self.busy() or self._held_elsewhere(path.user)
        if busy or ringing >= self.config.max_ringing:
            self._send(path, CallDecline(call_id=invite.call_id, busy=1, reason="busy"))
            return
        live = LiveCall(
            invite.call_id, path.user, Call(CallRole.CALLEE, self.config.timeouts), time.time()
        )
        live.path = path
        self._remember(live)
        self._remote(live, Invited())
        self._send(path, CallRinging(call_id=invite.call_id))
        with contextlib.suppress(asyncio.QueueFull):
            self.incoming.put_nowait(live)
        self._watch(live)

    # ------------------------------------------------------------ moving the state machine

    def _local(self, live: LiveCall, event: Event) -> None:
        """A local event: move the call and tell the peer what it needs to know."""
        before = live.state
        try:
            live.call.handle(event, time.monotonic())
        except CallProtocolError as exc:
            raise CallError(f"call {live.hex_id}: {exc}") from None
        self._tell_peer(live, before, event)
        self._changed(live, before)

    def _remote(self, live: LiveCall, event: Event) -> None:
        before = live.state
        live.call.handle(event, time.monotonic())
        self._changed(live, before)

    def _tell_peer(self, live: LiveCall, before: CallState, event: Event) -> None:
        call_id = live.call_id
        if isinstance(event, Reject):
            self._send_call(live, CallDecline(call_id=call_id, reason="rejected"))
        elif isinstance(event, Hangup | Fail) and before in IN_CALL:
            self._send_call(live, CallHangup(call_id=call_id, reason=_reason(event)))
        elif isinstance(event, Hangup | Fail) and live.fork is not None:
            self._apply_fork(live, live.fork.cancel_all())
        elif isinstance(event, Hold | Resume):
            self._send_call(live, CallHold(call_id=call_id, on=int(isinstance(event, Hold))))
            if live.stream is not None:
                live.stream.hold(isinstance(event, Hold))

    def _send_call(self, live: LiveCall, message: Message) -> None:
        if live.path is not None:
            self._send(live.path, message)

    def _send(self, path: PeerPath, message: Message) -> bool:
        """Send a signal now; one that ends a call waits for a path being re-established."""
        try:
            path.notify(message)
        except EndpointError as exc:
            if isinstance(message, CallHangup | CallCancel | CallDecline):
                self._spawn(self._send_when_back(path, message))
                return True
            self.dropped["unsent-signal"] += 1
            log.info("could not send %s to %s: %s", message.NAME, path.user, exc)
            return False
        return True

    async def _send_when_back(self, path: PeerPath, message: Message) -> None:
        try:
            connection = await path.wait_live(self.config.resend_s)
            connection.notify(message)
        except EndpointError as exc:
            self.dropped["unsent-signal"] += 1
            log.info("could not send %s to %s: %s", message.NAME, path.user, exc)

    def _changed(self, live: LiveCall, before: CallState) -> None:
        state = live.state
        if state is before:
            return
        if state is CallState.ACTIVE and before in (CallState.INVITING, CallState.RINGING):
            self._start_media(live)
        if state is CallState.ENDED:
            self._finish(live)
        if self.on_change is not None:
            self.on_change(self.describe(live))

    # ------------------------------------------------------------ audio and media

    def _open_audio(self, live: LiveCall) -> None:
        """Open the source and sink now, so a bad file fails the request, not the call."""
        audio = open_call_audio(live.play, live.record, devices=self.config.devices)
        live.source, live.sink = audio.source, audio.sink
        if audio.note is not None:
            live.audio_note = audio.note

    def _start_media(self, live: LiveCall) -> None:
        path = live.path
        if path is None or live.stream is not None:
            return
        live.answered_at = time.time()
        stream = VoiceStream(self.config.voice)
        live.stream = stream
        loop = asyncio.get_running_loop()
        live.last_heard = loop.time()

        def on_datagram(data: bytes) -> None:
            now = loop.time()
            live.longest_gap = max(live.longest_gap, now - live.last_heard)
            live.last_heard = now
            stream.receive_datagram(data, now)

        path.on_datagram = on_datagram
        live.tasks.append(asyncio.ensure_future(self._media(live, stream, path)))

    async def _media(self, live: LiveCall, stream: VoiceStream, path: PeerPath) -> None:
        """The 20 ms loop: capture, send, play out, until the call ends."""
        loop = asyncio.get_running_loop()
        clock = FrameClock(loop.time())
        while live.state in IN_CALL:
            for at in clock.due(loop.time()):
                self._tick(live, stream, at)
            self._flush(live, stream, path)
            self._check_stall(live, loop.time())
            if live.seconds is not None and loop.time() - clock.start >= live.seconds:
                self._local(live, Hangup())
                break
            await asyncio.sleep(clock.sleep_for(loop.time()))

    def _tick(self, live: LiveCall, stream: VoiceStream, now: float) -> None:
        source, sink = live.source, live.sink
        frame = source.read_frame() if source is not None else None
        if frame is None:
            frame = SILENCE
        stream.send_audio(frame, now)
        timer = stream.get_timer()
        if timer is not None and timer <= now:
            stream.handle_timer(now)
        played = stream.playout(now)
        if sink is not None:
            sink.write_frame(played)

    def _flush(self, live: LiveCall, stream: VoiceStream, path: PeerPath) -> None:
        for datagram in stream.datagrams_to_send():
            try:
                path.send_datagram(datagram)
            except EndpointError:
                live.media_unsent += 1

    def _check_stall(self, live: LiveCall, now: float) -> None:
        """Nothing from the peer for ``stall_s`` while it should talk: check the path."""
        if live.state in (CallState.REMOTE_HELD, CallState.BOTH_HELD):
            live.last_heard, live.stall_checks = now, 0
            return
        silent = now - live.last_heard
        if silent < self.config.stall_s * (1 + live.stall_checks):
            if silent < self.config.stall_s:
                live.stall_checks = 0
            return
        live.stalls += live.stall_checks == 0  # a new stall
        live.stall_checks += 1  # checks again after 2, 3, ... times stall_s of silence
        assert live.path is not None
        self.paths.check_soon(live.path)
        self.paths.session.check_home_soon()

    def _finish(self, live: LiveCall) -> None:
        """The call ended: stop media, close audio, keep the statistics."""
        live.ended_at = time.time()
        live.ended.set()
        if live.stream is not None:
            live.final = live.stream.stats(asyncio.get_running_loop().time()).to_json()
        if live.path is not None:
            self.release_media(live.path)
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
                    log.warning("call %s: %s", live.hex_id, live.audio_note)
        self.forget_ended()

    # ------------------------------------------------------------ timers and bookkeeping

    def _watch(self, live: LiveCall) -> None:
        live.tasks.append(asyncio.ensure_future(self._watchdog(live)))

    async def _watchdog(self, live: LiveCall) -> None:
        """Fire the state machine's timers (no ring-back, no answer, no media)."""
        while live.state is not CallState.ENDED:
            timer = live.call.get_timer()
            if timer is not None and live.stream is not None and timer[1] == "media":
                heard = time.monotonic() - (asyncio.get_running_loop().time() - live.last_heard)
                live.call.note_activity(heard)
                timer = live.call.get_timer()
            if timer is not None and time.monotonic() >= timer[0]:
                before = live.state
                if live.fork is not None and before in (CallState.INVITING, CallState.RINGING):
                    self._apply_fork(live, live.fork.cancel_all())
                live.call.handle_timer(time.monotonic())
                self._changed(live, before)
                continue
            await asyncio.sleep(0.1)

    def _remember(self, live: LiveCall) -> None:
        self.calls[live.call_id] = live
        self.forget_ended()

    def forget_ended(self) -> None:
        """Drop calls that ended more than ``ended_kept_s`` ago (and the oldest
        ended ones beyond ``max_ended``)."""
        now = time.time()
        ended = [c for c in self.calls.values() if c.ended_at is not None]
        for live in ended[: max(0, len(ended) - self.config.max_ended)]:
            del self.calls[live.call_id]
        for live in ended:
            if live.ended_at is not None and now - live.ended_at > self.config.ended_kept_s:
                self.calls.pop(live.call_id, None)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ reports

    def describe(self, live: LiveCall) -> dict[str, Any]:
        """The call document of the API and ``hopline calls``."""
        stats = live.final
        if stats is None and live.stream is not None:
            stats = live.stream.stats(asyncio.get_running_loop().time()).to_json()
        stats = stats or {}
        path = live.path
        end = live.ended_at or time.time()
        reason = live.call.end_reason
        return {
            "call_id": live.hex_id,
            "peer": live.peer,
            "direction": "outgoing" if live.call.role is CallRole.CALLER else "incoming",
            "state": STATE_NAMES[live.state],
            "end_reason": reason.value.replace("_", "-") if reason is not None else None,
            "started_at": live.created_at,
            "answered_at": live.answered_at,
            "duration_s": round(end - live.answered_at, 2) if live.answered_at else 0.0,
            "path": (path.kind or None) if path is not None else None,
            "codec": CODEC_NAME,
            "packets_sent": stats.get("packets_sent", 0),
            "packets_received": stats.get("packets_received", 0),
            "loss": stats.get("loss", 0.0),
            "jitter_ms": stats.get("jitter_ms", 0.0),
            "rtt_ms": stats.get("rtt_ms"),
            "mos_estimate": stats.get("mos_estimate"),
            "bitrate": stats.get("bitrate"),
            "jb_delay_ms": stats.get("jb_delay_ms"),
            "held": live.state in (CallState.HELD, CallState.BOTH_HELD),
            "remote_held": live.state in (CallState.REMOTE_HELD, CallState.BOTH_HELD),
            "play": live.play,
            "record": live.record,
            "audio": live.audio_note,
            "path_changes": len(path.changes) if path is not None else 0,
            "stalls": live.stalls,
            "longest_gap_ms": round(live.longest_gap * 1000, 1),
            "media": stats,
        }


def _reason(event: Event) -> str:
    if isinstance(event, Fail):
        return (event.detail or "failed")[:MAX_REASON]
    return "hangup"

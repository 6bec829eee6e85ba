"""A secure, reliable connection to one peer, as a sans-I/O state machine.

:class:`Connection` stacks the layers for one remote node:

1. the Noise XX handshake (:class:`~hopline.crypto.SecureSession`), carried in
   handshake datagrams (:mod:`hopline.connection.handshake`) and retransmitted
   until it completes; each side's certificate travels in its encrypted
   handshake payload and is checked against the pinned login-server key and
   what the caller expects (role, name, the static key Noise proved);
2. sealed transport datagrams, each holding one link packet; and *channel
   datagrams*, which carry a relayed datagram (already sealed end to end)
   authenticated but not encrypted again, outside the link
   (:meth:`Connection.send_channel`, docs/protocol.md "Relay");
3. the link (:class:`~hopline.transport.Link`): fragmentation, the reliable
   channel for messages and the unreliable one for media;
4. messages (:mod:`hopline.wire`), with requests matched to replies by
   request id and timed out by deadline.

It follows aioquic's shape: ``receive_datagram(data, now)``,
``datagrams_to_send(now)``, ``get_timer()``, ``handle_timer(now)`` and
``next_event()``. It never touches a socket or a clock. Every datagram or
message it refuses is dropped and counted in :attr:`Connection.dropped` under
a reason; nothing a peer sends makes it raise.

Handshake reliability: the initiator resends its init until a response
arrives; the responder resends its response until the finish arrives, and
also when sealed packets arrive before the finish (the finish was lost); the
initiator answers a repeated response with its finish again.

No amplification: until the finish proves the initiator's address, a
responder sends in all no more bytes than it received from that address
(the init and its repeats). The response is smaller than the padded init,
so a spoofed init gets one or two responses back at most, never more bytes
than it cost; the initiator's own retransmissions buy further resends.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from hopline.connection import handshake as hs
from hopline.connection.events import (
    ChannelDataReceived,
    Closed,
    ConnectionEvent,
    Established,
    MediaReceived,
    MessageReceived,
    PeerIdentity,
    ReplyReceived,
    RequestFailed,
    channel_data_frame,
)
from hopline.crypto import CryptoError, SecureSession
from hopline.crypto.noise import DHKeyPair
from hopline.crypto.session import CHANNEL_OVERHEAD, OVERHEAD, SessionConfig
from hopline.identity import CertificateError, CertificateVerifier, Role
from hopline.transport import Link, LinkConfig, SendQueueFull
from hopline.transport import link as link_events
from hopline.wire import Kind, Message, WireError, decode, decode_record, encode, encode_record

DATAGRAM_SIZE = 1200
MIN_DATAGRAM_SIZE = 1100
"""Smallest datagrams a connection may be told to build (:meth:`Connection.set_datagram_size`):
a connection carried inside another one, as through a relay, leaves room for the carrier."""
CLOSE_REFUSED = 0x52  # link close code: "your certificate was refused"
CHANNEL_DATAGRAM_MIN = 512
"""Relayed payloads this large travel as channel datagrams (two of them could not share
one datagram anyway); smaller ones as link frames, which share sealed datagrams."""


def default_link_config() -> LinkConfig:
    """Link settings that leave room for the seal inside one 1200-byte datagram
    (and allow building them as small as :data:`MIN_DATAGRAM_SIZE`)."""
    return LinkConfig(mtu=DATAGRAM_SIZE - OVERHEAD, min_send_mtu=MIN_DATAGRAM_SIZE - OVERHEAD)


class ConnectionClosedError(RuntimeError):
    """A send on a connection that is already closed (a local error)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(f"connection closed ({reason})")
        self.reason = reason


@dataclass(frozen=True)
class Expectation:
    """What the other end must prove.

    ``role``/``subject``/``static_key`` are checked against the peer's
    certificate; ``anonymous_ok`` lets a peer without a certificate in (the
    login server accepts clients that have not logged in yet).
    """

    role: Role | None = None
    subject: str | None = None
    static_key: bytes | None = None
    anonymous_ok: bool = False


@dataclass(frozen=True)
class ConnectionConfig:
    """Timers and limits of a connection."""

    handshake_rto: float = 0.25
    handshake_timeout: float = 10.0
    request_timeout: float = 10.0
    max_pending_requests: int = 4096
    link: LinkConfig = field(default_factory=default_link_config)
    session: SessionConfig = field(default_factory=SessionConfig)


class State(Enum):
    """Where a connection is in its life."""

    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass
class _Handshake:
    last_sent: bytes = b""
    last_received: bytes = b""  # the peer's last handshake datagram we processed
    resend_at: float = 0.0
    resent_at: float = float("-inf")
    interval: float = 0.25
    deadline: float = 0.0
    retransmissions: int = 0
    received_bytes: int = 0  # handshake bytes from the peer (the responder's budget)
    sent_bytes: int = 0  # handshake bytes sent to it


class Connection:
    """One secure link to a peer (see the module docstring)."""

    def __init__(
        self,
        *,
        initiator: bool,
        static: DHKeyPair,
        certificate: bytes | None,
        verifier: CertificateVerifier | None,
        expect: Expectation,
        now: float,
        config: ConnectionConfig | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config or ConnectionConfig()
        self.initiator = initiator
        self.expect = expect
        self.state = State.HANDSHAKING
        self.peer: PeerIdentity | None = None
        self.dropped: Counter[str] = Counter()
        self.close_reason: str | None = None
        self._certificate = certificate
        self._verifier = verifier
        self._random = random_bytes
        self._link = Link(self.config.link)
        self._events: deque[ConnectionEvent] = deque()
        self._out: list[bytes] = []
        self._channel_bytes = 0  # channel datagrams in _out (bounded like the link's queue)
        self._pending: dict[int, float] = {}
        self._next_request_id = 1
        self._hs = _Handshake(
            interval=self.config.handshake_rto, deadline=now + self.config.handshake_timeout
        )
        if initiator:
            self._session = SecureSession.initiate(static, config=self.config.session)
            noise = self._session.write_handshake(b"", now=now)
            padding = random_bytes(hs.padding_size(noise))
            self._send_handshake(hs.pack_init(noise, padding), now)
        else:
            self._session = SecureSession.respond(static, config=self.config.session)

    # ------------------------------------------------------------ accepting

    @classmethod
    def accept(
        cls,
        init: bytes,
        *,
        static: DHKeyPair,
        certificate: bytes | None,
        verifier: CertificateVerifier | None,
        expect: Expectation,
        now: float,
        config: ConnectionConfig | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> Connection:
        """A responder for a received init; raises FramingError/CryptoError if it is bad."""
        noise_message = hs.unpack_init(init)
        conn = cls(
            initiator=False,
            static=static,
            certificate=certificate,
            verifier=verifier,
            expect=expect,
            now=now,
            config=config,
            random_bytes=random_bytes,
        )
        if conn._session.read_handshake(noise_message, now=now):
            raise hs.FramingError("an init carries no payload")
        conn._hs.last_received = init
        conn._hs.received_bytes = len(init)
        response = conn._session.write_handshake(conn._own_payload(), now=now)
        if len(response) > len(init):
            raise hs.FramingError("response would be larger than the init")
        conn._send_handshake(response, now)
        return conn

    # ------------------------------------------------------------ public API

    @property
    def established(self) -> bool:
        """Whether the handshake completed and the peer is verified."""
        return self.state is State.ESTABLISHED

    @property
    def sent_init(self) -> bytes | None:
        """Our init, while we are an initiator still waiting for the response."""
        if self.initiator and self.state is State.HANDSHAKING:
            return self._hs.last_sent
        return None

    @property
    def link(self) -> Link:
        """The link under this connection (for statistics)."""
        return self._link

    def send(self, message: Message, now: float) -> None:
        """Send a message (request, reply or notice) on the reliable channel."""
        self._check_open()
        self._link.send(encode(message), now, reliable=True)

    @property
    def datagram_size(self) -> int:
        """The largest datagram this connection builds now, seal included."""
        return self._link.send_mtu + OVERHEAD

    def set_datagram_size(self, size: int) -> None:
        """Build datagrams of at most ``size`` bytes, seal included, from now on.

        The peer accepts up to the agreed maximum whatever this end builds, so
        nothing is negotiated. Raises :class:`~hopline.transport.ConfigError`
        outside :data:`MIN_DATAGRAM_SIZE` .. the link's ``mtu`` plus the seal.
        """
        self._link.set_send_mtu(size - OVERHEAD)

    def send_media(self, data: bytes, now: float) -> None:
        """Send a datagram on the unreliable channel."""
        self._check_open()
        self._link.send(data, now, reliable=False)

    def send_channel(self, channel: int, payload: bytes, now: float) -> None:
        """Send a relayed datagram on ``channel`` (a relay's channel-data frame).

        A payload of :data:`CHANNEL_DATAGRAM_MIN` bytes or more leaves as one
        channel datagram once established: authenticated but not encrypted
        again, as it is sealed end to end already. Smaller payloads (voice)
        go as frames on the unreliable channel, where the frames of one loop
        turn share sealed datagrams; so do payloads sent before the handshake
        ends or too large for one datagram. The peer gets a
        :class:`ChannelDataReceived` for a channel datagram, a
        :class:`MediaReceived` with the frame otherwise. Raises
        :class:`~hopline.transport.SendQueueFull` when the unsent datagrams
        reach the link's send-queue budget.
        """
        self._check_open()
        if not 0 <= channel <= 0xFFFF:
            raise ValueError(f"channel {channel} is not 16 bits")
        size = CHANNEL_OVERHEAD + len(payload)
        if (
            self.state is not State.ESTABLISHED
            or size > DATAGRAM_SIZE
            or len(payload) < CHANNEL_DATAGRAM_MIN
        ):
            self._link.send(channel_data_frame(channel, payload), now, reliable=False)
            return
        if self._channel_bytes + size > self.config.link.max_send_queue_bytes:
            raise SendQueueFull(f"{self._channel_bytes} bytes of channel datagrams unsent")
        self._out.append(self._session.seal_channel(channel, payload, now))
        self._channel_bytes += size

    def _check_open(self) -> None:
        if self.state is State.CLOSED:
            raise ConnectionClosedError(self.close_reason)

    def request(self, message: Message, now: float, timeout: float | None = None) -> int:
        """Send ``message`` as a request; return its request id.

        The reply arrives as :class:`ReplyReceived`, or :class:`RequestFailed`
        after ``timeout`` seconds.
        """
        if len(self._pending) >= self.config.max_pending_requests:
            raise OverflowError("too many requests waiting for replies")
        request_id = self._next_request_id
        self._next_request_id = request_id % 0xFFFFFFFF + 1
        self.send(dataclasses.replace(message, request_id=request_id), now)
        self._pending[request_id] = now + (timeout or self.config.request_timeout)
        return request_id

    def reply(self, request: Message, reply: Message, now: float) -> None:
        """Send ``reply`` with the request id of ``request``."""
        self.send(dataclasses.replace(reply, request_id=request.request_id), now)

    def close(self, now: float, reason: str = "closed") -> None:
        """Close the link (tells the peer) and fail pending requests."""
        if self.state is State.ESTABLISHED:
            self._link.close(now)
            self._flush_link(now)
        self._finish(reason)

    def next_event(self) -> ConnectionEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------ datagrams in

    def receive_datagram(self, data: bytes, now: float) -> bool:
        """Process one datagram from the peer's address.

        Returns False if the datagram is not this connection's: a sealed
        packet that does not open (counted here), or a new init (a peer that
        restarted, or someone spoofing one); the caller decides what to do.
        """
        if self.state is State.CLOSED:
            self.dropped["closed"] += 1
            return False
        if self.state is State.ESTABLISHED:
            return self._open(data, now) or self._on_repeat(data, now)
        if self._on_repeat(data, now):
            return True
        if hs.looks_like_init(data):
            return False  # another init from this address: a restart or a simultaneous open
        if self.initiator:
            self._on_response(data, now)
            return True
        self._on_finish(data, now)
        return True

    def _open(self, data: bytes, now: float) -> bool:
        try:
            channel, plain = self._session.unseal(data, now)
        except CryptoError as exc:
            if data != self._hs.last_received:
                self.dropped[f"crypto:{exc.reason}"] += 1
            return False
        if channel is not None:
            self._events.append(ChannelDataReceived(channel, plain))
            return True
        self._link.receive_datagram(plain, now)
        self._drain_link(now)
        return True

    def _on_repeat(self, data: bytes, now: float) -> bool:
        """An exact repeat of the peer's last handshake datagram: our answer was lost."""
        if not self._hs.last_received or data != self._hs.last_received:
            return False
        self._hs.received_bytes += len(data)
        if self.initiator or self.state is State.HANDSHAKING:
            self._resend_handshake(now)  # init -> response again; response -> finish again
        else:
            self.dropped["handshake-duplicate"] += 1
        return True

    def _on_response(self, noise: bytes, now: float) -> None:
        payload = self._read_noise(noise, now)
        if payload is None or not self._verify_peer(payload, now):
            return
        self._hs.last_received = noise
        finish = self._session.write_handshake(self._own_payload(), now=now)
        self._send_handshake(finish, now)
        self._hs.resend_at = float("inf")  # resent only when the response repeats
        self._establish(now)

    def _on_finish(self, noise: bytes, now: float) -> None:
        try:
            payload = self._session.read_handshake(noise, now=now)
        except CryptoError:
            # not message 3: sealed data sent after a finish that was lost
            self.dropped["early"] += 1
            self._hs.received_bytes += len(noise)
            self._resend_handshake(now)
            return
        self._hs.last_received = noise
        if self._verify_peer(payload, now):
            self._establish(now)
        else:
            self._send_refusal(now)

    def _send_refusal(self, now: float) -> None:
        """Tell a refused initiator, sealed with the session's keys so nobody can forge it."""
        self._link.close(now, code=CLOSE_REFUSED)
        for packet in self._link.datagrams_to_send(now):
            self._out.append(self._session.seal(packet, now))

    def _read_noise(self, noise: bytes, now: float) -> bytes | None:
        try:
            return self._session.read_handshake(noise, now=now)
        except CryptoError as exc:
            self.dropped[f"handshake:{exc.reason}"] += 1
            return None

    # ------------------------------------------------------------ identity

    def _own_payload(self) -> bytes:
        return encode_record(hs.HandshakePayload(certificate=self._certificate))

    def _verify_peer(self, payload: bytes, now: float) -> bool:
        remote = self._session.remote_static
        assert remote is not None  # a completed read of message 2 or 3 proved it
        try:
            certificate = decode_record(hs.HandshakePayload, payload).certificate
        except WireError as exc:
            return self._refuse(f"payload:{exc.reason}")
        if certificate is None:
            if not self.expect.anonymous_ok:
                return self._refuse("certificate:missing")
            self.peer = PeerIdentity(remote, None)
            return True
        return self._verify_certificate(certificate, remote, now)

    def _verify_certificate(self, certificate: bytes, remote: bytes, now: float) -> bool:
        if self._verifier is None:
            return self._refuse("certificate:no-verifier")
        try:
            cert = self._verifier.verify(
                certificate,
                now,
                role=self.expect.role,
                subject=self.expect.subject,
                static_key=self.expect.static_key or remote,
            )
        except CertificateError as exc:
            return self._refuse(f"certificate:{exc.reason}")
        if not hmac.compare_digest(cert.body.static_key, remote):
            return self._refuse("certificate:wrong-key")
        self.peer = PeerIdentity(remote, cert)
        return True

    def _refuse(self, reason: str) -> bool:
        self.dropped[reason] += 1
        self._finish(reason)
        return False

    def _establish(self, now: float) -> None:
        assert self.peer is not None
        self.state = State.ESTABLISHED
        self._events.append(Established(self.peer))
        self._drain_link(now)

    # ------------------------------------------------------------ datagrams out

    def _send_handshake(self, datagram: bytes, now: float) -> None:
        self._hs.last_sent = datagram
        self._hs.resend_at = now + self._hs.interval
        self._hs.sent_bytes += len(datagram)
        self._out.append(datagram)

    def _resend_handshake(self, now: float) -> None:
        """Resend our last handshake datagram because the peer showed it was lost.

        Rate-limited to one per half handshake RTO, so a flood of repeated
        datagrams from the peer's address cannot make us send a flood back.
        """
        if self._hs.last_sent and now - self._hs.resent_at >= self.config.handshake_rto / 2:
            self._retransmit(now)

    def _retransmit(self, now: float) -> None:
        hs_state = self._hs
        unvalidated = not self.initiator and self.state is State.HANDSHAKING
        if unvalidated and hs_state.sent_bytes + len(hs_state.last_sent) > hs_state.received_bytes:
            self.dropped["handshake-amplification"] += 1  # wait for the peer to repeat
            return
        hs_state.retransmissions += 1
        hs_state.resent_at = now
        hs_state.sent_bytes += len(hs_state.last_sent)
        self._out.append(hs_state.last_sent)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Everything to put on the wire now, in order."""
        if self.state is State.ESTABLISHED:
            self._flush_link(now)
        out, self._out = self._out, []
        self._channel_bytes = 0
        return out

    def _flush_link(self, now: float) -> None:
        for packet in self._link.datagrams_to_send(now):
            self._out.append(self._session.seal(packet, now))

    # ------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """The next deadline, or None."""
        if self.state is State.CLOSED:
            return None
        deadlines = list(self._pending.values())
        if self.state is State.HANDSHAKING:
            deadlines += [self._hs.resend_at, self._hs.deadline]
        else:
            link_timer = self._link.get_timer()
            if link_timer is not None:
                deadlines.append(link_timer)
        finite = [d for d in deadlines if d != float("inf")]
        return min(finite) if finite else None

    def handle_timer(self, now: float) -> None:
        """Run whatever is due at ``now``."""
        if self.state is State.HANDSHAKING:
            if now >= self._hs.deadline:
                self._finish("handshake-timeout")
                return
            if now >= self._hs.resend_at:
                self._hs.interval = min(self._hs.interval * 2, 2.0)
                self._hs.resend_at = now + self._hs.interval
                self._retransmit(now)
        elif self.state is State.ESTABLISHED:
            self._link.handle_timer(now)
            self._drain_link(now)
        for request_id, deadline in list(self._pending.items()):
            if now >= deadline:
                del self._pending[request_id]
                self._events.append(RequestFailed(request_id, "timeout"))

    # ------------------------------------------------------------ link events

    def _drain_link(self, now: float) -> None:
        while (event := self._link.next_event()) is not None:
            if isinstance(event, link_events.MessageReceived):
                self._on_link_message(event.data, event.reliable)
            elif isinstance(event, link_events.PeerUnreachable):
                self._finish("unreachable")
            elif isinstance(event, link_events.PeerClosed):
                self._finish("refused" if event.code == CLOSE_REFUSED else "peer-closed")

    def _on_link_message(self, data: bytes, reliable: bool) -> None:
        if not reliable:
            self._events.append(MediaReceived(data))
            return
        try:
            message = decode(data)
        except WireError as exc:
            self.dropped[f"wire:{exc.reason}"] += 1
            return
        if message.KIND in (Kind.REPLY, Kind.ERROR):
            if self._pending.pop(message.request_id, None) is None:
                self.dropped["unexpected-reply"] += 1
                return
            self._events.append(ReplyReceived(message.request_id, message))
        else:
            self._events.append(MessageReceived(message))

    def _finish(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        for request_id in self._pending:
            self._events.append(RequestFailed(request_id, "closed"))
        self._pending.clear()
        self._events.append(Closed(reason))

"""``SecureSession``: a sans-I/O authenticated encrypted session over datagrams.

One ``SecureSession`` protects one link (client <-> login server, client <->
supernode, supernode <-> supernode, peer <-> peer). It has two phases.

Handshake
---------
A Noise handshake (``XX`` by default; ``IK`` -- or ``XK`` -- when the
initiator already knows the responder's static key) driven by
:meth:`SecureSession.write_handshake` / :meth:`SecureSession.read_handshake`.
The caller moves the returned bytes; when :attr:`SecureSession.is_established`
turns true, :attr:`SecureSession.result` holds the peer's static key, the
peer's handshake payloads (later: its certificate) and the handshake hash
(for channel binding). ``read_handshake`` is atomic: a rejected message
leaves the handshake exactly as it was.

A payload that Noise would send in clear (XX's first message) is refused:
session payloads are always encrypted. Their protection follows the
pattern (Noise spec section 7.7): in XX the responder's payload (message 2)
is encrypted to a not-yet-authenticated initiator and the initiator's
(message 3) is fully protected; in IK the initiator's first payload is
"0-RTT": encrypted to the responder's static key, but not forward-secret
and replayable, so a responder must not take it as proof of freshness.

The one deviation from plain Noise on the wire: the top bit of every
ephemeral public key is randomised by the sender and cleared by the
receiver (X25519 ignores that bit, RFC 7748 section 5), so not even that
bit is fixed; Noise itself, including the handshake hash, sees the
canonical key. (Public keys remain distinguishable from random bytes by a
curve-membership test; hiding that needs Elligator, which ``cryptography``
does not offer.)

Transport packets
-----------------
Datagrams are lost and reordered, so Noise's implicit nonces cannot be used.
Each packet carries an explicit counter::

    0       8                                   8+len(plaintext)+16
    +-------+-----------------------------------+
    | HDR   | AEAD ciphertext || 16-byte tag    |
    +-------+-----------------------------------+

    HDR (before protection) = 64-bit big-endian integer
        bit  63      form: 0 = sealed datagram (this picture), 1 = channel datagram
        bits 62..56  key epoch, modulo 128 (0 after the handshake, +1 per rekey)
        bits 55..0   packet counter: 0, 1, 2, ... per direction, never reset

* AEAD nonce: the counter in Noise's layout for the cipher (4 zero bytes +
  64-bit counter, little-endian for ChaChaPoly, big-endian for AESGCM).
* AEAD associated data: the 8 unprotected header bytes, so counter and epoch
  are authenticated.
* Header protection (after RFC 9001 section 5.4): ``sample`` = the first 16
  bytes of the ciphertext (always present: the tag alone is 16 bytes);
  ``mask`` = the first 8 bytes of ``AES-256-ECB(hp_key, sample)``, one
  block, exactly RFC 9001 section 5.4.3, whatever the suite's AEAD. (QUIC
  pairs ChaCha20 header protection with ChaCha20-Poly1305; here one AES
  block costs about 0.13 us against 1.1 us for the ChaCha20 keystream
  through ``cryptography``, and header protection runs twice per datagram
  on each hop, so every suite uses AES, which ``cryptography`` always has);
  and the wire header is ``HDR XOR mask``. ``hp_key`` for each direction
  comes from the handshake's final chaining key as
  ``HKDF(ck, "hopline/v1 header protection", 2)`` (the Noise HKDF; Split()
  uses the empty string, so the outputs are independent of the transport
  keys); it is fixed for the session's life, like QUIC's.

So after the handshake there is no fixed plaintext byte: the header is masked
with a pseudo-random function of the ciphertext and the rest is ciphertext.

Receiving: unmask, check the replay window (cheap), pick the key for the
epoch, authenticate, and only then record the counter and follow a rekey.
A packet that fails any step raises a typed error and changes nothing.

Channel datagrams
-----------------
A relay's owner and its supernode pass datagrams that are already sealed end
to end (a peer connection running through the relay). Sealing them again
would only cost time, so they travel in a second form, selected by bit 63 of
the header::

    +-------+-------------------------------+--------------------------------+
    | HDR   | channel (2 B, encrypted)      | payload: the relayed datagram, |
    |       | || 16-byte tag                | authenticated, not encrypted   |
    +-------+-------------------------------+--------------------------------+

The AEAD encrypts the two channel bytes with the header and the payload as
associated data, under the same keys, counters, replay window and epochs as
sealed datagrams (the counter space is shared, so no nonce is ever used
twice). The sample for the header mask is again the 16 bytes after the
header. A channel datagram is thus as authenticated and replay-protected as
a sealed one, and costs one AEAD call that encrypts two bytes and MACs the
payload, instead of encrypting the payload a second time.

Rekeying
--------
Each direction rekeys independently with Noise's ``REKEY`` (``Rekey()``,
spec section 11.3) before sealing, once the current key has protected
``rekey_after_messages`` packets or is ``rekey_after_seconds`` old. The
receiver follows when an authenticated packet carries a newer epoch (up to
:data:`MAX_EPOCH_SKIP` ahead), and keeps the previous key for
``rekey_grace_seconds`` so reordered packets from before the rekey still
open. Counters are not reset at a rekey, so one replay window spans epochs.

Clocks are the caller's: every time-dependent call takes ``now`` in seconds
from a monotonic clock.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from hopline.crypto.errors import (
    DecryptError,
    HandshakeError,
    LocalCryptoError,
    NonceExhaustedError,
    SessionStateError,
    UnsupportedProtocolError,
)
from hopline.crypto.noise import (
    DHLEN,
    TAG_LEN,
    CipherState,
    DHKeyPair,
    HandshakePattern,
    HandshakeState,
    NoiseProtocol,
)
from hopline.crypto.replay import DEFAULT_WINDOW_SIZE, ReplayWindow

__all__ = [
    "DEFAULT_PROTOCOL",
    "HEADER_LEN",
    "MAX_EPOCH_SKIP",
    "CHANNEL_OVERHEAD",
    "OVERHEAD",
    "SESSION_PATTERNS",
    "HandshakeResult",
    "SecureSession",
    "SessionConfig",
]

DEFAULT_PROTOCOL: Final = "Noise_XX_25519_AESGCM_BLAKE2s"
"""AES-GCM: about a third of ChaCha20-Poly1305's cost per datagram on processors with AES
instructions (docs/protocol.md, "Secure sessions"); ChaChaPoly suites still work."""
SESSION_PATTERNS: Final = frozenset({"XX", "IK", "XK"})
"""Patterns that authenticate both sides; others are refused for sessions."""

HEADER_LEN: Final = 8
OVERHEAD: Final = HEADER_LEN + TAG_LEN
"""Bytes a transport packet adds to its plaintext."""
SAMPLE_LEN: Final = 16
COUNTER_BITS: Final = 56
COUNTER_MASK: Final = (1 << COUNTER_BITS) - 1
EPOCH_MODULUS: Final = 128
CHANNEL_FORM: Final = 1 << 63
"""Header bit 63: set on channel datagrams (see the module docs)."""
CHANNEL_LEN: Final = 2
CHANNEL_OVERHEAD: Final = HEADER_LEN + CHANNEL_LEN + TAG_LEN
"""Bytes a channel datagram adds to its payload."""
MAX_EPOCH_SKIP: Final = 4
"""How many epochs ahead of its current key a receiver will follow in one packet."""
HP_LABEL: Final = b"hopline/v1 header protection"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Tunables for a :class:`SecureSession` (both peers should agree on ``protocol``)."""

    protocol: str = DEFAULT_PROTOCOL
    prologue: bytes = b""
    replay_window: int = DEFAULT_WINDOW_SIZE
    rekey_after_messages: int = 2**20
    rekey_after_seconds: float = 3600.0
    rekey_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        parsed = NoiseProtocol.parse(self.protocol)
        if parsed.pattern.name not in SESSION_PATTERNS:
            raise UnsupportedProtocolError(f"sessions need XX, IK or XK, not {parsed.pattern.name}")
        if self.replay_window < 1 or self.rekey_after_messages < 1:
            raise LocalCryptoError("window and rekey interval must be >= 1", reason="bad_config")
        if self.rekey_after_seconds <= 0 or self.rekey_grace_seconds < 0:
            raise LocalCryptoError("rekey times must be positive", reason="bad_config")

    @property
    def noise(self) -> NoiseProtocol:
        """The parsed Noise protocol."""
        return NoiseProtocol.parse(self.protocol)


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake established.

    ``remote_payload`` is the last payload the peer sent: in XX and IK it is
    the one that travels with (or after) the peer's static key, encrypted and
    authenticated -- the place for a certificate.
    """

    remote_static: bytes
    remote_payloads: tuple[bytes, ...]
    handshake_hash: bytes
    protocol: str

    @property
    def remote_payload(self) -> bytes:
        """The peer's last handshake payload (empty if it sent none)."""
        return self.remote_payloads[-1] if self.remote_payloads else b""


# -- header protection ---------------------------------------------------------------


class _HeaderProtection:
    """RFC 9001 section 5.4.3: the mask is one AES-256-ECB block over the sample."""

    __slots__ = ("_ecb",)

    def __init__(self, key: bytes) -> None:
        # One-block ECB is AES used as a PRP on a pseudo-random sample, as in QUIC.
        self._ecb: CipherContext = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305

    def mask(self, sample: bytes) -> int:
        """The 8-byte mask (as an int) for a 16-byte ciphertext ``sample``."""
        return int.from_bytes(self._ecb.update(sample)[:HEADER_LEN], "big")

    def __repr__(self) -> str:
        return "_HeaderProtection(<secret>)"


# -- per-direction state ------------------------------------------------------------


@dataclass(slots=True)
class _Sender:
    cipher: CipherState
    hp: _HeaderProtection
    epoch_started: float
    epoch: int = 0
    next_counter: int = 0
    sent_in_epoch: int = 0


@dataclass(slots=True)
class _Receiver:
    current: CipherState
    hp: _HeaderProtection
    window: ReplayWindow
    epoch: int = 0
    previous: CipherState | None = None
    previous_expires: float = field(default=float("-inf"))


# -- the session ------------------------------------------------------------------


class SecureSession:
    """A sans-I/O Noise session: handshake driver, then ``seal``/``open`` of datagrams."""

    def __init__(
        self,
        *,
        initiator: bool,
        static: DHKeyPair,
        remote_static: bytes | None = None,
        config: SessionConfig | None = None,
        ephemeral: DHKeyPair | None = None,
    ) -> None:
        """Create one side. Prefer :meth:`initiate` / :meth:`respond`.

        For the initiator, ``remote_static`` is the responder's known static
        key: required by IK/XK, and for XX an optional *pin* checked (in
        constant time) when the responder reveals its key. ``ephemeral`` is
        for deterministic tests only.
        """
        self.config = config if config is not None else SessionConfig()
        self.is_initiator = initiator
        protocol = self.config.noise
        if not initiator and remote_static is not None:
            raise LocalCryptoError("a responder learns the remote key", reason="bad_config")
        known = remote_static if protocol.pattern.knows_remote_static(initiator) else None
        self._pinned = remote_static
        self._handshake: HandshakeState | None = HandshakeState(
            protocol,
            initiator=initiator,
            prologue=self.config.prologue,
            s=static,
            e=ephemeral,
            rs=known,
        )
        self._remote_payloads: list[bytes] = []
        self._result: HandshakeResult | None = None
        self._tx: _Sender | None = None
        self._rx: _Receiver | None = None

    @classmethod
    def initiate(
        cls,
        static: DHKeyPair,
        *,
        remote_static: bytes | None = None,
        config: SessionConfig | None = None,
    ) -> SecureSession:
        """The initiating side (it writes the first handshake message)."""
        return cls(initiator=True, static=static, remote_static=remote_static, config=config)

    @classmethod
    def respond(cls, static: DHKeyPair, *, config: SessionConfig | None = None) -> SecureSession:
        """The responding side (it reads the first handshake message)."""
        return cls(initiator=False, static=static, config=config)

    # -- handshake ---------------------------------------------------------------------

    @property
    def is_established(self) -> bool:
        """True once the handshake completed and transport packets may flow."""
        return self._result is not None

    @property
    def is_my_turn(self) -> bool:
        """True while the handshake waits for this side to :meth:`write_handshake`."""
        return self._handshake is not None and self._handshake.is_my_turn

    @property
    def result(self) -> HandshakeResult | None:
        """The :class:`HandshakeResult`, once established."""
        return self._result

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static key as soon as it is known (possibly mid-handshake)."""
        if self._result is not None:
            return self._result.remote_static
        return self._handshake.remote_static if self._handshake is not None else None

    def write_handshake(self, payload: bytes = b"", *, now: float) -> bytes:
        """The next handshake message to send, carrying ``payload``."""
        handshake = self._require_handshake()
        pattern, index = handshake.protocol.pattern, handshake.message_index
        if payload and not _payload_is_encrypted(pattern, index):
            raise LocalCryptoError(
                f"{pattern.name} message {index + 1} would carry its payload in clear",
                reason="cleartext_payload",
            )
        tokens = pattern.messages[index]
        message = handshake.write_message(payload)
        if tokens[0] == "e":
            message = _randomise_key_bit(message)
        self._maybe_finish(now)
        return message

    def read_handshake(self, message: bytes, *, now: float) -> bytes:
        """Process a received handshake message and return its payload.

        Raises :class:`HandshakeError` (state unchanged) if the message is
        malformed, fails authentication, or reveals a static key other than
        the pinned one.
        """
        handshake = self._require_handshake()
        if handshake.is_my_turn:
            raise SessionStateError("it is this side's turn to write", reason="out_of_turn")
        tokens = handshake.protocol.pattern.messages[handshake.message_index]
        if tokens[0] == "e" and len(message) >= DHLEN:
            message = _clear_key_bit(message)
        checkpoint = handshake.checkpoint()
        payload = handshake.read_message(bytes(message))
        if not self._pin_ok(handshake.remote_static):
            handshake.rollback(checkpoint)
            raise HandshakeError(
                "peer static key is not the pinned one", reason="unexpected_static"
            )
        self._remote_payloads.append(payload)
        self._maybe_finish(now)
        return payload

    def _require_handshake(self) -> HandshakeState:
        if self._handshake is None:
            raise SessionStateError("handshake already complete", reason="handshake_complete")
        return self._handshake

    def _pin_ok(self, remote: bytes | None) -> bool:
        if remote is None or self._pinned is None:
            return True
        return hmac.compare_digest(remote, self._pinned)

    def _maybe_finish(self, now: float) -> None:
        handshake = self._handshake
        if handshake is None or not handshake.is_complete:
            return
        initiator_to_responder, responder_to_initiator = handshake.split()
        hp_i2r, hp_r2i = handshake.derive_keys(HP_LABEL)
        if self.is_initiator:
            send, recv = initiator_to_responder, responder_to_initiator
            hp_send, hp_recv = hp_i2r, hp_r2i
        else:
            send, recv = responder_to_initiator, initiator_to_responder
            hp_send, hp_recv = hp_r2i, hp_i2r
        self._tx = _Sender(send, _HeaderProtection(hp_send), epoch_started=now)
        window = ReplayWindow(self.config.replay_window)
        self._rx = _Receiver(recv, _HeaderProtection(hp_recv), window)
        remote = handshake.remote_static
        if remote is None:  # unreachable: every session pattern transmits or pre-shares it
            raise SessionStateError("handshake ended without a remote key", reason="no_remote")
        self._result = HandshakeResult(
            remote, tuple(self._remote_payloads), handshake.handshake_hash, handshake.protocol.name
        )
        self._handshake = None  # drop ephemeral keys and the chaining key

    # -- transport ---------------------------------------------------------------------

    @property
    def send_epoch(self) -> int:
        """Number of rekeys of the sending direction so far."""
        return self._sender().epoch

    @property
    def receive_epoch(self) -> int:
        """Epoch of the newest key the receiving direction has authenticated."""
        return self._receiver().epoch

    def rekey(self, now: float) -> None:
        """Rekey the sending direction now (normally automatic)."""
        tx = self._sender()
        tx.cipher.rekey()
        tx.epoch += 1
        tx.sent_in_epoch = 0
        tx.epoch_started = now

    def seal(self, plaintext: bytes, now: float) -> bytes:
        """Encrypt one datagram: protected 8-byte header + ciphertext + tag."""
        tx, value = self._next_header(now, 0)
        header = value.to_bytes(HEADER_LEN, "big")
        ciphertext = tx.cipher.encrypt_with_nonce(value & COUNTER_MASK, header, plaintext)
        masked = value ^ tx.hp.mask(ciphertext[:SAMPLE_LEN])
        return masked.to_bytes(HEADER_LEN, "big") + ciphertext

    def seal_channel(self, channel: int, payload: bytes, now: float) -> bytes:
        """A channel datagram: ``payload`` (already sealed end to end) authenticated,
        with ``channel`` (0-65535) encrypted; see the module docs."""
        if not 0 <= channel <= 0xFFFF:
            raise LocalCryptoError(f"channel {channel} is not 16 bits", reason="bad_channel")
        tx, value = self._next_header(now, CHANNEL_FORM)
        header = value.to_bytes(HEADER_LEN, "big")
        secret = channel.to_bytes(CHANNEL_LEN, "big")
        sealed = tx.cipher.encrypt_with_nonce(value & COUNTER_MASK, header + payload, secret)
        masked = value ^ tx.hp.mask(sealed[:SAMPLE_LEN])
        return masked.to_bytes(HEADER_LEN, "big") + sealed + payload

    def _next_header(self, now: float, form: int) -> tuple[_Sender, int]:
        """Rekey if due, take the next counter: (sender, unprotected header value)."""
        tx = self._sender()
        cfg = self.config
        if tx.sent_in_epoch >= cfg.rekey_after_messages or (
            now - tx.epoch_started >= cfg.rekey_after_seconds
        ):
            self.rekey(now)
        counter = tx.next_counter
        if counter > COUNTER_MASK:
            raise NonceExhaustedError("packet counter exhausted; re-handshake")
        tx.next_counter += 1
        tx.sent_in_epoch += 1
        return tx, form | ((tx.epoch % EPOCH_MODULUS) << COUNTER_BITS) | counter

    def open(self, packet: bytes, now: float) -> bytes:
        """Authenticate and decrypt one sealed datagram.

        Raises :class:`DecryptError` (truncated, unknown/stale epoch, failed
        authentication, a channel datagram) or :class:`ReplayError`
        (replayed, too old); on any error the session state is unchanged.
        """
        return self._unseal(packet, now, channels=False)[1]

    def unseal(self, packet: bytes, now: float) -> tuple[int | None, bytes]:
        """Authenticate either form: ``(None, plaintext)`` for a sealed datagram,
        ``(channel, payload)`` for a channel datagram. Errors as :meth:`open`."""
        return self._unseal(packet, now, channels=True)

    def _unseal(self, packet: bytes, now: float, *, channels: bool) -> tuple[int | None, bytes]:
        rx = self._receiver()
        packet = bytes(packet)  # accept any bytes-like object
        if len(packet) < OVERHEAD:
            raise DecryptError("packet shorter than header + tag", reason="truncated")
        body = packet[HEADER_LEN:]
        value = int.from_bytes(packet[:HEADER_LEN], "big") ^ rx.hp.mask(body[:SAMPLE_LEN])
        counter = value & COUNTER_MASK
        rx.window.check(counter)
        step, keys = _select_key(rx, (value >> COUNTER_BITS) % EPOCH_MODULUS, now)
        header = value.to_bytes(HEADER_LEN, "big")
        if value & CHANNEL_FORM:
            if len(body) < CHANNEL_LEN + TAG_LEN:
                raise DecryptError("channel datagram too short", reason="truncated")
            sealed, payload = body[: CHANNEL_LEN + TAG_LEN], body[CHANNEL_LEN + TAG_LEN :]
            secret = keys[-1].decrypt_with_nonce(counter, header + payload, sealed)
            if not channels:
                raise DecryptError("a channel datagram, not a sealed one", reason="channel")
            channel: int | None = int.from_bytes(secret, "big")
        else:
            channel, payload = None, keys[-1].decrypt_with_nonce(counter, header, body)
        rx.window.update(counter)
        if step > 0:
            _advance(rx, step, keys, now + self.config.rekey_grace_seconds)
        return channel, payload

    def _sender(self) -> _Sender:
        if self._tx is None:
            raise SessionStateError("handshake not complete", reason="not_established")
        return self._tx

    def _receiver(self) -> _Receiver:
        if self._rx is None:
            raise SessionStateError("handshake not complete", reason="not_established")
        return self._rx

    def __repr__(self) -> str:
        role = "initiator" if self.is_initiator else "responder"
        state = "established" if self.is_established else "handshaking"
        return f"SecureSession({self.config.protocol}, {role}, {state})"


# -- helpers ------------------------------------------------------------------------


def _select_key(rx: _Receiver, epoch_field: int, now: float) -> tuple[int, list[CipherState]]:
    """Key for a packet's epoch, as (epoch step, key chain ending in that key).

    Step 0 is the current key, -1 the previous one (if still in its grace
    period), 1..MAX_EPOCH_SKIP keys derived ahead with REKEY. Never mutates.
    """
    step = (epoch_field - rx.epoch) % EPOCH_MODULUS
    if step == 0:
        return 0, [rx.current]
    if step == EPOCH_MODULUS - 1:
        if rx.previous is None or now > rx.previous_expires:
            raise DecryptError("packet from an expired key epoch", reason="stale_epoch")
        return -1, [rx.previous]
    if step > MAX_EPOCH_SKIP:
        raise DecryptError("packet from an unknown key epoch", reason="unknown_epoch")
    chain = [rx.current]
    for _ in range(step):
        following = chain[-1].copy()
        following.rekey()
        chain.append(following)
    return step, chain


def _advance(rx: _Receiver, step: int, chain: list[CipherState], expires: float) -> None:
    """Follow the sender to a newer epoch, keeping the one before it for reordering."""
    rx.previous = chain[-2]
    rx.previous_expires = expires
    rx.current = chain[-1]
    rx.epoch += step


def _payload_is_encrypted(pattern: HandshakePattern, index: int) -> bool:
    """Whether message ``index``'s payload is encrypted (a DH came at or before it)."""
    return any(len(tok) == 2 for message in pattern.messages[: index + 1] for tok in message)


def _randomise_key_bit(message: bytes) -> bytes:
    """Set the top bit of the leading ephemeral key (byte 31) at random."""
    random_bit = os.urandom(1)[0] & 0x80
    return message[: DHLEN - 1] + bytes([message[DHLEN - 1] | random_bit]) + message[DHLEN:]


def _clear_key_bit(message: bytes) -> bytes:
    """Undo :func:`_randomise_key_bit` (restores the canonical X25519 encoding)."""
    return message[: DHLEN - 1] + bytes([message[DHLEN - 1] & 0x7F]) + message[DHLEN:]

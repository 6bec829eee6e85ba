"""Call signalling between two users' devices (command ids 0x0060-0x0066).

==========  ============  ====================================================
id          name          purpose
==========  ============  ====================================================
0x0060      call.invite   caller to each callee device: a new call
0x0061      call.ringing  callee device to caller: this device rings
0x0062      call.accept   callee device to caller: answered here
0x0063      call.decline  callee device to caller: rejected, or busy
0x0064      call.cancel   caller to a callee device: stop ringing (and why)
0x0065      call.hangup   either side: the call is over
0x0066      call.hold     either side: hold (``on`` = 1) or resume (0)
==========  ============  ====================================================

All are notices on the reliable channel of the secure *peer* connection
between the two devices (:class:`~hopline.path.peer.PeerPath`): relayed
through a supernode until a direct path exists, always end-to-end
encrypted, and authenticated by the certificates both sides proved in the
handshake, so no message names its sender. A call to a user rings every
device that user is logged in on: the caller sends one ``call.invite`` per
device, the first ``call.accept`` wins and the others get ``call.cancel``
with reason ``answered-elsewhere``.

Media does not use these commands: once answered, audio travels as media
packets (:mod:`hopline.media.packet`) and receiver reports
(:mod:`hopline.media.report`) on the unreliable channel of the same
connection. ``call_id`` is 16 random bytes chosen by the caller; a device
drops (and counts) signals for calls it does not know.
"""

from __future__ import annotations

from hopline.wire.schema import Message, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING, UINTS = ParamType.UINT, ParamType.BYTES, ParamType.STRING, ParamType.UINTS

CALL_ID_SIZE = 16
CODEC_OPUS = 1  # Opus, 48 kHz, mono, 20 ms frames, in media packets version 1
MAX_REASON = 200  # characters of a reason kept; longer ones are cut


class CallInvite(Message, command=0x0060, kind=Kind.NOTICE, name="call.invite"):
    """A new call (one per callee device)."""

    call_id: bytes = param(1, BYTES, doc="16 random bytes chosen by the caller")
    codecs: tuple[int, ...] = param(2, UINTS, doc="codec ids, most preferred first (1 = Opus)")
    max_bitrate: int = param(3, UINT, default=64000, doc="the most the caller will receive")
    display_name: str = param(4, STRING, default="", doc="the caller's full name, if public")


class CallRinging(Message, command=0x0061, kind=Kind.NOTICE, name="call.ringing"):
    """This device rings."""

    call_id: bytes = param(1, BYTES)


class CallAccept(Message, command=0x0062, kind=Kind.NOTICE, name="call.accept"):
    """Answered on this device; media may flow."""

    call_id: bytes = param(1, BYTES)
    codec: int = param(2, UINT, doc="the codec chosen from the invite's list")
    max_bitrate: int = param(3, UINT, default=64000, doc="the most the callee will receive")


class CallDecline(Message, command=0x0063, kind=Kind.NOTICE, name="call.decline"):
    """Not answered here: rejected by the person, or busy in another call."""

    call_id: bytes = param(1, BYTES)
    busy: int = param(2, UINT, default=0, doc="1: busy, 0: rejected")
    reason: str = param(3, STRING, default="")


class CallCancel(Message, command=0x0064, kind=Kind.NOTICE, name="call.cancel"):
    """The caller withdraws the invite to this device."""

    call_id: bytes = param(1, BYTES)
    reason: str = param(2, STRING, default="", doc="hangup, answered-elsewhere, timeout")


class CallHangup(Message, command=0x0065, kind=Kind.NOTICE, name="call.hangup"):
    """The call is over (either side)."""

    call_id: bytes = param(1, BYTES)
    reason: str = param(2, STRING, default="")


class CallHold(Message, command=0x0066, kind=Kind.NOTICE, name="call.hold"):
    """The sender puts the call on hold (``on`` = 1) or resumes it (0)."""

    call_id: bytes = param(1, BYTES)
    on: int = param(2, UINT)


CALL_MESSAGES = (CallInvite, CallRinging, CallAccept, CallDecline, CallCancel, CallHangup, CallHold)
CallMessage = (
    CallInvite | CallRinging | CallAccept | CallDecline | CallCancel | CallHangup | CallHold
)

__all__ = [
    "CALL_ID_SIZE",
    "CALL_MESSAGES",
    "CODEC_OPUS",
    "MAX_REASON",
    "CallAccept",
    "CallCancel",
    "CallDecline",
    "CallHangup",
    "CallHold",
    "CallInvite",
    "CallMessage",
    "CallRinging",
]

"""The Hopline command table.

Each class below is one row group of the table: its command id, kind and the
parameters of its object list. Command ids are grouped by layer:

=============  ==========================================
range          layer
=============  ==========================================
0x0001-0x000F  link: ping, echo, forward
0x0010-0x001F  login server (identity, certificates)
0x0020-0x002F  overlay membership (0x0026 also for clients)
0x0030-0x004F  directory: presence records, lookups, search
0x0050-0x005F  connectivity: candidates, relays
0x0060-0x007F  calls
0x0080-0x009F  messages, contacts
0x00A0-0x00AF  file transfer
=============  ==========================================

Membership (0x0020-0x0025) lives in :mod:`hopline.wire.membership`, the
supernode sample clients ask for (0x0026) in :mod:`hopline.wire.hosts`, and the
directory's own commands (0x0031-0x004F) in :mod:`hopline.wire.directory`;
importing :mod:`hopline.wire` registers all of them in one table.

Replies reuse the request's command id with kind ``REPLY``. Any request may be
answered by an :class:`ErrorReply` (kind ``ERROR``, the failed command's id in
the header). docs/protocol.md lists every row; a test checks the two agree.
"""

from __future__ import annotations

from enum import IntEnum

from hopline.wire.codec import ERROR_CLASS
from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Address, Kind, ParamType

UINT, BYTES, STRING = ParamType.UINT, ParamType.BYTES, ParamType.STRING
ADDRESS, UINTS, PUBKEY, OBJECTS = (
    ParamType.ADDRESS,
    ParamType.UINTS,
    ParamType.PUBKEY,
    ParamType.OBJECTS,
)


class ErrorCode(IntEnum):
    """Error codes carried by :class:`ErrorReply` (HTTP-like on purpose)."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    TOO_LARGE = 413
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500
    UNAVAILABLE = 503


class ErrorReply(Message, kind=Kind.ERROR):
    """The answer to any request that failed.

    ``failed_command`` is not an object: it is the command id in the header.
    """

    code: int = param(1, UINT, doc="an ErrorCode")
    reason: str = param(2, STRING, default="", doc="one line for people")
    retry_after_ms: int | None = param(3, UINT, default=None)
    failed_command: int = 0
    COMMAND = 0
    NAME = "error"

    @property
    def command_id(self) -> int:
        """The failed request's command id."""
        return self.failed_command


ERROR_CLASS.append(ErrorReply)

# ---------------------------------------------------------------- link


class Ping(Message, command=0x0001, kind=Kind.REQUEST, name="ping"):
    """Liveness and RTT probe."""

    nonce: int = param(1, UINT)
    sent_at_us: int | None = param(2, UINT, default=None, doc="sender clock, microseconds")


class Pong(Message, command=0x0001, kind=Kind.REPLY, name="ping"):
    """Answer to :class:`Ping`, echoing its fields."""

    nonce: int = param(1, UINT)
    sent_at_us: int | None = param(2, UINT, default=None)
    observed: Address | None = param(3, ADDRESS, default=None, doc="where the ping came from")


class Echo(Message, command=0x0002, kind=Kind.REQUEST, name="echo"):
    """Ask the peer to send ``data`` back (tests, demo, benchmarks)."""

    data: bytes = param(1, BYTES)


class EchoReply(Message, command=0x0002, kind=Kind.REPLY, name="echo"):
    """The data of an :class:`Echo`, returned."""

    data: bytes = param(1, BYTES)


class Forward(Message, command=0x0003, kind=Kind.NOTICE, name="forward"):
    """An envelope an intermediate node delivers on to its target.

    ``payload`` is a whole encoded message, normally sealed end to end so the
    forwarding node cannot read it. Each hop decrements ``hop_limit`` and drops
    the envelope at zero.
    """

    payload: bytes = param(1, BYTES)
    to_user: str | None = param(2, STRING, default=None)
    to_device: bytes | None = param(3, BYTES, default=None)
    to_node: bytes | None = param(4, BYTES, default=None, doc="a supernode id")
    to_address: Address | None = param(5, ADDRESS, default=None)
    from_user: str | None = param(6, STRING, default=None)
    from_device: bytes | None = param(7, BYTES, default=None)
    hop_limit: int = param(8, UINT, default=4)


# ---------------------------------------------------------------- login server


class Register(Message, command=0x0010, kind=Kind.REQUEST, name="account.register"):
    """Create an account. Sent only inside a secure session to the login server."""

    username: str = param(1, STRING)
    password: str = param(2, STRING)
    full_name: str | None = param(3, STRING, default=None)
    city: str | None = param(4, STRING, default=None)
    country: str | None = param(5, STRING, default=None, doc="ISO 3166 alpha-2")
    language: str | None = param(6, STRING, default=None, doc="ISO 639-1")


class RegisterReply(Message, command=0x0010, kind=Kind.REPLY, name="account.register"):
    """The account exists; ``username`` is its canonical form."""

    username: str = param(1, STRING)
    created_at: int = param(2, UINT)


class Login(Message, command=0x0011, kind=Kind.REQUEST, name="account.login"):
    """Check the password and certify this device's keys."""

    username: str = param(1, STRING)
    password: str = param(2, STRING)
    device_id: bytes = param(3, BYTES)
    static_key: bytes = param(4, PUBKEY, doc="must be the key of this secure session")
    signing_key: bytes | None = param(5, PUBKEY, default=None)


class LoginReply(Message, command=0x0011, kind=Kind.REPLY, name="account.login"):
    """A certificate for the device, and where to find supernodes."""

    certificate: bytes = param(1, BYTES)
    expires_at: int = param(2, UINT)
    server_time: int = param(3, UINT, doc="Unix seconds, to detect clock skew")
    bootstrap: tuple[Address, ...] = param(4, ADDRESS, repeated=True)
    revocations: bytes | None = param(5, BYTES, default=None, doc="signed revocation list")


class Renew(Message, command=0x0012, kind=Kind.REQUEST, name="certificate.renew"):
    """Renew a certificate before it expires (user or supernode)."""

    certificate: bytes = param(1, BYTES)
    public_address: Address | None = param(
        2, ADDRESS, default=None, doc="a supernode's current public address"
    )


class RenewReply(Message, command=0x0012, kind=Kind.REPLY, name="certificate.renew"):
    """The new certificate."""

    certificate: bytes = param(1, BYTES)
    expires_at: int = param(2, UINT)


class ChangePassword(Message, command=0x0013, kind=Kind.REQUEST, name="account.password"):
    """Change an account's password."""

    username: str = param(1, STRING)
    old_password: str = param(2, STRING)
    new_password: str = param(3, STRING)


class DeleteAccount(Message, command=0x0014, kind=Kind.REQUEST, name="account.delete"):
    """Delete an account and revoke all its certificates."""

    username: str = param(1, STRING)
    password: str = param(2, STRING)


class Done(Message, command=0x0015, kind=Kind.REPLY, name="done"):
    """A reply that carries nothing but success."""


class GetRevocations(Message, command=0x0016, kind=Kind.REQUEST, name="revocations.get"):
    """Ask for the signed revocation list if newer than ``since``."""

    since: int = param(1, UINT, default=0)


class RevocationsReply(Message, command=0x0016, kind=Kind.REPLY, name="revocations.get"):
    """The signed revocation list."""

    revocations: bytes = param(1, BYTES)
    issued_at: int = param(2, UINT)


class Enroll(Message, command=0x0017, kind=Kind.REQUEST, name="supernode.enroll"):
    """A supernode presents a one-time token to get a supernode certificate."""

    token: str = param(1, STRING)
    static_key: bytes = param(2, PUBKEY)
    signing_key: bytes | None = param(3, PUBKEY, default=None)
    public_address: Address | None = param(4, ADDRESS, default=None)


class EnrollReply(Message, command=0x0017, kind=Kind.REPLY, name="supernode.enroll"):
    """The supernode's id and certificate."""

    node_id: str = param(1, STRING)
    certificate: bytes = param(2, BYTES)
    expires_at: int = param(3, UINT)


class Logout(Message, command=0x0018, kind=Kind.REQUEST, name="account.logout"):
    """Revoke this device's certificate (the session must hold its key)."""

    certificate: bytes = param(1, BYTES)


class GetBootstrap(Message, command=0x0019, kind=Kind.REQUEST, name="bootstrap.get"):
    """Ask for supernodes to start from."""


class BootstrapReply(Message, command=0x0019, kind=Kind.REPLY, name="bootstrap.get"):
    """Supernodes known to the login server."""

    supernodes: tuple[Address, ...] = param(1, ADDRESS, repeated=True)


# ---------------------------------------------------------------- directory


class Endpoint(Record):
    """A way to reach a device."""

    address: Address = param(1, ADDRESS)
    transport: int = param(2, UINT, default=0, doc="0 UDP, 1 TCP")
    kind: int = param(3, UINT, default=0, doc="0 host, 1 server-reflexive, 2 relayed")


class DeviceRecord(Record):
    """One logged-in device of a user."""

    device_id: bytes = param(1, BYTES)
    identity_key: bytes = param(2, PUBKEY, doc="X25519 static key of the device")
    certificate: bytes = param(3, BYTES, doc="login-server certificate, signed")
    endpoints: tuple[Endpoint, ...] = param(4, OBJECTS, record=Endpoint, repeated=True)
    nat_class: int = param(5, UINT, default=0)
    capabilities: tuple[int, ...] = param(6, UINTS, default=())


class PresenceRecord(Record):
    """Where and how a user can be reached: the directory's unit of storage."""

    user: str = param(1, STRING)
    status: int = param(2, UINT, doc="0 offline, 1 online, 2 away, 3 dnd, 4 invisible")
    devices: tuple[DeviceRecord, ...] = param(3, OBJECTS, record=DeviceRecord, repeated=True)
    mood: str | None = param(4, STRING, default=None)
    last_seen: int = param(5, UINT, doc="Unix seconds")
    expires: int = param(6, UINT, doc="Unix seconds")
    sequence: int = param(7, UINT, default=0, doc="newer records win")


class PresencePublish(Message, command=0x0030, kind=Kind.REQUEST, name="presence.publish"):
    """A client publishes (or refreshes) its presence record."""

    record: PresenceRecord = param(1, OBJECTS, record=PresenceRecord)


class PresencePublishReply(Message, command=0x0030, kind=Kind.REPLY, name="presence.publish"):
    """Acknowledges a :class:`PresencePublish`."""

    expires: int = param(1, UINT)


__all__ = [
    "BootstrapReply",
    "ChangePassword",
    "DeleteAccount",
    "DeviceRecord",
    "Done",
    "Echo",
    "EchoReply",
    "Endpoint",
    "Enroll",
    "EnrollReply",
    "ErrorCode",
    "ErrorReply",
    "Forward",
    "GetBootstrap",
    "GetRevocations",
    "Login",
    "LoginReply",
    "Logout",
    "Ping",
    "Pong",
    "PresencePublish",
    "PresencePublishReply",
    "PresenceRecord",
    "Register",
    "RegisterReply",
    "Renew",
    "RenewReply",
    "RevocationsReply",
]

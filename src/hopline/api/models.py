"""The local API's documents: request bodies and replies, as pydantic models.

They are the single source of the OpenAPI description (``/openapi.json``,
kept in ``docs/openapi.json``) and of the Python SDK's return types, so the
daemon, the SDK and the docs cannot disagree. Limits on every string a caller
sends are declared here and checked before the daemon sees the request.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

USERNAME_PATTERN = r"^[A-Za-z0-9._-]{3,32}$"  # the rules of hopline.identity.names, any case
Username = Field(
    min_length=1, max_length=64, pattern=USERNAME_PATTERN, description="a Hopline username"
)
Password = Field(min_length=1, max_length=1024)
MAX_PROFILE_CHARS = 64  # a white-pages field, as the supernodes' directory keeps it
MAX_SEARCH_CHARS = 64  # a search query or cursor, as the supernodes take it
COUNTRY_OR_LANGUAGE = r"^[A-Za-z]{2}$"  # ISO 3166 alpha-2 / ISO 639-1 letters
ShortText = Field(default=None, max_length=MAX_PROFILE_CHARS)

DaemonStateName = Literal["logged-out", "connecting", "online", "re-homing", "stopped"]
StatusName = Literal["online", "away", "dnd", "invisible"]
SearchBy = Literal["any", "handle", "name", "city", "country", "language"]
CallStateName = Literal["calling", "ringing", "active", "held", "ended"]
CallDirection = Literal["outgoing", "incoming"]
MAX_PATH_CHARS = 4096
MAX_CALL_SECONDS = 86400.0
MAX_WAIT_S = 3600.0
CALL_ID_PATTERN = r"^[0-9a-fA-F]{32}$"  # 16 bytes
ABSOLUTE_PATH_PATTERN = r"^/[^\x00]*$"  # described here, checked by _absolute_path


class Model(BaseModel):
    """Base: unknown fields in a request are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


def _absolute_path(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a path cannot contain NUL")
    if not PurePosixPath(value).is_absolute():
        raise ValueError("must be an absolute path")
    return value


AbsolutePath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="an absolute file path",
        json_schema_extra={"pattern": ABSOLUTE_PATH_PATTERN},
    ),
    AfterValidator(_absolute_path),
]


class ApiErrorDoc(Model):
    """Every error reply: a stable code and a one-line message."""

    error: str = Field(description="stable code: bad-input, not-logged-in, unauthorized, ...")
    message: str
    retry_after_ms: int | None = None


# ---------------------------------------------------------------- accounts


class RegisterRequest(Model):
    """Create an account; the public profile fields go to the white pages."""

    username: str = Username
    password: str = Password
    full_name: str | None = ShortText
    city: str | None = ShortText
    country: str | None = Field(
        default=None, min_length=2, max_length=2, pattern=COUNTRY_OR_LANGUAGE
    )
    language: str | None = Field(
        default=None, min_length=2, max_length=2, pattern=COUNTRY_OR_LANGUAGE
    )


class Registered(Model):
    """The account created."""

    registered: str


class LoginRequest(Model):
    """Log this device in."""

    username: str = Username
    password: str = Password


class LoggedIn(Model):
    """The certified user and when the certificate expires (Unix seconds)."""

    user: str
    expires_at: int


class LoggedOut(Model):
    """Who logged out, and whether the login server revoked the certificate."""

    user: str
    revoked: bool


# ---------------------------------------------------------------- status


class Home(Model):
    """The home supernode."""

    name: str | None
    address: str | None
    transport: str | None
    rtt_ms: float | None
    since: float | None


class Presence(Model):
    """A status and mood text."""

    status: StatusName | Literal["offline"]
    mood: str | None = None


class PresenceSet(Presence):
    """A presence just set: also how it went to accepted contacts."""

    pushed: dict[str, int] | None = Field(
        default=None, description="Envelopes pushed to accepted contacts, by outcome."
    )


class Status(Model):
    """Who, which supernode, public address, NAT class, presence."""

    user: str | None
    state: DaemonStateName
    profile: str
    device_id: str
    supernode: Home | None
    public_address: str | None
    nat: str
    presence: Presence
    certificate_expires: int | None
    rehomes: int
    host_cache: int | None
    uptime_s: float
    last_error: str | None


class Netcheck(Model):
    """How this network's NAT behaves, as the daemon last measured it (``hopline netcheck``)."""

    udp: bool
    tcp: bool | None
    nat_type: str
    nat_class: int
    mapping: str
    filtering: str
    public_address: str | None
    public_address6: str | None
    port_preserving: bool | None
    ipv6: bool
    local_addresses: list[str]
    rtt_ms: dict[str, float]
    tests: dict[str, str | None]
    upload_bps: int | None = Field(
        default=None, description="upload measured by a packet train, bit/s (None: not measured)"
    )
    servers: list[str]
    checked_at: float


# ---------------------------------------------------------------- directory


class UserHit(Model):
    """One user found: profile fields (search) and/or presence (handle lookup)."""

    username: str
    full_name: str | None = None
    city: str | None = None
    country: str | None = None
    language: str | None = None
    state: Literal["online", "offline", "unknown"] | None = None
    status: str | None = None
    mood: str | None = None
    devices: int | None = None
    last_seen: int | None = None


class SearchResults(Model):
    """One page of results; pass ``next_cursor`` back for the next page."""

    query: str
    by: SearchBy
    results: list[UserHit]
    next_cursor: str | None


class PublicProfile(Model):
    """This user's white-pages fields (absent: not published)."""

    full_name: str | None = None
    city: str | None = None
    country: str | None = None
    language: str | None = None


class ProfileUpdate(Model):
    """Fields to change; an empty string clears a field, an absent one is kept."""

    full_name: str | None = ShortText
    city: str | None = ShortText
    country: str | None = Field(default=None, max_length=2, pattern=r"^([A-Za-z]{2})?$")
    language: str | None = Field(default=None, max_length=2, pattern=r"^([A-Za-z]{2})?$")


class PresenceUpdate(Model):
    """Set a status (and a mood text; absent or empty clears it)."""

    status: StatusName
    mood: str | None = Field(default=None, max_length=200)


class Stopping(Model):
    """The daemon is shutting down."""

    stopping: bool


# ---------------------------------------------------------------- calls


class CallMedia(Model):
    """What a call plays and records, and how long it may last once answered."""

    play: AbsolutePath | None = Field(default=None, description="a WAV file to send as voice")
    record: AbsolutePath | None = Field(default=None, description="write what the peer says here")
    seconds: float | None = Field(
        default=None, gt=0, le=MAX_CALL_SECONDS, description="hang up after this long of talk"
    )


class CallRequest(CallMedia):
    """Place a call to ``user``."""

    user: str = Username


class AnswerRequest(CallMedia):
    """Answer one ringing call."""


class AnswerNextRequest(CallMedia):
    """Answer the oldest ringing call, waiting up to ``wait_s`` for one to arrive."""

    wait_s: float = Field(default=0.0, ge=0, le=MAX_WAIT_S)


class HoldRequest(Model):
    """Put a call on hold (``on``) or take it off hold."""

    on: bool


class Call(BaseModel):
    """One call: who, its state, the media path and live statistics.

    Keys a newer daemon adds are kept as they are (untyped) rather than
    refused, so an older SDK keeps reading a newer daemon's calls. ``loss`` is
    a fraction (0..1), ``bitrate`` the sending Opus bitrate in bit/s.
    """

    model_config = ConfigDict(extra="allow")

    call_id: str = Field(description="32 hex digits")
    peer: str
    direction: CallDirection
    state: CallStateName
    end_reason: str | None = Field(
        default=None,
        description="hangup, rejected, busy, cancelled, timeout, failed, answered-elsewhere",
    )
    started_at: float | None = None
    answered_at: float | None = None
    duration_s: float | None = None
    path: str | None = Field(default=None, description="direct, relay or tcp-relay")
    codec: str | None = None
    packets_sent: int = 0
    packets_received: int = 0
    loss: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    mos_estimate: float | None = None
    bitrate: float | None = None
    jb_delay_ms: float | None = None
    held: bool = Field(default=False, description="this side put the call on hold")
    remote_held: bool = Field(default=False, description="the peer put the call on hold")
    play: str | None = None
    record: str | None = None
    audio: str | None = Field(default=None, description="a note on the audio source or sink")
    path_changes: int = 0
    stalls: int = Field(default=0, description="times media stopped arriving for a while")
    media: dict[str, Any] = Field(default_factory=dict, description="the voice stream's statistics")


class Calls(Model):
    """Live calls, and the ones that ended in the last minute."""

    calls: list[Call]


# ---------------------------------------------------------------- conferences

CONF_ID_PATTERN = r"^[0-9a-fA-F]{32}$"  # 16 bytes
MAX_CONFERENCE_USERS = 63  # the roster bound (64) less the host
ConfStateName = Literal["idle", "inviting", "invited", "joining", "active", "handing_over", "ended"]


class ConferenceRequest(CallMedia):
    """Start a conference hosted here and invite ``users`` (each once, not yourself)."""

    users: list[Annotated[str, Username]] = Field(
        min_length=1, max_length=MAX_CONFERENCE_USERS, description="usernames to invite"
    )


class ConferenceAnswer(CallMedia):
    """Join one ringing conference."""


class ConferenceAnswerNext(CallMedia):
    """Join the oldest ringing conference, waiting up to ``wait_s`` for an invite."""

    wait_s: float = Field(default=0.0, ge=0, le=MAX_WAIT_S)


class ConferenceUser(Model):
    """One user to invite to, or remove from, a conference (host only)."""

    user: str = Username


class Conference(BaseModel):
    """One conference as this participant sees it: host and why, roster, statistics.

    Keys a newer daemon adds are kept as they are (untyped), as for calls.

    ``participants`` holds per-participant statistics: on the host one entry
    per participant (level, loss, jitter-buffer delay, ...), on a member the
    stream to its host. ``speakers`` (the active speakers) is known on every
    participant: the host's mixer decides it and tells the members.
    ``longest_gap_ms`` is the longest media silence a member measured (a host
    change shows up here).
    """

    model_config = ConfigDict(extra="allow")

    conf_id: str = Field(description="32 hex digits")
    state: ConfStateName
    role: str = Field(description="host or member")
    end_reason: str | None = None
    host: str | None = None
    epoch: int = 0
    members: list[str] = Field(default_factory=list)
    invited: list[str] = Field(default_factory=list)
    why_host: list[str] = Field(default_factory=list, description="why the host was chosen")
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    successor: str | None = None
    host_changes: list[dict[str, Any]] = Field(default_factory=list)
    participants: dict[str, Any] = Field(default_factory=dict)
    speakers: list[str] | None = Field(
        default=None,
        description=(
            "active speakers: those the host mixes now (on a member, as the host last told it,"
            " at most 250 ms late); null while not in the conference"
        ),
    )
    started_at: float | None = None
    joined_at: float | None = None
    ended_at: float | None = None
    play: str | None = None
    record: str | None = None
    audio: str | None = None
    streams: int = 0
    longest_gap_ms: float = 0.0
    media_unsent: int = 0
    ignored: dict[str, int] = Field(default_factory=dict)


class Conferences(Model):
    """Conferences running here, ringing ones, and those that ended lately."""

    conferences: list[Conference]


# ---------------------------------------------------------------- contacts, chats, files

MAX_TEXT_CHARS = 4096  # a chat message (at most 16 KiB of UTF-8 on the wire)
MAX_REQUEST_TEXT = 500  # a contact request's message
MAX_NAME_CHARS = 64  # a group name
MAX_MEMBERS = 64  # users named in one request
MAX_LIMIT = 1000  # messages in one history or search reply
MAX_QUERY_CHARS = 256
HEX_ID_PATTERN = r"^[0-9a-fA-F]{32}$"  # a group or transfer id: 16 bytes
ContactOpName = Literal["accept", "decline", "remove", "block"]
TransferStateName = Literal[
    "waiting",
    "offered",
    "transferring",
    "verifying",
    "interrupted",
    "complete",
    "declined",
    "cancelled",
    "failed",
]
ENDED_TRANSFER_STATES = frozenset({"complete", "declined", "cancelled", "failed"})

Peer = Field(
    min_length=1,
    max_length=64,
    pattern=USERNAME_PATTERN,
    description="a username, or a group's 32 hex digits",
)
Users = Field(min_length=1, max_length=MAX_MEMBERS, description="usernames")
GroupName = Field(min_length=1, max_length=MAX_NAME_CHARS, description="a group's name")


class Document(BaseModel):
    """Base of a reply the daemon may extend: unknown keys are kept, not refused."""

    model_config = ConfigDict(extra="allow")


class ContactRequest(Model):
    """Ask ``user`` to become a contact, with an optional message they see."""

    user: str = Username
    message: str = Field(default="", max_length=MAX_REQUEST_TEXT)


class Contact(Document):
    """One contact: the state of the relationship and the presence last seen.

    ``state``: none, requested_by_me, requested_by_them, accepted, declined
    or blocked; ``presence`` and ``mood`` only for accepted contacts.
    """

    user: str
    state: str
    display_name: str = ""
    request_text: str = ""
    presence: str | None = None
    mood: str | None = None


class Contacts(Model):
    """Every contact of this user."""

    contacts: list[Contact]


class SendMessage(Model):
    """A chat message's text."""

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class Receipt(Document):
    """What one device of another user said about a message (Unix milliseconds)."""

    user: str
    device: str
    delivered_at_ms: int | None = None
    read_at_ms: int | None = None


class ChatMessage(Document):
    """One message of a conversation, in the order every device shows.

    ``delivery`` (only when just sent): envelopes by outcome (delivered
    directly, stored offline, queued); ``receipts`` (in a history): the
    delivered/read receipts of the other users' devices.
    """

    message_id: str
    conversation: str
    peer: str | None = None
    sender: str
    sender_device: str
    clock: int
    sent_at_ms: int
    text: str
    delivery: dict[str, int] | None = None
    receipts: list[Receipt] | None = None

    @property
    def delivered(self) -> bool:
        """Some device of another user has it."""
        return any(r.delivered_at_ms is not None for r in self.receipts or [])

    @property
    def read(self) -> bool:
        """Some device of another user showed it."""
        return any(r.read_at_ms is not None for r in self.receipts or [])


class History(Model):
    """The last messages with a peer, oldest first."""

    peer: str
    messages: list[ChatMessage]


class Messages(Model):
    """Messages found."""

    messages: list[ChatMessage]


class ReadMarked(Document):
    """How many messages were marked read, and how the read receipts went."""

    peer: str
    conversation: str
    read: int
    delivery: dict[str, int] = Field(default_factory=dict)


class GroupCreate(Model):
    """A new group of this user and ``members``."""

    name: str = GroupName
    members: list[Annotated[str, Username]] = Users


class GroupInvite(Model):
    """Users to add to a group."""

    users: list[Annotated[str, Username]] = Users


class GroupRename(Model):
    """A group's new name."""

    name: str = GroupName


class Group(Document):
    """A group: its id (``group_id``, also as ``group``), name and members."""

    group_id: str = Field(description="32 hex digits: the PEER of chat commands")
    group: str
    name: str
    members: list[str]
    version: int
    joined: bool
    delivery: dict[str, int] | None = None


class Groups(Model):
    """Every group this device knows."""

    groups: list[Group]


class MessagingStatus(Document):
    """The messaging service: who, presence, queues and counters."""

    user: str
    device: str
    presence: str
    mood: str
    contacts: int
    groups: int
    outbox: int
    pending_receipts: int
    counters: dict[str, int]
    dropped: dict[str, int]


class FileOffer(Model):
    """Offer the file at ``path`` (absolute, read by the daemon) to ``peer``."""

    peer: str = Username
    path: AbsolutePath


class FileAccept(Model):
    """Take an offered file into ``to_dir`` (absolute; default: the downloads directory)."""

    to_dir: AbsolutePath | None = None


class Transfer(Document):
    """One file going to or coming from a peer.

    ``bytes`` is the progress (acknowledged by the receiver, or verified
    here), ``rate_bps`` the current rate in bytes per second, ``eta_s`` the
    seconds left at that rate; ``saved_to`` is where a received file landed.
    """

    transfer_id: str
    direction: Literal["outgoing", "incoming"]
    peer: str
    name: str
    size: int
    sha256: str
    state: str
    end_reason: str | None = None
    detail: str = ""
    bytes: int = 0
    rate_bps: int = 0
    eta_s: float | None = None
    path: str | None = None
    source: str | None = None
    saved_to: str | None = None

    @property
    def ended(self) -> bool:
        """True once the transfer completed or ended for good."""
        return self.state in ENDED_TRANSFER_STATES


class Transfers(Model):
    """Every transfer held: live, offered to us, and recently finished."""

    transfers: list[Transfer]

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

Username = Field(min_length=1, max_length=64, description="a Hopline username")
Password = Field(min_length=1, max_length=1024)
ShortText = Field(default=None, max_length=100)

DaemonStateName = Literal["logged-out", "connecting", "online", "re-homing", "stopped"]
StatusName = Literal["online", "away", "dnd", "invisible"]
SearchBy = Literal["any", "handle", "name", "city", "country", "language"]
CallStateName = Literal["calling", "ringing", "active", "held", "ended"]
CallDirection = Literal["outgoing", "incoming"]
MAX_PATH_CHARS = 4096
MAX_CALL_SECONDS = 86400.0
MAX_WAIT_S = 3600.0
CALL_ID_PATTERN = r"^[0-9a-fA-F]{32}$"  # 16 bytes


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
    Field(min_length=1, max_length=MAX_PATH_CHARS, description="an absolute file path"),
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
    country: str | None = Field(default=None, min_length=2, max_length=2)
    language: str | None = Field(default=None, min_length=2, max_length=2)


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
    country: str | None = Field(default=None, max_length=2)
    language: str | None = Field(default=None, max_length=2)


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

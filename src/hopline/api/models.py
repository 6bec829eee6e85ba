"""The local API's documents: request bodies and replies, as pydantic models.

They are the single source of the OpenAPI description (``/openapi.json``,
kept in ``docs/openapi.json``) and of the Python SDK's return types, so the
daemon, the SDK and the docs cannot disagree. Limits on every string a caller
sends are declared here and checked before the daemon sees the request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Username = Field(min_length=1, max_length=64, description="a Hopline username")
Password = Field(min_length=1, max_length=1024)
ShortText = Field(default=None, max_length=100)

DaemonStateName = Literal["logged-out", "connecting", "online", "re-homing", "stopped"]
StatusName = Literal["online", "away", "dnd", "invisible"]
SearchBy = Literal["any", "handle", "name", "city", "country", "language"]


class Model(BaseModel):
    """Base: unknown fields in a request are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


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

"""The daemon's failures: one family, each with a stable ``code`` and an HTTP status.

The local API answers a :class:`DaemonError` with its ``status`` and a body
``{"error": code, "message": ...}``; the CLI prints the message and exits
non-zero. Every part of the daemon (accounts, calls, chats, files) raises
these, never its own service's exceptions.
"""

from __future__ import annotations


class DaemonError(Exception):
    """A request the daemon cannot carry out; ``code`` is stable, ``status`` is HTTP."""

    code = "failed"
    status = 500

    def __init__(self, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class BadInput(DaemonError):
    """The caller's input is wrong (a bad name, field or value)."""

    code, status = "bad-input", 422


class NotLoggedIn(DaemonError):
    """The operation needs a logged-in profile."""

    code, status = "not-logged-in", 409


class AlreadyLoggedIn(DaemonError):
    """Another user is logged in on this profile."""

    code, status = "already-logged-in", 409


class NotOnline(DaemonError):
    """Logged in, but no home supernode right now."""

    code, status = "not-online", 503


class Refused(DaemonError):
    """The network refused the request; the message carries its reason."""

    code, status = "refused", 502


class Unreachable(DaemonError):
    """The login server or supernode could not be reached."""

    code, status = "unreachable", 503


class NoSuchCall(DaemonError):
    """No call with that id, or none ringing to answer."""

    code, status = "no-such-call", 404


class UserOffline(DaemonError):
    """The user asked for is not online now (try again later)."""

    code, status = "user-offline", 409


class NoSuchItem(DaemonError):
    """No contact, group or file transfer with that name or id."""

    code, status = "not-found", 404


class ConferenceRefused(DaemonError):
    """A conference request that cannot be carried out now (not ringing, over, busy, full)."""

    code, status = "conference-refused", 409

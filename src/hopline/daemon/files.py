"""The daemon's files in a profile directory: its lock, its address, its API token.

One profile has at most one daemon. The daemon proves it with an exclusive
``flock`` on ``daemon.lock`` held for its whole life (the kernel drops the lock
when the process dies, even on ``kill -9``, so a crash never leaves a profile
locked). Beside it the daemon writes:

| file | what | mode |
|---|---|---|
| ``daemon.lock`` | the lock; holds the daemon's pid | 0600 |
| ``daemon.json`` | ``{"pid", "api", "started"}``: where the local API listens | 0600 |
| ``api.token`` | the random bearer token every API request must carry | 0600 |

Commands find the daemon through :func:`read_daemon_info`, which trusts
``daemon.json`` only while the lock is held by a live process: a stale file left
by a crash reads as "not running".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from hopline.client.profile import write_private

LOCK_FILE, INFO_FILE, TOKEN_FILE = "daemon.lock", "daemon.json", "api.token"


class DaemonFileError(Exception):
    """A profile's daemon files are missing, unreadable or held by another daemon."""


class AlreadyRunning(DaemonFileError):
    """Another daemon holds the profile."""

    def __init__(self, profile: Path, pid: int | None) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"a hopline daemon is already running for profile {profile}{who}")
        self.pid = pid


@dataclass(frozen=True)
class DaemonInfo:
    """Where a running daemon serves its API."""

    pid: int
    api: str  # base URL, e.g. http://127.0.0.1:5123
    started: float


class ProfileLock:
    """The exclusive lock a daemon holds on its profile (see the module docstring)."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`AlreadyRunning`."""
        path = self.profile / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.profile, _read_pid(path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the daemon's files and drop the lock."""
        if self._fd is None:
            return
        for name in (INFO_FILE, TOKEN_FILE):
            (self.profile / name).unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ProfileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text(encoding="ascii").strip() or "0") or None
    return None


def held(profile: Path) -> bool:
    """True while some process holds the profile's daemon lock."""
    path = profile / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False


def new_token(profile: Path) -> str:
    """Make a fresh API token and keep it in the profile (0600)."""
    token = secrets.token_urlsafe(32)
    write_private(profile / TOKEN_FILE, token.encode("ascii"))
    return token


def write_daemon_info(profile: Path, api: str) -> DaemonInfo:
    """Record where this daemon's API listens."""
    info = DaemonInfo(pid=os.getpid(), api=api, started=time.time())
    document = {"pid": info.pid, "api": info.api, "started": info.started}
    write_private(profile / INFO_FILE, json.dumps(document).encode())
    return info


def read_daemon_info(profile: Path) -> tuple[DaemonInfo, str] | None:
    """The running daemon's address and token, or None when no daemon runs."""
    if not held(profile):
        return None
    try:
        document = json.loads((profile / INFO_FILE).read_text(encoding="utf-8"))
        token = (profile / TOKEN_FILE).read_text(encoding="ascii").strip()
        info = DaemonInfo(int(document["pid"]), str(document["api"]), float(document["started"]))
    except FileNotFoundError:
        return None  # starting up: locked, not serving yet
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DaemonFileError(f"unreadable daemon files in {profile}: {exc}") from None
    return info, token

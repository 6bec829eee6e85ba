"""Options and plumbing shared by the client commands."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hopline.cli.output import CliError, UsageError
from hopline.client.profile import Profile, ProfileError, parse_address, parse_ls_key
from hopline.crypto import CryptoError
from hopline.runtime.endpoint import ConnectError, EndpointError, RequestError
from hopline.runtime.loop import run as run_loop
from hopline.wire import ErrorCode

T = TypeVar("T")

ProfileOption = Annotated[
    Path | None,
    typer.Option(
        "--profile", envvar="HOPLINE_PROFILE", help="profile directory (or $HOPLINE_PROFILE)"
    ),
]
LoginServerOption = Annotated[
    str | None, typer.Option("--login-server", help="login server HOST:PORT (pinned)")
]
LsKeyOption = Annotated[
    str | None, typer.Option("--ls-key", help="login server public key (pinned in the profile)")
]
PasswordFileOption = Annotated[
    Path | None, typer.Option("--password-file", help="read the password from this file")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document")]

DEFAULT_PROFILE = Path.home() / ".hopline" / "default"


def open_profile(
    path: Path | None, login_server: str | None = None, ls_key: str | None = None
) -> Profile:
    """Open the profile, pinning the login server given on the command line."""
    try:
        profile = Profile.open(path or DEFAULT_PROFILE)
        address = parse_address(login_server, "--login-server") if login_server else None
        key = parse_ls_key(ls_key) if ls_key else None
        profile.pin_login_server(address, key)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    except CryptoError as exc:
        raise CliError(f"profile keys: {exc}") from None
    return profile


def read_password(password_file: Path | None, *, confirm: bool = False) -> str:
    """The password: --password-file, then $HOPLINE_PASSWORD, then a prompt."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read --password-file: {exc.strerror}") from None
        if not lines or not lines[0]:
            raise UsageError(f"{password_file} is empty")
        return lines[0]
    if os.environ.get("HOPLINE_PASSWORD"):
        return os.environ["HOPLINE_PASSWORD"]
    if not sys.stdin.isatty():
        raise UsageError("no password: use --password-file F or $HOPLINE_PASSWORD")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise UsageError("the two passwords differ")
    return password


def run_network(coroutine: Coroutine[Any, Any, T], what: str) -> T:
    """Run a network coroutine, turning its failures into one-line CLI errors."""
    try:
        return run_loop(coroutine)
    except RequestError as exc:
        code = 2 if exc.code == ErrorCode.BAD_REQUEST else 1
        hint = f" (retry in {exc.retry_after_ms / 1000:.0f} s)" if exc.retry_after_ms else ""
        raise CliError(f"{what} refused: {exc.reason or exc.code}{hint}", code) from None
    except ConnectError as exc:
        raise CliError(f"{what}: cannot reach the server ({exc.reason})") from None
    except EndpointError as exc:
        raise CliError(f"{what}: {exc}") from None
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    except PermissionError as exc:
        raise CliError(f"{what}: {exc}") from None


def checked_path_length(what: str, path: Path) -> str:
    """``path`` as text, unless it is longer than the API takes (a UsageError naming ``what``)."""
    from hopline.api.models import MAX_PATH_CHARS

    text = str(path)
    if len(text) > MAX_PATH_CHARS:
        raise UsageError(f"{what}: the path is longer than {MAX_PATH_CHARS} characters")
    return text

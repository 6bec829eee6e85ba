"""``hopline register``, ``login``, ``logout``: accounts on the login server."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from hopline.cli.common import (
    JsonOption,
    LoginServerOption,
    LsKeyOption,
    PasswordFileOption,
    ProfileOption,
    open_profile,
    read_password,
    run_network,
)
from hopline.cli.output import emit_json, human
from hopline.client import account


def register_command(
    user: Annotated[str, typer.Argument(help="the username to create")],
    password_file: PasswordFileOption = None,
    full_name: Annotated[str | None, typer.Option("--full-name")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    country: Annotated[str | None, typer.Option("--country", help="ISO 3166 code")] = None,
    language: Annotated[str | None, typer.Option("--language", help="ISO 639-1 code")] = None,
    profile: ProfileOption = None,
    login_server: LoginServerOption = None,
    ls_key: LsKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account on the login server."""
    prof = open_profile(profile, login_server, ls_key)
    password = read_password(password_file, confirm=True)
    started = time.perf_counter()
    name = run_network(
        account.register(
            prof,
            user,
            password,
            full_name=full_name,
            city=city,
            country=country,
            language=language,
        ),
        "registration",
    )
    ms = round((time.perf_counter() - started) * 1000, 1)
    if as_json:
        emit_json({"registered": name, "ms": ms})
    else:
        human(False).print(f"registered [bold]{name}[/] ({ms} ms)")


def login_command(
    user: Annotated[str, typer.Argument(help="the username")],
    password_file: PasswordFileOption = None,
    profile: ProfileOption = None,
    login_server: LoginServerOption = None,
    ls_key: LsKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Log this device in: the login server certifies its keys."""
    prof = open_profile(profile, login_server, ls_key)
    password = read_password(password_file)
    started = time.perf_counter()
    result = run_network(account.login(prof, user, password), "login")
    ms = round((time.perf_counter() - started) * 1000, 1)
    doc = {
        "user": result.username,
        "expires_at": result.expires_at,
        "bootstrap": list(result.bootstrap),
        "clock_skew_s": round(result.server_time - time.time()),
        "ms": ms,
    }
    if as_json:
        emit_json(doc)
    else:
        expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(result.expires_at))
        human(False).print(f"logged in as [bold]{result.username}[/] until {expires} ({ms} ms)")


def logout_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Revoke this device's certificate and forget it."""
    prof = open_profile(profile)
    had = run_network(account.logout(prof), "logout")
    if as_json:
        emit_json({"logged_out": had})
    else:
        human(False).print("logged out" if had else "was not logged in")

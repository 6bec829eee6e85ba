"""``hopline register``, ``login``, ``logout``: accounts on the login server."""

from __future__ import annotations

import time
from typing import Annotated, Any

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
from hopline.cli.daemon import call_daemon, daemon_running
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
    password = read_password(password_file, confirm=True)
    started = time.perf_counter()
    if daemon_running(profile):
        given = {"full_name": full_name, "city": city, "country": country, "language": language}
        fields = {key: value for key, value in given.items() if value is not None}
        reply = call_daemon(profile, lambda c: c.register(user, password, **fields))
        _registered(reply.registered, started, as_json)
        return
    prof = open_profile(profile, login_server, ls_key)
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
    _registered(name, started, as_json)


def _registered(name: str, started: float, as_json: bool) -> None:
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
    password = read_password(password_file)
    started = time.perf_counter()
    if daemon_running(profile):  # the daemon logs in and goes online at once
        done = call_daemon(profile, lambda c: c.login(user, password))
        ms = round((time.perf_counter() - started) * 1000, 1)
        doc = {"user": done.user, "expires_at": done.expires_at, "ms": ms, "daemon": True}
        _logged_in(doc, as_json)
        return
    prof = open_profile(profile, login_server, ls_key)
    result = run_network(account.login(prof, user, password), "login")
    ms = round((time.perf_counter() - started) * 1000, 1)
    doc = {
        "user": result.username,
        "expires_at": result.expires_at,
        "bootstrap": list(result.bootstrap),
        "clock_skew_s": round(result.server_time - time.time()),
        "ms": ms,
    }
    _logged_in(doc, as_json)


def _logged_in(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(doc)
        return
    expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(doc["expires_at"]))
    online = "; the daemon is going online" if doc.get("daemon") else ""
    human(False).print(
        f"logged in as [bold]{doc['user']}[/] until {expires} ({doc['ms']} ms){online}"
    )


def logout_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Go offline, revoke this device's certificate and forget it."""
    if daemon_running(profile):
        done = call_daemon(profile, lambda c: c.logout())
        had, revoked = True, done.revoked
    else:
        had = run_network(account.logout(open_profile(profile)), "logout")
        revoked = had
    if as_json:
        emit_json({"logged_out": had, "revoked": revoked})
    elif not had:
        human(False).print("was not logged in")
    else:
        note = "" if revoked else " (the login server was unreachable: not revoked there)"
        human(False).print(f"logged out{note}")

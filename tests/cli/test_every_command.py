"""Every command of the CLI, found by walking the command tree, keeps the contract.

The list of commands is read from the typer app itself, so a command added
later is covered at once and must be put in one of the two tables below:

* ``DAEMON_COMMANDS``: commands served by the profile's daemon, with the
  smallest valid arguments. Without a daemon each prints the one-line hint to
  run ``hopline up`` and exits 1.
* ``STANDALONE``: commands that work without a daemon (servers, the wire
  tools, accounts before a daemon exists, the demo).

For every command, ``--help`` works, and an unknown option or a missing
argument is one line on stderr and exit 2, never a traceback. What each
command does against a running daemon (and its ``--json`` document) is
checked in ``tests/daemon``, ``tests/api`` and the other ``tests/cli`` modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from hopline.cli.main import app, invoke

GROUP = "0123456789abcdef0123456789abcdef"
TRANSFER = "fedcba9876543210fedcba9876543210"

DAEMON_COMMANDS: dict[str, tuple[str, ...]] = {
    "down": (),
    "status": (),
    "search": ("alice",),
    "call": ("bob",),
    "answer": (),
    "hangup": (),
    "calls": (),
    "send-file": ("bob", "{file}"),
    "tui": (),
    "profile set": ("--city", "Oxford"),
    "profile show": (),
    "presence set": ("away",),
    "contacts list": (),
    "contacts add": ("bob",),
    "contacts accept": ("bob",),
    "contacts decline": ("bob",),
    "contacts remove": ("bob",),
    "contacts block": ("bob",),
    "chat send": ("bob", "hello"),
    "chat history": ("bob",),
    "chat search": ("hello",),
    "chat read": ("bob",),
    "chat group create": ("friends", "bob"),
    "chat group list": (),
    "chat group invite": (GROUP, "carol"),
    "chat group leave": (GROUP,),
    "chat group rename": (GROUP, "old friends"),
    "files list": (),
    "files accept": (TRANSFER,),
    "files decline": (TRANSFER,),
    "files cancel": (TRANSFER,),
}
STANDALONE = {
    *("demo", "register", "login", "logout", "supernode", "up", "netcheck", "version"),
    *("wire decode", "wire encode", "loginserver key", "loginserver enroll"),
}


def leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every runnable command under ``command``, as ("group sub", command)."""
    lister = getattr(command, "list_commands", None)
    if lister is None:
        yield " ".join(path), command
        return
    context = typer.Context(command)
    for name in lister(context):
        yield from leaves(command.get_command(context, name), (*path, name))


COMMANDS = dict(leaves(typer.main.get_command(app)))


def required_arguments(command: Any) -> list[str]:
    return [p.name for p in command.params if p.param_type_name == "argument" and p.required]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = invoke(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str) -> None:
    assert err.startswith("hopline: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_every_command_is_in_one_table() -> None:
    found = set(COMMANDS)
    assert found == set(DAEMON_COMMANDS) | STANDALONE, (
        f"classify: {sorted(found - set(DAEMON_COMMANDS) - STANDALONE)}; "
        f"gone: {sorted(set(DAEMON_COMMANDS) | STANDALONE - found)}"
    )
    assert not set(DAEMON_COMMANDS) & STANDALONE


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_describes_the_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *name.split(), "--help")
    assert code == 0
    assert "Usage:" in out and f"hopline {name}" in " ".join(out.split())
    assert (COMMANDS[name].help or "").strip(), f"{name} has no help text"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_option_is_one_line_and_exit_2(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *name.split(), "--no-such-option")
    assert code == 2 and out == ""
    assert_one_line(err)
    assert "--no-such-option" in err and f"hopline {name}" in err  # where to look for help


@pytest.mark.parametrize(
    "name", sorted(name for name, cmd in COMMANDS.items() if required_arguments(cmd))
)
def test_a_missing_argument_is_one_line_and_exit_2(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    takes_profile = any(p.name == "profile" for p in COMMANDS[name].params)
    profile = ["--profile", str(tmp_path / "p")] if takes_profile else []
    code, out, err = run(capsys, *name.split(), *profile)
    assert code == 2 and out == ""
    assert_one_line(err)
    assert "Missing argument" in err


@pytest.mark.parametrize("name", sorted(DAEMON_COMMANDS))
def test_without_a_daemon_the_hint_is_to_run_hopline_up(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sample = tmp_path / "note.txt"
    sample.write_text("a small file\n")
    args = [arg.format(file=sample) for arg in DAEMON_COMMANDS[name]]
    profile = tmp_path / "nobody"
    code, out, err = run(capsys, *name.split(), *args, "--profile", str(profile))
    assert code == 1 and out == "", err
    assert_one_line(err)
    assert f"no hopline daemon is running for profile {profile}" in err
    assert f"'hopline up --profile {profile}" in err


@pytest.mark.parametrize("name", sorted(DAEMON_COMMANDS))
def test_daemon_commands_take_the_profile_from_the_environment(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = tmp_path / "note.txt"
    sample.write_text("a small file\n")
    monkeypatch.setenv("HOPLINE_PROFILE", str(tmp_path / "from-env"))
    args = [arg.format(file=sample) for arg in DAEMON_COMMANDS[name]]
    code, _, err = run(capsys, *name.split(), *args)
    assert code == 1
    assert str(tmp_path / "from-env") in err

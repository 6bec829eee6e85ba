"""``hopline tui``: open the terminal UI on a profile's daemon.

The daemon must be running (``hopline up``): the command first asks it for
its status through :func:`hopline.cli.daemon.call_daemon`, so a missing
daemon gives the same one-line hint and exit code 1 as every other command,
and only then starts the full-screen UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hopline.cli.common import ProfileOption, checked_path_length
from hopline.cli.daemon import call_daemon, profile_path
from hopline.cli.output import UsageError

PlayOption = Annotated[
    Path | None,
    typer.Option("--play", help="a WAV file sent as voice in calls made or answered here"),
]
RecordOption = Annotated[
    Path | None,
    typer.Option("--record", help="write what the peer says in calls to this WAV file"),
]


def tui_command(
    profile: ProfileOption = None, play: PlayOption = None, record: RecordOption = None
) -> None:
    """Terminal user interface: contacts, chats, search, calls with live statistics."""
    if play is not None and not play.is_file():
        raise UsageError(f"--play: no such file: {play}")
    for what, path in (("--play", play), ("--record", record)):
        if path is not None:
            checked_path_length(what, path.absolute())
    call_daemon(profile, lambda client: client.status())
    from hopline.tui.app import HoplineApp  # textual loads only for this command

    HoplineApp(profile_path(profile), play=play, record=record).run()

"""``hopline version``: Hopline's version, and with ``--all`` what it runs on.

A call that sounds wrong or costs too much CPU is often down to the parts
underneath: which libopus was loaded (the system's or the copy inside PyAV's
wheel), whether the daemon runs on uvloop, whether PortAudio is there for
sound devices. ``hopline version --all`` lists them, so a bug report can say
exactly what ran. Nothing here needs a profile or a daemon, and a part that
is missing is a row that says why, never an error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Annotated

import typer

from hopline import __version__
from hopline.cli.common import JsonOption
from hopline.cli.output import emit_json, stdout

__all__ = ["Component", "components", "version_command"]


@dataclass(frozen=True)
class Component:
    """One part Hopline runs on: its version, or why it is not usable."""

    name: str
    version: str | None
    detail: str

    @property
    def ok(self) -> bool:
        """Whether the part is there and usable."""
        return self.version is not None


def components() -> list[Component]:
    """Hopline, Python and the libraries whose version changes what a call does."""
    python = f"{platform.python_implementation()} on {platform.system()} {platform.machine()}"
    return [
        Component("hopline", __version__, ""),
        Component("python", platform.python_version(), python),
        _libopus(),
        _package("uvloop", "event loop of the daemon and supernode", "asyncio's own loop"),
        _package("cryptography", "X25519, Ed25519, AEAD", "required"),
        _package("av", "PyAV: carries a libopus copy", "no PyAV"),
        _portaudio(),
    ]


def _libopus() -> Component:
    from hopline.media import opus

    reason = opus.opus_available()
    if reason is not None:
        return Component("libopus", None, reason)
    return Component("libopus", opus.opus_version(), opus.opus_library_path())


def _package(name: str, what: str, missing: str) -> Component:
    try:
        return Component(name, importlib.metadata.version(name), what)
    except importlib.metadata.PackageNotFoundError:
        return Component(name, None, f"not installed: {missing}")


def _portaudio() -> Component:
    try:
        sd = importlib.import_module("sounddevice")
    except ImportError:
        return Component("portaudio", None, "sounddevice not installed: WAV files only")
    except OSError as exc:
        return Component("portaudio", None, f"not found ({exc}): WAV files only")
    text = str(sd.get_portaudio_version()[1])
    return Component(
        "portaudio", text.split(",", maxsplit=1)[0], "sound devices through sounddevice"
    )


AllOption = Annotated[
    bool, typer.Option("--all", help="also list Python, libopus, uvloop and other parts")
]


def version_command(show_all: AllOption = False, as_json: JsonOption = False) -> None:
    """Print the Hopline version (--all: and the parts it runs on)."""
    if not show_all:
        if as_json:
            emit_json({"hopline": __version__})
        else:
            sys.stdout.write(f"hopline {__version__}\n")
        return
    found = components()
    if as_json:
        emit_json({"hopline": __version__, "components": [_json(c) for c in found]})
        return
    from rich.table import Table

    table = Table("part", "version", title=f"hopline {__version__}")
    table.add_column("detail", overflow="fold")
    for part in found[1:]:
        table.add_row(part.name, part.version or "[red]missing[/red]", part.detail)
    stdout.print(table)


def _json(component: Component) -> dict[str, object]:
    return {**asdict(component), "ok": component.ok}

"""Output helpers shared by every command: JSON documents and typed CLI errors."""

from __future__ import annotations

import io
import json
import os
import select
import sys
from typing import Any

from rich.console import Console

#: Human-oriented output; with --json it goes to stderr so stdout stays one document.
stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


class CliError(Exception):
    """An error to show as one line; ``code`` 2 = bad input, 1 = run-time failure."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    """Bad arguments or input: exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout, all of it.

    A command that ran an event loop may leave standard output non-blocking
    (libuv does this to pipes), and a big document written to a slow reader
    then comes back short; the bytes are written in a loop that waits for
    room instead.
    """
    text = json.dumps(document, sort_keys=False) + "\n"
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, io.UnsupportedOperation):  # captured output (tests): no descriptor
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_all(fd, text.encode("utf-8"))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, waiting while a non-blocking one is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


def human(console_for_json: bool) -> Console:
    """Where human text goes: stderr when stdout carries JSON."""
    return stderr if console_for_json else stdout

"""Output helpers shared by every command: JSON documents and typed CLI errors."""

from __future__ import annotations

import json
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
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, sort_keys=False) + "\n")
    sys.stdout.flush()


def human(console_for_json: bool) -> Console:
    """Where human text goes: stderr when stdout carries JSON."""
    return stderr if console_for_json else stdout

"""The ``hopline`` command line as a test drives it without a daemon.

:func:`run_without_daemon` runs one command as a subprocess with
``$HOPLINE_PROFILE`` pointing at a profile that does not exist, from
``workdir``; :func:`assert_one_line_error` checks the contract for a refused
command: the exit code, one ``hopline: ...`` line on stderr, no traceback
and nothing on stdout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hopline.demo.cluster import hopline_command

__all__ = ["assert_one_line_error", "run_without_daemon"]


def run_without_daemon(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hopline ARGS`` run from ``workdir`` with no profile (so no daemon);
    ``env`` adds or overrides environment variables."""
    env = {**os.environ, **(env or {}), "HOPLINE_PROFILE": str(workdir / "nobody")}
    return subprocess.run(  # noqa: S603 -- the hopline command, no shell
        hopline_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        cwd=workdir,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """Check a refused command: exit ``code``, one ``hopline:`` line, no traceback,
    empty stdout; returns the line."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("hopline: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", (done.stdout, done.stderr)
    return done.stderr

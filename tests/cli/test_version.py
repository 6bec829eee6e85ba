"""``hopline version`` and ``--all``: the parts a call runs on, as a real process."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hopline import __version__
from hopline.media import opus
from hopline.testing.cli import run_without_daemon

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def version(tmp_path: Path) -> Runner:
    """``hopline version ARGS`` as a real process; ``env=`` adds variables."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_without_daemon(tmp_path, "version", *args, env=env)

    return run


def _parts(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["hopline"] == __version__
    return {part["name"]: part for part in document["components"]}


def test_plain_version(version: Runner) -> None:
    done = version()
    assert (done.returncode, done.stdout) == (0, f"hopline {__version__}\n")
    assert json.loads(version("--json").stdout) == {"hopline": __version__}


def test_all_names_the_libopus_in_use(version: Runner) -> None:
    parts = _parts(version("--all", "--json"))
    assert {"hopline", "python", "libopus", "uvloop", "cryptography", "av", "portaudio"} <= set(
        parts
    )
    assert parts["libopus"]["ok"] and parts["libopus"]["version"] == opus.opus_version()
    assert parts["libopus"]["detail"] == opus.opus_library_path()
    assert Path(parts["libopus"]["detail"]).name.startswith("libopus")


def test_all_follows_the_libopus_override(version: Runner) -> None:
    system = ctypes.util.find_library("opus")
    if system is None:
        pytest.skip("no system libopus to name")
    parts = _parts(version("--all", "--json", env={"HOPLINE_LIBOPUS": system}))
    assert parts["libopus"]["detail"] == system


def test_missing_libopus_is_a_row_not_an_error(version: Runner) -> None:
    missing = "/nonexistent/libopus.so.0"
    parts = _parts(version("--all", "--json", env={"HOPLINE_LIBOPUS": missing}))
    assert parts["libopus"]["ok"] is False and parts["libopus"]["version"] is None
    assert missing in parts["libopus"]["detail"]
    table = version("--all", env={"HOPLINE_LIBOPUS": missing, "COLUMNS": "200"})
    assert table.returncode == 0 and "missing" in table.stdout and "Traceback" not in table.stderr

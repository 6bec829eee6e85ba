"""Daemons of real processes, driven through the real ``hopline`` CLI, for tests.

:class:`DaemonNet` wraps a network started by
:func:`~hopline.testing.network.start_network`: :meth:`DaemonNet.up` starts
``hopline up`` for a profile, :meth:`DaemonNet.cli` runs a command against
it (``$HOPLINE_PROFILE`` and ``$HOPLINE_PASSWORD`` set), and
:meth:`DaemonNet.wait_online` polls ``hopline status`` until it is online.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopline.demo.cluster import Cluster, Proc, hopline_command
from hopline.testing.network import PASSWORD


@dataclass
class DaemonNet:
    """The running network and helpers to drive the CLI against it."""

    cluster: Cluster
    ls: Proc
    nodes: list[Proc]
    workdir: Path

    def up(self, name: str, *extra: str) -> Proc:
        """Start ``hopline up`` for profile ``name``; returns once its API serves."""
        args = [
            *("up", "--profile", str(self.workdir / name)),
            *("--login-server", self.ls.ready["listen"], "--ls-key", self.ls.ready["public_key"]),
            *extra,
        ]
        return self.cluster.start(f"daemon-{name}-{time.monotonic_ns()}", args)

    def cli(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``hopline ARGS`` against profile ``name``."""
        env = {**os.environ, "HOPLINE_PROFILE": str(self.workdir / name)}
        env["HOPLINE_PASSWORD"] = PASSWORD
        done = subprocess.run(
            hopline_command(*args), check=False, capture_output=True, text=True, timeout=60, env=env
        )
        if check and done.returncode != 0:
            raise AssertionError(f"hopline {' '.join(args)} failed: {done.stderr}")
        return done

    def start(self, name: str, *args: str) -> subprocess.Popen[str]:
        """``hopline ARGS`` for ``name`` in the background (as a second terminal would);
        read its end with :func:`finished`."""
        env = {**os.environ, "HOPLINE_PROFILE": str(self.workdir / name)}
        env["HOPLINE_PASSWORD"] = PASSWORD
        return subprocess.Popen(
            hopline_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def json(self, name: str, *args: str) -> Any:
        """Run a command with --json and parse its one document."""
        return json.loads(self.cli(name, *args, "--json").stdout)

    def wait_online(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """Poll ``hopline status`` until the daemon is online."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.json(name, "status")
            if status["state"] == "online":
                return status
            time.sleep(0.2)
        raise AssertionError(f"{name} not online: {status}")


def finished(proc: subprocess.Popen[str], timeout: float) -> tuple[int, dict[str, Any] | None, str]:
    """Exit code, the one JSON document on stdout (with --json, if any), and stderr.

    A command still running after ``timeout`` is killed and fails the test.
    """
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s: {err}") from None
    if "--json" not in proc.args:  # type: ignore[operator]
        return proc.returncode, None, err + out
    lines = out.splitlines()
    assert len(lines) <= 1, out  # at most one JSON document
    return proc.returncode, json.loads(lines[0]) if lines else None, err

"""Start and stop real Hopline processes, leaving none behind.

Every Hopline server prints one JSON line on stdout when it is ready, e.g.
``{"ready": true, "role": "loginserver", "listen": "127.0.0.1:40123"}``, so a
caller can start it on port 0 and learn the port without racing for it.
:class:`Cluster` starts processes in their own process group, reads that line
(with a timeout), keeps draining their output into a log file, and on
:meth:`Cluster.stop` (or leaving the ``with`` block, or SIGINT/SIGTERM) sends
SIGTERM to each group, then SIGKILL to whatever is still alive after a grace
period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any


class ClusterError(RuntimeError):
    """A process failed to start or report readiness."""


@dataclass
class Proc:
    """One started process and what it reported when ready."""

    name: str
    popen: subprocess.Popen[bytes]
    ready: dict[str, Any]
    log_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (SIGKILL by default)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


def hopline_command(*args: str) -> list[str]:
    """The argv that runs ``hopline ARGS`` with this interpreter."""
    return [sys.executable, "-m", "hopline", *args]


def enrollment_token(ls_data_dir: Path) -> str:
    """A one-time supernode token, as an operator gets it: ``hopline loginserver enroll``."""
    done = subprocess.run(
        hopline_command("loginserver", "enroll", "--data-dir", str(ls_data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


class Cluster:
    """A set of Hopline processes that are stopped together."""

    def __init__(self, workdir: Path, grace_s: float = 3.0) -> None:
        self.workdir = workdir
        self.grace_s = grace_s
        self.procs: list[Proc] = []
        self._previous: dict[int, Any] = {}
        workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Cluster:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()
        raise KeyboardInterrupt

    def start(
        self, name: str, args: list[str], timeout_s: float = 20.0, env: dict[str, str] | None = None
    ) -> Proc:
        """Start ``hopline ARGS`` and wait for its ready line."""
        log_path = self.workdir / f"{name}.log"
        popen = subprocess.Popen(
            hopline_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        proc = Proc(name, popen, {}, log_path)
        self.procs.append(proc)
        proc.ready = self._wait_ready(proc, timeout_s)
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
        return proc

    def _wait_ready(self, proc: Proc, timeout_s: float) -> dict[str, Any]:
        assert proc.popen.stdout is not None
        found: dict[str, Any] = {}
        done = threading.Event()

        def reader() -> None:
            assert proc.popen.stdout is not None
            for raw in proc.popen.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                proc.lines.append(line)
                if line.startswith("{") and '"ready"' in line:
                    with contextlib.suppress(json.JSONDecodeError):
                        found.update(json.loads(line))
                        break
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        done.wait(timeout_s)
        if not found.get("ready"):
            tail = " | ".join(proc.lines[-5:]) or "no output"
            proc.kill()
            raise ClusterError(f"{proc.name} did not become ready in {timeout_s:.0f} s: {tail}")
        return found

    def _drain(self, proc: Proc) -> None:
        assert proc.popen.stdout is not None
        with proc.log_path.open("a", encoding="utf-8") as log:
            log.write("\n".join(proc.lines) + "\n")
            for raw in proc.popen.stdout:
                log.write(raw.decode("utf-8", "replace"))
                log.flush()

    def stop(self) -> None:
        """Stop every process: SIGTERM, then SIGKILL after the grace period."""
        for proc in self.procs:
            if proc.alive():
                proc.kill(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in self.procs:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                proc.popen.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill(signal.SIGKILL)
                proc.popen.wait()
            proc.kill(signal.SIGKILL)  # stragglers in the group, if any
        self.procs.clear()

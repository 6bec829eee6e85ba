"""A process running inside a lab namespace: :class:`LabProcess`.

:meth:`LabProcess.start` runs ``ip netns exec NAMESPACE ARGV...`` (which
execs ARGV, so the pid is the program's own) in a new session, so that
:meth:`LabProcess.stop` and :meth:`LabProcess.kill` reach the whole process
group. stdin is a pipe (line-oriented drivers such as
:mod:`hopline.netlab.agent` read their commands there); a reader thread
copies stdout into ``LOG.out`` and hands each line to :meth:`read_json` and
:meth:`wait_ready`; stderr goes to ``LOG.err``. Hopline servers print one
JSON line ``{"ready": true, ...}`` when they are listening, which
:meth:`wait_ready` returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from hopline.netlab.system import NetlabError, tool

__all__ = ["LabProcess"]

_EOF = None


class LabProcess:
    """One started process (see the module docstring)."""

    def __init__(self, name: str, popen: subprocess.Popen[str], log: Path) -> None:
        """Wrap a started ``popen``; use :meth:`start` to make one."""
        self.name, self.popen, self.log = name, popen, log
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"netlab-{name}", daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls, namespace: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> LabProcess:
        """Start ``argv`` inside ``namespace``; its output goes to ``log``.out/.err."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.with_suffix(".err").open("w", encoding="utf-8") as err:
            popen = subprocess.Popen(  # noqa: S603 -- ip netns exec, argv from the caller
                [tool("ip"), "netns", "exec", namespace, *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        return cls(log.name, popen, log)

    @property
    def pid(self) -> int:
        """The process id (the program's own: ``ip netns exec`` execs it)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.popen.poll() is None

    # ------------------------------------------------------------ talking to it

    def _read(self) -> None:
        stdout = self.popen.stdout
        assert stdout is not None
        with self.log.with_suffix(".out").open("w", encoding="utf-8") as out:
            for raw in stdout:
                line = raw.rstrip("\n")
                out.write(raw)
                out.flush()
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(_EOF)

    def read_json(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next line of stdout that is a JSON object (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise NetlabError(
                    f"{self.name}: no answer in {timeout:.0f} s{self._tail()}"
                ) from None
            if line is _EOF:
                self._queue.put(_EOF)  # later readers see the end too
                raise NetlabError(f"{self.name} exited ({self.popen.poll()}){self._tail()}")
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    document = json.loads(line)
                    if isinstance(document, dict):
                        return document

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the ``{"ready": true, ...}`` line and return it."""
        deadline = time.monotonic() + timeout
        while True:
            document = self.read_json(max(0.0, deadline - time.monotonic()))
            if document.get("ready") is True:
                return document

    def send(self, document: dict[str, Any]) -> None:
        """Write one JSON line to its stdin."""
        stdin = self.popen.stdin
        if stdin is None or stdin.closed:
            raise NetlabError(f"{self.name}: stdin is closed")
        try:
            stdin.write(json.dumps(document) + "\n")
            stdin.flush()
        except BrokenPipeError:
            raise NetlabError(f"{self.name} exited ({self.popen.poll()}){self._tail()}") from None

    def request(self, document: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send one JSON line and return the next JSON line it prints."""
        self.send(document)
        return self.read_json(timeout)

    def _tail(self, lines: int = 8) -> str:
        try:
            err = self.log.with_suffix(".err").read_text(encoding="utf-8").splitlines()
        except OSError:
            err = []
        shown = (self.lines[-lines:] + err[-lines:])[-lines:]
        return (": " + " | ".join(shown)) if shown else ""

    # ------------------------------------------------------------ stopping it

    def signal(self, sig: int) -> None:
        """Send ``sig`` to its whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL, at once (like a crash or ``kill -9``)."""
        self.signal(signal.SIGKILL)
        self.wait(10.0)

    def stop(self, grace: float = 3.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
        try:
            return self.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.wait(10.0)
        finally:
            self.signal(signal.SIGKILL)  # stragglers in its group

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit and return its status (TimeoutExpired if it does not)."""
        status = self.popen.wait(timeout)
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        return status

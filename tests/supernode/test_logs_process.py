"""``--log-format json``: every stderr line of the servers is a JSON object, with no secrets."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from hopline.demo.cluster import Proc, enrollment_token, hopline_command
from hopline.testing.network import PASSWORD, logged_in


class Server:
    """A server process with stdout (the ready line) and stderr (the logs) kept apart."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr: IO[bytes] = stderr_path.open("wb")
        self.popen = subprocess.Popen(
            hopline_command(*args),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.ready = self._ready_line()

    def _ready_line(self, timeout: float = 30.0) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def read() -> None:
            assert self.popen.stdout is not None
            line = self.popen.stdout.readline()
            if line:
                found.update(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        assert found.get("ready"), self.stderr_path.read_text()
        return found

    def stop(self) -> int:
        """SIGTERM, wait, and close the log file."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(20)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._stderr.close()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` parsed as a JSON object (fails on the first that is not)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    documents = []
    for line in lines:
        document = json.loads(line)
        assert isinstance(document, dict), line
        assert {"time", "level", "logger", "message"} <= set(document), line
        when = datetime.fromisoformat(document["time"].replace("Z", "+00:00"))
        assert document["time"].endswith("Z") and when.utcoffset() is not None
        documents.append(document)
    return documents


async def test_servers_log_json_lines_without_secrets(tmp_path: Path) -> None:
    ls_dir = tmp_path / "ls"
    servers: list[Server] = []
    try:
        ls_args = ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(ls_dir)]
        ls = Server([*ls_args, "--log-format", "json"], tmp_path / "ls.err")
        servers.append(ls)
        token = enrollment_token(ls_dir)
        sn = Server(
            [
                *("supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn")),
                *("--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]),
                *("--enroll-token", token, "--log-format", "json"),
            ],
            tmp_path / "sn.err",
        )
        servers.append(sn)

        ls_proc = Proc("ls", ls.popen, ls.ready, ls.stderr_path)
        await logged_in(tmp_path, ls_proc, "alice")
        assert sn.stop() == 0
        assert ls.stop() == 0
    finally:
        for server in servers:
            server.kill()

    sn_logs = json_lines(sn.stderr_path)
    ls_logs = json_lines(ls.stderr_path)
    messages = [d["message"] for d in sn_logs]
    assert any(m.startswith("enrolled as sn-") for m in messages), messages
    handover = next(d for d in sn_logs if d["message"].startswith("handover:"))
    assert handover["records"] == 0 and handover["nodes"] == 0
    assert any("alice" in d["message"] for d in ls_logs)  # "account alice registered"
    assert {d["level"] for d in sn_logs + ls_logs} <= {"debug", "info", "warning", "error"}

    everything = sn.stderr_path.read_text() + ls.stderr_path.read_text()
    secret_key = (ls_dir / "loginserver.key").read_text()
    body = "".join(secret_key.splitlines()[1:-1])
    assert PASSWORD not in everything and token not in everything
    assert body[:24] not in everything  # not even a piece of the private key

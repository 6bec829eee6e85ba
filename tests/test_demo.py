"""``hopline demo``: every step passes, JSON as the contract says, nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from hopline.demo.cluster import hopline_command


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # the process ended while we looked
        if marker.encode() in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def test_demo_json_reports_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        hopline_command("demo", "--json", "--seconds", "0.5"),
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["ok"] is True
    names = [step["name"] for step in report["steps"]]
    assert names[0] == "start login server"
    assert {"register alice", "log in bob", "secure wire exchange"} <= set(names)
    shown = {"contacts: alice asks, bob accepts", "chat round trip with receipt"}
    assert shown | {"file transfer alice -> bob"} <= set(names)
    assert all(step["ok"] and step["ms"] >= 0 for step in report["steps"])
    assert processes_mentioning(str(tmp_path)) == []


def test_interrupted_demo_leaves_no_process(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        hopline_command("demo", "--seconds", "30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(processes_mentioning(str(tmp_path))) < 2:
            time.sleep(0.1)  # wait until the login server runs beside the demo
        assert len(processes_mentioning(str(tmp_path))) >= 2
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    finally:
        demo.kill()
    assert demo.returncode != 0
    time.sleep(0.5)
    assert processes_mentioning(str(tmp_path)) == []

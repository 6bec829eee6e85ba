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
    assert names[:4] == [
        "start login server",
        "start 3 supernodes",
        "supernodes form the overlay",
        "daemons up for alice and bob",
    ]
    assert {"register alice", "log in bob", "secure wire exchange", "white pages search"} <= set(
        names
    )
    shown = {
        "contacts: alice asks, bob accepts",
        "chat round trip with receipt",
        "offline message: bob away, alice writes",
    }
    assert shown | {"file transfer alice -> bob", "voice call alice -> bob"} <= set(names)
    assert all(step["ok"] and step["ms"] >= 0 for step in report["steps"])
    call = report["call"]  # the call went from alice's daemon to bob's, as processes
    for key in ("state", "duration_s", "path", "codec", "packets_sent", "packets_received"):
        assert key in call, key
    assert call["state"] == "ended" and call["path"] in {"direct", "relay", "tcp-relay"}
    assert call["packets_received"] > 100 and 1.0 <= call["pesq"] <= 4.7
    assert 0 < call["mos_estimate"] <= 4.5
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
        # wait until the login server, 3 supernodes and both daemons run beside the demo
        while time.monotonic() < deadline and len(processes_mentioning(str(tmp_path))) < 6:
            time.sleep(0.1)
        assert len(processes_mentioning(str(tmp_path))) >= 6
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    finally:
        demo.kill()
    assert demo.returncode != 0
    time.sleep(0.5)
    assert processes_mentioning(str(tmp_path)) == []

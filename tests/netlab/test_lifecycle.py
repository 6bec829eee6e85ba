"""A lab leaves nothing behind: on close, on error, at exit, on SIGTERM, after SIGKILL.

Labs that must outlive a process are built by a small Python script run as a
child process; the test then ends that process in the way under test and
checks the namespaces, nftables tables and owner files that remain.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hopline.netlab import Lab, NatClass, NetlabError, cleanup_stale
from hopline.netlab.system import destroy, in_namespace, labs, namespaces, run, state_dir

BUILD = """
import json, sys, time
from hopline.netlab import Lab
lab = Lab()
if sys.argv[1] == "with":
    lab.__enter__()
lab.add_client("masq", "masquerade")
lab.add_client("double", "double-nat")
proc = lab.run("masq", ["sleep", "600"])
print(json.dumps({"prefix": lab.prefix, "sleeper": proc.pid, "logs": str(lab.workdir)}), flush=True)
if sys.argv[2] == "wait":
    time.sleep(600)
"""


def root_tables() -> str:
    return run(["nft", "list", "tables"]).stdout


def mine(prefix: str) -> list[str]:
    return [name for name in namespaces() if name.startswith(f"{prefix}-")]


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return status != "Z"


def start_builder(mode: str, ending: str) -> tuple[subprocess.Popen[str], dict]:
    child = subprocess.Popen(
        [sys.executable, "-c", BUILD, mode, ending], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    built = json.loads(child.stdout.readline())
    assert len(mine(built["prefix"])) == 6, "pub, masq + router, double + router + CGN"
    return child, built


def test_everything_is_named_with_the_prefix_and_removed_on_close(
    netlab: None, tmp_path: Path
) -> None:
    before = (root_tables(), [n for n in namespaces() if not n.startswith("hnl")])
    lab = Lab(tmp_path / "lab")
    server = lab.add_server("srv")
    for name, nat in [("masq", NatClass.MASQUERADE), ("double", NatClass.DOUBLE_NAT)]:
        lab.add_client(name, nat)
    lab.add_client("six", NatClass.IPV6)
    spaces = mine(lab.prefix)
    assert len(spaces) == 8
    for space in spaces:
        links = in_namespace(space, ["ip", "-o", "link", "show"]).stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
        assert all(n == "lo" or n.startswith(lab.prefix) for n in names), (space, names)
        tables = in_namespace(space, ["nft", "list", "tables"]).stdout.split()
        assert all(t.startswith(lab.prefix) for t in tables[2::3]), tables
    assert in_namespace(lab.host("masq").routers[0], ["nft", "list", "tables"]).stdout.strip()
    assert (state_dir() / f"{lab.prefix}.json").exists()
    sleeper = lab.run("srv", ["sleep", "600"])
    assert server.namespace == lab.namespace("pub")

    lab.close()
    lab.close()  # idempotent

    assert mine(lab.prefix) == []
    assert not (state_dir() / f"{lab.prefix}.json").exists()
    assert not pid_alive(sleeper.pid)
    assert (root_tables(), [n for n in namespaces() if not n.startswith("hnl")]) == before
    root_links = run(["ip", "-o", "link", "show"]).stdout
    assert lab.prefix not in root_links


def test_an_error_inside_with_still_removes_the_lab(netlab: None, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab(tmp_path / "lab") as lab:
        lab.add_client("sym", NatClass.SYMMETRIC)
        sleeper = lab.run("sym", ["sleep", "600"])
        raise RuntimeError("boom")
    assert mine(lab.prefix) == []
    assert not pid_alive(sleeper.pid)


def test_the_lab_is_removed_when_its_process_exits(netlab: None) -> None:
    child, built = start_builder("plain", "exit")  # never closed: the exit finalizer runs
    assert child.wait(30) == 0
    assert mine(built["prefix"]) == []
    assert not Path(built["logs"]).exists()
    assert not pid_alive(built["sleeper"])


def test_sigterm_removes_the_lab(netlab: None) -> None:
    child, built = start_builder("with", "wait")
    child.send_signal(signal.SIGTERM)
    child.wait(30)
    assert mine(built["prefix"]) == []
    assert not Path(built["logs"]).exists()
    assert not pid_alive(built["sleeper"])


def test_a_lab_whose_owner_was_killed_is_removed_by_cleanup_stale(netlab: None) -> None:
    child, built = start_builder("with", "wait")
    child.kill()  # SIGKILL: no finalizer, no handler
    child.wait(30)
    prefix = built["prefix"]
    assert len(mine(prefix)) == 6  # left behind
    assert pid_alive(built["sleeper"])  # and so is what ran inside

    assert Path(built["logs"]).is_dir()
    assert prefix in cleanup_stale()

    assert mine(prefix) == []
    assert prefix not in labs()
    assert not Path(built["logs"]).exists()
    deadline = time.monotonic() + 5
    while pid_alive(built["sleeper"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(built["sleeper"])


def test_a_lab_kept_by_hand_survives_cleanup_until_destroyed(netlab: None) -> None:
    lab = Lab()
    prefix = lab.prefix
    try:
        lab.add_client("pubc", NatClass.PUBLIC)
        lab.detach()
        del lab  # no finalizer any more
        assert prefix not in cleanup_stale()
        assert len(mine(prefix)) == 2
    finally:
        destroy(prefix)
    assert mine(prefix) == []


def test_bad_host_names_and_unknown_hosts_are_refused(lab: Lab) -> None:
    lab.add_client("ok1", NatClass.PUBLIC)
    for bad in ["", "1abc", "a-b", "pub", "ok1", "waytoolongname"]:
        with pytest.raises(ValueError):
            lab.add_client(bad, NatClass.PUBLIC)
    with pytest.raises(KeyError):
        lab.address("nobody")
    with pytest.raises(NetlabError, match="exit"):
        lab.exec("ok1", ["false"])

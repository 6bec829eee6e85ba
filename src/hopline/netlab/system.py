"""The kernel side of netlab: ``ip`` and ``nft`` commands, ownership and cleanup.

Everything here shells out to iproute2 and nftables (resolved to absolute
paths once) through :func:`run`, the only place that starts them. Every
resource of a lab lives inside network namespaces named ``PREFIX-...``
(``PREFIX`` is ``hnl`` and six hex digits, unique per lab): veth pairs are
created directly between namespaces and the bridge and the nftables tables
live inside them, so deleting a lab's namespaces deletes all of it, and the
root namespace is never touched.

Ownership: before a lab creates its first namespace it writes
``STATE_DIR/PREFIX.json`` naming its owner (pid and the kernel's start time
of that pid, so a reused pid is not mistaken for the owner) and whether it
was brought up by hand (``manual``: it outlives its creator, for
``python -m hopline.netlab up``). :func:`cleanup_stale` removes every lab
whose owner is gone and that is not manual — the leftovers of a test run
killed with SIGKILL — and every ``hnl*`` namespace without a state file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "NetlabError",
    "NetlabUnavailable",
    "Owner",
    "cleanup_stale",
    "destroy",
    "labs",
    "namespaces",
    "new_prefix",
    "require",
    "run",
    "unavailable_reason",
]

PREFIX_PATTERN = re.compile(r"^hnl[0-9a-f]{6}$")
NAMESPACE_PATTERN = re.compile(r"^(hnl[0-9a-f]{6})-[a-z0-9-]+$")
COMMAND_TIMEOUT = 30.0
PROBE_RULESET = """table ip hnlprobe {
  chain postrouting {
    type nat hook postrouting priority srcnat;
  }
}
"""


class NetlabError(RuntimeError):
    """A netlab command failed (the message carries its stderr)."""


class NetlabUnavailable(NetlabError):
    """This machine cannot run netlab (not root, no ``ip``/``nft``, no netns)."""


def state_dir() -> Path:
    """Where lab ownership files live (``$HOPLINE_NETLAB_STATE`` overrides)."""
    return Path(os.environ.get("HOPLINE_NETLAB_STATE", "/run/hopline-netlab"))


@functools.cache
def tool(name: str) -> str:
    """The absolute path of a system tool, or NetlabUnavailable."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise NetlabUnavailable(f"'{name}' is not installed")
    return found


def run(
    argv: list[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (argv[0] a tool name or path) and return what it printed."""
    command = [tool(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    done = subprocess.run(  # noqa: S603 -- fixed tools, arguments built by netlab
        command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        shown = " ".join(argv[:6]) + (" ..." if len(argv) > 6 else "")
        raise NetlabError(f"{shown}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


def ip_batch(namespace: str, commands: list[str]) -> None:
    """Run ``ip`` commands in ``namespace`` in one process (``ip -n NS -batch -``)."""
    if commands:
        run(["ip", "-n", namespace, "-batch", "-"], stdin="\n".join(commands) + "\n")


def in_namespace(
    namespace: str, argv: list[str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``namespace`` (``ip netns exec``)."""
    return run(["ip", "netns", "exec", namespace, *argv], **kwargs)


def namespaces() -> list[str]:
    """Every named network namespace (``ip netns list``)."""
    listing = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def new_prefix() -> str:
    """A fresh lab prefix: ``hnl`` and six random hex digits."""
    while True:
        prefix = "hnl" + secrets.token_hex(3)
        if not (state_dir() / f"{prefix}.json").exists():
            return prefix


# ---------------------------------------------------------------- availability


@functools.cache
def unavailable_reason() -> str | None:
    """Why netlab cannot run here (None: it can). Probes once per process."""
    if os.geteuid() != 0:
        return "not running as root"
    try:
        for name in ("ip", "nft", "sysctl"):
            tool(name)
        _probe()
    except NetlabUnavailable as exc:
        return str(exc)
    except (NetlabError, OSError, subprocess.TimeoutExpired) as exc:
        return f"network namespaces or nftables do not work here: {exc}"
    return None


def _probe() -> None:
    """Create a namespace with a veth and an nftables NAT table, then remove it."""
    prefix = new_prefix()
    name = f"{prefix}-probe"
    write_owner(prefix, Owner.me(manual=False))
    try:
        run(["ip", "netns", "add", name])
        ip_batch(name, ["link set lo up", "link add probe0 type veth peer name probe1"])
        in_namespace(name, ["nft", "-f", "-"], stdin=PROBE_RULESET)
    finally:
        destroy(prefix)


def require() -> None:
    """Raise NetlabUnavailable (with the reason) unless netlab can run here."""
    reason = unavailable_reason()
    if reason is not None:
        raise NetlabUnavailable(reason)


# ---------------------------------------------------------------- ownership


@dataclass(frozen=True)
class Owner:
    """Who a lab belongs to: a live process, or nobody in particular (manual)."""

    pid: int
    started: str  # the pid's start time in clock ticks (/proc/PID/stat field 22)
    manual: bool

    @classmethod
    def me(cls, *, manual: bool) -> Owner:
        """This process."""
        return cls(os.getpid(), _start_time(os.getpid()) or "", manual)

    def alive(self) -> bool:
        """Whether the lab is still wanted: manual, or its owner still runs."""
        return self.manual or (_start_time(self.pid) == self.started and self.started != "")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)": 3.. -> 22 is index 19


def write_owner(prefix: str, owner: Owner, hosts: dict[str, Any] | None = None) -> None:
    """Record the lab's owner (and, for ``status``, its hosts)."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"pid": owner.pid, "started": owner.started, "manual": owner.manual}
    document["hosts"] = hosts or {}
    path = directory / f"{prefix}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1), encoding="utf-8")
    temporary.replace(path)


def read_state(prefix: str) -> dict[str, Any] | None:
    """The lab's state file, or None if it has none (or it is unreadable)."""
    try:
        document = json.loads((state_dir() / f"{prefix}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def owner_of(prefix: str) -> Owner | None:
    """The recorded owner of lab ``prefix`` (None: no usable state file)."""
    state = read_state(prefix)
    if state is None:
        return None
    try:
        return Owner(int(state["pid"]), str(state["started"]), bool(state["manual"]))
    except (KeyError, TypeError, ValueError):
        return None


def labs() -> dict[str, list[str]]:
    """Every lab on this machine: prefix -> its namespaces (state files without any too)."""
    found: dict[str, list[str]] = {}
    for name in namespaces():
        match = NAMESPACE_PATTERN.match(name)
        if match:
            found.setdefault(match.group(1), []).append(name)
    with contextlib.suppress(OSError):
        for path in state_dir().glob("hnl*.json"):
            if PREFIX_PATTERN.match(path.stem):
                found.setdefault(path.stem, [])
    return found


# ---------------------------------------------------------------- teardown


def destroy(prefix: str) -> list[str]:
    """Remove lab ``prefix``: kill what runs in its namespaces, delete them and its
    temporary log directory; return the namespaces."""
    if not PREFIX_PATTERN.match(prefix):
        raise ValueError(f"not a netlab prefix: {prefix!r}")
    removed = [name for name in namespaces() if name.startswith(f"{prefix}-")]
    for name in removed:
        _kill_inside(name)
        _delete_tables(name)
        run(["ip", "netns", "delete", name], check=False)
    (state_dir() / f"{prefix}.json").unlink(missing_ok=True)
    for logs in Path(tempfile.gettempdir()).glob(f"{prefix}-*"):  # a lab's temporary workdir
        shutil.rmtree(logs, ignore_errors=True)
    left = [name for name in namespaces() if name.startswith(f"{prefix}-")]
    if left:
        raise NetlabError(f"could not delete namespaces {left}")
    return removed


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process still in ``namespace`` (all started by this lab)."""
    listing = run(["ip", "netns", "pids", namespace], check=False).stdout
    for pid in (int(p) for p in listing.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _delete_tables(namespace: str) -> None:
    """Delete the lab's nftables tables in ``namespace`` (before the namespace goes)."""
    listing = in_namespace(namespace, ["nft", "list", "tables"], check=False).stdout
    for line in listing.splitlines():
        parts = line.split()  # "table ip NAME"
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith("hnl"):
            in_namespace(namespace, ["nft", "delete", "table", parts[1], parts[2]], check=False)


def cleanup_stale() -> list[str]:
    """Remove every lab whose owner is gone (and is not manual); return their prefixes."""
    removed = []
    for prefix in labs():
        owner = owner_of(prefix)
        if owner is None or not owner.alive():
            destroy(prefix)
            removed.append(prefix)
    return removed

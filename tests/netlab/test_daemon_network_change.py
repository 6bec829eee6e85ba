"""``hopline up`` stays up across network changes: real daemons behind a real kernel NAT.

One lab: a login server and two supernodes on the public segment; alice on
a client host behind a masquerading router (``masq1``), bob on a public
address (``pub1``); each runs the real daemon (``hopline up``) and every
command is the real ``hopline`` CLI run on the user's host. While alice's
daemon runs, her network changes under it:

1. **Her NAT forgets her**: the router's public address changes (the old one
   is removed, a new one added). The kernel drops every masquerade mapping
   made with the old address, so her supernode, and bob, see her at a new
   public address. Nothing changes on her host, so only a keep-alive that
   goes unanswered shows it: online again within :data:`RECOVERY_BOUND_S`.
2. **Her link goes down for 8 s** (``ip link set ... down`` on her host),
   then comes back (link up, default route again, as a network manager
   does). The daemon process never exits; ``status`` shows it re-homing
   during the outage and online again within :data:`NOTICE_BOUND_S` after.
3. **Her address changes**: the host's LAN address is replaced by another one
   (old removed, new added, default route fixed) while the daemon runs. Its
   sockets are bound to the wildcard address, so they keep working from the
   new address; the daemon notices the change of route to its home and
   re-homes within :data:`NOTICE_BOUND_S`.

Each case ends with alice's daemon online again and a chat message from
alice in bob's history and one from bob in alice's (within
:data:`CHAT_BOUND_S`): the daemon is really working again, not just alive.
The seconds until she is online again, and until each message arrived and
how it went, are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from hopline.demo.cluster import hopline_command
from hopline.netlab import Lab, LabProcess
from hopline.netlab.nat import NatClass
from hopline.netlab.network import LabNetwork
from hopline.netlab.system import ip_batch, run

T = TypeVar("T")
USERS = {"alice": ("masq1", NatClass.MASQUERADE), "bob": ("pub1", NatClass.PUBLIC)}
OUTAGE_S = 8.0
RECOVERY_BOUND_S = 45.0  # keepalive (20 s) + ping timeout (3 s) + a race, with room to spare
NOTICE_BOUND_S = 15.0  # a local change: the route check (1 s) + a race, with room to spare
CHAT_BOUND_S = 90.0  # both messages, from the change (or the link coming back)
NEW_PUBLIC = "203.0.113.230/24"  # the router's address after case 1 (clients use .100+)
NEW_LAN = "192.168.{net}.77/24"  # alice's LAN address after case 3


@dataclass
class Net:
    """The lab network, its daemons, and what the cases measured."""

    net: LabNetwork
    daemons: dict[str, LabProcess] = field(default_factory=dict)
    recovery: dict[str, float] = field(default_factory=dict)  # seconds, by case

    @property
    def lab(self) -> Lab:
        return self.net.lab

    def cli(self, user: str, *args: str, timeout: float = 60.0) -> Any:
        """``hopline ARGS --json`` as ``user`` on the user's host, parsed (via a file)."""
        out = self.net.workdir / f"cli-{user}-{secrets.token_hex(4)}.json"
        argv = hopline_command(*args, "--json", "--profile", str(self.net.workdir / user))
        redirect = ["sh", "-c", 'exec "$@" > "$0"', str(out), *argv]
        self.lab.exec(USERS[user][0], redirect, timeout=timeout)
        return json.loads(out.read_text(encoding="utf-8"))

    def status(self, user: str) -> dict[str, Any]:
        status: dict[str, Any] = self.cli(user, "status", timeout=30)
        return status


@pytest.fixture(scope="module")
def net(netlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """Two supernodes; alice (masquerade) and bob (public) with running daemons, online."""
    workdir = tmp_path_factory.mktemp("netchange")
    with Lab(workdir / "lab") as lab:
        network = LabNetwork(lab, workdir)
        network.start(supernodes=2)
        built = Net(network)
        for user, (host, nat) in USERS.items():
            network.user(host, nat, user)
            built.daemons[user] = network.daemon(host, user)
        for user in USERS:
            wait_online(built, user)
        yield built
        print(f"\nrecovery (s): {json.dumps(built.recovery)}")


# ---------------------------------------------------------------- helpers


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_online(net: Net, user: str, timeout: float = 60.0) -> dict[str, Any]:
    """``user``'s status once the daemon is online."""

    def online() -> dict[str, Any] | None:
        status = net.status(user)
        return status if status["state"] == "online" else None

    return wait_for(f"{user} to be online", online, timeout)


def exchange(net: Net, tag: str, timeout: float = 60.0) -> dict[str, str]:
    """alice sends bob a message and bob one back; each must reach the other's history.

    Returns, by direction, the seconds until it arrived and how it went
    (the ``delivery`` the sender saw: direct on a path, or stored on a supernode).
    """
    took = {}
    for sender, peer in (("alice", "bob"), ("bob", "alice")):
        text = f"{tag} from {sender} {secrets.token_hex(3)}"
        started = time.monotonic()
        sent = net.cli(sender, "chat", "send", peer, text, timeout=90)
        assert sent["sender"] == sender, sent

        def arrived(peer: str = peer, sender: str = sender, text: str = text) -> bool | None:
            messages = net.cli(peer, "chat", "history", sender, "--limit", "20")["messages"]
            return True if any(m["text"] == text for m in messages) else None

        wait_for(f"{text!r} in {peer}'s history", arrived, timeout)
        how = ",".join(sorted(sent.get("delivery") or {})) or "?"
        took[f"{sender}->{peer}"] = f"{time.monotonic() - started:.1f} s {how}"
    return took


class Watch:
    """Polls a user's ``hopline status`` in a thread: [(seconds since start, status)]."""

    def __init__(self, net: Net, user: str) -> None:
        self.net, self.user = net, user
        self.started = time.monotonic()
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            status = self.net.status(self.user)
            self.seen.append((time.monotonic() - self.started, status))
            self._stop.wait(0.2)

    def until_online(self, after: float, timeout: float) -> float:
        """Seconds from the start until a status taken after ``after`` s was online."""

        def online() -> float | None:
            for at, status in list(self.seen):
                if at >= after and status["state"] == "online":
                    return at
            return None

        return wait_for(f"{self.user} online again", online, timeout)

    def states(self, start: float, end: float) -> list[str]:
        return [s["state"] for at, s in self.seen if start <= at <= end]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(40)


def interfaces(namespace: str) -> list[dict[str, Any]]:
    """``ip -j addr`` of a namespace: its interfaces with their addresses."""
    listed: list[dict[str, Any]] = json.loads(run(["ip", "-n", namespace, "-j", "addr"]).stdout)
    return [i for i in listed if i["ifname"] != "lo"]


def ipv4_of(interface: dict[str, Any]) -> str:
    for info in interface["addr_info"]:
        if info["family"] == "inet":
            return f"{info['local']}/{info['prefixlen']}"
    raise AssertionError(f"{interface['ifname']} has no IPv4 address")


def wan_of(net: Net, user: str) -> tuple[str, str, str]:
    """(router namespace, its public interface, that interface's address/prefix)."""
    host = net.lab.host(USERS[user][0])
    router = host.routers[0]
    for interface in interfaces(router):
        address = ipv4_of(interface)
        if address.split("/")[0] == host.public_address:
            return router, interface["ifname"], address
    raise AssertionError(f"no interface of {router} has {host.public_address}")


def lan_of(net: Net, user: str) -> tuple[str, str, str]:
    """(the user's namespace, its interface, its current address/prefix)."""
    namespace = net.lab.host(USERS[user][0]).namespace
    (interface,) = interfaces(namespace)
    return namespace, interface["ifname"], ipv4_of(interface)


def gateway(address: str) -> str:
    """The router of a client LAN: .1 of the /24."""
    return address.rsplit(".", 1)[0] + ".1"


def renumber(namespace: str, device: str, old: str, new: str, route_via: str | None) -> None:
    """Replace ``old`` by ``new`` on ``device`` (and point the default route at
    ``route_via``) in one batch of ``ip`` commands."""
    commands = [f"addr del {old} dev {device}", f"addr add {new} dev {device}"]
    if route_via is not None:
        commands.append(f"route replace default via {route_via}")
    ip_batch(namespace, commands)


def rehomed_after(watch: Watch, changed: float, timeout: float) -> tuple[float, dict[str, Any]]:
    """The first status (seconds after ``changed``, wall clock) online with a home
    connected after ``changed``."""

    def found() -> tuple[float, dict[str, Any]] | None:
        for at, status in list(watch.seen):
            home = status.get("supernode") or {}
            if status["state"] == "online" and (home.get("since") or 0) > changed:
                return at, status
        return None

    return wait_for("a new home after the change", found, timeout)


# ---------------------------------------------------------------- the cases


def test_the_nat_forgets_alice_and_her_daemon_comes_back(net: Net) -> None:
    before = wait_online(net, "alice")
    exchange(net, "before the NAT change")
    router, wan, old = wan_of(net, "alice")
    watch = Watch(net, "alice")
    try:
        changed, at_change = time.time(), time.monotonic() - watch.started
        renumber(router, wan, old, NEW_PUBLIC, None)
        at, status = rehomed_after(watch, changed, RECOVERY_BOUND_S)
        online_s = at - at_change
        chat = exchange(net, "after the NAT change")
        chatting_s = time.monotonic() - watch.started - at_change
    finally:
        watch.stop()
    net.recovery["nat-forgets: online"] = round(online_s, 1)
    net.recovery["nat-forgets: chat both ways"] = round(chatting_s, 1)
    print(
        f"\nNAT renumbered {old} -> {NEW_PUBLIC}: public address {before['public_address']}"
        f" -> {status['public_address']}; online again after {online_s:.1f} s, "
        f"messages both ways after {chatting_s:.1f} s {chat}; states {compact(watch)}"
    )
    assert net.daemons["alice"].alive()
    assert status["public_address"].startswith(NEW_PUBLIC.split("/", maxsplit=1)[0] + ":"), status
    assert online_s <= RECOVERY_BOUND_S
    assert chatting_s <= CHAT_BOUND_S


def test_alice_survives_her_link_going_down_for_eight_seconds(net: Net) -> None:
    wait_online(net, "alice")
    namespace, device, address = lan_of(net, "alice")
    watch = Watch(net, "alice")
    try:
        time.sleep(1.0)
        down_at = time.monotonic() - watch.started
        ip_batch(namespace, [f"link set {device} down"])
        time.sleep(OUTAGE_S)
        ip_batch(
            namespace, [f"link set {device} up", f"route replace default via {gateway(address)}"]
        )
        up_at = time.monotonic() - watch.started
        back = watch.until_online(after=up_at, timeout=NOTICE_BOUND_S + 5)
        time.sleep(0.5)
        during = watch.states(down_at, up_at + 1.0)
        chat = exchange(net, "after the outage")
        chatting_s = time.monotonic() - watch.started - up_at
    finally:
        watch.stop()
    online_s = back - up_at
    net.recovery["link-down: online after link up"] = round(online_s, 1)
    net.recovery["link-down: chat both ways after link up"] = round(chatting_s, 1)
    print(
        f"\nlink down {OUTAGE_S:.0f} s: states during the outage {sorted(set(during))}; "
        f"online {online_s:.1f} s after the link came back, messages both ways after "
        f"{chatting_s:.1f} s {chat}; states {compact(watch)}"
    )
    assert net.daemons["alice"].alive()
    assert any(state in ("re-homing", "connecting") for state in during), during
    assert online_s <= NOTICE_BOUND_S
    assert chatting_s <= CHAT_BOUND_S


def test_alice_gets_a_new_address_and_her_daemon_follows(net: Net) -> None:
    wait_online(net, "alice")
    namespace, device, old = lan_of(net, "alice")
    new = NEW_LAN.format(net=old.split(".")[2])
    watch = Watch(net, "alice")
    try:
        changed, at_change = time.time(), time.monotonic() - watch.started
        renumber(namespace, device, old, new, gateway(old))
        at, _status = rehomed_after(watch, changed, NOTICE_BOUND_S + 5)
        online_s = at - at_change
        chat = exchange(net, "after the new address")
        chatting_s = time.monotonic() - watch.started - at_change
    finally:
        watch.stop()
    net.recovery["new-address: online"] = round(online_s, 1)
    net.recovery["new-address: chat both ways"] = round(chatting_s, 1)
    print(
        f"\naddress {old} -> {new}: online again after {online_s:.1f} s, messages both ways "
        f"after {chatting_s:.1f} s {chat}; states {compact(watch)}"
    )
    assert net.daemons["alice"].alive()
    assert lan_of(net, "alice")[2] == new
    assert online_s <= NOTICE_BOUND_S
    assert chatting_s <= CHAT_BOUND_S


def compact(watch: Watch) -> str:
    """The state changes a watch saw: "online@0.0 re-homing@12.3 ..."."""
    shown, last = [], None
    for at, status in watch.seen:
        if status["state"] != last:
            shown.append(f"{status['state']}@{at:.1f}")
            last = status["state"]
    return " ".join(shown)

"""Messaging benchmark: latency, the offline store and file throughput on loopback.

    python benchmarks/messaging.py [--quick] [--asyncio]

A login server and three supernodes run as real processes on loopback (every
node owns every directory slot, so every node is an owner of each user's
offline store: replication 3). The users are logged-in devices in this
process, each a :class:`~hopline.client.session.ClientSession` with a
:class:`~hopline.path.manager.PathManager`, its own SQLite
:class:`~hopline.messaging.history.History` and a
:class:`~hopline.messaging.service.MessagingService`, over real sockets.

1. **Online latency.** ``alice`` sends to ``bob`` one message at a time with
   :meth:`MessagingService.send`; the latency is from the call to bob's
   ``on_event`` "message" for it (sealed, delivered on the path, opened,
   checked, written to bob's history). The send's own return (after bob's
   ``msg.ack``) is the round trip. Once over a direct path and once over a
   forced relay (through a supernode); the first messages, which open the
   path, are left out. p50, p99 and the worst.
2. **Offline store.** ``dave`` logs out; ``alice`` sends him a backlog, one
   message at a time, and then (another pair) 16 sends in flight. Each send
   is answered once the storing owner (alice's home) has the envelope on
   disk (SQLite, ``synchronous=FULL``); it copies it to the slot's other
   owners in the background. The write rate is the backlog over the time of
   the sends; the supernodes' ``offline_messages`` gauges are read while it
   runs, giving for each owner the time at which it held the whole backlog.
   The directory lookup of the offline user is timed on its own: a send
   pays it once per lookup cache lifetime (``MessagingConfig.lookup_ttl_s``).
3. **Backlog at login.** ``dave`` comes back: connect to the home supernode,
   start paths, and ``MessagingService.start()``, which fetches the backlog
   in pages of 50, opens and stores every message and acknowledges each
   page. The drain rate is the backlog over the fetch; the login figure
   includes the connect.
4. **File transfer** on loopback, direct and relayed: the end-to-end run of
   ``benchmarks/files.py`` (its own network of one supernode; both clients
   in this process, 32 and 63 KiB chunks), then the same file between two
   daemon processes (``hopline up``, driven through the local API, the
   daemon's own settings), as two users run them (``_daemon_files``).

Everything runs on uvloop, as the daemon does (``--asyncio``: the standard
loop). The anchors are from the project's aims: Tox's relayed file transfers run at
200-300 KB/s; the aim for Hopline relayed is over 20 MB/s. Writes
benchmarks/results/messaging.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from _daemon_files import run_daemons
from files import MB, run_loopback
from hopline.client.profile import Profile
from hopline.client.session import ClientSession, SessionConfig
from hopline.messaging.history import History
from hopline.messaging.service import MessagingConfig, MessagingService
from hopline.path.manager import PathConfig, PathManager
from hopline.runtime.loop import run as run_loop
from hopline.runtime.loop import uvloop_available
from hopline.testing.network import LoopbackNet, logged_in, loopback_net, scrape_metrics
from hopline.wire import Address
from hopline.wire.directory import LookupState

SUPERNODES = 3
SESSION = SessionConfig(keepalive_s=1.0)
CONFIG = MessagingConfig()  # as a client runs it: lookups cached for a second
IN_FLIGHT = 16  # sends at once in the concurrent write
WARMUP = 10  # messages that open the path, left out of the latency figures
GAUGE = "hopline_supernode_offline_messages"
TOX_RELAY = "0.2-0.3 MB/s (Tox)"
AIM_RELAY = 20.0  # MB/s relayed
SOURCES = itertools.count(60)  # 127.0.0.x: the login server throttles per source address


class Inbox:
    """When each message arrived at a device (by its text), and a wait for one."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.wakeup = asyncio.Event()

    def on_event(self, event: dict[str, Any]) -> None:
        """The service's ``on_event``: note the arrival of a message."""
        if event["type"] == "message":
            self.arrived[event["text"]] = time.perf_counter()
            self.wakeup.set()

    async def wait_for(self, text: str, timeout: float = 15.0) -> float:
        """The arrival time of the message ``text``, waiting for it."""
        deadline = time.perf_counter() + timeout
        while text not in self.arrived:
            self.wakeup.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"message {text!r} did not arrive")
            await asyncio.wait_for(self.wakeup.wait(), left)
        return self.arrived[text]


@dataclass
class Device:
    """One logged-in device with paths, a history and a messaging service."""

    session: ClientSession
    paths: PathManager
    history: History
    chat: MessagingService
    keeper: asyncio.Task[None]
    inbox: Inbox
    started_s: float  # the time MessagingService.start() took (the offline fetch)

    @property
    def user(self) -> str:
        """The username."""
        name: str = self.chat.me
        return name


async def device(profile: Profile, *, direct: bool = True) -> Device:
    """Connect ``profile``'s device, start its paths and its messaging service."""
    session = ClientSession(profile, SESSION)
    await session.connect()
    paths = PathManager(session, PathConfig(direct=direct))
    await paths.start()
    history = History.open(profile.path / "history.sqlite3")
    inbox = Inbox()
    chat = MessagingService(session, paths, history, config=CONFIG, on_event=inbox.on_event)
    keeper = asyncio.get_running_loop().create_task(session.run())
    start = time.perf_counter()
    await chat.start()
    started_s = time.perf_counter() - start
    return Device(session, paths, history, chat, keeper, inbox, started_s)


async def new_user(net: LoopbackNet, name: str, *, direct: bool = True) -> Device:
    """Register and log in ``name``, then start its device."""
    profile = await logged_in(net.workdir, net.ls, name, bind=f"127.0.0.{next(SOURCES)}")
    return await device(profile, direct=direct)


async def stop(*devices: Device) -> None:
    """Log the devices out (the directory hears they went offline)."""
    for one in devices:
        await one.chat.close()
        one.keeper.cancel()
        await one.paths.close()
        await one.session.leave()
        one.history.close()
    await asyncio.sleep(0)  # the cancelled tasks finish


def millis(values: list[float]) -> dict[str, float]:
    """p50, p99, worst and mean of ``values`` (seconds) in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def path_kind(sender: Device, user: str) -> str:
    """How ``sender`` reaches ``user`` now: direct or relay."""
    kinds = {p.kind for p in sender.paths.paths if p.user == user and p.live}
    return "+".join(sorted(kinds)) or "none"


async def online_latency(net: LoopbackNet, count: int, *, direct: bool) -> dict[str, Any]:
    """``count`` sequential messages from a new alice to a new bob; latency figures."""
    tag = "direct" if direct else "relay"
    alice = await new_user(net, f"alice-{tag}", direct=direct)
    bob = await new_user(net, f"bob-{tag}", direct=direct)
    try:
        one_way: list[float] = []
        round_trip: list[float] = []
        ways: dict[str, int] = {}
        for n in range(WARMUP + count):
            text = f"{tag} message {n}"
            start = time.perf_counter()
            sent = await alice.chat.send(bob.user, text)
            answered = time.perf_counter()
            arrived = await bob.inbox.wait_for(text)
            if n < WARMUP:
                continue
            one_way.append(arrived - start)
            round_trip.append(answered - start)
            for way, number in sent["delivery"].items():
                ways[way] = ways.get(way, 0) + number
        return {
            "path": path_kind(alice, bob.user),
            "messages": count,
            "delivery": ways,
            "one_way": millis(one_way),
            "send_with_ack": millis(round_trip),
        }
    finally:
        await stop(alice, bob)


def home_of(net: LoopbackNet, one: Device) -> str:
    """The name (sn0, sn1, ...) of the supernode ``one`` is logged in at."""
    names: dict[Address, str] = {Address.parse(n.ready["listen"]): n.name for n in net.nodes}
    return names.get(one.session.home_address, "none") if one.session.home_address else "none"


def cpu_seconds(net: LoopbackNet) -> list[float]:
    """CPU seconds (user and system) each supernode process has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    used = []
    for node in net.nodes:
        stat = Path(f"/proc/{node.pid}/stat").read_text(encoding="ascii")
        fields = stat.rsplit(")", 1)[1].split()  # after the command name: field 3 onwards
        used.append((int(fields[11]) + int(fields[12])) / tick)  # utime, stime
    return used


def cpu_per_message(
    net: LoopbackNet, before: list[float], count: int, elapsed: float, idle: list[float]
) -> dict[str, float]:
    """Each supernode's CPU milliseconds per message since ``before``, net of its idle
    rate (``idle``, CPU seconds per second) over the ``elapsed`` seconds."""
    after = cpu_seconds(net)
    return {
        node.name: round(max(0.0, a - b - rate * elapsed) * 1000 / count, 3)
        for node, a, b, rate in zip(net.nodes, after, before, idle, strict=True)
    }


async def idle_cpu(net: LoopbackNet, seconds: float = 3.0) -> list[float]:
    """Each supernode's CPU seconds per second while nothing is sent (gauges read)."""
    before, start = cpu_seconds(net), time.perf_counter()
    while time.perf_counter() - start < seconds:
        await gauges(net)
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - start
    return [(a - b) / elapsed for a, b in zip(cpu_seconds(net), before, strict=True)]


async def gauges(net: LoopbackNet) -> list[float]:
    """Every supernode's count of offline envelopes held now."""
    metrics = [p.ready["metrics"] for p in net.nodes]
    found = await asyncio.gather(*(asyncio.to_thread(scrape_metrics, m) for m in metrics))
    return [values.get(GAUGE, 0.0) for values in found]


async def watch_owners(
    net: LoopbackNet, base: list[float], count: int, start: float, held: dict[int, float]
) -> None:
    """Note in ``held`` when each supernode first holds ``count`` more envelopes."""
    while len(held) < len(base):
        for n, value in enumerate(await gauges(net)):
            if n not in held and value >= base[n] + count:
                held[n] = time.perf_counter() - start
        await asyncio.sleep(0.2)


async def send_all(alice: Device, user: str, texts: list[str], in_flight: int) -> None:
    """Send ``texts`` to ``user``, ``in_flight`` at a time; each must be stored offline."""
    gate = asyncio.Semaphore(in_flight)

    async def one(text: str) -> None:
        async with gate:
            sent = await alice.chat.send(user, text)
        assert sent["delivery"] == {"stored": 1}, sent["delivery"]

    await asyncio.gather(*(one(text) for text in texts))


async def store_backlog(
    net: LoopbackNet, alice: Device, user: str, count: int, in_flight: int, idle: list[float]
) -> dict[str, Any]:
    """``alice`` sends ``count`` messages to the logged-out ``user``; write figures."""
    base = await gauges(net)
    held: dict[int, float] = {}
    cpu, client_cpu = cpu_seconds(net), time.process_time()
    start = time.perf_counter()
    watcher = asyncio.get_running_loop().create_task(watch_owners(net, base, count, start, held))
    try:
        await send_all(alice, user, [f"backlog {n}" for n in range(count)], in_flight)
        write_s = time.perf_counter() - start
        await asyncio.wait_for(asyncio.shield(watcher), 120)
    finally:
        watcher.cancel()
    client_ms = (time.process_time() - client_cpu) * 1000 / count
    return {
        "in_flight": in_flight,
        "storing_home": home_of(net, alice),
        "write_s": round(write_s, 3),
        "write_msgs_per_s": round(count / write_s),
        "owners": [
            {"supernode": f"sn{n}", "held_all_s": round(s, 3), "msgs_per_s": round(count / s)}
            for n, s in sorted(held.items())
        ],
        "write_cpu_ms_per_msg": cpu_per_message(net, cpu, count, time.perf_counter() - start, idle),
        "write_client_cpu_ms_per_msg": round(client_ms, 3),
    }


async def drain_at_login(
    net: LoopbackNet, profile: Profile, count: int, idle: list[float]
) -> dict[str, Any]:
    """Log ``profile``'s device back in; the backlog must arrive, once, during start()."""
    cpu, client_cpu = cpu_seconds(net), time.process_time()
    start = time.perf_counter()
    back = await device(profile)
    login_s = time.perf_counter() - start
    client_ms = (time.process_time() - client_cpu) * 1000 / count
    cpu_ms = cpu_per_message(net, cpu, count, login_s, idle)
    home = home_of(net, back)
    try:
        got = sum(text.startswith("backlog ") for text in back.inbox.arrived)
        assert got == count, f"{got} of {count} backlog messages at login"
        again = await back.chat.fetch_offline()
        assert again == 0, f"{again} messages served again after the acks"
    finally:
        await stop(back)
    return {
        "serving_home": home,
        "drain_s": round(back.started_s, 3),
        "drain_msgs_per_s": round(count / back.started_s),
        "login_to_all_delivered_s": round(login_s, 3),
        "drain_cpu_ms_per_msg": cpu_ms,
        "drain_client_cpu_ms_per_msg": round(client_ms, 3),
    }


async def offline_backlog(net: LoopbackNet, count: int, in_flight: int) -> dict[str, Any]:
    """Store ``count`` messages for a logged-out user, then time the login and drain."""
    alice = await new_user(net, f"alice-offline-{in_flight}")
    dave = await new_user(net, f"dave-{in_flight}")
    profile = dave.session.profile
    await stop(dave)
    await asyncio.sleep(CONFIG.lookup_ttl_s * 1.5)  # alice's cached lookup showed him online
    try:
        lookup_start = time.perf_counter()
        found = await alice.session.lookup(dave.user)
        lookup_ms = (time.perf_counter() - lookup_start) * 1000
        assert found.state == LookupState.OFFLINE, found.state
        idle = await idle_cpu(net)
        written = await store_backlog(net, alice, dave.user, count, in_flight, idle)
        drained = await drain_at_login(net, profile, count, idle)
    finally:
        await stop(alice)
    return {
        "messages": count,
        "offline_lookup_ms": round(lookup_ms, 1),
        "idle_cpu_ms_per_s": {
            n.name: round(r * 1000, 1) for n, r in zip(net.nodes, idle, strict=True)
        },
        **written,
        **drained,
    }


async def run_messaging(workdir: Path, latency_count: int, backlog: int) -> dict[str, Any]:
    """The messaging figures on one running network."""
    with loopback_net(workdir, supernodes=SUPERNODES) as net:
        direct = await online_latency(net, latency_count, direct=True)
        relay = await online_latency(net, latency_count, direct=False)
        offline = [
            await offline_backlog(net, backlog, 1),
            await offline_backlog(net, backlog, IN_FLIGHT),
        ]
    return {"supernodes": SUPERNODES, "latency": [direct, relay], "offline": offline}


def file_rows(size: int, uvloop: bool) -> list[dict[str, Any]]:
    """The end-to-end file transfers of ``benchmarks/files.py``, with the anchor/aim."""
    rows = run_loopback(size, uvloop=uvloop)
    for row in rows:
        relayed = row["path"] == "relay"
        row["anchor"] = TOX_RELAY if relayed else ""
        row["aim_mb_per_s"] = AIM_RELAY if relayed else None
        row["meets_aim"] = row["mb_per_s"] > AIM_RELAY if relayed else None
    return rows


def daemon_rows(size: int) -> list[dict[str, Any]]:
    """The same transfer between two daemon processes (``_daemon_files``), with the aim."""
    rows = run_daemons(size)
    for row in rows:
        relayed = row["path"] != "direct"
        row["aim_mb_per_s"] = AIM_RELAY if relayed else None
        row["meets_aim"] = row["mb_per_s"] > AIM_RELAY if relayed else None
    return rows


def print_daemon_files(doc: dict[str, Any]) -> None:
    """The file transfer between two daemon processes."""
    rows = [
        [
            r["path"],
            r["seconds"],
            r["mb_per_s"],
            r["alice_cpu_s_per_mb"],
            r["bob_cpu_s_per_mb"],
            r["supernode_cpu_s_per_mb"],
            f"> {r['aim_mb_per_s']:.0f}" if r["aim_mb_per_s"] else "-",
        ]
        for r in doc["files_daemons"]
    ]
    print_table(
        f"file transfer between two daemon processes (hopline up), {doc['files_size_mb']} MB",
        ["path", "seconds", "MB/s", "alice CPU s/MB", "bob CPU s/MB", "SN CPU s/MB", "aim MB/s"],
        rows,
    )


def print_latency(messaging: dict[str, Any]) -> None:
    """The online latency table."""
    rows = []
    for one in messaging["latency"]:
        for key, label in (("one_way", "send to on_event"), ("send_with_ack", "send until acked")):
            got = one[key]
            rows.append(
                [one["path"], label, one["messages"], got["p50_ms"], got["p99_ms"], got["max_ms"]]
            )
    print_table(
        "message latency online, alice -> bob, sequential (real supernodes on loopback)",
        ["path", "measured", "messages", "p50 ms", "p99 ms", "max ms"],
        rows,
    )


def offline_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per figure of the offline runs, one column per run."""
    nodes = list(runs[0]["write_cpu_ms_per_msg"])
    owners = [o["supernode"] for o in runs[0]["owners"]]
    wanted: list[tuple[str, Any]] = [
        ("lookup of the offline user, ms", lambda r: r["offline_lookup_ms"]),
        ("alice's home, which stores and replicates", lambda r: r["storing_home"]),
        ("write: all sends answered, s", lambda r: r["write_s"]),
        ("write rate (one owner on disk), msgs/s", lambda r: r["write_msgs_per_s"]),
        *((f"{name} holds all, msgs/s", _owner_rate(n)) for n, name in enumerate(owners)),
        *((f"{name} CPU per stored message, ms", _node_cpu("write", name)) for name in nodes),
        ("client process CPU per sent message, ms", lambda r: r["write_client_cpu_ms_per_msg"]),
        ("dave's home, which serves the fetch", lambda r: r["serving_home"]),
        ("drain at login (fetch, open, store, ack), s", lambda r: r["drain_s"]),
        ("drain rate, msgs/s", lambda r: r["drain_msgs_per_s"]),
        ("login to all delivered (connect + drain), s", lambda r: r["login_to_all_delivered_s"]),
        *((f"{name} CPU per drained message, ms", _node_cpu("drain", name)) for name in nodes),
        ("client process CPU per drained message, ms", lambda r: r["drain_client_cpu_ms_per_msg"]),
    ]
    return [[label, *(pick(run) for run in runs)] for label, pick in wanted]


def _owner_rate(n: int) -> Any:
    return lambda run: run["owners"][n]["msgs_per_s"]


def _node_cpu(step: str, name: str) -> Any:
    return lambda run: run[f"{step}_cpu_ms_per_msg"][name]


def print_offline(messaging: dict[str, Any]) -> None:
    """The offline store table: a column per run."""
    runs = messaging["offline"]
    print_table(
        f"offline store, {runs[0]['messages']}-message backlog, "
        f"{messaging['supernodes']} supernodes (every one an owner)",
        ["step", *(f"{r['in_flight']} send(s) in flight" for r in runs)],
        offline_rows(runs),
    )


def print_files(doc: dict[str, Any]) -> None:
    """The file transfer table with the anchor and the aim."""
    rows = [
        [
            r["path"],
            f"{r['chunk_size'] // 1024} KiB",
            r["seconds"],
            r["mb_per_s"],
            r.get("clients_cpu_s_per_mb", "-"),
            r.get("supernode_cpu_s_per_mb", "-"),
            r["anchor"] or "-",
            f"> {r['aim_mb_per_s']:.0f}" if r["aim_mb_per_s"] else "-",
        ]
        for r in doc["files"]
    ]
    print_table(
        f"file transfer on loopback, {doc['files_size_mb']} MB, real processes",
        [
            "path",
            "chunk",
            "seconds",
            "MB/s",
            "client CPU s/MB",
            "SN CPU s/MB",
            "anchor",
            "aim MB/s",
        ],
        rows,
    )


def main() -> None:
    """Run the benchmark, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100 messages, a 200 backlog, 16 MB files"
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="the standard loop, not uvloop (the daemon's)"
    )
    args = parser.parse_args()
    uvloop = not args.asyncio
    latency_count = 100 if args.quick else 500
    backlog = 200 if args.quick else 1000
    size = (16 if args.quick else 100) * MB
    with tempfile.TemporaryDirectory() as tmp:
        work = run_messaging(Path(tmp), latency_count, backlog)
        messaging = run_loop(work, use_uvloop=uvloop)
    doc = {
        "loop": "uvloop" if uvloop and uvloop_available() else "asyncio",
        "messaging": messaging,
        "files_size_mb": size // MB,
        "files": file_rows(size, uvloop),
        "files_daemons": daemon_rows(size),
    }
    doc["load_average_1m"] = round(os.getloadavg()[0], 2)  # the 2 cores are shared
    print_latency(messaging)
    print_offline(messaging)
    print_files(doc)
    print_daemon_files(doc)
    print(f"\nload average (1 min) at the end: {doc['load_average_1m']}")
    write_json("messaging", doc)


if __name__ == "__main__":
    main()

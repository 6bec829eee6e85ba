"""Probes for a lab: what does the public segment see of a client, and what gets back?

``python -m hopline.netlab.probe serve HOST:PORT...`` (on servers) answers
every UDP datagram and TCP connection with the source address it saw, as
JSON — a STUN-like reflector. A UDP request may ask for the answer to come
from elsewhere, to observe a NAT's *filtering*: ``"reply": "same"`` (the
address it was sent to), ``"other-port"`` (same address, another port) or
``"other-host"`` (another served address). It prints ``{"ready": true}``
once every socket is bound.

``python -m hopline.netlab.probe udp DEST... [--reply same|other-port|other-host]``
(on a client) sends one request from one socket to each destination and
prints ``{"local": ..., "seen": {DEST: "ip:port" | null}}`` — the mapped
address each destination saw, null when no answer came back in
``--timeout`` seconds (requests are repeated, so a lost datagram is not a
false null); ``--bind HOST`` sends from that address (servers share P-pub).
``python -m hopline.netlab.probe tcp DEST`` prints ``{"connected": bool,
"seen": ...}``.

Plain blocking sockets: each probe is one short-lived process in a namespace.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from typing import Any

from hopline.wire import Address

__all__ = ["main", "serve", "tcp_probe", "udp_probe"]

REPLY_MODES = ("same", "other-port", "other-host")
MAX_DATAGRAM = 2048


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _text(address: tuple[Any, ...]) -> str:
    return str(Address.of(address[0], address[1]))


# ---------------------------------------------------------------- the reflector


def serve(listen: list[Address]) -> None:
    """Reflect source addresses on UDP and TCP at every ``listen`` address, forever."""
    selector = selectors.DefaultSelector()
    udp: dict[socket.socket, Address] = {}
    spare: dict[Address, socket.socket] = {}  # per address: another port, for "other-port"
    for address in listen:
        host, port = address.as_tuple()
        sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        sock.bind((host, port))
        udp[sock] = address
        spare[address] = socket.socket(_family(host), socket.SOCK_DGRAM)
        spare[address].bind((host, 0))
        selector.register(sock, selectors.EVENT_READ, "udp")
        listener = socket.socket(_family(host), socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(64)
        selector.register(listener, selectors.EVENT_READ, "tcp")
    print(json.dumps({"ready": True, "listen": [str(a) for a in listen]}), flush=True)
    while True:
        for key, _ in selector.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            if key.data == "tcp":
                _answer_tcp(ready)
            else:
                _answer_udp(ready, udp, spare)


def _answer_tcp(listener: socket.socket) -> None:
    conn, peer = listener.accept()
    with conn:
        conn.sendall(json.dumps({"seen": _text(peer)}).encode() + b"\n")


def _answer_udp(
    sock: socket.socket, udp: dict[socket.socket, Address], spare: dict[Address, socket.socket]
) -> None:
    data, peer = sock.recvfrom(MAX_DATAGRAM)
    try:
        request = json.loads(data)
        mode = request.get("reply", "same") if isinstance(request, dict) else "same"
    except ValueError:
        return  # not ours: dropped
    here = udp[sock]
    if mode == "other-port":
        sender: socket.socket | None = spare[here]
    elif mode == "other-host":  # another served address of the same family
        others = [s for s, a in udp.items() if a.host != here.host and s.family == sock.family]
        sender = others[0] if others else None
    else:
        sender = sock
    if sender is None:
        return  # no other host to answer from
    answer = {"id": request.get("id"), "seen": _text(peer), "from": _text(sender.getsockname())}
    sender.sendto(json.dumps(answer).encode(), peer)


# ---------------------------------------------------------------- the clients


def udp_probe(
    destinations: list[Address], reply: str = "same", timeout: float = 1.5, bind: str | None = None
) -> dict[str, Any]:
    """Send from one socket to every destination; what each saw (None: no answer)."""
    host = bind or ("::" if any(":" in str(d.host) for d in destinations) else "0.0.0.0")  # noqa: S104
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(0.1)
        seen: dict[str, str | None] = {str(d): None for d in destinations}
        deadline = time.monotonic() + timeout
        resend = 0.0
        while time.monotonic() < deadline and None in seen.values():
            if time.monotonic() >= resend:  # (re)send to those that have not answered
                for i, dest in enumerate(destinations):
                    if seen[str(dest)] is None:
                        payload = json.dumps({"id": i, "reply": reply}).encode()
                        sock.sendto(payload, dest.as_tuple())
                resend = time.monotonic() + 0.3
            _collect(sock, destinations, seen)
        return {"local": _text(sock.getsockname()), "reply": reply, "seen": seen}


def _collect(sock: socket.socket, destinations: list[Address], seen: dict[str, str | None]) -> None:
    try:
        data, _ = sock.recvfrom(MAX_DATAGRAM)
    except (TimeoutError, OSError):
        return
    try:
        answer = json.loads(data)
        index = int(answer["id"])
    except (ValueError, KeyError, TypeError):
        return
    if 0 <= index < len(destinations):
        seen[str(destinations[index])] = str(answer["seen"])


def tcp_probe(destination: Address, timeout: float = 3.0) -> dict[str, Any]:
    """Connect over TCP; what the server saw (``connected`` False if it could not)."""
    try:
        with socket.create_connection(destination.as_tuple(), timeout=timeout) as conn:
            line = conn.makefile("r", encoding="utf-8").readline()
            return {"connected": True, "seen": json.loads(line)["seen"]}
    except OSError as exc:
        return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hopline.netlab.probe")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve").add_argument("listen", nargs="+", type=Address.parse)
    udp = commands.add_parser("udp")
    udp.add_argument("destinations", nargs="+", type=Address.parse)
    udp.add_argument("--reply", choices=REPLY_MODES, default="same")
    udp.add_argument("--timeout", type=float, default=1.5)
    udp.add_argument("--bind", help="local address to send from (a server's, in P-pub)")
    tcp = commands.add_parser("tcp")
    tcp.add_argument("destination", type=Address.parse)
    tcp.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.listen)
    elif args.command == "udp":
        print(json.dumps(udp_probe(args.destinations, args.reply, args.timeout, args.bind)))
    else:
        print(json.dumps(tcp_probe(args.destination, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

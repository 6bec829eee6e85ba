"""Capture what a lab namespace sends and receives, for tests that look at it.

``python -m hopline.netlab.capture --out FILE [--tcp]`` runs inside a lab
namespace (as root: it opens an ``AF_PACKET`` socket), prints
``{"ready": true}`` once it listens, and writes one JSON line per UDP
datagram (and, with ``--tcp``, per TCP segment that carries data) seen on
any interface of the namespace, until SIGTERM/SIGINT or ``--seconds``::

    {"t": 1.234, "proto": "udp", "src": "203.0.113.2:40000",
     "dst": "203.0.113.3:33033", "data": "hex"}

IPv4 and IPv6 (without extension headers) are decoded; other frames are
skipped. At most ``--max-packets`` records are kept, so a busy host cannot
fill the disk. A packet seen on two interfaces of the namespace (routers)
appears twice. TCP segments are not reassembled into streams: a test
looking for a string in TCP traffic looks at each segment, so it uses many
distinct strings, or ones short enough to fit a segment. Records are read
back with :func:`read_capture` (payloads as bytes).

It is how ``tests/netlab/test_call_netlab.py`` checks what a relaying
supernode forwards (UDP), and ``tests/netlab/test_messaging_netlab.py`` that
nothing readable crosses the public segment (UDP and TCP: clients behind a
UDP-blocking firewall reach their supernode over TCP).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Segment", "main", "parse_segment", "read_capture"]

ETH_P_ALL = 0x0003
ETH_HEADER = 14
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PROTOCOLS = {6: "tcp", 17: "udp"}
UDP_HEADER = 8
TCP_MIN_HEADER = 20


class Segment(NamedTuple):
    """The transport payload of one frame."""

    proto: str  # "udp" or "tcp"
    src: str  # "ip:port" ("[ip]:port" for IPv6)
    dst: str
    data: bytes


def _endpoint(address: bytes, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _ip(packet: bytes, ethertype: int) -> tuple[int, bytes, bytes, bytes] | None:
    """(protocol, source, destination, transport bytes) of an IP packet, or None."""
    if ethertype == ETH_P_IP and len(packet) >= 20:
        header, total = (packet[0] & 0x0F) * 4, struct.unpack_from("!H", packet, 2)[0]
        return packet[9], packet[12:16], packet[16:20], packet[header : max(header, total)]
    if ethertype == ETH_P_IPV6 and len(packet) >= 40:
        (length,) = struct.unpack_from("!H", packet, 4)
        return packet[6], packet[8:24], packet[24:40], packet[40 : 40 + length]
    return None


def parse_segment(frame: bytes) -> Segment | None:
    """The UDP or TCP payload of one Ethernet frame (None: neither, or truncated)."""
    if len(frame) < ETH_HEADER:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    found = _ip(frame[ETH_HEADER:], ethertype)
    if found is None or found[0] not in PROTOCOLS:
        return None
    number, src, dst, transport = found
    if number == 17:
        if len(transport) < UDP_HEADER:
            return None
        offset = UDP_HEADER
    else:
        if len(transport) < TCP_MIN_HEADER:
            return None
        offset = (transport[12] >> 4) * 4
    sport, dport = struct.unpack_from("!HH", transport)
    return Segment(
        PROTOCOLS[number], _endpoint(src, sport), _endpoint(dst, dport), transport[offset:]
    )


def read_capture(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a capture file, payloads as bytes under ``data``."""
    with path.open() as lines:
        for line in lines:
            record: dict[str, Any] = json.loads(line)
            record["data"] = bytes.fromhex(record["data"])
            yield record


class _Capture:
    """The capture loop; a signal sets :attr:`stopping` and the loop ends within 0.2 s."""

    def __init__(
        self, out: Path, seconds: float | None, max_packets: int, protocols: frozenset[str]
    ) -> None:
        self.out, self.seconds, self.max_packets = out, seconds, max_packets
        self.protocols = protocols
        self.stopping = False
        self.written = 0

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _going(self, start: float) -> bool:
        in_time = self.seconds is None or time.monotonic() - start < self.seconds
        return not self.stopping and self.written < self.max_packets and in_time

    def run(self) -> int:
        """Capture until a signal or ``seconds``; returns the number of records written."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.settimeout(0.2)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        print(json.dumps({"ready": True}), flush=True)
        start = time.monotonic()
        with sock, self.out.open("w") as sink:
            while self._going(start):
                try:
                    frame, meta = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                segment = parse_segment(frame)
                if segment is None or segment.proto not in self.protocols or not segment.data:
                    continue  # not asked for, or a bare TCP acknowledgement
                if meta[0] == "lo" and meta[2] == socket.PACKET_OUTGOING:
                    continue  # the outgoing copy of a loopback frame
                record = {"t": round(time.monotonic() - start, 4), **segment._asdict()}
                sink.write(json.dumps({**record, "data": segment.data.hex()}) + "\n")
                self.written += 1
        return self.written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hopline.netlab.capture")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines written here")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--max-packets", type=int, default=500_000)
    parser.add_argument("--tcp", action="store_true", help="TCP segments too (default: UDP)")
    args = parser.parse_args(argv)
    protocols = frozenset({"udp", "tcp"} if args.tcp else {"udp"})
    try:
        written = _Capture(args.out, args.seconds, args.max_packets, protocols).run()
    except PermissionError:
        print("capture needs root (an AF_PACKET socket)", file=sys.stderr)
        return 1
    print(json.dumps({"done": True, "packets": written}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

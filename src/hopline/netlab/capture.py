"""Capture the UDP datagrams a lab host sends and receives, for tests that look at them.

``python -m hopline.netlab.capture --out FILE`` runs inside a lab namespace
(as root: it opens an ``AF_PACKET`` socket), prints ``{"ready": true}`` once
it listens, and writes one JSON line per UDP datagram seen on any interface
of the namespace until SIGTERM/SIGINT or ``--seconds``::

    {"t": 1.234, "src": "203.0.113.2:40000", "dst": "203.0.113.3:33033", "data": "hex"}

IPv4 and IPv6 (without extension headers) are decoded; other frames are
skipped. At most ``--max-packets`` datagrams are kept, so a busy host cannot
fill the disk. A packet seen on two interfaces of the namespace (routers)
appears twice.

It is how ``tests/netlab/test_call_netlab.py`` checks what a relaying
supernode forwards: the capture sees what the supernode's own sockets see.
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
from typing import Any

__all__ = ["Datagram", "main", "parse_frame", "read_capture"]

ETH_P_ALL = 0x0003
ETH_HEADER = 14
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_UDP = 17
UDP_HEADER = 8
Datagram = tuple[str, str, bytes]  # source "ip:port", destination "ip:port", payload


def _endpoint(address: bytes, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def parse_frame(frame: bytes) -> Datagram | None:
    """The UDP datagram in one Ethernet frame, or None (not UDP, or truncated)."""
    if len(frame) < ETH_HEADER:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    packet = frame[ETH_HEADER:]
    if ethertype == ETH_P_IP and len(packet) >= 20:
        header = (packet[0] & 0x0F) * 4
        if packet[9] != IPPROTO_UDP or len(packet) < header + UDP_HEADER:
            return None
        src, dst, udp = packet[12:16], packet[16:20], packet[header:]
    elif ethertype == ETH_P_IPV6 and len(packet) >= 40 + UDP_HEADER:
        if packet[6] != IPPROTO_UDP:
            return None
        src, dst, udp = packet[8:24], packet[24:40], packet[40:]
    else:
        return None
    sport, dport, length = struct.unpack_from("!HHH", udp)
    payload = udp[UDP_HEADER : max(UDP_HEADER, length)]
    return _endpoint(src, sport), _endpoint(dst, dport), bytes(payload)


def read_capture(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a capture file, payloads as bytes under ``data``."""
    with path.open() as lines:
        for line in lines:
            record: dict[str, Any] = json.loads(line)
            record["data"] = bytes.fromhex(record["data"])
            yield record


class _Capture:
    """The capture loop; a signal sets :attr:`stopping` and the loop ends within 0.2 s."""

    def __init__(self, out: Path, seconds: float | None, max_packets: int) -> None:
        self.out, self.seconds, self.max_packets = out, seconds, max_packets
        self.stopping = False
        self.written = 0

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _going(self, start: float) -> bool:
        in_time = self.seconds is None or time.monotonic() - start < self.seconds
        return not self.stopping and self.written < self.max_packets and in_time

    def run(self) -> int:
        """Capture until a signal or ``seconds``; returns the number of datagrams written."""
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
                datagram = parse_frame(frame)
                if datagram is None or (meta[0] == "lo" and meta[2] == socket.PACKET_OUTGOING):
                    continue  # not UDP, or the outgoing copy of a loopback frame
                src, dst, payload = datagram
                record = {"t": round(time.monotonic() - start, 4), "src": src, "dst": dst}
                sink.write(json.dumps({**record, "data": payload.hex()}) + "\n")
                self.written += 1
        return self.written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hopline.netlab.capture")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines written here")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--max-packets", type=int, default=200_000)
    args = parser.parse_args(argv)
    try:
        written = _Capture(args.out, args.seconds, args.max_packets).run()
    except PermissionError:
        print("capture needs root (an AF_PACKET socket)", file=sys.stderr)
        return 1
    print(json.dumps({"done": True, "packets": written}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

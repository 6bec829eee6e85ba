"""What supernodes relay, captured on their hosts and checked for plaintext.

A relay forwards the callers' end-to-end ciphertext and must never be able
to read it. The netlab tests prove it on the wire: :func:`capture_relays`
starts :mod:`hopline.netlab.capture` on each supernode's host,
:func:`relayed_payloads` stops the captures and keeps the payloads of
datagrams to or from relayed ports (not the supernode's own port or its
STUN alternate port), and :func:`readable_as` says what a payload could be
read as in plaintext: a media packet, a receiver report or a wire message
(``None``: nothing). Plaintext media parses nearly every time; random
ciphertext parses by chance about once in a few thousand, which
:func:`plaintext_seen` allows for.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from hopline.media.packet import MediaPacketError, decode_packet
from hopline.media.report import decode_report
from hopline.netlab.capture import read_capture
from hopline.netlab.network import SUPERNODE_PORT, LabNetwork
from hopline.netlab.process import LabProcess
from hopline.wire import WireError, decode

__all__ = ["capture_relays", "plaintext_seen", "readable_as", "relayed_payloads"]

Capture = tuple[LabProcess, Path]


def capture_relays(
    net: LabNetwork, name: str, servers: Iterable[str] = ("sn0", "sn1")
) -> list[Capture]:
    """Start capturing every UDP datagram on each supernode host (files named after ``name``)."""
    captures = []
    for server in servers:
        out = net.workdir / f"{name}-{server}.jsonl"
        argv = [sys.executable, "-m", "hopline.netlab.capture", "--out", str(out)]
        process = net.lab.run(server, argv, label=f"cap-{name}-{server}")
        process.wait_ready(10)
        captures.append((process, out))
    return captures


def relayed_payloads(captures: list[Capture]) -> list[bytes]:
    """Stop the captures; the payloads to or from relayed ports."""
    own = {SUPERNODE_PORT, SUPERNODE_PORT + 1}
    payloads = []
    for process, out in captures:
        process.stop()
        for record in read_capture(out):
            ports = {int(record["src"].rsplit(":", 1)[1]), int(record["dst"].rsplit(":", 1)[1])}
            if not ports & own:
                payloads.append(record["data"])
    return payloads


def readable_as(payload: bytes) -> str | None:
    """What a relayed payload could be read as in plaintext, if anything."""
    for name, parse in (("media", decode_packet), ("report", decode_report)):
        try:
            parse(payload)
        except MediaPacketError:
            continue
        return name
    try:
        decode(payload)
    except WireError:
        return None
    return "wire message"


def plaintext_seen(payloads: list[bytes]) -> Counter[str]:
    """Kinds readable in more of ``payloads`` than chance allows (empty: all ciphertext)."""
    seen = Counter(kind for payload in payloads if (kind := readable_as(payload)) is not None)
    allowed = max(3, len(payloads) // 100)
    return Counter({kind: n for kind, n in seen.items() if n > allowed})

"""Host candidates and the probe key: two small helpers of path establishment.

:func:`interface_addresses` lists this machine's interface addresses, the
raw material of *host* candidates. It reads ``ip -j addr`` (iproute2, on
every Linux this project runs on, and inside network namespaces); where
that is missing it falls back to the routing trick of "connecting" a UDP
socket towards a public address and reading the source address the kernel
chose (no packet is sent). Link-local addresses are left out; loopback is
kept, and :func:`hopline.path.candidates.gather` only uses it when nothing
else is there.

:func:`probe_key` derives the key that authenticates connectivity checks
between two users: HKDF-SHA256 over the X25519 shared secret of their
static keys, salted with the attempt's ``path_id``. Only the two devices
can compute it, so the supernodes that carry the signalling cannot forge
checks, and every attempt has its own key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hopline.crypto.noise import DHKeyPair

__all__ = ["PROBE_KEY_INFO", "interface_addresses", "probe_key"]

PROBE_KEY_INFO = b"hopline path checks v1"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_ROUTE_PROBES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))


def probe_key(static: DHKeyPair, peer_static: bytes, path_id: bytes) -> bytes:
    """The 32-byte check key both ends of attempt ``path_id`` derive alike."""
    shared = static.dh(peer_static)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=path_id, info=PROBE_KEY_INFO)
    return hkdf.derive(shared)


async def interface_addresses() -> list[IPAddress]:
    """This machine's IPv4 and IPv6 interface addresses (no link-local ones)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "-j",
            "addr",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
    except OSError:
        return _routed_addresses()
    found = _parse_ip_json(out)
    return found if found else _routed_addresses()


def _parse_ip_json(out: bytes) -> list[IPAddress]:
    try:
        interfaces = json.loads(out or b"[]")
    except ValueError:
        return []
    found: list[IPAddress] = []
    for interface in interfaces if isinstance(interfaces, list) else []:
        for info in interface.get("addr_info", []):
            with contextlib.suppress(ValueError, TypeError):
                ip = ipaddress.ip_address(info.get("local", ""))
                if not ip.is_link_local and not ip.is_unspecified:
                    found.append(ip)
    return list(dict.fromkeys(found))


def _routed_addresses() -> list[IPAddress]:
    found: list[IPAddress] = [ipaddress.ip_address("127.0.0.1")]
    for target, family in _ROUTE_PROBES:
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            found.append(ipaddress.ip_address(probe.getsockname()[0]))
    return found

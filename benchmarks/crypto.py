"""Benchmark the secure-session core against the ``noiseprotocol`` package.

Run ``python benchmarks/crypto.py`` (``--quick`` for a short run). Prints a
table and writes ``benchmarks/results/crypto.json``.

Measured, each in the same process with the same inputs:

* full handshakes per second, both sides in memory (XX and IK,
  ``25519_ChaChaPoly_BLAKE2s``): :class:`hopline.crypto.HandshakeState` vs
  ``noise.connection.NoiseConnection``;
* seal+open of one 100-byte and one 1200-byte datagram (ChaChaPoly and
  AESGCM): :class:`hopline.crypto.SecureSession` (explicit counter, header
  protection, replay window, rekey checks) vs the same explicit-nonce
  construction through ``noiseprotocol``'s ``CipherState`` (8-byte counter
  prefix, ``set_nonce`` + ``encrypt_with_ad``/``decrypt_with_ad``, counter as
  associated data; no header protection or replay window). Hopline's bare
  ``CipherState`` is listed too, to show what header protection and the
  replay window cost.

``ratio`` is hopline's speed over noiseprotocol's: above 1 means faster.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

from _common import rate, write_json  # benchmarks/_common.py, the shared timing helpers
from hopline.crypto import DHKeyPair, HandshakeState, SecureSession, SessionConfig

try:
    from noise.connection import Keypair, NoiseConnection
except ImportError:  # the comparison is optional
    NoiseConnection = None

try:
    from rich.console import Console
    from rich.table import Table

    HAVE_RICH = True
except ImportError:  # plain-text table then
    HAVE_RICH = False


@dataclass
class Row:
    name: str
    unit: str
    hopline: float
    noiseprotocol: float | None
    hopline_bare: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.noiseprotocol is None else self.hopline / self.noiseprotocol


# -- handshakes ---------------------------------------------------------------------


def hopline_handshake(name: str, ik: bool) -> Callable[[], object]:
    client_key, server_key = DHKeyPair.generate(), DHKeyPair.generate()

    def run() -> object:
        initiator = HandshakeState(
            name, initiator=True, s=client_key, rs=server_key.public if ik else None
        )
        responder = HandshakeState(name, initiator=False, s=server_key)
        sides = (initiator, responder)
        turn = 0
        while not initiator.is_complete:
            sides[1 - turn].read_message(sides[turn].write_message(b""))
            turn = 1 - turn
        return initiator.split(), responder.split()

    return run


def noiseprotocol_connection(
    name: str, initiator: bool, static: bytes, remote: bytes | None
) -> Any:
    conn = NoiseConnection.from_name(name.encode())
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static)
    if remote is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
    conn.start_handshake()
    return conn


def noiseprotocol_handshake(name: str, ik: bool) -> Callable[[], object]:
    client_key, server_key = DHKeyPair.generate(), DHKeyPair.generate()
    client_raw, server_raw = client_key.private_bytes(), server_key.private_bytes()

    def run() -> object:
        remote = server_key.public if ik else None
        initiator = noiseprotocol_connection(name, True, client_raw, remote)
        responder = noiseprotocol_connection(name, False, server_raw, None)
        sides = (initiator, responder)
        turn = 0
        while not initiator.handshake_finished:
            sides[1 - turn].read_message(sides[turn].write_message())
            turn = 1 - turn
        return initiator, responder

    return run


def bench_handshakes(seconds: float) -> list[Row]:
    rows = []
    for pattern in ("XX", "IK"):
        name = f"Noise_{pattern}_25519_ChaChaPoly_BLAKE2s"
        ours = rate(hopline_handshake(name, pattern == "IK"), seconds)
        theirs = (
            rate(noiseprotocol_handshake(name, pattern == "IK"), seconds)
            if NoiseConnection is not None
            else None
        )
        rows.append(Row(f"handshake {pattern} (both sides)", "handshakes/s", ours, theirs))
    return rows


# -- transport -------------------------------------------------------------------------


def session_pair(protocol: str) -> tuple[SecureSession, SecureSession]:
    config = SessionConfig(protocol=protocol)
    client = SecureSession.initiate(DHKeyPair.generate(), config=config)
    server = SecureSession.respond(DHKeyPair.generate(), config=config)
    server.read_handshake(client.write_handshake(now=0.0), now=0.0)
    client.read_handshake(server.write_handshake(now=0.0), now=0.0)
    server.read_handshake(client.write_handshake(now=0.0), now=0.0)
    return client, server


def hopline_seal_open(protocol: str, payload: bytes) -> Callable[[], object]:
    client, server = session_pair(protocol)

    def run() -> object:
        return server.open(client.seal(payload, 0.0), 0.0)

    return run


def hopline_bare(protocol: str, payload: bytes) -> Callable[[], object]:
    initiator = HandshakeState(protocol, initiator=True, s=DHKeyPair.generate())
    responder = HandshakeState(protocol, initiator=False, s=DHKeyPair.generate())
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    responder.read_message(initiator.write_message())
    send, _ = initiator.split()
    recv, _ = responder.split()
    counter = iter(range(2**62))

    def run() -> object:
        n = next(counter)
        header = n.to_bytes(8, "big")
        packet = header + send.encrypt_with_nonce(n, header, payload)
        return recv.decrypt_with_nonce(int.from_bytes(packet[:8], "big"), packet[:8], packet[8:])

    return run


def noiseprotocol_seal_open(protocol: str, payload: bytes) -> Callable[[], object]:
    a, b = DHKeyPair.generate(), DHKeyPair.generate()
    initiator = noiseprotocol_connection(protocol, True, a.private_bytes(), None)
    responder = noiseprotocol_connection(protocol, False, b.private_bytes(), None)
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    responder.read_message(initiator.write_message())
    send = initiator.noise_protocol.cipher_state_encrypt
    recv = responder.noise_protocol.cipher_state_decrypt
    counter = iter(range(2**62))

    def run() -> object:
        n = next(counter)
        header = n.to_bytes(8, "big")
        send.set_nonce(n)
        packet = header + send.encrypt_with_ad(header, payload)
        recv.set_nonce(int.from_bytes(packet[:8], "big"))
        return recv.decrypt_with_ad(packet[:8], packet[8:])

    return run


def bench_transport(seconds: float) -> list[Row]:
    rows = []
    for cipher in ("ChaChaPoly", "AESGCM"):
        protocol = f"Noise_XX_25519_{cipher}_BLAKE2s"
        for size in (100, 1200):
            payload = os.urandom(size)
            ours = rate(hopline_seal_open(protocol, payload), seconds)
            bare = rate(hopline_bare(protocol, payload), seconds)
            theirs = (
                rate(noiseprotocol_seal_open(protocol, payload), seconds)
                if NoiseConnection is not None
                else None
            )
            name = f"seal+open {size} B {cipher}"
            rows.append(Row(name, "packets/s", ours, theirs, hopline_bare=bare))
    return rows


# -- output ----------------------------------------------------------------------------


def cost_us(ops_per_second: float | None) -> str:
    return "-" if not ops_per_second else f"{1e6 / ops_per_second:.2f}"


def print_table(rows: list[Row]) -> None:
    headers = ["benchmark", "hopline /s", "us/op", "noiseprotocol /s", "us/op", "ratio", "bare /s"]
    table = [
        [
            row.name,
            f"{row.hopline:,.0f}",
            cost_us(row.hopline),
            "-" if row.noiseprotocol is None else f"{row.noiseprotocol:,.0f}",
            cost_us(row.noiseprotocol),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            "-" if row.hopline_bare is None else f"{row.hopline_bare:,.0f}",
        ]
        for row in rows
    ]
    if not HAVE_RICH:
        widths = [max(len(str(c)) for c in column) for column in zip(headers, *table, strict=True)]
        for line in [headers, *table]:
            print("  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)))
        return
    out = Table(title="hopline.crypto vs noiseprotocol (ratio > 1: hopline faster)")
    for index, header in enumerate(headers):
        out.add_column(header, justify="left" if index == 0 else "right")
    for line in table:
        out.add_row(*line)
    Console(width=max(Console().width, 120)).print(out)


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def save(rows: list[Row], quick: bool, seconds: float) -> None:
    write_json(
        "crypto",
        {
            "benchmark": "crypto",
            "quick": quick,
            "seconds_per_measurement": seconds,
            "cryptography": version("cryptography"),
            "noiseprotocol": version("noiseprotocol"),
            "results": [{**asdict(row), "ratio": row.ratio} for row in rows],
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (about 3 s)")
    args = parser.parse_args(argv)
    seconds = 0.05 if args.quick else 0.5
    if NoiseConnection is None:
        print("noiseprotocol is not installed: comparison columns are empty", file=sys.stderr)
    rows = bench_handshakes(seconds) + bench_transport(seconds)
    print_table(rows)
    save(rows, args.quick, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

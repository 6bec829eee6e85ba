"""docs/protocol.md's secure-session vectors: recomputed from the spec with plain
``cryptography`` primitives, produced by a sending session, opened by a receiving one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hopline.crypto import DecryptError
from hopline.crypto.noise import CIPHERS, CipherState, DHKeyPair
from hopline.crypto.replay import ReplayWindow
from hopline.crypto.session import SecureSession, _HeaderProtection, _Receiver, _Sender

SPEC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
KEY, HP_KEY = bytes(range(32)), bytes(range(32, 64))
PAYLOAD = bytes(range(0xA0, 0xC0))


def vector(name: str) -> bytes:
    found = re.search(rf"#### session vector: {name}\n.*?```hex\n(.*?)\n```", SPEC, flags=re.S)
    assert found is not None, f"no session vector {name} in docs/protocol.md"
    return bytes.fromhex(found.group(1))


def by_the_spec(form: int, epoch: int, counter: int, secret: bytes, payload: bytes) -> bytes:
    """The datagram as docs/protocol.md describes it, without hopline's code."""
    value = (form << 63) | (epoch << 56) | counter
    header = value.to_bytes(8, "big")
    nonce = bytes(4) + counter.to_bytes(8, "big")  # Noise's AESGCM nonce: big-endian
    sealed = AESGCM(KEY).encrypt(nonce, secret, header + payload)
    ecb = Cipher(algorithms.AES(HP_KEY), modes.ECB()).encryptor()
    mask = ecb.update(sealed[:16])[:8]
    return bytes(a ^ b for a, b in zip(header, mask, strict=True)) + sealed + payload


def session_with_known_keys(epoch: int, counter: int) -> tuple[SecureSession, SecureSession]:
    """A sender at ``epoch``/``counter`` and a receiver, both keyed as in the vectors."""
    sender, receiver = (SecureSession.respond(DHKeyPair.generate()) for _ in range(2))
    sender._tx = _Sender(
        CipherState(CIPHERS["AESGCM"], KEY), _HeaderProtection(HP_KEY), 0.0, epoch, counter
    )
    receiver._rx = _Receiver(
        CipherState(CIPHERS["AESGCM"], KEY), _HeaderProtection(HP_KEY), ReplayWindow(), epoch
    )
    return sender, receiver


def test_sealed_vector() -> None:
    data = vector("sealed")
    assert data == by_the_spec(0, 1, 5, b"hello, hopline", b"")
    sender, receiver = session_with_known_keys(1, 5)
    assert sender.seal(b"hello, hopline", 0.0) == data
    assert receiver.unseal(data, 0.0) == (None, b"hello, hopline")


def test_channel_vector() -> None:
    data = vector("channel")
    assert data == by_the_spec(1, 1, 6, b"\x40\x00", PAYLOAD)
    assert data.endswith(PAYLOAD)
    sender, receiver = session_with_known_keys(1, 6)
    assert sender.seal_channel(0x4000, PAYLOAD, 0.0) == data
    assert receiver.unseal(data, 0.0) == (0x4000, PAYLOAD)


@pytest.mark.parametrize("name", ["sealed", "channel"])
def test_vectors_do_not_open_under_another_key(name: str) -> None:
    _, receiver = session_with_known_keys(1, 0)
    assert receiver._rx is not None
    receiver._rx.current = CipherState(CIPHERS["AESGCM"], bytes(32))
    with pytest.raises(DecryptError, match="authentication failed"):
        receiver.unseal(vector(name), 0.0)

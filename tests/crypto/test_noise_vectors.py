"""The Noise state machines against public test vectors and another implementation.

* Every case of ``vectors/flynn-noise-vectors.txt`` (see ``vectors/README.md``
  for provenance): all messages must match byte for byte, handshake and
  transport, and decrypt back on the other side.
* Interop with the independent ``noiseprotocol`` package (test-only
  dependency): XX and IK, each implementation as initiator and as responder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from hopline.crypto import (
    DecryptError,
    DHKeyPair,
    HandshakeError,
    HandshakeState,
    LocalCryptoError,
    NoiseProtocol,
    NonceExhaustedError,
    SessionStateError,
    UnsupportedProtocolError,
)
from hopline.crypto.noise import CIPHERS, HASHES, MAX_NONCE, PATTERNS, CipherState

VECTORS = Path(__file__).parent / "vectors" / "flynn-noise-vectors.txt"


@dataclass
class Case:
    protocol: str
    fields: dict[str, str] = field(default_factory=dict)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)

    def key(self, name: str) -> bytes | None:
        return bytes.fromhex(self.fields[name]) if name in self.fields else None


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for block in VECTORS.read_text().strip().split("\n\n"):
        lines = dict(line.split("=", 1) for line in block.splitlines())
        case = Case(lines.pop("handshake"))
        index = 0
        while f"msg_{index}_ciphertext" in lines:
            payload = bytes.fromhex(lines.pop(f"msg_{index}_payload"))
            ciphertext = bytes.fromhex(lines.pop(f"msg_{index}_ciphertext"))
            case.messages.append((payload, ciphertext))
            index += 1
        case.fields = lines
        cases.append(case)
    return cases


CASES = load_cases()


def case_id(case: Case) -> str:
    variant = "prologue" if "prologue" in case.fields else "plain"
    payload = "payload" if case.messages[0][0] else "empty"
    return f"{case.protocol}-{variant}-{payload}"


def test_vector_file_covers_every_implemented_combination() -> None:
    assert len(CASES) == 160
    names = {case.protocol for case in CASES}
    expected = {f"Noise_{p}_25519_{c}_{h}" for p in PATTERNS for c in CIPHERS for h in HASHES}
    assert names == expected


def build(case: Case) -> tuple[HandshakeState, HandshakeState]:
    protocol = NoiseProtocol.parse(case.protocol)
    pattern = protocol.pattern
    prologue = case.key("prologue") or b""
    # NN vectors carry no static keys; the placeholders below are then never used
    s_i = DHKeyPair.from_private_bytes(case.key("init_static") or bytes(32))
    s_r = DHKeyPair.from_private_bytes(case.key("resp_static") or bytes(32))
    e_i = DHKeyPair.from_private_bytes(bytes.fromhex(case.fields["gen_init_ephemeral"]))
    e_r = DHKeyPair.from_private_bytes(bytes.fromhex(case.fields["gen_resp_ephemeral"]))
    initiator = HandshakeState(
        protocol,
        initiator=True,
        prologue=prologue,
        s=s_i if pattern.writes_static(True) else None,
        e=e_i,
        rs=s_r.public if pattern.knows_remote_static(True) else None,
    )
    responder = HandshakeState(
        protocol,
        initiator=False,
        prologue=prologue,
        s=s_r if pattern.writes_static(False) else None,
        e=e_r,
        rs=s_i.public if pattern.knows_remote_static(False) else None,
    )
    return initiator, responder


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_vector(case: Case) -> None:
    initiator, responder = build(case)
    handshake_len = len(initiator.protocol.pattern.messages)
    for index, (payload, expected) in enumerate(case.messages[:handshake_len]):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        message = writer.write_message(payload)
        assert message.hex() == expected.hex(), f"handshake message {index}"
        assert reader.read_message(message) == payload
    assert initiator.is_complete and responder.is_complete
    assert initiator.handshake_hash == responder.handshake_hash
    i_send, i_recv = initiator.split()
    r_recv, r_send = responder.split()
    for index, (payload, expected) in enumerate(case.messages[handshake_len:]):
        sender, receiver = (i_send, r_recv) if index % 2 == 0 else (r_send, i_recv)
        message = sender.encrypt_with_ad(b"", payload)
        assert message.hex() == expected.hex(), f"transport message {index}"
        assert receiver.decrypt_with_ad(b"", message) == payload


# -- framework behaviour -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Noise_XX_25519_ChaChaPoly",
        "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s",
        "Noise_XX_448_ChaChaPoly_BLAKE2s",
        "Noise_XX_25519_Salsa_BLAKE2s",
        "Noise_XX_25519_ChaChaPoly_MD5",
        "Nois_XX_25519_ChaChaPoly_BLAKE2s",
        "Noise_KK_25519_ChaChaPoly_BLAKE2s",
    ],
)
def test_protocol_name_rejected(name: str) -> None:
    with pytest.raises(UnsupportedProtocolError):
        NoiseProtocol.parse(name)


def test_protocol_name_parsed() -> None:
    protocol = NoiseProtocol.parse(b"Noise_IK_25519_AESGCM_BLAKE2b")
    assert protocol.pattern.name == "IK"
    assert protocol.cipher.name == "AESGCM"
    assert protocol.hash.name == "BLAKE2b" and protocol.hash.hashlen == 64


def xx_pair(
    name: str = "Noise_XX_25519_ChaChaPoly_BLAKE2s",
) -> tuple[HandshakeState, HandshakeState]:
    return (
        HandshakeState(name, initiator=True, s=DHKeyPair.generate()),
        HandshakeState(name, initiator=False, s=DHKeyPair.generate()),
    )


def test_read_message_is_atomic_on_tampering() -> None:
    initiator, responder = xx_pair()
    responder.read_message(initiator.write_message(b"hello"))
    message2 = responder.write_message(b"certificate")
    for position in range(len(message2)):
        tampered = bytearray(message2)
        tampered[position] ^= 0x01
        with pytest.raises(HandshakeError):
            initiator.read_message(bytes(tampered))
        assert initiator.message_index == 1 and initiator.remote_static is None
    with pytest.raises(HandshakeError) as info:
        initiator.read_message(message2[:40])
    assert info.value.reason == "truncated"
    assert initiator.read_message(message2) == b"certificate"
    responder.read_message(initiator.write_message(b"mine"))
    assert initiator.is_complete and responder.is_complete


def test_out_of_turn_and_missing_keys() -> None:
    initiator, responder = xx_pair()
    with pytest.raises(SessionStateError):
        responder.write_message()
    with pytest.raises(SessionStateError):
        initiator.read_message(b"x" * 48)
    with pytest.raises(SessionStateError):
        initiator.split()
    with pytest.raises(LocalCryptoError):
        HandshakeState("Noise_IK_25519_ChaChaPoly_BLAKE2s", initiator=True, s=DHKeyPair.generate())
    with pytest.raises(LocalCryptoError):
        HandshakeState("Noise_XX_25519_ChaChaPoly_BLAKE2s", initiator=True)


def test_low_order_ephemeral_is_rejected() -> None:
    _, responder = xx_pair()
    responder.read_message(bytes(32))  # message 1 of XX carries no DH yet
    with pytest.raises(HandshakeError) as info:
        responder.write_message()  # "ee" with an all-zero (low-order) point
    assert info.value.reason == "bad_public_key"
    assert responder.message_index == 1 and responder.is_my_turn


def test_cipher_state_nonce_limit_and_rekey() -> None:
    key = bytes(range(32))
    sender = CipherState(CIPHERS["ChaChaPoly"], key)
    receiver = sender.copy()
    sender.set_nonce(MAX_NONCE)
    with pytest.raises(NonceExhaustedError):
        sender.encrypt_with_ad(b"", b"x")
    sender.set_nonce(5)
    sender.rekey()
    assert sender.n == 5
    expected_key = ChaCha20Poly1305(key).encrypt(b"\x00" * 4 + b"\xff" * 8, bytes(32), b"")[:32]
    assert sender.encrypt_with_nonce(9, b"ad", b"m") == ChaCha20Poly1305(expected_key).encrypt(
        b"\x00" * 4 + (9).to_bytes(8, "little"), b"m", b"ad"
    )
    receiver.set_nonce(5)
    ciphertext = sender.encrypt_with_ad(b"", b"after rekey")
    with pytest.raises(DecryptError):
        receiver.decrypt_with_ad(b"", ciphertext)
    assert receiver.n == 5  # a failed decryption does not consume the nonce
    receiver.rekey()
    assert receiver.decrypt_with_ad(b"", ciphertext) == b"after rekey"
    assert receiver.n == 6


def test_aesgcm_nonce_is_big_endian() -> None:
    key = bytes(range(32))
    cs = CipherState(CIPHERS["AESGCM"], key)
    cs.set_nonce(0x0102)
    expected = AESGCM(key).encrypt(bytes(10) + b"\x01\x02", b"m", b"ad")
    assert cs.encrypt_with_ad(b"ad", b"m") == expected


def test_secret_keys_not_in_repr() -> None:
    pair = DHKeyPair.generate()
    secret = pair.private_bytes().hex()
    cs = CipherState(CIPHERS["AESGCM"], bytes(range(32)))
    assert secret not in repr(pair)
    assert bytes(range(32)).hex() not in repr(cs)
    initiator, responder = xx_pair()
    responder.read_message(initiator.write_message())
    checkpoint = responder.checkpoint()
    for text in (repr(checkpoint), repr(responder), repr(responder.symmetric)):
        assert responder.symmetric.ck.hex()[:16] not in text
        assert checkpoint.ck.hex()[:16] not in text


# -- interop with the noiseprotocol package -----------------------------------------

# noiseprotocol is a test-only dependency; only these tests skip without it.


@pytest.fixture(scope="module")
def noise_connection() -> Any:
    return pytest.importorskip("noise.connection")


def theirs(
    noise_connection: Any, name: str, *, initiator: bool, static: DHKeyPair, remote: bytes | None
) -> Any:
    conn = noise_connection.NoiseConnection.from_name(name.encode())
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(noise_connection.Keypair.STATIC, static.private_bytes())
    if remote is not None:
        conn.set_keypair_from_public_bytes(noise_connection.Keypair.REMOTE_STATIC, remote)
    conn.start_handshake()
    return conn


@pytest.mark.parametrize("pattern", ["XX", "IK"])
@pytest.mark.parametrize("suite", ["ChaChaPoly_BLAKE2s", "AESGCM_SHA256", "ChaChaPoly_BLAKE2b"])
@pytest.mark.parametrize(
    "we_initiate", [True, False], ids=["hopline-initiates", "hopline-responds"]
)
def test_interop_with_noiseprotocol(
    noise_connection: Any, pattern: str, suite: str, we_initiate: bool
) -> None:
    name = f"Noise_{pattern}_25519_{suite}"
    our_static, their_static = DHKeyPair.generate(), DHKeyPair.generate()
    ik = pattern == "IK"
    if we_initiate:
        ours = HandshakeState(
            name, initiator=True, s=our_static, rs=their_static.public if ik else None
        )
        other = theirs(noise_connection, name, initiator=False, static=their_static, remote=None)
    else:
        ours = HandshakeState(name, initiator=False, s=our_static)
        remote = our_static.public if ik else None
        other = theirs(noise_connection, name, initiator=True, static=their_static, remote=remote)
    index = 0
    while not ours.is_complete:
        payload = f"payload {index}".encode()
        if ours.is_my_turn:
            assert other.read_message(ours.write_message(payload)) == payload
        else:
            assert ours.read_message(other.write_message(payload)) == payload
        index += 1
    assert other.handshake_finished
    assert ours.remote_static == their_static.public
    assert ours.handshake_hash == other.get_handshake_hash()
    first, second = ours.split()
    send, recv = (first, second) if we_initiate else (second, first)
    for n in range(5):
        message = os.urandom(n * 37)
        assert other.decrypt(send.encrypt_with_ad(b"", message)) == message
        assert recv.decrypt_with_ad(b"", other.encrypt(message)) == message

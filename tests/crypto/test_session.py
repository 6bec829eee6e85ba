"""SecureSession: handshakes, transport packet protection, replay and rekeying."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.crypto import (
    OVERHEAD,
    DecryptError,
    DHKeyPair,
    HandshakeError,
    LocalCryptoError,
    RemoteCryptoError,
    ReplayError,
    SecureSession,
    SessionConfig,
    SessionStateError,
    UnsupportedProtocolError,
)
from hopline.crypto import session as session_module
from hopline.crypto.session import CHANNEL_OVERHEAD, MAX_EPOCH_SKIP, _HeaderProtection

SUITES = ["ChaChaPoly_BLAKE2s", "AESGCM_SHA256", "AESGCM_BLAKE2b"]


def config(pattern: str = "XX", suite: str = SUITES[0], **kwargs: Any) -> SessionConfig:
    return SessionConfig(protocol=f"Noise_{pattern}_25519_{suite}", **kwargs)


def handshake(
    client: SecureSession, server: SecureSession, payloads: list[bytes] | None = None
) -> list[bytes]:
    """Run a handshake in memory; return every message sent."""
    messages = []
    payloads = list(payloads or [])
    sides = [client, server]
    turn = 0
    while not (client.is_established and server.is_established):
        writer, reader = sides[turn % 2], sides[(turn + 1) % 2]
        assert writer.is_my_turn and not reader.is_my_turn
        payload = payloads.pop(0) if payloads else b""
        message = writer.write_handshake(payload, now=0.0)
        assert reader.read_handshake(message, now=0.0) == payload
        messages.append(message)
        turn += 1
    return messages


def pair(
    pattern: str = "XX", suite: str = SUITES[0], **kwargs: Any
) -> tuple[SecureSession, SecureSession]:
    cfg = config(pattern, suite, **kwargs)
    client_key, server_key = DHKeyPair.generate(), DHKeyPair.generate()
    remote = server_key.public if pattern == "IK" else None
    client = SecureSession.initiate(client_key, remote_static=remote, config=cfg)
    server = SecureSession.respond(server_key, config=cfg)
    handshake(client, server)
    return client, server


def receiver_state(session: SecureSession) -> tuple[object, ...]:
    rx = session._rx
    assert rx is not None
    return (
        rx.epoch,
        rx.window.highest,
        rx.window._bitmap,
        rx.current,
        rx.current.n,
        rx.previous,
        rx.previous_expires,
    )


# -- handshakes -----------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("pattern", ["XX", "IK"])
def test_handshake_and_transport(pattern: str, suite: str) -> None:
    cfg = config(pattern, suite)
    client_key, server_key = DHKeyPair.generate(), DHKeyPair.generate()
    remote = server_key.public if pattern == "IK" else None
    client = SecureSession.initiate(client_key, remote_static=remote, config=cfg)
    server = SecureSession.respond(server_key, config=cfg)
    assert not client.is_established
    with pytest.raises(SessionStateError):
        client.seal(b"too early", 0.0)
    if pattern == "XX":
        with pytest.raises(LocalCryptoError) as info:
            client.write_handshake(b"would be sent in clear", now=0.0)
        assert info.value.reason == "cleartext_payload"
    first = b"" if pattern == "XX" else b"client hello"
    payloads = [first, b"server certificate", b"client certificate"]
    messages = handshake(client, server, payloads)
    assert len(messages) == (3 if pattern == "XX" else 2)
    assert client.result is not None and server.result is not None
    assert client.result.remote_static == server_key.public
    assert server.result.remote_static == client_key.public
    assert client.result.handshake_hash == server.result.handshake_hash
    if pattern == "XX":
        assert server.result.remote_payload == b"client certificate"
        assert client.result.remote_payload == b"server certificate"
        assert server.result.remote_payloads == (b"", b"client certificate")
    else:
        assert server.result.remote_payload == b"client hello"
        assert b"client hello" not in messages[0]  # IK encrypts the first payload
        assert client.result.remote_payload == b"server certificate"
    for size in (0, 1, 100, 1200):
        data = bytes(random.getrandbits(8) for _ in range(size))
        packet = client.seal(data, 1.0)
        assert len(packet) == size + OVERHEAD
        assert server.open(packet, 1.0) == data
        assert client.open(server.seal(data, 1.0), 1.0) == data
    with pytest.raises(SessionStateError):
        client.write_handshake(now=1.0)


def test_handshake_message_tampering_is_rejected_and_harmless() -> None:
    cfg = config()
    client = SecureSession.initiate(DHKeyPair.generate(), config=cfg)
    server = SecureSession.respond(DHKeyPair.generate(), config=cfg)
    server.read_handshake(client.write_handshake(now=0), now=0)
    message2 = server.write_handshake(b"cert", now=0)
    for position in range(len(message2)):
        tampered = bytearray(message2)
        tampered[position] ^= 0x01
        with pytest.raises(HandshakeError):
            client.read_handshake(bytes(tampered), now=0)
    assert client.remote_static is None and not client.is_my_turn
    assert client.read_handshake(message2, now=0) == b"cert"
    server.read_handshake(client.write_handshake(now=0), now=0)
    assert client.is_established and server.is_established


def test_xx_pinned_key_mismatch_rolls_back() -> None:
    cfg = config()
    real_server = DHKeyPair.generate()
    client = SecureSession.initiate(
        DHKeyPair.generate(), remote_static=real_server.public, config=cfg
    )
    impostor = SecureSession.respond(DHKeyPair.generate(), config=cfg)
    server = SecureSession.respond(real_server, config=cfg)
    message1 = client.write_handshake(now=0)
    impostor.read_handshake(message1, now=0)
    server.read_handshake(message1, now=0)
    with pytest.raises(HandshakeError) as info:
        client.read_handshake(impostor.write_handshake(now=0), now=0)
    assert info.value.reason == "unexpected_static"
    assert client.read_handshake(server.write_handshake(now=0), now=0) == b""
    server.read_handshake(client.write_handshake(now=0), now=0)
    assert client.is_established and server.is_established


def test_ephemeral_top_bit_is_randomised_and_ignored() -> None:
    cfg = config()
    server_key = DHKeyPair.generate()
    top_bits = set()
    for _ in range(40):
        client = SecureSession.initiate(DHKeyPair.generate(), config=cfg)
        server = SecureSession.respond(server_key, config=cfg)
        message1 = client.write_handshake(now=0)
        top_bits.add(message1[31] >> 7)
        flipped = message1[:31] + bytes([message1[31] ^ 0x80]) + message1[32:]
        server.read_handshake(flipped, now=0)  # X25519 ignores the bit: still fine
        client.read_handshake(server.write_handshake(now=0), now=0)
        server.read_handshake(client.write_handshake(now=0), now=0)
        assert server.is_established
    assert top_bits == {0, 1}


def test_config_validation() -> None:
    with pytest.raises(UnsupportedProtocolError):
        SessionConfig(protocol="Noise_NN_25519_ChaChaPoly_BLAKE2s")
    with pytest.raises(Exception, match="window"):
        SessionConfig(replay_window=0)
    with pytest.raises(SessionStateError):
        SecureSession.respond(DHKeyPair.generate()).open(b"x" * 40, 0.0)


# -- no fixed plaintext bytes ----------------------------------------------------------


def assert_no_constant_position(samples: list[bytes]) -> None:
    width = min(len(sample) for sample in samples)
    for position in range(width):
        values = {sample[position] for sample in samples}
        assert len(values) > 1, f"byte {position} is constant ({values})"


@pytest.mark.parametrize("suite", SUITES[:2])
def test_transport_has_no_fixed_bytes(suite: str) -> None:
    client, server = pair(suite=suite)
    packets = [client.seal(b"\x00" * 100, float(i)) for i in range(100)]
    assert_no_constant_position(packets)
    assert [server.open(p, 100.0) for p in packets] == [b"\x00" * 100] * 100


@pytest.mark.parametrize("pattern", ["XX", "IK"])
def test_handshake_messages_have_no_fixed_bytes(pattern: str) -> None:
    transcripts = []
    cfg = config(pattern)
    server_key = DHKeyPair.generate()
    for _ in range(30):
        remote = server_key.public if pattern == "IK" else None
        client = SecureSession.initiate(DHKeyPair.generate(), remote_static=remote, config=cfg)
        server = SecureSession.respond(server_key, config=cfg)
        first = b"" if pattern == "XX" else b"same payload"  # XX's first payload is clear
        transcripts.append(handshake(client, server, [first, b"same payload", b"same payload"]))
    for index in range(len(transcripts[0])):
        assert_no_constant_position([t[index] for t in transcripts])


# -- transport failures ------------------------------------------------------------------


def test_replayed_packet() -> None:
    client, server = pair()
    packet = client.seal(b"once", 0.0)
    assert server.open(packet, 0.0) == b"once"
    with pytest.raises(ReplayError) as info:
        server.open(packet, 0.0)
    assert info.value.reason == "replayed"


def test_truncated_packets() -> None:
    client, server = pair()
    packet = client.seal(b"", 0.0)
    assert len(packet) == OVERHEAD
    before = receiver_state(server)
    for length in range(len(packet)):
        with pytest.raises(DecryptError):
            server.open(packet[:length], 0.0)
    longer = client.seal(b"some plaintext", 0.0)
    for length in range(OVERHEAD, len(longer)):
        with pytest.raises(DecryptError):
            server.open(longer[:length], 0.0)
    assert receiver_state(server) == before
    assert server.open(packet, 0.0) == b""


@pytest.mark.parametrize("suite", SUITES[:2])
def test_every_single_byte_flip_is_rejected_without_state_change(suite: str) -> None:
    client, server = pair(suite=suite)
    for i in range(5):
        server.open(client.seal(b"warm-up %d" % i, 0.0), 0.0)
    packet = client.seal(b"x" * 60, 0.0)
    before = receiver_state(server)
    rng = random.Random(1)
    for position in range(len(packet)):
        for flip in (0x01, 0x80, rng.randrange(1, 256)):
            tampered = bytearray(packet)
            tampered[position] ^= flip
            with pytest.raises(RemoteCryptoError):
                server.open(bytes(tampered), 0.0)
            assert receiver_state(server) == before
    assert server.open(packet, 0.0) == b"x" * 60


def test_reordered_within_window() -> None:
    client, server = pair(replay_window=64)
    packets = [client.seal(b"%d" % i, 0.0) for i in range(64)]
    order = list(range(64))
    random.Random(7).shuffle(order)
    for index in order:
        assert server.open(packets[index], 0.0) == b"%d" % index
    for index in order[:10]:
        with pytest.raises(ReplayError):
            server.open(packets[index], 0.0)


def test_too_old_packet() -> None:
    client, server = pair(replay_window=1024)
    first = client.seal(b"first", 0.0)
    packets = [client.seal(b"", 0.0) for _ in range(1024)]
    server.open(packets[-1], 0.0)  # counter 1024; window now covers 1..1024
    with pytest.raises(ReplayError) as info:
        server.open(first, 0.0)
    assert info.value.reason == "too_old"
    assert server.open(packets[0], 0.0) == b""  # counter 1 is still inside


def test_directions_are_independent() -> None:
    client, server = pair(rekey_after_messages=3)
    for i in range(10):
        assert server.open(client.seal(b"up %d" % i, 0.0), 0.0) == b"up %d" % i
    assert client.send_epoch == 3 and server.receive_epoch == 3
    assert server.send_epoch == 0 and client.receive_epoch == 0
    assert client.open(server.seal(b"down", 0.0), 0.0) == b"down"
    packet = server.seal(b"same key both ways?", 0.0)
    with pytest.raises(DecryptError):
        server.open(packet, 0.0)  # a side cannot open its own packets


# -- rekeying -------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES[:2])
def test_rekey_by_count_across_reordering(suite: str) -> None:
    client, server = pair(suite=suite, rekey_after_messages=10)
    packets = [client.seal(b"%d" % i, 0.0) for i in range(60)]
    assert client.send_epoch == 5
    rng = random.Random(3)
    order = list(range(60))
    for start in range(0, 60, 7):  # reorder within chunks straddling the epoch boundaries
        chunk = order[start : start + 7]
        rng.shuffle(chunk)
        order[start : start + 7] = chunk
    for index in order:
        assert server.open(packets[index], 1.0) == b"%d" % index
    assert server.receive_epoch == 5


def test_rekey_by_time_and_grace_period() -> None:
    client, server = pair(rekey_after_seconds=60.0, rekey_grace_seconds=5.0)
    old = client.seal(b"old epoch", 10.0)
    new = client.seal(b"new epoch", 70.0)  # 60 s after the handshake at t=0
    assert client.send_epoch == 1
    assert server.open(new, 70.0) == b"new epoch"
    assert server.receive_epoch == 1
    late = client.seal(b"", 70.0)
    with pytest.raises(DecryptError) as info:
        server.open(old, 75.1)  # grace ended at 75.0
    assert info.value.reason == "stale_epoch"
    assert server.open(old, 74.9) == b"old epoch"  # ... but within it, it opens
    assert server.open(late, 80.0) == b""


def test_receiver_follows_skipped_epochs_up_to_limit() -> None:
    client, server = pair()
    for _ in range(MAX_EPOCH_SKIP):
        client.rekey(0.0)  # rekeys whose packets were all lost
    assert server.open(client.seal(b"catch up", 0.0), 0.0) == b"catch up"
    assert server.receive_epoch == MAX_EPOCH_SKIP
    for _ in range(MAX_EPOCH_SKIP + 1):
        client.rekey(0.0)
    before = receiver_state(server)
    with pytest.raises(DecryptError) as info:
        server.open(client.seal(b"too far", 0.0), 0.0)
    assert info.value.reason == "unknown_epoch"
    assert receiver_state(server) == before


def test_forged_future_epoch_does_not_advance() -> None:
    client, server = pair()
    client.rekey(0.0)
    packet = bytearray(client.seal(b"next epoch", 0.0))
    packet[-1] ^= 1  # valid header, broken tag
    before = receiver_state(server)
    with pytest.raises(DecryptError):
        server.open(bytes(packet), 0.0)
    assert receiver_state(server) == before and server.receive_epoch == 0


# -- header protection -----------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES[:2])
def test_packet_layout(suite: str) -> None:
    """Wire format: masked 8-byte header (epoch << 56 | counter), AEAD with header as AD."""
    client, server = pair(suite=suite)
    tx = client._tx
    assert tx is not None
    for _ in range(3):
        client.seal(b"skip", 0.0)
    client.rekey(0.0)
    key = tx.cipher.copy()  # the epoch-1 key
    packet = client.seal(b"payload", 0.0)
    header, ciphertext = packet[:8], packet[8:]
    value = int.from_bytes(header, "big") ^ tx.hp.mask(ciphertext[:16])
    assert value == (1 << 56) | 3
    plain_header = value.to_bytes(8, "big")
    assert key.decrypt_with_nonce(3, plain_header, ciphertext) == b"payload"
    with pytest.raises(DecryptError):
        key.decrypt_with_nonce(3, b"", ciphertext)  # the header is authenticated
    assert server.open(packet, 0.0) == b"payload"


def test_header_protection_rfc9001_vector() -> None:
    # RFC 9001 appendix A.2 sample and mask (first 5 bytes given there)
    aes = _HeaderProtection(bytes.fromhex("9f50449e04a0e810283a1e9933adedd2"))
    sample = bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b")
    assert aes.mask(sample).to_bytes(8, "big")[:5].hex() == "437b9aec36"


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_masks_with_one_aes_block(suite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keys: list[bytes] = []

    class Recording(_HeaderProtection):
        def __init__(self, key: bytes) -> None:
            keys.append(key)
            super().__init__(key)

    monkeypatch.setattr(session_module, "_HeaderProtection", Recording)
    client, _ = pair(suite=suite)
    send_key = keys[-4]  # the initiator's sending key: its session finished before the server's
    packet = client.seal(b"masked", 0.0)
    ecb = Cipher(algorithms.AES(send_key), modes.ECB()).encryptor()
    mask = ecb.update(packet[8:24])[:8]
    assert bytes(a ^ b for a, b in zip(packet[:8], mask, strict=True)) == bytes(8)  # counter 0


# -- channel datagrams -----------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES[:2])
def test_channel_datagram_layout(suite: str) -> None:
    """Masked header with bit 63 set, the channel encrypted under the header and the
    payload as associated data, the payload itself in the clear at the end."""
    client, server = pair(suite=suite)
    tx = client._tx
    assert tx is not None
    client.seal(b"one sealed datagram first", 0.0)
    key = tx.cipher.copy()
    payload = bytes(range(200))
    packet = client.seal_channel(0x4001, payload, 0.0)
    assert len(packet) == CHANNEL_OVERHEAD + len(payload) and packet.endswith(payload)
    value = int.from_bytes(packet[:8], "big") ^ tx.hp.mask(packet[8:24])
    assert value == (1 << 63) | 1  # channel form, epoch 0, counter 1 (shared with seal)
    header = value.to_bytes(8, "big")
    assert key.decrypt_with_nonce(1, header + payload, packet[8:26]) == b"\x40\x01"
    assert server.unseal(packet, 0.0) == (0x4001, payload)


def test_sealed_and_channel_datagrams_share_counters_and_replay_window() -> None:
    client, server = pair(replay_window=64)
    packets = [
        client.seal_channel(i, b"relayed %d" % i, 0.0) if i % 2 else client.seal(b"%d" % i, 0.0)
        for i in range(20)
    ]
    for index in reversed(range(20)):
        expected = (index, b"relayed %d" % index) if index % 2 else (None, b"%d" % index)
        assert server.unseal(packets[index], 0.0) == expected
    for packet in packets[:3]:
        with pytest.raises(ReplayError):
            server.unseal(packet, 0.0)


def test_open_refuses_a_channel_datagram_without_state_change() -> None:
    client, server = pair()
    packet = client.seal_channel(0x4000, b"x" * 40, 0.0)
    before = receiver_state(server)
    with pytest.raises(DecryptError) as info:
        server.open(packet, 0.0)
    assert info.value.reason == "channel"
    assert receiver_state(server) == before
    assert server.unseal(packet, 0.0) == (0x4000, b"x" * 40)


@pytest.mark.parametrize("suite", SUITES[:2])
def test_every_byte_of_a_channel_datagram_is_authenticated(suite: str) -> None:
    client, server = pair(suite=suite)
    packet = client.seal_channel(0x7FFF, b"payload in the clear" * 3, 0.0)
    before = receiver_state(server)
    for position in range(len(packet)):
        for flip in (0x01, 0x80):
            tampered = bytearray(packet)
            tampered[position] ^= flip
            with pytest.raises(RemoteCryptoError):
                server.unseal(bytes(tampered), 0.0)
            assert receiver_state(server) == before
    with pytest.raises(RemoteCryptoError):
        server.unseal(packet + b"appended", 0.0)
    assert server.unseal(packet, 0.0) == (0x7FFF, b"payload in the clear" * 3)


def test_channel_datagrams_follow_rekeys() -> None:
    client, server = pair(rekey_after_messages=3)
    for i in range(10):
        assert server.unseal(client.seal_channel(0x4000, b"%d" % i, 0.0), 0.0) == (
            0x4000,
            b"%d" % i,
        )
    assert client.send_epoch == 3 and server.receive_epoch == 3


def test_channel_datagram_edge_cases() -> None:
    client, server = pair()
    assert server.unseal(client.seal_channel(0, b"", 0.0), 0.0) == (0, b"")
    with pytest.raises(LocalCryptoError):
        client.seal_channel(0x10000, b"x", 0.0)
    with pytest.raises(LocalCryptoError):
        client.seal_channel(-1, b"x", 0.0)


def test_epoch_field_wraps_at_128_and_never_sets_the_form_bit() -> None:
    client, server = pair()
    for _ in range(127):
        client.rekey(0.0)
    server_rx = server._rx
    assert server_rx is not None
    tx = client._tx
    assert tx is not None
    for expected_epoch in (127, 0, 1):  # 127, then 128 and 129 on the wire as 0 and 1
        packet = client.seal(b"wrap", 0.0)
        value = int.from_bytes(packet[:8], "big") ^ tx.hp.mask(packet[8:24])
        assert value >> 56 == expected_epoch
        client.rekey(0.0)


# -- arbitrary input -------------------------------------------------------------------

_CLIENT, _SERVER = pair(replay_window=128)
_VALID = [_CLIENT.seal(b"valid %d" % i, 0.0) for i in range(4)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_open_arbitrary_bytes_only_raises_typed_errors(data: bytes) -> None:
    before = receiver_state(_SERVER)
    with pytest.raises(RemoteCryptoError):
        _SERVER.open(data, 0.0)
    with pytest.raises(RemoteCryptoError):
        _SERVER.unseal(data, 0.0)
    assert receiver_state(_SERVER) == before


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_open_mutated_packets_only_raises_typed_errors(
    packet: bytes, edits: list[tuple[int, int]]
) -> None:
    mutated = bytearray(packet)
    for position, flip in edits:
        mutated[position % len(mutated)] ^= flip
    if bytes(mutated) == packet:
        return
    before = receiver_state(_SERVER)
    with pytest.raises(RemoteCryptoError):
        _SERVER.open(bytes(mutated), 0.0)
    assert receiver_state(_SERVER) == before

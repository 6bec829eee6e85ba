"""Devices with real keys for the messaging tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hopline.crypto.keys import IdentityKeys
from hopline.messaging.envelope import MessageKind, MessageRecord, Recipient, new_message_id


@dataclass(frozen=True)
class Device:
    """One user's device: its ids and real identity keys."""

    user: str
    device: bytes
    keys: IdentityKeys

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.user, self.device, self.keys.static)

    def record(
        self,
        to: Device,
        body: bytes = b"hello",
        *,
        kind: MessageKind = MessageKind.TEXT,
        clock: int = 1,
        conversation: bytes = b"conv-1",
        message_id: bytes | None = None,
    ) -> MessageRecord:
        return MessageRecord(
            sender_user=self.user,
            sender_device=self.device,
            recipient_user=to.user,
            recipient_device=to.device,
            conversation_id=conversation,
            message_id=message_id or new_message_id(),
            sent_at_ms=1_700_000_000_000,
            clock=clock,
            kind=kind,
            body=body,
        )


def make_device(user: str, device: bytes) -> Device:
    return Device(user, device, IdentityKeys.generate())


@pytest.fixture(scope="module")
def alice() -> Device:
    return make_device("alice", b"alice-laptop")


@pytest.fixture(scope="module")
def alice_phone() -> Device:
    return make_device("alice", b"alice-phone")


@pytest.fixture(scope="module")
def bob() -> Device:
    return make_device("bob", b"bob-desktop")


@pytest.fixture(scope="module")
def bob_phone() -> Device:
    return make_device("bob", b"bob-phone")


@pytest.fixture(scope="module")
def mallory() -> Device:
    return make_device("mallory", b"mallory-1")


@pytest.fixture(scope="module")
def device_class() -> type[Device]:
    """The :class:`Device` type (test modules cannot import conftest in importlib mode)."""
    return Device

"""The msg.* commands: round trips, batching within the wire limit."""

from __future__ import annotations

import itertools

import pytest

from hopline.messaging.envelope import MAX_SEALED, envelope_id
from hopline.wire import DEFAULT_LIMITS, Message, decode, encode
from hopline.wire.messaging import (
    MAX_ITEMS,
    MsgAck,
    MsgDeliver,
    Refusal,
    SealedItem,
    batch_items,
)


def item(size: int, n: int = 0) -> SealedItem:
    return SealedItem(to_user="bob", to_device=b"bob-phone", envelope=bytes([n % 256]) * size)


@pytest.mark.parametrize(
    "message",
    [
        MsgDeliver(items=(item(100), item(200, 1)), more=1),
        MsgAck(
            accepted=(envelope_id(b"x"),),
            refused=(Refusal(envelope_id=envelope_id(b"y"), reason="bad-signature"),),
        ),
    ],
    ids=lambda m: m.NAME,
)
def test_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


def test_batches_keep_order_and_fit_one_message() -> None:
    items = [item(MAX_SEALED, n) for n in range(10)] + [item(40, n) for n in range(200)]
    batches = batch_items(items)
    assert [i for batch in batches for i in batch] == items
    for batch in batches:
        assert len(batch) <= MAX_ITEMS
        assert len(encode(MsgDeliver(items=tuple(batch)))) <= DEFAULT_LIMITS.max_message_size
    for batch, following in itertools.pairwise(batches):
        # greedy: the next batch's first item would not have fit in this one
        assert batch_items([*batch, following[0]]) == [batch, [following[0]]]

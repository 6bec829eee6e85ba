"""Replicas of the offline store converge whatever order puts, acks and exports arrive in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.offline.store import AckSet, Envelope, OfflineStore, ReplicaBatch, StoreLimits

NOW = 1_700_000_000.0
DEVICES = (b"d1", b"d2", b"d3")
USERS = ("bob", "carol")

Op = tuple[str, int, bytes]  # ("put", message, b"") or ("ack", message, device)


def envelope(n: int, devices: frozenset[bytes]) -> Envelope:
    return Envelope(
        n.to_bytes(16, "big"), USERS[n % 2], devices, "alice", b"sealed-%d" % n, NOW + n
    )


def snapshot(store: OfflineStore) -> dict[str, object]:
    """What must agree between replicas (arrival numbers are local and left out)."""
    return {
        user: (
            {(m.envelope.message_id, m.acked) for m in store.messages(user)},
            set(store.tombstones(user)),
            store.pending_acks(user),
        )
        for user in sorted(store.users())
    }


def expected(messages: dict[int, frozenset[bytes]], ops: list[Op]) -> dict[str, object]:
    """The state every replica must reach, computed from the operations as sets."""
    put = {n for kind, n, _ in ops if kind == "put"}
    acks: dict[int, set[bytes]] = {}
    for kind, n, device in ops:
        if kind == "ack":
            acks.setdefault(n, set()).add(device)
    state: dict[
        str, tuple[set[tuple[bytes, frozenset[bytes]]], set[bytes], dict[bytes, frozenset[bytes]]]
    ] = {}
    for n in sorted(put | set(acks)):
        held, done, pending = state.setdefault(USERS[n % 2], (set(), set(), {}))
        got = frozenset(acks.get(n, set()))
        mid = n.to_bytes(16, "big")
        if n not in put:
            pending[mid] = got
        elif got >= messages[n]:
            done.add(mid)
        else:
            held.add((mid, got & messages[n]))
    return dict(sorted(state.items()))


def as_batch(op: Op, messages: dict[int, frozenset[bytes]]) -> ReplicaBatch:
    kind, n, device = op
    if kind == "put":
        return ReplicaBatch(envelopes=(envelope(n, messages[n]),))
    ack = AckSet(USERS[n % 2], n.to_bytes(16, "big"), frozenset({device}), NOW + 100)
    return ReplicaBatch(acks=(ack,))


def apply_direct(store: OfflineStore, op: Op, messages: dict[int, frozenset[bytes]]) -> None:
    kind, n, device = op
    if kind == "put":
        store.put(envelope(n, messages[n]), NOW + 100)
    else:
        store.ack(USERS[n % 2], device, [n.to_bytes(16, "big")], NOW + 100)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[int, frozenset[bytes]], list[Op]]:
    count = draw(st.integers(1, 6))
    device_sets = st.frozensets(st.sampled_from(DEVICES), min_size=1)
    messages = {n: draw(device_sets) for n in range(count)}
    puts: list[Op] = [("put", n, b"") for n in range(count) if draw(st.booleans()) or n == 0]
    acks: list[Op] = draw(
        st.lists(
            st.tuples(st.just("ack"), st.integers(0, count - 1), st.sampled_from(DEVICES)),
            max_size=12,
        )
    )
    return messages, puts + acks


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_replicas_converge_in_any_order(
    scenario: tuple[dict[int, frozenset[bytes]], list[Op]], rng: object
) -> None:
    messages, ops = scenario
    order_a, order_b = list(ops), list(ops)
    rng.shuffle(order_a)  # type: ignore[attr-defined]
    rng.shuffle(order_b)  # type: ignore[attr-defined]
    a, b = OfflineStore(), OfflineStore()
    for op in order_a:
        apply_direct(a, op, messages)  # as the clients did it on this owner
    for op in order_b:
        b.import_replica(as_batch(op, messages), NOW + 100)  # as the other owner forwarded it
    want = expected(messages, ops)
    assert snapshot(a) == want
    assert snapshot(b) == want


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False), st.lists(st.integers(0, 30), max_size=4))
def test_partial_state_exchanges_converge(
    scenario: tuple[dict[int, frozenset[bytes]], list[Op]], rng: object, syncs: list[int]
) -> None:
    """Each owner saw only some operations; full exports at any points make them agree."""
    messages, ops = scenario
    a, b = OfflineStore(), OfflineStore()
    shuffled = list(ops)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    for step, op in enumerate(shuffled):
        apply_direct(a if rng.random() < 0.5 else b, op, messages)  # type: ignore[attr-defined]
        if step in syncs:
            b.import_replica(a.export_for_replica(), NOW + 100)
    a.import_replica(b.export_for_replica(), NOW + 100)
    b.import_replica(a.export_for_replica(), NOW + 100)
    assert snapshot(a) == snapshot(b) == expected(messages, ops)
    again = snapshot(a)
    a.import_replica(b.export_for_replica(), NOW + 100)  # idempotent
    assert snapshot(a) == again


def test_export_carries_envelopes_acks_and_tombstones() -> None:
    store = OfflineStore()
    store.put(envelope(0, frozenset({b"d1", b"d2"})), NOW)
    store.put(envelope(2, frozenset({b"d1"})), NOW)
    store.ack("bob", b"d1", [(0).to_bytes(16, "big"), (2).to_bytes(16, "big")], NOW)
    store.ack("bob", b"d1", [(4).to_bytes(16, "big")], NOW)
    batch = store.export_for_replica(["bob"])
    assert [e.message_id for e in batch.envelopes] == [(0).to_bytes(16, "big")]
    assert {(a.message_id, a.devices) for a in batch.acks} == {
        ((0).to_bytes(16, "big"), frozenset({b"d1"})),
        ((4).to_bytes(16, "big"), frozenset({b"d1"})),
    }
    assert [t.message_id for t in batch.tombstones] == [(2).to_bytes(16, "big")]
    other = OfflineStore()
    result = other.import_replica(batch, NOW)
    assert (result.stored, result.unchanged) == (1, 0)
    assert snapshot(other) == snapshot(store)
    assert other.export_for_replica(["nobody"]) == ReplicaBatch()


def test_import_applies_quotas_and_counts_refusals() -> None:
    source = OfflineStore()
    for n in range(0, 20, 2):
        source.put(envelope(n, frozenset({b"d1"})), NOW)
    small = OfflineStore(StoreLimits(max_messages=4))
    result = small.import_replica(source.export_for_replica(), NOW)
    assert result.stored == 4 and result.refused == {"quota": 6}
    assert len(small) == 4


def test_import_ignores_stale_or_malformed_parts() -> None:
    store = OfflineStore()
    batch = ReplicaBatch(
        envelopes=(envelope(0, frozenset({b"d1"})),),
        acks=(
            AckSet("bob", b"short", frozenset({b"d1"}), NOW),
            AckSet("not a name", (0).to_bytes(16, "big"), frozenset({b"d1"}), NOW),
            AckSet("bob", (0).to_bytes(16, "big"), frozenset({b""}), NOW),
        ),
    )
    result = store.import_replica(batch, NOW)
    assert (result.stored, result.acked, result.removed) == (1, 0, 0)
    assert store.messages("bob")[0].acked == frozenset()
    assert store.pending_acks("bob") == {}

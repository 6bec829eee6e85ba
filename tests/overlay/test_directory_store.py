"""DirectoryStore: certification, sequencing, bounds, expiry, handover, robustness."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.identity.certificate import CertificateBody, Role, issue_certificate
from hopline.overlay.directory import (
    LAST_SEEN_RETENTION_S,
    BadRecord,
    DirectoryError,
    DirectoryStore,
    NotCertified,
    NotOwner,
    StaleRecord,
    StoreFull,
    StoreLimits,
    TooLarge,
    TooManyDevices,
)
from hopline.overlay.slots import slot_of
from hopline.testing.pki import TestAuthority
from hopline.testing.wire_strategies import records
from hopline.wire import Address
from hopline.wire.commands import DeviceRecord, Endpoint, PresenceRecord
from hopline.wire.directory import LookupState

NOW = 1_763_800_000
AUTHORITY = TestAuthority()
VERIFIER = AUTHORITY.verifier()


def device(
    user: str,
    number: int = 0,
    *,
    authority: TestAuthority = AUTHORITY,
    role: Role = Role.USER,
    lifetime: int = 86400,
    endpoints: int = 1,
) -> DeviceRecord:
    """A device of ``user`` with a real certificate."""
    device_id = bytes([number]) * 16
    key = bytes([number + 1]) + user.encode().ljust(31, b"\0")[:31]
    body = CertificateBody(
        version=1,
        role=role,
        subject=user,
        device_id=device_id,
        static_key=key,
        issued_at=NOW - 60,
        expires_at=NOW + lifetime,
        serial=number + 1,
        issuer=authority.public,
    )
    return DeviceRecord(
        device_id=device_id,
        identity_key=key,
        certificate=issue_certificate(authority.key, body),
        endpoints=tuple(
            Endpoint(address=Address.parse(f"192.0.2.{n % 250 + 1}:{40000 + n}"))
            for n in range(endpoints)
        ),
    )


def presence(
    user: str,
    *devices: DeviceRecord,
    sequence: int = 1,
    status: int = 1,
    last_seen: int = NOW,
    expires: int = NOW + 600,
) -> PresenceRecord:
    """A presence record of ``user`` (one certified device unless given)."""
    return PresenceRecord(
        user=user,
        status=status,
        devices=devices or (device(user),),
        last_seen=last_seen,
        expires=expires,
        sequence=sequence,
    )


BOB = presence("bob")


def test_publish_then_lookup_online() -> None:
    store = DirectoryStore()
    result = store.publish(BOB, NOW, VERIFIER)
    assert result.changed and result.user == "bob" and result.expires == NOW + 600
    found = store.lookup("BOB", NOW + 1)
    assert found.state is LookupState.ONLINE
    assert found.record == BOB
    assert store.accepted == 1 and len(store) == 1


def test_two_devices_each_certified() -> None:
    store = DirectoryStore()
    store.publish(presence("bob", device("bob", 0), device("bob", 1)), NOW, VERIFIER)
    found = store.lookup("bob", NOW).record
    assert found is not None and len(found.devices) == 2


def test_each_device_publishes_itself_and_lookups_list_every_live_device() -> None:
    store = DirectoryStore()
    phone, laptop = device("bob", 0), device("bob", 1)
    store.publish(presence("bob", phone, sequence=1, expires=NOW + 300), NOW, VERIFIER)
    store.publish(presence("bob", laptop, sequence=2, status=2, expires=NOW + 600), NOW, VERIFIER)
    found = store.lookup("bob", NOW + 1).record
    assert found is not None and {d.device_id for d in found.devices} == {b"\0" * 16, b"\1" * 16}
    assert found.status == 2  # the newest record's status
    later = store.lookup("bob", NOW + 400).record  # the phone's own record expired
    assert later is not None and [d.device_id for d in later.devices] == [b"\1" * 16]
    assert store.lookup("bob", NOW + 700).state is LookupState.OFFLINE


def test_a_device_that_leaves_is_no_longer_listed_but_the_others_stay_online() -> None:
    store = DirectoryStore()
    phone, laptop = device("bob", 0), device("bob", 1)
    store.publish(presence("bob", phone, sequence=1, status=3), NOW, VERIFIER)
    store.publish(presence("bob", laptop, sequence=2), NOW, VERIFIER)
    store.publish(presence("bob", laptop, sequence=3, status=0, expires=NOW), NOW, VERIFIER)
    found = store.lookup("bob", NOW + 1)
    assert found.state is LookupState.ONLINE and found.record is not None
    assert [d.device_id for d in found.record.devices] == [b"\0" * 16]
    assert found.record.status == 1  # the leaving record does not set the status


def refused(
    store: DirectoryStore,
    record: PresenceRecord,
    error: type[DirectoryError],
    publisher: str | None = None,
    publisher_key: bytes | None = None,
) -> None:
    with pytest.raises(error) as caught:
        store.publish(record, NOW, VERIFIER, publisher=publisher, publisher_key=publisher_key)
    assert store.refused[caught.value.reason] >= 1


def test_another_users_certificate_is_not_certified() -> None:
    store = DirectoryStore()
    forged = presence("bob", device("mallory"))
    refused(store, forged, NotCertified)
    assert store.refused["not-certified"] == 1
    assert store.lookup("bob", NOW).state is LookupState.NOT_FOUND


def test_cannot_overwrite_another_users_record() -> None:
    store = DirectoryStore()
    store.publish(BOB, NOW, VERIFIER)
    takeover = presence("bob", device("mallory"), sequence=99)
    refused(store, takeover, NotCertified)
    # One honest device plus one foreign device is refused too: EVERY device must verify.
    mixed = presence("bob", device("bob"), device("mallory", 1), sequence=99)
    refused(store, mixed, NotCertified)
    assert store.lookup("bob", NOW).record == BOB


@pytest.mark.parametrize(
    "bad",
    [
        dataclasses.replace(device("bob"), identity_key=b"\x09" * 32),  # wrong key
        dataclasses.replace(device("bob"), device_id=b"\x07" * 16),  # wrong device
        device("bob", authority=TestAuthority()),  # another login server
        device("bob", role=Role.SUPERNODE),  # wrong role
        device("bob", lifetime=30),  # expired at NOW + 30
        dataclasses.replace(device("bob"), certificate=b"garbage"),
    ],
)
def test_bad_device_certificates_are_refused(bad: DeviceRecord) -> None:
    store = DirectoryStore()
    with pytest.raises(NotCertified):
        store.publish(presence("bob", bad), NOW + 60, VERIFIER)
    assert len(store) == 0


def test_record_without_devices_is_not_certified() -> None:
    store = DirectoryStore()
    empty = PresenceRecord(user="bob", status=1, devices=(), last_seen=NOW, expires=NOW + 60)
    refused(store, empty, NotCertified)


def test_session_identity_must_own_the_record() -> None:
    store = DirectoryStore()
    # Bob's real record, replayed by mallory's session (certificates are public).
    refused(store, BOB, NotCertified, publisher="mallory")
    refused(store, BOB, NotCertified, publisher="bob", publisher_key=b"\x55" * 32)
    key = BOB.devices[0].identity_key
    assert store.publish(BOB, NOW, VERIFIER, publisher="Bob", publisher_key=key).changed


def test_sequence_rules_stale_and_idempotent() -> None:
    store = DirectoryStore()
    store.publish(presence("bob", sequence=5), NOW, VERIFIER)
    refused(store, presence("bob", sequence=4), StaleRecord)
    repeat = store.publish(presence("bob", sequence=5), NOW, VERIFIER)
    assert not repeat.changed
    refused(store, presence("bob", sequence=5, status=2), StaleRecord)
    assert store.publish(presence("bob", sequence=6, status=2), NOW, VERIFIER).changed
    found = store.lookup("bob", NOW).record
    assert found is not None and found.status == 2
    assert store.refused["stale"] == 2


def test_bad_username_is_bad_record() -> None:
    store = DirectoryStore()
    refused(store, dataclasses.replace(BOB, user="no"), BadRecord)
    refused(store, presence("bob", device("bob"), device("bob")), BadRecord)  # duplicate device


def test_size_and_device_bounds() -> None:
    limits = StoreLimits(max_devices=3, max_record_size=2048)
    store = DirectoryStore(limits)
    refused(store, presence("bob", *(device("bob", n) for n in range(4))), TooManyDevices)
    refused(store, presence("bob", device("bob", endpoints=200)), TooLarge)
    assert len(store) == 0 and store.bytes_stored == 0


def test_store_full_refuses_and_memory_stays_bounded() -> None:
    limits = StoreLimits(max_records=3, max_record_size=1024)
    store = DirectoryStore(limits)
    for name in ("ann", "bob", "cid"):
        store.publish(presence(name), NOW, VERIFIER)
    refused(store, presence("dan"), StoreFull)
    assert len(store) == 3
    assert store.bytes_stored <= limits.max_records * limits.max_record_size
    # Updating someone already stored is still allowed when full.
    assert store.publish(presence("bob", sequence=2), NOW, VERIFIER).changed


def test_full_store_evicts_an_offline_record_for_a_new_one() -> None:
    store = DirectoryStore(StoreLimits(max_records=2))
    store.publish(presence("ann", expires=NOW + 10), NOW, VERIFIER)
    store.publish(presence("bob"), NOW, VERIFIER)
    store.publish(presence("cid"), NOW + 20, VERIFIER)  # ann is offline by now
    assert store.lookup("ann", NOW + 20).state is LookupState.NOT_FOUND
    assert store.lookup("cid", NOW + 20).state is LookupState.ONLINE
    assert len(store) == 2


def test_expiry_then_last_seen_for_72_hours_then_gone() -> None:
    store = DirectoryStore()
    store.publish(BOB, NOW, VERIFIER)
    assert store.lookup("bob", NOW + 599).state is LookupState.ONLINE
    offline = store.lookup("bob", NOW + 600)
    assert offline.state is LookupState.OFFLINE and offline.last_seen == NOW
    assert offline.record is not None and offline.record.devices[0].endpoints == ()
    assert offline.record.devices[0].certificate == BOB.devices[0].certificate
    end = NOW + LAST_SEEN_RETENTION_S
    assert store.lookup("bob", end - 1).state is LookupState.OFFLINE
    assert store.expire(end - 1) == 0
    assert store.lookup("bob", end).state is LookupState.NOT_FOUND
    assert store.expire(end) == 1
    assert len(store) == 0 and store.bytes_stored == 0


def test_expire_counts_only_dropped_records_after_refreshes() -> None:
    store = DirectoryStore()
    for sequence in range(1, 50):  # many refreshes leave superseded heap entries
        store.publish(
            presence("bob", sequence=sequence, last_seen=NOW + sequence), NOW + sequence, VERIFIER
        )
    store.publish(presence("ann"), NOW, VERIFIER)
    assert store.expire(NOW + LAST_SEEN_RETENTION_S) == 1  # ann only
    assert store.expire(NOW + LAST_SEEN_RETENTION_S + 49) == 1  # then bob
    assert len(store) == 0


def test_clock_fields_are_clamped() -> None:
    store = DirectoryStore(StoreLimits(max_ttl=300))
    result = store.publish(
        presence("bob", expires=NOW + 10**9, last_seen=NOW + 10**9), NOW, VERIFIER
    )
    assert result.expires == NOW + 300
    assert store.lookup("bob", NOW).last_seen == NOW


def test_ownership_and_handover() -> None:
    slot = slot_of("bob")
    refused(DirectoryStore(owned_slots=[slot + 1]), BOB, NotOwner)
    old = DirectoryStore(owned_slots=[slot])
    old.publish(BOB, NOW, VERIFIER)
    exported = old.export_slot(slot)
    assert BOB in exported and old.export_slot(slot + 1) == []
    new = DirectoryStore(owned_slots=[slot])
    first = new.import_records(exported, NOW + 5, VERIFIER)
    assert first.stored == len(exported) and first.unchanged == 0
    again = new.import_records(exported, NOW + 5, VERIFIER)
    assert again.unchanged == len(exported) and again.stored == 0
    forged = new.import_records([presence("bob", device("mallory"), sequence=9)], NOW, VERIFIER)
    assert forged.refused["not-certified"] == 1
    assert new.lookup("bob", NOW).record == BOB
    assert old.set_owned_slots([slot + 1]) == len(exported)
    assert len(old) == 0 and old.bytes_stored == 0


def test_lookup_of_invalid_name_is_not_found() -> None:
    assert DirectoryStore().lookup("??", NOW).state is LookupState.NOT_FOUND


GOOD_DEVICES = [device("alice", n) for n in range(3)]


def mutated_records() -> st.SearchStrategy[PresenceRecord]:
    """Generated records, half built around real certificates of user alice."""
    certified = st.builds(
        PresenceRecord,
        user=st.sampled_from(["alice", "Alice", "bob", "a", "alice!"]),
        status=st.integers(0, 5),
        devices=st.lists(st.sampled_from(GOOD_DEVICES), max_size=4).map(tuple),
        last_seen=st.integers(0, 2**40),
        expires=st.integers(0, 2**40),
        sequence=st.integers(0, 2**64 - 1),
        mood=st.none() | st.text(max_size=40),
    )
    return st.one_of(records(PresenceRecord), certified)


ACCEPTED: list[str] = []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(mutated_records(), max_size=6), offset=st.just(0) | st.integers(-(10**6), 10**6)
)
def test_store_raises_only_typed_errors(batch: list[PresenceRecord], offset: int) -> None:
    store = DirectoryStore(StoreLimits(max_records=2, max_devices=2, max_record_size=4096))
    now = NOW + offset
    for record in batch:
        try:
            store.publish(record, now, VERIFIER)
        except DirectoryError as exc:
            assert exc.reason in {
                "bad-record",
                "not-certified",
                "not-owner",
                "stale",
                "too-large",
                "too-many-devices",
                "full",
            }
        else:
            ACCEPTED.append(record.user)
        store.lookup(record.user, now)
    store.import_records(batch, now, VERIFIER)
    assert len(store) <= 2
    store.expire(now + 10**9)
    assert len(store) == 0 and store.bytes_stored == 0


def test_generated_records_were_sometimes_accepted() -> None:
    """Guards the property test above against only ever exercising refusals."""
    test_store_raises_only_typed_errors()
    assert ACCEPTED

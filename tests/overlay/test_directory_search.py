"""White-pages search: terms, partitioning over slots, pagination and bounds."""

from __future__ import annotations

import pytest

from hopline.overlay.search import (
    MAX_LIMIT,
    SearchError,
    SearchIndex,
    profile_slots,
    profile_terms,
    query_slot,
    words,
)
from hopline.overlay.slots import OwnershipMap, slot_of_key
from hopline.wire import decode, encode
from hopline.wire.directory import PublicProfile, SearchField, SearchReply

ANN = PublicProfile(
    username="ann.lee", full_name="Ann-Marie Lée", city="New York", country="US", language="en"
)
BOB = PublicProfile(
    username="bob", full_name="Bob Annan", city="Malmö", country="se", language="sv"
)


def test_words_fold_case_and_accents() -> None:
    assert words("Ann-Marie  LÉE") == ["ann", "marie", "lee"]
    assert words("Malmö_x") == ["malmo", "x"]


def test_profile_terms() -> None:
    terms = profile_terms(ANN)
    assert {"name:an", "name:ann", "name:ma", "name:marie", "name:lee"} <= terms
    assert {"city:new york", "country:us", "language:en"} <= terms
    assert "name:a" not in terms
    assert profile_slots(ANN) == {slot_of_key(term) for term in terms}


def test_query_by_each_field() -> None:
    index = SearchIndex()
    index.index(ANN)
    index.index(BOB)
    assert index.query(SearchField.NAME, "ann")[0] == [ANN, BOB]  # "Annan" starts with ann
    assert index.query(SearchField.NAME, "Ann Lee")[0] == [ANN]
    assert index.query(SearchField.NAME, "marie")[0] == [ANN]
    assert index.query(SearchField.CITY, "new  YORK")[0] == [ANN]
    assert index.query(SearchField.CITY, "malmo")[0] == [BOB]
    assert index.query(SearchField.COUNTRY, "SE")[0] == [BOB]
    assert index.query(SearchField.LANGUAGE, "en")[0] == [ANN]
    assert index.query(SearchField.NAME, "zed") == ([], None)


def test_reindex_replaces_and_remove_forgets() -> None:
    index = SearchIndex()
    index.index(ANN)
    index.index(PublicProfile(username="ANN.LEE", full_name="Ann Other"))
    assert index.query(SearchField.CITY, "new york")[0] == []
    assert index.query(SearchField.NAME, "other")[0][0].username == "ann.lee"
    assert index.remove("ann.lee") and not index.remove("ann.lee")
    assert index.query(SearchField.NAME, "ann")[0] == []
    assert len(index) == 0


def populated(count: int) -> SearchIndex:
    index = SearchIndex()
    for n in range(count):
        index.index(PublicProfile(username=f"user{n:04d}", full_name=f"John Smith{n}", city="Oslo"))
    return index


def test_pagination_walks_every_match_once_in_order() -> None:
    index = populated(237)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = index.query(SearchField.NAME, "john", limit=50, cursor=cursor)
        assert len(page) <= 50
        seen.extend(p.username for p in page)
        pages += 1
        if cursor is None:
            break
    assert pages == 5
    assert seen == sorted(f"user{n:04d}" for n in range(237))


def test_limit_is_bounded() -> None:
    index = populated(120)
    page, cursor = index.query(SearchField.CITY, "oslo", limit=10_000)
    assert len(page) == MAX_LIMIT and cursor == page[-1].username
    page, _ = index.query(SearchField.CITY, "oslo", limit=0)
    assert len(page) == 1


def test_filtered_query_scan_is_bounded_and_resumable() -> None:
    index = SearchIndex(max_scan=30)
    for n in range(100):
        index.index(
            PublicProfile(
                username=f"user{n:04d}", full_name=f"John {'Smith' if n % 10 == 0 else 'Doe'}"
            )
        )
    found: list[str] = []
    cursor: str | None = None
    calls = 0
    while True:
        page, cursor = index.query(SearchField.NAME, "john smith", limit=50, cursor=cursor)
        found.extend(p.username for p in page)
        calls += 1
        if cursor is None:
            break
    assert calls == 4  # 100 postings, 30 scanned per call
    assert found == [f"user{n:04d}" for n in range(0, 100, 10)]


@pytest.mark.parametrize(
    ("field", "text"),
    [
        (SearchField.NAME, "a"),
        (SearchField.NAME, ""),
        (SearchField.CITY, "!!"),
        (99, "ann"),
        (SearchField.NAME, "x" * 65),
    ],
)
def test_bad_queries(field: int, text: str) -> None:
    index = SearchIndex()
    with pytest.raises(SearchError) as caught:
        index.query(field, text)
    assert caught.value.reason == "bad-query"
    assert index.refused["bad-query"] == 1


def test_profile_bounds() -> None:
    index = SearchIndex(max_profiles=2)
    with pytest.raises(SearchError, match="bad-record"):
        index.index(PublicProfile(username="x"))
    with pytest.raises(SearchError, match="too-large"):
        index.index(PublicProfile(username="carl", full_name="c" * 65))
    index.index(ANN)
    index.index(BOB)
    with pytest.raises(SearchError, match="full"):
        index.index(PublicProfile(username="carl", full_name="Carl"))
    index.index(BOB)  # re-indexing an existing user is fine when full
    assert len(index) == 2


def test_index_is_partitioned_over_slots_like_users() -> None:
    members = [f"sn-{n}" for n in range(20)]
    ownership = OwnershipMap(members, 3, 256)
    nodes = {
        node: SearchIndex(slots=256, owned_slots=ownership.slots_owned_by(node)) for node in members
    }
    profiles = [
        ANN,
        BOB,
        *(PublicProfile(username=f"u{n:03d}", full_name=f"Ann N{n}") for n in range(40)),
    ]
    for profile in profiles:
        for slot in profile_slots(profile, 256):
            for node in ownership.owners_of_slot(slot):
                nodes[node].index(profile)
    slot = query_slot(SearchField.NAME, "Ann", 256)
    holders = ownership.owners_of_slot(slot)
    answers = [nodes[node].query(SearchField.NAME, "ann", limit=50)[0] for node in holders]
    assert all(answer == answers[0] for answer in answers)
    assert len(answers[0]) == 42
    outsider = next(node for node in members if node not in holders)
    with pytest.raises(SearchError, match="not-owner"):
        nodes[outsider].query(SearchField.NAME, "ann")
    # Only owners of a shared term (such as name:ann) keep every profile.
    assert min(len(index) for index in nodes.values()) < len(profiles)
    assert len(nodes[outsider]) < len(profiles) or slot_of_key("name:an", 256) in (
        ownership.slots_owned_by(outsider)
    )


def test_search_reply_round_trips_on_the_wire() -> None:
    reply = SearchReply(profiles=(ANN, BOB), next_cursor="bob", request_id=7)
    assert decode(encode(reply)) == reply

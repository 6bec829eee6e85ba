"""The white pages across real supernode processes: publish, search in one hop, paginate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc, enrollment_token
from hopline.demo.walkthrough import members_seen
from hopline.identity import CertificateVerifier, Role
from hopline.overlay.search import query_slot
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import Endpoint, PeerConnection, RequestError
from hopline.wire import Address
from hopline.wire.commands import Register, RegisterReply
from hopline.wire.directory import (
    ProfilePublish,
    ProfilePublishReply,
    PublicProfile,
    SearchField,
    SearchReply,
    SearchRequest,
)

PASSWORD = "correct horse battery staple"
PEOPLE = {
    "alice": PublicProfile(
        username="alice", full_name="Alice Lindqvist", city="Stockholm", country="SE", language="sv"
    ),
    "bob": PublicProfile(
        username="bob", full_name="Bob Lindgren", city="Oslo", country="NO", language="nb"
    ),
    "carol": PublicProfile(
        username="carol", full_name="Carol Ann Smith", city="Stockholm", country="GB", language="en"
    ),
}
SEARCHES = [  # (field, text, who matches)
    (SearchField.NAME, "lind", {"alice", "bob"}),  # a prefix of two surnames
    (SearchField.NAME, "Carol", {"carol"}),  # a whole word
    (SearchField.NAME, "lind alice", {"alice"}),  # every word must prefix a name word
    (SearchField.CITY, "stockholm", {"alice", "carol"}),
    (SearchField.COUNTRY, "no", {"bob"}),
    (SearchField.LANGUAGE, "SV", {"alice"}),
]
PAGED = 25


def start_supernode(cluster: Cluster, tmp_path: Path, ls: Proc, nodes: list[Proc]) -> None:
    n = len(nodes)
    args = [
        *("supernode", "--listen", "127.0.0.1:0"),
        *("--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]),
        *("--data-dir", str(tmp_path / f"sn{n}")),
        *("--enroll-token", enrollment_token(tmp_path / "ls")),
        *("--metrics", "127.0.0.1:0"),
    ]
    if nodes:
        args += ["--join", nodes[0].ready["listen"]]
    nodes.append(cluster.start(f"sn{n}", args))


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Cluster, Proc, list[Proc]]]:
    with Cluster(tmp_path / "logs") as cluster:
        ls = cluster.start(
            "ls", ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "ls")]
        )
        nodes: list[Proc] = []
        for _ in range(5):
            start_supernode(cluster, tmp_path, ls, nodes)
        yield cluster, ls, nodes


async def register_from(host: str, profile: Profile, name: str) -> None:
    """Register from ``host`` (the login server allows 10 registrations per address)."""
    verifier = CertificateVerifier(profile.ls_key)
    endpoint = Endpoint(static=profile.keys.static, certificate=None, verifier=verifier)
    try:
        await endpoint.open_udp(host, 0)
        pc = await endpoint.connect(
            profile.login_server.as_tuple(), Expectation(role=Role.LOGIN_SERVER)
        )
        reply = await pc.request(Register(username=name, password=PASSWORD), timeout=30)
        assert isinstance(reply, RegisterReply)
    finally:
        endpoint.close()


async def logged_in(tmp_path: Path, ls: Proc, name: str, number: int) -> Endpoint:
    profile = Profile.open(tmp_path / "users" / name)
    profile.pin_login_server(
        Address.parse(ls.ready["listen"]), parse_ls_key(ls.ready["public_key"])
    )
    await register_from(f"127.0.0.{2 + number // 8}", profile, name)
    await account.login(profile, name, PASSWORD)
    return Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )


async def wait_overlay(nodes: list[Proc]) -> None:
    for _ in range(200):
        seen = [await asyncio.to_thread(members_seen, p.ready["metrics"]) for p in nodes]
        if all(count == len(nodes) for count in seen):
            await asyncio.sleep(0.5)  # let every node's on_change refresh settle
            return
        await asyncio.sleep(0.2)
    raise AssertionError("overlay did not converge")


async def to_node(user: Endpoint, node: Proc) -> PeerConnection:
    address = Address.parse(node.ready["listen"]).as_tuple()
    return await user.connect(address, Expectation(role=Role.SUPERNODE))


async def publish(user: Endpoint, node: Proc, profile: PublicProfile) -> None:
    pc = await to_node(user, node)
    reply = await pc.request(ProfilePublish(profile=profile), timeout=10)
    assert isinstance(reply, ProfilePublishReply) and reply.terms > 0


def outsider(nodes: list[Proc], field: int, text: str) -> Proc:
    """A supernode that does not own the query's slot (so the search takes one hop)."""
    ids = {p.ready["node_id"]: p for p in nodes}
    owners = OwnershipMap(sorted(ids), 3).owners_of_slot(query_slot(field, text))
    return next(p for node_id, p in ids.items() if node_id not in owners)


def stale_prone_move(nodes: list[Proc]) -> tuple[str, str, Proc]:
    """Two cities and a home such that some owner of the old city owns nothing of the new.

    Without ``previous`` that owner would keep the old copy: the move tests something.
    """
    ids = {p.ready["node_id"]: p for p in nodes}
    ownership = OwnershipMap(sorted(ids), 3)
    cities = ["Lima", "Quito", "Hanoi", "Accra", "Perth", "Turku", "Graz", "Bergen"]

    def owners(city: str) -> set[str]:
        return set(ownership.owners_of_slot(query_slot(SearchField.CITY, city)))

    for old in cities:
        for new in cities:
            left = owners(old) - owners(new)
            home = next((n for n in ids if n not in owners(old)), None)
            if old != new and left and home is not None:
                return old, new, ids[home]
    raise AssertionError("no city pair leaves an old owner out")


async def search_all(pc: PeerConnection, field: int, text: str, limit: int) -> list[str]:
    """Every username a paginated search returns, in order."""
    found: list[str] = []
    cursor: str | None = None
    for _ in range(PAGED):
        reply = await pc.request(SearchRequest(field=field, text=text, limit=limit, cursor=cursor))
        assert isinstance(reply, SearchReply) and len(reply.profiles) <= limit
        found += [p.username for p in reply.profiles]
        cursor = reply.next_cursor
        if cursor is None:
            return found
    raise AssertionError("pagination did not end")


async def check_searches(searcher: Endpoint, nodes: list[Proc]) -> None:
    """Every search in SEARCHES, through a non-owner, finds exactly its users."""
    for field, text, expected in SEARCHES:
        pc = await to_node(searcher, outsider(nodes, field, text))
        found = await search_all(pc, field, text, 50)
        assert set(found) == expected and len(found) == len(expected), (text, found)
        details = await pc.request(SearchRequest(field=field, text=text))
        assert isinstance(details, SearchReply)
        assert {p.full_name for p in details.profiles} == {PEOPLE[n].full_name for n in expected}


async def test_profiles_are_found_by_every_field_through_a_non_owner(
    network: tuple[Cluster, Proc, list[Proc]], tmp_path: Path
) -> None:
    cluster, ls, nodes = network
    names = [*PEOPLE, "dave", *(f"pager{i:02}" for i in range(PAGED))]
    endpoints = [logged_in(tmp_path, ls, name, i) for i, name in enumerate(names)]
    users = dict(zip(names, await asyncio.gather(*endpoints), strict=True))
    await wait_overlay(nodes)
    try:
        for i, (name, profile) in enumerate(PEOPLE.items()):  # through different homes
            await publish(users[name], nodes[i], profile)

        # someone else's profile is refused
        with pytest.raises(RequestError) as caught:
            await (await to_node(users["dave"], nodes[3])).request(
                ProfilePublish(profile=PublicProfile(username="alice", full_name="Mallory"))
            )
        assert caught.value.code == 403

        await check_searches(users["dave"], nodes)

        # a bad query is refused with 400 (unknown field, and a one-letter name)
        pc = await to_node(users["dave"], nodes[4])
        for bad in (SearchRequest(field=9, text="lind"), SearchRequest(field=1, text="a")):
            with pytest.raises(RequestError) as caught:
                await pc.request(bad)
            assert caught.value.code == 400

        # 25 profiles sharing a surname, read 10 at a time: each exactly once
        pagers = [f"pager{i:02}" for i in range(PAGED)]
        await asyncio.gather(
            *(
                publish(users[n], nodes[i % 5], PublicProfile(username=n, full_name=f"Pat Zed{i}"))
                for i, n in enumerate(pagers)
            )
        )
        pc = await to_node(users["dave"], outsider(nodes, SearchField.NAME, "zed"))
        assert await search_all(pc, SearchField.NAME, "zed", 10) == pagers

        # a sixth supernode joins: the slots it now owns are handed over to it
        start_supernode(cluster, tmp_path, ls, nodes)
        await wait_overlay(nodes)
        await check_searches(users["dave"], nodes)
        pc = await to_node(users["dave"], outsider(nodes, SearchField.NAME, "zed"))
        assert await search_all(pc, SearchField.NAME, "zed", 10) == pagers

        # dave moves: with the previous profile named, no owner keeps the old city
        old_city, new_city, home = stale_prone_move(nodes)
        before = PublicProfile(username="dave", city=old_city)
        after = PublicProfile(username="dave", city=new_city)
        await publish(users["dave"], home, before)
        pc = await to_node(users["dave"], home)
        await asyncio.sleep(1.1)  # one publish per second per user
        reply = await pc.request(ProfilePublish(profile=after, previous=before))
        assert isinstance(reply, ProfilePublishReply) and reply.terms > 0
        for node in nodes:  # every node, owner or not, answers alike
            pc = await to_node(users["alice"], node)
            assert await search_all(pc, SearchField.CITY, old_city, 50) == []
            assert await search_all(pc, SearchField.CITY, new_city, 50) == ["dave"]
    finally:
        for user in users.values():
            user.close()

"""The contacts, chats, groups and files routes in process, and the SDK over them.

A real :class:`ClientDaemon` on a logged-out profile sits behind the app
(httpx's ASGI transport, no network): what is checked here is the token,
the limits on every field and path segment, and the answers of a daemon
that is not logged in. Messages and files between real daemons are in
``tests/daemon/test_messaging_daemon_process.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hopline.sdk import Client, HoplineError
from hopline.testing.api import TEST_TOKEN, needs_the_token

GID = "0123456789abcdef0123456789abcdef"
TID = "fedcba9876543210fedcba9876543210"


@pytest.fixture
async def sdk(app: httpx.ASGITransport) -> AsyncIterator[tuple[Client, list[httpx.Request]]]:
    """The SDK over the app, and the requests it made."""
    client = Client("http://test", TEST_TOKEN, transport=app)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    client._http.event_hooks["request"].append(record)
    async with client:
        yield client, sent


ROUTES = [
    ("GET", "/v1/contacts", None),
    ("POST", "/v1/contacts", {"user": "bob", "message": "hi, it's alice"}),
    ("POST", "/v1/contacts/bob/accept", None),
    ("POST", "/v1/contacts/bob/decline", None),
    ("POST", "/v1/contacts/bob/remove", None),
    ("POST", "/v1/contacts/bob/block", None),
    ("POST", "/v1/chats/bob/messages", {"text": "hello"}),
    ("POST", f"/v1/chats/{GID}/messages", {"text": "hello group"}),
    ("GET", "/v1/chats/bob/messages?limit=10", None),
    ("POST", "/v1/chats/bob/read", None),
    ("GET", "/v1/messages/search?q=hello", None),
    ("GET", "/v1/messaging", None),
    ("GET", "/v1/groups", None),
    ("POST", "/v1/groups", {"name": "friends", "members": ["bob", "carol"]}),
    ("POST", f"/v1/groups/{GID}/invite", {"users": ["dave"]}),
    ("POST", f"/v1/groups/{GID}/leave", None),
    ("PATCH", f"/v1/groups/{GID}", {"name": "old friends"}),
    ("POST", "/v1/files", {"peer": "bob", "path": "/etc/hostname"}),
    ("GET", "/v1/files", None),
    ("GET", f"/v1/files/{TID}", None),
    ("POST", f"/v1/files/{TID}/accept", {"to_dir": "/tmp"}),
    ("POST", f"/v1/files/{TID}/accept", None),
    ("POST", f"/v1/files/{TID}/decline", None),
    ("POST", f"/v1/files/{TID}/cancel", None),
    ("GET", f"/v1/files/{TID}/wait?timeout_s=1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_needs_the_token(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    await needs_the_token(api, method, path, body)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_a_logged_out_daemon_refuses_with_not_logged_in(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await api.request(method, path, json=body)
    assert response.status_code == 409, response.text
    doc = response.json()
    assert doc["error"] == "not-logged-in" and "hopline login" in doc["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("POST", "/v1/contacts", {}, "user: Field required"),
        ("POST", "/v1/contacts", {"user": ""}, "user: String should have at least 1"),
        ("POST", "/v1/contacts", {"user": "b" * 65}, "user: String should have at most 64"),
        ("POST", "/v1/contacts", {"user": "bob", "message": "m" * 501}, "message: String"),
        ("POST", "/v1/contacts", {"user": "bob", "note": "x"}, "note: Extra inputs"),
        ("POST", "/v1/contacts/bob/hug", None, "op: Input should be 'accept'"),
        ("POST", "/v1/contacts/bob/add", None, "op: Input should be"),
        ("POST", f"/v1/contacts/{'b' * 65}/accept", None, "user: String should have at most"),
        ("POST", "/v1/chats/bob/messages", {}, "text: Field required"),
        ("POST", "/v1/chats/bob/messages", {"text": ""}, "text: String should have at least"),
        ("POST", "/v1/chats/bob/messages", {"text": "x" * 4097}, "text: String should have at"),
        ("POST", "/v1/chats/bob/messages", {"text": 5}, "text: Input should be a valid string"),
        ("POST", f"/v1/chats/{'b' * 65}/messages", {"text": "hi"}, "peer: String should"),
        ("GET", "/v1/chats/bob/messages?limit=0", None, "limit: Input should be greater"),
        ("GET", "/v1/chats/bob/messages?limit=1001", None, "limit: Input should be less"),
        ("GET", "/v1/chats/bob/messages?limit=many", None, "limit: Input should be a valid"),
        ("GET", "/v1/messages/search", None, "q: Field required"),
        ("GET", "/v1/messages/search?q=", None, "q: String should have at least"),
        ("GET", f"/v1/messages/search?q={'w' * 257}", None, "q: String should have at most"),
        ("GET", "/v1/messages/search?q=hi&limit=0", None, "limit: Input should be greater"),
        ("POST", "/v1/groups", {"name": "g"}, "members: Field required"),
        ("POST", "/v1/groups", {"name": "g", "members": []}, "members: List should have"),
        ("POST", "/v1/groups", {"name": "", "members": ["bob"]}, "name: String should"),
        ("POST", "/v1/groups", {"name": "n" * 65, "members": ["bob"]}, "name: String should"),
        ("POST", "/v1/groups", {"name": "g", "members": ["u"] * 65}, "members: List should"),
        ("POST", "/v1/groups", {"name": "g", "members": [""]}, "members.0: String should"),
        ("POST", "/v1/groups/not-a-group/invite", {"users": ["bob"]}, "group_id: String should"),
        ("POST", f"/v1/groups/{GID}/invite", {"users": []}, "users: List should have"),
        ("POST", f"/v1/groups/{GID[:-1]}/leave", None, "group_id: String should match"),
        ("PATCH", f"/v1/groups/{GID}", {}, "name: Field required"),
        ("POST", "/v1/files", {"peer": "bob"}, "path: Field required"),
        ("POST", "/v1/files", {"peer": "bob", "path": "notes.txt"}, "must be an absolute path"),
        ("POST", "/v1/files", {"peer": "bob", "path": "/tmp/a\x00b"}, "cannot contain NUL"),
        ("POST", "/v1/files", {"peer": "bob", "path": "/" + "p" * 4096}, "path: String should"),
        ("POST", "/v1/files", {"peer": "", "path": "/etc/hostname"}, "peer: String should"),
        ("POST", "/v1/files", {"peer": "bob", "path": "/no/such/file"}, "not a readable file"),
        ("POST", f"/v1/files/{TID}/accept", {"to_dir": "downloads"}, "must be an absolute"),
        ("POST", f"/v1/files/{TID}/accept", {"to": "/tmp"}, "to: Extra inputs"),
        ("GET", "/v1/files/xyz", None, "transfer_id: String should match"),
        ("POST", f"/v1/files/{TID}0/cancel", None, "transfer_id: String should match"),
        ("GET", f"/v1/files/{TID}/wait?timeout_s=3601", None, "timeout_s: Input should be"),
        ("GET", f"/v1/files/{TID}/wait?timeout_s=-1", None, "timeout_s: Input should be"),
    ],
)
async def test_invalid_requests_are_bad_input_with_a_clear_message(
    api: httpx.AsyncClient, method: str, path: str, body: object, says: str
) -> None:
    response = await api.request(method, path, json=body)
    assert response.status_code == 422, response.text
    doc = response.json()
    assert doc["error"] == "bad-input"
    assert says in doc["message"], doc["message"]


async def test_openapi_documents_the_messaging_routes(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/v1/contacts"]) == {"get", "post"}
    assert set(paths["/v1/groups/{group_id}"]) == {"patch"}
    assert set(paths["/v1/chats/{peer}/messages"]) == {"get", "post"}
    assert set(paths["/v1/files"]) == {"get", "post"}
    for path in ("/v1/files/{transfer_id}/wait", "/v1/messages/search", "/v1/messaging"):
        assert path in paths
    send = paths["/v1/chats/{peer}/messages"]["post"]["responses"]
    assert {"200", "401", "404", "409", "422", "502", "503"} <= set(send)
    text = document["components"]["schemas"]["SendMessage"]["properties"]["text"]
    assert text["maxLength"] == 4096 and text["minLength"] == 1


async def test_the_sdk_maps_refusals_to_typed_errors(
    sdk: tuple[Client, list[httpx.Request]],
) -> None:
    client, sent = sdk
    with pytest.raises(HoplineError) as refused:
        await client.send_message("bob", "hello")
    assert refused.value.code == "not-logged-in" and refused.value.status == 409
    with pytest.raises(HoplineError) as refused:
        await client.history("bob", limit=5000)  # the daemon's limit, not the SDK's
    assert refused.value.code == "bad-input" and refused.value.status == 422
    assert "limit" in str(refused.value)
    assert len(sent) == 2


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda c: c.contact_op("bob", "hug"), "unknown contact operation 'hug'"),
        (lambda c: c.send_message("bob", ""), "text: String should have at least 1"),
        (lambda c: c.send_message("", "hi"), "not a username or group id"),
        (lambda c: c.add_contact("bob", "m" * 501), "message: String should have at most"),
        (lambda c: c.create_group("g", []), "members: List should have at least 1"),
        (lambda c: c.invite("nope", ["bob"]), "not a group id"),
        (lambda c: c.rename_group(GID, ""), "name: String should have at least 1"),
        (lambda c: c.transfer("12ab"), "not a transfer id"),
        (lambda c: c.accept_file("zz" * 16), "not a transfer id"),
    ],
)
async def test_the_sdk_refuses_bad_arguments_before_sending(
    sdk: tuple[Client, list[httpx.Request]], call: object, says: str
) -> None:
    client, sent = sdk
    with pytest.raises(HoplineError) as refused:
        await call(client)  # type: ignore[operator]
    assert refused.value.code == "bad-input" and says in str(refused.value)
    assert sent == []


async def test_the_sdk_sends_absolute_paths_and_quotes_peers(
    sdk: tuple[Client, list[httpx.Request]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, sent = sdk
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("notes")
    with pytest.raises(HoplineError) as refused:
        await client.send_file("bob", "notes.txt")
    assert refused.value.code == "not-logged-in"  # the daemon found the file, then refused
    with pytest.raises(HoplineError) as refused:
        await client.accept_file(TID, "inbox")
    assert refused.value.code == "not-logged-in"
    with pytest.raises(HoplineError) as refused:
        await client.send_message("bo b", "hi")
    assert refused.value.code == "not-logged-in"
    offer, accept, message = sent
    assert offer.url.path == "/v1/files" and b'"path":"' + str(tmp_path).encode() in offer.content
    assert b'"to_dir":"' + str(tmp_path / "inbox").encode() in accept.content
    assert message.url.raw_path == b"/v1/chats/bo%20b/messages"

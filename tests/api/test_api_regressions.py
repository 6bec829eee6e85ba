"""Regression tests for the API bugs the schema-generated tests found.

Each test pins one bug that ``tests/api/test_api_schema.py`` (schemathesis
over the OpenAPI document) turned up, against the app over a real, logged-out
:class:`ClientDaemon` (httpx's ASGI transport, no network). The one that
needs a logged-in daemon on a real network (calling a user who is not
online) is in ``test_api_schema.py`` with the other real-network tests.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from hopline.api import models as m
from hopline.api.openapi import openapi_document

CALL_ID = "0123456789abcdef0123456789abcdef"


def schema_of(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi_document()["components"]["schemas"][name]
    return schema


def string_schema(field: dict[str, Any]) -> dict[str, Any]:
    """The string branch of a field that may also be null."""
    branches: list[dict[str, Any]] = field.get("anyOf", [field])
    for branch in branches:
        if branch.get("type") == "string":
            return branch
    raise AssertionError(f"no string in {field}")


# ------------------------------------------------ 405: every method, as an ApiErrorDoc


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/calls", "GET, POST"),
        ("OPTIONS", "/v1/profile", "GET, PATCH"),
        ("PUT", "/v1/contacts", "GET, POST"),
        ("DELETE", "/v1/chats/bob/messages", "GET, POST"),
        ("PUT", "/v1/files", "GET, POST"),
        ("GET", "/v1/calls/answer", "POST"),  # not GET /v1/calls/{call_id} with id "answer"
        ("GET", "/v1/calls/hangup", "POST"),
    ],
)
async def test_a_wrong_method_is_405_listing_every_method_of_the_path(
    api: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await api.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == allowed
    assert response.json()["error"] == "method-not-allowed"


async def test_other_bad_call_ids_are_still_bad_input(api: httpx.AsyncClient) -> None:
    for path in ("/v1/calls/answerx", "/v1/calls/xyz", f"/v1/calls/{CALL_ID}0"):
        response = await api.get(path)
        assert response.status_code == 422, (path, response.text)
        assert "call_id" in response.json()["message"]
    assert (await api.get(f"/v1/calls/{CALL_ID}")).json()["error"] == "not-logged-in"


async def test_an_unknown_route_is_404_as_an_api_error(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {
        "error": "not-found",
        "message": "no such API route: /v1/no-such-thing",
    }


# ------------------------------------------------ bodies that are not UTF-8 JSON


async def test_a_body_that_is_not_utf8_is_422_not_400(api: httpx.AsyncClient) -> None:
    response = await api.put(
        "/v1/presence", content=b"\xff\xfe\x1a]", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "bad-input"


# ------------------------------------------------ file names the system refuses


async def test_offering_a_path_with_an_overlong_name_is_bad_input_not_500(
    api: httpx.AsyncClient,
) -> None:
    path = "/" + "0" * 300  # one name longer than NAME_MAX: stat() fails with ENAMETOOLONG
    response = await api.post("/v1/files", json={"peer": "bob", "path": path})
    assert response.status_code == 422, response.text
    assert response.json()["message"] == f"{path} is not a readable file"


# ------------------------------------------------ the document states the daemon's rules


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("bob", True),
        ("Alice.B-2_x", True),
        ("b" * 32, True),
        ("0", False),  # the daemon's rule: 3 to 32 characters
        ("b" * 33, False),
        ("bo b", False),
        ("bøb", False),
    ],
)
def test_the_username_pattern_is_the_daemons_rule(text: str, valid: bool) -> None:
    pattern = schema_of("ContactRequest")["properties"]["user"]["pattern"]
    assert pattern == m.USERNAME_PATTERN
    assert (re.search(pattern, text) is not None) is valid


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/users/0", None),
        ("POST", "/v1/contacts", {"user": "0"}),
        ("POST", "/v1/calls", {"user": "0"}),
        ("POST", "/v1/groups", {"name": "g", "members": ["0"]}),
        ("POST", "/v1/files", {"peer": "0", "path": "/etc/hostname"}),
    ],
)
async def test_a_name_that_cannot_be_a_username_is_refused_by_the_schema(
    api: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await api.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert "should match pattern" in response.json()["message"]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("CallRequest", "play"),
        ("CallRequest", "record"),
        ("FileOffer", "path"),
        ("FileAccept", "to_dir"),
    ],
)
def test_file_paths_are_documented_as_absolute(model: str, field: str) -> None:
    pattern = string_schema(schema_of(model)["properties"][field])["pattern"]
    assert re.search(pattern, "/tmp/a.wav") and not re.search(pattern, "a.wav")
    assert not re.search(pattern, "/tmp/a\x00b")


async def test_searching_a_handle_that_cannot_exist_is_not_refused_as_bad_input(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/v1/search", params={"q": "0", "by": "handle"})
    assert response.status_code == 409  # logged out: the same answer as for any handle
    assert response.json()["error"] == "not-logged-in"


@pytest.mark.parametrize("field", ["country", "language"])
@pytest.mark.parametrize(("value", "valid"), [("GB", True), ("en", True), ("00", False)])
async def test_country_and_language_are_two_letters_in_the_schema(
    api: httpx.AsyncClient, field: str, value: str, valid: bool
) -> None:
    pattern = string_schema(schema_of("RegisterRequest")["properties"][field])["pattern"]
    assert (re.search(pattern, value) is not None) is valid
    if valid:
        return
    body = {"username": "bob", "password": "secret", field: value}
    response = await api.post("/v1/register", json=body)  # refused before the network
    assert response.status_code == 422 and "should match pattern" in response.json()["message"]
    cleared = await api.patch("/v1/profile", json={field: value})
    assert cleared.status_code == 422 and "should match pattern" in cleared.json()["message"]


async def test_profile_fields_and_queries_have_the_directorys_limit(
    api: httpx.AsyncClient,
) -> None:
    too_long = "c" * (m.MAX_PROFILE_CHARS + 1)  # the supernodes refused these with a 502
    for field in ("full_name", "city"):
        response = await api.patch("/v1/profile", json={field: too_long})
        assert response.status_code == 422, response.text
        assert "at most 64 characters" in response.json()["message"]
    for params in ({"q": "q" * 65}, {"q": "ada", "cursor": "c" * 65}):
        response = await api.get("/v1/search", params=params)
        assert response.status_code == 422, response.text
    fits = await api.patch("/v1/profile", json={"city": "c" * m.MAX_PROFILE_CHARS})
    assert fits.status_code == 409  # valid, refused only because nobody is logged in

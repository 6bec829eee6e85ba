"""docs/protocol.md is the spec: its vectors and command table must match the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hopline.wire import WireError, decode, encode, message_from_json, message_to_json
from hopline.wire.tabledoc import command_table_markdown

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TEXT = SPEC.read_text(encoding="utf-8")
VALID = re.findall(
    r"#### vector (\S+)\n.*?```hex\n(.*?)\n```\n\n```json\n(.*?)\n```", TEXT, flags=re.S
)
INVALID = re.findall(r"^\| `([a-z0-9-]+)` \| `([0-9a-f ]+)` \| `([a-z-]+)` \|$", TEXT, flags=re.M)


def test_the_spec_has_vectors() -> None:
    assert len(VALID) >= 7
    assert len(INVALID) >= 10


@pytest.mark.parametrize(("name", "hex_text", "json_text"), VALID, ids=[v[0] for v in VALID])
def test_valid_vector(name: str, hex_text: str, json_text: str) -> None:
    data = bytes.fromhex(hex_text.replace(" ", ""))
    document = json.loads(json_text)
    assert message_to_json(decode(data)) == document
    assert encode(message_from_json(document)) == data


@pytest.mark.parametrize(("name", "hex_text", "reason"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_vector(name: str, hex_text: str, reason: str) -> None:
    with pytest.raises(WireError) as caught:
        decode(bytes.fromhex(hex_text.replace(" ", "")))
    assert caught.value.reason == reason


def test_command_table_in_the_spec_is_current() -> None:
    begin, end = "<!-- command-table:begin -->\n", "<!-- command-table:end -->"
    documented = TEXT.split(begin, 1)[1].split(end, 1)[0]
    assert documented == command_table_markdown(), "run: python -m hopline.wire.tabledoc"

"""Username rules."""

from __future__ import annotations

import pytest

from hopline.identity import InvalidUsername, canonical_username


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("Alice", "alice"), ("bob.smith", "bob.smith"), ("a_b-c", "a_b-c"), ("x" * 32, "x" * 32)],
)
def test_valid_names_are_lower_cased(text: str, canonical: str) -> None:
    assert canonical_username(text) == canonical


@pytest.mark.parametrize("text", ["ab", "x" * 33, "bob smith", "bøb", "bob@host", "", "a/b"])
def test_invalid_names_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidUsername, match="username"):
        canonical_username(text)

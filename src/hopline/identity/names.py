"""Username rules.

A username is 3 to 32 characters of ``a-z``, ``0-9``, ``.``, ``_`` and ``-``.
Names are case-insensitive: :func:`canonical_username` lower-cases them, and
the canonical form is what certificates, the directory and the account
database store, so ``Alice`` and ``alice`` are one account.
"""

from __future__ import annotations

import re

_PATTERN = re.compile(r"[a-z0-9._-]{3,32}")


class InvalidUsername(ValueError):
    """The text is not a valid username; the message says why."""


def canonical_username(text: str) -> str:
    """Return the canonical (lower-case) form of ``text`` or raise InvalidUsername."""
    if not isinstance(text, str):
        raise InvalidUsername("a username is text")
    name = text.strip().lower()
    if not 3 <= len(name) <= 32:
        raise InvalidUsername(f"a username has 3 to 32 characters, {text!r:.40} has {len(name)}")
    if not _PATTERN.fullmatch(name):
        raise InvalidUsername(
            f"a username may contain only a-z, 0-9, '.', '_' and '-': {text!r:.40}"
        )
    return name

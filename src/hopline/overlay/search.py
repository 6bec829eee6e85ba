"""The "white pages": search public profiles by name, city, country, language.

Terms, not users, are what the index partitions. A profile yields terms such
as ``name:ali`` (every prefix of 2 to 12 characters of every word of the full
name), ``city:new york``, ``country:se`` and ``language:sv``; each term's slot
is :func:`~hopline.overlay.slots.slot_of_key` of the term, so the index is
spread over the supernodes exactly as presence records are, and a query goes
to one owner of one slot (:func:`query_slot`), one overlay hop away.

A profile is published to the owners of every slot among its terms
(:func:`profile_slots`); each owner keeps a copy of the whole profile, so it
can answer with full rows and filter multi-word name queries itself: a query
``"ann lee"`` is routed by its first word (``name:ann``) and the owner keeps
only profiles where every query word prefixes some name word.

Text is normalized the same way on both sides: Unicode NFKD, accents
dropped, case folded, split on anything that is not a letter or digit.

Results are ordered by username; the cursor is the last username returned,
so pagination is stable while the index changes. A page holds at most 50
profiles and one query scans at most ``max_scan`` postings (a short page with
a cursor means "more may follow").

Refusals raise :class:`SearchError` with ``reason`` one of ``bad-record``,
``bad-query``, ``too-large``, ``full``, ``not-owner`` (counted in
:attr:`SearchIndex.refused`). Who may publish a profile (only its own user)
is checked by the handler that owns the secure session.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from hopline.identity.names import InvalidUsername, canonical_username
from hopline.overlay.slots import DEFAULT_SLOTS, slot_of_key
from hopline.wire.directory import PublicProfile, SearchField

MAX_LIMIT = 50
MIN_PREFIX = 2
MAX_PREFIX = 12
MAX_NAME_WORDS = 6
MAX_FIELD_LEN = 64
_WORD = re.compile(r"[^\W_]+")
_FIELD_KEYS = {
    SearchField.NAME: "name",
    SearchField.CITY: "city",
    SearchField.COUNTRY: "country",
    SearchField.LANGUAGE: "language",
}


class SearchError(Exception):
    """A profile or query was refused; ``reason`` is a short stable key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def words(text: str) -> list[str]:
    """Normalized words of ``text``: NFKD, no accents, case folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(plain.casefold())


def _name_terms(full_name: str) -> set[str]:
    terms = set()
    for word in words(full_name)[:MAX_NAME_WORDS]:
        for end in range(MIN_PREFIX, min(len(word), MAX_PREFIX) + 1):
            terms.add(f"name:{word[:end]}")
    return terms


def profile_terms(profile: PublicProfile) -> set[str]:
    """Every search term of ``profile``."""
    terms = _name_terms(profile.full_name or "")
    for key, value in (
        ("city", profile.city),
        ("country", profile.country),
        ("language", profile.language),
    ):
        joined = " ".join(words(value or ""))
        if joined:
            terms.add(f"{key}:{joined}")
    return terms


def profile_slots(profile: PublicProfile, slots: int = DEFAULT_SLOTS) -> set[int]:
    """The slots whose owners must index ``profile``."""
    return {slot_of_key(term, slots) for term in profile_terms(profile)}


def _parse_query(field: int, text: str) -> tuple[str, list[str]]:
    if field not in _FIELD_KEYS:
        raise SearchError("bad-query", f"unknown field {field}")
    if not isinstance(text, str) or len(text) > MAX_FIELD_LEN:
        raise SearchError("bad-query", "query text too long")
    found = words(text)
    if not found or (field == SearchField.NAME and len(found[0]) < MIN_PREFIX):
        raise SearchError("bad-query", f"a query needs a word of {MIN_PREFIX}+ characters")
    if field == SearchField.NAME:
        return f"name:{found[0][:MAX_PREFIX]}", found[:MAX_NAME_WORDS]
    return f"{_FIELD_KEYS[SearchField(field)]}:{' '.join(found)}", []


def query_slot(field: int, text: str, slots: int = DEFAULT_SLOTS) -> int:
    """The slot whose owners answer this query (raises SearchError if it is malformed)."""
    term, _ = _parse_query(field, text)
    return slot_of_key(term, slots)


def _name_matches(profile: PublicProfile, wanted: list[str]) -> bool:
    have = words(profile.full_name or "")
    return all(any(word.startswith(w) for word in have) for w in wanted)


class SearchIndex:
    """One supernode's share of the white pages (terms of the slots it owns).

    ``owned_slots`` None means "every slot". At most ``max_profiles``
    profiles are kept.
    """

    def __init__(
        self,
        *,
        slots: int = DEFAULT_SLOTS,
        owned_slots: Iterable[int] | None = None,
        max_profiles: int = 100_000,
        max_scan: int = 5000,
    ) -> None:
        self.slots = slots
        self.owned_slots = None if owned_slots is None else frozenset(owned_slots)
        self.max_profiles = max_profiles
        self.max_scan = max_scan
        self._profiles: dict[str, tuple[PublicProfile, frozenset[str]]] = {}
        self._postings: dict[str, list[str]] = {}
        self.refused: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._profiles)

    def _owns(self, term: str) -> bool:
        return self.owned_slots is None or slot_of_key(term, self.slots) in self.owned_slots

    def index(self, profile: PublicProfile) -> int:
        """Index (or re-index) ``profile``; return how many terms this node holds for it."""
        try:
            return self._index(profile)
        except SearchError as exc:
            self.refused[exc.reason] += 1
            raise

    def _index(self, profile: PublicProfile) -> int:
        user = _check_profile(profile)
        if user not in self._profiles and len(self._profiles) >= self.max_profiles:
            raise SearchError("full", f"{len(self._profiles)} profiles")
        terms = frozenset(term for term in profile_terms(profile) if self._owns(term))
        self.remove(user)
        if not terms:
            return 0
        if profile.username != user:
            profile = PublicProfile(
                username=user,
                full_name=profile.full_name,
                city=profile.city,
                country=profile.country,
                language=profile.language,
            )
        self._profiles[user] = (profile, terms)
        for term in terms:
            bisect.insort(self._postings.setdefault(term, []), user)
        return len(terms)

    def remove(self, username: str) -> bool:
        """Forget ``username``'s profile; return whether it was indexed."""
        try:
            user = canonical_username(username)
        except InvalidUsername:
            return False
        held = self._profiles.pop(user, None)
        if held is None:
            return False
        for term in held[1]:
            postings = self._postings[term]
            del postings[bisect.bisect_left(postings, user)]
            if not postings:
                del self._postings[term]
        return True

    def query(
        self, field: int, text: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[PublicProfile], str | None]:
        """One page of matches ordered by username, and the cursor of the next page."""
        try:
            return self._query(field, text, limit, cursor)
        except SearchError as exc:
            self.refused[exc.reason] += 1
            raise

    def _query(
        self, field: int, text: str, limit: int, cursor: str | None
    ) -> tuple[list[PublicProfile], str | None]:
        term, wanted = _parse_query(field, text)
        if not self._owns(term):
            raise SearchError("not-owner", f"slot {slot_of_key(term, self.slots)}")
        if cursor is not None and len(cursor) > MAX_FIELD_LEN:
            raise SearchError("bad-query", "cursor too long")
        limit = max(1, min(limit, MAX_LIMIT))
        postings = self._postings.get(term, [])
        start = 0 if cursor is None else bisect.bisect_right(postings, cursor)
        stop = min(len(postings), start + self.max_scan)
        results: list[PublicProfile] = []
        for position in range(start, stop):
            profile = self._profiles[postings[position]][0]
            if wanted and not _name_matches(profile, wanted):
                continue
            results.append(profile)
            if len(results) == limit:
                stop = position + 1
                break
        more = stop < len(postings)
        return results, (postings[stop - 1] if more and stop > start else None)


def _check_profile(profile: PublicProfile) -> str:
    try:
        user = canonical_username(profile.username)
    except InvalidUsername as exc:
        raise SearchError("bad-record", str(exc)) from None
    for value in (profile.full_name, profile.city, profile.country, profile.language):
        if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD_LEN):
            raise SearchError(
                "too-large", f"a profile field has at most {MAX_FIELD_LEN} characters"
            )
    return user


__all__ = [
    "MAX_LIMIT",
    "PublicProfile",
    "SearchError",
    "SearchField",
    "SearchIndex",
    "profile_slots",
    "profile_terms",
    "query_slot",
    "words",
]

"""Normalisation of person names and dates for identity comparison and matching.

Two names are the same person's name when they agree after normalisation: case,
trailing component separators (``^``) and spaces, accents, and the character set they
were encoded in (names are compared decoded) do not matter. A missing value never
disagrees with a present one (PS3.5 6.2 PN; ADR 0002).
"""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a text."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold().upper()


def normalize_person_name(name: str) -> str:
    """The comparable form of a PN value: alphabetic group, folded, padding removed.

    ``"Doe^John^^"``, ``"DOE^JOHN"`` and ``"Doé^John "`` all give ``"DOE^JOHN"``.
    """
    alphabetic = name.split("=", 1)[0]
    components = [c.strip() for c in alphabetic.split("^")]
    while components and not components[-1]:
        components.pop()
    return fold("^".join(components))


def names_disagree(a: str, b: str) -> bool:
    """Whether two person names denote different names (missing values never disagree)."""
    na, nb = normalize_person_name(a), normalize_person_name(b)
    return bool(na and nb and na != nb)


def dates_disagree(a: str, b: str) -> bool:
    """Whether two DA values differ (missing values never disagree)."""
    da, db = a.strip(), b.strip()
    return bool(da and db and da != db)


def matching_name(name: str) -> str:
    """The form of a person name kept in the index for case-insensitive matching."""
    alphabetic = name.split("=", 1)[0]
    return fold(alphabetic.rstrip("^ "))

"""Attribute matching for queries (PS3.4 C.2.2.2), shared by C-FIND and, later, QIDO-RS.

A query identifier becomes a :class:`Query`: its level, its information model, the
conditions of every key that is not universal, and the keys to return. The same
conditions are turned into SQL by the index adapter (for indexed attributes) and
evaluated here on DICOM JSON (for every other attribute), so both agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydicom.datadict import keyword_for_tag

from openpacs.domain import dicom_json
from openpacs.domain.errors import InvalidQuery
from openpacs.domain.names import fold
from openpacs.domain.tags import (
    COMPUTED_TAGS,
    UNIQUE_KEYWORD,
    Level,
    json_key,
    level_of_tag,
    levels_down_to,
    tag_of,
)


class MatchType(StrEnum):
    """The kinds of matching of PS3.4 C.2.2.2."""

    SINGLE = "single"  # C.2.2.2.1 single value (several values: any of them)
    UID_LIST = "uid-list"  # C.2.2.2.2 list of UIDs
    WILDCARD = "wildcard"  # C.2.2.2.4 wild card
    RANGE = "range"  # C.2.2.2.5 range
    SEQUENCE = "sequence"  # C.2.2.2.6 sequence


class Model(StrEnum):
    """Query/Retrieve information models (PS3.4 C.6)."""

    PATIENT_ROOT = "patient-root"
    STUDY_ROOT = "study-root"


@dataclass(frozen=True)
class Condition:
    """One matching key that restricts the answers."""

    key: str
    vr: str
    kind: MatchType
    values: tuple[str, ...] = ()
    low: str = ""
    high: str = ""
    items: tuple[Condition, ...] = ()

    @property
    def tag(self) -> int:
        """The attribute's tag."""
        return int(self.key, 16)


@dataclass(frozen=True)
class Query:
    """A parsed query identifier."""

    level: Level
    model: Model
    conditions: tuple[Condition, ...]
    return_keys: tuple[str, ...]
    identifier: dict[str, Any] = field(default_factory=dict)

    def condition(self, keyword: str) -> Condition | None:
        """The condition on an attribute, if any."""
        key = json_key(tag_of(keyword))
        for cond in self.conditions:
            if cond.key == key:
                return cond
        return None


_DATE_VRS = frozenset({"DA", "TM", "DT"})
_MATCHABLE_COMPUTED = frozenset({json_key(tag_of("ModalitiesInStudy")), json_key(tag_of("SOPClassesInStudy"))})
_NO_WILDCARD_VRS = frozenset({"DA", "TM", "DT", "UI", "SQ", "US", "SS", "UL", "SL", "FL", "FD", "AT"})
#: Keys of the identifier that are not attributes of the stored objects
_CONTROL_KEYS = frozenset({json_key(tag_of("QueryRetrieveLevel")), json_key(tag_of("SpecificCharacterSet"))})
#: Keys returned but never matched (the archive fills them in: PS3.4 C.4.1.1.3.2)
_UNMATCHED_KEYS = frozenset(
    {
        json_key(tag_of("TimezoneOffsetFromUTC")),
        json_key(tag_of("RetrieveAETitle")),
        json_key(tag_of("InstanceAvailability")),
        json_key(tag_of("QueryRetrieveView")),
    }
)


def parse_query(identifier: dict[str, Any], model: Model) -> Query:
    """Build a Query from a C-FIND identifier in DICOM JSON form.

    Raises :class:`InvalidQuery` (A900) for a missing or wrong Query/Retrieve Level.
    """
    level_text = dicom_json.text(identifier, json_key(tag_of("QueryRetrieveLevel"))).strip().upper()
    if not level_text:
        raise InvalidQuery("the identifier has no Query/Retrieve Level (0008,0052)")
    try:
        level = Level(level_text)
    except ValueError as exc:
        raise InvalidQuery(f"unknown Query/Retrieve Level {level_text!r}") from exc
    if model is Model.STUDY_ROOT and level is Level.PATIENT:
        raise InvalidQuery("the Study Root information model has no PATIENT level")
    allowed = set(levels_down_to(level))
    conditions: list[Condition] = []
    return_keys: list[str] = []
    for key, element in identifier.items():
        if key in _CONTROL_KEYS or key.endswith("0000"):
            continue
        tag = int(key, 16)
        return_keys.append(key)
        if key in _UNMATCHED_KEYS:
            continue
        if level_of_tag(tag) not in allowed and tag not in COMPUTED_TAGS:
            continue  # keys of lower levels are returned empty and do not restrict
        cond = condition_from_json(key, element)
        if cond is None or (tag in COMPUTED_TAGS and key not in _MATCHABLE_COMPUTED):
            continue
        conditions.append(cond)
    _check_unique_keys(level, conditions)
    return Query(
        level=level,
        model=model,
        conditions=tuple(conditions),
        return_keys=tuple(return_keys),
        identifier=identifier,
    )


def _check_unique_keys(level: Level, conditions: list[Condition]) -> None:
    """PS3.4 C.4.1.2.1: above the query level, unique keys may only be single values or UID lists."""
    by_key = {c.key: c for c in conditions}
    for upper in levels_down_to(level)[:-1]:
        key = json_key(tag_of(UNIQUE_KEYWORD[upper]))
        cond = by_key.get(key)
        if cond is not None and cond.kind not in (MatchType.SINGLE, MatchType.UID_LIST):
            raise InvalidQuery(
                f"{UNIQUE_KEYWORD[upper]} above the query level must be a single value or a list of UIDs"
            )


def condition_from_json(key: str, element: dict[str, Any] | None) -> Condition | None:
    """The condition of one identifier element, or None for universal matching."""
    element = element or {}
    vr = str(element.get("vr", "UN"))
    raw_values = element.get("Value") or []
    if vr == "SQ":
        if not raw_values or not isinstance(raw_values[0], dict) or not raw_values[0]:
            return None
        subs = []
        for sub_key, sub_element in raw_values[0].items():
            sub = condition_from_json(sub_key, sub_element)
            if sub is not None:
                subs.append(sub)
        if not subs:
            return None
        return Condition(key=key, vr=vr, kind=MatchType.SEQUENCE, items=tuple(subs))
    texts = [_as_text(v) for v in raw_values if v is not None]
    texts = [t for t in texts if t != ""]
    if not texts:
        return None
    if vr == "UI":
        return Condition(
            key=key,
            vr=vr,
            kind=MatchType.UID_LIST if len(texts) > 1 else MatchType.SINGLE,
            values=tuple(texts),
        )
    if vr in _DATE_VRS:
        try:
            return _temporal_condition(key, vr, texts[0])
        except InvalidQuery as exc:
            name = keyword_for_tag(int(key, 16)) if len(key) == 8 else ""
            raise InvalidQuery(f"{name or key}: {exc.reason}") from exc
    if vr not in _NO_WILDCARD_VRS and any("*" in t or "?" in t for t in texts):
        if all(set(t) == {"*"} for t in texts):
            return None  # '*' alone is universal matching (C.2.2.2.4)
        return Condition(key=key, vr=vr, kind=MatchType.WILDCARD, values=tuple(texts))
    return Condition(key=key, vr=vr, kind=MatchType.SINGLE, values=tuple(texts))


def _temporal_condition(key: str, vr: str, value: str) -> Condition:
    """Single value or range matching of a DA, TM or DT value (PS3.4 C.2.2.2.5)."""
    if _is_range(vr, value):
        low, _, high = (part.strip() for part in value.partition("-"))
        if not low and not high:
            raise InvalidQuery("'-' alone is not a range")
        return Condition(
            key=key,
            vr=vr,
            kind=MatchType.RANGE,
            low=_bound(vr, low, upper=False) if low else "",
            high=_bound(vr, high, upper=True) if high else "",
        )
    return Condition(
        key=key,
        vr=vr,
        kind=MatchType.RANGE,
        low=_bound(vr, value, upper=False),
        high=_bound(vr, value, upper=True),
    )


def _is_range(vr: str, value: str) -> bool:
    """Whether a DA/TM/DT matching value is a range (a DT's '-' may be its UTC offset)."""
    if "-" not in value:
        return False
    if vr != "DT":
        return True
    head, _, tail = value.rpartition("-")
    is_offset = value.count("-") == 1 and len(tail) == 4 and tail.isdigit() and len(head.split(".")[0]) >= 10
    return not is_offset


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        return dicom_json.person_name_text(value)
    return str(value).strip()


_TEMPORAL_CHARS = {"DA": frozenset("0123456789"), "TM": frozenset("0123456789.:"), "DT": frozenset("0123456789.+-")}
_TEMPORAL_FORM = {"DA": "YYYYMMDD", "TM": "HHMMSS.FFFFFF", "DT": "YYYYMMDDHHMMSS.FFFFFF&ZZXX"}


def _bound(vr: str, value: str, *, upper: bool) -> str:
    """A comparable form of a date, time or datetime bound (PS3.4 C.2.2.2.5); raises
    InvalidQuery for a value that is not one (PS3.5 6.2 gives the forms)."""
    value = value.replace(".", "") if vr == "DA" else value
    if not value or not set(value) <= _TEMPORAL_CHARS[vr] or not value[0].isdigit():
        raise InvalidQuery(f"{value!r} is not a {vr} matching value ({_TEMPORAL_FORM[vr]}, or a range of them)")
    if vr == "DA":
        digits = value[:8]
        if len(digits) < 8:
            digits = digits.ljust(8, "9" if upper else "0")
        return digits
    if vr == "TM":
        return tm_key(value, upper=upper)
    return dt_key(value, upper=upper)


def tm_key(value: str, *, upper: bool = False) -> str:
    """A TM value as 'HHMMSS.ffffff'; missing precision is filled low or high."""
    value = value.strip().replace(":", "")
    whole, _, fraction = value.partition(".")
    pattern_high = "235959"
    if upper:
        whole = whole + pattern_high[len(whole) :] if len(whole) < 6 else whole[:6]
        fraction = (fraction + "999999")[:6] if fraction or len(value.partition(".")[0]) < 6 else "999999"
    else:
        whole = whole.ljust(6, "0")[:6]
        fraction = (fraction + "000000")[:6]
    return f"{whole}.{fraction}"


def dt_key(value: str, *, upper: bool = False) -> str:
    """A DT value as 'YYYYMMDDHHMMSS.ffffff' (the UTC offset is ignored)."""
    value = value.strip()
    for sign in ("+", "-"):
        idx = value.find(sign, 4)
        if idx != -1:
            value = value[:idx]
    whole, _, fraction = value.partition(".")
    template_high = "99991231235959"
    if upper:
        whole = whole + template_high[len(whole) :]
        fraction = (fraction + "999999")[:6]
    else:
        whole = whole.ljust(14, "0")
        fraction = (fraction + "000000")[:6]
    if not upper and len(whole) >= 8 and whole[4:8] == "0000":
        whole = whole[:4] + "0101" + whole[8:]
    return f"{whole[:14]}.{fraction}"


def comparable(vr: str, value: str) -> str:
    """The stored-value side of a range comparison."""
    if vr == "DA":
        return value.replace(".", "")[:8]
    if vr == "TM":
        return tm_key(value)
    if vr == "DT":
        return dt_key(value)
    return value


@lru_cache(maxsize=1024)
def wildcard_regex(pattern: str, fold_case: bool) -> re.Pattern[str]:
    """The regular expression of a DICOM wildcard pattern ('*' any run, '?' one character)."""
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts) + r"\Z", re.DOTALL | (re.IGNORECASE if fold_case else 0))


def _normalize_pn(value: str, fold_case: bool) -> str:
    alphabetic = value.split("=", 1)[0] if "=" in value else value
    alphabetic = alphabetic.rstrip("^ ")
    return fold(alphabetic) if fold_case else alphabetic


def matches(cond: Condition, element: dict[str, Any] | None, *, fold_names: bool = True) -> bool:
    """Whether a stored element (DICOM JSON) satisfies a condition."""
    stored = (element or {}).get("Value") or []
    if cond.kind is MatchType.SEQUENCE:
        return any(
            isinstance(item, dict) and all(matches(sub, item.get(sub.key), fold_names=fold_names) for sub in cond.items)
            for item in stored
        )
    texts = [_as_text(v) for v in stored if v is not None]
    if not texts:
        return False  # only universal matching matches an empty value
    return any(match_text(cond, t, fold_names=fold_names) for t in texts)


def match_text(cond: Condition, value: str, *, fold_names: bool = True) -> bool:
    """Whether one stored value (as text) satisfies a condition."""
    if cond.kind is MatchType.RANGE:
        stored = comparable(cond.vr, value)
        if cond.low and stored < cond.low:
            return False
        return not (cond.high and stored > cond.high)
    is_pn = cond.vr == "PN"
    fold_case = is_pn and fold_names
    candidate = _normalize_pn(value, fold_case) if is_pn else value
    if cond.kind is MatchType.WILDCARD:
        for pattern in cond.values:
            pat = _normalize_pn(pattern, fold_case) if is_pn else pattern
            if wildcard_regex(pat, False).match(candidate):
                return True
        return False
    for wanted in cond.values:
        target = _normalize_pn(wanted, fold_case) if is_pn else wanted
        if _equal(cond.vr, candidate, target):
            return True
    return False


def _equal(vr: str, stored: str, wanted: str) -> bool:
    if vr in ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD"):
        try:
            return float(stored) == float(wanted)
        except ValueError:
            return stored == wanted
    return stored == wanted

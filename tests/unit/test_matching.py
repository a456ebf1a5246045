"""Matching rules of PS3.4 C.2.2.2 on values, and name normalisation (pure domain)."""

from __future__ import annotations

import pytest

from openpacs.domain.matching import MatchType, condition_from_json, dt_key, match_text, matches, tm_key
from openpacs.domain.names import dates_disagree, names_disagree, normalize_person_name


def _cond(vr: str, value: str, key: str = "00100010") -> object:
    element = {"vr": vr, "Value": [{"Alphabetic": value}] if vr == "PN" else [value]}
    return condition_from_json(key, element)


@pytest.mark.parametrize(
    ("vr", "query", "stored", "expected"),
    [
        ("PN", "Doe^John", "DOE^JOHN", True),
        ("PN", "Doe^John", "Doe^John^^", True),
        ("PN", "Doe*", "Doe^Jane", True),
        ("PN", "D?e^J*", "Dae^Jim", True),
        ("PN", "Muller", "Müller", True),  # accents do not count (by default)
        ("PN", "Doe^John", "Roe^John", False),
        ("LO", "ABC", "abc", False),  # only names are case-insensitive
        ("LO", "A*C", "ABBBC", True),
        ("LO", "A?C", "ABBC", False),
        ("CS", "CT", "CT", True),
        ("IS", "7", "007", True),
        ("DA", "20240110", "20240110", True),
        ("DA", "20240101-20240131", "20240110", True),
        ("DA", "20240101-20240131", "20240201", False),
        ("DA", "-20231231", "20231231", True),
        ("DA", "20240301-", "20240229", False),
        ("TM", "1010", "101059.5", True),
        ("TM", "1010", "101100", False),
        ("TM", "0800-0900", "090000", True),
        ("TM", "0800-0900", "090100", False),
        ("DT", "20240110120000-20240110130000", "20240110123000", True),
        ("DT", "20240110", "20240110235959", True),
        ("UI", "1.2.3\\1.2.4", "1.2.4", True),
        ("UI", "1.2.*", "1.2.3", False),  # no wild cards in UIDs: literal
    ],
)
def test_match_text(vr: str, query: str, stored: str, expected: bool) -> None:
    element = {
        "vr": vr,
        "Value": [{"Alphabetic": query}] if vr == "PN" else query.split("\\") if vr == "UI" else [query],
    }
    cond = condition_from_json("00100010", element)
    assert cond is not None
    assert match_text(cond, stored) is expected


def test_universal_matching_has_no_condition() -> None:
    assert condition_from_json("00100010", {"vr": "PN"}) is None
    assert condition_from_json("00100010", {"vr": "PN", "Value": [{"Alphabetic": "*"}]}) is None
    assert condition_from_json("00080020", {"vr": "DA", "Value": [""]}) is None


def test_empty_values_match_only_universal_matching() -> None:
    cond = condition_from_json("00081030", {"vr": "LO", "Value": ["*KNEE*"]})
    assert cond is not None and cond.kind is MatchType.WILDCARD
    assert not matches(cond, {"vr": "LO"})
    assert matches(cond, {"vr": "LO", "Value": ["MR KNEE"]})


def test_sequence_matching_needs_one_item_matching_every_key() -> None:
    cond = condition_from_json(
        "00400100",
        {
            "vr": "SQ",
            "Value": [{"00080060": {"vr": "CS", "Value": ["MR"]}, "00400001": {"vr": "AE", "Value": ["MR1"]}}],
        },
    )
    assert cond is not None and cond.kind is MatchType.SEQUENCE
    one = {"00080060": {"vr": "CS", "Value": ["MR"]}, "00400001": {"vr": "AE", "Value": ["MR1"]}}
    other = {"00080060": {"vr": "CS", "Value": ["CT"]}, "00400001": {"vr": "AE", "Value": ["MR1"]}}
    assert matches(cond, {"vr": "SQ", "Value": [other, one]})
    assert not matches(cond, {"vr": "SQ", "Value": [other]})


def test_time_and_datetime_keys_are_comparable() -> None:
    assert tm_key("1010") == "101000.000000"
    assert tm_key("1010", upper=True) == "101059.999999"
    assert tm_key("10:10:05.5") == "101005.500000"
    assert dt_key("20240110") == "20240110000000.000000"
    assert dt_key("2024", upper=True) == "20241231235959.999999"
    assert dt_key("20240110120000+0100") == "20240110120000.000000"


@pytest.mark.parametrize(
    ("a", "b", "disagree"),
    [
        ("Doe^John", "DOE^JOHN^^", False),
        ("Doé^John", "Doe^John", False),
        ("Doe^John", "", False),  # a missing value never disagrees
        ("Doe^John=ドウ^ジョン", "Doe^John", False),  # the alphabetic group is compared
        ("Doe^John", "Doe^Jane", True),
    ],
)
def test_names_disagree(a: str, b: str, disagree: bool) -> None:
    assert names_disagree(a, b) is disagree


def test_dates_disagree_and_normalized_names() -> None:
    assert not dates_disagree("19700101", "")
    assert dates_disagree("19700101", "19700102")
    assert normalize_person_name("  doe ^ john ^^ ") == "DOE^JOHN"

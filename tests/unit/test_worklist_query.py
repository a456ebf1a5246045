"""Modality Worklist matching (PS3.4 K.6.1, C.2.2.2): sequence matching in the Scheduled
Procedure Step Sequence, combined date-time ranges, the keys an answer carries, and what the
index is asked to select first."""

from __future__ import annotations

from typing import Any

import pytest

from openpacs.domain.errors import InvalidInstance, InvalidQuery
from openpacs.domain.worklist import entry_from_item, stored_item
from openpacs.domain.worklist_query import parse_worklist_query


def _item(station: str | list[str] = "CT1", day: str = "20261128", time: str = "101500", modality: str = "CT",
          name: str = "Doe^Jane") -> dict[str, Any]:  # fmt: skip
    stations = station if isinstance(station, list) else [station]
    return {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00100020": {"vr": "LO", "Value": ["P1"]},
        "00080050": {"vr": "SH", "Value": ["A1"]},
        "00400100": {
            "vr": "SQ",
            "Value": [
                {
                    "00400001": {"vr": "AE", "Value": stations},
                    "00400002": {"vr": "DA", "Value": [day]},
                    "00400003": {"vr": "TM", "Value": [time]},
                    "00080060": {"vr": "CS", "Value": [modality]},
                    "00400009": {"vr": "SH", "Value": ["S1"]},
                }
            ],
        },
    }


def _query(top: dict[str, Any] | None = None, **step: tuple[str, str]) -> dict[str, Any]:
    keys = {"station": "00400001", "date": "00400002", "time": "00400003", "modality": "00080060"}
    item = {keys[k]: {"vr": vr, "Value": [v]} if v else {"vr": vr} for k, (vr, v) in step.items()}
    return {**(top or {}), "00400100": {"vr": "SQ", "Value": [item]}}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (_query(station=("AE", "CT1")), True),
        (_query(station=("AE", "CT2")), False),
        (_query(station=("AE", "CT*")), True),
        (_query(date=("DA", "20261128")), True),
        (_query(date=("DA", "20261127-")), True),
        (_query(date=("DA", "-20261127")), False),
        (_query(time=("TM", "1000-1100")), True),
        (_query(time=("TM", "120000-")), False),
        (_query(modality=("CS", "MR")), False),
        (_query({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE*"}]}}), True),
        (_query({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "SMITH*"}]}}), False),
        (_query(), True),
    ],
)
def test_matching(query: dict[str, Any], expected: bool) -> None:
    assert parse_worklist_query(query).matches(_item()) is expected


def test_a_station_of_several_matches() -> None:
    assert parse_worklist_query(_query(station=("AE", "CT2"))).matches(_item(["CT1", "CT2"]))


def test_date_and_time_ranges_combine_into_one_range() -> None:
    """28th 08:00 to 29th 10:00: the 28th at 15:00 is in (it would fail the time range alone)."""
    query = parse_worklist_query(_query(date=("DA", "20261128-20261129"), time=("TM", "0800-1000")))
    assert query.matches(_item(day="20261128", time="150000"))
    assert not query.matches(_item(day="20261128", time="070000"))
    assert not query.matches(_item(day="20261129", time="110000"))


def test_an_empty_value_matches_only_universal_matching() -> None:
    item = _item()
    del item["00400100"]["Value"][0]["00400003"]
    assert not parse_worklist_query(_query(time=("TM", "0800-1000"))).matches(item)
    assert parse_worklist_query(_query(time=("TM", ""))).matches(item)


def test_the_answer_carries_exactly_the_keys_asked() -> None:
    query = parse_worklist_query(
        {
            "00100020": {"vr": "LO"},
            "00081030": {"vr": "LO"},
            "00400100": {"vr": "SQ", "Value": [{"00400009": {"vr": "SH"}}]},
        }
    )
    answer = query.answer(_item())
    assert answer["00100020"] == {"vr": "LO", "Value": ["P1"]}
    assert answer["00081030"] == {"vr": "LO"}
    assert answer["00400100"]["Value"] == [{"00400009": {"vr": "SH", "Value": ["S1"]}}]
    assert "00100010" not in answer


def test_an_empty_sequence_key_returns_the_whole_sequence() -> None:
    answer = parse_worklist_query({"00400100": {"vr": "SQ", "Value": []}}).answer(_item())
    assert answer["00400100"]["Value"][0]["00080060"]["Value"] == ["CT"]


def test_the_index_preselects_by_the_single_values() -> None:
    prefilter = parse_worklist_query(
        _query(
            {"00100020": {"vr": "LO", "Value": ["P1"]}},
            station=("AE", "CT1"),
            date=("DA", "20261128-"),
            modality=("CS", "ct"),
        )
    ).prefilter
    assert prefilter.patient_ids == ("P1",)
    assert prefilter.station_ae_titles == ("CT1",)
    assert prefilter.modalities == ("CT",)
    assert (prefilter.date_low, prefilter.date_high) == ("20261128", "")
    wildcard = parse_worklist_query(_query(station=("AE", "CT*"))).prefilter
    assert wildcard.station_ae_titles == ()


def test_a_malformed_date_is_an_invalid_query() -> None:
    with pytest.raises(InvalidQuery):
        parse_worklist_query(_query(date=("DA", "2026XX01")))


def test_an_item_becomes_an_order_and_is_kept_as_given() -> None:
    item = _item()
    item["00101030"] = {"vr": "DS", "Value": [70]}  # Patient's Weight: not in our generated item
    entry = entry_from_item(item, default_step_id="X", default_procedure_id="Y")
    (procedure,) = entry.procedures
    (step,) = procedure.steps
    assert (step.scheduled_step_id, step.modality, step.station_ae_titles) == ("S1", "CT", ("CT1",))
    assert procedure.requested_procedure_id == "Y" and procedure.accession_number == "A1"
    kept = stored_item({"00100020": {"vr": "LO", "Value": ["P1"]}}, item, "SCHEDULED")
    assert kept["00101030"]["Value"] == [70]
    assert kept["00400100"]["Value"][0]["00400020"]["Value"] == ["SCHEDULED"]


@pytest.mark.parametrize(
    "broken",
    [
        {"00100020": {"vr": "LO", "Value": ["P1"]}},
        {"00400100": {"vr": "SQ", "Value": [{}]}},
    ],
)
def test_an_item_without_step_or_patient_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(InvalidInstance):
        entry_from_item(broken, default_step_id="X", default_procedure_id="Y")

"""Routing rules and job backoff (domain/rules.py, domain/jobs.py): pure, no I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from openpacs.domain.errors import InvalidQuery
from openpacs.domain.jobs import backoff
from openpacs.domain.rules import Action, ActionKind, Condition, MatchKind, Rule, RuleEvent


@pytest.mark.parametrize(
    ("text", "values", "holds"),
    [
        ("Modality=CT", ["CT"], True),
        ("Modality=C?", ["CT"], True),
        ("Modality=CT", ["MR"], False),
        ("ModalitiesInStudy=MR", ["CT", "MR"], True),  # any value of a multi-valued attribute
        ("StationName=ER-*", ["ER-1"], True),
        ("StationName==ER-*", ["ER-1"], False),  # exact: the star is a star
        ("StationName==ER-*", ["ER-*"], True),
        ("StationName~=ER-[0-9]+", ["ER-12"], True),
        ("StationName~=ER-[0-9]+", ["ER-12x"], False),  # a regular expression matches whole values
        ("StudyDescription=*", [], True),  # absent: only * (or an empty exact value) matches
        ("StudyDescription=CT*", [], False),
        ("CallingAETitle=CT*", ["CT1"], True),
    ],
)
def test_conditions(text: str, values: list[str], holds: bool) -> None:
    assert Condition.parse(text).holds(values) is holds


@pytest.mark.parametrize("text", ["Modality", "NoSuchKeyword=1", "StationName~=ER-[", "=CT"])
def test_bad_conditions_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidQuery):
        Condition.parse(text)


def test_a_rule_needs_every_condition_and_round_trips_through_json() -> None:
    rule = Rule(
        "ct-er",
        RuleEvent.STABLE,
        [Condition.parse("Modality=CT"), Condition.parse("StationName~=ER.*")],
        [Action(ActionKind.FORWARD, node="archive2", transfer_syntax="1.2.840.10008.1.2.4.80")],
    )
    assert rule.matches({"Modality": ["CT"], "StationName": ["ER2"]})
    assert not rule.matches({"Modality": ["CT"], "StationName": ["WARD"]})
    data = rule.to_json()
    assert data["conditions"][1] == {"keyword": "StationName", "pattern": "ER.*", "kind": "regex"}
    assert Action.from_json(data["actions"][0]) == rule.actions[0]
    assert Condition.of("Modality", "CT", "exact").kind is MatchKind.EXACT


def test_each_action_has_its_queue() -> None:
    assert Action(ActionKind.FORWARD, node="a").destination == "node:a"
    assert Action(ActionKind.STOW, url="https://x/dicom-web").destination == "stow:https://x/dicom-web"
    prefetch = Action(ActionKind.PREFETCH, node="old", priors=2, modalities="CT,MR", max_age_days=365)
    assert prefetch.destination == "retrieve:old"
    assert Action.from_json(prefetch.to_json()) == prefetch


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 6)] == [timedelta(seconds=s) for s in (2, 4, 8, 16, 30, 30)]
    assert backoff(0, 2.0, 30.0) == timedelta(seconds=2)


def test_commitment_and_lossy_options_round_trip_and_stay_out_of_plain_actions() -> None:
    action = Action(
        ActionKind.FORWARD, node="longterm", commit=True, delete_after=True, lossy="1.2.840.10008.1.2.4.91", quality=10
    )
    as_json = action.to_json()
    assert as_json == {
        "kind": "forward",
        "node": "longterm",
        "commit": True,
        "delete_after": True,
        "lossy": "1.2.840.10008.1.2.4.91",
        "quality": 10,
    }
    assert Action.from_json(as_json) == action
    assert Action.from_json({"kind": "forward", "node": "a"}) == Action(ActionKind.FORWARD, node="a")
    assert Action(ActionKind.FORWARD, node="a").to_json() == {"kind": "forward", "node": "a"}

"""The procedure status model (forward only), the storage commitment decision from index facts
(PS3.3 C.14.1.1 Failure Reasons), and the workflow events of status transitions."""

from __future__ import annotations

import pytest

from openpacs.domain.errors import InvalidQuery
from openpacs.domain.rules import Action, ActionKind, Rule, RuleEvent, check_workflow_action, events_of_transition
from openpacs.domain.workflow import CommitmentFact, commitment_failures, may_advance

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.mark.parametrize(
    ("current", "proposed", "expected"),
    [
        ("scheduled", "arrived", True),
        ("scheduled", "in-progress", True),
        ("in-progress", "completed", True),
        ("completed", "in-progress", False),  # a late first image does not go back
        ("final", "completed", False),
        ("final", "amended", True),
        ("amended", "amended", True),
        ("completed", "amended", False),
        ("preliminary", "final", True),
        ("final", "cancelled", False),
        ("scheduled", "cancelled", True),
        ("cancelled", "in-progress", False),
    ],
)
def test_the_status_moves_forward_only(current: str, proposed: str, expected: bool) -> None:
    assert may_advance(current, proposed) is expected


def test_commitment_failures_come_from_the_index() -> None:
    facts = {
        "1": CommitmentFact(CT, None, 1),
        "2": CommitmentFact(CT, "113001", 1),  # rejected
        "3": CommitmentFact(CT, None, 0),  # no live location
        "4": CommitmentFact(MR, None, 1),  # stored as MR
    }
    refs = [(CT, "1"), (CT, "2"), (CT, "3"), (CT, "4"), (CT, "5"), ("1.2.840.10008.5.1.4.31", "6"), ("", "7")]
    failed = commitment_failures(refs, facts, lambda uid: uid != "1.2.840.10008.5.1.4.31")
    assert failed == [
        (CT, "2", 0x0112),
        (CT, "3", 0x0112),
        (CT, "4", 0x0119),
        (CT, "5", 0x0112),
        ("1.2.840.10008.5.1.4.31", "6", 0x0122),
        ("", "7", 0x0110),
    ]


def test_transitions_fire_their_events() -> None:
    assert events_of_transition("scheduled", "ORM^O01 1") == [RuleEvent.ORDER_RECEIVED]
    assert set(events_of_transition("completed", "mpps completed")) == {
        RuleEvent.PROCEDURE_COMPLETED,
        RuleEvent.MPPS_COMPLETED,
    }
    assert events_of_transition("completed", "study stable") == [RuleEvent.PROCEDURE_COMPLETED]
    assert events_of_transition("final", "ORU^R01 9") == [RuleEvent.REPORT_FINAL]


def test_rules_read_back_and_workflow_actions_are_checked() -> None:
    rule = Rule("stat", RuleEvent.ORDER_RECEIVED, [], [Action(ActionKind.ASSIGN, worklist="STAT CT")], description="x")
    again = Rule.from_json(rule.to_json())
    assert (again.event, again.actions, again.description) == (rule.event, rule.actions, "x")
    with pytest.raises(InvalidQuery):
        check_workflow_action(Action(ActionKind.SET_STATUS, status="read"))
    with pytest.raises(InvalidQuery):
        check_workflow_action(Action(ActionKind.HL7_NOTIFY, hl7="", status="CM"))
    with pytest.raises(InvalidQuery):
        Rule.from_json({"name": "x", "event": "sometime", "actions": []})

"""Rules: event + conditions + actions, the one engine of routing (and later prefetch and
workflow rules; ARCHITECTURE.md section 4).

A rule fires on an event (an instance stored, a study become stable) when every one of
its conditions holds for the object: a condition names an attribute by keyword (or one of
the association's values, ``CallingAETitle`` and ``CalledAETitle``) and a pattern, matched
exactly, as a DICOM wildcard (``*`` and ``?``, PS3.4 C.2.2.2.4) or as a regular
expression. Its actions say what to do: forward by C-STORE to a node (optionally in one
transfer syntax), or by STOW-RS to a DICOMweb server.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from openpacs.domain.errors import InvalidQuery


class RuleEvent(StrEnum):
    INSTANCE = "instance"  # each instance as it is stored
    STABLE = "stable"  # a study once no instance arrived for routing.stable_after_seconds
    # workflow events: a requested procedure's status transition (issue 7)
    ORDER_RECEIVED = "order-received"  # scheduled (an HL7 order, a worklist entry)
    PATIENT_ARRIVED = "patient-arrived"  # arrived (ADT^A10)
    PROCEDURE_STARTED = "procedure-started"  # in-progress (MPPS, first image)
    MPPS_COMPLETED = "mpps-completed"  # completed by an MPPS COMPLETED
    PROCEDURE_COMPLETED = "procedure-completed"  # completed (MPPS, stable study)
    REPORT_PRELIMINARY = "report-preliminary"
    REPORT_FINAL = "report-final"
    REPORT_AMENDED = "report-amended"
    ORDER_CANCELLED = "order-cancelled"


#: The workflow events (fired on procedure status transitions) and the status each follows
WORKFLOW_EVENTS: dict[RuleEvent, str] = {
    RuleEvent.ORDER_RECEIVED: "scheduled",
    RuleEvent.PATIENT_ARRIVED: "arrived",
    RuleEvent.PROCEDURE_STARTED: "in-progress",
    RuleEvent.MPPS_COMPLETED: "completed",
    RuleEvent.PROCEDURE_COMPLETED: "completed",
    RuleEvent.REPORT_PRELIMINARY: "preliminary",
    RuleEvent.REPORT_FINAL: "final",
    RuleEvent.REPORT_AMENDED: "amended",
    RuleEvent.ORDER_CANCELLED: "cancelled",
}


def events_of_transition(status: str, source: str) -> list[RuleEvent]:
    """The workflow events a procedure's transition to *status* (from *source*) fires."""
    found: list[RuleEvent] = [
        e for e, s in WORKFLOW_EVENTS.items() if s == status and e is not RuleEvent.MPPS_COMPLETED
    ]
    if status == "completed" and source.startswith("mpps"):
        found.append(RuleEvent.MPPS_COMPLETED)
    return found


class MatchKind(StrEnum):
    EXACT = "exact"
    WILDCARD = "wildcard"
    REGEX = "regex"


#: values of the association, not of the object
ASSOCIATION_KEYS = ("CallingAETitle", "CalledAETitle")


@dataclass(frozen=True)
class Condition:
    """``keyword`` matches ``pattern`` (``kind``: exact, wildcard or regular expression)."""

    keyword: str
    pattern: str
    kind: MatchKind = MatchKind.WILDCARD

    def holds(self, values: list[str]) -> bool:
        """Whether any of the attribute's values matches (an absent attribute matches only
        an empty exact pattern or ``*``)."""
        candidates = values or [""]
        if self.kind is MatchKind.EXACT:
            return any(v == self.pattern for v in candidates)
        if self.kind is MatchKind.WILDCARD:
            return any(fnmatch.fnmatchcase(v, self.pattern) for v in candidates)
        expression = re.compile(self.pattern)
        return any(expression.fullmatch(v) for v in candidates)

    def to_json(self) -> dict[str, str]:
        return {"keyword": self.keyword, "pattern": self.pattern, "kind": str(self.kind)}

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``Keyword=pattern`` (wildcard), ``Keyword==value`` (exact), ``Keyword~=regex``."""
        for separator, kind in (("~=", MatchKind.REGEX), ("==", MatchKind.EXACT), ("=", MatchKind.WILDCARD)):
            keyword, found, pattern = text.partition(separator)
            if found:
                return cls.of(keyword.strip(), pattern, kind)
        raise InvalidQuery(f"a condition is Keyword=pattern, Keyword==value or Keyword~=regex, not {text!r}")

    @classmethod
    def of(cls, keyword: str, pattern: str, kind: MatchKind | str) -> Condition:
        from openpacs.domain.tags import tag_of

        if not keyword:
            raise InvalidQuery("a condition names an attribute: Keyword=pattern")
        if keyword not in ASSOCIATION_KEYS:
            try:
                tag_of(keyword)
            except (KeyError, ValueError) as exc:
                raise InvalidQuery(f"{keyword!r} is not a DICOM keyword (nor CallingAETitle, CalledAETitle)") from exc
        kind = MatchKind(kind)
        if kind is MatchKind.REGEX:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidQuery(f"{pattern!r} is not a regular expression: {exc}") from exc
        if len(pattern) > 1000:
            raise InvalidQuery("a pattern has 1000 characters at most")
        return cls(keyword, pattern, kind)


class ActionKind(StrEnum):
    FORWARD = "forward"  # C-STORE to a node
    STOW = "stow"  # STOW-RS to a DICOMweb server
    PREFETCH = "prefetch"  # fetch the patient's prior studies from a node (C-FIND, C-MOVE to us)
    SET_STATUS = "set-status"  # workflow: move the procedure to ``status``
    ASSIGN = "assign"  # workflow: put the procedure's studies on the reading worklist ``worklist``
    HL7_NOTIFY = "hl7-notify"  # workflow: an ORM/OMI status update (``status`` IP or CM) to ``hl7``


#: Actions the workflow carries out (the routing listener carries out the others)
WORKFLOW_ACTIONS = frozenset({ActionKind.SET_STATUS, ActionKind.ASSIGN, ActionKind.HL7_NOTIFY})


@dataclass(frozen=True)
class Action:
    """What a rule does: send to ``node`` (C-STORE) or to ``url`` (STOW-RS); or prefetch from
    ``node`` the patient's ``priors`` newest prior studies (of ``modalities``, if given, and
    at most ``max_age_days`` old, if given). A C-STORE forward may ask the node for storage
    commitment (``commit``), and delete here what it committed to (``delete_after``)."""

    kind: ActionKind
    node: str = ""
    url: str = ""
    transfer_syntax: str = ""  # "" = what the destination accepts, the stored syntax first
    priors: int = 0
    modalities: str = ""  # comma-separated
    max_age_days: int = 0
    commit: bool = False  # forward: ask the node for storage commitment once the study is delivered
    delete_after: bool = False  # forward: delete here what the node committed to (needs commit)
    lossy: str = ""  # forward: send a lossy copy in this transfer syntax (made once, stored, hidden)
    quality: int = 0  # lossy: the JPEG-LS NEAR value, or the JPEG 2000 compression ratio
    status: str = ""  # set-status: a procedure status; hl7-notify: the ORC-5 order status (IP, CM)
    worklist: str = ""  # assign: the reading worklist's name
    hl7: str = ""  # hl7-notify: the HL7 destination's name ([[hl7.destinations]])

    @property
    def destination(self) -> str:
        """The queue of this action: jobs to one destination share its lease."""
        if self.kind in WORKFLOW_ACTIONS:
            return f"workflow:{self.kind}"
        if self.kind is ActionKind.STOW:
            return f"stow:{self.url}"
        return f"{'node' if self.kind is ActionKind.FORWARD else 'retrieve'}:{self.node}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind)}
        for name in (
            "node",
            "url",
            "transfer_syntax",
            "priors",
            "modalities",
            "max_age_days",
            "commit",
            "delete_after",
            "lossy",
            "quality",
            "status",
            "worklist",
            "hl7",
        ):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        return cls(
            ActionKind(data["kind"]),
            data.get("node", ""),
            data.get("url", ""),
            data.get("transfer_syntax", ""),
            int(data.get("priors", 0)),
            data.get("modalities", ""),
            int(data.get("max_age_days", 0)),
            bool(data.get("commit", False)),
            bool(data.get("delete_after", False)),
            str(data.get("lossy", "")),
            int(data.get("quality", 0)),
            str(data.get("status", "")),
            str(data.get("worklist", "")),
            str(data.get("hl7", "")),
        )


def check_workflow_action(action: Action) -> None:
    """Raise InvalidQuery when a workflow action lacks what it needs."""
    from openpacs.domain.orders import PROCEDURE_STATUSES

    if action.kind is ActionKind.SET_STATUS and action.status not in PROCEDURE_STATUSES:
        raise InvalidQuery(f"set-status needs a procedure status: {', '.join(PROCEDURE_STATUSES)}")
    if action.kind is ActionKind.ASSIGN and not re.fullmatch(r"[\w .-]{1,64}", action.worklist):
        raise InvalidQuery("assign needs a reading worklist name (1 to 64 letters, digits, ' ', '.', '_', '-')")
    if action.kind is ActionKind.HL7_NOTIFY:
        if not action.hl7:
            raise InvalidQuery("hl7-notify needs an HL7 destination name ([[hl7.destinations]])")
        if action.status not in ("IP", "CM", ""):
            raise InvalidQuery("hl7-notify sends the order status IP (in progress) or CM (completed)")


@dataclass
class Rule:
    """A routing rule, stored in the database (``route_rule``), managed by REST and CLI."""

    name: str
    event: RuleEvent
    conditions: list[Condition]
    actions: list[Action]
    enabled: bool = True
    priority: int = 0
    description: str = ""
    pk: int | None = None
    created_at: Any = None
    updated_at: Any = None
    source: str = "api"  # "configuration" for rules seeded from the file
    version: int = 1  # each change makes a new version; the old ones are kept (rule_history)

    def matches(self, values: dict[str, list[str]]) -> bool:
        """Whether every condition holds for an object (keyword -> its values as text)."""
        return all(c.holds(values.get(c.keyword, [])) for c in self.conditions)

    def keywords(self) -> set[str]:
        return {c.keyword for c in self.conditions}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        """A rule as ``to_json`` writes it (a draft file, the REST API); InvalidQuery when wrong."""
        try:
            event = RuleEvent(str(data.get("event", "instance")))
        except ValueError as exc:
            raise InvalidQuery(f"unknown event {data.get('event')!r}: one of {', '.join(RuleEvent)}") from exc
        try:
            conditions = [
                Condition.of(str(c["keyword"]), str(c["pattern"]), str(c.get("kind", "wildcard")))
                for c in data.get("conditions", [])
            ]
            actions = [Action.from_json(a) for a in data.get("actions", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidQuery(f"rule {data.get('name', '?')!r}: {type(exc).__name__} {exc}") from exc
        return cls(
            name=str(data.get("name", "")),
            event=event,
            conditions=conditions,
            actions=actions,
            enabled=bool(data.get("enabled", True)),
            priority=int(data.get("priority", 0)),
            description=str(data.get("description", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "event": str(self.event),
            "conditions": [c.to_json() for c in self.conditions],
            "actions": [a.to_json() for a in self.actions],
            "enabled": self.enabled,
            "priority": self.priority,
            "description": self.description,
            "source": self.source,
            "version": self.version,
        }


@dataclass
class RuleSet:
    """The enabled rules of one event, as one snapshot."""

    rules: list[Rule] = field(default_factory=list)

    def matching(self, values: dict[str, list[str]]) -> list[Rule]:
        return [r for r in self.rules if r.matches(values)]

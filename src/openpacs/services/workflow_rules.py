"""Workflow rules: the one rule engine (event + conditions + actions, :mod:`openpacs.domain.rules`)
applied to the radiology workflow.

Events are the requested procedures' status transitions, read from their history table in
order with a checkpoint (``order-received``, ``patient-arrived``, ``procedure-started``,
``mpps-completed``, ``procedure-completed``, ``report-preliminary``, ``report-final``,
``report-amended``, ``order-cancelled``), and a study becoming stable (``stable``). A rule's
conditions are matched against the procedure as the archive knows it (DICOM keywords:
Modality, AccessionNumber, RequestedProcedurePriority, RequestingService,
RequestedProcedureDescription, RequestedProcedureID, PatientID, ScheduledStationAETitle,
StudyInstanceUID, StudyDescription, ModalitiesInStudy). Actions: ``set-status``, ``assign``
(a reading worklist), ``forward`` (the procedure's studies to a node) and ``hl7-notify``
(an order status update to an HL7 destination). Rules are stored with the routing rules,
versioned, and every change is audited; :meth:`WorkflowRuleService.replay` shows what a
draft would have done over the last days before it goes live (``openpacs workflow test``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import NotFound
from openpacs.domain.orders import ProcedureRow
from openpacs.domain.records import Actor, ActorType
from openpacs.domain.rules import (
    WORKFLOW_ACTIONS,
    WORKFLOW_EVENTS,
    Action,
    ActionKind,
    Rule,
    RuleEvent,
    events_of_transition,
)
from openpacs.domain.workflow import Transition
from openpacs.ports.index import AuditRecord, Index, IndexSession
from openpacs.services.hl7_outbound import Hl7OutboundService
from openpacs.services.procedures import advance
from openpacs.services.routing import RoutingService

log = logging.getLogger(__name__)

CONSUMER = "workflow-rules"


@dataclass(frozen=True)
class Firing:
    """A rule that fired on an event, and what its actions did (or would do)."""

    at: datetime
    event: str
    procedure: int
    accession: str
    rule: str
    actions: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "event": self.event,
            "procedure": self.procedure,
            "accession": self.accession,
            "rule": self.rule,
            "actions": self.actions,
        }


def describe(action: Action) -> str:
    """An action in words, as ``workflow test`` and the audit show it."""
    if action.kind is ActionKind.SET_STATUS:
        return f"set status {action.status}"
    if action.kind is ActionKind.ASSIGN:
        return f"assign to reading worklist {action.worklist!r}"
    if action.kind is ActionKind.HL7_NOTIFY:
        return f"send ORC-5 {action.status or 'CM'} to HL7 destination {action.hl7!r}"
    if action.kind is ActionKind.FORWARD:
        return f"forward the studies to node {action.node!r}"
    return str(action.kind)


class WorkflowRuleService:
    """Fires workflow rules; run under the change-feed lease."""

    def __init__(
        self,
        index: Index,
        hl7: Hl7OutboundService,
        *,
        clock: Callable[[], datetime],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._index = index
        self._hl7 = hl7
        self._clock = clock
        self._wake = wake

    # -- live ---------------------------------------------------------------------------------

    def consume(self, batch: int = 500) -> int:
        """Fire the enabled rules on new status transitions; how many transitions were read."""
        now = self._clock()
        with self._index.session() as session:
            rules = _workflow_rules(session.rules.rules())
            checkpoint = session.checkpoint(CONSUMER)
            last = session.workflow.last_transition_pk()
        if checkpoint >= last:
            return 0
        if not rules:  # follow: a rule added later fires on what happens from then on
            with self._index.session(write=True) as session:
                session.set_checkpoint(CONSUMER, last, now)
            return 0
        acted = False
        with self._index.session(write=True) as session:
            transitions = session.workflow.transitions_since(checkpoint, batch)
            for transition in transitions:
                for firing in self._fire(session, rules, transition, now, live=True):
                    acted = True
                    log.info("workflow rule %s fired on %s: %s", firing.rule, firing.event, "; ".join(firing.actions))
            if transitions:
                session.set_checkpoint(CONSUMER, transitions[-1].pk, now)
        if acted:
            self._wake()
        return len(transitions)

    def on_stable(self, session: IndexSession, study_uid: str, procedures: Sequence[ProcedureRow]) -> None:
        """A study became stable: its rules' workflow actions, for each of its procedures (the
        routing listener carries out their forward actions)."""
        rules = [
            r for r in session.rules.rules()
            if r.enabled and r.event is RuleEvent.STABLE and any(a.kind in WORKFLOW_ACTIONS for a in r.actions)
        ]  # fmt: skip
        if not rules:
            return
        now = self._clock()
        for procedure in procedures:
            values = procedure_values(session, procedure)
            for rule in rules:
                if rule.matches(values):
                    actions = [a for a in rule.actions if a.kind in WORKFLOW_ACTIONS]
                    self._act(session, rule, actions, procedure, "stable", now, live=True, study=study_uid)

    # -- test of a draft ------------------------------------------------------------------------

    def replay(self, rules: Sequence[Rule], days: float, *, limit: int = 100_000) -> list[Firing]:
        """What *rules* would have done on the transitions of the last *days* (nothing is changed:
        the session is read-only). The procedures are matched as they are now."""
        now = self._clock()
        chosen = _workflow_rules(rules, enabled_only=False)
        out: list[Firing] = []
        with self._index.session() as session:
            for transition in session.workflow.transitions_between(now - timedelta(days=days), now, limit):
                out += self._fire(session, chosen, transition, transition.at, live=False)
        return out

    # -- firing ---------------------------------------------------------------------------------

    def _fire(
        self, session: IndexSession, rules: Sequence[Rule], transition: Transition, now: datetime, *, live: bool
    ) -> list[Firing]:
        events = set(events_of_transition(transition.status, transition.source))
        wanted = [r for r in rules if r.event in events]
        if not wanted:
            return []
        procedure = session.orders.procedure(transition.procedure_pk)
        if procedure is None:
            return []  # deleted since
        values = procedure_values(session, procedure)
        fired = []
        for rule in wanted:
            if rule.matches(values):
                done = self._act(session, rule, rule.actions, procedure, str(rule.event), now, live=live)
                fired.append(Firing(now, str(rule.event), procedure.pk, procedure.accession_number, rule.name, done))
        return fired

    def _act(
        self,
        session: IndexSession,
        rule: Rule,
        actions: Sequence[Action],
        procedure: ProcedureRow,
        event: str,
        now: datetime,
        *,
        live: bool,
        study: str = "",
    ) -> list[str]:
        actor = Actor(ActorType.RULE, f"workflow:{rule.name}")
        studies = [study] if study else _studies_of(session, procedure)
        done = []
        for action in actions:
            text = describe(action)
            if not live:
                done.append(text)
                continue
            try:
                if action.kind is ActionKind.SET_STATUS:
                    moved = advance(session, procedure, action.status, f"rule {rule.name}", actor, now)
                    text += "" if moved else " (not taken: the status model keeps the current one)"
                elif action.kind is ActionKind.ASSIGN:
                    for uid in studies:
                        session.workflow.assign(uid, action.worklist, f"rule:{rule.name}", now)
                elif action.kind is ActionKind.HL7_NOTIFY:
                    for uid in studies:
                        self._hl7.queue_status(session, action.hl7, action.status or "CM", uid, now)
                elif action.kind is ActionKind.FORWARD:
                    for uid in studies:
                        RoutingService.forward_study(session, rule, action, uid, now)
            except NotFound as exc:
                text += f" (failed: {exc.reason})"
                session.jobs.add_alert(
                    "workflow-rule-failed", f"workflow rule {rule.name}: {text}", {"rule": rule.name}, now
                )
            done.append(text)
        session.add_audit(
            [
                AuditRecord(
                    now, actor, "workflow-rule", "success", [{"level": "ACCESSION", "uid": procedure.accession_number}],
                    {"rule": rule.name, "version": rule.version, "event": event, "procedure": procedure.pk,
                     "actions": done},
                )
            ]
        )  # fmt: skip
        return done


def _workflow_rules(rules: Sequence[Rule], *, enabled_only: bool = True) -> list[Rule]:
    return [r for r in rules if (r.enabled or not enabled_only) and r.event in WORKFLOW_EVENTS]


def _studies_of(session: IndexSession, procedure: ProcedureRow) -> list[str]:
    linked = [link.study_instance_uid for link in session.workflow.links_of_procedure(procedure.pk)]
    return linked or ([procedure.study_instance_uid] if procedure.study_instance_uid else [])


def procedure_values(session: IndexSession, procedure: ProcedureRow) -> dict[str, list[str]]:
    """What a workflow rule's conditions are matched against (DICOM keywords -> values)."""
    order = session.orders.order(procedure.order_pk)
    steps = session.workflow.steps_of_procedure(procedure.pk)
    values: dict[str, list[str]] = {
        "AccessionNumber": [procedure.accession_number],
        "RequestedProcedureID": [procedure.requested_procedure_id],
        "RequestedProcedureDescription": [procedure.description],
        "RequestedProcedurePriority": [procedure.priority or (order.priority if order else "")],
        "RequestingService": [order.department if order else ""],
        "PatientID": [order.patient_id if order else ""],
        "Modality": sorted({s.modality for s in steps if s.modality}),
        "ScheduledStationAETitle": sorted({a for s in steps for a in s.station_ae_titles}),
        "StudyInstanceUID": _studies_of(session, procedure),
    }
    for uid in values["StudyInstanceUID"]:
        study = session.study(uid)
        if study is None:
            continue
        values.setdefault("StudyDescription", []).append(dj.text(study.attrs, "00081030"))
        values.setdefault("ModalitiesInStudy", []).extend((study.modalities or "").split("\\"))
        values["Modality"] = sorted(set(values["Modality"]) | {m for m in (study.modalities or "").split("\\") if m})
    return values

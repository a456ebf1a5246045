"""Routing: rules stored in the index, the change-feed listener that turns stored instances
and stable studies into forwarding jobs, and the study stability timer.

ARCHITECTURE.md section 4: the ``changes`` table is the outbox. The listener reads it
from its checkpoint (``consumer_checkpoint`` row ``routing``) and, in the same
transaction that moves the checkpoint on, enqueues the jobs and marks the studies
touched; after a crash it resumes from the checkpoint, and enqueueing the same instance
twice changes nothing (a job covers a range of instance keys per rule, destination and
study). A study is stable ``routing.stable_after_seconds`` after its last instance;
the timer turns due studies into ``study_stable`` changes of the feed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.records import Actor, StoredInstance
from openpacs.domain.rules import (
    WORKFLOW_ACTIONS,
    Action,
    ActionKind,
    Condition,
    Rule,
    RuleEvent,
    check_workflow_action,
)
from openpacs.domain.tags import ALL_LEVEL_KEYS, Level, tag_of
from openpacs.ports.index import AuditRecord, ChangeRecord, Index, IndexSession
from openpacs.services.derive import check_lossy
from openpacs.services.outbound import coerced_header

log = logging.getLogger(__name__)

CONSUMER = "routing"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STORED = ("instance_stored", "instance_replaced")


def values_of(instance: StoredInstance, keywords: set[str]) -> dict[str, list[str]]:
    """The values the conditions name, as text (an object's values after coercion)."""
    out: dict[str, list[str]] = {}
    header: dict[str, Any] | None = None
    for keyword in keywords:
        if keyword == "CallingAETitle":
            out[keyword] = [instance.source_ae_title]
        elif keyword == "CalledAETitle":
            out[keyword] = [instance.called_ae_title]
        elif keyword == "SOPClassUID":
            out[keyword] = [instance.sop_class_uid]
        else:
            key = f"{tag_of(keyword):08X}"
            if key in ALL_LEVEL_KEYS:
                # the level sets answer without parsing the header
                source: dict[str, Any] = {**(instance.level_values or {}), **instance.patient_attrs,
                                          **instance.study_attrs, **instance.series_attrs}  # fmt: skip
                if key not in source and instance.level_values is None:
                    source = coerced_header(instance)
            else:
                if header is None:
                    header = coerced_header(instance)
                source = header
            text = dj.multi_text(source, key)
            out[keyword] = text.split("\\") if text else []
    return out


@dataclass(frozen=True)
class RoutingSettings:
    stable_after: timedelta
    batch: int = 1000


class RoutingService:
    """Rules (add, list, remove, test), the listener and the stability timer; thread-safe."""

    def __init__(
        self, index: Index, *, settings: RoutingSettings, clock: Callable[[], datetime], wake: Callable[[], None]
    ) -> None:
        self._index = index
        self._settings = settings
        self._clock = clock
        self._wake = wake  # tells the local job workers that work may be waiting

    # -- rules ----------------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        with self._index.session() as session:
            return session.rules.rules()

    def rule(self, name: str) -> Rule:
        with self._index.session() as session:
            found = session.rules.rule(name)
        if found is None:
            raise NotFound(f"no routing rule named {name!r}")
        return found

    def add(self, rule: Rule, actor: Actor) -> Rule:
        """Store a rule; effective for the next change the listener reads (no restart)."""
        now = self._clock()
        with self._index.session(write=True) as session:
            self._check(session, rule)
            if session.rules.rule(rule.name) is not None:
                raise Conflict(f"a routing rule named {rule.name!r} exists already")
            session.rules.add_rule(rule, now)
            session.rules.add_rule_history(rule.name, 1, "created", rule.to_json(), actor.id, now)
            session.add_audit([AuditRecord(now, actor, "route-add", "success", [], rule.to_json())])
            found = session.rules.rule(rule.name)
        assert found is not None
        log.info("routing rule %s added by %s", rule.name, actor.id)
        return found

    def update(self, rule: Rule, actor: Actor) -> Rule:
        """Replace a rule (a new version; the old one stays in its history)."""
        now = self._clock()
        with self._index.session(write=True) as session:
            self._check(session, rule)
            if session.rules.rule(rule.name) is None:
                raise NotFound(f"no rule named {rule.name!r}")
            version = session.rules.update_rule(rule, now)
            rule.version = version
            session.rules.add_rule_history(rule.name, version, "changed", rule.to_json(), actor.id, now)
            session.add_audit([AuditRecord(now, actor, "route-change", "success", [], rule.to_json())])
            found = session.rules.rule(rule.name)
        assert found is not None
        return found

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of a rule, oldest first (kept after the rule is removed)."""
        with self._index.session() as session:
            found = session.rules.rule_history(name)
        if not found:
            raise NotFound(f"no rule named {name!r}, now or before")
        return found

    @staticmethod
    def _check(session: IndexSession, rule: Rule) -> None:
        if not _NAME.match(rule.name):
            raise InvalidQuery("a rule name has 1 to 64 letters, digits, '.', '_' or '-'")
        if not rule.actions:
            raise InvalidQuery("a rule needs an action (--to NODE)")
        workflow_event = rule.event not in (RuleEvent.INSTANCE, RuleEvent.STABLE)
        for action in rule.actions:
            if action.kind in WORKFLOW_ACTIONS:
                check_workflow_action(action)
                if rule.event is RuleEvent.INSTANCE:
                    raise InvalidQuery(f"a {action.kind} action needs a workflow event or stable, not instance")
            elif workflow_event and action.kind is not ActionKind.FORWARD:
                raise InvalidQuery("on a workflow event a rule may forward, set-status, assign or hl7-notify")
            if action.kind in (ActionKind.FORWARD, ActionKind.PREFETCH) and session.node(action.node) is None:
                raise NotFound(f"no node named {action.node!r}: add it first (openpacs node add)")
            if action.delete_after and not action.commit:
                raise InvalidQuery("delete after delivery needs storage commitment (--commit) to confirm it")
            if action.lossy and action.kind is not ActionKind.FORWARD:
                raise InvalidQuery("a lossy copy is sent to a node a rule forwards to by C-STORE")
            if action.lossy:
                check_lossy(action.lossy, action.quality)
            if action.commit and action.kind is not ActionKind.FORWARD:
                raise InvalidQuery("storage commitment is asked of a node a rule forwards to by C-STORE")
            if action.kind is ActionKind.STOW and not action.url.startswith(("http://", "https://")):
                raise InvalidQuery(f"{action.url!r} is not an http(s) URL of a DICOMweb service")

    def remove(self, name: str, actor: Actor) -> None:
        now = self._clock()
        with self._index.session(write=True) as session:
            found = session.rules.rule(name)
            if found is None or not session.rules.remove_rule(name):
                raise NotFound(f"no routing rule named {name!r}")
            session.rules.add_rule_history(name, found.version + 1, "deleted", found.to_json(), actor.id, now)
            session.add_audit([AuditRecord(now, actor, "route-remove", "success", [], {"name": name})])

    def seed(self, rules: Sequence[Rule], actor: Actor) -> None:
        """Rules of the configuration file that the database does not have yet."""
        with self._index.session() as session:
            known = {r.name for r in session.rules.rules()}
        for rule in rules:
            if rule.name not in known:
                try:
                    self.add(rule, actor)
                except (InvalidQuery, NotFound, Conflict) as exc:
                    log.error("routing rule %s of the configuration is not usable: %s", rule.name, exc.reason)

    def test(self, study_uid: str) -> list[dict[str, Any]]:
        """Which rules a stored study would trigger, and for how many instances; sends nothing."""
        with self._index.session() as session:
            instances = [i for i in session.stored_instances(Level.STUDY, [study_uid], hidden=True) if _sendable(i)]
            rules = [r for r in session.rules.rules() if r.enabled]
        if not instances:
            raise NotFound(f"no study {study_uid}")
        out = []
        for rule in rules:
            keywords = rule.keywords()
            if rule.event is RuleEvent.STABLE:
                matched = len(instances) if rule.matches(values_of(instances[0], keywords)) else 0
            else:
                matched = sum(1 for i in instances if rule.matches(values_of(i, keywords)))
            out.append(
                {
                    "rule": rule.name,
                    "event": str(rule.event),
                    "fires": matched > 0,
                    "instances": matched,
                    "of": len(instances),
                    "actions": [a.to_json() for a in rule.actions],
                }
            )
        return out

    # -- the listener -----------------------------------------------------------------------

    def consume(self) -> int:
        """Read one batch of the change feed; returns how many changes were read."""
        now = self._clock()
        with self._index.session(write=True) as session:
            checkpoint = session.checkpoint(CONSUMER)
            changes = session.changes_since(checkpoint, self._settings.batch)
            if not changes:
                return 0
            stored = [c.resource for c in changes if c.change_type in _STORED]
            stable = [c.resource for c in changes if c.change_type == "study_stable"]
            rules = [r for r in session.rules.rules() if r.enabled]
            enqueued = 0
            if stored:
                instances = [i for i in session.stored_instances(Level.IMAGE, stored, hidden=True) if _sendable(i)]
                session.jobs.touch_studies([i.study_instance_uid for i in instances], now + self._settings.stable_after)
                enqueued += self._route(session, [r for r in rules if r.event is RuleEvent.INSTANCE], instances, now)
            if stable:
                enqueued += self._route_stable(session, [r for r in rules if r.event is RuleEvent.STABLE], stable, now)
            session.set_checkpoint(CONSUMER, changes[-1].seq, now)
        if enqueued:
            self._wake()
        return len(changes)

    def _route(self, session: IndexSession, rules: list[Rule], instances: list[StoredInstance], now: datetime) -> int:
        wanted: dict[tuple[str, Action, str], list[int]] = {}
        sources = _prefetch_sources(session, rules)
        for instance in instances:
            for rule in rules:
                if rule.matches(values_of(instance, rule.keywords())):
                    for action in rule.actions:
                        if action.kind is ActionKind.PREFETCH and instance.source_ae_title == sources.get(action.node):
                            continue  # what a prefetch brings does not prefetch again
                        wanted.setdefault((rule.name, action, instance.study_instance_uid), []).append(instance.pk)
        by_name = {r.name: r for r in rules}
        for (name, action, study), pks in wanted.items():
            self._enqueue(session, by_name[name], action, study, pks, now)
        return len(wanted)

    def _route_stable(self, session: IndexSession, rules: list[Rule], studies: list[str], now: datetime) -> int:
        count = 0
        for study in studies:
            instances = [i for i in session.stored_instances(Level.STUDY, [study], hidden=True) if _sendable(i)]
            if not instances:
                continue
            sources = _prefetch_sources(session, rules)
            for rule in rules:
                if rule.matches(values_of(instances[0], rule.keywords())):
                    for action in rule.actions:
                        if action.kind is ActionKind.PREFETCH and instances[0].source_ae_title == sources.get(
                            action.node
                        ):
                            continue
                        self._enqueue(session, rule, action, study, [i.pk for i in instances], now)
                        count += 1
        return count

    @staticmethod
    def forward_study(session: IndexSession, rule: Rule, action: Action, study: str, now: datetime) -> bool:
        """Queue a rule's forward of a whole study (a workflow rule's action); False when the
        study has no instance to send."""
        instances = [i for i in session.stored_instances(Level.STUDY, [study], hidden=True) if _sendable(i)]
        if not instances:
            return False
        RoutingService._enqueue(session, rule, action, study, [i.pk for i in instances], now)
        return True

    @staticmethod
    def _enqueue(session: IndexSession, rule: Rule, action: Action, study: str, pks: list[int], now: datetime) -> None:
        slots = 1
        if action.kind is ActionKind.PREFETCH:
            node = session.node(action.node)
            row = session.study(study)
            patient_id = dj.text(session.patient(row.patient_pk).attrs, "00100020") if row is not None else ""
            key = f"{rule.name}|{action.destination}|{patient_id}|{study}"
            if not patient_id or session.jobs.queued(key):
                return  # one prefetch per new study of a patient
            prefetch = Job(
                kind=JobKind.PREFETCH,
                queue=action.destination,
                params={"rule": rule.name, "action": action.to_json(), "patient_id": patient_id, "study": study},
                priority=rule.priority - 1,  # behind the patient's current work
                study_instance_uid=study,
            )
            session.jobs.add(prefetch, node.max_associations if node is not None else 1, now, dedupe_key=key)
            return
        if action.kind is ActionKind.FORWARD:
            node = session.node(action.node)
            slots = node.max_associations if node is not None else 1
        job = Job(
            kind=JobKind.FORWARD,
            queue=action.destination,
            params={
                "rule": rule.name,
                "event": str(rule.event),
                "action": action.to_json(),
                # a stable rule sends the whole study; an instance rule what matches its conditions
                "conditions": [c.to_json() for c in rule.conditions] if rule.event is RuleEvent.INSTANCE else [],
            },
            priority=rule.priority,
            study_instance_uid=study,
        )
        session.jobs.enqueue(job, slots, f"{rule.name}|{action.destination}|{study}", pks, now)

    # -- stability ------------------------------------------------------------------------

    def mark_stable(self) -> int:
        """Studies without a new instance for ``stable_after``: a ``study_stable`` change each."""
        now = self._clock()
        with self._index.session(write=True) as session:
            due = session.jobs.take_stable(now, 1000)
            if due:
                session.add_changes([ChangeRecord("study_stable", Level.STUDY, uid) for uid in due], now)
        return len(due)


def _prefetch_sources(session: IndexSession, rules: list[Rule]) -> dict[str, str]:
    """Node name -> AE title of the nodes prefetch rules fetch from."""
    out = {}
    for rule in rules:
        for action in rule.actions:
            if action.kind is ActionKind.PREFETCH and action.node not in out:
                node = session.node(action.node)
                out[action.node] = node.ae_title if node is not None else ""
    return out


def _sendable(instance: StoredInstance) -> bool:
    """What routing may send: visible instances, and rejection notes (peers must learn of them)."""
    return instance.hidden is None or instance.hidden == "rejection-note"


def conditions_of(data: list[dict[str, str]]) -> list[Condition]:
    return [Condition.of(c["keyword"], c["pattern"], c["kind"]) for c in data]

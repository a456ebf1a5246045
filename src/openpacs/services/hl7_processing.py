"""Applying stored HL7 messages (HL7 v2.5.1 chapter 3, patient administration): the consumer of
the message store.

One consumer (held by the ``hl7`` lease when several nodes run) takes the messages in
status ``received`` in arrival order and applies them through the same services as an
administrator's corrections, with source ``hl7`` (their values then hold against a local
undo; ARCHITECTURE.md section 3):

- ADT A01, A04, A05, A08, A28, A31: create the patient, or update its demographics;
- ADT A40 and A34: merge the patient named in MRG-1 into the one in PID-3;
- ADT A47: change the patient's identifier (MRG-1 -> PID-3).

Other messages are kept, marked ``skipped`` with the reason. A message that fails is
marked ``failed`` (an alert is raised) and holds back the later messages of the same
sender for the same patient until it is reprocessed or skipped; other patients' messages
go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from openpacs.domain.errors import Conflict, InvalidQuery, NotFound, OpenPacsError
from openpacs.domain.hl7 import Hl7Error, StoredMessage, Summary, parse
from openpacs.domain.hl7_adt import Hl7Identifier, demographics, patient_identifier
from openpacs.domain.records import Actor, ActorType, Issuer
from openpacs.domain.records import PatientIdentifier as IndexIdentifier
from openpacs.ports.index import AuditRecord, Index
from openpacs.services.reconcile import PatientRef, ReconcileService, element_from_text

log = logging.getLogger(__name__)

PROCESSED, FAILED, SKIPPED = "processed", "failed", "skipped"
UPDATES = frozenset({"A01", "A04", "A05", "A08", "A28", "A31"})
MERGES = frozenset({"A40", "A34"})
CHANGE_ID = frozenset({"A47"})


class Hl7Processor:
    """Applies received messages; one consumer at a time (the caller holds the lease)."""

    def __init__(
        self,
        index: Index,
        reconcile: ReconcileService,
        *,
        clock: Callable[[], datetime],
        default_issuer: str,
        authorities: dict[str, str],
        default_charset: str = "",
    ) -> None:
        self._index = index
        self._reconcile = reconcile
        self._clock = clock
        self._default_issuer = default_issuer
        self._authorities = authorities
        self._default_charset = default_charset

    def process_pending(self, limit: int = 200) -> int:
        """Apply up to *limit* waiting messages, in arrival order; how many were applied."""
        with self._index.session() as session:
            waiting = session.hl7.pending(limit)
            held = session.hl7.held_patients()
        done = 0
        for message in waiting:
            summary = message.summary
            key = (summary.sender, summary.patient_id) if summary is not None else ("", "")
            if key[1] and key in held:
                continue  # an earlier message for this patient failed: it waits for it
            status, error = self.apply(message)
            now = self._clock()
            assert message.pk is not None
            with self._index.session(write=True) as session:
                session.hl7.set_status(message.pk, status, error, now)
                if status == FAILED:
                    session.jobs.add_alert(
                        "hl7-failed",
                        f"HL7 message {message.pk} ({summary.message_type}^{summary.trigger} {summary.control_id}"
                        f" from {summary.sender}) failed: {error}"
                        if summary is not None
                        else f"HL7 message {message.pk} failed: {error}",
                        {"message": message.pk, "patient_id": key[1]},
                        now,
                    )
            if status == FAILED and key[1]:
                held.add(key)
            done += 1
        return done

    def apply(self, stored: StoredMessage) -> tuple[str, str]:
        """(status, error or note) of applying one message."""
        try:
            message, summary = parse(stored.raw, default_charset=self._default_charset)
        except Hl7Error as exc:
            return FAILED, exc.reason
        handler = None
        if summary.message_type == "ADT":
            if summary.trigger in UPDATES:
                handler = self._update
            elif summary.trigger in MERGES:
                handler = self._merge
            elif summary.trigger in CHANGE_ID:
                handler = self._change_identifier
        if handler is None:
            return SKIPPED, f"{summary.message_type}^{summary.trigger} is not applied by this version"
        try:
            return PROCESSED, handler(message, summary)
        except OpenPacsError as exc:
            return FAILED, exc.reason
        except Exception as exc:
            log.exception("HL7 message %s failed", stored.pk)
            return FAILED, f"{type(exc).__name__}: {exc}"

    # -- ADT ----------------------------------------------------------------------------------

    def _separators(self, summary: Summary) -> tuple[str, str]:
        encoding = summary.encoding[1:] or "^~\\&"
        return encoding[0], encoding[1] if len(encoding) > 1 else "~"

    def _identifier(self, segment: Any, field: int, summary: Summary) -> Hl7Identifier:
        component, repetition = self._separators(summary)
        try:
            text = str(segment[field])
        except IndexError:
            text = ""
        found = patient_identifier(
            text.split(repetition), default_issuer=self._default_issuer, authorities=self._authorities,
            component=component,
        )  # fmt: skip
        if found is None:
            raise InvalidQuery(f"{segment[0]}-{field} carries no identifier")
        return found

    def _segment(self, message: Any, name: str) -> Any:
        try:
            return message.segment(name)
        except KeyError:
            raise InvalidQuery(f"the message has no {name} segment") from None

    def _actor(self, summary: Summary) -> tuple[Actor, str]:
        return (
            Actor(ActorType.HL7, summary.sender),
            f"HL7 {summary.message_type}^{summary.trigger} {summary.control_id}",
        )

    def _update(self, message: Any, summary: Summary) -> str:
        pid = self._segment(message, "PID")
        identifier = self._identifier(pid, 3, summary)
        values = demographics(pid, self._separators(summary)[0])
        actor, reason = self._actor(summary)
        ref = PatientRef(identifier.value, identifier.issuer)
        try:
            operation = self._reconcile.update_patient(ref, values, actor, reason, provenance="hl7")
        except NotFound:
            return self._register(identifier, values, actor, reason)
        except InvalidQuery as exc:
            if "nothing to change" in exc.reason:
                return "no change"
            raise
        return f"operation {operation.id}"

    def _register(self, identifier: Hl7Identifier, values: dict[str, str], actor: Actor, reason: str) -> str:
        """A patient the archive does not know yet: registered, so that its images find it."""
        attrs = {
            "00100020": element_from_text("PatientID", identifier.value),
            **{f"{_tag(k):08X}": element_from_text(k, v) for k, v in values.items() if v},
        }
        if identifier.issuer:
            attrs["00100021"] = element_from_text("IssuerOfPatientID", identifier.issuer)
        now = self._clock()
        with self._index.session(write=True) as session:
            pk = session.create_patient(attrs, now)
            session.add_identifier(pk, IndexIdentifier(identifier.value, Issuer(identifier.issuer)), now)
            session.add_audit(
                [
                    AuditRecord(
                        now, actor, "hl7-register", "success", [{"level": "PATIENT", "uid": identifier.value}],
                        {"reason": reason, "values": values, "issuer": identifier.issuer},
                    )
                ]
            )  # fmt: skip
        return f"patient {identifier.value} registered"

    def _merge(self, message: Any, summary: Summary) -> str:
        pid = self._segment(message, "PID")
        mrg = self._segment(message, "MRG")
        target = self._identifier(pid, 3, summary)
        source = self._identifier(mrg, 1, summary)
        actor, reason = self._actor(summary)
        operation = self._reconcile.merge_patients(
            PatientRef(source.value, source.issuer), PatientRef(target.value, target.issuer), actor, reason,
            provenance="hl7",
        )  # fmt: skip
        return f"operation {operation.id}"

    def _change_identifier(self, message: Any, summary: Summary) -> str:
        pid = self._segment(message, "PID")
        mrg = self._segment(message, "MRG")
        new = self._identifier(pid, 3, summary)
        old = self._identifier(mrg, 1, summary)
        actor, reason = self._actor(summary)
        values = {"PatientID": new.value}
        if new.issuer != old.issuer:
            values["IssuerOfPatientID"] = new.issuer
        try:
            operation = self._reconcile.update_patient(
                PatientRef(old.value, old.issuer), values, actor, reason, provenance="hl7"
            )
        except Conflict as exc:
            raise Conflict(f"{exc.reason} (ADT^A47 cannot give a patient another's identifier)") from exc
        return f"operation {operation.id}"


def _tag(keyword: str) -> int:
    from openpacs.domain.tags import tag_of

    return tag_of(keyword)

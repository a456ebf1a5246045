"""Our SCPs: the data transfer phase of an accepted association (PS3.4 Annexes A, B, C).

``handle_c_echo``, ``handle_c_store``, ``handle_c_find``, ``handle_c_move`` and
``handle_c_get`` turn DIMSE messages into service calls and service results into
responses; every rule (access, storage policy, matching, coercion) lives in services.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from openpacs.dimse import commands as cmd
from openpacs.dimse import pdu
from openpacs.dimse.association import Aborted, Association, Message, ReleaseRequested
from openpacs.dimse.identifiers import answer_charset, decode_identifier, encode_identifier
from openpacs.dimse.negotiation import (
    MODALITY_PERFORMED_PROCEDURE_STEP,
    MODALITY_WORKLIST_FIND,
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    VERIFICATION,
)
from openpacs.domain import dicom_json as dj
from openpacs.domain.errors import OpenPacsError
from openpacs.domain.matching import Model
from openpacs.domain.part10 import encode_file_meta
from openpacs.domain.records import Origin, StoreStatus
from openpacs.ports.peers import SendResult
from openpacs.services.commitment import CommitmentService
from openpacs.services.commitment_scp import CommitmentScpService
from openpacs.services.ingest import IngestService
from openpacs.services.mpps import MppsService
from openpacs.services.nodes import AccessDecision, NodeService, Service
from openpacs.services.outbound import CannotEncode
from openpacs.services.query import QueryService
from openpacs.services.retrieve import RetrieveService
from openpacs.services.worklist import WorklistService

log = logging.getLogger("openpacs.dimse")

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
WARNING_SUBOPERATIONS = 0xB000
UNABLE_TO_PROCESS = 0xC000
PROCESSING_FAILURE = 0x0110
NOT_AUTHORIZED = 0x0124
UNRECOGNIZED_OPERATION = 0x0211
NO_SUCH_SOP_CLASS = 0x0118
SUBOPERATIONS_FAILED = 0xA702


@dataclass(frozen=True)
class DimseServices:
    """The services the DIMSE door calls."""

    nodes: NodeService
    ingest: IngestService
    query: QueryService
    retrieve: RetrieveService
    commitments: CommitmentService | None = None
    worklist: WorklistService | None = None
    mpps: MppsService | None = None
    commitment_scp: CommitmentScpService | None = None


@dataclass
class AssociationLog:
    """What happened on one association, logged when it ends."""

    started: float = field(default_factory=time.monotonic)
    counts: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """'C-STORE 12 (12 stored), C-FIND 1' style text."""
        parts = []
        for op in ("C-ECHO", "C-STORE", "C-FIND", "C-MOVE", "C-GET", "N-CREATE", "N-SET", "N-ACTION", "N-EVENT-REPORT"):
            total = self.counts.get(op, 0)
            if not total:
                continue
            details = [f"{n} {k.split(':', 1)[1]}" for k, n in sorted(self.counts.items()) if k.startswith(op + ":")]
            parts.append(f"{op} {total}" + (f" ({', '.join(details)})" if details else ""))
        return ", ".join(parts) or "nothing"


def _status_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, OpenPacsError):
        return exc.dimse_status, exc.reason
    return PROCESSING_FAILURE, f"processing failure: {type(exc).__name__}"


class ScpSession:
    """Serves one accepted association until release or abort."""

    def __init__(self, assoc: Association, services: DimseServices, decision: AccessDecision, origin: Origin) -> None:
        self.assoc = assoc
        self.services = services
        self.decision = decision
        self.origin = origin
        self.log = AssociationLog()
        self._cancelled: set[int] = set()
        self._ending = ""  # set when a handler saw the association end

    def _store_prefix(self, context_id: int, command: dict[str, Any]) -> bytes:
        """The File Meta Information synthesised for a C-STORE's data set (PS3.10 7.1)."""
        if command.get("CommandField") != cmd.C_STORE_RQ:
            return b""
        context = self.assoc.contexts[context_id]
        return encode_file_meta(
            context.transfer_syntax,
            str(command.get("AffectedSOPClassUID", "")),
            str(command.get("AffectedSOPInstanceUID", "")),
            self.assoc.info.calling_ae,
        )

    def run(self) -> str:
        """Serve messages; returns how the association ended ('released', 'aborted', ...)."""
        while True:
            try:
                msg = self.assoc.receive(prefix=self._store_prefix)
            except ReleaseRequested:
                self.assoc.send_release_rp()
                self.assoc.pdus.close()
                return "released"
            except Aborted as exc:
                self.assoc.pdus.close()
                return f"aborted ({exc})"
            except pdu.ProtocolError as exc:
                log.warning("protocol error from %s: %s; aborting", self.origin.actor.id, exc)
                self.assoc.abort(0x02)
                return f"aborted by us (protocol error: {exc})"
            except TimeoutError:
                self.assoc.abort(0x00)
                return "aborted by us (network timeout)"
            ending = self._serve(msg)
            if ending:
                return ending

    def _serve(self, msg: Message) -> str:
        """Handle one message; how the association ended, or '' while it goes on."""
        handlers = {
            cmd.C_ECHO_RQ: self.handle_c_echo,
            cmd.C_STORE_RQ: self.handle_c_store,
            cmd.C_FIND_RQ: self.handle_c_find,
            cmd.C_MOVE_RQ: self.handle_c_move,
            cmd.C_GET_RQ: self.handle_c_get,
            cmd.N_EVENT_REPORT_RQ: self.handle_n_event_report,
            cmd.N_CREATE_RQ: self.handle_n_create,
            cmd.N_SET_RQ: self.handle_n_set,
            cmd.N_ACTION_RQ: self.handle_n_action,
        }
        field_ = int(msg.command.get("CommandField", 0))
        handler = handlers.get(field_)
        if field_ == cmd.C_CANCEL_RQ:
            return ""  # a cancel for an operation that has already finished
        if handler is None:
            self._respond(msg, field_ | 0x8000, UNRECOGNIZED_OPERATION, "operation not supported")
            return ""
        try:
            handler(msg)
        except TimeoutError:
            self.assoc.abort(0x00)
            return "aborted by us (network timeout)"
        except pdu.ProtocolError as exc:
            self.assoc.abort(0x02)
            return f"aborted by us (protocol error: {exc})"
        except Aborted as exc:
            self.assoc.pdus.close()
            return f"aborted ({exc})"
        except ReleaseRequested:
            self.assoc.send_release_rp()
            self.assoc.pdus.close()
            return "released"
        return self._ending

    # -- helpers --------------------------------------------------------------------------

    def _respond(
        self,
        msg: Message,
        field_: int,
        status: int,
        comment: str = "",
        data: bytes | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        response: dict[str, Any] = {
            "CommandField": field_,
            "MessageIDBeingRespondedTo": msg.command.get("MessageID", 0),
            "AffectedSOPClassUID": msg.command.get("AffectedSOPClassUID")
            or self.assoc.contexts[msg.context_id].abstract_syntax,
            "Status": status,
            **(fields or {}),
        }
        if comment and status not in (SUCCESS, PENDING, 0xFF01, CANCEL):
            response["ErrorComment"] = comment[:64]
        self.assoc.send(msg.context_id, response, data)

    def _allowed(self, service: Service) -> bool:
        return service in self.decision.services

    def _cancel_requested(self, msg: Message) -> bool:
        """Whether a C-CANCEL-RQ for *msg* has arrived (PS3.7 9.3.2.3)."""
        if int(msg.command.get("MessageID", 0)) in self._cancelled:
            return True
        waiting = self.assoc.poll()
        while waiting is not None:
            if waiting.command.get("CommandField") == cmd.C_CANCEL_RQ and waiting.command.get(
                "MessageIDBeingRespondedTo"
            ) == msg.command.get("MessageID"):
                return True
            log.warning(
                "ignoring %s received during an operation", cmd.NAMES.get(waiting.command.get("CommandField", 0))
            )
            waiting = self.assoc.poll()
        return False

    def _identifier(self, msg: Message) -> dict[str, Any]:
        context = self.assoc.contexts[msg.context_id]
        return decode_identifier(msg.data or b"", context.transfer_syntax)

    # -- C-ECHO ---------------------------------------------------------------------------

    def handle_c_echo(self, msg: Message) -> None:
        """Verification (PS3.4 Annex A)."""
        self.log.counts["C-ECHO"] += 1
        self._respond(msg, cmd.C_ECHO_RSP, SUCCESS, fields={"AffectedSOPClassUID": VERIFICATION})

    # -- N-EVENT-REPORT -------------------------------------------------------------------

    def handle_n_event_report(self, msg: Message) -> None:
        """Storage commitment results (PS3.4 J.3.3) for requests we made after forwarding."""
        from openpacs.dimse.commitment import parse_event_information
        from openpacs.domain.commitment import STORAGE_COMMITMENT_PUSH

        self.log.counts["N-EVENT-REPORT"] += 1
        context = self.assoc.contexts[msg.context_id]
        fields = {
            "AffectedSOPClassUID": STORAGE_COMMITMENT_PUSH,
            "AffectedSOPInstanceUID": msg.command.get("AffectedSOPInstanceUID", ""),
            "EventTypeID": msg.command.get("EventTypeID", 0),
        }
        if context.abstract_syntax != STORAGE_COMMITMENT_PUSH or self.services.commitments is None:
            self._respond(msg, cmd.N_EVENT_REPORT_RSP, 0x0112, "no such SOP instance", fields=fields)
            return
        try:
            result = parse_event_information(decode_identifier(msg.data or b"", context.transfer_syntax))
            status = self.services.commitments.report(result, self.assoc.info.calling_ae.strip())
        except Exception as exc:
            log.warning("storage commitment report from %s: %s", self.origin.actor.id, exc)
            status = PROCESSING_FAILURE
        self._respond(msg, cmd.N_EVENT_REPORT_RSP, status, "unknown transaction" if status else "", fields=fields)

    # -- N-CREATE, N-SET: Modality Performed Procedure Step ------------------------------------

    def _normalized_data(self, msg: Message) -> dict[str, Any]:
        context = self.assoc.contexts[msg.context_id]
        return decode_identifier(msg.data or b"", context.transfer_syntax) if msg.data else {}

    def handle_n_create(self, msg: Message) -> None:
        """MPPS N-CREATE (PS3.4 F.7.2.1): the step is created IN PROGRESS (we give it a UID if
        the SCU did not)."""
        uid = str(msg.command.get("AffectedSOPInstanceUID", ""))

        def create(mpps: MppsService, data: dict[str, Any], ae: str) -> dict[str, Any]:
            return {"AffectedSOPInstanceUID": mpps.create(uid, data, ae)}

        self._mpps_operation(msg, "N-CREATE", cmd.N_CREATE_RSP, {"AffectedSOPInstanceUID": uid or None}, create)

    def handle_n_set(self, msg: Message) -> None:
        """MPPS N-SET (PS3.4 F.7.2.2): changes while IN PROGRESS; COMPLETED and DISCONTINUED are final."""
        uid = str(msg.command.get("RequestedSOPInstanceUID", ""))
        context = self.assoc.contexts[msg.context_id]
        fields = {"AffectedSOPClassUID": context.abstract_syntax, "AffectedSOPInstanceUID": uid or None}

        def update(mpps: MppsService, data: dict[str, Any], ae: str) -> dict[str, Any]:
            mpps.set(uid, data, ae)
            return fields

        self._mpps_operation(msg, "N-SET", cmd.N_SET_RSP, fields, update)

    def _mpps_operation(
        self,
        msg: Message,
        name: str,
        answer: int,
        fields: dict[str, Any],
        run: Callable[[MppsService, dict[str, Any], str], dict[str, Any]],
    ) -> None:
        """The checks and answers N-CREATE and N-SET share: MPPS only, a node that may store."""
        self.log.counts[name] += 1
        context = self.assoc.contexts[msg.context_id]
        if context.abstract_syntax != MODALITY_PERFORMED_PROCEDURE_STEP or self.services.mpps is None:
            self._respond(msg, answer, NO_SUCH_SOP_CLASS, f"{name} is served for MPPS only", fields=fields)
            return
        if not self._allowed(Service.STORE):
            self._respond(msg, answer, NOT_AUTHORIZED, "this node may not report procedures", fields=fields)
            return
        try:
            done = run(self.services.mpps, self._normalized_data(msg), self.assoc.info.calling_ae)
        except Exception as exc:
            status, reason = _status_of(exc)
            log.warning("MPPS %s from %s refused (0x%04X): %s", name, self.origin.actor.id, status, reason)
            self.log.counts[f"{name}:refused"] += 1
            self._respond(msg, answer, status, reason, fields=fields)
            return
        self._respond(msg, answer, SUCCESS, fields=done)

    # -- N-ACTION: Storage Commitment Push Model, we are the SCP --------------------------------

    def handle_n_action(self, msg: Message) -> None:
        """Storage commitment request (PS3.4 J.3.2): answered, then reported (J.3.3) on this
        association, or later on one of ours when this one is gone."""
        from openpacs.dimse.commitment import event_information, event_report_command, parse_action_information
        from openpacs.domain.commitment import STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH

        self.log.counts["N-ACTION"] += 1
        context = self.assoc.contexts[msg.context_id]
        fields = {
            "AffectedSOPClassUID": context.abstract_syntax,
            "AffectedSOPInstanceUID": str(msg.command.get("RequestedSOPInstanceUID", "")) or None,
            "ActionTypeID": msg.command.get("ActionTypeID"),
        }
        service = self.services.commitment_scp
        if context.abstract_syntax != STORAGE_COMMITMENT_PUSH or service is None:
            self._respond(msg, cmd.N_ACTION_RSP, NO_SUCH_SOP_CLASS, "N-ACTION is served for storage commitment only",
                          fields=fields)  # fmt: skip
            return
        if not self._allowed(Service.STORE):
            self._respond(msg, cmd.N_ACTION_RSP, NOT_AUTHORIZED, "this node may not ask for commitment", fields=fields)
            return
        if int(msg.command.get("ActionTypeID", 0)) != 1:
            self._respond(msg, cmd.N_ACTION_RSP, 0x0123, "no such action type (1: request commitment)", fields=fields)
            return
        if str(msg.command.get("RequestedSOPInstanceUID", "")) != STORAGE_COMMITMENT_INSTANCE:
            self._respond(msg, cmd.N_ACTION_RSP, 0x0117, "not the well-known commitment instance", fields=fields)
            return
        try:
            transaction, refs = parse_action_information(self._normalized_data(msg))
            result = service.request(transaction, refs, self.assoc.info.calling_ae, self.origin.actor.address)
        except Exception as exc:
            status, reason = _status_of(exc)
            log.warning("storage commitment from %s refused (0x%04X): %s", self.origin.actor.id, status, reason)
            self.log.counts["N-ACTION:refused"] += 1
            self._respond(msg, cmd.N_ACTION_RSP, status, reason, fields=fields)
            return
        self._respond(msg, cmd.N_ACTION_RSP, SUCCESS, fields=fields)
        self.log.counts["N-ACTION:committed"] += len(result.committed)
        self.log.counts["N-ACTION:failed"] += len(result.failed)
        message_id = self.assoc.next_message_id()
        try:
            data = encode_identifier(event_information(result, self.assoc.info.called_ae), context.transfer_syntax, [])
            self.assoc.send(msg.context_id, event_report_command(message_id, result), data)
            while True:
                reply = self.assoc.receive(prefix=self._store_prefix)
                if (
                    reply.command.get("CommandField") == cmd.N_EVENT_REPORT_RSP
                    and reply.command.get("MessageIDBeingRespondedTo") == message_id
                ):
                    break
                self._serve(reply)  # a request that crossed our report
                if self._ending:
                    raise Aborted(self._ending)
        except (ReleaseRequested, Aborted, TimeoutError, OSError, pdu.ProtocolError) as exc:
            service.deliver_later(result.transaction_uid, f"association ended before the report ({exc})")
            raise
        status = int(reply.command.get("Status", 0xC000))
        if status != SUCCESS:  # not taken here: on an association of ours, as PS3.4 J.3.3 allows
            log.info("%s answered the commitment report with 0x%04X; it goes on a new association",
                     self.origin.actor.id, status)  # fmt: skip
            service.deliver_later(result.transaction_uid, f"the requester answered the report 0x{status:04X}")
            return
        service.reported(result.transaction_uid)

    # -- C-STORE --------------------------------------------------------------------------

    def handle_c_store(self, msg: Message) -> None:
        """Storage (PS3.4 Annex B): success only once the instance is durable."""
        self.log.counts["C-STORE"] += 1
        extra = {"AffectedSOPInstanceUID": msg.command.get("AffectedSOPInstanceUID", "")}
        if not self._allowed(Service.STORE):
            self.log.counts["C-STORE:refused"] += 1
            self._respond(msg, cmd.C_STORE_RSP, NOT_AUTHORIZED, "this node may not store", fields=extra)
            return
        try:
            outcome = self.services.ingest.store(
                msg.data or b"",
                self.origin,
                expected_sop_class_uid=str(msg.command.get("AffectedSOPClassUID", "")) or None,
                expected_sop_instance_uid=str(msg.command.get("AffectedSOPInstanceUID", "")) or None,
            )
        except Exception as exc:
            status, reason = _status_of(exc)
            if not isinstance(exc, OpenPacsError):
                log.exception("C-STORE from %s failed", self.origin.actor.id)
            else:
                log.warning("C-STORE from %s refused (0x%04X): %s", self.origin.actor.id, status, reason)
            self.log.counts["C-STORE:failed"] += 1
            self._respond(msg, cmd.C_STORE_RSP, status, reason, fields=extra)
            return
        self.log.counts[f"C-STORE:{outcome.status}"] += 1
        if outcome.status is StoreStatus.DUPLICATE_DIFFERS:
            log.warning("C-STORE from %s: %s", self.origin.actor.id, outcome.warning)
        self._respond(msg, cmd.C_STORE_RSP, SUCCESS, fields=extra)

    # -- C-FIND ---------------------------------------------------------------------------

    def handle_c_find(self, msg: Message) -> None:
        """Query (PS3.4 C.4.1): pending answers, then success; C-CANCEL stops it."""
        self.log.counts["C-FIND"] += 1
        if not self._allowed(Service.FIND):
            self.log.counts["C-FIND:refused"] += 1
            self._respond(msg, cmd.C_FIND_RSP, NOT_AUTHORIZED, "this node may not query")
            return
        context = self.assoc.contexts[msg.context_id]
        worklist = context.abstract_syntax == MODALITY_WORKLIST_FIND
        try:
            identifier = self._identifier(msg)
            if worklist:
                if self.services.worklist is None:
                    raise OpenPacsError("the worklist is not served here")
                answers: Generator[dict[str, Any]] = self.services.worklist.find(
                    self.services.worklist.parse(identifier)
                )
            else:
                model = Model.PATIENT_ROOT if context.abstract_syntax == PATIENT_ROOT_FIND else Model.STUDY_ROOT
                query = self.services.query.parse(identifier, model)
                answers = self.services.query.find(query, self.origin.actor)
        except Exception as exc:
            status, reason = _status_of(exc)
            self.log.counts["C-FIND:refused"] += 1
            self._respond(msg, cmd.C_FIND_RSP, status if status != PROCESSING_FAILURE else UNABLE_TO_PROCESS, reason)
            return
        requested = [str(v) for v in dj.values(identifier, "00080005") if v]
        count = 0
        try:
            for answer in answers:
                if self._cancel_requested(msg):
                    answers.close()
                    self.log.counts["C-FIND:cancelled"] += 1
                    self._respond(msg, cmd.C_FIND_RSP, CANCEL)
                    return
                data = encode_identifier(answer, context.transfer_syntax, answer_charset(answer, requested))
                self._respond(msg, cmd.C_FIND_RSP, PENDING, data=data)
                count += 1
        except (Aborted, ReleaseRequested):
            answers.close()
            raise
        except Exception as exc:
            answers.close()
            log.exception("C-FIND from %s failed", self.origin.actor.id)
            status, reason = _status_of(exc)
            self._respond(msg, cmd.C_FIND_RSP, UNABLE_TO_PROCESS, reason)
            return
        self.log.counts["C-FIND:answers" if not worklist else "C-FIND:worklist items"] += count
        self._respond(msg, cmd.C_FIND_RSP, SUCCESS)

    # -- C-MOVE ---------------------------------------------------------------------------

    def _sub_op_counts(self, total: int, result: SendResult) -> dict[str, int]:
        done = result.attempted
        return {
            "NumberOfRemainingSuboperations": max(total - done, 0),
            "NumberOfCompletedSuboperations": len(result.completed),
            "NumberOfFailedSuboperations": len(result.failed),
            "NumberOfWarningSuboperations": len(result.warnings),
        }

    def _final(
        self, msg: Message, field_: int, total: int, result: SendResult, cancelled: bool, uids: list[str]
    ) -> None:
        counts = self._sub_op_counts(total, result)
        failed = list(result.failed)
        if cancelled:
            status = CANCEL
            failed += uids[result.attempted :]
        elif result.failed and not result.completed and not result.warnings:
            status = SUBOPERATIONS_FAILED
        elif result.failed or result.warnings:
            status = WARNING_SUBOPERATIONS
        else:
            status = SUCCESS
            counts.pop("NumberOfRemainingSuboperations")
        data = None
        if failed:
            context = self.assoc.contexts[msg.context_id]
            data = encode_identifier({"00080058": {"vr": "UI", "Value": failed}}, context.transfer_syntax, [])
        comment = "; ".join(sorted(set(result.failed.values())))[:64] if result.failed else ""
        if not cancelled:
            counts.pop("NumberOfRemainingSuboperations", None)
        self._respond(msg, field_, status, comment, data=data, fields=counts)

    def handle_c_move(self, msg: Message) -> None:
        """Retrieve by C-MOVE (PS3.4 C.4.2): sub-operations on an association to the destination."""
        self.log.counts["C-MOVE"] += 1
        if not self._allowed(Service.MOVE):
            self.log.counts["C-MOVE:refused"] += 1
            self._respond(msg, cmd.C_MOVE_RSP, NOT_AUTHORIZED, "this node may not retrieve")
            return
        context = self.assoc.contexts[msg.context_id]
        model = Model.PATIENT_ROOT if context.abstract_syntax == PATIENT_ROOT_MOVE else Model.STUDY_ROOT
        retrieve = self.services.retrieve
        try:
            destination = retrieve.destination(str(msg.command.get("MoveDestination", "")))
            request = retrieve.resolve(self._identifier(msg), model)
        except Exception as exc:
            status, reason = _status_of(exc)
            self.log.counts["C-MOVE:refused"] += 1
            self._respond(msg, cmd.C_MOVE_RSP, status if status != PROCESSING_FAILURE else UNABLE_TO_PROCESS, reason)
            return
        total = len(request.instances)
        uids = [i.sop_instance_uid for i in request.instances]
        if total == 0:
            self._final(msg, cmd.C_MOVE_RSP, 0, SendResult(), False, [])
            return
        progress_result = SendResult()
        cancelled = False

        def progress(uid: str, outcome: int) -> None:
            if outcome == 0:
                progress_result.completed.append(uid)
            elif outcome == 1:
                progress_result.warnings.append(uid)
            else:
                progress_result.failed[uid] = ""
            self._respond(msg, cmd.C_MOVE_RSP, PENDING, fields=self._sub_op_counts(total, progress_result))

        def is_cancelled() -> bool:
            nonlocal cancelled
            cancelled = cancelled or self._cancel_requested(msg)
            return cancelled

        try:
            result = retrieve.move(
                request,
                destination,
                self.origin.actor,
                move_originator=(self.assoc.info.calling_ae, int(msg.command.get("MessageID", 0))),
                progress=progress,
                cancelled=is_cancelled,
            )
        except (Aborted, ReleaseRequested):
            raise
        except Exception as exc:
            status, reason = _status_of(exc)
            log.warning("C-MOVE to %s failed: %s", destination, reason)
            self.log.counts["C-MOVE:failed"] += 1
            result = SendResult(failed=dict.fromkeys(uids, reason))
            self._respond(
                msg,
                cmd.C_MOVE_RSP,
                SUBOPERATIONS_FAILED,
                reason,
                data=encode_identifier({"00080058": {"vr": "UI", "Value": uids}}, context.transfer_syntax, []),
                fields=self._sub_op_counts(total, result),
            )
            return
        self.log.counts["C-MOVE:sent"] += len(result.completed) + len(result.warnings)
        self._final(msg, cmd.C_MOVE_RSP, total, result, cancelled, uids)

    # -- C-GET ----------------------------------------------------------------------------

    def handle_c_get(self, msg: Message) -> None:
        """Retrieve by C-GET (PS3.4 C.4.3): C-STORE sub-operations on this association."""
        self.log.counts["C-GET"] += 1
        if not self._allowed(Service.GET):
            self.log.counts["C-GET:refused"] += 1
            self._respond(msg, cmd.C_GET_RSP, NOT_AUTHORIZED, "this node may not retrieve")
            return
        context = self.assoc.contexts[msg.context_id]
        model = Model.PATIENT_ROOT if context.abstract_syntax == PATIENT_ROOT_GET else Model.STUDY_ROOT
        retrieve = self.services.retrieve
        try:
            request = retrieve.resolve(self._identifier(msg), model)
        except Exception as exc:
            status, reason = _status_of(exc)
            self._respond(msg, cmd.C_GET_RSP, status if status != PROCESSING_FAILURE else UNABLE_TO_PROCESS, reason)
            return
        total = len(request.instances)
        uids = [i.sop_instance_uid for i in request.instances]
        result = SendResult()
        cancelled = False
        for instance in request.instances:
            if self._cancel_requested(msg):
                cancelled = True
                break
            contexts = [c for c in self.assoc.contexts_for(instance.sop_class_uid) if c.as_scu]
            if not contexts:
                result.failed[instance.sop_instance_uid] = "no accepted storage context for its SOP class"
            else:
                try:
                    syntax, data = retrieve.outbound.encode(instance, tuple(c.transfer_syntax for c in contexts))
                except CannotEncode as exc:
                    result.failed[instance.sop_instance_uid] = exc.reason
                except OSError as exc:
                    result.failed[instance.sop_instance_uid] = f"cannot read the stored file: {exc}"
                except Exception as exc:
                    log.exception("cannot prepare %s for C-GET", instance.sop_instance_uid)
                    result.failed[instance.sop_instance_uid] = f"cannot encode: {type(exc).__name__}"
                else:
                    store_context = next(c for c in contexts if c.transfer_syntax == syntax)
                    status = self._sub_store(
                        msg, store_context.id, instance.sop_class_uid, instance.sop_instance_uid, data
                    )
                    if status == SUCCESS:
                        result.completed.append(instance.sop_instance_uid)
                    elif status & 0xF000 == 0xB000:
                        result.warnings.append(instance.sop_instance_uid)
                    else:
                        result.failed[instance.sop_instance_uid] = f"C-STORE status 0x{status:04X}"
            self._respond(msg, cmd.C_GET_RSP, PENDING, fields=self._sub_op_counts(total, result))
        retrieve.audit_retrieve(request, self.origin.actor, "get", result)
        self.log.counts["C-GET:sent"] += len(result.completed) + len(result.warnings)
        self._final(msg, cmd.C_GET_RSP, total, result, cancelled, uids)

    def _sub_store(
        self, get_msg: Message, context_id: int, sop_class: str, sop_instance: str, data: bytes | memoryview
    ) -> int:
        message_id = self.assoc.next_message_id()
        self.assoc.send(
            context_id,
            {
                "CommandField": cmd.C_STORE_RQ,
                "MessageID": message_id,
                "AffectedSOPClassUID": sop_class,
                "AffectedSOPInstanceUID": sop_instance,
                "Priority": 0,
            },
            data,
        )
        while True:
            reply = self.assoc.receive()
            field_ = reply.command.get("CommandField")
            if field_ == cmd.C_STORE_RSP and reply.command.get("MessageIDBeingRespondedTo") == message_id:
                return int(reply.command.get("Status", 0xC000))
            if field_ == cmd.C_CANCEL_RQ:
                self._cancelled.add(int(reply.command.get("MessageIDBeingRespondedTo", 0)))
                continue
            log.warning("unexpected %s during C-GET", cmd.NAMES.get(int(field_ or 0), field_))

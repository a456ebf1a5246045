"""Storage commitment of forwarded studies (PS3.4 Annex J, Push Model, we are the SCU).

Once a forwarding job has delivered a study to a node, a rule with ``commit`` asks the node
to commit to keeping what it received. The request is recorded (``storage_commitment``)
before the N-ACTION goes out, so that an N-EVENT-REPORT on an association of the node's
own finds it. The answer is recorded once (a repeated report changes nothing), audited;
instances the node could not commit raise an alert. With ``delete_after``, what the node
committed to is deleted here (the index rows at once, the files after the deletion
grace period): the archive keeps nothing the destination has not promised to keep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from pydicom.uid import generate_uid

from openpacs.domain.commitment import CommitmentResult, CommitmentState, failure_text
from openpacs.domain.errors import NotFound
from openpacs.domain.records import Actor, ActorType, Node
from openpacs.domain.tags import Level
from openpacs.ports.index import AuditRecord, Index
from openpacs.ports.peers import PeerAddress
from openpacs.services.deletion import DeletionService

log = logging.getLogger(__name__)

PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112


class CommitmentRequester(Protocol):
    """What the service needs of the DIMSE door: an N-ACTION, and the report if it comes at once."""

    def request(
        self, peer: PeerAddress, transaction_uid: str, refs: Sequence[tuple[str, str]], *, wait: float = 5.0
    ) -> CommitmentResult | None: ...


class CommitmentService:
    """Asks nodes for storage commitment and takes their answers; thread-safe."""

    def __init__(
        self,
        index: Index,
        requester: CommitmentRequester,
        deletion: DeletionService,
        *,
        clock: Callable[[], datetime],
        wait: float = 5.0,
    ) -> None:
        self._index = index
        self._requester = requester
        self._deletion = deletion
        self._clock = clock
        self._wait = wait

    def request(
        self, node: Node, refs: Sequence[tuple[str, str]], *, job: int | None, study: str, delete_after: bool
    ) -> str:
        """Ask *node* to commit to *refs* ((SOP Class UID, SOP Instance UID) pairs); the
        Transaction UID. An unreachable node or a refused request raises PeerError (and
        leaves no request behind)."""
        transaction = str(generate_uid())
        with self._index.session(write=True) as session:
            session.commitments.add_commitment(transaction, job, node.name, study, refs, delete_after, self._clock())
        address = PeerAddress(node.ae_title, node.host, node.port)
        try:
            result = self._requester.request(address, transaction, refs, wait=self._wait)
        except Exception:
            with self._index.session(write=True) as session:
                session.commitments.answer_commitment(transaction, CommitmentState.FAILED, [], self._clock())
            raise
        if result is not None:
            self.report(result, node.ae_title)
        return transaction

    def report(self, result: CommitmentResult, reported_by: str) -> int:
        """An N-EVENT-REPORT received (on the request's association or one of the node's own):
        the status to answer it with."""
        now = self._clock()
        with self._index.session(write=True) as session:
            asked = session.commitments.commitment(result.transaction_uid)
            if asked is None:
                log.warning("storage commitment report from %s for unknown transaction %s",
                            reported_by, result.transaction_uid)  # fmt: skip
                return NO_SUCH_OBJECT_INSTANCE
            requested = {uid for _, uid in asked["instances"]}
            committed = {uid for _, uid in result.committed} & requested
            failed = list(result.failed)
            failed_uids = {uid for _, uid, _ in failed}
            # what the node neither committed nor listed as failed is not committed
            failed += [(c, u, PROCESSING_FAILURE) for c, u in asked["instances"] if u not in committed | failed_uids]
            state = CommitmentState.FAILED if failed else CommitmentState.COMMITTED
            if not session.commitments.answer_commitment(result.transaction_uid, state, failed, now):
                return 0  # answered already: a repeated report
            actor = Actor(ActorType.DICOM, reported_by)
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        actor,
                        "storage-commitment",
                        "success" if not failed else "partial" if committed else "failure",
                        [{"level": "STUDY", "uid": asked["study_instance_uid"]}],
                        {
                            "node": asked["node"],
                            "transaction_uid": result.transaction_uid,
                            "committed": len(committed),
                            "failed": [[u, failure_text(r)] for _, u, r in failed[:100]],
                            "job": asked["job"],
                        },
                    )
                ]
            )
            if failed:
                session.jobs.add_alert(
                    "commitment-failed",
                    f"{asked['node']} did not commit to {len(failed)} instances of study "
                    f"{asked['study_instance_uid']}: {failure_text(failed[0][2])}",
                    {"transaction_uid": result.transaction_uid, "instances": [u for _, u, _ in failed[:100]]},
                    now,
                )
        if asked["delete_after"] and committed:
            self._delete(sorted(committed), asked["node"])
        return 0

    def _delete(self, uids: list[str], node: str) -> None:
        actor = Actor(ActorType.RULE, f"delete-after-commitment:{node}")
        for uid in uids:
            try:
                # the destination committed: the promise we may have made is kept there
                self._deletion.delete(Level.IMAGE, uid, actor, f"committed by {node}", force=True)
            except NotFound:
                continue  # deleted meanwhile

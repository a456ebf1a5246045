"""Storage Commitment Push Model as SCP (PS3.4 J.3; IHE RAD TF-2 4.10): a modality asks us to
commit to keeping the instances it sent.

The answer is decided from the index, not by re-reading files: an instance is committed when
it is stored with the SOP Class named, has a live location whose checksum was recorded at
ingest, and is neither rejected nor deleted (:func:`openpacs.domain.workflow.commitment_failures`
gives the Failure Reasons of PS3.3 C.14.1.1). The request is recorded with its result before
the N-ACTION is answered; the N-EVENT-REPORT then goes on the same association if it is still
open, otherwise a ``commitment-report`` job sends it on a new association to the requester's
node (proposing the SCP role, PS3.4 J.3.3). A Transaction UID already in use is answered with
every instance failed, 0x0131.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from openpacs.domain.commitment import CommitmentResult
from openpacs.domain.errors import NormalizedError, PeerError
from openpacs.domain.jobs import Job, JobKind
from openpacs.domain.records import Actor
from openpacs.domain.workflow import (
    DUPLICATE_TRANSACTION,
    PENDING,
    REPORTED,
    UNDELIVERABLE,
    CommitmentRequest,
    commitment_failures,
)
from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import AuditRecord, Index
from openpacs.ports.peers import PeerAddress
from openpacs.services.jobs import Outcome, Run, Verdict

log = logging.getLogger(__name__)

#: Most references one request may carry (a study of this many instances is committed at once)
MAX_REFERENCES = 100_000


class CommitmentReporter(Protocol):
    """Sends an N-EVENT-REPORT on an association of ours (the DIMSE door)."""

    def report(self, peer: PeerAddress, result: CommitmentResult) -> None: ...


class CommitmentScpService:
    """Decides storage commitment requests and delivers their reports; thread-safe."""

    def __init__(
        self,
        index: Index,
        reporter: CommitmentReporter,
        *,
        clock: Callable[[], datetime],
        is_storage_class: Callable[[str], bool],
        wake: Callable[[], None] = lambda: None,
        blobs: BlobStore | None = None,
        verify: bool = False,
    ) -> None:
        self._index = index
        self._reporter = reporter
        self._clock = clock
        self._is_storage_class = is_storage_class
        self._wake = wake
        self._blobs = blobs
        self._verify = verify and blobs is not None

    def request(
        self, transaction_uid: str, refs: Sequence[tuple[str, str]], calling_ae_title: str, address: str
    ) -> CommitmentResult:
        """N-ACTION: decide and record the request; the result to report."""
        if not transaction_uid:
            raise NormalizedError(0x0120, "Transaction UID (0008,1195) is missing")
        if not refs:
            raise NormalizedError(0x0120, "Referenced SOP Sequence (0008,1199) is empty")
        if len(refs) > MAX_REFERENCES:
            raise NormalizedError(0x0110, f"more than {MAX_REFERENCES} references in one request")
        now = self._clock()
        with self._index.session(write=True) as session:
            store = session.workflow
            if store.commitment_request(transaction_uid) is not None:
                failed = [(c, u, DUPLICATE_TRANSACTION) for c, u in refs]
                log.warning("storage commitment from %s reuses Transaction UID %s", calling_ae_title, transaction_uid)
                return CommitmentResult(transaction_uid, [], failed)
            facts = store.commitment_facts([u for _, u in refs])
            failed = commitment_failures(list(refs), facts, self._is_storage_class)
            request = CommitmentRequest(
                transaction_uid, calling_ae_title, address, PENDING, list(refs), failed, received_at=now
            )
            store.add_commitment_request(request)
            store.add_committed(transaction_uid, calling_ae_title, [u for _, u in request.committed], now)
            if self._verify and request.committed:
                job = Job(
                    kind=JobKind.COMMITMENT_VERIFY,
                    queue="commitment-verify",
                    params={"transaction_uid": transaction_uid},
                )
                session.jobs.add(job, 1, now, dedupe_key=f"commitment-verify|{transaction_uid}")
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        Actor.dicom(calling_ae_title, address),
                        "storage-commitment-requested",
                        "success" if not failed else "partial" if len(failed) < len(refs) else "failure",
                        [],
                        {
                            "transaction_uid": transaction_uid,
                            "instances": len(refs),
                            "failed": [[u, f"0x{r:04X}"] for _, u, r in failed[:100]],
                        },
                    )
                ]
            )
        return CommitmentResult(transaction_uid, request.committed, failed)

    def reported(self, transaction_uid: str) -> None:
        """The report was delivered (on the request's association or one of ours)."""
        with self._index.session(write=True) as session:
            session.workflow.set_commitment_request_state(transaction_uid, REPORTED, self._clock())

    def deliver_later(self, transaction_uid: str, why: str) -> None:
        """The request's association is gone: queue the report for a new association."""
        now = self._clock()
        with self._index.session(write=True) as session:
            request = session.workflow.commitment_request(transaction_uid)
            if request is None or request.state != PENDING:
                return
            node = session.node_by_ae_title(request.calling_ae_title)
            if node is None:
                session.workflow.set_commitment_request_state(
                    transaction_uid, UNDELIVERABLE, None, f"{why}; {request.calling_ae_title} is not a configured node"
                )
                session.jobs.add_alert(
                    "commitment-report-undeliverable",
                    f"the storage commitment report for {request.calling_ae_title} cannot be sent: it is not a"
                    " configured node (add it with its host and port)",
                    {"transaction_uid": transaction_uid},
                    now,
                )
                return
            job = Job(
                kind=JobKind.COMMITMENT_REPORT,
                queue=f"node:{node.name}",
                params={"transaction_uid": transaction_uid, "node": node.name},
            )
            session.jobs.add(job, 1, now, dedupe_key=f"commitment-report|{transaction_uid}")
        self._wake()

    def requests(self, *, state: str = "", limit: int = 100) -> list[CommitmentRequest]:
        with self._index.session() as session:
            return session.workflow.commitment_requests(state=state, limit=limit)

    def verify(self, run: Run) -> Outcome:
        """The ``commitment-verify`` executor: re-read each committed instance's file and check the
        checksum recorded at ingest; differences and unreadable files raise an alert."""
        assert self._blobs is not None
        transaction_uid = str(run.job.params.get("transaction_uid", ""))
        with self._index.session() as session:
            request = session.workflow.commitment_request(transaction_uid)
        if request is None:
            return Outcome(Verdict.DONE)
        bad: list[str] = []
        for n, (_, uid) in enumerate(request.committed):
            with self._index.session() as session:
                brief = session.instance_brief(uid)
            if brief is None:
                continue  # rejected or deleted since: no longer ours to keep
            try:
                data = self._blobs.read(brief.blob.key)
            except OSError:
                bad.append(uid)
                continue
            if hashlib.sha256(data).hexdigest() != brief.checksum:
                bad.append(uid)
            if n % 100 == 0:
                run.progress["checked"] = n
                if not run.beat():
                    return Outcome(Verdict.RETRY, "stopped")
        if bad:
            with self._index.session(write=True) as session:
                session.jobs.add_alert(
                    "commitment-verify-failed",
                    f"{len(bad)} instances committed to {request.calling_ae_title} do not read back as stored",
                    {"transaction_uid": transaction_uid, "instances": bad[:100]},
                    self._clock(),
                )
            return Outcome(Verdict.FAILED, f"{len(bad)} instances do not read back as stored")
        return Outcome(Verdict.DONE, progressed=True)

    def execute(self, run: Run) -> Outcome:
        """The ``commitment-report`` executor: the report on a new association to the node."""
        transaction_uid = str(run.job.params.get("transaction_uid", ""))
        with self._index.session() as session:
            request = session.workflow.commitment_request(transaction_uid)
            node = session.node(str(run.job.params.get("node", "")))
        if request is None or request.state != PENDING:
            return Outcome(Verdict.DONE)
        if node is None:
            return Outcome(Verdict.FAILED, f"node {run.job.params.get('node')!r} is no longer configured")
        result = CommitmentResult(transaction_uid, request.committed, request.failed)
        try:
            self._reporter.report(PeerAddress(node.ae_title, node.host, node.port), result)
        except PeerError as exc:
            with self._index.session(write=True) as session:
                session.workflow.set_commitment_request_state(transaction_uid, PENDING, None, exc.reason)
            return Outcome(Verdict.RETRY, exc.reason)
        self.reported(transaction_uid)
        return Outcome(Verdict.DONE, progressed=True)

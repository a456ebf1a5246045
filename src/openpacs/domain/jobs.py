"""Jobs: durable units of work (forwarding a study, later retrieval and migration).

A job lives in the index (table ``job``): it survives restarts, is claimed by one worker
at a time (on PostgreSQL with ``FOR UPDATE SKIP LOCKED``), and a destination that needs
ordered delivery holds a number of slots (its node's ``max_associations``): at most that
many jobs of one queue run at once. A job that cannot reach its destination waits
(exponential backoff, capped) and keeps its place; a job whose worker died is taken
back when its lease expires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    PENDING = "pending"  # waiting to run (next_attempt_at says when)
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"  # gave up: retry sets it pending again
    CANCELLED = "cancelled"


ACTIVE = (JobState.PENDING, JobState.RUNNING, JobState.PAUSED)


class JobKind(StrEnum):
    FORWARD = "forward"  # the instances of a study to a node (C-STORE) or a DICOMweb server
    RETRIEVE = "retrieve"  # studies, series or instances from another PACS (C-MOVE to us)
    PREFETCH = "prefetch"  # a patient's prior studies from another PACS, chosen by C-FIND
    MIGRATE = "migrate"  # an old archive (a node, or a folder tree), study by study, then verified
    HL7_SEND = "hl7-send"  # the queued HL7 messages of one destination, in order
    COMMITMENT_REPORT = "commitment-report"  # a storage commitment result, on an association of ours
    COMMITMENT_VERIFY = "commitment-verify"  # re-read what we committed to and check its checksums
    NOTIFY = "notify"  # one N-CREATE or N-SET to a node: an availability notification, a forwarded MPPS


@dataclass
class Job:
    """A job as the API shows it."""

    kind: JobKind
    queue: str  # the destination ("node:PACS2"): jobs of one queue share its slots
    params: dict[str, Any]
    priority: int = 0
    state: JobState = JobState.PENDING
    pk: int | None = None
    study_instance_uid: str = ""
    progress: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    holder: str = ""

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.pk,
            "kind": str(self.kind),
            "queue": self.queue,
            "state": str(self.state),
            "priority": self.priority,
            "study_instance_uid": self.study_instance_uid,
            "params": self.params,
            "progress": self.progress,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "next_attempt_at": iso(self.next_attempt_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
            "holder": self.holder,
        }


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """The wait before attempt *attempts* + 1: base x 2^(attempts - 1), at most *cap* seconds."""
    return timedelta(seconds=min(cap, base * (2 ** max(0, attempts - 1))))


@dataclass(frozen=True)
class Parked:
    """An instance a destination refused (a poison instance): set aside, the rest goes on."""

    job: int
    sop_instance_uid: str
    status: str
    reason: str
    at: datetime

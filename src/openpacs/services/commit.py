"""Group commit: units of work from many threads share one index transaction.

Each association's thread hands its unit of work to one committer thread and waits;
the committer runs every unit waiting at that moment in a single write transaction,
so concurrent stores share one commit (one WAL fsync) instead of queueing for the
write lock one by one (ARCHITECTURE.md section 3, step 5). If a batch fails, each of
its units is run again alone, so that one bad unit fails alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from openpacs.domain.records import BlobRef
from openpacs.ports.index import (
    AuditRecord,
    ChangeRecord,
    Conflict,
    CountDelta,
    Index,
    IndexSession,
    NewInstance,
    PatientRow,
    SeriesRow,
    StudyRow,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What the units of one transaction share: caches, and rows written at the end."""

    now: datetime
    studies: dict[str, StudyRow] = field(default_factory=dict)
    series: dict[str, SeriesRow] = field(default_factory=dict)
    patients: dict[int, PatientRow] = field(default_factory=dict)
    instances: list[NewInstance] = field(default_factory=list)
    deltas: dict[int, CountDelta] = field(default_factory=dict)
    changes: list[ChangeRecord] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    superseded: list[tuple[BlobRef, str]] = field(default_factory=list)
    #: work that needs this batch's rows written (a received rejection note hides instances)
    after_flush: list[Callable[[IndexSession], None]] = field(default_factory=list)

    def delta(self, patient_pk: int, study_pk: int, series_pk: int) -> CountDelta:
        """The aggregate changes of a series in this batch."""
        found = self.deltas.get(series_pk)
        if found is None:
            found = self.deltas[series_pk] = CountDelta(patient_pk, study_pk, series_pk)
        return found

    def flush(self, session: IndexSession, grace_until: datetime) -> None:
        """Write the accumulated rows; the change feed last, to hold its lock briefly."""
        session.insert_instances(self.instances)
        session.add_counts(list(self.deltas.values()), self.now)
        session.flag_conflicts(self.conflicts, self.now)
        session.add_audit(self.audit)
        session.add_pending_deletions(self.superseded, grace_until, self.now)
        for work in self.after_flush:
            work(session)
        session.add_changes(self.changes, self.now)


@dataclass
class _Job(Generic[T]):
    work: Callable[[IndexSession, Batch], T]
    durable: Future[None] | None = None
    later: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommitter:
    """Runs units of work in shared write transactions on a dedicated thread."""

    def __init__(
        self,
        index: Index,
        *,
        clock: Callable[[], datetime],
        grace_seconds: float,
        max_batch: int = 128,
        gather_seconds: float = 0.001,
    ) -> None:
        self._index = index
        self._clock = clock
        self._grace_seconds = grace_seconds
        self._max_batch = max_batch
        self._gather_seconds = gather_seconds
        self._expected = 0
        self._queue: deque[_Job[Any]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[IndexSession, Batch], T], *, durable: Future[None] | None = None) -> T:
        """Run *work* in a write transaction; return once that transaction has committed.

        *durable* is the write of the unit's blob, running meanwhile: the transaction
        commits only once it has completed, and fails if it failed (ARCHITECTURE.md 3).
        """
        job: _Job[T] = _Job(work, durable)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the index writer is stopped")
            self._queue.append(job)
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def submit_later(self, work: Callable[[IndexSession, Batch], object]) -> None:
        """Queue *work* for the next transaction without waiting for it (reads' audit records)."""
        job: _Job[object] = _Job(work, later=True)
        with self._cond:
            if self._stopping:
                log.warning("the index writer is stopping: an audit record of a read is lost")
                return
            self._queue.append(job)
            self._cond.notify()

    def close(self) -> None:
        """Finish the queued units, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a unit of work on its way (a store being received and vetted).

        While more units are on their way than are queued, the committer waits a little
        (at most ``gather_seconds``) so that they share the transaction and its flush.
        """
        with self._cond:
            self._expected += 1
        try:
            yield
        finally:
            with self._cond:
                self._expected -= 1
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue and self._stopping:
                    return
                deadline = time.monotonic() + self._gather_seconds
                while (
                    not self._stopping
                    and self._queue_of_expected() < self._expected
                    and len(self._queue) < self._max_batch
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
            self._commit(batch)

    def _queue_of_expected(self) -> int:
        return sum(1 for job in self._queue if job.durable is not None)

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        from datetime import timedelta

        try:
            now = self._clock()
            with self._index.session(write=True, dedicated=True) as session:
                batch = Batch(now=now)
                results = [job.work(session, batch) for job in jobs]
                batch.flush(session, now + timedelta(seconds=self._grace_seconds))
                for job in jobs:
                    if job.durable is not None:
                        job.durable.result()  # raises if the blob could not be written
        except BaseException as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
                jobs[0].done.set()
                return
            log.info("a batch of %d units failed (%s); running them one by one", len(jobs), exc)
            for job in jobs:
                self._commit([job])
            return
        for job, result in zip(jobs, results, strict=True):
            job.result = result
            job.done.set()

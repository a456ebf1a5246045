"""Jobs: the administrator's view (list, show, retry, cancel, pause, resume; alerts) and the
workers that run them.

Every node runs workers; a worker claims a due job from the index (``JobStore.claim``),
runs it with the executor of its kind, renews its lease while it runs, and records the
outcome: done, a retry after a backoff (exponential, capped: a destination that is down
holds its queue and catches up when it is back), or failed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from openpacs.domain.errors import Conflict, NotFound
from openpacs.domain.jobs import Job, JobKind, JobState, backoff
from openpacs.domain.records import Actor
from openpacs.ports.index import AuditRecord, Index

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    DONE = "done"
    RETRY = "retry"  # try again later (the destination is unreachable, say)
    FAILED = "failed"  # nothing more to try
    WAIT = "wait"  # not now: run again at ``not_before`` (outside its allowed time windows, say)


@dataclass
class Outcome:
    verdict: Verdict
    error: str = ""
    progressed: bool = False  # something was delivered: the backoff starts over
    not_before: datetime | None = None  # WAIT: when to run again


class Run(Protocol):
    """What an executor sees of its job while it runs."""

    job: Job
    progress: dict[str, Any]

    def beat(self) -> bool:
        """Record progress and renew the lease; False when the job should stop (paused,
        cancelled, or the worker is stopping)."""
        ...


Executor = Callable[[Run], Outcome]


@dataclass(frozen=True)
class JobSettings:
    workers: int = 4
    retry_base: float = 2.0
    retry_max: float = 300.0
    lease: timedelta = timedelta(seconds=60)
    poll: float = 1.0


@dataclass
class _Run:
    job: Job
    progress: dict[str, Any]
    runner: JobRunner
    holder: str
    last_beat: float = 0.0
    stopped: bool = field(default=False)

    def beat(self) -> bool:
        import time

        now_mono = time.monotonic()
        if now_mono - self.last_beat < 1.0 and not self.stopped:
            return not self.runner.stopping
        self.last_beat = now_mono
        assert self.job.pk is not None
        with self.runner.index.session(write=True) as session:
            state = session.jobs.heartbeat(
                self.job.pk, self.holder, self.progress, self.runner.clock(), self.runner.settings.lease
            )
        self.stopped = state != str(JobState.RUNNING)
        return not self.stopped and not self.runner.stopping


class JobRunner:
    """Worker threads that claim and run jobs."""

    def __init__(
        self,
        index: Index,
        *,
        executors: dict[JobKind, Executor],
        settings: JobSettings,
        clock: Callable[[], datetime],
        holder: str,
    ) -> None:
        self.index = index
        self.settings = settings
        self.clock = clock
        self._executors = executors
        self._holder = holder
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        for n in range(self.settings.workers):
            thread = threading.Thread(target=self._work, args=(n,), name=f"job-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wake(self) -> None:
        """New work may be waiting (a job enqueued in this process)."""
        self._wake.set()

    def run_once(self, worker: str = "0") -> bool:
        """Claim one due job and run it; False when none was due."""
        holder = f"{self._holder}/{worker}"
        with self.index.session(write=True) as session:
            job = session.jobs.claim(holder, self.clock(), self.settings.lease)
        if job is None:
            return False
        self._execute(job, holder)
        return True

    def _work(self, n: int) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once(str(n))
            except Exception:
                log.exception("job worker %d", n)
                ran = False
            if not ran:
                self._wake.wait(self.settings.poll)
                self._wake.clear()

    def _execute(self, job: Job, holder: str) -> None:
        assert job.pk is not None
        run = _Run(job, dict(job.progress), self, holder)
        executor = self._executors.get(job.kind)
        try:
            outcome = executor(run) if executor is not None else Outcome(Verdict.FAILED, f"no executor for {job.kind}")
        except Exception as exc:
            log.exception("job %d failed", job.pk)
            outcome = Outcome(Verdict.RETRY, f"{type(exc).__name__}: {exc}")
        now = self.clock()
        with self.index.session(write=True) as session:
            if outcome.verdict is Verdict.DONE:
                session.jobs.finish(job.pk, holder, JobState.DONE, run.progress, now)
            elif outcome.verdict is Verdict.FAILED:
                session.jobs.finish(job.pk, holder, JobState.FAILED, run.progress, now, error=outcome.error)
                session.jobs.add_alert(
                    "job-failed",
                    f"job {job.pk} ({job.kind} to {job.queue}) failed: {outcome.error}",
                    {"job": job.pk},
                    now,
                )
            elif outcome.verdict is Verdict.WAIT:
                session.jobs.finish(
                    job.pk,
                    holder,
                    JobState.PENDING,
                    run.progress,
                    now,
                    next_attempt_at=outcome.not_before or now + timedelta(seconds=self.settings.retry_max),
                    reset_attempts=True,
                )
                return
            else:
                attempts = 1 if outcome.progressed else job.attempts
                wait = backoff(attempts, self.settings.retry_base, self.settings.retry_max)
                session.jobs.finish(
                    job.pk,
                    holder,
                    JobState.PENDING,
                    run.progress,
                    now,
                    error=outcome.error,
                    next_attempt_at=now + wait,
                    reset_attempts=outcome.progressed,
                )
        if outcome.verdict is not Verdict.DONE:
            log.warning("job %d (%s to %s): %s: %s", job.pk, job.kind, job.queue, outcome.verdict, outcome.error)


class JobService:
    """The administrator's operations on jobs, and the alerts."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime], wake: Callable[[], None]) -> None:
        self._index = index
        self._clock = clock
        self._wake = wake

    def jobs(self, state: str | None = None, limit: int = 100, before: int | None = None) -> list[Job]:
        if state is not None and state not in {str(s) for s in JobState}:
            from openpacs.domain.errors import InvalidQuery

            raise InvalidQuery(f"a job state is one of {', '.join(JobState)}, not {state!r}")
        with self._index.session() as session:
            return session.jobs.jobs(state, max(1, min(limit, 1000)), before)

    def show(self, pk: int) -> dict[str, Any]:
        with self._index.session() as session:
            job = session.jobs.job(pk)
            if job is None:
                raise NotFound(f"no job {pk}")
            parked = session.jobs.parked(pk)
            commitments = session.commitments.commitments_of_job(pk)
        out = job.to_json()
        out["commitments"] = [
            {
                "transaction_uid": c["transaction_uid"],
                "node": c["node"],
                "state": c["state"],
                "instances": len(c["instances"]),
                "failed": [list(f) for f in c["failed"]],
                "delete_after": c["delete_after"],
                "requested_at": c["requested_at"].isoformat(),
                "answered_at": c["answered_at"].isoformat() if c["answered_at"] else None,
            }
            for c in commitments
        ]
        out["parked"] = [
            {"sop_instance_uid": p.sop_instance_uid, "status": p.status, "reason": p.reason, "at": p.at.isoformat()}
            for p in parked
        ]
        return out

    def forward(self, study_uid: str, node: str, actor: Actor, *, transfer_syntax: str = "") -> Job:
        """Send a stored study to a node now, as a job (the administrator's manual routing)."""
        from openpacs.domain.rules import Action, ActionKind
        from openpacs.domain.tags import Level

        now = self._clock()
        action = Action(ActionKind.FORWARD, node=node, transfer_syntax=transfer_syntax)
        with self._index.session(write=True) as session:
            target = session.node(node)
            if target is None:
                raise NotFound(f"no node named {node!r}")
            instances = [
                i
                for i in session.stored_instances(Level.STUDY, [study_uid], hidden=True)
                if i.hidden is None or i.hidden == "rejection-note"
            ]
            if not instances:
                raise NotFound(f"no study {study_uid}")
            job = Job(
                kind=JobKind.FORWARD,
                queue=action.destination,
                params={"rule": "", "event": "stable", "action": action.to_json(), "conditions": []},
                priority=10,
                study_instance_uid=study_uid,
            )
            pk = session.jobs.enqueue(
                job,
                target.max_associations,
                f"manual-{uuid.uuid4().hex}|{action.destination}|{study_uid}",
                [i.pk for i in instances],
                now,
            )
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        actor,
                        "forward",
                        "success",
                        [{"level": "STUDY", "uid": study_uid}],
                        {"node": node, "job": pk},
                    )
                ]
            )
            found = session.jobs.job(pk)
        assert found is not None
        self._wake()
        return found

    def counts(self) -> dict[str, int]:
        with self._index.session() as session:
            return session.jobs.counts()

    def retry(self, pk: int, actor: Actor) -> Job:
        """A failed or waiting job runs again now (its backoff starts over)."""
        return self._change(pk, JobState.PENDING, (JobState.FAILED, JobState.PENDING, JobState.CANCELLED), actor)

    def cancel(self, pk: int, actor: Actor) -> Job:
        return self._change(pk, JobState.CANCELLED, (JobState.PENDING, JobState.RUNNING, JobState.PAUSED), actor)

    def pause(self, pk: int, actor: Actor) -> Job:
        return self._change(pk, JobState.PAUSED, (JobState.PENDING, JobState.RUNNING), actor)

    def resume(self, pk: int, actor: Actor) -> Job:
        return self._change(pk, JobState.PENDING, (JobState.PAUSED,), actor)

    def _change(self, pk: int, state: JobState, allowed: tuple[JobState, ...], actor: Actor) -> Job:
        now = self._clock()
        with self._index.session(write=True) as session:
            job = session.jobs.job(pk)
            if job is None:
                raise NotFound(f"no job {pk}")
            if not session.jobs.set_state(pk, state, allowed, now):
                raise Conflict(f"job {pk} is {job.state}: it cannot become {state}")
            session.add_audit(
                [AuditRecord(now, actor, f"job-{state}", "success", [{"level": "JOB", "uid": str(pk)}], {})]
            )
            changed = session.jobs.job(pk)
        assert changed is not None
        if state is JobState.PENDING:
            self._wake()
        return changed

    def alerts(self, limit: int = 100, open_only: bool = False) -> list[dict[str, Any]]:
        with self._index.session() as session:
            return session.jobs.alerts(max(1, min(limit, 1000)), open_only)

    def acknowledge(self, pk: int, actor: Actor) -> None:
        now = self._clock()
        with self._index.session(write=True) as session:
            if not session.jobs.acknowledge_alert(pk, now):
                raise NotFound(f"no open alert {pk}")
            session.add_audit([AuditRecord(now, actor, "alert-acknowledge", "success", [], {"alert": pk})])
